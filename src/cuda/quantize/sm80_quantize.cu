// src/cuda/quantize/sm80_quantize.cu: NVFP4 amax, quantization and dequantization kernels for
// sm_80 and newer, bit-exact with the CPU reference (docs/NUMERICS.md §2-4, 6, 8, 9).
//
// quantize = amax pass + cast pass, both reading x once:
//   amax: 16-byte loads, grid-stride; per-tensor: warp/block max then one atomicMax per CTA on
//         the float's bits (non-negative floats order like their bits); per-row: a warp per row.
//   cast: a persistent grid; each CTA streams 64x64 tiles of x through a cp.async pipeline of
//         `stages` shared-memory buffers and writes both outputs from the staged tile: a thread
//         owns one rowwise block (row t/4, block t%4) and one columnwise block (column t%64, rows
//         16*(t/64)...). The scalar formulas are those of src/core/nvfp4_math.hpp, the same code
//         the reference runs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/nvfp4_math.hpp"
#include "core/philox.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/quantize/cast_config.hpp"
#include "cuda/quantize/launch.hpp"

namespace fp4kit::cuda {

namespace {

// ---------------------------------------------------------------------------------------------
// Element loads (exact widening to FP32)
// ---------------------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// 16 bytes of elements -> floats.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& raw, float* out) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < static_cast<int>(16 / sizeof(T)); ++i) out[i] = to_float<T>(e[i]);
}

// |x| as FP32 bits: non-negative floats order like their bits, and bits >= 0x7F800000 are Inf/NaN.
constexpr uint32_t kInfBits = 0x7F800000u;

// The largest |element| of a 16-byte chunk as FP32 bits, with SIMD-in-a-register maxima on the
// 16-bit formats (their magnitudes also order like their bits).
template <typename T>
__device__ __forceinline__ uint32_t chunk_max_bits(const uint4& raw);
template <>
__device__ __forceinline__ uint32_t chunk_max_bits<float>(const uint4& raw) {
  return max(max(raw.x & 0x7FFFFFFFu, raw.y & 0x7FFFFFFFu), max(raw.z & 0x7FFFFFFFu, raw.w & 0x7FFFFFFFu));
}
template <>
__device__ __forceinline__ uint32_t chunk_max_bits<__nv_bfloat16>(const uint4& raw) {
  const uint32_t m = __vmaxu2(__vmaxu2(raw.x & 0x7FFF7FFFu, raw.y & 0x7FFF7FFFu),
                              __vmaxu2(raw.z & 0x7FFF7FFFu, raw.w & 0x7FFF7FFFu));
  return max(m & 0xFFFFu, m >> 16) << 16;  // bf16 bits are the top half of the FP32 bits
}
template <>
__device__ __forceinline__ uint32_t chunk_max_bits<__half>(const uint4& raw) {
  const uint32_t m = __vmaxu2(__vmaxu2(raw.x & 0x7FFF7FFFu, raw.y & 0x7FFF7FFFu),
                              __vmaxu2(raw.z & 0x7FFF7FFFu, raw.w & 0x7FFF7FFFu));
  const uint32_t h = max(m & 0xFFFFu, m >> 16);
  return h >= 0x7C00u ? kInfBits | (h & 0x3FFu) : __float_as_uint(__half2float(__ushort_as_half(static_cast<unsigned short>(h))));
}

struct AmaxAcc {
  uint32_t max_bits = 0;  // the finite amax as FP32 bits
  uint32_t nans = 0;
  uint32_t infs = 0;
  __device__ __forceinline__ void add(float v) {
    const uint32_t b = __float_as_uint(v) & 0x7FFFFFFFu;
    if (b < kInfBits) max_bits = max(max_bits, b);
    else if (b == kInfBits) ++infs;
    else ++nans;
  }
  // A whole chunk: one maximum in the common all-finite case, element by element otherwise.
  template <typename T>
  __device__ __forceinline__ void add_chunk(const uint4& raw) {
    const uint32_t m = chunk_max_bits<T>(raw);
    if (m < kInfBits) {
      max_bits = max(max_bits, m);
      return;
    }
    float v[16 / sizeof(T)];
    unpack16<T>(raw, v);
#pragma unroll
    for (int k = 0; k < static_cast<int>(16 / sizeof(T)); ++k) add(v[k]);
  }
};

__device__ __forceinline__ AmaxAcc warp_reduce(AmaxAcc a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    a.max_bits = max(a.max_bits, __shfl_xor_sync(0xffffffffu, a.max_bits, o));
    a.nans += __shfl_xor_sync(0xffffffffu, a.nans, o);
    a.infs += __shfl_xor_sync(0xffffffffu, a.infs, o);
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// amax
// ---------------------------------------------------------------------------------------------
constexpr int kAmaxThreads = 256;
constexpr int kAmaxUnroll = 4;  // 16-byte loads in flight per thread

// Accumulates elements [begin, end) of one contiguous run: 16-byte chunks when `vec`, else scalar.
template <typename T>
__device__ __forceinline__ void amax_run(const T* __restrict__ p, int64_t n, bool vec, int64_t tid, int64_t nthreads,
                                         AmaxAcc& acc) {
  constexpr int kPer = 16 / sizeof(T);
  if (vec) {
    const uint4* q = reinterpret_cast<const uint4*>(p);
    const int64_t chunks = n / kPer;
    int64_t i = tid;
    for (; i + (kAmaxUnroll - 1) * nthreads < chunks; i += kAmaxUnroll * nthreads) {
      uint4 raw[kAmaxUnroll];
#pragma unroll
      for (int u = 0; u < kAmaxUnroll; ++u) raw[u] = __ldg(q + i + u * nthreads);
#pragma unroll
      for (int u = 0; u < kAmaxUnroll; ++u) acc.add_chunk<T>(raw[u]);
    }
    for (; i < chunks; i += nthreads) acc.add_chunk<T>(__ldg(q + i));
  } else {
    for (int64_t i = tid; i < n; i += nthreads) acc.add(to_float<T>(p[i]));
  }
}

// Per tensor: amax_bits receives atomicMax of the finite amax's bits (zeroed by the launcher). A
// contiguous tensor is one run over the whole grid; a strided one gives each CTA whole rows.
template <typename T>
__global__ void __launch_bounds__(kAmaxThreads) amax_tensor_kernel(const T* __restrict__ x, int64_t rows, int64_t cols,
                                                                  int64_t row_stride, bool vec, uint32_t* amax_bits,
                                                                  uint32_t* counts) {
  AmaxAcc acc;
  if (rows == 1 || row_stride == cols) {
    amax_run<T>(x, rows * cols, vec, blockIdx.x * int64_t{blockDim.x} + threadIdx.x, int64_t{gridDim.x} * blockDim.x, acc);
  } else {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) amax_run<T>(x + r * row_stride, cols, vec, threadIdx.x, blockDim.x, acc);
  }
  acc = warp_reduce(acc);
  __shared__ AmaxAcc warps[kAmaxThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warps[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < kAmaxThreads / 32 ? warps[lane] : AmaxAcc{};
    acc = warp_reduce(acc);
    if (lane == 0) {
      atomicMax(amax_bits, acc.max_bits);
      if (acc.nans) atomicAdd(&counts[0], acc.nans);
      if (acc.infs) atomicAdd(&counts[1], acc.infs);
    }
  }
}

// Per row: one warp per row.
template <typename T>
__global__ void __launch_bounds__(kAmaxThreads) amax_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t cols,
                                                                int64_t row_stride, bool vec, float* finite,
                                                                float* reported, uint32_t* counts) {
  const int64_t r = blockIdx.x * int64_t{kAmaxThreads / 32} + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  AmaxAcc acc;
  amax_run<T>(x + r * row_stride, cols, vec, lane, 32, acc);
  acc = warp_reduce(acc);
  if (lane == 0) {
    const float amax = __uint_as_float(acc.max_bits);
    finite[r] = amax;
    if (reported) reported[r] = acc.nans ? __int_as_float(0x7fc00000) : (acc.infs ? __int_as_float(0x7f800000) : amax);
    if (acc.nans) atomicAdd(&counts[0], acc.nans);
    if (acc.infs) atomicAdd(&counts[1], acc.infs);
  }
}

// After the per-tensor reduction: the reported amax from the counts.
__global__ void amax_finalize_kernel(const uint32_t* amax_bits, const uint32_t* counts, float* reported) {
  const float finite = __uint_as_float(*amax_bits);
  *reported = counts[0] ? __int_as_float(0x7fc00000) : (counts[1] ? __int_as_float(0x7f800000) : finite);
}

// ---------------------------------------------------------------------------------------------
// cast
// ---------------------------------------------------------------------------------------------
struct CastArgs {
  const void* x;
  int64_t rows, cols, row_stride;
  // Tile counts fit 32 bits (the launcher checks): 32-bit division per tile instead of the
  // ~100-instruction 64-bit one.
  uint32_t tiles_c, num_tiles;
  PartPointers rw, cw;
  const float* amax;  // the finite amax: [1], or [rows] when row-scaled
  uint16_t pad;
  uint64_t sr_seed, sr_offset;
};

// Encodes one 16-element block (NUMERICS §2, §8, §9) and stores its 8 data bytes and scale byte.
template <bool kSr>
__device__ __forceinline__ void encode_store(const float* v, float bamax, bool nonfinite, const detail::GlobalScale& g,
                                             uint64_t seed, uint64_t offset, uint64_t block, bool columnwise,
                                             uint8_t* data, uint8_t* scale) {
  if (nonfinite) {  // §9: NaN scale, zero data: the block dequantizes to NaN
    *reinterpret_cast<uint2*>(data) = make_uint2(0u, 0u);
    *scale = kE4m3Nan;
    return;
  }
  const uint8_t sb = detail::block_scale_byte(bamax, g);
  const float senc = detail::block_encode_scale(sb, g);
  detail::Philox4x32 rnd{};
  if constexpr (kSr) rnd = detail::sr_block_random(seed, offset, block, columnwise);
  uint32_t word[2] = {0u, 0u};
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    uint32_t code;
    if constexpr (kSr) code = detail::quantize_sr_fast(v[j], senc, detail::sr_byte(rnd, j));
    else code = detail::quantize_rne_fast(v[j], senc);
    word[j >> 3] |= code << (4 * (j & 7));  // element 2i in the low nibble of byte i
  }
  *reinterpret_cast<uint2*>(data) = make_uint2(word[0], word[1]);
  *scale = sb;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  // src-size 0 zero-fills the 16 bytes: rows past R and columns past C become zeros, which change
  // neither an amax nor the zero padding of the last columnwise block.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `pending` (0..3, the pipeline depth - 1) copy groups are outstanding.
__device__ __forceinline__ void cp_async_wait(int pending) {
  switch (pending) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::); break;
    default: asm volatile("cp.async.wait_group 3;\n" ::); break;
  }
}

