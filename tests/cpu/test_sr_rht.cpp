// Stochastic rounding (NUMERICS §8) and the random Hadamard transform (§5).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/nvfp4_math.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

using test::HostMatrix;
using test::nibble;

QuantParams sr_params(uint64_t seed, uint64_t offset) {
  QuantParams p;
  p.rounding = Rounding::kStochastic;
  p.sr_seed = seed;
  p.sr_offset = offset;
  return p;
}

TEST(StochasticRounding, DeterministicGivenSeedAndOffset) {
  HostMatrix x(8, 64, test::normals(8 * 64, 21));
  const Nvfp4Tensor a = quantize(x.view(), sr_params(42, 7));
  const Nvfp4Tensor b = quantize(x.view(), sr_params(42, 7));
  const Nvfp4Tensor c = quantize(x.view(), sr_params(42, 8));
  const Nvfp4Tensor d = quantize(x.view(), sr_params(43, 7));
  const size_t n = a.rowwise().data.nbytes();
  EXPECT_EQ(0, std::memcmp(a.rowwise().data.data, b.rowwise().data.data, n));
  EXPECT_NE(0, std::memcmp(a.rowwise().data.data, c.rowwise().data.data, n));
  EXPECT_NE(0, std::memcmp(a.rowwise().data.data, d.rowwise().data.data, n));
  // Scales never depend on the rounding mode.
  const Nvfp4Tensor rne = quantize(x.view(), QuantParams{});
  EXPECT_EQ(0, std::memcmp(a.rowwise().scales.data, rne.rowwise().scales.data, a.rowwise().scales.nbytes()));
}

TEST(StochasticRounding, HandComputedBlockFromThePhiloxStream) {
  // Block 0 of row_1x32-like data with senc_b = 1 (see test_quantize.cpp): element j rounds up iff
  // fmaf(byte_j / 256, hi - lo, a) >= hi, with byte j from Philox(counter = (0, 0, offset), key = seed).
  std::vector<float> v = {0.3f, 0.6f, 1.2f, 1.7f, 2.2f, 2.9f, 3.3f, 5.5f, -0.3f, -1.1f, -4.5f, 6, -6, 0.01f, 2, 4};
  v.push_back(10.5f);
  v.resize(32, 0.0f);
  HostMatrix x(1, 32, v);
  const uint64_t seed = 0xfeedface12345678ull, offset = 99;
  const Nvfp4Tensor q = quantize(x.view(), sr_params(seed, offset));
  const detail::Philox4x32 r = detail::philox4x32_10({{0, 0, 99, 0}}, 0x12345678u, 0xfeedfaceu);
  const float grid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int j = 0; j < 16; ++j) {
    const float a = std::fabs(v[static_cast<size_t>(j)]);
    int lo = 0;
    while (lo < 7 && grid[lo + 1] <= a) ++lo;
    int code = lo;
    if (lo < 7) {
      const uint32_t byte = (r.v[j / 4] >> (8 * (j % 4))) & 0xFF;
      if (std::fmaf(static_cast<float>(byte) / 256.0f, grid[lo + 1] - grid[lo], a) >= grid[lo + 1]) code = lo + 1;
    }
    if (v[static_cast<size_t>(j)] < 0) code |= 8;
    EXPECT_EQ(nibble(q.rowwise(), 0, j), code) << "element " << j;
  }
}

