// src/cuda/gemm/sm90_gemm_smallm.cu: the small-M (decode) NVFP4 GEMM for Hopper (sm_90a), NUMERICS §7,
// M <= 64.
//
// At decode sizes the GEMM is the weight B [N, K] streaming past at most 64 activation rows: its
// time is B's bytes (K/2 of codes and K/16 of E4M3 scales per row) over the memory bandwidth. This
// kernel moves B with the bulk tensor copy engine and spends its instructions on the decode only:
//  - Roles are swapped, as in sm80_gemm_smallm: wgmma computes D^T = B A^T, the weight is the
//    MMA's A operand (64 rows per warpgroup and tile, decoded in registers: m64nNk16 with A from
//    registers), the activations are its B operand (N = M rounded up to 8, 16, 32 or 64) in shared
//    memory.
//  - A CTA owns a row block and one K slice (its split). Warpgroup 0's first thread streams, per
//    256-element K stage, the rows' codes (two boxes of [rows][64 B], one per 128-element chunk: a
//    warp's 16-byte reads of 8 rows x 64 B are conflict-free), their scales ([rows][16 B]) and the
//    stage's prepared activations (one contiguous bulk copy) into a ring of shared-memory stages
//    completing on mbarriers. Four consumer warpgroups own one 64-row wgmma tile each: 256 rows,
//    or 128 rows with each stage's two chunks split between pairs of them (more CTAs where the
//    row blocks are few; the two halves' sums are added in the reduction).
//  - K order and decode are the chunk kernel's (sm80_gemm_smallm.cu): lane t of a quad reads 16
//    code bytes (32 elements) of a row per 128-element chunk; the pairs come from e2m1_pair (3
//    integer operations per two elements) times a shared-table scale pair (scale * 2^118: the
//    weights enter the MMA as e2m1 * e4m3 * 2^-8, exact in BF16; the sums are multiplied back by
//    2^8). The activations are launch_smallm_prepare's block values in that same K order.
//  - Per group of four k16 steps a warpgroup decodes its fragments into one of two register
//    buffers and issues its wgmmas; the next group's decode runs while they do (wait_group 1).
//  - Split K without a second kernel: with several splits each CTA stores its FP32 sums and takes a
//    ticket of its row block; the last to arrive adds the splits' sums in split order
//    (deterministic), applies the contract's epilogue (epilogue.cuh) and writes D. (Clusters whose
//    CTAs sum through distributed shared memory were measured slower on the H100: the device holds
//    30 clusters of 4 such CTAs, not 33, and a second partial wave doubled the time.)
// The prepare kernel runs first; this kernel is launched with programmatic stream serialization,
// so its weight copies are in flight before the prepared activations are (griddepcontrol.wait).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/check.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/gemm/e2m1_bf16.cuh"
#include "cuda/gemm/epilogue.cuh"
#include "cuda/gemm/l2_policy.cuh"
#include "cuda/gemm/launch.hpp"
#include "cuda/gemm/sm90_sync.cuh"
#include "cuda/gemm/sm90_tensor_map.hpp"
#include "cuda/gemm/sm90_wgmma.cuh"
#include "fp4kit/formats.hpp"

