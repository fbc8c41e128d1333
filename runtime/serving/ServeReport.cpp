//===- ServeReport.cpp - Latency and memory report of a serving run -------===//

#include "runtime/serving/ServeReport.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace crosspool::runtime {

double percentile(const std::vector<double> &sorted, double q) {
  if (sorted.empty())
    return std::numeric_limits<double>::quiet_NaN();
  double pos = q * double(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - double(lo));
}

LatencySummary summarize(std::vector<double> values) {
  LatencySummary s;
  if (values.empty())
    return s;
  std::sort(values.begin(), values.end());
  s.count = static_cast<int64_t>(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / s.count;
  s.p50 = percentile(values, 0.50);
  s.p95 = percentile(values, 0.95);
  s.p99 = percentile(values, 0.99);
  s.max = values.back();
  return s;
}

const char *const kNotRunReason = "not run: the replay reached --max-wall-s";

namespace {

struct Accumulator {
  ModelReport report;
  std::vector<double> ttft, e2e;
};

void add(Accumulator &a, const RequestRecord &r) {
  ModelReport &m = a.report;
  ++m.requests;
  m.preemptions += r.preemptions;
  m.recomputedTokens += r.recomputedTokens;
  m.outputTokens += static_cast<int64_t>(r.output.size());
  switch (r.state) {
  case RequestState::Finished:
    ++m.finished;
    break;
  case RequestState::Cancelled:
    ++m.cancelled;
    if (absl::StartsWith(r.reason, kNotRunReason))
      ++m.notRun;
    break;
  case RequestState::Failed:
    ++m.failed;
    m.failures.push_back(r.reason);
    break;
  default:
    break;
  }
  if (!r.tokenTimes.empty())
    a.ttft.push_back(r.tokenTimes.front() - r.arrivalTime);
  for (size_t i = 1; i < r.tokenTimes.size(); ++i)
    m.tbtSamples.push_back(r.tokenTimes[i] - r.tokenTimes[i - 1]);
  if (r.state == RequestState::Finished)
    a.e2e.push_back(r.finishTime - r.arrivalTime);
}

void close(Accumulator &a, double duration) {
  a.report.ttft = summarize(a.ttft);
  a.report.e2e = summarize(a.e2e);
  a.report.tbt = summarize(a.report.tbtSamples);
  a.report.outputTokensPerS =
      duration > 0 ? double(a.report.outputTokens) / duration : 0;
}

} // namespace

ServeReport buildReport(const ServingEngine &engine, const std::string &mode,
                        const std::vector<std::string> &modelNames) {
  ServeReport rep;
  rep.mode = mode;
  const auto &records = engine.records();
  double first = std::numeric_limits<double>::infinity(), last = 0;
  for (const RequestRecord &r : records) {
    first = std::min(first, r.arrivalTime);
    last = std::max(last, r.finishTime);
  }
  rep.durationS = records.empty() ? 0 : std::max(0.0, last - first);
  std::vector<Accumulator> per(engine.models().size());
  Accumulator all;
  for (size_t m = 0; m < per.size(); ++m)
    per[m].report.name =
        m < modelNames.size() ? modelNames[m] : absl::StrCat("model", m);
  all.report.name = "all";
  for (const RequestRecord &r : records) {
    add(per[r.model], r);
    add(all, r);
  }
  const Runtime &rt = engine.runtime();
  for (size_t m = 0; m < per.size(); ++m) {
    Accumulator &a = per[m];
    close(a, rep.durationS);
    ModelId id = engine.models()[m];
    a.report.kvPageBytes = rt.kvPageBytes(id);
    a.report.kvPagesPerChunk = rt.kvPagesPerChunk(id);
    a.report.kvPagesPeak = engine.stats().peakModelPages[m];
    rep.models.push_back(std::move(a.report));
  }
  close(all, rep.durationS);
  rep.overall = std::move(all.report);
  rep.steps = engine.stats().steps;
  rep.kvChunksCapacity = engine.layout().totalChunks();
  rep.kvChunksPeak = engine.stats().peakChunksInUse;
  rep.kvChunkBytes = rt.kvChunkBytes();
  rep.groupNames = engine.layout().groupNames;
  rep.groupChunks = engine.layout().groupChunks;
  rep.stoppedByWallCap = rep.overall.notRun > 0;
  rep.kv = engine.stats().kv;
  rep.stepLog = engine.stats().stepLog;
  rep.stepSummary = summarizeSteps(rep.stepLog);
  return rep;
}

namespace {

void addCounters(BackendCounters &a, const BackendCounters &b) {
  a.kvMaps += b.kvMaps;
  a.kvUnmaps += b.kvUnmaps;
  a.kvMapS += b.kvMapS;
  a.kvUnmapS += b.kvUnmapS;
  a.kvReuses += b.kvReuses;
  a.kvReclaims += b.kvReclaims;
  a.steps += b.steps;
  a.prepS += b.prepS;
  a.launchS += b.launchS;
  a.waitS += b.waitS;
  a.copyS += b.copyS;
  a.graphLaunches += b.graphLaunches;
  a.graphCaptures += b.graphCaptures;
  a.graphCaptureS += b.graphCaptureS;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return percentile(v, 0.5);
}

} // namespace

StepSummary summarizeSteps(const std::vector<StepRecord> &log) {
  StepSummary s;
  std::vector<double> decodeOnly, prefill;
  double seqs = 0, tokens = 0;
  for (const StepRecord &r : log) {
    if (r.prefillTokens == 0) {
      decodeOnly.push_back(r.wallS);
      seqs += double(r.seqs);
    } else {
      prefill.push_back(r.wallS);
      tokens += double(r.prefillTokens);
    }
    s.wallS += r.wallS;
    s.runtimeS += r.runtimeS;
    addCounters(s.backend, r.backend);
  }
  s.decodeOnlySteps = int64_t(decodeOnly.size());
  s.prefillSteps = int64_t(prefill.size());
  s.decodeOnlyMedianS = median(decodeOnly);
  s.prefillMedianS = median(prefill);
  s.decodeOnlyMeanSeqs = decodeOnly.empty() ? 0 : seqs / decodeOnly.size();
  s.prefillMeanTokens = prefill.empty() ? 0 : tokens / prefill.size();
  return s;
}

std::string formatStepSummary(const StepSummary &s) {
  const BackendCounters &b = s.backend;
  return absl::StrFormat(
      "steps: %d decode-only (median %.2f ms, %.1f seqs), %d with prefill "
      "(median %.2f ms, %.0f prefill tokens); host wall %.3f s, runtime "
      "calls %.3f s = prep %.3f + launch %.3f (%d graph captures %.3f s, "
      "%d graph launches) + device wait %.3f + copy %.3f; KV map %d calls "
      "%.2f ms, unmap %d calls %.2f ms, %d cached chunks reused, %d "
      "reclaimed\n",
      s.decodeOnlySteps, s.decodeOnlyMedianS * 1e3, s.decodeOnlyMeanSeqs,
      s.prefillSteps, s.prefillMedianS * 1e3, s.prefillMeanTokens, s.wallS,
      s.runtimeS, b.prepS, b.launchS, b.graphCaptures, b.graphCaptureS,
      b.graphLaunches, b.waitS, b.copyS, b.kvMaps, b.kvMapS * 1e3, b.kvUnmaps,
      b.kvUnmapS * 1e3, b.kvReuses, b.kvReclaims);
}

std::string formatReportTable(const ServeReport &rep) {
  const double gib = 1024.0 * 1024 * 1024;
  std::string out = absl::StrFormat(
      "mode %s: %.3f s, %d steps, KV chunks peak %d of %d (%.3f of %.3f GiB), "
      "%d preemptions\n",
      rep.mode, rep.durationS, rep.steps, rep.kvChunksPeak,
      rep.kvChunksCapacity, double(rep.kvChunksPeak * rep.kvChunkBytes) / gib,
      double(rep.kvChunksCapacity * rep.kvChunkBytes) / gib,
      rep.overall.preemptions);
  if (rep.stoppedByWallCap)
    absl::StrAppendFormat(&out,
                          "STOPPED BY --max-wall-s: %d of %d requests not run "
                          "(cancelled); this run is incomplete\n",
                          rep.overall.notRun, rep.overall.requests);
  std::string pages;
  for (const ModelReport &m : rep.models)
    absl::StrAppendFormat(&pages, "%s%s %d (%d B pages, %d per chunk)",
                          pages.empty() ? "" : ", ", m.name, m.kvPagesPeak,
                          m.kvPageBytes, m.kvPagesPerChunk);
  absl::StrAppend(&out, "KV pages peak per model: ", pages, "\n");
  absl::StrAppendFormat(
      &out,
      "%-18s %5s %5s %4s %4s %5s | %8s %8s %8s | %8s %8s %8s | %8s %8s "
      "%8s | %9s\n",
      "model", "req", "done", "fail", "canc", "preem", "TTFT p50", "p95", "p99",
      "TBT p50", "p95", "p99", "E2E p50", "p95", "p99", "out tok/s");
  auto row = [&](const ModelReport &m) {
    absl::StrAppendFormat(
        &out,
        "%-18s %5d %5d %4d %4d %5d | %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f | "
        "%8.2f %8.2f %8.2f | %9.1f\n",
        m.name.substr(0, 18), m.requests, m.finished, m.failed, m.cancelled,
        m.preemptions, m.ttft.p50 * 1e3, m.ttft.p95 * 1e3, m.ttft.p99 * 1e3,
        m.tbt.p50 * 1e3, m.tbt.p95 * 1e3, m.tbt.p99 * 1e3, m.e2e.p50 * 1e3,
        m.e2e.p95 * 1e3, m.e2e.p99 * 1e3, m.outputTokensPerS);
  };
  for (const ModelReport &m : rep.models)
    row(m);
  row(rep.overall);
  out += "(latencies in ms)\n";
  out += formatStepSummary(rep.stepSummary);
  return out;
}

namespace {

nlohmann::json summaryJson(const LatencySummary &s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50},
          {"p95", s.p95},     {"p99", s.p99},   {"max", s.max}};
}

