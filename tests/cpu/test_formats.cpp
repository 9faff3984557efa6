// Exhaustive tables of the scalar formats (docs/NUMERICS.md §1) against independent definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/nvfp4_math.hpp"
#include "fp4kit/formats.hpp"

namespace fp4kit {
namespace {

// E4M3 value from first principles (ldexp), independent of the bit tricks in formats.hpp.
double e4m3_value(int byte) {
  const int sign = byte & 0x80 ? -1 : 1, exp = (byte >> 3) & 15, man = byte & 7;
  if (exp == 15 && man == 7) return std::numeric_limits<double>::quiet_NaN();
  if (exp == 0) return sign * std::ldexp(man, -9);
  return sign * std::ldexp(8 + man, exp - 7 - 3);
}

TEST(E2m1, AllSixteenCodesDecode) {
  const float expected[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(float_bits(e2m1_to_float(static_cast<uint8_t>(c))), float_bits(expected[c])) << "code " << c;
  }
}

TEST(E2m1, EveryCodeEncodesBackToItself) {
  for (int c = 0; c < 16; ++c) {
    const uint8_t expected = c == 8 ? 0 : static_cast<uint8_t>(c);  // -0.0 encodes as code 0 (§2)
    EXPECT_EQ(e2m1_rne(e2m1_to_float(static_cast<uint8_t>(c))), expected) << "code " << c;
  }
}

TEST(E2m1, EveryTieGoesToTheEvenCode) {
  struct Tie { float x; uint8_t code; };
  const Tie ties[] = {{0.25f, 0}, {0.75f, 2}, {1.25f, 2}, {1.75f, 4}, {2.5f, 4}, {3.5f, 6}, {5.0f, 6}};
  for (const Tie& t : ties) {
    EXPECT_EQ(e2m1_rne(t.x), t.code) << t.x;
    EXPECT_EQ(e2m1_rne(-t.x), t.code == 0 ? 8 : (t.code | 8)) << -t.x;  // negative rounding to zero: code 8
    // Just off the tie, the nearest value wins.
    EXPECT_EQ(e2m1_rne(std::nextafter(t.x, 0.0f)), t.code == 0 ? 0 : (t.x < e2m1_to_float(t.code) ? t.code - 1 : t.code));
    EXPECT_EQ(e2m1_rne(std::nextafter(t.x, 10.0f)), t.x < e2m1_to_float(t.code) ? t.code : t.code + 1);
  }
}

TEST(E2m1, ZerosAndSaturation) {
  EXPECT_EQ(e2m1_rne(0.0f), 0);
  EXPECT_EQ(e2m1_rne(-0.0f), 0);
  EXPECT_EQ(e2m1_rne(-1e-30f), 8);
  EXPECT_EQ(e2m1_rne(6.0f), 7);
  EXPECT_EQ(e2m1_rne(100.0f), 7);
  EXPECT_EQ(e2m1_rne(-100.0f), 15);
}

TEST(E2m1, NearestOnADenseSweep) {
  // Brute force: the nearest grid value, ties to the even code.
  for (int i = -7000; i <= 7000; ++i) {
    const float x = static_cast<float>(i) / 1000.0f;
    int best = 0;
    double best_d = 1e9;
    for (int c = 0; c < 8; ++c) {
      const double d = std::fabs(std::fabs(x) - e2m1_to_float(static_cast<uint8_t>(c)));
      if (d < best_d || (d == best_d && c % 2 == 0)) best = c, best_d = d;
    }
    const uint8_t expected = static_cast<uint8_t>(best | (x < 0 ? 8 : 0));
    EXPECT_EQ(e2m1_rne(x), expected) << x;
  }
}

TEST(E4m3, All256BytesDecode) {
  for (int b = 0; b < 256; ++b) {
    const double v = e4m3_value(b);
    const float f = e4m3_to_float(static_cast<uint8_t>(b));
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(f)) << b;
      EXPECT_TRUE(b == 0x7F || b == 0xFF) << b;
    } else {
      EXPECT_EQ(static_cast<double>(f), v) << "byte " << b;
      EXPECT_EQ(std::signbit(f), (b & 0x80) != 0) << b;
    }
  }
  EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), 0.001953125f);  // 2^-9
}

TEST(E4m3, EveryFiniteByteEncodesBackToItself) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;
    EXPECT_EQ(e4m3_rne_satfinite(e4m3_to_float(static_cast<uint8_t>(b))), b) << b;
  }
  EXPECT_EQ(e4m3_rne_satfinite(std::numeric_limits<float>::quiet_NaN()), 0x7F);
}

// Nearest E4M3 byte by search over the 126 finite magnitudes; ties to the even mantissa.
int nearest_e4m3(float x) {
  const double a = std::fabs(static_cast<double>(x));
  int best = 0;
  double best_d = 1e300;
  for (int b = 0; b < 0x7F; ++b) {
    const double d = std::fabs(a - e4m3_value(b));
    if (d < best_d || (d == best_d && b % 2 == 0)) best = b, best_d = d;
  }
  if (a > 448.0) best = 0x7E;  // satfinite
  return best | (std::signbit(x) ? 0x80 : 0);
}

