// tools/cli/cmd_info.cpp: `fp4kit info`: a device, the kernels fp4kit would run on it for one linear
// layer, and whether the recipe is supported there.
//
// The device is a real one (--device N, or CUDA device 0 when present, else the CPU) or a named
// profile of a GPU we may not have (--profile sm_120: the plan an RTX PRO 6000 would run). The plan
// covers every operation of one training step of y[M, N] = x[M, K] W[N, K]^T: amax of x, the six
// operand quantizations of the recipe, the dequantization of x, and the three GEMMs. Each entry
// shows the chosen (variant, configuration) and every rejected one with its reason, exactly as
// fp4kit::Context::select decides at run time. --json prints the same as one JSON object whose
// fields docs/INFO_JSON.md documents (and keeps stable).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "format.hpp"
#include "fp4kit/dispatch.hpp"
#include "fp4kit/error.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/recipe.hpp"

namespace fp4kit::cli {

namespace {

using Json = nlohmann::ordered_json;  // key order as written: stable output

struct InfoArgs {
  int device = 0;
  std::string profile;
  bool list_profiles = false;
  bool json = false;
  std::string shape = "4096,4096,4096";
  bool strict = false;
  bool disable_rht = false;
  bool disable_sr = false;
  bool disable_2d = false;
  bool row_scaled = false;
  CLI::Option* device_option = nullptr;  // set when --device was given
};

// The layer y[M, N] = x[M, K] W[N, K]^T.
struct LayerShape {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
};

// Parses "M,N,K": three positive integers, N and K multiples of 16 (the NVFP4 block runs along
// K for x and W, and along N for dy in dgrad). Returns "" when valid, else the reason.
std::string parse_shape(const std::string& text, LayerShape& shape) {
  const std::string usage = "expected M,N,K (three positive integers, N and K multiples of 16) for the layer "
                            "y[M, N] = x[M, K] W[N, K]^T";
  std::vector<int64_t> dims;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() || v <= 0) {
      return usage + "; got '" + text + "' ('" + part + "' is not a positive integer)";
    }
    dims.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (dims.size() != 3) {
    return usage + "; got '" + text + "' (" + std::to_string(dims.size()) + " value" + (dims.size() == 1 ? "" : "s") +
           ", not 3)";
  }
  shape = {dims[0], dims[1], dims[2]};
  if (shape.n % 16 != 0 || shape.k % 16 != 0) {
    return usage + "; got '" + text + "' (" + (shape.n % 16 != 0 ? "N" : "K") + " = " +
           std::to_string(shape.n % 16 != 0 ? shape.n : shape.k) + " is not a multiple of 16)";
  }
  return {};
}

int64_t round_up(int64_t v, int64_t multiple) { return (v + multiple - 1) / multiple * multiple; }

// --- Formatting ------------------------------------------------------------------------------------

// Shared memory: the exact byte count first, "101376 B (99 KiB)".
std::string smem_text(int64_t bytes) {
  if (bytes <= 0) return "none";
  return std::to_string(bytes) + " B" + (bytes >= 1024 ? " (" + iec(bytes) + ")" : "");
}

std::string size_text(int64_t bytes) { return bytes <= 0 ? "none" : iec(bytes); }

// CUDA runtime/driver versions are 1000*major + 10*minor: 12080 -> "12.8".
std::string cuda_version_text(int v) {
  if (v <= 0) return "none";
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// cublasLtGetVersion() is 10000*major + 100*minor + patch: 120804 -> "12.8.4".
std::string cublaslt_version_text(int64_t v) {
  if (v <= 0) return "none";
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

const char* device_type_name(DeviceType t) { return t == DeviceType::kCuda ? "cuda" : "cpu"; }

// Left-aligned columns separated by two spaces; the last column is not padded.
class Table {
 public:
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const noexcept { return rows_.empty(); }
  std::string render(const std::string& indent) const {
    std::vector<std::size_t> width;
    for (const auto& row : rows_) {
      if (width.size() < row.size()) width.resize(row.size(), 0);
      for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    std::ostringstream os;
    for (const auto& row : rows_) {
      std::string line = indent;
      for (std::size_t c = 0; c < row.size(); ++c) {
        line += row[c];
        if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      os << line << "\n";
    }
    return os.str();
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// --- The device ----------------------------------------------------------------------------------

struct Budget {
  int64_t bytes = 0;
  bool from_env = false;  // FP4KIT_SMEM_BUDGET decided it (it is below the device's limit)
};

Budget budget_of(const DeviceInfo& device, const DispatchSettings& settings) {
  Budget b;
  b.bytes = smem_budget(device, settings);
  b.from_env = settings.smem_budget.has_value() && *settings.smem_budget == b.bytes &&
               b.bytes != device.smem_per_block_optin;
  return b;
}

DeviceInfo resolve_device(const InfoArgs& args, Context& ctx) {
  if (!args.profile.empty()) return device_profile(args.profile);
  if (args.device_option != nullptr && args.device_option->count() > 0) {
    return ctx.device({DeviceType::kCuda, args.device});
  }
  if (cuda_device_count() > 0) return ctx.device({DeviceType::kCuda, 0});
  return ctx.device({DeviceType::kCpu, 0});
}

Json device_json(const DeviceInfo& d) {
  Json j;
  j["type"] = device_type_name(d.type);
  j["index"] = d.index;
  j["name"] = d.name;
  j["profile"] = d.profile;
  j["cc_major"] = d.cc_major;
  j["cc_minor"] = d.cc_minor;
  j["sm_count"] = d.sm_count;
  j["smem_per_block"] = d.smem_per_block;
  j["smem_per_block_optin"] = d.smem_per_block_optin;
  j["smem_per_sm"] = d.smem_per_sm;
  j["l2_bytes"] = d.l2_bytes;
  j["global_memory_bytes"] = d.global_memory_bytes;
  j["runtime_version"] = d.runtime_version;
  j["driver_version"] = d.driver_version;
  j["cublaslt_version"] = d.cublaslt_version;
  j["label"] = d.label();
  j["compute_capability"] = d.compute_capability();
  return j;
}

std::string device_text(const DeviceInfo& d, const DispatchSettings& settings) {
  const Budget budget = budget_of(d, settings);
  Table t;
  if (d.is_cuda()) {
    t.add({"compute capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor) + " (sm_" +
                                     std::to_string(d.compute_capability()) + ")"});
    t.add({"multiprocessors", std::to_string(d.sm_count)});
  } else {
    t.add({"compute capability", "none (host processor)"});
    t.add({"hardware threads", std::to_string(d.sm_count)});
  }
  std::string source;
  if (budget.from_env) {
    source = "FP4KIT_SMEM_BUDGET caps it (the device allows " + smem_text(d.smem_per_block_optin) + ")";
  } else if (settings.smem_budget.has_value()) {
    source = "the device's opt-in limit (FP4KIT_SMEM_BUDGET=" + std::to_string(*settings.smem_budget) +
             " does not lower it)";
  } else {
    source = "the device's opt-in limit (FP4KIT_SMEM_BUDGET unset)";
  }
  if (d.is_cuda()) {
    t.add({"shared memory per block", smem_text(d.smem_per_block) + " default, " +
                                          smem_text(d.smem_per_block_optin) + " opt-in"});
    t.add({"shared memory per SM", smem_text(d.smem_per_sm)});
    t.add({"shared memory budget", smem_text(budget.bytes) + ": " + source});
    t.add({"L2 cache", size_text(d.l2_bytes)});
    t.add({"global memory", size_text(d.global_memory_bytes)});
  } else {
    t.add({"shared memory", "none (the CPU reference kernels use none)"});
  }
  t.add({"CUDA runtime", cuda_version_text(d.runtime_version)});
  t.add({"CUDA driver", cuda_version_text(d.driver_version)});
  t.add({"cuBLASLt", cublaslt_version_text(d.cublaslt_version)});
  return "Device  " + d.label() + "\n" + t.render("  ");
}

// --- The plan ------------------------------------------------------------------------------------

struct PlanStep {
  std::string label;                // "quantize fprop_input", "gemm fprop", ...
  std::optional<OperandRole> role;  // quantize and dequantize: the recipe role of the operand
  Problem problem;
  Selection selection;
};

// The problems of one training step of the layer, in the order they run. NOTE: tests/cpu/
// test_cli_info.cpp builds the same list independently and compares: change both together.
std::vector<PlanStep> build_plan(Context& ctx, const DeviceInfo& device, const Recipe& recipe, const LayerShape& s) {
  std::vector<PlanStep> plan;
  {
    PlanStep step{"amax x", std::nullopt, {}, {}};
    step.problem.op = OpKind::kAmax;
    step.problem.rows = s.m;
    step.problem.cols = s.k;
    step.problem.in_dtype = DType::kBF16;
    plan.push_back(step);
  }
  // Each role's source tensor: x[M, K], W[N, K] or dy[M, N].
  const struct {
    OperandRole role;
    int64_t rows;
    int64_t cols;
  } operands[] = {
      {OperandRole::kFpropInput, s.m, s.k}, {OperandRole::kFpropWeight, s.n, s.k},
      {OperandRole::kDgradGrad, s.m, s.n},  {OperandRole::kDgradWeight, s.n, s.k},
      {OperandRole::kWgradInput, s.m, s.k}, {OperandRole::kWgradGrad, s.m, s.n},
  };
  for (const auto& o : operands) {
    PlanStep step{std::string("quantize ") + role_name(o.role), o.role, {}, {}};
    step.problem.op = OpKind::kQuantize;
    step.problem.rows = o.rows;
    step.problem.cols = o.cols;
    step.problem.in_dtype = DType::kBF16;
    step.problem.params = recipe.params(o.role);
    plan.push_back(step);
  }
  {
    PlanStep step{"dequantize x", OperandRole::kFpropInput, {}, {}};
    step.problem.op = OpKind::kDequantize;
    step.problem.rows = s.m;
    step.problem.cols = s.k;
    step.problem.in_dtype = DType::kU8;
    step.problem.out_dtype = DType::kBF16;
    step.problem.params = recipe.params(OperandRole::kFpropInput);  // rowwise
    plan.push_back(step);
  }
  // The GEMMs D[rows, cols] = A[rows, k] B[cols, k]^T, both operands NVFP4, BF16 out.
  const struct {
    const char* label;
    int64_t rows;
    int64_t cols;
    int64_t k;
    bool a_row_scaled;
    bool b_2d;
  } gemms[] = {
      {"gemm fprop", s.m, s.n, s.k, recipe.row_scaled_activation, !recipe.disable_2d_quantization},  // y = x W^T
      {"gemm dgrad", s.m, s.k, s.n, false, !recipe.disable_2d_quantization},                         // dx = dy W
      {"gemm wgrad", s.n, s.k, round_up(s.m, 16), false, false},                                     // dW = dy^T x
  };
  for (const auto& g : gemms) {
    PlanStep step{g.label, std::nullopt, {}, {}};
    step.problem.op = OpKind::kGemm;
    step.problem.rows = g.rows;
    step.problem.cols = g.cols;
    step.problem.k = g.k;
    step.problem.in_dtype = DType::kU8;
    step.problem.out_dtype = DType::kBF16;
    step.problem.a_nvfp4 = true;
    step.problem.a_row_scaled = g.a_row_scaled;
    step.problem.b_2d = g.b_2d;
    plan.push_back(step);
  }
  for (PlanStep& step : plan) step.selection = ctx.select(step.problem, device);
  return plan;
}

Json config_json(const KernelConfig& c) {
  Json j;
  j["name"] = c.name;
  j["tile_m"] = c.tile_m;
  j["tile_n"] = c.tile_n;
  j["tile_k"] = c.tile_k;
  j["stages"] = c.stages;
  j["threads"] = c.threads;
  return j;
}

Json plan_json(const std::vector<PlanStep>& plan) {
  Json steps = Json::array();
  for (const PlanStep& step : plan) {
    const Selection& sel = step.selection;
    Json j;
    j["operation"] = op_name(step.problem.op);
    j["role"] = step.role ? Json(role_name(*step.role)) : Json(nullptr);
    j["label"] = step.label;
    j["problem"] = step.problem.describe();
    if (sel.ok()) {
      Json s;
      s["variant"] = sel.variant->name;
      s["config"] = config_json(sel.config);
      s["smem_bytes"] = sel.smem_bytes;
      s["smem_budget"] = sel.smem_budget;
      s["forced"] = sel.forced;
      s["why"] = sel.why;
      s["fallback"] = sel.variant->fallback;
      s["device_type"] = device_type_name(sel.variant->device_type);
      j["selected"] = s;
    } else {
      j["selected"] = nullptr;
    }
    Json rejected = Json::array();
    for (const Rejection& r : sel.rejected) {
      rejected.push_back({{"variant", r.variant}, {"config", r.config}, {"reason", r.reason}});
    }
    j["rejected"] = rejected;
    steps.push_back(j);
  }
  return steps;
}

// The rejections of one step, one line per (variant, reason), the configurations it covers listed:
// "sm90_gemm_nvfp4 [128x256x64_s4, 256x128x64_s4]: needs 245760 B of shared memory, budget 101376 B".
std::string rejected_text(const Selection& sel, const std::string& indent) {
  struct Group {
    std::string variant;
    std::vector<std::string> configs;  // empty: the whole variant
    std::string reason;
  };
  std::vector<Group> groups;
  for (const Rejection& r : sel.rejected) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.variant == r.variant && g.reason == r.reason && !g.configs.empty() && !r.config.empty();
    });
    if (it == groups.end()) {
      groups.push_back({r.variant, {}, r.reason});
      it = groups.end() - 1;
    }
    if (!r.config.empty()) it->configs.push_back(r.config);
  }
  // Not a table: the reasons are long and the configuration lists vary in length, so each reason
  // follows its own name.
  std::ostringstream os;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const Group& g = groups[i];
    os << indent << (i == 0 ? "rejected  " : "          ") << g.variant;
    if (!g.configs.empty()) {
      os << " [";
      for (std::size_t c = 0; c < g.configs.size(); ++c) os << (c ? ", " : "") << g.configs[c];
      os << "]";
    }
    os << ": " << g.reason << "\n";
  }
  return os.str();
}

// Problem::describe() without the leading operation name, which the step label already says.
std::string problem_text(const Problem& p) {
  const std::string s = p.describe();
  const std::string op = std::string(op_name(p.op)) + " ";
  return s.rfind(op, 0) == 0 ? s.substr(op.size()) : s;
}

std::string plan_text(const std::vector<PlanStep>& plan, const LayerShape& s, const Budget& budget) {
  std::ostringstream os;
  os << "Plan    y[" << s.m << ", " << s.n << "] = x[" << s.m << ", " << s.k << "] W[" << s.n << ", " << s.k
     << "]^T: " << plan.size() << " operations";
  if (budget.bytes > 0) os << ", shared memory budget " << smem_text(budget.bytes);
  os << "\n";
  // One table for the chosen kernels (aligned across steps), the rejections under each step.
  Table chosen;
  chosen.add({"step", "problem", "variant", "config", "smem", "why"});
  for (const PlanStep& step : plan) {
    const Selection& sel = step.selection;
    if (!sel.ok()) {
      chosen.add({step.label, problem_text(step.problem), "NOTHING FEASIBLE", "-", "-", "every candidate is rejected"});
      continue;
    }
    const KernelConfig& c = sel.config;
    std::string config = c.name.empty() ? "-" : c.name;
    if (c.threads > 0) config += " (" + std::to_string(c.threads) + " threads)";
    const std::string smem = sel.smem_bytes > 0 ? std::to_string(sel.smem_bytes) + " B" : "none";
    std::string why = sel.forced ? "forced by FP4KIT_FORCE_KERNEL" : sel.why;
    if (sel.variant->fallback) why = "fallback; " + why;
    chosen.add({step.label, problem_text(step.problem), sel.variant->name, config, smem, why});
  }
  const std::string table = chosen.render("  ");
  // Interleave: header, then each step's row followed by its rejections.
  std::istringstream lines(table);
  std::string line;
  std::getline(lines, line);
  os << line << "\n";
  for (const PlanStep& step : plan) {
    std::getline(lines, line);
    os << line << "\n";
    if (!step.selection.rejected.empty()) os << rejected_text(step.selection, "      ");
  }
  int infeasible = 0;
  for (const PlanStep& step : plan) infeasible += step.selection.ok() ? 0 : 1;
  if (infeasible > 0) {
    os << "  " << infeasible << " of " << plan.size()
       << " operations have no feasible kernel on this device: running this layer here would fail (see the "
          "rejections above)\n";
  }
  return os.str();
}

// --- Recipe support -------------------------------------------------------------------------------

Json support_json(const SupportReport& report) {
  Json features = Json::array();
  for (const FeatureSupport& f : report.features) {
    features.push_back({{"feature", f.feature},
                        {"level", support_level_name(f.level)},
                        {"variant", f.variant},
                        {"detail", f.detail},
                        {"fix", f.fix}});
  }
  return features;
}

std::string support_text(const SupportReport& report, bool strict) {
  std::ostringstream os;
  os << "Support recipe features on " << report.device << "\n";
  Table t;
  t.add({"feature", "level", "served by"});
  for (const FeatureSupport& f : report.features) {
    t.add({f.feature, support_level_name(f.level), f.variant.empty() ? "-" : f.variant});
  }
  const std::string table = t.render("  ");
  std::istringstream lines(table);
  std::string line;
  std::getline(lines, line);
  os << line << "\n";
  int fallbacks = 0;
  int unsupported = 0;
  for (const FeatureSupport& f : report.features) {
    std::getline(lines, line);
    os << line << "\n";
    if (!f.detail.empty()) os << "      why: " << f.detail << "\n";
    if (!f.fix.empty() && f.level != SupportLevel::kSupported) os << "      fix: " << f.fix << "\n";
    fallbacks += f.level == SupportLevel::kFallback ? 1 : 0;
    unsupported += f.level == SupportLevel::kUnsupported ? 1 : 0;
  }
  if (report.all_supported()) {
    os << "  every feature is supported natively\n";
  } else {
    const std::string of = " of " + std::to_string(report.features.size()) + " features";
    std::string counts;
    if (unsupported > 0) counts = std::to_string(unsupported) + of + " unsupported";
    if (fallbacks > 0) {
      counts += counts.empty() ? std::to_string(fallbacks) + of + " through a fallback"
                               : ", " + std::to_string(fallbacks) + " through a fallback";
    }
    os << "  " << counts
       << (strict ? " (--strict fails)\n" : " (--strict would fail)\n");
  }
  return os.str();
}

// --- The subcommand ------------------------------------------------------------------------------

void list_profiles(bool json) {
  if (json) {
    Json j;
    j["fp4kit_version"] = version();
    Json profiles = Json::array();
    for (const DeviceInfo& d : device_profiles()) profiles.push_back(device_json(d));
    j["profiles"] = profiles;
    std::cout << j.dump(2) << "\n";
    return;
  }
  Table t;
  t.add({"profile", "GPU", "cc", "SMs", "smem opt-in", "L2", "memory"});
  for (const DeviceInfo& d : device_profiles()) {
    t.add({d.profile, d.name, std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor), std::to_string(d.sm_count),
           smem_text(d.smem_per_block_optin), size_text(d.l2_bytes), size_text(d.global_memory_bytes)});
  }
  std::cout << t.render("");
}

void run_info(const InfoArgs& args) {
  if (args.list_profiles) {
    list_profiles(args.json);
    return;
  }
  LayerShape shape;
  if (const std::string reason = parse_shape(args.shape, shape); !reason.empty()) {
    // CLI11 checked the value already; this guards a future caller.
    throw Error(ErrorCode::kInvalidArgument, "--shape: " + reason, "e.g. --shape 4096,4096,4096");
  }

  Recipe recipe = Recipe::from_env();
  if (args.disable_rht) recipe.disable_rht = true;
  if (args.disable_sr) recipe.disable_stochastic_rounding = true;
  if (args.disable_2d) recipe.disable_2d_quantization = true;
  if (args.row_scaled) recipe.row_scaled_activation = true;
  recipe.validate();

  Context& ctx = default_context();
  const DeviceInfo device = resolve_device(args, ctx);
  const Budget budget = budget_of(device, ctx.settings());
  const std::vector<PlanStep> plan = build_plan(ctx, device, recipe, shape);
  // The report is printed here, so the free function (no warn-once to stderr), with the context's
  // registry and settings: the same result as Context::check_recipe_support.
  const SupportReport report = check_recipe_support(recipe, device, ctx.registry(), ctx.settings(), shape.m, shape.n,
                                                    shape.k, /*strict=*/false);

  if (args.json) {
    // NOTE: strict failure prints nothing on stdout, so that a script never parses a report of a
    // failed run; the error and its hint go to stderr.
    if (args.strict) ctx.check_recipe_support(recipe, device, true, shape.m, shape.n, shape.k);
    Json j;
    j["fp4kit_version"] = version();
    Json dev = device_json(device);
    dev["smem_budget"] = budget.bytes;
    dev["smem_budget_source"] = budget.from_env ? "FP4KIT_SMEM_BUDGET" : "device";
    j["device"] = dev;
    j["recipe"] = Json::parse(recipe.to_json());
    j["shape"] = {{"m", shape.m}, {"n", shape.n}, {"k", shape.k}};
    j["plan"] = plan_json(plan);
    j["support"] = support_json(report);
    j["all_supported"] = report.all_supported();
    std::cout << j.dump(2) << "\n";
    return;
  }

  std::cout << device_text(device, ctx.settings()) << "\n"
            << "Recipe  " << recipe.describe() << "\n\n"
            << plan_text(plan, shape, budget) << "\n"
            << support_text(report, args.strict);
  std::cout.flush();
  // Strict: the report above shows every feature; the library's error names the first that fails.
  if (args.strict) ctx.check_recipe_support(recipe, device, true, shape.m, shape.n, shape.k);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd = app.add_subcommand(
      "info", "Show a device, the kernels fp4kit would run on it for one linear layer, and the recipe's support there");
  cmd->footer(
      "The device is CUDA device 0 when one is present, else the CPU; --device picks another GPU, "
      "--profile plans for a GPU this machine does not have (--list-profiles names them). The plan "
      "covers one training step of y[M, N] = x[M, K] W[N, K]^T: amax, the six operand quantizations, "
      "a dequantization and the fprop, dgrad and wgrad GEMMs, each with the chosen kernel and every "
      "rejected one. The recipe comes from the FP4KIT_NVFP4_* environment variables and the flags "
      "above; FP4KIT_SMEM_BUDGET and FP4KIT_FORCE_KERNEL apply as at run time. --json prints one "
      "object (fields: docs/INFO_JSON.md).");
  CLI::Option* device =
      cmd->add_option("--device", args->device, "CUDA device index to query")->check(CLI::NonNegativeNumber);
  args->device_option = device;
  CLI::Option* profile =
      cmd->add_option("--profile", args->profile, "Plan for a named GPU profile instead (sm_80 ... sm_121)");
  device->excludes(profile);
  cmd->add_flag("--list-profiles", args->list_profiles, "List the device profiles and exit");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text (docs/INFO_JSON.md)");
  cmd->add_option("--shape", args->shape, "The layer's M,N,K: y[M, N] = x[M, K] W[N, K]^T (N, K multiples of 16)")
      ->capture_default_str()
      ->check([](const std::string& text) -> std::string {
        LayerShape s;
        return parse_shape(text, s);
      });
  cmd->add_flag("--strict", args->strict, "Fail (exit 1) when a recipe feature is unsupported or needs a fallback");
  cmd->add_flag("--disable-rht", args->disable_rht, "Recipe: no random Hadamard transform on the wgrad operands");
  cmd->add_flag("--disable-sr", args->disable_sr, "Recipe: round-to-nearest-even instead of stochastic rounding");
  cmd->add_flag("--disable-2d", args->disable_2d, "Recipe: 1D (16-element) instead of 16x16 weight blocks");
  cmd->add_flag("--row-scaled", args->row_scaled,
                "Recipe: per-row global scale for the fprop input (needs --disable-rht --disable-sr --disable-2d)");
  cmd->callback([args] { run_info(*args); });
}

}  // namespace fp4kit::cli
