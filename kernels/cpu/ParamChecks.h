//===- ParamChecks.h - Host checks of attention and MoE params --*- C++ -*-===//
//
// The parameter checks of the Attention and Moe tasks (docs/plan-format.md),
// shared by the CPU kernels and the host side of the CUDA kernels so both
// reject the same inputs with the same messages ("attention: ...",
// "moe: ..."). Plain C++: the .cu files include it too.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CPU_PARAMCHECKS_H
#define CROSSPOOL_KERNELS_CPU_PARAMCHECKS_H

#include "kernels/cpu/Attention.h"
#include "kernels/cpu/Moe.h"

#include "absl/status/status.h"

#include <cstdint>
#include <string>

namespace crosspool::kernels {

/// InvalidArgument "attention: <msg>".
absl::Status invalidAttention(const std::string &msg);
/// InvalidArgument "moe: <msg>".
absl::Status invalidMoe(const std::string &msg);

/// Sizes, head grouping, even head_dim (at most `maxHeadDim` unless it is
/// 0: the CUDA kernels keep a head's RoPE table in registers), qk_norm and
/// RoPE kinds, rope_theta, sliding_window and clip_qkv (NaN rejected).
absl::Status checkAttentionParams(const cpu::AttentionParams &p,
                                  int32_t maxHeadDim = 0);

/// The KV layer's page geometry against the attention's heads.
absl::Status checkKvGeometry(const cpu::AttentionParams &p,
                             int32_t tokensPerPage, int32_t numKvHeads,
                             int32_t headDim);

/// Sizes, top_k and which of the weights are present: router and expert
/// table, none or all three of the shared expert, a shared gate only with a
/// shared expert that has a positive intermediate size.
absl::Status checkMoeParams(const cpu::MoeParams &p, bool hasRouter,
                            bool hasExperts, int numShared, bool hasSharedGate);

/// checkMoeParams on a kernel's MoeWeights (host or device pointers).
template <typename MoeWeightsT>
absl::Status checkMoeArgs(const MoeWeightsT &w, const cpu::MoeParams &p) {
  int numShared = (w.shared.gate != nullptr) + (w.shared.up != nullptr) +
                  (w.shared.down != nullptr);
  return checkMoeParams(p, w.router != nullptr, w.experts != nullptr, numShared,
                        w.sharedGate != nullptr);
}

} // namespace crosspool::kernels

#endif // CROSSPOOL_KERNELS_CPU_PARAMCHECKS_H
