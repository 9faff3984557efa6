// The reference GEMM (NUMERICS §7) and the swizzled scale layout (§10).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gemm_bound.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

using test::HostMatrix;
using test::sparse_grid;

double dot64(const HostMatrix& a, int m, const HostMatrix& b, int n) {
  double s = 0;
  for (int k = 0; k < a.cols; ++k) s += double(a.get(m, k)) * b.get(n, k);
  return s;
}

TEST(Gemm, ExactOnGridValuedSparseInputs) {
  const int M = 7, N = 24, K = 80;
  HostMatrix a(M, K, sparse_grid(M, K, 1)), b(N, K, sparse_grid(N, K, 2));
  const Nvfp4Tensor qa = quantize(a.view(), QuantParams{});
  const Nvfp4Tensor qb = quantize(b.view(), QuantParams{});
  HostMatrix d32(M, N), d64(M, N);
  gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), d32.view());
  GemmOptions o64;
  o64.accumulation = Accumulation::kF64;
  gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), d64.view(), o64);
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      const double want = dot64(a, m, b, n);
      EXPECT_EQ(double(d32.get(m, n)), want) << m << "," << n;
      EXPECT_EQ(double(d64.get(m, n)), want) << m << "," << n;
    }
  }
}

TEST(Gemm, Fp32AccumulationWithinTheContractBound) {
  // |D - D_ref| <= 2^-20 * K * sum_k |A'B'| * |alpha| against the float64 reference (§7).
  const int M = 9, N = 33, K = 512;
  HostMatrix a(M, K, test::normals(M * K, 3)), b(N, K, test::normals(N * K, 4, 0.02f));
  const Nvfp4Tensor qa = quantize(a.view(), QuantParams{});
  const Nvfp4Tensor qb = quantize(b.view(), QuantParams{});
  HostMatrix d(M, N), ref(M, N);
  gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), d.view());
  GemmOptions o64;
  o64.accumulation = Accumulation::kF64;
  gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), ref.view(), o64);
  const std::vector<double> abs_sums = test::gemm_abs_sums(test::gemm_values(GemmOperand::quantized(qa)),
                                                           test::gemm_values(GemmOperand::quantized(qb)), 1.0f);
  test::GemmBoundCheck check;
  check.rows = M;
  check.cols = N;
  check.k = K;
  check.got = reinterpret_cast<const float*>(d.bytes.data());
  check.oracle = reinterpret_cast<const float*>(ref.bytes.data());
  check.abs_sums = abs_sums.data();
  EXPECT_TRUE(test::within_gemm_bound(check));
  // The NVFP4 product approximates the unquantized one: relative Frobenius error of a few percent.
  double e2 = 0, s2 = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) e2 += std::pow(ref.get(m, n) - dot64(a, m, b, n), 2), s2 += std::pow(dot64(a, m, b, n), 2);
  EXPECT_LT(std::sqrt(e2 / s2), 0.2);
}

TEST(Gemm, RowScaledAlphaBetaBiasAndOutputs) {
  const int M = 4, N = 16, K = 32;
  std::vector<float> av = sparse_grid(M, K, 5);
  for (int k = 0; k < K; ++k) av[static_cast<size_t>(K + k)] *= 2.0f;  // row 1 amax 21
  HostMatrix a(M, K, av), b(N, K, sparse_grid(N, K, 6));
  QuantParams rs;
  rs.row_scaled = true;
  const Nvfp4Tensor qa = quantize(a.view(), rs);
  const Nvfp4Tensor qb = quantize(b.view(), QuantParams{});
  HostMatrix c(M, N, test::normals(M * N, 8));
  std::vector<float> bias(N);
  for (int n = 0; n < N; ++n) bias[static_cast<size_t>(n)] = 0.125f * n;
  GemmOptions o;
  o.alpha = 0.5f;
  o.beta = 2.0f;
  o.c = c.view();
  o.bias = TensorView::vector(bias.data(), DType::kF32, N);
  for (DType out : {DType::kF32, DType::kBF16, DType::kF16}) {
    HostMatrix d(M, N, out);
    gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), d.view(), o);
    for (int m = 0; m < M; ++m) {
      for (int n = 0; n < N; ++n) {
        const float acc = static_cast<float>(dot64(a, m, b, n));  // exact (grid values)
        const float want = (0.5f * acc + 2.0f * c.get(m, n)) + bias[static_cast<size_t>(n)];
        HostMatrix w(1, 1, out);
        w.set(0, 0, want);
        EXPECT_EQ(d.get(m, n), w.get(0, 0)) << dtype_name(out) << " " << m << "," << n;
      }
    }
  }
}

