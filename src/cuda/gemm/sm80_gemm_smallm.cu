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
#include "cuda/gemm/epilogue.cuh"
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

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  __nv_bfloat162 x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  const __nv_bfloat162 r = __hmul2(x, y);
  uint32_t out;
  memcpy(&out, &r, 4);
  return out;
}

// Nibbles I and I+4 of q (E2M1 codes) as a BF16 pair of value * 2^-126: the sign to bit 15 (31),
// the three magnitude bits to bits 6..8 (22..24), i.e. the two exponent bits to the exponent's
// lowest two bits and the mantissa bit to the top mantissa bit. Code 1 (0.5) is the subnormal
// 2^-127; every value is exact.
template <int I>
__device__ __forceinline__ uint32_t e2m1_pair_raw(uint32_t q) {
  const uint32_t sign = q << (12 - 4 * I);
  uint32_t mag;
  if constexpr (6 - 4 * I >= 0) {
    mag = q << (6 - 4 * I);
  } else {
    mag = q >> (4 * I - 6);
  }
  return (sign & 0x80008000u) | (mag & 0x01C001C0u);
}

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
  uint32_t v = bf16x2_mul(mag << 4, kBf16x2TwoPow119);
  v = bf16x2_mul(v, kBf16x2TwoPow119);
  v |= (y & 0x00800080u) << 8;                                      // the sign
  const uint32_t is_nan = ((mag + 0x00010001u) & 0x00800080u) >> 7;  // 1 in a half whose byte is 0x7F
  return v | is_nan * 0x7FC0u;
}

template <int W>
__device__ __forceinline__ uint32_t word_of(const uint4& q) {
  if constexpr (W == 0) return q.x;
  if constexpr (W == 1) return q.y;
  if constexpr (W == 2) return q.z;
  return q.w;
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
};

