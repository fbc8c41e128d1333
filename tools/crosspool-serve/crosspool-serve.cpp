//===- crosspool-serve.cpp - Several models, one shared KV pool -----------===//
//
//   crosspool-serve A.cpplan [B.cpplan ...] [--request M:ID,ID,...:MAX_NEW]...
//       [--kv-pages N] [--kv-page-bytes B] [--stop-at-eos]
//       [--device cpu|cuda] [--precision fp32|bf16]
//       [--temperature T] [--top-k K] [--top-p P] [--seed S]
//       [--json-out FILE]
//
// Loads every plan into one Runtime (one KV page allocator shared by all
// models, one weight arena per pool) and serves the requests with the
// project's one scheduler, the ServingEngine (continuous batching across
// models, chunked prefill, admission against the shared KV pool, preemption
// by recompute; docs/serving.md). All requests arrive at time 0; the engine
// runs on the measured clock, so TTFT and TBT are real wall time of the
// steps. Sampling flags apply to every request (greedy by default). Without
// --request, three prompts per model are served.
//
// stdout: one line per request (generated ids, TTFT, mean TBT, preemptions,
// final state and reason), the ServeReport latency table, a table of the
// pool accounting, and a summary line. --json-out writes the ServeReport JSON
// plus the per-request records. Exit status 1 on a bad argument or plan, or
// when a request failed.
//
//===----------------------------------------------------------------------===//
#include "runtime/base/Status.h"
#include "runtime/base/ToolMain.h"
#include "runtime/engine/Runtime.h"
#include "runtime/serving/ServeReport.h"
#include "runtime/serving/ServingEngine.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using namespace crosspool::runtime;

namespace {

const char *kUsage =
    "usage: crosspool-serve MODEL.cpplan [MODEL.cpplan ...] "
    "[--request MODEL_INDEX:ID,ID,...:MAX_NEW]... [--kv-pages N] "
    "[--kv-page-bytes B] [--device cpu|cuda] [--precision fp32|bf16] "
    "[--stop-at-eos] [--temperature T] [--top-k K] "
    "[--top-p P] [--seed S] [--json-out FILE]";

struct CliRequest {
  int model;
  std::vector<int32_t> prompt;
  int64_t maxNew;
};

struct Args {
  std::vector<std::string> plans;
  std::vector<CliRequest> requests;
  RuntimeOptions runtime;
  bool stopAtEos = false;
  /// Applied to every request (maxNewTokens and stopIds are per request).
  SamplingParams sampling;
  std::string jsonOut;
};

absl::Status parseRequest(const std::string &text, CliRequest *out) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  auto bad = [&](const std::string &why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--request '", text, "': ", why,
                     " (expects MODEL_INDEX:ID,ID,...:MAX_NEW)"));
  };
  if (parts.size() != 3)
    return bad(absl::StrCat("expects 3 fields but got ", parts.size()));
  if (!absl::SimpleAtoi(parts[0], &out->model) || out->model < 0)
    return bad(absl::StrCat("bad model index '", parts[0], "'"));
  for (absl::string_view id : absl::StrSplit(parts[1], ',')) {
    int32_t v;
    if (!absl::SimpleAtoi(id, &v))
      return bad(absl::StrCat("'", id, "' is not an integer id"));
    out->prompt.push_back(v);
  }
  if (!absl::SimpleAtoi(parts[2], &out->maxNew) || out->maxNew < 1)
    return bad(absl::StrCat("max_new must be an integer >= 1 but got '",
                            parts[2], "'"));
  return absl::OkStatus();
}

