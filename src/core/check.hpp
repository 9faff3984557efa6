// src/core/check.hpp: internal helpers for validating inputs and building error messages.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include "fp4kit/error.hpp"
#include "fp4kit/tensor.hpp"

namespace fp4kit::detail {

// Concatenates anything streamable: cat("got ", n, " columns").
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

[[noreturn]] inline void fail(ErrorCode code, std::string message, std::string hint = {}) {
  throw Error(code, std::move(message), std::move(hint));
}

// A view of rank >= 1 seen as a row-major matrix: rank 1 is [1, n]; leading dimensions collapse.
struct Matrix {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // elements between rows
  Device device{};

  template <typename T>
  T* row(int64_t r) const noexcept {
    return static_cast<T*>(data) + r * row_stride;
  }
};

// Validates and collapses `view`; `what` names it in messages ("quantize: x").
// Checks: rank 1..4, non-negative shape, data non-null when non-empty, last dimension contiguous,
// leading dimensions collapsible into one row index.
Matrix as_matrix(const TensorView& view, const char* what);

// Checks that `view` is a dense vector (any rank) of exactly n elements of dtype on device.
void check_vector(const TensorView& view, const char* what, DType dtype, int64_t n, Device device);

// Checks a matrix's dtype is one of the float input types (F32, F16, BF16).
void check_float_input(const Matrix& m, const char* what);

// Checks that `m` has exactly rows x cols and the given dtype.
void check_matrix_shape(const Matrix& m, const char* what, int64_t rows, int64_t cols);

// Element (r, c) of a float-typed matrix (F32/F16/BF16/F64) widened to float exactly (F64 rounds).
float load_float(const Matrix& m, int64_t r, int64_t c) noexcept;
// Stores v into (r, c) of an F32/F16/BF16 matrix with round-to-nearest-even.
void store_float(const Matrix& m, int64_t r, int64_t c, float v) noexcept;

std::string describe_device(Device d);

}  // namespace fp4kit::detail
