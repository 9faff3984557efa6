// src/cuda/quantize/sm80_quantize.cu: NVFP4 amax, quantization and dequantization kernels for
// sm_80 and newer, bit-exact with the CPU reference (docs/NUMERICS.md §2-4, 6, 8, 9).
//
// quantize = amax pass + cast pass, both reading x once:
//   amax: 16-byte loads, grid-stride; per-tensor: warp/block max then one atomicMax per CTA on
//         the float's bits (non-negative floats order like their bits); per-row: a warp per row.
//   cast: a persistent grid of CTAs streaming shared-memory tiles (cp.async pipeline), a thread
//         per block in each direction, last tile first so that what the
//         amax pass read last is still in L2 (see cast_kernel). The scalar formulas are those of
//         src/core/nvfp4_math.hpp, the code the reference is tested against.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "core/nvfp4_math.hpp"
#include "core/philox.hpp"
#include "cuda/common/cuda_check.hpp"
#include "cuda/common/float_convert.cuh"
#include "cuda/quantize/cast_config.hpp"
#include "cuda/quantize/launch.hpp"
#include "fp4kit/layout.hpp"

namespace fp4kit::cuda {

namespace {

// ---------------------------------------------------------------------------------------------
// Element loads (exact widening to FP32)
// ---------------------------------------------------------------------------------------------
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
// FP32 bits of an FP16 magnitude (sign bit clear); NaN and Inf stay >= kInfBits.
__device__ __forceinline__ uint32_t half_magnitude_bits(uint32_t h) {
  return h >= 0x7C00u ? kInfBits | (h & 0x3FFu) : __float_as_uint(__half2float(__ushort_as_half(static_cast<unsigned short>(h))));
}
template <>
__device__ __forceinline__ uint32_t chunk_max_bits<__half>(const uint4& raw) {
  const uint32_t m = __vmaxu2(__vmaxu2(raw.x & 0x7FFF7FFFu, raw.y & 0x7FFF7FFFu),
                              __vmaxu2(raw.z & 0x7FFF7FFFu, raw.w & 0x7FFF7FFFu));
  return half_magnitude_bits(max(m & 0xFFFFu, m >> 16));
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

// Programmatic dependent launch (sm_90+): the amax kernels let the cast grid launch once every
// CTA is past its loads, and the cast waits here, before its first read of their results, until
// they have finished and their writes are visible. Before sm_90 launches are plain stream order.
__device__ __forceinline__ void allow_dependent_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_primary_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
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
  allow_dependent_grid();  // this CTA's loads are done; the cast may start filling SMs
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
  allow_dependent_grid();
  acc = warp_reduce(acc);
  if (lane == 0) {
    const float amax = __uint_as_float(acc.max_bits);
    finite[r] = amax;
    if (reported) reported[r] = acc.nans ? __int_as_float(0x7fc00000) : (acc.infs ? __int_as_float(0x7f800000) : amax);
    if (acc.nans) atomicAdd(&counts[0], acc.nans);
    if (acc.infs) atomicAdd(&counts[1], acc.infs);
  }
}

// Zeroes a quantize call's accumulators: the per-tensor amax bits (null when row-scaled), the
// columnwise part's own with the RHT (else null) and the {NaN, Inf} counts.
__global__ void quantize_init_kernel(float* amax, float* amax_cw, uint32_t* counts) {
  if (threadIdx.x == 0) {
    if (amax) *amax = 0.0f;
    if (amax_cw) *amax_cw = 0.0f;
    counts[0] = 0u;
    counts[1] = 0u;
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
// The RHT's sign flips (NUMERICS §5) as XOR masks on 4-byte source words: row i of a 16-row group
// has the sign bits of its elements flipped where s_i = -1.
struct RhtSigns {
  uint32_t row_xor[16];
};

struct CastArgs {
  const void* x;
  int64_t rows, cols, row_stride;
  uint32_t tiles_c, num_tiles;  // tile columns and tiles: they fit 32 bits (the launcher checks)
  int stages;  // shared-memory tile buffers (the configuration's pipeline depth)
  PartPointers rw, cw;
  const float* amax;     // the finite amax: [1], or [rows] when row-scaled
  const float* amax_cw;  // the columnwise part's: the amax after the transform with the RHT, else amax
  uint64_t sr_seed, sr_offset;
  RhtSigns rht;          // with the RHT
};

// What the cast needs of an input type: elements per 16-byte chunk, element e of a chunk (or of a
// 4-byte word) as FP32, and the FP32 bits of a 16-bit magnitude (NaN and Inf stay >= kInfBits).
template <typename T>
struct In;
template <>
struct In<__nv_bfloat16> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float of_word(uint32_t w, int e) { return __uint_as_float(e ? (w & 0xFFFF0000u) : (w << 16)); }
  static __device__ __forceinline__ uint32_t mag_bits(uint32_t h) { return h << 16; }
  // Two FP32 values rounded (RNE) to this type, as one word of two columns.
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
};
template <>
struct In<__half> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float of_word(uint32_t w, int e) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(e ? (w >> 16) : (w & 0xFFFFu))));
  }
  static __device__ __forceinline__ uint32_t mag_bits(uint32_t h) { return half_magnitude_bits(h); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
};
template <>
struct In<float> {
  static constexpr int kVec = 4;
  static __device__ __forceinline__ float of_word(uint32_t w, int) { return __uint_as_float(w); }
  static __device__ __forceinline__ uint32_t pack2(float v, float) { return __float_as_uint(v); }
};

// detail::walsh_hadamard16's butterflies in its order, unrolled for registers.
__device__ __forceinline__ void butterflies16(float (&v)[16]) {
#pragma unroll
  for (int h = 1; h < 16; h <<= 1) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      if ((i & h) == 0) {
        const float p = v[i], q = v[i + h];
        v[i] = p + q;
        v[i + h] = p - q;
      }
    }
  }
}

// The RHT of one column unit in place (NUMERICS §5): the 16 words of a 16-row group (row i in
// word i, one or two columns each). Every column is transformed in FP32 with the contract's
// butterflies and rounded back to T (RNE), so that the words read as T again.
template <typename T>
__device__ __forceinline__ void rht_unit(uint32_t (&w)[16], const RhtSigns& signs) {
  constexpr int kCols = 4 / static_cast<int>(sizeof(T));
  float v[kCols][16];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const uint32_t flipped = w[i] ^ signs.row_xor[i];
#pragma unroll
    for (int e = 0; e < kCols; ++e) v[e][i] = In<T>::of_word(flipped, e);
  }
#pragma unroll
  for (int e = 0; e < kCols; ++e) {
    butterflies16(v[e]);
#pragma unroll
    for (int i = 0; i < 16; ++i) v[e][i] = 0.25f * v[e][i];
  }
#pragma unroll
  for (int i = 0; i < 16; ++i) w[i] = In<T>::pack2(v[0][i], v[kCols - 1][i]);
}

