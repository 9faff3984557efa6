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
// The same two roundings computed by region instead of by comparison chains (fewer instructions
// in the GPU kernels). On [0,2) the E2M1 grid is the multiples of 1/2 (codes 0..4), on [2,4) the
// integers (codes 4..6), on [4,6] the multiples of 2 (codes 6..7): scale into the region's
// integer grid, round there, add the region's first code. Integer round-half-even picks the even
// grid point, which is the even code, so these equal quantize_rne/quantize_sr bit for bit for
// every non-NaN input (tested on the host over every tie and a dense sweep, and on the GPU through
// the kernels; NaN never reaches them: a block holding one is written as zeros, §9).
// ---------------------------------------------------------------------------------------------

// 1.5 * 2^23: adding it to a value v in [0, 2^22) leaves round_half_even(v) in the low mantissa
// bits of the sum (the FP32 addition rounds to nearest even), so no float-to-int conversion is
// needed. The region's code offset is folded into the constant.
inline constexpr float kRoundMagic = 12582912.0f;

// |y| clamped to 6 (the clamp of NUMERICS §2, without the sign).
FP4KIT_HD inline float abs_clamp6(float y) {
#if defined(__CUDA_ARCH__)
  return fminf(fabsf(y), kE2m1Max);  // one FMNMX with an absolute-value operand
#else
  return min_f(abs_f(y), kE2m1Max);
#endif
}

// The E2M1 region of a in [0, 6] from its exponent: e = clamp(floor(log2 a), 0, 2) picks [0,2),
// [2,4) or [4,6]; the grid spacing there is 2^(e-1) and the region's first code is 2e. Returned
// as the clamped biased exponent 127 + e.
FP4KIT_HD inline uint32_t e2m1_region_exponent(float a) {
  const uint32_t eb = float_bits(a) >> 23;
  return eb < 127u ? 127u : (eb > 129u ? 129u : eb);
}

// a * scale + magic; exact in either form, since a * scale is (scale is a power of two).
FP4KIT_HD inline float scale_add(float a, float scale, float magic) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, scale, magic);
#else
  return a * scale + magic;
#endif
}

FP4KIT_HD inline uint8_t quantize_rne_fast(float x, float senc_b) {
  const float y = x * senc_b;
  const float a = abs_clamp6(y);
  const uint32_t eb = e2m1_region_exponent(a);
  const float scale = bits_float((255u - eb) << 23);                        // 2^(1-e): 2, 1, 0.5
  const float magic = bits_float(float_bits(kRoundMagic) + 2u * (eb - 127u));  // + first code 2e
  const uint32_t code = float_bits(scale_add(a, scale, magic)) & 0xFu;
  return static_cast<uint8_t>(y < 0.0f ? (code | 8u) : code);
}

// u = byte / 256 without an integer-to-float conversion: 1 + byte/256 has the byte as the top of
// its mantissa, and subtracting 1 is exact.
FP4KIT_HD inline float sr_uniform(uint32_t rbyte) { return bits_float(0x3F800000u | (rbyte << 15)) - 1.0f; }

// floor(v) for 0 <= v < 2^22, as the low bits of v + 1.5 * 2^23 rounded toward minus infinity
// (the GPU adds with that rounding in one instruction; the host takes std::floor).
FP4KIT_HD inline uint32_t floor_small(float v) {
#if defined(__CUDA_ARCH__)
  return float_bits(__fadd_rd(v, kRoundMagic)) & 0xFFu;
#else
  return static_cast<uint32_t>(std::floor(v));
#endif
}

FP4KIT_HD inline uint8_t quantize_sr_fast(float x, float senc_b, uint32_t rbyte) {
  const float y = x * senc_b;
  const float a = abs_clamp6(y);
  const uint32_t eb = e2m1_region_exponent(a);
  const float scale = bits_float((255u - eb) << 23);  // 2^(1-e)
  const float step = bits_float((eb - 1u) << 23);     // 2^(e-1), the grid spacing
  // t = a + u * step, as the contract writes it; the result rounds up iff t reaches the upper
  // neighbour, i.e. iff floor(t * scale) moves past floor(a * scale) (scale is a power of two,
  // so t * scale is exact). At a == 6, t * 0.5 < 4 keeps code 7.
  const float t = fmaf(sr_uniform(rbyte), step, a);
  const uint32_t code = floor_small(t * scale) + 2u * (eb - 127u);
  return static_cast<uint8_t>(y < 0.0f ? (code | 8u) : code);
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
