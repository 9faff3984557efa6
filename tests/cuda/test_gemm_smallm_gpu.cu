// The small-M (decode) GEMM kernels sm80_gemm_smallm (src/cuda/gemm/sm80_gemm_smallm.cu) and
// sm90_gemm_smallm (src/cuda/gemm/sm90_gemm_smallm.cu, where it runs) against
// the CPU reference's float64 oracle (docs/NUMERICS.md §7, tests/gemm_bound.hpp).
//
// Each case quantizes its operands on the CPU and copies the bytes to the GPU (so the oracle and
// the kernel read the very same operands), then, for each output dtype:
//   - selection under a context forcing sm80_gemm_smallm picks it (M <= 64);
//   - D poisoned with 0xFF (NaN in every output dtype) before the call; normal inputs: every
//     checked element within the §7 bound; grid-valued sparse inputs: equal to the oracle;
//   - a second call into D poisoned with 0x5A gives the same bytes (every element written, and the
//     split-K reduction is deterministic);
//   - the portable backend (gemm_dequant_cublaslt) on the same operands: within the bound of the
//     oracle, and within twice the bound of this kernel (bit-equal on grid inputs).
// The launcher is also driven directly with each MMA path (mma.sync; wgmma where the sm_90a image
// runs), forced split counts and ring depths, which must all agree within the bound (bit-equal on
// grid inputs) and each give the same bytes twice.
// Large shapes (8192 x 8192 weights) check spread rows only, against an oracle of those rows.
// Label `gpu`: skipped, with the reason, where no CUDA device is present.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/cuda_test_util.hpp"
#include "cuda/gemm_test_util.hpp"
#include "cuda/gemm/launch.hpp"
#include "gemm_bound.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

using test::cuda_ok;
using test::device_alloc;
using test::DevicePtr;
using test::GpuMatrix;
using test::HostMatrix;
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

constexpr const char* kVariant = "sm80_gemm_smallm";
constexpr const char* kSm90Variant = "sm90_gemm_smallm";
constexpr const char* kPortable = "gemm_dequant_cublaslt";

enum class AForm : uint8_t { k1D, kRowScaled, kBf16 };
enum class BForm : uint8_t { k1D, k2D };

struct SmallCase {
  int64_t m = 1, n = 0, k = 0;
  AForm a = AForm::k1D;
  BForm b = BForm::k1D;
  bool grid = false;  // test::sparse_grid values: the result must equal the oracle
  float alpha = 1.0f, beta = 0.0f;
  bool c_in_d_dtype = false;
  std::optional<DType> bias;
  int64_t checked_rows = 0;  // 0: every row against the oracle; else that many spread rows
  std::vector<DType> outputs{DType::kBF16, DType::kF32};

  std::string describe() const {
    std::ostringstream os;
    os << (grid ? "grid " : "normal ") << m << "x" << n << "x" << k << " A "
       << (a == AForm::k1D ? "1d" : a == AForm::kRowScaled ? "row-scaled" : "bf16") << " B "
       << (b == BForm::k1D ? "1d" : "2d");
    if (alpha != 1.0f) os << " alpha " << alpha;
    if (beta != 0.0f) os << " beta " << beta << " C " << (c_in_d_dtype ? "in d's dtype" : "f32");
    if (bias) os << " bias " << dtype_name(*bias);
    if (checked_rows) os << ", " << checked_rows << " rows checked";
    return os.str();
  }
};

// ---------------------------------------------------------------------------------------------
// Host operands, the oracle and the bound's terms
// ---------------------------------------------------------------------------------------------

struct HostOperand {
  Nvfp4Tensor q;
  std::optional<HostMatrix> dense;
  GemmOperand op() const {
    return dense ? GemmOperand::matrix(const_cast<HostMatrix&>(*dense).view()) : GemmOperand::quantized(q);
  }
};

std::vector<float> values(int64_t rows, int64_t cols, bool grid, uint64_t seed, float scale, bool row_spread) {
  std::vector<float> v = grid ? test::sparse_grid(rows, cols, seed) : test::normals(static_cast<size_t>(rows * cols), seed, scale);
  if (row_spread) {  // rows of very different size, as a row-scaled activation has (exact on the grid)
    for (int64_t r = 0; r < rows; ++r) {
      const float f = grid ? std::ldexp(1.0f, static_cast<int>(r % 3)) : std::ldexp(1.0f, static_cast<int>(r % 7) - 3);
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] *= f;
    }
  }
  return v;
}

HostOperand make_a(const SmallCase& c, uint64_t seed) {
  const std::vector<float> v = values(c.m, c.k, c.grid, seed, 1.0f, c.a == AForm::kRowScaled);
  if (c.a == AForm::kBf16) return {Nvfp4Tensor{}, HostMatrix(c.m, c.k, v, DType::kBF16)};
  QuantParams p;
  p.row_scaled = c.a == AForm::kRowScaled;
  HostMatrix x(c.m, c.k, v);
  return {quantize(x.view(), p, Target::cpu()), std::nullopt};
}

HostOperand make_b(const SmallCase& c, uint64_t seed) {
  const std::vector<float> v = values(c.n, c.k, c.grid, seed, 0.05f, false);  // weights below the activations
  QuantParams p;
  if (c.b == BForm::k2D) p.block = BlockScaling::k2D;
  HostMatrix w(c.n, c.k, v);
  return {quantize(w.view(), p, Target::cpu()), std::nullopt};
}

// A weight and its block values, made once per shape and form for the large cases (the host side
// of an 8192 x 8192 weight costs seconds).
struct HostWeight {
  HostOperand b;
  test::GemmValues values;
};
const HostWeight& cached_weight(const SmallCase& c) {
  static std::map<std::tuple<int64_t, int64_t, int, bool>, std::unique_ptr<HostWeight>> cache;
  auto& w = cache[{c.n, c.k, static_cast<int>(c.b), c.grid}];
  if (!w) {
    w = std::make_unique<HostWeight>();
    w->b = make_b(c, 77 + static_cast<uint64_t>(c.n + c.k));
    w->values = test::gemm_values(w->b.op());
  }
  return *w;
}

