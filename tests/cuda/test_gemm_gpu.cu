// The CUDA GEMM (docs/NUMERICS.md §7) against the CPU reference's float64 oracle.
//
// Each case quantizes its operands on the CPU (Target::cpu()) and copies every part's bytes to a
// device tensor (Nvfp4Tensor::allocate on the GPU). The GPU quantizer would give the same bytes (its
// own tests check that bit for bit), but copying makes the oracle and the GPU read the very same
// operands by construction: a failure here is the GEMM's, never the quantizer's, and one host
// tensor serves both the oracle and the device copy.
//
// The oracle is fp4kit::gemm with Accumulation::kF64 on Target::cpu() and the same host operands.
// Every case and output dtype:
//   - D is poisoned with 0xFF bytes (NaN in f32, bf16 and f16) before the call;
//   - normal inputs: every checked element within the §7 bound (tests/gemm_bound.hpp); grid-valued
//     sparse inputs, on which every product and partial sum is exact in FP32: equal to the oracle;
//   - a second call into D poisoned with 0x5A gives the same bytes (every element written, and
//     written the same way);
//   - every CUDA GEMM backend that can serve the case runs it, forced through a context whose
//     DispatchSettings::force_kernel names it, and passes each check above: the backends agree
//     with each other within the bound, and exactly on grid-valued inputs;
//   - under a context whose DispatchSettings::smem_budget is 101376 B, selection picks a
//     configuration within it, and the call gives the bound (the same bytes when it selects the
//     same variant as without a cap: a tile's width changes no element's accumulation order).
// The oracle is O(M N K) on one host thread (~0.6-2 ns per multiply-add): the 4096^3 case checks
// spread rows of D against an oracle of those rows only (and that every element is finite), and
// each test prints the seconds its host side took.
// Label `gpu`: skipped, with the reason, where no CUDA device is present.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gemm_bound.hpp"
#include "cuda/cuda_test_util.hpp"
#include "cuda/gemm_test_util.hpp"
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
using test::bit_equal;
using test::checked_values;
using test::copy_to_device;
using test::element;
using test::guarded;
using test::kPoison;
using test::kPoisonAgain;
using test::oracle_in;

constexpr int64_t kSmallBudget = 101376;
// The fused sm_90a kernel: it must run wherever it can (checked on sm_90 devices).
constexpr const char* kSm90Variant = "sm90_gemm_nvfp4";
constexpr int kMaxFailingCases = 8;

// HostMatrix::view() is non-const; the oracle only reads.
TensorView host_view(const HostMatrix& x) {
  return TensorView::matrix(const_cast<uint8_t*>(x.bytes.data()), x.dtype, x.rows, x.cols);
}


