// Philox4x32-10 against the published Random123 known-answer vectors (kat_vectors).
#include <gtest/gtest.h>

#include "core/philox.hpp"

namespace fp4kit::detail {
namespace {

TEST(Philox, Random123KnownAnswers) {
  struct Kat { Philox4x32 ctr; uint32_t k0, k1; Philox4x32 expected; };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const Philox4x32 got = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], k.expected.v[i]) << "word " << i;
  }
  static_assert(philox4x32_10({{0, 0, 0, 0}}, 0, 0).v[0] == 0x6627e8d5u, "usable at compile time");
}

TEST(Philox, SrCounterLayout) {
  // NUMERICS §8: key = (seed lo, seed hi), counter = (g lo, g hi, offset lo, offset hi).
  const uint64_t seed = 0x0123456789abcdefull, offset = 0x1111222233334444ull, g = 0x500000007ull;
  const Philox4x32 a = sr_block_random(seed, offset, g, false);
  const Philox4x32 b = philox4x32_10({{0x00000007u, 0x5u, 0x33334444u, 0x11112222u}}, 0x89abcdefu, 0x01234567u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
  // The columnwise stream flips the offset's top bit.
  const Philox4x32 c = sr_block_random(seed, offset, g, true);
  const Philox4x32 d = philox4x32_10({{0x00000007u, 0x5u, 0x33334444u, 0x91112222u}}, 0x89abcdefu, 0x01234567u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.v[i], d.v[i]);
  EXPECT_EQ(sr_byte(b, 0), b.v[0] & 0xFF);
  EXPECT_EQ(sr_byte(b, 5), (b.v[1] >> 8) & 0xFF);
  EXPECT_EQ(sr_byte(b, 15), b.v[3] >> 24);
}

}  // namespace
}  // namespace fp4kit::detail
