//===- ExecutorTest.cpp - Two-pool stream executor on the CPU -------------===//
#include "runtime/exec/Executor.h"
#include "runtime/exec/TaskDecode.h"

#include "runtime/format/PlanFile.h"
#include "runtime/pools/KvCache.h"
#include "runtime/pools/PageAllocator.h"
#include "test/unit/runtime/TinyModel.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <cmath>

namespace crosspool::runtime {
namespace {

using crosspool::testing::TinyModel;
using ::testing::HasSubstr;

/// One model's plan, pages and executor, stepped like the engine does.
struct Harness {
  TinyModel model;
  std::unique_ptr<PlanFile> plan;
  std::unique_ptr<PageAllocator> pages;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<Executor> exec;

  explicit Harness(uint32_t seed, int32_t numPages = 64) : model(seed) {
    auto p = PlanFile::fromBytes(model.plan().serialize(), "tiny.cpplan");
    EXPECT_TRUE(p.ok()) << p.status();
    plan = std::move(*p);
    // 64 bytes = 2 tokens of one layer (1 KV head x 4 dims, K and V).
    pages = std::move(PageAllocator::create(numPages, 64).value());
    kv = std::move(KvCache::create(*pages, {{1, 4}, {1, 4}}).value());
    auto e = Executor::create(plan->plan(), model.pointers(), "tiny");
    EXPECT_TRUE(e.ok()) << e.status();
    exec = std::move(*e);
  }

  /// Appends `ids` to the sequences `seqs` (row i -> seqs[rowSeq[i]]).
  absl::Status step(const std::vector<int64_t> &seqs,
                    const std::vector<int32_t> &ids,
                    const std::vector<int32_t> &rowSeq,
                    const std::vector<int32_t> &rowPos,
                    std::vector<float> *logits) {
    for (size_t r = 0; r < ids.size(); ++r) {
      absl::Status s = kv->reserve(seqs[rowSeq[r]], rowPos[r] + 1);
      if (!s.ok())
        return s;
    }
    StepDescriptor d;
    d.tokenIds = ids;
    d.rowSeq = rowSeq;
    d.rowPos = rowPos;
    d.setKvPages(*kv, seqs);
    return exec->run(d, logits);
  }
};

void expectNear(const std::vector<float> &got, const double *want, size_t n,
                const std::string &what) {
  ASSERT_GE(got.size(), n) << what;
  for (size_t k = 0; k < n; ++k)
    EXPECT_NEAR(got[k], want[k], 1e-4 * std::max(1.0, std::fabs(want[k])))
        << what << " element " << k;
}

TEST(ExecutorTest, PrefillThenDecodeMatchesNaiveReference) {
  Harness h(1);
  std::vector<int32_t> tokens = {3, 11, 7};
  std::vector<float> logits;
  ASSERT_TRUE(h.step({0}, tokens, {0, 0, 0}, {0, 1, 2}, &logits).ok());
  EXPECT_EQ(h.exec->stepsDone(), 1u);
  std::vector<double> want = h.model.reference(tokens);
  expectNear(logits, want.data(), want.size(), "prefill");
  // The oracle is not degenerate: logits spread over a real range.
  auto [lo, hi] = std::minmax_element(want.begin(), want.end());
  EXPECT_GT(*hi - *lo, 1.0);

  // Decode steps: the channels' counters keep growing (per_step = 2).
  for (int32_t next : {5, 0, 15, 9}) {
    tokens.push_back(next);
    int32_t pos = int32_t(tokens.size()) - 1;
    ASSERT_TRUE(h.step({0}, {next}, {0}, {pos}, &logits).ok());
    want = h.model.reference(tokens);
    expectNear(logits, want.data() + pos * TinyModel::V, TinyModel::V,
               "decode at " + std::to_string(pos));
  }
  EXPECT_EQ(h.exec->stepsDone(), 5u);
}

TEST(ExecutorTest, TwoSequencesInOneStepMatchSeparateRuns) {
  Harness h(2);
  std::vector<int32_t> a = {1, 2, 3, 4, 5}, b = {9, 8};
  std::vector<float> logits;
  // Both prompts in one step: rows of sequence 0 then sequence 1.
  ASSERT_TRUE(h.step({10, 20}, {1, 2, 3, 4, 5, 9, 8}, {0, 0, 0, 0, 0, 1, 1},
                     {0, 1, 2, 3, 4, 0, 1}, &logits)
                  .ok());
  std::vector<double> wa = h.model.reference(a), wb = h.model.reference(b);
  expectNear(logits, wa.data(), wa.size(), "seq a");
  std::vector<float> tail(logits.begin() + 5 * TinyModel::V, logits.end());
  expectNear(tail, wb.data(), wb.size(), "seq b");

  // One decode row each, in swapped order of sequences.
  a.push_back(6);
  b.push_back(7);
  ASSERT_TRUE(h.step({20, 10}, {7, 6}, {0, 1}, {2, 5}, &logits).ok());
  wa = h.model.reference(a);
  wb = h.model.reference(b);
  expectNear(logits, wb.data() + 2 * TinyModel::V, TinyModel::V, "b decode");
  std::vector<float> second(logits.begin() + TinyModel::V, logits.end());
  expectNear(second, wa.data() + 5 * TinyModel::V, TinyModel::V, "a decode");
}

TEST(ExecutorTest, FailingTaskClosesChannelsAndFailsLaterSteps) {
  Harness h(3);
  std::vector<float> logits;
  ASSERT_TRUE(h.step({0}, {4}, {0}, {0}, &logits).ok());
  // Embed rejects id 99 (vocab 16) in the KV stream while the Weights stream
  // waits in a Recv: the close must wake it, not hang.
  absl::Status s = h.step({0}, {99}, {0}, {1}, &logits);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tiny: stream 0 (KV) instr 0 "
                                                  "(Task Embed)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("99"));
  absl::Status again = h.step({0}, {4}, {0}, {1}, &logits);
  EXPECT_EQ(again, s);
  EXPECT_EQ(h.exec->stepsDone(), 1u);
}

TEST(ExecutorTest, MalformedDescriptorIsRejectedWithoutFailingTheExecutor) {
  Harness h(4);
  std::vector<float> logits;
  StepDescriptor d;
  absl::Status s = h.exec->run(d, &logits);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("expects at least one token"));