TEST(Gemm, WeightOnlyBf16ActivationsAndColumnwiseOperands) {
  // W4A16: A dense bf16; and the wgrad form: both operands columnwise (K = padded token count).
  const int M = 5, N = 16, K = 48;
  HostMatrix a(M, K, sparse_grid(M, K, 9), DType::kBF16), b(N, K, sparse_grid(N, K, 10));
  const Nvfp4Tensor qb = quantize(b.view(), QuantParams{});
  HostMatrix d(M, N);
  gemm(GemmOperand::matrix(a.view()), GemmOperand::quantized(qb), d.view());
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) EXPECT_EQ(double(d.get(m, n)), dot64(a, m, b, n));

  const int T = 20;  // tokens, not a multiple of 16
  HostMatrix dy(T, 16, test::normals(T * 16, 11)), x(T, 32, test::normals(T * 32, 12));
  QuantParams cw;
  cw.direction = Direction::kColumnwise;
  const Nvfp4Tensor qdy = quantize(dy.view(), cw), qx = quantize(x.view(), cw);
  HostMatrix dw(16, 32);
  gemm(GemmOperand::quantized(qdy, Direction::kColumnwise), GemmOperand::quantized(qx, Direction::kColumnwise), dw.view());
  double e2 = 0, s2 = 0;
  for (int n = 0; n < 16; ++n) {
    for (int k = 0; k < 32; ++k) {
      double want = 0;
      for (int t = 0; t < T; ++t) want += double(dy.get(t, n)) * x.get(t, k);
      e2 += std::pow(dw.get(n, k) - want, 2), s2 += want * want;
    }
  }
  EXPECT_LT(std::sqrt(e2 / s2), 0.25);
}

TEST(Gemm, NanScaleBlocksPoisonOnlyTheirOutputs) {
  const int M = 2, N = 2, K = 32;
  HostMatrix a(M, K, sparse_grid(M, K, 13)), b(N, K, sparse_grid(N, K, 14));
  a.set(0, 20, std::nanf(""));
  const Nvfp4Tensor qa = quantize(a.view(), QuantParams{}), qb = quantize(b.view(), QuantParams{});
  HostMatrix d(M, N);
  gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), d.view());
  EXPECT_TRUE(std::isnan(d.get(0, 0)));
  EXPECT_TRUE(std::isnan(d.get(0, 1)));
  EXPECT_FALSE(std::isnan(d.get(1, 0)));
  EXPECT_EQ(double(d.get(1, 1)), dot64(a, 1, b, 1));
}

// ---------------------------------------------------------------------------------------------

TEST(SwizzledLayout, KnownOffsetsAndPadding) {
  // The formula of NUMERICS §10 at a few hand-checked points.
  EXPECT_EQ(swizzled_scale_offset(0, 0, 8), 0);
  EXPECT_EQ(swizzled_scale_offset(0, 3, 8), 3);
  EXPECT_EQ(swizzled_scale_offset(32, 0, 8), 4);
  EXPECT_EQ(swizzled_scale_offset(1, 0, 8), 16);
  EXPECT_EQ(swizzled_scale_offset(31, 0, 8), 496);
  EXPECT_EQ(swizzled_scale_offset(127, 3, 8), 31 * 16 + 3 * 4 + 3);
  EXPECT_EQ(swizzled_scale_offset(0, 4, 8), 512);
  EXPECT_EQ(swizzled_scale_offset(128, 0, 8), 1024);
  EXPECT_EQ(swizzled_scale_bytes(130, 5), 256 * 8);
}

TEST(SwizzledLayout, IsABijectionAndRoundTrips) {
  const int R = 300, C = 7;
  std::vector<uint8_t> compact(R * C), back(R * C, 0xCC);
  for (int i = 0; i < R * C; ++i) compact[static_cast<size_t>(i)] = static_cast<uint8_t>(1 + i % 251);
  std::vector<uint8_t> sw(static_cast<size_t>(swizzled_scale_bytes(R, C)), 0xEE);
  swizzle_scales(TensorView::matrix(compact.data(), DType::kE4M3, R, C),
                 TensorView::vector(sw.data(), DType::kE4M3, static_cast<int64_t>(sw.size())));
  std::vector<int> hits(sw.size(), 0);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) ++hits[static_cast<size_t>(swizzled_scale_offset(r, c, C))];
  for (size_t i = 0; i < sw.size(); ++i) {
    EXPECT_LE(hits[i], 1) << i;
    if (hits[i] == 0) {
      EXPECT_EQ(sw[i], 0) << "padding must be zero at " << i;
    }
  }
  unswizzle_scales(TensorView::vector(sw.data(), DType::kE4M3, static_cast<int64_t>(sw.size())),
                   TensorView::matrix(back.data(), DType::kE4M3, R, C));
  EXPECT_EQ(compact, back);
}

}  // namespace
}  // namespace fp4kit
