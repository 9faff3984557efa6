// Device profiles, the registry, selection, recipe support and the context (ARCHITECTURE.md,
// "Dispatch"). Besides the built-in registry, these tests use test-only variants whose
// configurations span shared-memory budgets: they are never launched, only selected.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "dispatch/variants.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

constexpr int64_t KiB = 1024;

// A Hopper-and-newer fused quantize kernel whose pipeline depth sets its shared memory, a
// specialised RHT cast with the same shape of budget, and an unfused fallback that needs none.
// s1: 48 KiB (49152 B), s2: 92 KiB (94208 B), s4: 180 KiB (184320 B).
int64_t test_smem(const KernelConfig& c) { return int64_t{c.stages} * 44 * KiB + 4 * KiB; }

// The CPU reference plus the test variants only (not this build's real CUDA kernels, so that the
// expectations below do not depend on how fp4kit was built).
Registry test_registry() {
  Registry r;
  detail::register_reference_variants(r);
  KernelVariant fused;
  fused.name = "test_fused_quantize";
  fused.op = OpKind::kQuantize;
  fused.device_type = DeviceType::kCuda;
  fused.min_cc = 80;
  fused.max_cc = 121;
  fused.compiled_archs = {"80"};
  fused.configs = {{"s4", 64, 128, 0, 4, 256}, {"s2", 64, 128, 0, 2, 256}, {"s1", 64, 128, 0, 1, 256}};
  fused.smem_bytes = test_smem;
  fused.check_problem = [](const Problem& p) -> std::string {
    if (p.params.rht) return "does not apply the RHT";
    return p.cols % 64 == 0 ? "" : "needs cols % 64 == 0";
  };
  fused.priority = 10;
  r.add(fused);

  KernelVariant rht = fused;
  rht.name = "test_rht_cast";
  rht.configs = {{"s4", 64, 128, 0, 4, 256}, {"s1", 64, 128, 0, 1, 256}};
  rht.check_problem = [](const Problem& p) -> std::string { return p.params.rht ? "" : "only the RHT cast"; };
  rht.priority = 20;
  r.add(rht);

  KernelVariant unfused;
  unfused.name = "test_unfused_quantize";
  unfused.op = OpKind::kQuantize;
  unfused.device_type = DeviceType::kCuda;
  unfused.min_cc = 80;
  unfused.max_cc = 121;
  unfused.compiled_archs = {"80"};
  unfused.configs = {{"default", 0, 0, 0, 1, 256}};
  unfused.smem_bytes = [](const KernelConfig&) -> int64_t { return 0; };
  unfused.fallback = true;
  r.add(unfused);

  KernelVariant gemm;
  gemm.name = "test_sm90_gemm";
  gemm.op = OpKind::kGemm;
  gemm.device_type = DeviceType::kCuda;
  gemm.min_cc = 90;
  gemm.max_cc = 121;
  gemm.compiled_archs = {"90a"};  // an 'a' image: runs on sm_90 only
  gemm.configs = {{"128x128x64_s4", 128, 128, 64, 4, 384}, {"128x64x64_s2", 128, 64, 64, 2, 256}};
  gemm.smem_bytes = [](const KernelConfig& c) -> int64_t { return int64_t{c.stages} * (c.tile_m + c.tile_n) * c.tile_k; };
  r.add(gemm);

  KernelVariant amax;
  amax.name = "test_amax";
  amax.op = OpKind::kAmax;
  amax.device_type = DeviceType::kCuda;
  amax.min_cc = 80;
  amax.max_cc = 121;
  amax.compiled_archs = {"80"};
  amax.configs = {{"default", 0, 0, 0, 1, 256}};
  amax.smem_bytes = [](const KernelConfig&) -> int64_t { return 1024; };
  r.add(amax);
  return r;
}

Problem quantize_problem(int64_t rows, int64_t cols, const QuantParams& p) {
  Problem pr;
  pr.op = OpKind::kQuantize;
  pr.rows = rows;
  pr.cols = cols;
  pr.in_dtype = DType::kBF16;
  pr.params = p;
  return pr;
}

DispatchSettings budget(int64_t bytes) {
  DispatchSettings s;
  s.smem_budget = bytes;
  return s;
}

TEST(Profiles, PublishedLimits) {
  struct Want { const char* name; int cc; int64_t optin; };
  const Want want[] = {{"sm_80", 80, 166912}, {"sm_89", 89, 101376}, {"sm_90", 90, 232448}, {"sm_100", 100, 232448},
                       {"sm_103", 103, 232448}, {"sm_120", 120, 101376}, {"sm_121", 121, 101376}};
  ASSERT_EQ(device_profiles().size(), std::size(want));
  for (const Want& w : want) {
    const DeviceInfo d = device_profile(w.name);
    EXPECT_EQ(d.compute_capability(), w.cc) << w.name;
    EXPECT_EQ(d.smem_per_block_optin, w.optin) << w.name;
    EXPECT_EQ(d.smem_per_block, 49152) << w.name;
    EXPECT_GT(d.sm_count, 0);
    EXPECT_GT(d.l2_bytes, 0);
    EXPECT_NE(d.label().find(w.name), std::string::npos);
  }
  try {
    device_profile("sm_999");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(e.hint().find("sm_121"), std::string::npos);
  }
}

