// src/cuda/gemm/sm90_gemm_config.hpp: the configurations of the fused sm_90a NVFP4 GEMM and their
// shared-memory formula, once: the registry filters configurations with sm90_gemm_smem_bytes() and
// the kernel static_asserts that its carve-up is that same struct. Host-visible (no CUDA needed).
#pragma once

#include <cstdint>

namespace fp4kit::cuda {

// The CTA tile is 128 x tile_n (M x N); the K loop runs in stages of 256 elements (128 bytes of
// codes and 16 scale bytes per row: the smallest extents the bulk tensor copy moves for a row), each
// stage consumed as four 64-wide steps (one 128-byte row of BF16 per B row: one 128B-swizzle atom).
inline constexpr int kSm90TileM = 128;
inline constexpr int kSm90StageK = 256;
inline constexpr int kSm90StepK = 64;
// B's BF16 block values go through this many buffers: a step's buffer is rewritten three steps
// later, after both consumer warpgroups' MMAs of that step have retired (one barrier per step).
inline constexpr int kSm90ValueBuffers = 3;
// Warpgroup 0 issues the bulk copies; warpgroups 1 and 2 dequantize and multiply.
inline constexpr int kSm90Threads = 384;

struct Sm90GemmShape {
  int tile_n;
  int stages;
};
// The registered configurations. Each fits a budget: 128x256_s2 the sm_90 opt-in limit (227 KB),
// 128x64_s2 a 101376-byte one (an FP4KIT_SMEM_BUDGET cap; the kernel itself runs only on sm_90).
inline constexpr Sm90GemmShape kSm90GemmShapes[] = {{256, 2}, {64, 2}};

// The shared memory of one CTA. Alignment: the swizzled tiles need 1024-byte boundaries.
template <int TileN, int Stages>
struct Sm90GemmSmem {
  alignas(1024) uint8_t b_values[kSm90ValueBuffers][TileN * kSm90StepK * 2];  // BF16, K-major, 128B-swizzled
  alignas(1024) uint8_t a_codes[Stages][kSm90TileM * kSm90StageK / 2];       // E2M1, 128B-swizzled rows
  alignas(1024) uint8_t b_codes[Stages][TileN * kSm90StageK / 2];
  alignas(128) uint8_t a_scales[Stages][kSm90TileM * kSm90StageK / 16];  // E4M3, 16 per row
  alignas(128) uint8_t b_scales[Stages][TileN * kSm90StageK / 16];
  uint32_t scale_lut[256];  // E4M3 byte -> BF16 pair of its value * 2^119 (see scale_pair in the kernel)
  uint64_t full[Stages];    // the stage's bytes have landed (bulk copy transaction count)
  uint64_t empty[Stages];   // the 8 consumer warps are done reading the stage
};

// The epilogue's per-warp staging tile (8 rows of TileN outputs: a warp's 16 rows in two halves),
// laid over the value buffers once the tile's MMAs are done. Rows are padded by 8 elements so that
// the fragment stores (8 rows x 4 column pairs per instruction) fall in distinct banks; a row is
// written out in 16-byte pieces.
template <int TileN, typename OutT>
struct Sm90EpilogueStaging {
  static constexpr int kPitch = (TileN + 8) * static_cast<int>(sizeof(OutT));
  static constexpr int kWarpBytes = 8 * kPitch;
  static constexpr int kPieceElems = 16 / static_cast<int>(sizeof(OutT));
  static constexpr int kRowPieces = TileN / kPieceElems;
};

// Bytes of dynamic shared memory a configuration asks for: the struct plus the slack to align the
// dynamic base (guaranteed only 16-byte aligned) to 1024.
template <int TileN, int Stages>
constexpr int64_t sm90_gemm_smem_bytes() {
  return static_cast<int64_t>(sizeof(Sm90GemmSmem<TileN, Stages>)) + 1024;
}

constexpr int64_t sm90_gemm_smem_bytes(int tile_n, int stages) {
  if (tile_n == 256 && stages == 2) return sm90_gemm_smem_bytes<256, 2>();
  if (tile_n == 64 && stages == 2) return sm90_gemm_smem_bytes<64, 2>();
  return -1;  // not a compiled configuration
}

}  // namespace fp4kit::cuda
