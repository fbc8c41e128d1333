//===- ServingEngineTest.cpp - Continuous batching over tiny checkpoints --===//
//
// Four tiny models of different families in one Runtime. The oracle for
// every greedy request is the same request run alone on a fresh Runtime
// (Runtime::generate: one prefill, then argmax/decode), plus the Hugging
// Face goldens for their prompts. Needs the plans the e2e fixture compiles.

#include "runtime/serving/ServingEngine.h"
#include "runtime/serving/ServeReport.h"
#include "runtime/serving/Workload.h"

#include "nlohmann/json.hpp"
#include "gtest/gtest.h"

#include <fstream>
#include <limits>
#include <map>
#include <memory>

using namespace crosspool::runtime;

namespace {

const std::vector<std::string> kModels = {"mixtral_tiny", "qwen2_moe_tiny",
                                          "qwen3_moe_tiny", "olmoe_tiny"};

std::string planPath(const std::string &model) {
  return std::string(CROSSPOOL_BINARY_DIR) + "/plans/" + model + ".cpplan";
}

/// A Runtime of `kvPages` pages with every test model loaded.
std::pair<std::unique_ptr<Runtime>, std::vector<ModelId>>
loadAll(int32_t kvPages) {
  RuntimeOptions o;
  o.kvPages = kvPages;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::create(o);
  EXPECT_TRUE(rt.ok()) << rt.status();
  std::vector<ModelId> ids;
  for (const std::string &m : kModels) {
    absl::StatusOr<ModelId> id = (*rt)->loadModel(planPath(m));
    EXPECT_TRUE(id.ok()) << id.status();
    ids.push_back(id.ok() ? *id : -1);
  }
  return {std::move(*rt), ids};
}

/// Greedy ids of `prompt` run alone on a fresh Runtime (one per model).
class AloneOracle {
public:
  std::vector<int32_t> greedy(int model, const std::vector<int32_t> &prompt,
                              int64_t maxNew) {
    auto key = std::make_tuple(model, prompt, maxNew);
    auto hit = cache_.find(key);
    if (hit != cache_.end())
      return hit->second;
    if (!runtimes_.count(model)) {
      auto rt = Runtime::create({});
      EXPECT_TRUE(rt.ok());
      auto id = (*rt)->loadModel(planPath(kModels[model]));
      EXPECT_TRUE(id.ok()) << id.status();
      ids_[model] = *id;
      runtimes_[model] = std::move(*rt);
    }
    GenerateOptions g;
    g.maxNewTokens = maxNew;
    auto r = runtimes_[model]->generate(ids_[model], prompt, g);
    EXPECT_TRUE(r.ok()) << r.status();
    return cache_[key] = r->generatedIds;
  }

private:
  std::map<int, std::unique_ptr<Runtime>> runtimes_;
  std::map<int, ModelId> ids_;
  std::map<std::tuple<int, std::vector<int32_t>, int64_t>, std::vector<int32_t>>
      cache_;
};

AloneOracle &oracle() {
  static AloneOracle o;
  return o;
}

/// The first golden prompt and its 24 greedy ids (Hugging Face).
std::pair<std::vector<int32_t>, std::vector<int32_t>>
golden(const std::string &model, int index) {
  std::ifstream in(std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models/" +
                   model + "/golden.json");
  nlohmann::json j = nlohmann::json::parse(in);
  const nlohmann::json &p = j["prompts"][index];
  return {p["prompt_ids"].get<std::vector<int32_t>>(),
          p["generated_ids"].get<std::vector<int32_t>>()};
}

class ServingEngineTest : public ::testing::Test {
protected:
  void SetUp() override {
    for (const std::string &m : kModels)
      if (!std::ifstream(planPath(m)))
        GTEST_FAIL() << "missing " << planPath(m)
                     << " (the e2e `plans` fixture compiles it)";
  }
};

RequestSpec greedyRequest(int model, std::vector<int32_t> prompt,
                          int64_t maxNew, double arrival = 0) {
  RequestSpec s;
  s.model = model;
  s.prompt = std::move(prompt);
  s.sampling.maxNewTokens = maxNew;
  s.arrivalTime = arrival;
  return s;
}

struct BurstCase {
  const char *name;
  ServingEngine::Policy policy;
  int64_t maxStepTokens;
  /// Two quota groups (models 0,1 | 2,3) instead of one shared pool.
  bool twoGroups;
};

class BurstTest : public ServingEngineTest,
                  public ::testing::WithParamInterface<BurstCase> {};

// A burst that needs several times the KV pool: nothing crashes, nothing is
// lost, requests are preempted and recomputed, and every output equals the
// request run alone.
TEST_P(BurstTest, ExhaustedPoolPreemptsAndKeepsGreedyOutputs) {
  const BurstCase &c = GetParam();
  const int32_t kPages = 48;
  auto [rt, ids] = loadAll(kPages);
  ServingEngine::Options opts;
  opts.policy = c.policy;
  opts.maxStepTokens = c.maxStepTokens;
  if (c.twoGroups) {
    opts.layout.groupChunks = {24, 24};
    opts.layout.groupNames = {"g0", "g1"};
    opts.layout.modelGroup = {0, 0, 1, 1};
    opts.layout.modelGpu = {0, 0, 1, 1};
  }
  auto engine = ServingEngine::create(rt.get(), ids, opts);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ServingEngine &e = **engine;

  WorkloadRng rng(2024);
  std::vector<RequestSpec> specs;
  for (int i = 0; i < 24; ++i) {
    int model = i % 4;
    int64_t len = rng.uniformInt(6, 40);
    // A first burst at t = 0, a second one while the first decodes.
    double arrival = i < 16 ? 0.0 : 0.02;
    specs.push_back(greedyRequest(model, randomPrompt(rng, len, 256),
                                  rng.uniformInt(10, 24), arrival));
  }
  // The goldens' prompts ride along (Hugging Face as a second oracle).
  for (int m = 0; m < 4; ++m)
    specs.push_back(greedyRequest(m, golden(kModels[m], 1).first, 24, 0.0));
  std::vector<RequestId> rids;
  for (const RequestSpec &s : specs) {
    absl::StatusOr<RequestId> id = e.submit(s);
    ASSERT_TRUE(id.ok()) << id.status();
    rids.push_back(*id);
  }
  ASSERT_TRUE(e.runUntilIdle().ok());

  EXPECT_GT(e.stats().preemptions, 0);
  EXPECT_LE(e.stats().peakChunksInUse, kPages);
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  EXPECT_EQ(e.liveRequests(), 0);
  int64_t recomputed = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord &r = e.record(rids[i]);
    ASSERT_EQ(r.state, RequestState::Finished)
        << "request " << i << ": " << r.reason;
    EXPECT_EQ(r.reason, "max_tokens");
    std::vector<int32_t> want = oracle().greedy(specs[i].model, specs[i].prompt,
                                                specs[i].sampling.maxNewTokens);
    EXPECT_EQ(r.output, want)
        << "request " << i << " (model " << kModels[specs[i].model] << ", "
        << r.preemptions << " preemptions)";
    ASSERT_EQ(r.tokenTimes.size(), r.output.size());
    for (size_t k = 1; k < r.tokenTimes.size(); ++k)
      EXPECT_GT(r.tokenTimes[k], r.tokenTimes[k - 1]);
    EXPECT_GE(r.tokenTimes.front(), r.arrivalTime);
    recomputed += r.recomputedTokens;
  }
  EXPECT_GT(recomputed, 0);
  for (int m = 0; m < 4; ++m)
    EXPECT_EQ(e.record(rids[24 + m]).output, golden(kModels[m], 1).second)
        << kModels[m];
  if (c.twoGroups)
    for (const KvSample &s : e.stats().kv) {
      EXPECT_LE(s.groupChunksInUse[0], 24);
      EXPECT_LE(s.groupChunksInUse[1], 24);
    }