TEST(Selection, NeverInfeasibleOverEveryProfileShapeAndRecipe) {
  const Registry reg = test_registry();
  std::vector<DeviceInfo> devices = device_profiles();
  devices.push_back(query_device({}));  // the CPU
  std::vector<Recipe> recipes(3);
  recipes[1].disable_rht = recipes[1].disable_2d_quantization = true;
  recipes[2].disable_rht = recipes[2].disable_2d_quantization = recipes[2].disable_stochastic_rounding = true;
  recipes[2].row_scaled_activation = true;
  const int64_t shapes[][2] = {{1, 16}, {17, 32}, {128, 128}, {1000, 4096}, {4096, 14336}, {8192, 11328}};
  for (const DeviceInfo& d : devices) {
    for (int64_t b : {int64_t{0}, int64_t{101376}, int64_t{65536}, int64_t{32768}}) {
      const DispatchSettings s = b ? budget(b) : DispatchSettings{};
      const int64_t limit = smem_budget(d, s);
      for (const Recipe& r : recipes) {
        for (int role = 0; role < kNumOperandRoles; ++role) {
          for (const auto& shape : shapes) {
            const Problem p = quantize_problem(shape[0], shape[1], r.params(static_cast<OperandRole>(role)));
            const Selection sel = select_kernel(reg, p, d, s);
            ASSERT_TRUE(sel.ok()) << p.describe() << " on " << d.label();  // the fallback always fits
            EXPECT_EQ(sel.variant->device_type, d.type);
            if (d.is_cuda()) {
              EXPECT_LE(sel.smem_bytes, limit) << p.describe() << " on " << d.label();
              EXPECT_GE(d.compute_capability(), sel.variant->min_cc);
              EXPECT_LE(d.compute_capability(), sel.variant->max_cc);
              EXPECT_TRUE(detail::image_runs_on(sel.variant->compiled_archs, d.compute_capability()));
            }
            if (sel.variant->check_problem) {
              EXPECT_EQ(sel.variant->check_problem(p), "");
            }
            const Selection again = select_kernel(reg, p, d, s);  // deterministic
            EXPECT_EQ(again.variant, sel.variant);
            EXPECT_EQ(again.config.name, sel.config.name);
          }
        }
      }
    }
  }
}

TEST(Selection, ConfigurationFollowsTheBudget) {
  const Registry reg = test_registry();
  const Problem p = quantize_problem(4096, 4096, QuantParams{});
  const Selection h100 = select_kernel(reg, p, device_profile("sm_90"), {});
  ASSERT_TRUE(h100.ok());
  EXPECT_EQ(h100.variant->name, "test_fused_quantize");
  EXPECT_EQ(h100.config.name, "s4");  // 184320 B fits 232448 B: the deepest pipeline
  const Selection rtx = select_kernel(reg, p, device_profile("sm_120"), {});
  EXPECT_EQ(rtx.config.name, "s2");  // 94208 B fits 101376 B; s4 does not
  EXPECT_EQ(rtx.smem_bytes, 94208);
  // The H100 capped to the RTX budget runs exactly what the RTX runs.
  const Selection capped = select_kernel(reg, p, device_profile("sm_90"), budget(101376));
  EXPECT_EQ(capped.variant, rtx.variant);
  EXPECT_EQ(capped.config.name, rtx.config.name);
  const Selection small = select_kernel(reg, p, device_profile("sm_90"), budget(65536));
  EXPECT_EQ(small.config.name, "s1");
  // Below every fused configuration: the unfused fallback, with each fused config's reason.
  const Selection tiny = select_kernel(reg, p, device_profile("sm_90"), budget(32768));
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny.variant->name, "test_unfused_quantize");
  int budget_rejections = 0;
  for (const Rejection& r : tiny.rejected) {
    if (r.variant == "test_fused_quantize") {
      EXPECT_NE(r.reason.find("the budget is 32768 B (FP4KIT_SMEM_BUDGET=32768)"), std::string::npos) << r.reason;
      ++budget_rejections;
    }
  }
  EXPECT_EQ(budget_rejections, 3);
  EXPECT_NE(explain(tiny, p, device_profile("sm_90")).find("test_unfused_quantize"), std::string::npos);
}