namespace fp4kit::cuda {

namespace {

constexpr int kStageK = kSm90SmallMStageK;  // K elements per stage
constexpr int kConsumerThreads = kSm90SmallMThreads - 128;
constexpr float kAccScale = 256.0f;  // the weights' block values enter the MMA times 2^-8

// Four consumer warpgroups of one 64-row wgmma tile each: KGroups = 1 gives a CTA of 256 rows
// (each warpgroup every chunk of a stage), KGroups = 2 one of 128 rows whose warpgroups split each
// stage's two 128-element chunks (their sums added in the reduction). With MPad activation
// columns: a stage's parts (launch.hpp's formula) and the pitch of the sums in shared memory.
constexpr int kConsumerGroups = 4;
template <int KGroups, int MPad>
struct Geometry {
  static constexpr int kRowGroups = kConsumerGroups / KGroups;  // warpgroups along the rows
  static constexpr int kRows = kRowGroups * 64;
  static constexpr int kChunks = 2 / KGroups;  // chunks of a stage per warpgroup
  static constexpr int kChunkBytes = kRows * 64;  // one 128-element chunk of the rows' codes, [kRows][64 B]
  static constexpr int kCodeBytes = 2 * kChunkBytes;
  static constexpr int kScaleBytes = kRows * (kStageK / 16);
  static constexpr int kActBytes = MPad * kStageK * 2;
  static constexpr int kStageBytes = static_cast<int>(sm90_smallm_stage_bytes(kRows, MPad));
  static constexpr int kPartPitch = kRows + 4;  // floats per activation row of the sums (4 more: conflict-free stores)
  static constexpr int kPartBytes = KGroups * MPad * kPartPitch * 4;
  static_assert(kCodeBytes + kScaleBytes + kActBytes == kStageBytes, "launch.hpp's formula is what a stage holds");
  static_assert(kRows <= kSm90SmallMRows, "a copy box holds at most 256 rows");
  static_assert(kPartBytes <= 2 * kStageBytes, "the sums fit in a ring of two stages");
};

// Registers after the split (setmaxnreg), within the 640 x 96 the launch bound gives: the producer
// needs few; a consumer thread holds up to 32 accumulators, two fragment buffers (32), a chunk's
// codes (8) and scale pairs (4).
constexpr int kLaunchRegs = (65536 / kSm90SmallMThreads) & ~7;
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 112;
static_assert(128 * kProducerRegs + kConsumerThreads * kConsumerRegs <= kSm90SmallMThreads * kLaunchRegs,
              "the consumers' registers must come from what warpgroup 0 gives back");

struct Params {
  int m, n, k;
  int stages;            // ring depth (2..kSm90SmallMMaxStages)
  int stages_per_split;  // K stages of a split (the last split may have fewer)
  const uint8_t* act;    // the prepared activations, [K / 8][MPad][8] BF16
  float* partials;       // splits > 1: [row blocks][splits][MPad][rows] FP32 sums of each split
  unsigned* tickets;     // splits > 1: [row blocks] arrival counts, zero at launch
  GemmOperandPointers a;  // A's global factors (the epilogue)
  const float* amax_b;
  GemmEpilogue e;
  void* d;  // [M, N], d_stride elements between rows
  DType d_dtype;
  int64_t d_stride;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint32_t lds_u16(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint32_t lds_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

// The activation tile of one k16 step: K-major, no swizzle; core matrices (8 activation rows x 16
// bytes) contiguous, 128 bytes apart along N (SBO) and MPad * 16 bytes apart along K (LBO).
template <int MPad>
__device__ __forceinline__ uint64_t act_descriptor(uint32_t smem_addr) {
  constexpr uint64_t kLbo = (MPad * 16) >> 4, kSbo = 128 >> 4;
  return static_cast<uint64_t>((smem_addr & 0x3FFFFu) >> 4) | (kLbo << 16) | (kSbo << 32);
}

template <int N>
__device__ __forceinline__ void pin(float (&v)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(v[i])::"memory");
}
template <int Tiles>
__device__ __forceinline__ void pin(uint32_t (&v)[Tiles][4][4]) {
#pragma unroll
  for (int tt = 0; tt < Tiles; ++tt)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(v[tt][j][i])::"memory");
}

// One group of a chunk: k16 steps 4H..4H+3 of both tiles, decoded into `frag` and issued.
template <int Tiles, int MPad, int H>
__device__ __forceinline__ void mma_group(float (&acc)[Tiles][MPad / 2], uint32_t (&frag)[Tiles][4][4],
                                          const uint4 (&q)[Tiles][2], const uint32_t (&scale)[Tiles][2][2],
                                          uint32_t chunk_act) {
#pragma unroll
  for (int tt = 0; tt < Tiles; ++tt) {
    chunk_fragment<4 * H + 0>(frag[tt][0], q[tt][0], q[tt][1], scale[tt][0], scale[tt][1]);
    chunk_fragment<4 * H + 1>(frag[tt][1], q[tt][0], q[tt][1], scale[tt][0], scale[tt][1]);
    chunk_fragment<4 * H + 2>(frag[tt][2], q[tt][0], q[tt][1], scale[tt][0], scale[tt][1]);
    chunk_fragment<4 * H + 3>(frag[tt][3], q[tt][0], q[tt][1], scale[tt][0], scale[tt][1]);
  }
  // Every input of the group's MMAs is computed before its first one (ptxas serializes wgmmas whose
  // inputs are defined between them, C7513): the pins keep the compiler from sinking the decode.
  // NOTE: the four descriptors differ from the chunk's by whole 16-byte units of the address field
  // (14 bits: a shared address fits without a carry into the next field), so each is one add to
  // the chunk's low word; building each from its address (mask, shift, or, the constant high word)
  // was 7 instructions per wgmma, a fifth of the loop (ncu source counters, 16x28672x8192).
  const uint64_t chunk_desc = act_descriptor<MPad>(chunk_act);
  const uint32_t lo = static_cast<uint32_t>(chunk_desc), hi = static_cast<uint32_t>(chunk_desc >> 32);
  uint64_t desc[4];
#pragma unroll
  for (int js = 0; js < 4; ++js) {
    desc[js] = (uint64_t{hi} << 32) | (lo + ((2 * (4 * H + js) * (MPad * 16)) >> 4));
  }
  pin(frag);
  wgmma_fence();  // the fragment registers (and, the first time, the zeroed accumulators)
#pragma unroll
  for (int js = 0; js < 4; ++js) {
#pragma unroll
    for (int tt = 0; tt < Tiles; ++tt) WgmmaRs<MPad>::run(acc[tt], frag[tt][js], desc[js]);
  }
  wgmma_commit();
}

__device__ __forceinline__ void consumer_barrier() {
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumerThreads) : "memory");
}

