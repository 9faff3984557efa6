/* tests/c/test_capi.c: the C API (fp4kit.h), compiled as C11 and linked against the library.
 *
 * Expected NVFP4 bytes are derived by hand from docs/NUMERICS.md §2 in the comments below; nothing
 * here calls a codec of the library to build an expectation. Every output buffer is poisoned before
 * the call that writes it. Prints "N passed, N failed" last; exits non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200112L /* setenv, unsetenv */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(__STDC_NO_THREADS__)
#include <threads.h> /* C11 threads: in glibc's libc itself since 2.34, no -pthread needed */
#endif

#include "fp4kit/fp4kit.h"

static int g_passed = 0;
static int g_failed = 0;

/* Counts one check; on failure prints where, what, and the library's last error message. */
#define CHECK(expr)                                                                                  \
  do {                                                                                               \
    if (expr) {                                                                                      \
      ++g_passed;                                                                                    \
    } else {                                                                                         \
      ++g_failed;                                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n    fp4kit_last_error(): \"%s\"\n", __FILE__, __LINE__, \
              #expr, fp4kit_last_error());                                                           \
    }                                                                                                \
  } while (0)

/* A call that must return `expected`; prints the status it did return. Evaluates to 1 on a match. */
#define CHECK_STATUS(call, expected) check_status((call), (expected), #call, __FILE__, __LINE__)

static int check_status(fp4kit_status got, fp4kit_status expected, const char* call, const char* file, int line) {
  if (got == expected) {
    ++g_passed;
    return 1;
  }
  ++g_failed;
  fprintf(stderr, "%s:%d: CHECK failed: %s\n    returned %s (%d), expected %s (%d)\n    fp4kit_last_error(): \"%s\"\n",
          file, line, call, fp4kit_status_name(got), (int)got, fp4kit_status_name(expected), (int)expected,
          fp4kit_last_error());
  return 0;
}

/* Compares n floats exactly (bitwise equal, or both NaN); prints the first few mismatches. */
static int floats_equal(const float* got, const float* want, int64_t n, const char* what) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int same = (got[i] == want[i]) || (isnan(got[i]) && isnan(want[i]));
    if (!same) {
      if (bad < 8) fprintf(stderr, "    %s[%lld]: got %.9g, want %.9g\n", what, (long long)i, got[i], want[i]);
      ++bad;
    }
  }
  if (bad > 0) fprintf(stderr, "    %s: %d of %lld elements differ\n", what, bad, (long long)n);
  return bad == 0;
}

static void poison_floats(float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = NAN;
}

static fp4kit_tensor_view vector_view(void* data, fp4kit_dtype dtype, int64_t n) {
  fp4kit_tensor_view v;
  memset(&v, 0, sizeof v);
  v.data = data;
  v.dtype = dtype;
  v.rank = 1;
  v.shape[0] = n;
  v.strides[0] = 1;
  v.device_type = FP4KIT_DEVICE_CPU;
  v.device_index = 0;
  return v;
}

/* ---------------------------------------------------------------------------------------------- */

static void test_version_and_names(void) {
  const char* v = fp4kit_version();
  CHECK(v != NULL);
  if (v == NULL) return;
  CHECK(v[0] != '\0');
  /* digits.digits.digits and nothing else */
  int parts = 0;
  const char* p = v;
  int shape_ok = 1;
  for (;;) {
    if (*p < '0' || *p > '9') {
      shape_ok = 0;
      break;
    }
    while (*p >= '0' && *p <= '9') ++p;
    ++parts;
    if (*p == '.') {
      ++p;
      continue;
    }
    if (*p != '\0') shape_ok = 0;
    break;
  }
  CHECK(shape_ok && parts == 3);
  if (!(shape_ok && parts == 3)) fprintf(stderr, "    version is \"%s\"\n", v);

  CHECK(strcmp(fp4kit_status_name(FP4KIT_ERR_SHAPE_MISMATCH), "shape_mismatch") == 0);
  CHECK(fp4kit_status_name((fp4kit_status)1234) != NULL);
}

