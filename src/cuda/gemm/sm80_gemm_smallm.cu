// src/cuda/gemm/sm80_gemm_smallm.cu: the small-M (decode) NVFP4 GEMM (NUMERICS §7), M <= 64.
//
// At decode sizes the GEMM is a stream of the weight B [N, K] (K/2 bytes of E2M1 codes and K/16
// E4M3 scales per row) past a few activation rows: its time is the weight's bytes over the memory
// bandwidth. The design moves every byte of B once, in 16-byte pieces, and decodes it in registers:
//
//  - Roles are swapped: the MMA computes D^T = B A^T, so the weight is the MMA's A operand (16 rows
//    of B per fragment, its values made in registers) and the activations are the B operand, read
//    from shared memory (n = 8 activation rows per MMA: M = 1 wastes 7/8 of an n8 tile, not 15/16).
//  - K order: the quad of lanes (t = 0..3) holding one weight row reads 64 consecutive bytes, lane
//    t 16 of them (32 codes). Lane t's 32 codes are the K positions {2t, 2t+1, 2t+8, 2t+9} of the
//    MMA's 8 k16 steps over the 128-element chunk, in the order the cheap decode below produces
//    them. A sum over K does not depend on the order, so the activations are stored in that same
//    order (see "logical position" below), once per call, by the prepare kernel: every MMA sees
//    matching pairs.
//  - Decode: an E2M1 pair (nibbles i and i+4 of a 32-bit word) becomes a BF16 pair with one shift
//    and one LOP3 (sign to bit 15, magnitude to bits 6..8: the E2M1 value times 2^-126, an exact
//    BF16 subnormal or normal), then one BF16x2 multiply by the block scale times 2^118 (exact:
//    e2m1 * e4m3 has at most 6 significant bits). The weights enter the MMA as e2m1 * e4m3 * 2^-8,
//    exact in BF16, and the FP32 sums are multiplied back by 2^8 (exact) before they are stored.
//  - Loads: a ring of shared-memory stages (128 K elements of 256 weight rows: 16 KB of codes, 2 KB
//    of scales, and the stage's activations) filled by cp.async (16-byte pieces, 8-byte where rows
//    are only 8-byte aligned; zero-filled past K) with a 256 B L2 prefetch hint; two stages are in
//    flight while one is decoded (deeper rings measured slower on the H100), without holding
//    registers. Each lane then reads its 16 code bytes per row with one conflict-free 16-byte
//    shared load. The addresses of whole stages are computed once per CTA (the per-piece
//    arithmetic would otherwise cost a sizable share of the issue slots).
//  - Activations: prepared once into a global buffer [K/8][m_pad][8] of BF16 block values (the
//    MMA's K order, exact), copied into each stage; the layout is the no-swizzle "core matrix"
//    layout both ldmatrix and the sm_90a wgmma read.
//  - MMA: mma.sync m16n8k16 (sm_80 and newer). In the sm_90a image, for M > 16, wgmma m64nNk16
//    with the weight fragments from registers (the same fragment layout): decode amortizes over
//    more activation rows there and mma.sync's issue rate would bound the time.
//  - Split K: CTA (256 weight rows x one K slice) count chosen to fill the device in whole waves;
//    each split writes FP32 partial sums [split][M][N]; a second kernel adds them in split order
//    (deterministic: no atomics) and applies the contract's epilogue (epilogue.cuh). Programmatic
//    dependent launch (sm_90) overlaps each kernel's start with its predecessor's end.
//
// The above is the chunk kernel (kernel 2, 256 rows x 128 K per stage). The run kernel (kernel 2b)
// serves M <= 8 where rows are 16-byte aligned and K % 256 == 0: 512-byte runs per row and stage,
// A's own bytes in each stage decoded by the lanes (no prepare kernel), the weights decoded by table
// lookups, and with one K split the epilogue in the same kernel: one launch per call. See there.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/e2m1_bf16.cuh"
#include "cuda/gemm/epilogue.cuh"
#include "cuda/gemm/l2_policy.cuh"
#include "cuda/gemm/launch.hpp"
#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