TEST(Selection, MissingImageNamesTheRebuildOption) {
  const Registry reg = test_registry();
  Problem g;
  g.op = OpKind::kGemm;
  g.rows = g.cols = g.k = 4096;
  const Selection on_h100 = select_kernel(reg, g, device_profile("sm_90"), {});
  ASSERT_TRUE(on_h100.ok());
  EXPECT_EQ(on_h100.config.name, "128x128x64_s4");
  const Selection on_rtx = select_kernel(reg, g, device_profile("sm_120"), {});
  EXPECT_FALSE(on_rtx.ok());
  bool found = false;
  for (const Rejection& r : on_rtx.rejected) {
    if (r.variant != "test_sm90_gemm") continue;
    found = true;
    EXPECT_NE(r.reason.find("no image for sm_120"), std::string::npos) << r.reason;
    EXPECT_NE(r.reason.find("-DCMAKE_CUDA_ARCHITECTURES=\"90a;120\""), std::string::npos) << r.reason;
  }
  EXPECT_TRUE(found);
  const Selection on_a100 = select_kernel(reg, g, device_profile("sm_80"), {});
  EXPECT_FALSE(on_a100.ok());
  EXPECT_NE(explain(on_a100, g, device_profile("sm_80")).find("needs compute capability 9.0"), std::string::npos);
}

TEST(Selection, ImageRules) {
  EXPECT_TRUE(detail::image_runs_on({"80"}, 80));
  EXPECT_TRUE(detail::image_runs_on({"80"}, 120));  // PTX runs forward
  EXPECT_FALSE(detail::image_runs_on({"90"}, 89));
  EXPECT_TRUE(detail::image_runs_on({"90a"}, 90));
  EXPECT_FALSE(detail::image_runs_on({"90a"}, 100));
  EXPECT_FALSE(detail::image_runs_on({}, 90));
}

TEST(Selection, ForcedKernels) {
  const Registry reg = test_registry();
  const Problem p = quantize_problem(4096, 4096, QuantParams{});
  DispatchSettings s;
  s.force_kernel = "test_unfused_quantize";  // feasible, ranked lower
  const Selection forced = select_kernel(reg, p, device_profile("sm_90"), s);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced.variant->name, "test_unfused_quantize");
  EXPECT_TRUE(forced.forced);
  s.force_kernel = "test_fused_quantize";  // infeasible under this budget
  s.smem_budget = 32768;
  try {
    select_kernel(reg, p, device_profile("sm_90"), s);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(e.message().find("needs"), std::string::npos) << e.message();
    EXPECT_NE(e.hint().find("FP4KIT_FORCE_KERNEL"), std::string::npos);
  }
  s = {};
  s.force_kernel = "no_such_kernel";
  try {
    select_kernel(reg, p, device_profile("sm_90"), s);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(e.hint().find("test_fused_quantize"), std::string::npos);
  }
  // A variant of another operation forces nothing here.
  s.force_kernel = "test_sm90_gemm";
  EXPECT_EQ(select_kernel(reg, p, device_profile("sm_90"), s).variant->name, "test_fused_quantize");
}

TEST(RecipeSupport, FallbackUnsupportedAndStrict) {
  Registry reg = test_registry();
  const Recipe recipe;  // RHT, SR, 2D on
  // sm_120 capped at 32 KiB: even the RHT cast's smallest configuration (48 KiB) does not fit,
  // so only the unfused fallback serves the RHT features.
  SupportReport r = check_recipe_support(recipe, device_profile("sm_120"), reg, budget(32768));
  bool saw_rht = false;
  for (const FeatureSupport& f : r.features) {
    if (f.feature.find("rht") != std::string::npos) {
      saw_rht = true;
      EXPECT_EQ(f.level, SupportLevel::kFallback) << f.feature;
      EXPECT_EQ(f.variant, "test_unfused_quantize");
      EXPECT_NE(f.fix.find("disable_rht=true"), std::string::npos) << f.fix;
    }
    if (f.feature.find("gemm") != std::string::npos) {
      EXPECT_EQ(f.level, SupportLevel::kUnsupported);  // the test GEMM has no sm_120 image
      EXPECT_NE(f.fix.find("rebuild with"), std::string::npos) << f.fix;
    }
  }
  EXPECT_TRUE(saw_rht);
  EXPECT_FALSE(r.all_supported());
  EXPECT_TRUE(r.any_unsupported());
  try {
    check_recipe_support(recipe, device_profile("sm_120"), reg, budget(32768), 4096, 4096, 4096, true);
    ADD_FAILURE() << "strict mode must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(e.message().find("sm_120"), std::string::npos) << e.message();
    EXPECT_FALSE(e.hint().empty());
  }
  // On the CPU the reference serves every feature of every recipe.
  Recipe rs;
  rs.disable_rht = rs.disable_2d_quantization = rs.disable_stochastic_rounding = rs.row_scaled_activation = true;
  for (const Recipe& rec : {Recipe{}, rs}) {
    const SupportReport cpu = check_recipe_support(rec, query_device({}), Registry::builtin(), {});
    EXPECT_TRUE(cpu.all_supported()) << cpu.describe();
  }
  // On a GPU profile, the built-in registry of this build says plainly what is missing.
  const SupportReport gpu = check_recipe_support(recipe, device_profile("sm_90"), Registry::builtin(), {});
  for (const FeatureSupport& f : gpu.features) {
    if (f.level == SupportLevel::kUnsupported) {
      EXPECT_FALSE(f.fix.empty()) << f.feature;
    }
  }
}

