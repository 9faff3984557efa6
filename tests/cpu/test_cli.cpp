// The `fp4kit` command line, run as a process (FP4KIT_CLI_PATH): what it writes must be byte-identical
// to the in-process API, its round trips must meet the stated bound, and every failure must give the
// documented exit status with a message (and hint) on stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fp4kit/error.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/recipe.hpp"
#include "cli_runner.hpp"
#include "io.hpp"

namespace fp4kit::cli {
namespace {

using test::CliRun;
using test::contains;
using test::slurp;

std::filesystem::path scratch_dir() { return test::scratch_dir("cli"); }
std::string scratch(const std::string& name) { return (scratch_dir() / name).string(); }
CliRun run_cli(const std::string& args) { return test::run_cli(args, "cli"); }

std::string q(const std::string& path) { return "'" + path + "'"; }

// Gaussian values whose scale varies by row and by 16-column block, so blocks get different E4M3
// scales (some far below the tensor amax).
HostTensor random_f32(int64_t rows, int64_t cols, uint32_t seed) {
  HostTensor t = HostTensor::zeros(DType::kF32, {rows, cols});
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  float* x = reinterpret_cast<float*>(t.bytes.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = std::ldexp(1.0f, static_cast<int>((r * 7 + c / 16 * 3) % 9) - 4);
      x[r * cols + c] = normal(gen) * scale;
    }
  }
  return t;
}

HostTensor to_half(const HostTensor& f32, DType dtype) {
  HostTensor t = HostTensor::zeros(dtype, f32.shape);
  const float* x = reinterpret_cast<const float*>(f32.bytes.data());
  uint16_t* h = reinterpret_cast<uint16_t*>(t.bytes.data());
  for (int64_t i = 0; i < f32.numel(); ++i) h[i] = dtype == DType::kBF16 ? float_to_bf16(x[i]) : float_to_fp16(x[i]);
  return t;
}

const float* floats(const HostTensor& t) { return reinterpret_cast<const float*>(t.bytes.data()); }

// Checks that the file's tensors are exactly those of the in-process quantization `expected`.
void expect_same_tensors(const SafetensorsFile& file, const Nvfp4Tensor& expected) {
  std::vector<std::string> names = {"nonfinite_counts"};
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const Nvfp4Part& part = d == Direction::kRowwise ? expected.rowwise() : expected.columnwise();
    const std::string prefix = direction_word(d);
    if (!part.present) continue;
    const struct {
      const char* suffix;
      const TensorView& view;
      DType dtype;
    } items[] = {{".data", part.data, DType::kU8}, {".scales", part.scales, DType::kE4M3}, {".amax", part.amax, DType::kF32}};
    if (part.scales_swizzled.data) {
      const std::string name = prefix + ".scales_swizzled";
      names.push_back(name);
      auto it = file.tensors.find(name);
      ASSERT_NE(it, file.tensors.end()) << "missing " << name;
      EXPECT_TRUE(it->second.bytes == host_copy(part.scales_swizzled).bytes) << name;
    }
    for (const auto& item : items) {
      const std::string name = prefix + item.suffix;
      names.push_back(name);
      auto it = file.tensors.find(name);
      ASSERT_NE(it, file.tensors.end()) << "missing " << name;
      const HostTensor want = host_copy(item.view);
      EXPECT_EQ(it->second.dtype, item.dtype) << name;
      EXPECT_EQ(it->second.shape, want.shape) << name;
      EXPECT_TRUE(it->second.bytes == want.bytes) << name << " differs from fp4kit::quantize() in-process";
    }
  }
  const HostTensor counts = host_copy(expected.nonfinite_counts());
  ASSERT_TRUE(file.tensors.count("nonfinite_counts"));
  EXPECT_EQ(file.tensors.at("nonfinite_counts").dtype, DType::kU32);
  EXPECT_EQ(file.tensors.at("nonfinite_counts").shape, std::vector<int64_t>{2});
  EXPECT_EQ(file.tensors.at("nonfinite_counts").bytes, counts.bytes);
  std::vector<std::string> got;
  for (const auto& [name, t] : file.tensors) got.push_back(name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(got, names) << "the file holds exactly the present directions' tensors";
}

// The dequantization bound (docs/NUMERICS.md §2). Block b has unit_b = e4m3(scale_b) * S_dec, the
// value of one E2M1 step of 1.0, with S_dec = amax / 2688. Quantizing scales x by senc_b ~ 1/unit_b
// to a = x / unit_b, clamps a to [-6, 6] and rounds it onto the E2M1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}:
//   - |a| <= 6: RNE moves a by at most half the widest gap (4..6), i.e. 1 unit; SR moves it to
//     either neighbour, at most one whole gap, 2 units.
//   - |a| > 6 (the E4M3 rounding of the scale, or a zero scale, let a block exceed 6): the value
//     becomes +-6 exactly, an error of |x| - 6 unit_b.
// So |x - x'| <= max(k * unit_b, |x| - 6 unit_b), k = 1 (RNE) or 2 (SR). The FP32 roundings of
// S_enc, S_dec, senc_b and the products add a few ulps: a relative slack of 2^-16 covers them.
// (The bound holds for a zero scale too: then x' = 0 and the error is |x|.)
float dequant_bound(float x, float unit, int k) {
  return std::max(static_cast<float>(k) * unit, std::fabs(x) - 6.0f * unit) * (1.0f + 1.0f / 65536.0f) + 1e-30f;
}

// Every element of `dq` ([rows, cols] of the quantized orientation) against the source `x` of the
// same orientation, using the file's scales and amax for the direction `prefix`.
void expect_within_bound(const float* x, const float* dq, int64_t rows, int64_t cols, const SafetensorsFile& file,
                         const std::string& prefix, int k) {
  const HostTensor& scales = file.tensors.at(prefix + ".scales");
  const HostTensor& amax = file.tensors.at(prefix + ".amax");
  const int64_t blocks = (cols + 15) / 16;
  ASSERT_EQ(scales.numel(), rows * blocks);
  int failures = 0;
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float a = floats(amax)[amax.numel() == 1 ? 0 : r];
    const float s_dec = 1.0f / (2688.0f / a);
    for (int64_t c = 0; c < cols; ++c) {
      const float unit = e4m3_to_float(scales.bytes[static_cast<std::size_t>(r * blocks + c / 16)]) * s_dec;
      const float xv = x[r * cols + c];
      const float err = std::fabs(xv - dq[r * cols + c]);
      const float bound = dequant_bound(xv, unit, k);
      worst = std::max(worst, static_cast<double>(err / bound));
      if (!(err <= bound) && failures++ < 5) {
        ADD_FAILURE() << prefix << " [" << r << ", " << c << "]: x=" << xv << " dequantized " << dq[r * cols + c]
                      << " error " << err << " > bound " << bound << " (unit " << unit << ")";
      }
    }
  }
  EXPECT_EQ(failures, 0) << "worst error / bound = " << worst;
}

