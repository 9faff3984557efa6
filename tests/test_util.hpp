// tests/test_util.hpp: small helpers shared by the tests (deterministic data, host tensors, the
// errors an operation throws).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/philox.hpp"
#include "fp4kit/fp4kit.hpp"

namespace fp4kit::test {

// Deterministic standard normals from Philox (Box-Muller), identical on every compiler.
inline std::vector<float> normals(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; i += 2) {
    const detail::Philox4x32 r =
        detail::philox4x32_10({{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0, 0}},
                              static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    const double u1 = (r.v[0] + 1.0) / 4294967297.0, u2 = r.v[1] / 4294967296.0;
    const double rad = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(rad * std::cos(6.283185307179586 * u2)) * scale;
    if (i + 1 < n) out[i + 1] = static_cast<float>(rad * std::sin(6.283185307179586 * u2)) * scale;
  }
  return out;
}

// A host matrix of floats stored as `dtype` (F32, F16 or BF16), values rounded to it.
struct HostMatrix {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::kF32;
  std::vector<uint8_t> bytes;

  HostMatrix(int64_t r, int64_t c, DType dt = DType::kF32) : rows(r), cols(c), dtype(dt),
      bytes(static_cast<size_t>(r * c) * dtype_size(dt)) {}
  HostMatrix(int64_t r, int64_t c, const std::vector<float>& values, DType dt = DType::kF32) : HostMatrix(r, c, dt) {
    for (int64_t i = 0; i < r * c; ++i) set(i / c, i % c, values[static_cast<size_t>(i)]);
  }
  void set(int64_t r, int64_t c, float v) {
    const size_t i = static_cast<size_t>(r * cols + c);
    if (dtype == DType::kF32) reinterpret_cast<float*>(bytes.data())[i] = v;
    else if (dtype == DType::kBF16) reinterpret_cast<uint16_t*>(bytes.data())[i] = float_to_bf16(v);
    else reinterpret_cast<uint16_t*>(bytes.data())[i] = float_to_fp16(v);
  }
  float get(int64_t r, int64_t c) const {
    const size_t i = static_cast<size_t>(r * cols + c);
    if (dtype == DType::kF32) return reinterpret_cast<const float*>(bytes.data())[i];
    if (dtype == DType::kBF16) return bf16_to_float(reinterpret_cast<const uint16_t*>(bytes.data())[i]);
    return fp16_to_float(reinterpret_cast<const uint16_t*>(bytes.data())[i]);
  }
  TensorView view() { return TensorView::matrix(bytes.data(), dtype, rows, cols); }
};

// Nibble c of row r of a packed part (element 2i in the low nibble).
inline uint8_t nibble(const Nvfp4Part& p, int64_t r, int64_t c) {
  const uint8_t byte = static_cast<const uint8_t*>(p.data.data)[r * p.data.strides[0] + c / 2];
  return (c & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xF);
}
inline uint8_t scale(const Nvfp4Part& p, int64_t r, int64_t b) {
  return static_cast<const uint8_t*>(p.scales.data)[r * p.scales.strides[0] + b];
}
inline const uint8_t* data_row(const Nvfp4Part& p, int64_t r) {
  return static_cast<const uint8_t*>(p.data.data) + r * p.data.strides[0];
}

// What `f` threw: whether an fp4kit::Error, and its code, message, hint and what() (both).
struct Caught {
  bool thrown = false;
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  std::string hint;
  std::string what;
};
inline Caught catch_error(const std::function<void()>& f) {
  Caught c;
  try {
    f();
  } catch (const Error& e) {
    c.thrown = true;
    c.code = e.code();
    c.message = e.message();
    c.hint = e.hint();
    c.what = e.what();
  }
  return c;
}

// Runs `f`, which must throw fp4kit::Error with `code` and `fragment` in its message or hint.
inline void expect_error(ErrorCode code, const std::string& fragment, const std::function<void()>& f) {
  const Caught c = catch_error(f);
  if (!c.thrown) {
    ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    return;
  }
  EXPECT_EQ(c.code, code) << c.what;
  EXPECT_NE(c.what.find(fragment), std::string::npos) << c.what;
}

}  // namespace fp4kit::test
