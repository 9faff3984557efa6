// check_recipe_support: before any launch, every feature the recipe uses is matched to the variant
// that would serve it on the device, so a missing path is a sentence naming the device, the limit
// and the fix, never a raw CUDA error deep in a kernel (shared/seeds/000).
#include <string>
#include <vector>

#include "core/check.hpp"
#include "fp4kit/dispatch.hpp"

namespace fp4kit {

using detail::cat;

const char* support_level_name(SupportLevel level) noexcept {
  switch (level) {
    case SupportLevel::kSupported: return "supported";
    case SupportLevel::kFallback: return "fallback";
    case SupportLevel::kUnsupported: return "unsupported";
  }
  return "unknown";
}

bool SupportReport::all_supported() const noexcept {
  for (const FeatureSupport& f : features) {
    if (f.level != SupportLevel::kSupported) return false;
  }
  return true;
}

bool SupportReport::any_unsupported() const noexcept {
  for (const FeatureSupport& f : features) {
    if (f.level == SupportLevel::kUnsupported) return true;
  }
  return false;
}

std::string SupportReport::describe() const {
  std::string out = cat("recipe support on ", device, "\n");
  for (const FeatureSupport& f : features) {
    out += cat("  ", f.feature, ": ", support_level_name(f.level), f.variant.empty() ? "" : " (" + f.variant + ")");
    if (!f.detail.empty()) out += cat(": ", f.detail);
    if (!f.fix.empty()) out += cat("\n      fix: ", f.fix);
    out += "\n";
  }
  return out;
}

namespace {

struct Feature {
  std::string name;
  Problem problem;
  // The recipe field that turns the feature off, when the feature is optional ("" otherwise).
  const char* recipe_fix;
};

Problem quantize_problem(int64_t rows, int64_t cols, const QuantParams& params) {
  Problem p;
  p.op = OpKind::kQuantize;
  p.rows = rows;
  p.cols = cols;
  p.in_dtype = DType::kBF16;
  p.params = params;
  return p;
}

Problem gemm_problem(int64_t m, int64_t n, int64_t k, bool a_row_scaled, bool b_2d) {
  Problem p;
  p.op = OpKind::kGemm;
  p.rows = m;
  p.cols = n;
  p.k = k;
  p.in_dtype = DType::kU8;
  p.out_dtype = DType::kBF16;
  p.a_row_scaled = a_row_scaled;
  p.b_2d = b_2d;
  return p;
}

std::vector<Feature> recipe_features(const Recipe& r, int64_t m, int64_t n, int64_t k) {
  std::vector<Feature> f;
  Problem amax;
  amax.op = OpKind::kAmax;
  amax.rows = m;
  amax.cols = k;
  amax.in_dtype = DType::kBF16;
  f.push_back({"amax (activations)", amax, ""});
  const QuantParams in = r.params(OperandRole::kFpropInput);
  f.push_back({r.row_scaled_activation ? "quantize row-scaled (fprop input)" : "quantize 1d (fprop input)",
               quantize_problem(m, k, in),
               r.row_scaled_activation ? "row_scaled_activation=false (FP4KIT_NVFP4_ROW_SCALED_ACTIVATION=0)" : ""});
  const bool two_d = !r.disable_2d_quantization;
  const char* twod_fix = two_d ? "disable_2d_quantization=true (FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION=1)" : "";
  f.push_back({two_d ? "quantize 2d (weight)" : "quantize 1d (weight)", quantize_problem(n, k, r.params(OperandRole::kFpropWeight)),
               twod_fix});
  f.push_back({two_d ? "quantize 2d columnwise (dgrad weight)" : "quantize 1d columnwise (dgrad weight)",
               quantize_problem(n, k, r.params(OperandRole::kDgradWeight)), twod_fix});
  const bool sr = !r.disable_stochastic_rounding;
  const char* sr_fix = sr ? "disable_stochastic_rounding=true (FP4KIT_NVFP4_DISABLE_STOCHASTIC_ROUNDING=1)" : "";
  f.push_back({sr ? "quantize sr (dgrad grad)" : "quantize 1d (dgrad grad)", quantize_problem(m, n, r.params(OperandRole::kDgradGrad)),
               sr_fix});
  const bool rht = !r.disable_rht;
  const char* rht_fix = rht ? "disable_rht=true (FP4KIT_NVFP4_DISABLE_RHT=1)" : "";
  f.push_back({rht ? "quantize rht columnwise (wgrad input)" : "quantize columnwise (wgrad input)",
               quantize_problem(m, k, r.params(OperandRole::kWgradInput)), rht_fix});
  f.push_back({rht ? (sr ? "quantize rht+sr columnwise (wgrad grad)" : "quantize rht columnwise (wgrad grad)")
                   : (sr ? "quantize sr columnwise (wgrad grad)" : "quantize columnwise (wgrad grad)"),
               quantize_problem(m, n, r.params(OperandRole::kWgradGrad)), rht ? rht_fix : sr_fix});
  const int64_t tokens = (m + 15) / 16 * 16;
  f.push_back({r.row_scaled_activation ? "gemm fprop (row-scaled x weight)" : "gemm fprop (activation x weight)",
               gemm_problem(m, n, k, r.row_scaled_activation, two_d), ""});
  f.push_back({"gemm dgrad (grad x weight^T)", gemm_problem(m, k, n, false, two_d), ""});
  f.push_back({"gemm wgrad (grad^T x activation)", gemm_problem(n, k, tokens, false, false), ""});
  return f;
}

// The one-line fix for an unsupported feature: turn an optional feature off in the recipe, or
// rebuild where the only obstacle was a missing image, or run on the CPU.
std::string fix_for(const Feature& f, const Selection& s, const DeviceInfo& device) {
  for (const Rejection& r : s.rejected) {
    if (r.reason.find("rebuild with") != std::string::npos) {
      return r.reason.substr(r.reason.find("rebuild with"));
    }
  }
  if (f.recipe_fix[0] != '\0') return cat("set ", f.recipe_fix);
  if (device.is_cuda()) return "no CUDA kernel for this operation is in this build yet: run on the CPU target";
  return "report this: the CPU reference should serve every feature";
}

std::string summarize(const Selection& s) {
  std::string out;
  for (const Rejection& r : s.rejected) {
    out += cat(out.empty() ? "" : "; ", r.variant, r.config.empty() ? "" : "[" + r.config + "]", " ", r.reason);
  }
  return out;
}

}  // namespace

SupportReport check_recipe_support(const Recipe& recipe, const DeviceInfo& device, const Registry& registry,
                                   const DispatchSettings& settings, int64_t m, int64_t n, int64_t k, bool strict) {
  recipe.validate();
  SupportReport report;
  report.device = device.label();
  for (const Feature& f : recipe_features(recipe, m, n, k)) {
    FeatureSupport fs;
    fs.feature = f.name;
    const Selection s = select_kernel(registry, f.problem, device, settings);
    if (!s.ok()) {
      fs.level = SupportLevel::kUnsupported;
      fs.detail = summarize(s);
      fs.fix = fix_for(f, s, device);
    } else {
      fs.variant = s.variant->name;
      if (s.variant->fallback) {
        fs.level = SupportLevel::kFallback;
        fs.detail = cat("the preferred paths are infeasible: ", summarize(s));
        if (f.recipe_fix[0] != '\0') fs.fix = cat("to avoid the fallback, set ", f.recipe_fix);
      }
    }
    report.features.push_back(std::move(fs));
  }
  if (strict) {
    for (const FeatureSupport& f : report.features) {
      if (f.level == SupportLevel::kSupported) continue;
      detail::fail(ErrorCode::kUnsupported,
                   cat("strict recipe check: ", f.feature, " is ", support_level_name(f.level), " on ", report.device,
                       f.detail.empty() ? "" : ": " + f.detail),
                   f.fix.empty() ? "drop strict mode to accept the fallback" : f.fix);
    }
  }
  return report;
}

}  // namespace fp4kit
