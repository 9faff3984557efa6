// src/core/nvfp4_math.hpp: the scalar formulas of NVFP4 quantization (docs/NUMERICS.md §2, §5, §8),
// written once for the CPU reference and the CUDA kernels (FP4KIT_HD). Every operation is a plain
// IEEE FP32 operation in the order the contract gives; fmaf appears only where the contract says so.
#pragma once

#include <cmath>
#include <cstdint>

#include "fp4kit/formats.hpp"

namespace fp4kit::detail {

// (1.0f / 6.0f) as the contract fixes it: the FP32 constant 0x3E2AAAAB.
inline constexpr float kOneSixth = 0.16666667163372039794921875f;
static_assert(float_bits(kOneSixth) == 0x3E2AAAABu);

// min/max that return the non-NaN operand (IEEE minNum/maxNum): the hardware instruction on the
// GPU, the portable formats.hpp version on the host. Both give the same value for every input the
// formulas below see (their only difference, the order of +0 and -0, never reaches a result:
// clamping keeps a zero's sign either way, and amaxes are over |x|).
FP4KIT_HD inline float fmin_num(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return min_f(a, b);
#endif
}
FP4KIT_HD inline float fmax_num(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fmaxf(a, b);
#else
  return max_f(a, b);
#endif
}

struct GlobalScale {
  float s_enc;  // S_enc = 2688 / amax, clamped; 1 when amax == 0
  float s_dec;  // S_dec = 1 / S_enc
};

// `amax` is the FINITE amax (>= 0) of the tensor or row.
// NOTE: amax == 0 is tested BEFORE the division. Written as in the contract (divide, then test
// `amax == 0 || S_enc == 0`), GCC 13 at -O1 and above concludes from 2688/amax == Inf that amax is
// zero, which is false for a subnormal amax, and returns S_enc = 1 (seen on the GPU machine's
// GCC 13.3; GCC 12 compiles it as written). Same values for every input, without the trap.
FP4KIT_HD inline GlobalScale global_scale(float amax) {
  if (!(amax > 0.0f)) return {1.0f, 1.0f};  // the finite amax is >= 0: this is amax == 0
  float s_enc = kGlobalScaleNumerator / amax;
  s_enc = fmin_num(s_enc, kFloatMax);
  if (s_enc == 0.0f) s_enc = 1.0f;
  return {s_enc, 1.0f / s_enc};
}

// The E4M3 decode scale of a block whose finite amax is `bamax`.
FP4KIT_HD inline uint8_t block_scale_byte(float bamax, const GlobalScale& g) {
  const float mult = g.s_enc * kOneSixth;
  return e4m3_rne_satfinite(fmin_num(bamax * mult, kFloatMax));
}

// The FP32 encode scale of a block: 1 / (sdec_b * S_dec), at most FLT_MAX (a zero scale gives it).
FP4KIT_HD inline float block_encode_scale(uint8_t scale_byte, const GlobalScale& g) {
  return fmin_num(1.0f / (e4m3_to_float(scale_byte) * g.s_dec), kFloatMax);
}

// x * senc_b clamped to [-6, 6]. NOTE: the product is one FP32 rounding; never fuse it.
FP4KIT_HD inline float scale_and_clamp(float x, float senc_b) {
  const float y = x * senc_b;
  return fmin_num(fmax_num(y, -kE2m1Max), kE2m1Max);
}

FP4KIT_HD inline uint8_t quantize_rne(float x, float senc_b) { return e2m1_rne(scale_and_clamp(x, senc_b)); }

// Stochastic rounding of x * senc_b with the random byte `rbyte` (0..255), NUMERICS §8:
// a = |y| <= 6, lo <= a < hi the E2M1 neighbours, t = fmaf(u, hi - lo, a), up iff t >= hi.
FP4KIT_HD inline uint8_t quantize_sr(float x, float senc_b, uint32_t rbyte) {
  const float y = scale_and_clamp(x, senc_b);
  const float a = abs_f(y);
  // Index of lo on the grid 0, 0.5, 1, 1.5, 2, 3, 4, 6 (codes 0..7); a == 6 stays.
  uint8_t lo_code;
  if (a < 0.5f) lo_code = 0;
  else if (a < 1.0f) lo_code = 1;
  else if (a < 1.5f) lo_code = 2;
  else if (a < 2.0f) lo_code = 3;
  else if (a < 3.0f) lo_code = 4;
  else if (a < 4.0f) lo_code = 5;
  else if (a < 6.0f) lo_code = 6;
  else lo_code = 7;
  uint8_t code = lo_code;
  if (lo_code < 7) {
    const float lo = e2m1_to_float(lo_code);
    const float hi = e2m1_to_float(static_cast<uint8_t>(lo_code + 1));
    const float u = static_cast<float>(rbyte) * (1.0f / 256.0f);
    const float t = fmaf(u, hi - lo, a);
    if (t >= hi) code = static_cast<uint8_t>(lo_code + 1);
  }
  return (y < 0.0f) ? static_cast<uint8_t>(code | 8u) : code;
}

// ---------------------------------------------------------------------------------------------
// The same two roundings in the form the GPU kernels use: a handful of integer and FP32 operations
// per element, no comparison chain, and the sign folded into a constant. They return FP32 bits
// whose low nibble is the E2M1 code (sign included) and whose bits 4..15 are zero, so that
// pack_nibbles() below can assemble eight codes with shifts and adds.
//
// The E2M1 grid is uniform per region: the multiples of 1/2 on [0,2) (codes 0..4), the integers
// on [2,4) (codes 4..6), the multiples of 2 on [4,6] (codes 6..7). With a = min(|y|, 6) and
// e = max(biased exponent of a, 127) (127, 128, 129 for the three regions; a <= 6 keeps e <= 129)
// the region's spacing is 2^(e-128). Both roundings equal quantize_rne / quantize_sr bit for bit
// for every non-NaN input (tested on the host over every tie, zeros of both signs and a dense
// sweep, and on the GPU through the kernels; NaN never reaches them: a block holding one is
// written as zeros, §9).
// ---------------------------------------------------------------------------------------------

// |y| clamped to 6 (the clamp of NUMERICS §2, without the sign).
FP4KIT_HD inline float abs_clamp6(float y) {
#if defined(__CUDA_ARCH__)
  return fminf(fabsf(y), kE2m1Max);  // one FMNMX with an absolute-value operand
#else
  return min_f(abs_f(y), kE2m1Max);
#endif
}

FP4KIT_HD inline uint32_t e2m1_region_exponent(float a) {
  const uint32_t eb = float_bits(a) >> 23;
  return eb < 127u ? 127u : eb;
}

// Round to nearest even: t = a + M where M = 2^(e-105) has the region's spacing as its ulp, so
// the FP32 addition itself rounds a to the grid (ties to the even grid point, which is the even
// code). M's mantissa also carries the region's first code 2(e-127) and 8 for a negative y: both
// even, so they change neither the rounding nor its tie-breaking, and the sum's low nibble is the
// code. M = e * 0x00800002 + (0x4A800000 - 127 * 0x00800002) [+ 8]: one integer multiply-add.
// "Negative" is y < 0: -0.0 gives code 0, a negative value that rounds to zero gives code 8.
inline constexpr uint32_t kRneMagicBase = 0x4A800000u - 127u * 0x00800002u;

FP4KIT_HD inline uint32_t e2m1_rne_bits(float y) {
  const float a = abs_clamp6(y);
  const uint32_t magic = e2m1_region_exponent(a) * 0x00800002u + (y < 0.0f ? kRneMagicBase + 8u : kRneMagicBase);
  return float_bits(a + bits_float(magic));
}

// Stochastic rounding, NUMERICS §8: with s = 2^(128-e) (the inverse spacing) and u = byte/256,
// the contract's t = fmaf(u, step, a) rounds up iff floor(t * s) > floor(a * s), and t * s =
// RN(a * s + u) exactly (s is a power of two). Scaled by 256 that is one FMA with the byte as its
// addend: v = fmaf(a, 256 s, byte) = 256 RN(a s + u). floor(v / 256) is the grid index, read off
// the mantissa of 2^31 + v rounded toward minus infinity (ulp 256 there); the region's first code
// and the sign go into that constant as above.
inline constexpr uint32_t kSrMagicBase = 0x4F000000u - 127u * 2u;  // 2^31, minus 2 * 127

// `byte_2p23` is the random byte as the float 2^23 + byte (the GPU builds it with one byte permute).
FP4KIT_HD inline uint32_t e2m1_sr_bits_2p23(float y, float byte_2p23) {
  const float a = abs_clamp6(y);
  const uint32_t e = e2m1_region_exponent(a);
  const float s256 = bits_float((263u - e) << 23);  // 256 * 2^(128-e): 512, 256, 128
  const uint32_t magic = e * 2u + (y < 0.0f ? kSrMagicBase + 8u : kSrMagicBase);
  const float fbyte = byte_2p23 - 8388608.0f;  // exact
#if defined(__CUDA_ARCH__)
  const float v = __fmaf_rn(a, s256, fbyte);
  return float_bits(__fadd_rd(v, bits_float(magic)));
#else
  const float v = std::fma(a, s256, fbyte);
  return magic + static_cast<uint32_t>(std::floor(v * (1.0f / 256.0f)));
#endif
}

FP4KIT_HD inline uint32_t e2m1_sr_bits(float y, uint32_t rbyte) {
  return e2m1_sr_bits_2p23(y, bits_float(0x4B000000u | rbyte));
}

// Eight results of e2m1_*_bits (low nibble = code, bits 4..15 zero) packed into one word,
// element 0 in the lowest nibble: pairs and quads by shift-and-add (the zero bits keep the
// garbage above bit 15 out of the low half), then one byte permute.
FP4KIT_HD inline uint32_t pack_nibbles(const uint32_t (&t)[8]) {
  const uint32_t p01 = (t[1] << 4) + t[0], p23 = (t[3] << 4) + t[2];
  const uint32_t p45 = (t[5] << 4) + t[4], p67 = (t[7] << 4) + t[6];
  const uint32_t q0 = (p23 << 8) + p01, q1 = (p67 << 8) + p45;
#if defined(__CUDA_ARCH__)
  return __byte_perm(q0, q1, 0x5410);
#else
  return (q0 & 0xFFFFu) | (q1 << 16);
#endif
}

// Four results packed into 16 bits (the f32 kernels hold four elements per 16-byte load).
FP4KIT_HD inline uint32_t pack_nibbles4(const uint32_t (&t)[4]) {
  const uint32_t p01 = (t[1] << 4) + t[0], p23 = (t[3] << 4) + t[2];
  return ((p23 << 8) + p01) & 0xFFFFu;
}

// Sign s_i of the RHT: -1 where bit i of the mask is set.
FP4KIT_HD constexpr bool rht_sign_negative(uint16_t mask, int i) { return ((mask >> i) & 1u) != 0; }

// v <- H16 v by the fast Walsh-Hadamard butterflies in the contract's order: h = 1, 2, 4, 8, pairs
// (i, i+h) with (i & h) == 0 become (v_i + v_i+h, v_i - v_i+h). This fixed order is what makes the
// CPU and the GPU bit-identical.
FP4KIT_HD inline void walsh_hadamard16(float* v) {
  for (int h = 1; h < 16; h <<= 1) {
    for (int i = 0; i < 16; ++i) {
      if ((i & h) == 0) {
        const float a = v[i], b = v[i + h];
        v[i] = a + b;
        v[i + h] = a - b;
      }
    }
  }
}

// The 16-point RHT in place, NUMERICS §5: w = v * s; w = H16 w; y = 0.25 * w.
FP4KIT_HD inline void rht16(float* v, uint16_t mask) {
  for (int i = 0; i < 16; ++i) {
    if (rht_sign_negative(mask, i)) v[i] = -v[i];
  }
  walsh_hadamard16(v);
  for (int i = 0; i < 16; ++i) v[i] = 0.25f * v[i];
}

// Its inverse (H16 is symmetric and H16 H16 = 16 I): v = s * (0.25 * H16 y).
FP4KIT_HD inline void rht16_inverse(float* v, uint16_t mask) {
  walsh_hadamard16(v);
  for (int i = 0; i < 16; ++i) {
    v[i] = 0.25f * v[i];
    if (rht_sign_negative(mask, i)) v[i] = -v[i];
  }
}

}  // namespace fp4kit::detail
