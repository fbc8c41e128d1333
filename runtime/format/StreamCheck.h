//===- StreamCheck.h - Static check of plan instruction streams -*- C++ -*-===//
//
// The "Static stream check" of docs/plan-format.md. The compiler runs it
// before it writes a plan and the runtime before it runs one, so both sides
// reject exactly the same plans. Plain C++ (FlatBuffers + Abseil only). The
// stream semantics are runtime/format/StreamModel.h, shared with the exec
// dialect's verifier; this adds the plan's tables, kernels and weights.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_STREAMCHECK_H
#define CROSSPOOL_RUNTIME_FORMAT_STREAMCHECK_H

#include "runtime/format/Plan_generated.h"

#include "absl/status/status.h"

namespace crosspool::runtime {

/// Checks a (FlatBuffers-verified) plan: tables (weights, slots, channels,
/// kv layers) are well-formed; every slot, weight and channel id is in range;
/// each kernel has its arity (inputs, outputs, weights, iparams, fparams) and
/// consistent widths/shapes; streams touch only their own pool's slots and
/// weights and run only their pool's kernels; slots are written before they
/// are read within a step; sends/receives are paired with seq = 1..per_step;
/// and simulating one step of all streams completes (no deadlock).
/// Returns InvalidArgument whose one-line message names the stream and
/// instruction index and what was expected vs found, e.g.
/// `stream 0 (KV) instr 3 (Task RmsNorm): expects 1 weights but got 2`.
absl::Status checkPlanStreams(const plan::Plan &plan);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_FORMAT_STREAMCHECK_H