__device__ __forceinline__ uint32_t word_of(const uint4& r, int i) {
  return i == 0 ? r.x : (i == 1 ? r.y : (i == 2 ? r.z : r.w));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  // src-size 0 zero-fills the 16 bytes. The memory clobber keeps the compiler from moving reads
  // of the buffer being refilled past the copy.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `pending` of this thread's newest copy groups are still in flight.
__device__ __forceinline__ void cp_async_wait(int pending) {
  if (pending <= 0) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  else if (pending == 1) asm volatile("cp.async.wait_group 1;\n" ::: "memory");
  else asm volatile("cp.async.wait_group 2;\n" ::: "memory");
}

// Random byte k of word w as the float 2^23 + byte: one byte permute.
__device__ __forceinline__ float random_2p23(uint32_t w, int k) {
  return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | static_cast<uint32_t>(k)));
}

// Rounds y = element * senc (NUMERICS §2, §8) to E2M1 bits (low nibble = code, bits 4..15 zero);
// `rnd` is the element's random word and `k` its byte there.
template <bool kSr>
__device__ __forceinline__ uint32_t encode_one(float y, uint32_t rnd, int k) {
  if constexpr (kSr) return detail::e2m1_sr_bits_2p23(y, random_2p23(rnd, k));
  else return detail::e2m1_rne_bits(y);
}

// Encodes the 8 (or 4) consecutive elements of a 16-byte chunk of a block; element e uses byte
// e%4 of rnd[e/4].
template <typename T, bool kSr>
__device__ __forceinline__ uint32_t encode_chunk(const uint4& raw, float senc, const uint32_t* rnd) {
  constexpr int kVec = In<T>::kVec;
  uint32_t t[kVec];
#pragma unroll
  for (int e = 0; e < kVec; ++e) {
    const uint32_t w = word_of(raw, sizeof(T) == 4 ? e : e >> 1);
    t[e] = encode_one<kSr>(In<T>::of_word(w, e & 1) * senc, kSr ? rnd[e >> 2] : 0u, e & 3);
  }
  if constexpr (kVec == 8) return detail::pack_nibbles(t);
  else return detail::pack_nibbles4(t);
}

// Stores 8 bytes: one vector store where the address allows it.
__device__ __forceinline__ void store8(uint8_t* dst, uint2 v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint2*>(dst) = v;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      dst[i] = static_cast<uint8_t>(v.x >> (8 * i));
      dst[4 + i] = static_cast<uint8_t>(v.y >> (8 * i));
    }
  }
}

// A tile buffer holds kTileRows rows of 512 bytes. The columnwise readers of one warp take 8 (or
// 16) consecutive column words in each of the tile's 16-row groups, so the 16-byte chunks of
// group g sit with their index XORed by g * (8 / groups): every group lands on its own banks.
template <int kGroups>
__device__ __forceinline__ int tile_chunk_offset(int row, int chunk) {
  return row * kCastRowBytes + ((chunk ^ (((row >> 4) & (kGroups - 1)) * (8 / kGroups))) << 4);
}