template <typename OutT>
__device__ __forceinline__ void store_as(void* d, int64_t i, float v) {
  static_cast<OutT*>(d)[i] = from_float<OutT>(v);
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// Grid (splits, ceil(N / rows)): blockIdx.x is the split, blockIdx.y the row block.
template <int KGroups, int MPad>
__global__ void __launch_bounds__(kSm90SmallMThreads, 1)
    sm90_smallm_kernel(const __grid_constant__ CUtensorMap codes_map, const __grid_constant__ CUtensorMap scales_map,
                       const Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using G = Geometry<KGroups, MPad>;
  constexpr int kRows = G::kRows, kStageBytes = G::kStageBytes, kActBytes = G::kActBytes;
  constexpr int kChunkBytes = G::kChunkBytes, kCodeBytes = G::kCodeBytes, kScaleBytes = G::kScaleBytes;
  constexpr int kPartPitch = G::kPartPitch;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // NOTE: every shared pointer is smem_raw plus an offset (the compiler then keeps shared accesses).
  unsigned char* base = smem_raw + ((128 - (smem_u32(smem_raw) & 127)) & 127);
  uint64_t* full = reinterpret_cast<uint64_t*>(base + p.stages * kStageBytes);
  uint64_t* empty = full + kSm90SmallMMaxStages;
  uint64_t* spare = empty + kSm90SmallMMaxStages;  // stage 0's release: a barrier nobody waits on
  uint32_t* scale_table = reinterpret_cast<uint32_t*>(spare + 2);  // 16-byte aligned
  float* row_alpha = reinterpret_cast<float*>(scale_table + 256);  // alpha(m) of each activation row
  static_assert(MPad <= 64, "sm90_smallm_smem_bytes holds 64 rows' alpha");
  const int tid = static_cast<int>(threadIdx.x), wg = tid / 128;
  const int split = static_cast<int>(blockIdx.x), splits = static_cast<int>(gridDim.x);
  const int row0 = static_cast<int>(blockIdx.y) * kRows;
  const int first_stage = split * p.stages_per_split;
  const int n_stages = min(p.stages_per_split, p.k / kStageK - first_stage);  // >= 1 (the launcher's splits)

  if (tid == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], kConsumerThreads);  // every consumer thread arrives
    }
    mbar_init(spare, kConsumerThreads);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");  // the copy engine's view of them
  }
  if (tid >= 128 && tid < 128 + 256) scale_table[tid - 128] = e4m3_scale_pair<118>(static_cast<uint32_t>(tid - 128));
  __syncthreads();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegs));
    if (tid == 0) {
      const auto stage_of = [&](int st) { return base + (st % p.stages) * kStageBytes; };
      // With one split every CTA would copy the same activations out of the L2 at the same time:
      // the row blocks start at staggered stages instead (the K order of a sum is free, NUMERICS
      // §7). Measured on the H100: 3-4% faster at N = 28672 (one split); with two splits (N = 8192)
      // 1-2% slower (twice, also with this select), so off there.
      const int rot = splits == 1 ? static_cast<int>((int64_t{blockIdx.y} * n_stages) / gridDim.y) : 0;
      const auto k_stage_of = [&](int st) {  // st, rot < n_stages: a select, not a division per stage
        const int r = st + rot;
        return first_stage + (r >= n_stages ? r - n_stages : r);
      };
      // The codes under the evict-first policy (l2_policy.cuh), their map promoting 128 bytes; the
      // scales neither (a scale row's 256-byte promotion serves 16 stages). Measured on the H100
      // (bench gemm, W4A4 / W4A16 us, before -> after, each twice in the same runs):
      //   16x8192x8192   33.6-33.7 / 32.1-32.4 -> 30.8-30.9 / 29.9-30.1
      //   64x8192x8192   39.0 / 38.7-38.8      -> 37.2-37.3 / 36.8-37.1
      //   16x28672x8192  75.9-76.0 / 74.0-74.3 -> 74.4-75.5 / 72.7-73.2
      //   64x28672x8192  82.2-82.4 / 81.7-81.8 -> 78.6-78.9 / 78.5-78.7
      // With the 256-byte promotion the same policy cost 4-5 us at 16x28672x8192 (the next stage's
      // half line evicted before it was read); on the scales too, 24 us.
      const uint64_t policy = l2_stream_policy();
      const auto weights = [&](int st) {
        unsigned char* stage = stage_of(st);
        uint64_t* bar = &full[st % p.stages];
        mbar_expect_tx(bar, kStageBytes);
        const int k_stage = k_stage_of(st);
        tma_load_2d(stage, &codes_map, bar, k_stage * (kStageK / 2), row0, policy);
        tma_load_2d(stage + kChunkBytes, &codes_map, bar, k_stage * (kStageK / 2) + 64, row0, policy);
        tma_load_2d(stage + kCodeBytes, &scales_map, bar, k_stage * (kStageK / 16), row0);
      };
      const auto activations = [&](int st) {
        bulk_load(stage_of(st) + kCodeBytes + kScaleBytes, p.act + int64_t{k_stage_of(st)} * kActBytes, kActBytes,
                  &full[st % p.stages]);
      };
      // The ring's first stages: the weights before the wait for the prepare kernel.
      const int pre = min(p.stages, n_stages);
      for (int st = 0; st < pre; ++st) weights(st);
      grid_dependency_wait();
      for (int st = 0; st < pre; ++st) activations(st);
      for (int st = pre; st < n_stages; ++st) {
        mbar_wait(&empty[st % p.stages], ((st / p.stages) - 1) & 1);
        weights(st);
        activations(st);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegs));
  // Consumer warpgroup cw: row tile cw % kRowGroups, K group cw / kRowGroups (its chunks of each
  // stage: all of them with one K group, chunk kg with two).
  const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int kg = cw / G::kRowGroups;
  const int my_row = (cw % G::kRowGroups) * 64 + warp * 16 + g;  // half h: + 8 h
  const uint32_t table = smem_u32(scale_table);
  // alpha(m) of every activation row (gemm_row_alpha: global loads and a division) while the first
  // stage is on its way; the epilogue reads it after the barriers below. A's and B's amaxes come from
  // work that finished before the prepare kernel started, so this needs no griddepcontrol.wait.
  // NOTE: computed after the main loop it was a global round trip on every CTA's tail (globaltimer
  // per CTA at 16x8192x8192: the loop ends ~21 us after the start, the last CTA's exit ~4.4 us later).
  if (tid - 128 < p.m) row_alpha[tid - 128] = gemm_row_alpha(p.a, gemm_b_factor(p.amax_b), p.e.alpha, tid - 128);
  float acc[1][MPad / 2];