static void test_plain_struct_helpers(void) {
  const fp4kit_quant_params q = fp4kit_default_quant_params();
  CHECK(q.direction == FP4KIT_ROWWISE);
  CHECK(q.block == FP4KIT_BLOCK_1D);
  CHECK(q.rounding == FP4KIT_ROUND_NEAREST);
  CHECK(q.row_scaled == 0 && q.rht == 0);
  CHECK(q.rht_mask == 0xD7E8);
  CHECK(q.sr_seed == 0 && q.sr_offset == 0);

  const fp4kit_gemm_options o = fp4kit_default_gemm_options();
  CHECK(o.alpha == 1.0f && o.beta == 0.0f);
  CHECK(o.c == NULL && o.bias == NULL);
  CHECK(o.accumulation == FP4KIT_ACCUMULATE_F32);

  float buf[6];
  const fp4kit_tensor_view m = fp4kit_matrix_view(buf, FP4KIT_BF16, 2, 3);
  CHECK(m.data == buf && m.dtype == FP4KIT_BF16 && m.rank == 2);
  CHECK(m.shape[0] == 2 && m.shape[1] == 3 && m.strides[0] == 3 && m.strides[1] == 1);
  CHECK(m.device_type == FP4KIT_DEVICE_CPU && m.device_index == 0);

  const fp4kit_target t = fp4kit_cpu_target();
  CHECK(t.device_type == FP4KIT_DEVICE_CPU && t.device_index == 0 && t.stream == NULL);

  fp4kit_nvfp4_destroy(NULL); /* must be a no-op */
  CHECK(1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Quantize a 2x32 F32 matrix and check every byte (NUMERICS.md §2), then dequantize it.
 *
 * Tensor amax = 10.5, chosen so that S_enc = 2688 / 10.5 = 256 exactly and S_dec = 1/256 = 2^-8 is
 * exact too: then every dequantized value e2m1 * sdec * S_dec is exact. (With amax 6, S_enc = 448
 * and S_dec = fl(1/448) = 0x3B124925 is rounded up, so e.g. 1.5 dequantizes to 1.50000012.)
 *   mult = 256 * fl(1/6) = 256 * 0x3E2AAAAB = 42.6666679 (0x422AAAAB, exact: a power-of-two scaling)
 *
 * Row 0, block 0: k * 1.75 for k on the E2M1 grid, bamax 10.5.
 *   bamax * mult = 10.5 * 42.6666679 = 448.0000134 -> FP32 448.0 -> E4M3 448 = 0x7E (also the
 *   saturation value). senc = 1 / (448 * 2^-8) = fl(1/1.75) = 0.571428597.
 *   x * senc = k * 1.75 * 0.571428597 = k * 1.00000004 -> rounds to k; 10.5 gives 6.0000003, clamped 6.
 *   codes 0,1,2,3,4,5,6,7, 9,A,B,C,D,E,F, 0 -> bytes (element 2i low nibble)
 *   0x10 0x32 0x54 0x76 0xA9 0xCB 0xED 0x0F. Dequantized: k * 448 * 2^-8 = k * 1.75 = the input.
 * Row 0, block 1: RNE ties, bamax 6.
 *   6 * 42.6666679 = 256.0000076 -> FP32 256.00002 -> E4M3 RNE 256 = 2^8 = 0x78 (exp 15, mantissa 0).
 *   senc = 1 / (256 * 2^-8) = 1 exactly, so x * senc = x and the ties are real ties:
 *     6->7  0.25->0  0.75->2(1.0)  1.25->2(1.0)  1.75->4(2.0)  2.5->4(2.0)  3.5->6(4.0)  5->6(4.0)
 *     -0.25->8(-0)  -0.75->A  -5->E  -0.0->0  0.1->0  2.9->5(3.0)  -6->F  4.5->6(4.0)
 *   bytes 0x07 0x22 0x44 0x66 0xA8 0x0E 0x50 0x6F.
 * Row 1, block 0: all zero: bamax 0 -> scale 0x00; senc = FLT_MAX; 0 * FLT_MAX = 0 -> code 0.
 * Row 1, block 1: k * 2^-17, bamax 6 * 2^-17: the smallest E4M3 subnormal scale.
 *   bamax * mult = 6 * 2^-17 * 256 * 0x3E2AAAAB = 2^-9 * 1.00000003 -> FP32 2^-9 exactly
 *   -> E4M3 subnormal 1 * 2^-9 = 0x01. senc = 1 / (2^-9 * 2^-8) = 2^17 exactly; x * senc = k.
 *   k = 6,4,3,2,1.5,1,0.5,0, -6,-4,-3,-2,-1.5,-1,-0.5, 0.75(tie -> 1.0)
 *   codes 7,6,5,4,3,2,1,0, F,E,D,C,B,A,9, 2 -> bytes 0x67 0x45 0x23 0x01 0xEF 0xCD 0xAB 0x29.
 */
enum { kQRows = 2, kQCols = 32 };

static void fill_quant_input(float x[kQRows][kQCols]) {
  static const float row0[kQCols] = {
      0.0f,  0.875f, 1.75f, 2.625f, 3.5f,   5.25f,  7.0f,  10.5f, -0.875f, -1.75f, -2.625f,
      -3.5f, -5.25f, -7.0f, -10.5f, 0.0f,   6.0f,   0.25f, 0.75f, 1.25f,   1.75f,  2.5f,
      3.5f,  5.0f,   -0.25f, -0.75f, -5.0f, -0.0f,  0.1f,  2.9f,  -6.0f,   4.5f};
  static const float row1_block1[16] = {6.0f,  4.0f,  3.0f,  2.0f,  1.5f,  1.0f,  0.5f,  0.0f,
                                        -6.0f, -4.0f, -3.0f, -2.0f, -1.5f, -1.0f, -0.5f, 0.75f};
  for (int j = 0; j < kQCols; ++j) x[0][j] = row0[j];
  for (int j = 0; j < 16; ++j) x[1][j] = 0.0f;
  for (int j = 0; j < 16; ++j) x[1][16 + j] = row1_block1[j] * 0x1p-17f;
}

static void test_quantize_bytes_and_dequantize(void) {
  float x[kQRows][kQCols];
  fill_quant_input(x);
  const fp4kit_tensor_view xv = fp4kit_matrix_view(x, FP4KIT_F32, kQRows, kQCols);
  const fp4kit_quant_params params = fp4kit_default_quant_params();
  const fp4kit_target cpu = fp4kit_cpu_target();

  fp4kit_nvfp4* q = NULL;
  if (!CHECK_STATUS(fp4kit_quantize(&xv, &params, &cpu, &q), FP4KIT_OK)) return;
  CHECK(q != NULL);
  if (q == NULL) return;

  static const uint8_t want_data[kQRows][16] = {
      {0x10, 0x32, 0x54, 0x76, 0xA9, 0xCB, 0xED, 0x0F, 0x07, 0x22, 0x44, 0x66, 0xA8, 0x0E, 0x50, 0x6F},
      {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x45, 0x23, 0x01, 0xEF, 0xCD, 0xAB, 0x29}};
  static const uint8_t want_scales[kQRows][2] = {{0x7E, 0x78}, {0x00, 0x01}};

  fp4kit_tensor_view data, scales, amax;
  memset(&data, 0, sizeof data);
  memset(&scales, 0, sizeof scales);
  memset(&amax, 0, sizeof amax);
  const int got_data = CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_ROWWISE, FP4KIT_FIELD_DATA, &data), FP4KIT_OK);
  const int got_scales =
      CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_ROWWISE, FP4KIT_FIELD_SCALES, &scales), FP4KIT_OK);
  const int got_amax = CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_ROWWISE, FP4KIT_FIELD_AMAX, &amax), FP4KIT_OK);

  if (got_data) {
    CHECK(data.dtype == FP4KIT_U8 && data.rank == 2 && data.shape[0] == kQRows && data.shape[1] == 16);
    CHECK(data.strides[1] == 1 && data.device_type == FP4KIT_DEVICE_CPU && data.data != NULL);
    if (data.rank == 2 && data.shape[0] == kQRows && data.shape[1] == 16 && data.data != NULL) {
      const uint8_t* bytes = (const uint8_t*)data.data;
      int bad = 0;
      for (int r = 0; r < kQRows; ++r) {
        for (int j = 0; j < 16; ++j) {
          const uint8_t got = bytes[r * data.strides[0] + j];
          if (got != want_data[r][j]) {
            fprintf(stderr, "    data[%d][%d]: got 0x%02X, want 0x%02X\n", r, j, got, want_data[r][j]);
            ++bad;
          }
        }
      }
      CHECK(bad == 0);
    }
  }
  if (got_scales) {
    CHECK(scales.dtype == FP4KIT_E4M3 && scales.rank == 2 && scales.shape[0] == kQRows && scales.shape[1] == 2);
    if (scales.rank == 2 && scales.shape[0] == kQRows && scales.shape[1] == 2 && scales.data != NULL) {
      const uint8_t* bytes = (const uint8_t*)scales.data;
      int bad = 0;
      for (int r = 0; r < kQRows; ++r) {
        for (int b = 0; b < 2; ++b) {
          const uint8_t got = bytes[r * scales.strides[0] + b];
          if (got != want_scales[r][b]) {
            fprintf(stderr, "    scales[%d][%d]: got 0x%02X, want 0x%02X\n", r, b, got, want_scales[r][b]);
            ++bad;
          }
        }
      }
      CHECK(bad == 0);
    }
  }
  if (got_amax) {
    CHECK(amax.dtype == FP4KIT_F32 && amax.rank == 1 && amax.shape[0] == 1);
    if (amax.data != NULL) CHECK(((const float*)amax.data)[0] == 10.5f);
  }

  /* How it was made, and the (absent) non-finite values. */
  fp4kit_quant_params made;
  int64_t rows = -1, cols = -1;
  if (CHECK_STATUS(fp4kit_nvfp4_params(q, &made, &rows, &cols), FP4KIT_OK)) {
    CHECK(rows == kQRows && cols == kQCols);
    CHECK(made.direction == FP4KIT_ROWWISE && made.block == FP4KIT_BLOCK_1D && made.rounding == FP4KIT_ROUND_NEAREST);
  }
  fp4kit_tensor_view counts;
  if (CHECK_STATUS(fp4kit_nvfp4_nonfinite_counts(q, &counts), FP4KIT_OK)) {
    CHECK(counts.dtype == FP4KIT_U32 && counts.rank == 1 && counts.shape[0] == 2 && counts.data != NULL);
    if (counts.data != NULL) CHECK(((const uint32_t*)counts.data)[0] == 0 && ((const uint32_t*)counts.data)[1] == 0);
  }

  /* Only the rowwise part exists; BOTH is never a single part. */
  fp4kit_tensor_view unused;
  CHECK(fp4kit_nvfp4_field_view(q, FP4KIT_COLUMNWISE, FP4KIT_FIELD_DATA, &unused) != FP4KIT_OK);
  CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_BOTH, FP4KIT_FIELD_DATA, &unused), FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(fp4kit_last_error(), "direction") != NULL);
  CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_ROWWISE, (fp4kit_nvfp4_field)9, &unused),
               FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(fp4kit_nvfp4_field_view(NULL, FP4KIT_ROWWISE, FP4KIT_FIELD_DATA, &unused), FP4KIT_ERR_NULL_POINTER);
  /* Quantized without swizzled_scales: no swizzled copy, and the error says how to get one. */
  CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_ROWWISE, FP4KIT_FIELD_SCALES_SWIZZLED, &unused),
               FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(fp4kit_last_error(), "swizzled_scales") != NULL);

  /* Dequantize: exact on the grid (the input itself), hand-rounded values elsewhere (see above). */
  float want[kQRows][kQCols];
  for (int j = 0; j < 16; ++j) want[0][j] = x[0][j];
  static const float row0_block1[16] = {6.0f, 0.0f, 1.0f, 1.0f,  2.0f,  2.0f, 4.0f, 4.0f,
                                        -0.0f, -1.0f, -4.0f, 0.0f, 0.0f, 3.0f, -6.0f, 4.0f};
  for (int j = 0; j < 16; ++j) want[0][16 + j] = row0_block1[j];
  for (int j = 0; j < 16; ++j) want[1][j] = 0.0f;
  for (int j = 0; j < 15; ++j) want[1][16 + j] = x[1][16 + j];
  want[1][31] = 1.0f * 0x1p-17f; /* 0.75 * 2^-17 was a tie, rounded to even code 2 (1.0) */

  float out[kQRows][kQCols];
  poison_floats(&out[0][0], kQRows * kQCols);
  const fp4kit_tensor_view ov = fp4kit_matrix_view(out, FP4KIT_F32, kQRows, kQCols);
  if (CHECK_STATUS(fp4kit_dequantize(q, FP4KIT_ROWWISE, &ov, 1, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(&out[0][0], &want[0][0], kQRows * kQCols, "dequantized"));
    CHECK(signbit(out[0][24]) != 0); /* code 8 is -0 */
  }

  fp4kit_nvfp4_destroy(q);
}