// A persistent grid of CTAs streams tiles of kTileRows rows x 512 bytes of x, last tile first (the
// amax pass just read the end of x, so those tiles are still in L2), through `stages` shared
// buffers filled by cp.async: while one tile is encoded, the next stages-1 are in flight, and one
// barrier per tile both publishes a tile and frees the buffer of the one before.
// Each thread encodes whole blocks straight from the shared tile:
//  - columnwise: units of one 4-byte column word (2 columns of a 16-bit type, 1 of f32) over one
//    16-row group; the groups' units of a word sit in neighbouring lanes, so that the 8-byte
//    results of one column leave as one contiguous run of 8 * groups bytes (a whole 32-byte sector
//    with 64-row tiles);
//  - 2D: the units' maxima meet in shared memory, one thread per 16x16 block turns them into its
//    scale, and both directions read it (two more barriers);
//  - rowwise: one 16-element block of one row (2 or 4 chunks).
//  - with the RHT (kRht), each columnwise unit is transformed in place (rht_unit) before its maxima
//    and encoding: the columnwise output is that of RHT(x^T), the rowwise output that of x.
template <int kTileRows, typename T, bool kRow, bool kCol, bool k2D, bool kSr, bool kRowScaled, bool kRht = false>
__global__ void __launch_bounds__(cast_threads(kTileRows), kTileRows == 128 ? 1 : (kTileRows == 64 ? 2 : 3))
    cast_kernel(const CastArgs a) {
  constexpr int kCastThreads = cast_threads(kTileRows);
  constexpr int kVec = In<T>::kVec;
  constexpr int kTileCols = cast_tile_cols(sizeof(T));
  constexpr int kBlocksPerRow = kTileCols / 16;
  constexpr int kChunksPerBlock = 16 / kVec;
  constexpr int kColsPerWord = 4 / static_cast<int>(sizeof(T));
  constexpr int kWordsPerRow = kCastRowBytes / 4;
  constexpr int kGroups = kTileRows / 16;
  constexpr int kColUnits = kWordsPerRow * kGroups / kCastThreads;            // per thread
  constexpr int kRowSteps = kTileRows * kBlocksPerRow / kCastThreads;         // per thread
  constexpr int kCopySteps = kTileRows * 32 / kCastThreads;                   // 16-byte copies per thread
  constexpr int kCopyRows = kCastThreads / 32;                                // rows between them
  constexpr int kWordsPer2d = 16 / kColsPerWord;                              // column words of a 16x16 block
  static_assert(kColUnits * kCastThreads == kWordsPerRow * kGroups, "whole columnwise units per thread");
  static_assert(kRowSteps * kCastThreads == kTileRows * kBlocksPerRow, "whole rowwise blocks per thread");
  static_assert(kGroups * kBlocksPerRow * 8 <= cast_scale_table_bytes(kTileRows), "2D scale table");
  static_assert(kGroups * kWordsPerRow * 4 <= cast_unit_max_bytes(kTileRows), "2D unit maxima");
  static_assert(!kRht || (kCol && !k2D && !kRowScaled), "the RHT is columnwise, 1D, with a global scale");
  extern __shared__ __align__(128) unsigned char smem[];
  const int t = threadIdx.x, lane = t & 31;
  const int stages = a.stages;
  const int64_t padded_rows = (a.rows + 15) / 16 * 16;
  const int64_t rw_blocks = a.cols / 16, cw_blocks = padded_rows / 16;
  const T* x = static_cast<const T*>(a.x);
  const int64_t stage_bytes = cast_stage_bytes(kTileRows);
  float* senc_lut = reinterpret_cast<float*>(smem + stages * stage_bytes);
  uint2* scale_2d = reinterpret_cast<uint2*>(smem + stages * stage_bytes + kCastScaleLutBytes);
  uint32_t* unit_max =
      reinterpret_cast<uint32_t*>(smem + stages * stage_bytes + kCastScaleLutBytes + cast_scale_table_bytes(kTileRows));
  // With the RHT and both outputs the columnwise part has its own global scale, hence its own table
  // (where the 2D pass keeps its maxima: no 2D with the RHT). Columnwise alone, the tensor's amax
  // is already the post-transform one (the launcher passes it twice) and one table serves.
  constexpr bool kOwnCwTable = kRht && kRow;
  float* senc_lut_cw = kOwnCwTable ? reinterpret_cast<float*>(unit_max) : senc_lut;
  const bool rw_vec8 = (reinterpret_cast<uintptr_t>(a.rw.data) & 7u) == 0 && a.rw.data_stride % 8 == 0;
  const bool cw_vec8 = (reinterpret_cast<uintptr_t>(a.cw.data) & 7u) == 0 && a.cw.data_stride % 8 == 0;
  const bool rw_swizzled = a.rw.scales_swizzled != nullptr, cw_swizzled = a.cw.scales_swizzled != nullptr;
  // The output strides fit 32 bits (the launcher checks): a block's address is one 32x32->64-bit
  // multiply-add from its tile's base.
  const uint32_t rw_data_stride = static_cast<uint32_t>(a.rw.data_stride), rw_scale_stride = static_cast<uint32_t>(a.rw.scale_stride);
  const uint32_t cw_data_stride = static_cast<uint32_t>(a.cw.data_stride), cw_scale_stride = static_cast<uint32_t>(a.cw.scale_stride);

  // A cursor over this CTA's tiles, counted from the last: k0, k0 - G, k0 - 2G, ... (G = grid
  // size), as tile row and column; one division at the start, then a subtraction per step.
  struct Cursor {
    int32_t tr, tc;  // tr < 0: no tile left
  };
  const uint32_t G = gridDim.x;
  const int32_t g_rows = static_cast<int32_t>(G / a.tiles_c), g_cols = static_cast<int32_t>(G % a.tiles_c);
  const auto step = [&](Cursor& q) {
    q.tc -= g_cols;
    q.tr -= g_rows;
    if (q.tc < 0) {
      q.tc += static_cast<int32_t>(a.tiles_c);
      q.tr -= 1;
    }
  };

  // Copies the cursor's tile (if any) into buffer s; always commits a group, so that the wait
  // below counts groups the same way on every thread. A warp copies one 512-byte row per step;
  // rows past R and columns past C arrive as zeros (no amax changes, and exactly the zero padding
  // of the last columnwise block).
  const int64_t copy_stride = int64_t{kCopyRows} * a.row_stride;
  const auto issue = [&](const Cursor& q, int s) {
    if (q.tr >= 0) {
      const int64_t c = int64_t{q.tc} * kTileCols + int64_t{lane} * kVec;
      const int64_t r = int64_t{q.tr} * kTileRows + (t >> 5);
      const int64_t rows_left = a.rows - r;  // this thread's first row and those below it
      const bool col_ok = c < a.cols;
      const T* src = x + r * a.row_stride + c;
      unsigned char* dst = smem + s * stage_bytes;
#pragma unroll
      for (int j = 0; j < kCopySteps; ++j) {
        const bool valid = col_ok && j * kCopyRows < rows_left;
        cp_async16(dst + tile_chunk_offset<kGroups>((t >> 5) + j * kCopyRows, lane), valid ? static_cast<const void*>(src) : a.x,
                   valid);
        src += copy_stride;
      }
    }
    cp_async_commit();
  };

  // The first stages-1 tiles go out before the wait for the amax pass (on sm_90 this cast is
  // launched as its programmatic dependent, so these copies overlap the amax pass's tail).
  // Tile k0 = num_tiles - 1 - blockIdx.x >= 0: the grid has at most num_tiles CTAs.
  const uint32_t k0 = a.num_tiles - 1u - blockIdx.x;
  const Cursor start{static_cast<int32_t>(k0 / a.tiles_c), static_cast<int32_t>(k0 % a.tiles_c)};
  Cursor load = start;
  for (int s = 0; s + 1 < stages; ++s) {
    issue(load, s);
    step(load);
  }
  wait_for_primary_grid();

  const detail::GlobalScale g_tensor = kRowScaled ? detail::GlobalScale{} : detail::global_scale(a.amax[0]);
  const float mult_tensor = g_tensor.s_enc * detail::kOneSixth;
  // The columnwise part's global scale: its own with the RHT (the amax after the transform).
  const detail::GlobalScale g_cw = kOwnCwTable ? detail::global_scale(a.amax_cw[0]) : g_tensor;
  const float mult_cw = g_cw.s_enc * detail::kOneSixth;
  // The encode scale of every E4M3 scale byte the cast can produce (0x00..0x7E; 0x7F is NaN):
  // NUMERICS §2's senc_b = min(1 / (sdec_b * S_dec), FLT_MAX) depends on the byte and the
  // tensor's S_dec only, so a CTA computes the 127 values once, with the reference's own formula,
  // and each block looks its scale up instead of dividing. (Row-scaled input has an S_dec per
  // row and divides.) The first barrier of the loop publishes the table.
  if constexpr (!kRowScaled) {
    for (int i = t; i < 128; i += blockDim.x) senc_lut[i] = detail::block_encode_scale(static_cast<uint8_t>(i), g_tensor);
  }
  if constexpr (kOwnCwTable) {
    for (int i = t; i < 128; i += blockDim.x) senc_lut_cw[i] = detail::block_encode_scale(static_cast<uint8_t>(i), g_cw);
  }
  // Without the RHT both outputs share the tensor's amax: the columnwise part gets its copy here.
  if constexpr (kRow && kCol && !kRht) {
    if (blockIdx.x == 0 && t == 0) a.cw.amax[0] = a.amax[0];
  }

  // Scale byte (plus 0x100 when the block holds NaN or Inf, §9) and encode scale of a block whose
  // maximum |element| has FP32 bits `m`, under global scale g (mult = g.s_enc / 6 as the reference
  // rounds it). The E4M3 rounding is the hardware conversion (cvt.rn.satfinite.e4m3x2.f32 from
  // sm_89), which the GPU tests check against the reference codec on every FP32 value; senc_b is
  // the table's entry, or, with a global scale per row, the reference's formula itself.
  const auto scale_of = [&](uint32_t m, const detail::GlobalScale& g, float mult, const float* lut, uint32_t& sbyte,
                            float& senc) {
    const uint32_t byte = __nv_cvt_float_to_fp8(fminf(__uint_as_float(m) * mult, kFloatMax), __NV_SATFINITE, __NV_E4M3);
    if constexpr (kRowScaled) senc = detail::block_encode_scale(static_cast<uint8_t>(byte), g);
    else senc = lut[byte];
    sbyte = byte | (m >= kInfBits ? 0x100u : 0u);
  };
  // Column maxima of a unit's 16 words as FP32 bits (16-bit types: both columns side by side).
  const auto unit_maxima = [&](const uint32_t (&w)[16], uint32_t (&cmax)[kColsPerWord]) {
    uint32_t acc = 0u;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      if constexpr (sizeof(T) == 4) acc = max(acc, w[i] & 0x7FFFFFFFu);
      else acc = __vmaxu2(acc, w[i] & 0x7FFF7FFFu);
    }
    if constexpr (sizeof(T) == 4) {
      cmax[0] = acc;
    } else {
      cmax[0] = In<T>::mag_bits(acc & 0xFFFFu);
      cmax[kColsPerWord - 1] = In<T>::mag_bits(acc >> 16);
    }
  };

  const auto process = [&](const unsigned char* buf, const Cursor& q) {
    const int64_t r0 = int64_t{q.tr} * kTileRows, c0 = int64_t{q.tc} * kTileCols;
    // The tile's rows and columns inside x (both > 0), and its outputs' bases.
    const int rows_here = static_cast<int>(min(a.rows - r0, int64_t{kTileRows}));
    const int cols_here = static_cast<int>(min(a.cols - c0, int64_t{kTileCols}));
    uint8_t* const rw_data = kRow ? a.rw.data + r0 * a.rw.data_stride + (c0 >> 1) : nullptr;
    uint8_t* const rw_scales = kRow ? a.rw.scales + r0 * a.rw.scale_stride + (c0 >> 4) : nullptr;
    uint8_t* const cw_data = kCol ? a.cw.data + c0 * a.cw.data_stride + (r0 >> 1) : nullptr;
    uint8_t* const cw_scales = kCol ? a.cw.scales + c0 * a.cw.scale_stride + (r0 >> 4) : nullptr;
    // A unit is read (and transformed, with the RHT) and encoded before the next: fewer live
    // registers (the transform's FP32 values leave none for another unit's words). The 2D pass,
    // which needs every unit's maxima before its barrier, and plain SR, which spills that way (and
    // ran 9% slower on the H100), read all their words first.
    constexpr bool kUnits = kCol || k2D;
    constexpr bool kUnitByUnit = !k2D && (kRht || !kSr);
    uint32_t w[kUnits ? kColUnits : 1][16];
    uint32_t cmax[kUnits ? kColUnits : 1][kColsPerWord];
    const auto load_unit_words = [&](int j) {
      const int u = t + j * kCastThreads, grp = u % kGroups, wd = u / kGroups;
      const uint32_t* src = reinterpret_cast<const uint32_t*>(buf + tile_chunk_offset<kGroups>(16 * grp, wd >> 2)) + (wd & 3);
#pragma unroll
      for (int i = 0; i < 16; ++i) w[j][i] = src[i * kWordsPerRow];
    };
    if constexpr (kUnits && !kUnitByUnit) {
#pragma unroll
      for (int j = 0; j < kColUnits; ++j) load_unit_words(j);
#pragma unroll
      for (int j = 0; j < kColUnits; ++j) unit_maxima(w[j], cmax[j]);
    }

    // 2D: the units' maxima meet in shared memory; thread (g, cb) reduces 16x16 block (g, cb) to
    // its scale; both directions read it.
    if constexpr (k2D) {
#pragma unroll
      for (int j = 0; j < kColUnits; ++j) {
        const int u = t + j * kCastThreads;
        unit_max[u] = kColsPerWord == 2 ? max(cmax[j][0], cmax[j][kColsPerWord - 1]) : cmax[j][0];
      }
      __syncthreads();
      if (t < kGroups * kBlocksPerRow) {
        const int grp = t / kBlocksPerRow, cb = t % kBlocksPerRow;
        uint32_t m = 0u;
#pragma unroll
        for (int i = 0; i < kWordsPer2d; ++i) m = max(m, unit_max[(cb * kWordsPer2d + i) * kGroups + grp]);
        uint32_t sbyte;
        float senc;
        scale_of(m, g_tensor, mult_tensor, senc_lut, sbyte, senc);
        scale_2d[t] = make_uint2(sbyte, __float_as_uint(senc));
      }
      __syncthreads();
    }

    if constexpr (kCol) {
#pragma unroll
      for (int j = 0; j < kColUnits; ++j) {
        const int u = t + j * kCastThreads, grp = u % kGroups, wd = u / kGroups;
        if (wd * kColsPerWord >= cols_here || 16 * grp >= rows_here) continue;
        if constexpr (kUnitByUnit) {
          load_unit_words(j);
          if constexpr (kRht) rht_unit<T>(w[j], a.rht);
          unit_maxima(w[j], cmax[j]);
        }
        const int64_t col = c0 + int64_t{wd} * kColsPerWord;  // the unit's first column
        const int64_t grow = r0 + 16 * grp;                   // its blocks' first row
#pragma unroll
        for (int e = 0; e < kColsPerWord; ++e) {
          uint32_t sbyte;
          float senc;
          if constexpr (k2D) {
            const uint2 s = scale_2d[grp * kBlocksPerRow + wd / kWordsPer2d];
            sbyte = s.x;
            senc = __uint_as_float(s.y);
          } else {
            scale_of(cmax[j][e], g_cw, mult_cw, senc_lut_cw, sbyte, senc);
          }
          detail::Philox4x32 rnd{};
          if constexpr (kSr) {
            rnd = detail::sr_block_random(a.sr_seed, a.sr_offset, static_cast<uint64_t>((col + e) * cw_blocks + (grow >> 4)), true);
          }
          uint32_t codes[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            uint32_t qn[8];
#pragma unroll
            for (int i = 0; i < 8; ++i) {
              qn[i] = encode_one<kSr>(In<T>::of_word(w[j][8 * h + i], e) * senc, rnd.v[2 * h + (i >> 2)], i & 3);
            }
            codes[h] = detail::pack_nibbles(qn);
          }
          const bool bad = sbyte >= 0x100u;
          const uint8_t byte = bad ? kE4m3Nan : static_cast<uint8_t>(sbyte);
          const uint32_t lc = static_cast<uint32_t>(wd * kColsPerWord + e);  // column in the tile
          store8(cw_data + static_cast<uint64_t>(lc) * cw_data_stride + 8 * grp,
                 bad ? make_uint2(0u, 0u) : make_uint2(codes[0], codes[1]), cw_vec8);
          cw_scales[static_cast<uint64_t>(lc) * cw_scale_stride + grp] = byte;
          if (cw_swizzled) a.cw.scales_swizzled[swizzled_scale_offset(col + e, grow >> 4, cw_blocks)] = byte;
        }
      }
    }

    uint4 rraw[kRow ? kRowSteps : 1][kChunksPerBlock];
    if constexpr (kRow) {
#pragma unroll
      for (int j = 0; j < kRowSteps; ++j) {
        const int q2 = t + j * kCastThreads, row = q2 / kBlocksPerRow, b = q2 % kBlocksPerRow;
#pragma unroll
        for (int h = 0; h < kChunksPerBlock; ++h) {
          rraw[j][h] = *reinterpret_cast<const uint4*>(buf + tile_chunk_offset<kGroups>(row, b * kChunksPerBlock + h));
        }
      }
    }
    if constexpr (kRow) {
#pragma unroll
      for (int j = 0; j < kRowSteps; ++j) {
        const int q2 = t + j * kCastThreads, row = q2 / kBlocksPerRow, b = q2 % kBlocksPerRow;
        if (row >= rows_here || 16 * b >= cols_here) continue;
        const int64_t grow = r0 + row, gcol = c0 + 16 * b;
        const uint4 (&raw)[kChunksPerBlock] = rraw[j];
        uint32_t sbyte;
        float senc;
        if constexpr (k2D) {
          const uint2 s = scale_2d[(row >> 4) * kBlocksPerRow + b];
          sbyte = s.x;
          senc = __uint_as_float(s.y);
        } else {
          uint32_t m = 0u;
#pragma unroll
          for (int h = 0; h < kChunksPerBlock; ++h) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              if constexpr (sizeof(T) == 4) m = max(m, word_of(raw[h], i) & 0x7FFFFFFFu);
              else m = __vmaxu2(m, word_of(raw[h], i) & 0x7FFF7FFFu);
            }
          }
          if constexpr (sizeof(T) != 4) m = In<T>::mag_bits(max(m & 0xFFFFu, m >> 16));
          if constexpr (kRowScaled) {
            const detail::GlobalScale g = detail::global_scale(a.amax[grow]);
            scale_of(m, g, g.s_enc * detail::kOneSixth, senc_lut, sbyte, senc);
          } else {
            scale_of(m, g_tensor, mult_tensor, senc_lut, sbyte, senc);
          }
        }
        detail::Philox4x32 rnd{};
        if constexpr (kSr) {
          rnd = detail::sr_block_random(a.sr_seed, a.sr_offset, static_cast<uint64_t>(grow * rw_blocks + (gcol >> 4)), false);
        }
        uint32_t part[kChunksPerBlock];
#pragma unroll
        for (int h = 0; h < kChunksPerBlock; ++h) part[h] = encode_chunk<T, kSr>(raw[h], senc, rnd.v + h * (kVec / 4));
        uint2 codes;
        if constexpr (kChunksPerBlock == 2) codes = make_uint2(part[0], part[1]);
        else codes = make_uint2(part[0] | (part[1] << 16), part[2] | (part[3] << 16));
        const bool bad = sbyte >= 0x100u;
        const uint8_t byte = bad ? kE4m3Nan : static_cast<uint8_t>(sbyte);
        store8(rw_data + static_cast<uint64_t>(static_cast<uint32_t>(row)) * rw_data_stride + 8 * b, bad ? make_uint2(0u, 0u) : codes,
               rw_vec8);
        rw_scales[static_cast<uint64_t>(static_cast<uint32_t>(row)) * rw_scale_stride + b] = byte;
        if (rw_swizzled) a.rw.scales_swizzled[swizzled_scale_offset(grow, gcol >> 4, rw_blocks)] = byte;
      }
    }
  };

  Cursor proc = start;
  for (int s_proc = 0, s_load = stages - 1; proc.tr >= 0;) {
    cp_async_wait(stages - 2);  // this thread's copies of the tile have landed
    __syncthreads();            // everyone's have, and everyone is done with the previous tile's buffer
    issue(load, s_load);
    step(load);
    process(smem + s_proc * stage_bytes, proc);
    step(proc);
    s_load = s_proc;  // the buffer just encoded is the next to refill
    s_proc = s_proc + 1 == stages ? 0 : s_proc + 1;
  }
}


