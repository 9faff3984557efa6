// src/cuda/quantize/cast_config.hpp: the tile geometry and the ONE shared-memory formula of the
// NVFP4 cast kernel (sm80_quantize.cu). Host-only code (the registry) and the kernel both use it,
// so a configuration that the dispatcher admits is exactly what the kernel allocates. No CUDA
// header is needed to include it.
#pragma once

#include <cstdint>

#include "fp4kit/formats.hpp"  // FP4KIT_HD

namespace fp4kit::cuda {

// The cast streams tiles of `tile_rows` rows x 512 bytes of x (256 columns of a 16-bit type, 128
// of f32) through `stages` shared-memory buffers filled by cp.async, so that stages-1 tiles are
// in flight while one is encoded. Its CTAs have cast_threads(tile_rows) threads (a warp per 4
// rows, at least 8 warps), and each thread encodes whole blocks straight from the shared tile:
// column words over 16 rows (columnwise), then 16-element row blocks (rowwise). 64-row tiles let
// a column's codes leave in whole 32-byte sectors; 32-row tiles fit small shared-memory budgets;
// 128-row tiles (512 threads) fill the budget of sm_90 and sm_100 with one CTA per SM.
inline constexpr int kCastRowBytes = 512;

FP4KIT_HD constexpr int cast_threads(int tile_rows) { return tile_rows > 64 ? 4 * tile_rows : 256; }

FP4KIT_HD constexpr int cast_tile_cols(int elem_bytes) { return kCastRowBytes / elem_bytes; }

// One tile buffer.
FP4KIT_HD constexpr int64_t cast_stage_bytes(int tile_rows) { return int64_t{tile_rows} * kCastRowBytes; }

// After the buffers: the table of encode scales per E4M3 scale byte (0x00..0x7F), then per 16-row
// group the 2D scales of its 16x16 blocks (8 bytes each, 16 of them) and the 2D pass's column-word
// maxima (4 bytes each, 128 of them). The RHT kernels (1D only) keep their columnwise encode-scale
// table where the 2D pass keeps its maxima.
inline constexpr int64_t kCastScaleLutBytes = 128 * 4;
FP4KIT_HD constexpr int64_t cast_scale_table_bytes(int tile_rows) { return int64_t{tile_rows} / 16 * 16 * 8; }
FP4KIT_HD constexpr int64_t cast_unit_max_bytes(int tile_rows) { return int64_t{tile_rows} / 16 * 128 * 4; }
static_assert(cast_unit_max_bytes(16) >= kCastScaleLutBytes, "the RHT's columnwise table fits the maxima");

// Dynamic shared memory of a configuration.
FP4KIT_HD constexpr int64_t cast_smem_bytes(int tile_rows, int stages) {
  return stages * cast_stage_bytes(tile_rows) + kCastScaleLutBytes + cast_scale_table_bytes(tile_rows) +
         cast_unit_max_bytes(tile_rows);
}

// The configurations the registry offers (tile rows, stages); the dispatcher keeps those that fit
// and prefers the deeper pipeline, then the larger tile. 64x3 takes 101376 B, exactly the budget of
// sm_86/89/120; 32x3 fits 65536 B and 32x2 the 49152 B every GPU grants without the opt-in. (A
// 64x2 configuration would only serve budgets between 68608 and 101375 B; every GPU from sm_80
// on grants 101376 B or more.)
struct CastShape {
  int tile_rows, stages;
};
inline constexpr CastShape kCastShapes[] = {{64, 3}, {32, 3}, {32, 2}};

// The fused RHT cast (rowwise of x, columnwise of RHT(x^T)): the same kernel with the transform in
// its columnwise phase. 128x3 (202240 B) fills the sm_90/sm_100 budget; 64x3 fits 101376 B and
// 32x3 65536 B. No configuration goes below 32x3: under that budget the dispatcher selects the
// unfused path (transform into a buffer, then the plain cast), which still fits 49152 B.
inline constexpr CastShape kRhtCastShapes[] = {{128, 3}, {64, 3}, {32, 3}};
static_assert(cast_smem_bytes(64, 3) == 101376 && cast_smem_bytes(128, 3) <= 232448 && cast_smem_bytes(32, 3) <= 65536 &&
                  cast_smem_bytes(32, 2) <= 49152 && cast_smem_bytes(32, 3) > 49152,
              "the budgets the configurations are sized for");

}  // namespace fp4kit::cuda