namespace {

// ---------------------------------------------------------------------------------------------
// Geometry: one formula per quantity, shared by the kernels (template arguments) and the host
// ---------------------------------------------------------------------------------------------

constexpr int kChunkK = 128;       // K elements of a stage: one 16-byte piece per lane of a quad (4 x 32 codes)
constexpr int kRowsPerCta = 256;   // weight rows of a CTA (every shape below)
constexpr int kEpilogueThreads = 256;
constexpr int kPrepareThreads = 256;
constexpr int kMaxStages = 8;      // cp.async.wait_group takes an immediate: see cp_async_wait_pending
// 2^8: the weights' block values enter the MMA as e2m1 * e4m3 * 2^-8 (see the file comment).
constexpr float kAccScale = 256.0f;

// 16 warps with one 16-row weight tile each where the activation tile is tall (decode is amortized
// over more rows; the accumulators are many), else 8 warps with two tiles each.
constexpr bool smallm_wide(int m_tiles, bool wgmma) { return wgmma || m_tiles >= 4; }
constexpr int smallm_warps(int m_tiles, bool wgmma) { return smallm_wide(m_tiles, wgmma) ? 16 : 8; }
constexpr int smallm_row_tiles(int m_tiles, bool wgmma) { return smallm_wide(m_tiles, wgmma) ? 1 : 2; }

template <int MT, bool kWgmma>
struct Shape {
  static constexpr int kMTiles = MT;  // n8 tiles of activation rows
  static constexpr int kMPad = 8 * MT;
  static constexpr int kWarps = smallm_warps(MT, kWgmma);
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowTiles = smallm_row_tiles(MT, kWgmma);
  // One ring buffer: the stage's activations [16 K groups][m_pad][16 B], the 256 rows' codes
  // [256][64 B], their scales [256][8 B].
  static constexpr int kActBytes = kMPad * kChunkK * 2;
  static constexpr int kWeightBytes = kRowsPerCta * kChunkK / 2;
  static constexpr int kScaleBytes = kRowsPerCta * kChunkK / 16;
  static constexpr int kStageBytes = kActBytes + kWeightBytes + kScaleBytes;
  static_assert(kStageBytes == smallm_smem_bytes(kMPad, kChunkK, 1), "launch.hpp's formula is what the kernel allocates");
  // <= 128 registers (two CTAs of 8 warps, or one of 16, per SM): no spills (checked with -Xptxas -v).
  static constexpr int kMinBlocks = kWarps == 8 ? 2 : 1;
  static_assert(kWarps * 16 * kRowTiles == kRowsPerCta, "every shape covers 256 weight rows per CTA");
  static_assert(!kWgmma || kRowTiles == 1, "a warpgroup's wgmma covers 64 rows: one 16-row tile per warp");
};

// One core-matrix row of the activation layout: 8 BF16 values of one activation row, 16 bytes.
// A K group of 8 elements is [m_pad] such rows.
struct ActRow {
  uint4 v;
};
static_assert(sizeof(ActRow) * 8 * (kChunkK / 8) == Shape<1, false>::kActBytes, "a stage's activations are ActRows");

// The activation element at logical position L (0..127) of a 128-chunk is physical element
// physical_k(L) of that chunk; the inverse is what the prepare kernel writes:
//   lane t of a quad reads physical elements 32t..32t+31 as four 32-bit words w (8 codes each);
//   the decode yields pair i (i = 0..3) of word w = elements (8w + i, 8w + i + 4) of the lane's 32;
//   MMA k16 step j (0..7) takes word j/2, pairs 2(j%2) (k = 2t, 2t+1) and 2(j%2)+1 (k = 2t+8, 2t+9).
// So logical L = 16j + 8h + 2t + e holds physical 32t + 8(j/2) + 2(j%2) + h + 4e, and the K group of
// a pair (i of word w, lane t) is 4w + i with the pair at bytes 4t..4t+3 of its 16-byte row.

// ---------------------------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------------------------

// BF16 2^119, twice: two multiplies carry E4M3 * 2^-120 (the byte's bits in BF16 position) to
// E4M3 * 2^118, which stays below 2^127 (448 * 2^118).
constexpr uint32_t kBf16x2TwoPow119 = 0x7B007B00u;

// The two E4M3 scale bytes in the low 16 bits of s (block 0 in the low byte) as a BF16 pair of
// scale * 2^118 each, exact; 0x7F / 0xFF (NaN) give NaN, which makes every product NaN (§9).
__device__ __forceinline__ uint32_t e4m3x2_scaled(uint32_t s) {
  const uint32_t y = __byte_perm(s, 0u, 0x4140);  // byte 0 -> bits 0..7, byte 1 -> bits 16..23
  const uint32_t mag = y & 0x007F007Fu;
  // (mag << 4) as BF16 is |scale| * 2^-120: exponent bits 3..6 land on the BF16 exponent's low
  // bits, the mantissa on its top three bits; E4M3 subnormals become BF16 subnormals.
  uint32_t v = mul_bf16x2(mag << 4, kBf16x2TwoPow119);
  v = mul_bf16x2(v, kBf16x2TwoPow119);
  v |= (y & 0x00800080u) << 8;                                      // the sign
  const uint32_t is_nan = ((mag + 0x00010001u) & 0x00800080u) >> 7;  // 1 in a half whose byte is 0x7F
  return v | is_nan * 0x7FC0u;
}

// Scale bytes of rows that are not 8-byte aligned (the synchronous path).
__device__ __forceinline__ uint32_t ldg_u8(const uint8_t* p) {
  uint32_t v;
  asm volatile("ld.global.nc.u8 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void cp_async16(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
// wait_group takes an immediate: the ring depth is a launch parameter (2..kMaxStages).
__device__ __forceinline__ void cp_async_wait_pending(int n) {
  switch (n) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    case 4: cp_async_wait<4>(); break;
    case 5: cp_async_wait<5>(); break;
    default: cp_async_wait<6>(); break;
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t addr, uint32_t& r0, uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The sm_90a wgmma path exists only in that image; elsewhere kWgmma instantiations run mma.sync.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FP4KIT_SMALLM_WGMMA 1
#else
#define FP4KIT_SMALLM_WGMMA 0
#endif

#if FP4KIT_SMALLM_WGMMA
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator accesses across the asynchronous MMAs.
template <int MT>
__device__ __forceinline__ void fence_accumulators(float (&acc)[MT][4]) {
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+f"(acc[i][j])::"memory");
  }
}
// The activation tile's descriptor: K-major, no swizzle; core matrices (8 rows x 16 bytes) are
// contiguous, 128 bytes apart along N (SBO) and m_pad * 16 bytes apart along K (LBO).
template <int MT>
__device__ __forceinline__ uint64_t act_descriptor(uint32_t smem_addr) {
  constexpr uint64_t kLbo = (8 * MT * 16) >> 4, kSbo = 128 >> 4;
  return static_cast<uint64_t>((smem_addr & 0x3FFFFu) >> 4) | (kLbo << 16) | (kSbo << 32);
}
// D[64 x 8*MT] += A[64 x 16] (registers: this warp's 16 rows) * B[16 x 8*MT] (shared memory).
template <int MT>
__device__ __forceinline__ void wgmma_rs(float (&d)[MT][4], const uint32_t (&a)[4], uint64_t desc);
template <>
__device__ __forceinline__ void wgmma_rs<4>(float (&d)[4][4], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
      "{%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
        "+f"(d[3][2]), "+f"(d[3][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
template <>
__device__ __forceinline__ void wgmma_rs<8>(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
#endif

// Programmatic dependent launch (sm_90): the next kernel on the stream may start once every CTA
// of this one has called launch_dependents; its griddepcontrol.wait still waits for this whole
// grid to finish and its memory to be visible, so the order of results is what the stream says.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// ---------------------------------------------------------------------------------------------
// Kernel 1: the activations' block values, in the MMA's K order
// ---------------------------------------------------------------------------------------------

struct PrepareArgs {
  GemmOperandPointers a;  // NVFP4 (data != nullptr) or dense BF16
  int m, k;
  int m_pad;              // 8 * m_tiles
  int chunks;             // ceil(K_pad / 128): the buffer covers every split's last stage
  uint32_t* out;          // [chunks * 16][m_pad][4] 32-bit words: the layout of ActRow above
  uint32_t* zero;         // zero_words words the dependent kernel counts with (or null)
  int zero_words;
};

// A warp per (chunk, 8-row group); lane (g, t) handles row 8 * group + g, physical elements
// 32t..32t+31 of the chunk: it reads them (64 B of BF16, or 16 B of codes and 2 scale bytes) and
// writes their 16 pairs to the 16 K groups 4w + i of the chunk, bytes 4t.. of row m (the warp's 32
// stores of one (w, i) fill one 128-byte line). Rows >= M and elements >= K are zeros.
__global__ void __launch_bounds__(kPrepareThreads) smallm_prepare_kernel(const PrepareArgs p) {
  pdl_launch_dependents();  // the streaming kernel starts its weight loads meanwhile
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.zero_words; i += gridDim.x * blockDim.x) p.zero[i] = 0u;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int groups = p.m_pad / 8;
  const int warps_total = (gridDim.x * blockDim.x) >> 5;
  for (int unit = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; unit < p.chunks * groups; unit += warps_total) {
    const int chunk = unit / groups, m = (unit - chunk * groups) * 8 + g;
    const int k0 = chunk * kChunkK + 32 * t;  // the lane's first physical element
    uint32_t pair[4][4];                      // [word][pair i]
    if (p.a.data != nullptr) {
      // NVFP4: two blocks of 16 codes (words 0-1, 2-3), exact block values e2m1 * e4m3 in BF16.
#pragma unroll
      for (int b = 0; b < 2; ++b) {
        uint2 codes = make_uint2(0, 0);
        float scale = 0.0f;
        if (m < p.m && k0 + 16 * (b + 1) <= p.k) {
          const int64_t block = (k0 >> 4) + b;
          codes = *reinterpret_cast<const uint2*>(p.a.data + m * p.a.data_stride + block * 8);  // 8-byte aligned
          scale = e4m3_to_float(p.a.scales[m * p.a.scale_stride + block]);
        }
#pragma unroll
        for (int w = 0; w < 2; ++w) {
          const uint32_t q = w == 0 ? codes.x : codes.y;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            // Pair i: nibbles i and i+4 of the word (elements 8w' + i and 8w' + i + 4).
            const float lo = e2m1_to_float(static_cast<uint8_t>(q >> (4 * i))) * scale;
            const float hi = e2m1_to_float(static_cast<uint8_t>(q >> (4 * i + 16))) * scale;
            const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // exact: at most 6 significant bits
            memcpy(&pair[2 * b + w][i], &v, 4);
          }
        }
      }
    } else {
      const __nv_bfloat16* row = static_cast<const __nv_bfloat16*>(p.a.dense) + m * p.a.dense_stride;
      const bool vec = ((reinterpret_cast<uintptr_t>(p.a.dense) | static_cast<uintptr_t>(p.a.dense_stride * 2)) & 15u) == 0;
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        uint4 v = make_uint4(0, 0, 0, 0);
        const int k = k0 + 8 * w;
        if (m < p.m && k + 8 <= p.k) {
          if (vec) {
            v = *reinterpret_cast<const uint4*>(row + k);
          } else {
            uint16_t e[8];
            for (int j = 0; j < 8; ++j) memcpy(&e[j], row + k + j, 2);
            v = make_uint4(e[0] | uint32_t{e[1]} << 16, e[2] | uint32_t{e[3]} << 16, e[4] | uint32_t{e[5]} << 16,
                           e[6] | uint32_t{e[7]} << 16);
          }
        }
        // Elements 0..7 as 16-bit halves of x, y, z, w: pair i = (element i, element i + 4).
        pair[w][0] = __byte_perm(v.x, v.z, 0x5410);
        pair[w][1] = __byte_perm(v.x, v.z, 0x7632);
        pair[w][2] = __byte_perm(v.y, v.w, 0x5410);
        pair[w][3] = __byte_perm(v.y, v.w, 0x7632);
      }
    }
#pragma unroll
    for (int w = 0; w < 4; ++w) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t group = int64_t{chunk} * 16 + 4 * w + i;
        p.out[(group * p.m_pad + m) * 4 + t] = pair[w][i];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel 2: the weight stream
// ---------------------------------------------------------------------------------------------

struct StreamArgs {
  const uint8_t* b_data;    // [N, K/2] codes, b_data_stride bytes between rows
  const uint8_t* b_scales;  // [N, K/16] E4M3, b_scale_stride bytes between rows
  int64_t b_data_stride, b_scale_stride;
  const ActRow* act;        // the prepared activations [K_pad / 8][m_pad]
  float* partials;          // [splits][M][N] FP32
  int m, n, k;
  int k_slice;              // K elements per split: a multiple of 128
  int stages;               // shared-memory ring depth (2..kMaxStages; 3.. for wgmma)
  int data_copy16;          // B's code rows are 16-byte aligned (else 8-byte copies)
  int scale_copy8;          // B's scale rows are 8-byte aligned (else byte loads through registers)
};

// What a lane reads of one stage from shared memory: per row tile, per half (rows g and g + 8),
// its 16 bytes of codes (32 elements) and its 2 scale bytes.
template <class S>
struct WeightRegs {
  uint4 q[S::kRowTiles][2];
  uint32_t s[S::kRowTiles][2];
};

__device__ __forceinline__ void cp_async16_zfill(uint32_t smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(smem), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async8_zfill(uint32_t smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.ca.shared.global.L2::256B [%0], [%1], 8, %2;" ::"r"(smem), "l"(gmem), "r"(src_bytes) : "memory");
}

// Calls f(i) for i = threadIdx.x + j * kThreads < kCount: a compile-time trip count per thread, so
// the per-piece row addresses are loop-invariant across stages.
template <int kThreads, int kCount, typename F>
__device__ __forceinline__ void for_each_piece(F&& f) {
#pragma unroll
  for (int j = 0; j < (kCount + kThreads - 1) / kThreads; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kThreads;
    if (kCount % kThreads == 0 || i < kCount) f(i);
  }
}

// Copies stage `st` of the CTA's split into the ring buffer at `base`: the activations (K groups
// [k0 / 8, k0 / 8 + 16) x m_pad rows, contiguous), the 256 weight rows' 64 code bytes and 8 scale
// bytes at k0. Bytes past k_end are zero-filled (zero codes and scales: exactly zero products) and
// rows past N read row N - 1 (never stored). `with_act`/`with_weights` split the prologue around
// the wait for the prepare kernel.
template <class S>
__device__ __forceinline__ void issue_stage(const StreamArgs& p, uint32_t base, const ActRow* act_split, int row0,
                                            int k_begin, int k_end, int st, bool with_weights, bool with_act) {
  const int k0 = k_begin + st * kChunkK;
  if (with_act) {
    const ActRow* src = act_split + int64_t{st} * (kChunkK / 8) * S::kMPad;
    for_each_piece<S::kThreads, S::kActBytes / 16>([&](int i) { cp_async16(base + i * 16, src + i); });
  }
  if (!with_weights) return;
  const uint32_t wsm = base + S::kActBytes, ssm = wsm + S::kWeightBytes;
  const int left = k_end - k0;  // elements of this stage inside the split (> 0)
  const auto row_of = [&](const uint8_t* b, int64_t stride, int r) { return b + int64_t{min(row0 + r, p.n - 1)} * stride; };
  if (p.data_copy16) {
    for_each_piece<S::kThreads, kRowsPerCta * 4>([&](int i) {
      const int r = i >> 2, q = i & 3;  // row, 16-byte piece (32 elements)
      const int bytes = min(16, max(0, (left - 32 * q) / 2));
      const uint8_t* row = row_of(p.b_data, p.b_data_stride, r);
      cp_async16_zfill(wsm + r * 64 + q * 16, bytes ? row + k0 / 2 + 16 * q : row, bytes);
    });
  } else {
    for_each_piece<S::kThreads, kRowsPerCta * 8>([&](int i) {
      const int r = i >> 3, q = i & 7;  // row, 8-byte piece (one block)
      const int bytes = min(8, max(0, (left - 16 * q) / 2));
      const uint8_t* row = row_of(p.b_data, p.b_data_stride, r);
      cp_async8_zfill(wsm + r * 64 + q * 8, bytes ? row + k0 / 2 + 8 * q : row, bytes);
    });
  }
  const int blocks = min(8, left / 16);
  if (p.scale_copy8) {
    for_each_piece<S::kThreads, kRowsPerCta>([&](int r) {
      cp_async8_zfill(ssm + r * 8, row_of(p.b_scales, p.b_scale_stride, r) + k0 / 16, blocks);
    });
  } else {
    // NOTE: synchronous (scale rows not 8-byte aligned: K / 16 not a multiple of 8); correct, slower.
    for_each_piece<S::kThreads, kRowsPerCta * 8>([&](int i) {
      const int r = i >> 3, b = i & 7;
      const uint32_t v = b < blocks ? ldg_u8(row_of(p.b_scales, p.b_scale_stride, r) + k0 / 16 + b) : 0u;
      asm volatile("st.shared.u8 [%0], %1;" ::"r"(ssm + r * 8 + b), "r"(v) : "memory");
    });
  }
}

// The common case, whole stages of a whole row block with 16-byte aligned code rows and 8-byte
// aligned scale rows: each thread's pieces are the same rows and offsets every stage, so their
// addresses are computed once (the generic issue_stage recomputes clamps and tails per piece).
// Thread tid copies code piece tid % 4 of rows tid / 4 + j * (threads / 4), and row tid's scales.
template <class S>
struct FastSources {
  static constexpr int kDataPieces = kRowsPerCta * 4 / S::kThreads;
  const uint8_t* data[kDataPieces];  // at the split's first element
  const uint8_t* scale;              // at the split's first block (threads < 256)
};

template <class S>
__device__ __forceinline__ FastSources<S> fast_sources(const StreamArgs& p, int row0, int k_begin) {
  FastSources<S> f;
  const int tid = static_cast<int>(threadIdx.x);
#pragma unroll
  for (int j = 0; j < FastSources<S>::kDataPieces; ++j) {
    const int r = (tid >> 2) + j * (S::kThreads / 4);
    f.data[j] = p.b_data + int64_t{row0 + r} * p.b_data_stride + k_begin / 2 + (tid & 3) * 16;
  }
  f.scale = p.b_scales + int64_t{row0 + min(tid, kRowsPerCta - 1)} * p.b_scale_stride + k_begin / 16;
  return f;
}

template <class S>
__device__ __forceinline__ void issue_weights_fast(const FastSources<S>& f, uint32_t base, int st) {
  const int tid = static_cast<int>(threadIdx.x);
  const uint32_t wsm = base + S::kActBytes;
#pragma unroll
  for (int j = 0; j < FastSources<S>::kDataPieces; ++j) {
    const int r = (tid >> 2) + j * (S::kThreads / 4);
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(wsm + r * 64 + (tid & 3) * 16),
                 "l"(f.data[j] + st * (kChunkK / 2))
                 : "memory");
  }
  if (S::kThreads == kRowsPerCta || tid < kRowsPerCta) {
    asm volatile("cp.async.ca.shared.global.L2::256B [%0], [%1], 8;" ::"r"(wsm + S::kWeightBytes + tid * 8),
                 "l"(f.scale + st * (kChunkK / 16))
                 : "memory");
  }
}

// The lane's codes and scales of its rows from a stage (conflict-free: a warp's 8 rows of 64 code
// bytes are 512 contiguous bytes, their 8 scale bytes 64).
template <class S>
__device__ __forceinline__ void read_weights(WeightRegs<S>& f, uint32_t stage_smem, int warp_row, int t) {
  const uint32_t wsm = stage_smem + S::kActBytes, ssm = wsm + S::kWeightBytes;
#pragma unroll
  for (int rt = 0; rt < S::kRowTiles; ++rt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = warp_row + rt * 64 + h * 8;
      asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(f.q[rt][h].x), "=r"(f.q[rt][h].y), "=r"(f.q[rt][h].z), "=r"(f.q[rt][h].w)
                   : "r"(wsm + r * 64 + t * 16));
      asm volatile("ld.shared.u16 %0, [%1];" : "=r"(f.s[rt][h]) : "r"(ssm + r * 8 + t * 2));
    }
  }
}

// The weight fragment of k16 step J for row tile rt: a[0], a[2] from row g (pairs 2(J%2) and
// 2(J%2)+1 of word J/2), a[1], a[3] from row g + 8, times their block's scale.
template <class S, int J>
__device__ __forceinline__ void weight_fragment(uint32_t (&a)[4], const WeightRegs<S>& f, const uint32_t (&scale)[2][2],
                                                int rt) {
  chunk_fragment<J>(a, f.q[rt][0], f.q[rt][1], scale[0], scale[1]);
}

// The two block scales of each half of a row tile, each as a BF16 pair (both halves equal).
template <class S>
__device__ __forceinline__ void chunk_scales(uint32_t (&scale)[2][2], const WeightRegs<S>& f, int rt) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t v = e4m3x2_scaled(f.s[rt][h]);
    scale[h][0] = __byte_perm(v, 0u, 0x1010);
    scale[h][1] = __byte_perm(v, 0u, 0x3232);
  }
}

// One 128-element stage through mma.sync: per k16 step, the activation fragments of every n8 tile
// (ldmatrix) and, per row tile, the decoded weight fragment and MT MMAs.
template <class S, int J = 0>
__device__ __forceinline__ void mma_stage(float (&acc)[S::kRowTiles][S::kMTiles][4], const WeightRegs<S>& f,
                                          const uint32_t (&scale)[S::kRowTiles][2][2], uint32_t act_smem, int lane) {
  if constexpr (J < 8) {
    uint32_t a[S::kRowTiles][4];
#pragma unroll
    for (int rt = 0; rt < S::kRowTiles; ++rt) weight_fragment<S, J>(a[rt], f, scale[rt], rt);
    // K groups 2J (k 0..7 of the step) and 2J + 1 (k 8..15): lanes 8-15 (and 24-31) address the second.
    const uint32_t group = act_smem + (2 * J + ((lane >> 3) & 1)) * (S::kMPad * 16);
    if constexpr (S::kMTiles == 1) {
      uint32_t b0, b1;
      ldmatrix_x2(group + (lane & 7) * 16, b0, b1);
#pragma unroll
      for (int rt = 0; rt < S::kRowTiles; ++rt) mma_16816(acc[rt][0], a[rt], b0, b1);
    } else {
#pragma unroll
      for (int mp = 0; mp < S::kMTiles / 2; ++mp) {
        uint32_t b0, b1, b2, b3;  // tile 2mp (k lo, k hi), tile 2mp + 1 (k lo, k hi)
        ldmatrix_x4(group + (16 * mp + ((lane >> 4) << 3) + (lane & 7)) * 16, b0, b1, b2, b3);
#pragma unroll
        for (int rt = 0; rt < S::kRowTiles; ++rt) {
          mma_16816(acc[rt][2 * mp], a[rt], b0, b1);
          mma_16816(acc[rt][2 * mp + 1], a[rt], b2, b3);
        }
      }
    }
    mma_stage<S, J + 1>(acc, f, scale, act_smem, lane);
  }
}

#if FP4KIT_SMALLM_WGMMA
// Half a stage through wgmma (four k16 steps), with its own fragment registers: it waits for the
// group that read them two halves ago, so one half's decode overlaps the other's MMAs.
template <class S, int H>
__device__ __forceinline__ void wgmma_half(float (&acc)[S::kMTiles][4], uint32_t (&a)[4][4], const WeightRegs<S>& f,
                                           const uint32_t (&scale)[2][2], uint32_t act_smem) {
  wgmma_wait<1>();
  weight_fragment<S, 4 * H + 0>(a[0], f, scale, 0);
  weight_fragment<S, 4 * H + 1>(a[1], f, scale, 0);
  weight_fragment<S, 4 * H + 2>(a[2], f, scale, 0);
  weight_fragment<S, 4 * H + 3>(a[3], f, scale, 0);
  wgmma_fence();  // the fragment registers (and, first time, the accumulators) before the async reads
#pragma unroll
  for (int js = 0; js < 4; ++js) {
    wgmma_rs<S::kMTiles>(acc, a[js], act_descriptor<S::kMTiles>(act_smem + 2 * (4 * H + js) * (S::kMPad * 16)));
  }
  wgmma_commit();
}
#endif

// Grid: (ceil(N / 256), splits). CTA: 256 weight rows x one K slice, streamed through a ring of
// `stages` shared-memory buffers by cp.async (`ahead` of them in flight, see below). Warp w
// holds rows (w / 4) * 64 * kRowTiles + rt * 64 + (w % 4) * 16 + {g, g + 8} of the CTA's rows (a
// warpgroup's 64-row wgmma tile when kWgmma).
template <int MT, bool kWgmma>
__global__ void __launch_bounds__(Shape<MT, kWgmma>::kThreads, Shape<MT, kWgmma>::kMinBlocks)
    smallm_stream_kernel(const StreamArgs p) {
  using S = Shape<MT, kWgmma>;
  [[maybe_unused]] constexpr bool kUseWgmma = kWgmma && FP4KIT_SMALLM_WGMMA;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t smem_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int k_begin = blockIdx.y * p.k_slice;
  const int k_end = min(p.k, k_begin + p.k_slice);
  const int stages_total = (k_end - k_begin + kChunkK - 1) / kChunkK;  // >= 1: no split is empty
  const int row0 = blockIdx.x * kRowsPerCta;
  const int warp_row = (warp >> 2) * (64 * S::kRowTiles) + (warp & 3) * 16 + g;  // within the CTA
  const ActRow* act_split = p.act + int64_t{k_begin / 8} * S::kMPad;

  // Copies run `ahead` stages ahead of the math: stages - 1 for mma.sync (a buffer is free once
  // every warp has passed the next barrier), stages - 2 for wgmma (whose reads of a stage may still
  // run during the next one: the buffer refilled is the one of two stages back, whose wgmmas each
  // warpgroup has waited for by then). The weights do not depend on the prepare kernel: their first
  // stages are in flight before the wait for it (a no-op without programmatic dependent launch);
  // the activations follow. One cp.async group per stage and part, W0 .. W(ahead-1), A0 ..
  // A(ahead-1), then one per loop iteration: stage st is complete once at most ahead - 1 newer
  // groups are pending, for every st.
  const int ahead = kUseWgmma ? p.stages - 2 : p.stages - 1;
  const bool fast = p.data_copy16 && p.scale_copy8 && row0 + kRowsPerCta <= p.n;
  const FastSources<S> sources = fast_sources<S>(p, row0, k_begin);
  const int full_stages = fast ? (k_end - k_begin) / kChunkK : 0;  // stages the fast path may copy
  const auto issue = [&](int st, uint32_t base, bool weights, bool act) {
    if (st >= stages_total) return;
    if (st < full_stages) {
      if (weights) issue_weights_fast<S>(sources, base, st);
      if (act) issue_stage<S>(p, base, act_split, row0, k_begin, k_end, st, false, true);
    } else {
      issue_stage<S>(p, base, act_split, row0, k_begin, k_end, st, weights, act);
    }
  };
  for (int st = 0; st < ahead; ++st) {
    issue(st, smem_base + st * S::kStageBytes, true, false);
    cp_async_commit();
  }
  pdl_wait();
  for (int st = 0; st < ahead; ++st) {
    issue(st, smem_base + st * S::kStageBytes, false, true);
    cp_async_commit();
  }

  float acc[S::kRowTiles][S::kMTiles][4];
#pragma unroll
  for (int rt = 0; rt < S::kRowTiles; ++rt)
#pragma unroll
    for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[rt][i][j] = 0.0f;
#if FP4KIT_SMALLM_WGMMA
  uint32_t wg_a[2][4][4];  // the wgmma path's fragment registers (the two halves of a stage)
  if constexpr (kUseWgmma) fence_accumulators<S::kMTiles>(acc[0]);
#endif

  int buf = 0, buf_next = ahead;  // ring buffers of stage st and of stage st + ahead
  for (int st = 0; st < stages_total; ++st) {
    // Stage st has landed (this thread's copies), and after the barrier everyone's; the buffer the
    // copy of stage st + ahead reuses is no longer read (see above).
    cp_async_wait_pending(ahead - 1);
#if FP4KIT_SMALLM_WGMMA
    // NOTE: ordinary (cp.async) writes that the tensor cores read through the async proxy.
    if constexpr (kUseWgmma) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
    __syncthreads();
    issue(st + ahead, smem_base + buf_next * S::kStageBytes, true, true);
    cp_async_commit();  // also when empty: one group per stage keeps the count
    buf_next = buf_next + 1 == p.stages ? 0 : buf_next + 1;
    const uint32_t stage_smem = smem_base + buf * S::kStageBytes;
    buf = buf + 1 == p.stages ? 0 : buf + 1;
    WeightRegs<S> f;
    read_weights<S>(f, stage_smem, warp_row, t);
    uint32_t scale[S::kRowTiles][2][2];
#pragma unroll
    for (int rt = 0; rt < S::kRowTiles; ++rt) chunk_scales<S>(scale[rt], f, rt);
#if FP4KIT_SMALLM_WGMMA
    if constexpr (kUseWgmma) {
      // Each half waits for the group that used its fragment registers one stage earlier, so by
      // the end of this stage every wgmma of the previous one has completed.
      wgmma_half<S, 0>(acc[0], wg_a[0], f, scale[0], stage_smem);
      wgmma_half<S, 1>(acc[0], wg_a[1], f, scale[0], stage_smem);
      continue;
    }
#endif
    mma_stage<S>(acc, f, scale, stage_smem, lane);
  }
#if FP4KIT_SMALLM_WGMMA
  if constexpr (kUseWgmma) {
    wgmma_wait<0>();
    fence_accumulators<S::kMTiles>(acc[0]);
  }
#endif
  pdl_launch_dependents();

  // acc[rt][mt]: weight rows (g, g + 8) of tile rt = columns n of D, activation rows 8 mt + 2t (+1) = rows m.
  float* out = p.partials + int64_t{blockIdx.y} * p.m * p.n;
#pragma unroll
  for (int rt = 0; rt < S::kRowTiles; ++rt) {
#pragma unroll
    for (int mt = 0; mt < S::kMTiles; ++mt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = row0 + warp_row + rt * 64 + (e >> 1) * 8, row = 8 * mt + 2 * t + (e & 1);
        if (col < p.n && row < p.m) out[int64_t{row} * p.n + col] = acc[rt][mt][e] * kAccScale;  // exact: a power of two
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel 2b: the weight stream in long runs per row (the run kernel)
// ---------------------------------------------------------------------------------------------
//
// Kernel 2's data with other copies, another source of A and (M <= 16) another decode. Measured
// on the H100 (a copy-only ring, L2 flushed, 8192 and 28672 rows of 4608 bytes): 64-byte pieces of
// 256 rows per stage, kernel 2's pattern, move 1.9 TB/s; 256- to 512-byte runs of 32 or 64 rows per
// stage move 2.0-2.3 TB/s (8192 rows, launch included) and 2.7 TB/s (28672), by per-thread
// cp.async; bulk copies (TMA) of one run per row were slower below 1 KB runs (0.5 TB/s at 64 B).
// Kernel 2 at M = 1, N = K = 8192 (ncu): 24 us, DRAM 51% of peak, 42% of issue slots used, 4
// instructions per weight element; the whole call (prepare, stream, epilogue) took 30-35 us.
// So here a stage is `kChunks` 128-element chunks of `kRows` rows, each row's codes one run of
// kChunks * 64 bytes, and for M <= 16 A's own rows travel in the stage and each lane decodes the
// activation pairs it needs (the B fragment's K positions are the lane's own), so there is no
// prepare kernel; with one K split the kernel writes D itself. Warps: kRowTiles 16-row tiles each
// (M > 16: one, a warpgroup's four making a 64-row wgmma tile), kKGroups groups of warps splitting
// each stage's chunks; the groups' FP32 sums are added in group order at the end (deterministic).

// Shapes by activation tiles. M <= 8: 32 rows x 1024 K (512-byte runs), every warp both row tiles
// and one chunk; M <= 16: 64 rows x 512 K, a tile and two chunks a warp; M > 16 (wgmma): the
// prepared activations take most of a stage, so 64 rows x 512 K (M <= 32) or 128 rows x 256 K.
constexpr int run_rows(int m_tiles) { return m_tiles == 1 ? 32 : m_tiles == 8 ? 128 : 64; }
constexpr int run_chunks(int m_tiles) { return m_tiles == 1 ? 8 : m_tiles == 8 ? 2 : 4; }
constexpr int run_row_tiles(int m_tiles) { return m_tiles == 1 ? 2 : 1; }  // M <= 16: two tiles spilled
constexpr int run_kgroups(int m_tiles) { return m_tiles == 1 ? 8 : 2; }
constexpr int kMaxRunStages = 6;  // cp_async_wait_pending's range

template <int MT>
struct RunShape {
  static constexpr int kMTiles = MT;
  static constexpr int kMPad = 8 * MT;
  static constexpr bool kWgmma = MT >= 4;  // M > 16: wgmma on the prepared activations (sm_90a)
  static constexpr bool kDirect = !kWgmma;  // M <= 16: A's rows in the stage, decoded by the lanes
  static constexpr int kRows = run_rows(MT);
  static constexpr int kChunks = run_chunks(MT);
  static constexpr int kRowTiles = run_row_tiles(MT);  // per warp
  static constexpr int kKGroups = run_kgroups(MT);
  static constexpr int kStageK = kChunks * kChunkK;
  static constexpr int kTileGroups = kRows / (16 * kRowTiles);
  static constexpr int kWarps = kTileGroups * kKGroups;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kCodePitch = kStageK / 2, kScalePitch = kStageK / 16;  // bytes of a row in a stage
  static constexpr int kCodeBytes = kRows * kCodePitch;
  static constexpr int kWeightBytes = kCodeBytes + kRows * kScalePitch;
  static_assert(kWeightBytes == smallm_weight_stage_bytes(kRows, kStageK), "launch.hpp's formula is what the kernel copies");
  // M > 16: the prepared activations [kStageK / 8][m_pad] ActRows follow the weights; M <= 16: A's
  // rows (smallm_raw_act_bytes, the launcher's RunArgs::stage_bytes).
  static constexpr int kPreparedActBytes = kWgmma ? static_cast<int>(smallm_prepared_act_bytes(kMPad, kStageK)) : 0;
  // Copies per thread of a whole stage: code pieces (16 B) and scale pieces (16 B, threads < 128).
  static constexpr int kCodePieces = kRows * kChunks * 4 / kThreads;
  static constexpr int kScaleThreads = kRows * kChunks / 2;
  static_assert(kCodePieces * kThreads == kRows * kChunks * 4 && kThreads % (kChunks * 4) == 0, "whole runs per thread row");
  static_assert(kScaleThreads <= kThreads && kChunks % 2 == 0 && kChunks % kKGroups == 0, "scale runs of whole 16 bytes");
  static_assert(!kWgmma || (kRowTiles == 1 && kTileGroups % 4 == 0), "a warpgroup's wgmma covers 64 rows");
  // The groups' sums meet in the ring's first stage.
  static constexpr int kReduceBytes = (kKGroups - 1) * kTileGroups * 32 * kRowTiles * MT * 4 * 4;
  static_assert(kReduceBytes <= kWeightBytes + kPreparedActBytes, "the groups' sums fit in one stage");
  // Resident CTAs: M <= 8 three of 8 warps on sm_90 (<= 80 registers: the decode is bound by
  // issue, and a third CTA hides more of its latency: 7% faster at N = 28672 on the H100; sm_80
  // code would spill at 80), else two of 8 warps or one of 16 (<= 128 registers).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  static constexpr int kMinBlocks = kWarps <= 8 ? 2 : 1;
#else
  static constexpr int kMinBlocks = MT == 1 ? 3 : kWarps <= 8 ? 2 : 1;
#endif
};

struct RunArgs {
  const uint8_t* b_data;    // [N, K/2] codes, b_data_stride bytes between rows (16-byte aligned)
  const uint8_t* b_scales;  // [N, K/16] E4M3, b_scale_stride bytes between rows (16-byte aligned)
  int64_t b_data_stride, b_scale_stride;
  GemmOperandPointers a;    // M <= 16: A's rows (16-byte aligned); always: A's global factors
  const ActRow* act;        // M > 16: the prepared activations [K / 8][m_pad]
  float* partials;          // [splits][M][N] FP32 (several splits)
  int m, n, k;
  int stage_count;          // stages of the whole K, ceil(K / k_stage); the last may hold fewer chunks
  int stages_per_split;
  int stages;               // ring depth (2..kMaxRunStages)
  int stage_bytes;          // smallm_run_stage_bytes(rows, k_stage, act bytes)
  float acc_scale;          // 2^8 per operand decoded here (weights; an NVFP4 A in the stage)
  int fused;                // one split: the contract's epilogue here, D written directly
  const float* amax_b;
  GemmEpilogue e;
  void* d;                  // [M, N], d_stride elements between rows
  DType d_dtype;
  int64_t d_stride;
};

// M <= 16 decodes by table: a byte of codes (elements 2j, 2j+1) is one shared-memory load of its
// BF16 pair (e2m1 * 2^-126 each, the bits e2m1_pair makes), replicated per lane (entry e of
// lane l at word 32 e + l: conflict-free), then one BF16x2 multiply by the block scale, itself a
// table entry (scale * 2^118 in both halves, e4m3x2_scaled's bits). Two instructions per pair where
// the shifts and masks take four, and one of them off the integer pipe. The pairs are then adjacent
// elements: k16 step J takes bytes 2J (k = 2t, 2t+1) and 2J+1 (k = 2t+8, 2t+9) of the lane's 16,
// i.e. physical elements 32t + 4J + {0, 1} and {2, 3}; a BF16 A's matching pairs are its own words
// 2J and 2J+1 (no permutation), an NVFP4 A's the same table's.
constexpr int kCodeTableWords = 256 * 32;
constexpr int kDecodeTableBytes = (kCodeTableWords + 256) * 4;  // the code pairs, then the scale pairs
static_assert(kDecodeTableBytes == smallm_decode_table_bytes(), "launch.hpp's formula is the tables' size");

__device__ __forceinline__ uint32_t code_pair_of_byte(uint32_t e) {
  const uint32_t lo = ((e & 8u) << 12) | ((e & 7u) << 6), hi = ((e & 0x80u) << 8) | ((e & 0x70u) << 2);
  return lo | (hi << 16);
}
// Fills the tables (every thread, then a barrier before their first use). The code table goes in
// 16-byte pieces (four lanes' copies of one entry), consecutive threads writing consecutive pieces
// (conflict-free): one entry computed per piece, not per word (ncu, M = 1, N = 28672, K = 8192: the
// word-wise fill was 7% of the run kernel's instructions, its CTAs running only 8 stages each).
__device__ __forceinline__ void fill_decode_tables(uint32_t* table, int tid, int threads) {
  uint4* pieces = reinterpret_cast<uint4*>(table);
  for (int i = tid; i < kCodeTableWords / 4; i += threads) {
    const uint32_t v = code_pair_of_byte(static_cast<uint32_t>(i) >> 3);
    pieces[i] = make_uint4(v, v, v, v);
  }
  for (int i = tid; i < 256; i += threads) table[kCodeTableWords + i] = e4m3x2_scaled(static_cast<uint32_t>(i) * 0x0101u);
}

// The pair of byte B of w; `lane_table`: the shared-memory address of the code table's word `lane`.
// NOTE: 32-bit shared addresses on purpose: through a generic pointer each lookup also paid 64-bit
// address arithmetic (ncu: 17% more instructions than the shifts and masks it replaces).
template <int B>
__device__ __forceinline__ uint32_t table_pair(uint32_t w, uint32_t lane_table) {
  uint32_t v;
  asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(lane_table + __byte_perm(w, 0u, 0x4440 | B) * 128u));
  return v;
}
// The scale pair of scale byte e (0..255); `scale_table`: the scale table's shared-memory address.
__device__ __forceinline__ uint32_t scale_pair(uint32_t e, uint32_t scale_table) {
  uint32_t v;
  asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(scale_table + e * 4u));
  return v;
}

// The weight fragment of k16 step J for row tile rt (rows g and g + 8: halves 0 and 1).
template <class S, int J>
__device__ __forceinline__ void weight_fragment_table(uint32_t (&a)[4], const WeightRegs<S>& f, const uint32_t (&scale)[2][2],
                                                      int rt, uint32_t lane_table) {
  const uint32_t w0 = word_of<J / 2>(f.q[rt][0]), w1 = word_of<J / 2>(f.q[rt][1]);
  constexpr int kB = 2 * (J % 2);
  a[0] = mul_bf16x2(table_pair<kB>(w0, lane_table), scale[0][J / 4]);
  a[1] = mul_bf16x2(table_pair<kB>(w1, lane_table), scale[1][J / 4]);
  a[2] = mul_bf16x2(table_pair<kB + 1>(w0, lane_table), scale[0][J / 4]);
  a[3] = mul_bf16x2(table_pair<kB + 1>(w1, lane_table), scale[1][J / 4]);
}

// The activation pairs of lane (g, t) for one chunk from activation row `row` of a stage's A rows:
// b[J][0], b[J][1] for k16 step J (see above). NVFP4: e2m1 * e4m3 * 2^-8 (exact, as the weights).
template <class S>
__device__ __forceinline__ void act_pairs(uint32_t (&b)[8][2], const RunArgs& p, uint32_t act_smem, int row, int c, int t,
                                          uint32_t lane_table, uint32_t scale_table) {
  if (p.m == 1 && p.a.data != nullptr) {
    // One NVFP4 row: the warp's 32 lanes share its decode, lane (g, t) the pairs of bytes 2g and
    // 2g + 1 of position t's 16 (block g / 4 of its two), then every lane gathers position t's 16
    // pairs (byte 2J + e is lane (J, t)'s pair e). Every column of the n8 tile then holds row 0; only
    // column 0 is stored. (Four lanes' decode on 32 lanes' slots cost about 75 of a warp's 580
    // instructions per stage at M = 1; this is about 30.)
    const int g = (threadIdx.x & 31) >> 2;
    uint32_t v, e;
    asm volatile("ld.shared.u16 %0, [%1];" : "=r"(v) : "r"(act_smem + c * (kChunkK / 2) + t * 16 + 2 * g));
    asm volatile("ld.shared.u8 %0, [%1];" : "=r"(e) : "r"(act_smem + (S::kStageK / 2) + c * (kChunkK / 16) + t * 2 + g / 4));
    const uint32_t sc = scale_pair(e, scale_table);
    const uint32_t d[2] = {mul_bf16x2(table_pair<0>(v, lane_table), sc), mul_bf16x2(table_pair<1>(v, lane_table), sc)};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      b[j][0] = __shfl_sync(0xFFFFFFFFu, d[0], 4 * j + t);
      b[j][1] = __shfl_sync(0xFFFFFFFFu, d[1], 4 * j + t);
    }
    return;
  }
  if (row >= p.m) {
#pragma unroll
    for (int j = 0; j < 8; ++j) b[j][0] = b[j][1] = 0u;
    return;
  }
  if (p.a.data == nullptr) {
    const uint32_t at = act_smem + row * (S::kStageK * 2) + (c * kChunkK + 32 * t) * 2;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      uint4 v;
      asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(at + 16 * w));
      b[2 * w][0] = v.x;
      b[2 * w][1] = v.y;
      b[2 * w + 1][0] = v.z;
      b[2 * w + 1][1] = v.w;
    }
    return;
  }
  uint4 q;
  uint32_t s;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(q.x), "=r"(q.y), "=r"(q.z), "=r"(q.w)
               : "r"(act_smem + row * (S::kStageK / 2) + c * (kChunkK / 2) + t * 16));
  asm volatile("ld.shared.u16 %0, [%1];"
               : "=r"(s)
               : "r"(act_smem + p.m * (S::kStageK / 2) + row * (S::kStageK / 16) + c * (kChunkK / 16) + t * 2));
  const uint32_t sc[2] = {scale_pair(s & 0xFFu, scale_table), scale_pair(s >> 8, scale_table)};
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    b[2 * w][0] = mul_bf16x2(table_pair<0>(words[w], lane_table), sc[w / 2]);
    b[2 * w][1] = mul_bf16x2(table_pair<1>(words[w], lane_table), sc[w / 2]);
    b[2 * w + 1][0] = mul_bf16x2(table_pair<2>(words[w], lane_table), sc[w / 2]);
    b[2 * w + 1][1] = mul_bf16x2(table_pair<3>(words[w], lane_table), sc[w / 2]);
  }
}