// A warp per (chunk, 8-row group); lane (g, t) handles row 8 * group + g, physical elements
// 32t..32t+31 of the chunk: it reads them (64 B of BF16, or 16 B of codes and 2 scale bytes) and
// writes their 16 pairs to the 16 K groups 4w + i of the chunk, bytes 4t.. of row m (the warp's 32
// stores of one (w, i) fill one 128-byte line). Rows >= M and elements >= K are zeros.
__global__ void __launch_bounds__(kPrepareThreads) smallm_prepare_kernel(const PrepareArgs p) {
  pdl_launch_dependents();  // the streaming kernel starts its weight loads meanwhile
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
  const uint32_t w0 = word_of<J / 2>(f.q[rt][0]), w1 = word_of<J / 2>(f.q[rt][1]);
  constexpr int kLo = 2 * (J % 2);
  a[0] = bf16x2_mul(e2m1_pair_raw<kLo>(w0), scale[0][J / 4]);
  a[1] = bf16x2_mul(e2m1_pair_raw<kLo>(w1), scale[1][J / 4]);
  a[2] = bf16x2_mul(e2m1_pair_raw<kLo + 1>(w0), scale[0][J / 4]);
  a[3] = bf16x2_mul(e2m1_pair_raw<kLo + 1>(w1), scale[1][J / 4]);
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
// Kernel 2b: the weight stream by bulk copies (sm_90)
// ---------------------------------------------------------------------------------------------
//
// Same decode and MMAs as kernel 2; what differs is how the bytes arrive. Kernel 2 copies 64-byte
// pieces of 256 rows per 128-K stage with per-thread cp.async; here a stage is kChunks 128-element
// chunks of kRows rows, and each row's codes (kChunks * 64 contiguous bytes) and scales
// (kChunks * 8) are one bulk copy (the TMA engine; no per-thread address work), completing on the
// buffer's mbarrier. Longer runs per row and the copy engine's own queue keep more of the weight in
// flight per SM. Warps: one 16-row tile each (a warpgroup's four make a 64-row wgmma tile), kKGroups
// groups of them splitting each stage's chunks; the groups' FP32 sums are added in group order at
// the end (deterministic). With one K split the kernel applies the contract's epilogue and writes D.

// Shapes by activation tiles (rows per CTA, chunks per stage, warp groups sharing a stage's chunks).
// The activations' share of a stage grows with M: M <= 16 affords 512-K stages of 64 rows; M > 16
// takes 256-K stages (64 or 128 rows) so that three or four buffers fit.
constexpr int bulk_rows(int m_tiles, bool wgmma) { return wgmma && m_tiles == 8 ? 128 : 64; }
constexpr int bulk_chunks(int m_tiles) { return m_tiles <= 2 ? 4 : 2; }
constexpr int bulk_kgroups(int m_tiles, bool wgmma) { return wgmma && m_tiles == 8 ? 2 : 2; }
constexpr int kMaxBulkStages = 8;

template <int MT, bool kWgmma>
struct BulkShape {
  static constexpr int kMTiles = MT;
  static constexpr int kMPad = 8 * MT;
  static constexpr int kRows = bulk_rows(MT, kWgmma);
  static constexpr int kChunks = bulk_chunks(MT);
  static constexpr int kKGroups = bulk_kgroups(MT, kWgmma);
  static constexpr int kStageK = kChunks * kChunkK;
  static constexpr int kTiles = kRows / 16;  // 16-row tiles: one per warp of a group
  static constexpr int kWarps = kTiles * kKGroups;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowTiles = 1;  // per warp (WeightRegs, mma_stage)
  static constexpr int kCodePitch = kStageK / 2, kScalePitch = kStageK / 16;  // bytes per row in a stage
  // One ring buffer: the activations [kStageK / 8][m_pad][16 B], the codes [kRows][kCodePitch], the
  // scales [kRows][kScalePitch].
  static constexpr int kActBytes = kMPad * kStageK * 2;
  static constexpr int kCodeBytes = kRows * kCodePitch;
  static constexpr int kScaleBytes = kRows * kScalePitch;
  static constexpr int kStageBytes = kActBytes + kCodeBytes + kScaleBytes;
  static_assert(kStageBytes == smallm_stage_bytes(kMPad, kStageK, kRows), "launch.hpp's formula is what the kernel allocates");
  static_assert(kStageBytes % 128 == 0 && kActBytes % 16 == 0 && kCodeBytes % 16 == 0, "bulk copies land on 16-byte boundaries");
  static_assert(kChunks % 2 == 0 && kChunks % kKGroups == 0, "scale runs of whole 16 bytes; every group the same chunk count");
  static_assert(!kWgmma || kTiles % 4 == 0, "a warpgroup's wgmma covers 64 rows");
  // The reduction of the groups' sums reuses the ring (at least one buffer).
  static constexpr int kReduceBytes = (kKGroups - 1) * kTiles * 32 * MT * 4 * 4;
  static_assert(kReduceBytes <= kStageBytes, "the groups' sums fit in one buffer");
  // <= 128 registers: two CTAs of 8 warps, or one of 16, per SM.
  static constexpr int kMinBlocks = kWarps <= 8 ? 2 : 1;
};

struct BulkArgs {
  const uint8_t* b_data;    // [N, K/2] codes, b_data_stride bytes between rows (16-byte aligned)
  const uint8_t* b_scales;  // [N, K/16] E4M3, b_scale_stride bytes between rows (16-byte aligned)
  int64_t b_data_stride, b_scale_stride;
  const ActRow* act;        // the prepared activations [K_pad / 8][m_pad]
  float* partials;          // [splits][M][N] FP32 (several splits)
  int m, n, k;
  int stage_count;          // stages of the whole K: ceil(K / stage_k); the last may hold fewer chunks
  int stages_per_split;
  int stages;               // ring depth (2..kMaxBulkStages)
  // One split: the contract's epilogue here, D written directly.
  int fused;
  GemmOperandPointers a;    // A's global factors (amax, row-scaled)
  const float* amax_b;
  GemmEpilogue e;
  void* d;                  // [M, N], d_stride elements between rows
  DType d_dtype;
  int64_t d_stride;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define FP4KIT_SMALLM_BULK 1
#else
#define FP4KIT_SMALLM_BULK 0
#endif

#if FP4KIT_SMALLM_BULK
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// `bytes` (a multiple of 16) from global to shared memory by the copy engine, counted on `bar`.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
#endif

template <typename OutT>
__device__ __forceinline__ void store_as(void* d, int64_t i, float v) {
  static_cast<OutT*>(d)[i] = from_float<OutT>(v);
}

template <int MT, bool kWgmma>
__global__ void __launch_bounds__(BulkShape<MT, kWgmma>::kThreads, BulkShape<MT, kWgmma>::kMinBlocks)
    smallm_bulk_kernel(const BulkArgs p) {
#if FP4KIT_SMALLM_BULK
  using S = BulkShape<MT, kWgmma>;
  [[maybe_unused]] constexpr bool kUseWgmma = kWgmma && FP4KIT_SMALLM_WGMMA;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t bars = ring + p.stages * S::kStageBytes;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int tile = warp % S::kTiles, group = warp / S::kTiles;
  const int row0 = blockIdx.x * S::kRows;
  const int first_stage = blockIdx.y * p.stages_per_split;
  const int stages_total = min(p.stage_count - first_stage, p.stages_per_split);  // >= 1
  const int chunks_k = p.k / kChunkK;                                             // K % 256 == 0
  const auto chunks_of = [&](int st) { return min(S::kChunks, chunks_k - (first_stage + st) * S::kChunks); };

  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) mbar_init(bars + 8 * s, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  // Warp 0 issues every copy: per stage one arrive.expect_tx (all its bytes), then the rows' runs
  // (rows past N read row N - 1, never stored) and, once the prepare kernel is done, the
  // activations. Copies run `ahead` = stages - 1 stages ahead of the math: the buffer a refill
  // takes is the one every warp finished before the loop's barrier (wgmma waits for its reads at
  // the end of each stage).
  const int ahead = p.stages - 1;
  const auto issue_weights = [&](int st) {
    if (st >= stages_total) return;
    const int buf = st % p.stages;
    const uint32_t stage_smem = ring + buf * S::kStageBytes, bar = bars + 8 * buf;
    const int chunks = chunks_of(st);
    const int64_t k0 = int64_t{first_stage + st} * S::kStageK;
    const uint32_t code_bytes = chunks * (kChunkK / 2), scale_bytes = chunks * (kChunkK / 16);
    if (lane == 0) mbar_expect_tx(bar, S::kRows * (code_bytes + scale_bytes) + chunks * kChunkK * S::kMPad * 2);
    __syncwarp();
#pragma unroll
    for (int j = 0; j < (S::kRows + 31) / 32; ++j) {
      const int r = lane + 32 * j;
      if (S::kRows % 32 == 0 || r < S::kRows) {
        const int64_t row = min(row0 + r, p.n - 1);
        bulk_copy(stage_smem + S::kActBytes + r * S::kCodePitch, p.b_data + row * p.b_data_stride + k0 / 2, code_bytes, bar);
        bulk_copy(stage_smem + S::kActBytes + S::kCodeBytes + r * S::kScalePitch, p.b_scales + row * p.b_scale_stride + k0 / 16,
                  scale_bytes, bar);
      }
    }
  };
  const auto issue_act = [&](int st) {
    if (st >= stages_total || lane != 0) return;
    const int buf = st % p.stages;
    const int64_t k0 = int64_t{first_stage + st} * S::kStageK;
    bulk_copy(ring + buf * S::kStageBytes, p.act + (k0 / 8) * S::kMPad, chunks_of(st) * kChunkK * S::kMPad * 2, bars + 8 * buf);
  };
  if (warp == 0) {
    for (int st = 0; st < ahead; ++st) issue_weights(st);
    pdl_wait();  // the weights are in flight; the activations are the prepare kernel's
    for (int st = 0; st < ahead; ++st) issue_act(st);
  }

  float acc[1][S::kMTiles][4];
#pragma unroll
  for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[0][i][j] = 0.0f;
#if FP4KIT_SMALLM_WGMMA
  uint32_t wg_a[2][4][4];
  if constexpr (kUseWgmma) fence_accumulators<S::kMTiles>(acc[0]);
#endif
  const int my_row = tile * 16 + g;  // this lane's first row within the CTA (then + 8)

  int buf = 0;
  uint32_t phase = 0;
  for (int st = 0; st < stages_total; ++st) {
    mbar_wait(bars + 8 * buf, phase);
    __syncthreads();  // every warp has left stage st - 1: its buffer takes stage st + ahead
    if (warp == 0) {
      issue_weights(st + ahead);
      issue_act(st + ahead);
    }
    const uint32_t stage_smem = ring + buf * S::kStageBytes;
    const int chunks = chunks_of(st);
#pragma unroll
    for (int i = 0; i < S::kChunks / S::kKGroups; ++i) {
      const int c = group + i * S::kKGroups;
      if (c < chunks) {  // uniform across the CTA
        WeightRegs<S> f;
        const uint32_t code = stage_smem + S::kActBytes + my_row * S::kCodePitch + c * (kChunkK / 2) + t * 16;
        const uint32_t sc = stage_smem + S::kActBytes + S::kCodeBytes + my_row * S::kScalePitch + c * (kChunkK / 16) + t * 2;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                       : "=r"(f.q[0][h].x), "=r"(f.q[0][h].y), "=r"(f.q[0][h].z), "=r"(f.q[0][h].w)
                       : "r"(code + h * 8 * S::kCodePitch));
          asm volatile("ld.shared.u16 %0, [%1];" : "=r"(f.s[0][h]) : "r"(sc + h * 8 * S::kScalePitch));
        }
        uint32_t scale[1][2][2];
        chunk_scales<S>(scale[0], f, 0);
        const uint32_t act_smem = stage_smem + c * (kChunkK / 8) * S::kMPad * 16;
#if FP4KIT_SMALLM_WGMMA
        if constexpr (kUseWgmma) {
          wgmma_half<S, 0>(acc[0], wg_a[0], f, scale[0], act_smem);
          wgmma_half<S, 1>(acc[0], wg_a[1], f, scale[0], act_smem);
          continue;
        }
#endif
        mma_stage<S>(acc, f, scale, act_smem, lane);
      }
    }
#if FP4KIT_SMALLM_WGMMA
    if constexpr (kUseWgmma) wgmma_wait<0>();  // this stage's buffer is free at the next barrier
#endif
    if (++buf == p.stages) {
      buf = 0;
      phase ^= 1u;
    }
  }
#if FP4KIT_SMALLM_WGMMA
  if constexpr (kUseWgmma) fence_accumulators<S::kMTiles>(acc[0]);
#endif
  pdl_launch_dependents();

  // The groups' sums, in group order, into group 0 (the ring is idle: every stage issued was
  // waited for). Layout [group - 1][tile][element][lane]: conflict-free.
  if constexpr (S::kKGroups > 1) {
    float* red = reinterpret_cast<float*>(smem);
    __syncthreads();
    if (group > 0) {
#pragma unroll
      for (int mt = 0; mt < S::kMTiles; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[(((group - 1) * S::kTiles + tile) * S::kMTiles * 4 + mt * 4 + e) * 32 + lane] = acc[0][mt][e];
    }
    __syncthreads();
    if (group > 0) return;
    for (int gr = 1; gr < S::kKGroups; ++gr) {
#pragma unroll
      for (int mt = 0; mt < S::kMTiles; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][mt][e] += red[(((gr - 1) * S::kTiles + tile) * S::kMTiles * 4 + mt * 4 + e) * 32 + lane];
    }
  }

  // acc[0][mt][e]: weight rows (g, g + 8) of the tile = columns n of D, activation rows 8 mt + 2t (+1) = rows m.
  const float fb = p.amax_b ? p.amax_b[0] / kGlobalScaleNumerator : 1.0f;
  float* out = p.partials + int64_t{blockIdx.y} * p.m * p.n;
#pragma unroll
  for (int mt = 0; mt < S::kMTiles; ++mt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = row0 + my_row + (e >> 1) * 8, row = 8 * mt + 2 * t + (e & 1);
      if (col >= p.n || row >= p.m) continue;
      const float v = acc[0][mt][e] * kAccScale;  // exact: a power of two
      if (!p.fused) {
        out[int64_t{row} * p.n + col] = v;
        continue;
      }
      // The epilogue kernel's arithmetic on a one-split sum: the same bits.
      const float r = gemm_epilogue_value(p.e, gemm_row_alpha(p.a, fb, p.e.alpha, row), v, row, col);
      const int64_t at = row * p.d_stride + col;
      switch (p.d_dtype) {
        case DType::kF32: store_as<float>(p.d, at, r); break;
        case DType::kF16: store_as<__half>(p.d, at, r); break;
        default: store_as<__nv_bfloat16>(p.d, at, r); break;
      }
    }
  }
#else
  __trap();  // the host runs this kernel only where its image has sm_90 code (bulk_image_ok)
#endif
}