#pragma unroll
  for (int i = 0; i < MPad / 2; ++i) acc[0][i] = 0.0f;
  uint32_t frag[2][1][4][4];
  // This lane's bytes of a stage: codes of rows r and r + 8 of its first chunk, their scales.
  const uint32_t code_offset = kg * kChunkBytes + my_row * 64 + t * 16;
  const uint32_t scale_offset = kCodeBytes + my_row * (kStageK / 16) + kg * 8 + t * 2;

  // NOTE: ptxas serializes the wgmmas (C7513/C7515) when a division or a branch sits between them,
  // or when a path skips them: ring positions advance by selects, and the loop runs at least once
  // (every split has a stage).
  // The loop once per K group KG, a compile-time constant: the activations' address (hence every
  // wgmma descriptor) is then built from values ptxas knows to be the same in every lane.
  const auto consume = [&](auto kg_constant) {
    constexpr int KG = decltype(kg_constant)::value;
    constexpr uint32_t act_offset = kCodeBytes + kScaleBytes + KG * 16 * (MPad * 16);
    int slot = 0;
    uint32_t phase = 0;
    uint64_t* release = spare;  // the barrier of the previous stage (stage 0: a spare nobody waits on)
    int st = 0;
    do {
      mbar_wait(&full[slot], phase);
      const uint32_t stage = smem_u32(base + slot * kStageBytes);
      // NOTE: not unrolled: with two chunks in flight the consumers' registers ran out (C7512).
#pragma unroll 1
      for (int c = 0; c < G::kChunks; ++c) {
        uint4 q[1][2];
        uint32_t scale[1][2][2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          q[0][h] = lds128(stage + code_offset + c * kChunkBytes + h * 8 * 64);
          const uint32_t s = lds_u16(stage + scale_offset + c * 8 + h * 8 * (kStageK / 16));
          scale[0][h][0] = lds_u32(table + (s & 0xFFu) * 4);
          scale[0][h][1] = lds_u32(table + (s >> 8) * 4);
        }
        const uint32_t chunk_act = stage + act_offset + c * 16 * (MPad * 16);
        // Each group first waits for the one two back, the last reader of its fragment buffer.
        wgmma_wait<1>();
        pin(frag[0]);
        mma_group<1, MPad, 0>(acc, frag[0], q, scale, chunk_act);
        wgmma_wait<1>();
        pin(frag[1]);
        // Every MMA of the previous stage is complete (only this chunk's first group may run): its
        // buffer goes back to the producer. Every consumer thread arrives, without a branch (see
        // above): a second chunk arrives on the spare barrier.
        mbar_arrive(c == 0 ? release : spare);
        mma_group<1, MPad, 1>(acc, frag[1], q, scale, chunk_act);
      }
      release = &empty[slot];
      slot = slot + 1 == p.stages ? 0 : slot + 1;
      phase ^= slot == 0 ? 1u : 0u;
    } while (++st < n_stages);
  };
  if constexpr (KGroups == 1) {
    consume(std::integral_constant<int, 0>{});
  } else if (kg == 0) {
    consume(std::integral_constant<int, 0>{});
  } else {
    consume(std::integral_constant<int, 1>{});
  }
  wgmma_wait<0>();
  pin(acc[0]);

  // The sums into this CTA's shared memory, [KGroups][MPad][kPartPitch] FP32 over the ring (every
  // stage was consumed: no copy is in flight), once every warpgroup's MMAs are done. Thread (g, t)
  // holds, per 8-column group i, weight rows g and g + 8 at activation rows 8i + 2t and 8i + 2t + 1.
  consumer_barrier();
  float* part = reinterpret_cast<float*>(base);
  float* mine = part + kg * (MPad * kPartPitch) + my_row;
