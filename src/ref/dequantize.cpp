// Reference dequantization (NUMERICS §2): x' = e2m1(q) * float(sdec_b) * S_dec, left to right in
// FP32, and for a columnwise RHT tensor optionally the inverse transform (docs/NUMERICS.md §5).
#include <vector>

#include "core/nvfp4_math.hpp"
#include "fp4kit/layout.hpp"
#include "ref/fp_env.hpp"
#include "ref/ref.hpp"

namespace fp4kit::ref {

void dequantize(const Nvfp4Tensor& q, Direction direction, const Matrix& out, const DequantizeOptions& options) {
  const IeeeFpScope ieee;
  const Nvfp4Part& part = q.part(direction);
  const QuantParams& p = q.meta().params;
  const bool columnwise = direction == Direction::kColumnwise;
  const bool inverse_rht = columnwise && p.rht && options.undo_rht;
  const int64_t rows = part.geometry.rows;
  const int64_t padded = part.geometry.padded_cols();
  const float* amax = part.amax.ptr<const float>();
  std::vector<float> row(static_cast<size_t>(padded));
  for (int64_t r = 0; r < rows; ++r) {
    const detail::GlobalScale g = detail::global_scale(p.row_scaled ? amax[r] : amax[0]);
    const uint8_t* data = static_cast<const uint8_t*>(part.data.data) + r * part.data.strides[0];
    const uint8_t* scales = static_cast<const uint8_t*>(part.scales.data) + r * part.scales.strides[0];
    for (int64_t c = 0; c < padded; ++c) {
      const uint8_t code = (c & 1) ? (data[c / 2] >> 4) : (data[c / 2] & 0xF);
      row[static_cast<size_t>(c)] = e2m1_to_float(code) * e4m3_to_float(scales[c / 16]) * g.s_dec;
    }
    if (inverse_rht) {
      for (int64_t c0 = 0; c0 < padded; c0 += 16) detail::rht16_inverse(&row[static_cast<size_t>(c0)], p.rht_mask);
    }
    for (int64_t c = 0; c < out.cols; ++c) detail::store_float(out, r, c, row[static_cast<size_t>(c)]);
  }
}

void swizzle_scales(const Matrix& compact, uint8_t* swizzled) {
  const int64_t bytes = swizzled_scale_bytes(compact.rows, compact.cols);
  for (int64_t i = 0; i < bytes; ++i) swizzled[i] = 0;  // padding is zero-filled
  for (int64_t r = 0; r < compact.rows; ++r)
    for (int64_t c = 0; c < compact.cols; ++c)
      swizzled[swizzled_scale_offset(r, c, compact.cols)] = compact.row<const uint8_t>(r)[c];
}

void unswizzle_scales(const uint8_t* swizzled, const Matrix& compact) {
  for (int64_t r = 0; r < compact.rows; ++r)
    for (int64_t c = 0; c < compact.cols; ++c)
      compact.row<uint8_t>(r)[c] = swizzled[swizzled_scale_offset(r, c, compact.cols)];
}

}  // namespace fp4kit::ref
