// src/cuda/gemm/l2_policy.cuh: the L2 cache policy of the decode kernels' weight stream
// (sm80_gemm_smallm, sm90_gemm_smallm). Device code only (createpolicy: sm_80 and newer).
#pragma once

#include <cstdint>

namespace fp4kit::cuda {

// A decode GEMM reads each weight byte once. Loaded under this policy its lines are the L2's first
// victims, so the stream replaces its own lines rather than what else the L2 holds (the activations
// every CTA reads; dirty lines of earlier kernels, which bench gemm's flush leaves, as a previous
// kernel's outputs do in a real decode step). Lines fetched ahead of their use must not come under
// it: a 256-byte L2 promotion's second half can be evicted before it is read (the M = 1 run kernel
// at N = K = 8192, W4A4, the same runs: 24.6-24.8 us with both, 23.7-24.0 with the policy alone,
// 26.0-26.1 with neither; the sm_90a kernel's case is in sm90_gemm_smallm.cu). Measured on the
// H100 without the promotion (bench gemm, W4A4 / W4A16, each twice in the same runs): the M = 1 run
// kernel 26.3-26.5 / 26.7-26.8 -> 24.2-24.3 / 24.2-24.4 us at N = K = 8192 and 74.4-74.6 / 72.9 ->
// 71.0-71.1 / 68.8 at N = 28672. A read-only kernel of the same bytes with ld.global's
// cache hint did not move (19.4-19.8 us either way).
__device__ __forceinline__ uint64_t l2_stream_policy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// 16 bytes global -> shared by cp.async (L2 only) under `policy`, without an L2 prefetch (above).
__device__ __forceinline__ void cp_async16_policy(uint32_t smem, const void* gmem, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(smem), "l"(gmem), "l"(policy)
               : "memory");
}

}  // namespace fp4kit::cuda
