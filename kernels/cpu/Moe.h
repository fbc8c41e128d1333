//===- Moe.h - CPU fp32 Mixture-of-Experts block ----------------*- C++ -*-===//
//
// The `Moe` task of docs/plan-format.md: router softmax (fp32), top-k with
// ties to the lower index, optional renormalization, SwiGLU experts, optional
// (optionally sigmoid-gated) shared expert. Tokens are grouped per expert so
// each selected expert's weights are streamed once per call.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CPU_MOE_H
#define CROSSPOOL_KERNELS_CPU_MOE_H

#include "absl/status/status.h"

#include <cstdint>

namespace crosspool::kernels::cpu {

/// One SwiGLU expert: gate, up [I, H], down [H, I].
struct ExpertWeights {
  const float *gate = nullptr;
  const float *up = nullptr;
  const float *down = nullptr;
};

struct MoeWeights {
  /// Router [E, H].
  const float *router = nullptr;
  /// E routed experts.
  const ExpertWeights *experts = nullptr;
  /// Shared expert; all three null when the model has none.
  ExpertWeights shared;
  /// Shared expert gate [1, H]; null = ungated (factor 1).
  const float *sharedGate = nullptr;
};

struct MoeParams {
  int64_t hidden = 0;
  int32_t numExperts = 0;
  int32_t topK = 0;
  bool normTopkProb = false;
  /// Intermediate size of each routed expert.
  int64_t intermediate = 0;
  /// Intermediate size of the shared expert (ignored without one).
  int64_t sharedIntermediate = 0;
};

/// Routing for T rows: softmax(x R^T) in fp32, top-k (descending, ties to the
/// lower index), divided by their sum when normTopkProb. Writes
/// indices[T, topK] and weights[T, topK]. Arguments are not validated here
/// (moe() validates before it routes).
void route(const float *x, const float *router, int64_t T, int64_t H,
           int32_t numExperts, int32_t topK, bool normTopkProb,
           int32_t *indices, float *weights);

/// y[T, H] = sum_k p_k expert_k(x) (+ sigmoid(x . g) * shared(x)).
/// `y` may alias `x`. Returns InvalidArgument (writing nothing) for
/// inconsistent params (topK outside [1, E], non-positive sizes) or a null
/// weight it needs (router, a selected expert, half a shared expert).
absl::Status moe(const float *x, int64_t T, const MoeWeights &w,
                 const MoeParams &p, float *y);

} // namespace crosspool::kernels::cpu

#endif // CROSSPOOL_KERNELS_CPU_MOE_H
