//===- ServingEngine.cpp - Continuous batching over many models -----------===//

#include "runtime/serving/ServingEngine.h"

#include "runtime/base/Status.h"
#include "runtime/serving/Sampler.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace crosspool::runtime {

absl::StatusOr<std::unique_ptr<ServingEngine>>
ServingEngine::create(Runtime *runtime, std::vector<ModelId> models,
                      Options options) {
  if (!runtime)
    return absl::InvalidArgumentError("serving engine needs a runtime");
  if (models.empty())
    return absl::InvalidArgumentError(
        "serving engine needs at least one model");
  if (options.maxStepTokens < 1 || options.maxBatchSeqs < 1 ||
      options.kvSampleEvery < 1 || options.watermarkChunks < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "expects max step tokens, max batch sequences and the KV sample "
        "period >= 1 and watermark >= 0 but got ",
        options.maxStepTokens, ", ", options.maxBatchSeqs, ", ",
        options.kvSampleEvery, " and ", options.watermarkChunks));
  if (!(options.tbtTargetMs >= 0) || !std::isfinite(options.tbtTargetMs) ||
      options.minPrefillChunk < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "expects a TBT target >= 0 ms and a min prefill chunk >= 1 but got ",
        options.tbtTargetMs, " and ", options.minPrefillChunk));
  const int n = static_cast<int>(models.size());
  std::unique_ptr<ServingEngine> e(new ServingEngine());
  for (int m = 0; m < n; ++m) {
    CP_ASSIGN_OR_RETURN(const ModelInfo *info, runtime->modelInfo(models[m]));
    if (std::count(models.begin(), models.end(), models[m]) != 1)
      return absl::InvalidArgumentError(
          absl::StrCat("model id ", models[m], " is served twice"));
    e->vocab_.push_back(info->vocabSize);
    e->maxPositions_.push_back(info->maxPositionEmbeddings);
    e->weightBytes_.push_back(info->kvPoolWeightBytes +
                              info->weightsPoolWeightBytes);
    e->pagesPerChunk_.push_back(
        std::max<int64_t>(1, runtime->kvPagesPerChunk(models[m])));
  }
  KvLayout &layout = options.layout;
  if (layout.groupChunks.empty())
    layout = sharedLayout(runtime->kvChunksTotal(), n);
  if (layout.modelGroup.size() != size_t(n) ||
      layout.groupNames.size() != layout.groupChunks.size())
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout names the group of ", layout.modelGroup.size(),
                     " models but the engine serves ", n));
  for (int32_t g : layout.modelGroup)
    if (g < 0 || g >= int32_t(layout.groupChunks.size()))
      return absl::InvalidArgumentError(
          absl::StrCat("KV layout group ", g, " out of range [0, ",
                       layout.groupChunks.size(), ")"));
  for (int64_t pages : layout.groupChunks)
    if (pages < 0)
      return absl::InvalidArgumentError("KV layout has a negative group");
  if (layout.totalChunks() > runtime->kvChunksTotal())
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout needs ", layout.totalChunks(),
        " chunks but the runtime pool has ", runtime->kvChunksTotal()));
  e->rt_ = runtime;
  e->models_ = std::move(models);
  e->options_ = std::move(options);
  e->waiting_.resize(n);
  e->running_.resize(n);
  e->stats_.peakModelPages.assign(n, 0);
  // Before any step the fit is the cost model (context cost left out: the
  // fit is linear in rows; measured steps teach it the rest).
  const StepCostModel &c = e->options_.cost;
  for (int m = 0; m < n; ++m) {
    StepCoefficients prior;
    prior.baseUs = c.stepBaseUs;
    if (c.weightBytesPerUs > 0)
      prior.baseUs += double(e->weightBytes_[m]) / c.weightBytesPerUs;
    prior.perPrefillTokenUs = c.perTokenUs;
    prior.perDecodeRowUs = c.perTokenUs;
    e->costFit_.emplace_back(prior, double(e->options_.maxStepTokens),
                             double(e->options_.maxBatchSeqs));
  }
  return e;
}

ServingEngine::~ServingEngine() {
  for (auto &[id, live] : live_)
    if (live.seq >= 0)
      (void)rt_->release(live.seq);
}

const RequestRecord &ServingEngine::record(RequestId id) const {
  return records_.at(id);
}

int64_t ServingEngine::liveRequests() const {
  return static_cast<int64_t>(live_.size());
}

