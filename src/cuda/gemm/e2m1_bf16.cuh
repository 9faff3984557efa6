// src/cuda/gemm/e2m1_bf16.cuh: E2M1 codes to exact BF16 on chip, for the GEMM kernels that emulate
// FP4 on BF16 tensor cores (sm90_gemm_nvfp4, sm80_gemm_smallm). Device code only.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

// a * b on BF16 pairs, round to nearest even (exact wherever the kernels use it).
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  const __nv_bfloat162 r = __hmul2(x, y);
  uint32_t out;
  memcpy(&out, &r, 4);
  return out;
}

// The E4M3 scale byte times 2^P as a BF16 pair (both halves), for one exact BF16 multiply with
// e2m1_pair's e2m1 * 2^-126: P = 119 gives the block value times 2^-7, P = 118 times 2^-8 (448 * 2^119
// stays below BF16's largest; every product is a normal BF16 number with at most 6 significant
// bits). A NaN scale (0x7F, 0xFF) stays NaN, which makes every product of its block NaN (§9).
template <int P>
__device__ __forceinline__ uint32_t e4m3_scale_pair(uint32_t e4m3) {
  static_assert(P >= 118 && P <= 119, "scale * 2^P must stay below BF16's largest finite value");
  constexpr float kTwoPowP = P == 119 ? 0x1p119f : 0x1p118f;
  const __nv_bfloat16 s = __float2bfloat16_rn(e4m3_to_float(static_cast<uint8_t>(e4m3)) * kTwoPowP);
  const uint32_t bits = __bfloat16_as_ushort(s);
  return bits | (bits << 16);
}

// Codes J and J + 4 of the 8 E2M1 codes in w (code i in bits [4i, 4i+4)) as a BF16 pair whose
// value is e2m1 * 2^-126: the code's exponent and mantissa bits (e1 e0 m) land on BF16 bits 8..6,
// which is exactly that value for every code, the subnormal 0.5 included; its sign lands on bit 15
// (bits 22..24 and 31 for the upper half). With the two codes isolated at bits [4j, 4j+4) of each
// half (j in {0, 1}), one multiply adds two shifted copies that cannot overlap or carry: x << (6 -
// 4j) puts the magnitude on bits 6..8 and x << (12 - 4j) the sign on bit 15; one mask keeps exactly
// those bits. Codes 2, 3, 6, 7 take the word shifted down by 8. Three operations per two elements
// (one of them on the FMA pipe), the shift shared.
template <int J>
__device__ __forceinline__ uint32_t e2m1_pair(uint32_t w) {
  static_assert(J >= 0 && J < 4, "pairs (0,4), (1,5), (2,6), (3,7)");
  constexpr uint32_t kPairBits = 0x81C081C0u;
  const uint32_t x = J < 2 ? w : w >> 8;
  return J % 2 == 0 ? ((x & 0x000F000Fu) * 0x1040u) & kPairBits : ((x & 0x00F000F0u) * 0x0104u) & kPairBits;
}

// The 4 pair words of a code word: pairs (0,4), (1,5), (2,6), (3,7) of its 8 elements.
struct Pairs4 {
  uint32_t p[4];
};
__device__ __forceinline__ Pairs4 e2m1_pairs(uint32_t w) {
  return {{e2m1_pair<0>(w), e2m1_pair<1>(w), e2m1_pair<2>(w), e2m1_pair<3>(w)}};
}

// Word W (0..3) of a 16-byte vector.
template <int W>
__device__ __forceinline__ uint32_t word_of(const uint4& q) {
  static_assert(W >= 0 && W < 4, "a uint4 has four words");
  if constexpr (W == 0) return q.x;
  if constexpr (W == 1) return q.y;
  if constexpr (W == 2) return q.z;
  return q.w;
}

// The small-M kernels' weight fragment (the m16n8k16 / wgmma A layout) of k16 step J (0..7) of a
// 128-element chunk, from a lane's 16 code bytes of rows g (lo) and g + 8 (hi): a[0], a[2] from row g
// (pairs 2(J%2) and 2(J%2)+1 of word J/2), a[1], a[3] from row g + 8, each times its row's scale
// pair for the step's block (scale_lo/hi[J / 4]: the lane's blocks 2t and 2t + 1).
template <int J>
__device__ __forceinline__ void chunk_fragment(uint32_t (&a)[4], const uint4& lo, const uint4& hi,
                                               const uint32_t (&scale_lo)[2], const uint32_t (&scale_hi)[2]) {
  static_assert(J >= 0 && J < 8, "a 128-element chunk has eight k16 steps");
  const uint32_t w0 = word_of<J / 2>(lo), w1 = word_of<J / 2>(hi);
  constexpr int kLo = 2 * (J % 2);
  a[0] = mul_bf16x2(e2m1_pair<kLo>(w0), scale_lo[J / 4]);
  a[1] = mul_bf16x2(e2m1_pair<kLo>(w1), scale_hi[J / 4]);
  a[2] = mul_bf16x2(e2m1_pair<kLo + 1>(w0), scale_lo[J / 4]);
  a[3] = mul_bf16x2(e2m1_pair<kLo + 1>(w1), scale_hi[J / 4]);
}

}  // namespace fp4kit::cuda
