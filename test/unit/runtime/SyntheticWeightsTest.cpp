//===- SyntheticWeightsTest.cpp - Synthetic weights: generator, arena, plan -===//
//
// The one generator (runtime/format/SyntheticInit.h) against published
// splitmix64 outputs and its statistical contract, the CPU arena's
// addSynthetic against the host reference, and the plan checks of synthetic
// weights (verifySyntheticWeights, verifyPlanWeights on a mixed plan, the
// stream check accepting a weight with no file).
//
//===----------------------------------------------------------------------===//

#include "test/unit/runtime/TestPlans.h"

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/StreamCheck.h"
#include "runtime/format/SyntheticInit.h"
#include "runtime/format/VerifyWeights.h"
#include "runtime/pools/WeightArena.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using namespace crosspool;
using crosspool::testing::TPlan;
using crosspool::testing::TWeight;
namespace syn = crosspool::synthetic;
namespace fb = crosspool::plan;
using ::testing::HasSubstr;

// Sebastiano Vigna's splitmix64 reference, state 0: the first three outputs.
TEST(SyntheticInitTest, SplitMixMatchesReferenceOutputs) {
  uint64_t state = 0;
  const uint64_t golden = 0x9e3779b97f4a7c15ull;
  EXPECT_EQ(syn::splitmix64(state), 0xe220a8397b1dcdafull);
  state += golden;
  EXPECT_EQ(syn::splitmix64(state), 0x6e789e6aa1b965f4ull);
  state += golden;
  EXPECT_EQ(syn::splitmix64(state), 0x06c45d188009454full);
}

// FNV-1a 64 of "" and "a" (published test vectors).
TEST(SyntheticInitTest, NameStreamIsFnv1a) {
  EXPECT_EQ(syn::nameStream(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(syn::nameStream("a"), 0xaf63dc4c8601ec8cull);
}

TEST(SyntheticInitTest, Bf16RoundsToNearestEven) {
  auto bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return syn::toBf16Bits(f);
  };
  EXPECT_EQ(bits(0x3f800000u), 0x3f80); // 1.0
  EXPECT_EQ(bits(0x3f808000u), 0x3f80); // tie, even stays
  EXPECT_EQ(bits(0x3f818000u), 0x3f82); // tie, odd rounds up
  EXPECT_EQ(bits(0x3f808001u), 0x3f81); // above the tie
  EXPECT_EQ(bits(0x7fc00001u), 0x7fc0); // NaN
  EXPECT_EQ(syn::fromBf16Bits(0x3f82), 1.015625f);
}

// The value is the centred sum of the four 16-bit lanes of
// splitmix(key ^ splitmix(i)), times std / (2 * sqrt(4 (2^32 - 1) / 12)),
// recomputed here in double.
TEST(SyntheticInitTest, ValueIsScaledCentredLaneSum) {
  const uint64_t key = syn::streamKey(42, 7);
  const float std = 0.02f, scale = syn::scaleFor(std);
  for (uint64_t i : {0ull, 1ull, 2ull, 12345ull, 1ull << 40}) {
    uint64_t r = syn::splitmix64(key ^ syn::splitmix64(i));
    double sum = 0;
    for (int lane = 0; lane < 4; ++lane)
      sum += double((r >> (16 * lane)) & 0xffff);
    double expected = (sum - 2 * 65535.0) * std /
                      std::sqrt(4.0 * (65536.0 * 65536.0 - 1) / 12.0);
    float v = syn::value(key, i, syn::InitKind::kNormal, scale);
    EXPECT_NEAR(v, expected, 1e-6 * std) << "element " << i;
    float one = syn::value(key, i, syn::InitKind::kOnePlusNormal, scale);
    EXPECT_NEAR(one, 1.0 + expected, 1e-7) << "element " << i;
  }
}

TEST(SyntheticInitTest, StatisticsMatchTheRequestedDistribution) {
  const int n = 200000;
  for (auto kind : {syn::InitKind::kNormal, syn::InitKind::kOnePlusNormal}) {
    syn::TensorInit init;
    init.seed = 3;
    init.stream = syn::nameStream("w");
    init.kind = kind;
    init.std = 0.05f;
    init.roundToBf16 = false;
    std::vector<float> v(n);
    syn::fillHost(v.data(), n, init);
    double mean = 0, sq = 0, maxDev = 0;
    const double centre = kind == syn::InitKind::kNormal ? 0.0 : 1.0;
    for (float x : v) {
      mean += x;
      maxDev = std::max(maxDev, std::abs(x - centre));
    }
    mean /= n;
    for (float x : v)
      sq += (x - mean) * (x - mean);
    double sd = std::sqrt(sq / n);
    EXPECT_NEAR(mean, centre, 4 * 0.05 / std::sqrt(double(n)));
    EXPECT_NEAR(sd, 0.05, 0.05 * 0.01);
    // Irwin-Hall with 4 terms is bounded at sqrt(12) std.
    EXPECT_LE(maxDev, std::sqrt(12.0) * 0.05 + 1e-6);
    EXPECT_GT(maxDev, 2.5 * 0.05); // tails exist
  }
}

TEST(SyntheticInitTest, DeterministicAndIndependentAcrossSeedsAndStreams) {
  auto fill = [](uint64_t seed, uint64_t stream) {
    syn::TensorInit init;
    init.seed = seed;
    init.stream = stream;
    std::vector<float> v(256);
    syn::fillHost(v.data(), v.size(), init);
    return v;
  };
  EXPECT_EQ(fill(1, 5), fill(1, 5));
  std::vector<float> a = fill(1, 5), b = fill(2, 5), c = fill(1, 6);
  int sameB = 0, sameC = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sameB += a[i] == b[i];
    sameC += a[i] == c[i];
  }
  // bf16 values of std 0.02 collide rarely by chance.
  EXPECT_LT(sameB, 16);
  EXPECT_LT(sameC, 16);
  // Stored bf16: every value is exactly representable in bf16.
  for (float x : a)
    EXPECT_EQ(syn::fromBf16Bits(syn::toBf16Bits(x)), x);
}

