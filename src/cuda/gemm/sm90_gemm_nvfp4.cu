// src/cuda/gemm/sm90_gemm_nvfp4.cu: the fused NVFP4 GEMM for Hopper (sm_90a), NUMERICS §7.
//
// Hopper has no FP4 tensor cores, but a block value e2m1 * e4m3 has at most 6 significant bits and
// is exact in BF16, so this kernel multiplies exactly on the BF16 tensor cores with FP32
// accumulation, and no operand ever exists in BF16 in device memory:
//  - one thread of warpgroup 0 streams the packed codes and the E4M3 scales of A and B with the
//    bulk tensor copy engine into a ring of shared-memory stages (256 K-elements each), completing
//    on mbarriers;
//  - warpgroups 1 and 2 each own 64 rows of the 128-row tile. Per 64-wide K step each thread turns
//    a row of B's codes into BF16 values in a 128B-swizzled shared buffer (a ring of three) and its
//    own rows of A straight into wgmma A-fragment registers; one barrier, then each warpgroup issues
//    wgmma (A from registers, B from shared memory) and dequantizes the next step while it runs.
//  - the epilogue (epilogue.cuh) applies alpha(m), beta * C and bias in the contract's order, each
//    warp through a staging tile in shared memory so that D is written a row segment at a time;
//  - the grid is persistent: one CTA per SM walks its tiles (tile_of order), the copy thread
//    running on into the next tile's stages while the consumers finish the current one (traced,
//    a new CTA spent 2.1 us on its start and first copies before its first MMA).
//
// The K order inside each 64-wide step is permuted, identically for A and B (a dot product does not
// care), so that one thread's A fragment is exactly one 16-element block of each of its two rows:
// 8 code bytes and one scale per row. See e2m1_pairs() (e2m1_bf16.cuh) and the layout notes at dequant_a and dequant_b_task.
#include <cuda.h>  // CUtensorMap and its enums (types only: the encoder comes through the runtime)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/e2m1_bf16.cuh"
#include "cuda/gemm/epilogue.cuh"
#include "cuda/gemm/launch.hpp"
#include "cuda/gemm/sm90_gemm_config.hpp"
#include "cuda/gemm/sm90_sync.cuh"
#include "cuda/gemm/sm90_tensor_map.hpp"
#include "cuda/gemm/sm90_wgmma.cuh"
#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

namespace {

// A's and B's block values are produced as value * 2^-7 (see scale_pair), so each product is
// 2^-14 times the true one: the accumulators are scaled back, exactly, by this power of two.
constexpr float kAccScale = 16384.0f;
// Row tiles that share each column tile in the launch order (rasterization for L2 reuse of B).
constexpr int kGroupM = 8;
constexpr int kConsumerThreads = kSm90Threads - 128;
// Registers per thread after the split: the producer needs few; the consumers hold up to 128
// accumulators, two A fragments (32) and a B row's codes, scales and pair words.
// NOTE: setmaxnreg moves registers within the CTA's own allocation (384 threads x 168 at launch, the
// most __launch_bounds__(384, 1) allows): a raise that the lowering does not pay for never returns.
constexpr int kLaunchRegs = (65536 / kSm90Threads) & ~7;
constexpr int kProducerRegs = 40;
constexpr int kConsumerRegs = 232;
static_assert(128 * kProducerRegs + kConsumerThreads * kConsumerRegs <= kSm90Threads * kLaunchRegs,
              "the consumers' registers must come from what warpgroup 0 gives back");

// The two consumer warpgroups only (barrier 0 is __syncthreads).
__device__ __forceinline__ void consumer_barrier() {
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumerThreads) : "memory");
}

struct Sm90GemmParams {
  int64_t m, n, k;
  GemmOperandPointers a, b;  // the codes and scales travel through the tensor maps; amaxes for the epilogue
  void* d;                   // [m, n], d_stride elements between rows
  int64_t d_stride;
  GemmEpilogue epilogue;
  int tiles_m, tiles_n;
  bool vector_stores;  // d and its row stride are 16-byte aligned: the epilogue writes 16 bytes per lane
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// NOTE: wgmma reads its register and shared operands asynchronously. These empty asm statements
// pin the accumulators (and the A fragment of an MMA in flight) in their registers until the wait
// that retires it, so that the compiler neither moves them nor reuses their registers meanwhile.
template <int N>
__device__ __forceinline__ void pin(float (&v)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(v[i])::"memory");
}
__device__ __forceinline__ void pin(uint32_t (&v)[4][4]) {
#pragma unroll
  for (int c = 0; c < 4; ++c) {
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(v[c][i])::"memory");
  }
}

