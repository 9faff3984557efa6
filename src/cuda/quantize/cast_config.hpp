// src/cuda/quantize/cast_config.hpp: the tile geometry and the ONE shared-memory formula of the
// NVFP4 cast kernel (sm80_quantize.cu). Host-only code (the registry) and the kernel's
// static_assert both use it, so a configuration that the dispatcher admits is exactly what the
// kernel allocates. No CUDA header is needed to include it.
#pragma once

#include <cstdint>

#include "fp4kit/formats.hpp"  // FP4KIT_HD

namespace fp4kit::cuda {

// A CTA stages tiles of 64 rows x 64 columns of x. With 256 threads, each thread owns one rowwise
// 16-element block (row t/4, block t%4) and one columnwise block (column t%64, rows 16*(t/64)..).
inline constexpr int kCastTileRows = 64;
inline constexpr int kCastTileCols = 64;
inline constexpr int kCastThreads = 256;

// One staged tile row: 64 elements plus 16 bytes of padding, so that the rowwise 16-byte reads of
// a quarter-warp land in distinct banks.
FP4KIT_HD constexpr int64_t cast_tile_pitch(int elem_bytes) { return int64_t{kCastTileCols} * elem_bytes + 16; }

// Bytes of one pipeline stage: a tile of x.
FP4KIT_HD constexpr int64_t cast_stage_bytes(int elem_bytes) { return kCastTileRows * cast_tile_pitch(elem_bytes); }

// 2D scaling keeps the finite amax of every 16-element row block of the tile: 64 x 4 floats.
FP4KIT_HD constexpr int64_t cast_block_amax_bytes() { return int64_t{kCastTileRows} * (kCastTileCols / 16) * 4; }

// The columnwise output of a tile is staged before it is written, so that each column's 32 data
// bytes and 4 scale bytes leave in whole sectors: 64 x 32 + 64 x 4 bytes.
FP4KIT_HD constexpr int64_t cast_colwise_stage_bytes() { return int64_t{kCastTileCols} * (32 + 4); }

// Dynamic shared memory of a configuration with `stages` tiles in flight.
FP4KIT_HD constexpr int64_t cast_smem_bytes(int stages, int elem_bytes) {
  return stages * cast_stage_bytes(elem_bytes) + cast_block_amax_bytes() + cast_colwise_stage_bytes();
}

// The pipeline depths the registry offers (deepest first); the dispatcher keeps those that fit.
inline constexpr int kCastStageChoices[] = {4, 3, 2, 1};

}  // namespace fp4kit::cuda
