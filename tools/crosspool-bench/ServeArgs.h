//===- ServeArgs.h - Flags of `crosspool-bench serve` ----------*- C++ -*-===//
#ifndef CROSSPOOL_TOOLS_CROSSPOOL_BENCH_SERVEARGS_H
#define CROSSPOOL_TOOLS_CROSSPOOL_BENCH_SERVEARGS_H

#include "runtime/serving/MemoryMode.h"
#include "runtime/serving/ServingEngine.h"
#include "runtime/serving/Workload.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::bench {

struct Range {
  int64_t lo = 0, hi = 0;
};

struct ServeArgs {
  std::vector<std::string> plans;
  std::vector<runtime::MemoryMode> modes = {runtime::MemoryMode::CrossPool};
  // Workload.
  std::string trace;      ///< CSV; empty = synthetic Gamma arrivals
  double rate = 0;        ///< requests/s (trace: 0 = as recorded)
  double cv = 1.0;        ///< Gamma arrivals
  int64_t requests = 200; ///< trace: first N rows; synthetic: N requests
  Range promptRange{16, 128};
  Range outputRange{8, 64};
  Range longContext;     ///< hi > 0: prompts uniform in [lo, hi]
  int64_t maxPrompt = 0; ///< 0 = the largest that fits with maxOutput
  int64_t maxOutput = 64;
  runtime::Popularity popularity;
  uint64_t seed = 1;
  // Memory.
  runtime::ClusterSpec cluster;
  double gpuMemMb = 1.6;
  /// --gpu-mem-mb or --gpu-mem-gb given (otherwise: 1.6 MB on the CPU, the
  /// card's memory on CUDA).
  bool gpuMemGiven = false;
  /// CUDA: device bytes left free beside the KV pool.
  double gpuReserveMb = 2048;
  /// > 0: a replay stops admitting after this many wall seconds.
  double maxWallS = 0;
  /// Unmeasured replays of the workload (first mode, nominal rate) before
  /// the measured ones, so no mode pays the process's first kernel loads,
  /// graph captures and KV chunk maps. -1 (default): 1 on CUDA, 0 on the
  /// CPU (whose cost-model clock has nothing to warm).
  int64_t warmReplays = -1;
  size_t kvPageBytes = 4096;
  runtime::Device device = runtime::Device::kCpu;
  runtime::Precision precision = runtime::Precision::kFp32;
  // Scheduler and clock.
  runtime::ServingEngine::Options engine;
  // Reporting.
  double sloTbtMs = 0;  ///< > 0 with searchRate: max sustainable rate
  double sloTtftMs = 0; ///< optional TTFT bound in the search
  double searchLo = 0, searchHi = 0;
  int searchIters = 6;
  std::string jsonOut;
  bool quiet = false;
};

/// Parses argv after `serve`. InvalidArgument with one line naming the flag
/// and what it expects.
absl::StatusOr<ServeArgs> parseServeArgs(const std::vector<std::string> &argv);

extern const char *kServeUsage;

/// `crosspool-bench decode`: decode steps of one plan through the Runtime
/// (the executor path every user request takes), B sequences at context C.
struct DecodeArgs {
  std::string plan;
  std::vector<int64_t> batches = {1, 8, 32};
  std::vector<int64_t> contexts = {1024};
  int64_t steps = 20; ///< timed decode steps per point (after 2 warm-ups)
  runtime::Device device = runtime::Device::kCpu;
  runtime::Precision precision = runtime::Precision::kFp32;
  std::string jsonOut;
};

absl::StatusOr<DecodeArgs>
parseDecodeArgs(const std::vector<std::string> &argv);

extern const char *kDecodeUsage;

} // namespace crosspool::bench

#endif // CROSSPOOL_TOOLS_CROSSPOOL_BENCH_SERVEARGS_H