// The shared-memory descriptor of a K-major BF16 tile [rows, 64] in the 128-byte swizzle: rows of
// 128 bytes, 8-row groups 1024 bytes apart (stride byte offset); the leading byte offset is unused
// with this swizzle (1 by convention). Bits: address>>4 [0,14), LBO>>4 [16,30), SBO>>4 [32,46),
// swizzle mode [62,64) with 1 = 128B.
__device__ __forceinline__ uint64_t smem_desc_sw128(const void* tile) {
  return (static_cast<uint64_t>(smem_u32(tile) >> 4) & 0x3FFFu) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}

// Shared layouts (all rows 128 bytes, the 16-byte unit u of row r stored at unit u ^ (r % 8): the
// 128-byte swizzle the copy engine writes and wgmma reads):
//  - codes: a stage row is 256 elements = 16 blocks; step `sub` uses bytes [32 sub, 32 sub + 32),
//    i.e. units 2 sub (its blocks 0, 1) and 2 sub + 1 (blocks 2, 3);
//  - scales: 16 bytes per row, step `sub` uses bytes [4 sub, 4 sub + 4);
//  - B values: one row of 64 BF16 per B row. Unit q (16 bytes) holds pair word q of the step's four
//    blocks, block t at bytes [4t, 4t + 4); a block's pair words 0..3 come from its first code word
//    (e2m1_pairs), 4..7 from its second. wgmma's k16 slice c reads units 2c and 2c + 1: positions
//    2t, 2t+1 in unit 2c and 2t+8, 2t+9 in unit 2c+1, the positions thread t's A fragment holds.

// One thread's A fragments for step `sub`: rows r and r + 8 of the tile (r % 8 == g), block t of
// the step. frag[c] = {pair 2c of r, pair 2c of r+8, pair 2c+1 of r, pair 2c+1 of r+8}: the m16n8k16
// A layout (a0a1: row g, k 2t..; a2a3: row g+8; a4a5: row g, k 2t+8..; a6a7: row g+8).
// `codes` points at row r's bytes plus 8 (t & 1); `x` is ((t >> 1) ^ g) << 4 (the swizzled unit of
// step 0); `scales` at row r's scale t.
__device__ __forceinline__ void dequant_a(const uint8_t* codes, uint32_t x, const uint8_t* scales, const uint32_t* lut,
                                          int sub, uint32_t (&frag)[4][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint2 w = *reinterpret_cast<const uint2*>(codes + h * 8 * 128 + (x ^ (sub << 5)));
    const uint32_t s = lut[scales[h * 8 * 16 + 4 * sub]];
    const Pairs4 lo = e2m1_pairs(w.x), hi = e2m1_pairs(w.y);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      frag[q / 2][h + 2 * (q % 2)] = mul_bf16x2(lo.p[q], s);
      frag[2 + q / 2][h + 2 * (q % 2)] = mul_bf16x2(hi.p[q], s);
    }
  }
}