/// `n` evenly spaced elements (first and last kept) of `v`.
template <typename T> std::vector<T> thin(const std::vector<T> &v, size_t n) {
  if (v.size() <= n || n < 2)
    return v;
  std::vector<T> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(v[i * (v.size() - 1) / (n - 1)]);
  return out;
}

nlohmann::json modelJson(const ModelReport &m, size_t maxSamples) {
  std::vector<double> tbt = m.tbtSamples;
  std::sort(tbt.begin(), tbt.end());
  return {{"name", m.name},
          {"requests", m.requests},
          {"finished", m.finished},
          {"cancelled", m.cancelled},
          {"not_run", m.notRun},
          {"kv_page_bytes", m.kvPageBytes},
          {"kv_pages_per_chunk", m.kvPagesPerChunk},
          {"kv_pages_peak", m.kvPagesPeak},
          {"failed", m.failed},
          {"failures", m.failures},
          {"preemptions", m.preemptions},
          {"recomputed_tokens", m.recomputedTokens},
          {"output_tokens", m.outputTokens},
          {"output_tokens_per_s", m.outputTokensPerS},
          {"ttft_s", summaryJson(m.ttft)},
          {"tbt_s", summaryJson(m.tbt)},
          {"e2e_s", summaryJson(m.e2e)},
          {"tbt_sorted_samples_s", thin(tbt, maxSamples)}};
}

