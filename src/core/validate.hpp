// src/core/validate.hpp: input contracts of the operations, shared by every backend so that the
// CPU reference and the CUDA kernels reject exactly the same requests with the same words.
#pragma once

#include "core/check.hpp"
#include "fp4kit/ops.hpp"

namespace fp4kit::detail {

// Parameter combinations (independent of shapes). Throws Error(kInvalidArgument).
void check_quant_params(const QuantParams& params);
// x (float input) against params: the dimension rules of NUMERICS §2-§4.
void check_quantize_shape(const Matrix& x, const QuantParams& params);
// `out` was made for x's shape and these params, on `device`.
void check_quantize_output(const Matrix& x, const QuantParams& params, const Nvfp4Tensor& out, Device device);
// The view lives on the target's device.
void check_on_device(const TensorView& v, const char* what, const Target& target);

}  // namespace fp4kit::detail
