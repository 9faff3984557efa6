// The operations' entry points: validate every input (src/core/validate.*), then run the backend
// for the target. The CPU reference serves the CPU target; CUDA kernels register as they land.
#include "fp4kit/ops.hpp"

#include <cstring>
#include <string>
#include <utility>

#include "core/check.hpp"
#include "core/validate.hpp"
#include "fp4kit/dispatch.hpp"
#include "fp4kit/layout.hpp"
#include "ref/ref.hpp"

#if defined(FP4KIT_HAVE_CUDA)
#include "cuda/gemm/launch.hpp"
#include "cuda/quantize/launch.hpp"
#endif

#ifndef FP4KIT_VERSION_STRING
#error "FP4KIT_VERSION_STRING is set by CMake from the project version"
#endif

namespace fp4kit {

using detail::cat;
using detail::check_on_device;
using detail::fail;
using detail::Matrix;

namespace {

// Selects the backend of one validated call through the target's context: the selection, or an
// Error naming every rejected candidate. The CPU reference serves the CPU target; the CUDA kernels
// registered in src/dispatch/cuda_variants.cpp serve CUDA targets.
struct Chosen {
  Selection selection;
  const DeviceInfo* device;
  const std::string& name() const { return selection.variant->name; }
  int tile_rows() const { return selection.config.tile_m; }
  int stages() const { return selection.config.stages; }
};

Chosen choose(const Target& target, const Problem& problem) {
  if (target.device.type != DeviceType::kCpu && target.device.type != DeviceType::kCuda) {
    fail(ErrorCode::kInvalidArgument, cat(op_name(problem.op), ": unknown device type ", static_cast<int>(target.device.type)));
  }
  Context& ctx = target.context ? *target.context : default_context();
  const DeviceInfo& device = ctx.device(target.device);
  Selection s = ctx.select(problem, device);
  if (!s.ok()) {
    std::string reasons;
    for (const Rejection& r : s.rejected) reasons += cat("; ", r.variant, " ", r.reason);
    fail(ErrorCode::kUnsupported, cat(problem.describe(), " has no backend on ", device.label(), reasons),
         device.is_cuda() ? "run it on Target::cpu() with host tensors; `fp4kit info` shows what this build has"
                          : "see `fp4kit info`");
  }
  return {std::move(s), &device};
}

// A selected variant that no launcher below knows is an fp4kit bug, reported as such.
[[noreturn]] void no_launcher(const Chosen& c) {
  fail(ErrorCode::kInternal, cat("selected variant ", c.name(), " has no launcher"), "please report this");
}

// The largest power of two (up to 256) dividing an address.
int alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int align = 1;
  while (align < 256 && (a & static_cast<uintptr_t>(align)) == 0) align <<= 1;
  return a == 0 ? 256 : align;
}

Problem make_problem(OpKind op, const Matrix& x) {
  Problem p;
  p.op = op;
  p.rows = x.rows;
  p.cols = x.cols;
  p.in_dtype = x.dtype;
  p.row_stride = x.row_stride;
  p.alignment = alignment_of(x.data);
  return p;
}

#if defined(FP4KIT_HAVE_CUDA)
cuda::SourceMatrix source_of(const Matrix& m) { return {m.data, m.dtype, m.rows, m.cols, m.row_stride}; }

cuda::PartPointers pointers_of(const Nvfp4Part& p) {
  if (!p.present) return {};
  cuda::PartPointers q;
  q.data = static_cast<uint8_t*>(p.data.data);
  q.scales = static_cast<uint8_t*>(p.scales.data);
  q.scales_swizzled = static_cast<uint8_t*>(p.scales_swizzled.data);
  q.amax = static_cast<float*>(p.amax.data);
  q.data_stride = p.data.strides[0];
  q.scale_stride = p.scales.strides[0];
  return q;
}
#endif

}  // namespace

const char* version() noexcept { return FP4KIT_VERSION_STRING; }

