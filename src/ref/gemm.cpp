// Reference GEMM (NUMERICS §7): D[m, n] = alpha(m) * sum_k A'[m, k] B'[n, k] (+ beta C) (+ bias[n]),
// A' and B' the block values e2m1 * e4m3 without the global factor (exact in FP32), and
// alpha(m) = (amax_A[m] / 2688) * (amax_B / 2688) * user alpha.
//   Accumulation::kF32: FP32 sums in increasing k, then alpha * acc, + beta * C, + bias, each one
//     FP32 rounding, then the output dtype's RNE.
//   Accumulation::kF64: the same formula entirely in float64 (the oracle of the §7 bound); the
//     result is rounded to FP32 and then to the output dtype.
#include <vector>

#include "core/nvfp4_math.hpp"
#include "ref/fp_env.hpp"
#include "ref/ref.hpp"

namespace fp4kit::ref {

namespace {

// An operand as FP32 block values [rows][k] plus the amax behind each row's global factor
// amax / 2688 (all rows equal unless row-scaled); dense operands have no global factor.
struct Expanded {
  std::vector<float> v;
  std::vector<float> amax;  // empty for dense operands
  float factor(int64_t r) const { return amax.empty() ? 1.0f : amax[static_cast<size_t>(r)] / kGlobalScaleNumerator; }
  double factor64(int64_t r) const { return amax.empty() ? 1.0 : static_cast<double>(amax[static_cast<size_t>(r)]) / 2688.0; }
};

Expanded expand(const GemmInput& in) {
  Expanded e;
  e.v.resize(static_cast<size_t>(in.rows * in.k));
  if (in.part == nullptr) {
    for (int64_t r = 0; r < in.rows; ++r)
      for (int64_t k = 0; k < in.k; ++k) e.v[static_cast<size_t>(r * in.k + k)] = detail::load_float(in.dense, r, k);
    return e;
  }
  const Nvfp4Part& p = *in.part;
  const bool row_scaled = in.nvfp4->meta().params.row_scaled;
  const float* amax = p.amax.ptr<const float>();
  e.amax.resize(static_cast<size_t>(in.rows));
  for (int64_t r = 0; r < in.rows; ++r) {
    e.amax[static_cast<size_t>(r)] = row_scaled ? amax[r] : amax[0];
    const uint8_t* data = static_cast<const uint8_t*>(p.data.data) + r * p.data.strides[0];
    const uint8_t* scales = static_cast<const uint8_t*>(p.scales.data) + r * p.scales.strides[0];
    for (int64_t k = 0; k < in.k; ++k) {
      const uint8_t code = (k & 1) ? (data[k / 2] >> 4) : (data[k / 2] & 0xF);
      e.v[static_cast<size_t>(r * in.k + k)] = e2m1_to_float(code) * e4m3_to_float(scales[k / 16]);
    }
  }
  return e;
}

}  // namespace

void gemm(const GemmInput& a, const GemmInput& b, const Matrix& d, const GemmOptions& o) {
  const IeeeFpScope ieee;
  const Expanded ea = expand(a);
  const Expanded eb = expand(b);
  const int64_t K = a.k;
  const bool has_c = o.beta != 0.0f;  // BLAS convention: C is not read when beta == 0
  Matrix c{};
  if (has_c) c = detail::as_matrix(o.c, "gemm: c");
  Matrix bias{};
  const bool has_bias = o.bias.data != nullptr;
  if (has_bias) bias = detail::as_matrix(o.bias, "gemm: bias");
  for (int64_t m = 0; m < a.rows; ++m) {
    const float* arow = &ea.v[static_cast<size_t>(m * K)];
    for (int64_t n = 0; n < b.rows; ++n) {
      const float* brow = &eb.v[static_cast<size_t>(n * K)];
      float out;
      if (o.accumulation == Accumulation::kF64) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(arow[k]) * static_cast<double>(brow[k]);
        const double alpha = ea.factor64(m) * eb.factor64(n) * static_cast<double>(o.alpha);
        double v = alpha * acc;
        if (has_c) v += static_cast<double>(o.beta) * static_cast<double>(detail::load_float(c, m, n));
        if (has_bias) v += static_cast<double>(detail::load_float(bias, 0, n));
        out = static_cast<float>(v);
      } else {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += arow[k] * brow[k];
        const float alpha = (ea.factor(m) * eb.factor(n)) * o.alpha;
        float v = alpha * acc;
        if (has_c) v += o.beta * detail::load_float(c, m, n);
        if (has_bias) v += detail::load_float(bias, 0, n);
        out = v;
      }
      detail::store_float(d, m, n, out);
    }
  }
}

}  // namespace fp4kit::ref
