// tools/cli/cmd_version.cpp: `fp4kit version`: the library version and whether this build has the
// CUDA backends (FP4KIT_HAVE_CUDA is a PUBLIC compile definition of the fp4kit target).
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.hpp"
#include "fp4kit/ops.hpp"

namespace fp4kit::cli {

void add_version_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("version", "Print the fp4kit version and the backends compiled in");
  cmd->callback([] {
    std::cout << "fp4kit " << fp4kit::version() << "\n";
#if defined(FP4KIT_HAVE_CUDA)
    std::cout << "CUDA backends: compiled in (GPU kernels run where a CUDA device is present)\n";
#else
    std::cout << "CUDA backends: not compiled (CPU-only build: operations run on the CPU reference)\n";
#endif
  });
}

}  // namespace fp4kit::cli
