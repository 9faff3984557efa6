// src/cuda/gemm/sm100_cublaslt_nvfp4.cu: the native NVFP4 GEMM (NUMERICS §7) of Blackwell's
// block-scaled FP4 tensor cores, through cuBLASLt (sm_100 and newer, cuBLASLt >= 12.8): both
// operands CUDA_R_4F_E2M1 with one UE4M3 scale per 16 elements along K
// (CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3), the scales in the GEMM-swizzled layout (NUMERICS §10),
// FP32 compute. The global factors (amax_A/2688)*(amax_B/2688) and the user's alpha are multiplied
// on the device (no host sync: the amaxes are device memory written by the quantization) into the
// alpha cuBLASLt reads in CUBLASLT_POINTER_MODE_DEVICE.
//
// D = alpha * acc goes straight out of cuBLASLt where that is the whole epilogue (beta = 0, no bias,
// D in bf16 or f32: the output types cuBLASLt's FP4 GEMM writes). Otherwise cuBLASLt writes the FP32
// products and the shared epilogue (epilogue.cuh) applies the contract's order, bit for bit as the
// other backends do. One global scale per operand: a row-scaled A (per-row alpha) and a dense A go
// to the other backends (the dispatcher's problem rule says so).
//
// NOTE: compile-only on the machines this was written on (no Blackwell GPU): the cuBLASLt calls
// follow the cuBLASLt documentation and the NVFP4 GEMM of Transformer Engine; the GPU tests run it
// where a Blackwell GPU is present.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/gemm/epilogue.cuh"
#include "cuda/gemm/launch.hpp"
#include "cuda/gemm/lt_common.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/layout.hpp"

namespace fp4kit::cuda {

namespace {

constexpr int kThreads = kLtHelperThreads;
// cuBLASLt's workspace: its documentation recommends 32 MiB on Hopper and Blackwell.
constexpr int64_t kLtWorkspaceBytes = int64_t{32} << 20;
constexpr const char* kWhat = "gemm (cuBLASLt NVFP4)";

// alpha_beta[0] = the alpha cuBLASLt multiplies its FP32 sums with, alpha_beta[1] = its beta (0:
// beta * C is the epilogue kernel's). with_global: alpha(0) of the contract (epilogue.cuh, the same
// rounding order as every backend); otherwise 1, and the epilogue kernel applies alpha.
__global__ void alpha_kernel(const GemmOperandPointers a, const GemmOperandPointers b, float alpha, bool with_global,
                             float* __restrict__ alpha_beta) {
  alpha_beta[0] = with_global ? gemm_row_alpha(a, gemm_global_factor(b, 0), alpha, 0) : 1.0f;
  alpha_beta[1] = 0.0f;
}

// Compact scales [rows, cols] (stride bytes between rows) into the GEMM-swizzled layout, padding
// zero-filled: one thread per byte of the padded [swizzled_scale_rows, swizzled_scale_cols] grid.
__global__ void __launch_bounds__(kThreads) swizzle_scales_kernel(const uint8_t* __restrict__ compact, int64_t stride,
                                                                  int64_t rows, int64_t cols, uint8_t* __restrict__ out) {
  const int64_t padded_cols = swizzled_scale_cols(cols);
  const int64_t total = swizzled_scale_rows(rows) * padded_cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / padded_cols, c = i - r * padded_cols;
    out[swizzled_scale_offset(r, c, cols)] = r < rows && c < cols ? compact[r * stride + c] : uint8_t{0};
  }
}

void check_lt(cublasStatus_t status, const char* call) { cuda::check_lt(status, kWhat, call); }

// The largest power of two, up to 256, dividing an address: cuBLASLt's heuristic otherwise assumes
// 256-byte aligned matrices and may pick an algorithm that faults on a view into a larger buffer.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 1;
  while (align < 256 && (a & align) == 0) align <<= 1;
  return a == 0 ? 256 : align;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const T& value, const char* name) {
  check_lt(cublasLtMatmulDescSetAttribute(op, attr, &value, sizeof value), name);
}

template <typename T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const T& value, const char* name) {
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value), name);
}


