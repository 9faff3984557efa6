// fp4kit/ops.hpp: the operations. Each takes an execution target; the CPU reference runs them all,
// CUDA kernels register with the dispatcher as they land. All validate their inputs and throw
// fp4kit::Error (code, message, hint); none asserts.
//
// Conventions: matrices are row-major with a contiguous last dimension; "x[R, C]" is any view whose
// leading dimensions collapse into R rows. Every pointer in a view must live on the target's device.
#pragma once

#include <cstdint>

#include "fp4kit/tensor.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit {

class Context;  // fp4kit/dispatch.hpp

// Where an operation runs. The stream is a cudaStream_t for CUDA targets (nullptr: the default
// stream); CPU operations complete before they return. `context` holds the dispatch settings,
// registry and caches; nullptr uses default_context().
struct Target {
  Device device{};
  void* stream = nullptr;
  Context* context = nullptr;
  static Target cpu(Context* ctx = nullptr) { return {{}, nullptr, ctx}; }
  static Target cuda(int index = 0, void* stream = nullptr, Context* ctx = nullptr) {
    return {{DeviceType::kCuda, index}, stream, ctx};
  }
};

// ---------------------------------------------------------------------------------------------
// amax (NUMERICS §2, §9)
// ---------------------------------------------------------------------------------------------
struct AmaxOutputs {
  TensorView finite_amax;       // F32 [1], or [R] per row: max |x| over FINITE values (required)
  TensorView amax;              // F32 [1] or [R], optional: NaN if a NaN was seen, else +Inf if an
                                //   Inf was seen, else the finite amax
  TensorView nonfinite_counts;  // U32 [2], optional: {NaN count, Inf count} over the whole tensor
};
// x: F32/F16/BF16 [R, C]. per_row selects [R]-shaped outputs.
void amax(const TensorView& x, bool per_row, const AmaxOutputs& out, const Target& target = {});

// ---------------------------------------------------------------------------------------------
// Random Hadamard transform (NUMERICS §5)
// ---------------------------------------------------------------------------------------------
// transpose = false: y[R, C] = x with each group of 16 consecutive elements of a row transformed
//                    (C a multiple of 16).
// transpose = true:  y[C, ceil(R/16)*16] = the transform of x^T along R, the last group of each
//                    column zero-padded: the columnwise (wgrad) operand before its cast.
// x: F32/F16/BF16; y has x's dtype and holds the transformed values rounded to it (RNE).
void hadamard(const TensorView& x, const TensorView& y, uint16_t sign_mask, bool transpose,
              const Target& target = {});

// ---------------------------------------------------------------------------------------------
// Quantize / dequantize (NUMERICS §2-§4, §6, §8, §9)
// ---------------------------------------------------------------------------------------------
// x: F32/F16/BF16 [R, C]. Rowwise output needs C % 16 == 0 (so does 2D); columnwise takes any R
// (zero-padded last block). Returns an owning tensor on the target's device.
Nvfp4Tensor quantize(const TensorView& x, const QuantParams& params, const Target& target = {});
// The same into caller memory: `out` must have been made for x's shape and these params
// (Nvfp4Tensor::allocate or from_parts); every present part is overwritten.
void quantize_into(const TensorView& x, const QuantParams& params, Nvfp4Tensor& out,
                   const Target& target = {});

struct DequantizeOptions {
  // Columnwise output of an RHT tensor: true applies the inverse transform and writes x^T [C, R];
  // false writes the transformed values [C, ceil(R/16)*16] as stored.
  bool undo_rht = true;
};
// out: F32/F16/BF16. Rowwise: [R, C]. Columnwise: [C, R] (or [C, padded R], see above).
void dequantize(const Nvfp4Tensor& q, Direction direction, const TensorView& out,
                const DequantizeOptions& options = {}, const Target& target = {});

// ---------------------------------------------------------------------------------------------
// Scale layouts (NUMERICS §10, fp4kit/layout.hpp)
// ---------------------------------------------------------------------------------------------
// compact: E4M3 [rows, cols]; swizzled: E4M3 or U8 vector of swizzled_scale_bytes(rows, cols),
// padding zero-filled.
void swizzle_scales(const TensorView& compact, const TensorView& swizzled, const Target& target = {});
void unswizzle_scales(const TensorView& swizzled, const TensorView& compact, const Target& target = {});

// ---------------------------------------------------------------------------------------------
// GEMM (NUMERICS §7): D[M, N] = alpha * A[M, K] . B[N, K]^T (+ beta * C) (+ bias[N])
// ---------------------------------------------------------------------------------------------
// An operand is one direction of an NVFP4 tensor (its K is that direction's padded cols), or a
// dense matrix (BF16 for weight-only W4A16; the CPU reference also takes F32/F16).
struct GemmOperand {
  const Nvfp4Tensor* nvfp4 = nullptr;
  Direction direction = Direction::kRowwise;
  TensorView dense{};

  static GemmOperand quantized(const Nvfp4Tensor& t, Direction d = Direction::kRowwise) { return {&t, d, {}}; }
  static GemmOperand matrix(const TensorView& m) { return {nullptr, Direction::kRowwise, m}; }
};

enum class Accumulation : uint8_t {
  kF32 = 0,  // FP32 accumulation (the tensor cores' order: backends agree within the §7 bound)
  kF64 = 1,  // float64 accumulation and epilogue: the oracle (CPU reference only)
};

struct GemmOptions {
  float alpha = 1.0f;  // multiplies the global-scale alpha (amax_A/2688)*(amax_B/2688)
  float beta = 0.0f;
  TensorView c{};      // optional [M, N], F32 or D's dtype; required when beta != 0
  TensorView bias{};   // optional [N], F32 or BF16
  Accumulation accumulation = Accumulation::kF32;
};

// d: BF16, F32 or F16 [M, N]. Any M >= 1; K is a multiple of 16 (NVFP4 operands always have one);
// on a GPU N must be a multiple of 16 too (kShapeMismatch otherwise; the CPU reference takes any N).
// The backend is chosen per problem and device (`fp4kit info`, FP4KIT_PRINT_CONFIG=1): the fused
// sm_90a kernel (NVFP4 x NVFP4, K % 256 == 0), the small-M kernel (M <= 64), cuBLASLt's native
// block-scaled FP4 on sm_100+, and the portable dequantize + cuBLASLt path for everything else.
void gemm(const GemmOperand& a, const GemmOperand& b, const TensorView& d, const GemmOptions& options = {},
          const Target& target = {});

// Library version, "MAJOR.MINOR.PATCH".
const char* version() noexcept;

}  // namespace fp4kit
