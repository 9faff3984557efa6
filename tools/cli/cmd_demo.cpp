// `fp4kit demo`: the main job, end to end on one transformer projection.
//
// It makes a synthetic layer (a BF16 activation with a few outlier channels, as real activations
// have, and a BF16 weight), quantizes both with the NVFP4 recipe's fprop roles on the best backend
// available, runs the NVFP4 GEMM, and compares it with a float64 GEMM of the unquantized inputs
// (how much NVFP4 costs) and with the float64 reference GEMM of the same quantized operands (how
// exact the backend is: NUMERICS §7 bound). It prints one short report, or JSON with --json.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "core/philox.hpp"
#include "fp4kit/fp4kit.hpp"

namespace fp4kit::cli {

namespace {

struct DemoOptions {
  int64_t tokens = 128;
  int64_t hidden = 1024;
  int64_t out_features = 2048;
  uint64_t seed = 2026;
  bool json = false;
};

// Deterministic standard normals (Philox + Box-Muller): the same layer on every machine.
std::vector<float> normals(size_t n, uint64_t seed) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; i += 2) {
    const detail::Philox4x32 r = detail::philox4x32_10(
        {{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0xDE30u, 0}}, static_cast<uint32_t>(seed),
        static_cast<uint32_t>(seed >> 32));
    const double u1 = (r.v[0] + 1.0) / 4294967297.0, u2 = r.v[1] / 4294967296.0;
    const double rad = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(rad * std::cos(6.283185307179586 * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(rad * std::sin(6.283185307179586 * u2));
  }
  return out;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](float f) { return float_to_bf16(f); });
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_demo(const DemoOptions& o) {
  using Clock = std::chrono::steady_clock;
  const int64_t M = o.tokens, K = o.hidden, N = o.out_features;
  if (M < 1 || N < 1 || K < 16 || K % 16 != 0 || N % 16 != 0) {
    throw Error(ErrorCode::kShapeMismatch,
                "demo: --tokens must be >= 1 and --hidden/--out multiples of 16 (hidden at least 16)",
                "for example --tokens 128 --hidden 1024 --out 2048");
  }
  const Recipe recipe = Recipe::from_env();
  const Target target = Target::cpu();  // the only backend of this build; the dispatcher picks later
  const char* backend = "cpu reference (src/ref)";

  // The layer: activations ~N(0,1) with 4 outlier channels x20; weights ~N(0, 1/hidden).
  std::vector<float> xf = normals(static_cast<size_t>(M * K), o.seed);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c : {K / 7, K / 3, K / 2 + 1, K - 5}) xf[static_cast<size_t>(m * K + c)] *= 20.0f;
  std::vector<float> wf = normals(static_cast<size_t>(N * K), o.seed + 1);
  const float wscale = 1.0f / std::sqrt(static_cast<float>(K));
  for (float& w : wf) w *= wscale;
  std::vector<uint16_t> x = to_bf16(xf), w = to_bf16(wf);
  const TensorView xv = TensorView::matrix(x.data(), DType::kBF16, M, K);
  const TensorView wv = TensorView::matrix(w.data(), DType::kBF16, N, K);

  // Quantize with the recipe's fprop roles.
  auto t0 = Clock::now();
  const Nvfp4Tensor qx = quantize(xv, recipe.params(OperandRole::kFpropInput), target);
  const Nvfp4Tensor qw = quantize(wv, recipe.params(OperandRole::kFpropWeight), target);
  const double t_quant = seconds_since(t0);

  // The NVFP4 GEMM on the backend, FP32 out.
  std::vector<float> y(static_cast<size_t>(M * N)), y_ref(y.size()), y_exact(y.size());
  t0 = Clock::now();
  gemm(GemmOperand::quantized(qx), GemmOperand::quantized(qw), TensorView::matrix(y.data(), DType::kF32, M, N), {},
       target);
  const double t_gemm = seconds_since(t0);

  // The oracles: float64 GEMM of the same quantized operands, and of the unquantized BF16 inputs.
  GemmOptions f64;
  f64.accumulation = Accumulation::kF64;
  gemm(GemmOperand::quantized(qx), GemmOperand::quantized(qw), TensorView::matrix(y_ref.data(), DType::kF32, M, N), f64);
  gemm(GemmOperand::matrix(xv), GemmOperand::matrix(wv), TensorView::matrix(y_exact.data(), DType::kF32, M, N), f64);

