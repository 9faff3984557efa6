// src/ref/fp_env.hpp: the CPU reference computes in IEEE FP32 whatever floating-point mode the
// calling thread is in. A host process may have turned on flush-to-zero / denormals-are-zero
// (torch.set_flush_denormal(True) does, and so do some libraries on load); under them subnormal
// inputs would read as zero and the reference would disagree with NUMERICS.md and the GPU. Each
// reference entry point holds an IeeeFpScope, which clears FTZ and DAZ and restores the caller's
// mode on exit.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace fp4kit::ref {

class IeeeFpScope {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  // MXCSR bit 15 is flush-to-zero, bit 6 denormals-are-zero.
  static constexpr unsigned kFtzDaz = (1u << 15) | (1u << 6);
  IeeeFpScope() : saved_(_mm_getcsr()) {
    if (saved_ & kFtzDaz) _mm_setcsr(saved_ & ~kFtzDaz);
  }
  ~IeeeFpScope() {
    if (saved_ & kFtzDaz) _mm_setcsr(saved_);
  }

 private:
  unsigned saved_;
#else
  // Other hosts: the default floating-point environment is assumed (IEEE, no flushing).
  IeeeFpScope() = default;
#endif
 public:
  IeeeFpScope(const IeeeFpScope&) = delete;
  IeeeFpScope& operator=(const IeeeFpScope&) = delete;
};

}  // namespace fp4kit::ref
