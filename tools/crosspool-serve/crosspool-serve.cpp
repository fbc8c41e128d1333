//===- crosspool-serve.cpp - Several models, one shared KV pool -----------===//
//
//   crosspool-serve A.cpplan [B.cpplan ...] [--request M:ID,ID,...:MAX_NEW]...
//       [--kv-pages N] [--kv-page-bytes B] [--stop-at-eos]
//
// Loads every plan into one Runtime (one KV page allocator shared by all
// models, one weight arena per pool) and runs the requests concurrently by
// interleaving steps: each round admits (prefills) waiting requests, then
// runs one decode step per model over all of that model's running sequences.
// A request that cannot get KV pages waits for older ones; when nothing can
// progress the newest running request is preempted (recomputed later), and a
// request that cannot fit even alone in the pool fails with the KV error.
// Without --request, a few prompts per model are served.
//
// stdout: one line per request (generated ids, prefill ms, mean ms/token),
// then a table of the pool accounting. Exit status 1 on a bad argument or
// plan, or when a request failed.
//
//===----------------------------------------------------------------------===//
#include "runtime/base/Status.h"
#include "runtime/engine/Runtime.h"

#include "kernels/cpu/Linear.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

using namespace crosspool::runtime;

namespace {

const char *kUsage =
    "usage: crosspool-serve MODEL.cpplan [MODEL.cpplan ...] "
    "[--request MODEL_INDEX:ID,ID,...:MAX_NEW]... [--kv-pages N] "
    "[--kv-page-bytes B] [--stop-at-eos]";

struct RequestSpec {
  int model;
  std::vector<int32_t> prompt;
  int64_t maxNew;
};

struct Args {
  std::vector<std::string> plans;
  std::vector<RequestSpec> requests;
  RuntimeOptions runtime;
  bool stopAtEos = false;
};

absl::Status parseRequest(const std::string &text, RequestSpec *out) {
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

absl::StatusOr<Args> parseArgs(int argc, char **argv) {
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
    if (arg != "--request" && arg != "--kv-pages" && arg != "--kv-page-bytes")
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", arg, "'; ", kUsage));
    if (!inlineValue) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(
            absl::StrCat(arg, " expects a value"));
      value = argv[++i];
    }
    if (arg == "--request") {
      RequestSpec r;
      CP_RETURN_IF_ERROR(parseRequest(value, &r));
      args.requests.push_back(std::move(r));
    } else {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v) || v < 1 || v > (int64_t(1) << 31) - 1)
        return absl::InvalidArgumentError(absl::StrCat(
            arg, ": expects an integer in [1, 2^31) but got '", value, "'"));
      if (arg == "--kv-pages")
        args.runtime.kvPages = int32_t(v);
      else
        args.runtime.kvPageBytes = size_t(v);
    }
  }
  if (args.plans.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("missing plan files; ", kUsage));
  for (const RequestSpec &r : args.requests)
    if (r.model >= int(args.plans.size()))
      return absl::InvalidArgumentError(
          absl::StrCat("--request names model ", r.model, " but only ",
                       args.plans.size(), " plans were given"));
  return args;
}

using Clock = std::chrono::steady_clock;
double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Request {
  int index = 0;
  RequestSpec spec;
  enum State { kWaiting, kRunning, kDone, kFailed } state = kWaiting;
  SequenceId seq = -1;
  std::vector<int32_t> generated;
  double prefillMs = 0, decodeMs = 0;
  int64_t decodeSteps = 0;
  int preemptions = 0;
  std::string error;
};

/// Round-robin over models and sequences, first come first served for KV
/// pages: each round runs one decode step per model (all its running
/// sequences), then admits waiting requests in arrival order unless an older
/// request is stuck waiting for pages. When nothing can progress, the newest
/// running request is preempted (its pages released; it is recomputed from
/// its prompt and tokens so far when readmitted). A request that cannot grow
/// while alone in the pool, or that cannot be admitted into an empty pool,
/// can never fit and fails.
class Server {
public:
  Server(Runtime &rt, std::vector<ModelId> models, bool stopAtEos)
      : rt_(rt), models_(std::move(models)), stopAtEos_(stopAtEos),
        peakPages_(models_.size(), 0) {}

  void serve(std::vector<Request> &reqs) {
    auto live = [&](Request::State state) {
      return std::any_of(reqs.begin(), reqs.end(),
                         [&](const Request &r) { return r.state == state; });
    };
    while (live(Request::kWaiting) || live(Request::kRunning)) {
      bool progress = false;
      stuck_ = false;
      for (size_t m = 0; m < models_.size(); ++m)
        progress |= decodeModel(int(m), reqs);
      for (Request &r : reqs) {
        if (stuck_)
          break;
        if (r.state == Request::kWaiting)
          progress |= admit(r);
      }
      if (progress)
        continue;
      int64_t running =
          std::count_if(reqs.begin(), reqs.end(), [](const Request &r) {
            return r.state == Request::kRunning;
          });
      if (running > 1)
        preemptNewest(reqs);
      else if (running == 1)
        failNewestRunning(reqs); // alone in the pool and still cannot grow
      else
        failOldestWaiting(reqs);
    }
  }