#pragma unroll
  for (int i = 0; i < MPad / 8; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) mine[(8 * i + 2 * t + e) * kPartPitch + 8 * h] = acc[0][4 * i + 2 * h + e];
  consumer_barrier();

  // The CTA's sums (its K groups in order). One split: they are the result. Several: each CTA
  // stores them to global memory and takes a ticket; the last of the row block to arrive adds the
  // splits' sums in split order (deterministic) and writes D.
  const int ctid = tid - 128, total = p.m * kRows;
  const bool scale_only = gemm_epilogue_is_scale_only(p.e);
  const auto own_sum = [&](int i) {  // element i = m * kRows + n of this CTA's sums
    const float* at = part + (i / kRows) * kPartPitch + i % kRows;
    float v = at[0];
#pragma unroll
    for (int q = 1; q < KGroups; ++q) v += at[q * (MPad * kPartPitch)];
    return v;
  };
  const float* sums = nullptr;  // the splits' sums of this row block in global memory, or none
  if (splits > 1) {
    float* block = p.partials + int64_t{blockIdx.y} * splits * (MPad * kRows);
    for (int i = ctid; i < total; i += kConsumerThreads) block[split * (MPad * kRows) + i] = own_sum(i);
    __threadfence();
    consumer_barrier();
    uint32_t* ticket = reinterpret_cast<uint32_t*>(spare + 1);
    if (ctid == 0) *ticket = atomicAdd(&p.tickets[blockIdx.y], 1u);
    consumer_barrier();
    if (*ticket != static_cast<uint32_t>(splits - 1)) return;
    __threadfence();
    sums = block;
  }
  // In batches of elements whose loads are all issued before any is used (the splits' sums come
  // from L2: one round trip per batch, not per element).
  constexpr int kBatch = 8;
  for (int first = ctid; first < total; first += kBatch * kConsumerThreads) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = first + u * kConsumerThreads;
      v[u] = 0.0f;
      if (i >= total) continue;
      if (sums == nullptr) {
        v[u] = own_sum(i);
      } else {
        v[u] = __ldcg(sums + i);
        for (int r = 1; r < splits; ++r) v[u] += __ldcg(sums + r * (MPad * kRows) + i);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = first + u * kConsumerThreads;
      const int m = i / kRows, col = row0 + (i - m * kRows);
      if (i >= total || col >= p.n) continue;
      const float acc = v[u] * kAccScale;
      const float out = scale_only ? row_alpha[m] * acc : gemm_epilogue_value(p.e, row_alpha[m], acc, m, col);
      const int64_t at_d = m * p.d_stride + col;
      switch (p.d_dtype) {
        case DType::kF32: store_as<float>(p.d, at_d, out); break;
        case DType::kF16: store_as<__half>(p.d, at_d, out); break;
        default: store_as<__nv_bfloat16>(p.d, at_d, out); break;
      }
    }
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