void amax(const TensorView& x, bool per_row, const AmaxOutputs& out, const Target& target) {
  const Matrix m = detail::as_matrix(x, "amax: x");
  detail::check_float_input(m, "amax: x");
  check_on_device(x, "amax: x", target);
  const int64_t n = per_row ? m.rows : 1;
  detail::check_vector(out.finite_amax, "amax: finite_amax", DType::kF32, n, target.device);
  if (out.amax.data) detail::check_vector(out.amax, "amax: amax", DType::kF32, n, target.device);
  if (out.nonfinite_counts.data) {
    detail::check_vector(out.nonfinite_counts, "amax: nonfinite_counts", DType::kU32, 2, target.device);
  }
  const Chosen c = choose(target, make_problem(OpKind::kAmax, m));
  if (c.name() == "ref_amax") return ref::amax(m, per_row, out);
#if defined(FP4KIT_HAVE_CUDA)
  if (c.name() == "sm80_amax") {
    return cuda::launch_amax(source_of(m), per_row, out.finite_amax.ptr<float>(), out.amax.ptr<float>(),
                             out.nonfinite_counts.ptr<uint32_t>(), target.device.index, target.stream);
  }
#endif
  no_launcher(c);
}

void hadamard(const TensorView& x, const TensorView& y, uint16_t sign_mask, bool transpose, const Target& target) {
  const Matrix mx = detail::as_matrix(x, "hadamard: x");
  const Matrix my = detail::as_matrix(y, "hadamard: y");
  detail::check_float_input(mx, "hadamard: x");
  check_on_device(x, "hadamard: x", target);
  check_on_device(y, "hadamard: y", target);
  if (y.dtype != x.dtype) {
    fail(ErrorCode::kDtypeMismatch, cat("hadamard: y is ", dtype_name(y.dtype), " but x is ", dtype_name(x.dtype)),
         "y holds the transformed values rounded to x's dtype: give it x's dtype");
  }
  if (transpose) {
    detail::check_matrix_shape(my, "hadamard: y", mx.cols, (mx.rows + 15) / 16 * 16);
  } else {
    if (mx.cols % 16 != 0) {
      fail(ErrorCode::kShapeMismatch, cat("hadamard: x has ", mx.cols, " columns; the transform works on groups of 16"),
           "pad the last dimension to a multiple of 16, or use transpose=true (which pads the rows)");
    }
    detail::check_matrix_shape(my, "hadamard: y", mx.rows, mx.cols);
  }
  const Chosen c = choose(target, make_problem(OpKind::kHadamard, mx));
  if (c.name() != "ref_hadamard") no_launcher(c);
  ref::hadamard(mx, my, sign_mask, transpose);
}

namespace {

// The checks every quantize call makes, then the selection.
Chosen prepare_quantize(const TensorView& x, const Matrix& m, const QuantParams& params, const Target& target) {
  detail::check_quant_params(params);
  detail::check_quantize_shape(m, params);
  check_on_device(x, "quantize: x", target);
  Problem problem = make_problem(OpKind::kQuantize, m);
  problem.params = params;
  return choose(target, problem);
}

void run_quantize(const Chosen& c, const Matrix& m, const QuantParams& params, Nvfp4Tensor& out,
                  [[maybe_unused]] const Target& target) {
  if (c.name() == "ref_quantize") return ref::quantize(m, params, out);
#if defined(FP4KIT_HAVE_CUDA)
  // The fused RHT variants are the same op (params.rht selects the kernels); the unfused ones go
  // through a buffer.
  if (c.name() == "sm80_quantize_b16" || c.name() == "sm80_quantize_f32" || c.name() == "sm80_quantize_rht_b16" ||
      c.name() == "sm80_quantize_rht_f32") {
    return cuda::launch_quantize(source_of(m), params, pointers_of(out.rowwise()), pointers_of(out.columnwise()),
                                 out.nonfinite_counts().ptr<uint32_t>(), c.tile_rows(), c.stages(), c.device->sm_count,
                                 target.device.index, target.stream);
  }
  if (c.name() == "sm80_rht_unfused_b16" || c.name() == "sm80_rht_unfused_f32") {
    return cuda::launch_quantize_rht_unfused(source_of(m), params, pointers_of(out.rowwise()), pointers_of(out.columnwise()),
                                             out.nonfinite_counts().ptr<uint32_t>(), c.tile_rows(), c.stages(),
                                             c.device->sm_count, target.device.index, target.stream);
  }
#endif
  no_launcher(c);
}

}  // namespace

