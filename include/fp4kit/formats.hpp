// fp4kit/formats.hpp: the scalar formats of NVFP4 (docs/NUMERICS.md §1) as constexpr codecs.
//
// Every function here is usable in constant expressions, on the host and (compiled by nvcc) on the
// device, and needs no CUDA header. They are the single definition of the formats: the CPU
// reference, the CUDA kernels and the tests all call these, so a format cannot mean two things.
//
//   E2M1  4 bits: sign (bit 3), 2 exponent bits, 1 mantissa bit. Codes 0..7 are
//         0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8..15 their negatives (8 is -0).
//   E4M3  8 bits (float8_e4m3fn): bias 7, 3 mantissa bits, max 448, smallest subnormal 2^-9,
//         0x7F/0xFF are NaN, no infinity.
//   BF16, FP16: the 16-bit input/output formats, converted with round-to-nearest-even.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FP4KIT_HD __host__ __device__
#else
#define FP4KIT_HD
#endif

namespace fp4kit {

// Largest finite E2M1 magnitude and E4M3 magnitude.
inline constexpr float kE2m1Max = 6.0f;
inline constexpr float kE4m3Max = 448.0f;
// S_enc = kGlobalScaleNumerator / amax (NUMERICS §2): 2688 = 448 * 6.
inline constexpr float kGlobalScaleNumerator = 2688.0f;
// E4M3 byte that encodes NaN (the scale of a block that held a NaN or an Inf, NUMERICS §9).
inline constexpr uint8_t kE4m3Nan = 0x7F;
// Number of elements that share one E4M3 scale.
inline constexpr int kBlockSize = 16;
// Largest finite float, 0x7F7FFFFF.
inline constexpr float kFloatMax = 3.40282346638528859811704183484516925e+38f;

// Bit casts that work in constexpr code under both g++ and nvcc (std::bit_cast is host-only there).
FP4KIT_HD constexpr uint32_t float_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
FP4KIT_HD constexpr float bits_float(uint32_t u) { return __builtin_bit_cast(float, u); }

FP4KIT_HD constexpr bool is_nan(float f) { return (float_bits(f) & 0x7FFFFFFFu) > 0x7F800000u; }
FP4KIT_HD constexpr bool is_finite(float f) { return (float_bits(f) & 0x7F800000u) != 0x7F800000u; }
FP4KIT_HD constexpr float abs_f(float f) { return bits_float(float_bits(f) & 0x7FFFFFFFu); }
// min/max that return the non-NaN operand where one is NaN (IEEE minNum/maxNum, like fminf/fmaxf).
FP4KIT_HD constexpr float min_f(float a, float b) { return is_nan(a) ? b : (is_nan(b) ? a : (b < a ? b : a)); }
FP4KIT_HD constexpr float max_f(float a, float b) { return is_nan(a) ? b : (is_nan(b) ? a : (b > a ? b : a)); }

// ---------------------------------------------------------------------------------------------
// E2M1
// ---------------------------------------------------------------------------------------------

// The value of a 4-bit E2M1 code (the low 4 bits of `code` are used).
FP4KIT_HD constexpr float e2m1_to_float(uint8_t code) {
  constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = kMagnitude[code & 7u];
  return (code & 8u) ? -m : m;
}

// Round-to-nearest-even onto the E2M1 grid, saturating at +-6 (the callers clamp first anyway).
// Ties go to the even CODE: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4.
// +0.0 and -0.0 give code 0; a negative non-zero value that rounds to zero gives code 8 (-0).
// NaN gives code 0 (callers never pass NaN: a block holding one is written as zeros, §9).
FP4KIT_HD constexpr uint8_t e2m1_rne(float x) {
  const float a = abs_f(x);
  uint8_t m = 0;
  // Each threshold is the midpoint between neighbours; `<=` where the lower code is even (tie
  // rounds down), `<` where the upper code is even (tie rounds up).
  if (!(a > 0.25f)) m = 0;        // also NaN
  else if (a < 0.75f) m = 1;
  else if (a <= 1.25f) m = 2;
  else if (a < 1.75f) m = 3;
  else if (a <= 2.5f) m = 4;
  else if (a < 3.5f) m = 5;
  else if (a <= 5.0f) m = 6;
  else m = 7;
  return (x < 0.0f) ? static_cast<uint8_t>(m | 8u) : m;
}

// ---------------------------------------------------------------------------------------------
// E4M3 (float8_e4m3fn)
// ---------------------------------------------------------------------------------------------

// The value of an E4M3 byte; 0x7F and 0xFF are NaN.
FP4KIT_HD constexpr float e4m3_to_float(uint8_t byte) {
  const uint32_t sign = static_cast<uint32_t>(byte & 0x80u) << 24;
  const uint32_t exp = (byte >> 3) & 0xFu;
  const uint32_t man = byte & 0x7u;
  if (exp == 0xFu && man == 0x7u) return bits_float(sign | 0x7FC00000u);
  if (exp == 0) {
    // Subnormal: man * 2^-9, exact in FP32.
    return bits_float(sign | float_bits(static_cast<float>(man) * 0.001953125f));
  }
  // Normal: rebias 7 -> 127 and widen the mantissa 3 -> 23 bits.
  return bits_float(sign | ((exp + 120u) << 23) | (man << 20));
}

// Round-to-nearest-even to E4M3 with saturation to +-448 ("satfinite"); NaN gives 0x7F.
// Inputs beyond 448 (including +-Inf) give +-448 (0x7E / 0xFE).
FP4KIT_HD constexpr uint8_t e4m3_rne_satfinite(float x) {
  if (is_nan(x)) return kE4m3Nan;
  const uint8_t sign = (float_bits(x) >> 31) ? 0x80u : 0x00u;
  const uint32_t a = float_bits(x) & 0x7FFFFFFFu;  // |x| as bits; ordered like the values
  if (a >= float_bits(kE4m3Max)) return static_cast<uint8_t>(sign | 0x7Eu);
  const int32_t e = static_cast<int32_t>(a >> 23) - 127;  // unbiased FP32 exponent
  uint32_t code = 0;
  if (e < -6) {
    // Result is an E4M3 subnormal (or rounds up to the smallest normal, code 8): the code is
    // |x| * 2^9 rounded to an integer. Shift the 24-bit significand right with RNE.
    if (e < -11) {  // |x| < 2^-11 < half the smallest subnormal (2^-10): rounds to zero
      return sign;
    }
    const uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;  // 1.m in 24 bits (x normal here)
    const uint32_t shift = static_cast<uint32_t>(14 - e);  // value*2^9 = sig * 2^(e+9-23)
    const uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    code = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  } else {
    // Normal: keep 3 of the 23 mantissa bits with RNE; a carry rolls into the exponent field,
    // which is exactly the next binade's code because E4M3 codes are ordered like the values.
    const uint32_t man = a & 0x7FFFFFu;
    const uint32_t q = man >> 20;
    const uint32_t rem = man & 0xFFFFFu;
    const uint32_t half = 0x80000u;
    const uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
    code = (static_cast<uint32_t>(e + 7) << 3) + q + up;
  }
  if (code > 0x7Eu) code = 0x7Eu;  // 464 <= |x| < 448 cannot happen; kept as a guard on the NaN code
  return static_cast<uint8_t>(sign | code);
}

// ---------------------------------------------------------------------------------------------
// BF16 and FP16 (storage formats of inputs and outputs)
// ---------------------------------------------------------------------------------------------

FP4KIT_HD constexpr float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

// Round-to-nearest-even; NaN stays NaN (quiet), overflow goes to +-Inf like IEEE conversion.
FP4KIT_HD constexpr uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if (is_nan(f)) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

FP4KIT_HD constexpr float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1Fu) return bits_float(sign | 0x7F800000u | (man << 13));  // Inf / NaN
  if (exp == 0) {
    // Subnormal: man * 2^-24, exact in FP32.
    return bits_float(sign | float_bits(static_cast<float>(man) * 5.9604644775390625e-8f));
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

// Round-to-nearest-even; overflow gives +-Inf, NaN stays NaN (quiet).
FP4KIT_HD constexpr uint16_t float_to_fp16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: rounds to Inf
  const int32_t e = static_cast<int32_t>(a >> 23) - 127;
  if (e < -14) {
    // FP16 subnormal: value * 2^24 rounded to an integer.
    if (e < -25) return sign;  // below half the smallest subnormal (2^-25)
    const uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(-1 - e);  // value*2^24 = sig * 2^(e+24-23)
    const uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    return static_cast<uint16_t>(sign | (q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u)));
  }
  const uint32_t man = a & 0x7FFFFFu;
  const uint32_t q = man >> 13;
  const uint32_t rem = man & 0x1FFFu;
  const uint32_t up = (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ? 1u : 0u;
  return static_cast<uint16_t>(sign | ((static_cast<uint32_t>(e + 15) << 10) + q + up));
}

}  // namespace fp4kit