using Kernel = void (*)(CUtensorMap, CUtensorMap, Params);

template <int KGroups>
Kernel kernel_of(int m_pad) {
  switch (m_pad) {
    case 8: return sm90_smallm_kernel<KGroups, 8>;
    case 16: return sm90_smallm_kernel<KGroups, 16>;
    case 32: return sm90_smallm_kernel<KGroups, 32>;
    default: return sm90_smallm_kernel<KGroups, 64>;
  }
}
// 256 rows: one K group; 128 rows: two.
Kernel kernel_for(int rows, int m_pad) { return rows == 128 ? kernel_of<2>(m_pad) : kernel_of<1>(m_pad); }

constexpr const char* kWho = "gemm (sm_90a small-M kernel)";

// The kernel's dynamic shared-memory limit at least `smem` (process-wide CUDA state: it only
// grows, under a lock), then the CTAs an SM holds at once. NOTE: the answers are cached
// process-wide per (kernel, device, smem), as the other launchers' are.
int resident_per_sm(Kernel kernel, int device, int64_t smem) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int64_t> limits;
  static std::map<std::tuple<const void*, int, int64_t>, int> known;
  const std::lock_guard<std::mutex> lock(mutex);
  const void* key = reinterpret_cast<const void*>(kernel);
  int64_t& limit = limits[{key, device}];
  if (smem > limit) {
    FP4KIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                      detail::cat(kWho, ": ", smem, " B of shared memory on device ", device));
    limit = smem;
  }
  const auto it = known.find({key, device, smem});
  if (it != known.end()) return it->second;
  int ctas = 0;
  FP4KIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, kSm90SmallMThreads, static_cast<size_t>(smem)),
                    detail::cat(kWho, ": occupancy at ", smem, " B"));
  known.emplace(std::make_tuple(key, device, smem), ctas);
  return ctas;
}

}  // namespace