// Rows `rows` of a rowwise host operand as an operand of their own (its global scale(s) kept).
HostOperand gather_rows(const HostOperand& x, const std::vector<int64_t>& rows) {
  const int64_t s = static_cast<int64_t>(rows.size());
  if (x.dense) {
    HostMatrix out(s, x.dense->cols, x.dense->dtype);
    const size_t row_bytes = static_cast<size_t>(x.dense->cols) * dtype_size(x.dense->dtype);
    for (int64_t i = 0; i < s; ++i) {
      std::memcpy(out.bytes.data() + static_cast<size_t>(i) * row_bytes,
                  x.dense->bytes.data() + static_cast<size_t>(rows[static_cast<size_t>(i)]) * row_bytes, row_bytes);
    }
    return {Nvfp4Tensor{}, out};
  }
  const Nvfp4Meta& meta = x.q.meta();
  const Nvfp4Part& src = x.q.rowwise();
  Nvfp4Tensor out = Nvfp4Tensor::allocate(s, meta.cols, meta.source_dtype, meta.params);
  const Nvfp4Part& dst = out.rowwise();
  for (int64_t i = 0; i < s; ++i) {
    const int64_t r = rows[static_cast<size_t>(i)];
    std::memcpy(dst.data.ptr<uint8_t>() + i * dst.data.strides[0], src.data.ptr<uint8_t>() + r * src.data.strides[0],
                static_cast<size_t>(src.geometry.data_bytes_per_row()));
    std::memcpy(dst.scales.ptr<uint8_t>() + i * dst.scales.strides[0], src.scales.ptr<uint8_t>() + r * src.scales.strides[0],
                static_cast<size_t>(src.geometry.blocks_per_row()));
    if (meta.params.row_scaled) dst.amax.ptr<float>()[i] = src.amax.ptr<float>()[r];
  }
  if (!meta.params.row_scaled) dst.amax.ptr<float>()[0] = src.amax.ptr<float>()[0];
  return {std::move(out), std::nullopt};
}

// Rows to check: all, or about `count` spread over [0, m) (first, last and an odd stride between).
std::vector<int64_t> checked_rows(int64_t m, int64_t count) {
  std::vector<int64_t> rows;
  if (count <= 0 || count >= m) {
    for (int64_t r = 0; r < m; ++r) rows.push_back(r);
    return rows;
  }
  const int64_t stride = std::max<int64_t>(1, (m - 1) / (count - 1)) | 1;
  for (int64_t r = 0; r < m && static_cast<int64_t>(rows.size()) < count - 1; r += stride) rows.push_back(r);
  if (rows.back() != m - 1) rows.push_back(m - 1);
  return rows;
}

// C and bias on grids every dtype holds exactly, so one oracle serves C in F32 or D's dtype.
float c_value(int64_t m, int64_t n) { return static_cast<float>((m * 7 + n * 3) % 256 - 128) / 64.0f; }
float bias_value(int64_t n) { return static_cast<float>((n * 5) % 64 - 32) / 8.0f; }

struct HostSide {
  HostOperand a, b;
  std::vector<int64_t> rows;
  std::vector<float> c;     // [M, N] when beta != 0
  std::vector<float> bias;  // [N]
  HostMatrix oracle{0, 0};  // [rows, N] F32
  std::vector<double> abs_sums, epilogue_abs;
  double seconds = 0;
};

