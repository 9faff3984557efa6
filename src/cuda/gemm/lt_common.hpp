// src/cuda/gemm/lt_common.hpp: what the GEMM backends built on cuBLASLt share (lt_common.cu): the
// status check, the handle per device, RAII for one call's descriptors, and the contract's epilogue
// (epilogue.cuh) as a kernel over an FP32 product matrix. Host-only interface.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/gemm/launch.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit::cuda {

// The grid-stride helper kernels of these backends run CTAs of this many threads; the grid for
// `work` items: one item per thread, at least 1 and at most 2^20 CTAs (the kernels stride).
inline constexpr int kLtHelperThreads = 256;
inline unsigned lt_helper_grid(int64_t work) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + kLtHelperThreads - 1) / kLtHelperThreads, 1, int64_t{1} << 20));
}

// Throws Error (kOutOfMemory or kCudaError) naming `what` and the call unless status is success.
void check_lt(cublasStatus_t status, const char* what, const char* call);

// One cuBLASLt handle per device for the process, created on first use. NOTE: process-wide on
// purpose: cublasLtCreate costs milliseconds, the handle holds no per-call state, and cuBLASLt
// allows its concurrent use.
cublasLtHandle_t lt_handle(int device);

// The descriptors of one cuBLASLt call, destroyed with it.
struct LtCall {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t layout[3] = {nullptr, nullptr, nullptr};  // cuBLASLt's A (our B), B (our A), D
  cublasLtMatmulPreference_t preference = nullptr;
  LtCall() = default;
  LtCall(const LtCall&) = delete;
  LtCall& operator=(const LtCall&) = delete;
  ~LtCall();
};

// d [m, n] (d_stride elements between rows) = the contract's epilogue (alpha(m) from a's and b's
// amaxes, beta * C, bias, RNE to d_dtype) of acc [m, n] (row-major FP32 sums), on `stream`.
void launch_gemm_epilogue(const float* acc, int64_t m, int64_t n, const GemmOperandPointers& a,
                          const GemmOperandPointers& b, const GemmEpilogue& epilogue, void* d, DType d_dtype,
                          int64_t d_stride, cudaStream_t stream);

}  // namespace fp4kit::cuda