/// Parses one flag value; ranges of the sampling values are checked by the
/// engine at submit (validateSampling names the field).
absl::Status parseValue(const std::string &flag, const std::string &value,
                        Args *args) {
  auto bad = [&](const char *what) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expects ", what, " but got '", value, "'"));
  };
  if (flag == "--request") {
    CliRequest r;
    CP_RETURN_IF_ERROR(parseRequest(value, &r));
    args->requests.push_back(std::move(r));
  } else if (flag == "--device") {
    CP_ASSIGN_OR_RETURN(args->runtime.device, parseDevice(value));
  } else if (flag == "--precision") {
    CP_ASSIGN_OR_RETURN(args->runtime.precision, parsePrecision(value));
  } else if (flag == "--json-out") {
    if (value.empty())
      return bad("a file path");
    args->jsonOut = value;
  } else if (flag == "--temperature" || flag == "--top-p") {
    float v;
    if (!absl::SimpleAtof(value, &v))
      return bad("a number");
    (flag == "--temperature" ? args->sampling.temperature
                             : args->sampling.topP) = v;
  } else if (flag == "--top-k") {
    if (!absl::SimpleAtoi(value, &args->sampling.topK))
      return bad("an integer");
  } else if (flag == "--seed") {
    if (!absl::SimpleAtoi(value, &args->sampling.seed))
      return bad("an unsigned integer");
  } else {
    int64_t v;
    if (!absl::SimpleAtoi(value, &v) || v < 1 || v > (int64_t(1) << 31) - 1)
      return bad("an integer in [1, 2^31)");
    if (flag == "--kv-pages")
      args->runtime.kvPages = int32_t(v);
    else
      args->runtime.kvPageBytes = size_t(v);
  }
  return absl::OkStatus();
}

absl::StatusOr<Args> parseArgs(int argc, char **argv) {
  static const char *kValueFlags[] = {
      "--request", "--kv-pages", "--kv-page-bytes", "--temperature",
      "--top-k",   "--top-p",    "--seed",          "--json-out",
      "--device",  "--precision"};
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg.rfind("--", 0) != 0) {
      args.plans.push_back(arg);
      continue;
    }
    size_t eq = arg.find('=');
    bool inlineValue = eq != std::string::npos;
    if (inlineValue) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (arg == "--stop-at-eos" && !inlineValue) {
      args.stopAtEos = true;
      continue;
    }
    if (std::find(std::begin(kValueFlags), std::end(kValueFlags), arg) ==
        std::end(kValueFlags))
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", arg, "'; ", kUsage));
    if (!inlineValue) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(
            absl::StrCat(arg, " expects a value"));
      value = argv[++i];
    }
    CP_RETURN_IF_ERROR(parseValue(arg, value, &args));
  }
  if (args.plans.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("missing plan files; ", kUsage));
  for (const CliRequest &r : args.requests)
    if (r.model >= int(args.plans.size()))
      return absl::InvalidArgumentError(
          absl::StrCat("--request names model ", r.model, " but only ",
                       args.plans.size(), " plans were given"));
  return args;
}

/// A few prompts per model: lengths 1, 5 and 9, 12 new tokens each.
std::vector<CliRequest> defaultRequests(const Runtime &rt,
                                        const std::vector<ModelId> &models) {
  std::vector<CliRequest> out;
  for (size_t m = 0; m < models.size(); ++m) {
    int64_t vocab = (*rt.modelInfo(models[m]))->vocabSize;
    for (int len : {1, 5, 9}) {
      CliRequest r{int(m), {}, 12};
      for (int j = 0; j < len; ++j)
        r.prompt.push_back(int32_t((m * 31 + len * 7 + j * 13 + 3) % vocab));
      out.push_back(std::move(r));
    }
  }
  return out;
}

/// Per-model peak KV pages, sampled after every step. The engine releases a
/// finished request's pages inside the step, so the pages such a request held
/// during its last step (one per fed token: prompt + output - 1) are added
/// back for that step.
class PeakTracker {
public:
  PeakTracker(const Runtime &rt, std::vector<ModelId> models)
      : rt_(rt), models_(std::move(models)), peak_(models_.size(), 0) {}

