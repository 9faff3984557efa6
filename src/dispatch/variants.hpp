// src/dispatch/variants.hpp: how variants get into Registry::builtin(), and the image rules.
#pragma once

#include <string>
#include <vector>

#include "fp4kit/dispatch.hpp"

namespace fp4kit::detail {

// The CPU reference: one variant per operation (src/dispatch/reference_variants.cpp).
void register_reference_variants(Registry& registry);
// The CUDA kernels compiled into this build (nothing when built without CUDA).
void register_cuda_variants(Registry& registry);

// The CUDA architectures this build compiled (CMAKE_CUDA_ARCHITECTURES), e.g. {"80", "90a"};
// empty without CUDA backends.
std::vector<std::string> built_cuda_archs();

// Whether an image compiled for `archs` runs on compute capability `cc` (x10): "90a" only on 90
// (architecture-specific features); "80" on 80 and newer (its PTX is JIT-compiled forward).
bool image_runs_on(const std::vector<std::string>& archs, int cc);

std::string join(const std::vector<std::string>& parts, const char* sep);

}  // namespace fp4kit::detail