// ---------------------------------------------------------------------------------------------
// Kernel 3: the splits' sum in split order, then the contract's epilogue
// ---------------------------------------------------------------------------------------------

template <typename OutT>
__global__ void __launch_bounds__(kEpilogueThreads)
    smallm_epilogue_kernel(const float* __restrict__ partials, int splits, int m, int n, const GemmOperandPointers a,
                           const float* amax_b, const GemmEpilogue e, OutT* __restrict__ d, int64_t d_stride) {
  pdl_wait();
  const float fb = amax_b ? amax_b[0] / kGlobalScaleNumerator : 1.0f;
  const int64_t total = int64_t{m} * n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    float acc = partials[i];
    for (int s = 1; s < splits; ++s) acc += partials[s * total + i];  // fixed order: the same bytes every run
    const int64_t row = i / n, col = i - row * n;
    const float v = gemm_epilogue_value(e, gemm_row_alpha(a, fb, e.alpha, row), acc, row, col);
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

using BulkKernel = void (*)(BulkArgs);

// The bulk-copy instantiations and their geometry: mma.sync for every activation tile count, wgmma
// (the sm_90a image) for 4 or 8 tiles.
struct BulkGeometry {
  BulkKernel kernel;
  int rows, threads;
  int64_t stage_k;
  int64_t weight_stage_bytes;  // codes and scales of one stage: the device-memory bytes it brings
};
template <int MT, bool kWgmma>
BulkGeometry bulk_geometry_of() {
  using S = BulkShape<MT, kWgmma>;
  return {smallm_bulk_kernel<MT, kWgmma>, S::kRows, S::kThreads, S::kStageK, S::kCodeBytes + S::kScaleBytes};
}
BulkGeometry bulk_geometry(int m_tiles, bool wgmma) {
  if (wgmma && m_tiles == 4) return bulk_geometry_of<4, true>();
  if (wgmma && m_tiles == 8) return bulk_geometry_of<8, true>();
  switch (m_tiles) {
    case 1: return bulk_geometry_of<1, false>();
    case 2: return bulk_geometry_of<2, false>();
    case 4: return bulk_geometry_of<4, false>();
    default: return bulk_geometry_of<8, false>();
  }
}

// Whether the bulk-copy kernel's image on `device` was built for sm_90 or newer (an image JIT-built
// from older PTX has only the trap). NOTE: process-wide on purpose, like ctas_per_sm below: a
// property of the loaded module, asked of the runtime once per device.
bool bulk_image_ok(int device) {
  static std::mutex mutex;
  static std::map<int, bool> known;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = known.find(device);
  if (it == known.end()) {
    cudaFuncAttributes attr{};
    FP4KIT_CUDA_CHECK(cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(smallm_bulk_kernel<1, false>)),
                      "small-M GEMM bulk kernel");
    it = known.emplace(device, attr.ptxVersion >= 90 && attr.binaryVersion >= 90).first;
  }
  return it->second;
}