int32_t ServingEngine::groupOf(RequestId id) const {
  return options_.layout.modelGroup[records_[id].model];
}

int64_t ServingEngine::groupChunksInUse(int32_t group) const {
  int64_t used = 0;
  for (size_t m = 0; m < models_.size(); ++m)
    if (options_.layout.modelGroup[m] == group)
      used += rt_->kvChunksInUse(models_[m]);
  return used;
}

int64_t ServingEngine::heldPages(RequestId id) const {
  const Live &l = live_.at(id);
  return l.seq >= 0 ? rt_->kvPagesHeld(l.seq) : 0;
}

int64_t ServingEngine::chunksAfter(int m, int64_t extraPages) const {
  return chunksAfterPages(rt_->kvChunksInUse(models_[m]),
                          rt_->kvPagesInUse(models_[m]), extraPages,
                          pagesPerChunk_[m]);
}

std::vector<int64_t> ServingEngine::promisedPages() const {
  std::vector<int64_t> pages(models_.size(), 0);
  for (const auto &[id, n] : promised_)
    pages[records_[id].model] += n;
  return pages;
}

bool ServingEngine::fits(int32_t group, const std::vector<int64_t> &extraPages,
                         int64_t reserve) const {
  int64_t inGroup = 0, served = 0, servedNow = 0;
  for (size_t m = 0; m < models_.size(); ++m) {
    int64_t chunks = chunksAfter(int(m), extraPages[m]);
    served += chunks;
    servedNow += rt_->kvChunksInUse(models_[m]);
    if (options_.layout.modelGroup[m] == group)
      inGroup += chunks;
  }
  // Models of the Runtime that this engine does not serve hold chunks too.
  int64_t others = rt_->kvChunksInUse() - servedNow;
  return inGroup + reserve <= options_.layout.groupChunks[group] &&
         served + others <= rt_->kvChunksTotal();
}

void ServingEngine::addPrefillDebt(int32_t group,
                                   std::vector<int64_t> *debt) const {
  // Pages running requests still need for the tokens they already know
  // (the rest of a chunked prompt, the next decode token): admission leaves
  // them free so a new request does not immediately force a preemption.
  for (size_t m = 0; m < models_.size(); ++m) {
    if (options_.layout.modelGroup[m] != group)
      continue;
    for (const Key &k : running_[m]) {
      const Live &l = live_.at(k.second);
      auto p = promised_.find(k.second);
      int64_t have =
          heldPages(k.second) + (p == promised_.end() ? 0 : p->second);
      int64_t want = rt_->kvPagesFor(models_[m], l.tokens.size());
      (*debt)[m] += std::max<int64_t>(0, want - have);
    }
  }
}

void ServingEngine::advanceTo(double time) { now_ = std::max(now_, time); }

absl::StatusOr<RequestId> ServingEngine::submit(const RequestSpec &spec) {
  const int n = static_cast<int>(models_.size());
  if (spec.model < 0 || spec.model >= n)
    return absl::InvalidArgumentError(
        absl::StrCat("request names model ", spec.model,
                     " but the engine serves ", n, " models"));
  const int m = spec.model;
  if (spec.prompt.empty())
    return absl::InvalidArgumentError("empty prompt: expects at least one id");
  for (int32_t id : spec.prompt)
    if (id < 0 || id >= vocab_[m])
      return absl::InvalidArgumentError(
          absl::StrCat("prompt id ", id, " is outside the vocabulary (size ",
                       vocab_[m], ")"));
  CP_RETURN_IF_ERROR(validateSampling(spec.sampling, vocab_[m]));
  // The last output id is never fed back, so the sequence peaks here.
  int64_t peakTokens =
      int64_t(spec.prompt.size()) + spec.sampling.maxNewTokens - 1;
  if (maxPositions_[m] > 0 && peakTokens > maxPositions_[m])
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", spec.prompt.size(), " ids) + max_new_tokens (",
                     spec.sampling.maxNewTokens, ") - 1 exceeds the model's ",
                     maxPositions_[m], " positions"));

  RequestId id = static_cast<RequestId>(records_.size());
  RequestRecord rec;
  rec.id = id;
  rec.model = m;
  rec.promptTokens = static_cast<int64_t>(spec.prompt.size());
  rec.arrivalTime = spec.arrivalTime < 0 ? now_ : spec.arrivalTime;
  int32_t group = options_.layout.modelGroup[m];
  int64_t needed = rt_->kvPagesFor(models_[m], peakTokens);
  int64_t neededChunks = (needed + pagesPerChunk_[m] - 1) / pagesPerChunk_[m];
  if (neededChunks > options_.layout.groupChunks[group]) {
    rec.state = RequestState::Failed;
    rec.reason = absl::StrCat(
        "can never fit: needs ", needed, " KV pages = ", neededChunks,
        " chunks for ", spec.prompt.size(), " prompt + ",
        spec.sampling.maxNewTokens, " output tokens but its KV group '",
        options_.layout.groupNames[group], "' has ",
        options_.layout.groupChunks[group], " chunks");
    rec.finishTime = rec.arrivalTime;
    records_.push_back(std::move(rec));
    return id;
  }
  records_.push_back(std::move(rec));
  Live &l = live_[id];
  l.tokens = spec.prompt;
  l.sampling = spec.sampling;
  l.lastProgress = records_[id].arrivalTime;
  waiting_[m].insert(key(id));
  return id;
}