  d.tokenIds = {1};
  d.rowSeq = {0};
  d.rowPos = {0};
  d.setKvPages(*h.kv, {42}); // no pages reserved
  s = h.exec->run(d, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has no KV page in layer 0"));

  d.rowSeq = {1};
  s = h.exec->run(d, &logits);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("row 0 names sequence 1 but the step has 1"));

  d.rowSeq = {0};
  d.rowPos = {0, 1};
  s = h.exec->run(d, &logits);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("row sequences and positions"));

  d.rowPos = {0};
  d.kvPages.pop_back();
  s = h.exec->run(d, &logits);
  EXPECT_THAT(std::string(s.message()), HasSubstr("KV pages of 2 layers"));

  // Still healthy: a correct step works and counts as step 0.
  ASSERT_TRUE(h.step({0}, {6}, {0}, {0}, &logits).ok());
  std::vector<double> want = h.model.reference({6});
  expectNear(logits, want.data(), want.size(), "after rejected steps");
  EXPECT_EQ(h.exec->stepsDone(), 1u);
}

TEST(ExecutorTest, CreateRejectsMissingWeights) {
  TinyModel model(5);
  auto plan = PlanFile::fromBytes(model.plan().serialize(), "tiny.cpplan");
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<const float *> ptrs = model.pointers();
  ptrs.pop_back();
  auto e = Executor::create((*plan)->plan(), ptrs, "tiny");
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()),
              HasSubstr("expects " + std::to_string(ptrs.size() + 1) +
                        " weight pointers but got " +
                        std::to_string(ptrs.size())));
  ptrs = model.pointers();
  ptrs[model.id("l1.up")] = nullptr;
  e = Executor::create((*plan)->plan(), ptrs, "tiny");
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()),
              HasSubstr("'l1.up' has no data"));
}

TEST(ExecutorTest, CreateRechecksThePlan) {
  TinyModel model(6);
  crosspool::testing::TPlan p = model.plan();
  // A second KV stream would race on the KV slots; create() re-runs the
  // static check, so a plan that skipped PlanFile is still refused.
  crosspool::testing::TStream extra;
  extra.pool = crosspool::plan::Pool::KV;
  p.streams.push_back(extra);
  std::string bytes = p.serialize();
  auto e = Executor::create(*crosspool::plan::GetPlan(bytes.data()),
                            model.pointers(), "tiny");
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()),
              HasSubstr("tiny: stream 2: streams 0 and 2 both run pool KV"));
}