TEST(Context, SettingsFromEnvironmentAndCaching) {
  setenv("FP4KIT_SMEM_BUDGET", "65536", 1);
  setenv("FP4KIT_LOG_LEVEL", "debug", 1);
  setenv("FP4KIT_PRINT_CONFIG", "1", 1);
  const DispatchSettings s = DispatchSettings::from_env();
  EXPECT_EQ(*s.smem_budget, 65536);
  EXPECT_EQ(s.log_level, LogLevel::kDebug);
  EXPECT_TRUE(s.print_config);
  setenv("FP4KIT_LOG_LEVEL", "loud", 1);
  EXPECT_THROW(DispatchSettings::from_env(), Error);
  setenv("FP4KIT_SMEM_BUDGET", "64k", 1);
  EXPECT_THROW(DispatchSettings::from_env(), Error);
  unsetenv("FP4KIT_SMEM_BUDGET");
  unsetenv("FP4KIT_LOG_LEVEL");
  unsetenv("FP4KIT_PRINT_CONFIG");

  Context ctx(s, test_registry());
  const DeviceInfo& a = ctx.device({});
  EXPECT_EQ(&a, &ctx.device({}));  // queried once, cached
  EXPECT_FALSE(a.name.empty());
  // PRINT_CONFIG prints each distinct selection once.
  const Problem p = quantize_problem(64, 64, QuantParams{});
  testing::internal::CaptureStderr();
  ctx.select(p, a);
  ctx.select(p, a);
  const std::string printed = testing::internal::GetCapturedStderr();
  const std::string chosen = "chosen    ref_quantize";
  EXPECT_NE(printed.find(chosen), std::string::npos) << printed;
  EXPECT_EQ(printed.find(chosen), printed.rfind(chosen)) << printed;
  // Warn once about an unsupported feature.
  testing::internal::CaptureStderr();
  ctx.check_recipe_support(Recipe{}, device_profile("sm_120"));
  ctx.check_recipe_support(Recipe{}, device_profile("sm_120"));
  const std::string warned = testing::internal::GetCapturedStderr();
  const std::string line = "gemm fprop (activation x weight) on profile sm_120";
  EXPECT_NE(warned.find(line), std::string::npos) << warned;
  EXPECT_EQ(warned.find(line), warned.rfind(line)) << warned;
}

TEST(Context, OperationsRunThroughTheTargetsContext) {
  test::HostMatrix x(4, 32, test::normals(128, 1));
  DispatchSettings s;
  s.force_kernel = "ref_quantize";
  Context ctx(s, Registry::builtin());
  EXPECT_NO_THROW(quantize(x.view(), QuantParams{}, Target::cpu(&ctx)));
  s.force_kernel = "test_fused_quantize";  // a CUDA kernel forced on the CPU target
  Context gpu_only(s, test_registry());
  try {
    quantize(x.view(), QuantParams{}, Target::cpu(&gpu_only));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(e.message().find("is a CUDA kernel"), std::string::npos) << e.message();
  }
}

TEST(BuiltinRegistry, CpuServesEveryOperationAndGpuProfilesSayWhy) {
  const Registry reg = Registry::builtin();
  const DeviceInfo cpu = query_device({});
  for (OpKind op : {OpKind::kAmax, OpKind::kQuantize, OpKind::kDequantize, OpKind::kHadamard, OpKind::kSwizzle,
                    OpKind::kGemm}) {
    Problem p;
    p.op = op;
    p.rows = p.cols = p.k = 256;
    const Selection s = select_kernel(reg, p, cpu, {});
    ASSERT_TRUE(s.ok()) << op_name(op);
    EXPECT_EQ(s.variant->name, std::string("ref_") + op_name(op));
    for (const DeviceInfo& d : device_profiles()) {
      const Selection g = select_kernel(reg, p, d, {});
      if (g.ok()) {
        EXPECT_EQ(g.variant->device_type, DeviceType::kCuda);
        EXPECT_LE(g.smem_bytes, d.smem_per_block_optin);
      } else {
        ASSERT_FALSE(g.rejected.empty());
      }
    }
  }
}

}  // namespace
}  // namespace fp4kit