void ServingEngine::finish(RequestId id, RequestState state,
                           std::string reason) {
  auto it = live_.find(id);
  if (it == live_.end())
    return;
  if (it->second.seq >= 0)
    (void)rt_->release(it->second.seq);
  int m = records_[id].model;
  waiting_[m].erase(key(id));
  running_[m].erase(key(id));
  promised_.erase(id);
  live_.erase(it);
  RequestRecord &rec = records_[id];
  rec.state = state;
  rec.reason = std::move(reason);
  rec.finishTime = now_;
}

absl::Status ServingEngine::cancel(RequestId id, std::string reason) {
  if (id < 0 || id >= RequestId(records_.size()))
    return absl::NotFoundError(absl::StrCat("unknown request id ", id));
  if (records_[id].terminal())
    return absl::FailedPreconditionError(
        absl::StrCat("request ", id, " already ended (",
                     requestStateName(records_[id].state), ")"));
  finish(id, RequestState::Cancelled, std::move(reason));
  return absl::OkStatus();
}

void ServingEngine::preempt(RequestId id) {
  Live &l = live_.at(id);
  if (l.seq >= 0)
    (void)rt_->release(l.seq);
  l.seq = -1;
  l.fed = 0;
  int m = records_[id].model;
  running_[m].erase(key(id));
  waiting_[m].insert(key(id));
  promised_.erase(id);
  auto inBatch = std::find(batch_.begin(), batch_.end(), id);
  if (inBatch != batch_.end()) {
    size_t i = inBatch - batch_.begin();
    budget_ += counts_[i];
    batch_.erase(inBatch);
    counts_.erase(counts_.begin() + i);
  }
  RequestRecord &rec = records_[id];
  rec.state = RequestState::Waiting;
  ++rec.preemptions;
  ++stats_.preemptions;
}

bool ServingEngine::ensurePages(RequestId id, int64_t tokens) {
  const int m = records_[id].model;
  const int32_t g = groupOf(id);
  int64_t need =
      std::max<int64_t>(0, rt_->kvPagesFor(models_[m], tokens) - heldPages(id));
  while (true) {
    std::vector<int64_t> extra = promisedPages();
    extra[m] += need;
    if (fits(g, extra))
      break;
    // Victim: the newest request younger than `id` of the model that holds
    // the most chunks of the group (it leaves this step's batch if in it).
    RequestId victim = -1;
    int64_t victimModelChunks = -1;
    for (size_t m2 = 0; m2 < models_.size(); ++m2) {
      if (options_.layout.modelGroup[m2] != g)
        continue;
      for (auto it = running_[m2].rbegin(); it != running_[m2].rend(); ++it) {
        if (!(key(id) < *it))
          break;
        int64_t chunks = rt_->kvChunksInUse(models_[m2]);
        if (chunks > victimModelChunks) {
          victim = it->second;
          victimModelChunks = chunks;
        }
        break;
      }
    }
    if (victim < 0) {
      preempt(id);
      return false;
    }
    preempt(victim);
  }
  promised_[id] = need;
  return true;
}

