// Device memory for Buffer/Nvfp4Tensor. With the CUDA backends compiled in it is cudaMalloc +
// cudaMemset; without them every CUDA allocation fails with a sentence naming the rebuild.
#include "core/memory.hpp"

#include "core/check.hpp"

#if defined(FP4KIT_HAVE_CUDA)
#include <cuda_runtime.h>

#include "cuda/common/cuda_check.hpp"
#endif

namespace fp4kit::detail {

#if defined(FP4KIT_HAVE_CUDA)

using cuda::DeviceGuard;

void* device_alloc(std::size_t bytes, int device_index) {
  DeviceGuard guard(device_index);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail(ErrorCode::kOutOfMemory, cat("cudaMalloc of ", bytes, " bytes on cuda:", device_index, " failed: out of memory"));
  }
  if (e != cudaSuccess) {
    fail(ErrorCode::kCudaError, cat("cudaMalloc of ", bytes, " bytes on cuda:", device_index, " failed: ",
                                    cudaGetErrorString(e)));
  }
  e = cudaMemset(p, 0, bytes);
  if (e != cudaSuccess) {
    cudaFree(p);
    fail(ErrorCode::kCudaError, cat("cudaMemset on cuda:", device_index, " failed: ", cudaGetErrorString(e)));
  }
  return p;
}

void device_free(void* ptr, int device_index) noexcept {
  if (ptr == nullptr) return;
  int previous = -1;
  cudaGetDevice(&previous);
  cudaSetDevice(device_index);
  cudaFree(ptr);
  if (previous >= 0) cudaSetDevice(previous);
}

#else

void* device_alloc(std::size_t bytes, int device_index) {
  fail(ErrorCode::kUnsupported,
       cat("cannot allocate ", bytes, " bytes on cuda:", device_index, ": fp4kit was built without CUDA backends"),
       "rebuild on a machine with nvcc (FP4KIT_CUDA=AUTO finds it, or -DFP4KIT_CUDA=ON)");
}

void device_free(void*, int) noexcept {}

#endif

}  // namespace fp4kit::detail