// One chunk through mma.sync, weights decoded by table, activation fragments from registers.
template <class S, int J = 0>
__device__ __forceinline__ void mma_direct(float (&acc)[S::kRowTiles][S::kMTiles][4], const WeightRegs<S>& f,
                                           const uint32_t (&scale)[S::kRowTiles][2][2], const uint32_t (&b)[S::kMTiles][8][2],
                                           uint32_t lane_table) {
  if constexpr (J < 8) {
#pragma unroll
    for (int rt = 0; rt < S::kRowTiles; ++rt) {
      uint32_t a[4];
      weight_fragment_table<S, J>(a, f, scale[rt], rt, lane_table);
#pragma unroll
      for (int mt = 0; mt < S::kMTiles; ++mt) mma_16816(acc[rt][mt], a, b[mt][J][0], b[mt][J][1]);
    }
    mma_direct<S, J + 1>(acc, f, scale, b, lane_table);
  }
}

template <typename OutT>
__device__ __forceinline__ void store_as(void* d, int64_t i, float v) {
  static_cast<OutT*>(d)[i] = from_float<OutT>(v);
}

// Grid: (ceil(N / kRows), splits). Every thread copies (cp.async, 16-byte pieces, `ahead` stages
// ahead); warp w computes tile group w % kTileGroups for chunk group w / kTileGroups.
template <int MT>
__global__ void __launch_bounds__(RunShape<MT>::kThreads, RunShape<MT>::kMinBlocks) smallm_run_kernel(const RunArgs p) {
  using S = RunShape<MT>;
  [[maybe_unused]] constexpr bool kUseWgmma = S::kWgmma && FP4KIT_SMALLM_WGMMA;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int tile_group = warp % S::kTileGroups, group = warp / S::kTileGroups;
  const int row0 = blockIdx.x * S::kRows;
  const int first_stage = blockIdx.y * p.stages_per_split;
  const int stages_total = min(p.stage_count - first_stage, p.stages_per_split);  // >= 1
  const int chunks_k = p.k / kChunkK;                                             // K % 256 == 0
  const auto chunks_of = [&](int st) { return min(S::kChunks, chunks_k - (first_stage + st) * S::kChunks); };

  // This thread's pieces, the same rows and offsets every stage: code piece tid % (4 kChunks) of
  // rows tid / (4 kChunks) + j * (kThreads / (4 kChunks)); scale piece tid % (kChunks / 2) of row
  // tid / (kChunks / 2). Rows past N read row N - 1 (never stored).
  // NOTE: the pieces' global addresses are computed once here, each stage only adds its offset (ncu,
  // M = 1, N = 28672, K = 8192: recomputing rows and 64-bit products per stage was about 100 of a
  // warp's 650 instructions per stage; with the table fill above, 37.7M instructions became 35.1M and
  // the kernel 64.6 us became 61.6 us).
  constexpr int kCodeRowStep = S::kThreads / (S::kChunks * 4);
  const int code_q = tid % (S::kChunks * 4), code_r = tid / (S::kChunks * 4);
  const uint8_t* code_src[S::kCodePieces];
#pragma unroll
  for (int j = 0; j < S::kCodePieces; ++j) {
    code_src[j] = p.b_data + int64_t{min(row0 + code_r + j * kCodeRowStep, p.n - 1)} * p.b_data_stride +
                  int64_t{first_stage} * (S::kStageK / 2) + code_q * 16;
  }
  const uint32_t code_dst = (code_r * S::kCodePitch) + code_q * 16;  // + j * kCodeRowStep * kCodePitch
  const int scale_q = tid % (S::kChunks / 2), scale_r = tid / (S::kChunks / 2);
  const uint8_t* scale_src = p.b_scales + int64_t{min(row0 + min(scale_r, S::kRows - 1), p.n - 1)} * p.b_scale_stride +
                             int64_t{first_stage} * (S::kStageK / 16) + scale_q * 16;

  const auto issue = [&](int st, uint32_t base, bool weights, bool act) {
    if (st >= stages_total) return;
    const int chunks = chunks_of(st);
    const int64_t k0 = int64_t{first_stage + st} * S::kStageK;
    if (weights) {
      const uint64_t policy = l2_stream_policy();  // read once
      if (code_q < chunks * 4) {
        const int stage_offset = st * (S::kStageK / 2);  // < K / 2: 32-bit (K <= 2^30)
#pragma unroll
        for (int j = 0; j < S::kCodePieces; ++j) {
          cp_async16_policy(base + code_dst + j * (kCodeRowStep * S::kCodePitch), code_src[j] + stage_offset, policy);
        }
      }
      if (tid < S::kScaleThreads && scale_q < chunks / 2) {
        cp_async16_policy(base + S::kCodeBytes + scale_r * S::kScalePitch + scale_q * 16,
                          scale_src + st * (S::kStageK / 16), policy);
      }
    }
    if (!act) return;
    const uint32_t act_smem = base + S::kWeightBytes;
    if constexpr (S::kDirect) {
      if (p.a.data == nullptr) {
        // BF16 rows: [M][kStageK], 16-byte pieces of 8 elements.
        const int per_row = S::kChunks * 16;
        for (int i = tid; i < p.m * per_row; i += S::kThreads) {
          const int r = i / per_row, q = i - r * per_row;
          if (q < chunks * 16) {
            cp_async16(act_smem + r * (S::kStageK * 2) + q * 16,
                       static_cast<const __nv_bfloat16*>(p.a.dense) + r * p.a.dense_stride + k0 + q * 8);
          }
        }
      } else {
        // NVFP4 rows: codes [M][kStageK / 2], then scales [M][kStageK / 16].
        const int per_row = S::kChunks * 4;
        for (int i = tid; i < p.m * per_row; i += S::kThreads) {
          const int r = i / per_row, q = i - r * per_row;
          if (q < chunks * 4) cp_async16(act_smem + r * S::kCodePitch + q * 16, p.a.data + r * p.a.data_stride + k0 / 2 + q * 16);
        }
        const int per_scale_row = S::kChunks / 2;
        for (int i = tid; i < p.m * per_scale_row; i += S::kThreads) {
          const int r = i / per_scale_row, q = i - r * per_scale_row;
          if (q < chunks / 2) {
            cp_async16(act_smem + p.m * S::kCodePitch + r * S::kScalePitch + q * 16,
                       p.a.scales + r * p.a.scale_stride + k0 / 16 + q * 16);
          }
        }
      }
    } else {
      // The prepared activations of the stage's chunks: contiguous.
      const ActRow* src = p.act + (k0 / 8) * S::kMPad;
      for (int i = tid; i < chunks * (kChunkK / 8) * S::kMPad; i += S::kThreads) cp_async16(act_smem + i * 16, src + i);
    }
  };

  // Copies run `ahead` stages ahead of the math: stages - 1 for mma.sync (a buffer is free once
  // every warp has passed the next barrier), stages - 2 for wgmma (whose reads of a stage may still
  // run during the next one: the buffer refilled is the one of two stages back, whose wgmmas each
  // warpgroup has waited for by then).
  // The weights do not depend on the prepare kernel: their first stages are in flight before the
  // wait for it (a no-op without one). One cp.async group per stage and part, W0 .. W(ahead-1),
  // A0 .. A(ahead-1), then one per loop iteration: stage st is complete once at most ahead - 1
  // newer groups are pending, for every st.
  const int ahead = kUseWgmma ? p.stages - 2 : p.stages - 1;
  for (int st = 0; st < ahead; ++st) {
    issue(st, ring + st * p.stage_bytes, true, false);
    cp_async_commit();
  }
  if constexpr (!S::kDirect) pdl_wait();
  for (int st = 0; st < ahead; ++st) {
    issue(st, ring + st * p.stage_bytes, false, true);
    cp_async_commit();
  }

  float acc[S::kRowTiles][S::kMTiles][4];
#pragma unroll
  for (int rt = 0; rt < S::kRowTiles; ++rt)
#pragma unroll
    for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[rt][i][j] = 0.0f;
#if FP4KIT_SMALLM_WGMMA
  uint32_t wg_a[2][4][4];  // the wgmma path's fragment registers (the two halves of a chunk)
  if constexpr (kUseWgmma) fence_accumulators<S::kMTiles>(acc[0]);
#endif
  const int tile_row = tile_group * (16 * S::kRowTiles) + g;  // the lane's first row (tile 0) in the CTA
  // M <= 16: the decode tables after the ring (filled while the first stages are in flight).
  uint32_t* tables = reinterpret_cast<uint32_t*>(smem + p.stages * p.stage_bytes);
  [[maybe_unused]] const uint32_t lane_table = ring + p.stages * p.stage_bytes + lane * 4;
  [[maybe_unused]] const uint32_t scale_table = ring + p.stages * p.stage_bytes + kCodeTableWords * 4;
  if constexpr (S::kDirect) {
    fill_decode_tables(tables, tid, S::kThreads);  // the loop's first barrier precedes every read
  }

  int buf = 0, buf_next = ahead;
  for (int st = 0; st < stages_total; ++st) {
    cp_async_wait_pending(ahead - 1);
#if FP4KIT_SMALLM_WGMMA
    // NOTE: ordinary (cp.async) writes that the tensor cores read through the async proxy.
    if constexpr (kUseWgmma) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
    __syncthreads();
    issue(st + ahead, ring + buf_next * p.stage_bytes, true, true);
    cp_async_commit();  // also when empty: one group per stage keeps the count
    buf_next = buf_next + 1 == p.stages ? 0 : buf_next + 1;
    const uint32_t stage_smem = ring + buf * p.stage_bytes;
    buf = buf + 1 == p.stages ? 0 : buf + 1;
    const int chunks = chunks_of(st);
#pragma unroll
    for (int i = 0; i < S::kChunks / S::kKGroups; ++i) {
      const int c = group + i * S::kKGroups;
      if (c >= chunks) break;  // the stage's last chunks (uniform across the CTA)
      WeightRegs<S> f;
#pragma unroll
      for (int rt = 0; rt < S::kRowTiles; ++rt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = tile_row + rt * 16 + h * 8;
          asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                       : "=r"(f.q[rt][h].x), "=r"(f.q[rt][h].y), "=r"(f.q[rt][h].z), "=r"(f.q[rt][h].w)
                       : "r"(stage_smem + r * S::kCodePitch + c * (kChunkK / 2) + t * 16));
          asm volatile("ld.shared.u16 %0, [%1];"
                       : "=r"(f.s[rt][h])
                       : "r"(stage_smem + S::kCodeBytes + r * S::kScalePitch + c * (kChunkK / 16) + t * 2));
        }
      }
      uint32_t scale[S::kRowTiles][2][2];
      const uint32_t act_smem = stage_smem + S::kWeightBytes;
      if constexpr (S::kDirect) {
#pragma unroll
        for (int rt = 0; rt < S::kRowTiles; ++rt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            scale[rt][h][0] = scale_pair(f.s[rt][h] & 0xFFu, scale_table);
            scale[rt][h][1] = scale_pair(f.s[rt][h] >> 8, scale_table);
          }
        }
        uint32_t b[S::kMTiles][8][2];
#pragma unroll
        for (int mt = 0; mt < S::kMTiles; ++mt) act_pairs<S>(b[mt], p, act_smem, g + 8 * mt, c, t, lane_table, scale_table);
        mma_direct<S>(acc, f, scale, b, lane_table);
      } else {
#pragma unroll
        for (int rt = 0; rt < S::kRowTiles; ++rt) chunk_scales<S>(scale[rt], f, rt);
        const uint32_t chunk_act = act_smem + c * (kChunkK / 8) * S::kMPad * 16;
#if FP4KIT_SMALLM_WGMMA
        if constexpr (kUseWgmma) {
          wgmma_half<S, 0>(acc[0], wg_a[0], f, scale[0], chunk_act);
          wgmma_half<S, 1>(acc[0], wg_a[1], f, scale[0], chunk_act);
          continue;
        }
#endif
        mma_stage<S>(acc, f, scale, chunk_act, lane);
      }
    }
  }