// One task of B's values for step `sub`: row n's four blocks (kBlocks == 4: 32 code bytes, 4 scales,
// eight 16-byte stores) or its blocks 2h, 2h + 1 (kBlocks == 2: the h-th 8 bytes of each unit).
template <int kBlocks>
__device__ __forceinline__ void dequant_b_task(const uint8_t* codes, const uint8_t* scales, uint8_t* values,
                                               const uint32_t* lut, int sub, int n, int h) {
  const uint32_t n7 = static_cast<uint32_t>(n & 7) << 4;
  const uint8_t* row = codes + n * 128;
  uint32_t w[2 * kBlocks];  // block b's two code words: w[2b], w[2b + 1]
  uint32_t s[kBlocks];
  if constexpr (kBlocks == 4) {
    const uint4 u0 = *reinterpret_cast<const uint4*>(row + (n7 ^ ((2 * sub) << 4)));
    const uint4 u1 = *reinterpret_cast<const uint4*>(row + (n7 ^ ((2 * sub + 1) << 4)));
    w[0] = u0.x, w[1] = u0.y, w[2] = u0.z, w[3] = u0.w, w[4] = u1.x, w[5] = u1.y, w[6] = u1.z, w[7] = u1.w;
    const uint32_t sc = *reinterpret_cast<const uint32_t*>(scales + n * 16 + 4 * sub);
#pragma unroll
    for (int b = 0; b < 4; ++b) s[b] = lut[(sc >> (8 * b)) & 0xFFu];
  } else {
    const uint4 u = *reinterpret_cast<const uint4*>(row + (n7 ^ ((2 * sub + h) << 4)));
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
    const uint32_t sc = *reinterpret_cast<const uint16_t*>(scales + n * 16 + 4 * sub + 2 * h);
    s[0] = lut[sc & 0xFFu];
    s[1] = lut[sc >> 8];
  }
  Pairs4 pairs[2 * kBlocks];
#pragma unroll
  for (int j = 0; j < 2 * kBlocks; ++j) pairs[j] = e2m1_pairs(w[j]);
  uint8_t* out = values + n * 128 + 8 * h;
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    uint32_t v[kBlocks];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) v[b] = mul_bf16x2(pairs[2 * b + q / 4].p[q % 4], s[b]);
    if constexpr (kBlocks == 4) {
      *reinterpret_cast<uint4*>(out + (n7 ^ (q << 4))) = make_uint4(v[0], v[1], v[2], v[3]);
    } else {
      *reinterpret_cast<uint2*>(out + (n7 ^ (q << 4))) = make_uint2(v[0], v[1]);
    }
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// Tile number `bid` (the persistent CTAs take them in this order): groups of kGroupM row tiles walk
// the column tiles together.
__device__ __forceinline__ void tile_of(int bid, int tiles_m, int tiles_n, int& tm, int& tn) {
  const int per_group = kGroupM * tiles_n;
  const int group = bid / per_group, first = group * kGroupM;
  const int size = min(tiles_m - first, kGroupM);
  const int i = bid - group * per_group;
  tm = first + i % size;
  tn = i / size;
}

