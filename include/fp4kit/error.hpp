// fp4kit/error.hpp: the one exception type of the C++ API.
//
// Every entry point validates its inputs and throws fp4kit::Error with a code, a message saying what
// is wrong (with the offending values) and a hint naming the fix. No assert guards an API contract.
#pragma once

#include <stdexcept>
#include <string>

namespace fp4kit {

// Stable numeric values: the C API returns them as fp4kit_status (fp4kit.h keeps the same numbers).
enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // a value out of its documented range
  kShapeMismatch = 2,    // shapes that do not fit together, or a dimension not a multiple of 16
  kDtypeMismatch = 3,    // a dtype the operation does not take
  kLayout = 4,           // strides, alignment or contiguity not supported
  kNullPointer = 5,      // a required pointer is null
  kInvalidRecipe = 6,    // a recipe field combination that NUMERICS.md forbids
  kUnsupported = 7,      // valid request, but no backend here can run it
  kCudaError = 8,        // a CUDA runtime or library call failed
  kOutOfMemory = 9,
  kIo = 10,              // file reading/writing (CLI, safetensors, npy)
  kInternal = 11,        // a bug in fp4kit: please report it
};

// Short stable name of a code, e.g. "shape_mismatch".
const char* error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string hint = {});

  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& hint() const noexcept { return hint_; }
  // what() is "message (hint: ...)" so a caller that only prints what() still sees the fix.

 private:
  ErrorCode code_;
  std::string message_;
  std::string hint_;
};

}  // namespace fp4kit
