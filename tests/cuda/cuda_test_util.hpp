// tests/cuda/cuda_test_util.hpp: the CUDA plumbing the GPU tests share: checked calls, the skip
// reason without a GPU, owning device buffers and streams, host matrices uploaded, and the base
// fixture (device 0 and a stream).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fp4kit/tensor.hpp"
#include "test_util.hpp"

namespace fp4kit::test {

inline constexpr Device kGpu{DeviceType::kCuda, 0};

inline void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#define FP4KIT_CUDA_OK(call) cuda_ok((call), #call)

// "" where a CUDA device is usable, else why not (the skip message).
inline std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess && n > 0) return {};
  if (e != cudaSuccess) cudaGetLastError();  // clear the error for later tests in this process
  return std::string("no CUDA device here (") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
         "); run scripts/gpu-check.sh on a GPU machine";
}

struct CudaFree {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
using DevicePtr = std::unique_ptr<void, CudaFree>;

inline DevicePtr device_alloc(size_t bytes) {
  void* p = nullptr;
  FP4KIT_CUDA_OK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
  return DevicePtr(p);
}

struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
using StreamPtr = std::unique_ptr<CUstream_st, StreamDestroy>;

// A host matrix copied to the GPU; `view` is the dense device view of it.
struct GpuMatrix {
  DevicePtr mem;
  TensorView view;
};

inline GpuMatrix upload(const HostMatrix& x) {
  GpuMatrix g{device_alloc(x.bytes.size()), {}};
  FP4KIT_CUDA_OK(cudaMemcpy(g.mem.get(), x.bytes.data(), x.bytes.size(), cudaMemcpyHostToDevice));
  g.view = TensorView::matrix(g.mem.get(), x.dtype, x.rows, x.cols, kGpu);
  return g;
}

// Runs a check that returns whether it passed; an exception thrown by it is a failure naming
// `label` (so that one broken case does not end the test).
template <typename F>
bool guarded(const std::string& label, F&& check) {
  try {
    return check();
  } catch (const std::exception& e) {
    ADD_FAILURE() << label << ": threw " << e.what();
    return false;
  }
}

// check(c, seed) for each case under guarded() (labelled c.describe()), the seeds `seed`, seed + 10,
// ...; after `max_failing` failing cases a failure naming `what` stops the run.
template <class Case, class Check>
void run_guarded_cases(const std::vector<Case>& cases, const char* what, uint64_t seed, int max_failing, const Check& check) {
  int failing = 0;
  for (const Case& c : cases) {
    const bool ok = guarded(c.describe(), [&] { return check(c, seed); });
    seed += 10;
    if (!ok && ++failing >= max_failing) {
      ADD_FAILURE() << what << ": stopping after " << failing << " failing cases (of " << cases.size() << ")";
      break;
    }
  }
}

// The fixture every GPU test derives from: skipped, with the reason, where no GPU is present;
// else device 0 and a stream of its own. A derived SetUp calls this one first and returns when
// IsSkipped().
class GpuFixture : public testing::Test {
 protected:
  void SetUp() override {
    const std::string why = no_gpu_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    FP4KIT_CUDA_OK(cudaSetDevice(0));
    cudaStream_t s = nullptr;
    FP4KIT_CUDA_OK(cudaStreamCreate(&s));
    stream_.reset(s);
  }
  cudaStream_t stream() const { return stream_.get(); }
  void sync() const {
    FP4KIT_CUDA_OK(cudaStreamSynchronize(stream()));
    FP4KIT_CUDA_OK(cudaGetLastError());
  }
  std::vector<uint8_t> download(const void* p, size_t bytes) const {
    std::vector<uint8_t> out(bytes);
    FP4KIT_CUDA_OK(cudaMemcpy(out.data(), p, bytes, cudaMemcpyDeviceToHost));
    return out;
  }

  StreamPtr stream_;
};

}  // namespace fp4kit::test
