// The CPU reference registered as one variant per operation: the backend of the CPU target.
// Inputs are validated before selection (src/core/validate.*), so the reference takes every
// problem that reaches it.
#include <sstream>

#include "dispatch/variants.hpp"

namespace fp4kit::detail {

void register_reference_variants(Registry& registry) {
  struct Entry {
    const char* name;
    OpKind op;
    const char* description;
  };
  const Entry entries[] = {
      {"ref_amax", OpKind::kAmax, "CPU reference amax (finite amax, NaN/Inf counts)"},
      {"ref_quantize", OpKind::kQuantize, "CPU reference quantization: every mode of docs/NUMERICS.md"},
      {"ref_dequantize", OpKind::kDequantize, "CPU reference dequantization"},
      {"ref_hadamard", OpKind::kHadamard, "CPU reference 16-point (random) Hadamard transform"},
      {"ref_swizzle", OpKind::kSwizzle, "CPU reference scale-layout conversion"},
      {"ref_gemm", OpKind::kGemm, "CPU reference GEMM (FP32 or float64 accumulation)"},
  };
  for (const Entry& e : entries) {
    KernelVariant v;
    v.name = e.name;
    v.op = e.op;
    v.device_type = DeviceType::kCpu;
    v.configs = {KernelConfig{"default"}};
    v.description = e.description;
    registry.add(std::move(v));
  }
}

#ifndef FP4KIT_CUDA_ARCHS
#define FP4KIT_CUDA_ARCHS ""
#endif

std::vector<std::string> built_cuda_archs() {
  std::vector<std::string> archs;
  std::istringstream in(FP4KIT_CUDA_ARCHS);
  std::string a;
  while (std::getline(in, a, ',')) {  // CMake's list, ';' turned into ','
    // CMake spellings: "90a", "80-real", "80-virtual": keep the number and the 'a'.
    const auto dash = a.find('-');
    if (dash != std::string::npos) a = a.substr(0, dash);
    if (!a.empty()) archs.push_back(a);
  }
  return archs;
}

bool image_runs_on(const std::vector<std::string>& archs, int cc) {
  for (const std::string& a : archs) {
    const bool specific = !a.empty() && (a.back() == 'a' || a.back() == 'f');
    const int n = std::stoi(specific ? a.substr(0, a.size() - 1) : a);
    if (specific ? n == cc : n <= cc) return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

}  // namespace fp4kit::detail