// ---------------------------------------------------------------------------------------------

TEST(CliVersion, PrintsVersionAndBackends) {
  const CliRun r = run_cli("version");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), std::string("fp4kit ") + fp4kit::version());
  EXPECT_TRUE(contains(r.out, "CUDA backends"));
#if defined(FP4KIT_HAVE_CUDA)
  EXPECT_TRUE(contains(r.out, "compiled in"));
#else
  EXPECT_TRUE(contains(r.out, "not compiled"));
#endif
}

TEST(CliHelp, EverySubcommandHelpExitsZero) {
  for (const std::string sub : {"", "version ", "quantize ", "dequantize ", "demo "}) {
    const CliRun r = run_cli(sub + "--help");
    EXPECT_EQ(r.status, 0) << "`fp4kit " << sub << "--help`: " << r.err;
    EXPECT_TRUE(contains(r.out, "Usage")) << sub;
  }
  const CliRun root = run_cli("--help");
  EXPECT_TRUE(contains(root.out, "Exit status"));
  for (const char* sub : {"version", "quantize", "dequantize", "demo"}) EXPECT_TRUE(contains(root.out, sub));
  const CliRun quant = run_cli("quantize --help");
  for (const char* opt : {"--role", "--direction", "--2d", "--rht", "--mask", "--sr", "--seed", "--offset",
                          "--row-scaled", "--tensor", "--step", "--swizzled-scales"}) {
    EXPECT_TRUE(contains(quant.out, opt));
  }
}

