// On a real GPU, fp4kit's device query reports what cudaGetDeviceProperties reports, and
// selection plans with those limits. Label `gpu`: skipped, with the reason, without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include "fp4kit/fp4kit.hpp"

namespace fp4kit {
namespace {

TEST(DeviceInfoOnGpu, MatchesCudaGetDeviceProperties) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    GTEST_SKIP() << "no CUDA device here; run scripts/gpu-check.sh on a GPU machine";
  }
  EXPECT_EQ(cuda_device_count(), n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    ASSERT_EQ(cudaGetDeviceProperties(&p, i), cudaSuccess);
    Context ctx;
    const DeviceInfo& d = ctx.device({DeviceType::kCuda, i});
    EXPECT_EQ(d.name, p.name);
    EXPECT_EQ(d.cc_major, p.major);
    EXPECT_EQ(d.cc_minor, p.minor);
    EXPECT_EQ(d.sm_count, p.multiProcessorCount);
    EXPECT_EQ(d.smem_per_block, static_cast<int64_t>(p.sharedMemPerBlock));
    EXPECT_EQ(d.smem_per_block_optin, static_cast<int64_t>(p.sharedMemPerBlockOptin));
    EXPECT_EQ(d.smem_per_sm, static_cast<int64_t>(p.sharedMemPerMultiprocessor));
    EXPECT_EQ(d.l2_bytes, p.l2CacheSize);
    EXPECT_EQ(d.global_memory_bytes, static_cast<int64_t>(p.totalGlobalMem));
    EXPECT_GT(d.runtime_version, 0);
    EXPECT_GT(d.driver_version, 0);
    EXPECT_GT(d.cublaslt_version, 0);
    EXPECT_EQ(smem_budget(d, {}), static_cast<int64_t>(p.sharedMemPerBlockOptin));
    // The matching profile, where there is one, carries the same shared-memory limits.
    for (const DeviceInfo& prof : device_profiles()) {
      if (prof.compute_capability() == d.compute_capability()) {
        EXPECT_EQ(prof.smem_per_block_optin, d.smem_per_block_optin) << prof.profile;
        EXPECT_EQ(prof.smem_per_sm, d.smem_per_sm) << prof.profile;
      }
    }
  }
}

}  // namespace
}  // namespace fp4kit