TEST(WeightArenaSyntheticTest, FillsFromTheGeneratorAndAccounts) {
  runtime::WeightArena arena(1000 * sizeof(float), "test arena");
  syn::TensorInit init;
  init.seed = 9;
  init.stream = syn::nameStream("model.norm.weight");
  init.kind = syn::InitKind::kOnePlusNormal;
  init.std = 0.1f;
  auto p = arena.addSynthetic(4, init, 600);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<float> expected(600);
  syn::fillHost(expected.data(), expected.size(), init);
  EXPECT_EQ(std::vector<float>(*p, *p + 600), expected);
  EXPECT_EQ(arena.bytesUsed(4), 600 * sizeof(float));

  auto over = arena.addSynthetic(4, init, 401);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(arena.bytesUsed(4), 600 * sizeof(float));

  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()}) {
    init.std = bad;
    auto r = arena.addSynthetic(4, init, 4);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("std must be finite and positive"));
  }
  arena.unload(4);
  EXPECT_EQ(arena.totalBytes(), 0u);
}

/// The two-pool test plan with every weight synthetic (bf16, no file).
TPlan syntheticPlan() {
  TPlan p = crosspool::testing::makeTwoPoolPlan();
  p.checkpointDir = "";
  for (TWeight &w : p.weights) {
    w.synthetic = true;
    w.file = "";
    w.offset = 0;
    w.dtype = fb::DType::BF16;
    w.nbytes /= 2;
    w.seed = 11;
    w.initStd = 0.02f;
    w.init = w.name.find("norm") != std::string::npos
                 ? fb::SyntheticInit::OnePlusNormal
                 : fb::SyntheticInit::Normal;
  }
  return p;
}

absl::Status verifySynthetic(const TPlan &p) {
  std::string buffer = p.serialize();
  return runtime::verifySyntheticWeights(*fb::GetPlan(buffer.data()));
}