TEST(CliUsage, NoSubcommandOrUnknownOptionIsUsageError) {
  const CliRun none = run_cli("");
  EXPECT_EQ(none.status, 2);
  const CliRun unknown = run_cli("quantize a.npy b.safetensors --bogus");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(contains(unknown.err, "--bogus"));
}

TEST(CliQuantize, NpyOutputIsByteIdenticalToInProcess) {
  const HostTensor x = random_f32(64, 128, 1);
  const std::string in = scratch("x.npy");
  write_npy(in, x);
  HostTensor xc = x;
  const TensorView view = TensorView::matrix(xc.bytes.data(), DType::kF32, 64, 128);

  // Default flags: rowwise only.
  const std::string out = scratch("x_row.safetensors");
  CliRun r = run_cli("quantize " + q(in) + " " + q(out));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "f32[64, 128]"));
  EXPECT_TRUE(contains(r.out, " ms"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one summary line: " << r.out;
  SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, quantize(view, QuantParams{}));
  EXPECT_EQ(f.tensors.at("rowwise.data").shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(f.tensors.at("rowwise.scales").shape, (std::vector<int64_t>{64, 8}));
  EXPECT_EQ(f.tensors.at("rowwise.amax").shape, std::vector<int64_t>{1});

  // Both directions.
  const std::string both = scratch("x_both.safetensors");
  r = run_cli("quantize " + q(in) + " " + q(both) + " --direction both");
  ASSERT_EQ(r.status, 0) << r.err;
  f = read_safetensors(both);
  QuantParams p;
  p.direction = Direction::kBoth;
  expect_same_tensors(f, quantize(view, p));
  EXPECT_EQ(f.tensors.at("columnwise.data").shape, (std::vector<int64_t>{128, 32}));
  const auto& m = f.metadata;
  EXPECT_EQ(m.at("format"), "fp4kit.nvfp4");
  EXPECT_EQ(m.at("fp4kit_version"), fp4kit::version());
  EXPECT_EQ(m.at("rows"), "64");
  EXPECT_EQ(m.at("cols"), "128");
  EXPECT_EQ(m.at("source_dtype"), dtype_name(DType::kF32));
  EXPECT_EQ(nlohmann::json::parse(m.at("source_shape")), nlohmann::json({64, 128}));
  EXPECT_EQ(m.at("direction"), "both");
  EXPECT_EQ(m.at("block"), "1d");
  EXPECT_EQ(m.at("rounding"), "rne");
  EXPECT_EQ(m.at("row_scaled"), "false");
  EXPECT_EQ(m.at("rht"), "false");
  EXPECT_EQ(m.at("rht_mask"), "0xd7e8");
  EXPECT_EQ(m.at("packing"), "e2m1 x2 per byte, element 2i in the low nibble");
  EXPECT_EQ(m.count("role"), 0u);
  EXPECT_EQ(m.count("recipe"), 0u);
}

TEST(CliQuantize, ExplicitFlagsAndRank3F16InputMatchInProcess) {
  // [2, 32, 48] collapses to [64, 48]; SR with a seed and offset, RHT with its own mask.
  HostTensor x = to_half(random_f32(64, 48, 2), DType::kF16);
  x.shape = {2, 32, 48};
  const std::string in = scratch("x3.npy");
  write_npy(in, x);
  const std::string out = scratch("x3.safetensors");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(out) +
                        " --direction both --rht --mask 0x1234 --sr --seed 7 --offset 3");
  ASSERT_EQ(r.status, 0) << r.err;
  QuantParams p;
  p.direction = Direction::kBoth;
  p.rht = true;
  p.rht_mask = 0x1234;
  p.rounding = Rounding::kStochastic;
  p.sr_seed = 7;
  p.sr_offset = 3;
  const SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, quantize(TensorView::matrix(x.bytes.data(), DType::kF16, 64, 48), p));
  const auto& m = f.metadata;
  EXPECT_EQ(m.at("rows"), "64");
  EXPECT_EQ(m.at("cols"), "48");
  EXPECT_EQ(m.at("source_dtype"), dtype_name(DType::kF16));
  EXPECT_EQ(nlohmann::json::parse(m.at("source_shape")), nlohmann::json({2, 32, 48}));
  EXPECT_EQ(m.at("rounding"), "sr");
  EXPECT_EQ(m.at("rht"), "true");
  EXPECT_EQ(m.at("rht_mask"), "0x1234");
  EXPECT_EQ(m.at("sr_seed"), "7");
  EXPECT_EQ(m.at("sr_offset"), "3");
}