TEST(StochasticRounding, UnbiasedAndWithinOneStep) {
  // One 16-element block, scale fixed by a 10.5 in block 1 (senc_b of block 0 is 1 when its amax is
  // 6, so x itself is on the E2M1 scale). Over many offsets the mean of the dequantized values
  // converges to x, its error shrinks like 1/sqrt(n), and it beats round-to-nearest's error.
  std::vector<float> v = {0.1f, 0.3f, 0.7f, 0.9f, 1.1f, 1.3f, 1.6f, 1.9f, 2.3f, 2.7f, 3.2f, 3.9f, 4.4f, 5.1f, -2.6f, 6.0f};
  v.push_back(10.5f);
  v.resize(32, 0.0f);
  HostMatrix x(1, 32, v);
  const Nvfp4Tensor rne = quantize(x.view(), QuantParams{});
  HostMatrix back(1, 32);
  dequantize(rne, Direction::kRowwise, back.view());
  double rne_err = 0;
  for (int j = 0; j < 16; ++j) rne_err += std::fabs(back.get(0, j) - v[static_cast<size_t>(j)]);

  auto mean_error = [&](int n) {
    std::vector<double> sum(16, 0.0);
    for (int s = 0; s < n; ++s) {
      const Nvfp4Tensor q = quantize(x.view(), sr_params(1234, static_cast<uint64_t>(s)));
      dequantize(q, Direction::kRowwise, back.view());
      for (int j = 0; j < 16; ++j) {
        const float got = back.get(0, j), want = v[static_cast<size_t>(j)];
        // Every draw is one of the two grid neighbours of x: at most one step away.
        const uint8_t down = e2m1_rne(want);
        EXPECT_LE(std::fabs(got - want), 2.0f) << j;
        EXPECT_TRUE(std::fabs(got) <= 6.0f) << j;
        (void)down;
        sum[static_cast<size_t>(j)] += got;
      }
    }
    double err = 0;
    for (int j = 0; j < 16; ++j) err += std::fabs(sum[static_cast<size_t>(j)] / n - v[static_cast<size_t>(j)]);
    return err;
  };
  const double e256 = mean_error(256), e4096 = mean_error(4096);
  EXPECT_LT(e4096, rne_err / 10);  // far better than RNE's bias
  EXPECT_LT(e4096, e256 / 2);      // ~1/sqrt(16) = 1/4 expected; 1/2 leaves room for chance
  EXPECT_LT(e4096, 16 * 0.05);
}

TEST(StochasticRounding, RowwiseAndColumnwiseDrawFromDisjointStreams) {
  // A symmetric matrix: its columnwise source equals its rowwise source, so any difference in the
  // codes comes from the streams (NUMERICS §8 as fp4kit pins it: the columnwise stream flips the
  // offset's top bit).
  const int n = 32;
  std::vector<float> v = test::normals(n * n, 77);
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < r; ++c) v[static_cast<size_t>(c * n + r)] = v[static_cast<size_t>(r * n + c)];
  HostMatrix x(n, n, v);
  QuantParams p = sr_params(5, 6);
  p.direction = Direction::kBoth;
  const Nvfp4Tensor q = quantize(x.view(), p);
  EXPECT_NE(0, std::memcmp(q.rowwise().data.data, q.columnwise().data.data, q.rowwise().data.nbytes()));
  EXPECT_EQ(0, std::memcmp(q.rowwise().scales.data, q.columnwise().scales.data, q.rowwise().scales.nbytes()));
}

// ---------------------------------------------------------------------------------------------

float h16(int r, int c) { return (__builtin_popcount(static_cast<unsigned>(r & c)) & 1) ? -1.0f : 1.0f; }

TEST(Rht, UnitVectorMapsToASignedRowOfHOverFour) {
  for (uint16_t mask : {uint16_t{0}, kDefaultRhtMask}) {
    for (int i = 0; i < 16; ++i) {
      float v[16] = {};
      v[i] = 1.0f;
      detail::rht16(v, mask);
      const float s = ((mask >> i) & 1) ? -1.0f : 1.0f;
      for (int c = 0; c < 16; ++c) EXPECT_EQ(v[c], 0.25f * s * h16(i, c)) << "mask " << mask << " i " << i << " c " << c;
    }
  }
}

TEST(Rht, DefaultMaskIsTheContractSignVector) {
  const int s[16] = {+1, +1, +1, -1, +1, -1, -1, -1, -1, -1, -1, +1, -1, +1, -1, -1};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(detail::rht_sign_negative(kDefaultRhtMask, i), s[i] < 0) << i;
}

TEST(Rht, PreservesNormAndDotProductsAndInverts) {
  const std::vector<float> a = test::normals(16 * 64, 1), b = test::normals(16 * 64, 2);
  for (int g = 0; g < 64; ++g) {
    float ya[16], yb[16];
    std::memcpy(ya, &a[static_cast<size_t>(16 * g)], sizeof ya);
    std::memcpy(yb, &b[static_cast<size_t>(16 * g)], sizeof yb);
    detail::rht16(ya, kDefaultRhtMask);
    detail::rht16(yb, kDefaultRhtMask);
    double dot_x = 0, dot_y = 0, nx = 0, ny = 0;
    for (int i = 0; i < 16; ++i) {
      dot_x += double(a[16 * g + i]) * b[16 * g + i];
      dot_y += double(ya[i]) * yb[i];
      nx += double(a[16 * g + i]) * a[16 * g + i];
      ny += double(ya[i]) * ya[i];
    }
    EXPECT_NEAR(ny, nx, 1e-5 * nx);
    EXPECT_NEAR(dot_y, dot_x, 1e-5 * std::sqrt(nx * ny) + 1e-6);
    detail::rht16_inverse(ya, kDefaultRhtMask);
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(ya[i], a[16 * g + i], 1e-6f);
  }
}