  int64_t peakPages(int model) const { return peakPages_[model]; }

private:
  void notePages() {
    for (size_t m = 0; m < models_.size(); ++m)
      peakPages_[m] = std::max(peakPages_[m], rt_.kvPagesInUse(models_[m]));
  }

  void finish(Request &r, Request::State state, std::string error = "") {
    if (r.seq >= 0)
      (void)rt_.release(r.seq);
    r.seq = -1;
    r.state = state;
    r.error = std::move(error);
  }

  /// Appends the argmax of `logits` and finishes the request when complete.
  void emit(Request &r, const float *logits) {
    const ModelInfo *info = *rt_.modelInfo(models_[r.spec.model]);
    int32_t next =
        int32_t(crosspool::kernels::cpu::argmax(logits, info->vocabSize));
    r.generated.push_back(next);
    bool eos = stopAtEos_ && std::count(info->eosTokenIds.begin(),
                                        info->eosTokenIds.end(), next);
    if (eos || int64_t(r.generated.size()) >= r.spec.maxNew)
      finish(r, Request::kDone);
  }

  /// Prefills a waiting request (a preempted one: its prompt plus all but
  /// the last generated token, which the next decode step feeds).
  bool admit(Request &r) {
    ModelId model = models_[r.spec.model];
    if (r.seq < 0)
      r.seq = *rt_.startSequence(model);
    std::vector<int32_t> ids = r.spec.prompt;
    if (!r.generated.empty())
      ids.insert(ids.end(), r.generated.begin(), r.generated.end() - 1);
    auto t0 = Clock::now();
    absl::StatusOr<std::vector<float>> logits = rt_.prefill(r.seq, ids);
    if (absl::IsResourceExhausted(logits.status())) {
      pendingError_[r.index] = std::string(logits.status().message());
      stuck_ = true;
      return false;
    }
    if (!logits.ok()) {
      finish(r, Request::kFailed, std::string(logits.status().message()));
      return true;
    }
    if (r.preemptions == 0)
      r.prefillMs = msSince(t0);
    r.state = Request::kRunning;
    notePages();
    if (r.generated.empty()) {
      const ModelInfo *info = *rt_.modelInfo(model);
      emit(r, logits->data() + (ids.size() - 1) * info->vocabSize);
    }
    return true;
  }

  /// One step over every running sequence of model `m`; sequences the KV pool
  /// cannot extend wait for a later round.
  bool decodeModel(int m, std::vector<Request> &reqs) {
    std::vector<Request *> batch;
    for (Request &r : reqs)
      if (r.state == Request::kRunning && r.spec.model == m)
        batch.push_back(&r);
    if (batch.empty())
      return false;
    if (runBatch(batch))
      return true;
    bool progress = false;
    for (Request *r : batch)
      if (r->state == Request::kRunning)
        progress |= runBatch({r});
    return progress;
  }

  bool runBatch(const std::vector<Request *> &batch) {
    std::vector<SequenceId> seqs;
    std::vector<int32_t> ids;
    for (Request *r : batch) {
      seqs.push_back(r->seq);
      ids.push_back(r->generated.back());
    }
    auto t0 = Clock::now();
    absl::StatusOr<std::vector<float>> logits = rt_.decode(seqs, ids);
    if (absl::IsResourceExhausted(logits.status())) {
      for (Request *r : batch)
        pendingError_[r->index] = std::string(logits.status().message());
      stuck_ = true;
      return false;
    }
    if (!logits.ok()) {
      for (Request *r : batch)
        finish(*r, Request::kFailed, std::string(logits.status().message()));
      return true;
    }
    double ms = msSince(t0);
    notePages();
    int64_t vocab = (*rt_.modelInfo(models_[batch[0]->spec.model]))->vocabSize;
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->decodeMs += ms;
      ++batch[i]->decodeSteps;
      emit(*batch[i], logits->data() + i * vocab);
    }
    return true;
  }

  void preemptNewest(std::vector<Request> &reqs) {
    for (auto it = reqs.rbegin(); it != reqs.rend(); ++it)
      if (it->state == Request::kRunning) {
        (void)rt_.release(it->seq);
        it->seq = -1;
        it->state = Request::kWaiting;
        ++it->preemptions;
        return;
      }
  }

  void failNewestRunning(std::vector<Request> &reqs) {
    for (auto it = reqs.rbegin(); it != reqs.rend(); ++it)
      if (it->state == Request::kRunning) {
        finish(*it, Request::kFailed, pendingError_[it->index]);
        return;
      }
  }

  void failOldestWaiting(std::vector<Request> &reqs) {
    for (Request &r : reqs)
      if (r.state == Request::kWaiting) {
        finish(r, Request::kFailed, pendingError_[r.index]);
        return;
      }
  }

  Runtime &rt_;
  std::vector<ModelId> models_;
  bool stopAtEos_;
  bool stuck_ = false;
  std::vector<int64_t> peakPages_;
  std::map<int, std::string> pendingError_;
};