TEST(CliQuantize, RowScaledAndRank1) {
  HostTensor x = random_f32(1, 64, 3);
  x.shape = {64};  // rank 1: one row
  const std::string in = scratch("v.npy");
  write_npy(in, x);
  const std::string out = scratch("v.safetensors");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --row-scaled");
  ASSERT_EQ(r.status, 0) << r.err;
  QuantParams p;
  p.row_scaled = true;
  const SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, quantize(TensorView::matrix(x.bytes.data(), DType::kF32, 1, 64), p));
  EXPECT_EQ(f.metadata.at("row_scaled"), "true");
  EXPECT_EQ(f.metadata.at("rows"), "1");
}

TEST(CliQuantize, SwizzledScalesAreStoredAndReadBack) {
  HostTensor x = random_f32(40, 48, 9);
  const std::string in = scratch("sw.npy");
  write_npy(in, x);
  const std::string out = scratch("sw.safetensors");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --direction both --swizzled-scales");
  ASSERT_EQ(r.status, 0) << r.err;
  QuantParams p;
  p.direction = Direction::kBoth;
  p.swizzled_scales = true;
  const SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, quantize(TensorView::matrix(x.bytes.data(), DType::kF32, 40, 48), p));
  EXPECT_EQ(f.metadata.at("swizzled_scales"), "true");
  const Nvfp4File back = read_nvfp4_safetensors(out);
  ASSERT_NE(back.tensor.columnwise().scales_swizzled.data, nullptr);
  EXPECT_EQ(back.tensor.columnwise().scales_swizzled.numel(), 128 * 4);  // 48 rows -> 128, 3 blocks -> 4
  const CliRun d = run_cli("dequantize " + q(out) + " " + q(scratch("sw_back.npy")));
  EXPECT_EQ(d.status, 0) << d.err;
}

TEST(CliQuantize, ReportsNonFiniteValues) {
  HostTensor x = random_f32(16, 32, 4);
  float* xs = reinterpret_cast<float*>(x.bytes.data());
  xs[5] = std::numeric_limits<float>::quiet_NaN();
  xs[40] = std::numeric_limits<float>::infinity();
  xs[41] = -std::numeric_limits<float>::infinity();
  const std::string in = scratch("nf.npy");
  write_npy(in, x);
  const std::string out = scratch("nf.safetensors");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(out));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "3 non-finite (1 NaN, 2 Inf)"));
  const SafetensorsFile f = read_safetensors(out);
  const HostTensor& counts = f.tensors.at("nonfinite_counts");
  ASSERT_EQ(counts.bytes.size(), 8u);
  const uint32_t* c = reinterpret_cast<const uint32_t*>(counts.bytes.data());
  EXPECT_EQ(c[0], 1u);
  EXPECT_EQ(c[1], 2u);
}

