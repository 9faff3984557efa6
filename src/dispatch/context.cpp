#include <cstdio>

#include "core/check.hpp"
#include "fp4kit/dispatch.hpp"

namespace fp4kit {

Context::Context() : Context(DispatchSettings::from_env(), Registry::builtin()) {}

Context::Context(DispatchSettings settings, Registry registry)
    : settings_(std::move(settings)), registry_(std::move(registry)) {}

const DeviceInfo& Context::device(Device d) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& info : devices_) {
    if (info->type == d.type && info->index == d.index) return *info;
  }
  devices_.push_back(std::make_unique<DeviceInfo>(query_device(d)));
  return *devices_.back();
}

Selection Context::select(const Problem& problem, const DeviceInfo& device) {
  Selection s = select_kernel(registry_, problem, device, settings_);
  if (settings_.print_config) {
    const std::string key = detail::cat("select|", problem.describe(), "|", device.label(), "|",
                                        s.ok() ? s.variant->name + "/" + s.config.name : std::string("none"));
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      first = once_.insert(key).second;
    }
    if (first) std::fprintf(stderr, "fp4kit: %s", explain(s, problem, device).c_str());
  }
  return s;
}

SupportReport Context::check_recipe_support(const Recipe& recipe, const DeviceInfo& device, bool strict, int64_t m,
                                            int64_t n, int64_t k) {
  SupportReport r = fp4kit::check_recipe_support(recipe, device, registry_, settings_, m, n, k, strict);
  for (const FeatureSupport& f : r.features) {
    if (f.level == SupportLevel::kSupported) continue;
    log_once(LogLevel::kWarn, detail::cat("support|", r.device, "|", f.feature),
             detail::cat(f.feature, " on ", r.device, " is ", support_level_name(f.level),
                         f.variant.empty() ? "" : " (" + f.variant + ")", f.fix.empty() ? "" : "; fix: " + f.fix));
  }
  return r;
}

void Context::log(LogLevel level, const std::string& message) const {
  if (level > settings_.log_level) return;
  static constexpr const char* kNames[] = {"error", "warning", "info", "debug"};
  std::fprintf(stderr, "fp4kit: %s: %s\n", kNames[static_cast<int>(level)], message.c_str());
}

void Context::log_once(LogLevel level, const std::string& key, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!once_.insert(key).second) return;
  }
  log(level, message);
}

Context& default_context() {
  // Created on first use, from the environment at that moment; its caches are guarded by a mutex.
  static Context context;
  return context;
}

}  // namespace fp4kit
