// fp4kit/tensor.hpp: a non-owning tensor view, and the NVFP4 tensor (data + scales + amax per
// direction, plus how it was made).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fp4kit/types.hpp"

namespace fp4kit {

inline constexpr int kMaxRank = 4;

struct Target;  // fp4kit/ops.hpp

// A non-owning view of caller memory: element type, shape, strides (in ELEMENTS), device.
// Operations treat a view of rank >= 2 as a matrix [product of leading dims, last dim]; the last
// dimension must be contiguous (stride 1) and the leading ones collapsible.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};
  Device device{};

  // A row-major matrix; row_stride < 0 means cols (dense).
  static TensorView matrix(void* data, DType dtype, int64_t rows, int64_t cols, Device device = {},
                           int64_t row_stride = -1);
  static TensorView vector(void* data, DType dtype, int64_t n, Device device = {});

  int64_t numel() const noexcept;
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  bool is_contiguous() const noexcept;
  // "bf16[1024, 4096] cpu", for messages.
  std::string describe() const;

  template <typename T>
  T* ptr() const noexcept { return static_cast<T*>(data); }
};

// Geometry of one quantized direction, in that direction's orientation: rows x cols, quantized
// along cols in blocks of 16 (the last block zero-padded).
struct Nvfp4Geometry {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t blocks_per_row() const noexcept { return (cols + 15) / 16; }
  int64_t padded_cols() const noexcept { return blocks_per_row() * 16; }
  int64_t data_bytes_per_row() const noexcept { return blocks_per_row() * 8; }
};

// One direction of an NVFP4 tensor.
struct Nvfp4Part {
  TensorView data;    // U8   [rows, ceil(cols/16)*8]: element 2i in the low nibble
  TensorView scales;  // E4M3 [rows, ceil(cols/16)]: compact layout, row-major
  TensorView amax;    // F32  [1], or [rows] when row-scaled: the FINITE amax the scales derive from
  // U8 [swizzled_scale_bytes(rows, ceil(cols/16))] (fp4kit/layout.hpp): the same scales in the
  // GEMM-swizzled layout, padding zero; present only when params.swizzled_scales.
  TensorView scales_swizzled;
  Nvfp4Geometry geometry;
  bool present = false;
};

// How an NVFP4 tensor was made: everything a consumer needs to interpret the bytes.
struct Nvfp4Meta {
  int64_t rows = 0;              // the source x[rows, cols]
  int64_t cols = 0;
  DType source_dtype = DType::kF32;
  QuantParams params{};
};

// An NVFP4 tensor: per direction packed data, compact E4M3 scales and the global amax, plus the
// non-finite counts of the source (U32 [2] = {NaN count, Inf count}; written by quantize without a
// host sync). It either owns its memory (allocate) or views caller memory (from_parts).
// Copies share the same memory (like a shared_ptr).
class Nvfp4Tensor {
 public:
  Nvfp4Tensor() = default;

  // Owning allocation for x[rows, cols] quantized with `params`, on `device`. Buffers are zeroed.
  static Nvfp4Tensor allocate(int64_t rows, int64_t cols, DType source_dtype, const QuantParams& params,
                              Device device = {});
  // A view of caller memory; the parts must have the shapes allocate() would give (checked).
  static Nvfp4Tensor from_parts(const Nvfp4Meta& meta, const Nvfp4Part& rowwise, const Nvfp4Part& columnwise,
                                const TensorView& nonfinite_counts);

  // Expected geometry of each direction for a source of [rows, cols].
  static Nvfp4Geometry rowwise_geometry(int64_t rows, int64_t cols) noexcept { return {rows, cols}; }
  static Nvfp4Geometry columnwise_geometry(int64_t rows, int64_t cols) noexcept { return {cols, rows}; }

  const Nvfp4Meta& meta() const noexcept { return meta_; }
  const Nvfp4Part& rowwise() const noexcept { return rowwise_; }
  const Nvfp4Part& columnwise() const noexcept { return columnwise_; }
  const Nvfp4Part& part(Direction d) const;  // d must be kRowwise or kColumnwise, and present
  const TensorView& nonfinite_counts() const noexcept { return nonfinite_; }
  Device device() const noexcept { return device_; }
  bool empty() const noexcept { return !rowwise_.present && !columnwise_.present; }
  bool owns_memory() const noexcept { return storage_ != nullptr; }
  // Bytes of data + scales + amax over the present directions.
  std::size_t nbytes() const noexcept;

 private:
  // Records the source dtype and the params of the call that filled it.
  friend void quantize_into(const TensorView& x, const QuantParams& params, Nvfp4Tensor& out, const Target& target);

  Nvfp4Meta meta_{};
  Nvfp4Part rowwise_{};
  Nvfp4Part columnwise_{};
  TensorView nonfinite_{};
  Device device_{};
  std::shared_ptr<void> storage_;  // set when owning
};

// Owning, zero-initialized memory on a device (host memory for the CPU). Used by Nvfp4Tensor and
// by front ends that need scratch buffers.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::size_t bytes, Device device);
  void* data() const noexcept { return ptr_.get(); }
  std::size_t size() const noexcept { return bytes_; }
  Device device() const noexcept { return device_; }
  std::shared_ptr<void> share() const noexcept { return ptr_; }

 private:
  std::shared_ptr<void> ptr_;
  std::size_t bytes_ = 0;
  Device device_{};
};

}  // namespace fp4kit