HostSide prepare(const SmallCase& c, uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  HostSide h;
  h.a = make_a(c, seed);
  const bool large = c.n * c.k >= (int64_t{1} << 24);
  if (large) {
    h.b = cached_weight(c).b;
  } else {
    h.b = make_b(c, seed + 1);
  }
  h.rows = checked_rows(c.m, c.checked_rows);
  const int64_t s = static_cast<int64_t>(h.rows.size());
  const HostOperand a_rows = s == c.m ? HostOperand{h.a.q, h.a.dense} : gather_rows(h.a, h.rows);
  GemmOptions o;
  o.alpha = c.alpha;
  o.beta = c.beta;
  o.accumulation = Accumulation::kF64;
  HostMatrix c_rows(s, c.n);
  if (c.beta != 0.0f) {
    for (int64_t m = 0; m < c.m; ++m)
      for (int64_t n = 0; n < c.n; ++n) h.c.push_back(c_value(m, n));
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
  h.abs_sums = test::gemm_abs_sums(test::gemm_values(a_rows.op()),
                                   large ? cached_weight(c).values : test::gemm_values(h.b.op()), c.alpha);
  if (c.beta != 0.0f || c.bias) {
    for (int64_t i = 0; i < s; ++i) {
      for (int64_t n = 0; n < c.n; ++n) {
        const double cv = c.beta != 0.0f ? std::fabs(double(c.beta) * c_rows.get(i, n)) : 0.0;
        h.epilogue_abs.push_back(cv + (c.bias ? std::fabs(double(bias_value(n))) : 0.0));
      }
    }
  }
  h.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return h;
}

// ---------------------------------------------------------------------------------------------
// Device operands and comparisons
// ---------------------------------------------------------------------------------------------


struct DeviceOperand {
  Nvfp4Tensor q;
  std::optional<GpuMatrix> dense;
  GemmOperand op() const { return dense ? GemmOperand::matrix(dense->view) : GemmOperand::quantized(q); }
  // The launcher's view of the operand (rowwise part, or dense BF16).
  cuda::GemmOperandPointers pointers() const {
    cuda::GemmOperandPointers p;
    if (dense) {
      p.dense = dense->view.data;
      p.dense_stride = dense->view.strides[0];
      return p;
    }
    const Nvfp4Part& part = q.rowwise();
    p.data = static_cast<const uint8_t*>(part.data.data);
    p.scales = static_cast<const uint8_t*>(part.scales.data);
    p.amax = static_cast<const float*>(part.amax.data);
    p.row_scaled = q.meta().params.row_scaled;
    p.data_stride = part.data.strides[0];
    p.scale_stride = part.scales.strides[0];
    return p;
  }
};

DeviceOperand to_device(const HostOperand& h) {
  DeviceOperand d;
  if (h.dense) {
    d.dense = upload(*h.dense);
    return d;
  }
  const Nvfp4Meta& meta = h.q.meta();
  d.q = Nvfp4Tensor::allocate(meta.rows, meta.cols, meta.source_dtype, meta.params, kGpu);
  copy_to_device(d.q.rowwise().data, h.q.rowwise().data);
  copy_to_device(d.q.rowwise().scales, h.q.rowwise().scales);
  copy_to_device(d.q.rowwise().amax, h.q.rowwise().amax);
  return d;
}





int64_t nonfinite_count(const std::vector<uint8_t>& d, DType dt) {
  int64_t count = 0;
  for (size_t i = 0; i < d.size() / dtype_size(dt); ++i) count += std::isfinite(element(d, dt, i)) ? 0 : 1;
  return count;
}


Problem gemm_problem(const SmallCase& c, DType out) {
  Problem p;
  p.op = OpKind::kGemm;
  p.rows = c.m;
  p.cols = c.n;
  p.k = c.k;
  p.in_dtype = c.a == AForm::kBf16 ? DType::kBF16 : DType::kU8;
  p.out_dtype = out;
  p.a_nvfp4 = c.a != AForm::kBf16;
  p.a_row_scaled = c.a == AForm::kRowScaled;
  p.b_2d = c.b == BForm::k2D;
  return p;
}

// Whether the sm_90a small-M kernel runs on the context's GPU in this build.
bool sm90_serves(Context& ctx) {
  const DeviceInfo& d = ctx.device(kGpu);
  const KernelVariant* v = ctx.registry().find(kSm90Variant);
  return v != nullptr && d.compute_capability() == 90 && !v->compiled_archs.empty();
}

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

class GpuGemmSmallM : public test::GpuFixture {
 protected:
  void SetUp() override {
    GpuFixture::SetUp();
    if (IsSkipped()) return;
    DispatchSettings mine, portable;
    mine.force_kernel = variant_;
    portable.force_kernel = kPortable;
    mine_ = std::make_unique<Context>(mine, Registry::builtin());
    portable_ = std::make_unique<Context>(portable, Registry::builtin());
    default_ = std::make_unique<Context>(DispatchSettings{}, Registry::builtin());
  }

  Target target(Context* ctx) const { return Target::cuda(0, stream_.get(), ctx); }

  // D [M, N] in `out` after one fp4kit::gemm call under `ctx` into memory poisoned with `poison`.
  std::vector<uint8_t> run(const DeviceOperand& a, const DeviceOperand& b, DType out, int64_t m, int64_t n,
                           const GemmOptions& options, Context* ctx, uint8_t poison) {
    const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out);
    DevicePtr d = device_alloc(bytes);
    FP4KIT_CUDA_OK(cudaMemsetAsync(d.get(), poison, bytes, stream_.get()));
    gemm(a.op(), b.op(), TensorView::matrix(d.get(), out, m, n, kGpu), options, target(ctx));
    sync();
    return download(d.get(), bytes);
  }

  // D after one direct launcher call with `tuning` (the plan it chose in *plan).
  std::vector<uint8_t> run_launcher(const DeviceOperand& a, const DeviceOperand& b, DType out, int64_t m, int64_t n,
                                    int64_t k, const cuda::GemmEpilogue& e, const cuda::SmallMTuning& tuning,
                                    uint8_t poison) {
    const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out);
    DevicePtr d = device_alloc(bytes);
    FP4KIT_CUDA_OK(cudaMemsetAsync(d.get(), poison, bytes, stream_.get()));
    const KernelConfig config{"m64_k128_s6", 64, 256, 128, 6, 512};
    cuda::launch_sm80_gemm_smallm(m, n, k, a.pointers(), b.pointers(), d.get(), out, n, e, config, 0, stream_.get(),
                                  tuning);
    sync();
    return download(d.get(), bytes);
  }

  test::GemmBoundCheck bound_check(const SmallCase& c, const HostSide& h, DType out, const std::vector<float>& got,
                                   const std::vector<float>& want) const {
    test::GemmBoundCheck check;
    check.rows = static_cast<int64_t>(h.rows.size());
    check.cols = c.n;
    check.k = c.k;
    check.out = out;
    check.got = got.data();
    check.oracle = want.data();
    check.abs_sums = h.abs_sums.data();
    check.epilogue_abs = h.epilogue_abs.empty() ? nullptr : h.epilogue_abs.data();
    check.row_ids = h.rows.data();
    return check;
  }

  // D (bytes in `out`) against the oracle: the bound, equality on grid inputs, and every element
  // finite outside the checked rows.
  bool expect_oracle(const SmallCase& c, const HostSide& h, DType out, const std::vector<uint8_t>& d,
                     const std::string& where) {
    bool ok = true;
    const std::vector<float> got = checked_values(d, out, c.n, h.rows), want = oracle_in(h.oracle, out);
    if (c.grid) {
      const testing::AssertionResult r = bit_equal(got, want, c.n, h.rows, "oracle");
      EXPECT_TRUE(r) << c.describe() << ", " << where << ": grid-valued inputs must give the oracle exactly";
      ok = ok && r;
    }
    const testing::AssertionResult r = test::within_gemm_bound(bound_check(c, h, out, got, want));
    EXPECT_TRUE(r) << c.describe() << ", " << where;
    ok = ok && r;
    if (static_cast<int64_t>(h.rows.size()) < c.m) {
      const int64_t bad = nonfinite_count(d, out);
      EXPECT_EQ(bad, 0) << c.describe() << ", " << where << ": NaN or infinite elements (unwritten?) in D";
      ok = ok && bad == 0;
    }
    return ok;
  }

  // Two results of this kernel or another backend: equal bytes on grid inputs, else within twice
  // the bound (each is within the bound of the oracle).
  bool expect_agree(const SmallCase& c, const HostSide& h, DType out, const std::vector<uint8_t>& x,
                    const std::vector<uint8_t>& y, const std::string& where) {
    const std::vector<float> gx = checked_values(x, out, c.n, h.rows), gy = checked_values(y, out, c.n, h.rows);
    if (c.grid) {
      const testing::AssertionResult r = bit_equal(gx, gy, c.n, h.rows, where.c_str());
      EXPECT_TRUE(r) << c.describe() << ": " << where;
      return r;
    }
    std::vector<double> twice_sums(h.abs_sums), twice_epilogue(h.epilogue_abs);
    for (double& v : twice_sums) v *= 2;
    for (double& v : twice_epilogue) v *= 2;
    test::GemmBoundCheck check = bound_check(c, h, out, gx, gy);
    check.abs_sums = twice_sums.data();
    check.epilogue_abs = twice_epilogue.empty() ? nullptr : twice_epilogue.data();
    const testing::AssertionResult r = test::within_gemm_bound(check);
    EXPECT_TRUE(r) << c.describe() << ": this kernel against " << where << " (twice the bound)";
    return r;
  }

  GemmOptions options_of(const SmallCase& c, DType out, const HostSide& h, std::optional<GpuMatrix>& cmat,
                         std::optional<GpuMatrix>& bias) {
    GemmOptions o;
    o.alpha = c.alpha;
    o.beta = c.beta;
    if (c.beta != 0.0f) {
      cmat = upload(HostMatrix(c.m, c.n, h.c, c.c_in_d_dtype ? out : DType::kF32));
      o.c = cmat->view;
    }
    if (c.bias) {
      bias = upload(HostMatrix(1, c.n, h.bias, *c.bias));
      o.bias = TensorView::vector(bias->mem.get(), *c.bias, c.n, kGpu);
    }
    return o;
  }

  bool check_case(const SmallCase& c, const HostSide& h) {
    const DeviceOperand a = to_device(h.a), b = to_device(h.b);
    bool ok = true;
    for (const DType out : c.outputs) {
      const std::string where = std::string("d ") + dtype_name(out);
      const Problem problem = gemm_problem(c, out);
      const Selection s = mine_->select(problem, mine_->device(kGpu));
      EXPECT_TRUE(s.ok() && s.variant->name == variant_) << problem.describe() << ": " << explain(s, problem, mine_->device(kGpu));
      std::optional<GpuMatrix> cmat, bias;
      const GemmOptions o = options_of(c, out, h, cmat, bias);

      const std::vector<uint8_t> first = run(a, b, out, c.m, c.n, o, mine_.get(), kPoison);
      ok = expect_oracle(c, h, out, first, where + " (" + variant_ + ")") && ok;
      const std::vector<uint8_t> again = run(a, b, out, c.m, c.n, o, mine_.get(), kPoisonAgain);
      EXPECT_TRUE(again == first) << c.describe() << ", " << where << ": a second call (D poisoned with 0x5A) gave other bytes";
      ok = ok && again == first;
      const std::vector<uint8_t> portable = run(a, b, out, c.m, c.n, o, portable_.get(), kPoison);
      ok = expect_oracle(c, h, out, portable, where + " (" + kPortable + ")") && ok;
      ok = expect_agree(c, h, out, first, portable, where + " " + kPortable) && ok;
    }
    return ok;
  }

  void run_cases(const std::vector<SmallCase>& cases, const char* what) {
    double host_seconds = 0;
    test::run_guarded_cases(cases, what, 500, 8, [&](const SmallCase& c, uint64_t seed) {
      const HostSide h = prepare(c, seed);
      host_seconds += h.seconds;
      return check_case(c, h);
    });
    std::cout << what << ": " << cases.size() << " cases, host side " << std::fixed << std::setprecision(2)
              << host_seconds << " s\n" << std::defaultfloat;
  }

  // A launcher test's case on the device: the operands and the epilogue (alpha, an F32 bias).
  struct LauncherCase {
    DeviceOperand a, b;
    GpuMatrix bias;
    cuda::GemmEpilogue e;
  };
  LauncherCase launcher_case(const SmallCase& c, const HostSide& h) {
    LauncherCase l{to_device(h.a), to_device(h.b), upload(HostMatrix(1, c.n, h.bias, DType::kF32)), {}};
    l.e.alpha = c.alpha;
    l.e.bias = l.bias.mem.get();
    l.e.bias_dtype = DType::kF32;
    return l;
  }

  // One launcher result: the bound (equality on grid inputs), the same bytes from a second call,
  // and agreement with the reference plan's result (which it becomes when there is none yet).
  void expect_plan_result(const SmallCase& c, const HostSide& h, DType out, const std::vector<uint8_t>& d,
                          const std::vector<uint8_t>& again, const std::string& where,
                          std::optional<std::vector<uint8_t>>& reference, const char* reference_name) {
    expect_oracle(c, h, out, d, where);
    EXPECT_TRUE(again == d) << c.describe() << ", " << where << ": a second call gave other bytes";
    if (reference) {
      expect_agree(c, h, out, d, *reference, reference_name);
    } else {
      reference = d;
    }
  }

  // NUMERICS §9: a block holding a NaN has scale byte 0x7F; §7: exactly the outputs that read it
  // are NaN (0 * NaN is NaN), every other output is the oracle's; for each M, with the forced kernel.
  // A's NaN rows are 3 and 5 (M = 1: a NaN block in row 0, every output NaN but for the B row's).
  void expect_nan_blocks_exact(std::initializer_list<int64_t> ms) {
    for (const int64_t M : ms) {
      const int64_t N = 272, K = 1024;
      const int64_t row_a = M > 5 ? 3 : 0, row_b = M > 5 ? 5 : -1;
      std::vector<float> av = test::sparse_grid(M, K, 41), bv = test::sparse_grid(N, K, 42);
      av[static_cast<size_t>(row_a * K + 20)] = std::nanf("");                 // A row 3 (or 0), block 1
      if (row_b >= 0) av[static_cast<size_t>(row_b * K + 1000)] = INFINITY;  // A row 5, block 62
      bv[static_cast<size_t>(200 * K + 300)] = -std::nanf("");                 // B row 200, block 18
      HostMatrix a(M, K, av), b(N, K, bv);
      const Nvfp4Tensor qa = quantize(a.view(), QuantParams{}, Target::cpu());
      const Nvfp4Tensor qb = quantize(b.view(), QuantParams{}, Target::cpu());
      ASSERT_EQ(test::scale(qa.rowwise(), row_a, 1), kE4m3Nan);
      if (row_b >= 0) ASSERT_EQ(test::scale(qa.rowwise(), row_b, 62), kE4m3Nan);
      ASSERT_EQ(test::scale(qb.rowwise(), 200, 18), kE4m3Nan);
      HostMatrix oracle(M, N);
      GemmOptions o64;
      o64.accumulation = Accumulation::kF64;
      gemm(GemmOperand::quantized(qa), GemmOperand::quantized(qb), oracle.view(), o64, Target::cpu());
      const DeviceOperand da = to_device(HostOperand{qa, std::nullopt}), db = to_device(HostOperand{qb, std::nullopt});
      const std::vector<uint8_t> d = run(da, db, DType::kF32, M, N, GemmOptions{}, mine_.get(), kPoison);
      int64_t wrong = 0;
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
          const bool want_nan = m == row_a || m == row_b || n == 200;
          ASSERT_EQ(std::isnan(oracle.get(m, n)), want_nan) << "the oracle itself at " << m << "," << n;
          const float got = element(d, DType::kF32, static_cast<size_t>(m * N + n));
          const bool ok = want_nan ? std::isnan(got) : float_bits(got) == float_bits(oracle.get(m, n));
          if (!ok && wrong++ < 6) {
            ADD_FAILURE() << "M=" << M << " (" << m << ", " << n << "): got " << got << ", oracle " << oracle.get(m, n);
          }
        }
      }
      EXPECT_EQ(wrong, 0) << "M=" << M;
    }
  }

  std::string variant_ = kVariant;  // the kernel the suite forces
  std::unique_ptr<Context> mine_, portable_, default_;
};

