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
//
//   crosspool-bench decode MODEL.cpplan [--batches 1,8,32] [--contexts 1024]
//
// Times decode steps of one plan through the Runtime, the path every served
// token takes (executor, page tables, CUDA graphs, device argmax): B fresh
// sequences are prefilled to C tokens, then each timed step appends one
// greedy token to all of them (host wall time per step, synchronous; median
// and P90 of --steps after 2 warm-ups). crosspool-decode-bench times the
// kernels' step alone against the bandwidth floor (docs/perf.md).
//
// Any bad flag, trace or plan: one line on stderr, exit status 1.
//
//===----------------------------------------------------------------------===//
#include "tools/crosspool-bench/ServeArgs.h"

#include "runtime/base/Status.h"
#include "runtime/base/ToolMain.h"
#include "runtime/serving/ServeReport.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <unistd.h>

using namespace crosspool::runtime;
using namespace crosspool::bench;

namespace {

const char *kUsage = "usage: crosspool-bench serve MODEL.cpplan ... [flags] "
                     "| decode MODEL.cpplan [flags] (crosspool-bench serve "
                     "--help / decode --help list them)";

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
  std::vector<ModelId> ids;
  std::vector<std::string> names; ///< unique (a repeated name gets "#2")
  std::vector<ModelFootprint> footprints;
  std::vector<int64_t> vocab, positions, pagesPerChunk;
  std::vector<size_t> pageBytes;
};

/// Loads every plan ONCE into `rt`; every replay of every mode reuses them.
absl::StatusOr<Models> loadModels(Runtime &rt, const ServeArgs &args) {
  Models m;
  for (const std::string &plan : args.plans) {
    auto start = std::chrono::steady_clock::now();
    if (!args.quiet)
      std::fprintf(stderr, "loading %s ...\n", plan.c_str());
    CP_ASSIGN_OR_RETURN(ModelId id, rt.loadModel(plan));
    CP_ASSIGN_OR_RETURN(const ModelInfo *info, rt.modelInfo(id));
    std::string name = info->name;
    for (int k = 2; std::count(m.names.begin(), m.names.end(), name); ++k)
      name = absl::StrCat(info->name, "#", k);
    m.ids.push_back(id);
    m.names.push_back(name);
    // The bytes the backend holds (fp32 on the CPU, the precision on CUDA).
    m.footprints.push_back(
        {name, info->kvPoolWeightBytes, info->weightsPoolWeightBytes});
    m.vocab.push_back(info->vocabSize);
    m.positions.push_back(info->maxPositionEmbeddings);
    m.pagesPerChunk.push_back(rt.kvPagesPerChunk(id));
    m.pageBytes.push_back(rt.kvPageBytes(id));
    if (!args.quiet)
      std::fprintf(stderr, "loaded %s in %.1f s\n", name.c_str(),
                   std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count());
  }
  return m;
}

/// One step of the largest shape per model (a maxStepTokens-row prefill
/// chunk, then a decode row), so the executor's activations and workspaces
/// exist before the free memory that sizes the KV pool is read.
absl::Status warmUp(Runtime &rt, const Models &models, const ServeArgs &args) {
  for (size_t m = 0; m < models.ids.size(); ++m) {
    int64_t rows = args.engine.maxStepTokens;
    if (models.positions[m] > 0)
      rows = std::min<int64_t>(rows, models.positions[m] - 1);
    WorkloadRng rng(m + 1);
    CP_ASSIGN_OR_RETURN(SequenceId seq, rt.startSequence(models.ids[m]));
    absl::Status st =
        rt.step({seq}, {randomPrompt(rng, rows, models.vocab[m])}).status();
    if (st.ok())
      st = rt.step({seq}, {randomPrompt(rng, 1, models.vocab[m])}).status();
    CP_RETURN_IF_ERROR(rt.release(seq));
    if (!st.ok())
      return absl::Status(
          st.code(),
          absl::StrCat("warm-up of ", models.names[m], ": ", st.message()));
  }
  return absl::OkStatus();
}

