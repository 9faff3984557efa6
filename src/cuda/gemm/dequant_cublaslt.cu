// src/cuda/gemm/dequant_cublaslt.cu: the portable exact NVFP4 GEMM (NUMERICS §7) for any CUDA GPU:
// the operands' block values e2m1 * e4m3 (at most 6 significant bits: exact in BF16) expanded into
// device buffers, one cuBLASLt BF16 GEMM with FP32 accumulation, then the contract's epilogue in
// FP32. It is the fallback the fused kernels are measured against, and what serves a GPU they do not.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>


#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/launch.hpp"
#include "cuda/gemm/lt_common.hpp"
#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

namespace {

constexpr int kThreads = kLtHelperThreads;
// cuBLASLt's workspace: what its heuristics ask for on sm_90 with headroom (its documentation
// recommends 32 MiB for Hopper).
constexpr int64_t kLtWorkspaceBytes = int64_t{32} << 20;

// One thread per 16-element block: its 16 values as BF16 (a NaN scale gives NaN values, §9).
__global__ void __launch_bounds__(kThreads) block_values_kernel(const GemmOperandPointers p, int64_t rows, int64_t blocks,
                                                                __nv_bfloat16* __restrict__ out, int64_t out_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows * blocks) return;
  const int64_t r = i / blocks, b = i - r * blocks;
  const float scale = e4m3_to_float(p.scales[r * p.scale_stride + b]);
  const uint8_t* codes = p.data + r * p.data_stride + 8 * b;
  __nv_bfloat162 v[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const uint8_t byte = codes[j];  // element 2j in the low nibble
    v[j] = __floats2bfloat162_rn(e2m1_to_float(byte & 0xFu) * scale, e2m1_to_float(byte >> 4) * scale);
  }
  uint4* dst = reinterpret_cast<uint4*>(out + r * out_stride + 16 * b);  // 32-byte aligned: K % 16 == 0
  dst[0] = *reinterpret_cast<const uint4*>(&v[0]);
  dst[1] = *reinterpret_cast<const uint4*>(&v[4]);
}

void lt_ok(cublasStatus_t status, const char* call) { check_lt(status, "gemm (dequantize + cuBLASLt)", call); }

// acc[M, N] (row-major FP32) = A[M, K] . B[N, K]^T, both BF16 K-major with leading dimensions lda
// and ldb (elements). cuBLASLt is column-major: acc^T[N, M] = op_T(B^T stored K x N) . (A^T stored
// K x M), which is the same memory.
void lt_matmul(int device, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a, int64_t lda, const __nv_bfloat16* b,
               int64_t ldb, float* acc, void* workspace, cudaStream_t s) {
  LtCall c;
  lt_ok(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  lt_ok(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof transpose), "TRANSA");
  lt_ok(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep), "TRANSB");
  lt_ok(cublasLtMatrixLayoutCreate(&c.layout[0], CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(n), ldb),
           "cublasLtMatrixLayoutCreate(B)");
  lt_ok(cublasLtMatrixLayoutCreate(&c.layout[1], CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(m), lda),
           "cublasLtMatrixLayoutCreate(A)");
  lt_ok(cublasLtMatrixLayoutCreate(&c.layout[2], CUDA_R_32F, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n),
           "cublasLtMatrixLayoutCreate(D)");
  lt_ok(cublasLtMatmulPreferenceCreate(&c.preference), "cublasLtMatmulPreferenceCreate");
  const uint64_t workspace_bytes = static_cast<uint64_t>(kLtWorkspaceBytes);
  lt_ok(cublasLtMatmulPreferenceSetAttribute(c.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                                sizeof workspace_bytes),
           "MAX_WORKSPACE_BYTES");
  const cublasLtHandle_t handle = lt_handle(device);
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  lt_ok(cublasLtMatmulAlgoGetHeuristic(handle, c.op, c.layout[0], c.layout[1], c.layout[2], c.layout[2], c.preference, 1,
                                          &best, &found),
           "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) {
    detail::fail(ErrorCode::kUnsupported,
                 detail::cat("gemm (dequantize + cuBLASLt): cuBLASLt has no BF16 algorithm for M=", m, " N=", n, " K=", k));
  }
  const float one = 1.0f, zero = 0.0f;
  lt_ok(cublasLtMatmul(handle, c.op, &one, b, c.layout[0], a, c.layout[1], &zero, acc, c.layout[2], acc, c.layout[2],
                          &best.algo, workspace, workspace_bytes, s),
           "cublasLtMatmul");
}


void expand(const GemmOperandPointers& p, int64_t rows, int64_t k, __nv_bfloat16* out, cudaStream_t s) {
  const int64_t blocks = k / 16;
  block_values_kernel<<<lt_helper_grid(rows * blocks), kThreads, 0, s>>>(p, rows, blocks, out, k);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("gemm: block values kernel [", rows, ", ", k, "]"));
}

}  // namespace

void launch_gemm_dequant_cublaslt(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a,
                                  const GemmOperandPointers& b, void* d, DType d_dtype, int64_t d_stride,
                                  const GemmEpilogue& epilogue, int device, void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  // One stream-ordered allocation: cuBLASLt's workspace, then the FP32 products, then the BF16
  // block values of each NVFP4 operand (256-byte aligned pieces).
  const auto round_up = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
  const int64_t acc_bytes = round_up(m * n * 4);
  const int64_t a_bytes = a.data ? round_up(m * k * 2) : 0;
  const int64_t b_bytes = b.data ? round_up(n * k * 2) : 0;
  unsigned char* buffer = nullptr;
  FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&buffer),
                                    static_cast<size_t>(kLtWorkspaceBytes + acc_bytes + a_bytes + b_bytes), s),
                    detail::cat("gemm (dequantize + cuBLASLt): workspace for M=", m, " N=", n, " K=", k));
  float* acc = reinterpret_cast<float*>(buffer + kLtWorkspaceBytes);
  auto* a_values = reinterpret_cast<__nv_bfloat16*>(buffer + kLtWorkspaceBytes + acc_bytes);
  auto* b_values = reinterpret_cast<__nv_bfloat16*>(buffer + kLtWorkspaceBytes + acc_bytes + a_bytes);
  const __nv_bfloat16* a_bf16 = static_cast<const __nv_bfloat16*>(a.dense);
  int64_t lda = a.dense_stride;
  if (a.data) {
    expand(a, m, k, a_values, s);
    a_bf16 = a_values;
    lda = k;
  }
  const __nv_bfloat16* b_bf16 = static_cast<const __nv_bfloat16*>(b.dense);
  int64_t ldb = b.dense_stride;
  if (b.data) {
    expand(b, n, k, b_values, s);
    b_bf16 = b_values;
    ldb = k;
  }
  lt_matmul(device, m, n, k, a_bf16, lda, b_bf16, ldb, acc, buffer, s);
  launch_gemm_epilogue(acc, m, n, a, b, epilogue, d, d_dtype, d_stride, s);
  FP4KIT_CUDA_CHECK(cudaFreeAsync(buffer, s), "gemm (dequantize + cuBLASLt): workspace");
}

std::string gemm_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(block_values_kernel), device.index, "gemm block values kernel");
}

}  // namespace fp4kit::cuda
