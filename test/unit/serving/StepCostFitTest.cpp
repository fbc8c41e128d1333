//===- StepCostFitTest.cpp - Online step-time fit and prefill caps --------===//
//
// The oracle: hand-computed caps, and samples drawn from known planes (the
// fit must recover the plane's coefficients, or keep the prior when the
// samples lie on it).

#include "runtime/serving/StepCostFit.h"

#include "gtest/gtest.h"

using namespace crosspool::runtime;

namespace {

StepCoefficients coeffs(double base, double prefill, double decode) {
  StepCoefficients c;
  c.baseUs = base;
  c.perPrefillTokenUs = prefill;
  c.perDecodeRowUs = decode;
  return c;
}

TEST(StepCostFitTest, PrefillCapByHand) {
  // The default cost model as a prior: 500 us + 40 us per row.
  StepCoefficients c = coeffs(500, 40, 40);
  EXPECT_DOUBLE_EQ(c.predictUs(100, 3), 500 + 4000 + 120);
  // 10 ms over 2 models = 5000 us; 3 decode rows: (5000-500-120)/40 = 109.5.
  EXPECT_EQ(prefillTokenCap(c, 5000, 3, 0, 64, 253), 109);
  // 7 prompt rows already in the step: (5000-500-120-280)/40 = 102.5.
  EXPECT_EQ(prefillTokenCap(c, 5000, 3, 7, 64, 246), 102);
  // (2000-500-120)/40 = 34.5 < 64: the floor.
  EXPECT_EQ(prefillTokenCap(c, 2000, 3, 0, 64, 253), 64);
  // Over budget already (negative room): the floor.
  EXPECT_EQ(prefillTokenCap(c, 100, 3, 0, 64, 253), 64);
  // The floor never exceeds the rows left; the cap never exceeds them.
  EXPECT_EQ(prefillTokenCap(c, 100, 3, 0, 64, 20), 20);
  EXPECT_EQ(prefillTokenCap(c, 1e9, 3, 0, 64, 253), 253);
  EXPECT_EQ(prefillTokenCap(c, 5000, 3, 0, 64, 0), 0);
  // Prefill predicted free: no cap.
  EXPECT_EQ(prefillTokenCap(coeffs(500, 0, 40), 600, 3, 0, 1, 200), 200);
  // Different per-row costs: (3000 - 1000 - 8*25)/7 = 257.14 -> 257.
  EXPECT_EQ(prefillTokenCap(coeffs(1000, 7, 25), 3000, 8, 0, 16, 1000), 257);
}

TEST(StepCostFitTest, PriorUntilSamplesAndKeptOnItsPlane) {
  StepCostFit fit(coeffs(500, 40, 30), 256, 64);
  EXPECT_EQ(fit.samples(), 0);
  EXPECT_DOUBLE_EQ(fit.coefficients().baseUs, 500);
  EXPECT_DOUBLE_EQ(fit.coefficients().perPrefillTokenUs, 40);
  EXPECT_DOUBLE_EQ(fit.coefficients().perDecodeRowUs, 30);
  // Samples exactly on the prior's plane leave it where it is.
  for (int i = 0; i < 10; ++i) {
    int64_t p = (i * 37) % 200, d = i % 5;
    fit.add(p, d, 500 + 40.0 * p + 30.0 * d);
  }
  EXPECT_NEAR(fit.coefficients().baseUs, 500, 1e-6);
  EXPECT_NEAR(fit.coefficients().perPrefillTokenUs, 40, 1e-9);
  EXPECT_NEAR(fit.coefficients().perDecodeRowUs, 30, 1e-9);
}

TEST(StepCostFitTest, LearnsAnotherPlaneAndForgetsOutsideTheWindow) {
  // A wrong prior (the cost model) against steps that cost 4000 us + 240 us
  // per prompt token + 90 us per decode row (GPU-like).
  StepCostFit fit(coeffs(500, 40, 40), 1024, 64, /*window=*/32);
  auto feed = [&](double base, double perP, double perD) {
    for (int i = 0; i < 32; ++i) {
      int64_t p = i % 3 == 0 ? 0 : 64 + (i * 97) % 900;
      int64_t d = 1 + (i * 13) % 40;
      fit.add(p, d, base + perP * double(p) + perD * double(d));
    }
  };
  feed(4000, 240, 90);
  EXPECT_EQ(fit.samples(), 32);
  // The prior weighs a thousandth of an observation per coefficient: what
  // is left of it is a small fraction of the gap to the truth.
  EXPECT_NEAR(fit.coefficients().perPrefillTokenUs, 240, 240 * 0.01);
  EXPECT_NEAR(fit.coefficients().perDecodeRowUs, 90, 90 * 0.02);
  EXPECT_NEAR(fit.coefficients().baseUs, 4000, 4000 * 0.02);
  EXPECT_NEAR(fit.coefficients().predictUs(0, 8), 4000 + 720, 4720 * 0.01);
  EXPECT_NEAR(fit.coefficients().predictUs(1000, 10), 4000 + 240000 + 900,
              (4000 + 240000 + 900) * 0.01);
  // A full window of another plane replaces the first one.
  feed(2000, 120, 60);
  EXPECT_EQ(fit.samples(), 32);
  EXPECT_NEAR(fit.coefficients().perPrefillTokenUs, 120, 120 * 0.01);
  EXPECT_NEAR(fit.coefficients().predictUs(1000, 10), 2000 + 120000 + 600,
              (2000 + 120000 + 600) * 0.01);
}

TEST(StepCostFitTest, DegenerateSamplesStayNearThePriorAndClampAtZero) {
  // Only decode steps of one shape: base and per-row cannot be told apart,
  // the prefill coefficient is not observed at all; the prior holds it.
  StepCostFit fit(coeffs(500, 40, 40), 256, 64);
  for (int i = 0; i < 64; ++i)
    fit.add(0, 8, 1000);
  EXPECT_NEAR(fit.coefficients().predictUs(0, 8), 1000, 5);
  EXPECT_NEAR(fit.coefficients().perPrefillTokenUs, 40, 1e-6);
  // Steps that get cheaper with more tokens (noise) never predict < 0.
  StepCostFit noisy(coeffs(0, 0, 0), 1, 1, 8);
  for (int i = 0; i < 8; ++i)
    noisy.add(i, 0, 1000 - 100.0 * i);
  EXPECT_EQ(noisy.coefficients().perPrefillTokenUs, 0);
  EXPECT_GT(noisy.coefficients().baseUs, 0);
}

} // namespace