// ---------------------------------------------------------------------------------------------
// Case lists
// ---------------------------------------------------------------------------------------------

constexpr int64_t kMs[] = {1, 7, 16, 33, 64};

// Multiples of 16 that are not of 128: (1040, 784) has 8-byte code rows (392 B) and odd scale rows
// (49 B), and K past the last whole 256-element stage; (528, 1024) has 16-byte code rows.
std::vector<SmallCase> shape_cases(bool grid) {
  std::vector<SmallCase> cases;
  for (const int64_t m : kMs) {
    SmallCase plain;
    plain.m = m;
    plain.n = 1040;
    plain.k = 784;
    plain.grid = grid;
    cases.push_back(plain);

    SmallCase layer = plain;  // a layer's fprop with a residual: row-scaled A, 2D weights, everything on
    layer.n = 528;
    layer.k = 1024;
    layer.a = AForm::kRowScaled;
    layer.b = BForm::k2D;
    layer.alpha = 0.5f;
    layer.beta = 2.0f;
    layer.bias = DType::kBF16;
    cases.push_back(layer);

    SmallCase w4a16 = plain;  // weight-only: BF16 activations
    w4a16.a = AForm::kBf16;
    w4a16.beta = 0.5f;
    w4a16.c_in_d_dtype = true;
    w4a16.bias = DType::kF32;
    cases.push_back(w4a16);
  }
  SmallCase w4a16_2d;
  w4a16_2d.m = 64;
  w4a16_2d.n = 528;
  w4a16_2d.k = 1024;
  w4a16_2d.a = AForm::kBf16;
  w4a16_2d.b = BForm::k2D;
  w4a16_2d.grid = grid;
  cases.push_back(w4a16_2d);
  return cases;
}

