// Reference quantization (NUMERICS §2-§6, §8, §9). Each direction is quantized from its "oriented"
// source: x itself for rowwise; x^T zero-padded to a multiple of 16 along R (and transformed by the
// RHT, then rounded to the source dtype) for columnwise.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/nvfp4_math.hpp"
#include "core/philox.hpp"
#include "ref/fp_env.hpp"
#include "ref/ref.hpp"

namespace fp4kit::ref {

namespace {

// A dense row-major FP32 matrix: the oriented source of one direction.
struct Oriented {
  int64_t rows = 0;
  int64_t cols = 0;  // a multiple of 16 (padded)
  std::vector<float> v;
  float at(int64_t r, int64_t c) const { return v[static_cast<size_t>(r * cols + c)]; }
};

// Rounds v to the source dtype, as the transformed tensor is stored in it (NUMERICS §5).
float round_to(DType dtype, float v) {
  switch (dtype) {
    case DType::kBF16: return bf16_to_float(float_to_bf16(v));
    case DType::kF16: return fp16_to_float(float_to_fp16(v));
    default: return v;
  }
}

Oriented rowwise_source(const Matrix& x) {
  Oriented o{x.rows, x.cols, std::vector<float>(static_cast<size_t>(x.rows * x.cols))};
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c) o.v[static_cast<size_t>(r * x.cols + c)] = detail::load_float(x, r, c);
  return o;
}

Oriented columnwise_source(const Matrix& x, const QuantParams& p) {
  const Nvfp4Geometry g = Nvfp4Tensor::columnwise_geometry(x.rows, x.cols);
  Oriented o{g.rows, g.padded_cols(), std::vector<float>(static_cast<size_t>(g.rows * g.padded_cols()), 0.0f)};
  for (int64_t t = 0; t < x.rows; ++t)
    for (int64_t c = 0; c < x.cols; ++c) o.v[static_cast<size_t>(c * o.cols + t)] = detail::load_float(x, t, c);
  if (p.rht) {
    for (int64_t c = 0; c < o.rows; ++c) {
      for (int64_t t0 = 0; t0 < o.cols; t0 += 16) {
        float* group = &o.v[static_cast<size_t>(c * o.cols + t0)];
        detail::rht16(group, p.rht_mask);
        for (int i = 0; i < 16; ++i) group[i] = round_to(x.dtype, group[i]);
      }
    }
  }
  return o;
}

// Finite max and a non-finite flag over rows [r0, r1) x cols [c0, c1) of the oriented source.
struct BlockStats {
  float bamax = 0.0f;
  bool nonfinite = false;
};
BlockStats block_stats(const Oriented& o, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  BlockStats s;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const float v = o.at(r, c);
      if (!is_finite(v)) s.nonfinite = true;
      else s.bamax = max_f(s.bamax, abs_f(v));
    }
  }
  return s;
}

void quantize_direction(const Oriented& o, const QuantParams& p, bool columnwise, const Nvfp4Part& out) {
  const int64_t blocks = o.cols / 16;
  // Global amax over finite values: per row (row-scaled) or over the whole oriented tensor.
  float* amax = out.amax.ptr<float>();
  if (p.row_scaled) {
    for (int64_t r = 0; r < o.rows; ++r) amax[r] = block_stats(o, r, r + 1, 0, o.cols).bamax;
  } else {
    amax[0] = block_stats(o, 0, o.rows, 0, o.cols).bamax;
  }
  for (int64_t r = 0; r < o.rows; ++r) {
    const detail::GlobalScale g = detail::global_scale(p.row_scaled ? amax[r] : amax[0]);
    uint8_t* data = static_cast<uint8_t*>(out.data.data) + r * out.data.strides[0];
    uint8_t* scales = static_cast<uint8_t*>(out.scales.data) + r * out.scales.strides[0];
    for (int64_t b = 0; b < blocks; ++b) {
      // 1D: the 16 elements of the block. 2D: the 16x16 tile that holds them (rows clipped to the
      // tensor: a partial tile has fewer rows, NUMERICS §4).
      const int64_t r0 = p.block == BlockScaling::k2D ? r / 16 * 16 : r;
      const int64_t r1 = p.block == BlockScaling::k2D ? std::min(r0 + 16, o.rows) : r + 1;
      const BlockStats s = block_stats(o, r0, r1, 16 * b, 16 * b + 16);
      uint8_t* d = data + 8 * b;
      if (s.nonfinite) {  // §9: NaN scale, zero data: the block dequantizes to NaN
        scales[b] = kE4m3Nan;
        std::memset(d, 0, 8);
        continue;
      }
      const uint8_t sb = detail::block_scale_byte(s.bamax, g);
      const float senc = detail::block_encode_scale(sb, g);
      scales[b] = sb;
      detail::Philox4x32 random{};
      if (p.rounding == Rounding::kStochastic) {
        random = detail::sr_block_random(p.sr_seed, p.sr_offset, static_cast<uint64_t>(r * blocks + b), columnwise);
      }
      for (int j = 0; j < 16; j += 2) {
        uint8_t q[2];
        for (int k = 0; k < 2; ++k) {
          const float v = o.at(r, 16 * b + j + k);
          q[k] = p.rounding == Rounding::kStochastic ? detail::quantize_sr(v, senc, detail::sr_byte(random, j + k))
                                                     : detail::quantize_rne(v, senc);
        }
        d[j / 2] = static_cast<uint8_t>(q[0] | (q[1] << 4));  // element 2i in the low nibble
      }
    }
  }
}

}  // namespace

void quantize(const Matrix& x, const QuantParams& params, const Nvfp4Tensor& out) {
  const IeeeFpScope ieee;
  const AmaxResult stats = amax(x);
  uint32_t* counts = out.nonfinite_counts().ptr<uint32_t>();
  counts[0] = stats.nan_count;
  counts[1] = stats.inf_count;
  if (has_rowwise(params.direction)) quantize_direction(rowwise_source(x), params, false, out.rowwise());
  if (has_columnwise(params.direction)) quantize_direction(columnwise_source(x, params), params, true, out.columnwise());
  if (params.swizzled_scales) {
    for (const Nvfp4Part* part : {&out.rowwise(), &out.columnwise()}) {
      if (part->present) swizzle_scales(detail::as_matrix(part->scales, "quantize: scales"), part->scales_swizzled.ptr<uint8_t>());
    }
  }
}

// ---------------------------------------------------------------------------------------------

void hadamard(const Matrix& x, const Matrix& y, uint16_t mask, bool transpose) {
  const IeeeFpScope ieee;
  if (!transpose) {
    for (int64_t r = 0; r < x.rows; ++r) {
      for (int64_t c0 = 0; c0 < x.cols; c0 += 16) {
        float g[16];
        for (int i = 0; i < 16; ++i) g[i] = detail::load_float(x, r, c0 + i);
        detail::rht16(g, mask);
        for (int i = 0; i < 16; ++i) detail::store_float(y, r, c0 + i, g[i]);
      }
    }
    return;
  }
  QuantParams p;
  p.rht = true;
  p.rht_mask = mask;
  const Oriented o = columnwise_source(x, p);  // already rounded to x's dtype
  for (int64_t r = 0; r < o.rows; ++r)
    for (int64_t c = 0; c < o.cols; ++c) detail::store_float(y, r, c, o.at(r, c));
}

}  // namespace fp4kit::ref
