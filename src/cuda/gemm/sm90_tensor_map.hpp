// src/cuda/gemm/sm90_tensor_map.hpp: the bulk tensor copy engine's maps of byte matrices, for the
// Hopper GEMM kernels (sm90_gemm_nvfp4, sm90_gemm_smallm). Host code.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only: the encoder comes through the runtime)

#include <cstdint>

namespace fp4kit::cuda {

// A 2D byte tensor [rows, cols] with `stride` bytes between rows, copied in boxes of
// [box_rows, box_cols]; rows past the end arrive as zeros. `who` and `what` name the caller and
// the operand in errors: a base or stride that is not a multiple of 16 bytes is kUnsupported (with
// the remedy), a driver without the encoder or an encoding failure kCudaError.
// `promotion`: how much the L2 fetches around each access (256 bytes unless a caller knows better).
CUtensorMap byte_map(const char* who, const void* base, int64_t rows, int64_t cols, int64_t stride, int box_rows,
                     int box_cols, CUtensorMapSwizzle swizzle, const char* what,
                     CUtensorMapL2promotion promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B);

}  // namespace fp4kit::cuda
