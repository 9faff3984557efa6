// tests/cli_runner.hpp: running the built `fp4kit` binary from a test and capturing its output.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fp4kit::test {

// A scratch directory unique to the running test (ctest may run tests in parallel).
inline std::filesystem::path scratch_dir(const char* group) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(FP4KIT_TEST_TMPDIR) / group /
                                    (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct CliRun {
  int status = -1;  // exit status; -1 when the process did not exit normally
  std::string out;
  std::string err;
};

// Runs `fp4kit ARGS` through the shell, stdout and stderr redirected to files in the test's scratch
// directory. The dispatch overrides of this process's environment are removed (so the child
// selects as the in-process expectations do), then `env_set` ("FP4KIT_SMEM_BUDGET=65536") added.
inline CliRun run_cli(const std::string& args, const char* group, const std::string& env_set = "") {
  static int counter = 0;
  const std::filesystem::path dir = scratch_dir(group);
  const std::string tag = std::to_string(counter++);
  const std::filesystem::path out = dir / ("stdout_" + tag + ".txt");
  const std::filesystem::path err = dir / ("stderr_" + tag + ".txt");
  const std::string command = "env -u FP4KIT_SMEM_BUDGET -u FP4KIT_FORCE_KERNEL " + env_set + " '" +
                              std::string(FP4KIT_CLI_PATH) + "' " + args + " >'" + out.string() + "' 2>'" +
                              err.string() + "'";
  const int raw = std::system(command.c_str());
  CliRun r;
  r.status = (raw != -1 && WIFEXITED(raw)) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline ::testing::AssertionResult contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

}  // namespace fp4kit::test
