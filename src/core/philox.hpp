// src/core/philox.hpp: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the counter-based generator of stochastic rounding (docs/NUMERICS.md §8). Usable on the
// host and, compiled by nvcc, on the device; checked against the Random123 known-answer vectors.
#pragma once

#include <cstdint>

#include "fp4kit/formats.hpp"  // FP4KIT_HD

namespace fp4kit::detail {

struct Philox4x32 {
  uint32_t v[4];
};

// Round multipliers and Weyl key increments of Philox4x32.
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

FP4KIT_HD constexpr Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {  // the key is bumped between rounds (9 times for 10 rounds)
      key0 += kPhiloxW0;
      key1 += kPhiloxW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * ctr.v[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
  }
  return ctr;
}

// Random bytes of SR block g (NUMERICS §8): key = seed, counter = (g, offset), 64-bit halves
// little end first. `columnwise` selects the columnwise output's stream, which flips the top bit of
// the offset so that one call's rowwise and columnwise draws never share a counter.
inline constexpr uint32_t kColumnwiseStreamBit = 0x80000000u;

FP4KIT_HD constexpr Philox4x32 sr_block_random(uint64_t seed, uint64_t offset, uint64_t block, bool columnwise) {
  const uint32_t off_hi = static_cast<uint32_t>(offset >> 32) ^ (columnwise ? kColumnwiseStreamBit : 0u);
  return philox4x32_10(Philox4x32{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                   static_cast<uint32_t>(offset), off_hi}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The random byte of element j (0..15) of a block: byte j%4 (little-endian) of word j/4.
FP4KIT_HD constexpr uint32_t sr_byte(const Philox4x32& r, int j) {
  return (r.v[j >> 2] >> (8 * (j & 3))) & 0xFFu;
}

}  // namespace fp4kit::detail