/* The same matrix with both directions: geometry of the columnwise part (NUMERICS.md §3). */
static void test_quantize_both_directions(void) {
  float x[kQRows][kQCols];
  fill_quant_input(x);
  const fp4kit_tensor_view xv = fp4kit_matrix_view(x, FP4KIT_F32, kQRows, kQCols);
  fp4kit_quant_params params = fp4kit_default_quant_params();
  params.direction = FP4KIT_BOTH;
  fp4kit_nvfp4* q = NULL;
  if (!CHECK_STATUS(fp4kit_quantize(&xv, &params, NULL, &q), FP4KIT_OK)) return;
  fp4kit_tensor_view data, scales;
  if (CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_COLUMNWISE, FP4KIT_FIELD_DATA, &data), FP4KIT_OK)) {
    /* x^T is [32, 2]: one zero-padded block of 16 per row -> 8 bytes. */
    CHECK(data.rank == 2 && data.shape[0] == kQCols && data.shape[1] == 8);
  }
  if (CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_COLUMNWISE, FP4KIT_FIELD_SCALES, &scales), FP4KIT_OK)) {
    CHECK(scales.rank == 2 && scales.shape[0] == kQCols && scales.shape[1] == 1);
  }
  fp4kit_nvfp4_destroy(q);

  /* The same with swizzled_scales: each part also has its scales in the GEMM-swizzled layout,
   * rows padded to 128 and scale columns to 4 (NUMERICS.md §10). The columnwise part's compact
   * scale (row r, block 0) sits at offset (r % 32) * 16 + ((r % 128) / 32) * 4. */
  params.swizzled_scales = 1;
  q = NULL;
  if (!CHECK_STATUS(fp4kit_quantize(&xv, &params, NULL, &q), FP4KIT_OK)) return;
  fp4kit_tensor_view sw;
  if (CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_COLUMNWISE, FP4KIT_FIELD_SCALES, &scales), FP4KIT_OK) &&
      CHECK_STATUS(fp4kit_nvfp4_field_view(q, FP4KIT_COLUMNWISE, FP4KIT_FIELD_SCALES_SWIZZLED, &sw), FP4KIT_OK)) {
    CHECK(sw.dtype == FP4KIT_U8 && sw.rank == 1 && sw.shape[0] == 128 * 4);
    const uint8_t* compact = (const uint8_t*)scales.data;
    const uint8_t* swizzled = (const uint8_t*)sw.data;
    int same = 1;
    for (int r = 0; r < kQCols; ++r) same = same && swizzled[(r % 32) * 16 + ((r % 128) / 32) * 4] == compact[r];
    CHECK(same);
    CHECK(swizzled[1] == 0 && swizzled[(kQCols % 32) * 16 + 4] == 0); /* padding */
  }
  /* Columnwise dequantization gives x^T [32, 2]; column 0 of row 0, x[0][7] = 10.5, is on the
   * grid of its block (bamax over x^T row 7 = {10.5, 0} is 10.5, scale 448): exact. */
  float out[kQCols][kQRows];
  poison_floats(&out[0][0], kQCols * kQRows);
  const fp4kit_tensor_view ov = fp4kit_matrix_view(out, FP4KIT_F32, kQCols, kQRows);
  if (CHECK_STATUS(fp4kit_dequantize(q, FP4KIT_COLUMNWISE, &ov, 1, NULL), FP4KIT_OK)) {
    CHECK(out[7][0] == 10.5f && out[7][1] == 0.0f);
  }
  fp4kit_nvfp4_destroy(q);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_amax_and_hadamard(void) {
  float x[kQRows][kQCols];
  fill_quant_input(x);
  const fp4kit_tensor_view xv = fp4kit_matrix_view(x, FP4KIT_F32, kQRows, kQCols);

  float finite[kQRows] = {NAN, NAN};
  float total[1] = {NAN};
  uint32_t counts[2] = {77, 77};
  fp4kit_tensor_view fv = vector_view(finite, FP4KIT_F32, 1);
  const fp4kit_tensor_view tv = vector_view(total, FP4KIT_F32, 1);
  const fp4kit_tensor_view cv = vector_view(counts, FP4KIT_U32, 2);
  if (CHECK_STATUS(fp4kit_amax(&xv, 0, &fv, &tv, &cv, NULL), FP4KIT_OK)) {
    CHECK(finite[0] == 10.5f && total[0] == 10.5f && counts[0] == 0 && counts[1] == 0);
  }
  fv = vector_view(finite, FP4KIT_F32, kQRows);
  finite[0] = finite[1] = NAN;
  if (CHECK_STATUS(fp4kit_amax(&xv, 1, &fv, NULL, NULL, NULL), FP4KIT_OK)) {
    CHECK(finite[0] == 10.5f && finite[1] == 6.0f * 0x1p-17f);
  }
  CHECK_STATUS(fp4kit_amax(&xv, 0, NULL, NULL, NULL, NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK(strstr(fp4kit_last_error(), "out_finite_amax") != NULL);

  /* Hadamard of e_1 with mask 0x0002 (s_1 = -1): y_c = 0.25 * s_1 * H[1][c] = -0.25 * (-1)^(c & 1). */
  float v[16] = {0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  float y[16];
  poison_floats(y, 16);
  const fp4kit_tensor_view vv = fp4kit_matrix_view(v, FP4KIT_F32, 1, 16);
  const fp4kit_tensor_view yv = fp4kit_matrix_view(y, FP4KIT_F32, 1, 16);
  if (CHECK_STATUS(fp4kit_hadamard(&vv, &yv, 0x0002, 0, NULL), FP4KIT_OK)) {
    float want[16];
    for (int c = 0; c < 16; ++c) want[c] = (c & 1) ? 0.25f : -0.25f;
    CHECK(floats_equal(y, want, 16, "hadamard"));
  }
}

/* ---------------------------------------------------------------------------------------------- */

static void unset_recipe_env(void) {
  static const char* const kNames[] = {"FP4KIT_NVFP4_DISABLE_RHT",
                                       "FP4KIT_NVFP4_DISABLE_STOCHASTIC_ROUNDING",
                                       "FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION",
                                       "FP4KIT_NVFP4_ROW_SCALED_ACTIVATION",
                                       "FP4KIT_NVFP4_RHT_MASK",
                                       "FP4KIT_NVFP4_SR_SEED",
                                       "FP4KIT_NVFP4_SR_OFFSET"};
  for (size_t i = 0; i < sizeof kNames / sizeof kNames[0]; ++i) unsetenv(kNames[i]);
}

static void test_recipe(void) {
  unset_recipe_env();
  fp4kit_recipe r;
  memset(&r, 0xAB, sizeof r);
  if (!CHECK_STATUS(fp4kit_recipe_from_env(&r), FP4KIT_OK)) return;
  CHECK(r.disable_rht == 0 && r.disable_stochastic_rounding == 0 && r.disable_2d_quantization == 0);
  CHECK(r.row_scaled_activation == 0);
  CHECK(r.rht_mask == 0xD7E8);
  CHECK(r.sr_seed == 0x5EED5EED5EED5EEDull && r.sr_offset_base == 0);
  CHECK_STATUS(fp4kit_recipe_validate(&r), FP4KIT_OK);

  /* Row-scaled activations cannot be combined with the RHT (NUMERICS.md §6): the fix names the field. */
  fp4kit_recipe bad = r;
  bad.row_scaled_activation = 1;
  CHECK_STATUS(fp4kit_recipe_validate(&bad), FP4KIT_ERR_INVALID_RECIPE);
  CHECK(fp4kit_last_error()[0] != '\0');
  CHECK(strstr(fp4kit_last_error(), "disable_rht") != NULL);
  fp4kit_quant_params p;
  CHECK_STATUS(fp4kit_recipe_params(&bad, FP4KIT_ROLE_FPROP_INPUT, 0, &p), FP4KIT_ERR_INVALID_RECIPE);

  /* The same through the environment, and a malformed variable. */
  setenv("FP4KIT_NVFP4_ROW_SCALED_ACTIVATION", "1", 1);
  CHECK_STATUS(fp4kit_recipe_from_env(&bad), FP4KIT_ERR_INVALID_RECIPE);
  unset_recipe_env();
  setenv("FP4KIT_NVFP4_RHT_MASK", "not-a-number", 1);
  CHECK_STATUS(fp4kit_recipe_from_env(&bad), FP4KIT_ERR_INVALID_RECIPE);
  CHECK(strstr(fp4kit_last_error(), "FP4KIT_NVFP4_RHT_MASK") != NULL);
  unset_recipe_env();
  setenv("FP4KIT_NVFP4_RHT_MASK", "0x1234", 1);
  if (CHECK_STATUS(fp4kit_recipe_from_env(&bad), FP4KIT_OK)) CHECK(bad.rht_mask == 0x1234);
  unset_recipe_env();

  /* wgrad grad: columnwise, RHT with the recipe's mask, stochastic rounding at offset base + step. */
  if (CHECK_STATUS(fp4kit_recipe_params(&r, FP4KIT_ROLE_WGRAD_GRAD, 7, &p), FP4KIT_OK)) {
    CHECK(p.direction == FP4KIT_COLUMNWISE);
    CHECK(p.rht == 1 && p.rht_mask == 0xD7E8);
    CHECK(p.rounding == FP4KIT_ROUND_STOCHASTIC);
    CHECK(p.sr_seed == r.sr_seed && p.sr_offset == 7);
    CHECK(p.block == FP4KIT_BLOCK_1D && p.row_scaled == 0);
  }
  /* fprop weight: 16x16 blocks, RNE, no RHT. */
  if (CHECK_STATUS(fp4kit_recipe_params(&r, FP4KIT_ROLE_FPROP_WEIGHT, 0, &p), FP4KIT_OK)) {
    CHECK(p.block == FP4KIT_BLOCK_2D);
    CHECK(p.rounding == FP4KIT_ROUND_NEAREST && p.rht == 0);
  }
  /* ... unless the recipe disables 2D. */
  fp4kit_recipe no2d = r;
  no2d.disable_2d_quantization = 1;
  if (CHECK_STATUS(fp4kit_recipe_params(&no2d, FP4KIT_ROLE_FPROP_WEIGHT, 0, &p), FP4KIT_OK)) {
    CHECK(p.block == FP4KIT_BLOCK_1D);
  }
  CHECK_STATUS(fp4kit_recipe_params(&r, (fp4kit_role)42, 0, &p), FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(fp4kit_recipe_params(&r, FP4KIT_ROLE_WGRAD_GRAD, 0, NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK_STATUS(fp4kit_recipe_from_env(NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK_STATUS(fp4kit_recipe_validate(NULL), FP4KIT_ERR_NULL_POINTER);
}

/* ---------------------------------------------------------------------------------------------- */

/* Each bad call must fail with its status, set *out to NULL and leave a new, non-empty message. */
static void test_bad_inputs(void) {
  float x[2 * 32];
  for (int i = 0; i < 2 * 32; ++i) x[i] = (float)(i % 5) - 2.0f;
  const fp4kit_quant_params params = fp4kit_default_quant_params();
  fp4kit_nvfp4* q = (fp4kit_nvfp4*)&q; /* poisoned: must come back NULL */
  char previous[512];

  CHECK_STATUS(fp4kit_quantize(NULL, &params, NULL, &q), FP4KIT_ERR_NULL_POINTER);
  CHECK(q == NULL);
  CHECK(strstr(fp4kit_last_error(), "fp4kit_quantize") != NULL && strstr(fp4kit_last_error(), "`x` is NULL") != NULL);
  snprintf(previous, sizeof previous, "%s", fp4kit_last_error());

  const fp4kit_tensor_view xv = fp4kit_matrix_view(x, FP4KIT_F32, 2, 32);
  CHECK_STATUS(fp4kit_quantize(&xv, NULL, NULL, &q), FP4KIT_ERR_NULL_POINTER);
  CHECK(strstr(fp4kit_last_error(), "`params` is NULL") != NULL);
  CHECK_STATUS(fp4kit_quantize(&xv, &params, NULL, NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK(strstr(fp4kit_last_error(), "`out` is NULL") != NULL);
  snprintf(previous, sizeof previous, "%s", fp4kit_last_error());

  /* 24 columns are not a whole number of 16-element blocks along the rowwise direction. */
  q = (fp4kit_nvfp4*)&q;
  const fp4kit_tensor_view x24 = fp4kit_matrix_view(x, FP4KIT_F32, 2, 24);
  CHECK_STATUS(fp4kit_quantize(&x24, &params, NULL, &q), FP4KIT_ERR_SHAPE_MISMATCH);
  CHECK(q == NULL);
  CHECK(fp4kit_last_error()[0] != '\0' && strcmp(fp4kit_last_error(), previous) != 0);
  snprintf(previous, sizeof previous, "%s", fp4kit_last_error());

  /* U8 is not a source dtype. */
  const fp4kit_tensor_view xu8 = fp4kit_matrix_view(x, FP4KIT_U8, 2, 32);
  CHECK_STATUS(fp4kit_quantize(&xu8, &params, NULL, &q), FP4KIT_ERR_DTYPE_MISMATCH);
  CHECK(q == NULL);
  CHECK(fp4kit_last_error()[0] != '\0' && strcmp(fp4kit_last_error(), previous) != 0);
  snprintf(previous, sizeof previous, "%s", fp4kit_last_error());

  /* Rank 7 is beyond FP4KIT_MAX_RANK. */
  fp4kit_tensor_view x7 = xv;
  x7.rank = 7;
  CHECK_STATUS(fp4kit_quantize(&x7, &params, NULL, &q), FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK(q == NULL);
  CHECK(strstr(fp4kit_last_error(), "rank") != NULL && strcmp(fp4kit_last_error(), previous) != 0);

  /* Enum values out of range, in a view, in the params and in the target. */
  fp4kit_tensor_view xbad = xv;
  xbad.dtype = (fp4kit_dtype)99;
  CHECK_STATUS(fp4kit_quantize(&xbad, &params, NULL, &q), FP4KIT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(fp4kit_last_error(), "99") != NULL);
  fp4kit_quant_params pbad = params;
  pbad.direction = (fp4kit_direction)0;
  CHECK_STATUS(fp4kit_quantize(&xv, &pbad, NULL, &q), FP4KIT_ERR_INVALID_ARGUMENT);
  fp4kit_target tbad = fp4kit_cpu_target();
  tbad.device_type = (fp4kit_device_type)5;
  CHECK_STATUS(fp4kit_quantize(&xv, &params, &tbad, &q), FP4KIT_ERR_INVALID_ARGUMENT);

  /* A successful call does not clear the message. */
  snprintf(previous, sizeof previous, "%s", fp4kit_last_error());
  if (CHECK_STATUS(fp4kit_quantize(&xv, &params, NULL, &q), FP4KIT_OK)) {
    CHECK(strcmp(fp4kit_last_error(), previous) == 0);
    fp4kit_nvfp4_destroy(q);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* GEMM: D[4, 8] = A[4, 32] . B[8, 32]^T with every value 1.75 * (an E2M1 grid value) and +-10.5 in
 * every block of 16. As in the quantize test, amax 10.5 gives S_enc = 256 and every block's scale
 * 448, so quantization is exact (checked first by dequantizing). The GEMM's global factor is
 * (10.5/2688)^2 = 2^-16 exactly. Each input product is k_a * k_b * 3.0625, a multiple of 49/64 of
 * magnitude <= 36 * 3.0625, so every partial sum of 32 is n * 49/64 with |n| <= 4608, and n * 49 < 2^24:
 * exact in FP32 in any order (the library's k_a*448 * k_b*448 * 2^-16 too). So D must equal the plain
 * float matmul of the inputs, bit for bit. */
enum { kM = 4, kN = 8, kK = 32 };

static void fill_gemm_input(float* m, int rows, int salt) {
  static const float kGrid[15] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f, 6.0f,
                                  -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  for (int r = 0; r < rows; ++r) {
    for (int k = 0; k < kK; ++k) m[r * kK + k] = 1.75f * kGrid[(r * 7 + k * 3 + salt) % 15];
    /* one +-10.5 per block of 16, so every block's amax is 10.5 */
    m[r * kK + (r + salt) % 16] = ((r + salt) & 1) ? -10.5f : 10.5f;
    m[r * kK + 16 + (r * 5 + salt) % 16] = (r & 1) ? 10.5f : -10.5f;
  }
}

static void reference_matmul(const float* a, const float* b, float* d) {
  for (int m = 0; m < kM; ++m) {
    for (int n = 0; n < kN; ++n) {
      float acc = 0.0f;
      for (int k = 0; k < kK; ++k) acc += a[m * kK + k] * b[n * kK + k];
      d[m * kN + n] = acc;
    }
  }
}

static void test_gemm(void) {
  float a[kM * kK], b[kN * kK];
  fill_gemm_input(a, kM, 0);
  fill_gemm_input(b, kN, 4);
  const fp4kit_tensor_view av = fp4kit_matrix_view(a, FP4KIT_F32, kM, kK);
  const fp4kit_tensor_view bv = fp4kit_matrix_view(b, FP4KIT_F32, kN, kK);
  const fp4kit_quant_params params = fp4kit_default_quant_params();
  fp4kit_nvfp4* qa = NULL;
  fp4kit_nvfp4* qb = NULL;
  const int ok_a = CHECK_STATUS(fp4kit_quantize(&av, &params, NULL, &qa), FP4KIT_OK);
  const int ok_b = CHECK_STATUS(fp4kit_quantize(&bv, &params, NULL, &qb), FP4KIT_OK);
  if (!ok_a || !ok_b) {
    fp4kit_nvfp4_destroy(qa);
    fp4kit_nvfp4_destroy(qb);
    return;
  }

  /* Precondition: the quantization is exact. */
  float back_a[kM * kK], back_b[kN * kK];
  poison_floats(back_a, kM * kK);
  poison_floats(back_b, kN * kK);
  const fp4kit_tensor_view back_av = fp4kit_matrix_view(back_a, FP4KIT_F32, kM, kK);
  const fp4kit_tensor_view back_bv = fp4kit_matrix_view(back_b, FP4KIT_F32, kN, kK);
  if (CHECK_STATUS(fp4kit_dequantize(qa, FP4KIT_ROWWISE, &back_av, 1, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(back_a, a, kM * kK, "dequantized A"));
  }
  if (CHECK_STATUS(fp4kit_dequantize(qb, FP4KIT_ROWWISE, &back_bv, 1, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(back_b, b, kN * kK, "dequantized B"));
  }

  float want[kM * kN];
  reference_matmul(a, b, want);

  fp4kit_gemm_operand oa, ob;
  memset(&oa, 0, sizeof oa);
  memset(&ob, 0, sizeof ob);
  oa.nvfp4 = qa;
  oa.direction = FP4KIT_ROWWISE;
  ob.nvfp4 = qb;
  ob.direction = FP4KIT_ROWWISE;
  float d[kM * kN];
  const fp4kit_tensor_view dv = fp4kit_matrix_view(d, FP4KIT_F32, kM, kN);

  /* options NULL: alpha 1, beta 0. */
  poison_floats(d, kM * kN);
  if (CHECK_STATUS(fp4kit_gemm(&oa, &ob, &dv, NULL, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(d, want, kM * kN, "D"));
  }

  /* Epilogue: D = 2 * A.B^T + 0.5 * C + bias, C and bias small dyadic values: still exact. */
  float c[kM * kN], bias[kN], want_epilogue[kM * kN];
  for (int i = 0; i < kM * kN; ++i) c[i] = (float)(i % 7) - 3.0f;
  for (int n = 0; n < kN; ++n) bias[n] = 0.25f * (float)n;
  for (int m = 0; m < kM; ++m) {
    for (int n = 0; n < kN; ++n) {
      want_epilogue[m * kN + n] = 2.0f * want[m * kN + n] + 0.5f * c[m * kN + n] + bias[n];
    }
  }
  const fp4kit_tensor_view cv = fp4kit_matrix_view(c, FP4KIT_F32, kM, kN);
  const fp4kit_tensor_view biasv = vector_view(bias, FP4KIT_F32, kN);
  fp4kit_gemm_options options = fp4kit_default_gemm_options();
  options.alpha = 2.0f;
  options.beta = 0.5f;
  options.c = &cv;
  options.bias = &biasv;
  poison_floats(d, kM * kN);
  if (CHECK_STATUS(fp4kit_gemm(&oa, &ob, &dv, &options, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(d, want_epilogue, kM * kN, "D (epilogue)"));
  }

  /* A dense F32 activation against the quantized weight (the CPU reference takes F32 operands). */
  fp4kit_gemm_operand dense_a;
  memset(&dense_a, 0, sizeof dense_a);
  dense_a.nvfp4 = NULL;
  dense_a.dense = av;
  poison_floats(d, kM * kN);
  if (CHECK_STATUS(fp4kit_gemm(&dense_a, &ob, &dv, NULL, NULL), FP4KIT_OK)) {
    CHECK(floats_equal(d, want, kM * kN, "D (dense A)"));
  }

  /* Bad operands. */
  CHECK_STATUS(fp4kit_gemm(NULL, &ob, &dv, NULL, NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK(strstr(fp4kit_last_error(), "`a` is NULL") != NULL);
  fp4kit_gemm_operand obad = ob;
  obad.direction = (fp4kit_direction)17;
  CHECK_STATUS(fp4kit_gemm(&oa, &obad, &dv, NULL, NULL), FP4KIT_ERR_INVALID_ARGUMENT);
  const fp4kit_tensor_view dwrong = fp4kit_matrix_view(d, FP4KIT_F32, kM, kN - 1);
  CHECK_STATUS(fp4kit_gemm(&oa, &ob, &dwrong, NULL, NULL), FP4KIT_ERR_SHAPE_MISMATCH);

  fp4kit_nvfp4_destroy(qa);
  fp4kit_nvfp4_destroy(qb);
}

/* ---------------------------------------------------------------------------------------------- */
/* Swizzle round trip of a 130x5 compact scale matrix: padded to 256 rows and 8 columns = 2 x 2
 * tiles of 512 bytes. Each byte must land at NUMERICS.md §10's offset, written out here again:
 *   offset(r, c) = ((r/128 * ceil(cols/4) + c/4) * 32 + r%32) * 16 + ((r%128)/32) * 4 + c%4,
 * and every other byte must be zero. */
enum { kSRows = 130, kSCols = 5, kSBytes = 256 * 8 };

static int64_t spec_swizzled_offset(int64_t r, int64_t c, int64_t cols) {
  return ((r / 128 * ((cols + 3) / 4) + c / 4) * 32 + r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4;
}

static void test_swizzle(void) {
  CHECK(fp4kit_swizzled_scale_bytes(kSRows, kSCols) == kSBytes);
  CHECK(fp4kit_swizzled_scale_bytes(128, 4) == 512);
  CHECK(fp4kit_swizzled_scale_bytes(0, 0) == 0);
  CHECK(fp4kit_swizzled_scale_bytes(-1, 4) == -1);

  uint8_t compact[kSRows * kSCols], swizzled[kSBytes], back[kSRows * kSCols];
  /* Distinct-looking non-zero bytes (1..251), so a misplaced or dropped byte shows. */
  for (int i = 0; i < kSRows * kSCols; ++i) compact[i] = (uint8_t)(1 + (i * 37) % 251);
  memset(swizzled, 0xCD, sizeof swizzled);
  memset(back, 0xCD, sizeof back);
  const fp4kit_tensor_view cv = fp4kit_matrix_view(compact, FP4KIT_E4M3, kSRows, kSCols);
  const fp4kit_tensor_view sv = vector_view(swizzled, FP4KIT_U8, kSBytes);
  const fp4kit_tensor_view bv = fp4kit_matrix_view(back, FP4KIT_E4M3, kSRows, kSCols);
  if (CHECK_STATUS(fp4kit_swizzle_scales(&cv, &sv, NULL), FP4KIT_OK)) {
    static uint8_t expected[kSBytes];
    memset(expected, 0, sizeof expected);
    for (int r = 0; r < kSRows; ++r) {
      for (int c = 0; c < kSCols; ++c) expected[spec_swizzled_offset(r, c, kSCols)] = compact[r * kSCols + c];
    }
    int bad = 0;
    for (int i = 0; i < kSBytes; ++i) {
      if (swizzled[i] != expected[i]) {
        if (bad < 8) fprintf(stderr, "    swizzled[%d]: got 0x%02X, want 0x%02X\n", i, swizzled[i], expected[i]);
        ++bad;
      }
    }
    CHECK(bad == 0);
  }
  if (CHECK_STATUS(fp4kit_unswizzle_scales(&sv, &bv, NULL), FP4KIT_OK)) {
    CHECK(memcmp(back, compact, sizeof compact) == 0);
  }
  const fp4kit_tensor_view small = vector_view(swizzled, FP4KIT_U8, kSBytes - 1);
  CHECK(fp4kit_swizzle_scales(&cv, &small, NULL) != FP4KIT_OK);
  CHECK_STATUS(fp4kit_swizzle_scales(&cv, NULL, NULL), FP4KIT_ERR_NULL_POINTER);
  CHECK(strstr(fp4kit_last_error(), "`swizzled` is NULL") != NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* fp4kit_last_error() is per thread: a fresh thread sees "", and its failures do not show here. */
#if !defined(__STDC_NO_THREADS__)
static int thread_body(void* arg) {
  int* result = (int*)arg;
  result[0] = fp4kit_last_error()[0] == '\0';
  result[1] = fp4kit_quantize(NULL, NULL, NULL, NULL) == FP4KIT_ERR_NULL_POINTER &&
              strstr(fp4kit_last_error(), "`out` is NULL") != NULL;
  return 0;
}

static void test_last_error_is_thread_local(void) {
  const fp4kit_tensor_view x7 = {NULL, FP4KIT_F32, 7, {0, 0, 0, 0}, {0, 0, 0, 0}, FP4KIT_DEVICE_CPU, 0};
  fp4kit_nvfp4* q = NULL;
  const fp4kit_quant_params params = fp4kit_default_quant_params();
  CHECK_STATUS(fp4kit_quantize(&x7, &params, NULL, &q), FP4KIT_ERR_INVALID_ARGUMENT);
  char mine[512];
  snprintf(mine, sizeof mine, "%s", fp4kit_last_error());
  int result[2] = {0, 0};
  thrd_t thread;
  if (thrd_create(&thread, thread_body, result) != thrd_success) {
    CHECK(!"thrd_create failed");
    return;
  }
  thrd_join(thread, NULL);
  CHECK(result[0]); /* empty in the new thread */
  CHECK(result[1]); /* its own failure recorded there */
  CHECK(strcmp(fp4kit_last_error(), mine) == 0);
}
#else
static void test_last_error_is_thread_local(void) {}
#endif

int main(void) {
  CHECK(fp4kit_last_error() != NULL && fp4kit_last_error()[0] == '\0'); /* no failure yet */
  test_version_and_names();
  test_plain_struct_helpers();
  test_quantize_bytes_and_dequantize();
  test_quantize_both_directions();
  test_amax_and_hadamard();
  test_recipe();
  test_bad_inputs();
  test_gemm();
  test_swizzle();
  test_last_error_is_thread_local();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
