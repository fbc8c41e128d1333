//===- crosspool-bench.cpp - Serving measurements -------------------------===//
//
//   crosspool-bench serve A.cpplan B.cpplan C.cpplan --mode all
//       [--trace azure_conv_2023.csv --rate 8 | --cv 4 --rate 8] ...
//
// Replays a request trace (or synthetic Gamma arrivals) against several
// models in one Runtime under each memory mode (crosspool, kvcached, static;
// docs/serving.md), with the same kernels and scheduler, and prints per
// model TTFT / TBT / end-to-end percentiles, throughput, preemptions,
// failures and KV pages; optionally searches the highest request rate that
// meets a TBT SLO, and writes everything as JSON for tools/plot_serving.py.
// Any bad flag, trace or plan: one line on stderr, exit status 1.
//
//===----------------------------------------------------------------------===//
#include "tools/crosspool-bench/ServeArgs.h"

#include "runtime/base/Status.h"
#include "runtime/serving/ServeReport.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace crosspool::runtime;
using namespace crosspool::bench;

namespace {

const char *kUsage = "usage: crosspool-bench serve MODEL.cpplan ... [flags] "
                     "(crosspool-bench serve --help lists them)";

/// One request of the workload, independent of the memory mode.
struct WorkItem {
  double arrival = 0; ///< at the workload's nominal rate
  int model = 0;
  std::vector<int32_t> prompt;
  int64_t maxNew = 1;
};

struct Workload {
  std::vector<WorkItem> items;
  double nominalRate = 0; ///< requests/s of `items`' arrivals
  std::string description;
};

struct Models {
  std::vector<std::string> names;
  std::vector<ModelFootprint> footprints;
  std::vector<int64_t> vocab;
  int64_t minPositions = 0;
};

absl::StatusOr<Models> probeModels(const ServeArgs &args) {
  RuntimeOptions ro;
  ro.kvPages = 1;
  ro.kvPageBytes = args.kvPageBytes;
  ro.device = args.device;
  ro.precision = args.precision;
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::create(ro));
  Models m;
  for (const std::string &plan : args.plans) {
    CP_ASSIGN_OR_RETURN(ModelId id, rt->loadModel(plan));
    CP_ASSIGN_OR_RETURN(const ModelInfo *info, rt->modelInfo(id));
    m.names.push_back(info->name);
    m.footprints.push_back(
        {info->name, info->kvPoolWeightBytes, info->weightsPoolWeightBytes});
    m.vocab.push_back(info->vocabSize);
    if (info->maxPositionEmbeddings > 0 &&
        (m.minPositions == 0 || info->maxPositionEmbeddings < m.minPositions))
      m.minPositions = info->maxPositionEmbeddings;
  }
  return m;
}

