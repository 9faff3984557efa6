// src/capi/fp4kit_c.cpp: the C API (include/fp4kit/fp4kit.h), one thin wrapper per C++ call.
//
// Each wrapper (1) checks its pointer arguments, (2) converts the plain C structs to the C++ types
// field by field, validating every enum value it reads, (3) calls the C++ API and (4) turns any
// exception into an fp4kit_status plus a thread-local message for fp4kit_last_error(). No exception
// ever crosses the C boundary: every body runs inside guarded(), which is noexcept and catches
// everything.
//
// NOTE: the extern "C" definitions cannot carry `noexcept` themselves: fp4kit.h declares them
// without it, and C++ rejects a definition whose exception specification differs from an earlier
// declaration. guarded() is where the no-throw guarantee lives.
#include "fp4kit/fp4kit.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include "fp4kit/error.hpp"
#include "fp4kit/layout.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/recipe.hpp"
#include "fp4kit/tensor.hpp"
#include "fp4kit/types.hpp"

// The library-owned NVFP4 tensor behind the opaque C handle.
struct fp4kit_nvfp4 {
  fp4kit::Nvfp4Tensor tensor;
};

namespace {

using fp4kit::ErrorCode;

// ---------------------------------------------------------------------------------------------
// The C enums carry the same numbers as the C++ enums (fp4kit.h promises it); checked here once so
// the conversions below can be plain casts after a range check.
// ---------------------------------------------------------------------------------------------
#define FP4KIT_SAME_VALUE(c_value, cpp_value) \
  static_assert(static_cast<int>(c_value) == static_cast<int>(cpp_value), #c_value " != " #cpp_value)

FP4KIT_SAME_VALUE(FP4KIT_OK, ErrorCode::kOk);
FP4KIT_SAME_VALUE(FP4KIT_ERR_INVALID_ARGUMENT, ErrorCode::kInvalidArgument);
FP4KIT_SAME_VALUE(FP4KIT_ERR_SHAPE_MISMATCH, ErrorCode::kShapeMismatch);
FP4KIT_SAME_VALUE(FP4KIT_ERR_DTYPE_MISMATCH, ErrorCode::kDtypeMismatch);
FP4KIT_SAME_VALUE(FP4KIT_ERR_LAYOUT, ErrorCode::kLayout);
FP4KIT_SAME_VALUE(FP4KIT_ERR_NULL_POINTER, ErrorCode::kNullPointer);
FP4KIT_SAME_VALUE(FP4KIT_ERR_INVALID_RECIPE, ErrorCode::kInvalidRecipe);
FP4KIT_SAME_VALUE(FP4KIT_ERR_UNSUPPORTED, ErrorCode::kUnsupported);
FP4KIT_SAME_VALUE(FP4KIT_ERR_CUDA, ErrorCode::kCudaError);
FP4KIT_SAME_VALUE(FP4KIT_ERR_OUT_OF_MEMORY, ErrorCode::kOutOfMemory);
FP4KIT_SAME_VALUE(FP4KIT_ERR_IO, ErrorCode::kIo);
FP4KIT_SAME_VALUE(FP4KIT_ERR_INTERNAL, ErrorCode::kInternal);

FP4KIT_SAME_VALUE(FP4KIT_F32, fp4kit::DType::kF32);
FP4KIT_SAME_VALUE(FP4KIT_F16, fp4kit::DType::kF16);
FP4KIT_SAME_VALUE(FP4KIT_BF16, fp4kit::DType::kBF16);
FP4KIT_SAME_VALUE(FP4KIT_U8, fp4kit::DType::kU8);
FP4KIT_SAME_VALUE(FP4KIT_E4M3, fp4kit::DType::kE4M3);
FP4KIT_SAME_VALUE(FP4KIT_F64, fp4kit::DType::kF64);
FP4KIT_SAME_VALUE(FP4KIT_U32, fp4kit::DType::kU32);

FP4KIT_SAME_VALUE(FP4KIT_DEVICE_CPU, fp4kit::DeviceType::kCpu);
FP4KIT_SAME_VALUE(FP4KIT_DEVICE_CUDA, fp4kit::DeviceType::kCuda);

FP4KIT_SAME_VALUE(FP4KIT_ROWWISE, fp4kit::Direction::kRowwise);
FP4KIT_SAME_VALUE(FP4KIT_COLUMNWISE, fp4kit::Direction::kColumnwise);
FP4KIT_SAME_VALUE(FP4KIT_BOTH, fp4kit::Direction::kBoth);

FP4KIT_SAME_VALUE(FP4KIT_BLOCK_1D, fp4kit::BlockScaling::k1D);
FP4KIT_SAME_VALUE(FP4KIT_BLOCK_2D, fp4kit::BlockScaling::k2D);
FP4KIT_SAME_VALUE(FP4KIT_ROUND_NEAREST, fp4kit::Rounding::kNearest);
FP4KIT_SAME_VALUE(FP4KIT_ROUND_STOCHASTIC, fp4kit::Rounding::kStochastic);

FP4KIT_SAME_VALUE(FP4KIT_ROLE_FPROP_INPUT, fp4kit::OperandRole::kFpropInput);
FP4KIT_SAME_VALUE(FP4KIT_ROLE_FPROP_WEIGHT, fp4kit::OperandRole::kFpropWeight);
FP4KIT_SAME_VALUE(FP4KIT_ROLE_DGRAD_GRAD, fp4kit::OperandRole::kDgradGrad);
FP4KIT_SAME_VALUE(FP4KIT_ROLE_DGRAD_WEIGHT, fp4kit::OperandRole::kDgradWeight);
FP4KIT_SAME_VALUE(FP4KIT_ROLE_WGRAD_INPUT, fp4kit::OperandRole::kWgradInput);
FP4KIT_SAME_VALUE(FP4KIT_ROLE_WGRAD_GRAD, fp4kit::OperandRole::kWgradGrad);
static_assert(FP4KIT_ROLE_WGRAD_GRAD + 1 == fp4kit::kNumOperandRoles, "a role is missing from fp4kit.h");

FP4KIT_SAME_VALUE(FP4KIT_ACCUMULATE_F32, fp4kit::Accumulation::kF32);
FP4KIT_SAME_VALUE(FP4KIT_ACCUMULATE_F64, fp4kit::Accumulation::kF64);

static_assert(FP4KIT_MAX_RANK == fp4kit::kMaxRank, "FP4KIT_MAX_RANK differs from fp4kit::kMaxRank");
#undef FP4KIT_SAME_VALUE

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

// The message of the last failure on this thread; successful calls leave it as it is.
thread_local std::string t_last_error;

void set_last_error(const char* function, const char* what) noexcept {
  try {
    t_last_error.assign(function).append(": ").append(what);
  } catch (...) {
    // Short enough for the small-string buffer: assigning it cannot allocate.
    t_last_error.clear();
    t_last_error.assign("out of memory");
  }
}

void set_last_error(const char* what) noexcept {
  try {
    t_last_error.assign(what);
  } catch (...) {
    t_last_error.clear();
    t_last_error.assign("out of memory");
  }
}

// Runs `body` (which returns nothing and reports failure by throwing) and maps every exception to
// a status. fp4kit::Error messages already name the function where the C API raised them, and
// the C++ API's own messages describe the operation, so they are stored as they are.
template <typename Body>
fp4kit_status guarded(const char* function, Body&& body) noexcept {
  try {
    std::forward<Body>(body)();
    return FP4KIT_OK;
  } catch (const fp4kit::Error& e) {
    set_last_error(e.what());
    const int code = static_cast<int>(e.code());
    // A failure must never read as success, nor as a status the header does not define.
    if (code <= FP4KIT_OK || code > FP4KIT_ERR_INTERNAL) return FP4KIT_ERR_INTERNAL;
    return static_cast<fp4kit_status>(code);
  } catch (const std::bad_alloc&) {
    set_last_error(function, "out of memory (hint: free memory or use smaller tensors)");
    return FP4KIT_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    try {
      const std::string what =
          std::string("internal error: ") + e.what() + " (hint: this is a bug in fp4kit; please report it)";
      set_last_error(function, what.c_str());
    } catch (...) {
      set_last_error(function, "internal error (hint: this is a bug in fp4kit; please report it)");
    }
    return FP4KIT_ERR_INTERNAL;
  } catch (...) {
    set_last_error(function, "internal error: unknown exception (hint: this is a bug in fp4kit; please report it)");
    return FP4KIT_ERR_INTERNAL;
  }
}

// The integer a C caller stored in an enum-typed field. Read through memcpy so that a value outside
// the enumerators (a C program may store any int) is seen as it is and rejected, never assumed away.
template <typename Enum>
int64_t raw_enum(const Enum& e) noexcept {
  static_assert(sizeof(Enum) == sizeof(int32_t), "C enums are int-sized on every supported ABI");
  int32_t value;
  std::memcpy(&value, &e, sizeof value);
  return value;
}

[[noreturn]] void throw_null(const char* function, const char* parameter) {
  throw fp4kit::Error(ErrorCode::kNullPointer,
                      std::string(function) + ": `" + parameter + "` is NULL",
                      std::string("pass a valid pointer for `") + parameter + "`");
}

template <typename T>
void require(const T* pointer, const char* function, const char* parameter) {
  if (pointer == nullptr) throw_null(function, parameter);
}

// Throws kInvalidArgument unless lo <= value <= hi; `what` names the field, e.g. "`x.dtype`", and
// `valid` says what to pass instead.
void require_range(int64_t value, int64_t lo, int64_t hi, const char* function, const std::string& what,
                   const char* valid) {
  if (value < lo || value > hi) {
    throw fp4kit::Error(ErrorCode::kInvalidArgument,
                        std::string(function) + ": " + what + " is " + std::to_string(value) + ", not a valid value",
                        std::string("use ") + valid);
  }
}

std::string member_name(const char* parameter, const char* name) {
  return std::string("`") + parameter + "." + name + "`";
}

// ---------------------------------------------------------------------------------------------
// Struct conversions, C <-> C++. Every enum is range-checked before it is cast.
// ---------------------------------------------------------------------------------------------

fp4kit::TensorView to_cpp(const fp4kit_tensor_view& v, const char* function, const char* parameter) {
  require_range(v.rank, 0, FP4KIT_MAX_RANK, function, member_name(parameter, "rank"),
                "a rank of 0..4 (FP4KIT_MAX_RANK)");
  require_range(raw_enum(v.dtype), FP4KIT_F32, FP4KIT_U32, function, member_name(parameter, "dtype"),
                "one of the fp4kit_dtype values FP4KIT_F32..FP4KIT_U32");
  require_range(raw_enum(v.device_type), FP4KIT_DEVICE_CPU, FP4KIT_DEVICE_CUDA, function,
                member_name(parameter, "device_type"), "FP4KIT_DEVICE_CPU or FP4KIT_DEVICE_CUDA");
  fp4kit::TensorView t;
  t.data = v.data;
  t.dtype = static_cast<fp4kit::DType>(v.dtype);
  t.rank = v.rank;
  // Only the first `rank` extents are meaningful; the rest stay zero whatever the caller left there.
  for (int i = 0; i < v.rank; ++i) {
    t.shape[i] = v.shape[i];
    t.strides[i] = v.strides[i];
  }
  t.device = {static_cast<fp4kit::DeviceType>(v.device_type), v.device_index};
  return t;
}

// An optional view: NULL gives the empty view (which the C++ API reads as "absent").
fp4kit::TensorView to_cpp_optional(const fp4kit_tensor_view* v, const char* function, const char* parameter) {
  return v == nullptr ? fp4kit::TensorView{} : to_cpp(*v, function, parameter);
}

fp4kit_tensor_view to_c(const fp4kit::TensorView& t) noexcept {
  fp4kit_tensor_view v{};
  v.data = t.data;
  v.dtype = static_cast<fp4kit_dtype>(t.dtype);
  v.rank = t.rank;
  for (int i = 0; i < fp4kit::kMaxRank; ++i) {
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides[i];
  }
  v.device_type = static_cast<fp4kit_device_type>(t.device.type);
  v.device_index = t.device.index;
  return v;
}

// NULL means the CPU.
fp4kit::Target to_cpp(const fp4kit_target* target, const char* function) {
  if (target == nullptr) return fp4kit::Target::cpu();
  require_range(raw_enum(target->device_type), FP4KIT_DEVICE_CPU, FP4KIT_DEVICE_CUDA, function, "`target.device_type`",
                "FP4KIT_DEVICE_CPU or FP4KIT_DEVICE_CUDA");
  fp4kit::Target t;
  t.device = {static_cast<fp4kit::DeviceType>(target->device_type), target->device_index};
  t.stream = target->stream;
  return t;
}

fp4kit::Direction to_direction(int64_t value, const char* function, const std::string& what) {
  require_range(value, FP4KIT_ROWWISE, FP4KIT_BOTH, function, what,
                "FP4KIT_ROWWISE, FP4KIT_COLUMNWISE or FP4KIT_BOTH");
  return static_cast<fp4kit::Direction>(value);
}

// One direction only (a part of an NVFP4 tensor): BOTH is rejected here with its own message.
fp4kit::Direction to_single_direction(int64_t value, const char* function, const char* parameter) {
  if (value == FP4KIT_BOTH) {
    throw fp4kit::Error(ErrorCode::kInvalidArgument,
                        std::string(function) + ": `" + parameter + "` is FP4KIT_BOTH; one direction is needed here",
                        "pass FP4KIT_ROWWISE or FP4KIT_COLUMNWISE");
  }
  require_range(value, FP4KIT_ROWWISE, FP4KIT_COLUMNWISE, function, std::string("`") + parameter + "`",
                "FP4KIT_ROWWISE or FP4KIT_COLUMNWISE");
  return static_cast<fp4kit::Direction>(value);
}

fp4kit::QuantParams to_cpp(const fp4kit_quant_params& p, const char* function, const char* parameter) {
  fp4kit::QuantParams q;
  q.direction = to_direction(raw_enum(p.direction), function, member_name(parameter, "direction"));
  require_range(raw_enum(p.block), FP4KIT_BLOCK_1D, FP4KIT_BLOCK_2D, function, member_name(parameter, "block"),
                "FP4KIT_BLOCK_1D or FP4KIT_BLOCK_2D");
  q.block = static_cast<fp4kit::BlockScaling>(p.block);
  require_range(raw_enum(p.rounding), FP4KIT_ROUND_NEAREST, FP4KIT_ROUND_STOCHASTIC, function,
                member_name(parameter, "rounding"), "FP4KIT_ROUND_NEAREST or FP4KIT_ROUND_STOCHASTIC");
  q.rounding = static_cast<fp4kit::Rounding>(p.rounding);
  q.row_scaled = p.row_scaled != 0;
  q.rht = p.rht != 0;
  q.rht_mask = p.rht_mask;
  q.sr_seed = p.sr_seed;
  q.sr_offset = p.sr_offset;
  q.swizzled_scales = p.swizzled_scales != 0;
  return q;
}

fp4kit_quant_params to_c(const fp4kit::QuantParams& q) noexcept {
  fp4kit_quant_params p{};
  p.direction = static_cast<fp4kit_direction>(q.direction);
  p.block = static_cast<fp4kit_block_scaling>(q.block);
  p.rounding = static_cast<fp4kit_rounding>(q.rounding);
  p.row_scaled = q.row_scaled ? 1 : 0;
  p.rht = q.rht ? 1 : 0;
  p.rht_mask = q.rht_mask;
  p.sr_seed = q.sr_seed;
  p.sr_offset = q.sr_offset;
  p.swizzled_scales = q.swizzled_scales ? 1 : 0;
  return p;
}

fp4kit::Recipe to_cpp(const fp4kit_recipe& r) noexcept {
  fp4kit::Recipe recipe;
  recipe.disable_rht = r.disable_rht != 0;
  recipe.disable_stochastic_rounding = r.disable_stochastic_rounding != 0;
  recipe.disable_2d_quantization = r.disable_2d_quantization != 0;
  recipe.row_scaled_activation = r.row_scaled_activation != 0;
  recipe.rht_mask = r.rht_mask;
  recipe.sr_seed = r.sr_seed;
  recipe.sr_offset_base = r.sr_offset_base;
  return recipe;
}

fp4kit_recipe to_c(const fp4kit::Recipe& recipe) noexcept {
  fp4kit_recipe r{};
  r.disable_rht = recipe.disable_rht ? 1 : 0;
  r.disable_stochastic_rounding = recipe.disable_stochastic_rounding ? 1 : 0;
  r.disable_2d_quantization = recipe.disable_2d_quantization ? 1 : 0;
  r.row_scaled_activation = recipe.row_scaled_activation ? 1 : 0;
  r.rht_mask = recipe.rht_mask;
  r.sr_seed = recipe.sr_seed;
  r.sr_offset_base = recipe.sr_offset_base;
  return r;
}

// A quantized operand ignores `dense` (it may be left uninitialized); a dense one ignores `direction`.
fp4kit::GemmOperand to_cpp(const fp4kit_gemm_operand& o, const char* function, const char* parameter) {
  if (o.nvfp4 != nullptr) {
    const fp4kit::Direction d = to_direction(raw_enum(o.direction), function, member_name(parameter, "direction"));
    return fp4kit::GemmOperand::quantized(o.nvfp4->tensor, d);
  }
  return fp4kit::GemmOperand::matrix(to_cpp(o.dense, function, (std::string(parameter) + ".dense").c_str()));
}

fp4kit::GemmOptions to_cpp(const fp4kit_gemm_options* o, const char* function) {
  fp4kit::GemmOptions options;
  if (o == nullptr) return options;
  options.alpha = o->alpha;
  options.beta = o->beta;
  options.c = to_cpp_optional(o->c, function, "options.c");
  options.bias = to_cpp_optional(o->bias, function, "options.bias");
  require_range(raw_enum(o->accumulation), FP4KIT_ACCUMULATE_F32, FP4KIT_ACCUMULATE_F64, function,
                "`options.accumulation`", "FP4KIT_ACCUMULATE_F32 or FP4KIT_ACCUMULATE_F64");
  options.accumulation = static_cast<fp4kit::Accumulation>(o->accumulation);
  return options;
}

}  // namespace

extern "C" {

// ---------------------------------------------------------------------------------------------
// Version, errors
// ---------------------------------------------------------------------------------------------

// Static storage; never NULL.
const char* fp4kit_version(void) { return fp4kit::version(); }

// Valid until the next failing call on this thread; "" before any failure.
const char* fp4kit_last_error(void) { return t_last_error.c_str(); }

// "unknown" for a value outside the fp4kit_status enum.
const char* fp4kit_status_name(fp4kit_status status) {
  const int64_t value = raw_enum(status);
  if (value < FP4KIT_OK || value > FP4KIT_ERR_INTERNAL) return "unknown";
  return fp4kit::error_code_name(static_cast<ErrorCode>(status));
}

// ---------------------------------------------------------------------------------------------
// Plain-struct helpers (cannot fail)
// ---------------------------------------------------------------------------------------------

// A dense row-major [rows, cols] CPU view (strides {cols, 1}); nothing is checked until it is used.
fp4kit_tensor_view fp4kit_matrix_view(void* data, fp4kit_dtype dtype, int64_t rows, int64_t cols) {
  fp4kit_tensor_view v{};
  v.data = data;
  v.dtype = dtype;
  v.rank = 2;
  v.shape[0] = rows;
  v.shape[1] = cols;
  v.strides[0] = cols;
  v.strides[1] = 1;
  v.device_type = FP4KIT_DEVICE_CPU;
  v.device_index = 0;
  return v;
}

fp4kit_target fp4kit_cpu_target(void) {
  fp4kit_target t{};
  t.device_type = FP4KIT_DEVICE_CPU;
  t.device_index = 0;
  t.stream = nullptr;
  return t;
}

// Equal to a default-constructed fp4kit::QuantParams: rowwise, 1D, RNE, no RHT (mask 0xD7E8 kept).
fp4kit_quant_params fp4kit_default_quant_params(void) { return to_c(fp4kit::QuantParams{}); }

// alpha 1, beta 0, no C, no bias, FP32 accumulation: fp4kit::GemmOptions{}.
fp4kit_gemm_options fp4kit_default_gemm_options(void) {
  const fp4kit::GemmOptions defaults;
  fp4kit_gemm_options o{};
  o.alpha = defaults.alpha;
  o.beta = defaults.beta;
  o.c = nullptr;
  o.bias = nullptr;
  o.accumulation = static_cast<fp4kit_accumulation>(defaults.accumulation);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Recipe
// ---------------------------------------------------------------------------------------------

// out: written only on success. Reads the FP4KIT_NVFP4_* variables now; the result is validated.
fp4kit_status fp4kit_recipe_from_env(fp4kit_recipe* out) {
  static constexpr const char* kFn = "fp4kit_recipe_from_env";
  return guarded(kFn, [&] {
    require(out, kFn, "out");
    *out = to_c(fp4kit::Recipe::from_env());
  });
}

// FP4KIT_ERR_INVALID_RECIPE for a combination NUMERICS.md forbids; the message names the field.
fp4kit_status fp4kit_recipe_validate(const fp4kit_recipe* recipe) {
  static constexpr const char* kFn = "fp4kit_recipe_validate";
  return guarded(kFn, [&] {
    require(recipe, kFn, "recipe");
    to_cpp(*recipe).validate();
  });
}

// out: the quantization of `role` at `step` (the SR offset is sr_offset_base + step); written only
// on success. The recipe is validated first.
fp4kit_status fp4kit_recipe_params(const fp4kit_recipe* recipe, fp4kit_role role, uint64_t step,
                                   fp4kit_quant_params* out) {
  static constexpr const char* kFn = "fp4kit_recipe_params";
  return guarded(kFn, [&] {
    require(recipe, kFn, "recipe");
    require(out, kFn, "out");
    require_range(raw_enum(role), FP4KIT_ROLE_FPROP_INPUT, FP4KIT_ROLE_WGRAD_GRAD, kFn, "`role`",
                  "one of FP4KIT_ROLE_FPROP_INPUT..FP4KIT_ROLE_WGRAD_GRAD");
    *out = to_c(to_cpp(*recipe).params(static_cast<fp4kit::OperandRole>(role), step));
  });
}

// ---------------------------------------------------------------------------------------------
// Operations: each forwards to the fp4kit:: function of the same name (fp4kit/ops.hpp has the
// shape, dtype and device contracts). target NULL: the CPU.
// ---------------------------------------------------------------------------------------------

// x: F32/F16/BF16 [R, C]. out_finite_amax (required), out_amax, out_counts (optional): F32 [1] or
// [R] when per_row, U32 [2] for the counts.
fp4kit_status fp4kit_amax(const fp4kit_tensor_view* x, int32_t per_row, const fp4kit_tensor_view* out_finite_amax,
                          const fp4kit_tensor_view* out_amax, const fp4kit_tensor_view* out_counts,
                          const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_amax";
  return guarded(kFn, [&] {
    require(x, kFn, "x");
    require(out_finite_amax, kFn, "out_finite_amax");
    fp4kit::AmaxOutputs outputs;
    outputs.finite_amax = to_cpp(*out_finite_amax, kFn, "out_finite_amax");
    outputs.amax = to_cpp_optional(out_amax, kFn, "out_amax");
    outputs.nonfinite_counts = to_cpp_optional(out_counts, kFn, "out_counts");
    fp4kit::amax(to_cpp(*x, kFn, "x"), per_row != 0, outputs, to_cpp(target, kFn));
  });
}

// x: F32/F16/BF16 [R, C]; y: x's dtype, [R, C] or, with transpose, [C, ceil(R/16)*16].
fp4kit_status fp4kit_hadamard(const fp4kit_tensor_view* x, const fp4kit_tensor_view* y, uint16_t sign_mask,
                              int32_t transpose, const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_hadamard";
  return guarded(kFn, [&] {
    require(x, kFn, "x");
    require(y, kFn, "y");
    fp4kit::hadamard(to_cpp(*x, kFn, "x"), to_cpp(*y, kFn, "y"), sign_mask, transpose != 0, to_cpp(target, kFn));
  });
}

// x: F32/F16/BF16 [R, C] on the target's device. *out: a new tensor owned by the caller (free with
// fp4kit_nvfp4_destroy); set to NULL first, so it is NULL on any failure.
fp4kit_status fp4kit_quantize(const fp4kit_tensor_view* x, const fp4kit_quant_params* params,
                              const fp4kit_target* target, fp4kit_nvfp4** out) {
  static constexpr const char* kFn = "fp4kit_quantize";
  return guarded(kFn, [&] {
    require(out, kFn, "out");
    *out = nullptr;
    require(x, kFn, "x");
    require(params, kFn, "params");
    fp4kit::Nvfp4Tensor tensor =
        fp4kit::quantize(to_cpp(*x, kFn, "x"), to_cpp(*params, kFn, "params"), to_cpp(target, kFn));
    fp4kit_nvfp4* handle = new (std::nothrow) fp4kit_nvfp4{std::move(tensor)};
    if (handle == nullptr) throw std::bad_alloc();
    *out = handle;
  });
}

// NULL is a no-op. Views obtained from the tensor dangle afterwards.
void fp4kit_nvfp4_destroy(fp4kit_nvfp4* tensor) { delete tensor; }

// out: a view into the tensor's own memory (valid until fp4kit_nvfp4_destroy). data U8
// [rows, ceil(cols/16)*8], scales E4M3 [rows, ceil(cols/16)], amax F32 [1] or [rows], in the
// orientation of `direction` (columnwise: rows = the source's cols).
fp4kit_status fp4kit_nvfp4_field_view(const fp4kit_nvfp4* tensor, fp4kit_direction direction,
                                      fp4kit_nvfp4_field field, fp4kit_tensor_view* out) {
  static constexpr const char* kFn = "fp4kit_nvfp4_field_view";
  return guarded(kFn, [&] {
    require(tensor, kFn, "tensor");
    require(out, kFn, "out");
    const fp4kit::Direction d = to_single_direction(raw_enum(direction), kFn, "direction");
    require_range(raw_enum(field), FP4KIT_FIELD_DATA, FP4KIT_FIELD_SCALES_SWIZZLED, kFn, "`field`",
                  "FP4KIT_FIELD_DATA, FP4KIT_FIELD_SCALES, FP4KIT_FIELD_AMAX or FP4KIT_FIELD_SCALES_SWIZZLED");
    const fp4kit::Nvfp4Part& part = tensor->tensor.part(d);  // throws if that direction is absent
    switch (field) {
      case FP4KIT_FIELD_DATA: *out = to_c(part.data); break;
      case FP4KIT_FIELD_SCALES: *out = to_c(part.scales); break;
      case FP4KIT_FIELD_AMAX: *out = to_c(part.amax); break;
      case FP4KIT_FIELD_SCALES_SWIZZLED:
        if (part.scales_swizzled.data == nullptr) {
          throw fp4kit::Error(ErrorCode::kInvalidArgument, "fp4kit_nvfp4_field_view: the NVFP4 tensor has no swizzled scales",
                              "quantize with swizzled_scales = 1");
        }
        *out = to_c(part.scales_swizzled);
        break;
    }
  });
}

// out: U32 [2] {NaN count, Inf count} of the source, on the tensor's device.
fp4kit_status fp4kit_nvfp4_nonfinite_counts(const fp4kit_nvfp4* tensor, fp4kit_tensor_view* out) {
  static constexpr const char* kFn = "fp4kit_nvfp4_nonfinite_counts";
  return guarded(kFn, [&] {
    require(tensor, kFn, "tensor");
    require(out, kFn, "out");
    *out = to_c(tensor->tensor.nonfinite_counts());
  });
}

// out, rows, cols (all required): the params the tensor was made with and its source's [rows, cols].
fp4kit_status fp4kit_nvfp4_params(const fp4kit_nvfp4* tensor, fp4kit_quant_params* out, int64_t* rows,
                                  int64_t* cols) {
  static constexpr const char* kFn = "fp4kit_nvfp4_params";
  return guarded(kFn, [&] {
    require(tensor, kFn, "tensor");
    require(out, kFn, "out");
    require(rows, kFn, "rows");
    require(cols, kFn, "cols");
    const fp4kit::Nvfp4Meta& meta = tensor->tensor.meta();
    *out = to_c(meta.params);
    *rows = meta.rows;
    *cols = meta.cols;
  });
}

// out: F32/F16/BF16; rowwise [R, C]; columnwise [C, R] (undo_rht != 0 or no RHT) or
// [C, ceil(R/16)*16] (the transformed values as stored).
fp4kit_status fp4kit_dequantize(const fp4kit_nvfp4* tensor, fp4kit_direction direction,
                                const fp4kit_tensor_view* out, int32_t undo_rht, const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_dequantize";
  return guarded(kFn, [&] {
    require(tensor, kFn, "tensor");
    require(out, kFn, "out");
    fp4kit::DequantizeOptions options;
    options.undo_rht = undo_rht != 0;
    fp4kit::dequantize(tensor->tensor, to_single_direction(raw_enum(direction), kFn, "direction"),
                       to_cpp(*out, kFn, "out"), options, to_cpp(target, kFn));
  });
}

// compact: E4M3 [rows, cols]; swizzled: E4M3 or U8 vector of fp4kit_swizzled_scale_bytes(rows, cols).
fp4kit_status fp4kit_swizzle_scales(const fp4kit_tensor_view* compact, const fp4kit_tensor_view* swizzled,
                                    const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_swizzle_scales";
  return guarded(kFn, [&] {
    require(compact, kFn, "compact");
    require(swizzled, kFn, "swizzled");
    fp4kit::swizzle_scales(to_cpp(*compact, kFn, "compact"), to_cpp(*swizzled, kFn, "swizzled"),
                           to_cpp(target, kFn));
  });
}

fp4kit_status fp4kit_unswizzle_scales(const fp4kit_tensor_view* swizzled, const fp4kit_tensor_view* compact,
                                      const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_unswizzle_scales";
  return guarded(kFn, [&] {
    require(swizzled, kFn, "swizzled");
    require(compact, kFn, "compact");
    fp4kit::unswizzle_scales(to_cpp(*swizzled, kFn, "swizzled"), to_cpp(*compact, kFn, "compact"),
                             to_cpp(target, kFn));
  });
}

// rows and cols padded to 128 and 4 (fp4kit::swizzled_scale_bytes). Returns -1, and sets
// fp4kit_last_error(), when rows or cols is negative or the size does not fit in int64_t.
int64_t fp4kit_swizzled_scale_bytes(int64_t rows, int64_t cols) {
  constexpr int64_t kMax = INT64_MAX;
  const bool in_range = rows >= 0 && cols >= 0 && rows <= kMax - 127 && cols <= kMax - 3 &&
                        (fp4kit::swizzled_scale_cols(cols) == 0 ||
                         fp4kit::swizzled_scale_rows(rows) <= kMax / fp4kit::swizzled_scale_cols(cols));
  if (!in_range) {
    set_last_error("fp4kit_swizzled_scale_bytes",
                   "rows and cols must be non-negative and the padded size must fit in int64_t "
                   "(hint: pass the compact scale matrix's [rows, ceil(cols/16)] extents)");
    return -1;
  }
  return fp4kit::swizzled_scale_bytes(rows, cols);
}

// D[M, N] = alpha * A[M, K] . B[N, K]^T (+ beta * C) (+ bias). d: BF16/F32/F16 [M, N].
// options NULL: fp4kit_default_gemm_options(); options->c / ->bias NULL: absent.
fp4kit_status fp4kit_gemm(const fp4kit_gemm_operand* a, const fp4kit_gemm_operand* b, const fp4kit_tensor_view* d,
                          const fp4kit_gemm_options* options, const fp4kit_target* target) {
  static constexpr const char* kFn = "fp4kit_gemm";
  return guarded(kFn, [&] {
    require(a, kFn, "a");
    require(b, kFn, "b");
    require(d, kFn, "d");
    fp4kit::gemm(to_cpp(*a, kFn, "a"), to_cpp(*b, kFn, "b"), to_cpp(*d, kFn, "d"), to_cpp(options, kFn),
                 to_cpp(target, kFn));
  });
}

}  // extern "C"
