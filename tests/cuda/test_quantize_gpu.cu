// The CUDA amax, quantize and dequantize kernels give exactly the CPU reference's bytes
// (docs/NUMERICS.md §2-§6, §8, §9) on every dtype, mode, shape and shared-memory budget.
//
// Each case runs one host input twice: through the CPU reference (Target::cpu()) and through the GPU
// (Target::cuda) into device memory poisoned with 0xA5, and compares data, scales, amax bits and
// the non-finite counts byte for byte. Every GPU case runs under four dispatch contexts (no cap,
// smem_budget 101376, 65536 and 49152: every cast configuration) and once more through the owning
// quantize() (determinism).
//
// The CPU reference is the slow side (tens of ns per element and direction, one thread per call),
// so the reference calls of a batch run on all host cores and the large shapes run fewer modes.
// The RHT (QuantParams::rht, §5) has its own suites, GpuRht*: the same checks, plus the variant
// each budget must select (the fused cast, or the unfused fallback where no fused tile fits).
// Label `gpu`: skipped, with the reason, where no CUDA device is present.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/cuda_test_util.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

using test::HostMatrix;
using test::cuda_ok;
using test::device_alloc;
using test::DevicePtr;
using test::GpuMatrix;
using test::kGpu;
using test::no_gpu_reason;
using test::upload;
using test::guarded;

constexpr uint8_t kPoison = 0xA5;
constexpr uint64_t kSrSeed = 0x0123456789ABCDEFull;
constexpr uint64_t kSrOffset = 0x0000000700000042ull;  // both counter words non-zero

// HostMatrix::view() is non-const; the reference jobs share one input across threads read-only.
TensorView host_view(const HostMatrix& x) {
  return TensorView::matrix(const_cast<uint8_t*>(x.bytes.data()), x.dtype, x.rows, x.cols);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Reference jobs on every host core
// ---------------------------------------------------------------------------------------------

template <typename T>
struct Job {
  double cost = 1;  // relative; the costliest start first so that the last thread ends early
  std::function<T()> run;
};

// Runs every job on up to hardware_concurrency() threads; rethrows the first job's exception.
template <typename T>
std::vector<T> run_parallel(const std::vector<Job<T>>& jobs) {
  std::vector<size_t> order(jobs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return jobs[a].cost > jobs[b].cost; });
  std::vector<T> out(jobs.size());
  std::vector<std::exception_ptr> errors(jobs.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      try {
        out[order[i]] = jobs[order[i]].run();
      } catch (...) {
        errors[order[i]] = std::current_exception();
      }
    }
  };
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, std::max<size_t>(jobs.size(), 1));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Host snapshots of NVFP4 tensors, and their comparison
// ---------------------------------------------------------------------------------------------

struct PartBytes {
  bool present = false;
  int64_t data_row_bytes = 1;   // ceil(cols/16) * 8
  int64_t scale_row_bytes = 1;  // ceil(cols/16)
  std::vector<uint8_t> data, scales;
  std::vector<uint32_t> amax;   // FP32 bits: [1], or [rows] when row-scaled
  std::vector<uint8_t> swizzled;  // the GEMM-swizzled scales, when requested
};

struct QuantBytes {
  PartBytes rowwise, columnwise;
  std::array<uint32_t, 2> counts{};  // {NaN count, Inf count}
};

void copy_to_host(void* dst, const TensorView& v, Device device) {
  if (v.nbytes() == 0) return;
  if (!v.is_contiguous()) throw std::runtime_error("expected a dense part, got " + v.describe());
  if (device.type == DeviceType::kCuda) {
    FP4KIT_CUDA_OK(cudaMemcpy(dst, v.data, v.nbytes(), cudaMemcpyDeviceToHost));
  } else {
    std::memcpy(dst, v.data, v.nbytes());
  }
}

PartBytes snapshot_part(const Nvfp4Part& p, Device device) {
  PartBytes s;
  s.present = p.present;
  if (!p.present) return s;
  s.data_row_bytes = std::max<int64_t>(p.geometry.data_bytes_per_row(), 1);
  s.scale_row_bytes = std::max<int64_t>(p.geometry.blocks_per_row(), 1);
  s.data.resize(p.data.nbytes());
  s.scales.resize(p.scales.nbytes());
  s.amax.resize(static_cast<size_t>(p.amax.numel()));
  copy_to_host(s.data.data(), p.data, device);
  copy_to_host(s.scales.data(), p.scales, device);
  copy_to_host(s.amax.data(), p.amax, device);
  if (p.scales_swizzled.data) {
    s.swizzled.resize(p.scales_swizzled.nbytes());
    copy_to_host(s.swizzled.data(), p.scales_swizzled, device);
  }
  return s;
}

QuantBytes snapshot(const Nvfp4Tensor& q) {
  QuantBytes s;
  s.rowwise = snapshot_part(q.rowwise(), q.device());
  s.columnwise = snapshot_part(q.columnwise(), q.device());
  copy_to_host(s.counts.data(), q.nonfinite_counts(), q.device());
  return s;
}

std::string hex(uint32_t v, int digits) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(digits) << std::setfill('0') << v;
  return os.str();
}

constexpr int kShownDiffs = 6;

// Exact equality of two arrays seen as rows of `row_len` elements; the message names the first
// differing (row, element) pairs with both values.
template <typename T>
testing::AssertionResult same_elements(const std::string& what, const std::vector<T>& got,
                                       const std::vector<T>& want, int64_t row_len, const char* unit) {
  if (got.size() != want.size()) {
    return testing::AssertionFailure() << what << ": gpu has " << got.size() << " elements, cpu " << want.size();
  }
  if (got.empty() || std::memcmp(got.data(), want.data(), got.size() * sizeof(T)) == 0) {
    return testing::AssertionSuccess();
  }
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (bad++ < kShownDiffs) {
      first << "\n    (row " << static_cast<int64_t>(i) / row_len << ", " << unit << " "
            << static_cast<int64_t>(i) % row_len << "): gpu " << hex(got[i], 2 * sizeof(T)) << "  cpu "
            << hex(want[i], 2 * sizeof(T));
    }
  }
  return testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " " << unit
                                     << "s differ" << first.str();
}

// Appends a failed check's message to `failures`.
void collect(std::string& failures, const testing::AssertionResult& r) {
  if (!r) failures += std::string("\n  ") + r.message();
}