TEST(Rht, HadamardOpTransposedPadsAndRoundsToBf16) {
  // x[20, 3] bf16: y[3, 32] = RHT of each column, zero-padded from 20 to 32 tokens, in bf16.
  const int R = 20, C = 3;
  HostMatrix x(R, C, test::normals(R * C, 9), DType::kBF16);
  HostMatrix y(C, 32, DType::kBF16);
  hadamard(x.view(), y.view(), kDefaultRhtMask, true);
  for (int c = 0; c < C; ++c) {
    for (int g = 0; g < 2; ++g) {
      float v[16];
      for (int i = 0; i < 16; ++i) v[i] = 16 * g + i < R ? x.get(16 * g + i, c) : 0.0f;
      detail::rht16(v, kDefaultRhtMask);
      for (int i = 0; i < 16; ++i) EXPECT_EQ(y.get(c, 16 * g + i), bf16_to_float(float_to_bf16(v[i])));
    }
  }
}

TEST(Rht, ColumnwiseQuantizationUsesThePostTransformAmax) {
  const int R = 40, C = 32;
  HostMatrix x(R, C, test::normals(R * C, 13, 2.0f), DType::kBF16);
  QuantParams p;
  p.direction = Direction::kBoth;
  p.rht = true;
  const Nvfp4Tensor q = quantize(x.view(), p);
  // Reference by hand: transform (hadamard op, bf16), then a plain rowwise quantization.
  HostMatrix y(C, 48, DType::kBF16);
  hadamard(x.view(), y.view(), p.rht_mask, true);
  const Nvfp4Tensor qy = quantize(y.view(), QuantParams{});
  EXPECT_EQ(q.columnwise().amax.ptr<float>()[0], qy.rowwise().amax.ptr<float>()[0]);
  EXPECT_NE(q.columnwise().amax.ptr<float>()[0], q.rowwise().amax.ptr<float>()[0]);
  EXPECT_EQ(0, std::memcmp(q.columnwise().data.data, qy.rowwise().data.data, qy.rowwise().data.nbytes()));
  EXPECT_EQ(0, std::memcmp(q.columnwise().scales.data, qy.rowwise().scales.data, qy.rowwise().scales.nbytes()));
  // The rowwise output has no transform.
  const Nvfp4Tensor plain = quantize(x.view(), QuantParams{});
  EXPECT_EQ(0, std::memcmp(q.rowwise().data.data, plain.rowwise().data.data, plain.rowwise().data.nbytes()));
  // Dequantizing undoes the transform: back to x^T within the quantization error.
  HostMatrix back(C, R);
  dequantize(q, Direction::kColumnwise, back.view());
  double err2 = 0, sig2 = 0;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) err2 += std::pow(back.get(c, r) - x.get(r, c), 2), sig2 += std::pow(x.get(r, c), 2);
  EXPECT_GT(10 * std::log10(sig2 / err2), 15.0);
  HostMatrix domain(C, 48);
  DequantizeOptions keep;
  keep.undo_rht = false;
  dequantize(q, Direction::kColumnwise, domain.view(), keep);
  HostMatrix domain_ref(C, 48);
  dequantize(qy, Direction::kRowwise, domain_ref.view());
  EXPECT_EQ(0, std::memcmp(domain.bytes.data(), domain_ref.bytes.data(), domain.bytes.size()));
}

TEST(Rht, WgradProductIsPreservedByTheTransform) {
  // RHT(dy^T) RHT(x^T)^T = dy^T x: check on the transformed (unquantized) FP32 operands.
  const int T = 48, N = 4, K = 5;
  HostMatrix dy(T, N, test::normals(T * N, 31)), x(T, K, test::normals(T * K, 32));
  HostMatrix ty(N, T), tx(K, T);
  hadamard(dy.view(), ty.view(), kDefaultRhtMask, true);
  hadamard(x.view(), tx.view(), kDefaultRhtMask, true);
  for (int n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k) {
      double want = 0, got = 0;
      for (int t = 0; t < T; ++t) want += double(dy.get(t, n)) * x.get(t, k), got += double(ty.get(n, t)) * tx.get(k, t);
      EXPECT_NEAR(got, want, 1e-4);
    }
  }
}

}  // namespace
}  // namespace fp4kit