#if FP4KIT_SMALLM_WGMMA
  if constexpr (kUseWgmma) {
    wgmma_wait<0>();
    fence_accumulators<S::kMTiles>(acc[0]);
  }
#endif
  pdl_launch_dependents();

  // The groups' sums, in group order, into group 0, through the ring's first stage (no copies in
  // flight: every one issued was waited for). Layout [group - 1][tile group][element][lane].
  if constexpr (S::kKGroups > 1) {
    constexpr int kElems = S::kRowTiles * S::kMTiles * 4;
    float* red = reinterpret_cast<float*>(smem);
    __syncthreads();
    if (group > 0) {
      float* mine = red + ((group - 1) * S::kTileGroups + tile_group) * kElems * 32 + lane;
#pragma unroll
      for (int rt = 0; rt < S::kRowTiles; ++rt)
#pragma unroll
        for (int mt = 0; mt < S::kMTiles; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) mine[((rt * S::kMTiles + mt) * 4 + e) * 32] = acc[rt][mt][e];
    }
    __syncthreads();
    if (group > 0) return;
    for (int gr = 1; gr < S::kKGroups; ++gr) {
      const float* theirs = red + ((gr - 1) * S::kTileGroups + tile_group) * kElems * 32 + lane;
#pragma unroll
      for (int rt = 0; rt < S::kRowTiles; ++rt)
#pragma unroll
        for (int mt = 0; mt < S::kMTiles; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[rt][mt][e] += theirs[((rt * S::kMTiles + mt) * 4 + e) * 32];
    }
  }

  // acc[rt][mt][e]: weight rows (g, g + 8) of tile rt = columns n of D, activation rows
  // 8 mt + 2t (+1) = rows m.
  const float fb = gemm_b_factor(p.amax_b);
  float* out = p.partials + int64_t{blockIdx.y} * p.m * p.n;
  // alpha(m) of this thread's rows, once per row (gemm_row_alpha divides), not once per element.
  float row_alpha[S::kMTiles][2];
  if (p.fused) {
#pragma unroll
    for (int mt = 0; mt < S::kMTiles; ++mt)
#pragma unroll
      for (int e = 0; e < 2; ++e) row_alpha[mt][e] = gemm_row_alpha(p.a, fb, p.e.alpha, min(8 * mt + 2 * t + e, p.m - 1));
  }
  const bool scale_only = gemm_epilogue_is_scale_only(p.e);
#pragma unroll
  for (int rt = 0; rt < S::kRowTiles; ++rt) {
#pragma unroll
    for (int mt = 0; mt < S::kMTiles; ++mt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = row0 + tile_row + rt * 16 + (e >> 1) * 8, row = 8 * mt + 2 * t + (e & 1);
        if (col >= p.n || row >= p.m) continue;
        const float v = acc[rt][mt][e] * p.acc_scale;  // exact: a power of two
        if (!p.fused) {
          out[int64_t{row} * p.n + col] = v;
          continue;
        }
        // The epilogue kernel's arithmetic on a one-split sum: the same bits.
        const float ra = row_alpha[mt][e & 1];
        const float r = scale_only ? ra * v : gemm_epilogue_value(p.e, ra, v, row, col);
        const int64_t at = row * p.d_stride + col;
        switch (p.d_dtype) {
          case DType::kF32: store_as<float>(p.d, at, r); break;
          case DType::kF16: store_as<__half>(p.d, at, r); break;
          default: store_as<__nv_bfloat16>(p.d, at, r); break;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel 3: the splits' sum in split order, then the contract's epilogue
// ---------------------------------------------------------------------------------------------

template <typename OutT>
__global__ void __launch_bounds__(kEpilogueThreads)
    smallm_epilogue_kernel(const float* __restrict__ partials, int splits, int m, int n, const GemmOperandPointers a,
                           const float* amax_b, const GemmEpilogue e, OutT* __restrict__ d, int64_t d_stride) {
  pdl_wait();
  const float fb = gemm_b_factor(amax_b);
  // One alpha for every row unless A is row-scaled (gemm_row_alpha divides: not per element).
  const bool per_row = a.amax != nullptr && a.row_scaled;
  const float uniform_alpha = gemm_row_alpha(a, fb, e.alpha, 0);
  const int64_t total = int64_t{m} * n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    float acc = partials[i];
    for (int s = 1; s < splits; ++s) acc += partials[s * total + i];  // fixed order: the same bytes every run
    const int64_t row = i / n, col = i - row * n;
    const float v = gemm_epilogue_value(e, per_row ? gemm_row_alpha(a, fb, e.alpha, row) : uniform_alpha, acc, row, col);
    d[row * d_stride + col] = from_float<OutT>(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

using StreamKernel = void (*)(StreamArgs);

// The instantiations: mma.sync for every activation tile count; wgmma (the sm_90a image) for 4 or
// 8 tiles.
StreamKernel stream_kernel(int m_tiles, bool wgmma) {
  if (wgmma && m_tiles == 4) return smallm_stream_kernel<4, true>;
  if (wgmma && m_tiles == 8) return smallm_stream_kernel<8, true>;
  switch (m_tiles) {
    case 1: return smallm_stream_kernel<1, false>;
    case 2: return smallm_stream_kernel<2, false>;
    case 4: return smallm_stream_kernel<4, false>;
    default: return smallm_stream_kernel<8, false>;
  }
}

using RunKernel = void (*)(RunArgs);

// The run kernel's instantiations and their geometry.
struct RunGeometry {
  RunKernel kernel;
  int rows, threads;
  int64_t stage_k;
};
template <int MT>
RunGeometry run_geometry_of() {
  using S = RunShape<MT>;
  return {smallm_run_kernel<MT>, S::kRows, S::kThreads, S::kStageK};
}
RunGeometry run_geometry(int m_tiles) {
  switch (m_tiles) {
    case 1: return run_geometry_of<1>();
    case 2: return run_geometry_of<2>();
    case 4: return run_geometry_of<4>();
    default: return run_geometry_of<8>();
  }
}

// Resident CTAs per SM of a streaming kernel at `smem` bytes, asked of the runtime once per
// (kernel, device, smem). NOTE: process-wide on purpose (as the cast launcher's): the kernel's
// dynamic shared-memory limit is itself process-wide CUDA state; it only grows here, under a lock.
int ctas_per_sm(const void* kernel, int device, int threads, int64_t smem) {
  struct Known {
    int64_t smem_limit = 0;
    std::map<int64_t, int> ctas;
  };
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, Known> known;
  const std::lock_guard<std::mutex> lock(mutex);
  Known& k = known[{kernel, device}];
  if (smem > k.smem_limit) {
    FP4KIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)),
                      detail::cat("small-M GEMM: ", smem, " B of shared memory"));
    k.smem_limit = smem;
  }
  auto it = k.ctas.find(smem);
  if (it == k.ctas.end()) {
    int n = 0;
    FP4KIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads,
                                                                    static_cast<size_t>(smem)),
                      "small-M GEMM");
    if (n < 1) detail::fail(ErrorCode::kInternal, detail::cat("small-M GEMM: ", smem, " B of shared memory leaves no CTA resident"));
    it = k.ctas.emplace(smem, n).first;
  }
  return it->second;
}

struct Plan {
  SmallMPlan info;
  StreamKernel kernel = nullptr;   // the chunk kernel, or
  RunKernel run_kernel = nullptr;  // the run kernel
  int64_t stage_bytes = 0;         // the run kernel's stage
  int64_t k_pad = 0;  // the prepared activations' K: whole stages past every split's end
};

// The split count (K slices of whole stages) by the cost model below, or the tuning's. Each rule
// of the cost is in bytes of device-memory traffic:
//   - the weight stream, scaled by how unevenly the CTAs fill the SMs' slots (a last wave that is
//     a third full costs as much as a full one);
//   - each split writes and the epilogue reads M x N FP32 partials, and the epilogue kernel's
//     launch costs `epilogue_bytes`; with `one_split_writes_d`, one split has neither;
//   - each wave pays a start-up latency (~0.7 us of loads in flight before the first bytes land);
//   - each CTA pays `cta_bytes` (its first stage's wait and its tail: with the run kernel's short
//     CTAs, two splits at M = 1, N = 28672 measured 10% slower than one, not the 5% faster that the
//     terms above predict). Measured again once its table fill went in 16-byte pieces: two splits
//     0.5-1.7% faster there, but one weight stage per CTA (instead of 1.5) also moves M = 1,
//     N = 8192 to three splits, 31 us against 26 (its 256 CTAs fill under one wave of the 396 slots,
//     and the weight term above overstates that): kept at 1.5.
// Ties go to fewer splits.
int64_t choose_splits(int64_t m, int64_t n, int64_t k, int64_t units, int64_t row_blocks, int64_t slots,
                      bool one_split_writes_d, double cta_bytes, const SmallMTuning& tuning) {
  const double epilogue_bytes = 4.5e6;  // ~1.5 us at 3 TB/s
  if (tuning.splits > 0) return std::min<int64_t>(tuning.splits, units);
  const double weight_bytes = static_cast<double>(n) * static_cast<double>(k) * (0.5 + 1.0 / 16);
  const double wave_latency_bytes = 2.0e6;
  int64_t best_splits = 1;
  double best_cost = 0;
  for (int64_t s = 1; s <= std::min<int64_t>(units, 64); ++s) {
    const int64_t per = (units + s - 1) / s;
    if ((units + per - 1) / per != s) continue;  // the same slices as a smaller split count
    const int64_t ctas = row_blocks * s, waves = (ctas + slots - 1) / slots;
    double cost = weight_bytes * static_cast<double>(waves * slots) / static_cast<double>(ctas) +
                  static_cast<double>(waves) * wave_latency_bytes + static_cast<double>(ctas) * cta_bytes;
    if (s > 1 || !one_split_writes_d) cost += static_cast<double>(s * m * n) * 8.0 + epilogue_bytes;
    if (s == 1 || cost < best_cost) {
      best_cost = cost;
      best_splits = s;
    }
  }
  return best_splits;
}

// The cp.async kernel's plan. Ring depth: two stages in flight, within the configuration's shared
// memory (its cap at M = 64; see below). Split count: choose_splits (this kernel always runs the
// epilogue kernel).
Plan make_plan(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& b, const KernelConfig& config, int device,
               const SmallMTuning& tuning) {
  Plan plan;
  SmallMPlan& info = plan.info;
  info.m_tiles = m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8;
  int cc_major = 0, cc_minor = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device), "small-M GEMM");
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device), "small-M GEMM");
  info.load_bytes =
      (reinterpret_cast<uintptr_t>(b.data) % 16 == 0 && b.data_stride % 16 == 0) ? 16 : 8;
  // wgmma where the sm_90a image runs (cc 9.0) and decode is amortized over more than 16 rows.
  const bool want_wgmma = tuning.mma == SmallMTuning::Mma::kWgmma ||
                          (tuning.mma == SmallMTuning::Mma::kAuto && cc_major == 9 && cc_minor == 0);
  info.wgmma = want_wgmma && info.m_tiles >= 4;
  plan.kernel = stream_kernel(info.m_tiles, info.wgmma);
  info.threads = 32 * smallm_warps(info.m_tiles, info.wgmma);
  const int m_pad = 8 * info.m_tiles;
  const int64_t cap = smallm_smem_bytes(64, kChunkK, config.stages);
  // wgmma needs a ring of 3 (copies run stages - 2 ahead); mma.sync where the cap holds only 2.
  if (info.wgmma && (smallm_smem_bytes(m_pad, kChunkK, 3) > cap || tuning.stages == 2)) {
    info.wgmma = false;
    plan.kernel = stream_kernel(info.m_tiles, false);
    info.threads = 32 * smallm_warps(info.m_tiles, false);
  }
  // Ring depth: copies two stages ahead of the math (3 buffers for mma.sync, 4 for wgmma) where the
  // configuration's shared memory holds them. Measured on the H100 (M = 1, 16, 64; N = 8192 and
  // 28672; K = 8192): two stages in flight beat one by 3-8% and three to seven by 2-20% (each more
  // puts 256 more rows' scattered pieces in flight); the depth never changes the result.
  const int first = info.wgmma ? 3 : 2, lag = info.wgmma ? 2 : 1;
  for (int stages = first; stages <= kMaxStages; ++stages) {
    if (smallm_smem_bytes(m_pad, kChunkK, stages) > cap) break;
    if (tuning.stages > 0 ? stages == tuning.stages : stages <= lag + 2) info.stages = stages;
  }
  if (info.stages == 0) {
    detail::fail(ErrorCode::kInvalidArgument, detail::cat("gemm (small-M kernel): ", tuning.stages, " stages of ",
                                                          smallm_smem_bytes(m_pad, kChunkK, 1), " B exceed the configuration's ",
                                                          cap, " B of shared memory"));
  }
  info.smem_bytes = smallm_smem_bytes(m_pad, kChunkK, info.stages);
  info.ctas_per_sm = ctas_per_sm(reinterpret_cast<const void*>(plan.kernel), device, info.threads, info.smem_bytes);

  const int64_t units = (k + kChunkK - 1) / kChunkK;  // K in whole stages
  const int64_t row_blocks = (n + kRowsPerCta - 1) / kRowsPerCta;
  const int64_t slots = int64_t{sm_count_of(device)} * info.ctas_per_sm;
  const int64_t best_splits = choose_splits(m, n, k, units, row_blocks, slots, false, 0.0, tuning);
  const int64_t per = (units + best_splits - 1) / best_splits;
  info.splits = static_cast<int>((units + per - 1) / per);
  info.k_slice = per * kChunkK;
  info.ctas = static_cast<int>(row_blocks * info.splits);
  info.rows = kRowsPerCta;
  info.k_stage = kChunkK;
  plan.k_pad = units * kChunkK;
  return plan;
}