TEST(CliDequantize, RoundTripWithinBoundAndIdenticalToInProcess) {
  const int64_t rows = 48, cols = 96;
  HostTensor x = random_f32(rows, cols, 5);
  const std::string in = scratch("x.npy");
  write_npy(in, x);
  const std::string qfile = scratch("x.safetensors");
  CliRun r = run_cli("quantize " + q(in) + " " + q(qfile) + " --direction both");
  ASSERT_EQ(r.status, 0) << r.err;
  const SafetensorsFile f = read_safetensors(qfile);
  QuantParams p;
  p.direction = Direction::kBoth;
  const Nvfp4Tensor expected = quantize(TensorView::matrix(x.bytes.data(), DType::kF32, rows, cols), p);

  // Rowwise (the default when present), f32.
  const std::string dq = scratch("dq.npy");
  r = run_cli("dequantize " + q(qfile) + " " + q(dq));
  ASSERT_EQ(r.status, 0) << r.err;
  const HostTensor back = read_npy(dq);
  ASSERT_EQ(back.dtype, DType::kF32);
  ASSERT_EQ(back.shape, (std::vector<int64_t>{rows, cols}));
  expect_within_bound(floats(x), floats(back), rows, cols, f, "rowwise", 1);
  HostTensor want = HostTensor::zeros(DType::kF32, {rows, cols});
  dequantize(expected, Direction::kRowwise, want.view());
  EXPECT_TRUE(back.bytes == want.bytes) << "CLI and in-process dequantize differ";

  // Columnwise: x^T [cols, rows], within the bound against x^T.
  const std::string dqc = scratch("dqc.npy");
  r = run_cli("dequantize " + q(qfile) + " " + q(dqc) + " --direction columnwise");
  ASSERT_EQ(r.status, 0) << r.err;
  const HostTensor backc = read_npy(dqc);
  ASSERT_EQ(backc.shape, (std::vector<int64_t>{cols, rows}));
  std::vector<float> xt(static_cast<std::size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) xt[static_cast<std::size_t>(j * rows + i)] = floats(x)[i * cols + j];
  expect_within_bound(xt.data(), floats(backc), cols, rows, f, "columnwise", 1);

  // f16 output equals the in-process f16 dequantization.
  const std::string dqh = scratch("dqh.npy");
  r = run_cli("dequantize " + q(qfile) + " " + q(dqh) + " --dtype f16");
  ASSERT_EQ(r.status, 0) << r.err;
  const HostTensor backh = read_npy(dqh);
  ASSERT_EQ(backh.dtype, DType::kF16);
  HostTensor wanth = HostTensor::zeros(DType::kF16, {rows, cols});
  dequantize(expected, Direction::kRowwise, wanth.view());
  EXPECT_TRUE(backh.bytes == wanth.bytes);

  // --keep-rht-domain needs an RHT tensor.
  r = run_cli("dequantize " + q(qfile) + " " + q(scratch("k.npy")) + " --direction columnwise --keep-rht-domain");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "--keep-rht-domain"));
}

