// src/cuda/gemm/launch.hpp: host-side launchers of the CUDA GEMM backends (NUMERICS §7). Raw device
// pointers, shapes and a stream in; they enqueue work on the stream and throw fp4kit::Error on a
// CUDA or cuBLASLt failure. No CUDA header needed to include this.
#pragma once

#include <cstdint>
#include <string>

#include "fp4kit/dispatch.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit::cuda {

// One operand [rows, K], K-major: an NVFP4 part (data != nullptr) or a dense BF16 matrix.
struct GemmOperandPointers {
  const uint8_t* data = nullptr;    // NVFP4 codes [rows, K/2 bytes], data_stride bytes between rows
  const uint8_t* scales = nullptr;  // E4M3 [rows, K/16], scale_stride bytes between rows
  const float* amax = nullptr;      // [1], or [rows] when row-scaled
  bool row_scaled = false;
  int64_t data_stride = 0, scale_stride = 0;
  const void* dense = nullptr;      // BF16 [rows, K], dense_stride elements between rows
  int64_t dense_stride = 0;
};

struct GemmEpilogue {
  float alpha = 1.0f, beta = 0.0f;  // the user's alpha (times the global scales) and beta
  const void* c = nullptr;          // [M, N] when beta != 0
  DType c_dtype = DType::kF32;
  int64_t c_stride = 0;
  const void* bias = nullptr;       // [N] or null
  DType bias_dtype = DType::kF32;
};

// The portable exact path: both operands' block values (e2m1 * e4m3, exact in BF16) into device
// buffers, one cuBLASLt BF16 GEMM with FP32 accumulation, then the contract's epilogue in FP32:
// v = alpha(m) * acc (+ beta * C) (+ bias), rounded to d's dtype.
void launch_gemm_dequant_cublaslt(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a,
                                  const GemmOperandPointers& b, void* d, DType d_dtype, int64_t d_stride,
                                  const GemmEpilogue& epilogue, int device, void* stream);

// "" when the GEMM kernels have an image for the device, else why not.
std::string gemm_image_problem(const DeviceInfo& device);

// The fused sm_90a kernel (sm90_gemm_nvfp4.cu): A and B NVFP4 (A 1D or row-scaled, B 1D or 2D),
// K % 256 == 0, N % 16 == 0, any M; code and scale rows 16-byte aligned (dense fp4kit tensors are).
// The configuration (128 x tile_n, stages) is one of kSm90GemmShapes. No device buffer is used.
void launch_gemm_sm90_nvfp4(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                            void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue, int tile_n,
                            int stages, int device, void* stream);
std::string sm90_gemm_image_problem(const DeviceInfo& device);

// Backend 4, Blackwell's native block-scaled FP4 GEMM through cuBLASLt (sm100_cublaslt_nvfp4.cu),
// sm_100 and newer with cuBLASLt >= 12.8: A and B NVFP4 with one global amax each (not row-scaled),
// K-major, K % 32 == 0. a/b_scales_swizzled: the parts' GEMM-swizzled scales (NUMERICS §10), or
// null: then the compact scales are swizzled on the stream into stream-ordered scratch. Throws
// Error(kUnsupported) when cuBLASLt has no algorithm for the problem on this device.
void launch_gemm_sm100_cublaslt_nvfp4(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a,
                                      const uint8_t* a_scales_swizzled, const GemmOperandPointers& b,
                                      const uint8_t* b_scales_swizzled, void* d, DType d_dtype, int64_t d_stride,
                                      const GemmEpilogue& epilogue, int device, void* stream);
std::string gemm_sm100_cublaslt_image_problem(const DeviceInfo& device);