template <int TileN, int Stages, typename OutT>
__global__ void __launch_bounds__(kSm90Threads, 1)
    sm90_gemm_nvfp4_kernel(const __grid_constant__ CUtensorMap a_codes_map, const __grid_constant__ CUtensorMap b_codes_map,
                           const __grid_constant__ CUtensorMap a_scales_map,
                           const __grid_constant__ CUtensorMap b_scales_map, const Sm90GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Smem = Sm90GemmSmem<TileN, Stages>;
  extern __shared__ uint8_t smem_raw[];
  // NOTE: offset the shared array itself (not a generic address rounded up): the compiler then
  // knows every access is to shared memory and emits LDS/STS with 32-bit addresses.
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int steps = static_cast<int>(p.k / kSm90StepK);  // K % 256 == 0: whole stages, an even count of steps
  const int tiles = p.tiles_m * p.tiles_n;

  if (threadIdx.x == 0) {
    // The four tensor maps' descriptors on their way into the cache before the first copies.
    for (const CUtensorMap* map : {&a_codes_map, &b_codes_map, &a_scales_map, &b_scales_map}) {
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
    }
#pragma unroll
    for (int s = 0; s < Stages; ++s) {
      mbar_init(&sm.full[s], 1);
      mbar_init(&sm.empty[s], kConsumerThreads / 32);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  if (threadIdx.x < 256) sm.scale_lut[threadIdx.x] = e4m3_scale_pair<119>(threadIdx.x);
  __syncthreads();

  if (warp < 4) {
    // Warpgroup 0: one thread issues every copy; a stage is refilled once all 8 consumer warps
    // have released it.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegs));
    if (threadIdx.x == 0) {
      constexpr uint32_t kStageBytes =
          sizeof(sm.a_codes[0]) + sizeof(sm.b_codes[0]) + sizeof(sm.a_scales[0]) + sizeof(sm.b_scales[0]);
      int gs = 0;  // stages of this CTA so far, over its tiles
      for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        int tm, tn;
        tile_of(tile, p.tiles_m, p.tiles_n, tm, tn);
        const int row0 = tm * kSm90TileM, col0 = tn * TileN;
        for (int ks = 0; ks < steps / 4; ++ks, ++gs) {
          const int s = gs % Stages;
          if (gs >= Stages) mbar_wait(&sm.empty[s], ((gs / Stages) - 1) & 1);
          // The whole boxes count, rows past M or N included (the copy engine fills them with zeros).
          mbar_expect_tx(&sm.full[s], kStageBytes);
          tma_load_2d(sm.a_codes[s], &a_codes_map, &sm.full[s], ks * (kSm90StageK / 2), row0);
          tma_load_2d(sm.b_codes[s], &b_codes_map, &sm.full[s], ks * (kSm90StageK / 2), col0);
          tma_load_2d(sm.a_scales[s], &a_scales_map, &sm.full[s], ks * (kSm90StageK / 16), row0);
          tma_load_2d(sm.b_scales[s], &b_scales_map, &sm.full[s], ks * (kSm90StageK / 16), col0);
        }
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegs));
  const int ctid = threadIdx.x - 128;
  const int g = lane / 4, t = lane % 4;
  const int a_row = (ctid / 128) * 64 + (warp % 4) * 16 + g;  // and a_row + 8, within the tile
  const int a_code_offset = a_row * 128 + 8 * (t & 1);
  const uint32_t a_unit = static_cast<uint32_t>((t >> 1) ^ g) << 4;  // (a_row & 7) == g
  const int a_scale_offset = a_row * 16 + t;
  // B's values: a whole row per consumer thread, or half a row when the tile is narrower.
  constexpr int kBlocks = TileN >= 256 ? 4 : 2;
  constexpr int kTasks = TileN * 4 / kBlocks;
  static_assert(kTasks <= kConsumerThreads, "at most one task per consumer thread");
  const int b_row = kBlocks == 4 ? ctid : ctid >> 1, b_half = kBlocks == 4 ? 0 : ctid & 1;

  const float fb = gemm_global_factor(p.b, 0);
  const bool scale_only = gemm_epilogue_is_scale_only(p.epilogue);
  using Staging = Sm90EpilogueStaging<TileN, OutT>;
  static_assert(Staging::kWarpBytes * (kConsumerThreads / 32) <= sizeof(Smem::b_values),
                "the staging tiles fit in the value buffers (the code ring is already being refilled)");
  uint8_t* staging = reinterpret_cast<uint8_t*>(sm.b_values) + (ctid / 32) * Staging::kWarpBytes;
  int first_step = 0;  // this CTA's steps before the current tile
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, first_step += steps) {
    int tm, tn;
    tile_of(tile, p.tiles_m, p.tiles_n, tm, tn);
    const int row0 = tm * kSm90TileM, col0 = tn * TileN;
    // alpha(m) of this thread's two rows, read now so that the epilogue does not wait for the loads.
    float row_alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_alpha[h] = gemm_row_alpha(p.a, fb, p.epilogue.alpha, min(int64_t{row0 + a_row + 8 * h}, p.m - 1));
    }

    float acc[TileN / 2];
#pragma unroll
    for (int i = 0; i < TileN / 2; ++i) acc[i] = 0.0f;
    uint32_t frag[2][4][4] = {};

    // Step `step` of the tile (step first_step + step of the CTA: the ring's stage and parity and the
    // value buffer count on over the CTA's tiles): B's values into buffer (first_step + step) % 3
    // (shared by both warpgroups), this thread's A fragment into `f`. The barrier at the end also
    // orders this step's buffer rewrite after both warpgroups retired the MMAs that last read it
    // (three steps back: each waited for them before; at a tile's start, the epilogue's barrier).
    const auto dequant = [&](int step, uint32_t (&f)[4][4]) {
      const int gstep = first_step + step, gs = gstep / 4, s = gs % Stages, sub = gstep % 4;
      if (sub == 0) mbar_wait(&sm.full[s], (gs / Stages) & 1);
      if (kTasks == kConsumerThreads || ctid < kTasks) {
        dequant_b_task<kBlocks>(sm.b_codes[s], sm.b_scales[s], sm.b_values[gstep % kSm90ValueBuffers], sm.scale_lut,
                                sub, b_row, b_half);
      }
      dequant_a(sm.a_codes[s] + a_code_offset, a_unit, sm.a_scales[s] + a_scale_offset, sm.scale_lut, sub, f);
      // NOTE: the generic-proxy stores above are read next by wgmma (the async proxy).
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      if (sub == 3) {
        __syncwarp();
        if (lane == 0) mbar_arrive(&sm.empty[s]);
      }
      consumer_barrier();
    };
    // Issues step `step`'s four k16 MMAs with fragment `f`, then waits for the previous step's
    // (whose fragment `prev` and B buffer become free).
    const auto mma = [&](int step, uint32_t (&f)[4][4], uint32_t (&prev)[4][4]) {
      pin(acc);
      wgmma_fence();
      const uint64_t desc = smem_desc_sw128(sm.b_values[(first_step + step) % kSm90ValueBuffers]);
#pragma unroll
      for (int c = 0; c < 4; ++c) WgmmaRs<TileN>::run(acc, f[c], desc + 2 * c);  // +32 bytes per k16 slice
      wgmma_commit();
      wgmma_wait<1>();
      pin(acc);
      pin(prev);
    };

    // The fragments alternate, so that the MMAs in flight keep theirs (steps is even).
    dequant(0, frag[0]);
    for (int step = 0; step < steps; step += 2) {
      mma(step, frag[0], frag[1]);
      dequant(step + 1, frag[1]);
      mma(step + 1, frag[1], frag[0]);
      if (step + 2 < steps) dequant(step + 2, frag[0]);
    }
    wgmma_wait<0>();
    pin(acc);
    pin(frag[1]);

    // Epilogue: thread (g, t) of warp w holds, per 8-column group j, rows a_row and a_row + 8 at
    // columns 8j + 2t and 8j + 2t + 1 (acc[4j + 2h], acc[4j + 2h + 1] for row a_row + 8h). Each warp
    // rounds its 16 rows, 8 at a time, into its own staging tile in the value buffers (free once the
    // tile's MMAs have retired; the code ring is already being refilled for the next tile), then
    // writes them out a whole row segment per instruction (stored straight from the fragments, a
    // warp's store covered 16 bytes of each of 8 rows). Traced per CTA at 16384x4096xK, the epilogue
    // takes 2.75 us; it took 11 us when it tested beta, bias and their dtypes per element.
    consumer_barrier();  // both warpgroups' MMAs have retired: no one reads the value buffers any more
    // `value(ra, acc, row, col)`: the output before rounding. Instantiated twice: the general
    // epilogue's per-element tests of beta, bias and their dtypes made it ~7000 instructions.
    const int cols_left = static_cast<int>(min(p.n - col0, static_cast<int64_t>(TileN)));
    const int64_t first_row = row0 + a_row - g;  // the warp's 16 rows
    OutT* d = static_cast<OutT*>(p.d);
    const auto write = [&](auto value) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // rows g + 8h of the warp's 16, 8 at a time through the staging tile
        const int64_t row = row0 + a_row + 8 * h;
        if (row < p.m) {
          const float ra = row_alpha[h];
          uint8_t* srow = staging + g * Staging::kPitch;
#pragma unroll
          for (int j = 0; j < TileN / 8; ++j) {
            if (8 * j >= cols_left) continue;  // N % 16 == 0: a group of 8 columns is wholly in or out
            const int64_t col = col0 + 8 * j + 2 * t;
            struct alignas(2 * sizeof(OutT)) Pair {
              OutT v[2];
            };
            *reinterpret_cast<Pair*>(srow + (8 * j + 2 * t) * sizeof(OutT)) =
                Pair{{from_float<OutT>(value(ra, acc[4 * j + 2 * h] * kAccScale, row, col)),
                      from_float<OutT>(value(ra, acc[4 * j + 2 * h + 1] * kAccScale, row, col + 1))}};
          }
        }
        __syncwarp();
        const int64_t half_row = first_row + 8 * h;
        if (p.vector_stores) {
          // 16 bytes per lane; N % 16 == 0, so a 16-byte piece is wholly inside or outside the columns.
          static_assert(8 * Staging::kRowPieces % 32 == 0, "whole passes of the warp");
#pragma unroll
          for (int pass = 0; pass < 8 * Staging::kRowPieces / 32; ++pass) {
            const int i = pass * 32 + lane, r = i / Staging::kRowPieces, c = i % Staging::kRowPieces;
            const int64_t row = half_row + r, col = col0 + c * Staging::kPieceElems;
            if (row < p.m && col < p.n) {
              *reinterpret_cast<uint4*>(d + row * p.d_stride + col) =
                  *reinterpret_cast<const uint4*>(staging + r * Staging::kPitch + 16 * c);
            }
          }
        } else {
          for (int i = lane; i < 8 * TileN; i += 32) {
            const int r = i / TileN, c = i % TileN;
            const int64_t row = half_row + r, col = col0 + c;
            if (row < p.m && col < p.n) {
              d[row * p.d_stride + col] =
                  *reinterpret_cast<const OutT*>(staging + r * Staging::kPitch + c * sizeof(OutT));
            }
          }
        }
        __syncwarp();
      }
    };
    if (scale_only) {
      write([](float ra, float v, int64_t, int64_t) { return ra * v; });
    } else {
      write([&](float ra, float v, int64_t row, int64_t col) { return gemm_epilogue_value(p.epilogue, ra, v, row, col); });
    }
    consumer_barrier();  // every warp is done with its staging tile before the next tile's values land there
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