// The decode shape: 8192 x 8192 weights; M = 64 checks 8 spread rows.
std::vector<SmallCase> large_cases() {
  std::vector<SmallCase> cases;
  SmallCase one;
  one.m = 1;
  one.n = one.k = 8192;
  one.b = BForm::k2D;
  one.bias = DType::kBF16;
  cases.push_back(one);
  SmallCase w4a16 = one;
  w4a16.a = AForm::kBf16;
  w4a16.outputs = {DType::kBF16};
  cases.push_back(w4a16);
  SmallCase sixty_four = one;
  sixty_four.m = 64;
  sixty_four.checked_rows = 8;
  cases.push_back(sixty_four);
  SmallCase sixty_four_w4a16 = sixty_four;
  sixty_four_w4a16.a = AForm::kBf16;
  sixty_four_w4a16.outputs = {DType::kBF16};
  cases.push_back(sixty_four_w4a16);
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

TEST_F(GpuGemmSmallM, ShapesAndFeaturesWithinTheBoundOfTheF64Oracle) {
  run_cases(shape_cases(false), "small-M shapes, normal inputs");
}

TEST_F(GpuGemmSmallM, ExactOnGridValuedSparseInputs) { run_cases(shape_cases(true), "small-M shapes, grid inputs"); }

TEST_F(GpuGemmSmallM, DecodeShape8192x8192WithinTheBound) { run_cases(large_cases(), "8192 x 8192 weights"); }

// Every MMA path and split count of the launcher computes the same function: within the bound of
// the oracle, equal bytes on grid inputs, and each deterministic.
TEST_F(GpuGemmSmallM, EveryPathAndSplitCountAgrees) {
  using Mma = cuda::SmallMTuning::Mma;
  int cc_major = 0, cc_minor = 0;
  FP4KIT_CUDA_OK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, 0));
  FP4KIT_CUDA_OK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, 0));
  std::vector<SmallCase> cases;
  for (const bool grid : {false, true}) {
    for (const int64_t m : {int64_t{5}, int64_t{16}, int64_t{33}, int64_t{64}}) {
      SmallCase c;
      c.m = m;
      c.n = 528;
      c.k = 1024 + 784;  // 904-byte code rows (8-byte copies), 113-byte scale rows, a partial last stage
      c.grid = grid;
      c.a = m % 2 ? AForm::kBf16 : AForm::k1D;
      c.alpha = 2.0f;
      c.bias = DType::kF32;
      c.outputs = {DType::kF32};
      cases.push_back(c);
      c.k = 2304;  // 16-byte code and scale rows, K % 256 == 0 (the run kernel), a short last stage
      cases.push_back(c);
    }
  }
  uint64_t seed = 900;
  for (const SmallCase& c : cases) {
    guarded(c.describe(), [&] {
      const HostSide h = prepare(c, seed += 10);
      const LauncherCase l = launcher_case(c, h);
      const DType out = DType::kF32;
      std::optional<std::vector<uint8_t>> reference;
      // Both MMA paths with automatic and forced split counts, ring depths from 2 up, each kernel forced.
      std::vector<cuda::SmallMTuning> tunings;
      for (const Mma mma : {Mma::kMmaSync, Mma::kWgmma}) {
        for (const int splits : {0, 1, 3, 8}) {
          cuda::SmallMTuning t;
          t.mma = mma;
          t.splits = splits;
          tunings.push_back(t);
        }
      }
      for (const int stages : {2, 3, c.m <= 8 ? 8 : 5}) {
        cuda::SmallMTuning t;
        t.stages = stages;
        t.mma = stages == 3 ? Mma::kMmaSync : Mma::kAuto;
        tunings.push_back(t);
      }
      // Each kernel forced (automatic and three splits).
      for (const auto path : {cuda::SmallMTuning::Path::kChunk, cuda::SmallMTuning::Path::kRun}) {
        for (const int splits : {0, 3}) {
          cuda::SmallMTuning t;
          t.path = path;
          t.splits = splits;
          tunings.push_back(t);
        }
      }
      for (cuda::SmallMTuning tuning : tunings) {
        const Mma mma = tuning.mma;
        const int splits = tuning.splits;
        cuda::SmallMPlan plan;
        tuning.plan = &plan;
        const std::vector<uint8_t> d = run_launcher(l.a, l.b, out, c.m, c.n, c.k, l.e, tuning, kPoison);
        std::ostringstream where;
        where << (plan.run ? "run kernel" : "chunk kernel") << (plan.prepared ? " (prepared A)" : "")
              << (plan.fused_epilogue ? " writing D" : "") << ", " << (plan.wgmma ? "wgmma" : "mma.sync") << ", "
              << plan.rows << " rows x " << plan.k_stage << " K per stage, " << plan.splits << " splits of "
              << plan.k_slice << ", " << plan.stages << " stages, " << plan.load_bytes << "-byte copies, " << plan.m_tiles
              << " activation tiles";
        if (splits > 0) EXPECT_LE(plan.splits, splits) << where.str();
        if (tuning.stages > 0) EXPECT_EQ(plan.stages, tuning.stages) << where.str();
        const bool wants_wgmma = mma == Mma::kWgmma || (mma == Mma::kAuto && cc_major == 9 && cc_minor == 0);
        // The run kernel: 16-byte rows and K % 256 == 0; by default M <= 8, forced M <= 16 or
        // wgmma (and a forced ring depth that fits, else the chunk kernel takes it).
        using Path = cuda::SmallMTuning::Path;
        if (tuning.path == Path::kChunk || c.k % 256 != 0 || (tuning.path == Path::kAuto && c.m > 8)) {
          EXPECT_FALSE(plan.run) << where.str();
        }
        const bool run_serves = tuning.path == Path::kAuto ? c.m <= 8 : c.m <= 16 || wants_wgmma;
        if (tuning.path != Path::kChunk && c.k % 256 == 0 && tuning.stages == 0 && run_serves) {
          EXPECT_TRUE(plan.run) << where.str();
        }
        EXPECT_EQ(plan.fused_epilogue, plan.run && plan.splits == 1) << where.str();
        EXPECT_EQ(plan.prepared, plan.run && plan.m_tiles >= 4) << where.str();
        // wgmma runs where the sm_90a image does, for 4 or 8 activation tiles: in the run kernel
        // always, in the chunk kernel with a ring of 3 or more.
        const bool wgmma_expected = wants_wgmma && plan.m_tiles >= 4 && (plan.run || tuning.stages != 2);
        EXPECT_EQ(plan.wgmma, wgmma_expected) << where.str();
        if (splits == 0 && tuning.stages == 0 && cc_major == 9 && cc_minor == 0) {
          std::cout << c.describe() << ": " << where.str() << "\n";
        }
        expect_plan_result(c, h, out, d, run_launcher(l.a, l.b, out, c.m, c.n, c.k, l.e, tuning, kPoisonAgain), where.str(),
                           reference, "the first plan (mma.sync, automatic splits)");
      }
      return true;
    });
  }
}

