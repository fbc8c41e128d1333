//===- ServingEngine.h - Continuous batching over many models --*- C++ -*-===//
//
// The serving core over one Runtime that holds several models (any mix of
// architectures) and one shared KV page pool:
//
//   ServingEngine::Options opts;                  // virtual clock by default
//   opts.layout = planKvLayout(...);              // or one shared group
//   CP_ASSIGN_OR_RETURN(auto engine, ServingEngine::create(rt, models, opts));
//   CP_ASSIGN_OR_RETURN(RequestId id, engine->submit(spec));
//   CP_RETURN_IF_ERROR(engine->runUntilIdle());
//   engine->record(id).output ...
//
// A step runs ONE model's batch: the decode tokens of its running requests
// plus prefill chunks, within a token budget (chunked prefill). Between
// steps new requests join (continuous batching). Which model steps next:
// round-robin over the models with runnable work, or the model whose oldest
// request has waited longest (`Policy::OldestFirst`).
//
// KV is admitted against quota groups (MemoryMode.h) counted in the pool's
// physical chunks (Backend.h; CPU: pages), exactly: a model holding P pages
// in C chunks holds max(C, ceil((P + k) / pagesPerChunk)) chunks after k
// more pages, so no step ever finds the pool short. A request's
// priority is its (arrival time, submit order); it never changes, so a
// preempted request only gets older relative to newcomers. Rules:
//   * admission is FCFS per model, and a request is not admitted while an
//     older waiting request of another model in its group is blocked for
//     pages (the pages freed go to the oldest waiter first);
//   * admission needs pages for all of the request's known tokens (prompt,
//     plus output so far after a preemption) beyond a watermark;
//   * when a running request needs a page and its group is full, the victim
//     is the NEWEST request of the model holding the most pages in the
//     group, among those younger than the needy request; if there is none,
//     the needy request preempts itself. The group's oldest request is thus
//     never preempted and always progresses: nobody starves.
// A preempted request frees its pages and is requeued; when readmitted, its
// prompt and output so far are re-prefilled, so its output is unchanged.
// Every submitted request ends Finished, Cancelled or Failed with a reason;
// one that can never fit its group, even alone, fails at submit.
//
// Time: a virtual clock. Each step advances it by a cost model
// (deterministic, the default) or by measured wall time: all host time while
// the engine is busy, i.e. from the end of the previous step's runtime call
// (its sampling and releases, this step's scheduling and KV reservation) to
// the end of this step's runtime call, less CUDA graph captures (one-time
// setup); when no request is runnable it jumps to the next arrival (idle
// time is skipped).
//
// SLO-aware prefill chunks (Options::tbtTargetMs > 0): while any request of
// any served model is decoding, a step's prefill tokens are capped so that
// the step's predicted time stays within tbtTargetMs / R, R = the models
// with runnable work (a decoding request waits for one step of each of them
// per round), but never below Options::minPrefillChunk; the prediction is
// per model, fitted online from its past steps' clock time (StepCostFit.h).
// Every step is logged
// (EngineStats::stepLog) with its shape, times and backend costs.
//
// Not thread-safe: drive it from one thread.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_SERVINGENGINE_H
#define CROSSPOOL_RUNTIME_SERVING_SERVINGENGINE_H

#include "runtime/engine/Runtime.h"
#include "runtime/serving/MemoryMode.h"
#include "runtime/serving/Request.h"
#include "runtime/serving/StepCostFit.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// Virtual time of one step, in microseconds:
///   stepBaseUs + weightBytes / weightBytesPerUs + perTokenUs * rows
///   + perContextTokenUs * (KV positions attended by all rows).
struct StepCostModel {
  double stepBaseUs = 500;
  /// 0: weight reads are not charged.
  double weightBytesPerUs = 0;
  double perTokenUs = 40;
  double perContextTokenUs = 0.02;
};

/// One sample of the KV pool over time (after a step), in chunks.
struct KvSample {
  double time = 0;
  int64_t chunksInUse = 0;
  std::vector<int64_t> groupChunksInUse;
};