template <int TileN, int Stages, typename OutT>
void launch_config(const Sm90GemmParams& p, int device, cudaStream_t s) {
  static_assert(sm90_gemm_smem_bytes<TileN, Stages>() <= 232448, "over the sm_90 opt-in shared-memory limit");
  constexpr int64_t smem = sm90_gemm_smem_bytes<TileN, Stages>();
  const auto kernel = sm90_gemm_nvfp4_kernel<TileN, Stages, OutT>;
  FP4KIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                    detail::cat("gemm (sm_90a): ", smem, " B of shared memory on device ", device));
  const CUtensorMap a_codes = byte_map("gemm (sm_90a)", p.a.data, p.m, p.k / 2, p.a.data_stride, kSm90TileM, kSm90StageK / 2,
                                       CU_TENSOR_MAP_SWIZZLE_128B, "A's codes");
  const CUtensorMap b_codes =
      byte_map("gemm (sm_90a)", p.b.data, p.n, p.k / 2, p.b.data_stride, TileN, kSm90StageK / 2, CU_TENSOR_MAP_SWIZZLE_128B, "B's codes");
  const CUtensorMap a_scales = byte_map("gemm (sm_90a)", p.a.scales, p.m, p.k / 16, p.a.scale_stride, kSm90TileM, kSm90StageK / 16,
                                        CU_TENSOR_MAP_SWIZZLE_NONE, "A's scales");
  const CUtensorMap b_scales = byte_map("gemm (sm_90a)", p.b.scales, p.n, p.k / 16, p.b.scale_stride, TileN, kSm90StageK / 16,
                                        CU_TENSOR_MAP_SWIZZLE_NONE, "B's scales");
  // Persistent: one CTA per SM walks the tiles (tile_of order), so that the copies of a CTA's next
  // tile run during its epilogue.
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(int64_t{p.tiles_m} * p.tiles_n, sm_count_of(device)));
  kernel<<<grid, kSm90Threads, smem, s>>>(a_codes, b_codes, a_scales, b_scales, p);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("gemm (sm_90a) kernel [", p.m, ", ", p.n, ", ", p.k, "]"));
}