  // The report counts what the records hold.
  ServeReport rep = buildReport(e, "test", kModels);
  EXPECT_EQ(rep.overall.requests, int64_t(specs.size()));
  EXPECT_EQ(rep.overall.finished, int64_t(specs.size()));
  EXPECT_EQ(rep.overall.preemptions, e.stats().preemptions);
  int64_t gaps = 0;
  for (const RequestSpec &s : specs)
    gaps += s.sampling.maxNewTokens - 1;
  EXPECT_EQ(int64_t(rep.overall.tbtSamples.size()), gaps);
  EXPECT_EQ(rep.overall.ttft.count, int64_t(specs.size()));
}

INSTANTIATE_TEST_SUITE_P(
    Policies, BurstTest,
    ::testing::Values(BurstCase{"RoundRobin", ServingEngine::Policy::RoundRobin,
                                256, false},
                      BurstCase{"OldestFirstChunked",
                                ServingEngine::Policy::OldestFirst, 7, false},
                      BurstCase{"TwoGroupsChunked",
                                ServingEngine::Policy::RoundRobin, 16, true}),
    [](const ::testing::TestParamInfo<BurstCase> &i) { return i.param.name; });

TEST_F(ServingEngineTest, VirtualClockFollowsTheCostModel) {
  auto [rt, ids] = loadAll(256);
  ServingEngine::Options opts;
  opts.cost = {1000, 0, 10, 0.5};
  auto engine = ServingEngine::create(rt.get(), ids, opts);
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> prompt = {5, 6, 7, 8};
  ASSERT_TRUE((*engine)->submit(greedyRequest(1, prompt, 3, 2.0)).ok());
  ASSERT_TRUE((*engine)->runUntilIdle().ok());
  const RequestRecord &r = (*engine)->record(0);
  // Idle until 2 s; prefill of 4 rows attending 1+2+3+4 positions; decodes
  // of one row attending 5, then 6 positions.
  double t1 = 2.0 + (1000 + 10 * 4 + 0.5 * 10) * 1e-6;
  double t2 = t1 + (1000 + 10 + 0.5 * 5) * 1e-6;
  double t3 = t2 + (1000 + 10 + 0.5 * 6) * 1e-6;
  ASSERT_EQ(r.tokenTimes.size(), 3u);
  EXPECT_NEAR(r.tokenTimes[0], t1, 1e-12);
  EXPECT_NEAR(r.tokenTimes[1], t2, 1e-12);
  EXPECT_NEAR(r.tokenTimes[2], t3, 1e-12);
  EXPECT_NEAR(r.finishTime, t3, 1e-12);
}