nlohmann::json countersJson(const BackendCounters &b) {
  return {{"kv_maps", b.kvMaps},
          {"kv_unmaps", b.kvUnmaps},
          {"kv_map_s", b.kvMapS},
          {"kv_unmap_s", b.kvUnmapS},
          {"kv_reuses", b.kvReuses},
          {"kv_reclaims", b.kvReclaims},
          {"backend_steps", b.steps},
          {"prep_s", b.prepS},
          {"launch_s", b.launchS},
          {"wait_s", b.waitS},
          {"copy_s", b.copyS},
          {"graph_launches", b.graphLaunches},
          {"graph_captures", b.graphCaptures},
          {"graph_capture_s", b.graphCaptureS}};
}

/// Milliseconds rounded to the microsecond (short JSON numbers).
double ms(double seconds) { return std::round(seconds * 1e6) / 1e3; }

nlohmann::json stepLogJson(const std::vector<StepRecord> &log,
                           size_t maxSteps) {
  std::vector<StepRecord> kept = thin(log, maxSteps);
  nlohmann::json cols = nlohmann::json::object();
  auto col = [&](const char *name, auto get) {
    nlohmann::json a = nlohmann::json::array();
    for (const StepRecord &r : kept)
      a.push_back(get(r));
    cols[name] = std::move(a);
  };
  col("t_s", [](const StepRecord &r) { return ms(r.time) / 1e3; });
  col("model", [](const StepRecord &r) { return r.model; });
  col("rows", [](const StepRecord &r) { return r.rows; });
  col("seqs", [](const StepRecord &r) { return r.seqs; });
  col("decode_seqs", [](const StepRecord &r) { return r.decodeSeqs; });
  col("prefill_tokens", [](const StepRecord &r) { return r.prefillTokens; });
  col("context", [](const StepRecord &r) { return r.context; });
  col("clock_ms", [](const StepRecord &r) { return ms(r.clockS); });
  col("predicted_ms", [](const StepRecord &r) { return ms(r.predictedS); });
  col("prefill_cap", [](const StepRecord &r) { return r.prefillCap; });
  col("wall_ms", [](const StepRecord &r) { return ms(r.wallS); });
  col("runtime_ms", [](const StepRecord &r) { return ms(r.runtimeS); });
  col("prep_ms", [](const StepRecord &r) { return ms(r.backend.prepS); });
  col("launch_ms", [](const StepRecord &r) { return ms(r.backend.launchS); });
  col("wait_ms", [](const StepRecord &r) { return ms(r.backend.waitS); });
  col("copy_ms", [](const StepRecord &r) { return ms(r.backend.copyS); });
  col("graph_captures",
      [](const StepRecord &r) { return r.backend.graphCaptures; });
  col("kv_maps", [](const StepRecord &r) { return r.backend.kvMaps; });
  col("kv_unmaps", [](const StepRecord &r) { return r.backend.kvUnmaps; });
  col("kv_map_ms", [](const StepRecord &r) { return ms(r.backend.kvMapS); });
  col("kv_unmap_ms",
      [](const StepRecord &r) { return ms(r.backend.kvUnmapS); });
  cols["total"] = log.size();
  cols["kept"] = kept.size();
  return cols;
}