// NUMERICS §9 and §7 (expect_nan_blocks_exact): the run kernel with one activation row (M = 1: its
// lanes share the row's decode) and with several (M = 7), and the wgmma path (M = 48).
TEST_F(GpuGemmSmallM, NanScaleBlocksMakeExactlyTheirOutputsNan) { expect_nan_blocks_exact({1, 7, 48}); }

// M = 65 is not decode: selection passes the kernel over, naming why, and forcing it is an error
// that names the same reason.
TEST_F(GpuGemmSmallM, SelectionRejectsMAbove64NamingTheReason) {
  SmallCase c;
  c.m = 65;
  c.n = 528;
  c.k = 1024;
  const Problem p = gemm_problem(c, DType::kBF16);
  const DeviceInfo& device = default_->device(kGpu);
  const Selection s = default_->select(p, device);
  ASSERT_TRUE(s.ok()) << explain(s, p, device);
  EXPECT_NE(s.variant->name, kVariant) << explain(s, p, device);
  bool named = false;
  for (const Rejection& r : s.rejected) {
    if (r.variant != kVariant) continue;
    named = true;
    EXPECT_NE(r.reason.find("serves M <= 64 (decode)"), std::string::npos) << r.reason;
    EXPECT_NE(r.reason.find("M is 65"), std::string::npos) << r.reason;
  }
  EXPECT_TRUE(named) << kVariant << " is not among the rejected: " << explain(s, p, device);
  const test::Caught caught = test::catch_error([&] { mine_->select(p, device); });
  EXPECT_TRUE(caught.thrown && caught.code == ErrorCode::kUnsupported) << caught.what;
  EXPECT_NE(caught.what.find("M <= 64"), std::string::npos) << caught.what;
  // And M = 64 selects it without forcing, or on Hopper with the sm_90a image its sm_90a sibling
  // (K % 256 == 0 here); with K % 256 != 0 this kernel everywhere.
  c.m = 64;
  const Problem p64 = gemm_problem(c, DType::kBF16);
  const Selection s64 = default_->select(p64, device);
  ASSERT_TRUE(s64.ok()) << explain(s64, p64, device);
  EXPECT_EQ(s64.variant->name, sm90_serves(*default_) ? kSm90Variant : kVariant) << explain(s64, p64, device);
  c.k = 1040;
  const Problem p_odd = gemm_problem(c, DType::kBF16);
  const Selection s_odd = default_->select(p_odd, device);
  ASSERT_TRUE(s_odd.ok()) << explain(s_odd, p_odd, device);
  EXPECT_EQ(s_odd.variant->name, kVariant) << explain(s_odd, p_odd, device);
}

