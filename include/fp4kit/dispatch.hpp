// fp4kit/dispatch.hpp: devices, the kernel registry, selection, recipe support, and the context
// that holds them.
//
// Every kernel variant registers a spec (operation, compute capabilities, candidate configurations,
// one shared-memory formula, problem rules, runtime requirements). Selection is a pure function of
// (registry, problem, device, settings): it enumerates every (variant, configuration), rejects the
// infeasible ones with a reason, and ranks the rest with a commented comparator. Nothing here
// hard-codes a device limit: limits come from DeviceInfo (queried from the GPU, or a named profile).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fp4kit/recipe.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit {

// ---------------------------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------------------------
struct DeviceInfo {
  DeviceType type = DeviceType::kCpu;
  int index = 0;
  std::string name;     // "NVIDIA H100 80GB HBM3", or the CPU model
  std::string profile;  // the profile name ("sm_120") when this is a profile, "" for a real device
  int cc_major = 0;     // compute capability (0 for the CPU)
  int cc_minor = 0;
  int sm_count = 0;     // multiprocessors (CPU: hardware threads)
  int64_t smem_per_block = 0;        // default dynamic + static shared memory per block, bytes
  int64_t smem_per_block_optin = 0;  // the opt-in maximum (cudaFuncAttributeMaxDynamicSharedMemorySize)
  int64_t smem_per_sm = 0;
  int64_t l2_bytes = 0;
  int64_t global_memory_bytes = 0;
  int runtime_version = 0;   // CUDA runtime, e.g. 13000 (0: none)
  int driver_version = 0;    // highest CUDA version the driver supports, e.g. 13000 (0: none)
  int64_t cublaslt_version = 0;  // cublasLtGetVersion(), e.g. 130000 (0: none)

  int compute_capability() const noexcept { return cc_major * 10 + cc_minor; }
  bool is_cuda() const noexcept { return type == DeviceType::kCuda; }
  std::string label() const;  // "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)" / "profile sm_120 (...)" / "cpu"
};

// Named profiles of real GPUs with their published limits (see src/dispatch/profiles.cpp for the
// sources): sm_80, sm_89, sm_90, sm_100, sm_103, sm_120, sm_121.
const std::vector<DeviceInfo>& device_profiles();
// The profile of that name; throws Error(kInvalidArgument) listing the known names.
DeviceInfo device_profile(const std::string& name);
// Queries a real device now (uncached; Context::device caches). CPU: the host processor.
DeviceInfo query_device(Device device);
// Number of CUDA devices visible (0 without CUDA backends or without a GPU); never throws.
int cuda_device_count() noexcept;

// ---------------------------------------------------------------------------------------------
// Problems and kernel specs
// ---------------------------------------------------------------------------------------------
enum class OpKind : uint8_t { kAmax, kQuantize, kDequantize, kHadamard, kSwizzle, kGemm };
const char* op_name(OpKind op) noexcept;

// What an operation is asked to do, independent of the data: the input of selection.
struct Problem {
  OpKind op = OpKind::kQuantize;
  int64_t rows = 0;  // quantize/amax/dequantize/hadamard: the source x[rows, cols]; gemm: M
  int64_t cols = 0;  //                                                               gemm: N
  int64_t k = 0;     // gemm: K
  DType in_dtype = DType::kF32;   // source dtype; gemm: A's dtype (kU8 when A is NVFP4)
  DType out_dtype = DType::kF32;  // dequantize/gemm output
  QuantParams params{};           // quantize / dequantize: the quantization
  bool a_nvfp4 = true;            // gemm: A is NVFP4 (else dense BF16)
  bool b_nvfp4 = true;            // gemm: B is NVFP4 (else dense: the CPU reference and the portable path)
  bool a_row_scaled = false;      // gemm
  bool b_2d = false;              // gemm: B quantized with 16x16 blocks
  // Memory layout of the source (data-dependent but decisive for vectorized kernels): elements
  // between rows (0: dense) and the largest power of two, up to 256, dividing its address.
  int64_t row_stride = 0;
  int alignment = 256;
  std::string describe() const;   // "quantize bf16[4096, 4096] both 2d rne", ...
};

