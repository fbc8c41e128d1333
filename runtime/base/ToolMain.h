//===- ToolMain.h - What every command-line tool's main() does --*- C++ -*-===//
//
// --help handling and the one-line error contract of the tools: a failure
// prints "TOOL: error: MESSAGE" as a single line on stderr.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_BASE_TOOLMAIN_H
#define CROSSPOOL_RUNTIME_BASE_TOOLMAIN_H

#include "absl/status/status.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

namespace crosspool::tools {

/// Prints `usage` on stdout and returns true when argv holds --help or -h.
inline bool printHelpIfAsked(int argc, char **argv, const char *usage) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("%s\n", usage);
      return true;
    }
  return false;
}

/// Prints "`tool`: error: MESSAGE" as one line on stderr (newlines in the
/// message become spaces), after whatever stdout holds so far.
inline void printToolError(const char *tool, const absl::Status &status) {
  std::string msg(status.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: %s\n", tool, msg.c_str());
}

} // namespace crosspool::tools

#endif // CROSSPOOL_RUNTIME_BASE_TOOLMAIN_H