// GPU and CPU quantization outputs: every present part's data bytes, scale bytes and amax bits,
// and the non-finite counts, exactly.
testing::AssertionResult same_quant(const QuantBytes& got, const QuantBytes& want) {
  std::string failures;
  for (const auto& [name, g, w] : {std::tuple{"rowwise", &got.rowwise, &want.rowwise},
                                    std::tuple{"columnwise", &got.columnwise, &want.columnwise}}) {
    if (g->present != w->present) {
      failures += std::string("\n  ") + name + " present: gpu " + (g->present ? "yes" : "no") + ", cpu " +
                  (w->present ? "yes" : "no");
      continue;
    }
    if (!g->present) continue;
    collect(failures, same_elements(std::string(name) + " data", g->data, w->data, w->data_row_bytes, "byte"));
    collect(failures, same_elements(std::string(name) + " scales", g->scales, w->scales, w->scale_row_bytes, "block"));
    collect(failures, same_elements(std::string(name) + " amax bits", g->amax, w->amax, 1, "value"));
    collect(failures, same_elements(std::string(name) + " swizzled scales", g->swizzled, w->swizzled, 512, "byte"));
  }
  if (got.counts != want.counts) {
    failures += "\n  nonfinite_counts {NaN, Inf}: gpu {" + std::to_string(got.counts[0]) + ", " +
                std::to_string(got.counts[1]) + "}, cpu {" + std::to_string(want.counts[0]) + ", " +
                std::to_string(want.counts[1]) + "}";
  }
  if (failures.empty()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << failures;
}

// Raw element bits of an F32/F16/BF16 array, and whether they encode a NaN.
uint32_t element_bits(const uint8_t* p, DType dt, size_t i) {
  if (dt == DType::kF32) {
    uint32_t u;
    std::memcpy(&u, p + 4 * i, 4);
    return u;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}
bool bits_are_nan(uint32_t u, DType dt) {
  if (dt == DType::kF32) return (u & 0x7FFFFFFFu) > 0x7F800000u;
  if (dt == DType::kBF16) return (u & 0x7FFFu) > 0x7F80u;
  return (u & 0x7FFFu) > 0x7C00u;
}

// Float outputs (dequantized values, the reported amax): raw bits equal, except that any NaN
// matches any NaN. NOTE: NUMERICS fixes only THAT such a value is NaN; GPU FP32 arithmetic on a
// NaN operand returns the canonical NaN 0x7FFFFFFF where x86 keeps the operand's payload, so the
// same formula gives different NaN bits on the two sides. A NaN against a non-NaN, or a different
// finite or infinite value, is a failure.
testing::AssertionResult same_floats(const std::string& what, const std::vector<uint8_t>& got,
                                     const std::vector<uint8_t>& want, DType dt, int64_t row_len) {
  if (got.size() != want.size()) {
    return testing::AssertionFailure() << what << ": gpu has " << got.size() << " bytes, cpu " << want.size();
  }
  if (got.empty() || std::memcmp(got.data(), want.data(), got.size()) == 0) return testing::AssertionSuccess();
  const size_t n = got.size() / dtype_size(dt);
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t g = element_bits(got.data(), dt, i), w = element_bits(want.data(), dt, i);
    if (g == w || (bits_are_nan(g, dt) && bits_are_nan(w, dt))) continue;
    if (bad++ < kShownDiffs) {
      first << "\n    (row " << static_cast<int64_t>(i) / row_len << ", col " << static_cast<int64_t>(i) % row_len
            << "): gpu " << hex(g, 2 * static_cast<int>(dtype_size(dt))) << "  cpu "
            << hex(w, 2 * static_cast<int>(dtype_size(dt)));
    }
  }
  if (bad == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << what << " (" << dtype_name(dt) << "): " << bad << " of " << n
                                     << " values differ" << first.str();
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

enum class Pattern : uint8_t {
  kNormal,           // N(0, 2)
  kTies,             // exact E2M1 rounding ties at block scales 2^0 .. 2^-10
  kSaturatedScales,  // tensor amax 448: E4M3 scale ties, and many blocks at the saturated scale
  kSubnormalScales,  // 16x16 tiles scaled by 1 .. 1e-6: normal, subnormal and zero E4M3 scales
  kZeros,            // all +0
  kNegativeZeros,    // -0 tiles and elements, tiny negative blocks
  kHuge,             // one dtype-max value (and one -3e38 / -60000): S_enc near its smallest
  kTiny,             // FP32/BF16 subnormal inputs (F16: its subnormals): S_enc clamped to FLT_MAX
  kNonFinite,        // NaN (several payloads) and +-Inf in some blocks
  kMixed,            // normals with a few of everything above: the large-shape input
  kHugeColumns,      // 16-row runs of dtype-max values: the RHT overflows from finite inputs
};

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::kNormal: return "normal";
    case Pattern::kTies: return "ties";
    case Pattern::kSaturatedScales: return "saturated_scales";
    case Pattern::kSubnormalScales: return "subnormal_scales";
    case Pattern::kZeros: return "zeros";
    case Pattern::kNegativeZeros: return "negative_zeros";
    case Pattern::kHuge: return "huge";
    case Pattern::kTiny: return "tiny";
    case Pattern::kNonFinite: return "nonfinite";
    case Pattern::kMixed: return "mixed";
    case Pattern::kHugeColumns: return "huge_columns";
  }
  return "?";
}

constexpr Pattern kAllPatterns[] = {Pattern::kNormal, Pattern::kTies,          Pattern::kSaturatedScales,
                                    Pattern::kSubnormalScales, Pattern::kZeros, Pattern::kNegativeZeros,
                                    Pattern::kHuge,   Pattern::kTiny,          Pattern::kNonFinite,
                                    Pattern::kMixed};
// The RHT's patterns: all of the above, and the one that makes the transform itself overflow.
constexpr Pattern kRhtPatterns[] = {Pattern::kNormal, Pattern::kTies,          Pattern::kSaturatedScales,
                                    Pattern::kSubnormalScales, Pattern::kZeros, Pattern::kNegativeZeros,
                                    Pattern::kHuge,   Pattern::kTiny,          Pattern::kNonFinite,
                                    Pattern::kMixed,  Pattern::kHugeColumns};
constexpr DType kDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// splitmix64: a stateless hash for picking tiles, positions and values.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float dtype_max(DType dt) {
  if (dt == DType::kF16) return 65504.0f;
  if (dt == DType::kBF16) return bf16_to_float(0x7F7F);
  return FLT_MAX;
}

// NaN encodings fed to the kernels: quiet, negative, signalling, all-ones payload.
uint32_t nan_bits(DType dt, size_t k) {
  static constexpr uint32_t kF32[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FFFFFFFu};
  static constexpr uint32_t kBf16[] = {0x7FC0u, 0xFFC0u, 0x7F81u, 0x7FFFu};
  static constexpr uint32_t kF16[] = {0x7E00u, 0xFE00u, 0x7C01u, 0x7FFFu};
  const uint32_t* table = dt == DType::kF32 ? kF32 : dt == DType::kBF16 ? kBf16 : kF16;
  return table[k % 4];
}

void set_bits(HostMatrix& x, size_t i, uint32_t bits) {
  if (x.dtype == DType::kF32) {
    std::memcpy(x.bytes.data() + 4 * i, &bits, 4);
  } else {
    const uint16_t h = static_cast<uint16_t>(bits);
    std::memcpy(x.bytes.data() + 2 * i, &h, 2);
  }
}

// The normals every pattern starts from (generating them is the slow part: share them across dtypes).
std::vector<float> base_values(int64_t R, int64_t C, uint64_t seed) {
  return test::normals(static_cast<size_t>(R * C), seed, 2.0f);
}