// One configuration of a variant: tile extents, pipeline depth, threads. Meaning per variant.
struct KernelConfig {
  std::string name;  // "128x128x64_s4", "default"
  int tile_m = 0;
  int tile_n = 0;
  int tile_k = 0;
  int stages = 0;
  int threads = 0;
};

// A kernel variant's spec. Launching is the business of the operation that owns the variant
// (src/dispatch/ops.cpp finds its launcher by variant name); selection needs only this spec.
struct KernelVariant {
  std::string name;  // unique: "ref_quantize", "sm90_gemm_nvfp4", ...
  OpKind op = OpKind::kQuantize;
  DeviceType device_type = DeviceType::kCpu;
  // CUDA: the compute capabilities it runs on, inclusive range (x10: 90 = sm_90).
  int min_cc = 0;
  int max_cc = 0;
  // CUDA: the architectures its image is compiled for in this build (e.g. {"80", "90a"}); an
  // "a" architecture runs only on that exact capability. Empty for CPU variants.
  std::vector<std::string> compiled_archs;
  std::vector<KernelConfig> configs;
  // Shared memory a configuration needs, in bytes: the same constexpr formula the kernel
  // static_asserts against. May be null for variants that use none (CPU).
  std::function<int64_t(const KernelConfig&)> smem_bytes;
  // Shape, dtype, alignment and mode rules: "" when eligible, else the reason.
  std::function<std::string(const Problem&)> check_problem;
  // Minimum versions (0: none): CUDA runtime and driver as 1000*major + 10*minor; cuBLASLt as
  // cublasLtGetVersion() reports.
  int min_runtime = 0;
  int min_driver = 0;
  int64_t min_cublaslt = 0;
  // For real devices: checks that an image for the device is loadable (cudaFuncGetAttributes on
  // the kernel); "" when it is, else the reason. Null: the compiled_archs rule alone decides.
  std::function<std::string(const DeviceInfo&)> check_image;
  // A fallback is a slower path for when the preferred ones are infeasible (e.g. the unfused RHT,
  // the dequantize + cuBLASLt GEMM); recipe support reports features served by one as such.
  bool fallback = false;
  // Higher runs first among non-fallback variants (specialized before generic).
  int priority = 0;
  std::string description;  // one line for `fp4kit info`
};

struct Rejection {
  std::string variant;
  std::string config;  // "" when the whole variant was rejected
  std::string reason;
};

struct Selection {
  const KernelVariant* variant = nullptr;  // null: nothing feasible (see rejected)
  KernelConfig config{};
  int64_t smem_bytes = 0;
  int64_t smem_budget = 0;   // the budget it was checked against
  bool forced = false;       // chosen by FP4KIT_FORCE_KERNEL
  std::vector<Rejection> rejected;
  std::string why;           // which ranking rule decided
  bool ok() const noexcept { return variant != nullptr; }
};

// Settings of selection and logging; Context reads them from the environment once:
//   FP4KIT_SMEM_BUDGET=<bytes>   caps the shared-memory budget below the device's opt-in limit
//   FP4KIT_FORCE_KERNEL=<name>   selects that variant (an infeasible one is an error naming why)
//   FP4KIT_PRINT_CONFIG=1        prints each distinct selection once, to stderr
//   FP4KIT_LOG_LEVEL=error|warn|info|debug   (default warn)
enum class LogLevel : uint8_t { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
struct DispatchSettings {
  std::optional<int64_t> smem_budget;
  std::string force_kernel;
  bool print_config = false;
  LogLevel log_level = LogLevel::kWarn;
  static DispatchSettings from_env();
};

// The variants known to one context. builtin() holds every variant compiled into this build.
class Registry {
 public:
  static Registry builtin();
  void add(KernelVariant variant);  // throws Error(kInternal) on a duplicate name
  const std::vector<KernelVariant>& variants() const noexcept { return variants_; }
  const KernelVariant* find(const std::string& name) const noexcept;

