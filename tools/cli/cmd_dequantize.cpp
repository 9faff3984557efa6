// tools/cli/cmd_dequantize.cpp: `fp4kit dequantize IN.safetensors OUT.npy`: an fp4kit NVFP4 file
// (written by `fp4kit quantize`) back to dense values, on the CPU reference.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "fp4kit/error.hpp"
#include "fp4kit/ops.hpp"
#include "io.hpp"

namespace fp4kit::cli {

namespace {

struct DequantizeArgs {
  std::string input;
  std::string output;
  std::string direction;  // "" = rowwise when present, else columnwise
  std::string dtype = "f32";
  bool keep_rht_domain = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  std::string tail = s.substr(s.size() - suffix.size());
  std::transform(tail.begin(), tail.end(), tail.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return tail == suffix;
}

void run_dequantize(const DequantizeArgs& args) {
  if (!ends_with(args.input, ".safetensors")) {
    throw Error(ErrorCode::kInvalidArgument, "input '" + args.input + "' must be a .safetensors file",
                "pass a file written by `fp4kit quantize`");
  }
  if (!ends_with(args.output, ".npy")) {
    throw Error(ErrorCode::kInvalidArgument, "output '" + args.output + "' must end in .npy",
                "name the output file like out.npy");
  }
  Nvfp4File loaded = read_nvfp4_safetensors(args.input);
  const Nvfp4Tensor& q = loaded.tensor;
  const Nvfp4Meta& meta = q.meta();

  Direction direction = q.rowwise().present ? Direction::kRowwise : Direction::kColumnwise;
  if (!args.direction.empty()) parse_direction_word(args.direction, direction);  // CLI11 checked the word
  const Nvfp4Part& part = direction == Direction::kRowwise ? q.rowwise() : q.columnwise();
  if (!part.present) {
    throw Error(ErrorCode::kInvalidArgument,
                "'" + args.input + "' holds no " + direction_word(direction) + " output (it was quantized " +
                    direction_word(meta.params.direction) + ")",
                std::string("dequantize --direction ") + direction_word(meta.params.direction) +
                    ", or quantize again with the direction you need");
  }
  const bool transformed = direction == Direction::kColumnwise && meta.params.rht;
  if (args.keep_rht_domain && !transformed) {
    throw Error(ErrorCode::kInvalidArgument,
                "--keep-rht-domain applies to the columnwise output of an RHT tensor; the " +
                    std::string(direction_word(direction)) + " output of '" + args.input + "' is not transformed",
                "drop --keep-rht-domain");
  }

  // Rowwise: [rows, cols]. Columnwise: x^T [cols, rows], or the stored transformed values
  // [cols, ceil(rows/16)*16] with --keep-rht-domain.
  std::vector<int64_t> shape;
  if (direction == Direction::kRowwise) {
    shape = {meta.rows, meta.cols};
  } else if (args.keep_rht_domain) {
    shape = {meta.cols, part.geometry.padded_cols()};
  } else {
    shape = {meta.cols, meta.rows};
  }
  HostTensor out = HostTensor::zeros(args.dtype == "f16" ? DType::kF16 : DType::kF32, shape);
  DequantizeOptions options;
  options.undo_rht = !args.keep_rht_domain;
  dequantize(q, direction, out.view(), options, Target::cpu());
  write_npy(args.output, out);

  std::cout << "dequantized " << direction_word(direction) << " output of " << args.input << " to " << out.describe()
            << (args.keep_rht_domain ? " (RHT domain)" : "") << " -> " << args.output << "\n";
}

}  // namespace

void add_dequantize_command(CLI::App& app) {
  auto args = std::make_shared<DequantizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "dequantize", "Dequantize an NVFP4 .safetensors file written by `fp4kit quantize` to a .npy array");
  cmd->footer(
      "The rowwise output of x[R, C] dequantizes to [R, C]; the columnwise output to x^T [C, R] (the "
      "inverse Hadamard transform applied when it was quantized with RHT), or with --keep-rht-domain "
      "to the stored transformed values [C, ceil(R/16)*16].");
  cmd->add_option("input", args->input, "NVFP4 file written by `fp4kit quantize` (.safetensors)")->required();
  cmd->add_option("output", args->output, "Output array (.npy)")->required();
  cmd->add_option("--direction", args->direction,
                  "Which output to dequantize: rowwise or columnwise (default: rowwise when present)")
      ->check(CLI::IsMember({"rowwise", "columnwise"}));
  cmd->add_option("--dtype", args->dtype, "Output element type: f32 or f16")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->capture_default_str();
  cmd->add_flag("--keep-rht-domain", args->keep_rht_domain,
                "Columnwise RHT output: write the transformed values instead of undoing the transform");
  cmd->callback([args] { run_dequantize(*args); });
}

}  // namespace fp4kit::cli