// `stages` (1..4) tiles are in flight per CTA: a run-time value, so that one instantiation per mode
// serves every configuration the dispatcher may pick.
template <typename T, bool kRow, bool kCol, bool k2D, bool kSr, bool kRowScaled>
__global__ void __launch_bounds__(kCastThreads) cast_kernel(const CastArgs a, const int stages) {
  static_assert(kCastThreads == kCastTileRows * (kCastTileCols / 16), "one rowwise block per thread");
  static_assert(kCastThreads == kCastTileCols * (kCastTileRows / 16), "one columnwise block per thread");
  constexpr int kElem = sizeof(T);
  constexpr int64_t kPitch = cast_tile_pitch(kElem);
  constexpr int kChunksPerRow = kCastTileCols * kElem / 16;
  constexpr int kChunks = kCastTileRows * kChunksPerRow;
  extern __shared__ __align__(16) unsigned char smem[];
  // The buffers below are exactly cast_smem_bytes(stages, kElem): `stages` tiles, then the
  // block amaxes (checked against the formula for every depth the registry offers).
  static_assert(4 * cast_stage_bytes(kElem) + cast_block_amax_bytes() + cast_colwise_stage_bytes() ==
                cast_smem_bytes(4, kElem));
  static_assert(1 * cast_stage_bytes(kElem) + cast_block_amax_bytes() + cast_colwise_stage_bytes() ==
                cast_smem_bytes(1, kElem));
  float* block_amax = reinterpret_cast<float*>(smem + stages * cast_stage_bytes(kElem));  // [64][4]
  uint8_t* col_data = smem + stages * cast_stage_bytes(kElem) + cast_block_amax_bytes();  // [64][32]
  uint8_t* col_scales = col_data + kCastTileCols * 32;                                     // [64][4]

  const T* x = static_cast<const T*>(a.x);
  const int t = threadIdx.x;
  const int64_t padded_rows = (a.rows + 15) / 16 * 16;
  detail::GlobalScale g_tensor{};
  if constexpr (!kRowScaled) g_tensor = detail::global_scale(a.amax[0]);

  // The tiles of this CTA: blockIdx.x, then every gridDim.x-th, walked as (tile row, tile column)
  // cursors advanced by addition (one division at the start instead of two per tile).
  struct Cursor {
    uint32_t tile, tr, tc;
  };
  const uint32_t step = gridDim.x, step_r = step / a.tiles_c, step_c = step - step_r * a.tiles_c;
  auto cursor_at = [&](uint32_t tile) { return Cursor{tile, tile / a.tiles_c, tile % a.tiles_c}; };
  auto advance = [&](Cursor& k) {
    k.tile += step;
    k.tr += step_r;
    k.tc += step_c;
    if (k.tc >= a.tiles_c) {
      k.tc -= a.tiles_c;
      ++k.tr;
    }
  };

  // This thread's 16-byte chunks of a staged tile, fixed for the whole kernel.
  static_assert(kChunks % kCastThreads == 0, "every thread copies the same number of chunks");
  constexpr int kChunksPerThread = kChunks / kCastThreads;
  auto load_tile = [&](const Cursor& k, int buf) {
    unsigned char* dst = smem + buf * cast_stage_bytes(kElem);
#pragma unroll
    for (int q = 0; q < kChunksPerThread; ++q) {
      const int i = t + q * kCastThreads;
      const int lr = i / kChunksPerRow, lc = i % kChunksPerRow;
      const int64_t r = int64_t{k.tr} * kCastTileRows + lr;
      const int64_t c = int64_t{k.tc} * kCastTileCols + lc * (16 / kElem);
      const bool valid = r < a.rows && c < a.cols;
      cp_async16(dst + lr * kPitch + lc * 16, valid ? static_cast<const void*>(x + r * a.row_stride + c) : a.x, valid);
    }
  };

  Cursor ahead = cursor_at(blockIdx.x);
  for (int s = 0; s < stages - 1; ++s) {
    if (ahead.tile < a.num_tiles) load_tile(ahead, s);
    cp_async_commit();
    advance(ahead);
  }
  int buf = 0;
  for (Cursor cur = cursor_at(blockIdx.x); cur.tile < a.num_tiles; advance(cur)) {
    // Prefetch the tile stages-1 ahead into the buffer freed at the end of the last iteration.
    if (ahead.tile < a.num_tiles) load_tile(ahead, (buf + stages - 1) % stages);
    cp_async_commit();
    advance(ahead);
    cp_async_wait(stages - 1);
    __syncthreads();

    const unsigned char* tile_smem = smem + buf * cast_stage_bytes(kElem);
    const int64_t tr = cur.tr, tc = cur.tc;

    // Rowwise block of this thread: row lr, columns 16*b .. 16*b+15 of the tile.
    const int lr = t >> 2, b = t & 3;
    const int64_t r = tr * kCastTileRows + lr;
    const int64_t c0 = tc * kCastTileCols + 16 * b;
    float rv[16];
    float r_amax = 0.0f;
    bool r_bad = false;
    if constexpr (kRow || k2D) {
      const uint4* src = reinterpret_cast<const uint4*>(tile_smem + lr * kPitch + 16 * b * kElem);
      uint32_t m = 0;
#pragma unroll
      for (int q = 0; q < 16 * kElem / 16; ++q) {
        const uint4 raw = src[q];
        unpack16<T>(raw, rv + q * (16 / kElem));
        m = max(m, chunk_max_bits<T>(raw));
      }
      // Any NaN/Inf makes the maximum's bits >= 0x7F800000 (§9); else it is the finite amax.
      r_bad = m >= kInfBits;
      r_amax = __uint_as_float(m);
    }
    if constexpr (k2D) {
      // A 16x16 tile shares one scale: its amax is the max over its 16 row blocks; +Inf marks a
      // tile holding NaN or Inf (a finite amax is never Inf).
      block_amax[lr * 4 + b] = r_bad ? __int_as_float(0x7f800000) : r_amax;
      __syncthreads();
    }
    if constexpr (kRow) {
      if (r < a.rows && c0 < a.cols) {
        float bamax = r_amax;
        bool bad = r_bad;
        if constexpr (k2D) {
          float m = 0.0f;
#pragma unroll
          for (int i = 0; i < 16; ++i) m = fmaxf(m, block_amax[((lr & ~15) + i) * 4 + b]);
          bad = !is_finite(m);
          bamax = m;
        }
        const detail::GlobalScale g = kRowScaled ? detail::global_scale(a.amax[r]) : g_tensor;
        const int64_t blk = c0 / 16;
        encode_store<kSr>(rv, bamax, bad, g, a.sr_seed, a.sr_offset, static_cast<uint64_t>(r * ((a.cols + 15) / 16) + blk),
                          false, a.rw.data + r * a.rw.data_stride + 8 * blk, a.rw.scales + r * a.rw.scale_stride + blk);
      }
    }
    if constexpr (kCol) {
      // Columnwise block: column lc of the tile, rows 16*rb .. 16*rb+15 (zero past R), encoded
      // into the staging area: column lc's bytes of this tile are contiguous in the output.
      const int lc = t & 63, rb = t >> 6;
      const int64_t c = tc * kCastTileCols + lc;
      const int64_t r0 = tr * kCastTileRows + 16 * rb;
      if (c < a.cols && r0 < padded_rows) {
        float cv[16];
        uint32_t m = 0;
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          cv[i] = to_float<T>(*reinterpret_cast<const T*>(tile_smem + (16 * rb + i) * kPitch + lc * kElem));
          m = max(m, __float_as_uint(cv[i]) & 0x7FFFFFFFu);
        }
        bool bad = m >= kInfBits;
        float bamax = __uint_as_float(m);
        if constexpr (k2D) {
          float mm = 0.0f;
#pragma unroll
          for (int i = 0; i < 16; ++i) mm = fmaxf(mm, block_amax[(16 * rb + i) * 4 + (lc >> 4)]);
          bad = !is_finite(mm);
          bamax = mm;
        }
        encode_store<kSr>(cv, bamax, bad, g_tensor, a.sr_seed, a.sr_offset,
                          static_cast<uint64_t>(c * (padded_rows / 16) + r0 / 16), true, col_data + lc * 32 + 8 * rb,
                          col_scales + lc * 4 + rb);
      }
      __syncthreads();
      // Write-out: the tile's row blocks that exist (all 4 but in the last tile row), 16 bytes per
      // thread where the output's row stride allows, whole sectors per column.
      const int64_t blocks_left = (padded_rows - tr * kCastTileRows) / 16;
      const int valid = blocks_left < 4 ? static_cast<int>(blocks_left) : 4;
      if (t < 2 * kCastTileCols) {
        const int col = t >> 1, half = t & 1;
        const int64_t cc = tc * kCastTileCols + col;
        if (cc < a.cols) {
          uint8_t* dst = a.cw.data + cc * a.cw.data_stride + tr * 32;
          const uint8_t* src = col_data + col * 32;
          if (valid == 4 && (a.cw.data_stride % 16) == 0) {
            *reinterpret_cast<uint4*>(dst + 16 * half) = *reinterpret_cast<const uint4*>(src + 16 * half);
          } else {
            for (int q = 2 * half; q < 2 * half + 2 && q < valid; ++q) {
              *reinterpret_cast<uint2*>(dst + 8 * q) = *reinterpret_cast<const uint2*>(src + 8 * q);
            }
          }
        }
      } else if (t < 3 * kCastTileCols) {
        const int col = t - 2 * kCastTileCols;
        const int64_t cc = tc * kCastTileCols + col;
        if (cc < a.cols) {
          uint8_t* dst = a.cw.scales + cc * a.cw.scale_stride + tr * 4;
          if (valid == 4 && (a.cw.scale_stride % 4) == 0) {
            *reinterpret_cast<uint32_t*>(dst) = *reinterpret_cast<const uint32_t*>(col_scales + col * 4);
          } else {
            for (int q = 0; q < valid; ++q) dst[q] = col_scales[col * 4 + q];
          }
        }
      }
    }
    __syncthreads();  // the buffer (and block_amax) is reused by a later prefetch
    buf = (buf + 1) % stages;
  }
  cp_async_wait(0);  // no copy may be outstanding when the CTA exits
}