/// A few prompts per model: lengths 1, 5 and 9, 12 new tokens each.
std::vector<RequestSpec> defaultRequests(const Runtime &rt,
                                         const std::vector<ModelId> &models) {
  std::vector<RequestSpec> out;
  for (size_t m = 0; m < models.size(); ++m) {
    int64_t vocab = (*rt.modelInfo(models[m]))->vocabSize;
    for (int len : {1, 5, 9}) {
      RequestSpec r{int(m), {}, 12};
      for (int j = 0; j < len; ++j)
        r.prompt.push_back(int32_t((m * 31 + len * 7 + j * 13 + 3) % vocab));
      out.push_back(std::move(r));
    }
  }
  return out;
}

absl::Status runMain(int argc, char **argv, bool *requestFailed) {
  CP_ASSIGN_OR_RETURN(Args args, parseArgs(argc, argv));
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt,
                      Runtime::create(args.runtime));
  std::vector<ModelId> models;
  for (const std::string &plan : args.plans) {
    CP_ASSIGN_OR_RETURN(ModelId id, rt->loadModel(plan));
    models.push_back(id);
  }
  if (args.requests.empty())
    args.requests = defaultRequests(*rt, models);
  std::vector<Request> reqs;
  for (size_t i = 0; i < args.requests.size(); ++i) {
    Request r;
    r.index = int(i);
    r.spec = args.requests[i];
    reqs.push_back(std::move(r));
  }

  Server server(*rt, models, args.stopAtEos);
  auto t0 = Clock::now();
  server.serve(reqs);
  double wallMs = msSince(t0);

  int64_t tokens = 0;
  std::vector<int64_t> perModelTokens(models.size(), 0),
      perModelRequests(models.size(), 0);
  for (const Request &r : reqs) {
    const ModelInfo *info = *rt->modelInfo(models[r.spec.model]);
    std::string head =
        absl::StrFormat("request %d model %d (%s) prompt_len %d", r.index,
                        r.spec.model, info->name, r.spec.prompt.size());
    ++perModelRequests[r.spec.model];
    if (r.state != Request::kDone) {
      *requestFailed = true;
      std::printf("%s error: %s\n", head.c_str(), r.error.c_str());
      continue;
    }
    tokens += r.generated.size();
    perModelTokens[r.spec.model] += r.generated.size();
    std::printf("%s generated [%s] prefill_ms %.3f ms_per_token %.3f "
                "preemptions %d\n",
                head.c_str(), absl::StrJoin(r.generated, ", ").c_str(),
                r.prefillMs, r.decodeSteps ? r.decodeMs / r.decodeSteps : 0.0,
                r.preemptions);
  }

  std::printf("\n%-3s %-24s %14s %16s %9s %7s %14s\n", "id", "model",
              "kv_pool_bytes", "weights_pool_b", "requests", "tokens",
              "kv_pages_peak");
  for (size_t m = 0; m < models.size(); ++m) {
    const ModelInfo *info = *rt->modelInfo(models[m]);
    std::printf("%-3zu %-24s %14zu %16zu %9lld %7lld %14lld\n", m,
                info->name.c_str(), info->kvPoolWeightBytes,
                info->weightsPoolWeightBytes, (long long)perModelRequests[m],
                (long long)perModelTokens[m],
                (long long)server.peakPages(int(m)));
  }
  std::printf("%-3s %-24s %14zu %16zu\n", "", "total",
              rt->kvPoolArena().totalBytes(),
              rt->weightsPoolArena().totalBytes());
  std::printf("kv pool: %d pages x %zu bytes shared by %zu models, peak in use "
              "%d (%.1f%%), in use at end %d\n",
              rt->kvPagesTotal(), rt->kvPageBytes(), models.size(),
              rt->kvPagesPeak(), 100.0 * rt->kvPagesPeak() / rt->kvPagesTotal(),
              rt->kvPagesInUse());
  std::printf("served %zu requests, %lld tokens in %.1f ms (%.1f tokens/s)\n",
              reqs.size(), (long long)tokens, wallMs,
              wallMs > 0 ? tokens * 1000.0 / wallMs : 0.0);
  return absl::OkStatus();
}

} // namespace

int main(int argc, char **argv) {
  bool requestFailed = false;
  absl::Status status = runMain(argc, argv, &requestFailed);
  if (!status.ok()) {
    std::string msg(status.message());
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "crosspool-serve: error: %s\n", msg.c_str());
    return 1;
  }
  return requestFailed ? 1 : 0;
}
