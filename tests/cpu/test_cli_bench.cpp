// `fp4kit bench quantize`, `fp4kit bench rht` and `fp4kit bench gemm`, run as a process
// (FP4KIT_CLI_PATH): without a CUDA GPU (or without CUDA backends) each must fail cleanly (exit 1,
// the reason and the hint on stderr, nothing on stdout); malformed options are usage errors (exit
// 2); on a GPU machine the JSON of `bench quantize` and `bench gemm` must carry every field, with
// bytes, ratios, verdicts and the selected kernels that the library computes in-process.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli_runner.hpp"
#include "fp4kit/dispatch.hpp"
#include "fp4kit/tensor.hpp"

namespace fp4kit {
namespace {

using Json = nlohmann::json;

using test::CliRun;
using test::contains;

CliRun run_cli(const std::string& args) { return test::run_cli(args, "cli_bench"); }

TEST(CliBench, HelpExitsZero) {
  const CliRun bench = run_cli("bench --help");
  EXPECT_EQ(bench.status, 0) << bench.err;
  EXPECT_TRUE(contains(bench.out, "quantize"));
  EXPECT_TRUE(contains(bench.out, "rht"));
  EXPECT_TRUE(contains(bench.out, "gemm"));

  for (const char* sub : {"quantize", "rht", "gemm"}) {
    SCOPED_TRACE(sub);
    const CliRun help = run_cli(std::string("bench ") + sub + " --help");
    EXPECT_EQ(help.status, 0) << help.err;
    for (const char* option : {"--json", "--iters", "--shapes"}) EXPECT_TRUE(contains(help.out, option));
  }
}

// The help of `bench rht` states each mode's target, the budget and the forced variant.
TEST(CliBench, RhtHelpNamesModesAndTargets) {
  const CliRun r = run_cli("bench rht --help");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* piece : {"fused, under the device's full shared-memory budget (target 0.75 of copy bandwidth)",
                            "fused @101376 B", "101376-byte budget", "(0.65)", "sm80_rht_unfused_b16",
                            "no target", "input read twice", "outputs written once"}) {
    EXPECT_TRUE(contains(r.out, piece)) << piece;
  }
}

TEST(CliBench, MalformedOptionsAreUsageErrors) {
  struct Case {
    const char* options;
    const char* message;  // a piece stderr must contain
  };
  const Case cases[] = {
      {"--shapes 12x", "'12x' is not RxC"},
      {"--shapes x4096", "'x4096' is not RxC"},
      {"--shapes 0x4096", "'0x4096' is not RxC"},
      {"--shapes 64x-16", "'64x-16' is not RxC"},
      {"--shapes 4096x4096,", "'' is not RxC"},
      {"--shapes 4096x100", "100 is not a multiple of 16"},
      {"--iters 5", "--iters"},
      {"--iters many", "--iters"},
      {"--frobnicate", "frobnicate"},
  };
  const auto expect_usage_error = [](const std::string& args, const char* message) {
    SCOPED_TRACE(args);
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(contains(r.err, message));
    EXPECT_EQ(r.out, "");
  };
  for (const char* sub : {"quantize", "rht"}) {
    for (const Case& c : cases) expect_usage_error(std::string("bench ") + sub + " " + c.options, c.message);
  }
  expect_usage_error("bench", "subcommand");
}

// The help of `bench gemm` states the ceilings, the method, the check and both targets.
TEST(CliBench, GemmHelpNamesCeilingsMethodAndTargets) {
  const CliRun r = run_cli("bench gemm --help");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* piece : {"cuBLASLt BF16 x BF16", "E4M3 x E4M3", "FP32 compute", "W4A4", "W4A16",
                            "every CUDA GEMM variant", "plain selection", "one read of B's NVFP4 codes and scales",
                            "twice the L2", "its own CUDA events",
                            "gemm_dequant_cublaslt", "NUMERICS 7 bound", "a mismatch exits 1", "sm90_gemm_nvfp4",
                            ">= 0.90x cuBLAS BF16 throughput", "M <= 64", ">= 2.5x faster than cuBLAS BF16",
                            "W4A4 and W4A16 each",
                            "8192x8192x8192", "16384x4096x14336", "1x28672x8192", "64x28672x8192"}) {
    EXPECT_TRUE(contains(r.out, piece)) << piece;
  }
}

