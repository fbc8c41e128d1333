//===- Moe.cpp - CPU fp32 Mixture-of-Experts block ------------------------===//

#include "kernels/cpu/Moe.h"

#include "kernels/cpu/Elementwise.h"
#include "kernels/cpu/Linear.h"
#include "kernels/cpu/ParamChecks.h"

#include "absl/strings/str_cat.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace crosspool::kernels::cpu {
namespace {

/// Computes the SwiGLU expert for the `rows` gathered in `xs` into `ys`.
void expertForward(const float *xs, const ExpertWeights &e, int64_t rows,
                   int64_t H, int64_t I, std::vector<float> &g,
                   std::vector<float> &u, float *ys) {
  g.resize(static_cast<size_t>(rows * I));
  u.resize(static_cast<size_t>(rows * I));
  linear(xs, e.gate, nullptr, rows, H, I, g.data());
  linear(xs, e.up, nullptr, rows, H, I, u.data());
  for (size_t i = 0; i < g.size(); ++i)
    g[i] = silu(g[i]) * u[i];
  linear(g.data(), e.down, nullptr, rows, I, H, ys);
}

} // namespace

void route(const float *x, const float *router, int64_t T, int64_t H,
           int32_t numExperts, int32_t topK, bool normTopkProb,
           int32_t *indices, float *weights) {
  const int64_t E = numExperts;
  std::vector<float> logits(static_cast<size_t>(T * E)),
      probs(static_cast<size_t>(E));
  linear(x, router, nullptr, T, H, E, logits.data());
  for (int64_t t = 0; t < T; ++t) {
    const float *l = logits.data() + t * E;
    float maxL = l[0];
    for (int64_t e = 1; e < E; ++e)
      maxL = std::fmax(maxL, l[e]);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e)
      sum += std::exp(double(l[e]) - double(maxL));
    for (int64_t e = 0; e < E; ++e)
      probs[static_cast<size_t>(e)] =
          float(std::exp(double(l[e]) - double(maxL)) / sum);
    // Insertion into a descending list; a later expert only passes an
    // earlier one when strictly larger, so ties keep the lower index first.
    int32_t *idx = indices + t * topK;
    float *wt = weights + t * topK;
    int32_t n = 0;
    for (int32_t e = 0; e < numExperts; ++e) {
      float pe = probs[static_cast<size_t>(e)];
      if (n == topK && !(pe > wt[n - 1]))
        continue;
      int32_t at = n < topK ? n++ : topK - 1;
      while (at > 0 && pe > wt[at - 1]) {
        wt[at] = wt[at - 1];
        idx[at] = idx[at - 1];
        --at;
      }
      wt[at] = pe;
      idx[at] = e;
    }
    if (normTopkProb) {
      float s = 0;
      for (int32_t j = 0; j < topK; ++j)
        s += wt[j];
      for (int32_t j = 0; j < topK; ++j)
        wt[j] /= s;
    }
  }
}

absl::Status moe(const float *x, int64_t T, const MoeWeights &w,
                 const MoeParams &p, float *y) {
  if (absl::Status st = checkMoeArgs(w, p); !st.ok())
    return st;
  if (T == 0)
    return absl::OkStatus();
  const int64_t H = p.hidden, K = p.topK, E = p.numExperts;
  std::vector<int32_t> idx(static_cast<size_t>(T * K));
  std::vector<float> wt(static_cast<size_t>(T * K));
  route(x, w.router, T, H, p.numExperts, p.topK, p.normTopkProb, idx.data(),
        wt.data());

  // Group rows per expert so each selected expert's weights are read once.
  std::vector<std::vector<int64_t>> rowsOf(static_cast<size_t>(E));
  std::vector<std::vector<float>> probOf(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K; ++j) {
      int32_t e = idx[static_cast<size_t>(t * K + j)];
      rowsOf[static_cast<size_t>(e)].push_back(t);
      probOf[static_cast<size_t>(e)].push_back(
          wt[static_cast<size_t>(t * K + j)]);
    }
  for (int64_t e = 0; e < E; ++e) {
    const ExpertWeights &ex = w.experts[e];
    if (!rowsOf[static_cast<size_t>(e)].empty() &&
        (!ex.gate || !ex.up || !ex.down))
      return invalidMoe(
          absl::StrCat("selected expert ", e, " has a null weight"));
  }

  // Accumulate in a private buffer: y may alias x, which experts still read.
  std::vector<float> acc(static_cast<size_t>(T * H), 0.0f), xs, ys, g, u;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t> &rows = rowsOf[static_cast<size_t>(e)];
    if (rows.empty())
      continue;
    int64_t n = int64_t(rows.size());
    xs.resize(static_cast<size_t>(n * H));
    ys.resize(static_cast<size_t>(n * H));
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(xs.data() + r * H, x + rows[static_cast<size_t>(r)] * H,
                  static_cast<size_t>(H) * sizeof(float));
    expertForward(xs.data(), w.experts[e], n, H, p.intermediate, g, u,
                  ys.data());
    // HF order: expert output times its routing weight (fp32), index-added
    // per expert in ascending expert order.
    for (int64_t r = 0; r < n; ++r) {
      float pr = probOf[static_cast<size_t>(e)][static_cast<size_t>(r)];
      float *dst = acc.data() + rows[static_cast<size_t>(r)] * H;
      const float *src = ys.data() + r * H;
      for (int64_t i = 0; i < H; ++i)
        dst[i] += src[i] * pr;
    }
  }

  if (w.shared.gate) {
    ys.resize(static_cast<size_t>(T * H));
    expertForward(x, w.shared, T, H, p.sharedIntermediate, g, u, ys.data());
    std::vector<float> gateLogit(static_cast<size_t>(T), 0.0f);
    if (w.sharedGate)
      linear(x, w.sharedGate, nullptr, T, H, 1, gateLogit.data());
    for (int64_t t = 0; t < T; ++t) {
      float f =
          w.sharedGate
              ? 1.0f / (1.0f + std::exp(-gateLogit[static_cast<size_t>(t)]))
              : 1.0f;
      for (int64_t i = 0; i < H; ++i)
        acc[static_cast<size_t>(t * H + i)] +=
            f * ys[static_cast<size_t>(t * H + i)];
    }
  }
  std::memcpy(y, acc.data(), acc.size() * sizeof(float));
  return absl::OkStatus();
}

} // namespace crosspool::kernels::cpu