// A host NVFP4 tensor's bytes (every present part's data, scales, amax and swizzled scales, and the
// non-finite counts) in a new device tensor of the same shape and params.
Nvfp4Tensor to_device(const Nvfp4Tensor& host) {
  const Nvfp4Meta& meta = host.meta();
  Nvfp4Tensor dev = Nvfp4Tensor::allocate(meta.rows, meta.cols, meta.source_dtype, meta.params, kGpu);
  for (const auto& [h, g] : {std::pair{&host.rowwise(), &dev.rowwise()}, std::pair{&host.columnwise(), &dev.columnwise()}}) {
    if (h->present != g->present) throw std::runtime_error("to_device: the device tensor's parts differ from the host's");
    if (!h->present) continue;
    copy_to_device(g->data, h->data);
    copy_to_device(g->scales, h->scales);
    copy_to_device(g->amax, h->amax);
    if (h->scales_swizzled.data) copy_to_device(g->scales_swizzled, h->scales_swizzled);
  }
  copy_to_device(dev.nonfinite_counts(), host.nonfinite_counts());
  return dev;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

enum class Values : uint8_t {
  kNormal,  // normals: checked against the §7 bound
  kGrid,    // test::sparse_grid (C, bias and alphas on grids too): checked for equality
};
enum class AForm : uint8_t {
  kRowwise,     // x[M, K] quantized 1D, its rowwise part
  kRowScaled,   // x[M, K] quantized row-scaled (one global scale per row), rows of very different size
  kColumnwise,  // the wgrad shape: dy[T, M] quantized, its columnwise part [M, pad16(T)]
  kDenseBf16,   // W4A16: x[M, K] in BF16 on the device
};
enum class BForm : uint8_t {
  kRowwise,     // w[N, K] quantized 1D
  k2D,          // w[N, K] quantized with 16x16 blocks
  kColumnwise,  // the wgrad shape: x[T, N] quantized, its columnwise part [N, pad16(T)]
};

const char* a_name(AForm a) {
  switch (a) {
    case AForm::kRowwise: return "A 1d";
    case AForm::kRowScaled: return "A row-scaled";
    case AForm::kColumnwise: return "A columnwise";
    case AForm::kDenseBf16: return "A dense bf16";
  }
  return "?";
}
const char* b_name(BForm b) {
  switch (b) {
    case BForm::kRowwise: return "B 1d";
    case BForm::k2D: return "B 2d";
    case BForm::kColumnwise: return "B columnwise";
  }
  return "?";
}

constexpr DType kAllOutputs[] = {DType::kBF16, DType::kF32, DType::kF16};

struct GemmCase {
  int64_t m = 0, n = 0;
  int64_t k = 0;  // the sources' K; columnwise operands: the token count T (the GEMM's K is pad16(T))
  AForm a = AForm::kRowwise;
  BForm b = BForm::kRowwise;
  Values values = Values::kNormal;
  float alpha = 1.0f;
  float beta = 0.0f;
  bool c_in_d_dtype = false;        // C (when beta != 0) in D's dtype, else F32
  std::optional<DType> bias;        // F32 or BF16
  bool production = false;          // operands quantized in both directions with swizzled scales
  int64_t checked_rows = 0;         // 0: every row of D against the oracle; else that many spread rows
  std::vector<DType> outputs{std::begin(kAllOutputs), std::end(kAllOutputs)};

  int64_t gemm_k() const { return (k + 15) / 16 * 16; }
  std::string describe() const {
    std::ostringstream os;
    os << (values == Values::kGrid ? "grid " : "normal ") << m << "x" << n << "x" << k << " " << a_name(a) << " "
       << b_name(b);
    if (alpha != 1.0f) os << " alpha " << alpha;
    if (beta != 0.0f) os << " beta " << beta << " C " << (c_in_d_dtype ? "in d's dtype" : "f32");
    if (bias) os << " bias " << dtype_name(*bias);
    if (production) os << " (both directions, swizzled scales)";
    if (checked_rows) os << ", " << checked_rows << " rows checked";
    return os.str();
  }
};

// Rows of D to check: all, or about `count` spread over [0, m): the first and last 16 and an odd
// stride between (every M tile, partial tiles included).
std::vector<int64_t> checked_rows(int64_t m, int64_t count) {
  std::vector<int64_t> rows;
  if (count <= 0 || count >= m) {
    for (int64_t r = 0; r < m; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t r = 0; r < 16; ++r) rows.push_back(r);
  const int64_t inner = std::max<int64_t>(count - 32, 1);
  const int64_t stride = ((m - 32) / inner) | 1;
  for (int64_t r = 16; r < m - 16 && static_cast<int64_t>(rows.size()) < count - 16; r += stride) rows.push_back(r);
  for (int64_t r = m - 16; r < m; ++r) rows.push_back(r);
  return rows;
}

// ---------------------------------------------------------------------------------------------
// The host side of a case: operands, the oracle and the bound's terms
// ---------------------------------------------------------------------------------------------

// One operand on the host: a direction of an NVFP4 tensor, or a dense matrix.
struct HostOperand {
  Nvfp4Tensor q;
  Direction direction = Direction::kRowwise;
  std::optional<HostMatrix> dense;
  GemmOperand op() const {
    return dense ? GemmOperand::matrix(host_view(*dense)) : GemmOperand::quantized(q, direction);
  }
};

// Rows `rows` of one direction of a host NVFP4 tensor, as a host tensor of their own (that direction
// only): the oracle of a sampled check costs rows.size() / M of the whole one.
Nvfp4Tensor gather_rows(const Nvfp4Tensor& q, Direction d, const std::vector<int64_t>& rows) {
  const Nvfp4Part& src = q.part(d);
  QuantParams p = q.meta().params;
  p.direction = d;
  p.swizzled_scales = false;
  const int64_t s = static_cast<int64_t>(rows.size());
  // A direction's part is [rows, cols] of x (rowwise) or of x^T (columnwise): shape the new source
  // so that its part has s rows and the same K.
  Nvfp4Tensor out = d == Direction::kRowwise
                        ? Nvfp4Tensor::allocate(s, q.meta().cols, q.meta().source_dtype, p)
                        : Nvfp4Tensor::allocate(q.meta().rows, s, q.meta().source_dtype, p);
  const Nvfp4Part& dst = out.part(d);
  const int64_t data_bytes = src.geometry.data_bytes_per_row(), scale_bytes = src.geometry.blocks_per_row();
  for (int64_t i = 0; i < s; ++i) {
    const int64_t r = rows[static_cast<size_t>(i)];
    std::memcpy(dst.data.ptr<uint8_t>() + i * dst.data.strides[0], src.data.ptr<uint8_t>() + r * src.data.strides[0],
                static_cast<size_t>(data_bytes));
    std::memcpy(dst.scales.ptr<uint8_t>() + i * dst.scales.strides[0],
                src.scales.ptr<uint8_t>() + r * src.scales.strides[0], static_cast<size_t>(scale_bytes));
  }
  if (p.row_scaled) {
    for (int64_t i = 0; i < s; ++i) dst.amax.ptr<float>()[i] = src.amax.ptr<float>()[rows[static_cast<size_t>(i)]];
  } else {
    dst.amax.ptr<float>()[0] = src.amax.ptr<float>()[0];
  }
  return out;
}

HostMatrix gather_rows(const HostMatrix& x, const std::vector<int64_t>& rows) {
  HostMatrix out(static_cast<int64_t>(rows.size()), x.cols, x.dtype);
  const size_t row_bytes = static_cast<size_t>(x.cols) * dtype_size(x.dtype);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.bytes.data() + i * row_bytes, x.bytes.data() + static_cast<size_t>(rows[i]) * row_bytes, row_bytes);
  }
  return out;
}

// Source values [rows, cols]. Grid: test::sparse_grid, row r scaled by 2^(r % 3) when `row_spread`
// (exact all the same). Normal: N(0, scale^2), row r scaled by 2^(r % 7 - 3) when `row_spread`.
std::vector<float> source_values(int64_t rows, int64_t cols, Values values, uint64_t seed, float scale, bool row_spread) {
  std::vector<float> v = values == Values::kGrid ? test::sparse_grid(rows, cols, seed)
                                                 : test::normals(static_cast<size_t>(rows * cols), seed, scale);
  if (row_spread) {
    for (int64_t r = 0; r < rows; ++r) {
      const float f = values == Values::kGrid ? std::ldexp(1.0f, static_cast<int>(r % 3)) : std::ldexp(1.0f, static_cast<int>(r % 7) - 3);
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] *= f;
    }
  }
  return v;
}