  void onStep(const ServingEngine &engine) {
    const std::vector<RequestRecord> &records = engine.records();
    counted_.resize(records.size(), false);
    std::vector<int64_t> released(models_.size(), 0);
    for (size_t i = 0; i < records.size(); ++i) {
      const RequestRecord &r = records[i];
      if (counted_[i] || !r.terminal())
        continue;
      counted_[i] = true;
      if (r.state == RequestState::Finished && !r.output.empty())
        released[r.model] += rt_.kvPagesFor(
            models_[r.model], r.promptTokens + int64_t(r.output.size()) - 1);
    }
    for (size_t m = 0; m < models_.size(); ++m)
      peak_[m] = std::max(peak_[m], rt_.kvPagesInUse(models_[m]) + released[m]);
  }
  /// Requests that ended before the run (failed at submit) held no pages.
  void skipEnded(const ServingEngine &engine) {
    counted_.assign(engine.records().size(), false);
    for (size_t i = 0; i < counted_.size(); ++i)
      counted_[i] = engine.records()[i].terminal();
  }
  int64_t peak(int m) const { return peak_[m]; }

private:
  const Runtime &rt_;
  std::vector<ModelId> models_;
  std::vector<int64_t> peak_;
  std::vector<bool> counted_;
};

std::string msOrDash(bool have, double seconds) {
  return have ? absl::StrFormat("%.3f", seconds * 1e3) : std::string("-");
}

nlohmann::json recordJson(const RequestRecord &r) {
  return {{"id", r.id},
          {"model", r.model},
          {"state", requestStateName(r.state)},
          {"reason", r.reason},
          {"prompt_tokens", r.promptTokens},
          {"output", r.output},
          {"arrival_s", r.arrivalTime},
          {"finish_s", r.finishTime},
          {"token_times_s", r.tokenTimes},
          {"preemptions", r.preemptions},
          {"recomputed_tokens", r.recomputedTokens}};
}