int sm_count_of(int device) {
  int n = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "small-M GEMM");
  return n;
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
  StreamKernel kernel = nullptr;  // the cp.async kernel, or
  BulkKernel bulk_kernel = nullptr;  // the bulk-copy kernel
  int64_t k_pad = 0;  // the prepared activations' K: whole stages past every split's end
};

// The split count (K slices of whole stages) by the cost model below, or the tuning's. Each rule
// of the cost is in bytes of device-memory traffic:
//   - the weight stream, scaled by how unevenly the CTAs fill the SMs' slots (a last wave that is
//     a third full costs as much as a full one);
//   - each split writes and the epilogue reads M x N FP32 partials, and the epilogue kernel's
//     launch costs `epilogue_bytes`; with `one_split_writes_d`, one split has neither;
//   - each wave pays a start-up latency (~0.7 us of loads in flight before the first bytes land).
// Ties go to fewer splits.
int64_t choose_splits(int64_t m, int64_t n, int64_t k, int64_t units, int64_t row_blocks, int64_t slots,
                      bool one_split_writes_d, const SmallMTuning& tuning) {
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
                  static_cast<double>(waves) * wave_latency_bytes;
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
  const int64_t best_splits = choose_splits(m, n, k, units, row_blocks, slots, false, tuning);
  const int64_t per = (units + best_splits - 1) / best_splits;
  info.splits = static_cast<int>((units + per - 1) / per);
  info.k_slice = per * kChunkK;
  info.ctas = static_cast<int>(row_blocks * info.splits);
  info.rows = kRowsPerCta;
  info.k_stage = kChunkK;
  plan.k_pad = units * kChunkK;
  return plan;
}