// ---------------------------------------------------------------------------------------------
// RHT: the amax pass of the fused cast, and the transform of the unfused path
// ---------------------------------------------------------------------------------------------
// Both walk x in column units (one 4-byte word: 1 or 2 columns, over one 16-row group), a CTA per
// group at a time and its threads over the group's words, so that a warp reads 128 contiguous
// bytes of each row. Rows past R read as zeros: the last, partial group is transformed with the
// contract's zero padding.
struct RhtWalk {
  const void* x;
  int64_t rows, row_stride;  // row_stride in elements; rows start on 4 bytes (the registry checks)
  int64_t groups;            // ceil(rows / 16)
  uint32_t words;            // 4-byte words per row
  RhtSigns signs;
};

template <typename T>
__device__ __forceinline__ void load_unit(const RhtWalk& a, int64_t group, uint32_t word, uint32_t (&w)[16]) {
  const int64_t r0 = group * 16;
  const int64_t word_stride = a.row_stride * static_cast<int64_t>(sizeof(T)) / 4;
  const uint32_t* src = reinterpret_cast<const uint32_t*>(static_cast<const T*>(a.x) + r0 * a.row_stride) + word;
#pragma unroll
  for (int i = 0; i < 16; ++i) w[i] = r0 + i < a.rows ? __ldg(src + i * word_stride) : 0u;
}