bool ServingEngine::admissible(int m, RequestId id) const {
  const int32_t g = options_.layout.modelGroup[m];
  std::vector<int64_t> extra = promisedPages();
  addPrefillDebt(g, &extra);
  bool groupBusy = false;
  for (size_t m2 = 0; m2 < models_.size(); ++m2) {
    if (options_.layout.modelGroup[m2] != g)
      continue;
    groupBusy |= !running_[m2].empty();
    // An older waiter of another model keeps its pages reserved.
    if (int(m2) == m || waiting_[m2].empty())
      continue;
    const Key &head = *waiting_[m2].begin();
    if (head.first <= now_ && head < key(id))
      extra[m2] +=
          rt_->kvPagesFor(models_[m2], live_.at(head.second).tokens.size());
  }
  extra[m] += rt_->kvPagesFor(models_[m], live_.at(id).tokens.size());
  // The watermark only guards against churn among running requests; an
  // empty group admits anything that fits it (checked at submit).
  return fits(g, extra, groupBusy ? options_.watermarkChunks : 0);
}

bool ServingEngine::anyDecoding() const {
  for (const auto &running : running_)
    for (const Key &k : running) {
      const Live &l = live_.at(k.second);
      if (!records_[k.second].output.empty() &&
          int64_t(l.tokens.size()) - l.fed == 1)
        return true;
    }
  return false;
}

std::vector<int> ServingEngine::stepOrder() {
  const int n = static_cast<int>(models_.size());
  std::vector<int> order;
  for (int k = 1; k <= n; ++k) {
    int m = (lastModel_ + k) % n;
    if (!running_[m].empty() ||
        (!waiting_[m].empty() && waiting_[m].begin()->first <= now_))
      order.push_back(m);
  }
  if (options_.policy == Policy::OldestFirst) {
    auto since = [&](int m) {
      double t = std::numeric_limits<double>::infinity();
      for (const Key &k : running_[m])
        t = std::min(t, live_.at(k.second).lastProgress);
      if (!waiting_[m].empty() && waiting_[m].begin()->first <= now_)
        t = std::min(t, live_.at(waiting_[m].begin()->second).lastProgress);
      return t;
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return since(a) < since(b); });
  }
  return order;
}

namespace {

BackendCounters minus(const BackendCounters &a, const BackendCounters &b) {
  BackendCounters d;
  d.kvMaps = a.kvMaps - b.kvMaps;
  d.kvUnmaps = a.kvUnmaps - b.kvUnmaps;
  d.kvMapS = a.kvMapS - b.kvMapS;
  d.kvUnmapS = a.kvUnmapS - b.kvUnmapS;
  d.kvReuses = a.kvReuses - b.kvReuses;
  d.kvReclaims = a.kvReclaims - b.kvReclaims;
  d.steps = a.steps - b.steps;
  d.prepS = a.prepS - b.prepS;
  d.launchS = a.launchS - b.launchS;
  d.waitS = a.waitS - b.waitS;
  d.copyS = a.copyS - b.copyS;
  d.graphLaunches = a.graphLaunches - b.graphLaunches;
  d.graphCaptures = a.graphCaptures - b.graphCaptures;
  d.graphCaptureS = a.graphCaptureS - b.graphCaptureS;
  return d;
}

} // namespace

void ServingEngine::markBusy() {
  if (busy_)
    return;
  busy_ = true;
  busySince_ = std::chrono::steady_clock::now();
  busyCounters_ = rt_->backendCounters();
}