// ---------------------------------------------------------------------------------------------
// dequantize: one thread per 16-element block
// ---------------------------------------------------------------------------------------------
template <typename OutT>
__device__ __forceinline__ OutT from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename OutT>
__global__ void __launch_bounds__(256) dequantize_kernel(PartPointers p, bool row_scaled, int64_t rows,
                                                        int64_t blocks_per_row, int64_t out_cols, OutT* out,
                                                        int64_t out_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows * blocks_per_row) return;
  const int64_t r = i / blocks_per_row, blk = i - r * blocks_per_row;
  const detail::GlobalScale g = detail::global_scale(p.amax[row_scaled ? r : 0]);
  const float scale = e4m3_to_float(p.scales[r * p.scale_stride + blk]);
  const uint2 packed = *reinterpret_cast<const uint2*>(p.data + r * p.data_stride + 8 * blk);
  OutT* dst = out + r * out_stride + 16 * blk;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    if (16 * blk + j >= out_cols) break;
    const uint32_t word = j < 8 ? packed.x : packed.y;
    const uint8_t code = static_cast<uint8_t>((word >> (4 * (j & 7))) & 0xFu);
    dst[j] = from_float<OutT>(e2m1_to_float(code) * scale * g.s_dec);  // NUMERICS §2 order
  }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------
