// src/cuda/common/cuda_check.hpp: every CUDA call is checked; a failure names the call, the kernel
// and its configuration.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/check.hpp"

namespace fp4kit::cuda {

inline void check(cudaError_t e, const char* call, const std::string& context) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls are not blamed
  detail::fail(e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kCudaError,
               detail::cat(call, " failed", context.empty() ? "" : " (" + context + ")", ": ", cudaGetErrorString(e)),
               e == cudaErrorInvalidDeviceFunction ? "this build has no image for the device: rebuild with its "
                                                     "architecture in CMAKE_CUDA_ARCHITECTURES"
                                                   : "");
}

// Makes a device current for a scope and restores the caller's afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    if (previous_ != index) {
      const cudaError_t e = cudaSetDevice(index);
      if (e != cudaSuccess) {
        cudaGetLastError();
        detail::fail(ErrorCode::kCudaError, detail::cat("cudaSetDevice(", index, ") failed: ", cudaGetErrorString(e)),
                     "check the device index against `nvidia-smi -L` and CUDA_VISIBLE_DEVICES");
      }
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// The number of SMs of device `index` (launchers size grids and split counts by it).
inline int sm_count_of(int index) {
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, index), "cudaDeviceGetAttribute(MultiProcessorCount)",
        detail::cat("device ", index));
  return n;
}

// "" when `kernel` has an image loadable on device `index`, else the reason (cudaFuncGetAttributes).
std::string kernel_image_problem(const void* kernel, int index, const char* name);

}  // namespace fp4kit::cuda

#define FP4KIT_CUDA_CHECK(call, context) ::fp4kit::cuda::check((call), #call, (context))