// v[rows, cols] transposed: the source whose columnwise part holds v's rows.
std::vector<float> transposed(const std::vector<float>& v, int64_t rows, int64_t cols) {
  std::vector<float> t(v.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = v[static_cast<size_t>(r * cols + c)];
  return t;
}

QuantParams operand_params(Direction d, bool production) {
  QuantParams p;
  p.direction = production ? Direction::kBoth : d;
  p.swizzled_scales = production;
  return p;
}

// An NVFP4 operand read as its columnwise part: the source is v^T [cols, rows], quantized in both
// directions when its rowwise output is allowed (cols of v^T = rows of v, a multiple of 16), as the
// recipe quantizes dy and x, else columnwise only.
HostOperand columnwise_operand(const std::vector<float>& v, int64_t rows, int64_t cols, bool production) {
  QuantParams p = operand_params(Direction::kColumnwise, production);
  p.direction = rows % 16 == 0 ? Direction::kBoth : Direction::kColumnwise;
  HostMatrix src(cols, rows, transposed(v, rows, cols));
  return {quantize(src.view(), p, Target::cpu()), Direction::kColumnwise, std::nullopt};
}

HostOperand make_a(const GemmCase& c, uint64_t seed) {
  const bool spread = c.a == AForm::kRowScaled;
  const std::vector<float> v = source_values(c.m, c.k, c.values, seed, 1.0f, spread);
  switch (c.a) {
    case AForm::kRowwise: {
      HostMatrix x(c.m, c.k, v);
      return {quantize(x.view(), operand_params(Direction::kRowwise, c.production), Target::cpu()), Direction::kRowwise,
              std::nullopt};
    }
    case AForm::kRowScaled: {
      QuantParams p;  // row scaling is rowwise only (§6)
      p.row_scaled = true;
      p.swizzled_scales = c.production;
      HostMatrix x(c.m, c.k, v);
      return {quantize(x.view(), p, Target::cpu()), Direction::kRowwise, std::nullopt};
    }
    case AForm::kColumnwise: return columnwise_operand(v, c.m, c.k, c.production);
    case AForm::kDenseBf16: return {Nvfp4Tensor{}, Direction::kRowwise, HostMatrix(c.m, c.k, v, DType::kBF16)};
  }
  throw std::logic_error("unknown A form");
}

HostOperand make_b(const GemmCase& c, uint64_t seed) {
  // Weights an order of magnitude below the activations, as in a layer (normal inputs).
  const std::vector<float> v = source_values(c.n, c.k, c.values, seed, 0.05f, false);
  if (c.b == BForm::kColumnwise) return columnwise_operand(v, c.n, c.k, c.production);
  QuantParams p = operand_params(Direction::kRowwise, c.production);
  if (c.b == BForm::k2D) p.block = BlockScaling::k2D;
  HostMatrix w(c.n, c.k, v);
  return {quantize(w.view(), p, Target::cpu()), Direction::kRowwise, std::nullopt};
}

// C and bias values on grids that every dtype holds exactly (k/64, |k| <= 128; k/8, |k| <= 32), so C
// in F32 or in D's dtype and bias in F32 or BF16 carry the same values: one oracle serves them all.
float c_value(int64_t m, int64_t n) { return static_cast<float>((m * 7 + n * 3) % 256 - 128) / 64.0f; }
float bias_value(int64_t n) { return static_cast<float>((n * 5) % 64 - 32) / 8.0f; }

struct HostSide {
  HostOperand a, b;
  std::vector<int64_t> rows;  // the rows of D checked against the oracle
  std::vector<float> c;       // [M, N] when beta != 0
  std::vector<float> bias;    // [N] when the case has a bias
  HostMatrix oracle{0, 0};    // [rows, N] F32: the float64 oracle rounded to FP32
  std::vector<double> abs_sums, epilogue_abs;  // [rows, N]: the bound's terms
  double seconds = 0;         // host time: inputs, quantization, oracle, bound terms
};

// Everything a case needs from the host (no CUDA call): operands, the oracle of the checked rows and
// the bound's terms.
HostSide prepare(const GemmCase& c, uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  HostSide h;
  h.a = make_a(c, seed);
  h.b = make_b(c, seed + 1);
  h.rows = checked_rows(c.m, c.checked_rows);
  const int64_t s = static_cast<int64_t>(h.rows.size());
  const bool all_rows = s == c.m;
  // The oracle's A: the checked rows only.
  HostOperand a_rows;
  if (all_rows) {
    a_rows.q = h.a.q;
    a_rows.direction = h.a.direction;
    a_rows.dense = h.a.dense;
  } else if (h.a.dense) {
    a_rows.dense = gather_rows(*h.a.dense, h.rows);
  } else {
    a_rows.q = gather_rows(h.a.q, h.a.direction, h.rows);
    a_rows.direction = h.a.direction;
  }
  GemmOptions o;
  o.alpha = c.alpha;
  o.beta = c.beta;
  o.accumulation = Accumulation::kF64;
  HostMatrix c_rows(s, c.n);
  if (c.beta != 0.0f) {
    h.c.resize(static_cast<size_t>(c.m * c.n));
    for (int64_t m = 0; m < c.m; ++m)
      for (int64_t n = 0; n < c.n; ++n) h.c[static_cast<size_t>(m * c.n + n)] = c_value(m, n);
    for (int64_t i = 0; i < s; ++i)
      for (int64_t n = 0; n < c.n; ++n) c_rows.set(i, n, c_value(h.rows[static_cast<size_t>(i)], n));
    o.c = c_rows.view();
  }
  if (c.bias) {
    for (int64_t n = 0; n < c.n; ++n) h.bias.push_back(bias_value(n));
    o.bias = TensorView::vector(h.bias.data(), DType::kF32, c.n);
  }
  h.oracle = HostMatrix(s, c.n);
  gemm(a_rows.op(), h.b.op(), h.oracle.view(), o, Target::cpu());
  if (c.values == Values::kGrid) {
    // The premise of the exact check: on these inputs the CPU reference's FP32 path gives the
    // oracle's bytes too (every product, partial sum and epilogue step exact in FP32).
    HostMatrix f32(s, c.n);
    o.accumulation = Accumulation::kF32;
    gemm(a_rows.op(), h.b.op(), f32.view(), o, Target::cpu());
    if (f32.bytes != h.oracle.bytes) {
      throw std::logic_error("test premise: the reference's FP32 GEMM differs from the oracle on grid-valued inputs");
    }
  }
  h.abs_sums = test::gemm_abs_sums(test::gemm_values(a_rows.op()), test::gemm_values(h.b.op()), c.alpha);
  if (c.beta != 0.0f || c.bias) {
    h.epilogue_abs.resize(static_cast<size_t>(s * c.n));
    for (int64_t i = 0; i < s; ++i) {
      for (int64_t n = 0; n < c.n; ++n) {
        const double cv = c.beta != 0.0f ? std::fabs(double(c.beta) * c_rows.get(i, n)) : 0.0;
        h.epilogue_abs[static_cast<size_t>(i * c.n + n)] = cv + (c.bias ? std::fabs(double(bias_value(n))) : 0.0);
      }
    }
  }
  h.seconds = seconds_since(t0);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------





// Where the elements of D [M, N] are NaN or infinite (count, and the first few positions).
std::string nonfinite_summary(const std::vector<uint8_t>& d, DType dt, int64_t n, int64_t* count) {
  std::ostringstream os;
  *count = 0;
  const size_t total = d.size() / dtype_size(dt);
  for (size_t i = 0; i < total; ++i) {
    const float v = element(d, dt, i);
    if (std::isfinite(v)) continue;
    if ((*count)++ < 6) os << " (" << static_cast<int64_t>(i) / n << ", " << static_cast<int64_t>(i) % n << ")=" << v;
  }
  return os.str();
}


// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

// One operand on the device, made from a host one.
struct DeviceOperand {
  Nvfp4Tensor q;
  Direction direction = Direction::kRowwise;
  std::optional<GpuMatrix> dense;
  GemmOperand op() const { return dense ? GemmOperand::matrix(dense->view) : GemmOperand::quantized(q, direction); }
};

DeviceOperand to_device(const HostOperand& h) {
  DeviceOperand d;
  d.direction = h.direction;
  if (h.dense) {
    d.dense = upload(*h.dense);
  } else {
    d.q = to_device(h.q);
  }
  return d;
}

// The Problem fp4kit::gemm selects with (src/dispatch/ops.cpp).
Problem gemm_problem(const GemmCase& c, DType out) {
  Problem p;
  p.op = OpKind::kGemm;
  p.rows = c.m;
  p.cols = c.n;
  p.k = c.gemm_k();
  p.in_dtype = c.a == AForm::kDenseBf16 ? DType::kBF16 : DType::kU8;
  p.out_dtype = out;
  p.a_nvfp4 = c.a != AForm::kDenseBf16;
  p.a_row_scaled = c.a == AForm::kRowScaled;
  p.b_2d = c.b == BForm::k2D;
  return p;
}

class GpuGemm : public test::GpuFixture {
 protected:
  void SetUp() override {
    GpuFixture::SetUp();
    if (IsSkipped()) return;
    // Not from_env: the budgets are exactly the ones under test.
    no_cap_ = std::make_unique<Context>(DispatchSettings{}, Registry::builtin());
    DispatchSettings small;
    small.smem_budget = kSmallBudget;
    small_budget_ = std::make_unique<Context>(small, Registry::builtin());
    const Registry registry = Registry::builtin();
    for (const KernelVariant& v : registry.variants()) {
      if (v.op != OpKind::kGemm || v.device_type != DeviceType::kCuda) continue;
      DispatchSettings forced;
      forced.force_kernel = v.name;
      backends_.emplace_back(v.name, std::make_unique<Context>(forced, Registry::builtin()));
    }
  }

  // The backends that can serve `problem` on the GPU, each with the context that forces it.
  std::vector<std::pair<std::string, Context*>> serving(const Problem& problem) {
    std::vector<std::pair<std::string, Context*>> out;
    for (auto& [name, ctx] : backends_) {
      try {
        const Selection s = ctx->select(problem, ctx->device(kGpu));
        if (s.ok()) out.emplace_back(name, ctx.get());
      } catch (const Error&) {
        // Forced but infeasible (the reason is in the message): this backend does not serve it.
      }
    }
    return out;
  }

  // Whether the device can run the fused sm_90a kernel in this build (then cases it serves must run on it).
  bool sm90_expected() {
    const DeviceInfo& d = no_cap_->device(kGpu);
    const KernelVariant* v = no_cap_->registry().find(kSm90Variant);
    return v && d.compute_capability() == 90 && !v->compiled_archs.empty();
  }

  Target target(Context* ctx) const { return Target::cuda(0, stream_.get(), ctx); }

  // The variant `ctx` selects for `problem` on the GPU ("" and a failure when none is feasible).
  std::string selected(Context& ctx, const Problem& problem) {
    const DeviceInfo& device = ctx.device(kGpu);
    const Selection s = ctx.select(problem, device);
    if (!s.ok()) {
      ADD_FAILURE() << "no feasible variant for " << problem.describe() << ":\n" << explain(s, problem, device);
      return {};
    }
    EXPECT_EQ(s.variant->device_type, DeviceType::kCuda) << "a CUDA target selected " << s.variant->name;
    EXPECT_LE(s.smem_bytes, s.smem_budget) << s.variant->name;
    return s.variant->name;
  }

  // D [M, N] in `out` after one call into memory poisoned with `poison`.
  std::vector<uint8_t> run(const DeviceOperand& a, const DeviceOperand& b, DType out, int64_t m, int64_t n,
                           const GemmOptions& options, Context* ctx, uint8_t poison) {
    const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out);
    DevicePtr d = device_alloc(bytes);
    FP4KIT_CUDA_OK(cudaMemsetAsync(d.get(), poison, bytes, stream()));
    gemm(a.op(), b.op(), TensorView::matrix(d.get(), out, m, n, kGpu), options, target(ctx));
    sync();
    return download(d.get(), bytes);
  }

  // One case on the GPU against its host side, every output dtype; returns whether all passed.
  bool check_case(const GemmCase& c, const HostSide& h) {
    const std::string label = c.describe();
    bool ok = true;
    auto expect = [&](const testing::AssertionResult& r, const std::string& where) {
      EXPECT_TRUE(r) << label << ", " << where;
      ok = ok && static_cast<bool>(r);
    };
    const DeviceOperand a = to_device(h.a), b = to_device(h.b);
    std::optional<GpuMatrix> bias;
    if (c.bias) bias = upload(HostMatrix(1, c.n, h.bias, *c.bias));
    for (DType out : c.outputs) {
      const std::string where = std::string("d ") + dtype_name(out);
      GemmOptions o;
      o.alpha = c.alpha;
      o.beta = c.beta;
      std::optional<GpuMatrix> cmat;
      if (c.beta != 0.0f) {
        cmat = upload(HostMatrix(c.m, c.n, h.c, c.c_in_d_dtype ? out : DType::kF32));
        o.c = cmat->view;
      }
      if (bias) o.bias = TensorView::vector(bias->mem.get(), *c.bias, c.n, kGpu);

      const Problem problem = gemm_problem(c, out);
      const std::string variant = selected(*no_cap_, problem);
      const std::string small_variant = selected(*small_budget_, problem);
      const std::vector<float> want = oracle_in(h.oracle, out);
      test::GemmBoundCheck check;
      check.rows = static_cast<int64_t>(h.rows.size());
      check.cols = c.n;
      check.k = c.gemm_k();
      check.out = out;
      check.oracle = want.data();
      check.abs_sums = h.abs_sums.data();
      check.epilogue_abs = h.epilogue_abs.empty() ? nullptr : h.epilogue_abs.data();
      check.row_ids = h.rows.data();
      // D from one call of `name` against the oracle: exact on grid inputs, else the bound; the
      // rows the oracle skipped written and finite like every oracle value of these inputs.
      const auto check_result = [&](const std::vector<uint8_t>& bytes, const std::string& name) {
        const std::vector<float> got = checked_values(bytes, out, c.n, h.rows);
        if (c.values == Values::kGrid) {
          expect(bit_equal(got, want, c.n, h.rows, "float64 oracle"),
                 where + " (" + name + "): grid-valued inputs must give the oracle exactly");
        }
        check.got = got.data();
        expect(test::within_gemm_bound(check), where + " (" + name + ")");
        if (static_cast<int64_t>(h.rows.size()) < c.m) {
          int64_t count = 0;
          const std::string where_nonfinite = nonfinite_summary(bytes, out, c.n, &count);
          expect(count == 0 ? testing::AssertionSuccess()
                            : testing::AssertionFailure() << count << " NaN or infinite elements in D:" << where_nonfinite,
                 where + " (" + name + "), every row");
        }
      };

      std::vector<uint8_t> selected_bytes;
      const auto backends = serving(problem);
      if (sm90_expected() && c.a != AForm::kDenseBf16 && c.gemm_k() % 256 == 0) {
        const bool ran = std::any_of(backends.begin(), backends.end(), [](const auto& b) { return b.first == kSm90Variant; });
        expect(ran ? testing::AssertionSuccess() : testing::AssertionFailure() << kSm90Variant << " cannot serve it",
               where);
      }
      for (const auto& [name, ctx] : backends) {
        ++runs_[name];
        const std::vector<uint8_t> first = run(a, b, out, c.m, c.n, o, ctx, kPoison);
        check_result(first, name);
        const std::vector<uint8_t> again = run(a, b, out, c.m, c.n, o, ctx, kPoisonAgain);
        expect(again == first ? testing::AssertionSuccess()
                              : testing::AssertionFailure() << "a second call (D poisoned with 0x5A) gave other bytes",
               where + " (" + name + ")");
        if (name == variant) selected_bytes = first;
      }
      expect(!selected_bytes.empty() ? testing::AssertionSuccess()
                                      : testing::AssertionFailure() << "the selected variant '" << variant
                                                                    << "' is not among the serving backends",
             where);
      const std::vector<uint8_t> small = run(a, b, out, c.m, c.n, o, small_budget_.get(), kPoison);
      check_result(small, small_variant + " under smem_budget " + std::to_string(kSmallBudget));
      if (small_variant == variant) {
        expect(small == selected_bytes ? testing::AssertionSuccess()
                                       : testing::AssertionFailure() << "the same variant under smem_budget "
                                                                     << kSmallBudget << " B gave other bytes",
               where);
      }
    }
    return ok;
  }

  // Every case: its host side, then its GPU checks; prints the host seconds.
  void run_cases(const std::vector<GemmCase>& cases, const char* what) {
    double host_seconds = 0;
    test::run_guarded_cases(cases, what, 100, kMaxFailingCases, [&](const GemmCase& c, uint64_t seed) {
      const HostSide h = prepare(c, seed);
      host_seconds += h.seconds;
      return check_case(c, h);
    });
    std::cout << what << ": " << cases.size() << " cases, host side (inputs, quantization, oracle, bound) "
              << std::fixed << std::setprecision(2) << host_seconds << " s on one thread; backend runs:";
    for (const auto& [name, count] : runs_) std::cout << " " << name << " " << count;
    std::cout << "\n" << std::defaultfloat;
  }

  std::unique_ptr<Context> no_cap_, small_budget_;
  std::vector<std::pair<std::string, std::unique_ptr<Context>>> backends_;  // one forcing context per CUDA GEMM variant
  std::map<std::string, int> runs_;                                          // cases (and dtypes) each backend ran
};

// ---------------------------------------------------------------------------------------------
// The case lists (functions of nothing: a host-only harness can time their oracles)
// ---------------------------------------------------------------------------------------------

constexpr int64_t kMs[] = {1, 7, 64, 65, 1000, 4096};
struct NK {
  int64_t n, k;
};
// Multiples of 16 that are not multiples of 128 (partial tiles along N and K in any tiling).
// And one with K % 256 == 0 (the fused sm_90a kernel's rule) and N not a multiple of 64.
constexpr NK kNKs[] = {{80, 48}, {272, 400}, {208, 512}};

// A case of shape m x n x k with operand forms a and b; every other field at its default.
GemmCase make_case(int64_t m, int64_t n, int64_t k, AForm a = AForm::kRowwise, BForm b = BForm::kRowwise,
                   Values values = Values::kNormal) {
  GemmCase c;
  c.m = m;
  c.n = n;
  c.k = k;
  c.a = a;
  c.b = b;
  c.values = values;
  return c;
}

std::vector<GemmCase> shape_cases(Values values) {
  std::vector<GemmCase> cases;
  for (int64_t m : kMs) {
    for (const NK& nk : kNKs) cases.push_back(make_case(m, nk.n, nk.k, AForm::kRowwise, BForm::kRowwise, values));
  }
  return cases;
}

// Every operand form and epilogue option, alone and together, on shapes with partial tiles.
std::vector<GemmCase> feature_cases(Values values) {
  std::vector<GemmCase> cases;
  auto add = [&](int64_t m, int64_t n, int64_t k, AForm a, BForm b, const std::function<void(GemmCase&)>& more = {}) {
    GemmCase c = make_case(m, n, k, a, b, values);
    if (more) more(c);
    cases.push_back(c);
  };
  add(65, 272, 400, AForm::kRowScaled, BForm::kRowwise);
  add(1000, 80, 48, AForm::kRowScaled, BForm::kRowwise);
  add(64, 272, 400, AForm::kRowwise, BForm::k2D);
  add(7, 80, 48, AForm::kRowwise, BForm::k2D);
  add(65, 272, 400, AForm::kDenseBf16, BForm::kRowwise);   // W4A16
  add(1000, 80, 48, AForm::kDenseBf16, BForm::k2D);
  // wgrad: dW[out, in] = dy^T x, both read columnwise; K = the tokens (400, and for the bound a
  // count that is not a multiple of 16: the last block zero-padded).
  add(272, 80, 400, AForm::kColumnwise, BForm::kColumnwise);
  add(65, 272, 400, AForm::kColumnwise, BForm::kColumnwise);
  if (values == Values::kNormal) add(80, 272, 1000, AForm::kColumnwise, BForm::kColumnwise);
  add(65, 80, 48, AForm::kRowwise, BForm::kRowwise, [](GemmCase& c) { c.alpha = 0.5f; });
  add(65, 80, 48, AForm::kRowwise, BForm::kRowwise, [](GemmCase& c) { c.beta = 2.0f; });  // C f32
  add(1000, 272, 400, AForm::kRowwise, BForm::kRowwise, [](GemmCase& c) {
    c.beta = 0.5f;
    c.c_in_d_dtype = true;
  });
  add(7, 272, 400, AForm::kRowwise, BForm::kRowwise, [](GemmCase& c) { c.bias = DType::kF32; });
  add(64, 80, 48, AForm::kRowwise, BForm::kRowwise, [](GemmCase& c) { c.bias = DType::kBF16; });
  // Everything at once, as in a layer's fprop with a residual: row-scaled activations, 2D weights,
  // alpha, C in d's dtype, a bf16 bias; and a production-quantized pair (both directions, swizzled
  // scales present: the GEMM must read the compact ones it needs and ignore the rest).
  add(4096, 272, 400, AForm::kRowScaled, BForm::k2D, [](GemmCase& c) {
    c.alpha = 2.0f;
    c.beta = 0.5f;
    c.c_in_d_dtype = true;
    c.bias = DType::kBF16;
  });
  add(1000, 272, 400, AForm::kRowwise, BForm::k2D, [](GemmCase& c) {
    c.production = true;
    c.beta = 2.0f;
    c.bias = DType::kF32;
  });
  add(272, 80, 400, AForm::kColumnwise, BForm::kColumnwise, [](GemmCase& c) { c.production = true; });
  // The same forms with K % 256 == 0, which the fused sm_90a kernel serves.
  add(65, 208, 512, AForm::kRowScaled, BForm::k2D, [](GemmCase& c) {
    c.alpha = 2.0f;
    c.beta = 0.5f;
    c.c_in_d_dtype = true;
    c.bias = DType::kBF16;
  });
  add(1000, 208, 768, AForm::kRowwise, BForm::k2D, [](GemmCase& c) { c.bias = DType::kF32; });
  add(208, 80, 512, AForm::kColumnwise, BForm::kColumnwise, [](GemmCase& c) { c.production = true; });
  add(65, 208, 500, AForm::kColumnwise, BForm::kColumnwise);  // K = pad16(500) = 512
  return cases;
}

// The one large shape: 4096^3, production-quantized, checked on ~128 spread rows: their oracle takes
// ~2.6 s on one core, the whole one would take ~85 s.
std::vector<GemmCase> large_cases() {
  GemmCase c;
  c.m = c.n = c.k = 4096;
  c.b = BForm::k2D;
  c.production = true;
  c.bias = DType::kBF16;
  c.checked_rows = 128;
  return {c};
}

// Tiny shapes of every form and option: cheap enough for compute-sanitizer.
std::vector<GemmCase> sanitizer_cases() {
  std::vector<GemmCase> cases;
  auto add = [&](int64_t m, int64_t n, int64_t k, AForm a, BForm b, float beta, bool c_in_d, std::optional<DType> bias) {
    GemmCase c = make_case(m, n, k, a, b);
    c.beta = beta;
    c.c_in_d_dtype = c_in_d;
    c.bias = bias;
    cases.push_back(c);
  };
  add(1, 16, 16, AForm::kRowwise, BForm::kRowwise, 0.0f, false, std::nullopt);
  add(7, 80, 48, AForm::kRowwise, BForm::kRowwise, 2.0f, false, DType::kF32);
  add(7, 80, 48, AForm::kRowScaled, BForm::k2D, 0.5f, true, DType::kBF16);
  add(5, 16, 48, AForm::kDenseBf16, BForm::kRowwise, 0.0f, false, DType::kBF16);
  add(16, 32, 20, AForm::kColumnwise, BForm::kColumnwise, 0.0f, false, std::nullopt);
  // K % 256 == 0: the fused sm_90a kernel too (two stages, partial M and N tiles).
  add(7, 80, 512, AForm::kRowScaled, BForm::k2D, 0.5f, true, DType::kBF16);
  add(130, 272, 256, AForm::kRowwise, BForm::kRowwise, 0.0f, false, std::nullopt);
  // More tiles than an H100 or H200 has SMs (9 x 17 of 128x256, 9 x 65 of 128x64): the fused
  // kernel's CTAs each walk several tiles, reusing the ring and the staging tiles across them.
  add(1040, 4112, 256, AForm::kRowScaled, BForm::k2D, 0.5f, true, DType::kBF16);
  // 8 < M <= 64 with K % 256 == 0: the sm_90a small-M kernel too (a partial row block, two splits).
  add(16, 272, 512, AForm::kRowScaled, BForm::k2D, 0.5f, true, DType::kBF16);
  add(40, 80, 512, AForm::kDenseBf16, BForm::kRowwise, 0.0f, false, std::nullopt);
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

TEST_F(GpuGemm, SmallShapesForSanitizers) { run_cases(sanitizer_cases(), "sanitizer shapes"); }

TEST_F(GpuGemm, ShapesWithinTheBoundOfTheF64Oracle) { run_cases(shape_cases(Values::kNormal), "shapes, normal inputs"); }

TEST_F(GpuGemm, ExactOnGridValuedSparseInputs) {
  run_cases(shape_cases(Values::kGrid), "shapes, grid-valued inputs");
  run_cases(feature_cases(Values::kGrid), "features, grid-valued inputs");
}

TEST_F(GpuGemm, EveryOperandFormAndEpilogueWithinTheBound) {
  run_cases(feature_cases(Values::kNormal), "features, normal inputs");
}

TEST_F(GpuGemm, LargeShapeWithinTheBoundOnSpreadRows) { run_cases(large_cases(), "4096^3"); }

// NUMERICS §9: a block holding a NaN or an Inf quantizes with scale 0x7F and zero data; §7: exactly
// the outputs that read such a block are NaN (0 * NaN is NaN), every other output is untouched.
TEST_F(GpuGemm, NanScaleBlocksMakeExactlyTheirOutputsNan) {
  const int64_t M = 65, N = 80, K = 400;
  std::vector<float> av = test::sparse_grid(M, K, 41), bv = test::sparse_grid(N, K, 42);
  av[static_cast<size_t>(3 * K + 20)] = std::nanf("");   // A row 3, block 1
  av[static_cast<size_t>(40 * K + 100)] = INFINITY;      // A row 40, block 6
  bv[static_cast<size_t>(5 * K + 300)] = -std::nanf(""); // B row 5, block 18
  HostMatrix a(M, K, av), b(N, K, bv);
  HostSide h;
  h.a = {quantize(a.view(), QuantParams{}, Target::cpu()), Direction::kRowwise, std::nullopt};
  h.b = {quantize(b.view(), QuantParams{}, Target::cpu()), Direction::kRowwise, std::nullopt};
  ASSERT_EQ(test::scale(h.a.q.rowwise(), 3, 1), kE4m3Nan);
  ASSERT_EQ(test::scale(h.a.q.rowwise(), 40, 6), kE4m3Nan);
  ASSERT_EQ(test::scale(h.b.q.rowwise(), 5, 18), kE4m3Nan);
  h.rows = checked_rows(M, 0);
  h.oracle = HostMatrix(M, N);
  GemmOptions o64;
  o64.accumulation = Accumulation::kF64;
  gemm(h.a.op(), h.b.op(), h.oracle.view(), o64, Target::cpu());
  h.abs_sums.assign(static_cast<size_t>(M * N), 0.0);  // unused: the check is exact
  auto nan_expected = [](int64_t m, int64_t n) { return m == 3 || m == 40 || n == 5; };
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      ASSERT_EQ(std::isnan(h.oracle.get(m, n)), nan_expected(m, n)) << "the oracle itself at " << m << "," << n;
    }
  }
  GemmCase c;
  c.m = M;
  c.n = N;
  c.k = K;
  c.values = Values::kGrid;
  EXPECT_TRUE(check_case(c, h));
  // And the NaN positions exactly, on the bf16 output (the exact check above matches NaN to NaN only).
  const DeviceOperand da = to_device(h.a), db = to_device(h.b);
  const std::vector<uint8_t> d = run(da, db, DType::kBF16, M, N, GemmOptions{}, no_cap_.get(), kPoison);
  int64_t wrong = 0;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const bool is_nan = std::isnan(element(d, DType::kBF16, static_cast<size_t>(m * N + n)));
      if (is_nan != nan_expected(m, n) && wrong++ < 6) {
        ADD_FAILURE() << "(" << m << ", " << n << ") is " << (is_nan ? "NaN" : "not NaN") << "; want NaN exactly in "
                      << "rows 3 and 40 and column 5";
      }
    }
  }
  EXPECT_EQ(wrong, 0);
}