TEST(CliBench, GemmMalformedOptionsAreUsageErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"--shapes 8192x8192", "'8192x8192' is not MxNxK"},
      {"--shapes x8192x8192", "'x8192x8192' is not MxNxK"},
      {"--shapes 0x64x64", "'0x64x64' is not MxNxK"},
      {"--shapes 16x16x16x16", "'16x16x16x16' is not MxNxK"},
      {"--shapes 16x-16x16", "'16x-16x16' is not MxNxK"},
      {"--shapes 16x16x16,", "'' is not MxNxK"},
      {"--shapes 16x64x100", "K = 100 is not a multiple of 16"},
      {"--shapes 16x100x64", "N = 100 is not a multiple of 16"},
      {"--iters 4", "--iters"},
      {"--iters many", "--iters"},
      {"--frobnicate", "frobnicate"},
  };
  for (const auto& [options, message] : cases) {
    const std::string args = std::string("bench gemm ") + options;
    SCOPED_TRACE(args);
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(contains(r.err, message));
    EXPECT_EQ(r.out, "");
  }
}

TEST(CliBench, NeedsCudaGpu) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA GPU is visible: CliBench.JsonOnGpu runs the benchmark instead";
  for (const char* sub : {"quantize", "rht", "gemm"}) {
    for (const char* options : {"", " --json", std::string(sub) == "gemm" ? " --shapes 64x64x64 --iters 5"
                                                                           : " --shapes 256x256 --iters 20"}) {
      const std::string args = std::string("bench ") + sub + options;
      SCOPED_TRACE(args);
      const CliRun r = run_cli(args);
      EXPECT_EQ(r.status, 1) << r.err;
      EXPECT_TRUE(contains(r.err, std::string("fp4kit: error: bench ") + sub + ": the benchmark needs a CUDA GPU"));
      EXPECT_TRUE(contains(r.err, "hint: run scripts/gpu-check.sh on a GPU machine"));
      EXPECT_EQ(r.out, "") << "a failed benchmark must print no report";
    }
  }
}

// On a GPU machine: a small run, whose JSON must match the documented shape and what the library
// computes in-process (bytes from Nvfp4Tensor::nbytes, kernels from Context::select).
TEST(CliBench, JsonOnGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU is visible: CliBench.NeedsCudaGpu covers this machine";
  const CliRun r = run_cli("bench quantize --json --shapes 256x4096,48x1024 --iters 20");
  ASSERT_EQ(r.status, 0) << r.err;
  Json j;
  ASSERT_NO_THROW(j = Json::parse(r.out)) << r.out;

  Context& ctx = default_context();
  const DeviceInfo& device = ctx.device({DeviceType::kCuda, 0});
  EXPECT_EQ(j["device"]["name"], device.name);
  EXPECT_EQ(j["device"]["sm_count"], device.sm_count);
  EXPECT_EQ(j["device"]["l2_bytes"], device.l2_bytes);
  const double copy_gbps = j["copy_gbps"].get<double>();
  EXPECT_GT(copy_gbps, 0.0);
  EXPECT_GE(j["timed_runs"].get<int>(), 20);

  struct Mode {
    const char* name;
    Direction direction;
    Rounding rounding;
    double target;
  };
  const Mode modes[] = {
      {"rowwise+columnwise rne", Direction::kBoth, Rounding::kNearest, 0.80},
      {"rowwise+columnwise sr", Direction::kBoth, Rounding::kStochastic, 0.70},
      {"rowwise rne", Direction::kRowwise, Rounding::kNearest, 0.80},
  };
  const int64_t shapes[][2] = {{256, 4096}, {48, 1024}};
  const Json& results = j["results"];
  ASSERT_EQ(results.size(), 6u);
  for (int s = 0; s < 2; ++s) {
    for (int m = 0; m < 3; ++m) {
      const Json& e = results[static_cast<std::size_t>(s * 3 + m)];
      SCOPED_TRACE(e.dump());
      const int64_t rows = shapes[s][0], cols = shapes[s][1];
      QuantParams params;
      params.direction = modes[m].direction;
      params.rounding = modes[m].rounding;
      EXPECT_EQ(e["shape"], Json::array({rows, cols}));
      EXPECT_EQ(e["dtype"], "bf16");
      EXPECT_EQ(e["mode"], modes[m].name);
      const Nvfp4Tensor host = Nvfp4Tensor::allocate(rows, cols, DType::kBF16, params);
      EXPECT_EQ(e["bytes"].get<int64_t>(), 2 * rows * cols * 2 + static_cast<int64_t>(host.nbytes()));
      const double median = e["median_us"].get<double>();
      EXPECT_GT(median, 0.0);
      EXPECT_LE(e["min_us"].get<double>(), median);
      const double gbps = e["gbps"].get<double>();
      EXPECT_NEAR(gbps, static_cast<double>(e["bytes"].get<int64_t>()) / (median * 1e3), 1e-6 * gbps);
      EXPECT_NEAR(e["ratio"].get<double>(), gbps / copy_gbps, 1e-9 * gbps / copy_gbps);
      EXPECT_EQ(e["target"].get<double>(), modes[m].target);
      EXPECT_EQ(e["meets_target"].get<bool>(), e["ratio"].get<double>() >= modes[m].target);
      EXPECT_EQ(e["verified"], s == 0 ? "bytes" : "amax");
    }
  }
  // The selected kernels are those the library selects for the first shape's problems (every
  // shape here chooses alike, or the value names each shape).
  for (const Mode& m : modes) {
    Problem p;
    p.op = OpKind::kQuantize;
    p.rows = shapes[0][0];
    p.cols = shapes[0][1];
    p.in_dtype = DType::kBF16;
    p.params.direction = m.direction;
    p.params.rounding = m.rounding;
    const Selection sel = ctx.select(p, device);
    ASSERT_TRUE(sel.ok());
    EXPECT_TRUE(contains(j["selected"][m.name].get<std::string>(), sel.variant->name + " [" + sel.config.name + "]"));
  }
}