// Backend 3, the small-M (decode) kernel (sm80_gemm_smallm.cu), M <= 64: B NVFP4 [N, K] (1D, or
// 2D-scaled: the same layout), A NVFP4 (1D or row-scaled) or dense BF16 (W4A16); any N >= 1 and K a
// multiple of 16. Codes and scales are read at their given strides; B's and NVFP4 A's code rows
// need 8-byte alignment (16-byte aligned rows are copied 16 bytes at a time); scale rows and a
// dense A take any alignment. Two or three kernels on `stream`: A's block values into a
// stream-ordered buffer in the MMA's K order, the streaming kernel, and (only with several K splits)
// the epilogue summing the splits' FP32 partials in a fixed order (deterministic); one split writes
// D itself. Two streaming kernels share the decode and the MMAs:
//  - the bulk-copy kernel (sm_90 image): K stages of 128 * chunks elements for `rows` weight rows,
//    each row's run of codes and of scales one bulk copy (TMA) completing on an mbarrier; it needs
//    16-byte aligned code and scale rows and K % 256 == 0 (dense fp4kit tensors with such K are);
//  - the cp.async kernel (every other case, and sm_80): K stages of 128 for 256 weight rows.
// Each stage of either holds the activations [k_stage / 8][m_pad][8] BF16 (m_pad = 8, 16, 32 or
// 64: M rounded up), the codes [rows][k_stage / 2] and the scales [rows][k_stage / 16].
constexpr int64_t smallm_stage_bytes(int64_t m_pad, int64_t k_stage, int64_t rows) {
  return m_pad * k_stage * 2 + rows * (k_stage / 2 + k_stage / 16);
}
// The cp.async kernel's ring (256 rows, k_stage = 128). NOTE: the registry's configurations are
// caps in this formula; each kernel's own formula below stays within the cap it is given.
constexpr int64_t smallm_smem_bytes(int64_t m_pad, int64_t k_stage, int64_t stages) {
  return stages * smallm_stage_bytes(m_pad, k_stage, 256);
}
// The bulk-copy kernel's dynamic shared memory: the ring, then one 8-byte mbarrier per buffer.
constexpr int64_t smallm_bulk_smem_bytes(int64_t m_pad, int64_t k_stage, int64_t rows, int64_t stages) {
  return stages * (smallm_stage_bytes(m_pad, k_stage, rows) + 8);
}

// What the launcher chose (for tests and benchmarks).
struct SmallMPlan {
  int m_tiles = 0;          // activation rows in 8-row tiles: 1, 2, 4 or 8
  bool wgmma = false;       // the sm_90a warpgroup MMA path (else mma.sync)
  bool bulk = false;        // the bulk-copy kernel (else the cp.async kernel)
  bool fused_epilogue = false;  // one split: the streaming kernel writes D (no epilogue kernel)
  int load_bytes = 0;       // cp.async kernel: width of the weight copies, 16 or 8 (bulk: 0)
  int rows = 0;             // weight rows per CTA
  int64_t k_stage = 0;      // K elements per stage
  int stages = 0;           // shared-memory ring depth used (at most the configuration's)
  int splits = 0;           // K splits (FP32 partial sums reduced by the epilogue kernel)
  int64_t k_slice = 0;      // K elements per split (the last split may be shorter)
  int ctas = 0, ctas_per_sm = 0, threads = 0;
  int64_t smem_bytes = 0;
};
// Overrides for tests and benchmarks; the defaults are what fp4kit::gemm runs.
struct SmallMTuning {
  int splits = 0;  // 0: chosen from the shape and the device
  int stages = 0;  // ring depth, 0: chosen (within the configuration's shared memory either way)
  enum class Mma : uint8_t { kAuto, kMmaSync, kWgmma } mma = Mma::kAuto;
  // kAuto: the bulk-copy kernel wherever it applies; kCpAsync: the cp.async kernel always.
  enum class Path : uint8_t { kAuto, kCpAsync } path = Path::kAuto;
  SmallMPlan* plan = nullptr;  // receives the plan when set
};
// config: its shared memory, smallm_smem_bytes(tile_m = 64, tile_k = 128, stages), is the cap the
// launcher's ring stays within.
void launch_sm80_gemm_smallm(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                             void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue,
                             const KernelConfig& config, int device, void* stream, const SmallMTuning& tuning = {});
std::string smallm_image_problem(const DeviceInfo& device);

}  // namespace fp4kit::cuda