TEST(CliRole, WgradGradIsColumnwiseRhtAndDequantizes) {
  // R = 40 is not a multiple of 16: the columnwise output pads it to 48.
  const int64_t rows = 40, cols = 32;
  HostTensor x = random_f32(rows, cols, 6);
  const std::string in = scratch("g.npy");
  write_npy(in, x);
  const std::string out = scratch("g.safetensors");
  CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --role wgrad_grad");
  ASSERT_EQ(r.status, 0) << r.err;
  const Recipe recipe = Recipe::from_env();  // the same environment as the child process
  const QuantParams p = recipe.params(OperandRole::kWgradGrad, 0);
  const Nvfp4Tensor expected = quantize(TensorView::matrix(x.bytes.data(), DType::kF32, rows, cols), p);
  const SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, expected);
  EXPECT_EQ(f.tensors.count("rowwise.data"), 0u);
  ASSERT_EQ(f.tensors.count("columnwise.data"), 1u);
  EXPECT_EQ(f.tensors.at("columnwise.data").shape, (std::vector<int64_t>{cols, 24}));
  EXPECT_EQ(f.metadata.at("rht"), "true");
  EXPECT_EQ(f.metadata.at("direction"), "columnwise");
  EXPECT_EQ(f.metadata.at("role"), "wgrad_grad");
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("recipe")), nlohmann::json::parse(recipe.to_json()));

  // Default direction is the one present: columnwise, x^T [cols, rows], as in-process.
  const std::string dq = scratch("g_dq.npy");
  r = run_cli("dequantize " + q(out) + " " + q(dq));
  ASSERT_EQ(r.status, 0) << r.err;
  const HostTensor back = read_npy(dq);
  ASSERT_EQ(back.shape, (std::vector<int64_t>{cols, rows}));
  HostTensor want = HostTensor::zeros(DType::kF32, {cols, rows});
  dequantize(expected, Direction::kColumnwise, want.view());
  EXPECT_TRUE(back.bytes == want.bytes);

  // In the transformed domain [cols, 48] the per-element bound holds against the in-process RHT
  // of x^T (k = 2 when the recipe uses SR for gradients).
  const std::string dqk = scratch("g_dqk.npy");
  r = run_cli("dequantize " + q(out) + " " + q(dqk) + " --keep-rht-domain");
  ASSERT_EQ(r.status, 0) << r.err;
  const HostTensor backk = read_npy(dqk);
  ASSERT_EQ(backk.shape, (std::vector<int64_t>{cols, 48}));
  HostTensor y = HostTensor::zeros(DType::kF32, {cols, 48});
  hadamard(TensorView::matrix(x.bytes.data(), DType::kF32, rows, cols), y.view(), p.rht_mask, true);
  expect_within_bound(floats(y), floats(backk), cols, 48, f, "columnwise",
                      p.rounding == Rounding::kStochastic ? 2 : 1);

  // There is no rowwise output to dequantize.
  r = run_cli("dequantize " + q(out) + " " + q(scratch("row.npy")) + " --direction rowwise");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "no rowwise output"));
  EXPECT_TRUE(contains(r.err, "hint:"));
}

TEST(CliRole, FpropWeightIs2d) {
  const int64_t rows = 32, cols = 64;
  HostTensor x = random_f32(rows, cols, 7);
  const std::string in = scratch("w.npy");
  write_npy(in, x);
  const std::string out = scratch("w.safetensors");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --role fprop_weight --step 3");
  ASSERT_EQ(r.status, 0) << r.err;
  const SafetensorsFile f = read_safetensors(out);
  EXPECT_EQ(f.metadata.at("block"), "2d");
  EXPECT_EQ(f.metadata.at("role"), "fprop_weight");
  const QuantParams p = Recipe::from_env().params(OperandRole::kFpropWeight, 3);
  EXPECT_EQ(p.block, BlockScaling::k2D) << "the recipe's weight uses 2D blocks unless disabled in the environment";
  expect_same_tensors(f, quantize(TensorView::matrix(x.bytes.data(), DType::kF32, rows, cols), p));
}