// A deterministic input x[R, C] of dtype dt, from base_values(R, C, seed). Most patterns act on
// 16x16 tiles so that the rowwise blocks, the columnwise blocks and the 2D tiles all see them.
HostMatrix make_input(int64_t R, int64_t C, DType dt, Pattern pat, uint64_t seed, const std::vector<float>& base) {
  const size_t n = static_cast<size_t>(R * C);
  std::vector<float> v = pat == Pattern::kZeros ? std::vector<float>(n, 0.0f) : base;
  std::vector<size_t> nans;  // positions that get a NaN encoding after the conversion to dt
  auto at = [&](int64_t r, int64_t c) -> float& { return v[static_cast<size_t>(r * C + c)]; };
  auto for_tiles = [&](auto&& fn) {
    for (int64_t tr = 0; tr * 16 < R; ++tr)
      for (int64_t tc = 0; tc * 16 < C; ++tc) fn(tr, tc, mix(seed ^ mix(static_cast<uint64_t>(tr) << 32 | static_cast<uint64_t>(tc))));
  };
  auto for_elements = [&](int64_t tr, int64_t tc, auto&& fn) {
    for (int64_t r = tr * 16; r < std::min(R, tr * 16 + 16); ++r)
      for (int64_t c = tc * 16; c < std::min(C, tc * 16 + 16); ++c) fn(r, c);
  };
  // One element in every row and every column of the tile: ((r - c) mod 16) == k.
  auto on_diagonal = [](int64_t r, int64_t c, uint64_t h) { return ((r - c) % 16 + 16) % 16 == static_cast<int64_t>(h % 16); };
  auto put_nan = [&](int64_t r, int64_t c) { at(r, c) = 0.0f, nans.push_back(static_cast<size_t>(r * C + c)); };
  auto scale_tile = [&](int64_t tr, int64_t tc, float f) { for_elements(tr, tc, [&](int64_t r, int64_t c) { at(r, c) *= f; }); };

  switch (pat) {
    case Pattern::kNormal:
    case Pattern::kZeros:
      break;
    case Pattern::kTies: {
      // Tensor amax 10.5: S_enc = 256, S_dec = 2^-8 exactly. A block whose amax is 6 * 2^-j gets
      // sdec_b = 2^(8-j) and senc_b = 2^j exactly, so x * senc_b lands on the listed values: every
      // E2M1 tie (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5) and grid point, both signs.
      static constexpr float kValues[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f,
                                          0.5f,  1.0f,  1.5f,  2.0f,  3.0f, 4.0f, 0.0f};
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        const float s = std::ldexp(1.0f, -static_cast<int>(h % 11));
        for_elements(tr, tc, [&](int64_t r, int64_t c) {
          const uint64_t e = mix(h + static_cast<uint64_t>(r * C + c));
          const float mag = on_diagonal(r, c, h) ? 6.0f : kValues[e % 14];
          at(r, c) = ((e >> 8) & 1 ? -mag : mag) * s;
        });
      });
      at(0, 0) = 10.5f;
      break;
    }
    case Pattern::kSaturatedScales: {
      // Tensor amax 448: S_enc = 6 and mult = 6 * fp32(1/6) rounds to exactly 1.0f, so a block's amax
      // IS its scale before the E4M3 rounding. 448 saturates (0x7E); 432 (416|448), 400 (384|416),
      // 12.5 (12|13), 13.5 (13|14) and 1.5, 2.5 * 2^-9 (subnormals) are E4M3 ties, each resolved
      // to the even mantissa; 440 and 424 round up and down.
      static constexpr float kBlockAmax[] = {448.0f, 448.0f, 432.0f, 440.0f, 424.0f, 400.0f,
                                             12.5f,  13.5f,  0.0029296875f, 0.0048828125f};
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        const float bamax = kBlockAmax[h % 10];
        for_elements(tr, tc, [&](int64_t r, int64_t c) {
          const float y = std::clamp(at(r, c) * (bamax / 4.0f), -bamax, bamax);
          at(r, c) = on_diagonal(r, c, h) ? std::copysign(bamax, y) : y;
        });
      });
      at(0, 0) = 448.0f;
      break;
    }
    case Pattern::kSubnormalScales: {
      static constexpr float kFactor[] = {1.0f, 1e-2f, 1e-3f, 1e-4f, 3e-5f, 1e-5f, 3e-6f, 1e-6f};
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) { scale_tile(tr, tc, kFactor[h % 8]); });
      at(0, 0) = 16.0f;  // the tensor amax: the factors are relative to it
      break;
    }
    case Pattern::kNegativeZeros:
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        if (h % 4 == 0) {
          for_elements(tr, tc, [&](int64_t r, int64_t c) { at(r, c) = -0.0f; });
        } else if (h % 4 == 1) {
          for_elements(tr, tc, [&](int64_t r, int64_t c) {
            if (mix(h + static_cast<uint64_t>(r * C + c)) & 1) at(r, c) = -0.0f;
          });
        } else if (h % 8 == 2) {
          // Tiny negatives: the block's scale rounds to 0 (code 15 data, NUMERICS §2); F16 gets -0.
          for_elements(tr, tc, [&](int64_t r, int64_t c) { at(r, c) = -std::fabs(at(r, c)) * 1e-30f; });
        } else if (h % 8 == 6) {
          scale_tile(tr, tc, 0.0f);  // +0 and -0 by the sign of the normal
        }
      });
      if (n > 1) at(0, 1) = -0.0f;
      break;
    case Pattern::kHuge:
      at(R / 2, C / 3) = dtype_max(dt);
      if (n > 1) at((R / 2 + 1) % R, (C / 3 + 1) % C) = dt == DType::kF16 ? -60000.0f : -3.0e38f;
      break;
    case Pattern::kTiny:
      if (dt == DType::kF16) {
        for (float& f : v) f *= 1e-5f;  // FP16 subnormals are normal FP32 numbers
      } else {
        // FP32 (and BF16) subnormals, built from bits: a host thread in flush-to-zero mode would
        // turn `f * 1e-39f` into zeros before either side saw them.
        for (float& f : v) {
          const uint32_t b = float_bits(f);
          f = bits_float((b & 0x80000000u) | ((((b & 0x7FFFFFu) | 0x800000u) >> 3) & 0x7FFFFFu));
        }
      }
      break;
    case Pattern::kNonFinite:
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        const int64_t r = std::min(R - 1, tr * 16 + static_cast<int64_t>((h >> 8) % 16));
        const int64_t c = std::min(C - 1, tc * 16 + static_cast<int64_t>((h >> 16) % 16));
        if (h % 5 == 0) put_nan(r, c);
        else if (h % 7 == 0) at(r, c) = std::numeric_limits<float>::infinity();
        else if (h % 11 == 0) at(r, c) = -std::numeric_limits<float>::infinity();
        else if (h % 13 == 0) {  // both kinds in one block
          put_nan(r, c);
          at(std::min(R - 1, r + 1), c) = -std::numeric_limits<float>::infinity();
        }
      });
      if (n > 3) {
        put_nan(0, 3 % C);
        v[n * 2 / 3] = -std::numeric_limits<float>::infinity();
        v[n - 1] = std::numeric_limits<float>::infinity();
      }
      break;
    case Pattern::kMixed:
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        const int64_t r = std::min(R - 1, tr * 16 + static_cast<int64_t>((h >> 8) % 16));
        const int64_t c = std::min(C - 1, tc * 16 + static_cast<int64_t>((h >> 16) % 16));
        switch (h % 64) {
          case 0: scale_tile(tr, tc, 1e-6f); break;
          case 1: scale_tile(tr, tc, 3e-5f); break;
          case 2: scale_tile(tr, tc, 1e-3f); break;
          case 3: for_elements(tr, tc, [&](int64_t rr, int64_t cc) { at(rr, cc) = -0.0f; }); break;
          case 4: scale_tile(tr, tc, 0.0f); break;
          default:
            if (h % 211 == 5) put_nan(r, c);
            else if (h % 223 == 6) at(r, c) = std::numeric_limits<float>::infinity();
            else if (h % 227 == 7) at(r, c) = -std::numeric_limits<float>::infinity();
            break;
        }
      });
      break;
    case Pattern::kHugeColumns:
      // In the first tile and a third of the others, one column's 16 rows (one RHT group, NUMERICS
      // §5) hold +-dtype max, signed all +, as the default mask's s_i (then w_i = s_i v_i is all + for
      // that mask), alternating, or at random. The transform sums them: FP32 overflows to +-Inf (F32,
      // BF16), the rounding to F16 overflows (|y| up to 4 * 65504), and a later butterfly's Inf - Inf
      // gives NaN, all from finite inputs; the reference defines the bytes (such blocks are marked
      // non-finite, §9) and counts nothing (the counts are over x).
      for_tiles([&](int64_t tr, int64_t tc, uint64_t h) {
        if (h % 3 != 0 && (tr != 0 || tc != 0)) return;
        const int64_t c = std::min(C - 1, tc * 16 + static_cast<int64_t>((h >> 8) % 16));
        for (int64_t r = tr * 16; r < std::min(R, tr * 16 + 16); ++r) {
          bool negative = false;
          switch ((h >> 4) % 4) {
            case 0: break;
            case 1: negative = ((kDefaultRhtMask >> (r % 16)) & 1) != 0; break;  // s_i = -1 where bit i is set
            case 2: negative = (r & 1) != 0; break;
            default: negative = (mix(h + static_cast<uint64_t>(r)) & 1) != 0; break;
          }
          at(r, c) = negative ? -dtype_max(dt) : dtype_max(dt);
        }
      });
      break;
  }
  HostMatrix x(R, C, v, dt);
  for (size_t k = 0; k < nans.size(); ++k) set_bits(x, nans[k], nan_bits(dt, k));
  return x;
}

HostMatrix make_input(int64_t R, int64_t C, DType dt, Pattern pat, uint64_t seed) {
  return make_input(R, C, dt, pat, seed, base_values(R, C, seed));
}

// ---------------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------------

struct Mode {
  const char* name;
  QuantParams params;
};

QuantParams make_params(Direction d, BlockScaling b, Rounding r, bool row_scaled = false) {
  QuantParams p;
  p.direction = d;
  p.block = b;
  p.rounding = r;
  p.row_scaled = row_scaled;
  if (r == Rounding::kStochastic) {
    p.sr_seed = kSrSeed;
    p.sr_offset = kSrOffset;
  }
  // The modes with both outputs also write the GEMM-swizzled scales of both (NUMERICS §10).
  p.swizzled_scales = d == Direction::kBoth;
  return p;
}

// Every non-RHT mode: {rowwise, columnwise, both} x {1D, 2D} x {RNE, SR}, and row-scaled.
std::vector<Mode> all_modes() {
  std::vector<Mode> modes;
  static constexpr const char* kNames[2][2][3] = {
      {{"rowwise 1d rne", "columnwise 1d rne", "both 1d rne"}, {"rowwise 1d sr", "columnwise 1d sr", "both 1d sr"}},
      {{"rowwise 2d rne", "columnwise 2d rne", "both 2d rne"}, {"rowwise 2d sr", "columnwise 2d sr", "both 2d sr"}}};
  for (int b = 0; b < 2; ++b)
    for (int r = 0; r < 2; ++r)
      for (int d = 0; d < 3; ++d)
        modes.push_back({kNames[b][r][d], make_params(static_cast<Direction>(d + 1), static_cast<BlockScaling>(b),
                                                      static_cast<Rounding>(r))});
  modes.push_back({"row-scaled", make_params(Direction::kRowwise, BlockScaling::k1D, Rounding::kNearest, true)});
  return modes;
}

