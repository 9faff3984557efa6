/* fp4kit.h: the C API. It mirrors the C++ API (fp4kit/ops.hpp) one call for one call.
 *
 * Every function returns an fp4kit_status; on failure fp4kit_last_error() returns the message and
 * hint of that failure (thread-local; valid until the next failing call on the same thread).
 * No function aborts on bad input. Enum values equal those of the C++ API.
 */
#ifndef FP4KIT_H_
#define FP4KIT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fp4kit_status {
  FP4KIT_OK = 0,
  FP4KIT_ERR_INVALID_ARGUMENT = 1,
  FP4KIT_ERR_SHAPE_MISMATCH = 2,
  FP4KIT_ERR_DTYPE_MISMATCH = 3,
  FP4KIT_ERR_LAYOUT = 4,
  FP4KIT_ERR_NULL_POINTER = 5,
  FP4KIT_ERR_INVALID_RECIPE = 6,
  FP4KIT_ERR_UNSUPPORTED = 7,
  FP4KIT_ERR_CUDA = 8,
  FP4KIT_ERR_OUT_OF_MEMORY = 9,
  FP4KIT_ERR_IO = 10,
  FP4KIT_ERR_INTERNAL = 11
} fp4kit_status;

typedef enum fp4kit_dtype {
  FP4KIT_F32 = 0,
  FP4KIT_F16 = 1,
  FP4KIT_BF16 = 2,
  FP4KIT_U8 = 3,
  FP4KIT_E4M3 = 4,
  FP4KIT_F64 = 5,
  FP4KIT_U32 = 6
} fp4kit_dtype;

typedef enum fp4kit_device_type { FP4KIT_DEVICE_CPU = 0, FP4KIT_DEVICE_CUDA = 1 } fp4kit_device_type;

typedef enum fp4kit_direction {
  FP4KIT_ROWWISE = 1,
  FP4KIT_COLUMNWISE = 2,
  FP4KIT_BOTH = 3
} fp4kit_direction;

typedef enum fp4kit_block_scaling { FP4KIT_BLOCK_1D = 0, FP4KIT_BLOCK_2D = 1 } fp4kit_block_scaling;
typedef enum fp4kit_rounding { FP4KIT_ROUND_NEAREST = 0, FP4KIT_ROUND_STOCHASTIC = 1 } fp4kit_rounding;

typedef enum fp4kit_role {
  FP4KIT_ROLE_FPROP_INPUT = 0,
  FP4KIT_ROLE_FPROP_WEIGHT = 1,
  FP4KIT_ROLE_DGRAD_GRAD = 2,
  FP4KIT_ROLE_DGRAD_WEIGHT = 3,
  FP4KIT_ROLE_WGRAD_INPUT = 4,
  FP4KIT_ROLE_WGRAD_GRAD = 5
} fp4kit_role;

typedef enum fp4kit_accumulation { FP4KIT_ACCUMULATE_F32 = 0, FP4KIT_ACCUMULATE_F64 = 1 } fp4kit_accumulation;

#define FP4KIT_MAX_RANK 4

/* A non-owning view: strides in elements; a view of rank >= 2 is used as [prod(leading), last]. */
typedef struct fp4kit_tensor_view {
  void* data;
  fp4kit_dtype dtype;
  int32_t rank;
  int64_t shape[FP4KIT_MAX_RANK];
  int64_t strides[FP4KIT_MAX_RANK];
  fp4kit_device_type device_type;
  int32_t device_index;
} fp4kit_tensor_view;

/* Where a call runs; stream is a cudaStream_t for CUDA (NULL: the default stream). */
typedef struct fp4kit_target {
  fp4kit_device_type device_type;
  int32_t device_index;
  void* stream;
} fp4kit_target;

typedef struct fp4kit_quant_params {
  fp4kit_direction direction;
  fp4kit_block_scaling block;
  fp4kit_rounding rounding;
  int32_t row_scaled; /* bool */
  int32_t rht;        /* bool: RHT on the columnwise output */
  uint16_t rht_mask;
  uint64_t sr_seed;
  uint64_t sr_offset;
  int32_t swizzled_scales; /* bool: also write the GEMM-swizzled scales (FP4KIT_FIELD_SCALES_SWIZZLED) */
} fp4kit_quant_params;

typedef struct fp4kit_recipe {
  int32_t disable_rht;
  int32_t disable_stochastic_rounding;
  int32_t disable_2d_quantization;
  int32_t row_scaled_activation;
  uint16_t rht_mask;
  uint64_t sr_seed;
  uint64_t sr_offset_base;
} fp4kit_recipe;

/* An NVFP4 tensor owned by the library. */
typedef struct fp4kit_nvfp4 fp4kit_nvfp4;

