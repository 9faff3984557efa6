// tests/cuda/gemm_test_util.hpp: what the GPU GEMM suites (test_gemm_gpu.cu, test_gemm_smallm_gpu.cu)
// share: host bytes into device tensors, D widened to float, the oracle in D's dtype, and bitwise
// comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/tensor.hpp"
#include "test_util.hpp"

namespace fp4kit::test {

// Output fills before a GEMM call: NaN in f32, bf16 and f16 (an unwritten element cannot pass),
// and a finite pattern for the repeated call.
constexpr uint8_t kPoison = 0xFF;
constexpr uint8_t kPoisonAgain = 0x5A;

// A host tensor's bytes into a device tensor of the same size (both dense).
inline void copy_to_device(const TensorView& dst, const TensorView& src) {
  if (src.nbytes() == 0) return;
  if (!dst.is_contiguous() || !src.is_contiguous() || dst.nbytes() != src.nbytes()) {
    throw std::runtime_error("cannot copy " + src.describe() + " into " + dst.describe());
  }
  FP4KIT_CUDA_OK(cudaMemcpy(dst.data, src.data, src.nbytes(), cudaMemcpyHostToDevice));
}

// Element i of an F32/F16/BF16 array, widened.
inline float element(const std::vector<uint8_t>& bytes, DType dt, size_t i) {
  if (dt == DType::kF32) {
    float f;
    std::memcpy(&f, bytes.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, bytes.data() + 2 * i, 2);
  return dt == DType::kBF16 ? bf16_to_float(h) : fp16_to_float(h);
}

// The checked rows of D [M, N] (bytes in `dt`), widened: [rows.size(), N].
inline std::vector<float> checked_values(const std::vector<uint8_t>& d, DType dt, int64_t n,
                                         const std::vector<int64_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(n));
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t j = 0; j < n; ++j) {
      out[i * static_cast<size_t>(n) + static_cast<size_t>(j)] = element(d, dt, static_cast<size_t>(rows[i] * n + j));
    }
  }
  return out;
}

// The oracle in D's dtype, widened: the FP32 oracle rounded like the reference stores it.
inline std::vector<float> oracle_in(const HostMatrix& oracle, DType dt) {
  HostMatrix r(oracle.rows, oracle.cols, dt);
  std::vector<float> out(static_cast<size_t>(oracle.rows * oracle.cols));
  for (int64_t i = 0; i < oracle.rows; ++i) {
    for (int64_t j = 0; j < oracle.cols; ++j) {
      r.set(i, j, oracle.get(i, j));
      out[static_cast<size_t>(i * oracle.cols + j)] = r.get(i, j);
    }
  }
  return out;
}

// Bit equality of [rows.size(), n] values (any NaN matching any NaN: NUMERICS fixes only that such
// an output is NaN, and GPU arithmetic returns the canonical NaN where x86 keeps a payload); `what`
// names the expected side in the message.
inline testing::AssertionResult bit_equal(const std::vector<float>& got, const std::vector<float>& want, int64_t n,
                                          const std::vector<int64_t>& rows, const char* what) {
  int64_t bad = 0;
  std::ostringstream first;
  first.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const float g = got[i], w = want[i];
    if ((std::isnan(g) && std::isnan(w)) || float_bits(g) == float_bits(w)) continue;
    if (bad++ < 6) {
      first << "\n    (" << rows[i / static_cast<size_t>(n)] << ", " << i % static_cast<size_t>(n) << "): got " << g
            << ", " << what << " " << w;
    }
  }
  if (bad == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << bad << " of " << got.size() << " elements differ from the " << what
                                     << first.str();
}

}  // namespace fp4kit::test
