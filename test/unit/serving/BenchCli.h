//===- BenchCli.h - Runs crosspool-bench for tests --------------*- C++ -*-===//
#ifndef CROSSPOOL_TEST_UNIT_SERVING_BENCHCLI_H
#define CROSSPOOL_TEST_UNIT_SERVING_BENCHCLI_H

#include "gtest/gtest.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace crosspool::testing {

struct CliResult {
  int exitCode = -1;
  std::string out, err;
};

inline std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `crosspool-bench ARGS` (ARGS already shell-quoted) and captures both
/// streams.
inline CliResult runBench(const std::string &args) {
  std::string dir = ::testing::TempDir();
  std::string tag = std::to_string(::getpid());
  std::string out = dir + "/bench_out_" + tag, err = dir + "/bench_err_" + tag;
  std::string cmd = std::string(CROSSPOOL_BINARY_DIR) +
                    "/bin/crosspool-bench " + args + " >" + out + " 2>" + err;
  int status = std::system(cmd.c_str());
  CliResult r;
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = readFile(out);
  r.err = readFile(err);
  return r;
}

} // namespace crosspool::testing

#endif // CROSSPOOL_TEST_UNIT_SERVING_BENCHCLI_H
