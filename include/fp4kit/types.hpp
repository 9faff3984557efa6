// fp4kit/types.hpp: element types, devices, and the parameters of one quantization.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fp4kit {

// Element types of tensors that cross the API. Values are stable (the C API uses the same numbers).
enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kU8 = 3,    // packed E2M1 pairs (element 2i in the low nibble) or raw bytes
  kE4M3 = 4,  // float8_e4m3fn scale bytes
  kF64 = 5,
  kU32 = 6,   // counters (non-finite counts)
};

std::size_t dtype_size(DType dtype) noexcept;  // bytes per element
const char* dtype_name(DType dtype) noexcept;  // "f32", "bf16", ...

enum class DeviceType : uint8_t { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU
  friend bool operator==(const Device&, const Device&) = default;
};

// Which quantized outputs a call produces. Rowwise quantizes along the contiguous dimension C of
// x[R, C]; columnwise quantizes x^T, i.e. along R (NUMERICS §3).
enum class Direction : uint8_t { kRowwise = 1, kColumnwise = 2, kBoth = 3 };

constexpr bool has_rowwise(Direction d) { return (static_cast<uint8_t>(d) & 1u) != 0; }
constexpr bool has_columnwise(Direction d) { return (static_cast<uint8_t>(d) & 2u) != 0; }
const char* direction_name(Direction d) noexcept;

// 1D: a scale per 16 consecutive elements. 2D: a scale per 16x16 tile (weights, NUMERICS §4).
enum class BlockScaling : uint8_t { k1D = 0, k2D = 1 };
// Round-to-nearest-even, or stochastic rounding with Philox4x32-10 (NUMERICS §8).
enum class Rounding : uint8_t { kNearest = 0, kStochastic = 1 };

// The plain Hadamard transform has sign mask 0; the recipe default is this fixed random mask.
inline constexpr uint16_t kDefaultRhtMask = 0xD7E8;

// Everything that determines the bytes of one quantization call.
struct QuantParams {
  Direction direction = Direction::kRowwise;
  BlockScaling block = BlockScaling::k1D;
  Rounding rounding = Rounding::kNearest;
  // Per-row (per-token) global scale, rowwise only; not combinable with 2D, SR or RHT (§6).
  bool row_scaled = false;
  // Random Hadamard transform of the COLUMNWISE output along R, in groups of 16 (§5).
  bool rht = false;
  uint16_t rht_mask = kDefaultRhtMask;  // bit i set where sign s_i = -1
  // Stochastic rounding stream (§8): Philox key = seed, counter words 2..3 = offset.
  uint64_t sr_seed = 0;
  uint64_t sr_offset = 0;
  // Also write each part's scales in the GEMM-swizzled layout (NUMERICS §10) next to the compact
  // ones, for GEMMs that read that layout (cuBLASLt block scaling, Blackwell tensor cores).
  bool swizzled_scales = false;
};

}  // namespace fp4kit