cudaDataType_t lt_type(DType d) { return d == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// Stream-ordered scratch memory, returned to the pool on the stream when the call ends, also when
// it throws after enqueueing work that uses it.
class StreamScratch {
 public:
  StreamScratch(int64_t bytes, cudaStream_t s, const std::string& what) : stream_(s) {
    FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), static_cast<size_t>(bytes), s), what);
  }
  ~StreamScratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  unsigned char* get() const noexcept { return ptr_; }
  void release(const std::string& what) {  // the normal end of the call: a failure to free is reported
    unsigned char* p = ptr_;
    ptr_ = nullptr;
    FP4KIT_CUDA_CHECK(cudaFreeAsync(p, stream_), what);
  }

 private:
  cudaStream_t stream_;
  unsigned char* ptr_ = nullptr;
};

}  // namespace

void launch_gemm_sm100_cublaslt_nvfp4(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a,
                                      const uint8_t* a_scales_swizzled, const GemmOperandPointers& b,
                                      const uint8_t* b_scales_swizzled, void* d, DType d_dtype, int64_t d_stride,
                                      const GemmEpilogue& epilogue, int device, void* stream) {
  // The dispatcher's problem rule rejects these; a direct caller gets the same reasons.
  if (a.data == nullptr || b.data == nullptr) {
    detail::fail(ErrorCode::kInvalidArgument,
                 detail::cat(kWhat, ": both operands must be NVFP4 (a dense A goes to the other backends)"));
  }
  if (a.row_scaled || b.row_scaled) {
    detail::fail(ErrorCode::kInvalidArgument,
                 detail::cat(kWhat, ": cuBLASLt applies one alpha to the whole product; a row-scaled operand goes to ",
                             "the other backends"));
  }
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  // cuBLASLt writes D directly when alpha * acc is the whole epilogue and D has a type its FP4 GEMM
  // writes; otherwise FP32 sums into the buffer below, then the shared epilogue.
  const bool direct =
      epilogue.beta == 0.0f && epilogue.bias == nullptr && (d_dtype == DType::kBF16 || d_dtype == DType::kF32);

  // One stream-ordered allocation of 256-byte aligned pieces: cuBLASLt's workspace, alpha and beta,
  // the swizzled scales each operand lacks, and the FP32 sums when the epilogue kernel runs.
  const auto round_up = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
  const int64_t a_blocks = k / 16, b_blocks = k / 16;
  const int64_t a_swz_bytes = a_scales_swizzled ? 0 : round_up(swizzled_scale_bytes(m, a_blocks));
  const int64_t b_swz_bytes = b_scales_swizzled ? 0 : round_up(swizzled_scale_bytes(n, b_blocks));
  const int64_t scalar_bytes = 256;
  const int64_t acc_bytes = direct ? 0 : round_up(m * n * 4);
  StreamScratch scratch(kLtWorkspaceBytes + scalar_bytes + a_swz_bytes + b_swz_bytes + acc_bytes, s,
                        detail::cat(kWhat, ": workspace for M=", m, " N=", n, " K=", k));
  unsigned char* const workspace = scratch.get();
  unsigned char* next = workspace + kLtWorkspaceBytes;
  auto* alpha_beta = reinterpret_cast<float*>(next);
  next += scalar_bytes;
  uint8_t* a_swizzle_into = nullptr;
  uint8_t* b_swizzle_into = nullptr;
  if (!a_scales_swizzled) {
    a_scales_swizzled = a_swizzle_into = next;
    next += a_swz_bytes;
  }
  if (!b_scales_swizzled) {
    b_scales_swizzled = b_swizzle_into = next;
    next += b_swz_bytes;
  }
  float* acc = direct ? nullptr : reinterpret_cast<float*>(next);

  // cuBLASLt is column-major: D^T[N, M] = op_T(our B stored K x N) . (our A^T stored K x M), which is
  // the same memory as D[M, N] = A . B^T with both operands K-major ("TN", the layout cuBLASLt's FP4
  // GEMM takes). So cuBLASLt's A is our B (its scales are A_SCALE), and its B is our A.
  void* out = direct ? d : acc;
  const DType out_dtype = direct ? d_dtype : DType::kF32;
  const int64_t ldd = direct ? d_stride : n;
  LtCall c;
  check_lt(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, "TRANSA");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, "TRANSB");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_SCALE_TYPE, CUDA_R_32F, "SCALE_TYPE");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_POINTER_MODE, CUBLASLT_POINTER_MODE_DEVICE, "POINTER_MODE");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3, "A_SCALE_MODE");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3, "B_SCALE_MODE");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(b_scales_swizzled), "A_SCALE_POINTER");
  set_desc(c.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(a_scales_swizzled), "B_SCALE_POINTER");
  // Leading dimensions in elements: two E2M1 codes per byte.
  check_lt(cublasLtMatrixLayoutCreate(&c.layout[0], CUDA_R_4F_E2M1, static_cast<uint64_t>(k), static_cast<uint64_t>(n),
                                      2 * b.data_stride),
           "cublasLtMatrixLayoutCreate(B)");
  check_lt(cublasLtMatrixLayoutCreate(&c.layout[1], CUDA_R_4F_E2M1, static_cast<uint64_t>(k), static_cast<uint64_t>(m),
                                      2 * a.data_stride),
           "cublasLtMatrixLayoutCreate(A)");
  check_lt(cublasLtMatrixLayoutCreate(&c.layout[2], lt_type(out_dtype), static_cast<uint64_t>(n), static_cast<uint64_t>(m),
                                      ldd),
           "cublasLtMatrixLayoutCreate(D)");
  check_lt(cublasLtMatmulPreferenceCreate(&c.preference), "cublasLtMatmulPreferenceCreate");
  const uint64_t workspace_bytes = static_cast<uint64_t>(kLtWorkspaceBytes);
  set_pref(c.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace_bytes, "MAX_WORKSPACE_BYTES");
  set_pref(c.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(b.data), "MIN_ALIGNMENT_A_BYTES");
  set_pref(c.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(a.data), "MIN_ALIGNMENT_B_BYTES");
  set_pref(c.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(out), "MIN_ALIGNMENT_C_BYTES");
  set_pref(c.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(out), "MIN_ALIGNMENT_D_BYTES");
  const cublasLtHandle_t handle = lt_handle(device);
  // The algorithm first: without one nothing is enqueued (the scratch goes back unused).
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(handle, c.op, c.layout[0], c.layout[1], c.layout[2],
                                                                  c.layout[2], c.preference, 1, &best, &found);
  if (heuristic == CUBLAS_STATUS_NOT_SUPPORTED || (heuristic == CUBLAS_STATUS_SUCCESS && found == 0)) {
    detail::fail(ErrorCode::kUnsupported,
                 detail::cat(kWhat, ": cuBLASLt ", cublasLtGetVersion(), " has no block-scaled FP4 algorithm for M=", m,
                             " N=", n, " K=", k, " -> ", dtype_name(out_dtype), " on this device (lda=", 2 * b.data_stride,
                             ", ldb=", 2 * a.data_stride, ", ldd=", ldd, " elements)"),
                 "force another GEMM variant (FP4KIT_FORCE_KERNEL=gemm_dequant_cublaslt), or load a newer libcublasLt");
  }
  check_lt(heuristic, "cublasLtMatmulAlgoGetHeuristic");

  if (a_swizzle_into) {
    swizzle_scales_kernel<<<lt_helper_grid(swizzled_scale_bytes(m, a_blocks)), kThreads, 0, s>>>(
        a.scales, a.scale_stride, m, a_blocks, a_swizzle_into);
    FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat(kWhat, ": swizzle kernel for A's scales [", m, ", ", a_blocks, "]"));
  }
  if (b_swizzle_into) {
    swizzle_scales_kernel<<<lt_helper_grid(swizzled_scale_bytes(n, b_blocks)), kThreads, 0, s>>>(
        b.scales, b.scale_stride, n, b_blocks, b_swizzle_into);
    FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat(kWhat, ": swizzle kernel for B's scales [", n, ", ", b_blocks, "]"));
  }
  alpha_kernel<<<1, 1, 0, s>>>(a, b, epilogue.alpha, direct, alpha_beta);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat(kWhat, ": alpha kernel"));
  // CUBLASLT_POINTER_MODE_DEVICE: alpha and beta are device pointers, read when the GEMM runs.
  check_lt(cublasLtMatmul(handle, c.op, &alpha_beta[0], b.data, c.layout[0], a.data, c.layout[1], &alpha_beta[1], out,
                          c.layout[2], out, c.layout[2], &best.algo, workspace, workspace_bytes, s),
           "cublasLtMatmul");
  if (!direct) launch_gemm_epilogue(acc, m, n, a, b, epilogue, d, d_dtype, d_stride, s);
  scratch.release(detail::cat(kWhat, ": workspace"));
}

std::string gemm_sm100_cublaslt_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(swizzle_scales_kernel), device.index,
                              "cuBLASLt NVFP4 GEMM's scale swizzle kernel");
}

}  // namespace fp4kit::cuda
