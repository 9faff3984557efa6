// scripts/probes/stream_probe.cu: how fast the bulk tensor copy engine streams a weight matrix
// [N][row_bytes] (uint8) through a ring of shared-memory stages, per box shape: the question behind
// the decode kernels' stage geometry (sm90_gemm_smallm.cu copies [rows][64 B] boxes, two per stage).
// Nothing is computed: one thread per CTA issues the copies, four warps wait for each stage and
// release it, so the figure is the copy pattern's ceiling. Persistent CTAs (one per SM) walk the row
// blocks; the L2 is flushed (a write of 2x its size) before every timed run; median of the runs.
//
// Not part of the build (an experiment's probe, kept so that the measurement can be repeated):
//   nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o /tmp/stream_probe scripts/probes/stream_probe.cu
//   /tmp/stream_probe [N=28672] [row_bytes=4096] [runs=20]
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                      \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

namespace {

constexpr int kRing = 160 * 1024;  // bytes of stages per CTA

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void wait_parity(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(smem_u32(bar)), "r"(parity)
                 : "memory");
  } while (!done);
}

// Box [R rows][W bytes], NBOX boxes of consecutive columns per stage: R * NBOX * W bytes a stage,
// NBOX * W contiguous bytes of each row.
template <int R, int W, int NBOX>
__global__ void __launch_bounds__(160, 1) probe(const __grid_constant__ CUtensorMap map, int rows, int row_bytes, unsigned* sink) {
  constexpr int kStageBytes = R * W * NBOX;
  constexpr int kStages = kRing / kStageBytes;
  static_assert(kStages >= 2, "a ring of two stages at least");
  extern __shared__ __align__(1024) uint8_t smem[];
  uint8_t* ring = smem + ((1024 - (smem_u32(smem) & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + kStages * kStageBytes);
  uint64_t* empty = full + kStages;
  const int blocks = (rows + R - 1) / R, steps = row_bytes / (W * NBOX);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&full[s])));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 4;" ::"r"(smem_u32(&empty[s])));
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    if (threadIdx.x != 0) return;
    int g = 0;
    for (int b = blockIdx.x; b < blocks; b += gridDim.x) {
      for (int k = 0; k < steps; ++k, ++g) {
        const int s = g % kStages;
        if (g >= kStages) wait_parity(&empty[s], ((g / kStages) - 1) & 1);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(&full[s])), "r"(kStageBytes)
                     : "memory");
        for (int j = 0; j < NBOX; ++j) {
          asm volatile(
              "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
                  smem_u32(ring + s * kStageBytes + j * R * W)),
              "l"(reinterpret_cast<uint64_t>(&map)), "r"(smem_u32(&full[s])), "r"((k * NBOX + j) * W), "r"(b * R)
              : "memory");
        }
      }
    }
    return;
  }
  // Four warps consume: wait, read one word (so that the data is used), release.
  unsigned acc = 0;
  int g = 0;
  for (int b = blockIdx.x; b < blocks; b += gridDim.x) {
    for (int k = 0; k < steps; ++k, ++g) {
      const int s = g % kStages;
      wait_parity(&full[s], (g / kStages) & 1);
      acc += reinterpret_cast<const unsigned*>(ring + s * kStageBytes)[threadIdx.x];
      __syncwarp();
      if ((threadIdx.x & 31) == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(&empty[s])) : "memory");
    }
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                   const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

CUtensorMap make_map(void* base, int rows, int row_bytes, int box_rows, int box_cols, CUtensorMapL2promotion promotion) {
  static EncodeTiledFn encode = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found));
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(row_bytes), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(row_bytes)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t estrides[2] = {1, 1};
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, base, dims, strides, box, estrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_NONE, promotion, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed (%d) for box [%d][%d]\n", static_cast<int>(r), box_rows, box_cols);
    std::exit(1);
  }
  return map;
}

struct Env {
  void* flush;
  size_t flush_bytes;
  unsigned* sink;
  int sms;
  int runs;
};

template <int R, int W, int NBOX>
void run(const Env& env, void* matrix, int rows, int row_bytes, CUtensorMapL2promotion promotion, const char* promo_name) {
  constexpr int kStageBytes = R * W * NBOX;
  const int smem = (kRing / kStageBytes) * (kStageBytes + 16) + 1024;
  CHECK(cudaFuncSetAttribute(probe<R, W, NBOX>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const CUtensorMap map = make_map(matrix, rows, row_bytes, R, W, promotion);
  const int grid = std::min(env.sms, (rows + R - 1) / R);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < env.runs + 2; ++i) {
    CHECK(cudaMemsetAsync(env.flush, i, env.flush_bytes));
    CHECK(cudaEventRecord(a));
    probe<R, W, NBOX><<<grid, 160, smem>>>(map, rows, row_bytes, env.sink);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    CHECK(cudaGetLastError());
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, a, b));
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double us = 1e3 * ms[ms.size() / 2];
  const double bytes = static_cast<double>(rows) * row_bytes;
  std::printf("box [%3d rows][%3d B] x %d a stage (%4d B of a row, %2d stages of %3d KB), L2 promotion %-4s: %7.1f us, %.2f TB/s\n", R, W,
              NBOX, W * NBOX, kRing / kStageBytes, kStageBytes / 1024, promo_name, us, bytes / us * 1e-6);
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
}

}  // namespace

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 28672;
  const int row_bytes = argc > 2 ? std::atoi(argv[2]) : 4096;
  Env env{};
  env.runs = argc > 3 ? std::atoi(argv[3]) : 20;
  int l2 = 0;
  CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  CHECK(cudaDeviceGetAttribute(&env.sms, cudaDevAttrMultiProcessorCount, 0));
  env.flush_bytes = 2 * static_cast<size_t>(l2);
  CHECK(cudaMalloc(&env.flush, env.flush_bytes));
  CHECK(cudaMalloc(&env.sink, 64));
  void* matrix = nullptr;
  CHECK(cudaMalloc(&matrix, static_cast<size_t>(rows) * row_bytes));
  CHECK(cudaMemset(matrix, 1, static_cast<size_t>(rows) * row_bytes));
  std::printf("stream probe: %d rows x %d B (%.1f MiB), %d SMs, L2 %d MiB\n", rows, row_bytes,
              static_cast<double>(rows) * row_bytes / 1048576.0, env.sms, l2 >> 20);
  const auto p256 = CU_TENSOR_MAP_L2_PROMOTION_L2_256B;
  const auto pnone = CU_TENSOR_MAP_L2_PROMOTION_NONE;
  run<256, 64, 2>(env, matrix, rows, row_bytes, p256, "256B");  // sm90_gemm_smallm's stage (256 rows)
  run<256, 64, 2>(env, matrix, rows, row_bytes, pnone, "none");
  run<128, 64, 2>(env, matrix, rows, row_bytes, p256, "256B");  // its 128-row stage
  run<256, 128, 1>(env, matrix, rows, row_bytes, p256, "256B");
  run<128, 64, 4>(env, matrix, rows, row_bytes, p256, "256B");
  run<128, 256, 1>(env, matrix, rows, row_bytes, p256, "256B");
  run<64, 256, 2>(env, matrix, rows, row_bytes, p256, "256B");
  run<64, 64, 8>(env, matrix, rows, row_bytes, p256, "256B");
  run<32, 256, 4>(env, matrix, rows, row_bytes, p256, "256B");
  run<32, 256, 4>(env, matrix, rows, row_bytes, pnone, "none");
  CHECK(cudaFree(matrix));
  CHECK(cudaFree(env.flush));
  CHECK(cudaFree(env.sink));
  return 0;
}
