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
// in flight while one is encoded. Its CTAs have kCastThreads threads, and each thread encodes
// whole blocks straight from the shared tile: column words over 16 rows (columnwise), then
// 16-element row blocks (rowwise). 64-row tiles let a column's codes leave in whole 32-byte
// sectors; 32-row tiles fit small shared-memory budgets.
inline constexpr int kCastThreads = 256;
inline constexpr int kCastRowBytes = 512;

FP4KIT_HD constexpr int cast_tile_cols(int elem_bytes) { return kCastRowBytes / elem_bytes; }

// One tile buffer.
FP4KIT_HD constexpr int64_t cast_stage_bytes(int tile_rows) { return int64_t{tile_rows} * kCastRowBytes; }

// After the buffers: the table of encode scales per E4M3 scale byte (0x00..0x7F), the 2D scales of
// a tile's 16x16 blocks (8 bytes each, at most 4 x 16 of them) and the 2D pass's column-word
// maxima (4 bytes each, at most 4 x 128).
inline constexpr int64_t kCastScaleLutBytes = 128 * 4;
inline constexpr int64_t kCastScaleTableBytes = 4 * 16 * 8;
inline constexpr int64_t kCastUnitMaxBytes = 4 * 128 * 4;

// Dynamic shared memory of a configuration.
FP4KIT_HD constexpr int64_t cast_smem_bytes(int tile_rows, int stages) {
  return stages * cast_stage_bytes(tile_rows) + kCastScaleLutBytes + kCastScaleTableBytes + kCastUnitMaxBytes;
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

}  // namespace fp4kit::cuda
