// fp4kit/recipe.hpp: the NVFP4 training recipe and the quantization of each GEMM operand role.
//
// A linear layer y = x W^T runs three GEMMs per step; each has two NVFP4 operands:
//   fprop  y  = x  W^T : fprop input x (1D, RNE; row-scaled if enabled) and weight W (2D, RNE)
//   dgrad  dx = dy W   : dgrad grad dy (1D, SR) and weight W (the columnwise copy of the 2D weight)
//   wgrad  dW = dy^T x : wgrad input x and wgrad grad dy, both columnwise with the RHT (grad SR)
#pragma once

#include <cstdint>
#include <string>

#include "fp4kit/types.hpp"

namespace fp4kit {

enum class OperandRole : uint8_t {
  kFpropInput = 0,
  kFpropWeight = 1,
  kDgradGrad = 2,
  kDgradWeight = 3,
  kWgradInput = 4,
  kWgradGrad = 5,
};
inline constexpr int kNumOperandRoles = 6;
const char* role_name(OperandRole role) noexcept;  // "fprop_input", ...
// Parses a role name as role_name() prints it; throws Error(kInvalidArgument) naming the valid ones.
OperandRole parse_role(const std::string& name);

struct Recipe {
  // Field names and defaults follow the production NVFP4 recipe (NVFP4BlockScaling).
  bool disable_rht = false;                  // RHT on the wgrad operands
  bool disable_stochastic_rounding = false;  // SR on the gradient operands
  bool disable_2d_quantization = false;      // 16x16 blocks for the weight
  bool row_scaled_activation = false;        // per-row global scale for the fprop input (§6)
  uint16_t rht_mask = kDefaultRhtMask;       // RHT sign mask: bit i set where s_i = -1
  // SR stream policy: the seed is the Philox key; the offset of a call is sr_offset_base + step,
  // where `step` is the caller's counter (one per optimizer step, say). Rowwise and columnwise
  // outputs of one call draw from disjoint streams (docs/NUMERICS.md §8).
  uint64_t sr_seed = 0x5EED5EED5EED5EEDull;
  uint64_t sr_offset_base = 0;

  // The defaults, overridden by the environment (read now, once):
  //   FP4KIT_NVFP4_DISABLE_RHT, FP4KIT_NVFP4_DISABLE_STOCHASTIC_ROUNDING,
  //   FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION, FP4KIT_NVFP4_ROW_SCALED_ACTIVATION  (0/1/true/false)
  //   FP4KIT_NVFP4_RHT_MASK (0x... or decimal), FP4KIT_NVFP4_SR_SEED, FP4KIT_NVFP4_SR_OFFSET.
  // A malformed value throws Error(kInvalidRecipe) naming the variable. The result is validated.
  static Recipe from_env();
  static Recipe from_env(const Recipe& base);

  // Throws Error(kInvalidRecipe) for combinations NUMERICS.md forbids, naming the field to change.
  void validate() const;

  // The quantization of one operand role; `step` selects the SR offset (ignored under RNE).
  // Validates the recipe first.
  QuantParams params(OperandRole role, uint64_t step = 0) const;

  // One line, e.g. "nvfp4(rht=on mask=0xd7e8, sr=on seed=0x..., 2d=on, row_scaled=off)".
  std::string describe() const;
  // Stable JSON object with every field (used in safetensors metadata and `fp4kit info --json`).
  std::string to_json() const;
};

}  // namespace fp4kit
