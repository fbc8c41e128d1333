//===- ServeReport.h - Latency and memory report of a run -----*- C++ -*-===//
//
// Per model and overall: TTFT (arrival -> first token), TBT (every gap
// between consecutive output tokens of a request), end-to-end latency
// (arrival -> end), each at P50/P95/P99; output throughput; KV pages over
// time; preemptions; failures. Printed as a table and written as JSON.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_SERVEREPORT_H
#define CROSSPOOL_RUNTIME_SERVING_SERVEREPORT_H

#include "runtime/serving/ServingEngine.h"

#include "nlohmann/json.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// Linear interpolation between closest ranks (numpy's default "linear"):
/// q in [0, 1]; NaN for an empty sample. `sorted` must be ascending.
double percentile(const std::vector<double> &sorted, double q);

struct LatencySummary {
  int64_t count = 0;
  double mean = 0, p50 = 0, p95 = 0, p99 = 0, max = 0;
};
/// Summary of an unsorted sample (zeros when empty).
LatencySummary summarize(std::vector<double> values);

struct ModelReport {
  std::string name;
  int64_t requests = 0, finished = 0, cancelled = 0, failed = 0;
  int64_t preemptions = 0, outputTokens = 0, recomputedTokens = 0;
  /// Seconds.
  LatencySummary ttft, tbt, e2e;
  /// Output tokens per second over the run (first arrival -> last end).
  double outputTokensPerS = 0;
  /// Raw TBT gaps (seconds), kept for CDF plots.
  std::vector<double> tbtSamples;
  /// Failure reasons, one per failed request.
  std::vector<std::string> failures;
  /// Cancelled by a replay's wall-clock cap (a subset of `cancelled`).
  int64_t notRun = 0;
  /// KV geometry (per model; 0 in `overall`): bytes of one page, pages per
  /// physical chunk, and the most pages the model held at once.
  size_t kvPageBytes = 0;
  int64_t kvPagesPerChunk = 0, kvPagesPeak = 0;
};

/// Reason given to the requests a wall-clock cap ends (ServeReport counts
/// the records whose reason starts with it as not run).
extern const char *const kNotRunReason;

/// Where a replay's steps spent their time (EngineStats::stepLog).
struct StepSummary {
  int64_t decodeOnlySteps = 0, prefillSteps = 0;
  /// Medians of StepRecord::wallS (seconds) per kind, and the mean rows /
  /// sequences of each kind.
  double decodeOnlyMedianS = 0, prefillMedianS = 0;
  double decodeOnlyMeanSeqs = 0, prefillMeanTokens = 0;
  /// Sums over the steps: host wall time, the runtime calls in it.
  double wallS = 0, runtimeS = 0;
  /// Sum of the steps' backend costs.
  BackendCounters backend;
};

struct ServeReport {
  std::string mode;
  std::vector<ModelReport> models;
  ModelReport overall;
  double durationS = 0;
  int64_t steps = 0;
  /// KV quota of the mode and its peak use, in physical chunks of
  /// kvChunkBytes (CPU: pages).
  int64_t kvChunksCapacity = 0;
  int64_t kvChunksPeak = 0;
  size_t kvChunkBytes = 0;
  std::vector<std::string> groupNames;
  std::vector<int64_t> groupChunks;
  std::vector<KvSample> kv;
  StepSummary stepSummary;
  std::vector<StepRecord> stepLog;
  /// The replay hit its wall-clock cap: requests not admitted by then were
  /// cancelled (`overall.notRun`), so the run is incomplete.
  bool stoppedByWallCap = false;
};

/// Builds the report of an engine after runUntilIdle. `modelNames[i]`
/// labels model index i.
ServeReport buildReport(const ServingEngine &engine, const std::string &mode,
                        const std::vector<std::string> &modelNames);

/// Fixed-width table (milliseconds), one row per model plus "all", then the
/// step summary line (formatStepSummary).
std::string formatReportTable(const ServeReport &report);
/// "steps: N decode-only (median X ms, S seqs), M with prefill (median Y ms,
/// P tokens); host wall W s: runtime R s = prep + launch (G graph captures)
/// + device wait + copy; KV map A calls (B ms), unmap C calls (D ms), ..."
std::string formatStepSummary(const StepSummary &summary);
StepSummary summarizeSteps(const std::vector<StepRecord> &log);

/// JSON object; TBT samples and KV samples are thinned to at most
/// `maxSamples` each (evenly by rank / time order), the step log (columns:
/// one array per field, times in ms) to `maxSteps` steps evenly spread
/// (`step_log.total` tells how many ran; `step_summary` covers all).
nlohmann::json reportToJson(const ServeReport &report,
                            size_t maxSamples = 4000, size_t maxSteps = 1500);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_SERVEREPORT_H