absl::StatusOr<bool> ServingEngine::step() {
  std::vector<int> order = stepOrder();
  if (order.empty()) {
    busy_ = false; // idle until the next arrival: not on the clock
    return false;
  }
  markBusy();
  for (int m : order) {
    promised_.clear();
    batch_.clear();
    counts_.clear();
    budget_ = options_.maxStepTokens;
    auto full = [&] {
      return budget_ == 0 || int32_t(batch_.size()) >= options_.maxBatchSeqs;
    };
    // Decode tokens first, then prompt chunks (each pass oldest first): a
    // long prompt never delays the next token of a running request.
    std::vector<Key> running(running_[m].begin(), running_[m].end());
    int64_t prefillCap = -1;
    for (bool decodePass : {true, false}) {
      if (!decodePass && options_.tbtTargetMs > 0 && anyDecoding()) {
        // SLO-aware chunking: the decode rows are in; cap the prefill rows
        // (continued prompts and admissions alike) so the step's predicted
        // time fits this model's share of the TBT target.
        int64_t decodeRows = 0, committed = 0;
        for (size_t i = 0; i < batch_.size(); ++i)
          (records_[batch_[i]].output.empty() ? committed : decodeRows) +=
              counts_[i];
        double shareUs = options_.tbtTargetMs * 1e3 / double(order.size());
        prefillCap =
            prefillTokenCap(costFit_[m].coefficients(), shareUs, decodeRows,
                            committed, options_.minPrefillChunk, budget_);
        budget_ = prefillCap;
      }
      for (const Key &k : running) {
        if (full())
          break;
        if (!running_[m].count(k) || promised_.count(k.second))
          continue; // preempted meanwhile, or already in the batch
        const Live &l = live_.at(k.second);
        int64_t pending = int64_t(l.tokens.size()) - l.fed;
        if ((pending == 1) != decodePass)
          continue;
        int64_t n = std::min<int64_t>(pending, budget_);
        if (!ensurePages(k.second, l.fed + n))
          continue;
        batch_.push_back(k.second);
        counts_.push_back(n);
        budget_ -= n;
      }
    }
    while (!full() && !waiting_[m].empty()) {
      Key head = *waiting_[m].begin();
      if (head.first > now_ || !admissible(m, head.second))
        break;
      RequestId id = head.second;
      Live &l = live_.at(id);
      absl::StatusOr<SequenceId> seq = rt_->startSequence(models_[m]);
      if (!seq.ok()) {
        finish(id, RequestState::Failed, std::string(seq.status().message()));
        continue;
      }
      l.seq = *seq;
      l.fed = 0;
      waiting_[m].erase(head);
      running_[m].insert(head);
      RequestRecord &rec = records_[id];
      rec.state = RequestState::Running;
      if (rec.preemptions > 0)
        rec.recomputedTokens += static_cast<int64_t>(l.tokens.size());
      int64_t n = std::min<int64_t>(l.tokens.size(), budget_);
      promised_[id] = rt_->kvPagesFor(models_[m], n);
      batch_.push_back(id);
      counts_.push_back(n);
      budget_ -= n;
    }
    if (batch_.empty())
      continue;
    std::vector<RequestId> batch = std::move(batch_);
    std::vector<int64_t> counts = std::move(counts_);
    batch_.clear();
    counts_.clear();
    CP_RETURN_IF_ERROR(runBatch(m, batch, counts, prefillCap));
    lastModel_ = m;
    return true;
  }
  promised_.clear();
  // Every model with work is blocked and nothing runs: by construction this
  // cannot happen (the group's oldest request always fits alone); fail the
  // oldest arrived waiter rather than spin, so no request hangs silently.
  RequestId oldest = -1;
  for (int m : order)
    if (!waiting_[m].empty() && waiting_[m].begin()->first <= now_ &&
        (oldest < 0 || *waiting_[m].begin() < key(oldest)))
      oldest = waiting_[m].begin()->second;
  if (oldest < 0)
    return absl::InternalError("serving engine: no model could step");
  finish(oldest, RequestState::Failed,
         "scheduler could not make progress (no KV pages could be freed)");
  return true;
}