Sm90SmallMPlan plan_sm90_gemm_smallm(int64_t m, int64_t n, int64_t k, const KernelConfig& config, int device,
                                     const Sm90SmallMTuning& tuning) {
  const int m_pad = m <= 8 ? 8 : m <= 16 ? 16 : m <= 32 ? 32 : 64;
  const int64_t cap = sm90_smallm_smem_bytes(kSm90SmallMRows, 64, config.stages);
  const int64_t total = k / kSm90SmallMStageK;
  const int sms = sm_count_of(device);
  // Split counts up to kSm90SmallMMaxSplits where whole stages split that way (no split empty); a
  // forced count, or the largest smaller one.
  const auto feasible = [&](int s) {
    const int64_t per = (total + s - 1) / s;
    return (total + per - 1) / per == s;
  };
  std::vector<int> split_counts;
  for (int s = 1; s <= kSm90SmallMMaxSplits; ++s) {
    if (feasible(s) && (tuning.splits == 0 || s <= tuning.splits)) split_counts.push_back(s);
  }
  if (tuning.splits > 0) split_counts.erase(split_counts.begin(), split_counts.end() - 1);
  // Cost: the bytes of the slowest SM, waves of resident CTAs times a split's stages (one more for
  // its first stage's latency), plus each split's FP32 sums written and read back. Ties go to the
  // larger tile and fewer splits.
  Sm90SmallMPlan best;
  double best_cost = 0;
  for (const int rows : {256, 128}) {
    if (tuning.rows != 0 && rows != tuning.rows) continue;
    Sm90SmallMPlan plan;
    plan.rows = rows;
    plan.m_pad = m_pad;
    for (int s = 2; s <= kSm90SmallMMaxStages; ++s) {
      if (sm90_smallm_smem_bytes(rows, m_pad, s) <= cap && (tuning.stages == 0 || s <= tuning.stages)) plan.stages = s;
    }
    if (plan.stages == 0) continue;
    plan.smem_bytes = sm90_smallm_smem_bytes(rows, m_pad, plan.stages);
    const int resident = resident_per_sm(kernel_for(rows, m_pad), device, plan.smem_bytes) * sms;
    if (resident == 0) continue;
    const int64_t row_blocks = (n + rows - 1) / rows;
    for (const int s : split_counts) {
      const int64_t per = (total + s - 1) / s, ctas = row_blocks * s, waves = (ctas + resident - 1) / resident;
      const double sums = s > 1 ? 2.0 * static_cast<double>(s * m_pad * rows * 4) : 0.0;
      // Rings of fewer than four stages starve the consumers (measured on the H100: 256 rows at
      // M = 64 with three stages, 66 us where 128 rows with four took 42 us, N = K = 8192).
      const double starving = plan.stages < 4 ? 4.0 / plan.stages : 1.0;
      const double cost =
          static_cast<double>(waves * (per + 1)) * static_cast<double>(sm90_smallm_stage_bytes(rows, m_pad)) * starving + sums;
      if (best.rows == 0 || cost < best_cost) {
        best_cost = cost;
        best = plan;
        best.splits = s;
        best.stages_per_split = static_cast<int>(per);
        best.ctas = static_cast<int>(ctas);
        best.resident_ctas = resident;
      }
    }
  }
  return best;
}