template <typename T>
using CastKernel = void (*)(CastArgs, int);

// The mode combinations the contract allows, as a table (row-scaled is rowwise 1D RNE only).
template <typename T>
CastKernel<T> pick_cast(bool row, bool col, bool two_d, bool sr, bool row_scaled) {
  if (row_scaled) return cast_kernel<T, true, false, false, false, true>;
#define FP4KIT_CAST(R, C, D)                                                                             \
  if (row == R && col == C && two_d == D) {                                                              \
    return sr ? cast_kernel<T, R, C, D, true, false> : cast_kernel<T, R, C, D, false, false>;            \
  }
  FP4KIT_CAST(true, false, false)
  FP4KIT_CAST(false, true, false)
  FP4KIT_CAST(true, true, false)
  FP4KIT_CAST(true, false, true)
  FP4KIT_CAST(false, true, true)
  FP4KIT_CAST(true, true, true)
#undef FP4KIT_CAST
  return nullptr;
}

template <typename T>
void run_amax(const SourceMatrix& x, bool per_row, float* finite, float* reported, uint32_t* counts, cudaStream_t s,
              int sm_count) {
  const T* p = static_cast<const T*>(x.data);
  // 16-byte loads need an aligned base and rows that keep that alignment.
  const bool vec = reinterpret_cast<uintptr_t>(p) % 16 == 0 &&
                   (x.rows == 1 || (x.row_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0) &&
                   (x.cols * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  if (per_row) {
    const int64_t grid = (x.rows + kAmaxThreads / 32 - 1) / (kAmaxThreads / 32);
    if (grid > 0) {
      amax_rows_kernel<T><<<static_cast<unsigned>(grid), kAmaxThreads, 0, s>>>(p, x.rows, x.cols, x.row_stride, vec, finite,
                                                                             reported, counts);
    }
  } else {
    const int64_t per_thread = kAmaxUnroll * (vec ? 16 / static_cast<int64_t>(sizeof(T)) : 1);
    const int64_t work = (x.rows * x.cols + per_thread - 1) / per_thread;
    const int64_t grid = std::max<int64_t>(1, std::min<int64_t>((work + kAmaxThreads - 1) / kAmaxThreads, int64_t{sm_count} * 8));
    amax_tensor_kernel<T><<<static_cast<unsigned>(grid), kAmaxThreads, 0, s>>>(p, x.rows, x.cols, x.row_stride, vec,
                                                                            reinterpret_cast<uint32_t*>(finite), counts);
    if (reported) amax_finalize_kernel<<<1, 1, 0, s>>>(reinterpret_cast<uint32_t*>(finite), counts, reported);
  }
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("amax kernel, ", dtype_name(x.dtype), " [", x.rows, ", ", x.cols, "]"));
}

void amax_any(const SourceMatrix& x, bool per_row, float* finite, float* reported, uint32_t* counts, cudaStream_t s,
              int sm_count) {
  switch (x.dtype) {
    case DType::kF32: return run_amax<float>(x, per_row, finite, reported, counts, s, sm_count);
    case DType::kF16: return run_amax<__half>(x, per_row, finite, reported, counts, s, sm_count);
    case DType::kBF16: return run_amax<__nv_bfloat16>(x, per_row, finite, reported, counts, s, sm_count);
    default: detail::fail(ErrorCode::kInternal, detail::cat("amax kernel: unexpected dtype ", dtype_name(x.dtype)));
  }
}

int sm_count_of(int device) {
  int n = 0;
  FP4KIT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "");
  return n;
}