TEST_F(ServingEngineTest, CancelWaitingAndRunningRequests) {
  auto [rt, ids] = loadAll(256);
  auto engine = ServingEngine::create(rt.get(), ids, {});
  ASSERT_TRUE(engine.ok());
  ServingEngine &e = **engine;
  std::vector<int32_t> p0 = {11, 12, 13, 14, 15}, p1 = {21, 22, 23},
                       p2 = {31, 32, 33, 34};
  RequestId a = *e.submit(greedyRequest(0, p0, 20));
  RequestId b = *e.submit(greedyRequest(2, p1, 20));
  RequestId later = *e.submit(greedyRequest(3, p2, 20, 100.0));
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(e.step().ok());
  ASSERT_EQ(e.record(a).state, RequestState::Running);
  ASSERT_FALSE(e.record(a).output.empty());
  int64_t before = rt->kvPagesInUse(ids[0]);
  EXPECT_GT(before, 0);
  ASSERT_TRUE(e.cancel(a).ok());
  EXPECT_EQ(rt->kvPagesInUse(ids[0]), 0);
  EXPECT_EQ(e.record(a).state, RequestState::Cancelled);
  EXPECT_EQ(e.record(a).reason, "cancelled");
  ASSERT_TRUE(e.cancel(later).ok()); // not arrived yet
  EXPECT_EQ(e.record(later).state, RequestState::Cancelled);
  EXPECT_TRUE(e.record(later).output.empty());
  EXPECT_EQ(e.cancel(a).message(), "request 0 already ended (cancelled)");
  EXPECT_EQ(e.cancel(99).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(e.runUntilIdle().ok());
  // The cancelled request's tokens so far are the start of its alone run;
  // the other request is untouched.
  std::vector<int32_t> aloneA = oracle().greedy(0, p0, 20);
  const std::vector<int32_t> &outA = e.record(a).output;
  EXPECT_EQ(outA,
            std::vector<int32_t>(aloneA.begin(), aloneA.begin() + outA.size()));
  EXPECT_EQ(e.record(b).state, RequestState::Finished);
  EXPECT_EQ(e.record(b).output, oracle().greedy(2, p1, 20));
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  EXPECT_LT(e.now(), 100.0); // the cancelled future arrival left no wait
}

TEST_F(ServingEngineTest, MaxTokensAndStopIds) {
  auto [rt, ids] = loadAll(256);
  auto engine = ServingEngine::create(rt.get(), ids, {});
  ASSERT_TRUE(engine.ok());
  ServingEngine &e = **engine;
  std::vector<int32_t> prompt = {40, 41, 42, 43, 44, 45};
  std::vector<int32_t> alone = oracle().greedy(1, prompt, 24);
  // Stop at the first id that has not appeared before position 5.
  size_t k = 5;
  while (std::count(alone.begin(), alone.begin() + k, alone[k]))
    ++k;
  ASSERT_LT(k, alone.size());
  RequestSpec stop = greedyRequest(1, prompt, 24);
  stop.sampling.stopIds = {alone[k], 255};
  RequestId s = *e.submit(stop);
  RequestId one = *e.submit(greedyRequest(1, prompt, 1));
  RequestId five = *e.submit(greedyRequest(3, prompt, 5));
  RequestSpec never = greedyRequest(1, prompt, 24);
  // An id absent from the output never stops it.
  for (int32_t id = 0; id < 256; ++id)
    if (!std::count(alone.begin(), alone.end(), id)) {
      never.sampling.stopIds = {id};
      break;
    }
  RequestId n = *e.submit(never);
  ASSERT_TRUE(e.runUntilIdle().ok());
  EXPECT_EQ(e.record(s).reason, "stop_id");
  EXPECT_EQ(e.record(s).output,
            std::vector<int32_t>(alone.begin(), alone.begin() + k + 1));
  EXPECT_EQ(e.record(one).output, std::vector<int32_t>{alone[0]});
  EXPECT_EQ(e.record(one).reason, "max_tokens");
  EXPECT_EQ(e.record(five).output, oracle().greedy(3, prompt, 5));
  EXPECT_EQ(e.record(n).output, alone);
  EXPECT_EQ(e.record(n).reason, "max_tokens");
}

TEST_F(ServingEngineTest, SamplingIsDeterministicPerSeedUnderLoad) {
  std::vector<int32_t> prompt = {7, 70, 170, 17, 77};
  auto sampled = [&](uint64_t seed, bool busy, float temperature, int topK) {
    auto [rt, ids] = loadAll(busy ? 40 : 256);
    auto engine = ServingEngine::create(rt.get(), ids, {});
    EXPECT_TRUE(engine.ok());
    ServingEngine &e = **engine;
    WorkloadRng rng(seed + 1);
    if (busy) // other traffic first, so the sampled request is preempted
      for (int i = 0; i < 12; ++i)
        EXPECT_TRUE(
            e.submit(greedyRequest(i % 4, randomPrompt(rng, 30, 256), 20, 0.0))
                .ok());
    RequestSpec s = greedyRequest(2, prompt, 20, busy ? 0.001 : 0.0);
    s.sampling.temperature = temperature;
    s.sampling.topK = topK;
    s.sampling.seed = seed;
    RequestId id = *e.submit(s);
    EXPECT_TRUE(e.runUntilIdle().ok());
    EXPECT_EQ(e.record(id).state, RequestState::Finished);
    if (busy)
      EXPECT_GT(e.stats().preemptions, 0);
    return e.record(id).output;
  };
  std::vector<int32_t> quiet = sampled(42, false, 1.0f, 0);
  EXPECT_EQ(sampled(42, true, 1.0f, 0), quiet);
  int differs = 0;
  for (uint64_t seed : {1, 2, 3})
    differs += sampled(seed, false, 1.0f, 0) != quiet;
  EXPECT_GE(differs, 2);
  // Sampled output is not greedy, and top-k = 1 is greedy at any temperature.
  std::vector<int32_t> greedy = oracle().greedy(2, prompt, 20);
  EXPECT_NE(quiet, greedy);
  EXPECT_EQ(sampled(5, true, 1.7f, 1), greedy);
}

TEST_F(ServingEngineTest, RejectsBadRequestsAndFailsOnesThatCanNeverFit) {
  auto [rt, ids] = loadAll(72);
  ServingEngine::Options opts;
  opts.layout.groupChunks = {64, 8};
  opts.layout.groupNames = {"big", "small"};
  opts.layout.modelGroup = {0, 0, 0, 1};
  opts.layout.modelGpu = {0, 0, 0, 0};
  // The layout may not exceed the Runtime's pool.
  auto tooBig = opts;
  tooBig.layout.groupChunks = {64, 9};
  EXPECT_EQ(ServingEngine::create(rt.get(), ids, tooBig).status().message(),
            "KV layout needs 73 chunks but the runtime pool has 72");
  auto engine = ServingEngine::create(rt.get(), ids, opts);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ServingEngine &e = **engine;
  auto message = [&](RequestSpec s) {
    return std::string(e.submit(s).status().message());
  };
  EXPECT_EQ(message(greedyRequest(4, {1}, 4)),
            "request names model 4 but the engine serves 4 models");
  EXPECT_EQ(message(greedyRequest(0, {}, 4)),
            "empty prompt: expects at least one id");
  EXPECT_EQ(message(greedyRequest(0, {1, 256}, 4)),
            "prompt id 256 is outside the vocabulary (size 256)");
  RequestSpec badP = greedyRequest(0, {1}, 4);
  badP.sampling.topP = 0;
  EXPECT_EQ(message(badP), "top_p must be in (0, 1] but got 0");
  EXPECT_EQ(message(greedyRequest(0, std::vector<int32_t>(500, 1), 20)),
            "prompt (500 ids) + max_new_tokens (20) - 1 exceeds the model's "
            "512 positions");
  EXPECT_TRUE(e.records().empty());
  // olmoe_tiny: 16 tokens per page in each of 2 layers; 200 + 20 - 1
  // tokens need 2 * 14 = 28 pages, its group has 8.
  RequestId big = *e.submit(greedyRequest(3, std::vector<int32_t>(200, 3), 20));
  RequestId ok = *e.submit(greedyRequest(3, {1, 2, 3}, 4));
  ASSERT_TRUE(e.runUntilIdle().ok());
  EXPECT_EQ(e.record(big).state, RequestState::Failed);
  EXPECT_EQ(e.record(big).reason,
            "can never fit: needs 28 KV pages = 28 chunks for 200 prompt + "
            "20 output tokens but its KV group 'small' has 8 chunks");
  EXPECT_EQ(e.record(ok).state, RequestState::Finished);
  EXPECT_EQ(e.record(ok).output, oracle().greedy(3, {1, 2, 3}, 4));
}

// SLO-aware prefill chunks (Options::tbtTargetMs), hand-computed: one model
// with work (R = 1), the cost model without context cost (so every step lies
// on the fit's prior plane 500 us + 40 us per row and the fit stays there).
// A decoding request's step meets a 300-token prompt: with a 5 ms target the
// prompt goes in chunks of floor((5000 - 500 - 40 * 1) / 40) = 111 tokens.
TEST_F(ServingEngineTest, TbtTargetCapsPrefillChunksByHand) {
  auto run = [&](double targetMs) {
    auto [rt, ids] = loadAll(512);
    ServingEngine::Options opts;
    opts.cost = {500, 0, 40, 0};
    opts.tbtTargetMs = targetMs;
    opts.minPrefillChunk = 16;
    auto engine = ServingEngine::create(rt.get(), ids, opts);
    EXPECT_TRUE(engine.ok()) << engine.status();
    ServingEngine &e = **engine;
    WorkloadRng rng(7);
    std::vector<int32_t> shortPrompt = randomPrompt(rng, 4, 256);
    std::vector<int32_t> longPrompt = randomPrompt(rng, 300, 256);
    RequestId a = *e.submit(greedyRequest(1, shortPrompt, 30, 0.0));
    RequestId b = *e.submit(greedyRequest(1, longPrompt, 4, 0.003));
    EXPECT_TRUE(e.runUntilIdle().ok());
    EXPECT_EQ(e.record(a).output, oracle().greedy(1, shortPrompt, 30));
    EXPECT_EQ(e.record(b).output, oracle().greedy(1, longPrompt, 4));
    std::vector<StepRecord> log = e.stats().stepLog;
    const RequestRecord ra = e.record(a);
    double maxGap = 0;
    for (size_t k = 1; k < ra.tokenTimes.size(); ++k)
      maxGap = std::max(maxGap, ra.tokenTimes[k] - ra.tokenTimes[k - 1]);
    return std::make_pair(log, maxGap);
  };
  auto [on, gapOn] = run(5);
  std::vector<std::pair<int64_t, int64_t>> prefillSteps; // tokens, cap
  for (const StepRecord &s : on) {
    if (s.prefillTokens > 0 && s.time > 0.003)
      prefillSteps.push_back({s.prefillTokens, s.prefillCap});
    // The prediction is exact here: every step is on the prior's plane.
    EXPECT_NEAR(s.predictedS, s.clockS, 1e-12);
  }
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(prefillSteps, (std::vector<P>{{111, 111}, {111, 111}, {78, 111}}));
  // The first step (request a's 4-token prompt, nobody decoding) is not
  // capped; each chunk step takes 500 + 40 * 112 = 4980 us <= 5 ms.
  EXPECT_EQ(on.front().prefillCap, -1);
  EXPECT_NEAR(gapOn, 4980e-6, 1e-12);
  // Off: a 255-token chunk beside the decode row, 500 + 40 * 256 us.
  auto [off, gapOff] = run(0);
  for (const StepRecord &s : off)
    EXPECT_EQ(s.prefillCap, -1);
  EXPECT_NEAR(gapOff, 10740e-6, 1e-12);
}

TEST_F(ServingEngineTest, TbtTargetRejectsBadOptions) {
  auto [rt, ids] = loadAll(64);
  ServingEngine::Options opts;
  opts.tbtTargetMs = -1;
  EXPECT_EQ(ServingEngine::create(rt.get(), ids, opts).status().message(),
            "expects a TBT target >= 0 ms and a min prefill chunk >= 1 but "
            "got -1 and 64");
  opts.tbtTargetMs = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(ServingEngine::create(rt.get(), ids, opts).status().code(),
            absl::StatusCode::kInvalidArgument);
  opts.tbtTargetMs = 10;
  opts.minPrefillChunk = 0;
  EXPECT_EQ(ServingEngine::create(rt.get(), ids, opts).status().message(),
            "expects a TBT target >= 0 ms and a min prefill chunk >= 1 but "
            "got 10 and 0");
}

/// Short requests decoding on all four models while long prompts arrive.
std::vector<RequestSpec> longPromptsWhileDecoding() {
  WorkloadRng rng(99);
  std::vector<RequestSpec> specs;
  for (int i = 0; i < 8; ++i)
    specs.push_back(greedyRequest(i % 4, randomPrompt(rng, 8, 256), 40, 0.0));
  for (int i = 0; i < 8; ++i)
    specs.push_back(
        greedyRequest(i % 4, randomPrompt(rng, rng.uniformInt(200, 420), 256),
                      8, 0.004 + 0.006 * i));
  return specs;
}

struct ChunkedRun {
  ServeReport report;
  std::vector<StepRecord> log;
  int64_t preemptions = 0;
};

ChunkedRun runChunked(const std::vector<RequestSpec> &specs, double targetMs,
                      int64_t minChunk) {
  auto [rt, ids] = loadAll(1024);
  ServingEngine::Options opts;
  opts.tbtTargetMs = targetMs;
  opts.minPrefillChunk = minChunk;
  auto engine = ServingEngine::create(rt.get(), ids, opts);
  EXPECT_TRUE(engine.ok()) << engine.status();
  ServingEngine &e = **engine;
  for (const RequestSpec &s : specs)
    EXPECT_TRUE(e.submit(s).ok());
  EXPECT_TRUE(e.runUntilIdle().ok());
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord &r = e.record(RequestId(i));
    EXPECT_EQ(r.state, RequestState::Finished) << "request " << i;
    EXPECT_EQ(r.output, oracle().greedy(specs[i].model, specs[i].prompt,
                                        specs[i].sampling.maxNewTokens))
        << "request " << i << " with target " << targetMs;
  }
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  return {buildReport(e, "test", kModels), e.stats().stepLog,
          e.stats().preemptions};
}

