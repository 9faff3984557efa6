#include "core/check.hpp"

#include "fp4kit/formats.hpp"

namespace fp4kit::detail {

std::string describe_device(Device d) {
  return d.type == DeviceType::kCpu ? std::string("cpu") : cat("cuda:", d.index);
}

Matrix as_matrix(const TensorView& v, const char* what) {
  if (v.rank < 1 || v.rank > kMaxRank) {
    fail(ErrorCode::kInvalidArgument, cat(what, " has rank ", v.rank, "; fp4kit takes ranks 1 to ", kMaxRank),
         "pass a matrix [rows, cols]; leading dimensions of a higher-rank tensor are collapsed into rows");
  }
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] < 0) fail(ErrorCode::kShapeMismatch, cat(what, " has a negative extent: ", v.describe()));
  }
  const int64_t cols = v.shape[v.rank - 1];
  int64_t rows = 1;
  for (int i = 0; i + 1 < v.rank; ++i) rows *= v.shape[i];
  if (v.data == nullptr && rows * cols > 0) {
    fail(ErrorCode::kNullPointer, cat(what, " has a null data pointer"), "allocate the tensor before passing it");
  }
  if (cols > 1 && v.strides[v.rank - 1] != 1) {
    fail(ErrorCode::kLayout,
         cat(what, " is not contiguous along its last dimension (stride ", v.strides[v.rank - 1], ")"),
         "the quantized dimension must be contiguous: make the tensor contiguous (or transpose it) first");
  }
  int64_t row_stride = cols;
  if (v.rank >= 2) {
    row_stride = v.strides[v.rank - 2];
    // Leading dimensions must be collapsible: stride[i] == stride[i+1] * shape[i+1].
    for (int i = v.rank - 3; i >= 0; --i) {
      if (v.shape[i] > 1 && v.strides[i] != v.strides[i + 1] * v.shape[i + 1]) {
        fail(ErrorCode::kLayout, cat(what, " has leading dimensions that do not collapse into rows: ", v.describe()),
             "make the leading dimensions contiguous (for example with .contiguous())");
      }
    }
    if (rows > 1 && row_stride < cols) {
      fail(ErrorCode::kLayout, cat(what, " has row stride ", row_stride, " smaller than its ", cols, " columns"),
           "rows must not overlap");
    }
  }
  return Matrix{v.data, v.dtype, rows, cols, row_stride, v.device};
}

void check_vector(const TensorView& v, const char* what, DType dtype, int64_t n, Device device) {
  if (v.data == nullptr) fail(ErrorCode::kNullPointer, cat(what, " has a null data pointer"));
  if (v.dtype != dtype) {
    fail(ErrorCode::kDtypeMismatch, cat(what, " must be ", dtype_name(dtype), ", got ", dtype_name(v.dtype)));
  }
  if (v.numel() != n || !v.is_contiguous()) {
    fail(ErrorCode::kShapeMismatch, cat(what, " must be a dense vector of ", n, " elements, got ", v.describe()));
  }
  if (!(v.device == device)) {
    fail(ErrorCode::kInvalidArgument,
         cat(what, " is on ", describe_device(v.device), " but the operation runs on ", describe_device(device)));
  }
}

void check_float_input(const Matrix& m, const char* what) {
  if (m.dtype != DType::kF32 && m.dtype != DType::kF16 && m.dtype != DType::kBF16) {
    fail(ErrorCode::kDtypeMismatch, cat(what, " has dtype ", dtype_name(m.dtype), "; it must be f32, f16 or bf16"),
         "convert the tensor to float32, float16 or bfloat16");
  }
}

void check_matrix_shape(const Matrix& m, const char* what, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols) {
    fail(ErrorCode::kShapeMismatch, cat(what, " must be [", rows, ", ", cols, "], got [", m.rows, ", ", m.cols, "]"));
  }
}

float load_float(const Matrix& m, int64_t r, int64_t c) noexcept {
  switch (m.dtype) {
    case DType::kF32: return m.row<const float>(r)[c];
    case DType::kF16: return fp16_to_float(m.row<const uint16_t>(r)[c]);
    case DType::kBF16: return bf16_to_float(m.row<const uint16_t>(r)[c]);
    case DType::kF64: return static_cast<float>(m.row<const double>(r)[c]);
    default: return 0.0f;
  }
}

void store_float(const Matrix& m, int64_t r, int64_t c, float v) noexcept {
  switch (m.dtype) {
    case DType::kF32: m.row<float>(r)[c] = v; break;
    case DType::kF16: m.row<uint16_t>(r)[c] = float_to_fp16(v); break;
    case DType::kBF16: m.row<uint16_t>(r)[c] = float_to_bf16(v); break;
    case DType::kF64: m.row<double>(r)[c] = v; break;
    default: break;
  }
}

}  // namespace fp4kit::detail
