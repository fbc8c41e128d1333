//===- SyntheticPlanTest.cpp - Plans compiled from config.json alone -------===//
//
// `crosspool-compile --synthetic` plans of qwen3_moe_tiny's config (CTest
// fixture `plans`: seeds 1 and 2) load without a checkpoint on the CPU
// backend; generation is deterministic for one seed, and another seed gives
// another model. The weights the runtime made are checked element by element
// against the generator (runtime/format/SyntheticInit.h) through the logits
// of a one-token prompt, recomputed here naively.
//
//===----------------------------------------------------------------------===//

#include "runtime/engine/Runtime.h"
#include "runtime/format/SyntheticInit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace crosspool;
using crosspool::runtime::Runtime;

namespace {

std::string syntheticPlan(int seed) {
  return std::string(CROSSPOOL_BINARY_DIR) + "/plans/qwen3_moe_tiny_synthetic_" +
         std::to_string(seed) + ".cpplan";
}

const std::vector<int32_t> kPrompt = {5, 17, 42, 99, 3};

runtime::GenerateResult run(Runtime &rt, runtime::ModelId id) {
  runtime::GenerateOptions opts;
  opts.maxNewTokens = 12;
  opts.wantPromptLogits = true;
  auto r = rt.generate(id, kPrompt, opts);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : runtime::GenerateResult();
}

TEST(SyntheticPlanTest, LoadsWithoutCheckpointAndIsDeterministicPerSeed) {
  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto one = (*rt)->loadModel(syntheticPlan(1));
  ASSERT_TRUE(one.ok()) << one.status();
  // Two models of seed 1 (loaded separately) and one of seed 2.
  auto oneAgain = (*rt)->loadModel(syntheticPlan(1));
  ASSERT_TRUE(oneAgain.ok()) << oneAgain.status();
  auto two = (*rt)->loadModel(syntheticPlan(2));
  ASSERT_TRUE(two.ok()) << two.status();

  runtime::GenerateResult a = run(**rt, *one);
  runtime::GenerateResult b = run(**rt, *one);
  runtime::GenerateResult c = run(**rt, *oneAgain);
  runtime::GenerateResult d = run(**rt, *two);
  ASSERT_EQ(a.generatedIds.size(), 12u);
  ASSERT_EQ(a.promptLogits.size(), kPrompt.size() * 256);
  EXPECT_EQ(a.generatedIds, b.generatedIds);
  EXPECT_EQ(a.promptLogits, b.promptLogits);
  EXPECT_EQ(a.generatedIds, c.generatedIds);
  EXPECT_EQ(a.promptLogits, c.promptLogits);
  for (float x : a.promptLogits)
    ASSERT_TRUE(std::isfinite(x));

  ASSERT_EQ(d.promptLogits.size(), a.promptLogits.size());
  double maxDiff = 0;
  for (size_t i = 0; i < a.promptLogits.size(); ++i)
    maxDiff = std::max<double>(maxDiff,
                               std::abs(a.promptLogits[i] - d.promptLogits[i]));
  EXPECT_GT(maxDiff, 1e-2) << "seed 2 must give another model";
}

// Wrong seeds or a broken generator would still be deterministic; this pins
// the values. With a one-token prompt at position 0, attention returns v
// itself (softmax over one key), so the logits are a short chain of
// matrix-vector products that the test recomputes from the generator alone:
// embed -> norm -> (v -> o) -> +res -> norm -> MoE -> +res (x2) -> norm ->
// tied lm_head. qwen3_moe_tiny: H=64, heads 4 x 32, kv 2 x 32, 8 experts
// top-2 (renormalized), moe_intermediate 32, eps 1e-5, std 0.2 (the
// config's initializer_range), bf16-rounded values.
struct Synth {
  uint64_t seed;
  std::vector<float> get(const std::string &name, size_t n, bool norm) const {
    synthetic::TensorInit init;
    init.seed = seed;
    init.stream = synthetic::nameStream(name);
    init.kind = norm ? synthetic::InitKind::kOnePlusNormal
                     : synthetic::InitKind::kNormal;
    init.std = 0.2f;
    init.roundToBf16 = true;
    std::vector<float> v(n);
    synthetic::fillHost(v.data(), n, init);
    return v;
  }
};

std::vector<double> matvec(const std::vector<float> &w, int64_t rows,
                           int64_t cols, const std::vector<double> &x) {
  std::vector<double> y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r] += double(w[r * cols + c]) * x[c];
  return y;
}