// The input's statistics of a unit: finite amax and {NaN, Inf} counts.
template <typename T>
__device__ __forceinline__ void add_unit(AmaxAcc& acc, const uint32_t (&w)[16]) {
#pragma unroll
  for (int i = 0; i < 16; i += 4) acc.add_chunk<T>(make_uint4(w[i], w[i + 1], w[i + 2], w[i + 3]));
}

// Block-wide: warp maxima and sums, then one atomic per CTA and output.
__device__ __forceinline__ void reduce_to_global(AmaxAcc acc, uint32_t post, uint32_t* pre_bits, uint32_t* post_bits,
                                                 uint32_t* counts) {
  acc = warp_reduce(acc);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) post = max(post, __shfl_xor_sync(0xffffffffu, post, o));
  __shared__ AmaxAcc warps[kAmaxThreads / 32];
  __shared__ uint32_t warp_post[kAmaxThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    warps[warp] = acc;
    warp_post[warp] = post;
  }
  __syncthreads();
  if (warp == 0) {
    acc = lane < kAmaxThreads / 32 ? warps[lane] : AmaxAcc{};
    post = lane < kAmaxThreads / 32 ? warp_post[lane] : 0u;
    acc = warp_reduce(acc);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) post = max(post, __shfl_xor_sync(0xffffffffu, post, o));
    if (lane == 0) {
      if (pre_bits) atomicMax(pre_bits, acc.max_bits);
      if (post_bits) atomicMax(post_bits, post);
      if (counts && acc.nans) atomicAdd(&counts[0], acc.nans);
      if (counts && acc.infs) atomicAdd(&counts[1], acc.infs);
    }
  }
}