absl::Status runMain(int argc, char **argv, bool *requestFailed) {
  CP_ASSIGN_OR_RETURN(Args args, parseArgs(argc, argv));
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt,
                      Runtime::create(args.runtime));
  std::vector<ModelId> models;
  std::vector<std::string> names;
  for (const std::string &plan : args.plans) {
    CP_ASSIGN_OR_RETURN(ModelId id, rt->loadModel(plan));
    models.push_back(id);
    names.push_back((*rt->modelInfo(id))->name);
  }
  if (args.requests.empty())
    args.requests = defaultRequests(*rt, models);

  PeakTracker peaks(*rt, models);
  ServingEngine::Options options;
  options.clock = ServingEngine::Clock::Measured;
  options.onStep = [&peaks](const ServingEngine &e) { peaks.onStep(e); };
  CP_ASSIGN_OR_RETURN(std::unique_ptr<ServingEngine> engine,
                      ServingEngine::create(rt.get(), models, options));

  // Every request is checked before any runs: a bad one is an error of the
  // command line, not a failed request.
  for (size_t i = 0; i < args.requests.size(); ++i) {
    const CliRequest &c = args.requests[i];
    const ModelInfo *info = *rt->modelInfo(models[c.model]);
    RequestSpec spec;
    spec.model = c.model;
    spec.prompt = c.prompt;
    spec.sampling = args.sampling;
    spec.sampling.maxNewTokens = c.maxNew;
    spec.arrivalTime = 0;
    if (args.stopAtEos)
      for (int64_t eos : info->eosTokenIds)
        if (eos >= 0 && eos < info->vocabSize) // others can never be emitted
          spec.sampling.stopIds.push_back(int32_t(eos));
    absl::StatusOr<RequestId> id = engine->submit(spec);
    if (!id.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("request ", i, " (model ", c.model, ", ", info->name,
                       "): ", id.status().message()));
  }
  peaks.skipEnded(*engine);

  auto t0 = std::chrono::steady_clock::now();
  CP_RETURN_IF_ERROR(engine->runUntilIdle());
  double wallS =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();

  int64_t tokens = 0;
  std::vector<int64_t> modelTokens(models.size(), 0),
      modelRequests(models.size(), 0);
  for (const RequestRecord &r : engine->records()) {
    const size_t n = r.output.size();
    ++modelRequests[r.model];
    modelTokens[r.model] += int64_t(n);
    tokens += int64_t(n);
    if (r.state != RequestState::Finished)
      *requestFailed = true;
    double ttft = n ? r.tokenTimes.front() - r.arrivalTime : 0;
    double tbt =
        n > 1 ? (r.tokenTimes.back() - r.tokenTimes.front()) / double(n - 1)
              : 0;
    std::printf("request %lld model %d (%s) prompt_len %lld generated [%s] "
                "ttft_ms %s tbt_ms %s preemptions %d state %s reason %s\n",
                (long long)r.id, int(r.model), names[r.model].c_str(),
                (long long)r.promptTokens,
                absl::StrJoin(r.output, ", ").c_str(),
                msOrDash(n > 0, ttft).c_str(), msOrDash(n > 1, tbt).c_str(),
                r.preemptions, requestStateName(r.state), r.reason.c_str());
  }

  ServeReport report = buildReport(*engine, "crosspool", names);
  std::printf("\n%s", formatReportTable(report).c_str());

  std::printf("\n%-3s %-24s %14s %16s %9s %7s %14s\n", "id", "model",
              "kv_pool_bytes", "weights_pool_b", "requests", "tokens",
              "kv_pages_peak");
  for (size_t m = 0; m < models.size(); ++m) {
    const ModelInfo *info = *rt->modelInfo(models[m]);
    std::printf("%-3zu %-24s %14zu %16zu %9lld %7lld %14lld\n", m,
                info->name.c_str(), info->kvPoolWeightBytes,
                info->weightsPoolWeightBytes, (long long)modelRequests[m],
                (long long)modelTokens[m], (long long)peaks.peak(int(m)));
  }
  std::printf("%-3s %-24s %14zu %16zu\n", "", "total",
              rt->kvPoolArena().totalBytes(),
              rt->weightsPoolArena().totalBytes());
  std::printf("kv pool: %d pages x %zu bytes shared by %zu models, peak in use "
              "%d (%.1f%%), in use at end %d\n",
              rt->kvPagesTotal(), rt->kvPageBytes(), models.size(),
              rt->kvPagesPeak(), 100.0 * rt->kvPagesPeak() / rt->kvPagesTotal(),
              rt->kvPagesInUse());
  std::printf("served %zu requests, %lld tokens in %.1f ms (%.1f tokens/s), "
              "%lld steps, %lld preemptions\n",
              engine->records().size(), (long long)tokens, wallS * 1e3,
              wallS > 0 ? double(tokens) / wallS : 0.0,
              (long long)engine->stats().steps,
              (long long)engine->stats().preemptions);

  if (!args.jsonOut.empty()) {
    nlohmann::json out = reportToJson(report);
    out["wall_s"] = wallS;
    nlohmann::json requests = nlohmann::json::array();
    for (const RequestRecord &r : engine->records())
      requests.push_back(recordJson(r));
    out["requests"] = std::move(requests);
    std::ofstream file(args.jsonOut);
    file << out.dump(2) << "\n";
    if (!file)
      return absl::UnavailableError(
          absl::StrCat("--json-out: cannot write '", args.jsonOut, "'"));
  }
  return absl::OkStatus();
}

} // namespace

int main(int argc, char **argv) {
  if (crosspool::tools::printHelpIfAsked(argc, argv, kUsage))
    return 0;
  bool requestFailed = false;
  absl::Status status = runMain(argc, argv, &requestFailed);
  if (!status.ok()) {
    crosspool::tools::printToolError("crosspool-serve", status);
    return 1;
  }
  return requestFailed ? 1 : 0;
}