TEST(E4m3, RoundsToNearestEvenAndSaturates) {
  // Every midpoint between neighbouring codes, its neighbours one ulp away, and a sweep.
  for (int b = 0; b < 0x7E; ++b) {
    const float lo = e4m3_to_float(static_cast<uint8_t>(b)), hi = e4m3_to_float(static_cast<uint8_t>(b + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f), -mid}) {
      EXPECT_EQ(e4m3_rne_satfinite(x), nearest_e4m3(x)) << x;
    }
  }
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(1.0f + static_cast<float>(i % 997) / 997.0f, i % 30 - 15);
    EXPECT_EQ(e4m3_rne_satfinite(x), nearest_e4m3(x)) << x;
  }
  EXPECT_EQ(e4m3_rne_satfinite(464.0f), 0x7E);  // would round to 480 (NaN code): saturates
  EXPECT_EQ(e4m3_rne_satfinite(1e30f), 0x7E);
  EXPECT_EQ(e4m3_rne_satfinite(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(e4m3_rne_satfinite(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(e4m3_rne_satfinite(std::ldexp(1.0f, -10)), 0x00);  // half the smallest subnormal: tie to 0
  EXPECT_EQ(e4m3_rne_satfinite(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  EXPECT_EQ(e4m3_rne_satfinite(1e-40f), 0x00);  // FP32 subnormal input
}

TEST(Bf16, RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(float_bits(f), h << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(float_to_bf16(f), h);
    }
  }
  EXPECT_EQ(float_to_bf16(bits_float(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(bits_float(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(bits_float(0x3F808001u)), 0x3F81);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Fp16, AllCodesDecodeAndRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const int exp = (h >> 10) & 31, man = h & 1023;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (exp == 31) {
      EXPECT_TRUE(man ? std::isnan(f) : std::isinf(f)) << h;
      continue;
    }
    const double v = exp == 0 ? sign * std::ldexp(man, -24) : sign * std::ldexp(1024 + man, exp - 25);
    EXPECT_EQ(static_cast<double>(f), v) << h;
    EXPECT_EQ(float_to_fp16(f), h) << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  // Midpoints between consecutive FP16 values round to the even one.
  for (uint32_t h = 0; h < 0x7BFF; h += 7) {
    const float lo = fp16_to_float(static_cast<uint16_t>(h)), hi = fp16_to_float(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    EXPECT_EQ(float_to_fp16(mid), (h % 2 == 0) ? h : h + 1) << h;
    EXPECT_EQ(float_to_fp16(std::nextafter(mid, 0.0f)), h) << h;
    EXPECT_EQ(float_to_fp16(std::nextafter(mid, 1e9f)), h + 1) << h;
  }
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);               // rounds to +Inf
  EXPECT_EQ(float_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
}

TEST(Formats, UsableInConstantExpressions) {
  static_assert(e2m1_rne(2.5f) == 4);
  static_assert(e4m3_rne_satfinite(448.0f) == 0x7E);
  static_assert(e4m3_to_float(0x78) == 256.0f);
  static_assert(float_to_bf16(1.0f) == 0x3F80);
  SUCCEED();
}

}  // namespace
}  // namespace fp4kit

namespace fp4kit {
namespace {

// The region-based roundings the GPU kernels use equal the contract's comparison chains.
TEST(FastRounding, EqualsTheReferenceOnTiesZerosAndADenseSweep) {
  std::vector<float> probes;
  for (int c = 0; c < 8; ++c) {
    for (int d = 0; d < 8; ++d) {
      const float mid = 0.5f * (e2m1_to_float(static_cast<uint8_t>(c)) + e2m1_to_float(static_cast<uint8_t>(d)));
      probes.insert(probes.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 10.0f)});
    }
  }
  for (uint32_t bits = 0x3E000000u; bits <= 0x40E00000u; bits += 97) probes.push_back(bits_float(bits));  // 0.125 .. 7
  for (uint32_t bits = 0; bits < 0x3E000000u; bits += 0x3FFFF) probes.push_back(bits_float(bits));  // 0 .. 0.125
  probes.insert(probes.end(), {0.0f, 1e-45f, 1e-30f, 6.0f, 7.0f, 1e30f, kFloatMax});
  int tested = 0;
  for (float p : probes) {
    for (float x : {p, -p}) {
      // 1e-30 makes the product of a small x underflow to a signed zero: -0.0 must give code 0.
      for (float senc : {1.0f, 0.5f, 3.0f, 1e-30f}) {
        const float y = x * senc;
        ASSERT_EQ(detail::e2m1_rne_bits(y) & 0xFFF0u, 0u) << y;  // what pack_nibbles relies on
        ASSERT_EQ(detail::e2m1_rne_bits(y) & 0xFu, detail::quantize_rne(x, senc)) << x << " * " << senc;
        for (uint32_t byte : {0u, 1u, 77u, 128u, 200u, 255u}) {
          const uint32_t bits = detail::e2m1_sr_bits(y, byte);
          ASSERT_EQ(bits & 0xFFF0u, 0u) << y;
          ASSERT_EQ(bits & 0xFu, detail::quantize_sr(x, senc, byte)) << x << " * " << senc << " byte " << byte;
        }
        ++tested;
      }
    }
  }
  EXPECT_GT(tested, 100000);
  EXPECT_EQ(detail::e2m1_rne_bits(-0.0f) & 0xFu, 0u);
  EXPECT_EQ(detail::e2m1_rne_bits(-1e-30f) & 0xFu, 8u);
}

TEST(FastRounding, PacksEightCodesLowNibbleFirst) {
  uint32_t t[8];
  for (int j = 0; j < 8; ++j) t[j] = detail::e2m1_rne_bits(j % 2 ? -e2m1_to_float(static_cast<uint8_t>(j)) : e2m1_to_float(static_cast<uint8_t>(j)));
  uint32_t want = 0;
  for (int j = 0; j < 8; ++j) want |= (static_cast<uint32_t>(j) | (j % 2 ? 8u : 0u)) << (4 * j);
  EXPECT_EQ(detail::pack_nibbles(t), want);
  const uint32_t t4[4] = {t[0], t[1], t[2], t[3]};
  EXPECT_EQ(detail::pack_nibbles4(t4), want & 0xFFFFu);
}

}  // namespace
}  // namespace fp4kit