// D need not be dense: a row stride that breaks every vector alignment (N + 3 elements) and a start
// one element past an allocation both give exactly the dense D's values, and the elements between
// the rows stay untouched (the fused kernel's epilogue then writes element by element).
TEST_F(GpuGemm, StridedAndMisalignedOutputsMatchTheDenseOne) {
  GemmCase c;
  c.m = 200;  // a partial M tile
  c.n = 272;  // a multiple of 16, not of any tile width
  c.k = 512;
  c.values = Values::kGrid;
  const HostSide h = prepare(c, 77);
  const DeviceOperand a = to_device(h.a), b = to_device(h.b);
  for (DType out : {DType::kBF16, DType::kF32}) {
    for (const auto& [name, ctx] : serving(gemm_problem(c, out))) {
      const std::string label = c.describe() + ", d " + dtype_name(out) + ", " + name;
      const std::vector<uint8_t> dense = run(a, b, out, c.m, c.n, GemmOptions{}, ctx, kPoison);
      const size_t es = dtype_size(out);
      const int64_t stride = c.n + 3;
      const size_t bytes = static_cast<size_t>(c.m * stride + 1) * es;
      DevicePtr d = device_alloc(bytes);
      FP4KIT_CUDA_OK(cudaMemsetAsync(d.get(), kPoison, bytes, stream()));
      gemm(a.op(), b.op(), TensorView::matrix(static_cast<uint8_t*>(d.get()) + es, out, c.m, c.n, kGpu, stride), {},
           target(ctx));
      sync();
      const std::vector<uint8_t> got = download(d.get(), bytes);
      int64_t wrong = 0, touched = 0;
      for (int64_t r = 0; r < c.m; ++r) {
        const uint8_t* row = got.data() + static_cast<size_t>(r * stride + 1) * es;
        if (std::memcmp(row, dense.data() + static_cast<size_t>(r * c.n) * es, static_cast<size_t>(c.n) * es) != 0 &&
            wrong++ < 4) {
          ADD_FAILURE() << label << ": row " << r << " differs from the dense D's";
        }
        const uint8_t* gap = row + static_cast<size_t>(c.n) * es;  // the 3 elements after the row
        touched += std::count_if(gap, gap + 3 * es, [](uint8_t v) { return v != kPoison; });
      }
      touched += std::count_if(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(es), [](uint8_t v) { return v != kPoison; });
      EXPECT_EQ(wrong, 0) << label;
      EXPECT_EQ(touched, 0) << label << ": bytes outside D were written";
    }
  }
}

