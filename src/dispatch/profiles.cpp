// Device profiles: real GPUs' published limits, so that selection can be planned and tested on a
// machine without that GPU (`fp4kit info --profile sm_120`).
//
// Sources (figures are published, not measured here, unless noted):
// - Shared memory per block (default 48 KiB, opt-in maximum) and per SM: CUDA C++ Programming
//   Guide, "Technical Specifications per Compute Capability" (8.0: 163 KiB opt-in / 164 KiB per
//   SM; 8.6, 8.9, 12.x: 99 KiB / 100 KiB; 9.0, 10.x: 227 KiB / 228 KiB). The sm_120 figure, 101376
//   bytes, is also what cudaDeviceProp::sharedMemPerBlockOptin reports on an RTX PRO 6000
//   (shared/seeds/000), and 232448 is what the H100 of our GPU machine reports.
// - SM counts and L2 sizes: NVIDIA's architecture whitepapers and datasheets (A100: 108 SMs, 40 MB
//   L2; L40S: 142 SMs, 96 MB; H100 SXM5: 132 SMs, 50 MB, also measured on our H100; B200: 148 SMs
//   enabled of 160, 126 MB; B300 (Blackwell Ultra): 160 SMs, 126 MB per NVIDIA's Blackwell Ultra
//   technical brief; RTX PRO 6000 Blackwell: 188 SMs, 128 MB; DGX Spark GB10: 48 SMs, 24 MB).
// - Global memory: the products' datasheets (A100 80 GB, L40S 48 GB, H100 80 GB, B200 180 GB,
//   B300 288 GB, RTX PRO 6000 96 GB, DGX Spark 128 GB unified).
#include <string>

#include "core/check.hpp"
#include "fp4kit/dispatch.hpp"

namespace fp4kit {

namespace {

constexpr int64_t KiB = 1024;
constexpr int64_t MiB = 1024 * KiB;
constexpr int64_t GiB = 1024 * MiB;

DeviceInfo profile(const char* name, const char* gpu, int major, int minor, int sms, int64_t optin, int64_t per_sm,
                   int64_t l2, int64_t memory) {
  DeviceInfo d;
  d.type = DeviceType::kCuda;
  d.profile = name;
  d.name = gpu;
  d.cc_major = major;
  d.cc_minor = minor;
  d.sm_count = sms;
  d.smem_per_block = 48 * KiB;
  d.smem_per_block_optin = optin;
  d.smem_per_sm = per_sm;
  d.l2_bytes = l2;
  d.global_memory_bytes = memory;
  return d;
}

}  // namespace

const std::vector<DeviceInfo>& device_profiles() {
  // Immutable after construction (a function-local constant, not mutable state).
  static const std::vector<DeviceInfo> kProfiles = {
      profile("sm_80", "NVIDIA A100-SXM4-80GB", 8, 0, 108, 166912, 167936, 40 * MiB, 80 * GiB),
      profile("sm_89", "NVIDIA L40S", 8, 9, 142, 101376, 102400, 96 * MiB, 48 * GiB),
      profile("sm_90", "NVIDIA H100 80GB HBM3", 9, 0, 132, 232448, 233472, 50 * MiB, 80 * GiB),
      profile("sm_100", "NVIDIA B200", 10, 0, 148, 232448, 233472, 126 * MiB, 180 * GiB),
      profile("sm_103", "NVIDIA B300", 10, 3, 160, 232448, 233472, 126 * MiB, 288 * GiB),
      profile("sm_120", "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", 12, 0, 188, 101376, 102400, 128 * MiB,
              96 * GiB),
      profile("sm_121", "NVIDIA GB10 (DGX Spark)", 12, 1, 48, 101376, 102400, 24 * MiB, 128 * GiB),
  };
  return kProfiles;
}

DeviceInfo device_profile(const std::string& name) {
  std::string known;
  for (const DeviceInfo& d : device_profiles()) {
    if (d.profile == name) return d;
    known += detail::cat(known.empty() ? "" : ", ", d.profile);
  }
  detail::fail(ErrorCode::kInvalidArgument, detail::cat("unknown device profile '", name, "'"),
               detail::cat("known profiles: ", known));
}

std::string DeviceInfo::label() const {
  if (type == DeviceType::kCpu) return name.empty() ? std::string("cpu") : detail::cat("cpu (", name, ")");
  const std::string arch = detail::cat("sm_", cc_major, cc_minor);
  if (!profile.empty()) return detail::cat("profile ", profile, " (", name, ")");
  return detail::cat("cuda:", index, " ", name, " (", arch, ")");
}

}  // namespace fp4kit
