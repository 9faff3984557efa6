// tests/gemm_bound.hpp: the GEMM contract's error bound (docs/NUMERICS.md §7) and the inputs on which
// a GEMM must be exact, shared by the CPU reference's tests (tests/cpu/test_gemm_layout.cpp) and the
// CUDA GEMM's (tests/cuda/test_gemm_gpu.cu). Host memory only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "test_util.hpp"

namespace fp4kit::test {

// Sparse values on which quantization is exact: in each row, block 0 holds 10.5 (the row amax;
// S_enc = 256, that block's scale is 448 and 10.5 -> 6) and zeros; every other block holds a +-6
// (scale 256, senc_b = 1) and sparse E2M1 grid values. With alpha = (10.5/2688)^2 = 2^-16 every
// product and partial sum is exact in FP32, so the GEMM must equal a float64 matmul of the
// unquantized inputs bit for bit. Scaling a row by a power of two keeps all of this exact (its
// row-scaled amax and factor scale with it). cols: a multiple of 16.
inline std::vector<float> sparse_grid(int64_t rows, int64_t cols, uint64_t seed) {
  const float grid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  const std::vector<float> noise = normals(static_cast<size_t>(rows * cols), seed);
  std::vector<float> v(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 16; c < cols; ++c) {
      const float u = noise[static_cast<size_t>(r * cols + c)];
      if (std::fabs(u) > 1.2f) v[static_cast<size_t>(r * cols + c)] = (u < 0 ? -1 : 1) * grid[static_cast<int>(std::fabs(u) * 5) % 8];
    }
    for (int64_t b = 1; b < cols / 16; ++b) v[static_cast<size_t>(r * cols + 16 * b + (r + b) % 16)] = (r + b) % 2 ? 6.0f : -6.0f;
    v[static_cast<size_t>(r * cols + r % 16)] = 10.5f;
  }
  return v;
}

// An operand as §7 sees it: the block values A' = e2m1 * e4m3 [rows, k] (no global factor; exact
// in FP32), and each row's global factor amax / 2688 (per row when row-scaled, 1 for a dense
// operand), in float64 like the oracle's.
struct GemmValues {
  int64_t rows = 0, k = 0;
  std::vector<float> v;        // [rows, k]
  std::vector<double> factor;  // [rows]
  const float* row(int64_t r) const { return v.data() + r * k; }
};

// The values of a host operand (an NVFP4 direction, or a dense F32/F16/BF16 matrix [rows, k]).
inline GemmValues gemm_values(const GemmOperand& op) {
  GemmValues g;
  if (op.nvfp4 != nullptr) {
    const Nvfp4Part& p = op.nvfp4->part(op.direction);
    const bool row_scaled = op.nvfp4->meta().params.row_scaled;
    const float* amax = p.amax.ptr<const float>();
    g.rows = p.geometry.rows;
    g.k = p.geometry.padded_cols();
    g.v.resize(static_cast<size_t>(g.rows * g.k));
    g.factor.resize(static_cast<size_t>(g.rows));
    for (int64_t r = 0; r < g.rows; ++r) {
      g.factor[static_cast<size_t>(r)] = static_cast<double>(row_scaled ? amax[r] : amax[0]) / 2688.0;
      for (int64_t k = 0; k < g.k; ++k) {
        g.v[static_cast<size_t>(r * g.k + k)] = e2m1_to_float(nibble(p, r, k)) * e4m3_to_float(scale(p, r, k / 16));
      }
    }
    return g;
  }
  const TensorView& m = op.dense;  // rank 2, rows strides[0] elements apart
  g.rows = m.shape[0];
  g.k = m.shape[1];
  g.v.resize(static_cast<size_t>(g.rows * g.k));
  g.factor.assign(static_cast<size_t>(g.rows), 1.0);
  for (int64_t r = 0; r < g.rows; ++r) {
    for (int64_t k = 0; k < g.k; ++k) {
      const int64_t i = r * m.strides[0] + k;
      float x;
      if (m.dtype == DType::kF32) x = m.ptr<const float>()[i];
      else if (m.dtype == DType::kBF16) x = bf16_to_float(m.ptr<const uint16_t>()[i]);
      else x = fp16_to_float(m.ptr<const uint16_t>()[i]);
      g.v[static_cast<size_t>(r * g.k + k)] = x;
    }
  }
  return g;
}

// |alpha(m)| * sum_k |A'[m, k] B'[n, k]| for every (m, n), [a.rows, b.rows] row-major, alpha(m) the
// global factors times the user's alpha (NaN where a block value is NaN).
inline std::vector<double> gemm_abs_sums(const GemmValues& a, const GemmValues& b, float user_alpha) {
  std::vector<double> s(static_cast<size_t>(a.rows * b.rows));
  for (int64_t n = 0; n < b.rows; ++n) {  // n outer: B's row stays in cache while A's rows stream
    const float* bn = b.row(n);
    for (int64_t m = 0; m < a.rows; ++m) {
      const float* am = a.row(m);
      double part[4] = {0, 0, 0, 0};  // four chains: the order does not matter for a bound
      int64_t k = 0;
      for (; k + 4 <= a.k; k += 4) {
        for (int j = 0; j < 4; ++j) part[j] += std::fabs(static_cast<double>(am[k + j]) * bn[k + j]);
      }
      for (; k < a.k; ++k) part[0] += std::fabs(static_cast<double>(am[k]) * bn[k]);
      const double alpha = std::fabs(a.factor[static_cast<size_t>(m)] * b.factor[static_cast<size_t>(n)] * user_alpha);
      s[static_cast<size_t>(m * b.rows + n)] = alpha * ((part[0] + part[1]) + (part[2] + part[3]));
    }
  }
  return s;
}