/// `trace`: the parsed --trace rows (empty for synthetic arrivals).
absl::StatusOr<Workload> buildWorkload(const ServeArgs &args,
                                       std::vector<TraceEntry> trace,
                                       const Models &models,
                                       const std::vector<double> &shares,
                                       nlohmann::json *capsJson) {
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
  // Each model's prompts are capped by ITS positions (with the output cap),
  // and by --max-prompt when given.
  const int n = static_cast<int>(models.names.size());
  const int64_t maxOutput = args.maxOutput;
  std::vector<int64_t> promptCap(n, args.maxPrompt);
  for (int m = 0; m < n; ++m) {
    int64_t pos = models.positions[m];
    if (pos <= 0)
      continue;
    if (maxOutput > pos)
      return absl::InvalidArgumentError(
          absl::StrCat("--max-output ", maxOutput, " exceeds ", models.names[m],
                       "'s ", pos, " positions"));
    int64_t fit = pos - maxOutput + 1;
    promptCap[m] = promptCap[m] > 0 ? std::min(promptCap[m], fit) : fit;
  }
  std::vector<int> model = assignModels(trace.size(), shares, args.seed + 1);
  int64_t outputsCut = 0;
  std::vector<int64_t> cut =
      capLengthsPerModel(trace, model, promptCap, maxOutput, &outputsCut);
  std::vector<int64_t> count(n, 0), longest(n, 0);
  for (size_t i = 0; i < trace.size(); ++i) {
    ++count[model[i]];
    longest[model[i]] = std::max(longest[model[i]], trace[i].promptTokens);
  }
  int64_t totalCut = 0;
  std::string perModel;
  *capsJson = nlohmann::json::array();
  for (int m = 0; m < n; ++m) {
    totalCut += cut[m];
    absl::StrAppendFormat(&perModel, "%s%s %d of %d to %d", m ? ", " : "",
                          models.names[m], cut[m], count[m], promptCap[m]);
    capsJson->push_back({{"model", models.names[m]},
                         {"positions", models.positions[m]},
                         {"requests", count[m]},
                         {"prompt_cap", promptCap[m]},
                         {"prompts_capped", cut[m]},
                         {"longest_prompt", longest[m]}});
  }
  absl::StrAppendFormat(&w.description,
                        "; prompts capped: %d of %d (per model: %s); outputs "
                        "capped: %d of %d to %d tokens",
                        totalCut, trace.size(), perModel, outputsCut,
                        trace.size(), maxOutput);
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
        start_(std::chrono::steady_clock::now()), last_(start_) {}
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
        "%s[%s] sim %.2f s | wall %.0f s | done %lld/%lld | running %lld | "
        "KV %lld/%lld chunks | preemptions %lld%s",
        tty_ ? "\r" : "", label_.c_str(), e.now(),
        std::chrono::duration<double>(now - start_).count(),
        (long long)(total - e.liveRequests()), (long long)total,
        (long long)running, (long long)e.runtime().kvChunksInUse(),
        (long long)e.layout().totalChunks(), (long long)e.stats().preemptions,
        tty_ ? "   " : "\n");
    printed_ = true;
  }

private:
  std::string label_;
  bool enabled_, tty_, printed_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

