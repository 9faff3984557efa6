// Backend 4, Blackwell's native block-scaled FP4 GEMM through cuBLASLt ("sm100_gemm_cublaslt_nvfp4"),
// planned on device profiles: no Blackwell GPU is needed. Selected for NVFP4 x NVFP4 (1D x 1D and
// 1D x 2D) on sm_100-class profiles above every kernel that emulates FP4 (those must not win
// there); rejected with a reason naming the compute capability on Hopper, naming the version
// under a profile that states an older cuBLASLt, and naming the operand for a row-scaled or a dense
// (W4A16) A. `fp4kit info` lists it on those profiles.
//
// Selection on a profile needs an image for it in this build: the sm_100 cases skip, saying so, in
// a build for "90a" only (the project's default "80;90a" has one, through sm_80's PTX).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "dispatch/variants.hpp"
#include "fp4kit/dispatch.hpp"
#include "fp4kit/error.hpp"

namespace fp4kit {
namespace {

using Json = nlohmann::json;
using test::contains;

constexpr const char* kVariant = "sm100_gemm_cublaslt_nvfp4";
constexpr int64_t kMinCublasLt = 120800;  // cuBLAS 12.8: CUDA_R_4F_E2M1 with VEC16_UE4M3 scales

Problem gemm_problem(int64_t m, int64_t n, int64_t k, bool b_2d) {
  Problem p;
  p.op = OpKind::kGemm;
  p.rows = m;
  p.cols = n;
  p.k = k;
  p.in_dtype = DType::kU8;
  p.out_dtype = DType::kBF16;
  p.a_nvfp4 = true;
  p.b_2d = b_2d;
  return p;
}

// The rejection of `variant` in a selection ("" when it is not rejected).
std::string reason_for(const Selection& s, const std::string& variant) {
  for (const Rejection& r : s.rejected) {
    if (r.variant == variant) return r.reason.empty() ? "(empty reason)" : r.reason;
  }
  return "";
}

class Sm100CublasLtGemm : public ::testing::Test {
 protected:
  void SetUp() override {
    variant_ = registry_.find(kVariant);
    if (variant_ == nullptr) GTEST_SKIP() << "built without CUDA backends: no " << kVariant << " to select";
  }
  // Skips the test when this build has no image for the profile's capability.
  bool has_image(const DeviceInfo& d) const { return detail::image_runs_on(variant_->compiled_archs, d.compute_capability()); }