// The largest |v| over the finite butterfly outputs v of one column of a 16-row group (before the
// 1/4 and the rounding to T: both are monotone, so the amax of the rounded values is the rounding
// of this maximum), limited to the v whose rounded value is finite (an FP16 one can overflow).
template <typename T>
__device__ __forceinline__ float rht_column_max(const uint4 (&raw)[16], int word, int e, const RhtSigns& signs) {
  float v[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = In<T>::of_word(word_of(raw[i], word) ^ signs.row_xor[i], e);
  butterflies16(v);
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) m = fmaxf(m, fabsf(v[i]));  // NaN never wins
  const auto finite_rounded = [](float u) {
    return (__float_as_uint(In<T>::of_word(In<T>::pack2(0.25f * u, 0.0f), 0)) & 0x7FFFFFFFu) < kInfBits;
  };
  if (finite_rounded(m)) return m;
  m = 0.0f;  // an Inf among the v, or an FP16 overflow: the slow way
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    if (finite_rounded(v[i])) m = fmaxf(m, fabsf(v[i]));
  }
  return m;
}

// One read of x gives the amax before the transform (rowwise part; pre_bits may be null), the amax
// of the rounded transformed values (columnwise part, NUMERICS §5) and x's counts. A CTA's work
// item is one 16-row group and 256 of its 16-byte column chunks (the fused path's rows are whole
// chunks), a chunk per thread: 16 loads of 16 bytes in flight, then 8 (or 4) columns transformed.
template <typename T>
__global__ void __launch_bounds__(kAmaxThreads) amax_rht_kernel(const RhtWalk a, uint32_t* pre_bits, uint32_t* post_bits,
                                                               uint32_t* counts) {
  const uint32_t chunks = a.words / 4;
  const uint32_t items_per_group = (chunks + kAmaxThreads - 1) / kAmaxThreads;
  const int64_t chunk_stride = a.row_stride * static_cast<int64_t>(sizeof(T)) / 16;
  AmaxAcc acc;
  float post = 0.0f;
  for (int64_t item = blockIdx.x; item < a.groups * items_per_group; item += gridDim.x) {
    const int64_t g = item / items_per_group;
    const uint32_t c = static_cast<uint32_t>(item - g * items_per_group) * kAmaxThreads + threadIdx.x;
    if (c >= chunks) continue;
    const int64_t r0 = g * 16;
    const uint4* src = reinterpret_cast<const uint4*>(static_cast<const T*>(a.x) + r0 * a.row_stride) + c;
    uint4 raw[16];
    if (r0 + 16 <= a.rows) {
#pragma unroll
      for (int i = 0; i < 16; ++i) raw[i] = __ldg(src + i * chunk_stride);
    } else {  // the last group: rows past R are the zero padding
#pragma unroll
      for (int i = 0; i < 16; ++i) raw[i] = r0 + i < a.rows ? __ldg(src + i * chunk_stride) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) acc.add_chunk<T>(raw[i]);
#pragma unroll
    for (int word = 0; word < 4; ++word) {
#pragma unroll
      for (int e = 0; e < 4 / static_cast<int>(sizeof(T)); ++e) post = fmaxf(post, rht_column_max<T>(raw, word, e, a.signs));
    }
  }
  allow_dependent_grid();  // this CTA's loads are done; the cast may start filling SMs
  const uint32_t post_rounded = __float_as_uint(In<T>::of_word(In<T>::pack2(0.25f * post, 0.0f), 0));
  reduce_to_global(acc, post_rounded, pre_bits, post_bits, counts);
}

// The unfused path's transform: y[groups * 16, cols] (dense) = the transformed groups of x, rounded
// to T; counts (may be null) receives x's {NaN, Inf} counts.
template <typename T>
__global__ void __launch_bounds__(kAmaxThreads) rht_rows_kernel(const RhtWalk a, T* __restrict__ y, uint32_t* counts) {
  AmaxAcc acc;
  for (int64_t g = blockIdx.x; g < a.groups; g += gridDim.x) {
    for (uint32_t wd = threadIdx.x; wd < a.words; wd += blockDim.x) {
      uint32_t w[16];
      load_unit<T>(a, g, wd, w);
      if (counts) add_unit<T>(acc, w);
      rht_unit<T>(w, a.signs);
      uint32_t* dst = reinterpret_cast<uint32_t*>(y + g * 16 * (int64_t{a.words} * 4 / static_cast<int64_t>(sizeof(T)))) + wd;
#pragma unroll
      for (int i = 0; i < 16; ++i) dst[int64_t{i} * a.words] = w[i];
    }
  }
  if (counts) reduce_to_global(acc, 0u, nullptr, nullptr, counts);
}

// ---------------------------------------------------------------------------------------------
// dequantize: one thread per 16-element block
// ---------------------------------------------------------------------------------------------
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
using CastKernel = void (*)(CastArgs);

