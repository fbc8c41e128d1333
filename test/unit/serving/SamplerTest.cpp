//===- SamplerTest.cpp - Greedy / temperature / top-k / top-p sampling ----===//
//
// Oracles: hand-computed distributions (softmax of log-probabilities) checked
// against the empirical frequency of many independent draws.

#include "runtime/serving/Sampler.h"

#include "gtest/gtest.h"

#include <cmath>
#include <map>
#include <vector>

using namespace crosspool::runtime;

namespace {

/// Frequencies of `n` draws (token indices 0..n-1) from `logits`.
std::vector<double> frequencies(const std::vector<float> &logits,
                                const SamplingParams &p, int n) {
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i)
    f[sampleToken(logits.data(), logits.size(), p, i)] += 1.0 / n;
  return f;
}

std::vector<float> logOf(const std::vector<double> &probs) {
  std::vector<float> l;
  for (double p : probs)
    l.push_back(float(std::log(p)));
  return l;
}

TEST(SamplerTest, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  SamplingParams p;
  EXPECT_EQ(sampleToken(logits.data(), 4, p, 0), 1);
  p.temperature = -1.0f; // <= 0 is greedy too
  EXPECT_EQ(sampleToken(logits.data(), 4, p, 7), 1);
}

TEST(SamplerTest, TopKOneIsGreedyForAnySeed) {
  std::vector<float> logits = {0.3f, -0.2f, 0.9f, 0.8f, 0.1f};
  SamplingParams p;
  p.temperature = 1.5f;
  p.topK = 1;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    p.seed = seed;
    EXPECT_EQ(sampleToken(logits.data(), 5, p, seed), 2);
  }
}

TEST(SamplerTest, TemperatureOneFollowsTheSoftmax) {
  std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 11;
  std::vector<double> f = frequencies(logOf(probs), p, 40000);
  for (size_t i = 0; i < probs.size(); ++i)
    EXPECT_NEAR(f[i], probs[i], 0.01) << "id " << i;
}

TEST(SamplerTest, TemperatureTwoFlattens) {
  // softmax(log p / 2) = sqrt(p) / sum sqrt(p).
  std::vector<double> probs = {0.64, 0.16, 0.16, 0.04};
  std::vector<double> want = {0.8 / 1.8, 0.4 / 1.8, 0.4 / 1.8, 0.2 / 1.8};
  SamplingParams p;
  p.temperature = 2.0f;
  p.seed = 3;
  std::vector<double> f = frequencies(logOf(probs), p, 40000);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(f[i], want[i], 0.01) << "id " << i;
}

TEST(SamplerTest, TopKRenormalizesTheKept) {
  std::vector<double> probs = {0.05, 0.5, 0.15, 0.3};
  SamplingParams p;
  p.temperature = 1.0f;
  p.topK = 2; // ids 1 and 3
  std::vector<double> f = frequencies(logOf(probs), p, 40000);
  EXPECT_NEAR(f[1], 0.5 / 0.8, 0.01);
  EXPECT_NEAR(f[3], 0.3 / 0.8, 0.01);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
}

TEST(SamplerTest, TopPKeepsTheShortestPrefixReachingP) {
  std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  SamplingParams p;
  p.temperature = 1.0f;
  p.topP = 0.75f; // 0.5 < 0.75 <= 0.8: ids 0 and 1
  std::vector<double> f = frequencies(logOf(probs), p, 40000);
  EXPECT_NEAR(f[0], 0.625, 0.01);
  EXPECT_NEAR(f[1], 0.375, 0.01);
  EXPECT_EQ(f[2] + f[3], 0.0);
  p.topP = 1e-6f; // only the most likely id
  EXPECT_NEAR(frequencies(logOf(probs), p, 200)[0], 1.0, 1e-9);
}

TEST(SamplerTest, DrawsDependOnlyOnSeedAndIndex) {
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i)
    logits[i] = float(std::sin(i * 0.7));
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 99;
  std::vector<int32_t> a, b;
  for (int i = 0; i < 100; ++i)
    a.push_back(sampleToken(logits.data(), 64, p, i));
  for (int i = 99; i >= 0; --i) // another call order
    b.insert(b.begin(), sampleToken(logits.data(), 64, p, i));
  EXPECT_EQ(a, b);
  p.seed = 100;
  int differ = 0;
  for (int i = 0; i < 100; ++i)
    differ += sampleToken(logits.data(), 64, p, i) != a[i];
  EXPECT_GT(differ, 50);
  for (int i = 0; i < 1000; ++i) {
    double u = samplingUniform(5, i);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(SamplerTest, ValidateNamesTheField) {
  SamplingParams p;
  EXPECT_TRUE(validateSampling(p, 10).ok());
  auto message = [&](SamplingParams q) {
    return std::string(validateSampling(q, 10).message());
  };
  SamplingParams q = p;
  q.topK = -1;
  EXPECT_EQ(message(q), "top_k must be in [0, 10] but got -1");
  q = p;
  q.topK = 11;
  EXPECT_EQ(message(q), "top_k must be in [0, 10] but got 11");
  q = p;
  q.topP = 0.0f;
  EXPECT_EQ(message(q), "top_p must be in (0, 1] but got 0");
  q = p;
  q.topP = 1.5f;
  EXPECT_EQ(message(q), "top_p must be in (0, 1] but got 1.5");
  q = p;
  q.maxNewTokens = 0;
  EXPECT_EQ(message(q), "max_new_tokens must be >= 1 but got 0");
  q = p;
  q.stopIds = {3, 10};
  EXPECT_EQ(message(q), "stop id 10 is outside the vocabulary (size 10)");
  q = p;
  q.temperature = NAN;
  EXPECT_EQ(message(q), "temperature must be finite but got nan");
}

} // namespace
