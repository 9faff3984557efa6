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
// need 8-byte alignment; scale rows and a dense A take any alignment. Two streaming kernels share
// the decode and the MMAs:
//  - the run kernel (by default for M <= 8), where B's and A's code and scale rows (and a dense
//    A's rows) are 16-byte aligned and K % 256 == 0 (dense fp4kit tensors with such K are): K
//    stages of k_stage = 128 * chunks elements of `rows` weight rows, each row's stage one
//    contiguous run (256 or 512 code bytes). For M <= 16 A's own bytes (codes and scales, or BF16
//    values) travel in each stage and the lanes decode them: one kernel, which with one K split
//    also applies the epilogue and writes D. For M > 16 (wgmma, sm_90a) a prepare kernel first
//    writes A's block values in the MMA's K order (as below);
//  - the chunk kernel, every other case: a prepare kernel, then K stages of 128 for 256 weight
//    rows, FP32 partial sums per K split, then the epilogue kernel.
// Several K splits write FP32 partials that the epilogue kernel sums in a fixed order
// (deterministic). Everything is enqueued on `stream`; workspace is stream-ordered.
//
// Shared memory, one formula per kernel (each kernel static_asserts its own terms against these):
// a stage's weight rows take rows * (k_stage / 2 + k_stage / 16) bytes (codes, then scales); the
// activations of a stage are, in the chunk kernel and the run kernel for M > 16, A's block values
// [k_stage / 8][m_pad][8] BF16 (m_pad = M rounded up to 8, 16, 32 or 64), and in the run kernel for
// M <= 16, A's M rows: BF16 [M][k_stage], or codes [M][k_stage / 2] then scales [M][k_stage / 16].
constexpr int64_t smallm_weight_stage_bytes(int64_t rows, int64_t k_stage) { return rows * (k_stage / 2 + k_stage / 16); }
constexpr int64_t smallm_prepared_act_bytes(int64_t m_pad, int64_t k_stage) { return m_pad * k_stage * 2; }
constexpr int64_t smallm_raw_act_bytes(int64_t m, int64_t k_stage, bool dense) {
  return m * (dense ? k_stage * 2 : k_stage / 2 + k_stage / 16);
}
// The chunk kernel's ring (256 rows, k_stage = 128). NOTE: the registry's configurations are caps
// in this formula; the run kernel's ring stays within the cap it is given.
constexpr int64_t smallm_smem_bytes(int64_t m_pad, int64_t k_stage, int64_t stages) {
  return stages * (smallm_prepared_act_bytes(m_pad, k_stage) + smallm_weight_stage_bytes(256, k_stage));
}
// The run kernel's ring: a stage is the weights, then the activations, rounded up to 128 bytes;
// for M <= 16 the decode tables follow the ring (a BF16 pair per code byte for each of 32 lanes,
// then a BF16 pair per scale byte).
constexpr int64_t smallm_run_stage_bytes(int64_t rows, int64_t k_stage, int64_t act_bytes) {
  return (smallm_weight_stage_bytes(rows, k_stage) + act_bytes + 127) / 128 * 128;
}
constexpr int64_t smallm_decode_table_bytes() { return (256 * 32 + 256) * 4; }
constexpr int64_t smallm_run_smem_bytes(int64_t rows, int64_t k_stage, int64_t act_bytes, int64_t stages, bool tables) {
  return stages * smallm_run_stage_bytes(rows, k_stage, act_bytes) + (tables ? smallm_decode_table_bytes() : 0);
}

// What the launcher chose (for tests and benchmarks).
struct SmallMPlan {
  int m_tiles = 0;          // activation rows in 8-row tiles: 1, 2, 4 or 8
  bool wgmma = false;       // the sm_90a warpgroup MMA path (else mma.sync)
  bool run = false;         // the run kernel (else the chunk kernel)
  bool prepared = false;    // a prepare kernel writes A's block values first (else the lanes decode A)
  bool fused_epilogue = false;  // one split: the streaming kernel writes D (no epilogue kernel)
  int load_bytes = 0;       // width of the weight copies: 16 (or 8 in the chunk kernel)
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
  // kAuto: the run kernel for M <= 8 where it applies, else the chunk kernel; kChunk: the chunk
  // kernel always; kRun: the run kernel wherever it applies (M <= 16, or M > 16 with wgmma).
  enum class Path : uint8_t { kAuto, kChunk, kRun } path = Path::kAuto;
  SmallMPlan* plan = nullptr;  // receives the plan when set
};
// config: its shared memory, smallm_smem_bytes(tile_m = 64, tile_k = 128, stages), is the cap
// either kernel's ring stays within.
void launch_sm80_gemm_smallm(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                             void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue,
                             const KernelConfig& config, int device, void* stream, const SmallMTuning& tuning = {});
