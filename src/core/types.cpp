#include "fp4kit/types.hpp"

namespace fp4kit {

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kU8: return 1;
    case DType::kE4M3: return 1;
    case DType::kF64: return 8;
    case DType::kU32: return 4;
  }
  return 0;
}

const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kU8: return "u8";
    case DType::kE4M3: return "e4m3";
    case DType::kF64: return "f64";
    case DType::kU32: return "u32";
  }
  return "unknown";
}

const char* direction_name(Direction d) noexcept {
  switch (d) {
    case Direction::kRowwise: return "rowwise";
    case Direction::kColumnwise: return "columnwise";
    case Direction::kBoth: return "both";
  }
  return "unknown";
}

}  // namespace fp4kit