void launch_sm90_gemm_smallm(int64_t m, int64_t n, int64_t k, const GemmOperandPointers& a, const GemmOperandPointers& b,
                             void* d, DType d_dtype, int64_t d_stride, const GemmEpilogue& epilogue,
                             const KernelConfig& config, int device, void* stream, const Sm90SmallMTuning& tuning) {
  const auto fail_if = [&](bool bad, ErrorCode code, const std::string& why) {
    if (bad) detail::fail(code, detail::cat(kWho, ": ", why));
  };
  fail_if(m < 1 || m > 64, ErrorCode::kUnsupported, detail::cat("serves 1 <= M <= 64; M is ", m));
  fail_if(n < 1 || k < kSm90SmallMStageK || k % kSm90SmallMStageK != 0, ErrorCode::kUnsupported,
          detail::cat("needs N >= 1 and K a positive multiple of ", kSm90SmallMStageK, "; N=", n, " K=", k));
  fail_if(b.data == nullptr, ErrorCode::kUnsupported, "B must be NVFP4 (the weight stream)");
  fail_if(a.data == nullptr && a.dense == nullptr, ErrorCode::kInvalidArgument, "A has neither NVFP4 codes nor dense values");
  fail_if(d_dtype != DType::kF32 && d_dtype != DType::kF16 && d_dtype != DType::kBF16, ErrorCode::kInternal,
          detail::cat("unexpected output dtype ", dtype_name(d_dtype)));
  fail_if(m * n > (int64_t{1} << 31) - 1 || k > (int64_t{1} << 30), ErrorCode::kUnsupported,
          "the problem exceeds 32-bit indexing");
  DeviceGuard guard(device);
  const Sm90SmallMPlan plan = plan_sm90_gemm_smallm(m, n, k, config, device, tuning);
  if (tuning.plan) *tuning.plan = plan;
  fail_if(plan.rows == 0, ErrorCode::kInvalidArgument,
          detail::cat("no plan fits: the configuration ", config.name, " (", sm90_smallm_smem_bytes(kSm90SmallMRows, 64, config.stages),
                      " B) and the tuning (rows ", tuning.rows, ", stages ", tuning.stages, ") leave no ring of two stages "
                      "that the device holds"));
  // The codes stream under the evict-first policy (the kernel's copies) with the L2 fetching only
  // the 128-byte lines a stage reads: a 256-byte promotion brings the next stage's half line, which
  // that policy evicts before it is read (see the copy thread).
  const CUtensorMap codes = byte_map(kWho, b.data, n, k / 2, b.data_stride, plan.rows, 64, CU_TENSOR_MAP_SWIZZLE_NONE,
                                     "B's codes", CU_TENSOR_MAP_L2_PROMOTION_L2_128B);
  const CUtensorMap scales = byte_map(kWho, b.scales, n, k / 16, b.scale_stride, plan.rows, kSm90SmallMStageK / 16,
                                      CU_TENSOR_MAP_SWIZZLE_NONE, "B's scales");
  const Kernel kernel = kernel_for(plan.rows, plan.m_pad);

  // One stream-ordered workspace: the prepared activations, then (several splits) the splits' sums
  // and the row blocks' tickets, which the prepare kernel zeroes (a memset node before it cost ~4 us
  // at N = K = 8192 on the H100). The prepare kernel, then this one, which may start early: its
  // consumers take tickets only after data the producer loaded past griddepcontrol.wait.
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t row_blocks = (n + plan.rows - 1) / plan.rows;
  const int64_t act_bytes = (k / 8) * plan.m_pad * 16;
  const int64_t sum_bytes = plan.splits > 1 ? row_blocks * plan.splits * plan.m_pad * plan.rows * 4 : 0;
  const int64_t ticket_bytes = plan.splits > 1 ? row_blocks * 4 : 0;
  unsigned char* workspace = nullptr;
  FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&workspace), static_cast<size_t>(act_bytes + sum_bytes + ticket_bytes), s),
                    detail::cat(kWho, ": workspace for M=", m, " N=", n, " K=", k));
  launch_smallm_prepare(a, m, k, plan.m_pad, k, workspace, s, reinterpret_cast<uint32_t*>(workspace + act_bytes + sum_bytes),
                        static_cast<int>(ticket_bytes / 4));

  Params p{};
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.stages = plan.stages;
  p.stages_per_split = plan.stages_per_split;
  p.act = workspace;
  p.partials = sum_bytes > 0 ? reinterpret_cast<float*>(workspace + act_bytes) : nullptr;  // act_bytes % 256 == 0
  p.tickets = ticket_bytes > 0 ? reinterpret_cast<unsigned*>(workspace + act_bytes + sum_bytes) : nullptr;
  p.a = a;
  p.amax_b = b.amax;
  p.e = epilogue;
  p.d = d;
  p.d_dtype = d_dtype;
  p.d_stride = d_stride;
  cudaLaunchAttribute pdl{};
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(plan.splits), static_cast<unsigned>(row_blocks));
  cfg.blockDim = dim3(kSm90SmallMThreads);
  cfg.dynamicSmemBytes = static_cast<size_t>(plan.smem_bytes);
  cfg.stream = s;
  cfg.attrs = &pdl;
  cfg.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&cfg, kernel, codes, scales, p);
  if (launched != cudaSuccess) {
    cudaFreeAsync(workspace, s);
    FP4KIT_CUDA_CHECK(launched, detail::cat(kWho, ": M=", m, " N=", n, " K=", k, " (", plan.rows, " rows x ", plan.m_pad,
                                            " activation columns, ", plan.splits, " splits of ", plan.stages_per_split,
                                            " stages, ring of ", plan.stages, ", ", plan.smem_bytes, " B shared memory)"));
  }
  FP4KIT_CUDA_CHECK(cudaFreeAsync(workspace, s), detail::cat(kWho, ": workspace"));
}

std::string sm90_smallm_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(sm90_smallm_kernel<1, 8>), device.index, "sm_90a small-M GEMM kernel");
}

}  // namespace fp4kit::cuda