TEST(CliRole, RoleWithExplicitFlagsIsUsageError) {
  const HostTensor x = random_f32(16, 16, 8);
  const std::string in = scratch("x.npy");
  write_npy(in, x);
  const std::string out = scratch("x.safetensors");
  CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --role fprop_weight --2d");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.err, "--role"));
  EXPECT_TRUE(contains(r.err, "--2d"));
  EXPECT_FALSE(std::filesystem::exists(out));

  r = run_cli("quantize " + q(in) + " " + q(out) + " --role not_a_role");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.err, "fprop_input")) << "the valid roles are listed";

  r = run_cli("quantize " + q(in) + " " + q(out) + " --seed 5");
  EXPECT_EQ(r.status, 2) << "--seed needs --sr";
  EXPECT_TRUE(contains(r.err, "--sr"));

  r = run_cli("quantize " + q(in) + " " + q(out) + " --rht --mask 0x12345");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.err, "--mask"));
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(CliQuantize, SafetensorsBf16InputSelectedWithTensor) {
  const int64_t rows = 32, cols = 64;
  std::map<std::string, HostTensor> tensors;
  tensors["bias"] = random_f32(1, 16, 9);
  tensors["weight"] = to_half(random_f32(rows, cols, 10), DType::kBF16);
  const std::string in = scratch("model.safetensors");
  write_safetensors(in, tensors, {{"format", "pt"}});
  const std::string out = scratch("w.safetensors");
  CliRun r = run_cli("quantize " + q(in) + " " + q(out) + " --tensor weight --direction both");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, std::string(dtype_name(DType::kBF16)) + "[32, 64]"));
  QuantParams p;
  p.direction = Direction::kBoth;
  HostTensor& w = tensors["weight"];
  const SafetensorsFile f = read_safetensors(out);
  expect_same_tensors(f, quantize(TensorView::matrix(w.bytes.data(), DType::kBF16, rows, cols), p));
  EXPECT_EQ(f.metadata.at("source_dtype"), dtype_name(DType::kBF16));

  // Without --tensor (two tensors) or with a wrong name: exit 1, listing the names.
  for (const std::string extra : {"", " --tensor nope"}) {
    r = run_cli("quantize " + q(in) + " " + q(scratch("x.safetensors")) + extra);
    EXPECT_EQ(r.status, 1) << extra;
    EXPECT_TRUE(contains(r.err, "'bias'"));
    EXPECT_TRUE(contains(r.err, "'weight'"));
    EXPECT_TRUE(contains(r.err, "hint:"));
  }
}

TEST(CliQuantize, ColumnsNotMultipleOf16FailWithHint) {
  const HostTensor x = random_f32(4, 24, 11);
  const std::string in = scratch("x.npy");
  write_npy(in, x);
  const CliRun r = run_cli("quantize " + q(in) + " " + q(scratch("x.safetensors")));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("fp4kit: error: ", 0), 0u) << r.err;
  EXPECT_TRUE(contains(r.err, "multiple of 16"));
  EXPECT_TRUE(contains(r.err, "\n  hint: "));
  EXPECT_TRUE(r.out.empty());
}

TEST(CliQuantize, MissingInputNamesTheFile) {
  const std::string in = scratch("no_such_input.npy");
  const CliRun r = run_cli("quantize " + q(in) + " " + q(scratch("x.safetensors")));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, in));
  EXPECT_TRUE(contains(r.err, "hint:"));
}

TEST(CliQuantize, BadExtensionsAndF64AreErrors) {
  const std::string txt = scratch("x.txt");
  write_file_bytes(txt, {1, 2, 3});
  CliRun r = run_cli("quantize " + q(txt) + " " + q(scratch("x.safetensors")));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, ".npy"));
  EXPECT_TRUE(contains(r.err, ".safetensors"));

  const std::string in = scratch("x.npy");
  write_npy(in, random_f32(16, 16, 12));
  r = run_cli("quantize " + q(in) + " " + q(scratch("x.npz")));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, ".safetensors"));

  std::map<std::string, HostTensor> tensors;
  tensors["d"] = HostTensor::zeros(DType::kF64, {16, 16});
  const std::string f64 = scratch("d.safetensors");
  write_safetensors(f64, tensors);
  r = run_cli("quantize " + q(f64) + " " + q(scratch("d_q.safetensors")));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "float32"));
}

TEST(CliDequantize, RejectsFilesNotWrittenByQuantize) {
  std::map<std::string, HostTensor> tensors;
  tensors["w"] = random_f32(2, 16, 13);
  const std::string in = scratch("plain.safetensors");
  write_safetensors(in, tensors, {{"format", "pt"}});
  const CliRun r = run_cli("dequantize " + q(in) + " " + q(scratch("out.npy")));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "fp4kit.nvfp4"));
  EXPECT_TRUE(contains(r.err, "hint:"));
  EXPECT_FALSE(std::filesystem::exists(scratch("out.npy")));
}

}  // namespace
}  // namespace fp4kit::cli
