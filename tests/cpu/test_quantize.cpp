// The reference quantization against hand-derived vectors (docs/NUMERICS.md §2-§4, §6, §9).
//
// Most vectors put the tensor amax at 10.5 so that S_enc = 2688 / 10.5 = 256 and S_dec = 2^-8 are
// exact; a block whose amax is 6 then gets sdec_b = e4m3(6 * 256/6) = 256 (byte 0x78) and
// senc_b = 1 / (256 * 2^-8) = 1 exactly, so its elements are rounded onto the E2M1 grid as given.
// A block holding 10.5 gets sdec_b = e4m3(10.5 * 256/6 = 448) = 0x7E and 10.5 -> 6 (code 7).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "fp4kit/layout.hpp"
#include "test_util.hpp"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace fp4kit {
namespace {

using test::expect_error;
using test::HostMatrix;
using test::nibble;
using test::scale;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Block 0: every rounding case with senc_b = 1; block 1: the tensor amax 10.5.
const std::vector<float> kBlock0 = {0, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5, -0.25f, -0.75f, -5, 6, -6, 0.1f, -0.1f, -0.0f};
const uint8_t kBlock0Bytes[8] = {0x00, 0x22, 0x44, 0x66, 0xA8, 0x7E, 0x0F, 0x08};

std::vector<float> row_1x32() {
  std::vector<float> v = kBlock0;
  v.push_back(10.5f);
  v.resize(32, 0.0f);
  return v;
}

TEST(Quantize1D, HandDerivedRowOnEveryDtype) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    HostMatrix x(1, 32, row_1x32(), dt);  // 0.1 is not exact in bf16/f16, but still rounds to 0
    const Nvfp4Tensor q = quantize(x.view(), QuantParams{});
    const Nvfp4Part& p = q.rowwise();
    ASSERT_TRUE(p.present);
    EXPECT_FALSE(q.columnwise().present);
    EXPECT_EQ(p.amax.ptr<float>()[0], 10.5f);
    EXPECT_EQ(scale(p, 0, 0), 0x78);
    EXPECT_EQ(scale(p, 0, 1), 0x7E);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(test::data_row(p, 0)[i], kBlock0Bytes[i]) << dtype_name(dt) << " byte " << i;
    EXPECT_EQ(test::data_row(p, 0)[8], 0x07);  // 10.5 -> code 7 in the low nibble, then zeros
    for (int i = 9; i < 16; ++i) EXPECT_EQ(test::data_row(p, 0)[i], 0x00);
    EXPECT_EQ(q.nonfinite_counts().ptr<uint32_t>()[0], 0u);
    EXPECT_EQ(q.meta().source_dtype, dt);
  }
}

TEST(Quantize1D, GlobalScaleFormulas) {
  // S_enc = 2688 / amax; amax 0 gives 1.
  HostMatrix zeros(3, 16);
  const Nvfp4Tensor q = quantize(zeros.view(), QuantParams{});
  EXPECT_EQ(q.rowwise().amax.ptr<float>()[0], 0.0f);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(scale(q.rowwise(), r, 0), 0);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(test::data_row(q.rowwise(), r)[i], 0);
  }
}

TEST(Quantize1D, SubnormalAndSaturatedScales) {
  // amax 2688 -> S_enc = 1, mult = 1/6. A block with amax 0.01 needs 0.01/6 = 0.001667, which is an
  // E4M3 subnormal: 0.001667 * 512 = 0.853 rounds to 1 -> byte 0x01 (2^-9).
  // A block with amax 2688 -> 2688/6 = 448 -> 0x7E.
  std::vector<float> v(48, 0.0f);
  v[0] = 2688.0f;
  v[16] = 0.01f;
  v[32] = 1e-6f;  // 1e-6/6 is below half the smallest subnormal: scale 0, and the data...
  HostMatrix x(1, 48, v);
  const Nvfp4Tensor q = quantize(x.view(), QuantParams{});
  EXPECT_EQ(scale(q.rowwise(), 0, 0), 0x7E);
  EXPECT_EQ(scale(q.rowwise(), 0, 1), 0x01);
  EXPECT_EQ(scale(q.rowwise(), 0, 2), 0x00);
  // senc_b = 1 / (2^-9 * 1) = 512 -> 0.01 * 512 = 5.12, above the midpoint 5 -> 6 (code 7).
  EXPECT_EQ(nibble(q.rowwise(), 0, 16), 7);
  // A zero scale gives senc_b = FLT_MAX (§2): 1e-6 * FLT_MAX saturates to 6 (code 7); it dequantizes
  // to 6 * 0 * S_dec = 0 all the same.
  EXPECT_EQ(nibble(q.rowwise(), 0, 32), 7);
  HostMatrix back(1, 48);
  dequantize(q, Direction::kRowwise, back.view());
  EXPECT_EQ(back.get(0, 0), 2688.0f);
  EXPECT_EQ(back.get(0, 32), 0.0f);
  EXPECT_EQ(back.get(0, 16), 6.0f * 0.001953125f);
}