absl::Status ServingEngine::runBatch(int m, const std::vector<RequestId> &batch,
                                     const std::vector<int64_t> &counts,
                                     int64_t prefillCap) {
  std::vector<SequenceId> seqs;
  std::vector<std::vector<int32_t>> chunks;
  int64_t rows = 0, context = 0;
  StepRecord step;
  step.model = m;
  step.prefillCap = prefillCap;
  // Greedy unless a request sampling this step has a temperature: then the
  // backend returns ids, not logits (on CUDA only ids reach the host).
  bool greedy = true;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Live &l = live_.at(batch[i]);
    seqs.push_back(l.seq);
    chunks.emplace_back(l.tokens.begin() + l.fed,
                        l.tokens.begin() + l.fed + counts[i]);
    rows += counts[i];
    // Row at position p attends p + 1 positions.
    context += counts[i] * l.fed + counts[i] * (counts[i] + 1) / 2;
    if (l.fed + counts[i] == int64_t(l.tokens.size()) &&
        l.sampling.temperature > 0.0f)
      greedy = false;
    bool decode = counts[i] == 1 && !records_[batch[i]].output.empty() &&
                  l.fed + 1 == int64_t(l.tokens.size());
    if (decode)
      ++step.decodeSeqs;
    else
      step.prefillTokens += counts[i];
  }
  step.predictedS = costFit_[m].coefficients().predictUs(step.prefillTokens,
                                                         step.decodeSeqs) *
                    1e-6;
  markBusy();
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<float>> logits;
  absl::StatusOr<std::vector<int32_t>> ids;
  if (greedy)
    ids = rt_->stepGreedy(seqs, chunks);
  else
    logits = rt_->step(seqs, chunks);
  const absl::Status stepStatus = greedy ? ids.status() : logits.status();
  auto end = std::chrono::steady_clock::now();
  BackendCounters counters = rt_->backendCounters();
  step.rows = rows;
  step.seqs = int64_t(batch.size());
  step.context = context;
  step.greedy = greedy;
  step.runtimeS = std::chrono::duration<double>(end - start).count();
  step.wallS = std::chrono::duration<double>(end - busySince_).count();
  step.backend = minus(counters, busyCounters_);
  busySince_ = end;
  busyCounters_ = counters;
  promised_.clear();
  const double before = now_;
  if (options_.clock == Clock::Measured) {
    // CUDA graph captures are one-time setup (the first replay would pay
    // them for the later ones): logged, not on the clock.
    now_ += std::max(0.0, step.wallS - step.backend.graphCaptureS);
  } else {
    const StepCostModel &c = options_.cost;
    double us = c.stepBaseUs + c.perTokenUs * double(rows) +
                c.perContextTokenUs * double(context);
    if (c.weightBytesPerUs > 0)
      us += double(weightBytes_[m]) / c.weightBytesPerUs;
    now_ += us * 1e-6;
  }
  ++stats_.steps;
  // Before the finished requests below release their pages.
  int64_t held = 0;
  for (size_t k = 0; k < models_.size(); ++k) {
    held += rt_->kvChunksInUse(models_[k]);
    stats_.peakModelPages[k] = std::max(stats_.peakModelPages[k],
                                        rt_->kvPagesInUse(models_[k]));
  }
  stats_.peakChunksInUse = std::max(stats_.peakChunksInUse, held);
  step.clockS = now_ - before;
  costFit_[m].add(step.prefillTokens, step.decodeSeqs, step.clockS * 1e6);
  step.time = now_;
  stats_.stepLog.push_back(step);
  if (!stepStatus.ok()) {
    for (RequestId id : batch)
      finish(id, RequestState::Failed,
             absl::StrCat("step failed: ", stepStatus.message()));
  } else {
    const int64_t V = vocab_[m];
    for (size_t i = 0; i < batch.size(); ++i) {
      RequestId id = batch[i];
      Live &l = live_.at(id);
      RequestRecord &rec = records_[id];
      bool decode = counts[i] == 1 && !rec.output.empty() &&
                    l.fed + 1 == int64_t(l.tokens.size());
      (decode ? stats_.decodeTokens : stats_.prefillTokens) += counts[i];
      l.fed += counts[i];
      if (l.fed < int64_t(l.tokens.size()))
        continue; // a prompt chunk; its logits are not needed
      int32_t next =
          greedy ? (*ids)[i]
                 : sampleToken(logits->data() + i * V, V, l.sampling,
                               static_cast<int64_t>(rec.output.size()));
      rec.output.push_back(next);
      rec.tokenTimes.push_back(now_);
      l.tokens.push_back(next);
      l.lastProgress = now_;
      const std::vector<int32_t> &stops = l.sampling.stopIds;
      if (std::find(stops.begin(), stops.end(), next) != stops.end())
        finish(id, RequestState::Finished, "stop_id");
      else if (int64_t(rec.output.size()) >= l.sampling.maxNewTokens)
        finish(id, RequestState::Finished, "max_tokens");
    }
  }
  if (stats_.steps % options_.kvSampleEvery == 0)
    sampleKv();
  if (options_.onStep)
    options_.onStep(*this);
  return absl::OkStatus();
}

void ServingEngine::sampleKv() {
  KvSample s;
  s.time = now_;
  for (size_t g = 0; g < options_.layout.groupChunks.size(); ++g) {
    s.groupChunksInUse.push_back(groupChunksInUse(static_cast<int32_t>(g)));
    s.chunksInUse += s.groupChunksInUse.back();
  }
  stats_.kv.push_back(std::move(s));
}

absl::Status ServingEngine::runUntilIdle() {
  while (!live_.empty()) {
    CP_ASSIGN_OR_RETURN(bool ran, step());
    if (ran)
      continue;
    double next = std::numeric_limits<double>::infinity();
    for (const auto &w : waiting_)
      if (!w.empty())
        next = std::min(next, w.begin()->first);
    if (!(next > now_) || next == std::numeric_limits<double>::infinity())
      return absl::InternalError(
          "serving engine: requests are live but none can run");
    advanceTo(next);
  }
  return absl::OkStatus();
}

} // namespace crosspool::runtime