// The mode combinations the contract allows, as a table (row-scaled is rowwise 1D RNE only).
template <int kTileRows, typename T>
CastKernel<T> pick_cast(bool row, bool col, bool two_d, bool sr, bool row_scaled) {
  if (row_scaled) return cast_kernel<kTileRows, T, true, false, false, false, true>;
#define FP4KIT_CAST(R, C, D)                                                                                   \
  if (row == R && col == C && two_d == D) {                                                                    \
    return sr ? cast_kernel<kTileRows, T, R, C, D, true, false> : cast_kernel<kTileRows, T, R, C, D, false, false>; \
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

// With the RHT: columnwise (wgrad) or both, 1D, RNE or SR.
template <int kTileRows, typename T>
CastKernel<T> pick_rht_cast(bool row, bool sr) {
  if (row) {
    return sr ? cast_kernel<kTileRows, T, true, true, false, true, false, true>
              : cast_kernel<kTileRows, T, true, true, false, false, false, true>;
  }
  return sr ? cast_kernel<kTileRows, T, false, true, false, true, false, true>
            : cast_kernel<kTileRows, T, false, true, false, false, false, true>;
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

// What a cast launch needs of its kernel on a device, asked of the runtime once (each query costs
// microseconds of host time, on every call otherwise). NOTE: process-wide on purpose, unlike the
// Context's caches: a kernel's dynamic shared-memory limit is itself process-wide CUDA state, so
// two contexts (or threads) setting it per call could lower it under each other's launches. Here
// it only ever grows, under one lock (configurations of one tile size share a kernel); the rest
// are facts of the loaded image.
struct CastLaunch {
  int ctas_per_sm = 0;
  int ptx_version = 0;
};
CastLaunch cast_launch_info(const void* kernel, int device, int threads, int64_t smem, const std::string& what) {
  struct Known {
    int ptx_version = -1;
    int64_t smem_limit = 0;             // the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize
    std::map<int64_t, int> ctas_per_sm;  // by dynamic shared memory
  };
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, Known> known_kernels;
  const std::lock_guard<std::mutex> lock(mutex);
  Known& k = known_kernels[{kernel, device}];
  if (k.ptx_version < 0) {
    cudaFuncAttributes image{};
    FP4KIT_CUDA_CHECK(cudaFuncGetAttributes(&image, kernel), what);
    k.ptx_version = image.ptxVersion;
  }
  if (smem > k.smem_limit) {
    FP4KIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
    k.smem_limit = smem;
  }
  auto it = k.ctas_per_sm.find(smem);
  if (it == k.ctas_per_sm.end()) {
    int ctas = 0;
    FP4KIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, threads, static_cast<size_t>(smem)), what);
    if (ctas < 1) detail::fail(ErrorCode::kInternal, detail::cat(what, ": ", smem, " B of shared memory leaves no CTA resident"));
    it = k.ctas_per_sm.emplace(smem, ctas).first;
  }
  return CastLaunch{it->second, k.ptx_version};
}

RhtSigns rht_signs(uint16_t mask, DType dtype) {
  RhtSigns s{};
  const uint32_t flip = dtype_size(dtype) == 4 ? 0x80000000u : 0x80008000u;  // every element of a word
  for (int i = 0; i < 16; ++i) s.row_xor[i] = detail::rht_sign_negative(mask, i) ? flip : 0u;
  return s;
}

RhtWalk rht_walk(const SourceMatrix& x, uint16_t mask) {
  RhtWalk w{};
  w.x = x.data;
  w.rows = x.rows;
  w.row_stride = x.row_stride;
  w.groups = (x.rows + 15) / 16;
  w.words = static_cast<uint32_t>(x.cols * static_cast<int64_t>(dtype_size(x.dtype)) / 4);
  w.signs = rht_signs(mask, x.dtype);
  return w;
}

// At most 8 CTAs per SM, as many as there are work items (`per_group` of them per 16-row group).
unsigned rht_grid(const RhtWalk& w, int64_t per_group, int sm_count) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(w.groups * per_group, int64_t{sm_count} * 8)));
}

// The fused path's amax pass: rowwise amax (may be null), columnwise (post-transform) amax and counts.
void amax_rht_any(const SourceMatrix& x, uint16_t mask, float* pre, float* post, uint32_t* counts, cudaStream_t s,
                  int sm_count) {
  const RhtWalk w = rht_walk(x, mask);
  if (w.groups == 0 || w.words == 0) return;
  uint32_t* pre_bits = reinterpret_cast<uint32_t*>(pre);
  uint32_t* post_bits = reinterpret_cast<uint32_t*>(post);
  const unsigned grid = rht_grid(w, (w.words / 4 + kAmaxThreads - 1) / kAmaxThreads, sm_count);
  switch (x.dtype) {
    case DType::kF32: amax_rht_kernel<float><<<grid, kAmaxThreads, 0, s>>>(w, pre_bits, post_bits, counts); break;
    case DType::kF16: amax_rht_kernel<__half><<<grid, kAmaxThreads, 0, s>>>(w, pre_bits, post_bits, counts); break;
    case DType::kBF16: amax_rht_kernel<__nv_bfloat16><<<grid, kAmaxThreads, 0, s>>>(w, pre_bits, post_bits, counts); break;
    default: detail::fail(ErrorCode::kInternal, detail::cat("RHT amax kernel: unexpected dtype ", dtype_name(x.dtype)));
  }
  FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("RHT amax kernel, ", dtype_name(x.dtype), " [", x.rows, ", ", x.cols, "]"));
}