  double err2 = 0, sig2 = 0, max_backend_dev = 0, max_ratio_to_bound = 0;
  std::vector<float> xq(static_cast<size_t>(M * K)), wq(static_cast<size_t>(N * K));
  dequantize(qx, Direction::kRowwise, TensorView::matrix(xq.data(), DType::kF32, M, K));
  dequantize(qw, Direction::kRowwise, TensorView::matrix(wq.data(), DType::kF32, N, K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = static_cast<size_t>(m * N + n);
      err2 += std::pow(static_cast<double>(y[i]) - y_exact[i], 2);
      sig2 += std::pow(static_cast<double>(y_exact[i]), 2);
      // NUMERICS §7 bound against the float64 reference: 2^-20 * K * sum |A'B'| |alpha| (+ FP32 out).
      double sum_abs = 0;
      for (int64_t k = 0; k < K; ++k) sum_abs += std::fabs(static_cast<double>(xq[m * K + k]) * wq[n * K + k]);
      const double bound = std::ldexp(1.0, -20) * static_cast<double>(K) * sum_abs + std::fabs(y_ref[i]) * 0x1p-24;
      const double dev = std::fabs(static_cast<double>(y[i]) - y_ref[i]);
      max_backend_dev = std::max(max_backend_dev, dev);
      max_ratio_to_bound = std::max(max_ratio_to_bound, bound > 0 ? dev / bound : (dev > 0 ? INFINITY : 0.0));
    }
  }
  const double rel = std::sqrt(err2 / sig2);
  const double snr_db = 10.0 * std::log10(sig2 / err2);
  const double bf16_bytes = static_cast<double>((M + N) * K * 2);
  const double nvfp4_bytes = static_cast<double>(qx.nbytes() + qw.nbytes());
  const uint32_t nonfinite = qx.nonfinite_counts().ptr<uint32_t>()[0] + qx.nonfinite_counts().ptr<uint32_t>()[1];
  const bool within = max_ratio_to_bound <= 1.0;

  if (o.json) {
    std::printf(
        "{\"fp4kit_version\": \"%s\", \"backend\": \"%s\", \"recipe\": %s, \"shape\": {\"m\": %lld, \"n\": %lld, "
        "\"k\": %lld}, \"relative_error\": %.6g, \"snr_db\": %.3f, \"max_abs_dev_vs_reference\": %.6g, "
        "\"dev_over_bound\": %.6g, \"within_bound\": %s, \"bf16_bytes\": %.0f, \"nvfp4_bytes\": %.0f, "
        "\"quantize_s\": %.6f, \"gemm_s\": %.6f, \"nonfinite_inputs\": %u}\n",
        version(), backend, recipe.to_json().c_str(), static_cast<long long>(M), static_cast<long long>(N),
        static_cast<long long>(K), rel, snr_db, max_backend_dev, max_ratio_to_bound, within ? "true" : "false",
        bf16_bytes, nvfp4_bytes, t_quant, t_gemm, nonfinite);
  } else {
    std::printf("fp4kit %s demo: one transformer projection y = x W^T in NVFP4\n", version());
    std::printf("  recipe        %s\n", recipe.describe().c_str());
    std::printf("  layer         x bf16[%lld, %lld] (4 outlier channels x20), W bf16[%lld, %lld]\n",
                static_cast<long long>(M), static_cast<long long>(K), static_cast<long long>(N),
                static_cast<long long>(K));
    std::printf("  backend       %s\n", backend);
    std::printf("  error         %.2f%% relative (Frobenius), SNR %.1f dB vs float64 GEMM of the bf16 inputs\n",
                100.0 * rel, snr_db);
    std::printf("  exactness     max |y - y_ref| = %.3g, %.3g of the NUMERICS §7 bound (%s)\n", max_backend_dev,
                max_ratio_to_bound, within ? "within" : "OUTSIDE");
    std::printf("  memory        %.2f MiB bf16 -> %.2f MiB nvfp4 (%.1f%% saved, %.2fx smaller)\n",
                bf16_bytes / 1048576.0, nvfp4_bytes / 1048576.0, 100.0 * (1.0 - nvfp4_bytes / bf16_bytes),
                bf16_bytes / nvfp4_bytes);
    std::printf("  time          quantize %.1f ms, gemm %.1f ms (%.2f GFLOP/s)\n", 1e3 * t_quant, 1e3 * t_gemm,
                2.0 * static_cast<double>(M * N * K) / t_gemm * 1e-9);
  }
  if (!within) {
    throw Error(ErrorCode::kInternal, "demo: the backend's GEMM is outside the NUMERICS §7 bound",
                "this is a bug in the backend; please report it with this output");
  }
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Quantize a synthetic transformer layer with the NVFP4 recipe, run the GEMM, and report its error, "
              "exactness, memory saved, backend and time");
  cmd->add_option("--tokens", opts->tokens, "Rows of the activation (M)")->capture_default_str();
  cmd->add_option("--hidden", opts->hidden, "Input features (K, a multiple of 16)")->capture_default_str();
  cmd->add_option("--out", opts->out_features, "Output features (N, a multiple of 16)")->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Seed of the synthetic layer")->capture_default_str();
  cmd->add_flag("--json", opts->json, "Print the report as one JSON object");
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace fp4kit::cli