// The RHT on the columnwise output (NUMERICS §5): 1D blocks, as the RHT requires.
QuantParams rht_params(Direction d, Rounding r, uint16_t mask = kDefaultRhtMask) {
  QuantParams p = make_params(d, BlockScaling::k1D, r);
  p.rht = true;
  p.rht_mask = mask;
  return p;
}

// Every RHT mode: {both, columnwise} x {RNE, SR} x {the default mask 0xD7E8, mask 0 (the plain
// Hadamard transform)}.
std::vector<Mode> rht_modes() {
  static constexpr const char* kNames[2][2][2] = {
      {{"both rht rne", "columnwise rht rne"}, {"both rht sr", "columnwise rht sr"}},
      {{"both rht mask0 rne", "columnwise rht mask0 rne"}, {"both rht mask0 sr", "columnwise rht mask0 sr"}}};
  static constexpr uint16_t kMasks[2] = {kDefaultRhtMask, 0};
  static constexpr Direction kDirections[2] = {Direction::kBoth, Direction::kColumnwise};
  std::vector<Mode> modes;
  for (int m = 0; m < 2; ++m)
    for (int r = 0; r < 2; ++r)
      for (int d = 0; d < 2; ++d)
        modes.push_back({kNames[m][r][d], rht_params(kDirections[d], static_cast<Rounding>(r), kMasks[m])});
  return modes;
}

Problem quantize_problem(int64_t rows, int64_t cols, DType dt, const QuantParams& p) {
  Problem pr;
  pr.op = OpKind::kQuantize;
  pr.rows = rows;
  pr.cols = cols;
  pr.in_dtype = dt;
  pr.params = p;
  return pr;
}

struct Shape {
  int64_t rows, cols;
};
std::string shape_name(const testing::TestParamInfo<Shape>& info) {
  return std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols);
}
std::string label_of(DType dt, int64_t R, int64_t C, Pattern pat, const char* mode) {
  return std::string(dtype_name(dt)) + " " + std::to_string(R) + "x" + std::to_string(C) + " " + pattern_name(pat) +
         " " + mode;
}

// ---------------------------------------------------------------------------------------------
// Budgets and the fixture
// ---------------------------------------------------------------------------------------------

struct Budget {
  const char* name;
  std::optional<int64_t> cap;
  const char* rht_variant;  // the start of the name of the variant an RHT quantization must select
};
// No cap and 101376 B select the cast's 64-row tiles with three buffers, 65536 B its 32-row tiles
// with three, and 49152 B (the default without the opt-in) its 32-row tiles with two.
// With the RHT: no cap, 101376 B and 65536 B select the fused cast (its 128-, 64- and 32-row tiles
// need 202240, 101376 and 50944 B); 49152 B fits none of them, so selection must fall back to the
// unfused transform + cast (34560 B with two buffers).
const Budget kBudgets[] = {{"no cap", std::nullopt, "sm80_quantize_rht"},
                           {"101376", 101376, "sm80_quantize_rht"},
                           {"65536", 65536, "sm80_quantize_rht"},
                           {"49152", 49152, "sm80_rht_unfused"}};
constexpr size_t kNumBudgets = std::size(kBudgets);

enum class Verbosity : uint8_t { kQuiet, kSummary, kExplain };

struct QuantCase {
  std::string label;
  const HostMatrix* x = nullptr;
  const GpuMatrix* xd = nullptr;
  QuantParams params;
  bool sr_offset_reference = false;  // SR: also compare a second offset with the CPU
  bool sr_offset_changes = false;    // SR: assert the second offset changes the data bytes
  bool split_reference = false;      // compute a kBoth reference as two one-direction calls
  Verbosity verbosity = Verbosity::kQuiet;
};

constexpr int kMaxFailingCases = 8;

// Runs one case; an exception (a mode no kernel serves, a CUDA error) fails that case with its
// message and lets the next case run.

class GpuTest : public test::GpuFixture {
 protected:
  void SetUp() override {
    GpuFixture::SetUp();
    if (IsSkipped()) return;
    for (const Budget& b : kBudgets) {
      DispatchSettings settings;  // not from_env: the caps are exactly the ones under test
      settings.smem_budget = b.cap;
      contexts_.push_back(std::make_unique<Context>(settings, Registry::builtin()));
    }
  }

  Target target(size_t budget) const { return Target::cuda(0, stream_.get(), contexts_[budget].get()); }
  void poison(void* p, size_t bytes) const {
    if (bytes > 0) FP4KIT_CUDA_OK(cudaMemsetAsync(p, kPoison, bytes, stream()));
  }
  void poison(const Nvfp4Tensor& q) const {
    for (const Nvfp4Part* part : {&q.rowwise(), &q.columnwise()}) {
      if (!part->present) continue;
      poison(part->data.data, part->data.nbytes());
      poison(part->scales.data, part->scales.nbytes());
      poison(part->amax.data, part->amax.nbytes());
      if (part->scales_swizzled.data) poison(part->scales_swizzled.data, part->scales_swizzled.nbytes());
    }
    poison(q.nonfinite_counts().data, q.nonfinite_counts().nbytes());
  }

  // Selection of `problem` under budget i: feasible, a CUDA variant, within the budget, and (when
  // `variant_prefix` is given) a variant whose name starts with it. Sets `line` to
  // "variant [config] smem" and, for kExplain, prints fp4kit::explain.
  testing::AssertionResult selection_fits(const Problem& problem, size_t i, Verbosity verbosity, std::string* line,
                                          const char* variant_prefix = nullptr) {
    Context& ctx = *contexts_[i];
    const DeviceInfo& device = ctx.device(kGpu);
    const Selection s = ctx.select(problem, device);
    const std::string text = explain(s, problem, device);
    if (verbosity == Verbosity::kExplain) std::cout << "[budget " << kBudgets[i].name << "] " << text;
    if (!s.ok()) return testing::AssertionFailure() << "no feasible variant under budget " << kBudgets[i].name << ":\n" << text;
    if (s.variant->device_type != DeviceType::kCuda) {
      return testing::AssertionFailure() << "a CUDA target selected the non-CUDA variant " << s.variant->name << ":\n" << text;
    }
    if (s.smem_bytes > s.smem_budget) {
      return testing::AssertionFailure() << s.smem_bytes << " B of shared memory exceeds the " << s.smem_budget
                                         << " B budget:\n" << text;
    }
    if (kBudgets[i].cap && s.smem_budget > *kBudgets[i].cap) {
      return testing::AssertionFailure() << "the selection's budget " << s.smem_budget << " B ignores the cap "
                                         << *kBudgets[i].cap << " B:\n" << text;
    }
    if (variant_prefix && s.variant->name.rfind(variant_prefix, 0) != 0) {
      return testing::AssertionFailure() << "selected " << s.variant->name << " [" << s.config.name << "] under budget "
                                         << kBudgets[i].name << ", want a " << variant_prefix << "* variant:\n" << text;
    }
    if (line) *line = s.variant->name + " [" + s.config.name + "] " + std::to_string(s.smem_bytes) + " B";
    return testing::AssertionSuccess();
  }

  // quantize_into poisoned device memory under budget i.
  QuantBytes quantize_poisoned(const GpuMatrix& x, const QuantParams& p, size_t i) {
    Nvfp4Tensor out = Nvfp4Tensor::allocate(x.view.shape[0], x.view.shape[1], x.view.dtype, p, kGpu);
    poison(out);
    quantize_into(x.view, p, out, target(i));
    sync();
    return snapshot(out);
  }