template <typename T>
void run_cast(CastArgs args, const QuantParams& p, int tile_rows, int stages, int sm_count, int device, cudaStream_t s) {
  const bool row = has_rowwise(p.direction), col = has_columnwise(p.direction);
  const bool two_d = p.block == BlockScaling::k2D, sr = p.rounding == Rounding::kStochastic;
  CastKernel<T> kernel = nullptr;
  if (p.rht) {
    if (col && !two_d && !p.row_scaled) {
      kernel = tile_rows == 128  ? pick_rht_cast<128, T>(row, sr)
               : tile_rows == 64 ? pick_rht_cast<64, T>(row, sr)
               : tile_rows == 32 ? pick_rht_cast<32, T>(row, sr)
                                 : nullptr;
    }
  } else {
    kernel = tile_rows == 64   ? pick_cast<64, T>(row, col, two_d, sr, p.row_scaled)
             : tile_rows == 32 ? pick_cast<32, T>(row, col, two_d, sr, p.row_scaled)
                               : nullptr;
  }
  const std::string what = detail::cat("sm80 cast kernel", p.rht ? " with the RHT" : "", ", ", sizeof(T) == 4 ? "f32" : "16-bit",
                                       " input, ", tile_rows, "-row tiles, ", stages, " stages, ", direction_name(p.direction));
  if (kernel == nullptr || stages < 2 || stages > 4) {
    detail::fail(ErrorCode::kInternal, detail::cat(what, ": no instantiation for these modes"));
  }
  args.stages = stages;
  const int64_t smem = cast_smem_bytes(tile_rows, stages);
  const int threads = cast_threads(tile_rows);
  const CastLaunch launch = cast_launch_info(reinterpret_cast<const void*>(kernel), device, threads, smem, what);
  // A persistent grid: every SM full, each CTA streaming several tiles.
  const int64_t grid = std::min<int64_t>(int64_t{args.num_tiles}, int64_t{launch.ctas_per_sm} * sm_count);
  if (grid <= 0) return;
  // On sm_90+ the cast is the amax pass's programmatic dependent: it launches as the amax CTAs
  // finish their loads, sends its first tiles' copies (they read x only), and waits in the kernel
  // (wait_for_primary_grid) before it reads the amax. The loaded image waits only when it was
  // compiled for sm_90 or newer; an image JIT-compiled from older PTX is launched in plain order.
  const bool dependent_launch = launch.ptx_version >= 90;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(grid));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.dynamicSmemBytes = static_cast<size_t>(smem);
  config.stream = s;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = dependent_launch ? 1 : 0;
  FP4KIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, args), what);
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
  return kernel_image_problem(reinterpret_cast<const void*>(cast_kernel<64, __nv_bfloat16, true, false, false, false, false>),
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
                     const PartPointers& columnwise, uint32_t* nonfinite_counts, int tile_rows, int stages, int sm_count,
                     int device, void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool row = has_rowwise(params.direction), col = has_columnwise(params.direction);
  // The amax pass writes into the first present part's amax. Without the RHT the columnwise amax
  // equals it and the cast kernel copies it; with the RHT the pass writes the columnwise part's
  // own (the amax after the transform). One small kernel zeroes the accumulators (three launches
  // per call in all: every launch costs about a microsecond of GPU time).
  float* amax = row ? rowwise.amax : columnwise.amax;
  float* amax_cw = params.rht ? columnwise.amax : amax;
  quantize_init_kernel<<<1, 32, 0, s>>>(params.row_scaled ? nullptr : amax, amax_cw != amax ? amax_cw : nullptr,
                                        nonfinite_counts);
  FP4KIT_CUDA_CHECK(cudaGetLastError(), "quantize: init kernel");
  // The swizzled scales' padding (rows to 128, scale columns to 4) is zero; the cast writes every
  // byte that is not padding, so the buffer is cleared first only when there is padding.
  const auto clear_padding = [&](const PartPointers& part, int64_t rows, int64_t blocks) {
    if (part.scales_swizzled && (rows % 128 != 0 || blocks % 4 != 0)) {
      FP4KIT_CUDA_CHECK(cudaMemsetAsync(part.scales_swizzled, 0, static_cast<size_t>(swizzled_scale_bytes(rows, blocks)), s),
                        "quantize: swizzled scales");
    }
  };
  if (row) clear_padding(rowwise, x.rows, x.cols / 16);
  if (col) clear_padding(columnwise, x.cols, (x.rows + 15) / 16);
  if (params.rht) {
    amax_rht_any(x, params.rht_mask, row ? amax : nullptr, amax_cw, nonfinite_counts, s, sm_count);
  } else {
    amax_any(x, params.row_scaled, amax, nullptr, nonfinite_counts, s, sm_count);
  }
  CastArgs args{};
  args.x = x.data;
  args.rows = x.rows;
  args.cols = x.cols;
  args.row_stride = x.row_stride;
  const int64_t tile_cols = cast_tile_cols(static_cast<int>(dtype_size(x.dtype)));
  const int64_t tiles_c = (x.cols + tile_cols - 1) / tile_cols;
  const int64_t num_tiles = (x.rows + tile_rows - 1) / tile_rows * tiles_c;
  if (num_tiles >= (int64_t{1} << 31)) {
    detail::fail(ErrorCode::kShapeMismatch,
                 detail::cat("quantize: [", x.rows, ", ", x.cols, "] has ", num_tiles, " tiles; the CUDA cast takes fewer than 2^31"),
                 "quantize the tensor in slices of rows");
  }
  for (const PartPointers* part : {&rowwise, &columnwise}) {
    if (part->data_stride >= (int64_t{1} << 32) || part->scale_stride >= (int64_t{1} << 32)) {
      detail::fail(ErrorCode::kShapeMismatch,
                   detail::cat("quantize: an output row stride of ", std::max(part->data_stride, part->scale_stride),
                               " B; the CUDA cast takes strides below 2^32 B"),
                   "quantize the tensor in slices of columns");
    }
  }
  args.tiles_c = static_cast<uint32_t>(tiles_c);
  args.num_tiles = static_cast<uint32_t>(num_tiles);
  args.rw = rowwise;
  args.cw = columnwise;
  args.amax = amax;
  args.amax_cw = amax_cw;
  args.rht = rht_signs(params.rht_mask, x.dtype);
  args.sr_seed = params.sr_seed;
  args.sr_offset = params.sr_offset;
  switch (x.dtype) {
    case DType::kF32: return run_cast<float>(args, params, tile_rows, stages, sm_count, device, s);
    case DType::kF16: return run_cast<__half>(args, params, tile_rows, stages, sm_count, device, s);
    case DType::kBF16: return run_cast<__nv_bfloat16>(args, params, tile_rows, stages, sm_count, device, s);
    default: detail::fail(ErrorCode::kInternal, detail::cat("cast kernel: unexpected dtype ", dtype_name(x.dtype)));
  }
}

void launch_quantize_rht_unfused(const SourceMatrix& x, const QuantParams& params, const PartPointers& rowwise,
                                 const PartPointers& columnwise, uint32_t* nonfinite_counts, int tile_rows, int stages,
                                 int sm_count, int device, void* stream) {
  DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool row = has_rowwise(params.direction);
  const RhtWalk w = rht_walk(x, params.rht_mask);
  // The transformed x, [ceil(R/16)*16, C] dense in x's dtype, then the columnwise cast's own
  // counts (x's are what the call reports): stream-ordered memory, freed after the cast.
  const int64_t padded_rows = w.groups * 16;
  const int64_t t_bytes = (padded_rows * x.cols * static_cast<int64_t>(dtype_size(x.dtype)) + 15) / 16 * 16;
  void* buffer = nullptr;
  FP4KIT_CUDA_CHECK(cudaMallocAsync(&buffer, static_cast<size_t>(t_bytes + 16), s),
                    detail::cat("quantize (unfused RHT): the transformed tensor, ", t_bytes, " B"));
  uint32_t* t_counts = reinterpret_cast<uint32_t*>(static_cast<unsigned char*>(buffer) + t_bytes);
  QuantParams plain = params;
  plain.rht = false;
  if (row) {  // the rowwise part is the plain cast of x; its amax pass counts x's NaN and Inf
    plain.direction = Direction::kRowwise;
    launch_quantize(x, plain, rowwise, PartPointers{}, nonfinite_counts, tile_rows, stages, sm_count, device, stream);
  } else {
    FP4KIT_CUDA_CHECK(cudaMemsetAsync(nonfinite_counts, 0, 2 * sizeof(uint32_t), s), "quantize (unfused RHT)");
  }
  if (w.groups > 0 && w.words > 0) {
    const unsigned grid = rht_grid(w, 1, sm_count);
    uint32_t* counts = row ? nullptr : nonfinite_counts;
    switch (x.dtype) {
      case DType::kF32: rht_rows_kernel<float><<<grid, kAmaxThreads, 0, s>>>(w, static_cast<float*>(buffer), counts); break;
      case DType::kF16: rht_rows_kernel<__half><<<grid, kAmaxThreads, 0, s>>>(w, static_cast<__half*>(buffer), counts); break;
      case DType::kBF16:
        rht_rows_kernel<__nv_bfloat16><<<grid, kAmaxThreads, 0, s>>>(w, static_cast<__nv_bfloat16*>(buffer), counts);
        break;
      default: detail::fail(ErrorCode::kInternal, detail::cat("RHT kernel: unexpected dtype ", dtype_name(x.dtype)));
    }
    FP4KIT_CUDA_CHECK(cudaGetLastError(), detail::cat("RHT kernel, ", dtype_name(x.dtype), " [", x.rows, ", ", x.cols, "]"));
  }
  plain.direction = Direction::kColumnwise;
  const SourceMatrix t{buffer, x.dtype, padded_rows, x.cols, x.cols};
  launch_quantize(t, plain, PartPointers{}, columnwise, t_counts, tile_rows, stages, sm_count, device, stream);
  FP4KIT_CUDA_CHECK(cudaFreeAsync(buffer, s), "quantize (unfused RHT): the transformed tensor");
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