/// One replay of the workload at `rate` (0 = its nominal rate) on a fresh
/// engine over the loaded models. With --max-wall-s, after that many wall
/// seconds every request not yet producing tokens (waiting, not yet arrived,
/// mid-prefill or preempted) is cancelled as not run; requests that are
/// decoding finish, unless they are still live at 1.25 times the cap.
absl::StatusOr<ServeReport> replay(Runtime &rt, const ServeArgs &args,
                                   const KvLayout &layout, MemoryMode mode,
                                   const Workload &w, const Models &models,
                                   double rate) {
  // Each replay starts from an empty pool: nothing left by the last one.
  if (rt.kvPagesInUse() != 0 || rt.kvChunksInUse() != 0)
    return absl::InternalError(
        absl::StrCat("replay starts with ", rt.kvPagesInUse(), " KV pages in ",
                     rt.kvChunksInUse(), " chunks still held"));
  ServingEngine::Options opts = args.engine;
  opts.layout = layout;
  opts.kvSampleEvery = std::max<int64_t>(1, int64_t(w.items.size()) / 50);
  Progress progress(absl::StrFormat("%s%s", memoryModeName(mode),
                                    rate > 0 ? absl::StrFormat(" @%.3g/s", rate)
                                             : std::string()),
                    !args.quiet);
  opts.onStep = [&](const ServingEngine &e) { progress.update(e); };
  CP_ASSIGN_OR_RETURN(std::unique_ptr<ServingEngine> engine,
                      ServingEngine::create(&rt, models.ids, opts));
  double scale = rate > 0 && w.nominalRate > 0 ? w.nominalRate / rate : 1.0;
  for (const WorkItem &item : w.items) {
    RequestSpec spec;
    spec.model = item.model;
    spec.prompt = item.prompt;
    spec.sampling.maxNewTokens = item.maxNew;
    spec.arrivalTime = item.arrival * scale;
    CP_RETURN_IF_ERROR(engine->submit(spec).status());
  }
  auto start = std::chrono::steady_clock::now();
  auto wall = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };
  bool capped = false;
  while (engine->liveRequests() > 0) {
    if (args.maxWallS > 0 && wall() > args.maxWallS) {
      bool hard = wall() > 1.25 * args.maxWallS;
      if (!capped || hard)
        for (const RequestRecord &r : engine->records()) {
          if (r.terminal())
            continue;
          bool decoding = r.state == RequestState::Running && !r.output.empty();
          if (decoding && !hard)
            continue;
          CP_RETURN_IF_ERROR(engine->cancel(
              r.id, r.output.empty()
                        ? std::string(kNotRunReason)
                        : absl::StrCat(kNotRunReason, " (cut after ",
                                       r.output.size(), " tokens)")));
        }
      capped = true;
      continue;
    }
    CP_ASSIGN_OR_RETURN(bool ran, engine->step());
    if (ran)
      continue;
    double next = std::numeric_limits<double>::infinity();
    for (const RequestRecord &r : engine->records())
      if (!r.terminal() && r.state == RequestState::Waiting &&
          r.arrivalTime > engine->now())
        next = std::min(next, r.arrivalTime);
    if (!(next > engine->now()) || std::isinf(next))
      return absl::InternalError(
          "serving engine: requests are live but none can run");
    engine->advanceTo(next);
  }
  ServeReport report = buildReport(*engine, memoryModeName(mode), models.names);
  engine.reset();
  if (rt.kvPagesInUse() != 0)
    return absl::InternalError("a replay ended with KV pages still held");
  return report;
}

bool meetsSlo(const ServeReport &r, const ServeArgs &args) {
  return r.overall.failed == 0 && !r.stoppedByWallCap &&
         r.overall.tbt.p99 * 1e3 <= args.sloTbtMs &&
         (args.sloTtftMs <= 0 || r.overall.ttft.p99 * 1e3 <= args.sloTtftMs);
}

constexpr double kGiB = 1024.0 * 1024 * 1024;