Nvfp4Tensor quantize(const TensorView& x, const QuantParams& params, const Target& target) {
  const Matrix m = detail::as_matrix(x, "quantize: x");
  const Chosen c = prepare_quantize(x, m, params, target);
  // Selected before allocating: a request no backend can serve fails before touching memory.
  Nvfp4Tensor out = Nvfp4Tensor::allocate(m.rows, m.cols, x.dtype, params, target.device);
  run_quantize(c, m, params, out, target);
  return out;
}

void quantize_into(const TensorView& x, const QuantParams& params, Nvfp4Tensor& out, const Target& target) {
  const Matrix m = detail::as_matrix(x, "quantize: x");
  const Chosen c = prepare_quantize(x, m, params, target);
  detail::check_quantize_output(m, params, out, target.device);
  out.meta_.source_dtype = x.dtype;
  out.meta_.params = params;
  run_quantize(c, m, params, out, target);
}

void dequantize(const Nvfp4Tensor& q, Direction direction, const TensorView& out, const DequantizeOptions& options,
                const Target& target) {
  if (direction == Direction::kBoth) {
    fail(ErrorCode::kInvalidArgument, "dequantize: pick one direction, rowwise or columnwise");
  }
  const Nvfp4Part& part = q.part(direction);  // throws when absent
  if (!(q.device() == target.device)) {
    fail(ErrorCode::kInvalidArgument, cat("dequantize: the NVFP4 tensor is on ", detail::describe_device(q.device()),
                                          " but the call runs on ", detail::describe_device(target.device)));
  }
  const Matrix m = detail::as_matrix(out, "dequantize: out");
  detail::check_float_input(m, "dequantize: out");
  check_on_device(out, "dequantize: out", target);
  const bool keep_padding = direction == Direction::kColumnwise && q.meta().params.rht && !options.undo_rht;
  const int64_t cols = keep_padding ? part.geometry.padded_cols() : part.geometry.cols;
  detail::check_matrix_shape(m, "dequantize: out", part.geometry.rows, cols);
  Problem problem;
  problem.op = OpKind::kDequantize;
  problem.rows = q.meta().rows;
  problem.cols = q.meta().cols;
  problem.in_dtype = q.meta().source_dtype;
  problem.out_dtype = out.dtype;
  problem.params = q.meta().params;
  problem.params.direction = direction;
  problem.row_stride = m.row_stride;
  const Chosen c = choose(target, problem);
  if (c.name() == "ref_dequantize") return ref::dequantize(q, direction, m, options);
#if defined(FP4KIT_HAVE_CUDA)
  if (c.name() == "sm80_dequantize") {
    return cuda::launch_dequantize(pointers_of(part), q.meta().params.row_scaled, m.rows, m.cols, m.data, m.dtype,
                                   m.row_stride, target.device.index, target.stream);
  }
#endif
  no_launcher(c);
}

