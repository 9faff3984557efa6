// tools/cli/commands.hpp: the subcommands of the `fp4kit` command line. Each add_*_command
// registers its subcommand (options and callback) on the root app; main.cpp calls them all.
#pragma once

namespace CLI {
class App;
}

namespace fp4kit::cli {

void add_version_command(CLI::App& app);     // cmd_version.cpp
void add_quantize_command(CLI::App& app);    // cmd_quantize.cpp
void add_dequantize_command(CLI::App& app);  // cmd_dequantize.cpp
void add_demo_command(CLI::App& app);        // cmd_demo.cpp
void add_info_command(CLI::App& app);        // cmd_info.cpp
void add_bench_command(CLI::App& app);       // cmd_bench.cpp

}  // namespace fp4kit::cli