TEST(ExecutorTest, DestructorJoinsIdleWorkers) {
  for (int k = 0; k < 20; ++k) {
    Harness h(7);
    if (k % 2) {
      std::vector<float> logits;
      ASSERT_TRUE(h.step({0}, {1, 2}, {0, 0}, {0, 1}, &logits).ok());
    }
  }
}

// The CUDA executor's add + RMSNorm fusion finds its pairs here: in the
// tiny two-layer plan, each layer's attention Add feeding the post-attention
// norm and its FFN Add feeding the next layer's (or the final) norm.
TEST(TaskDecodeTest, AddRmsNormPairsOfATwoLayerPlan) {
  TinyModel model(7);
  auto p = PlanFile::fromBytes(model.plan().serialize(), "tiny.cpplan");
  ASSERT_TRUE(p.ok()) << p.status();
  auto streams = decodePlanStreams((*p)->plan(), "tiny");
  ASSERT_TRUE(streams.ok()) << streams.status();
  ASSERT_EQ(streams->size(), 2u);
  for (const DecodedStream &st : *streams) {
    const std::vector<size_t> pairs = addRmsNormPairs(st.instrs);
    if (st.pool == plan::Pool::Weights) {
      EXPECT_TRUE(pairs.empty());
      continue;
    }
    ASSERT_EQ(pairs.size(), 4u);
    for (size_t i : pairs) {
      EXPECT_EQ(st.instrs[i].kernel, plan::Kernel::Add) << st.instrs[i].where;
      EXPECT_EQ(st.instrs[i + 1].kernel, plan::Kernel::RmsNorm);
      EXPECT_EQ(st.instrs[i + 1].in0, st.instrs[i].out);
    }
    EXPECT_EQ(st.instrs[pairs.back() + 2].kernel, plan::Kernel::LmHead)
        << "the last pair feeds the final norm";
  }
}

TEST(TaskDecodeTest, AddRmsNormPairsNeedTheSumNormedIntoAnotherSlot) {
  auto task = [](plan::Kernel k, int32_t a, int32_t b, int32_t c,
                 int64_t width = 8) {
    DecodedInstr d;
    d.kernel = k;
    d.in0 = a;
    d.in1 = b;
    d.out = c;
    d.width = width;
    return d;
  };
  const plan::Kernel add = plan::Kernel::Add, norm = plan::Kernel::RmsNorm;
  struct Case {
    const char *what;
    std::vector<DecodedInstr> instrs;
    size_t pairs;
  };
  DecodedInstr send = task(plan::Kernel::None, 1, -1, -1);
  send.op = plan::Opcode::Send;
  const Case cases[] = {
      {"h += a; x = norm(h)", {task(add, 1, 2, 1), task(norm, 1, -1, 3)}, 1},
      {"h = a + h", {task(add, 2, 1, 1), task(norm, 1, -1, 3)}, 1},
      {"sum into a third slot", {task(add, 1, 2, 4), task(norm, 4, -1, 3)}, 1},
      {"sum into the delta", {task(add, 1, 2, 2), task(norm, 2, -1, 3)}, 1},
      {"norm into an input", {task(add, 1, 2, 4), task(norm, 4, -1, 1)}, 0},
      {"norm in place", {task(add, 1, 2, 1), task(norm, 1, -1, 1)}, 0},
      {"norm into the delta", {task(add, 1, 2, 1), task(norm, 1, -1, 2)}, 0},
      {"norm of another slot", {task(add, 1, 2, 1), task(norm, 2, -1, 3)}, 0},
      {"other width", {task(add, 1, 2, 1), task(norm, 1, -1, 3, 16)}, 0},
      {"not adjacent", {task(add, 1, 2, 1), send, task(norm, 1, -1, 3)}, 0},
      {"norm first", {task(norm, 1, -1, 3), task(add, 1, 2, 1)}, 0},
  };
  for (const Case &c : cases)
    EXPECT_EQ(addRmsNormPairs(c.instrs).size(), c.pairs) << c.what;
}

} // namespace
} // namespace crosspool::runtime