// The spacing of `dtype`'s values at magnitude x (its subnormal spacing below the normal range).
inline double output_ulp(DType dtype, double x) {
  const int mantissa = dtype == DType::kBF16 ? 7 : dtype == DType::kF16 ? 10 : 23;
  const int min_exp = dtype == DType::kF16 ? -14 : -126;
  const int e = x > 0 ? std::max(std::ilogb(x), min_exp) : min_exp;
  return std::ldexp(1.0, e - mantissa);
}

// The §7 bound on |D - D_f64| for one element whose oracle (in D's dtype) is `oracle`:
//   E = 2^-20 * K * |alpha(m)| sum_k |A'B'|       the FP32 accumulation, in any order or split
//     + 2^-21 * (|alpha(m)| sum_k |A'B'| + |beta C| + |bias|)
//         the FP32 epilogue: alpha(m) (up to four roundings), alpha * acc, + beta * C (two), + bias,
//         each within 2^-24 of a magnitude below that sum
//   plus the output dtype's rounding, which both sides do (the oracle after its own FP32 one):
//   two output ulps at |oracle| + E (half an ulp per side, with room for a value at a binade edge)
//   and 2^-24 |oracle|.
inline double gemm_bound(int64_t k, double abs_sum, double epilogue_abs, double oracle, DType out) {
  const double e = std::ldexp(1.0, -20) * static_cast<double>(k) * abs_sum + std::ldexp(1.0, -21) * (abs_sum + epilogue_abs);
  return e + output_ulp(out, 2.0 * (std::fabs(oracle) + e)) + std::ldexp(std::fabs(oracle), -24);
}

// One check of a computed D against the float64 oracle, element by element.
struct GemmBoundCheck {
  int64_t rows = 0, cols = 0;  // the checked part of D
  int64_t k = 0;               // the GEMM's K
  DType out = DType::kF32;     // D's dtype
  const float* got = nullptr;              // [rows, cols]: D as computed, widened to float
  const float* oracle = nullptr;           // [rows, cols]: the oracle in D's dtype, widened
  const double* abs_sums = nullptr;        // [rows, cols]: gemm_abs_sums
  const double* epilogue_abs = nullptr;    // [rows, cols]: |beta C| + |bias|; null when neither
  const int64_t* row_ids = nullptr;        // D's row of each checked row (sampled rows); null: 0..rows-1
};

// Every element: NaN where the oracle is NaN (only there), the oracle's value where it is infinite,
// within gemm_bound elsewhere. A failure names the count and the worst elements.
inline testing::AssertionResult within_gemm_bound(const GemmBoundCheck& c) {
  struct Bad {
    int64_t r, n;
    double got, want, err, bound;
  };
  std::vector<Bad> bad;
  int64_t failures = 0;
  double worst_ratio = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t n = 0; n < c.cols; ++n) {
      const size_t i = static_cast<size_t>(r * c.cols + n);
      const double got = c.got[i], want = c.oracle[i];
      bool ok;
      double err = std::fabs(got - want), bound = 0;
      if (std::isnan(want) || std::isinf(want)) {
        ok = std::isnan(want) ? std::isnan(got) : got == want;
      } else {
        bound = gemm_bound(c.k, c.abs_sums[i], c.epilogue_abs ? c.epilogue_abs[i] : 0.0, want, c.out);
        ok = std::isfinite(got) && err <= bound;
        if (ok && bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
      }
      if (ok) continue;
      ++failures;
      bad.push_back({c.row_ids ? c.row_ids[r] : r, n, got, want, err, bound});
      // Keep the worst few: errors beyond the bound first (a wrong NaN counts as infinite).
      std::sort(bad.begin(), bad.end(), [](const Bad& x, const Bad& y) {
        const double rx = std::isnan(x.err) || x.bound == 0 ? INFINITY : x.err / x.bound;
        const double ry = std::isnan(y.err) || y.bound == 0 ? INFINITY : y.err / y.bound;
        return rx > ry;
      });
      if (bad.size() > 6) bad.pop_back();
    }
  }
  if (failures == 0) {
    return testing::AssertionSuccess() << "largest error " << worst_ratio << " of the bound";
  }
  std::ostringstream os;
  os.precision(9);
  os << failures << " of " << c.rows * c.cols << " elements (" << dtype_name(c.out) << ", K=" << c.k
     << ") outside the NUMERICS §7 bound of the float64 oracle; the worst:";
  for (const Bad& b : bad) {
    os << "\n    (" << b.r << ", " << b.n << "): got " << b.got << ", oracle " << b.want << ", |error| " << b.err
       << ", bound " << b.bound;
  }
  return testing::AssertionFailure() << os.str();
}

}  // namespace fp4kit::test