  // One case against its reference: every budget into poisoned memory, the owning quantize() again
  // (determinism), and for SR a second offset. Returns whether everything matched.
  bool check_case(const QuantCase& c, const QuantBytes& ref, const QuantBytes* ref_offset2) {
    bool ok = true;
    auto expect = [&](const testing::AssertionResult& r, const std::string& where) {
      EXPECT_TRUE(r) << c.label << ", " << where;
      ok = ok && static_cast<bool>(r);
    };
    const Problem problem = quantize_problem(c.x->rows, c.x->cols, c.x->dtype, c.params);
    std::string summary;
    QuantBytes first;
    for (size_t i = 0; i < kNumBudgets; ++i) {
      std::string line;
      expect(selection_fits(problem, i, c.verbosity, &line, c.params.rht ? kBudgets[i].rht_variant : nullptr),
             std::string("selection, budget ") + kBudgets[i].name);
      summary += std::string(i ? "; " : "") + kBudgets[i].name + ": " + line;
      QuantBytes got = quantize_poisoned(*c.xd, c.params, i);
      expect(same_quant(got, ref), std::string("budget ") + kBudgets[i].name);
      if (i == 0) first = std::move(got);
    }
    if (c.verbosity != Verbosity::kQuiet) std::cout << c.label << " -> " << summary << "\n";
    // Determinism, through the owning entry point: the same call again gives the same bytes.
    {
      const Nvfp4Tensor q = quantize(c.xd->view, c.params, target(0));
      sync();
      expect(same_quant(snapshot(q), first), "second run (quantize) against the first (quantize_into)");
    }
    if (c.params.rounding == Rounding::kStochastic) {
      QuantParams p2 = c.params;
      p2.sr_offset += 1;
      const QuantBytes got2 = quantize_poisoned(*c.xd, p2, 0);
      if (ref_offset2) expect(same_quant(got2, *ref_offset2), "SR offset + 1");
      // Only the E2M1 step is stochastic: scales and amax stay, the data moves.
      bool data_changed = false;
      for (const auto& [a, b] : {std::pair{&got2.rowwise, &first.rowwise}, std::pair{&got2.columnwise, &first.columnwise}}) {
        if (!a->present || !b->present) continue;
        expect(same_elements("scales under SR offset + 1", a->scales, b->scales, b->scale_row_bytes, "block"),
               "scales must not depend on the SR offset");
        expect(same_elements("amax under SR offset + 1", a->amax, b->amax, 1, "value"), "amax must not depend on the SR offset");
        data_changed = data_changed || a->data != b->data;
      }
      if (c.sr_offset_changes) {
        EXPECT_TRUE(data_changed) << c.label << ": SR offset + 1 gave the same data bytes as the first offset";
        ok = ok && data_changed;
      }
    }
    return ok;
  }

  // Computes every case's CPU reference on all host cores, then checks the GPU case by case.
  void run_quantize_batch(const std::vector<QuantCase>& cases, const char* batch) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Job<QuantBytes>> jobs;
    struct Slots {
      size_t ref = 0, col = SIZE_MAX, offset2 = SIZE_MAX;  // col: the columnwise half of a split reference
    };
    std::vector<Slots> slots(cases.size());
    auto add = [&](const QuantCase& c, QuantParams p) {
      const double dirs = p.direction == Direction::kBoth ? 2.0 : 1.0;
      const double cost = static_cast<double>(c.x->rows * c.x->cols) * dirs * (p.block == BlockScaling::k2D ? 4.0 : 1.0);
      const HostMatrix* x = c.x;
      jobs.push_back({cost, [x, p] { return snapshot(quantize(host_view(*x), p, Target::cpu())); }});
      return jobs.size() - 1;
    };
    for (size_t k = 0; k < cases.size(); ++k) {
      const QuantCase& c = cases[k];
      if (c.split_reference && c.params.direction == Direction::kBoth) {
        // NUMERICS §3, §5, §8: the directions are independent (each its own finite amax, the SR
        // stream chosen by the direction, the RHT on the columnwise output only, so the rowwise
        // half of an RHT call is the plain rowwise quantization), so the two halves can run on two
        // cores.
        QuantParams row = c.params, col = c.params;
        row.direction = Direction::kRowwise;
        row.rht = false;  // a rowwise-only call with the RHT is an error (nothing to transform)
        col.direction = Direction::kColumnwise;
        slots[k].ref = add(c, row);
        slots[k].col = add(c, col);
      } else {
        slots[k].ref = add(c, c.params);
      }
      if (c.sr_offset_reference && c.params.rounding == Rounding::kStochastic) {
        QuantParams p2 = c.params;
        p2.sr_offset += 1;
        slots[k].offset2 = add(c, p2);
      }
    }
    std::vector<QuantBytes> refs = run_parallel(jobs);
    const double t_ref = seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    int failing = 0;
    for (size_t k = 0; k < cases.size(); ++k) {
      QuantBytes& ref = refs[slots[k].ref];
      if (slots[k].col != SIZE_MAX) ref.columnwise = std::move(refs[slots[k].col].columnwise);
      const QuantBytes* ref2 = slots[k].offset2 != SIZE_MAX ? &refs[slots[k].offset2] : nullptr;
      if (!guarded(cases[k].label, [&] { return check_case(cases[k], ref, ref2); }) && ++failing >= kMaxFailingCases) {
        ADD_FAILURE() << batch << ": stopping after " << failing << " failing cases (of " << cases.size() << ")";
        break;
      }
      ref = QuantBytes{};  // release the memory of large references early
    }
    std::cout << batch << ": " << cases.size() << " cases, " << jobs.size() << " CPU reference calls in "
              << std::fixed << std::setprecision(2) << t_ref << " s on " << std::thread::hardware_concurrency()
              << " host threads, GPU checks in " << seconds_since(t1) << " s\n"
              << std::defaultfloat;
  }

  // One batch per input pattern on x[R, C]: every dtype (a pattern's inputs share their base values)
  // x every mode. `after`, when given, then checks more on each dtype's input of the pattern.
  using InputCheck = std::function<void(const HostMatrix&, const GpuMatrix&, Pattern)>;
  void run_pattern_batches(int64_t R, int64_t C, const std::vector<Pattern>& patterns, const std::vector<Mode>& modes,
                           uint64_t seed_base, const InputCheck& after = {}) {
    const bool medium = R * C > (1 << 16);
    for (Pattern pat : patterns) {
      std::vector<HostMatrix> xs;
      std::vector<GpuMatrix> xds;
      xs.reserve(std::size(kDtypes));
      xds.reserve(std::size(kDtypes));
      const uint64_t seed = seed_base + static_cast<uint64_t>(pat);
      const std::vector<float> base = base_values(R, C, seed);
      for (DType dt : kDtypes) {
        xs.push_back(make_input(R, C, dt, pat, seed, base));
        xds.push_back(upload(xs.back()));
      }
      std::vector<QuantCase> cases;
      for (size_t d = 0; d < xs.size(); ++d) {
        for (const Mode& m : modes) {
          QuantCase c;
          c.label = label_of(xs[d].dtype, R, C, pat, m.name);
          c.x = &xs[d];
          c.xd = &xds[d];
          c.params = m.params;
          c.sr_offset_reference = pat == Pattern::kNormal;
          c.sr_offset_changes = pat == Pattern::kNormal && R * C >= 4096;
          c.verbosity = medium && pat == Pattern::kNormal ? Verbosity::kSummary : Verbosity::kQuiet;
          cases.push_back(std::move(c));
        }
      }
      run_quantize_batch(cases, (std::to_string(R) + "x" + std::to_string(C) + " " + pattern_name(pat)).c_str());
      if (HasFatalFailure()) return;
      if (after) {
        for (size_t d = 0; d < xs.size(); ++d) after(xs[d], xds[d], pat);
      }
    }
  }

  // The large shapes: one Pattern::kMixed input per dtype the entries use (from one set of base
  // values), each entry a case whose reference runs as two one-direction calls on two cores, its
  // selection explained under every budget.
  struct LargeEntry {
    const char* name;
    DType dtype;
    QuantParams params;
  };
  void run_large_batch(int64_t R, int64_t C, const std::vector<LargeEntry>& entries, uint64_t seed) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<DType> dtypes;
    for (const LargeEntry& e : entries) {
      if (std::find(dtypes.begin(), dtypes.end(), e.dtype) == dtypes.end()) dtypes.push_back(e.dtype);
    }
    std::vector<HostMatrix> xs;
    std::vector<GpuMatrix> xds;
    xs.reserve(dtypes.size());
    xds.reserve(dtypes.size());
    {  // the base values (R*C floats) are freed before the references run
      const std::vector<float> base = base_values(R, C, seed);
      for (DType dt : dtypes) xs.push_back(make_input(R, C, dt, Pattern::kMixed, seed, base));
    }
    for (const HostMatrix& x : xs) xds.push_back(upload(x));
    std::cout << "inputs " << R << "x" << C << " generated and uploaded in " << seconds_since(t0) << " s\n";
    std::vector<QuantCase> cases;
    for (const LargeEntry& e : entries) {
      const size_t d = static_cast<size_t>(std::find(dtypes.begin(), dtypes.end(), e.dtype) - dtypes.begin());
      QuantCase c;
      c.x = &xs[d];
      c.xd = &xds[d];
      c.label = label_of(e.dtype, R, C, Pattern::kMixed, e.name);
      c.params = e.params;
      c.sr_offset_changes = true;
      c.split_reference = true;
      c.verbosity = Verbosity::kExplain;
      cases.push_back(std::move(c));
    }
    run_quantize_batch(cases, (std::to_string(R) + "x" + std::to_string(C) + " mixed").c_str());
  }

  std::vector<std::unique_ptr<Context>> contexts_;
};