nlohmann::json stepSummaryJson(const StepSummary &s) {
  return {{"decode_only_steps", s.decodeOnlySteps},
          {"prefill_steps", s.prefillSteps},
          {"decode_only_median_ms", ms(s.decodeOnlyMedianS)},
          {"prefill_median_ms", ms(s.prefillMedianS)},
          {"decode_only_mean_seqs", s.decodeOnlyMeanSeqs},
          {"prefill_mean_tokens", s.prefillMeanTokens},
          {"wall_s", s.wallS},
          {"runtime_s", s.runtimeS},
          {"backend", countersJson(s.backend)}};
}

} // namespace

nlohmann::json reportToJson(const ServeReport &rep, size_t maxSamples,
                            size_t maxSteps) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelReport &m : rep.models)
    models.push_back(modelJson(m, maxSamples));
  nlohmann::json kv = nlohmann::json::array();
  for (const KvSample &s : thin(rep.kv, maxSamples))
    kv.push_back({{"t", s.time},
                  {"chunks", s.chunksInUse},
                  {"group_chunks", s.groupChunksInUse}});
  // Per group: its bytes, and the pages each model of the run would have if
  // it held the whole group alone (its own page size).
  nlohmann::json groupBytes = nlohmann::json::array(),
                 groupPages = nlohmann::json::array();
  for (int64_t chunks : rep.groupChunks) {
    groupBytes.push_back(chunks * int64_t(rep.kvChunkBytes));
    nlohmann::json pages = nlohmann::json::object();
    for (const ModelReport &m : rep.models)
      pages[m.name] = chunks * m.kvPagesPerChunk;
    groupPages.push_back(pages);
  }
  return {{"mode", rep.mode},
          {"duration_s", rep.durationS},
          {"steps", rep.steps},
          {"stopped_by_wall_cap", rep.stoppedByWallCap},
          {"kv_chunk_bytes", rep.kvChunkBytes},
          {"kv_chunks_capacity", rep.kvChunksCapacity},
          {"kv_chunks_peak", rep.kvChunksPeak},
          {"kv_bytes_capacity",
           rep.kvChunksCapacity * int64_t(rep.kvChunkBytes)},
          {"kv_bytes_peak", rep.kvChunksPeak * int64_t(rep.kvChunkBytes)},
          {"kv_groups",
           {{"names", rep.groupNames},
            {"chunks", rep.groupChunks},
            {"bytes", groupBytes},
            {"model_pages_if_alone", groupPages}}},
          {"models", models},
          {"overall", modelJson(rep.overall, maxSamples)},
          {"kv_over_time", kv},
          {"step_summary", stepSummaryJson(rep.stepSummary)},
          {"step_log", stepLogJson(rep.stepLog, maxSteps)}};
}

} // namespace crosspool::runtime