namespace {
// Validates a (compact, swizzled) pair of scale buffers; returns the compact matrix.
Matrix check_scale_pair(const TensorView& compact, const TensorView& swizzled, const char* op, const Target& target) {
  const std::string c_what = cat(op, ": compact"), s_what = cat(op, ": swizzled");
  for (const auto& [v, what] : {std::pair{&compact, &c_what}, std::pair{&swizzled, &s_what}}) {
    if (v->dtype != DType::kE4M3 && v->dtype != DType::kU8) {
      fail(ErrorCode::kDtypeMismatch, cat(*what, " must be e4m3 (or u8), got ", dtype_name(v->dtype)));
    }
    check_on_device(*v, what->c_str(), target);
  }
  const Matrix m = detail::as_matrix(compact, c_what.c_str());
  detail::check_vector(swizzled, s_what.c_str(), swizzled.dtype, swizzled_scale_bytes(m.rows, m.cols), target.device);
  const Chosen c = choose(target, make_problem(OpKind::kSwizzle, m));
  if (c.name() != "ref_swizzle") no_launcher(c);
  return m;
}
}  // namespace

void swizzle_scales(const TensorView& compact, const TensorView& swizzled, const Target& target) {
  const Matrix m = check_scale_pair(compact, swizzled, "swizzle_scales", target);
  ref::swizzle_scales(m, swizzled.ptr<uint8_t>());
}

void unswizzle_scales(const TensorView& swizzled, const TensorView& compact, const Target& target) {
  const Matrix m = check_scale_pair(compact, swizzled, "unswizzle_scales", target);
  ref::unswizzle_scales(swizzled.ptr<const uint8_t>(), m);
}

namespace {

ref::GemmInput resolve_operand(const GemmOperand& op, const char* name, const Target& target) {
  ref::GemmInput in;
  if (op.nvfp4 != nullptr) {
    if (op.direction == Direction::kBoth) {
      fail(ErrorCode::kInvalidArgument, cat("gemm: operand ", name, " must name one direction of its NVFP4 tensor"));
    }
    const Nvfp4Part& part = op.nvfp4->part(op.direction);
    if (!(op.nvfp4->device() == target.device)) {
      fail(ErrorCode::kInvalidArgument, cat("gemm: operand ", name, " is on ", detail::describe_device(op.nvfp4->device()),
                                            " but the call runs on ", detail::describe_device(target.device)));
    }
    in.nvfp4 = op.nvfp4;
    in.part = &part;
    in.rows = part.geometry.rows;
    in.k = part.geometry.padded_cols();
    return in;
  }
  const std::string what = cat("gemm: operand ", name);
  in.dense = detail::as_matrix(op.dense, what.c_str());
  if (op.dense.dtype != DType::kBF16 && op.dense.dtype != DType::kF32 && op.dense.dtype != DType::kF16) {
    fail(ErrorCode::kDtypeMismatch, cat(what, " is ", dtype_name(op.dense.dtype), "; a dense operand must be bf16 (or f32/f16)"),
         "quantize it to NVFP4 or convert it to bfloat16");
  }
  check_on_device(op.dense, what.c_str(), target);
  in.rows = in.dense.rows;
  in.k = in.dense.cols;
  return in;
}

#if defined(FP4KIT_HAVE_CUDA)
cuda::GemmOperandPointers gemm_pointers_of(const ref::GemmInput& in, const char* name) {
  cuda::GemmOperandPointers p;
  if (in.part != nullptr) {
    p.data = static_cast<const uint8_t*>(in.part->data.data);
    p.scales = static_cast<const uint8_t*>(in.part->scales.data);
    p.amax = static_cast<const float*>(in.part->amax.data);
    p.row_scaled = in.nvfp4->meta().params.row_scaled;
    p.data_stride = in.part->data.strides[0];
    p.scale_stride = in.part->scales.strides[0];
    return p;
  }
  if (in.dense.dtype != DType::kBF16) {
    fail(ErrorCode::kUnsupported,
         cat("gemm: operand ", name, " is a dense ", dtype_name(in.dense.dtype), " matrix; on a GPU a dense operand must be bf16"),
         "convert it to bfloat16, or quantize it to NVFP4");
  }
  p.dense = in.dense.data;
  p.dense_stride = in.dense.row_stride;
  return p;
}

// The epilogue's operands (alpha, beta with C, bias) as the CUDA backends take them.
cuda::GemmEpilogue gemm_epilogue_of(const GemmOptions& options, const Matrix& c) {
  cuda::GemmEpilogue e;
  e.alpha = options.alpha;
  e.beta = options.beta;
  e.c = c.data;
  e.c_dtype = c.dtype;
  e.c_stride = c.row_stride;
  e.bias = options.bias.data;
  e.bias_dtype = options.bias.dtype;
  return e;
}
#endif

}  // namespace

