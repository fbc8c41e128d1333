//===- KernelTestUtil.h - Shared helpers of the CPU kernel tests -*- C++
//-*-===//
#ifndef CROSSPOOL_TEST_UNIT_KERNELS_KERNELTESTUTIL_H
#define CROSSPOOL_TEST_UNIT_KERNELS_KERNELTESTUTIL_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace crosspool::kernels::cpu::testing {

/// n floats uniform in [-scale, scale] from a fixed seed.
inline std::vector<float> randomVec(size_t n, uint32_t seed,
                                    float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float &f : v)
    f = dist(gen);
  return v;
}

/// max |got - want| / max |want|: the end-to-end accuracy measure.
inline double relMaxErr(const std::vector<float> &got,
                        const std::vector<double> &want) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    maxDiff = std::max(maxDiff, std::fabs(double(got[i]) - want[i]));
    maxRef = std::max(maxRef, std::fabs(want[i]));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

/// Double-precision y = x W^T + b, one output at a time.
inline std::vector<double> refLinear(const std::vector<double> &x,
                                     const float *w, const float *b, int64_t in,
                                     int64_t out) {
  std::vector<double> y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    double s = b ? double(b[o]) : 0.0;
    for (int64_t i = 0; i < in; ++i)
      s += x[static_cast<size_t>(i)] * double(w[o * in + i]);
    y[static_cast<size_t>(o)] = s;
  }
  return y;
}

inline std::vector<double> toDouble(const float *x, int64_t n) {
  return std::vector<double>(x, x + n);
}

} // namespace crosspool::kernels::cpu::testing

#endif // CROSSPOOL_TEST_UNIT_KERNELS_KERNELTESTUTIL_H