// On a GPU, N must be a multiple of 16 (include/fp4kit/ops.hpp): any other N is a kShapeMismatch
// before selection, naming N, with D left unwritten.
TEST_F(GpuGemm, NNotAMultipleOf16IsAClearError) {
  for (const int64_t n : {1, 20, 65}) {
    GemmCase c;
    c.m = 7;
    c.n = n;
    c.k = 48;
    const std::string label = c.describe();
    guarded(label, [&] {
      const HostSide h = prepare(c, 300 + static_cast<uint64_t>(n));
      const DeviceOperand a = to_device(h.a), b = to_device(h.b);
      const size_t bytes = static_cast<size_t>(c.m * n) * 2;
      const DevicePtr d = device_alloc(bytes);
      FP4KIT_CUDA_OK(cudaMemset(d.get(), kPoison, bytes));
      const test::Caught caught = test::catch_error([&] {
        gemm(a.op(), b.op(), TensorView::matrix(d.get(), DType::kBF16, c.m, n, kGpu), {}, target(no_cap_.get()));
        sync();
      });
      EXPECT_TRUE(caught.thrown && caught.code == ErrorCode::kShapeMismatch &&
                  caught.what.find("N=" + std::to_string(n)) != std::string::npos)
          << label << ": want kShapeMismatch naming N; got " << (caught.thrown ? caught.what : std::string("no error"));
      const std::vector<uint8_t> after = download(d.get(), bytes);
      EXPECT_TRUE(std::all_of(after.begin(), after.end(), [](uint8_t v) { return v == kPoison; }))
          << label << ": a rejected call wrote to D";
      return caught.thrown;
    });
  }
}

