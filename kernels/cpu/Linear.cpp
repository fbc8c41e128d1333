//===- Linear.cpp - CPU fp32 linear layers, dense MLP, lm_head ------------===//

#include "kernels/cpu/Linear.h"

#include "kernels/cpu/Elementwise.h"

#include <cmath>
#include <vector>

namespace crosspool::kernels::cpu {
namespace {

/// Dot products of one activation row with four weight rows. Products of two
/// floats are exact in double, so accumulating in double keeps long (e.g.
/// 4096-wide) reductions far below the 1e-4 end-to-end budget.
inline void dot4(const float *x, const float *w0, const float *w1,
                 const float *w2, const float *w3, int64_t n, double out[4]) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int64_t i = 0; i < n; ++i) {
    double xi = x[i];
    a0 += xi * w0[i];
    a1 += xi * w1[i];
    a2 += xi * w2[i];
    a3 += xi * w3[i];
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
  out[3] = a3;
}

inline double dot1(const float *x, const float *w, int64_t n) {
  // Two chains halve the add-latency bound without changing the precision.
  double a0 = 0, a1 = 0;
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    a0 += double(x[i]) * w[i];
    a1 += double(x[i + 1]) * w[i + 1];
  }
  if (i < n)
    a0 += double(x[i]) * w[i];
  return a0 + a1;
}

} // namespace

void linear(const float *x, const float *w, const float *bias, int64_t T,
            int64_t in, int64_t out, float *y) {
  // Weight rows are the outer loop so each is streamed from memory once per
  // call whatever T is (decode is bound by weight bytes); the T activation
  // rows stay in cache.
  constexpr int64_t kTokenBlock = 16;
  for (int64_t t0 = 0; t0 < T; t0 += kTokenBlock) {
    int64_t t1 = t0 + kTokenBlock < T ? t0 + kTokenBlock : T;
    int64_t o = 0;
    for (; o + 4 <= out; o += 4) {
      const float *w0 = w + o * in;
      for (int64_t t = t0; t < t1; ++t) {
        double acc[4];
        dot4(x + t * in, w0, w0 + in, w0 + 2 * in, w0 + 3 * in, in, acc);
        for (int j = 0; j < 4; ++j)
          y[t * out + o + j] =
              float(bias ? acc[j] + double(bias[o + j]) : acc[j]);
      }
    }
    for (; o < out; ++o)
      for (int64_t t = t0; t < t1; ++t) {
        double acc = dot1(x + t * in, w + o * in, in);
        y[t * out + o] = float(bias ? acc + double(bias[o]) : acc);
      }
  }
}

void lmHead(const float *h, const float *w, int64_t T, int64_t H, int64_t V,
            float *logits) {
  linear(h, w, nullptr, T, H, V, logits);
}

int64_t argmax(const float *row, int64_t n) {
  if (n <= 0)
    return -1;
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    // A NaN at `best` is left for the first real number.
    if (row[i] > row[best] || (std::isnan(row[best]) && !std::isnan(row[i])))
      best = i;
  return best;
}

void mlp(const float *x, const float *gate, const float *up, const float *down,
         int64_t T, int64_t H, int64_t I, float *y) {
  std::vector<float> g(static_cast<size_t>(T * I)),
      u(static_cast<size_t>(T * I));
  linear(x, gate, nullptr, T, H, I, g.data());
  linear(x, up, nullptr, T, H, I, u.data());
  for (size_t i = 0; i < g.size(); ++i)
    g[i] = silu(g[i]) * u[i];
  // x is no longer read, so y may alias it.
  linear(g.data(), down, nullptr, T, I, H, y);
}

} // namespace crosspool::kernels::cpu