typedef enum fp4kit_nvfp4_field {
  FP4KIT_FIELD_DATA = 0,   /* U8 [rows, ceil(cols/16)*8] */
  FP4KIT_FIELD_SCALES = 1, /* E4M3 [rows, ceil(cols/16)] */
  FP4KIT_FIELD_AMAX = 2,   /* F32 [1] or [rows] */
  FP4KIT_FIELD_SCALES_SWIZZLED = 3 /* U8 [swizzled bytes], when quantized with swizzled_scales */
} fp4kit_nvfp4_field;

typedef struct fp4kit_gemm_operand {
  const fp4kit_nvfp4* nvfp4;  /* NULL: use dense */
  fp4kit_direction direction; /* which part of nvfp4 */
  fp4kit_tensor_view dense;
} fp4kit_gemm_operand;

typedef struct fp4kit_gemm_options {
  float alpha;
  float beta;
  const fp4kit_tensor_view* c;    /* optional */
  const fp4kit_tensor_view* bias; /* optional */
  fp4kit_accumulation accumulation;
} fp4kit_gemm_options;

/* Version "MAJOR.MINOR.PATCH". */
const char* fp4kit_version(void);
/* Message and hint of the last failure on this thread ("" if none). */
const char* fp4kit_last_error(void);
/* Stable name of a status, e.g. "shape_mismatch". */
const char* fp4kit_status_name(fp4kit_status status);

/* Helpers that fill plain structs. */
fp4kit_tensor_view fp4kit_matrix_view(void* data, fp4kit_dtype dtype, int64_t rows, int64_t cols);
fp4kit_target fp4kit_cpu_target(void);
fp4kit_quant_params fp4kit_default_quant_params(void);
fp4kit_gemm_options fp4kit_default_gemm_options(void);

/* The recipe defaults overridden by FP4KIT_NVFP4_* environment variables, validated. */
fp4kit_status fp4kit_recipe_from_env(fp4kit_recipe* out);
fp4kit_status fp4kit_recipe_validate(const fp4kit_recipe* recipe);
fp4kit_status fp4kit_recipe_params(const fp4kit_recipe* recipe, fp4kit_role role, uint64_t step,
                                   fp4kit_quant_params* out);

/* amax: out_finite_amax required; out_amax and out_counts may be NULL. */
fp4kit_status fp4kit_amax(const fp4kit_tensor_view* x, int32_t per_row, const fp4kit_tensor_view* out_finite_amax,
                          const fp4kit_tensor_view* out_amax, const fp4kit_tensor_view* out_counts,
                          const fp4kit_target* target);

fp4kit_status fp4kit_hadamard(const fp4kit_tensor_view* x, const fp4kit_tensor_view* y, uint16_t sign_mask,
                              int32_t transpose, const fp4kit_target* target);

/* Quantize into a new library-owned tensor (*out); free it with fp4kit_nvfp4_destroy. */
fp4kit_status fp4kit_quantize(const fp4kit_tensor_view* x, const fp4kit_quant_params* params,
                              const fp4kit_target* target, fp4kit_nvfp4** out);
void fp4kit_nvfp4_destroy(fp4kit_nvfp4* tensor);
/* A view of one field of one direction (direction must be ROWWISE or COLUMNWISE and present). */
fp4kit_status fp4kit_nvfp4_field_view(const fp4kit_nvfp4* tensor, fp4kit_direction direction,
                                      fp4kit_nvfp4_field field, fp4kit_tensor_view* out);
/* {NaN count, Inf count} of the source, U32 [2]. */
fp4kit_status fp4kit_nvfp4_nonfinite_counts(const fp4kit_nvfp4* tensor, fp4kit_tensor_view* out);
fp4kit_status fp4kit_nvfp4_params(const fp4kit_nvfp4* tensor, fp4kit_quant_params* out, int64_t* rows,
                                  int64_t* cols);

/* undo_rht: for a columnwise RHT tensor, apply the inverse transform (see fp4kit/ops.hpp). */
fp4kit_status fp4kit_dequantize(const fp4kit_nvfp4* tensor, fp4kit_direction direction,
                                const fp4kit_tensor_view* out, int32_t undo_rht, const fp4kit_target* target);

fp4kit_status fp4kit_swizzle_scales(const fp4kit_tensor_view* compact, const fp4kit_tensor_view* swizzled,
                                    const fp4kit_target* target);
fp4kit_status fp4kit_unswizzle_scales(const fp4kit_tensor_view* swizzled, const fp4kit_tensor_view* compact,
                                      const fp4kit_target* target);
/* Bytes of the swizzled layout of a [rows, cols] compact scale matrix. */
int64_t fp4kit_swizzled_scale_bytes(int64_t rows, int64_t cols);

/* options may be NULL (alpha 1, beta 0, FP32 accumulation). */
fp4kit_status fp4kit_gemm(const fp4kit_gemm_operand* a, const fp4kit_gemm_operand* b, const fp4kit_tensor_view* d,
                          const fp4kit_gemm_options* options, const fp4kit_target* target);

#ifdef __cplusplus
}
#endif

#endif /* FP4KIT_H_ */