// The default cost model (with context cost, which the linear fit must
// learn): capping prefill chunks while others decode cuts the TBT tail, and
// greedy outputs are unchanged.
TEST_F(ServingEngineTest, TbtTargetCutsTheTbtTailAndKeepsOutputs) {
  std::vector<RequestSpec> specs = longPromptsWhileDecoding();
  ChunkedRun off = runChunked(specs, 0, 64);
  ChunkedRun on = runChunked(specs, 8, 16);
  int64_t capped = 0;
  for (const StepRecord &s : on.log)
    capped += s.prefillCap >= 0;
  EXPECT_GT(capped, 0);
  const double p99Off = off.report.overall.tbt.p99,
               p99On = on.report.overall.tbt.p99;
  EXPECT_LT(p99On, 0.6 * p99Off) << p99On << " vs " << p99Off;
  EXPECT_LE(p99On, 8e-3 * 1.25) << "P99 TBT near the 8 ms target";
  EXPECT_EQ(on.report.overall.finished, int64_t(specs.size()));
}

// A target no step can meet: every capped step still carries the minimum
// chunk, so all prompts are prefilled and every request finishes.
TEST_F(ServingEngineTest, TinyTbtTargetStillPrefills) {
  std::vector<RequestSpec> specs = longPromptsWhileDecoding();
  ChunkedRun run = runChunked(specs, 1e-3, 8);
  EXPECT_EQ(run.preemptions, 0);
  int64_t capped = 0;
  for (const StepRecord &s : run.log) {
    if (s.prefillCap < 0)
      continue;
    ++capped;
    EXPECT_EQ(s.prefillCap, 8);
    // Prompt rows beyond the cap are only 1-token prompt ends taken with
    // the decode rows (one per such sequence).
    EXPECT_LE(s.prefillTokens, 8 + (s.seqs - s.decodeSeqs));
  }
  EXPECT_GT(capped, 50);
  EXPECT_EQ(run.report.overall.finished, int64_t(specs.size()));
}

} // namespace