std::vector<double> rmsNorm(const std::vector<double> &x,
                            const std::vector<float> &w) {
  double ss = 0;
  for (double v : x)
    ss += v * v;
  double inv = 1.0 / std::sqrt(ss / x.size() + 1e-5);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = x[i] * inv * w[i];
  return y;
}

TEST(SyntheticPlanTest, WeightsAreTheGeneratorsValues) {
  const int64_t H = 64, V = 256, nh = 4, nkv = 2, hd = 32, E = 8, I = 32;
  const int32_t token = 17;
  Synth s{1};
  std::vector<float> embed = s.get("model.embed_tokens.weight", V * H, false);
  std::vector<double> h(H);
  for (int64_t i = 0; i < H; ++i)
    h[i] = embed[token * H + i];
  for (int l = 0; l < 2; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    auto x = rmsNorm(h, s.get(p + "input_layernorm.weight", H, true));
    // One position: every head's output is its kv head's v (RoPE and the
    // q/k norms only change q.k, which a single key ignores).
    auto v = matvec(s.get(p + "self_attn.v_proj.weight", nkv * hd * H, false),
                    nkv * hd, H, x);
    std::vector<double> heads(nh * hd);
    for (int64_t q = 0; q < nh; ++q)
      for (int64_t d = 0; d < hd; ++d)
        heads[q * hd + d] = v[(q / (nh / nkv)) * hd + d];
    auto o = matvec(s.get(p + "self_attn.o_proj.weight", H * nh * hd, false), H,
                    nh * hd, heads);
    for (int64_t i = 0; i < H; ++i)
      h[i] += o[i];
    x = rmsNorm(h, s.get(p + "post_attention_layernorm.weight", H, true));
    auto logits = matvec(s.get(p + "mlp.gate.weight", E * H, false), E, H, x);
    double mx = *std::max_element(logits.begin(), logits.end());
    std::vector<double> prob(E);
    for (int64_t e = 0; e < E; ++e)
      prob[e] = std::exp(logits[e] - mx);
    int top[2] = {-1, -1};
    for (int k = 0; k < 2; ++k)
      for (int e = 0; e < E; ++e)
        if (e != top[0] && (top[k] < 0 || prob[e] > prob[top[k]]))
          top[k] = e;
    double norm = prob[top[0]] + prob[top[1]];
    for (int k = 0; k < 2; ++k) {
      std::string ep = p + "mlp.experts." + std::to_string(top[k]) + ".";
      auto g = matvec(s.get(ep + "gate_proj.weight", I * H, false), I, H, x);
      auto u = matvec(s.get(ep + "up_proj.weight", I * H, false), I, H, x);
      std::vector<double> a(I);
      for (int64_t i = 0; i < I; ++i)
        a[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      auto dn = matvec(s.get(ep + "down_proj.weight", H * I, false), H, I, a);
      for (int64_t i = 0; i < H; ++i)
        h[i] += prob[top[k]] / norm * dn[i];
    }
  }
  auto f = rmsNorm(h, s.get("model.norm.weight", H, true));
  auto expected = matvec(embed, V, H, f);

  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(syntheticPlan(1));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::GenerateOptions opts;
  opts.maxNewTokens = 1;
  opts.wantPromptLogits = true;
  auto r = (*rt)->generate(*id, {token}, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->promptLogits.size(), size_t(V));
  double maxAbs = 0, maxErr = 0;
  for (int64_t i = 0; i < V; ++i) {
    maxAbs = std::max(maxAbs, std::abs(expected[i]));
    maxErr = std::max(maxErr, std::abs(expected[i] - r->promptLogits[i]));
  }
  EXPECT_LE(maxErr, 1e-4 * maxAbs) << "max |logit| " << maxAbs;
}

} // namespace
