//===- ElementwiseTest.cpp - embed, rmsNorm, add, silu --------------------===//

#include "kernels/cpu/Elementwise.h"

#include "test/unit/kernels/KernelTestUtil.h"

#include <gtest/gtest.h>

#include <cmath>

namespace crosspool::kernels::cpu {
namespace {

using testing::randomVec;
using testing::relMaxErr;

TEST(EmbedTest, CopiesRows) {
  const int64_t V = 5, H = 3;
  std::vector<float> table(V * H);
  for (size_t i = 0; i < table.size(); ++i)
    table[i] = float(i);
  std::vector<int32_t> ids = {4, 0, 4, 2};
  std::vector<float> out(ids.size() * H);
  ASSERT_TRUE(embed(ids.data(), 4, table.data(), V, H, out.data()).ok());
  std::vector<float> want = {12, 13, 14, 0, 1, 2, 12, 13, 14, 6, 7, 8};
  EXPECT_EQ(out, want);
}

TEST(EmbedTest, OutOfRangeIdIsAnErrorAndWritesNothing) {
  const int64_t V = 5, H = 2;
  std::vector<float> table(V * H, 1.0f);
  for (int32_t bad : {5, -1, 1 << 30}) {
    std::vector<int32_t> ids = {1, bad};
    std::vector<float> out(4, -3.0f);
    absl::Status st = embed(ids.data(), 2, table.data(), V, H, out.data());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("row 1"), std::string::npos) << st;
    EXPECT_NE(st.message().find(std::to_string(bad)), std::string::npos) << st;
    EXPECT_EQ(out, std::vector<float>(4, -3.0f));
  }
}

TEST(RmsNormTest, HandComputed) {
  // mean([9, 16]) = 12.5, rms = sqrt(12.5).
  std::vector<float> x = {3, 4}, w = {1, 2}, y(2);
  rmsNorm(x.data(), w.data(), 0.0f, 1, 2, y.data());
  double rms = std::sqrt(12.5);
  EXPECT_NEAR(y[0], 3.0 / rms, 1e-6);
  EXPECT_NEAR(y[1], 2.0 * 4.0 / rms, 1e-6);
  // eps enters under the root: mean 12.5 + 3.5 = 16 -> rms 4.
  rmsNorm(x.data(), w.data(), 3.5f, 1, 2, y.data());
  EXPECT_FLOAT_EQ(y[0], 0.75f);
  EXPECT_FLOAT_EQ(y[1], 2.0f);
}

TEST(RmsNormTest, RandomRowsInPlace) {
  const int64_t T = 5, H = 33;
  const float eps = 1e-5f;
  std::vector<float> x = randomVec(static_cast<size_t>(T * H), 11, 3.0f);
  std::vector<float> w = randomVec(static_cast<size_t>(H), 12);
  std::vector<double> want(static_cast<size_t>(T * H));
  for (int64_t t = 0; t < T; ++t) {
    double ms = 0;
    for (int64_t i = 0; i < H; ++i)
      ms += double(x[t * H + i]) * x[t * H + i] / double(H);
    for (int64_t i = 0; i < H; ++i)
      want[t * H + i] = double(w[i]) * x[t * H + i] / std::sqrt(ms + eps);
  }
  rmsNorm(x.data(), w.data(), eps, T, H, x.data());
  EXPECT_LT(relMaxErr(x, want), 1e-6);
}

TEST(AddTest, AddsAndMayAlias) {
  std::vector<float> a = {1, 2, 3}, b = {10, -2, 0.5f}, c(3);
  add(a.data(), b.data(), c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{11, 0, 3.5f}));
  add(a.data(), b.data(), a.data(), 3);
  EXPECT_EQ(a, (std::vector<float>{11, 0, 3.5f}));
}

TEST(SiluTest, Values) {
  EXPECT_FLOAT_EQ(silu(0.0f), 0.0f);
  EXPECT_NEAR(silu(1.0f), 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(silu(-2.0f), -2.0 / (1.0 + std::exp(2.0)), 1e-7);
  EXPECT_FLOAT_EQ(silu(-100.0f), -0.0f);
  EXPECT_FLOAT_EQ(silu(100.0f), 100.0f);
}

} // namespace
} // namespace crosspool::kernels::cpu