// The run kernel's plan, or none (nullopt) where it does not apply: the chunk kernel is forced, or
// M > 8 unless the run kernel is (measured on the H100, L2 flushed, N = 8192 and 28672, K = 8192:
// at M = 16 the chunk kernel was 10-25% faster, its ldmatrix of prepared activations cheaper than
// the lanes decoding two A rows per chunk; at M = 64 the two were within 4%); B's code or scale
// rows, or A's rows, are not 16-byte aligned; K % 256 != 0 (stages of whole 16-byte scale runs);
// M > 16 without wgmma (cc 9.0, not forced off); or a forced ring depth does not fit the
// configuration. Ring depth (default), measured on the H100 at M = 1, 16 and 64 (N =
// 8192 and 28672, K = 8192): M <= 16 two buffers (one stage in flight: the kernel is bound by its
// instructions, and deeper rings delay every CTA's first stage; 2-4 us faster than four at M = 1),
// wgmma four (two in flight). Split count: choose_splits, where one split writes D (no epilogue
// kernel).
std::optional<Plan> make_run_plan(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                                  const KernelConfig& config, int device, const SmallMTuning& tuning) {
  if (tuning.path == SmallMTuning::Path::kChunk || (tuning.path == SmallMTuning::Path::kAuto && m > 8)) return std::nullopt;
  int cc_major = 0, cc_minor = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device), "small-M GEMM");
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device), "small-M GEMM");
  const auto aligned16 = [](const void* p, int64_t stride) {
    return (reinterpret_cast<uintptr_t>(p) % 16) == 0 && stride % 16 == 0;
  };
  if (k % 256 != 0 || !aligned16(b.data, b.data_stride) || !aligned16(b.scales, b.scale_stride)) return std::nullopt;
  Plan plan;
  SmallMPlan& info = plan.info;
  info.run = true;
  info.load_bytes = 16;
  info.m_tiles = m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8;
  info.prepared = info.m_tiles >= 4;
  if (info.prepared) {
    const bool want_wgmma = tuning.mma == SmallMTuning::Mma::kWgmma ||
                            (tuning.mma == SmallMTuning::Mma::kAuto && cc_major == 9 && cc_minor == 0);
    if (!want_wgmma) return std::nullopt;
    info.wgmma = true;
  } else if (a.data != nullptr ? !aligned16(a.data, a.data_stride) || !aligned16(a.scales, a.scale_stride)
                               : !aligned16(a.dense, a.dense_stride * 2)) {
    return std::nullopt;
  }
  const RunGeometry geo = run_geometry(info.m_tiles);
  plan.run_kernel = geo.kernel;
  info.threads = geo.threads;
  info.rows = geo.rows;
  info.k_stage = geo.stage_k;
  const int64_t act_bytes = info.prepared ? smallm_prepared_act_bytes(8 * info.m_tiles, geo.stage_k)
                                          : smallm_raw_act_bytes(m, geo.stage_k, a.data == nullptr);
  plan.stage_bytes = smallm_run_stage_bytes(geo.rows, geo.stage_k, act_bytes);
  const int64_t cap = smallm_smem_bytes(64, kChunkK, config.stages);
  const auto smem_of = [&](int stages) {
    return smallm_run_smem_bytes(geo.rows, geo.stage_k, act_bytes, stages, !info.prepared);
  };
  // wgmma reads a stage while the next is decoded: its ring needs a buffer more (3 or more).
  const int min_stages = info.wgmma ? 3 : 2;
  info.stages = tuning.stages > 0 ? tuning.stages : info.wgmma ? 4 : 2;
  while (tuning.stages == 0 && info.stages > min_stages && smem_of(info.stages) > cap) --info.stages;
  if (info.stages < min_stages || info.stages > kMaxRunStages || smem_of(info.stages) > cap) return std::nullopt;
  info.smem_bytes = smem_of(info.stages);
  info.ctas_per_sm = ctas_per_sm(reinterpret_cast<const void*>(geo.kernel), device, geo.threads, info.smem_bytes);

  const int64_t units = (k + geo.stage_k - 1) / geo.stage_k;  // K in whole stages (the last may be short)
  const int64_t row_blocks = (n + geo.rows - 1) / geo.rows;
  const int64_t slots = int64_t{sm_count_of(device)} * info.ctas_per_sm;
  const double cta_bytes = 1.5 * static_cast<double>(smallm_weight_stage_bytes(geo.rows, geo.stage_k));
  const int64_t best_splits = choose_splits(m, n, k, units, row_blocks, slots, true, cta_bytes, tuning);
  const int64_t per = (units + best_splits - 1) / best_splits;
  info.splits = static_cast<int>((units + per - 1) / per);
  info.k_slice = per * geo.stage_k;
  info.ctas = static_cast<int>(row_blocks * info.splits);
  info.fused_epilogue = info.splits == 1;
  plan.k_pad = k;  // K % 256 == 0: whole 128-element chunks
  return plan;
}