// ---------------------------------------------------------------------------------------------
// Quantization: every mode x dtype x input pattern on the small and medium shapes
// ---------------------------------------------------------------------------------------------

class GpuQuantizeShape : public GpuTest, public testing::WithParamInterface<Shape> {};

TEST_P(GpuQuantizeShape, EveryModeDtypeAndPatternMatchesTheCpu) {
  const auto [R, C] = GetParam();
  const bool medium = R * C > (1 << 16);
  // The medium shape gets the patterns that stress the kernels' reductions and rounding; the rest
  // (global-scale extremes, zeros) are shape-independent and run on the small shapes.
  std::vector<Pattern> patterns;
  if (medium) {
    patterns = {Pattern::kNormal, Pattern::kTies, Pattern::kSubnormalScales, Pattern::kNonFinite, Pattern::kMixed};
  } else {
    patterns.assign(std::begin(kAllPatterns), std::end(kAllPatterns));
  }
  run_pattern_batches(R, C, patterns, all_modes(), 1000);
}

INSTANTIATE_TEST_SUITE_P(SmallAndMedium, GpuQuantizeShape,
                         testing::Values(Shape{1, 16}, Shape{17, 32}, Shape{128, 128}, Shape{1000, 4096}), shape_name);

// ---------------------------------------------------------------------------------------------
// Quantization: the production modes on the large shapes (mixed adversarial input)
// ---------------------------------------------------------------------------------------------

class GpuQuantizeLarge : public GpuTest, public testing::WithParamInterface<Shape> {};

TEST_P(GpuQuantizeLarge, ProductionModesMatchTheCpu) {
  const auto [R, C] = GetParam();
  run_large_batch(R, C,
                  {{"both 1d rne", DType::kBF16, make_params(Direction::kBoth, BlockScaling::k1D, Rounding::kNearest)},
                   {"both 2d rne", DType::kBF16, make_params(Direction::kBoth, BlockScaling::k2D, Rounding::kNearest)},
                   {"rowwise 1d sr", DType::kBF16,
                    make_params(Direction::kRowwise, BlockScaling::k1D, Rounding::kStochastic)},
                   {"row-scaled", DType::kBF16,
                    make_params(Direction::kRowwise, BlockScaling::k1D, Rounding::kNearest, true)},
                   {"both 1d rne", DType::kF32, make_params(Direction::kBoth, BlockScaling::k1D, Rounding::kNearest)}},
                  77);
}

INSTANTIATE_TEST_SUITE_P(Large, GpuQuantizeLarge,
                         testing::Values(Shape{4096, 4096}, Shape{8192, 11328}, Shape{16384, 4096}), shape_name);

// ---------------------------------------------------------------------------------------------
// amax
// ---------------------------------------------------------------------------------------------

struct AmaxBytes {
  std::vector<uint32_t> finite, reported;  // FP32 bits
  std::array<uint32_t, 2> counts{};
};

AmaxBytes cpu_amax(const HostMatrix& x, bool per_row) {
  const int64_t n = per_row ? x.rows : 1;
  std::vector<float> finite(static_cast<size_t>(n)), reported(static_cast<size_t>(n));
  AmaxBytes out;
  amax(host_view(x), per_row,
       {TensorView::vector(finite.data(), DType::kF32, n), TensorView::vector(reported.data(), DType::kF32, n),
        TensorView::vector(out.counts.data(), DType::kU32, 2)},
       Target::cpu());
  out.finite.resize(finite.size());
  out.reported.resize(reported.size());
  std::memcpy(out.finite.data(), finite.data(), 4 * finite.size());
  std::memcpy(out.reported.data(), reported.data(), 4 * reported.size());
  return out;
}

class GpuAmax : public GpuTest {
 protected:
  // The GPU amax into poisoned outputs; optional outputs left out when `all_outputs` is false.
  AmaxBytes gpu_amax(const GpuMatrix& x, bool per_row, size_t budget, bool all_outputs) {
    const int64_t n = per_row ? x.view.shape[0] : 1;
    const size_t bytes = static_cast<size_t>(n) * 4;
    DevicePtr finite = device_alloc(bytes), reported = device_alloc(bytes), counts = device_alloc(8);
    poison(finite.get(), bytes);
    poison(reported.get(), bytes);
    poison(counts.get(), 8);
    AmaxOutputs out{TensorView::vector(finite.get(), DType::kF32, n, kGpu), {}, {}};
    if (all_outputs) {
      out.amax = TensorView::vector(reported.get(), DType::kF32, n, kGpu);
      out.nonfinite_counts = TensorView::vector(counts.get(), DType::kU32, 2, kGpu);
    }
    amax(x.view, per_row, out, target(budget));
    sync();
    AmaxBytes got;
    got.finite.resize(static_cast<size_t>(n));
    got.reported.resize(static_cast<size_t>(n));
    FP4KIT_CUDA_OK(cudaMemcpy(got.finite.data(), finite.get(), bytes, cudaMemcpyDeviceToHost));
    if (all_outputs) {
      FP4KIT_CUDA_OK(cudaMemcpy(got.reported.data(), reported.get(), bytes, cudaMemcpyDeviceToHost));
      FP4KIT_CUDA_OK(cudaMemcpy(got.counts.data(), counts.get(), 8, cudaMemcpyDeviceToHost));
    }
    return got;
  }
};