 private:
  std::vector<KernelVariant> variants_;
};

// The shared-memory budget of a device under the settings: the opt-in limit, capped.
int64_t smem_budget(const DeviceInfo& device, const DispatchSettings& settings);

// The pure selection function. Throws Error only for a forced variant that is unknown or
// infeasible (kUnsupported, naming the reason); otherwise returns a Selection, feasible or not.
Selection select_kernel(const Registry& registry, const Problem& problem, const DeviceInfo& device,
                        const DispatchSettings& settings);

// Multi-line human explanation: the choice, its configuration and budget, every rejection.
std::string explain(const Selection& selection, const Problem& problem, const DeviceInfo& device);

// ---------------------------------------------------------------------------------------------
// Recipe support
// ---------------------------------------------------------------------------------------------
enum class SupportLevel : uint8_t { kSupported = 0, kFallback = 1, kUnsupported = 2 };
const char* support_level_name(SupportLevel level) noexcept;  // "supported", "fallback", "unsupported"

struct FeatureSupport {
  std::string feature;  // "quantize 1d (fprop input)", "gemm fprop (1d x 2d)", ...
  SupportLevel level = SupportLevel::kSupported;
  std::string variant;  // what serves it (empty when unsupported)
  std::string detail;   // why a fallback / why unsupported (device, limit)
  std::string fix;      // one line: which recipe field to change or which build option adds it
};

struct SupportReport {
  std::string device;  // DeviceInfo::label()
  std::vector<FeatureSupport> features;
  bool all_supported() const noexcept;   // no fallback, no unsupported
  bool any_unsupported() const noexcept;
  std::string describe() const;          // one line per feature
};

// Checks every feature the recipe uses on `device` for a layer y[M, N] = x[M, K] W[N, K]^T,
// before any launch. strict: a fallback or an unsupported feature throws Error(kUnsupported) with
// the device, the limit and the fix.
SupportReport check_recipe_support(const Recipe& recipe, const DeviceInfo& device, const Registry& registry,
                                   const DispatchSettings& settings, int64_t m = 4096, int64_t n = 4096,
                                   int64_t k = 4096, bool strict = false);

// ---------------------------------------------------------------------------------------------
// Context: settings, the registry, cached device queries, print-once/warn-once bookkeeping.
// Thread-safe. Operations called without one use default_context().
// ---------------------------------------------------------------------------------------------
class Context {
 public:
  Context();  // DispatchSettings::from_env(), Registry::builtin()
  Context(DispatchSettings settings, Registry registry);

  const DispatchSettings& settings() const noexcept { return settings_; }
  const Registry& registry() const noexcept { return registry_; }
  // Queried once per device, then cached.
  const DeviceInfo& device(Device device);
  // select_kernel + FP4KIT_PRINT_CONFIG printing (once per distinct problem/device/choice).
  Selection select(const Problem& problem, const DeviceInfo& device);
  // check_recipe_support, warning once per (device, feature) about fallbacks in non-strict mode.
  SupportReport check_recipe_support(const Recipe& recipe, const DeviceInfo& device, bool strict = false,
                                     int64_t m = 4096, int64_t n = 4096, int64_t k = 4096);
  // Logs to stderr ("fp4kit: warning: ...") when level <= the settings' level; *_once only the
  // first time `key` is seen.
  void log(LogLevel level, const std::string& message) const;
  void log_once(LogLevel level, const std::string& key, const std::string& message);

 private:
  DispatchSettings settings_;
  Registry registry_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<DeviceInfo>> devices_;  // stable addresses
  std::set<std::string> once_;
};

// The context of calls that pass none (Target::context == nullptr): created on first use.
Context& default_context();

}  // namespace fp4kit