TEST(SyntheticPlanTest, AcceptsSyntheticWeights) {
  TPlan p = syntheticPlan();
  std::string buffer = p.serialize();
  const fb::Plan &plan = *fb::GetPlan(buffer.data());
  EXPECT_TRUE(runtime::verifySyntheticWeights(plan).ok());
  EXPECT_FALSE(runtime::planHasFileWeights(plan));
  // The stream check no longer asks a synthetic weight for a file.
  absl::Status streams = runtime::checkPlanStreams(plan);
  EXPECT_TRUE(streams.ok()) << streams;

  const fb::Weight &norm = *plan.weights()->Get(1);
  syn::TensorInit init = runtime::syntheticInit(norm);
  EXPECT_EQ(init.seed, 11u);
  EXPECT_EQ(init.stream,
            syn::nameStream("model.layers.0.input_layernorm.weight"));
  EXPECT_EQ(init.kind, syn::InitKind::kOnePlusNormal);
  EXPECT_EQ(init.std, 0.02f);
  EXPECT_TRUE(init.roundToBf16);
  EXPECT_EQ(runtime::weightNumElements(*plan.weights()->Get(0)), 16u * 8u);
}

TEST(SyntheticPlanTest, RejectsAFileName) {
  TPlan p = syntheticPlan();
  p.weights[3].file = "model.safetensors";
  absl::Status s = verifySynthetic(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("plan weight 3 'model.layers.0.self_attn.k_proj.weight'"
                        " (synthetic): has file 'model.safetensors'"));
}

TEST(SyntheticPlanTest, RejectsAnOffset) {
  TPlan p = syntheticPlan();
  p.weights[2].offset = 64;
  EXPECT_THAT(std::string(verifySynthetic(p).message()),
              HasSubstr("has offset 64, expected 0"));
}

TEST(SyntheticPlanTest, RejectsNonPositiveOrNonFiniteStd) {
  for (float bad : {0.0f, -0.5f, std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    TPlan p = syntheticPlan();
    p.weights[0].initStd = bad;
    absl::Status s = verifySynthetic(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("init_std must be finite and positive"));
  }
}

TEST(SyntheticPlanTest, RejectsUnknownInitF16AndWrongNbytes) {
  TPlan p = syntheticPlan();
  p.weights[0].init = static_cast<fb::SyntheticInit>(7);
  EXPECT_THAT(std::string(verifySynthetic(p).message()),
              HasSubstr("unknown init kind 7"));
  p = syntheticPlan();
  p.weights[0].dtype = fb::DType::F16;
  EXPECT_THAT(std::string(verifySynthetic(p).message()),
              HasSubstr("synthetic weights are F32 or BF16"));
  p = syntheticPlan();
  p.weights[0].nbytes += 2;
  EXPECT_THAT(std::string(verifySynthetic(p).message()),
              HasSubstr("nbytes 258 but shape [16, 8] of BF16 needs 256"));
}

// A plan mixing one real checkpoint tensor with synthetic ones: the file
// weight is checked against the checkpoint, the synthetic ones on their own.
TEST(SyntheticPlanTest, MixedPlanVerifiesAgainstCheckpoint) {
  auto ckpt = runtime::Checkpoint::open(std::string(CROSSPOOL_SOURCE_DIR) +
                                        "/test/data/models/qwen3_moe_tiny");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto located = (*ckpt)->find("model.norm.weight");
  ASSERT_TRUE(located.ok());
  TPlan p = syntheticPlan();
  TWeight real;
  real.name = "model.norm.weight";
  real.file = located->fileName;
  real.offset = located->info->offset;
  real.nbytes = located->info->nbytes;
  real.shape = located->info->shape;
  real.dtype = fb::DType::F32;
  p.weights.push_back(real);
  std::string buffer = p.serialize();
  const fb::Plan &plan = *fb::GetPlan(buffer.data());
  EXPECT_TRUE(runtime::planHasFileWeights(plan));
  absl::Status ok = runtime::verifyPlanWeights(plan, **ckpt);
  EXPECT_TRUE(ok.ok()) << ok;

  p.weights[0].initStd = -1;
  buffer = p.serialize();
  absl::Status bad =
      runtime::verifyPlanWeights(*fb::GetPlan(buffer.data()), **ckpt);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
}

} // namespace