namespace {

// Runtime::step (added for the engine): a mixed step of a prompt chunk and a
// decode token gives the same last-row logits as separate prefill / decode
// calls on another Runtime, and bad steps change nothing.
TEST_F(ServingEngineTest, RuntimeMixedStepMatchesSeparateCalls) {
  auto [rt, ids] = loadAll(64);
  auto [ref, refIds] = loadAll(64);
  const int64_t V = 256;
  std::vector<int32_t> pb = {9, 8, 7};
  SequenceId a = *rt->startSequence(ids[2]), b = *rt->startSequence(ids[2]);
  SequenceId ra = *ref->startSequence(refIds[2]),
             rb = *ref->startSequence(refIds[2]);
  ASSERT_TRUE(rt->step({a}, {{3, 4, 5}}).ok());
  ASSERT_TRUE(ref->prefill(ra, {3, 4, 5}).ok());
  // a: last two prompt ids; b: whole prompt, in one step.
  absl::StatusOr<std::vector<float>> mixed = rt->step({a, b}, {{6, 7}, pb});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  ASSERT_EQ(mixed->size(), size_t(2 * V));
  std::vector<float> wantA = *ref->prefill(ra, {6, 7});
  std::vector<float> wantB = *ref->prefill(rb, pb);
  for (int64_t v = 0; v < V; ++v) {
    EXPECT_EQ((*mixed)[v], wantA[V + v]);
    EXPECT_EQ((*mixed)[V + v], wantB[2 * V + v]);
  }
  EXPECT_EQ(*rt->sequenceLength(a), 5);
  EXPECT_EQ(*rt->sequenceLength(b), 3);
  // qwen3_moe_tiny: 8 tokens per page in each of 2 layers.
  EXPECT_EQ(rt->kvPagesHeld(a), 2);
  EXPECT_EQ(rt->kvPagesFor(ids[2], 9), 4);
  EXPECT_EQ(rt->kvPagesFor(ids[2], 0), 0);
  EXPECT_EQ(rt->kvPagesFor(99, 9), 0);
  EXPECT_EQ(rt->kvPagesHeld(12345), 0);
  // Errors leave the sequences as they were.
  SequenceId other = *rt->startSequence(ids[0]);
  EXPECT_EQ(rt->step({a, b}, {{1}}).status().message(),
            "step expects one chunk per sequence and at least one sequence but "
            "got 2 sequences and 1 chunks");
  EXPECT_EQ(rt->step({a, a}, {{1}, {2}}).status().message(),
            "sequence 0 appears twice in one step");
  EXPECT_EQ(rt->step({a, b}, {{1}, {}}).status().message(),
            "step expects at least one id for sequence 1");
  EXPECT_EQ(rt->step({a, other}, {{1}, {2}}).status().message(),
            "step expects sequences of one model in one step");
  EXPECT_EQ(rt->step({a}, {{300}}).status().message(),
            "prompt id 300 is outside the vocabulary (size 256)");
  EXPECT_EQ(rt->step({777}, {{1}}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*rt->sequenceLength(a), 5);
  EXPECT_EQ(rt->kvPagesHeld(a), 2);
}

} // namespace