// On a GPU machine: a small `bench gemm`, whose JSON must carry every documented field, one entry
// per CUDA GEMM variant of the registry and mode (run and checked, or the reason it did not run),
// figures that agree with each other, and the selections the library makes in-process.
TEST(CliBench, GemmJsonOnGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU is visible: CliBench.NeedsCudaGpu covers this machine";
  const CliRun r = run_cli("bench gemm --json --shapes 256x512x1024,16x512x1024 --iters 10");
  ASSERT_EQ(r.status, 0) << r.err;
  Json j;
  ASSERT_NO_THROW(j = Json::parse(r.out)) << r.out;

  Context& ctx = default_context();
  const DeviceInfo& device = ctx.device({DeviceType::kCuda, 0});
  EXPECT_EQ(j["device"]["name"], device.name);
  EXPECT_EQ(j["device"]["l2_bytes"], device.l2_bytes);
  EXPECT_GE(j["method"]["l2_flush_bytes"].get<int64_t>(), 2 * device.l2_bytes);
  EXPECT_EQ(j["method"]["max_timed_runs"], 10);
  EXPECT_EQ(j["targets"]["training"]["variant"], "sm90_gemm_nvfp4");
  EXPECT_EQ(j["targets"]["training"]["min_ratio_to_cublas_bf16"], 0.90);
  EXPECT_EQ(j["targets"]["decode"]["max_m"], 64);
  EXPECT_EQ(j["targets"]["decode"]["min_speedup_over_cublas_bf16"], 2.5);

  const Registry registry = Registry::builtin();
  std::vector<std::string> variants;
  for (const KernelVariant& v : registry.variants()) {
    if (v.op == OpKind::kGemm && v.device_type == DeviceType::kCuda) variants.push_back(v.name);
  }
  const int64_t shapes[][3] = {{256, 512, 1024}, {16, 512, 1024}};
  ASSERT_EQ(j["results"].size(), 2u);
  int met = 0;
  for (int si = 0; si < 2; ++si) {
    const Json& e = j["results"][static_cast<std::size_t>(si)];
    SCOPED_TRACE(e.dump(2));
    const int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
    EXPECT_EQ(e["shape"], Json({{"m", m}, {"n", n}, {"k", k}}));
    EXPECT_EQ(e["kind"], si == 0 ? "training" : "decode");
    const double flop = 2.0 * m * n * k;
    EXPECT_EQ(e["flop"].get<double>(), flop);
    const Json& bf16 = e["ceiling"]["cublas_bf16"];
    ASSERT_EQ(bf16["available"], true);
    const double bf16_us = bf16["median_us"].get<double>();
    EXPECT_GT(bf16_us, 0.0);
    EXPECT_NEAR(bf16["tflops"].get<double>(), flop / (bf16_us * 1e6), 1e-9 * flop / (bf16_us * 1e6));
    EXPECT_TRUE(e["ceiling"]["cublaslt_fp8"].contains("available"));
    // Decode shapes: one read of B's NVFP4 codes and scales, the weight stream's ceiling.
    EXPECT_EQ(e["ceiling"].contains("nvfp4_weight_read"), si == 1);
    if (si == 1) {
      const Json& read = e["ceiling"]["nvfp4_weight_read"];
      ASSERT_EQ(read["available"], true);
      const double read_us = read["median_us"].get<double>();
      EXPECT_GT(read_us, 0.0);
      EXPECT_NEAR(read["ratio_to_cublas_bf16"].get<double>(), bf16_us / read_us, 1e-9 * bf16_us / read_us);
      EXPECT_TRUE(contains(read["kernel"].get<std::string>(), "read-only kernel: 288 KiB")) << read["kernel"];
    }
    // One entry per variant and mode, in registry order, W4A4 first.
    ASSERT_EQ(e["fp4kit"].size(), 2 * variants.size());
    for (std::size_t i = 0; i < e["fp4kit"].size(); ++i) {
      const Json& x = e["fp4kit"][i];
      EXPECT_EQ(x["variant"], variants[i % variants.size()]);
      EXPECT_EQ(x["mode"], i < variants.size() ? "w4a4" : "w4a16");
      if (!x["ran"].get<bool>()) {
        EXPECT_FALSE(x["reason"].get<std::string>().empty());
        continue;
      }
      const double us = x["median_us"].get<double>();
      EXPECT_GT(us, 0.0);
      EXPECT_LE(x["min_us"].get<double>(), us);
      EXPECT_GE(x["runs"].get<int>(), 5);
      EXPECT_NEAR(x["ratio_to_cublas_bf16"].get<double>(), bf16_us / us, 1e-9 * bf16_us / us);
      const std::string check = x["check"];
      EXPECT_TRUE(check == "match" || check == "reference") << check;
      EXPECT_EQ(check == "reference", x["variant"] == "gemm_dequant_cublaslt");
      EXPECT_TRUE(contains(x["kernel"].get<std::string>(), x["variant"].get<std::string>()));
    }
    // Plain selection: what the library selects in-process for the same problem.
    for (const char* mode : {"w4a4", "w4a16"}) {
      Problem p;
      p.op = OpKind::kGemm;
      p.rows = m;
      p.cols = n;
      p.k = k;
      p.a_nvfp4 = std::string(mode) == "w4a4";
      p.in_dtype = p.a_nvfp4 ? DType::kU8 : DType::kBF16;
      p.out_dtype = DType::kBF16;
      p.b_2d = true;
      const Selection sel = ctx.select(p, device);
      ASSERT_TRUE(sel.ok());
      EXPECT_EQ(e["selected"][mode]["kernel"], sel.variant->name + " [" + sel.config.name + "]");
    }
    const Json& t = e["target"];
    for (const char* key : {"goal", "threshold", "value", "met", "by", "note"}) EXPECT_TRUE(t.contains(key)) << key;
    EXPECT_EQ(t["threshold"].get<double>(), si == 0 ? 0.90 : 2.5);
    if (si == 1) {
      // Decode: each mode's fastest correct line, and the verdict is the slower mode's.
      double slower = -1;
      for (const char* mode : {"w4a4", "w4a16"}) {
        double best = -1;
        for (const Json& x : e["fp4kit"]) {
          if (x["mode"] == mode && x["ran"].get<bool>()) best = std::max(best, x["ratio_to_cublas_bf16"].get<double>());
        }
        ASSERT_GT(best, 0.0) << mode;
        slower = slower < 0 ? best : std::min(slower, best);
      }
      EXPECT_EQ(t["value"].get<double>(), slower);
      EXPECT_TRUE(contains(t["goal"].get<std::string>(), "w4a4 and w4a16 each")) << t["goal"];
    }
    if (!t["value"].is_null()) {
      EXPECT_EQ(t["met"].get<bool>(), t["value"].get<double>() >= t["threshold"].get<double>());
    }
    met += t["met"].get<bool>() ? 1 : 0;
  }
  EXPECT_EQ(j["targets_met"], met);
  EXPECT_EQ(j["targets_met"].get<int>() + j["targets_missed"].get<int>(), 2);
}

}  // namespace
}  // namespace fp4kit