void gemm(const GemmOperand& a, const GemmOperand& b, const TensorView& d, const GemmOptions& options,
          const Target& target) {
  const ref::GemmInput ia = resolve_operand(a, "A", target);
  const ref::GemmInput ib = resolve_operand(b, "B", target);
  if (ia.k != ib.k) {
    fail(ErrorCode::kShapeMismatch, cat("gemm: A has K=", ia.k, " but B has K=", ib.k),
         "both operands are K-major: A[M, K] and B[N, K] (a columnwise NVFP4 operand's K is its padded row count)");
  }
  if (ib.nvfp4 && ib.nvfp4->meta().params.row_scaled) {
    fail(ErrorCode::kInvalidArgument, "gemm: B is row-scaled; only A (the activation) may carry per-row scales",
         "quantize the weight without row_scaled");
  }
  const Matrix md = detail::as_matrix(d, "gemm: d");
  if (d.dtype != DType::kBF16 && d.dtype != DType::kF32 && d.dtype != DType::kF16) {
    fail(ErrorCode::kDtypeMismatch, cat("gemm: d is ", dtype_name(d.dtype), "; the output must be bf16, f32 or f16"));
  }
  check_on_device(d, "gemm: d", target);
  detail::check_matrix_shape(md, "gemm: d", ia.rows, ib.rows);
  if (target.device.type == DeviceType::kCuda && ib.rows % 16 != 0) {
    fail(ErrorCode::kShapeMismatch,
         cat("gemm: N=", ib.rows, " (B's rows) is not a multiple of 16; the CUDA GEMM kernels need N % 16 == 0"),
         "pad the weight with zero rows to a multiple of 16 (and slice D), or run on Target::cpu()");
  }
  Matrix mc{};  // C, read only when beta != 0
  if (options.beta != 0.0f) {
    if (options.c.data == nullptr) {
      fail(ErrorCode::kNullPointer, "gemm: beta is non-zero but no C was given", "pass options.c [M, N] or set beta = 0");
    }
    mc = detail::as_matrix(options.c, "gemm: c");
    if (options.c.dtype != DType::kF32 && options.c.dtype != d.dtype) {
      fail(ErrorCode::kDtypeMismatch, cat("gemm: c is ", dtype_name(options.c.dtype), "; it must be f32 or d's dtype (",
                                          dtype_name(d.dtype), ")"));
    }
    check_on_device(options.c, "gemm: c", target);
    detail::check_matrix_shape(mc, "gemm: c", ia.rows, ib.rows);
  }
  if (options.bias.data != nullptr) {
    if (options.bias.dtype != DType::kF32 && options.bias.dtype != DType::kBF16) {
      fail(ErrorCode::kDtypeMismatch, cat("gemm: bias is ", dtype_name(options.bias.dtype), "; it must be f32 or bf16"));
    }
    if (options.bias.numel() != ib.rows || !options.bias.is_contiguous()) {
      fail(ErrorCode::kShapeMismatch, cat("gemm: bias must be a dense vector of N=", ib.rows, " elements, got ",
                                          options.bias.describe()));
    }
    check_on_device(options.bias, "gemm: bias", target);
  }
  if (static_cast<uint8_t>(options.accumulation) > 1) {
    fail(ErrorCode::kInvalidArgument, cat("gemm: invalid accumulation value ", static_cast<int>(options.accumulation)));
  }
  Problem problem;
  problem.op = OpKind::kGemm;
  problem.rows = ia.rows;
  problem.cols = ib.rows;
  problem.k = ia.k;
  problem.in_dtype = ia.nvfp4 ? DType::kU8 : ia.dense.dtype;
  problem.out_dtype = d.dtype;
  problem.a_nvfp4 = ia.nvfp4 != nullptr;
  problem.b_nvfp4 = ib.nvfp4 != nullptr;
  problem.a_row_scaled = ia.nvfp4 && ia.nvfp4->meta().params.row_scaled;
  problem.b_2d = ib.nvfp4 && ib.nvfp4->meta().params.block == BlockScaling::k2D;
  if (options.accumulation == Accumulation::kF64 && target.device.type != DeviceType::kCpu) {
    fail(ErrorCode::kUnsupported, "gemm: float64 accumulation (the contract's oracle) runs on the CPU only",
         "use Accumulation::kF32 on the GPU, or Target::cpu() with host tensors for the oracle");
  }
  const Chosen c = choose(target, problem);
  if (c.name() == "ref_gemm") return ref::gemm(ia, ib, md, options);
#if defined(FP4KIT_HAVE_CUDA)
  if (c.name() == "sm90_gemm_nvfp4") {
    return cuda::launch_gemm_sm90_nvfp4(ia.rows, ib.rows, ia.k, gemm_pointers_of(ia, "A"), gemm_pointers_of(ib, "B"),
                                        md.data, md.dtype, md.row_stride, gemm_epilogue_of(options, mc),
                                        c.selection.config.tile_n, c.stages(), target.device.index, target.stream);
  }
  if (c.name() == "sm100_gemm_cublaslt_nvfp4") {  // A and B are NVFP4 (its check_problem)
    // The swizzled scales a quantization with swizzled_scales wrote; null: the launcher swizzles.
    const auto swizzled = [](const ref::GemmInput& in) {
      return in.part ? static_cast<const uint8_t*>(in.part->scales_swizzled.data) : nullptr;
    };
    return cuda::launch_gemm_sm100_cublaslt_nvfp4(ia.rows, ib.rows, ia.k, gemm_pointers_of(ia, "A"), swizzled(ia),
                                                  gemm_pointers_of(ib, "B"), swizzled(ib), md.data, md.dtype,
                                                  md.row_stride, gemm_epilogue_of(options, mc), target.device.index,
                                                  target.stream);
  }
  if (c.name() == "gemm_dequant_cublaslt") {
    return cuda::launch_gemm_dequant_cublaslt(ia.rows, ib.rows, ia.k, gemm_pointers_of(ia, "A"), gemm_pointers_of(ib, "B"),
                                              md.data, md.dtype, md.row_stride, gemm_epilogue_of(options, mc),
                                              target.device.index, target.stream);
  }
  if (c.name() == "sm90_gemm_smallm") {  // B is NVFP4, K % 256 == 0 (its check_problem)
    return cuda::launch_sm90_gemm_smallm(ia.rows, ib.rows, ia.k, gemm_pointers_of(ia, "A"), gemm_pointers_of(ib, "B"),
                                         md.data, md.dtype, md.row_stride, gemm_epilogue_of(options, mc),
                                         c.selection.config, target.device.index, target.stream);
  }
  if (c.name() == "sm80_gemm_smallm") {  // B is NVFP4 (its check_problem rejects a dense B)
    return cuda::launch_sm80_gemm_smallm(ia.rows, ib.rows, ia.k, gemm_pointers_of(ia, "A"), gemm_pointers_of(ib, "B"),
                                         md.data, md.dtype, md.row_stride, gemm_epilogue_of(options, mc),
                                         c.selection.config, target.device.index, target.stream);
  }
#endif
  no_launcher(c);
}

}  // namespace fp4kit