  const Registry registry_ = Registry::builtin();
  const KernelVariant* variant_ = nullptr;
};

TEST_F(Sm100CublasLtGemm, SpecNamesItsRequirements) {
  EXPECT_EQ(variant_->op, OpKind::kGemm);
  EXPECT_EQ(variant_->device_type, DeviceType::kCuda);
  EXPECT_EQ(variant_->min_cc, 100);
  EXPECT_GE(variant_->max_cc, 121);  // sm_103, sm_12x have block-scaled FP4 too; cuBLASLt's heuristic decides
  EXPECT_EQ(variant_->min_cublaslt, kMinCublasLt);
  EXPECT_FALSE(variant_->fallback);
  // Above every other GEMM variant of this build: native FP4 beats emulating it.
  for (const KernelVariant& v : registry_.variants()) {
    if (v.op == OpKind::kGemm && &v != variant_) {
      EXPECT_GT(variant_->priority, v.priority) << v.name;
    }
  }
  ASSERT_TRUE(variant_->check_problem);
  // The problem rules, independent of the device.
  EXPECT_EQ(variant_->check_problem(gemm_problem(4096, 4096, 4096, false)), "");
  EXPECT_EQ(variant_->check_problem(gemm_problem(1, 8192, 8192, true)), "");
  Problem row_scaled = gemm_problem(4096, 4096, 4096, false);
  row_scaled.a_row_scaled = true;
  EXPECT_TRUE(contains(variant_->check_problem(row_scaled), "row-scaled A"));
  Problem dense = gemm_problem(16, 4096, 4096, true);
  dense.a_nvfp4 = false;
  dense.in_dtype = DType::kBF16;
  EXPECT_TRUE(contains(variant_->check_problem(dense), "dense A (W4A16)"));
  EXPECT_TRUE(contains(variant_->check_problem(gemm_problem(64, 256, 48, false)), "needs K a multiple of 32"));
  EXPECT_TRUE(contains(variant_->check_problem(gemm_problem(64, 256, 48, false)), "K is 48"));
}

// On Blackwell profiles it serves NVFP4 x NVFP4, 1D x 1D and 1D x 2D, training and decode shapes;
// the sm_90a kernel is rejected by capability and every emulating kernel ranks below it.
TEST_F(Sm100CublasLtGemm, SelectedOnBlackwellProfiles) {
  for (const char* name : {"sm_100", "sm_103"}) {
    SCOPED_TRACE(name);
    const DeviceInfo device = device_profile(name);
    if (!has_image(device)) GTEST_SKIP() << "this build has no image for " << name << " (CMAKE_CUDA_ARCHITECTURES)";
    for (const bool b_2d : {false, true}) {
      for (const int64_t m : {int64_t{8192}, int64_t{64}, int64_t{1}}) {
        const Problem p = gemm_problem(m, 8192, 8192, b_2d);
        SCOPED_TRACE(p.describe());
        const Selection s = select_kernel(registry_, p, device, {});
        ASSERT_TRUE(s.ok()) << explain(s, p, device);
        EXPECT_EQ(s.variant->name, kVariant) << explain(s, p, device);
        EXPECT_LE(s.smem_bytes, s.smem_budget);
        for (const KernelVariant& v : registry_.variants()) {
          if (v.op != OpKind::kGemm || &v == variant_) continue;
          const std::string why = reason_for(s, v.name);
          EXPECT_FALSE(why.empty()) << v.name << " is neither chosen nor rejected";
        }
        if (registry_.find("sm90_gemm_nvfp4") != nullptr) {
          EXPECT_TRUE(contains(reason_for(s, "sm90_gemm_nvfp4"), "compute capability")) << explain(s, p, device);
        }
      }
    }
    // A profile that states exactly the minimum cuBLASLt is planned with it.
    DeviceInfo exact = device;
    exact.cublaslt_version = kMinCublasLt;
    const Selection s = select_kernel(registry_, gemm_problem(4096, 4096, 4096, true), exact, {});
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s.variant->name, kVariant);
  }
}

TEST_F(Sm100CublasLtGemm, RejectedOnHopperNamingTheComputeCapability) {
  const DeviceInfo h100 = device_profile("sm_90");
  const Problem p = gemm_problem(8192, 8192, 8192, true);
  const Selection s = select_kernel(registry_, p, h100, {});
  const std::string why = reason_for(s, kVariant);
  EXPECT_TRUE(contains(why, "needs compute capability 10.0")) << explain(s, p, h100);
  EXPECT_TRUE(contains(why, "is 9.0")) << why;
  if (s.ok()) {
    EXPECT_NE(s.variant->name, kVariant);
  }
  // Forcing it names the same reason.
  DispatchSettings forced;
  forced.force_kernel = kVariant;
  try {
    select_kernel(registry_, p, h100, forced);
    ADD_FAILURE() << "forcing " << kVariant << " on sm_90 must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_TRUE(contains(e.message(), "needs compute capability 10.0")) << e.message();
  }
}

TEST_F(Sm100CublasLtGemm, RejectedWithAnOldCublasLtNamingTheVersion) {
  DeviceInfo old = device_profile("sm_100");
  if (!has_image(old)) GTEST_SKIP() << "this build has no image for sm_100 (CMAKE_CUDA_ARCHITECTURES)";
  old.cublaslt_version = 120705;  // cuBLAS 12.7.5: before block-scaled FP4
  const Problem p = gemm_problem(4096, 4096, 4096, false);
  const Selection s = select_kernel(registry_, p, old, {});
  const std::string why = reason_for(s, kVariant);
  EXPECT_TRUE(contains(why, "needs cuBLASLt >= 12.8.0 (120800)")) << explain(s, p, old);
  EXPECT_TRUE(contains(why, "12.7.5 (120705)")) << why;
  if (s.ok()) {
    EXPECT_NE(s.variant->name, kVariant);
  }
}

// Row-scaled A (a per-row alpha) and a dense BF16 A go to the other backends, each with its reason.
TEST_F(Sm100CublasLtGemm, RowScaledAndDenseARejectedWithReasons) {
  const DeviceInfo b200 = device_profile("sm_100");
  if (!has_image(b200)) GTEST_SKIP() << "this build has no image for sm_100 (CMAKE_CUDA_ARCHITECTURES)";
  Problem row_scaled = gemm_problem(4096, 4096, 4096, true);
  row_scaled.a_row_scaled = true;
  Problem w4a16 = gemm_problem(16, 8192, 8192, false);
  w4a16.a_nvfp4 = false;
  w4a16.in_dtype = DType::kBF16;
  for (const auto& [p, piece] : {std::pair{row_scaled, "row-scaled A"}, std::pair{w4a16, "dense A (W4A16)"}}) {
    SCOPED_TRACE(p.describe());
    const Selection s = select_kernel(registry_, p, b200, {});
    EXPECT_TRUE(contains(reason_for(s, kVariant), piece)) << explain(s, p, b200);
    // Another backend serves it (the portable path runs on any CUDA GPU).
    ASSERT_TRUE(s.ok()) << explain(s, p, b200);
    EXPECT_NE(s.variant->name, kVariant);
  }
}

// `fp4kit info` on the profiles: the GEMM steps of the plan choose it on sm_100 and list it with the
// capability on sm_90.
TEST_F(Sm100CublasLtGemm, InfoListsItOnTheProfiles) {
  const auto gemm_steps = [](const std::string& profile) {
    const test::CliRun r = test::run_cli("info --json --profile " + profile, "sm100_gemm");
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<Json> steps;
    const Json j = Json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    if (j.is_discarded()) return steps;
    for (const Json& e : j["plan"]) {
      if (e["operation"] == "gemm") steps.push_back(e);
    }
    EXPECT_EQ(steps.size(), 3u);  // fprop, dgrad, wgrad
    return steps;
  };
  for (const Json& e : gemm_steps("sm_90")) {
    bool listed = false;
    for (const Json& r : e["rejected"]) {
      if (r["variant"] != kVariant) continue;
      listed = true;
      EXPECT_TRUE(contains(r["reason"].get<std::string>(), "needs compute capability 10.0")) << r.dump();
    }
    EXPECT_TRUE(listed) << e.dump(2);
  }
  if (!has_image(device_profile("sm_100"))) GTEST_SKIP() << "this build has no image for sm_100 (CMAKE_CUDA_ARCHITECTURES)";
  for (const Json& e : gemm_steps("sm_100")) {
    ASSERT_FALSE(e["selected"].is_null()) << e.dump(2);
    EXPECT_EQ(e["selected"]["variant"], kVariant) << e.dump(2);
  }
  const test::CliRun text = test::run_cli("info --profile sm_100", "sm100_gemm");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_TRUE(contains(text.out, kVariant));
}

}  // namespace
}  // namespace fp4kit
