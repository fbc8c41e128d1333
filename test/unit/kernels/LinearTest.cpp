//===- LinearTest.cpp - linear, lmHead, argmax, mlp -----------------------===//

#include "kernels/cpu/Linear.h"

#include "test/unit/kernels/KernelTestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace crosspool::kernels::cpu {
namespace {

using testing::randomVec;
using testing::refLinear;
using testing::relMaxErr;
using testing::toDouble;

TEST(LinearTest, HandComputed) {
  // x = [1, 2]; W rows [1,0], [0,1], [1,1]; b = [0.5, 0, -1].
  std::vector<float> x = {1, 2}, w = {1, 0, 0, 1, 1, 1}, b = {0.5f, 0, -1};
  std::vector<float> y(3, -7.0f);
  linear(x.data(), w.data(), b.data(), 1, 2, 3, y.data());
  EXPECT_FLOAT_EQ(y[0], 1.5f);
  EXPECT_FLOAT_EQ(y[1], 2.0f);
  EXPECT_FLOAT_EQ(y[2], 2.0f);
  linear(x.data(), w.data(), nullptr, 1, 2, 3, y.data());
  EXPECT_FLOAT_EQ(y[0], 1.0f);
  EXPECT_FLOAT_EQ(y[2], 3.0f);
}

TEST(LinearTest, RandomMatchesNaiveWithRaggedSizes) {
  // T > the kernel's token block and `out` not a multiple of its row block.
  for (auto [T, in, out] : {std::tuple<int64_t, int64_t, int64_t>{37, 19, 23},
                            {1, 64, 5},
                            {3, 1, 4},
                            {17, 128, 33}}) {
    std::vector<float> x = randomVec(static_cast<size_t>(T * in), 1);
    std::vector<float> w = randomVec(static_cast<size_t>(out * in), 2);
    std::vector<float> b = randomVec(static_cast<size_t>(out), 3);
    std::vector<float> y(static_cast<size_t>(T * out));
    linear(x.data(), w.data(), b.data(), T, in, out, y.data());
    std::vector<double> want;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> row = refLinear(toDouble(x.data() + t * in, in),
                                          w.data(), b.data(), in, out);
      want.insert(want.end(), row.begin(), row.end());
    }
    EXPECT_LT(relMaxErr(y, want), 1e-6) << T << "x" << in << "->" << out;
  }
}

TEST(LinearTest, LmHeadIsLinearWithoutBias) {
  const int64_t T = 4, H = 24, V = 50;
  std::vector<float> h = randomVec(static_cast<size_t>(T * H), 4);
  std::vector<float> w = randomVec(static_cast<size_t>(V * H), 5);
  std::vector<float> logits(static_cast<size_t>(T * V));
  lmHead(h.data(), w.data(), T, H, V, logits.data());
  std::vector<double> want;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> row =
        refLinear(toDouble(h.data() + t * H, H), w.data(), nullptr, H, V);
    want.insert(want.end(), row.begin(), row.end());
  }
  EXPECT_LT(relMaxErr(logits, want), 1e-6);
}

TEST(ArgmaxTest, TiesGoToLowerIndex) {
  std::vector<float> row = {1, 3, 3, 2};
  EXPECT_EQ(argmax(row.data(), 4), 1);
  std::vector<float> neg = {-5, -1, -1, -3};
  EXPECT_EQ(argmax(neg.data(), 4), 1);
  std::vector<float> last = {0, 0, 0, 0.5f};
  EXPECT_EQ(argmax(last.data(), 4), 3);
}

TEST(ArgmaxTest, EmptyAndNaN) {
  EXPECT_EQ(argmax(nullptr, 0), -1);
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> row = {nan, 1, 2, nan};
  EXPECT_EQ(argmax(row.data(), 4), 2);
}

/// Independent dense SwiGLU in double: per token, per intermediate unit.
std::vector<double> refMlp(const float *x, const float *gate, const float *up,
                           const float *down, int64_t H, int64_t I) {
  std::vector<double> act(static_cast<size_t>(I));
  for (int64_t j = 0; j < I; ++j) {
    double g = 0, u = 0;
    for (int64_t i = 0; i < H; ++i) {
      g += double(gate[j * H + i]) * x[i];
      u += double(up[j * H + i]) * x[i];
    }
    act[static_cast<size_t>(j)] = g / (1.0 + std::exp(-g)) * u;
  }
  return refLinear(act, down, nullptr, I, H);
}

TEST(MlpTest, RandomMatchesNaiveAndMayAliasInput) {
  const int64_t T = 6, H = 20, I = 36;
  std::vector<float> x = randomVec(static_cast<size_t>(T * H), 6, 2.0f);
  std::vector<float> gate = randomVec(static_cast<size_t>(I * H), 7, 0.5f);
  std::vector<float> up = randomVec(static_cast<size_t>(I * H), 8, 0.5f);
  std::vector<float> down = randomVec(static_cast<size_t>(H * I), 9, 0.5f);
  std::vector<double> want;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> row =
        refMlp(x.data() + t * H, gate.data(), up.data(), down.data(), H, I);
    want.insert(want.end(), row.begin(), row.end());
  }
  std::vector<float> y(static_cast<size_t>(T * H));
  mlp(x.data(), gate.data(), up.data(), down.data(), T, H, I, y.data());
  EXPECT_LT(relMaxErr(y, want), 1e-6);
  mlp(x.data(), gate.data(), up.data(), down.data(), T, H, I, x.data());
  EXPECT_LT(relMaxErr(x, want), 1e-6);
}

} // namespace
} // namespace crosspool::kernels::cpu
