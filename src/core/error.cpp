#include "fp4kit/error.hpp"

#include <utility>

namespace fp4kit {

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kShapeMismatch: return "shape_mismatch";
    case ErrorCode::kDtypeMismatch: return "dtype_mismatch";
    case ErrorCode::kLayout: return "layout";
    case ErrorCode::kNullPointer: return "null_pointer";
    case ErrorCode::kInvalidRecipe: return "invalid_recipe";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kCudaError: return "cuda_error";
    case ErrorCode::kOutOfMemory: return "out_of_memory";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

namespace {
std::string compose(const std::string& message, const std::string& hint) {
  return hint.empty() ? message : message + " (hint: " + hint + ")";
}
}  // namespace

Error::Error(ErrorCode code, std::string message, std::string hint)
    : std::runtime_error(compose(message, hint)), code_(code), message_(std::move(message)), hint_(std::move(hint)) {}

}  // namespace fp4kit