template <typename OutT>
void launch_epilogue(const float* partials, int splits, int64_t m, int64_t n, const GemmOperandPointers& a,
                     const float* amax_b, const GemmEpilogue& e, void* d, int64_t d_stride, bool pdl, cudaStream_t s) {
  const int64_t work = (m * n + kEpilogueThreads - 1) / kEpilogueThreads;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(work, int64_t{1} << 20))));
  cfg.blockDim = dim3(kEpilogueThreads);
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  FP4KIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, smallm_epilogue_kernel<OutT>, partials, splits, static_cast<int>(m),
                                       static_cast<int>(n), a, amax_b, e, static_cast<OutT*>(d), d_stride),
                    detail::cat("small-M GEMM epilogue kernel [", m, ", ", n, "] x ", splits, " splits"));
}

}  // namespace

void launch_smallm_prepare(const GemmOperandPointers& a, int64_t m, int64_t k, int m_pad, int64_t k_pad, void* out,
                           void* stream, uint32_t* zero, int zero_words) {
  PrepareArgs pa{a, static_cast<int>(m), static_cast<int>(k), m_pad, static_cast<int>(k_pad / kChunkK),
                 static_cast<uint32_t*>(out), zero, zero_words};
  const int64_t prepare_warps = int64_t{pa.chunks} * (m_pad / 8);
  const unsigned prepare_grid = static_cast<unsigned>((prepare_warps * 32 + kPrepareThreads - 1) / kPrepareThreads);
  smallm_prepare_kernel<<<prepare_grid, kPrepareThreads, 0, static_cast<cudaStream_t>(stream)>>>(pa);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("gemm (small-M kernel): prepare kernel [", m, ", ", k, "]"));
}

