//===- TaskDecode.h - A plan's instructions as typed structs ----*- C++ -*-===//
//
// Decodes the instruction streams of a plan (docs/plan-format.md) once at
// load, for every executor: slot ids and widths, weight ids, and the kernel
// parameters of each task read from `iparams` / `fparams` and the weight
// layout. Executors only map weight ids to their own (host or device)
// pointers, through the layout helpers below.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_EXEC_TASKDECODE_H
#define CROSSPOOL_RUNTIME_EXEC_TASKDECODE_H

#include "kernels/cpu/Attention.h"
#include "kernels/cpu/Moe.h"
#include "runtime/format/Plan_generated.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// One plan instruction, decoded.
struct DecodedInstr {
  plan::Opcode op = plan::Opcode::Task;
  plan::Kernel kernel = plan::Kernel::None;
  std::string where; ///< "stream 0 (KV) instr 3 (Task Embed)"
  int32_t in0 = -1, in1 = -1, out = -1;
  int32_t channel = -1, seq = 0;
  int64_t width = 0;    ///< elements per row of in0 (Send: of the moved slot)
  int64_t outWidth = 0; ///< elements per row of out
  std::vector<int32_t> weightIds; ///< plan weight ids; -1 = none
  float eps = 0;                  ///< RmsNorm
  int64_t intermediate = 0;       ///< Mlp
  int32_t kvLayer = -1;           ///< Attention
  kernels::cpu::AttentionParams attnParams;
  kernels::cpu::MoeParams moeParams;
};

/// The decoded instructions of one stream.
struct DecodedStream {
  plan::Pool pool = plan::Pool::KV;
  std::vector<DecodedInstr> instrs;
};

/// Decodes every stream of a plan that passed checkPlanStreams, repeating
/// the checks the executors rely on (one stream per pool, Embed reads the
/// input slot, LmHead writes the output slot, Attention keeps the width and
/// names a KV layer of the plan, experts of one size). Errors are
/// InvalidArgument "<name>: <where>: <what>".
absl::StatusOr<std::vector<DecodedStream>>
decodePlanStreams(const plan::Plan &plan, const std::string &name);

/// Adjacent Add -> RmsNorm pairs of one stream that one fused add + RMSNorm
/// launch can run (kernels::cuda::addRmsNormInto: c = a + b, y = norm(c) *
/// w): Task Add(a, b -> c), c any slot (in place or, as compiled plans
/// write it, a new one), immediately followed by Task RmsNorm(c -> y) of the
/// same width with y a slot other than a, b and c. Returns the index of each
/// such Add; its RmsNorm is the next instruction.
std::vector<size_t> addRmsNormPairs(const std::vector<DecodedInstr> &instrs);

/// The row checks every backend makes on a step before it runs: at least one
/// row, and one sequence index and position per token row. Errors read
/// "<name>: step: ...".
absl::Status checkStepRows(size_t numTokens, size_t numRowSeqs,
                           size_t numRowPos, const std::string &name);

/// Weight pointers of one instruction: `weights[id]`, null for id -1.
template <typename Ptr>
std::vector<Ptr> resolveWeights(const std::vector<int32_t> &ids,
                                const std::vector<Ptr> &weights) {
  std::vector<Ptr> w;
  w.reserve(ids.size());
  for (int32_t id : ids)
    w.push_back(id < 0 ? nullptr : weights[id]);
  return w;
}

/// An Attention task's weights, in plan order q, k, v, o, their biases,
/// q_norm, k_norm.
template <typename AttentionWeightsT, typename Ptr>
AttentionWeightsT attentionWeightsOf(const std::vector<Ptr> &w) {
  AttentionWeightsT aw;
  aw.q = w[0], aw.k = w[1], aw.v = w[2], aw.o = w[3];
  aw.qBias = w[4], aw.kBias = w[5], aw.vBias = w[6], aw.oBias = w[7];
  aw.qNorm = w[8], aw.kNorm = w[9];
  return aw;
}

/// A Moe task's router, shared expert (gate, up, down) and shared gate;
/// `experts` is left for the caller (a host array or a device table).
template <typename MoeWeightsT, typename Ptr>
MoeWeightsT moeWeightsOf(const std::vector<Ptr> &w) {
  MoeWeightsT mw;
  mw.router = w[0];
  mw.shared = {w[1], w[2], w[3]};
  mw.sharedGate = w[4];
  return mw;
}

/// A Moe task's routed experts (gate, up, down from weight 5 on).
template <typename ExpertT, typename Ptr>
std::vector<ExpertT> moeExpertsOf(const std::vector<Ptr> &w,
                                  int32_t numExperts) {
  std::vector<ExpertT> experts;
  for (int32_t e = 0; e < numExperts; ++e)
    experts.push_back({w[5 + 3 * e], w[6 + 3 * e], w[7 + 3 * e]});
  return experts;
}

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_EXEC_TASKDECODE_H
