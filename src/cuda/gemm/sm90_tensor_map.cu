// src/cuda/gemm/sm90_tensor_map.cu: see sm90_tensor_map.hpp.
#include "cuda/gemm/sm90_tensor_map.hpp"

#include <cuda_runtime.h>

#include "core/check.hpp"

namespace fp4kit::cuda {

namespace {

// cuTensorMapEncodeTiled, reached through the runtime (no link against libcuda).
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn tensor_map_encoder(const char* who) {
  static const EncodeTiledFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found);
    return e == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<EncodeTiledFn>(f) : nullptr;
  }();
  if (fn == nullptr) {
    detail::fail(ErrorCode::kCudaError, detail::cat(who, ": the driver has no cuTensorMapEncodeTiled (CUDA 12.0+ driver needed)"));
  }
  return fn;
}

}  // namespace

CUtensorMap byte_map(const char* who, const void* base, int64_t rows, int64_t cols, int64_t stride, int box_rows,
                     int box_cols, CUtensorMapSwizzle swizzle, const char* what, CUtensorMapL2promotion promotion) {
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || stride % 16 != 0) {
    detail::fail(ErrorCode::kUnsupported,
                 detail::cat(who, ": ", what, " must start on 16 bytes and have rows a multiple of 16 bytes apart; the row stride is ",
                             stride, " B"),
                 "use densely allocated NVFP4 tensors (fp4kit allocates them so), or force gemm_dequant_cublaslt");
  }
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder(who)(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides,
                                             box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                             promotion, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    detail::fail(ErrorCode::kCudaError, detail::cat(who, ": cuTensorMapEncodeTiled failed for ", what, " [", rows, ", ", cols,
                                                    "] (error ", static_cast<int>(r), ")"));
  }
  return map;
}

}  // namespace fp4kit::cuda