/// `trace`: the parsed --trace rows (empty for synthetic arrivals).
absl::StatusOr<Workload> buildWorkload(const ServeArgs &args,
                                       std::vector<TraceEntry> trace,
                                       const Models &models,
                                       const std::vector<double> &shares) {
  Workload w;
  WorkloadRng rng(args.seed * 7919 + 17);
  if (!args.trace.empty()) {
    if (int64_t(trace.size()) > args.requests)
      trace.resize(args.requests);
    if (args.rate > 0)
      scaleToRate(trace, args.rate);
    w.description =
        absl::StrCat("trace ", args.trace, " (first ", trace.size(), " rows)");
  } else {
    std::vector<double> t =
        gammaArrivals(args.requests, args.rate, args.cv, args.seed);
    for (double x : t)
      trace.push_back(
          {x, rng.uniformInt(args.promptRange.lo, args.promptRange.hi),
           rng.uniformInt(args.outputRange.lo, args.outputRange.hi)});
    w.description = absl::StrFormat("Gamma arrivals, CV %g, %d requests",
                                    args.cv, args.requests);
  }
  if (args.longContext.hi > 0) {
    for (TraceEntry &e : trace)
      e.promptTokens = rng.uniformInt(args.longContext.lo, args.longContext.hi);
    absl::StrAppend(&w.description, ", long-context prompts ",
                    args.longContext.lo, "-", args.longContext.hi);
  }
  // The caps keep prompt + output within the smallest model's positions.
  int64_t maxOutput = args.maxOutput;
  int64_t maxPrompt = args.maxPrompt;
  if (models.minPositions > 0) {
    if (maxOutput > models.minPositions)
      return absl::InvalidArgumentError(
          absl::StrCat("--max-output ", maxOutput, " exceeds the models' ",
                       models.minPositions, " positions"));
    if (maxPrompt == 0)
      maxPrompt = models.minPositions - maxOutput + 1;
    if (maxPrompt + maxOutput - 1 > models.minPositions)
      return absl::InvalidArgumentError(
          absl::StrCat("--max-prompt ", maxPrompt, " + --max-output ",
                       maxOutput, " - 1 exceeds the smallest model's ",
                       models.minPositions, " positions"));
  }
  auto [prompts, outputs] = capLengths(trace, maxPrompt, maxOutput);
  absl::StrAppendFormat(&w.description,
                        "; capped %d of %d prompts to %d tokens and %d "
                        "outputs to %d tokens",
                        prompts, trace.size(), maxPrompt, outputs, maxOutput);
  std::vector<int> model = assignModels(trace.size(), shares, args.seed + 1);
  for (size_t i = 0; i < trace.size(); ++i) {
    WorkItem item;
    item.arrival = trace[i].arrival;
    item.model = model[i];
    item.prompt =
        randomPrompt(rng, trace[i].promptTokens, models.vocab[model[i]]);
    item.maxNew = trace[i].outputTokens;
    w.items.push_back(std::move(item));
  }
  double span = w.items.back().arrival;
  w.nominalRate = span > 0 ? double(w.items.size() - 1) / span : 0;
  return w;
}

/// Progress on stderr at most twice a second (rewritten in place on a tty).
class Progress {
public:
  Progress(std::string label, bool enabled)
      : label_(std::move(label)), enabled_(enabled), tty_(isatty(2)),
        last_(std::chrono::steady_clock::now()) {}
  ~Progress() {
    if (printed_ && tty_)
      std::fprintf(stderr, "\n");
  }
  void update(const ServingEngine &e) {
    if (!enabled_)
      return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(500))
      return;
    last_ = now;
    int64_t running = 0;
    for (const RequestRecord &r : e.records())
      running += r.state == RequestState::Running;
    int64_t total = int64_t(e.records().size());
    std::fprintf(
        stderr,
        "%s[%s] sim %.2f s | done %lld/%lld | running %lld | KV %d/%lld "
        "pages | preemptions %lld%s",
        tty_ ? "\r" : "", label_.c_str(), e.now(),
        (long long)(total - e.liveRequests()), (long long)total,
        (long long)running, e.runtime().kvPagesInUse(),
        (long long)e.layout().totalPages(), (long long)e.stats().preemptions,
        tty_ ? "   " : "\n");
    printed_ = true;
  }

private:
  std::string label_;
  bool enabled_, tty_, printed_ = false;
  std::chrono::steady_clock::time_point last_;
};

/// One replay of the workload at `rate` (0 = its nominal rate).
absl::StatusOr<ServeReport> replay(Runtime &rt, const std::vector<ModelId> &ids,
                                   const ServeArgs &args,
                                   const KvLayout &layout, MemoryMode mode,
                                   const Workload &w, const Models &models,
                                   double rate) {
  ServingEngine::Options opts = args.engine;
  opts.layout = layout;
  opts.kvSampleEvery = std::max<int64_t>(1, int64_t(w.items.size()) / 50);
  Progress progress(absl::StrFormat("%s%s", memoryModeName(mode),
                                    rate > 0 ? absl::StrFormat(" @%.3g/s", rate)
                                             : std::string()),
                    !args.quiet);
  opts.onStep = [&](const ServingEngine &e) { progress.update(e); };
  CP_ASSIGN_OR_RETURN(std::unique_ptr<ServingEngine> engine,
                      ServingEngine::create(&rt, ids, opts));
  double scale = rate > 0 && w.nominalRate > 0 ? w.nominalRate / rate : 1.0;
  for (const WorkItem &item : w.items) {
    RequestSpec spec;
    spec.model = item.model;
    spec.prompt = item.prompt;
    spec.sampling.maxNewTokens = item.maxNew;
    spec.arrivalTime = item.arrival * scale;
    CP_RETURN_IF_ERROR(engine->submit(spec).status());
  }
  CP_RETURN_IF_ERROR(engine->runUntilIdle());
  return buildReport(*engine, memoryModeName(mode), models.names);
}