template <typename T>
void run_cast(const CastArgs& args, const QuantParams& p, int stages, int sm_count, cudaStream_t s) {
  const bool row = has_rowwise(p.direction), col = has_columnwise(p.direction);
  const CastKernel<T> kernel = pick_cast<T>(row, col, p.block == BlockScaling::k2D,
                                            p.rounding == Rounding::kStochastic, p.row_scaled);
  const std::string what = detail::cat("sm80 cast kernel, ", sizeof(T) == 4 ? "f32" : "16-bit", " input, ", stages,
                                       " stages, ", direction_name(p.direction));
  if (kernel == nullptr || stages < 1 || stages > 4) {
    detail::fail(ErrorCode::kInternal, detail::cat(what, ": no instantiation for these modes"));
  }
  const int64_t smem = cast_smem_bytes(stages, sizeof(T));
  FP4KIT_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)),
                    what);
  int per_sm = 0;
  FP4KIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, reinterpret_cast<const void*>(kernel),
                                                                  kCastThreads, static_cast<size_t>(smem)),
                    what);
  if (per_sm < 1) {
    detail::fail(ErrorCode::kInternal, detail::cat(what, ": ", smem, " B of shared memory leaves no CTA resident"));
  }
  // A persistent grid: every SM full, each CTA streaming several tiles through its pipeline.
  const int64_t grid = std::min<int64_t>(int64_t{args.num_tiles}, int64_t{per_sm} * sm_count);
  if (grid <= 0) return;
  kernel<<<static_cast<unsigned>(grid), kCastThreads, static_cast<size_t>(smem), s>>>(args, stages);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), what);
}

