// src/cuda/gemm/lt_common.cu: see lt_common.hpp.
#include "cuda/gemm/lt_common.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <map>
#include <mutex>

#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/epilogue.cuh"

namespace fp4kit::cuda {

namespace {

constexpr int kThreads = kLtHelperThreads;

template <typename OutT>
__global__ void __launch_bounds__(kThreads) epilogue_kernel(const float* __restrict__ acc, int64_t m, int64_t n,
                                                            const GemmOperandPointers a, const GemmOperandPointers b,
                                                            const GemmEpilogue e, OutT* __restrict__ d, int64_t d_stride) {
  const float fb = gemm_global_factor(b, 0);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < m * n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / n, col = i - row * n;
    const float v = gemm_epilogue_value(e, gemm_row_alpha(a, fb, e.alpha, row), acc[i], row, col);
    d[row * d_stride + col] = from_float<OutT>(v);
  }
}

}  // namespace

void check_lt(cublasStatus_t status, const char* what, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  detail::fail(status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kCudaError,
               detail::cat(what, ": ", call, " failed: ", cublasLtGetStatusString(status)));
}

cublasLtHandle_t lt_handle(int device) {
  static std::mutex mutex;
  static std::map<int, cublasLtHandle_t> handles;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasLtHandle_t h = nullptr;
    check_lt(cublasLtCreate(&h), "gemm (cuBLASLt)", "cublasLtCreate");
    it = handles.emplace(device, h).first;
  }
  return it->second;
}

LtCall::~LtCall() {
  if (preference) cublasLtMatmulPreferenceDestroy(preference);
  for (cublasLtMatrixLayout_t l : layout) {
    if (l) cublasLtMatrixLayoutDestroy(l);
  }
  if (op) cublasLtMatmulDescDestroy(op);
}

void launch_gemm_epilogue(const float* acc, int64_t m, int64_t n, const GemmOperandPointers& a,
                          const GemmOperandPointers& b, const GemmEpilogue& epilogue, void* d, DType d_dtype,
                          int64_t d_stride, cudaStream_t s) {
  const unsigned grid = lt_helper_grid(m * n);
  switch (d_dtype) {
    case DType::kF32:
      epilogue_kernel<float><<<grid, kThreads, 0, s>>>(acc, m, n, a, b, epilogue, static_cast<float*>(d), d_stride);
      break;
    case DType::kF16:
      epilogue_kernel<__half><<<grid, kThreads, 0, s>>>(acc, m, n, a, b, epilogue, static_cast<__half*>(d), d_stride);
      break;
    case DType::kBF16:
      epilogue_kernel<__nv_bfloat16>
          <<<grid, kThreads, 0, s>>>(acc, m, n, a, b, epilogue, static_cast<__nv_bfloat16*>(d), d_stride);
      break;
    default: detail::fail(ErrorCode::kInternal, detail::cat("gemm: unexpected output dtype ", dtype_name(d_dtype)));
  }
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("gemm: epilogue kernel [", m, ", ", n, "]"));
}

}  // namespace fp4kit::cuda
