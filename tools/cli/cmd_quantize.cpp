// tools/cli/cmd_quantize.cpp: `fp4kit quantize IN OUT`: one tensor from .npy or .safetensors to an
// fp4kit NVFP4 .safetensors file (layout and metadata: io.hpp), on the CPU reference.
//
// The quantization is chosen either by a recipe role (--role: Recipe::from_env() decides, exactly
// as a training loop using the same environment would) or by explicit flags; mixing the two is a
// usage error, so that a file's metadata never claims a role it was not quantized for.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "fp4kit/error.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/recipe.hpp"
#include "io.hpp"

namespace fp4kit::cli {

namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string tensor;  // safetensors input: which tensor ("" = the only one)
  std::string role;    // "" = explicit flags
  uint64_t step = 0;
  std::string direction = "rowwise";
  bool block_2d = false;
  bool rht = false;
  std::string mask = "0xD7E8";
  bool sr = false;
  uint64_t seed = 0;
  uint64_t offset = 0;
  bool row_scaled = false;
  bool swizzled_scales = false;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && lower(s.substr(s.size() - suffix.size())) == suffix;
}

// "0xD7E8", "d7e8": a 16-bit mask. Returns false when malformed or too wide.
bool parse_mask(std::string s, uint16_t& mask) {
  if (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0) s = s.substr(2);
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v > 0xFFFFu) return false;
  mask = static_cast<uint16_t>(v);
  return true;
}

// Loads the input tensor; checks it is one quantize takes.
HostTensor load_input(const QuantizeArgs& args) {
  HostTensor x;
  if (ends_with(args.input, ".npy")) {
    if (!args.tensor.empty()) {
      throw Error(ErrorCode::kInvalidArgument, "--tensor '" + args.tensor + "' given for the .npy input '" +
                                                   args.input + "', which holds a single array",
                  "drop --tensor, or pass a .safetensors file");
    }
    x = read_npy(args.input);
  } else if (ends_with(args.input, ".safetensors")) {
    SafetensorsFile file = read_safetensors(args.input);
    x = std::move(select_tensor(file, args.tensor, args.input));
  } else {
    throw Error(ErrorCode::kInvalidArgument, "input '" + args.input + "' has an extension fp4kit does not read",
                "pass a .npy or .safetensors file");
  }
  if (x.dtype == DType::kF64) {
    throw Error(ErrorCode::kDtypeMismatch,
                "input '" + args.input + "' is " + x.describe() + "; fp4kit quantizes f32, f16 and bf16 tensors",
                "convert it to float32 first (e.g. x.float() or x.astype(numpy.float32)) and save it again");
  }
  if (x.dtype != DType::kF32 && x.dtype != DType::kF16 && x.dtype != DType::kBF16) {
    throw Error(ErrorCode::kDtypeMismatch,
                "input '" + args.input + "' is " + x.describe() + "; fp4kit quantizes f32, f16 and bf16 tensors",
                "pass a floating-point tensor (float32, float16 or bfloat16)");
  }
  return x;
}

struct Mode {
  QuantParams params;
  std::map<std::string, std::string> metadata;  // role and recipe, when --role chose the params
};

Mode choose_mode(const QuantizeArgs& args) {
  Mode mode;
  if (!args.role.empty()) {
    const OperandRole role = parse_role(args.role);
    const Recipe recipe = Recipe::from_env();
    mode.params = recipe.params(role, args.step);
    mode.params.swizzled_scales = args.swizzled_scales;
    mode.metadata["role"] = role_name(role);
    mode.metadata["recipe"] = recipe.to_json();
    return mode;
  }
  QuantParams& p = mode.params;
  parse_direction_word(args.direction, p.direction);  // CLI11 checked the word
  p.block = args.block_2d ? BlockScaling::k2D : BlockScaling::k1D;
  p.rht = args.rht;
  parse_mask(args.mask, p.rht_mask);  // CLI11 checked the value
  p.rounding = args.sr ? Rounding::kStochastic : Rounding::kNearest;
  p.sr_seed = args.seed;
  p.sr_offset = args.offset;
  p.row_scaled = args.row_scaled;
  p.swizzled_scales = args.swizzled_scales;
  return mode;
}

