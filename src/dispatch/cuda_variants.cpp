// The CUDA kernel variants of this build. Each kernel's launcher file adds its spec here as it
// lands (issue order: quantization, RHT cast, GEMMs); without CUDA backends there are none.
#include "dispatch/variants.hpp"

namespace fp4kit::detail {

void register_cuda_variants(Registry& /*registry*/) {}

}  // namespace fp4kit::detail
