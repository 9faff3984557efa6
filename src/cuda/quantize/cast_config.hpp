// src/cuda/quantize/cast_config.hpp: the tile geometry and the ONE shared-memory formula of the
// NVFP4 cast kernel (sm80_quantize.cu). Host-only code (the registry) and the kernel's
// static_assert both use it, so a configuration that the dispatcher admits is exactly what the
// kernel allocates. No CUDA header is needed to include it.
#pragma once

#include <cstdint>

#include "fp4kit/formats.hpp"  // FP4KIT_HD

namespace fp4kit::cuda {

// The cast works in registers: a thread loads 16 rows x 16 bytes of x (8 elements of a 16-bit
// type, 4 of f32), so a warp covers a band of 16 rows x 512 bytes and a CTA stacks `warps` bands:
// a tile of 16*warps rows x (512 / element bytes) columns.
//  - rowwise: a 16-element block is held by 16 / (16 / element bytes) neighbouring lanes (2 or 4),
//    which combine their partial maxima by shuffles;
//  - columnwise: a thread holds whole blocks (16 rows of each of its columns).
// Shared memory holds, per thread, the 16 chunks of the next tile in flight (cp.async), and stages
// the columnwise output of a tile so that each column's bytes leave in whole sectors; the staging
// is double-buffered, hence one barrier per tile.
inline constexpr int kCastBandRows = 16;
inline constexpr int kCastBandBytes = 512;

FP4KIT_HD constexpr int cast_tile_rows(int warps) { return kCastBandRows * warps; }
FP4KIT_HD constexpr int cast_tile_cols(int elem_bytes) { return kCastBandBytes / elem_bytes; }

// One staging buffer: per tile column, `warps` 8-byte data chunks and `warps` scale bytes.
FP4KIT_HD constexpr int64_t cast_stage_bytes(int warps, int elem_bytes) {
  return int64_t{cast_tile_cols(elem_bytes)} * warps * (8 + 1);
}

// The in-flight chunks of one CTA: 16 per thread.
FP4KIT_HD constexpr int64_t cast_inflight_bytes(int warps) { return int64_t{32} * warps * 16 * 16; }

// The table of encode scales per E4M3 scale byte (0x00..0x7F), after the in-flight chunks.
inline constexpr int64_t kCastScaleLutBytes = 128 * 4;
FP4KIT_HD constexpr int64_t cast_lut_offset(int warps, int elem_bytes) {
  return 2 * cast_stage_bytes(warps, elem_bytes) + cast_inflight_bytes(warps);
}

// Dynamic shared memory of a configuration: two staging buffers, the in-flight chunks, the table.
FP4KIT_HD constexpr int64_t cast_smem_bytes(int warps, int elem_bytes) {
  return cast_lut_offset(warps, elem_bytes) + kCastScaleLutBytes;
}

// The CTA sizes the registry offers (warps per CTA, largest tile first); the dispatcher keeps
// those that fit.
inline constexpr int kCastWarpChoices[] = {8, 4};

}  // namespace fp4kit::cuda
