// The kernel registry and the pure selection function (ARCHITECTURE.md, "Dispatch").
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/env.hpp"
#include "dispatch/variants.hpp"
#include "fp4kit/dispatch.hpp"

namespace fp4kit {

using detail::cat;
using detail::fail;

const char* op_name(OpKind op) noexcept {
  switch (op) {
    case OpKind::kAmax: return "amax";
    case OpKind::kQuantize: return "quantize";
    case OpKind::kDequantize: return "dequantize";
    case OpKind::kHadamard: return "hadamard";
    case OpKind::kSwizzle: return "swizzle";
    case OpKind::kGemm: return "gemm";
  }
  return "unknown";
}

std::string Problem::describe() const {
  std::string s;
  if (op == OpKind::kGemm) {
    s = cat("gemm M=", rows, " N=", cols, " K=", k, " A=", a_nvfp4 ? (a_row_scaled ? "nvfp4 row-scaled" : "nvfp4") : dtype_name(in_dtype),
            " B=", b_nvfp4 ? (b_2d ? "nvfp4 2d" : "nvfp4") : "dense", " -> ", dtype_name(out_dtype));
    return s;
  }
  s = cat(op_name(op), " ", dtype_name(in_dtype), "[", rows, ", ", cols, "]");
  if (op == OpKind::kQuantize || op == OpKind::kDequantize) {
    s += cat(" ", direction_name(params.direction), params.block == BlockScaling::k2D ? " 2d" : " 1d",
             params.rounding == Rounding::kStochastic ? " sr" : " rne", params.rht ? " rht" : "",
             params.row_scaled ? " row-scaled" : "");
  }
  if (op == OpKind::kDequantize) s += cat(" -> ", dtype_name(out_dtype));
  return s;
}

DispatchSettings DispatchSettings::from_env() {
  DispatchSettings s;
  if (auto v = detail::env_uint("FP4KIT_SMEM_BUDGET", INT64_MAX)) s.smem_budget = static_cast<int64_t>(*v);
  if (auto v = detail::env_string("FP4KIT_FORCE_KERNEL")) s.force_kernel = *v;
  if (auto v = detail::env_bool("FP4KIT_PRINT_CONFIG")) s.print_config = *v;
  if (auto v = detail::env_string("FP4KIT_LOG_LEVEL")) {
    const std::string names[] = {"error", "warn", "info", "debug"};
    const auto it = std::find(std::begin(names), std::end(names), *v);
    if (it == std::end(names)) {
      fail(ErrorCode::kInvalidArgument, cat("environment variable FP4KIT_LOG_LEVEL='", *v, "' is not a log level"),
           "use error, warn, info or debug");
    }
    s.log_level = static_cast<LogLevel>(it - std::begin(names));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

Registry Registry::builtin() {
  Registry r;
  detail::register_reference_variants(r);
  detail::register_cuda_variants(r);
  return r;
}

void Registry::add(KernelVariant variant) {
  if (find(variant.name) != nullptr) fail(ErrorCode::kInternal, cat("kernel variant '", variant.name, "' registered twice"));
  if (variant.configs.empty()) fail(ErrorCode::kInternal, cat("kernel variant '", variant.name, "' has no configuration"));
  variants_.push_back(std::move(variant));
}

const KernelVariant* Registry::find(const std::string& name) const noexcept {
  for (const KernelVariant& v : variants_) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

int64_t smem_budget(const DeviceInfo& device, const DispatchSettings& settings) {
  int64_t budget = device.smem_per_block_optin;
  if (settings.smem_budget && *settings.smem_budget < budget) budget = *settings.smem_budget;
  return budget;
}

namespace {

std::string budget_source(const DeviceInfo& device, const DispatchSettings& settings) {
  if (settings.smem_budget && *settings.smem_budget < device.smem_per_block_optin) {
    return cat("FP4KIT_SMEM_BUDGET=", *settings.smem_budget);
  }
  return "the device's opt-in limit";
}

std::string version_text(int v) { return cat(v / 1000, ".", (v % 1000) / 10); }

// cublasLtGetVersion() is 10000*major + 100*minor + patch: 120800 -> "12.8.0 (120800)".
std::string cublaslt_text(int64_t v) { return cat(v / 10000, ".", v / 100 % 100, ".", v % 100, " (", v, ")"); }

// Why a whole variant cannot serve this problem on this device ("" when it can). Order: device
// kind, capability, compiled image, versions, then the variant's own problem rules.
std::string reject_variant(const KernelVariant& v, const Problem& p, const DeviceInfo& device) {
  if (v.device_type != device.type) {
    return v.device_type == DeviceType::kCpu ? "runs on the CPU, not on a CUDA device"
                                             : "is a CUDA kernel; the target is the CPU";
  }
  if (v.device_type == DeviceType::kCuda) {
    const int cc = device.compute_capability();
    if (cc < v.min_cc || cc > v.max_cc) {
      return cat("needs compute capability ", v.min_cc / 10, ".", v.min_cc % 10, " to ", v.max_cc / 10, ".",
                 v.max_cc % 10, "; ", device.label(), " is ", device.cc_major, ".", device.cc_minor);
    }
    if (v.compiled_archs.empty()) {
      return cat("this build compiled no image of it (an architecture-specific kernel): rebuild with sm_", cc,
                 "'s 'a' architecture in CMAKE_CUDA_ARCHITECTURES (e.g. ", cc, "a)");
    }
    if (!detail::image_runs_on(v.compiled_archs, cc)) {
      return cat("no image for sm_", cc, " in this build (compiled for ", detail::join(v.compiled_archs, ";"),
                 "; an 'a' architecture runs only on its exact GPU): rebuild with -DCMAKE_CUDA_ARCHITECTURES=\"",
                 detail::join(v.compiled_archs, ";"), ";", cc, "\"");
    }
    if (device.profile.empty() && v.check_image) {
      if (std::string why = v.check_image(device); !why.empty()) return why;
    }
    // A real device's versions are those loaded. A profile is planned with this build's toolkit,
    // unless it states a version (non-zero) to plan for: then that one is checked.
    const bool real = device.profile.empty();
    if (v.min_runtime && (real || device.runtime_version) && device.runtime_version < v.min_runtime) {
      return cat("needs CUDA runtime >= ", version_text(v.min_runtime), ", loaded is ", version_text(device.runtime_version));
    }
    if (v.min_driver && (real || device.driver_version) && device.driver_version < v.min_driver) {
      return cat("needs a driver supporting CUDA >= ", version_text(v.min_driver), ", it supports ",
                 version_text(device.driver_version), ": update the NVIDIA driver");
    }
    if (v.min_cublaslt && (real || device.cublaslt_version) && device.cublaslt_version < v.min_cublaslt) {
      return cat("needs cuBLASLt >= ", cublaslt_text(v.min_cublaslt), ", ", real ? "loaded is " : "the profile has ",
                 cublaslt_text(device.cublaslt_version), ": put a newer libcublasLt first on the library path");
    }
  }
  if (v.check_problem) return v.check_problem(p);
  return {};
}

struct Candidate {
  const KernelVariant* variant;
  const KernelConfig* config;
  int64_t smem;
};

// The ranking. Returns the rule that puts a before b, or "" when neither comes first.
const char* precedes(const Candidate& a, const Candidate& b, bool* a_first) {
  // A fallback runs only when no preferred path fits.
  if (a.variant->fallback != b.variant->fallback) {
    *a_first = !a.variant->fallback;
    return "a preferred path beats a fallback";
  }
  // Specialized kernels before generic ones.
  if (a.variant->priority != b.variant->priority) {
    *a_first = a.variant->priority > b.variant->priority;
    return "the more specialized variant (higher priority) wins";
  }
  if (a.variant == b.variant) {
    // The deepest pipeline that fits hides the most memory latency...
    if (a.config->stages != b.config->stages) {
      *a_first = a.config->stages > b.config->stages;
      return "the deepest pipeline that fits the budget wins";
    }
    // ...then the larger tile, which reuses each loaded byte more.
    const int64_t area_a = int64_t{a.config->tile_m} * a.config->tile_n, area_b = int64_t{b.config->tile_m} * b.config->tile_n;
    if (area_a != area_b) {
      *a_first = area_a > area_b;
      return "the larger tile that fits the budget wins";
    }
  }
  // Deterministic tie-break: names.
  if (a.variant->name != b.variant->name) {
    *a_first = a.variant->name < b.variant->name;
    return "tie broken by variant name";
  }
  *a_first = a.config->name < b.config->name;
  return a.config->name != b.config->name ? "tie broken by configuration name" : "";
}

}  // namespace

Selection select_kernel(const Registry& registry, const Problem& problem, const DeviceInfo& device,
                        const DispatchSettings& settings) {
  Selection sel;
  sel.smem_budget = smem_budget(device, settings);
  const std::string source = budget_source(device, settings);
  std::vector<Candidate> candidates;
  const KernelVariant* forced = nullptr;
  if (!settings.force_kernel.empty()) {
    forced = registry.find(settings.force_kernel);
    if (forced == nullptr) {
      std::string names;
      for (const KernelVariant& v : registry.variants()) names += cat(names.empty() ? "" : ", ", v.name);
      fail(ErrorCode::kInvalidArgument, cat("FP4KIT_FORCE_KERNEL='", settings.force_kernel, "' names no kernel variant"),
           cat("known variants: ", names));
    }
    if (forced->op != problem.op) forced = nullptr;  // it forces another operation's choice
  }
  for (const KernelVariant& v : registry.variants()) {
    if (v.op != problem.op) continue;
    if (forced && &v != forced) {
      sel.rejected.push_back({v.name, "", cat("FP4KIT_FORCE_KERNEL=", forced->name)});
      continue;
    }
    if (std::string why = reject_variant(v, problem, device); !why.empty()) {
      sel.rejected.push_back({v.name, "", why});
      continue;
    }
    for (const KernelConfig& c : v.configs) {
      const int64_t smem = v.smem_bytes ? v.smem_bytes(c) : 0;
      if (v.device_type == DeviceType::kCuda && smem > sel.smem_budget) {
        sel.rejected.push_back({v.name, c.name, cat("needs ", smem, " B of shared memory; the budget is ", sel.smem_budget,
                                                    " B (", source, ")")});
        continue;
      }
      candidates.push_back({&v, &c, smem});
    }
  }
  if (forced && candidates.empty()) {
    std::string reasons;
    for (const Rejection& r : sel.rejected) {
      if (r.variant == forced->name) reasons += cat(reasons.empty() ? "" : "; ", r.config.empty() ? "" : r.config + ": ", r.reason);
    }
    fail(ErrorCode::kUnsupported,
         cat("FP4KIT_FORCE_KERNEL=", forced->name, " cannot run ", problem.describe(), " on ", device.label(), ": ", reasons),
         "unset FP4KIT_FORCE_KERNEL, or force a variant that fits (see `fp4kit info`)");
  }
  if (candidates.empty()) return sel;
  std::stable_sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    bool a_first = false;
    const char* rule = precedes(a, b, &a_first);
    return rule[0] != '\0' && a_first;
  });
  const Candidate& best = candidates.front();
  sel.variant = best.variant;
  sel.config = *best.config;
  sel.smem_bytes = best.smem;
  sel.forced = forced != nullptr;
  if (candidates.size() == 1) {
    sel.why = sel.forced ? "forced by FP4KIT_FORCE_KERNEL" : "the only feasible candidate";
  } else {
    bool unused = false;
    sel.why = precedes(best, candidates[1], &unused);
    if (sel.forced) sel.why = cat("forced by FP4KIT_FORCE_KERNEL; ", sel.why);
    // Feasible but ranked lower: listed so that `fp4kit info` shows every candidate.
    for (size_t i = 1; i < candidates.size(); ++i) {
      bool a_first = false;
      sel.rejected.push_back({candidates[i].variant->name, candidates[i].config->name,
                              cat("feasible, ranked lower: ", precedes(best, candidates[i], &a_first))});
    }
  }
  return sel;
}

std::string explain(const Selection& s, const Problem& problem, const DeviceInfo& device) {
  std::string out = cat(problem.describe(), " on ", device.label(), "\n");
  if (s.ok()) {
    out += cat("  chosen    ", s.variant->name, " [", s.config.name, "]");
    if (s.variant->device_type == DeviceType::kCuda) {
      out += cat(", ", s.smem_bytes, " B shared memory of a ", s.smem_budget, " B budget");
    }
    out += cat(": ", s.why, "\n");
  } else {
    out += "  chosen    nothing feasible\n";
  }
  for (const Rejection& r : s.rejected) {
    out += cat("  rejected  ", r.variant, r.config.empty() ? "" : " [" + r.config + "]", ": ", r.reason, "\n");
  }
  return out;
}

}  // namespace fp4kit