/// One step that ran a batch.
struct StepRecord {
  double time = 0; ///< the clock after the step
  int32_t model = 0;
  int64_t rows = 0, seqs = 0;
  int64_t decodeSeqs = 0;    ///< sequences with one decode row
  int64_t prefillTokens = 0; ///< rows of prompt (or recomputed) chunks
  int64_t context = 0;       ///< KV positions attended by all rows
  double clockS = 0;         ///< what the clock advanced
  /// Host wall time since the previous step's runtime call ended (or the
  /// engine became busy): the previous step's sampling and releases, this
  /// step's scheduling, and runtimeS; the measured clock advances by it
  /// less backend.graphCaptureS.
  double wallS = 0;
  double runtimeS = 0; ///< Runtime::step / stepGreedy alone
  bool greedy = false; ///< ids from the backend's greedy step
  /// Options::tbtTargetMs: the prefill tokens this step was allowed
  /// (decode-first rows excluded); -1 when not capped.
  int64_t prefillCap = -1;
  /// The step's time predicted (before it ran) by its model's StepCostFit.
  double predictedS = 0;
  /// Backend costs within wallS (differences of Runtime::backendCounters).
  BackendCounters backend;
};

struct EngineStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prefillTokens = 0; ///< includes recomputed ones
  int64_t decodeTokens = 0;
  /// Chunks held by the served models at the end of the fullest step.
  int64_t peakChunksInUse = 0;
  /// Per model: the most pages (its own) it held at once.
  std::vector<int64_t> peakModelPages;
  std::vector<KvSample> kv;
  std::vector<StepRecord> stepLog;
};

class ServingEngine {
public:
  enum class Clock { CostModel, Measured };
  enum class Policy { RoundRobin, OldestFirst };

  struct Options {
    /// Quota groups; empty groupPages = one group of the whole Runtime pool.
    KvLayout layout;
    /// Token rows per step (decode tokens + prefill chunks), >= 1.
    int64_t maxStepTokens = 256;
    /// Sequences per step, >= 1.
    int32_t maxBatchSeqs = 64;
    /// Chunks of a group kept free at admission (not at growth).
    int64_t watermarkChunks = 0;
    Clock clock = Clock::CostModel;
    StepCostModel cost;
    Policy policy = Policy::RoundRobin;
    /// SLO-aware prefill chunk sizing, off at 0 (>= 0, milliseconds). When
    /// > 0 and some request of ANY served model is decoding (running, with
    /// output, only its next token to feed), a step of model m carries at
    /// most prefillTokenCap(fit_m, tbtTargetMs / R, decode rows, ...)
    /// prefill tokens, R = the models with runnable work now: the models
    /// share the device round-robin, so a decoding request's next token
    /// waits for about one step of each of the R models, and every one of
    /// those steps (not only the ones carrying its own decode row) must
    /// stay within a 1/R share of the target.
    double tbtTargetMs = 0;
    /// The least prefill tokens a capped step still carries (>= 1), so
    /// prefill always progresses whatever the target.
    int64_t minPrefillChunk = 64;
    /// Record a KvSample every this many steps (>= 1).
    int64_t kvSampleEvery = 1;
    /// Called after every step (e.g. a progress line).
    std::function<void(const ServingEngine &)> onStep;
  };

  /// `models`: the Runtime ids served; request.model indexes this list.
  /// InvalidArgument for bad options, a layout that does not match the
  /// models, or group pages beyond the Runtime's pool.
  static absl::StatusOr<std::unique_ptr<ServingEngine>>
  create(Runtime *runtime, std::vector<ModelId> models, Options options);
  /// Releases the KV of every live request.
  ~ServingEngine();
  ServingEngine(const ServingEngine &) = delete;
  ServingEngine &operator=(const ServingEngine &) = delete;

  /// Queues a request. InvalidArgument (nothing recorded) for an unknown
  /// model index, an empty prompt, an id outside the vocabulary, bad
  /// sampling parameters, or prompt + max_new_tokens beyond the model's
  /// positions. A request that can never fit its KV group is recorded as
  /// Failed with the reason and its id returned.
  absl::StatusOr<RequestId> submit(const RequestSpec &spec);
  /// Ends a waiting or running request (its pages are freed at once) as
  /// Cancelled with `reason`. NotFound for an unknown id,
  /// FailedPrecondition when it already ended.
  absl::Status cancel(RequestId id, std::string reason = "cancelled");