// ---------------------------------------------------------------------------------------------
// The sm_90a small-M kernel (src/cuda/gemm/sm90_gemm_smallm.cu): the same checks, forced, where
// it runs (compute capability 9.0 with the sm_90a image), on K % 256 == 0; and its launcher
// driven with every split count, tile and ring depth.
// ---------------------------------------------------------------------------------------------

class GpuGemmSm90SmallM : public GpuGemmSmallM {
 protected:
  void SetUp() override {
    variant_ = kSm90Variant;
    GpuGemmSmallM::SetUp();
    if (IsSkipped()) return;
    if (!sm90_serves(*default_)) GTEST_SKIP() << kSm90Variant << " needs compute capability 9.0 and the sm_90a image";
  }

  std::vector<uint8_t> run_sm90(const DeviceOperand& a, const DeviceOperand& b, DType out, int64_t m, int64_t n, int64_t k,
                                const cuda::GemmEpilogue& e, const cuda::Sm90SmallMTuning& tuning, uint8_t poison) {
    const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out);
    DevicePtr d = device_alloc(bytes);
    FP4KIT_CUDA_OK(cudaMemsetAsync(d.get(), poison, bytes, stream_.get()));
    const KernelConfig config{"r256_s3", 64, cuda::kSm90SmallMRows, cuda::kSm90SmallMStageK, 3, cuda::kSm90SmallMThreads};
    cuda::launch_sm90_gemm_smallm(m, n, k, a.pointers(), b.pointers(), d.get(), out, n, e, config, 0, stream_.get(), tuning);
    sync();
    return download(d.get(), bytes);
  }
};

// Every activation-tile width it serves through selection (M = 9, 16 | 17, 32 | 33, 64: M <= 8 goes
// to sm80_gemm_smallm, and EverySplitCountAndRingDepthAgrees drives M = 3 through the launcher), N
// with a partial row block and not, every operand form and epilogue option.
std::vector<SmallCase> sm90_cases(bool grid) {
  std::vector<SmallCase> cases;
  for (const int64_t m : {9, 12, 16, 17, 32, 33, 40, 64}) {
    SmallCase c;
    c.m = m;
    c.n = m % 2 ? 1040 : 512;
    c.k = 1024;
    c.grid = grid;
    if (m % 2 == 1) {  // a layer's fprop with a residual
      c.a = AForm::kRowScaled;
      c.b = BForm::k2D;
      c.alpha = 0.5f;
      c.beta = 2.0f;
      c.bias = DType::kBF16;
    }
    if (m == 12 || m == 33) {  // weight-only: BF16 activations
      c.a = AForm::kBf16;
      c.beta = 0.5f;
      c.c_in_d_dtype = true;
      c.bias = DType::kF32;
    }
    cases.push_back(c);
  }
  return cases;
}

TEST_F(GpuGemmSm90SmallM, ShapesAndFeaturesWithinTheBoundOfTheF64Oracle) {
  run_cases(sm90_cases(false), "sm_90a small-M shapes, normal inputs");
}

TEST_F(GpuGemmSm90SmallM, ExactOnGridValuedSparseInputs) { run_cases(sm90_cases(true), "sm_90a small-M shapes, grid inputs"); }

TEST_F(GpuGemmSm90SmallM, DecodeShape8192x8192WithinTheBound) {
  std::vector<SmallCase> cases;
  for (const SmallCase& c : large_cases()) {
    if (c.m > 8) cases.push_back(c);
  }
  run_cases(cases, "sm_90a, 8192 x 8192 weights");
}

