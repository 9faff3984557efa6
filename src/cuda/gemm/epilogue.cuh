// src/cuda/gemm/epilogue.cuh: the GEMM epilogue of NUMERICS §7, once, for every CUDA GEMM backend.
// Each step is one FP32 rounding in the contract's order (the kernels build with --fmad=false):
//   alpha(m) = ((amax_A[m] / 2688) * (amax_B / 2688)) * alpha      (a dense operand gives 1)
//   v = alpha(m) * acc;  v += beta * C[m, n];  v += bias[n];  d = RNE(v) in d's dtype.
// Backends that agree on acc therefore agree on d, bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/launch.hpp"
#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

__device__ __forceinline__ float gemm_load_as_float(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBF16: return to_float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::kF16: return to_float(static_cast<const __half*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// amax / 2688 of one operand's global scale (row `row` when row-scaled); 1 for a dense operand.
__device__ __forceinline__ float gemm_global_factor(const GemmOperandPointers& p, int64_t row) {
  return p.amax ? p.amax[p.row_scaled ? row : 0] / kGlobalScaleNumerator : 1.0f;
}

// B's global factor from its amax alone (B is never row-scaled), for the kernels that carry only that
// pointer: gemm_global_factor(b, 0).
__device__ __forceinline__ float gemm_b_factor(const float* amax_b) {
  return amax_b ? amax_b[0] / kGlobalScaleNumerator : 1.0f;
}

// alpha(m): the global factors of A's row m and of B, times the user's alpha.
__device__ __forceinline__ float gemm_row_alpha(const GemmOperandPointers& a, float b_factor, float alpha, int64_t row) {
  return (gemm_global_factor(a, row) * b_factor) * alpha;
}

// d[row, col] before rounding: alpha(m) * acc, then beta * C, then bias.
__device__ __forceinline__ float gemm_epilogue_value(const GemmEpilogue& e, float row_alpha, float acc, int64_t row,
                                                     int64_t col) {
  float v = row_alpha * acc;
  if (e.beta != 0.0f) v += e.beta * gemm_load_as_float(e.c, e.c_dtype, row * e.c_stride + col);
  if (e.bias) v += gemm_load_as_float(e.bias, e.bias_dtype, col);
  return v;
}

// Whether gemm_epilogue_value reduces to row_alpha * acc (no C, no bias): kernels branch on it once
// instead of per element.
__device__ __forceinline__ bool gemm_epilogue_is_scale_only(const GemmEpilogue& e) {
  return e.beta == 0.0f && e.bias == nullptr;
}

}  // namespace fp4kit::cuda