void launch_sm80_gemm_smallm(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                             void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue,
                             const KernelConfig& config, int device, void* stream, const SmallMTuning& tuning) {
  const auto fail_if = [&](bool bad, const std::string& why) {
    if (bad) detail::fail(ErrorCode::kUnsupported, detail::cat("gemm (small-M kernel): ", why));
  };
  fail_if(m < 1 || m > 64, detail::cat("serves 1 <= M <= 64; M is ", m));
  fail_if(n < 1 || k < 16 || k % 16 != 0, detail::cat("needs N >= 1 and K a positive multiple of 16; N=", n, " K=", k));
  fail_if(b.data == nullptr, "B must be NVFP4 (the weight stream); a dense B goes to the portable path");
  fail_if(a.data == nullptr && a.dense == nullptr, "A has neither NVFP4 codes nor dense values");
  fail_if(config.stages < 2 || config.stages > kMaxStages,
          detail::cat("needs a pipeline of 2 to ", kMaxStages, " stages; the configuration has ", config.stages));
  const auto aligned8 = [](const void* p, int64_t stride) {
    return (reinterpret_cast<uintptr_t>(p) % 8) == 0 && stride % 8 == 0;
  };
  fail_if(!aligned8(b.data, b.data_stride), "B's code rows must start on 8-byte boundaries (fp4kit tensors do)");
  fail_if(a.data != nullptr && !aligned8(a.data, a.data_stride),
          "A's code rows must start on 8-byte boundaries (fp4kit tensors do)");
  fail_if(m * n > (int64_t{1} << 31) - 1 || k > (int64_t{1} << 30), "the problem exceeds 32-bit indexing");

  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const std::optional<Plan> run_plan = make_run_plan(m, n, k, a, b, config, device, tuning);
  const Plan plan = run_plan ? *run_plan : make_plan(m, n, k, b, config, device, tuning);
  if (tuning.plan) *tuning.plan = plan.info;
  int cc_major = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device), "small-M GEMM");
  const bool pdl = cc_major >= 9;
  const int m_pad = 8 * plan.info.m_tiles;

  // One stream-ordered allocation (none when A is decoded in the stream and one split writes D):
  // the prepared activations, then the partial sums.
  const bool prepare = !plan.info.run || plan.info.prepared;
  const int64_t act_bytes = prepare ? (plan.k_pad / 8) * m_pad * 16 : 0;
  const int64_t partial_bytes = plan.info.fused_epilogue ? 0 : int64_t{plan.info.splits} * m * n * 4;
  unsigned char* buffer = nullptr;
  if (act_bytes + partial_bytes > 0) {
    FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&buffer), static_cast<size_t>(act_bytes + partial_bytes), s),
                      detail::cat("gemm (small-M kernel): workspace for M=", m, " N=", n, " K=", k));
  }
  auto* act = reinterpret_cast<uint32_t*>(buffer);
  auto* partials = reinterpret_cast<float*>(buffer + act_bytes);  // act_bytes is a multiple of 256

  if (prepare) launch_smallm_prepare(a, m, k, m_pad, plan.k_pad, act, s);

  // Programmatic dependent launch chains the kernels of this call (each waits for its
  // predecessor's results with griddepcontrol.wait); the call's first kernel is an ordinary launch,
  // so it never overlaps earlier work on the stream.
  cudaLaunchAttribute pdl_attr{};
  pdl_attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl_attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.blockDim = dim3(static_cast<unsigned>(plan.info.threads));
  cfg.dynamicSmemBytes = static_cast<size_t>(plan.info.smem_bytes);
  cfg.stream = s;
  cfg.attrs = &pdl_attr;
  cfg.numAttrs = pdl && prepare ? 1 : 0;
  const auto what = [&] {
    return detail::cat("gemm (small-M kernel): ", plan.info.run ? "run" : "chunk", " kernel M=", m, " N=", n, " K=", k, " (",
                       plan.info.m_tiles, " activation tiles, ", plan.info.wgmma ? "wgmma" : "mma.sync", ", ", plan.info.rows,
                       " rows x ", plan.info.k_stage, " K per stage, ", plan.info.load_bytes, "-byte copies, ",
                       plan.info.splits, " splits of ", plan.info.k_slice, ", ", plan.info.stages, " stages, ",
                       plan.info.smem_bytes, " B shared memory)");
  };
  if (plan.info.run) {
    fail_if(d_dtype != DType::kF32 && d_dtype != DType::kF16 && d_dtype != DType::kBF16,
            detail::cat("unexpected output dtype ", dtype_name(d_dtype)));
    RunArgs ra{};
    ra.b_data = b.data;
    ra.b_scales = b.scales;
    ra.b_data_stride = b.data_stride;
    ra.b_scale_stride = b.scale_stride;
    ra.a = a;
    ra.act = reinterpret_cast<const ActRow*>(act);
    ra.partials = partials;
    ra.m = static_cast<int>(m);
    ra.n = static_cast<int>(n);
    ra.k = static_cast<int>(k);
    ra.stage_count = static_cast<int>((k + plan.info.k_stage - 1) / plan.info.k_stage);
    ra.stages_per_split = static_cast<int>(plan.info.k_slice / plan.info.k_stage);
    ra.stages = plan.info.stages;
    ra.stage_bytes = static_cast<int>(plan.stage_bytes);
    // 2^8 for the weights' block values, and 2^8 more for an NVFP4 A decoded in the stream.
    ra.acc_scale = !plan.info.prepared && a.data != nullptr ? kAccScale * kAccScale : kAccScale;
    ra.fused = plan.info.fused_epilogue ? 1 : 0;
    ra.amax_b = b.amax;
    ra.e = epilogue;
    ra.d = d;
    ra.d_dtype = d_dtype;
    ra.d_stride = d_stride;
    cfg.gridDim = dim3(static_cast<unsigned>((n + plan.info.rows - 1) / plan.info.rows), static_cast<unsigned>(plan.info.splits));
    const cudaError_t launched = cudaLaunchKernelEx(&cfg, plan.run_kernel, ra);
    if (launched != cudaSuccess) FP4KIT_CUDA_CHECK(launched, what());
    if (plan.info.fused_epilogue) {
      if (buffer != nullptr) FP4KIT_CUDA_CHECK(cudaFreeAsync(buffer, s), "gemm (small-M kernel): workspace");
      return;
    }
  } else {
    StreamArgs sa{};
    sa.b_data = b.data;
    sa.b_scales = b.scales;
    sa.b_data_stride = b.data_stride;
    sa.b_scale_stride = b.scale_stride;
    sa.act = reinterpret_cast<const ActRow*>(act);
    sa.partials = partials;
    sa.m = static_cast<int>(m);
    sa.n = static_cast<int>(n);
    sa.k = static_cast<int>(k);
    sa.k_slice = static_cast<int>(plan.info.k_slice);
    sa.stages = plan.info.stages;
    sa.data_copy16 = plan.info.load_bytes == 16 ? 1 : 0;
    sa.scale_copy8 = (reinterpret_cast<uintptr_t>(b.scales) % 8 == 0 && b.scale_stride % 8 == 0) ? 1 : 0;
    cfg.gridDim = dim3(static_cast<unsigned>((n + kRowsPerCta - 1) / kRowsPerCta), static_cast<unsigned>(plan.info.splits));
    const cudaError_t launched = cudaLaunchKernelEx(&cfg, plan.kernel, sa);
    if (launched != cudaSuccess) FP4KIT_CUDA_CHECK(launched, what());
  }
  switch (d_dtype) {
    case DType::kF32:
      launch_epilogue<float>(partials, plan.info.splits, m, n, a, b.amax, epilogue, d, d_stride, pdl, s);
      break;
    case DType::kF16:
      launch_epilogue<__half>(partials, plan.info.splits, m, n, a, b.amax, epilogue, d, d_stride, pdl, s);
      break;
    case DType::kBF16:
      launch_epilogue<__nv_bfloat16>(partials, plan.info.splits, m, n, a, b.amax, epilogue, d, d_stride, pdl, s);
      break;
    default:
      cudaFreeAsync(buffer, s);
      detail::fail(ErrorCode::kInternal, detail::cat("gemm (small-M kernel): unexpected output dtype ", dtype_name(d_dtype)));
  }
  FP4KIT_CUDA_CHECK(cudaFreeAsync(buffer, s), "gemm (small-M kernel): workspace");
}

std::string smallm_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(smallm_stream_kernel<1, false>), device.index,
                              "small-M GEMM stream kernel");
}

}  // namespace fp4kit::cuda
