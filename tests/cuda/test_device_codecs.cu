// The constexpr codecs and NVFP4 scalar formulas compiled for the GPU give the host's bytes.
// Label `gpu`: skipped, with the reason, where no CUDA device is present.
#include <gtest/gtest.h>

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <vector>

#include "core/nvfp4_math.hpp"
#include "core/philox.hpp"
#include "fp4kit/formats.hpp"

namespace fp4kit {
namespace {

#define FP4KIT_TEST_CUDA(call)                                                   \
  do {                                                                           \
    const cudaError_t e_ = (call);                                               \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_);       \
  } while (0)

void require_gpu() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    GTEST_SKIP() << "no CUDA device here (" << (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices")
                 << "); run scripts/gpu-check.sh on a GPU machine";
  }
}

// For every E4M3 byte b: decode; and encode of a probe float derived from the index.
__global__ void codec_kernel(float* decoded, uint8_t* encoded, uint8_t* e2m1, uint32_t* philox, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  decoded[i] = e4m3_to_float(static_cast<uint8_t>(i & 0xFF));
  const float probe = bits_float(0x3A000000u + static_cast<uint32_t>(i) * 0x3F1Fu);  // spans 2^-11 .. ~2^9
  encoded[i] = e4m3_rne_satfinite(probe);
  e2m1[i] = e2m1_rne(static_cast<float>(i - n / 2) / 512.0f);
  philox[i] = detail::sr_block_random(0x1234, 5, static_cast<uint64_t>(i), (i & 1) != 0).v[i & 3];
}

TEST(DeviceCodecs, MatchTheHostBitForBit) {
  require_gpu();
  if (testing::Test::IsSkipped()) return;
  constexpr int n = 1 << 14;
  float* d_dec;
  uint8_t *d_enc, *d_e2m1;
  uint32_t* d_philox;
  FP4KIT_TEST_CUDA(cudaMalloc(&d_dec, n * sizeof(float)));
  FP4KIT_TEST_CUDA(cudaMalloc(&d_enc, n));
  FP4KIT_TEST_CUDA(cudaMalloc(&d_e2m1, n));
  FP4KIT_TEST_CUDA(cudaMalloc(&d_philox, n * sizeof(uint32_t)));
  codec_kernel<<<n / 256, 256>>>(d_dec, d_enc, d_e2m1, d_philox, n);
  FP4KIT_TEST_CUDA(cudaGetLastError());
  std::vector<float> dec(n);
  std::vector<uint8_t> enc(n), e2(n);
  std::vector<uint32_t> ph(n);
  FP4KIT_TEST_CUDA(cudaMemcpy(dec.data(), d_dec, n * sizeof(float), cudaMemcpyDeviceToHost));
  FP4KIT_TEST_CUDA(cudaMemcpy(enc.data(), d_enc, n, cudaMemcpyDeviceToHost));
  FP4KIT_TEST_CUDA(cudaMemcpy(e2.data(), d_e2m1, n, cudaMemcpyDeviceToHost));
  FP4KIT_TEST_CUDA(cudaMemcpy(ph.data(), d_philox, n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(float_bits(dec[i]), float_bits(e4m3_to_float(static_cast<uint8_t>(i & 0xFF)))) << i;
    EXPECT_EQ(enc[i], e4m3_rne_satfinite(bits_float(0x3A000000u + static_cast<uint32_t>(i) * 0x3F1Fu))) << i;
    EXPECT_EQ(e2[i], e2m1_rne(static_cast<float>(i - n / 2) / 512.0f)) << i;
    EXPECT_EQ(ph[i], detail::sr_block_random(0x1234, 5, static_cast<uint64_t>(i), (i & 1) != 0).v[i & 3]) << i;
  }
  cudaFree(d_dec);
  cudaFree(d_enc);
  cudaFree(d_e2m1);
  cudaFree(d_philox);
}


// The cast kernels round block scales with the hardware conversion (cvt.rn.satfinite.e4m3x2.f32)
// and decode them with cvt.rn.f16x2.e4m3x2. Every non-negative FP32 value up to FLT_MAX (the range
// of min(bamax * mult, FLT_MAX)) must give the reference codec's byte, and every byte its value.
__global__ void hw_e4m3_kernel(unsigned long long* mismatches, uint32_t* first_bad) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  unsigned long long bad = 0;
  for (uint64_t b = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x; b <= 0x7F7FFFFFu; b += stride) {
    const float v = __uint_as_float(static_cast<uint32_t>(b));
    const uint32_t hw = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    if (hw != e4m3_rne_satfinite(v)) {
      ++bad;
      atomicMin(first_bad, static_cast<uint32_t>(b));
    }
  }
  if (threadIdx.x < 256 && blockIdx.x == 0) {
    const uint8_t byte = static_cast<uint8_t>(threadIdx.x);
    if ((byte & 0x7F) != 0x7F) {
      const float hw = __half2float(__half(__nv_cvt_fp8_to_halfraw(byte, __NV_E4M3)));
      if (__float_as_uint(hw) != float_bits(e4m3_to_float(byte))) ++bad;
    }
  }
  if (bad) atomicAdd(mismatches, bad);
}

TEST(DeviceCodecs, HardwareE4m3ConversionsEqualTheReferenceOnEveryFloat) {
  require_gpu();
  if (testing::Test::IsSkipped()) return;
  unsigned long long* d_bad = nullptr;
  uint32_t* d_first = nullptr;
  FP4KIT_TEST_CUDA(cudaMalloc(&d_bad, sizeof(unsigned long long)));
  FP4KIT_TEST_CUDA(cudaMalloc(&d_first, sizeof(uint32_t)));
  FP4KIT_TEST_CUDA(cudaMemset(d_bad, 0, sizeof(unsigned long long)));
  FP4KIT_TEST_CUDA(cudaMemset(d_first, 0xFF, sizeof(uint32_t)));
  hw_e4m3_kernel<<<4096, 256>>>(d_bad, d_first);
  FP4KIT_TEST_CUDA(cudaGetLastError());
  unsigned long long bad = 0;
  uint32_t first = 0;
  FP4KIT_TEST_CUDA(cudaMemcpy(&bad, d_bad, sizeof bad, cudaMemcpyDeviceToHost));
  FP4KIT_TEST_CUDA(cudaMemcpy(&first, d_first, sizeof first, cudaMemcpyDeviceToHost));
  EXPECT_EQ(bad, 0u) << "first mismatching FP32 bits 0x" << std::hex << first << ": hardware "
                     << "and reference disagree";
  cudaFree(d_bad);
  cudaFree(d_first);
}

}  // namespace
}  // namespace fp4kit
