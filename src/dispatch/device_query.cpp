// Queries of real devices: the host CPU, and CUDA devices through the runtime when the CUDA
// backends are compiled in. Context::device caches the result per device.
#include <fstream>
#include <string>
#include <thread>

#include "core/check.hpp"
#include "fp4kit/dispatch.hpp"

#if defined(FP4KIT_HAVE_CUDA)
#include <cublasLt.h>
#include <cuda_runtime.h>
#endif

namespace fp4kit {

namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "host CPU";
}

}  // namespace

int cuda_device_count() noexcept {
#if defined(FP4KIT_HAVE_CUDA)
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

DeviceInfo query_device(Device device) {
  DeviceInfo d;
  d.type = device.type;
  d.index = device.index;
  if (device.type == DeviceType::kCpu) {
    d.name = cpu_model_name();
    d.sm_count = static_cast<int>(std::thread::hardware_concurrency());
    return d;
  }
#if defined(FP4KIT_HAVE_CUDA)
  const int count = cuda_device_count();
  if (count == 0) {
    detail::fail(ErrorCode::kUnsupported, detail::cat("cannot use cuda:", device.index, ": no CUDA device is visible"),
                 "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or plan for a GPU with a device profile");
  }
  if (device.index < 0 || device.index >= count) {
    detail::fail(ErrorCode::kInvalidArgument,
                 detail::cat("cuda:", device.index, " does not exist: ", count, " CUDA device(s) visible"),
                 "use a device index below the count, or check CUDA_VISIBLE_DEVICES");
  }
  cudaDeviceProp p{};
  const cudaError_t e = cudaGetDeviceProperties(&p, device.index);
  if (e != cudaSuccess) {
    detail::fail(ErrorCode::kCudaError,
                 detail::cat("cudaGetDeviceProperties(", device.index, ") failed: ", cudaGetErrorString(e)));
  }
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.smem_per_block = static_cast<int64_t>(p.sharedMemPerBlock);
  d.smem_per_block_optin = static_cast<int64_t>(p.sharedMemPerBlockOptin);
  d.smem_per_sm = static_cast<int64_t>(p.sharedMemPerMultiprocessor);
  d.l2_bytes = p.l2CacheSize;
  d.global_memory_bytes = static_cast<int64_t>(p.totalGlobalMem);
  cudaRuntimeGetVersion(&d.runtime_version);
  cudaDriverGetVersion(&d.driver_version);
  d.cublaslt_version = static_cast<int64_t>(cublasLtGetVersion());
  return d;
#else
  detail::fail(ErrorCode::kUnsupported,
               detail::cat("cannot query cuda:", device.index, ": fp4kit was built without CUDA backends"),
               "rebuild on a machine with nvcc (FP4KIT_CUDA=AUTO finds it, or -DFP4KIT_CUDA=ON), or plan with a "
               "device profile");
#endif
}

}  // namespace fp4kit