TEST(Quantize1D, HugeValuesStayFinite) {
  HostMatrix x(1, 16);
  x.set(0, 0, std::numeric_limits<float>::max());
  x.set(0, 1, -std::numeric_limits<float>::max() / 2);
  x.set(0, 2, 1.0f);
  const Nvfp4Tensor q = quantize(x.view(), QuantParams{});
  EXPECT_EQ(scale(q.rowwise(), 0, 0), 0x7E);
  EXPECT_EQ(nibble(q.rowwise(), 0, 0), 7);
  EXPECT_EQ(nibble(q.rowwise(), 0, 1), 8 | 5);  // -FLT_MAX/2 -> -3
  EXPECT_EQ(nibble(q.rowwise(), 0, 2), 0);
  HostMatrix back(1, 16);
  dequantize(q, Direction::kRowwise, back.view());
  EXPECT_TRUE(std::isfinite(back.get(0, 0)));
  EXPECT_NEAR(back.get(0, 0) / std::numeric_limits<float>::max(), 1.0, 1e-6);
}

TEST(QuantizeNonFinite, NanAndInfBlocksAreMarkedAndCounted) {
  std::vector<float> v = row_1x32();
  v.resize(48, 0.0f);
  v[3] = kNaN;        // block 0
  v[40] = -kInf;      // block 2
  v[41] = 1.0f;
  HostMatrix x(1, 48, v);
  const Nvfp4Tensor q = quantize(x.view(), QuantParams{});
  const Nvfp4Part& p = q.rowwise();
  EXPECT_EQ(p.amax.ptr<float>()[0], 10.5f);  // the finite amax: one bad value does not wreck S_enc
  EXPECT_EQ(scale(p, 0, 0), kE4m3Nan);
  EXPECT_EQ(scale(p, 0, 1), 0x7E);           // the finite block is untouched
  EXPECT_EQ(scale(p, 0, 2), kE4m3Nan);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(test::data_row(p, 0)[i], 0);
  for (int i = 16; i < 24; ++i) EXPECT_EQ(test::data_row(p, 0)[i], 0);
  EXPECT_EQ(q.nonfinite_counts().ptr<uint32_t>()[0], 1u);
  EXPECT_EQ(q.nonfinite_counts().ptr<uint32_t>()[1], 1u);
  HostMatrix back(1, 48);
  dequantize(q, Direction::kRowwise, back.view());
  for (int c = 0; c < 16; ++c) EXPECT_TRUE(std::isnan(back.get(0, c))) << c;
  EXPECT_EQ(back.get(0, 16), 10.5f);
  for (int c = 32; c < 48; ++c) EXPECT_TRUE(std::isnan(back.get(0, c))) << c;
}

TEST(Amax, FiniteAmaxReportedAmaxAndCounts) {
  HostMatrix x(2, 16);
  x.set(0, 0, -3.0f);
  x.set(0, 1, kInf);
  x.set(1, 0, 2.0f);
  float finite[2], reported[2];
  uint32_t counts[2];
  amax(x.view(), true, {TensorView::vector(finite, DType::kF32, 2), TensorView::vector(reported, DType::kF32, 2),
                        TensorView::vector(counts, DType::kU32, 2)});
  EXPECT_EQ(finite[0], 3.0f);
  EXPECT_EQ(reported[0], kInf);
  EXPECT_EQ(finite[1], 2.0f);
  EXPECT_EQ(reported[1], 2.0f);
  EXPECT_EQ(counts[0], 0u);
  EXPECT_EQ(counts[1], 1u);
  x.set(1, 3, kNaN);
  float t_finite, t_reported;
  amax(x.view(), false, {TensorView::vector(&t_finite, DType::kF32, 1), TensorView::vector(&t_reported, DType::kF32, 1), {}});
  EXPECT_EQ(t_finite, 3.0f);
  EXPECT_TRUE(std::isnan(t_reported));  // NaN wins over Inf
}