void run_quantize(const QuantizeArgs& args) {
  if (!ends_with(args.output, ".safetensors")) {
    throw Error(ErrorCode::kInvalidArgument, "output '" + args.output + "' must end in .safetensors",
                "name the output file like out.safetensors");
  }
  const Mode mode = choose_mode(args);  // before reading: a bad recipe fails fast
  HostTensor x = load_input(args);

  // Rank > 2 collapses to [prod(leading), last]; rank 1 (and a scalar) is one row.
  const int64_t cols = x.shape.empty() ? 1 : x.shape.back();
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const TensorView view = TensorView::matrix(x.bytes.data(), x.dtype, rows, cols);

  const auto start = std::chrono::steady_clock::now();
  const Nvfp4Tensor q = quantize(view, mode.params, Target::cpu());
  const auto stop = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(stop - start).count();

  write_nvfp4_safetensors(args.output, q, x.shape, mode.metadata);

  // One summary line on stdout.
  const QuantParams& p = q.meta().params;
  const std::size_t in_bytes = x.bytes.size();
  const std::size_t out_bytes = q.nbytes();
  std::ostringstream line;
  line << "quantized " << x.describe() << " (" << args.input << ") as [" << rows << ", " << cols << "] "
       << direction_word(p.direction) << " " << (p.block == BlockScaling::k2D ? "2d" : "1d")
       << (p.rounding == Rounding::kStochastic ? " sr" : " rne") << (p.rht ? " rht" : "")
       << (p.row_scaled ? " row-scaled" : "") << ": " << in_bytes << " B -> " << out_bytes << " B";
  if (out_bytes > 0) {
    char ratio[32];
    std::snprintf(ratio, sizeof(ratio), "%.2f", static_cast<double>(in_bytes) / static_cast<double>(out_bytes));
    line << " (" << ratio << "x smaller)";
  }
  const TensorView& counts = q.nonfinite_counts();
  if (counts.data != nullptr && counts.numel() >= 2) {
    const uint32_t nan = counts.ptr<uint32_t>()[0];
    const uint32_t inf = counts.ptr<uint32_t>()[1];
    if (nan + inf > 0) {
      line << ", " << (static_cast<uint64_t>(nan) + inf) << " non-finite (" << nan << " NaN, " << inf << " Inf)";
    }
  }
  char elapsed[32];
  std::snprintf(elapsed, sizeof(elapsed), "%.2f", ms);
  line << ", " << elapsed << " ms -> " << args.output;
  std::cout << line.str() << "\n";
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "Quantize one tensor (f32/f16/bf16, from .npy or .safetensors) to NVFP4 and write it as .safetensors");
  cmd->footer(
      "The quantization is chosen by --role (the training recipe, read from the FP4KIT_NVFP4_* "
      "environment variables) or by the explicit flags, not both. Inputs of rank > 2 are treated as "
      "[product of leading dims, last dim], rank 1 as one row. The output holds rowwise.* and/or "
      "columnwise.* tensors (data, scales, amax) and nonfinite_counts; its metadata records how it "
      "was made (see `fp4kit dequantize`).");
  cmd->add_option("input", args->input, "Input tensor file: .npy or .safetensors")->required();
  cmd->add_option("output", args->output, "Output file, ending in .safetensors")->required();
  cmd->add_option("--tensor", args->tensor,
                  "Name of the tensor to quantize in a .safetensors input (optional when it holds one)");

  CLI::Option* role =
      cmd->add_option("--role", args->role,
                      "Quantize as this GEMM operand of the recipe: fprop_input, fprop_weight, dgrad_grad, "
                      "dgrad_weight, wgrad_input, wgrad_grad")
          ->check([](const std::string& name) -> std::string {
            try {
              parse_role(name);
              return {};
            } catch (const Error& e) {
              return e.what();  // message and hint (the valid role names)
            }
          });
  cmd->add_option("--step", args->step, "Recipe step counter: selects the stochastic-rounding offset (with --role)")
      ->capture_default_str()
      ->needs(role);

  CLI::Option* direction = cmd->add_option("--direction", args->direction, "Which outputs: rowwise, columnwise or both")
                               ->check(CLI::IsMember({"rowwise", "columnwise", "both"}))
                               ->capture_default_str();
  CLI::Option* block_2d = cmd->add_flag("--2d", args->block_2d, "16x16 block scaling (weights)");
  CLI::Option* rht =
      cmd->add_flag("--rht", args->rht, "Random Hadamard transform of the columnwise output (wgrad operands)");
  CLI::Option* mask = cmd->add_option("--mask", args->mask, "RHT sign mask, 16-bit hexadecimal (0 = plain Hadamard)")
                          ->capture_default_str()
                          ->check([](const std::string& s) -> std::string {
                            uint16_t m;
                            return parse_mask(s, m) ? std::string() : "--mask '" + s + "' is not a 16-bit hex value";
                          })
                          ->needs(rht);
  CLI::Option* sr = cmd->add_flag("--sr", args->sr, "Stochastic rounding (Philox4x32-10, deterministic per seed/offset)");
  CLI::Option* seed = cmd->add_option("--seed", args->seed, "Stochastic-rounding seed (Philox key)")
                          ->capture_default_str()
                          ->needs(sr);
  CLI::Option* offset = cmd->add_option("--offset", args->offset, "Stochastic-rounding stream offset")
                            ->capture_default_str()
                            ->needs(sr);
  CLI::Option* row_scaled =
      cmd->add_flag("--row-scaled", args->row_scaled, "One global scale per row (fprop activations; rowwise, 1d, rne)");
  role->excludes(direction, block_2d, rht, mask, sr, seed, offset, row_scaled);
  cmd->add_flag("--swizzled-scales", args->swizzled_scales,
                "Also store each part's scales in the GEMM-swizzled layout (<part>.scales_swizzled)");

  cmd->callback([args] { run_quantize(*args); });
}

}  // namespace fp4kit::cli