// The bulk-copy kernel's plan, or none (nullopt) where it does not apply: the cp.async kernel is
// forced; the device or the image is older than sm_90; B's code or scale rows are not 16-byte
// aligned; K % 256 != 0 (stages of whole 16-byte scale runs); or a forced ring depth does not fit.
// MMA: wgmma where the sm_90a image runs (cc 9.0) for M > 16, as the cp.async kernel. Ring depth
// (default): the one of 2..4 buffers that keeps the most weight bytes in flight per SM (resident
// CTAs x (stages - 1) x a stage's weight bytes), the shallower on a tie. Split count:
// choose_splits, where one split saves the epilogue kernel (~1.5 us).
std::optional<Plan> make_bulk_plan(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& b, const KernelConfig& config,
                                   int device, const SmallMTuning& tuning) {
  if (tuning.path != SmallMTuning::Path::kAuto) return std::nullopt;
  int cc_major = 0, cc_minor = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device), "small-M GEMM");
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device), "small-M GEMM");
  const auto aligned16 = [](const void* p, int64_t stride) {
    return (reinterpret_cast<uintptr_t>(p) % 16) == 0 && stride % 16 == 0;
  };
  if (cc_major < 9 || k % 256 != 0 || !aligned16(b.data, b.data_stride) || !aligned16(b.scales, b.scale_stride) ||
      !bulk_image_ok(device)) {
    return std::nullopt;
  }
  Plan plan;
  SmallMPlan& info = plan.info;
  info.bulk = true;
  info.m_tiles = m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8;
  const bool want_wgmma = tuning.mma == SmallMTuning::Mma::kWgmma ||
                          (tuning.mma == SmallMTuning::Mma::kAuto && cc_major == 9 && cc_minor == 0);
  info.wgmma = want_wgmma && info.m_tiles >= 4;
  const BulkGeometry geo = bulk_geometry(info.m_tiles, info.wgmma);
  plan.bulk_kernel = geo.kernel;
  info.threads = geo.threads;
  info.rows = geo.rows;
  info.k_stage = geo.stage_k;
  const int m_pad = 8 * info.m_tiles;
  const int64_t cap = smallm_smem_bytes(64, kChunkK, config.stages);
  const auto smem_of = [&](int stages) { return smallm_bulk_smem_bytes(m_pad, geo.stage_k, geo.rows, stages); };
  if (tuning.stages > 0) {
    if (tuning.stages < 2 || tuning.stages > kMaxBulkStages || smem_of(tuning.stages) > cap) return std::nullopt;
    info.stages = tuning.stages;
  } else {
    int64_t best_in_flight = 0;
    for (int stages = 2; stages <= 4 && smem_of(stages) <= cap; ++stages) {
      const int64_t in_flight =
          int64_t{ctas_per_sm(reinterpret_cast<const void*>(geo.kernel), device, geo.threads, smem_of(stages))} *
          (stages - 1) * geo.weight_stage_bytes;
      if (in_flight > best_in_flight) {
        best_in_flight = in_flight;
        info.stages = stages;
      }
    }
    if (info.stages == 0) return std::nullopt;  // not even two buffers within the cap
  }
  info.smem_bytes = smem_of(info.stages);
  info.ctas_per_sm = ctas_per_sm(reinterpret_cast<const void*>(geo.kernel), device, geo.threads, info.smem_bytes);

  const int64_t units = (k + geo.stage_k - 1) / geo.stage_k;  // K in whole stages (the last may be short)
  const int64_t row_blocks = (n + geo.rows - 1) / geo.rows;
  const int64_t slots = int64_t{sm_count_of(device)} * info.ctas_per_sm;
  const int64_t best_splits = choose_splits(m, n, k, units, row_blocks, slots, true, tuning);
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
  const std::optional<Plan> bulk_plan = make_bulk_plan(m, n, k, b, config, device, tuning);
  const Plan plan = bulk_plan ? *bulk_plan : make_plan(m, n, k, b, config, device, tuning);
  if (tuning.plan) *tuning.plan = plan.info;
  int cc_major = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device), "small-M GEMM");
  const bool pdl = cc_major >= 9;
  const int m_pad = 8 * plan.info.m_tiles;

  // One stream-ordered allocation: the prepared activations, then the partial sums.
  const int64_t act_bytes = (plan.k_pad / 8) * m_pad * 16;
  const int64_t partial_bytes = plan.info.fused_epilogue ? 0 : int64_t{plan.info.splits} * m * n * 4;
  unsigned char* buffer = nullptr;
  FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&buffer), static_cast<size_t>(act_bytes + partial_bytes), s),
                    detail::cat("gemm (small-M kernel): workspace for M=", m, " N=", n, " K=", k));
  auto* act = reinterpret_cast<uint32_t*>(buffer);
  auto* partials = reinterpret_cast<float*>(buffer + act_bytes);  // act_bytes is a multiple of 256

  PrepareArgs pa{a, static_cast<int>(m), static_cast<int>(k), m_pad, static_cast<int>(plan.k_pad / kChunkK), act};
  const int64_t prepare_warps = int64_t{pa.chunks} * (m_pad / 8);
  const unsigned prepare_grid = static_cast<unsigned>((prepare_warps * 32 + kPrepareThreads - 1) / kPrepareThreads);
  smallm_prepare_kernel<<<prepare_grid, kPrepareThreads, 0, s>>>(pa);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("gemm (small-M kernel): prepare kernel [", m, ", ", k, "]"));

  cudaLaunchAttribute pdl_attr{};
  pdl_attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl_attr.val.programmaticStreamSerializationAllowed = 1;
  const std::string what = detail::cat(
      "gemm (small-M kernel): ", plan.info.bulk ? "bulk-copy" : "cp.async", " stream kernel M=", m, " N=", n, " K=", k, " (",
      plan.info.m_tiles, " activation tiles, ", plan.info.wgmma ? "wgmma" : "mma.sync", ", ", plan.info.rows, " rows x ",
      plan.info.k_stage, " K per stage, ", plan.info.splits, " splits of ", plan.info.k_slice, ", ", plan.info.stages,
      " stages, ", plan.info.smem_bytes, " B shared memory)");
  if (plan.info.bulk) {
    BulkArgs ba{};
    ba.b_data = b.data;
    ba.b_scales = b.scales;
    ba.b_data_stride = b.data_stride;
    ba.b_scale_stride = b.scale_stride;
    ba.act = reinterpret_cast<const ActRow*>(act);
    ba.partials = partials;
    ba.m = static_cast<int>(m);
    ba.n = static_cast<int>(n);
    ba.k = static_cast<int>(k);
    ba.stage_count = static_cast<int>((k + plan.info.k_stage - 1) / plan.info.k_stage);
    ba.stages_per_split = static_cast<int>(plan.info.k_slice / plan.info.k_stage);
    ba.stages = plan.info.stages;
    ba.fused = plan.info.fused_epilogue ? 1 : 0;
    ba.a = a;
    ba.amax_b = b.amax;
    ba.e = epilogue;
    ba.d = d;
    ba.d_dtype = d_dtype;
    ba.d_stride = d_stride;
    fail_if(plan.info.fused_epilogue && d_dtype != DType::kF32 && d_dtype != DType::kF16 && d_dtype != DType::kBF16,
            detail::cat("unexpected output dtype ", dtype_name(d_dtype)));
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>((n + plan.info.rows - 1) / plan.info.rows), static_cast<unsigned>(plan.info.splits));
    cfg.blockDim = dim3(static_cast<unsigned>(plan.info.threads));
    cfg.dynamicSmemBytes = static_cast<size_t>(plan.info.smem_bytes);
    cfg.stream = s;
    cfg.attrs = &pdl_attr;
    cfg.numAttrs = pdl ? 1 : 0;
    FP4KIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, plan.bulk_kernel, ba), what);
    if (plan.info.fused_epilogue) {
      FP4KIT_CUDA_CHECK(cudaFreeAsync(buffer, s), "gemm (small-M kernel): workspace");
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
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>((n + kRowsPerCta - 1) / kRowsPerCta), static_cast<unsigned>(plan.info.splits));
    cfg.blockDim = dim3(static_cast<unsigned>(plan.info.threads));
    cfg.dynamicSmemBytes = static_cast<size_t>(plan.info.smem_bytes);
    cfg.stream = s;
    cfg.attrs = &pdl_attr;
    cfg.numAttrs = pdl ? 1 : 0;
    FP4KIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, plan.kernel, sa), what);
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
