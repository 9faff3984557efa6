// fp4kit/layout.hpp: the GEMM-swizzled scale layout (docs/NUMERICS.md §10), defined once.
//
// cuBLASLt's block-scaled FP4 GEMM and Blackwell's tensor cores read scale factors in 128x4 tiles:
// rows padded to 128, scale columns padded to 4, each tile one contiguous 512-byte block in which
// row r sits at ((r % 32) * 16 + ((r % 128) / 32) * 4) and column c at (c % 4). The kernels, the
// CPU reference, the allocation and the tests all call swizzled_scale_offset(); nothing else
// encodes this layout.
#pragma once

#include <cstdint>

#include "fp4kit/formats.hpp"  // FP4KIT_HD

namespace fp4kit {

inline constexpr int64_t kSwizzleTileRows = 128;
inline constexpr int64_t kSwizzleTileCols = 4;
inline constexpr int64_t kSwizzleTileBytes = kSwizzleTileRows * kSwizzleTileCols;  // 512

// Padded extents of a [rows, cols] compact scale matrix in the swizzled layout.
FP4KIT_HD constexpr int64_t swizzled_scale_rows(int64_t rows) { return (rows + 127) / 128 * 128; }
FP4KIT_HD constexpr int64_t swizzled_scale_cols(int64_t cols) { return (cols + 3) / 4 * 4; }
FP4KIT_HD constexpr int64_t swizzled_scale_bytes(int64_t rows, int64_t cols) {
  return swizzled_scale_rows(rows) * swizzled_scale_cols(cols);
}

// Byte offset of compact scale (r, c) in the swizzled buffer of a matrix with `cols` scale columns.
FP4KIT_HD constexpr int64_t swizzled_scale_offset(int64_t r, int64_t c, int64_t cols) {
  const int64_t col_tiles = (cols + 3) / 4;
  return ((r / 128 * col_tiles + c / 4) * 32 + r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4;
}

}  // namespace fp4kit
