//===- MoeTest.cpp - router top-k and the MoE block -----------------------===//

#include "kernels/cpu/Moe.h"

#include "test/unit/kernels/KernelTestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace crosspool::kernels::cpu {
namespace {

using testing::randomVec;
using testing::refLinear;
using testing::relMaxErr;
using testing::toDouble;

/// Identity router: the router logits are x itself.
std::vector<float> identity(int64_t n) {
  std::vector<float> r(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    r[static_cast<size_t>(i * n + i)] = 1.0f;
  return r;
}

TEST(RouteTest, HandComputedTopKWithAndWithoutRenorm) {
  std::vector<float> x = {1, 2, 3, 0}, router = identity(4);
  int32_t idx[2];
  float wt[2];
  route(x.data(), router.data(), 1, 4, 4, 2, /*normTopkProb=*/true, idx, wt);
  EXPECT_EQ(idx[0], 2);
  EXPECT_EQ(idx[1], 1);
  // e^3 / (e^3 + e^2) = 1 / (1 + e^-1).
  EXPECT_NEAR(wt[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(wt[1], 1.0 / (1.0 + std::exp(1.0)), 1e-6);

  route(x.data(), router.data(), 1, 4, 4, 2, /*normTopkProb=*/false, idx, wt);
  double z = 1 + std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_EQ(idx[0], 2);
  EXPECT_EQ(idx[1], 1);
  EXPECT_NEAR(wt[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(wt[1], std::exp(2.0) / z, 1e-6);
}

TEST(RouteTest, TiesGoToLowerIndex) {
  std::vector<float> router = identity(4);
  int32_t idx[3];
  float wt[3];
  std::vector<float> flat = {1, 1, 1, 1};
  route(flat.data(), router.data(), 1, 4, 4, 3, false, idx, wt);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 1);
  EXPECT_EQ(idx[2], 2);
  EXPECT_NEAR(wt[0], 0.25, 1e-7);
  std::vector<float> someTies = {0, 5, 2, 5};
  route(someTies.data(), router.data(), 1, 4, 4, 3, false, idx, wt);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  EXPECT_EQ(idx[2], 2);
}

struct MoeCase {
  bool shared;
  bool sharedGate;
  bool norm;
  int32_t topK;
};

/// The MoE weights of one test model; every tensor random.
struct MoeModel {
  int64_t H = 16, I = 12, sharedI = 20;
  int32_t E = 8;
  std::vector<float> router, sharedGate;
  std::vector<std::vector<float>> gates, ups, downs;
  std::vector<float> sGate, sUp, sDown;
  std::vector<ExpertWeights> experts;

  MoeModel() {
    router = randomVec(static_cast<size_t>(E * H), 100, 1.0f);
    for (int32_t e = 0; e < E; ++e) {
      gates.push_back(randomVec(static_cast<size_t>(I * H), 200 + e, 0.5f));
      ups.push_back(randomVec(static_cast<size_t>(I * H), 300 + e, 0.5f));
      downs.push_back(randomVec(static_cast<size_t>(H * I), 400 + e, 0.5f));
    }
    for (int32_t e = 0; e < E; ++e)
      experts.push_back({gates[e].data(), ups[e].data(), downs[e].data()});
    sGate = randomVec(static_cast<size_t>(sharedI * H), 500, 0.5f);
    sUp = randomVec(static_cast<size_t>(sharedI * H), 501, 0.5f);
    sDown = randomVec(static_cast<size_t>(H * sharedI), 502, 0.5f);
    sharedGate = randomVec(static_cast<size_t>(H), 503, 0.5f);
  }

  MoeWeights weights(const MoeCase &c) const {
    MoeWeights w;
    w.router = router.data();
    w.experts = experts.data();
    if (c.shared)
      w.shared = {sGate.data(), sUp.data(), sDown.data()};
    if (c.sharedGate)
      w.sharedGate = sharedGate.data();
    return w;
  }

  MoeParams params(const MoeCase &c) const {
    MoeParams p;
    p.hidden = H;
    p.numExperts = E;
    p.topK = c.topK;
    p.normTopkProb = c.norm;
    p.intermediate = I;
    p.sharedIntermediate = sharedI;
    return p;
  }
};

/// SwiGLU in double for one token.
std::vector<double> refExpert(const std::vector<double> &x, const float *gate,
                              const float *up, const float *down, int64_t H,
                              int64_t I) {
  std::vector<double> g = refLinear(x, gate, nullptr, H, I);
  std::vector<double> u = refLinear(x, up, nullptr, H, I);
  for (int64_t j = 0; j < I; ++j)
    g[static_cast<size_t>(j)] = g[static_cast<size_t>(j)] /
                                (1 + std::exp(-g[static_cast<size_t>(j)])) *
                                u[static_cast<size_t>(j)];
  return refLinear(g, down, nullptr, I, H);
}

/// Per-token naive MoE in double: full sort of the probabilities (stable, so
/// ties keep the lower index), then each chosen expert in turn.
std::vector<double> refMoe(const MoeModel &m, const MoeCase &c,
                           const float *xRow) {
  std::vector<double> x = toDouble(xRow, m.H);
  std::vector<double> logits = refLinear(x, m.router.data(), nullptr, m.H, m.E);
  double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
  std::vector<double> prob(static_cast<size_t>(m.E));
  for (int32_t e = 0; e < m.E; ++e)
    z += prob[static_cast<size_t>(e)] =
        std::exp(logits[static_cast<size_t>(e)] - mx);
  for (double &pr : prob)
    pr /= z;
  std::vector<int32_t> order(static_cast<size_t>(m.E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return prob[a] > prob[b]; });
  double chosenSum = 0;
  for (int32_t k = 0; k < c.topK; ++k)
    chosenSum += prob[static_cast<size_t>(order[static_cast<size_t>(k)])];
  std::vector<double> y(static_cast<size_t>(m.H), 0.0);
  for (int32_t k = 0; k < c.topK; ++k) {
    int32_t e = order[static_cast<size_t>(k)];
    double weight = prob[static_cast<size_t>(e)] / (c.norm ? chosenSum : 1.0);
    std::vector<double> out = refExpert(x, m.gates[e].data(), m.ups[e].data(),
                                        m.downs[e].data(), m.H, m.I);
    for (int64_t i = 0; i < m.H; ++i)
      y[static_cast<size_t>(i)] += weight * out[static_cast<size_t>(i)];
  }
  if (c.shared) {
    std::vector<double> out = refExpert(x, m.sGate.data(), m.sUp.data(),
                                        m.sDown.data(), m.H, m.sharedI);
    double f = 1.0;
    if (c.sharedGate) {
      double s = 0;
      for (int64_t i = 0; i < m.H; ++i)
        s += x[static_cast<size_t>(i)] * m.sharedGate[static_cast<size_t>(i)];
      f = 1.0 / (1.0 + std::exp(-s));
    }
    for (int64_t i = 0; i < m.H; ++i)
      y[static_cast<size_t>(i)] += f * out[static_cast<size_t>(i)];
  }
  return y;
}

class MoeRandomTest : public ::testing::TestWithParam<MoeCase> {};

TEST_P(MoeRandomTest, MatchesPerTokenNaiveLoop) {
  const MoeCase c = GetParam();
  MoeModel m;
  const int64_t T = 9;
  std::vector<float> x = randomVec(static_cast<size_t>(T * m.H), 42, 2.0f);
  std::vector<double> want;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> row = refMoe(m, c, x.data() + t * m.H);
    want.insert(want.end(), row.begin(), row.end());
  }
  std::vector<float> y(static_cast<size_t>(T * m.H));
  ASSERT_TRUE(moe(x.data(), T, m.weights(c), m.params(c), y.data()).ok());
  EXPECT_LT(relMaxErr(y, want), 1e-5);
  // In place (y aliases x), as the executor may run it.
  ASSERT_TRUE(moe(x.data(), T, m.weights(c), m.params(c), x.data()).ok());
  EXPECT_LT(relMaxErr(x, want), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, MoeRandomTest,
    ::testing::Values(MoeCase{false, false, true, 2},   // Mixtral
                      MoeCase{false, false, false, 2},  // OLMoE-like
                      MoeCase{true, true, false, 4},    // Qwen2-MoE
                      MoeCase{true, false, true, 1},    // ungated shared
                      MoeCase{false, false, true, 8})); // every expert

TEST(MoeTest, SingleSelectedExpertEqualsThatExpert) {
  // top-1 with renorm gives weight exactly 1, so y = expert(x).
  MoeModel m;
  MoeCase c{false, false, true, 1};
  std::vector<float> x = randomVec(static_cast<size_t>(m.H), 77, 2.0f);
  std::vector<double> logits =
      refLinear(toDouble(x.data(), m.H), m.router.data(), nullptr, m.H, m.E);
  int32_t best =
      int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<double> want =
      refExpert(toDouble(x.data(), m.H), m.gates[best].data(),
                m.ups[best].data(), m.downs[best].data(), m.H, m.I);
  std::vector<float> y(static_cast<size_t>(m.H));
  ASSERT_TRUE(moe(x.data(), 1, m.weights(c), m.params(c), y.data()).ok());
  EXPECT_LT(relMaxErr(y, want), 1e-6);
}

TEST(MoeTest, BadArgumentsAreErrorsAndWriteNothing) {
  MoeModel m;
  std::vector<float> x = randomVec(static_cast<size_t>(2 * m.H), 5);
  auto expectInvalid = [&](const MoeWeights &w, const MoeParams &p,
                           const std::string &needle) {
    std::vector<float> y(static_cast<size_t>(2 * m.H), 9.0f);
    absl::Status st = moe(x.data(), 2, w, p, y.data());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(st.message().find(needle), std::string::npos) << st;
    EXPECT_EQ(y, std::vector<float>(static_cast<size_t>(2 * m.H), 9.0f))
        << needle;
  };
  MoeCase c{true, true, true, 2};
  MoeParams p = m.params(c);
  MoeWeights w = m.weights(c);

  MoeParams bad = p;
  bad.topK = 0;
  expectInvalid(w, bad, "top_k");
  bad.topK = m.E + 1;
  expectInvalid(w, bad, "top_k");
  bad = p;
  bad.numExperts = 0;
  expectInvalid(w, bad, "num_experts");
  bad = p;
  bad.intermediate = 0;
  expectInvalid(w, bad, "intermediate");
  bad = p;
  bad.sharedIntermediate = 0;
  expectInvalid(w, bad, "shared expert intermediate");

  MoeWeights bw = w;
  bw.router = nullptr;
  expectInvalid(bw, p, "router");
  bw = w;
  bw.shared.up = nullptr;
  expectInvalid(bw, p, "shared expert has 2 of its 3 weights");
  bw = w;
  bw.shared = {};
  expectInvalid(bw, p, "shared expert gate without a shared expert");

  // Every expert null: whichever the router picks is missing.
  std::vector<ExpertWeights> none(static_cast<size_t>(m.E));
  bw = w;
  bw.experts = none.data();
  expectInvalid(bw, p, "selected expert");
}

TEST(MoeTest, UnselectedNullExpertIsFine) {
  // Only experts that some row selects need weights.
  MoeModel m;
  MoeCase c{false, false, true, 1};
  std::vector<float> x = randomVec(static_cast<size_t>(m.H), 78, 2.0f);
  int32_t idx;
  float wt;
  route(x.data(), m.router.data(), 1, m.H, m.E, 1, true, &idx, &wt);
  std::vector<ExpertWeights> only(static_cast<size_t>(m.E));
  only[static_cast<size_t>(idx)] = m.experts[static_cast<size_t>(idx)];
  MoeWeights w = m.weights(c);
  std::vector<float> y1(static_cast<size_t>(m.H)), y2(static_cast<size_t>(m.H));
  ASSERT_TRUE(moe(x.data(), 1, w, m.params(c), y1.data()).ok());
  w.experts = only.data();
  ASSERT_TRUE(moe(x.data(), 1, w, m.params(c), y2.data()).ok());
  EXPECT_EQ(y1, y2);
}

} // namespace
} // namespace crosspool::kernels::cpu