TEST(Quantize2D, TileScaleSharedAndColumnwiseIsTheTranspose) {
  // 20 x 32: tiles (0,0), (0,1) full; (1,0), (1,1) have 4 rows (partial tile, zero-padded).
  const int R = 20, C = 32;
  std::vector<float> v = test::normals(R * C, 7);
  v[5 * C + 3] = 10.5f;   // tile (0,0) amax
  v[17 * C + 20] = -6.0f;  // keep tile (1,1) busy
  HostMatrix x(R, C, v);
  QuantParams p;
  p.block = BlockScaling::k2D;
  p.direction = Direction::kBoth;
  const Nvfp4Tensor q = quantize(x.view(), p);
  const Nvfp4Part& rw = q.rowwise();
  const Nvfp4Part& cw = q.columnwise();
  ASSERT_EQ(cw.geometry.rows, C);
  ASSERT_EQ(cw.geometry.padded_cols(), 32);
  EXPECT_EQ(rw.amax.ptr<float>()[0], cw.amax.ptr<float>()[0]);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      // One scale per 16x16 tile, in both outputs.
      EXPECT_EQ(scale(rw, r, c / 16), scale(rw, r / 16 * 16, c / 16));
      EXPECT_EQ(scale(cw, c, r / 16), scale(rw, r, c / 16));
      EXPECT_EQ(nibble(cw, c, r), nibble(rw, r, c)) << r << "," << c;
    }
  }
  for (int c = 0; c < C; ++c)
    for (int t = R; t < 32; ++t) EXPECT_EQ(nibble(cw, c, t), 0);  // padding
  // The tile holding 10.5 has scale 0x7E: 10.5 -> code 7.
  EXPECT_EQ(scale(rw, 0, 0), 0x7E);
  EXPECT_EQ(nibble(rw, 5, 3), 7);
  // The 2D tile amax differs from the per-row 1D amax: check one row of tile (0,0) against a
  // hand computation with the tile's senc_b = 1 / (448 * 2^-8).
  const float senc = 1.0f / (448.0f * (1.0f / 256.0f));
  for (int c = 0; c < 16; ++c) EXPECT_EQ(nibble(rw, 2, c), e2m1_rne(std::fmin(std::fmax(v[2 * C + c] * senc, -6.0f), 6.0f)));
}

TEST(QuantizeColumnwise, PaddedRowsMatchRowwiseOfTheTranspose) {
  // x[17, 48]: the columnwise output is the rowwise quantization of x^T [48, 17] zero-padded to 32.
  const int R = 17, C = 48;
  const std::vector<float> v = test::normals(R * C, 11, 3.0f);
  HostMatrix x(R, C, v, DType::kBF16);
  QuantParams p;
  p.direction = Direction::kBoth;
  const Nvfp4Tensor q = quantize(x.view(), p);
  HostMatrix xt(C, 32, DType::kBF16);
  for (int t = 0; t < R; ++t)
    for (int c = 0; c < C; ++c) xt.set(c, t, x.get(t, c));
  const Nvfp4Tensor qt = quantize(xt.view(), QuantParams{});
  const Nvfp4Part& cw = q.columnwise();
  ASSERT_EQ(cw.data.shape[0], C);
  ASSERT_EQ(cw.data.shape[1], 16);
  ASSERT_EQ(cw.scales.shape[1], 2);
  EXPECT_EQ(cw.amax.ptr<float>()[0], q.rowwise().amax.ptr<float>()[0]);
  for (int c = 0; c < C; ++c) {
    for (int b = 0; b < 2; ++b) EXPECT_EQ(scale(cw, c, b), scale(qt.rowwise(), c, b));
    for (int i = 0; i < 16; ++i) EXPECT_EQ(test::data_row(cw, c)[i], test::data_row(qt.rowwise(), c)[i]);
    for (int t = R; t < 32; ++t) EXPECT_EQ(nibble(cw, c, t), 0);
  }
  // Columnwise-only output takes a column count that is not a multiple of 16.
  HostMatrix odd(5, 7);
  QuantParams pc;
  pc.direction = Direction::kColumnwise;
  EXPECT_NO_THROW(quantize(odd.view(), pc));
}

