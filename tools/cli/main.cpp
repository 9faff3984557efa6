// tools/cli/main.cpp: the `fp4kit` command line. Each subcommand lives in its own cmd_*.cpp and
// registers itself through commands.hpp; this file only builds the root app and maps failures to
// exit codes.
//
// Exit status: 0 success; 1 an fp4kit::Error (bad input, bad file, unsupported request): its message
// and hint go to stderr; 2 a usage error (unknown option, missing argument, conflicting options);
// 3 an internal error (any other exception: a bug, please report it).
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "commands.hpp"
#include "fp4kit/error.hpp"

namespace {

constexpr int kExitFp4kitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInternal = 3;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "fp4kit: NVFP4 quantization from the command line. Quantizes float32, float16 or bfloat16 "
      "tensors read from .npy or .safetensors files into NVFP4 (E2M1 values in 16-element blocks with "
      "E4M3 scales and an FP32 global amax), written as .safetensors with the recipe recorded in the "
      "metadata, and dequantizes such files back to .npy. The numbers are those of docs/NUMERICS.md: "
      "byte-identical on the CPU reference and on every GPU backend.",
      "fp4kit");
  app.require_subcommand(1);
  app.footer(
      "Run `fp4kit SUBCOMMAND --help` for the options of one subcommand.\n"
      "Exit status: 0 success, 1 fp4kit error (message and hint on stderr), 2 usage error, "
      "3 internal error.");

  fp4kit::cli::add_version_command(app);
  fp4kit::cli::add_quantize_command(app);
  fp4kit::cli::add_dequantize_command(app);
  fp4kit::cli::add_demo_command(app);
  fp4kit::cli::add_info_command(app);
  fp4kit::cli::add_bench_command(app);

  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::ParseError& e) {
    // --help (exit 0) prints the help; anything else prints the parse error. All usage errors
    // exit 2, whatever CLI11's own code for them is.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  } catch (const fp4kit::Error& e) {
    std::cerr << "fp4kit: error: " << e.message() << "\n";
    if (!e.hint().empty()) std::cerr << "  hint: " << e.hint() << "\n";
    return kExitFp4kitError;
  } catch (const std::exception& e) {
    std::cerr << "fp4kit: internal error: " << e.what() << "\n"
              << "  hint: this is a bug in fp4kit; please report it with the command that triggered it\n";
    return kExitInternal;
  }
  return 0;
}
