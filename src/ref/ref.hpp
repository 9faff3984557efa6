// src/ref/ref.hpp: the CPU reference. Plain loops implementing docs/NUMERICS.md and nothing else;
// the oracle of every test and the CPU backend. Inputs are validated by the callers (src/dispatch);
// every pointer here is host memory.
#pragma once

#include <cstdint>

#include "core/check.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/tensor.hpp"

namespace fp4kit::ref {

using detail::Matrix;

struct AmaxResult {
  float finite_amax = 0.0f;  // max |x| over finite values
  uint32_t nan_count = 0;
  uint32_t inf_count = 0;
  // NaN if a NaN was seen, else +Inf if an Inf was seen, else finite_amax.
  float reported() const noexcept;
};

// Over the whole matrix, or over row r.
AmaxResult amax(const Matrix& x);
AmaxResult amax_row(const Matrix& x, int64_t r);

// `out` holds outputs on the host (see fp4kit::AmaxOutputs).
void amax(const Matrix& x, bool per_row, const AmaxOutputs& out);

// y (x's dtype): see fp4kit::hadamard.
void hadamard(const Matrix& x, const Matrix& y, uint16_t mask, bool transpose);

// Fills every present part of `out` (host memory, shaped for x and params by the caller).
void quantize(const Matrix& x, const QuantParams& params, const Nvfp4Tensor& out);

// out: [R, C] rowwise, [C, R] or [C, padded R] columnwise (see fp4kit::dequantize).
void dequantize(const Nvfp4Tensor& q, Direction direction, const Matrix& out, const DequantizeOptions& options);

void swizzle_scales(const Matrix& compact, uint8_t* swizzled);
void unswizzle_scales(const uint8_t* swizzled, const Matrix& compact);

// A GEMM operand resolved to rows x K: quantized (one direction of an NVFP4 tensor) or dense.
struct GemmInput {
  const Nvfp4Tensor* nvfp4 = nullptr;
  const Nvfp4Part* part = nullptr;
  Matrix dense{};
  int64_t rows = 0;
  int64_t k = 0;
};
void gemm(const GemmInput& a, const GemmInput& b, const Matrix& d, const GemmOptions& options);

}  // namespace fp4kit::ref