absl::Status runServe(const ServeArgs &args) {
  // The trace first: a malformed one is reported before any model loads.
  std::vector<TraceEntry> trace;
  if (!args.trace.empty()) {
    CP_ASSIGN_OR_RETURN(trace, loadTraceCsv(args.trace));
  }
  const bool cuda = args.device == Device::kCuda;
  RuntimeOptions ro;
  ro.device = args.device;
  ro.precision = args.precision;
  ro.kvPageBytes = args.kvPageBytes;
  if (cuda) {
    // A small pool for the warm-up; it grows to the modes' need once the
    // weights are in and the free memory is known.
    ro.kvChunks = 256;
    ro.kvMaxChunks = 1 << 17;
  } else {
    // The CPU pool cannot grow: size it for the whole simulated cluster,
    // which bounds every mode's KV (the engines enforce the modes' quotas).
    double pages = double(args.cluster.gpus) *
                   double(args.cluster.gpuMemoryBytes) /
                   double(args.kvPageBytes);
    if (pages > double(std::numeric_limits<int32_t>::max()))
      return absl::InvalidArgumentError(absl::StrFormat(
          "--gpus %d x %.0f MB is %.0f KV pages of %d bytes: more than the "
          "CPU pool can index",
          args.cluster.gpus, args.gpuMemMb, pages, args.kvPageBytes));
    ro.kvPages = std::max<int32_t>(1, int32_t(pages));
  }
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::create(ro));
  CP_ASSIGN_OR_RETURN(Models models, loadModels(*rt, args));
  const int n = static_cast<int>(models.names.size());
  std::vector<double> shares = popularityShares(args.popularity, n);
  nlohmann::json capsJson;
  CP_ASSIGN_OR_RETURN(Workload w, buildWorkload(args, std::move(trace), models,
                                                shares, &capsJson));
  size_t weightBytes = 0;
  for (const ModelFootprint &f : models.footprints)
    weightBytes += f.attentionWeightBytes + f.ffnWeightBytes;
  const char *storage = args.precision == Precision::kBf16 ? "bf16" : "fp32";
  for (int m = 0; m < n; ++m) {
    const ModelFootprint &f = models.footprints[m];
    std::printf("model %s: %zu attention-side + %zu FFN weight bytes (%s, as "
                "held); KV pages of %zu bytes, %lld per chunk; %lld "
                "positions\n",
                f.name.c_str(), f.attentionWeightBytes, f.ffnWeightBytes,
                storage, models.pageBytes[m],
                (long long)models.pagesPerChunk[m],
                (long long)models.positions[m]);
  }
  std::printf("workload: %s; %.3g requests/s over %d models (shares %s)\n",
              w.description.c_str(), w.nominalRate, n,
              absl::StrJoin(shares, ", ", [](std::string *o, double s) {
                absl::StrAppendFormat(o, "%.3f", s);
              }).c_str());
  if (args.engine.tbtTargetMs > 0)
    std::printf("prefill chunks: capped while any request decodes to a "
                "predicted %g ms / (models with work) per step, at least %lld "
                "tokens\n",
                args.engine.tbtTargetMs,
                (long long)args.engine.minPrefillChunk);

  // Physical KV: the CPU pool as created; on CUDA the chunks the card has
  // free after the weights and the warmed-up workspaces, less the reserve.
  const size_t chunkBytes = rt->kvChunkBytes();
  int64_t chunksAvailable = rt->kvChunksTotal();
  size_t deviceFree = 0, deviceTotal = 0;
  ClusterSpec cluster = args.cluster;
  if (cuda) {
    CP_RETURN_IF_ERROR(warmUp(*rt, models, args));
    CP_ASSIGN_OR_RETURN(auto mem, rt->deviceMemory());
    deviceFree = mem.first;
    deviceTotal = mem.second;
    size_t reserve = size_t(args.gpuReserveMb * 1024 * 1024);
    CP_ASSIGN_OR_RETURN(
        chunksAvailable,
        kvChunksForCard(deviceFree, reserve, chunkBytes, rt->kvChunksTotal()));
    std::printf("device: %.2f GiB total, %.2f GiB free after %.2f GiB of "
                "weights and the workspaces; %.0f MiB reserve -> %lld KV "
                "chunks of %zu bytes (%.2f GiB) available\n",
                deviceTotal / kGiB, deviceFree / kGiB, weightBytes / kGiB,
                args.gpuReserveMb, (long long)chunksAvailable, chunkBytes,
                chunksAvailable * double(chunkBytes) / kGiB);
    if (!args.gpuMemGiven)
      // The card is the cluster: its memory is the weights plus the KV it
      // can hold.
      cluster.gpuMemoryBytes = weightBytes + chunksAvailable * chunkBytes;
  }
  std::vector<KvLayout> layouts;
  int64_t needed = 1;
  for (MemoryMode mode : args.modes) {
    absl::StatusOr<KvLayout> layout = planKvLayout(
        mode, cluster, models.footprints, chunkBytes,
        mode == MemoryMode::Static ? shares : std::vector<double>());
    if (!layout.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          memoryModeName(mode), " mode: ", layout.status().message()));
    std::printf(
        "%s memory (%d GPUs x %.3f GiB, %zu-byte KV chunks):\n%s",
        memoryModeName(mode), cluster.gpus, cluster.gpuMemoryBytes / kGiB,
        chunkBytes,
        layout->describe(models.footprints, chunkBytes, models.pagesPerChunk)
            .c_str());
    if (layout->totalChunks() > chunksAvailable)
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s mode needs %d KV chunks (%.2f GiB) but %s has %d (%.2f GiB)",
          memoryModeName(mode), layout->totalChunks(),
          layout->totalChunks() * double(chunkBytes) / kGiB,
          cuda ? "the card (free memory less the reserve)" : "the pool",
          chunksAvailable, chunksAvailable * double(chunkBytes) / kGiB));
    needed = std::max(needed, layout->totalChunks());
    layouts.push_back(std::move(*layout));
  }
  if (cuda) {
    // One physical pool of the largest mode's quota; each engine enforces
    // its mode's groups exactly, so the pool itself never binds beyond them.
    auto start = std::chrono::steady_clock::now();
    CP_RETURN_IF_ERROR(rt->growKvPool(needed));
    if (!args.quiet)
      std::fprintf(stderr, "KV pool: %lld chunks created in %.1f s\n",
                   (long long)rt->kvChunksTotal(),
                   std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count());
  }
  std::printf("physical KV pool: %lld chunks of %zu bytes = %.3f GiB\n",
              (long long)rt->kvChunksTotal(), chunkBytes,
              rt->kvChunksTotal() * double(chunkBytes) / kGiB);

  // Warm-up replays (discarded): the first mode's replay pays what a fresh
  // process pays once (kernel module loads, graph captures, first KV chunk
  // maps); without them that cost lands on whichever mode runs first.
  double warmS = 0;
  for (int64_t i = 0; i < args.warmReplays; ++i) {
    auto start = std::chrono::steady_clock::now();
    CP_RETURN_IF_ERROR(
        replay(*rt, args, layouts[0], args.modes[0], w, models, 0).status());
    warmS +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
  }
  if (args.warmReplays > 0)
    std::printf("warm-up: %lld replay(s) in %s mode, %.1f s, discarded\n",
                (long long)args.warmReplays, memoryModeName(args.modes[0]),
                warmS);

  // A probe at the rate of the main replay reuses it.
  int64_t replays = 0;
  nlohmann::json runs = nlohmann::json::array();
  for (size_t k = 0; k < args.modes.size(); ++k) {
    MemoryMode mode = args.modes[k];
    CP_ASSIGN_OR_RETURN(ServeReport report,
                        replay(*rt, args, layouts[k], mode, w, models, 0));
    ++replays;
    std::printf("\n%s", formatReportTable(report).c_str());
    for (const ModelReport &m : report.models)
      if (!m.failures.empty())
        std::printf("%s: %zu failed, first: %s\n", m.name.c_str(),
                    m.failures.size(), m.failures.front().c_str());
    nlohmann::json run = reportToJson(report);
    run["rate"] = w.nominalRate;
    if (args.sloTbtMs > 0) {
      // Bisection between the bounds: the highest probed rate that met the
      // SLO (0 when even LO did not).
      double lo = args.searchLo, hi = args.searchHi, best = 0;
      nlohmann::json probes = nlohmann::json::array();
      auto probe = [&](double rate) -> absl::StatusOr<bool> {
        bool reused =
            w.nominalRate > 0 && std::abs(rate / w.nominalRate - 1) < 1e-9;
        ServeReport r;
        if (reused) {
          r = report;
        } else {
          CP_ASSIGN_OR_RETURN(
              r, replay(*rt, args, layouts[k], mode, w, models, rate));
          ++replays;
        }
        bool ok = meetsSlo(r, args);
        probes.push_back({{"rate", rate},
                          {"tbt_p99_s", r.overall.tbt.p99},
                          {"ttft_p99_s", r.overall.ttft.p99},
                          {"failed", r.overall.failed},
                          {"not_run", r.overall.notRun},
                          {"stopped_by_wall_cap", r.stoppedByWallCap},
                          {"reused_main_replay", reused},
                          {"meets_slo", ok}});
        if (!args.quiet)
          std::fprintf(stderr,
                       "[%s] probe %.4g/s: P99 TBT %.1f ms, P99 TTFT %.1f ms, "
                       "%lld failed%s -> %s\n",
                       memoryModeName(mode), rate, r.overall.tbt.p99 * 1e3,
                       r.overall.ttft.p99 * 1e3, (long long)r.overall.failed,
                       r.stoppedByWallCap ? ", stopped by --max-wall-s" : "",
                       ok ? "meets the SLO" : "misses the SLO");
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
          "ms%s, no failures, not stopped by --max-wall-s; searched "
          "%g-%g)%s\n",
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
  std::printf("models loaded %lld times for %lld replays\n",
              (long long)rt->modelLoads(), (long long)replays);

  if (!args.jsonOut.empty()) {
    nlohmann::json modelsJson = nlohmann::json::array();
    for (int m = 0; m < n; ++m)
      modelsJson.push_back(
          {{"name", models.names[m]},
           {"plan", args.plans[m]},
           {"attention_weight_bytes",
            models.footprints[m].attentionWeightBytes},
           {"ffn_weight_bytes", models.footprints[m].ffnWeightBytes},
           {"kv_page_bytes", models.pageBytes[m]},
           {"kv_pages_per_chunk", models.pagesPerChunk[m]},
           {"positions", models.positions[m]}});
    nlohmann::json cfg = {
        {"plans", args.plans},
        {"models", models.names},
        {"model_details", modelsJson},
        {"workload", w.description},
        {"prompt_caps", capsJson},
        {"nominal_rate", w.nominalRate},
        {"device", cuda ? "cuda" : "cpu"},
        {"precision", storage},
        {"weight_bytes", weightBytes},
        {"device_total_bytes", deviceTotal},
        {"device_free_bytes_after_load", deviceFree},
        {"gpu_reserve_mb", cuda ? args.gpuReserveMb : 0.0},
        {"gpus", cluster.gpus},
        {"gpu_mem_bytes", cluster.gpuMemoryBytes},
        {"gpu_mem_mb", cluster.gpuMemoryBytes / (1024.0 * 1024)},
        {"kv_gpus", cluster.kvGpus},
        {"kv_chunk_bytes", chunkBytes},
        {"kv_physical_chunks", rt->kvChunksTotal()},
        {"kv_physical_bytes", rt->kvChunksTotal() * int64_t(chunkBytes)},
        {"kv_page_bytes", args.kvPageBytes},
        {"max_step_tokens", args.engine.maxStepTokens},
        {"max_batch_seqs", args.engine.maxBatchSeqs},
        {"tbt_target_ms", args.engine.tbtTargetMs},
        {"min_prefill_chunk", args.engine.minPrefillChunk},
        {"clock", args.engine.clock == ServingEngine::Clock::CostModel
                      ? "cost"
                      : "measured"},
        {"max_wall_s", args.maxWallS},
        {"model_loads", rt->modelLoads()},
        {"replays", replays},
        {"warm_replays", args.warmReplays},
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

/// Median and P90 of `v` (not empty).
std::pair<double, double> medianP90(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 9 / 10)]};
}

absl::Status runDecode(const DecodeArgs &args) {
  const bool cuda = args.device == Device::kCuda;
  const int64_t maxB =
      *std::max_element(args.batches.begin(), args.batches.end());
  const int64_t maxC =
      *std::max_element(args.contexts.begin(), args.contexts.end());
  const int64_t tokens = maxC + args.steps + 4; // per sequence, at most
  RuntimeOptions ro;
  ro.device = args.device;
  ro.precision = args.precision;
  if (cuda) {
    ro.kvChunks = 64; // grown below once the model's page size is known
    ro.kvMaxChunks = 1 << 17;
  }
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::create(ro));
  CP_ASSIGN_OR_RETURN(ModelId model, rt->loadModel(args.plan));
  CP_ASSIGN_OR_RETURN(const ModelInfo *info, rt->modelInfo(model));
  if (info->maxPositionEmbeddings > 0 && tokens > info->maxPositionEmbeddings)
    return absl::InvalidArgumentError(
        absl::StrCat("--contexts ", maxC, " plus ", args.steps + 4,
                     " decode tokens exceed the model's ",
                     info->maxPositionEmbeddings, " positions"));
  const int64_t pagesPerSeq = rt->kvPagesFor(model, tokens);
  if (cuda) {
    // Room for the largest point: maxB sequences of `tokens` tokens, plus a
    // partly used chunk per sequence.
    const int64_t perChunk =
        std::max<int64_t>(1, int64_t(rt->kvChunkBytes() /
                                     std::max<size_t>(1, rt->kvPageBytes())));
    const int64_t chunks =
        (maxB * pagesPerSeq + perChunk - 1) / perChunk + maxB;
    if (chunks > rt->kvChunksTotal())
      CP_RETURN_IF_ERROR(rt->growKvPool(chunks));
  } else if (maxB * pagesPerSeq > rt->kvPagesTotal()) {
    return absl::InvalidArgumentError(absl::StrCat(
        maxB, " sequences of ", tokens, " tokens need ", maxB * pagesPerSeq,
        " KV pages; the CPU pool has ", rt->kvPagesTotal()));
  }
  std::printf("model %s (%s, %s): decode steps through the Runtime",
              info->name.c_str(), cuda ? "cuda" : "cpu",
              args.precision == Precision::kBf16 ? "bf16" : "fp32");
  if (cuda)
    std::printf(", %lld add + RMSNorm pairs folded, %lld hand-offs without "
                "a copy",
                (long long)rt->backendCounters().addNormFolds,
                (long long)rt->backendCounters().zeroCopyRecvs);
  std::printf(
      "\n| batch | context | step ms (median) | step ms (P90) | tokens/s "
      "| host prep ms | launch ms | device wait ms |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json points = nlohmann::json::array();
  for (int64_t C : args.contexts)
    for (int64_t B : args.batches) {
      std::vector<SequenceId> seqs;
      auto releaseAll = [&] {
        for (SequenceId s : seqs)
          (void)rt->release(s);
        seqs.clear();
      };
      std::vector<std::vector<int32_t>> chunks;
      // Prefill: each sequence's C tokens, at most 2048 per step.
      for (int64_t b = 0; b < B; ++b) {
        absl::StatusOr<SequenceId> seq = rt->startSequence(model);
        if (!seq.ok()) {
          releaseAll();
          return seq.status();
        }
        seqs.push_back(*seq);
        for (int64_t at = 0; at < C; at += 2048) {
          std::vector<int32_t> ids;
          for (int64_t i = at; i < std::min(C, at + 2048); ++i)
            ids.push_back(int32_t((i * 7919 + b * 31 + 1) % info->vocabSize));
          absl::StatusOr<std::vector<int32_t>> g =
              rt->stepGreedy({*seq}, {ids});
          if (!g.ok()) {
            releaseAll();
            return g.status();
          }
        }
      }
      std::vector<int32_t> next(size_t(B), 1);
      std::vector<double> ms;
      BackendCounters c0;
      for (int64_t n = 0; n < args.steps + 2; ++n) {
        if (n == 2)
          c0 = rt->backendCounters();
        chunks.assign(size_t(B), {});
        for (int64_t b = 0; b < B; ++b)
          chunks[size_t(b)] = {next[size_t(b)]};
        auto start = std::chrono::steady_clock::now();
        absl::StatusOr<std::vector<int32_t>> g = rt->stepGreedy(seqs, chunks);
        const double t = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - start)
                             .count();
        if (!g.ok()) {
          releaseAll();
          return g.status();
        }
        next = *g;
        if (n >= 2) // warm-ups: graph capture, first page maps
          ms.push_back(t);
      }
      // Host split of the timed steps (means): checks + page tables +
      // staging, enqueueing (graph launch), waiting for the device.
      const BackendCounters c1 = rt->backendCounters();
      const double k = 1e3 / double(std::max<int64_t>(1, c1.steps - c0.steps));
      const double prepMs = (c1.prepS - c0.prepS) * k,
                   launchMs = (c1.launchS - c0.launchS) * k,
                   waitMs = (c1.waitS - c0.waitS) * k;
      releaseAll();
      const auto [med, p90] = medianP90(ms);
      // The CPU backend does not split its steps.
      const std::string split =
          cuda ? absl::StrFormat("%.3f | %.3f | %.3f", prepMs, launchMs, waitMs)
               : "- | - | -";
      std::printf("| %lld | %lld | %.3f | %.3f | %.1f | %s |\n", (long long)B,
                  (long long)C, med, p90, double(B) * 1e3 / med, split.c_str());
      std::fflush(stdout);
      points.push_back({{"batch", B},
                        {"context", C},
                        {"step_ms_median", med},
                        {"step_ms_p90", p90},
                        {"host_prep_ms_mean", prepMs},
                        {"launch_ms_mean", launchMs},
                        {"device_wait_ms_mean", waitMs},
                        {"step_ms", ms}});
    }
  if (!args.jsonOut.empty()) {
    std::ofstream out(args.jsonOut);
    out << nlohmann::json{{"model", info->name},
                          {"plan", args.plan},
                          {"device", cuda ? "cuda" : "cpu"},
                          {"precision", args.precision == Precision::kBf16
                                            ? "bf16"
                                            : "fp32"},
                          {"steps", args.steps},
                          {"points", points}}
               .dump(1)
        << "\n";
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
  if (rest[0] == "decode") {
    rest.erase(rest.begin());
    if (std::count(rest.begin(), rest.end(), "--help")) {
      std::printf("%s\n", kDecodeUsage);
      return 0;
    }
    absl::StatusOr<DecodeArgs> args = parseDecodeArgs(rest);
    absl::Status status = args.ok() ? runDecode(*args) : args.status();
    if (!status.ok()) {
      crosspool::tools::printToolError("crosspool-bench decode", status);
      return 1;
    }
    return 0;
  }
  if (rest[0] != "serve") {
    std::fprintf(stderr,
                 "crosspool-bench: error: unknown subcommand '%s' (expects "
                 "serve or decode); %s\n",
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
    crosspool::tools::printToolError("crosspool-bench serve", args.status());
    return 1;
  }
  absl::Status status = runServe(*args);
  if (!status.ok()) {
    crosspool::tools::printToolError("crosspool-bench serve", status);
    return 1;
  }
  return 0;
}