template <int TileN, int Stages>
void launch_tile(const Sm90GemmParams& p, DType d_dtype, int device, cudaStream_t s) {
  switch (d_dtype) {
    case DType::kF32: return launch_config<TileN, Stages, float>(p, device, s);
    case DType::kF16: return launch_config<TileN, Stages, __half>(p, device, s);
    case DType::kBF16: return launch_config<TileN, Stages, __nv_bfloat16>(p, device, s);
    default: detail::fail(ErrorCode::kInternal, detail::cat("gemm (sm_90a): unexpected output dtype ", dtype_name(d_dtype)));
  }
}

}  // namespace

void launch_gemm_sm90_nvfp4(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                            void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue, int tile_n,
                            int stages, int device, void* stream) {
  if (a.data == nullptr || b.data == nullptr || k % kSm90StageK != 0 || n % 16 != 0) {
    detail::fail(ErrorCode::kInternal, "gemm (sm_90a): selected for a problem it does not serve", "please report this");
  }
  DeviceGuard guard(device);
  const int64_t d_row_bytes = d_stride * static_cast<int64_t>(dtype_size(d_dtype));
  Sm90GemmParams p{m, n, k, a, b, d, d_stride, epilogue, static_cast<int>((m + kSm90TileM - 1) / kSm90TileM),
                   static_cast<int>((n + tile_n - 1) / tile_n),
                   reinterpret_cast<uintptr_t>(d) % 16 == 0 && d_row_bytes % 16 == 0};
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (tile_n == 256 && stages == 2) return launch_tile<256, 2>(p, d_dtype, device, s);
  if (tile_n == 64 && stages == 2) return launch_tile<64, 2>(p, d_dtype, device, s);
  detail::fail(ErrorCode::kInternal, detail::cat("gemm (sm_90a): no kernel for the configuration 128x", tile_n, "_s", stages));
}

std::string sm90_gemm_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(sm90_gemm_nvfp4_kernel<256, 2, float>), device.index,
                              "sm_90a GEMM kernel");
}

}  // namespace fp4kit::cuda