// Requests the CUDA GEMM does not serve, or that the API rejects before any launch: an fp4kit::Error
// with the expected code, a message naming the problem, and D left as it was.
TEST_F(GpuGemm, UnservedOrInvalidRequestsGiveClearErrors) {
  const int64_t M = 7, N = 80, K = 48;
  HostMatrix x(M, K, test::normals(M * K, 51)), w(N, K, test::normals(N * K, 52, 0.05f));
  const Nvfp4Tensor qx = quantize(x.view(), QuantParams{}, Target::cpu());
  const Nvfp4Tensor qw = quantize(w.view(), QuantParams{}, Target::cpu());
  const Nvfp4Tensor dx = to_device(qx), dw = to_device(qw);
  const GpuMatrix x_f32 = upload(HostMatrix(M, K, test::normals(M * K, 51), DType::kF32));
  const GpuMatrix x_f16 = upload(HostMatrix(M, K, test::normals(M * K, 51), DType::kF16));
  const GpuMatrix x_bf16_k40 = upload(HostMatrix(M, 40, test::normals(M * 40, 53), DType::kBF16));
  // B read columnwise from a source of 40 tokens: its K is 48 (the last block zero-padded).
  HostMatrix x40(40, N, test::normals(40 * N, 54));
  QuantParams columnwise;
  columnwise.direction = Direction::kColumnwise;
  const Nvfp4Tensor dx40 = to_device(quantize(x40.view(), columnwise, Target::cpu()));
  HostMatrix x64(M, 64, test::normals(M * 64, 55));
  const Nvfp4Tensor dx64 = to_device(quantize(x64.view(), QuantParams{}, Target::cpu()));
  const GpuMatrix c_f16 = upload(HostMatrix(M, N, test::normals(M * N, 56), DType::kF16));

  const size_t d_bytes = static_cast<size_t>(M * N) * 2;
  const DevicePtr d = device_alloc(d_bytes);
  const TensorView dv = TensorView::matrix(d.get(), DType::kBF16, M, N, kGpu);

  struct Rejected {
    const char* name;
    GemmOperand a, b;
    GemmOptions options;
    std::vector<ErrorCode> codes;
    std::vector<std::string> fragments;  // what() must contain one of them
  };
  GemmOptions f64;
  f64.accumulation = Accumulation::kF64;
  GemmOptions no_c;
  no_c.beta = 1.0f;
  GemmOptions c_wrong_dtype;
  c_wrong_dtype.beta = 1.0f;
  c_wrong_dtype.c = c_f16.view;
  const std::vector<Rejected> cases = {
      {"float64 accumulation on CUDA (the oracle is CPU-only)", GemmOperand::quantized(dx), GemmOperand::quantized(dw), f64,
       {ErrorCode::kUnsupported}, {"float64", "f64", "F64"}},
      {"dense f32 A on CUDA", GemmOperand::matrix(x_f32.view), GemmOperand::quantized(dw), {},
       {ErrorCode::kUnsupported, ErrorCode::kDtypeMismatch}, {"f32"}},
      {"dense f16 A on CUDA", GemmOperand::matrix(x_f16.view), GemmOperand::quantized(dw), {},
       {ErrorCode::kUnsupported, ErrorCode::kDtypeMismatch}, {"f16"}},
      {"dense A with K=40 (not a multiple of 16) against a columnwise B of 40 tokens (K=48)",
       GemmOperand::matrix(x_bf16_k40.view), GemmOperand::quantized(dx40, Direction::kColumnwise), {},
       {ErrorCode::kShapeMismatch}, {"K=40"}},
      {"A with K=64 against B with K=48", GemmOperand::quantized(dx64), GemmOperand::quantized(dw), {},
       {ErrorCode::kShapeMismatch}, {"K=64"}},
      {"an operand on the host with a CUDA target", GemmOperand::quantized(qx), GemmOperand::quantized(dw), {},
       {ErrorCode::kInvalidArgument}, {"cpu"}},
      {"beta != 0 without C", GemmOperand::quantized(dx), GemmOperand::quantized(dw), no_c, {ErrorCode::kNullPointer},
       {"C"}},
      {"C in f16 with a bf16 D", GemmOperand::quantized(dx), GemmOperand::quantized(dw), c_wrong_dtype,
       {ErrorCode::kDtypeMismatch}, {"f16"}},
  };
  for (const Rejected& r : cases) {
    FP4KIT_CUDA_OK(cudaMemset(d.get(), kPoison, d_bytes));
    const test::Caught caught = test::catch_error([&] {
      gemm(r.a, r.b, dv, r.options, target(no_cap_.get()));
      sync();
    });
    if (!caught.thrown) {
      ADD_FAILURE() << r.name << ": no fp4kit::Error";
      continue;
    }
    EXPECT_NE(std::find(r.codes.begin(), r.codes.end(), caught.code), r.codes.end())
        << r.name << ": code " << error_code_name(caught.code) << ": " << caught.what;
    EXPECT_TRUE(std::any_of(r.fragments.begin(), r.fragments.end(),
                            [&](const std::string& f) { return caught.what.find(f) != std::string::npos; }))
        << r.name << ": the message should name the problem: " << caught.what;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << r.name;
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << r.name;
    const std::vector<uint8_t> after = download(d.get(), d_bytes);
    EXPECT_TRUE(std::all_of(after.begin(), after.end(), [](uint8_t v) { return v == kPoison; }))
        << r.name << ": a rejected call wrote to D";
    std::cout << r.name << ": " << error_code_name(caught.code) << ": " << caught.what << "\n";
  }
}

}  // namespace
}  // namespace fp4kit