  /// Runs one step of one model. Returns false when no request has arrived
  /// and is unfinished (the clock is not moved). A Runtime error fails the
  /// requests of that batch (with the error as reason), not the engine.
  absl::StatusOr<bool> step();
  /// Steps, jumping the clock over idle gaps, until every request ended.
  absl::Status runUntilIdle();

  double now() const { return now_; }
  /// Moves the clock forward to `time` (never back).
  void advanceTo(double time);

  const RequestRecord &record(RequestId id) const;
  /// All records in submit order (index == id).
  const std::vector<RequestRecord> &records() const { return records_; }
  const EngineStats &stats() const { return stats_; }
  /// Model index m's online step-time fit (prior: the cost model).
  const StepCostFit &costFit(int m) const { return costFit_.at(m); }
  const KvLayout &layout() const { return options_.layout; }
  const std::vector<ModelId> &models() const { return models_; }
  Runtime &runtime() const { return *rt_; }
  /// Requests not yet ended (waiting, including future arrivals, or running).
  int64_t liveRequests() const;
  /// Chunks in use now by one quota group.
  int64_t groupChunksInUse(int32_t group) const;

private:
  struct Live {
    std::vector<int32_t> tokens; ///< prompt + output
    int64_t fed = 0;             ///< tokens in the KV cache
    SequenceId seq = -1;         ///< -1 when holding no pages
    SamplingParams sampling;
    double lastProgress = 0; ///< arrival or last token time
  };
  /// Priority order: (arrival, id).
  using Key = std::pair<double, RequestId>;

  ServingEngine() = default;
  Key key(RequestId id) const { return {records_[id].arrivalTime, id}; }
  int32_t groupOf(RequestId id) const;
  int64_t heldPages(RequestId id) const;
  /// Chunks model index m holds after `extraPages` more pages.
  int64_t chunksAfter(int m, int64_t extraPages) const;
  /// Pages promised to this step's batch, per model index.
  std::vector<int64_t> promisedPages() const;
  /// Whether the group's quota less `reserve`, and the physical pool, hold
  /// every model's chunks after extraPages[m] more pages of model m.
  bool fits(int32_t group, const std::vector<int64_t> &extraPages,
            int64_t reserve = 0) const;
  /// Adds to debt[m] the pages the running requests of the group's models
  /// still need for the tokens they already know.
  void addPrefillDebt(int32_t group, std::vector<int64_t> *debt) const;
  std::vector<int> stepOrder();
  bool ensurePages(RequestId id, int64_t tokens);
  void preempt(RequestId id);
  void finish(RequestId id, RequestState state, std::string reason);
  bool admissible(int m, RequestId id) const;
  /// Whether some running request of any model has output and only its
  /// next token to feed (its next token gap is what tbtTargetMs bounds).
  bool anyDecoding() const;
  absl::Status runBatch(int m, const std::vector<RequestId> &batch,
                        const std::vector<int64_t> &counts, int64_t prefillCap);
  /// Starts the busy period's wall clock (and backend counters) if idle.
  void markBusy();
  void sampleKv();

  Runtime *rt_ = nullptr;
  std::vector<ModelId> models_;
  Options options_;
  std::vector<RequestRecord> records_;
  std::map<RequestId, Live> live_;
  /// Per model: waiting (arrived or not) and running, in priority order.
  std::vector<std::set<Key>> waiting_, running_;
  /// The batch being built: requests, rows each, rows left; and the pages
  /// promised to its requests (not reserved until the step runs).
  std::vector<RequestId> batch_;
  std::vector<int64_t> counts_;
  int64_t budget_ = 0;
  std::map<RequestId, int64_t> promised_;
  std::vector<int64_t> vocab_, maxPositions_, pagesPerChunk_;
  std::vector<size_t> weightBytes_;
  /// Per model: the online step-time fit (updated after every step).
  std::vector<StepCostFit> costFit_;
  int lastModel_ = -1;
  double now_ = 0;
  /// Measured clock: busy since (the end of the previous runtime call or the
  /// first step after idling), with the backend counters then.
  bool busy_ = false;
  std::chrono::steady_clock::time_point busySince_;
  BackendCounters busyCounters_;
  EngineStats stats_;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_SERVINGENGINE_H