template <typename OutT>
void run_dequantize(const PartPointers& part, bool row_scaled, int64_t rows, int64_t out_cols, void* out,
                    int64_t out_stride, cudaStream_t s) {
  const int64_t blocks_per_row = (out_cols + 15) / 16;
  const int64_t total = rows * blocks_per_row;
  if (total == 0) return;
  dequantize_kernel<OutT><<<static_cast<unsigned>((total + 255) / 256), 256, 0, s>>>(
      part, row_scaled, rows, blocks_per_row, out_cols, static_cast<OutT*>(out), out_stride);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), "dequantize kernel");
}

}  // namespace

std::string kernel_image_problem(const void* kernel, int index, const char* name) {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(index);
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
  cudaSetDevice(previous);
  if (e == cudaSuccess) return {};
  cudaGetLastError();
  return detail::cat(name, ": no loadable image for cuda:", index, " (", cudaGetErrorString(e),
                     "): rebuild with its architecture in CMAKE_CUDA_ARCHITECTURES");
}

std::string quantize_image_problem(const DeviceInfo& device) {
  return kernel_image_problem(reinterpret_cast<const void*>(cast_kernel<__nv_bfloat16, true, false, false, false, false>),
                              device.index, "sm80 cast kernel");
}

void launch_amax(const SourceMatrix& x, bool per_row, float* finite_amax, float* reported, uint32_t* counts, int device,
                 void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  uint32_t* scratch = nullptr;
  if (counts == nullptr) {
    FP4KIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), 2 * sizeof(uint32_t), s), "amax counts");
    counts = scratch;
  }
  FP4KIT_CUDA_CHECK(cudaMemsetAsync(counts, 0, 2 * sizeof(uint32_t), s), "amax");
  if (!per_row) FP4KIT_CUDA_CHECK(cudaMemsetAsync(finite_amax, 0, sizeof(float), s), "amax");
  amax_any(x, per_row, finite_amax, reported, counts, s, sm_count_of(device));
  if (scratch) FP4KIT_CUDA_CHECK(cudaFreeAsync(scratch, s), "amax counts");
}