// Every split count, tile and ring depth computes the same function: within the bound, equal bytes
// on grid inputs, each deterministic (the splits' sums are added in split order).
TEST_F(GpuGemmSm90SmallM, EverySplitCountAndRingDepthAgrees) {
  std::vector<SmallCase> cases;
  for (const bool grid : {false, true}) {
    for (const int64_t m : {int64_t{3}, int64_t{16}, int64_t{40}, int64_t{64}}) {
      SmallCase c;
      c.m = m;
      c.n = 784;  // three full 256-row blocks and a partial one
      c.k = m == 64 ? 2304 : 2048;  // 9 stages: uneven splits (5 + 4, 3 + 3 + 3), and 8 stages
      c.grid = grid;
      c.a = m == 40 ? AForm::kBf16 : m == 16 ? AForm::kRowScaled : AForm::k1D;
      c.alpha = 2.0f;
      c.bias = DType::kF32;
      c.outputs = {DType::kF32};
      cases.push_back(c);
    }
  }
  uint64_t seed = 1300;
  for (const SmallCase& c : cases) {
    guarded(c.describe(), [&] {
      const HostSide h = prepare(c, seed += 10);
      const LauncherCase l = launcher_case(c, h);
      const DType out = DType::kF32;
      std::optional<std::vector<uint8_t>> reference;
      std::vector<cuda::Sm90SmallMTuning> tunings;
      for (const int splits : {0, 1, 2, 3, 4, 8}) {
        cuda::Sm90SmallMTuning t;
        t.splits = splits;
        tunings.push_back(t);
      }
      for (const int stages : {2, 3, 8}) {
        cuda::Sm90SmallMTuning t;
        t.stages = stages;
        t.splits = 2;
        tunings.push_back(t);
      }
      for (const int rows : {128, 256}) {  // one and two 64-row tiles per warpgroup
        for (const int splits : {1, 4}) {
          cuda::Sm90SmallMTuning t;
          t.rows = rows;
          t.splits = splits;
          tunings.push_back(t);
        }
      }
      for (cuda::Sm90SmallMTuning tuning : tunings) {
        cuda::Sm90SmallMPlan plan;
        tuning.plan = &plan;
        const std::vector<uint8_t> d = run_sm90(l.a, l.b, out, c.m, c.n, c.k, l.e, tuning, kPoison);
        std::ostringstream where;
        where << plan.rows << " rows x " << plan.m_pad << " activation columns, " << plan.splits << " splits of "
              << plan.stages_per_split << " stages, ring of " << plan.stages << ", " << plan.ctas << " CTAs ("
              << plan.resident_ctas << " resident)";
        if (tuning.rows > 0) EXPECT_EQ(plan.rows, tuning.rows) << where.str();
        EXPECT_TRUE(plan.rows == 128 || plan.rows == 256) << where.str();
        EXPECT_GT(plan.resident_ctas, 0) << where.str();
        EXPECT_LE(plan.smem_bytes, cuda::sm90_smallm_smem_bytes(cuda::kSm90SmallMRows, 64, 3)) << where.str();
        // A forced count where whole stages split that way, else the largest smaller one that does.
        const int64_t total = c.k / cuda::kSm90SmallMStageK;
        const auto feasible = [&](int s) { return (total + (total + s - 1) / s - 1) / ((total + s - 1) / s) == s; };
        if (tuning.splits > 0) {
          int want = tuning.splits;
          while (!feasible(want)) --want;
          EXPECT_EQ(plan.splits, want) << where.str();
        }
        if (tuning.stages > 0) EXPECT_LE(plan.stages, tuning.stages) << where.str();
        EXPECT_GE(plan.stages, 2) << where.str();
        EXPECT_EQ(plan.m_pad, c.m <= 8 ? 8 : c.m <= 16 ? 16 : c.m <= 32 ? 32 : 64) << where.str();
        EXPECT_GE(int64_t{plan.splits} * plan.stages_per_split * cuda::kSm90SmallMStageK, c.k) << where.str();
        EXPECT_LT(int64_t{plan.splits - 1} * plan.stages_per_split * cuda::kSm90SmallMStageK, c.k)
            << where.str() << ": every split has a stage";
        expect_plan_result(c, h, out, d, run_sm90(l.a, l.b, out, c.m, c.n, c.k, l.e, tuning, kPoisonAgain), where.str(), reference,
                           "the automatic plan");
      }
      return true;
    });
  }
}

// NUMERICS §9 and §7, as for sm80_gemm_smallm (M <= 8 is not this kernel's).
TEST_F(GpuGemmSm90SmallM, NanScaleBlocksMakeExactlyTheirOutputsNan) { expect_nan_blocks_exact({9, 48}); }

// K % 256 != 0, M > 64 and M <= 8 are not this kernel's: selection passes it over naming why.
TEST_F(GpuGemmSm90SmallM, SelectionNamesWhyItPassesOver) {
  const DeviceInfo& device = default_->device(kGpu);
  const auto reason_for = [&](const SmallCase& c) {
    const Problem p = gemm_problem(c, DType::kBF16);
    const Selection s = default_->select(p, device);
    EXPECT_TRUE(s.ok()) << explain(s, p, device);
    if (s.ok()) EXPECT_NE(s.variant->name, kSm90Variant) << explain(s, p, device);
    for (const Rejection& r : s.rejected) {
      if (r.variant == kSm90Variant) return r.reason;
    }
    return std::string("(not rejected)");
  };
  SmallCase c;
  c.m = 16;
  c.n = 528;
  c.k = 784;
  EXPECT_NE(reason_for(c).find("needs K a multiple of 256; K is 784"), std::string::npos) << reason_for(c);
  c.m = 65;
  c.k = 1024;
  EXPECT_NE(reason_for(c).find("serves M <= 64 (decode); M is 65"), std::string::npos) << reason_for(c);
  c.m = 8;
  EXPECT_NE(reason_for(c).find("M = 8 goes to sm80_gemm_smallm's run kernel"), std::string::npos) << reason_for(c);
}

}  // namespace
}  // namespace fp4kit