TEST_F(GpuAmax, PerTensorAndPerRowMatchTheCpuOnEveryDtype) {
  // Odd shapes too: amax takes any column count (long single rows, tall narrow matrices).
  const Shape shapes[] = {{1, 16}, {5, 7}, {17, 32}, {1, 100003}, {100003, 3}, {1000, 4096}, {4096, 4096}};
  const Pattern patterns[] = {Pattern::kNormal, Pattern::kNonFinite, Pattern::kZeros,
                              Pattern::kNegativeZeros, Pattern::kHuge, Pattern::kTiny};
  int failing = 0;
  for (const Shape& s : shapes) {
    const bool large = s.rows * s.cols > (1 << 20);
    for (Pattern pat : patterns) {
      if (large && pat != Pattern::kNormal && pat != Pattern::kNonFinite) continue;
      for (DType dt : kDtypes) {
        const HostMatrix x = make_input(s.rows, s.cols, dt, pat, 500 + static_cast<uint64_t>(pat));
        const GpuMatrix xd = upload(x);
        Problem problem;
        problem.op = OpKind::kAmax;
        problem.rows = s.rows;
        problem.cols = s.cols;
        problem.in_dtype = dt;
        for (bool per_row : {false, true}) {
          const std::string label = label_of(dt, s.rows, s.cols, pat, per_row ? "amax per row" : "amax per tensor");
          const AmaxBytes want = cpu_amax(x, per_row);
          const bool ok = guarded(label, [&] {
            bool all = true;
            for (size_t i = 0; i < kNumBudgets; ++i) {
              const testing::AssertionResult sel = selection_fits(problem, i, Verbosity::kQuiet, nullptr);
              EXPECT_TRUE(sel) << label;
              const AmaxBytes got = gpu_amax(xd, per_row, i, true);
              const testing::AssertionResult r1 = same_elements("finite amax bits", got.finite, want.finite, 1, "value");
              const testing::AssertionResult r2 =
                  same_floats("reported amax", as_bytes(got.reported), as_bytes(want.reported), DType::kF32, 1);
              EXPECT_TRUE(r1) << label << ", budget " << kBudgets[i].name;
              EXPECT_TRUE(r2) << label << ", budget " << kBudgets[i].name;
              EXPECT_EQ(got.counts, want.counts) << label << ", budget " << kBudgets[i].name << ": {NaN, Inf} counts";
              all = all && sel && r1 && r2 && got.counts == want.counts;
            }
            // The optional outputs left out: the finite amax alone, still exact.
            const AmaxBytes alone = gpu_amax(xd, per_row, 0, false);
            const testing::AssertionResult r3 = same_elements("finite amax bits (alone)", alone.finite, want.finite, 1, "value");
            EXPECT_TRUE(r3) << label << ", without the optional outputs";
            return all && r3;
          });
          if (!ok && ++failing >= kMaxFailingCases) {
            FAIL() << "stopping after " << failing << " failing amax cases";
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Quantization with the random Hadamard transform (NUMERICS §5): the fused cast, or the unfused
// fallback under the budgets no fused tile fits (Budget::rht_variant says which budget selects which)
// ---------------------------------------------------------------------------------------------

// The amax and non-finite counts an RHT quantization must report, from the CPU amax and hadamard
// operations rather than from quantize: the rowwise amax is the finite amax of x; the columnwise
// amax that of RHT(x^T) as rounded to x's dtype (the post-transform amax: values the transform
// overflowed to Inf are left out); the counts are x's own (a NaN spreads to its 16 transformed
// values but is counted once, and an Inf the transform made from finite values is not counted).
struct RhtStats {
  std::array<uint32_t, 2> counts{};  // {NaN count, Inf count}
  std::vector<uint32_t> rowwise_amax, columnwise_amax;  // FP32 bits, [1]
};

RhtStats cpu_rht_stats(const HostMatrix& x, uint16_t mask) {
  HostMatrix y(x.cols, (x.rows + 15) / 16 * 16, x.dtype);  // x^T, zero-padded along R, transformed
  hadamard(host_view(x), y.view(), mask, /*transpose=*/true, Target::cpu());
  const AmaxBytes source = cpu_amax(x, false);
  return {source.counts, source.finite, cpu_amax(y, false).finite};
}

class GpuRhtShape : public GpuTest, public testing::WithParamInterface<Shape> {
 protected:
  // The GPU's both-directions RNE quantization of x with each mask, under every budget, against
  // cpu_rht_stats.
  void check_stats(const HostMatrix& x, const GpuMatrix& xd, Pattern pat) {
    for (const uint16_t mask : {kDefaultRhtMask, uint16_t{0}}) {
      const std::string label = label_of(x.dtype, x.rows, x.cols, pat, mask ? "both rht rne" : "both rht mask0 rne");
      guarded(label, [&] {
        const RhtStats want = cpu_rht_stats(x, mask);
        for (size_t i = 0; i < kNumBudgets; ++i) {
          const QuantBytes got = quantize_poisoned(xd, rht_params(Direction::kBoth, Rounding::kNearest, mask), i);
          const std::string where = label + ", budget " + kBudgets[i].name;
          EXPECT_EQ(got.counts, want.counts) << where << ": {NaN, Inf} counts, want those of x";
          EXPECT_TRUE(same_elements("rowwise amax bits", got.rowwise.amax, want.rowwise_amax, 1, "value"))
              << where << ": want the finite amax of x";
          EXPECT_TRUE(same_elements("columnwise amax bits", got.columnwise.amax, want.columnwise_amax, 1, "value"))
              << where << ": want the finite amax of RHT(x^T) rounded to " << dtype_name(x.dtype);
        }
        return true;
      });
    }
  }
};

TEST_P(GpuRhtShape, EveryRhtModeDtypeAndPatternMatchesTheCpu) {
  const auto [R, C] = GetParam();
  const bool medium = R * C > (1 << 16);
  // As in GpuQuantizeShape, plus the pattern whose transform overflows from finite values.
  std::vector<Pattern> patterns;
  if (medium) {
    patterns = {Pattern::kNormal,    Pattern::kTies,  Pattern::kSubnormalScales,
                Pattern::kNonFinite, Pattern::kMixed, Pattern::kHugeColumns};
  } else {
    patterns.assign(std::begin(kRhtPatterns), std::end(kRhtPatterns));
  }
  run_pattern_batches(R, C, patterns, rht_modes(), 2000,
                      [this](const HostMatrix& x, const GpuMatrix& xd, Pattern pat) { check_stats(x, xd, pat); });
}

// 17 and 1000 rows: a partial last group of 16, zero-padded before the transform.
INSTANTIATE_TEST_SUITE_P(SmallAndMedium, GpuRhtShape,
                         testing::Values(Shape{1, 16}, Shape{17, 32}, Shape{128, 128}, Shape{1000, 4096}), shape_name);

class GpuRhtLarge : public GpuTest, public testing::WithParamInterface<Shape> {};

TEST_P(GpuRhtLarge, ProductionRhtModesMatchTheCpu) {
  const auto [R, C] = GetParam();
  // The recipe's wgrad operands only, to bound the CPU reference: one both-directions call takes
  // ~18 s at 14336x16384 on a Xeon core (~5 s rowwise, ~11 s columnwise: the split reference runs
  // both halves of both cases at once, ~11 s on 4 cores).
  run_large_batch(R, C,
                  {{"both rht rne", DType::kBF16, rht_params(Direction::kBoth, Rounding::kNearest)},
                   {"both rht sr", DType::kBF16, rht_params(Direction::kBoth, Rounding::kStochastic)}},
                  77);
}

// The quantization issue's large shapes, and the RHT issue's own two.
INSTANTIATE_TEST_SUITE_P(Large, GpuRhtLarge,
                         testing::Values(Shape{4096, 4096}, Shape{8192, 11328}, Shape{16384, 4096}, Shape{8192, 8192},
                                         Shape{14336, 16384}),
                         shape_name);

// ---------------------------------------------------------------------------------------------
// Dequantization
// ---------------------------------------------------------------------------------------------

constexpr DType kOutDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

struct DequantRef {
  QuantBytes q;
  // [direction 0 rowwise / 1 columnwise][output dtype]: the CPU dequantization's bytes.
  std::vector<uint8_t> out[2][std::size(kOutDtypes)];
};

// Output shape of one direction: rowwise x[R, C]; columnwise x^T [C, R].
std::pair<int64_t, int64_t> dequant_shape(const HostMatrix& x, Direction d) {
  return d == Direction::kRowwise ? std::pair{x.rows, x.cols} : std::pair{x.cols, x.rows};
}

struct DequantCase {
  std::string label;
  const HostMatrix* x = nullptr;
  const GpuMatrix* xd = nullptr;
  QuantParams params;
};

class GpuDequantize : public GpuTest {
 protected:
  // The GPU quantization of the case (the dequantizer's input: it must already be the reference's
  // bytes), then every direction x output dtype x budget into poisoned memory.
  bool check_dequantize_case(const DequantCase& c, const DequantRef& ref) {
    bool ok = true;
    Nvfp4Tensor q = Nvfp4Tensor::allocate(c.x->rows, c.x->cols, c.x->dtype, c.params, kGpu);
    poison(q);
    quantize_into(c.xd->view, c.params, q, target(0));
    sync();
    const testing::AssertionResult rq = same_quant(snapshot(q), ref.q);
    EXPECT_TRUE(rq) << c.label << ": the quantized input of the dequantizer";
    ok = ok && rq;
    for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
      if (!has_columnwise(c.params.direction) && d == Direction::kColumnwise) continue;
      const auto [rows, cols] = dequant_shape(*c.x, d);
      for (size_t o = 0; o < std::size(kOutDtypes); ++o) {
        const DType odt = kOutDtypes[o];
        Problem problem;
        problem.op = OpKind::kDequantize;
        problem.rows = c.x->rows;
        problem.cols = c.x->cols;
        problem.in_dtype = c.x->dtype;
        problem.out_dtype = odt;
        problem.params = c.params;
        problem.params.direction = d;
        const std::string where = c.label + ", " + direction_name(d) + " -> " + dtype_name(odt);
        for (size_t i = 0; i < kNumBudgets; ++i) {
          const testing::AssertionResult sel = selection_fits(problem, i, Verbosity::kQuiet, nullptr);
          EXPECT_TRUE(sel) << where;
          const size_t bytes = static_cast<size_t>(rows * cols) * dtype_size(odt);
          DevicePtr out = device_alloc(bytes);
          poison(out.get(), bytes);
          dequantize(q, d, TensorView::matrix(out.get(), odt, rows, cols, kGpu), {}, target(i));
          sync();
          std::vector<uint8_t> got(bytes);
          FP4KIT_CUDA_OK(cudaMemcpy(got.data(), out.get(), bytes, cudaMemcpyDeviceToHost));
          const testing::AssertionResult r =
              same_floats("dequantized", got, ref.out[d == Direction::kColumnwise][o], odt, cols);
          EXPECT_TRUE(r) << where << ", budget " << kBudgets[i].name;
          ok = ok && sel && r;
        }
      }
    }
    return ok;
  }
};

TEST_F(GpuDequantize, MatchesTheCpuOnEveryDirectionAndOutputDtype) {
  const Shape shapes[] = {{1, 16}, {17, 32}, {128, 128}, {1000, 4096}};
  const Pattern patterns[] = {Pattern::kNormal, Pattern::kNonFinite, Pattern::kTiny, Pattern::kHuge};
  const Mode modes[] = {
      {"both 1d rne", make_params(Direction::kBoth, BlockScaling::k1D, Rounding::kNearest)},
      {"both 2d rne", make_params(Direction::kBoth, BlockScaling::k2D, Rounding::kNearest)},
      {"both 1d sr", make_params(Direction::kBoth, BlockScaling::k1D, Rounding::kStochastic)},
      {"row-scaled", make_params(Direction::kRowwise, BlockScaling::k1D, Rounding::kNearest, true)},
  };
  int failing = 0;
  for (const Shape& s : shapes) {
    const bool medium = s.rows * s.cols > (1 << 16);
    std::vector<HostMatrix> xs;
    std::vector<GpuMatrix> xds;
    std::vector<Pattern> x_patterns;
    for (Pattern pat : patterns) {
      if (medium && pat != Pattern::kNormal && pat != Pattern::kNonFinite) continue;
      for (DType dt : kDtypes) {
        if (medium && dt == DType::kF16) continue;
        xs.push_back(make_input(s.rows, s.cols, dt, pat, 900 + static_cast<uint64_t>(pat)));
        x_patterns.push_back(pat);
      }
    }
    for (const HostMatrix& x : xs) xds.push_back(upload(x));
    std::vector<DequantCase> cases;
    std::vector<Job<DequantRef>> jobs;
    for (size_t k = 0; k < xs.size(); ++k) {
      for (const Mode& m : modes) {
        cases.push_back({label_of(xs[k].dtype, s.rows, s.cols, x_patterns[k], m.name), &xs[k], &xds[k], m.params});
        const HostMatrix* x = &xs[k];
        const QuantParams p = m.params;
        jobs.push_back({static_cast<double>(x->rows * x->cols), [x, p] {
                          DequantRef ref;
                          const Nvfp4Tensor q = quantize(host_view(*x), p, Target::cpu());
                          ref.q = snapshot(q);
                          for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
                            if (!has_columnwise(p.direction) && d == Direction::kColumnwise) continue;
                            const auto [rows, cols] = dequant_shape(*x, d);
                            for (size_t o = 0; o < std::size(kOutDtypes); ++o) {
                              HostMatrix out(rows, cols, kOutDtypes[o]);
                              dequantize(q, d, out.view(), {}, Target::cpu());
                              ref.out[d == Direction::kColumnwise][o] = std::move(out.bytes);
                            }
                          }
                          return ref;
                        }});
      }
    }
    const std::vector<DequantRef> refs = run_parallel(jobs);
    for (size_t k = 0; k < cases.size(); ++k) {
      const DequantCase& c = cases[k];
      const bool ok = guarded(c.label, [&] { return check_dequantize_case(c, refs[k]); });
      if (!ok && ++failing >= kMaxFailingCases) FAIL() << "stopping after " << failing << " failing dequantize cases";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Layouts the kernels may not take: the reference's bytes or a clean error, never wrong bytes
// ---------------------------------------------------------------------------------------------

TEST_F(GpuTest, UnalignedOrStridedInputsGiveTheReferenceOrAClearError) {
  struct LayoutCase {
    const char* name;
    int64_t rows, cols;
    DType dtype;
    int64_t byte_offset;  // added to the cudaMalloc'ed base pointer
    int64_t row_stride;   // elements; -1: dense
    QuantParams params;
  };
  const QuantParams row = make_params(Direction::kRowwise, BlockScaling::k1D, Rounding::kNearest);
  const QuantParams both = make_params(Direction::kBoth, BlockScaling::k1D, Rounding::kNearest);
  const QuantParams both2d = make_params(Direction::kBoth, BlockScaling::k2D, Rounding::kNearest);
  const QuantParams col = make_params(Direction::kColumnwise, BlockScaling::k1D, Rounding::kNearest);
  const QuantParams col_sr = make_params(Direction::kColumnwise, BlockScaling::k1D, Rounding::kStochastic);
  const QuantParams both_rht = rht_params(Direction::kBoth, Rounding::kNearest);
  const QuantParams col_rht_sr = rht_params(Direction::kColumnwise, Rounding::kStochastic);
  const LayoutCase cases[] = {
      {"bf16 base + 2 bytes, rowwise", 64, 256, DType::kBF16, 2, -1, row},
      {"bf16 base + 2 bytes, both", 64, 256, DType::kBF16, 2, -1, both},
      {"bf16 base + 2 bytes, both 2d", 64, 256, DType::kBF16, 2, -1, both2d},
      {"f32 base + 4 bytes, both", 48, 128, DType::kF32, 4, -1, both},
      {"bf16 odd row stride 257, both", 64, 256, DType::kBF16, 0, 257, both},
      {"f16 padded row stride 272, both", 64, 256, DType::kF16, 0, 272, both},
      {"f32 columnwise-only, cols 40 (not a multiple of 16)", 33, 40, DType::kF32, 0, -1, col},
      {"bf16 columnwise-only sr, 5x7", 5, 7, DType::kBF16, 0, -1, col_sr},
      {"bf16 base + 2 bytes, both rht", 64, 256, DType::kBF16, 2, -1, both_rht},
      {"f16 padded row stride 272, both rht", 64, 256, DType::kF16, 0, 272, both_rht},
      {"f32 columnwise-only rht sr, cols 40 (not a multiple of 16)", 33, 40, DType::kF32, 0, -1, col_rht_sr},
  };
  for (const LayoutCase& lc : cases) {
    const HostMatrix dense = make_input(lc.rows, lc.cols, lc.dtype, Pattern::kNonFinite, 31);
    const QuantBytes ref = snapshot(quantize(host_view(dense), lc.params, Target::cpu()));
    // The same values in the case's layout on the device.
    const int64_t stride = lc.row_stride < 0 ? lc.cols : lc.row_stride;
    const size_t esize = dtype_size(lc.dtype);
    std::vector<uint8_t> strided(static_cast<size_t>(lc.rows * stride) * esize, 0);
    for (int64_t r = 0; r < lc.rows; ++r) {
      std::memcpy(strided.data() + static_cast<size_t>(r * stride) * esize,
                  dense.bytes.data() + static_cast<size_t>(r * lc.cols) * esize, static_cast<size_t>(lc.cols) * esize);
    }
    DevicePtr mem = device_alloc(strided.size() + static_cast<size_t>(lc.byte_offset));
    void* base = static_cast<uint8_t*>(mem.get()) + lc.byte_offset;
    FP4KIT_CUDA_OK(cudaMemcpy(base, strided.data(), strided.size(), cudaMemcpyHostToDevice));
    const TensorView xv = TensorView::matrix(base, lc.dtype, lc.rows, lc.cols, kGpu, lc.row_stride);
    for (size_t i = 0; i < kNumBudgets; ++i) {
      const std::string where = std::string(lc.name) + ", budget " + kBudgets[i].name;
      Nvfp4Tensor out = Nvfp4Tensor::allocate(lc.rows, lc.cols, lc.dtype, lc.params, kGpu);
      poison(out);
      FP4KIT_CUDA_OK(cudaStreamSynchronize(stream()));
      try {
        quantize_into(xv, lc.params, out, target(i));
        sync();
        EXPECT_TRUE(same_quant(snapshot(out), ref)) << where << ": accepted, so it must give the reference bytes";
      } catch (const Error& e) {
        EXPECT_TRUE(e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kLayout)
            << where << ": rejected with " << error_code_name(e.code()) << " (want unsupported or layout): " << e.what();
        if (i == 0) std::cout << lc.name << ": rejected cleanly (" << error_code_name(e.code()) << "): " << e.what() << "\n";
      } catch (const std::exception& e) {
        ADD_FAILURE() << where << ": threw something other than fp4kit::Error: " << e.what();
      }
      // Nothing left behind: no launch failure, no sticky error.
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << where;
      EXPECT_EQ(cudaGetLastError(), cudaSuccess) << where;
    }
  }
}

}  // namespace
}  // namespace fp4kit
