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
    check(cudaGetDevice(&previous_), "cudaGetDevice", "");
    if (previous_ != index) check(cudaSetDevice(index), "cudaSetDevice", detail::cat("cuda:", index));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// "" when `kernel` has an image loadable on device `index`, else the reason (cudaFuncGetAttributes).
std::string kernel_image_problem(const void* kernel, int index, const char* name);

}  // namespace fp4kit::cuda

#define FP4KIT_CUDA_CHECK(call, context) ::fp4kit::cuda::check((call), #call, (context))