std::string smallm_image_problem(const DeviceInfo& device);

// The small-M (decode) kernel for Hopper (sm90_gemm_smallm.cu), sm_90a, M <= 64: B NVFP4 [N, K] (1D
// or 2D-scaled) with code and scale rows 16-byte aligned (dense fp4kit tensors are; otherwise
// kUnsupported), A NVFP4 (1D or row-scaled) or dense BF16, K % 256 == 0, any N >= 1. A CTA of 640
// threads owns 256 (or 128) weight rows and one K split; with several splits the row block's last CTA
// adds their FP32 sums in split order (deterministic).
constexpr int kSm90SmallMRows = 256;  // weight rows of a CTA at most (four warpgroups of one 64-row tile)
constexpr int kSm90SmallMStageK = 256;
constexpr int kSm90SmallMThreads = 640;
constexpr int kSm90SmallMMaxStages = 8;
constexpr int kSm90SmallMMaxSplits = 8;
// A stage: `rows` weight rows' codes and scales, then the activations' block values
// [k_stage / 8][m_pad][8] BF16. The ring follows 128 bytes of alignment slack and precedes the
// mbarriers (full and empty per stage, a spare, a pad), the scale table and the activation rows'
// alpha (64 floats).
constexpr int64_t sm90_smallm_stage_bytes(int64_t rows, int64_t m_pad) {
  return rows * (kSm90SmallMStageK / 2 + kSm90SmallMStageK / 16) + m_pad * kSm90SmallMStageK * 2;
}
constexpr int64_t sm90_smallm_smem_bytes(int64_t rows, int64_t m_pad, int64_t stages) {
  return 128 + stages * sm90_smallm_stage_bytes(rows, m_pad) + (2 * kSm90SmallMMaxStages + 2) * 8 + 256 * 4 + 64 * 4;
}
struct Sm90SmallMPlan {
  int rows = 0;              // weight rows per CTA: 256, or 128 with each stage's chunks split between warpgroups
  int m_pad = 0;             // activation columns of the MMA: M rounded up to 8, 16, 32 or 64
  int stages = 0;            // ring depth
  int splits = 0;            // K splits (their sums added by the row block's last CTA)
  int stages_per_split = 0;  // 256-element K stages per split (the last split may have fewer)
  int ctas = 0;
  int resident_ctas = 0;     // CTAs the device holds at once
  int64_t smem_bytes = 0;
};
struct Sm90SmallMTuning {
  int splits = 0;  // 0: chosen; else at most this many (up to kSm90SmallMMaxSplits, where whole stages split so)
  int stages = 0;  // 0: the most the configuration's shared memory holds; else at most this many
  int rows = 0;    // 0: chosen; else 128 or 256
  Sm90SmallMPlan* plan = nullptr;  // receives the plan when set
};
// config.stages: the ring depth at 256 rows and M = 64 whose shared memory,
// sm90_smallm_smem_bytes(256, 64, stages), is the cap the ring stays within (smaller tiles fit
// deeper rings). Rows and splits minimize the slowest SM's bytes.
Sm90SmallMPlan plan_sm90_gemm_smallm(int64_t m, int64_t n, int64_t k, const KernelConfig& config, int device,
                                     const Sm90SmallMTuning& tuning = {});
void launch_sm90_gemm_smallm(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                             void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue,
                             const KernelConfig& config, int device, void* stream, const Sm90SmallMTuning& tuning = {});
std::string sm90_smallm_image_problem(const DeviceInfo& device);

// Kernel 1 of the small-M GEMM alone (sm80_gemm_smallm.cu), for the decode kernels that read A's
// block values prepared: A's rows [M, K] (NVFP4 or dense BF16) as BF16 block values e2m1 * e4m3
// (exact) in the MMA's K order, [k_pad / 8][m_pad][8] BF16 into `out` (k_pad / 8 * m_pad * 16 bytes,
// k_pad a multiple of 128; rows >= M and K past k are zeros); it also zeroes `zero_words` 32-bit
// words at `zero` (a dependent kernel's counters, or none). Enqueued on `stream`; it lets a
// dependent kernel launched with programmatic stream serialization start early (that kernel waits
// with griddepcontrol.wait before reading what it wrote).
void launch_smallm_prepare(const GemmOperandPointers& a, int64_t m, int64_t k, int m_pad, int64_t k_pad, void* out,
                           void* stream, uint32_t* zero = nullptr, int zero_words = 0);

}  // namespace fp4kit::cuda
