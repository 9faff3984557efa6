// src/cuda/quantize/launch.hpp: host-side launchers of the quantization kernels. Raw device
// pointers, shapes and a stream in; they enqueue work on the stream and throw fp4kit::Error on a
// CUDA failure (naming the kernel and configuration). No CUDA header needed to include this.
#pragma once

#include <cstdint>
#include <string>

#include "fp4kit/dispatch.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit::cuda {

struct SourceMatrix {
  const void* data;   // [rows, cols] with row_stride elements between rows; 16-byte aligned
  DType dtype;        // F32, F16 or BF16
  int64_t rows, cols, row_stride;
};

struct PartPointers {  // one direction of an NVFP4 tensor, in device memory
  uint8_t* data = nullptr;    // [rows, data_stride bytes]
  uint8_t* scales = nullptr;  // [rows, scale_stride bytes]
  uint8_t* scales_swizzled = nullptr;  // optional: the GEMM-swizzled copy (NUMERICS §10), padding zeroed
  float* amax = nullptr;      // [1] or [rows]
  int64_t data_stride = 0;
  int64_t scale_stride = 0;
};

// amax of x (NUMERICS §2, §9). finite_amax: [1] or [rows]; reported (may be null): NaN/Inf/finite;
// counts (may be null): {NaN, Inf} over the whole tensor.
void launch_amax(const SourceMatrix& x, bool per_row, float* finite_amax, float* reported, uint32_t* counts,
                 int device, void* stream);

// The whole quantize op: amax pass(es), then the one-pass cast writing the present parts (with the
// RHT when params.rht: one pass gives both amaxes, and the cast transforms the columnwise part).
// `tile_rows` and `stages` are the configuration chosen by the dispatcher (its shared memory is
// cast_smem_bytes(tile_rows, stages)).
void launch_quantize(const SourceMatrix& x, const QuantParams& params, const PartPointers& rowwise,
                     const PartPointers& columnwise, uint32_t* nonfinite_counts, int tile_rows, int stages, int sm_count, int device,
                     void* stream);

// The same op with the RHT through a buffer (the dispatcher's fallback when no fused configuration
// fits, or the source does not suit the fused kernel): the rowwise part is the plain cast of x; the
// transform of x goes into stream-ordered device memory, whose plain columnwise cast is the
// columnwise part. `tile_rows` and `stages` are a plain cast configuration.
void launch_quantize_rht_unfused(const SourceMatrix& x, const QuantParams& params, const PartPointers& rowwise,
                                 const PartPointers& columnwise, uint32_t* nonfinite_counts, int tile_rows, int stages,
                                 int sm_count, int device, void* stream);

// Dequantize one part (rows x padded_cols codes) into out [rows, out_cols] (out_cols <= padded).
void launch_dequantize(const PartPointers& part, bool row_scaled, int64_t rows, int64_t out_cols, void* out,
                       DType out_dtype, int64_t out_stride, int device, void* stream);

// "" when the kernels of this family have an image for the device, else why not.
std::string quantize_image_problem(const DeviceInfo& device);

}  // namespace fp4kit::cuda