TEST(QuantizeRowScaled, EachRowHasItsOwnGlobalScale) {
  // Row 0 amax 10.5 (S_enc 256), row 1 amax 21 (S_enc 128): the same pattern scaled by 2 gives the
  // same codes and scales, and different amax values.
  std::vector<float> v = row_1x32();
  for (int c = 0; c < 32; ++c) v.push_back(2.0f * v[static_cast<size_t>(c)]);
  HostMatrix x(2, 32, v);
  QuantParams p;
  p.row_scaled = true;
  const Nvfp4Tensor q = quantize(x.view(), p);
  const Nvfp4Part& rw = q.rowwise();
  ASSERT_EQ(rw.amax.numel(), 2);
  EXPECT_EQ(rw.amax.ptr<float>()[0], 10.5f);
  EXPECT_EQ(rw.amax.ptr<float>()[1], 21.0f);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(test::data_row(rw, 1)[i], test::data_row(rw, 0)[i]) << i;
  EXPECT_EQ(scale(rw, 1, 0), 0x78);
  HostMatrix back(2, 32);
  dequantize(q, Direction::kRowwise, back.view());
  EXPECT_EQ(back.get(1, 16), 21.0f);
  EXPECT_EQ(back.get(1, 11), 12.0f);
  // With a shared global scale, row 0 would lose resolution: its scale byte changes.
  const Nvfp4Tensor shared = quantize(x.view(), QuantParams{});
  EXPECT_NE(scale(shared.rowwise(), 0, 0), scale(rw, 0, 0));
}

TEST(Dequantize, ErrorWithinHalfAGridStepOfEachBlock) {
  // |x - x'| <= (largest half-step of E2M1, 1.0) * sdec_b * S_dec: the nearest grid point is at
  // most half a step away (the step is 2 between 4 and 6), and values clamped at 6 lose at most
  // 6 * 2^-4 (E4M3 rounding of the scale) < 1.
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int R = 33, C = 64;
    HostMatrix x(R, C, test::normals(R * C, 3, 5.0f), dt);
    QuantParams p;
    p.direction = Direction::kBoth;
    const Nvfp4Tensor q = quantize(x.view(), p);
    HostMatrix back(R, C), back_t(C, R);
    dequantize(q, Direction::kRowwise, back.view());
    dequantize(q, Direction::kColumnwise, back_t.view());
    const float s_dec = 1.0f / (2688.0f / q.rowwise().amax.ptr<float>()[0]);
    double err2 = 0, sig2 = 0;
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) {
        const float bound = e4m3_to_float(scale(q.rowwise(), r, c / 16)) * s_dec * 1.0001f;
        EXPECT_LE(std::fabs(x.get(r, c) - back.get(r, c)), bound) << r << "," << c;
        const float bound_t = e4m3_to_float(scale(q.columnwise(), c, r / 16)) * s_dec * 1.0001f;
        EXPECT_LE(std::fabs(x.get(r, c) - back_t.get(c, r)), bound_t) << r << "," << c;
        err2 += std::pow(x.get(r, c) - back.get(r, c), 2);
        sig2 += std::pow(x.get(r, c), 2);
      }
    }
    // NVFP4 of Gaussian data: SNR around 20 dB.
    EXPECT_GT(10 * std::log10(sig2 / err2), 17.0);
  }
}

TEST(Quantize, OutputsAreDeterministicAndQuantizeIntoOverwritesPoison) {
  const int R = 40, C = 64;
  HostMatrix x(R, C, test::normals(R * C, 5));
  QuantParams p;
  p.direction = Direction::kBoth;
  const Nvfp4Tensor a = quantize(x.view(), p);
  Nvfp4Tensor b = Nvfp4Tensor::allocate(R, C, DType::kF32, p);
  for (const Nvfp4Part* part : {&b.rowwise(), &b.columnwise()}) {
    std::memset(part->data.data, 0xA5, part->data.nbytes());
    std::memset(part->scales.data, 0xA5, part->scales.nbytes());
    std::memset(part->amax.data, 0xA5, part->amax.nbytes());
  }
  quantize_into(x.view(), p, b);
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const Nvfp4Part& pa = a.part(d);
    const Nvfp4Part& pb = b.part(d);
    EXPECT_EQ(0, std::memcmp(pa.data.data, pb.data.data, pa.data.nbytes()));
    EXPECT_EQ(0, std::memcmp(pa.scales.data, pb.scales.data, pa.scales.nbytes()));
    EXPECT_EQ(0, std::memcmp(pa.amax.data, pb.amax.data, pa.amax.nbytes()));
  }
}

