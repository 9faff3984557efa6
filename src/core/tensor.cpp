#include "fp4kit/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.hpp"
#include "core/memory.hpp"
#include "fp4kit/layout.hpp"

namespace fp4kit {

using detail::cat;
using detail::fail;

TensorView TensorView::matrix(void* data, DType dtype, int64_t rows, int64_t cols, Device device, int64_t row_stride) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.rank = 2;
  v.shape[0] = rows;
  v.shape[1] = cols;
  v.strides[0] = row_stride < 0 ? cols : row_stride;
  v.strides[1] = 1;
  v.device = device;
  return v;
}

TensorView TensorView::vector(void* data, DType dtype, int64_t n, Device device) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.rank = 1;
  v.shape[0] = n;
  v.strides[0] = 1;
  v.device = device;
  return v;
}

int64_t TensorView::numel() const noexcept {
  if (rank <= 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < rank && i < kMaxRank; ++i) n *= shape[i];
  return n;
}

bool TensorView::is_contiguous() const noexcept {
  int64_t expected = 1;
  for (int i = rank - 1; i >= 0; --i) {
    if (shape[i] > 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::string TensorView::describe() const {
  std::string s = cat(dtype_name(dtype), "[");
  for (int i = 0; i < rank && i < kMaxRank; ++i) s += cat(i ? ", " : "", shape[i]);
  return s + "] " + detail::describe_device(device);
}

// ----------------------------------------------------------------------------------------------

Buffer::Buffer(std::size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.type == DeviceType::kCpu) {
    // 64-byte alignment: a cache line, and enough for any vector load a backend does.
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    if (rounded && !p) {
      fail(ErrorCode::kOutOfMemory, cat("could not allocate ", bytes, " bytes of host memory"));
    }
    if (p) std::memset(p, 0, rounded);
    ptr_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    const int index = device.index;
    void* p = bytes ? detail::device_alloc(bytes, index) : nullptr;
    ptr_ = std::shared_ptr<void>(p, [index](void* q) { detail::device_free(q, index); });
  }
}

// ----------------------------------------------------------------------------------------------

namespace {

struct PartSizes {
  int64_t data_bytes, scale_bytes, amax_count, swizzled_bytes;
};

PartSizes part_sizes(const Nvfp4Geometry& g, const QuantParams& params) {
  return {g.rows * g.data_bytes_per_row(), g.rows * g.blocks_per_row(), params.row_scaled ? g.rows : 1,
          params.swizzled_scales ? swizzled_scale_bytes(g.rows, g.blocks_per_row()) : 0};
}

std::size_t align64(std::size_t x) { return (x + 63) / 64 * 64; }

// Bytes place_part() uses for one part.
std::size_t part_bytes(const Nvfp4Geometry& g, const QuantParams& params) {
  const PartSizes s = part_sizes(g, params);
  return align64(static_cast<std::size_t>(s.data_bytes)) + align64(static_cast<std::size_t>(s.scale_bytes)) +
         align64(static_cast<std::size_t>(s.amax_count) * sizeof(float)) + align64(static_cast<std::size_t>(s.swizzled_bytes));
}

// Lays out one part inside `base` at `offset` (64-byte aligned pieces).
Nvfp4Part place_part(char* base, std::size_t& offset, const Nvfp4Geometry& g, const QuantParams& params, Device device) {
  const auto align = align64;
  const PartSizes s = part_sizes(g, params);
  Nvfp4Part p;
  p.geometry = g;
  p.present = true;
  p.data = TensorView::matrix(base + offset, DType::kU8, g.rows, g.data_bytes_per_row(), device);
  offset = align(offset + static_cast<std::size_t>(s.data_bytes));
  p.scales = TensorView::matrix(base + offset, DType::kE4M3, g.rows, g.blocks_per_row(), device);
  offset = align(offset + static_cast<std::size_t>(s.scale_bytes));
  p.amax = TensorView::vector(base + offset, DType::kF32, s.amax_count, device);
  offset = align(offset + static_cast<std::size_t>(s.amax_count) * sizeof(float));
  if (params.swizzled_scales) {
    p.scales_swizzled = TensorView::vector(base + offset, DType::kU8, s.swizzled_bytes, device);
    offset = align(offset + static_cast<std::size_t>(s.swizzled_bytes));
  }
  return p;
}

void check_part(const Nvfp4Part& p, const Nvfp4Geometry& g, const QuantParams& params, Device device, const char* name) {
  const bool row_scaled = params.row_scaled;
  const std::string what = cat("Nvfp4Tensor ", name);
  const auto check_matrix = [&](const TensorView& v, const char* field, DType dtype, int64_t rows, int64_t cols) {
    const std::string w = what + "." + field;
    if (v.dtype != dtype) fail(ErrorCode::kDtypeMismatch, cat(w, " must be ", dtype_name(dtype), ", got ", dtype_name(v.dtype)));
    const detail::Matrix m = detail::as_matrix(v, w.c_str());
    detail::check_matrix_shape(m, w.c_str(), rows, cols);
    if (!(v.device == device)) fail(ErrorCode::kInvalidArgument, cat(w, " is on another device than the tensor"));
  };
  check_matrix(p.data, "data", DType::kU8, g.rows, g.data_bytes_per_row());
  check_matrix(p.scales, "scales", DType::kE4M3, g.rows, g.blocks_per_row());
  detail::check_vector(p.amax, (what + ".amax").c_str(), DType::kF32, row_scaled ? g.rows : 1, device);
  if (params.swizzled_scales) {
    detail::check_vector(p.scales_swizzled, (what + ".scales_swizzled").c_str(), DType::kU8,
                         swizzled_scale_bytes(g.rows, g.blocks_per_row()), device);
  } else if (p.scales_swizzled.data != nullptr) {
    fail(ErrorCode::kInvalidArgument, cat(what, ".scales_swizzled is set but params.swizzled_scales is false"),
         "set params.swizzled_scales, or leave the swizzled view empty");
  }
  if (p.geometry.rows != g.rows || p.geometry.cols != g.cols) {
    fail(ErrorCode::kShapeMismatch, cat(what, " geometry is [", p.geometry.rows, ", ", p.geometry.cols,
                                        "], expected [", g.rows, ", ", g.cols, "]"));
  }
}

}  // namespace

Nvfp4Tensor Nvfp4Tensor::allocate(int64_t rows, int64_t cols, DType source_dtype, const QuantParams& params,
                                  Device device) {
  if (rows < 0 || cols < 0) fail(ErrorCode::kShapeMismatch, cat("Nvfp4Tensor::allocate: negative shape [", rows, ", ", cols, "]"));
  Nvfp4Tensor t;
  t.meta_ = Nvfp4Meta{rows, cols, source_dtype, params};
  t.device_ = device;
  const bool rw = has_rowwise(params.direction);
  const bool cw = has_columnwise(params.direction);
  // One allocation for everything: parts, then the two non-finite counters.
  std::size_t total = 0;
  QuantParams cw_params = params;
  cw_params.row_scaled = false;  // the columnwise part never is
  if (rw) total += part_bytes(rowwise_geometry(rows, cols), params);
  if (cw) total += part_bytes(columnwise_geometry(rows, cols), cw_params);
  const std::size_t counts_offset = total;
  total += 64;
  Buffer buffer(total, device);
  char* base = static_cast<char*>(buffer.data());
  std::size_t offset = 0;
  if (rw) t.rowwise_ = place_part(base, offset, rowwise_geometry(rows, cols), params, device);
  if (cw) t.columnwise_ = place_part(base, offset, columnwise_geometry(rows, cols), cw_params, device);
  t.nonfinite_ = TensorView::vector(base + counts_offset, DType::kU32, 2, device);
  t.storage_ = buffer.share();
  return t;
}

Nvfp4Tensor Nvfp4Tensor::from_parts(const Nvfp4Meta& meta, const Nvfp4Part& rowwise, const Nvfp4Part& columnwise,
                                    const TensorView& nonfinite_counts) {
  const bool rw = has_rowwise(meta.params.direction);
  const bool cw = has_columnwise(meta.params.direction);
  if (rw != rowwise.present || cw != columnwise.present) {
    fail(ErrorCode::kInvalidArgument,
         cat("Nvfp4Tensor::from_parts: params.direction is ", direction_name(meta.params.direction),
             " but the parts present are", rowwise.present ? " rowwise" : "", columnwise.present ? " columnwise" : "",
             rowwise.present || columnwise.present ? "" : " none"));
  }
  const Device device = nonfinite_counts.device;
  QuantParams cw_params = meta.params;
  cw_params.row_scaled = false;
  if (rw) check_part(rowwise, rowwise_geometry(meta.rows, meta.cols), meta.params, device, "rowwise");
  if (cw) check_part(columnwise, columnwise_geometry(meta.rows, meta.cols), cw_params, device, "columnwise");
  detail::check_vector(nonfinite_counts, "Nvfp4Tensor nonfinite_counts", DType::kU32, 2, device);
  Nvfp4Tensor t;
  t.meta_ = meta;
  t.rowwise_ = rowwise;
  t.columnwise_ = columnwise;
  if (!rw) t.rowwise_ = {};
  if (!cw) t.columnwise_ = {};
  t.nonfinite_ = nonfinite_counts;
  t.device_ = device;
  return t;
}

const Nvfp4Part& Nvfp4Tensor::part(Direction d) const {
  if (d == Direction::kBoth) {
    fail(ErrorCode::kInvalidArgument, "Nvfp4Tensor::part: ask for one direction, rowwise or columnwise");
  }
  const Nvfp4Part& p = d == Direction::kRowwise ? rowwise_ : columnwise_;
  if (!p.present) {
    fail(ErrorCode::kInvalidArgument, cat("the NVFP4 tensor has no ", direction_name(d), " output"),
         cat("quantize with direction ", direction_name(d), " or both"));
  }
  return p;
}

std::size_t Nvfp4Tensor::nbytes() const noexcept {
  std::size_t n = 0;
  for (const Nvfp4Part* p : {&rowwise_, &columnwise_}) {
    if (p->present) n += p->data.nbytes() + p->scales.nbytes() + p->amax.nbytes() +
                        (p->scales_swizzled.data ? p->scales_swizzled.nbytes() : 0);
  }
  return n;
}

}  // namespace fp4kit
