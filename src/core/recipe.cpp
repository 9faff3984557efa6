#include "fp4kit/recipe.hpp"

#include <cstdio>

#include "core/check.hpp"
#include "core/env.hpp"
#include "fp4kit/error.hpp"

namespace fp4kit {

using detail::cat;
using detail::fail;

namespace {
constexpr const char* kRoleNames[kNumOperandRoles] = {"fprop_input", "fprop_weight", "dgrad_grad",
                                                      "dgrad_weight", "wgrad_input", "wgrad_grad"};

std::string hex(uint64_t v, int width = 0) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

const char* role_name(OperandRole role) noexcept {
  const int i = static_cast<int>(role);
  return (i >= 0 && i < kNumOperandRoles) ? kRoleNames[i] : "unknown";
}

OperandRole parse_role(const std::string& name) {
  for (int i = 0; i < kNumOperandRoles; ++i) {
    if (name == kRoleNames[i]) return static_cast<OperandRole>(i);
  }
  std::string all;
  for (int i = 0; i < kNumOperandRoles; ++i) all += cat(i ? ", " : "", kRoleNames[i]);
  fail(ErrorCode::kInvalidArgument, cat("unknown operand role '", name, "'"), cat("use one of: ", all));
}

Recipe Recipe::from_env() { return from_env(Recipe{}); }

Recipe Recipe::from_env(const Recipe& base) {
  using detail::env_bool;
  using detail::env_uint;
  constexpr ErrorCode kCode = ErrorCode::kInvalidRecipe;
  Recipe r = base;
  if (auto v = env_bool("FP4KIT_NVFP4_DISABLE_RHT", kCode)) r.disable_rht = *v;
  if (auto v = env_bool("FP4KIT_NVFP4_DISABLE_STOCHASTIC_ROUNDING", kCode)) r.disable_stochastic_rounding = *v;
  if (auto v = env_bool("FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION", kCode)) r.disable_2d_quantization = *v;
  if (auto v = env_bool("FP4KIT_NVFP4_ROW_SCALED_ACTIVATION", kCode)) r.row_scaled_activation = *v;
  if (auto v = env_uint("FP4KIT_NVFP4_RHT_MASK", 0xFFFF, kCode)) r.rht_mask = static_cast<uint16_t>(*v);
  if (auto v = env_uint("FP4KIT_NVFP4_SR_SEED", UINT64_MAX, kCode)) r.sr_seed = *v;
  if (auto v = env_uint("FP4KIT_NVFP4_SR_OFFSET", UINT64_MAX, kCode)) r.sr_offset_base = *v;
  r.validate();
  return r;
}

void Recipe::validate() const {
  // Row-scaled activations (NUMERICS §6) carry one global scale per row; the RHT, 2D blocks and SR
  // all assume one global scale per tensor, so the recipe must turn them off.
  if (!row_scaled_activation) return;
  const char* fix = "set row_scaled_activation=false (FP4KIT_NVFP4_ROW_SCALED_ACTIVATION=0), or ";
  if (!disable_rht) {
    fail(ErrorCode::kInvalidRecipe, "row_scaled_activation cannot be combined with the random Hadamard transform",
         cat(fix, "set disable_rht=true (FP4KIT_NVFP4_DISABLE_RHT=1)"));
  }
  if (!disable_2d_quantization) {
    fail(ErrorCode::kInvalidRecipe, "row_scaled_activation cannot be combined with 2D (16x16) weight scaling",
         cat(fix, "set disable_2d_quantization=true (FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION=1)"));
  }
  if (!disable_stochastic_rounding) {
    fail(ErrorCode::kInvalidRecipe, "row_scaled_activation cannot be combined with stochastic rounding",
         cat(fix, "set disable_stochastic_rounding=true (FP4KIT_NVFP4_DISABLE_STOCHASTIC_ROUNDING=1)"));
  }
}

QuantParams Recipe::params(OperandRole role, uint64_t step) const {
  validate();
  QuantParams p;
  p.rht_mask = rht_mask;
  const Rounding grad_rounding = disable_stochastic_rounding ? Rounding::kNearest : Rounding::kStochastic;
  const BlockScaling weight_block = disable_2d_quantization ? BlockScaling::k1D : BlockScaling::k2D;
  switch (role) {
    case OperandRole::kFpropInput:
      p.direction = Direction::kRowwise;
      p.row_scaled = row_scaled_activation;
      break;
    case OperandRole::kFpropWeight:
      p.direction = Direction::kRowwise;
      p.block = weight_block;
      break;
    case OperandRole::kDgradGrad:
      p.direction = Direction::kRowwise;
      p.rounding = grad_rounding;
      break;
    case OperandRole::kDgradWeight:
      // The columnwise copy of the fprop weight: with 2D blocks it is exactly the transpose of
      // the rowwise data (NUMERICS §4).
      p.direction = Direction::kColumnwise;
      p.block = weight_block;
      break;
    case OperandRole::kWgradInput:
      p.direction = Direction::kColumnwise;
      p.rht = !disable_rht;
      break;
    case OperandRole::kWgradGrad:
      p.direction = Direction::kColumnwise;
      p.rht = !disable_rht;
      p.rounding = grad_rounding;
      break;
    default:
      fail(ErrorCode::kInvalidArgument, cat("unknown operand role ", static_cast<int>(role)));
  }
  if (p.rounding == Rounding::kStochastic) {
    p.sr_seed = sr_seed;
    p.sr_offset = sr_offset_base + step;
  }
  return p;
}

std::string Recipe::describe() const {
  const auto onoff = [](bool b) { return b ? "on" : "off"; };
  return cat("nvfp4(rht=", onoff(!disable_rht), " mask=", hex(rht_mask, 4), ", sr=", onoff(!disable_stochastic_rounding),
             " seed=", hex(sr_seed), ", 2d=", onoff(!disable_2d_quantization), ", row_scaled=",
             onoff(row_scaled_activation), ")");
}

std::string Recipe::to_json() const {
  const auto b = [](bool v) { return v ? "true" : "false"; };
  // Seeds are 64-bit: written as hex strings so JSON readers with double numbers keep every bit.
  return cat("{\"disable_rht\": ", b(disable_rht), ", \"disable_stochastic_rounding\": ", b(disable_stochastic_rounding),
             ", \"disable_2d_quantization\": ", b(disable_2d_quantization), ", \"row_scaled_activation\": ",
             b(row_scaled_activation), ", \"rht_mask\": \"", hex(rht_mask, 4), "\", \"sr_seed\": \"", hex(sr_seed),
             "\", \"sr_offset_base\": \"", hex(sr_offset_base), "\"}");
}

}  // namespace fp4kit
