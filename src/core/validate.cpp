#include "core/validate.hpp"

namespace fp4kit::detail {

void check_quant_params(const QuantParams& p) {
  const uint8_t dir = static_cast<uint8_t>(p.direction);
  if (dir < 1 || dir > 3) fail(ErrorCode::kInvalidArgument, cat("invalid direction value ", int(dir)));
  if (static_cast<uint8_t>(p.block) > 1) fail(ErrorCode::kInvalidArgument, cat("invalid block scaling value ", int(p.block)));
  if (static_cast<uint8_t>(p.rounding) > 1) fail(ErrorCode::kInvalidArgument, cat("invalid rounding value ", int(p.rounding)));
  if (p.row_scaled) {
    if (has_columnwise(p.direction)) {
      fail(ErrorCode::kInvalidArgument, "row-scaled quantization produces the rowwise output only",
           "request direction=rowwise (a per-row global scale cannot be shared along a column)");
    }
    if (p.block == BlockScaling::k2D) {
      fail(ErrorCode::kInvalidArgument, "row-scaled quantization cannot use 2D blocks", "use 1D blocks or row_scaled=false");
    }
    if (p.rounding == Rounding::kStochastic) {
      fail(ErrorCode::kInvalidArgument, "row-scaled quantization cannot use stochastic rounding",
           "use round-to-nearest or row_scaled=false");
    }
  }
  if (p.rht) {
    if (!has_columnwise(p.direction)) {
      fail(ErrorCode::kInvalidArgument, "the RHT applies to the columnwise output, but only rowwise was requested",
           "request direction=columnwise or both, or rht=false");
    }
    if (p.block == BlockScaling::k2D) {
      fail(ErrorCode::kInvalidArgument, "the RHT cannot be combined with 2D blocks",
           "the RHT is for the wgrad operands (1D); use 1D blocks or rht=false");
    }
  }
}

void check_quantize_shape(const Matrix& x, const QuantParams& p) {
  check_float_input(x, "quantize: x");
  if ((has_rowwise(p.direction) || p.block == BlockScaling::k2D) && x.cols % 16 != 0) {
    fail(ErrorCode::kShapeMismatch,
         cat("quantize: x has ", x.cols, " columns; the quantized dimension must be a multiple of 16",
             p.block == BlockScaling::k2D ? " (2D blocks are 16x16 tiles)" : ""),
         "pad the last dimension to a multiple of 16 (columnwise-only 1D output accepts any column count)");
  }
}

void check_quantize_output(const Matrix& x, const QuantParams& p, const Nvfp4Tensor& out, Device device) {
  const Nvfp4Meta& m = out.meta();
  if (m.rows != x.rows || m.cols != x.cols) {
    fail(ErrorCode::kShapeMismatch,
         cat("quantize_into: out was made for [", m.rows, ", ", m.cols, "] but x is [", x.rows, ", ", x.cols, "]"),
         "allocate out with Nvfp4Tensor::allocate(rows, cols, ...) for this x");
  }
  const QuantParams& q = m.params;
  if (q.direction != p.direction || q.row_scaled != p.row_scaled) {
    fail(ErrorCode::kInvalidArgument,
         cat("quantize_into: out was made for direction ", direction_name(q.direction), q.row_scaled ? " row-scaled" : "",
             " but the call asks for ", direction_name(p.direction), p.row_scaled ? " row-scaled" : ""),
         "allocate out with the same QuantParams as the call");
  }
  if (q.swizzled_scales != p.swizzled_scales) {
    fail(ErrorCode::kInvalidArgument,
         cat("quantize_into: out was made ", q.swizzled_scales ? "with" : "without",
             " swizzled scales but the call asks ", p.swizzled_scales ? "for them" : "for none"),
         "allocate out with the same QuantParams as the call");
  }
  if (!(out.device() == device)) {
    fail(ErrorCode::kInvalidArgument, cat("quantize_into: out is on ", describe_device(out.device()),
                                          " but the call runs on ", describe_device(device)));
  }
}

void check_on_device(const TensorView& v, const char* what, const Target& target) {
  if (!(v.device == target.device)) {
    fail(ErrorCode::kInvalidArgument,
         cat(what, " is on ", describe_device(v.device), " but the call runs on ", describe_device(target.device)),
         "move the tensor to the target's device, or run the call on the tensor's device");
  }
}

}  // namespace fp4kit::detail
