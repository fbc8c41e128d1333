//===- GoldenTest.cpp - Compiled plans vs Hugging Face goldens -------------===//
//
// Every bundled checkpoint was compiled by crosspool-compile (CTest fixture
// `plans`); here the CPU backend runs each plan as two pools and must match
// transformers' fp32 logits at every prompt position (max |diff| / max |HF|
// <= 1e-4) and its 24-token greedy continuation token for token.
//
//===----------------------------------------------------------------------===//

#include "test/e2e/Goldens.h"

#include "runtime/engine/Runtime.h"

#include <gtest/gtest.h>

#include <cstdio>

using namespace crosspool;
using crosspool::runtime::Runtime;

namespace {

std::vector<int32_t> toI32(const std::vector<int64_t> &v) {
  return std::vector<int32_t>(v.begin(), v.end());
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, LogitsAndGreedyTokensMatchTransformers) {
  const std::string model = GetParam();
  std::vector<test::GoldenPrompt> goldens = test::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u) << "goldens of " << model;

  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(test::planPath(model));
  ASSERT_TRUE(id.ok()) << id.status();

  for (size_t j = 0; j < goldens.size(); ++j) {
    const test::GoldenPrompt &g = goldens[j];
    runtime::GenerateOptions opts;
    opts.maxNewTokens = static_cast<int64_t>(g.generatedIds.size());
    opts.wantPromptLogits = true;
    auto result = (*rt)->generate(*id, toI32(g.promptIds), opts);
    ASSERT_TRUE(result.ok()) << result.status();
    double err = test::maxRelativeError(result->promptLogits, g.logits);
    std::printf("%-18s prompt %zu (len %2zu): max rel logit error %.2e, "
                "min HF top-2 margin %.4f\n",
                model.c_str(), j, g.promptIds.size(), err, g.minTop2Margin);
    EXPECT_LE(err, 1e-4) << model << " prompt " << j;
    EXPECT_EQ(result->generatedIds, toI32(g.generatedIds))
        << model << " prompt " << j;
  }
  EXPECT_EQ((*rt)->kvPagesInUse(), 0) << "generate must release its pages";
}

INSTANTIATE_TEST_SUITE_P(
    AllCheckpoints, GoldenTest,
    ::testing::Values("mixtral_tiny", "qwen2_moe_tiny", "qwen3_moe_tiny",
                      "olmoe_tiny", "mixtral_wide", "qwen2_moe_sparse2",
                      "qwen3_moe_wide", "olmoe_clip", "mixtral_bf16",
                      "qwen2_moe_bf16", "qwen3_moe_bf16", "olmoe_bf16"),
    [](const auto &info) { return info.param; });

// Two models in one process draw from one page allocator: with 10 pages,
// qwen3_moe_tiny holding a 29-token prefill (2 layers x ceil(29/8) = 8 pages
// of 8 tokens) leaves too few for olmoe_tiny's 53-token run (2 x ceil(53/16)
// = 8 pages of 16 tokens); once qwen3 releases, olmoe runs in those same
// pages, and both still reproduce their goldens.
TEST(SharedKvPool, PagesFreedByOneModelAreReusedByTheOther) {
  runtime::RuntimeOptions options;
  options.kvPages = 10;
  options.kvPageBytes = 4096;
  auto rt = Runtime::create(options);
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto qwen = (*rt)->loadModel(test::planPath("qwen3_moe_tiny"));
  auto olmoe = (*rt)->loadModel(test::planPath("olmoe_tiny"));
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  ASSERT_TRUE(olmoe.ok()) << olmoe.status();
  auto qwenGold = test::loadGoldens("qwen3_moe_tiny");
  auto olmoeGold = test::loadGoldens("olmoe_tiny");
  ASSERT_EQ(qwenGold.size(), 3u);
  ASSERT_EQ(olmoeGold.size(), 3u);

  auto seq = (*rt)->startSequence(*qwen);
  ASSERT_TRUE(seq.ok()) << seq.status();
  auto logits = (*rt)->prefill(*seq, toI32(qwenGold[2].promptIds));
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ((*rt)->kvPagesInUse(*qwen), 8);
  EXPECT_EQ((*rt)->kvPagesInUse(), 8);

  runtime::GenerateOptions opts;
  opts.maxNewTokens = 24;
  auto blocked = (*rt)->generate(*olmoe, toI32(olmoeGold[2].promptIds), opts);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*rt)->kvPagesInUse(), 8) << "a failed request must give back "
                                         "what it took";

  ASSERT_TRUE((*rt)->release(*seq).ok());
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
  auto olmoeRun = (*rt)->generate(*olmoe, toI32(olmoeGold[2].promptIds), opts);
  ASSERT_TRUE(olmoeRun.ok()) << olmoeRun.status();
  EXPECT_EQ(olmoeRun->generatedIds, toI32(olmoeGold[2].generatedIds));
  EXPECT_EQ((*rt)->kvPagesPeak(), 8);

  auto qwenRun = (*rt)->generate(*qwen, toI32(qwenGold[1].promptIds), opts);
  ASSERT_TRUE(qwenRun.ok()) << qwenRun.status();
  EXPECT_EQ(qwenRun->generatedIds, toI32(qwenGold[1].generatedIds));
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
}

TEST(SharedKvPool, ExhaustedPoolIsAClearError) {
  runtime::RuntimeOptions options;
  options.kvPages = 2;
  auto rt = Runtime::create(options);
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(test::planPath("mixtral_tiny"));
  ASSERT_TRUE(id.ok()) << id.status();
  auto gold = test::loadGoldens("mixtral_tiny");
  ASSERT_EQ(gold.size(), 3u);
  runtime::GenerateOptions opts;
  opts.maxNewTokens = 24;
  auto r = (*rt)->generate(*id, toI32(gold[2].promptIds), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("KV pool exhausted"), std::string::npos)
      << r.status();
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
}

TEST(BadRequests, IdsOutsideTheVocabularyAndEmptyPrompts) {
  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(test::planPath("olmoe_tiny"));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::GenerateOptions opts;
  auto outside = (*rt)->generate(*id, {3, 256, 4}, opts);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("256"), std::string::npos)
      << outside.status();
  auto negative = (*rt)->generate(*id, {-1}, opts);
  EXPECT_FALSE(negative.ok());
  auto empty = (*rt)->generate(*id, {}, opts);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos)
      << empty.status();
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
}

TEST(BadRequests, SequencesBeyondMaxPositionEmbeddingsAreRefused) {
  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(test::planPath("qwen3_moe_tiny"));
  ASSERT_TRUE(id.ok()) << id.status();
  // config.json: max_position_embeddings = 512.
  runtime::GenerateOptions opts;
  opts.maxNewTokens = 1;
  auto tooLong = (*rt)->generate(*id, std::vector<int32_t>(513, 7), opts);
  ASSERT_FALSE(tooLong.ok());
  EXPECT_EQ(tooLong.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(tooLong.status().message().find("max_position_embeddings (512)"),
            std::string::npos)
      << tooLong.status();
  auto exact = (*rt)->generate(*id, std::vector<int32_t>(512, 7), opts);
  EXPECT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
}

} // namespace