void launch_quantize(const SourceMatrix& x, const QuantParams& params, const PartPointers& rowwise,
                     const PartPointers& columnwise, uint32_t* nonfinite_counts, int stages, int sm_count, int device,
                     void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool row = has_rowwise(params.direction), col = has_columnwise(params.direction);
  // The amax pass writes into the first present part's amax; the columnwise amax equals it (no RHT
  // in these kernels), copied on the stream.
  float* amax = row ? rowwise.amax : columnwise.amax;
  FP4KIT_CUDA_CHECK(cudaMemsetAsync(nonfinite_counts, 0, 2 * sizeof(uint32_t), s), "quantize");
  if (!params.row_scaled) FP4KIT_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), s), "quantize");
  amax_any(x, params.row_scaled, amax, nullptr, nonfinite_counts, s, sm_count);
  if (row && col) {
    FP4KIT_CUDA_CHECK(cudaMemcpyAsync(columnwise.amax, rowwise.amax, sizeof(float), cudaMemcpyDeviceToDevice, s),
                      "quantize: columnwise amax");
  }
  CastArgs args{};
  args.x = x.data;
  args.rows = x.rows;
  args.cols = x.cols;
  args.row_stride = x.row_stride;
  const int64_t tiles_c = (x.cols + kCastTileCols - 1) / kCastTileCols;
  const int64_t num_tiles = (x.rows + kCastTileRows - 1) / kCastTileRows * tiles_c;
  if (num_tiles >= (int64_t{1} << 31)) {
    detail::fail(ErrorCode::kShapeMismatch,
                 detail::cat("quantize: [", x.rows, ", ", x.cols, "] has ", num_tiles, " 64x64 tiles; the CUDA cast takes fewer than 2^31"),
                 "quantize the tensor in slices of rows");
  }
  args.tiles_c = static_cast<uint32_t>(tiles_c);
  args.num_tiles = static_cast<uint32_t>(num_tiles);
  args.rw = rowwise;
  args.cw = columnwise;
  args.amax = amax;
  args.sr_seed = params.sr_seed;
  args.sr_offset = params.sr_offset;
  switch (x.dtype) {
    case DType::kF32: return run_cast<float>(args, params, stages, sm_count, s);
    case DType::kF16: return run_cast<__half>(args, params, stages, sm_count, s);
    case DType::kBF16: return run_cast<__nv_bfloat16>(args, params, stages, sm_count, s);
    default: detail::fail(ErrorCode::kInternal, detail::cat("cast kernel: unexpected dtype ", dtype_name(x.dtype)));
  }
}

void launch_dequantize(const PartPointers& part, bool row_scaled, int64_t rows, int64_t out_cols, void* out,
                       DType out_dtype, int64_t out_stride, int device, void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (out_dtype) {
    case DType::kF32: return run_dequantize<float>(part, row_scaled, rows, out_cols, out, out_stride, s);
    case DType::kF16: return run_dequantize<__half>(part, row_scaled, rows, out_cols, out, out_stride, s);
    case DType::kBF16: return run_dequantize<__nv_bfloat16>(part, row_scaled, rows, out_cols, out, out_stride, s);
    default: detail::fail(ErrorCode::kInternal, detail::cat("dequantize kernel: unexpected dtype ", dtype_name(out_dtype)));
  }
}

}  // namespace fp4kit::cuda