bool meetsSlo(const ServeReport &r, const ServeArgs &args) {
  return r.overall.failed == 0 && r.overall.tbt.p99 * 1e3 <= args.sloTbtMs &&
         (args.sloTtftMs <= 0 || r.overall.ttft.p99 * 1e3 <= args.sloTtftMs);
}

absl::Status runServe(const ServeArgs &args) {
  // The trace first: a malformed one is reported before any model loads.
  std::vector<TraceEntry> trace;
  if (!args.trace.empty()) {
    CP_ASSIGN_OR_RETURN(trace, loadTraceCsv(args.trace));
  }
  CP_ASSIGN_OR_RETURN(Models models, probeModels(args));
  std::vector<double> shares =
      popularityShares(args.popularity, int(models.names.size()));
  CP_ASSIGN_OR_RETURN(Workload w,
                      buildWorkload(args, std::move(trace), models, shares));
  for (const ModelFootprint &f : models.footprints)
    std::printf("model %s: %zu attention-side + %zu FFN weight bytes (fp32)\n",
                f.name.c_str(), f.attentionWeightBytes, f.ffnWeightBytes);
  std::printf("workload: %s; %.3g requests/s over %zu models (shares %s)\n",
              w.description.c_str(), w.nominalRate, models.names.size(),
              absl::StrJoin(shares, ", ", [](std::string *o, double s) {
                absl::StrAppendFormat(o, "%.3f", s);
              }).c_str());
  std::vector<KvLayout> layouts;
  int64_t pages = 1;
  for (MemoryMode mode : args.modes) {
    absl::StatusOr<KvLayout> layout = planKvLayout(
        mode, args.cluster, models.footprints, args.kvPageBytes,
        mode == MemoryMode::Static ? shares : std::vector<double>());
    if (!layout.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          memoryModeName(mode), " mode: ", layout.status().message()));
    std::printf("%s memory (%d GPUs x %.3f MB, %zu-byte KV pages):\n%s",
                memoryModeName(mode), args.cluster.gpus, args.gpuMemMb,
                args.kvPageBytes, layout->describe(models.footprints).c_str());
    pages = std::max(pages, layout->totalPages());
    layouts.push_back(std::move(*layout));
  }
  // One physical pool large enough for every mode; each engine enforces
  // its mode's groups, so the pool itself never binds.
  RuntimeOptions ro;
  ro.kvPages = int32_t(pages);
  ro.kvPageBytes = args.kvPageBytes;
  ro.device = args.device;
  ro.precision = args.precision;
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::create(ro));
  std::vector<ModelId> ids;
  for (const std::string &plan : args.plans) {
    CP_ASSIGN_OR_RETURN(ModelId id, rt->loadModel(plan));
    ids.push_back(id);
  }

  nlohmann::json runs = nlohmann::json::array();
  for (size_t k = 0; k < args.modes.size(); ++k) {
    MemoryMode mode = args.modes[k];
    CP_ASSIGN_OR_RETURN(ServeReport report,
                        replay(*rt, ids, args, layouts[k], mode, w, models, 0));
    std::printf("\n%s", formatReportTable(report).c_str());
    for (const ModelReport &m : report.models)
      if (!m.failures.empty())
        std::printf("%s: %zu failed, first: %s\n", m.name.c_str(),
                    m.failures.size(), m.failures.front().c_str());
    nlohmann::json run = reportToJson(report);
    if (args.sloTbtMs > 0) {
      // Bisection between the bounds: the highest probed rate that met the
      // SLO (0 when even LO did not).
      double lo = args.searchLo, hi = args.searchHi, best = 0;
      nlohmann::json probes = nlohmann::json::array();
      auto probe = [&](double rate) -> absl::StatusOr<bool> {
        CP_ASSIGN_OR_RETURN(ServeReport r, replay(*rt, ids, args, layouts[k],
                                                  mode, w, models, rate));
        bool ok = meetsSlo(r, args);
        probes.push_back({{"rate", rate},
                          {"tbt_p99_s", r.overall.tbt.p99},
                          {"ttft_p99_s", r.overall.ttft.p99},
                          {"failed", r.overall.failed},
                          {"meets_slo", ok}});
        return ok;
      };
      CP_ASSIGN_OR_RETURN(bool hiOk, probe(hi));
      if (hiOk) {
        best = hi;
      } else {
        CP_ASSIGN_OR_RETURN(bool loOk, probe(lo));
        if (loOk) {
          best = lo;
          for (int i = 0; i < args.searchIters; ++i) {
            double mid = std::sqrt(lo * hi);
            CP_ASSIGN_OR_RETURN(bool ok, probe(mid));
            (ok ? lo : hi) = mid;
            if (ok)
              best = mid;
          }
        }
      }
      std::printf(
          "%s: max sustainable rate %.4g requests/s (P99 TBT <= %g "
          "ms%s, no failures; searched %g-%g)%s\n",
          memoryModeName(mode), best, args.sloTbtMs,
          args.sloTtftMs > 0
              ? absl::StrFormat(", P99 TTFT <= %g ms", args.sloTtftMs).c_str()
              : "",
          args.searchLo, args.searchHi,
          hiOk ? " (the upper bound met the SLO)" : "");
      run["max_sustainable_rate"] = best;
      run["rate_probes"] = probes;
    }
    runs.push_back(std::move(run));
  }

  if (!args.jsonOut.empty()) {
    nlohmann::json cfg = {
        {"plans", args.plans},
        {"models", models.names},
        {"workload", w.description},
        {"nominal_rate", w.nominalRate},
        {"gpus", args.cluster.gpus},
        {"gpu_mem_mb", args.gpuMemMb},
        {"kv_gpus", args.cluster.kvGpus},
        {"kv_page_bytes", args.kvPageBytes},
        {"max_step_tokens", args.engine.maxStepTokens},
        {"clock", args.engine.clock == ServingEngine::Clock::CostModel
                      ? "cost"
                      : "measured"},
        {"slo_tbt_ms", args.sloTbtMs},
        {"slo_ttft_ms", args.sloTtftMs}};
    std::ofstream out(args.jsonOut);
    out << nlohmann::json{{"config", cfg}, {"runs", runs}}.dump(1) << "\n";
    if (!out)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write --json-out '", args.jsonOut, "'"));
    std::printf("wrote %s\n", args.jsonOut.c_str());
  }
  return absl::OkStatus();
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> rest(argv + 1, argv + argc);
  if (rest.empty()) {
    std::fprintf(stderr, "crosspool-bench: error: missing subcommand; %s\n",
                 kUsage);
    return 1;
  }
  if (rest[0] != "serve") {
    std::fprintf(stderr,
                 "crosspool-bench: error: unknown subcommand '%s' (expects "
                 "serve); %s\n",
                 rest[0].c_str(), kUsage);
    return 1;
  }
  rest.erase(rest.begin());
  if (std::count(rest.begin(), rest.end(), "--help")) {
    std::printf("%s\n", kServeUsage);
    return 0;
  }
  absl::StatusOr<ServeArgs> args = parseServeArgs(rest);
  if (!args.ok()) {
    std::fprintf(stderr, "crosspool-bench serve: error: %s\n",
                 std::string(args.status().message()).c_str());
    return 1;
  }
  absl::Status status = runServe(*args);
  if (!status.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "crosspool-bench serve: error: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