// swizzled_scales: each part also carries its scales in the GEMM-swizzled layout (NUMERICS §10),
// the very bytes swizzle_scales() makes of the compact ones, padding zero; a shape that pads both
// the rows (200 and 80 are not multiples of 128) and the scale columns (5 blocks, 13 blocks).
TEST(QuantizeSwizzled, BothPartsCarryTheSwizzledCopyOfTheirScales) {
  const int R = 200, C = 80;
  HostMatrix x(R, C, test::normals(R * C, 11));
  QuantParams p;
  p.direction = Direction::kBoth;
  p.swizzled_scales = true;
  const Nvfp4Tensor q = quantize(x.view(), p);
  size_t parts_bytes = 0;
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const Nvfp4Part& part = q.part(d);
    const int64_t rows = part.geometry.rows, blocks = part.geometry.blocks_per_row();
    ASSERT_NE(part.scales_swizzled.data, nullptr) << direction_name(d);
    ASSERT_EQ(part.scales_swizzled.numel(), swizzled_scale_bytes(rows, blocks)) << direction_name(d);
    std::vector<uint8_t> want(static_cast<size_t>(swizzled_scale_bytes(rows, blocks)), 0xA5);
    swizzle_scales(part.scales, TensorView::vector(want.data(), DType::kU8, static_cast<int64_t>(want.size())));
    EXPECT_EQ(0, std::memcmp(want.data(), part.scales_swizzled.data, want.size())) << direction_name(d);
    EXPECT_EQ(static_cast<const uint8_t*>(part.scales_swizzled.data)[swizzled_scale_offset(rows, 0, blocks)], 0)
        << "a padding row is zero, " << direction_name(d);
    parts_bytes += part.data.nbytes() + part.scales.nbytes() + part.amax.nbytes() + want.size();
  }
  EXPECT_EQ(q.nbytes(), parts_bytes);

  // Without the flag there is no swizzled copy, and asking for one is a clear error.
  QuantParams plain = p;
  plain.swizzled_scales = false;
  const Nvfp4Tensor q2 = quantize(x.view(), plain);
  EXPECT_EQ(q2.rowwise().scales_swizzled.data, nullptr);

  // quantize_into needs an output made with the same choice.
  Nvfp4Tensor without = Nvfp4Tensor::allocate(R, C, DType::kF32, plain);
  expect_error(ErrorCode::kInvalidArgument, "without swizzled scales", [&] { quantize_into(x.view(), p, without); });

  // from_parts checks the swizzled view against the params, both ways.
  Nvfp4Meta meta{R, C, DType::kF32, p};
  Nvfp4Part rw = q.rowwise(), cw = q.columnwise();
  EXPECT_NO_THROW(Nvfp4Tensor::from_parts(meta, rw, cw, q.nonfinite_counts()));
  Nvfp4Part missing = rw;
  missing.scales_swizzled = {};
  expect_error(ErrorCode::kNullPointer, "rowwise.scales_swizzled",
                     [&] { (void)Nvfp4Tensor::from_parts(meta, missing, cw, q.nonfinite_counts()); });
  meta.params.swizzled_scales = false;
  expect_error(ErrorCode::kInvalidArgument, "params.swizzled_scales is false",
                     [&] { (void)Nvfp4Tensor::from_parts(meta, rw, cw, q.nonfinite_counts()); });
}

}  // namespace
}  // namespace fp4kit

#if defined(__x86_64__)
namespace fp4kit {
namespace {

TEST(Quantize1D, SubnormalInputsUnderACallersFlushToZeroMode) {
  // A caller in FTZ/DAZ mode (torch.set_flush_denormal(True)) still gets the IEEE bytes, and its
  // mode back.
  // Subnormal inputs built from bits (also the regression test of the GCC 13 global-scale trap:
  // see global_scale in src/core/nvfp4_math.hpp).
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) {
    v[static_cast<size_t>(i)] = bits_float((i % 2 ? 0x80000000u : 0u) | (0x00100000u + 0x1000u * static_cast<uint32_t>(i)));
  }
  test::HostMatrix x(1, 16, v);
  const Nvfp4Tensor ieee = quantize(x.view(), QuantParams{});
  EXPECT_NE(test::scale(ieee.rowwise(), 0, 0), 0);  // subnormal amax: S_enc clamps to FLT_MAX
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved | (1u << 15) | (1u << 6));
  const Nvfp4Tensor flushed = quantize(x.view(), QuantParams{});
  const unsigned after = _mm_getcsr();
  _mm_setcsr(saved);
  EXPECT_EQ(after, saved | (1u << 15) | (1u << 6));
  EXPECT_EQ(test::scale(flushed.rowwise(), 0, 0), test::scale(ieee.rowwise(), 0, 0));
  EXPECT_EQ(0, std::memcmp(flushed.rowwise().data.data, ieee.rowwise().data.data, 8));
  EXPECT_EQ(flushed.rowwise().amax.ptr<float>()[0], ieee.rowwise().amax.ptr<float>()[0]);
}

}  // namespace
}  // namespace fp4kit
#endif
