//===- VerifyWeights.h - Plan weights vs checkpoint headers -----*- C++ -*-===//
//
// A plan names checkpoint tensors by file and byte range; the runtime maps
// those bytes without re-parsing names, so a plan compiled against another
// version of a checkpoint must be refused before anything is mapped.
// Synthetic weights (no file) are checked for self-consistency only.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H
#define CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/Plan_generated.h"
#include "runtime/format/SyntheticInit.h"

#include "absl/status/status.h"

namespace crosspool::runtime {

/// The checkpoint dtype a plan dtype names.
DType toCheckpointDType(plan::DType dtype);

/// Checks that every file-backed plan weight exists in `checkpoint` with the
/// same file, offset, nbytes, dtype and shape, and every synthetic one as
/// verifySyntheticWeights does. FailedPrecondition naming the weight and the
/// field (plan vs checkpoint) on the first mismatch, NotFound when absent.
absl::Status verifyPlanWeights(const plan::Plan &plan,
                               const Checkpoint &checkpoint);

/// Checks the synthetic weights alone (no checkpoint needed): no file and
/// offset 0, a known init kind, a finite positive init_std, a known dtype and
/// nbytes matching the shape. InvalidArgument naming the weight and field.
absl::Status verifySyntheticWeights(const plan::Plan &plan);

/// What the generator needs to make synthetic weight `w`: the plan's seed,
/// the stream of its tensor name, its init kind and std, bf16 rounding when
/// its dtype is BF16.
synthetic::TensorInit syntheticInit(const plan::Weight &w);

/// Elements of `w` by its shape.
uint64_t weightNumElements(const plan::Weight &w);

/// Whether any weight is read from a checkpoint file (false for a plan
/// compiled with `crosspool-compile --synthetic`: no checkpoint to open).
bool planHasFileWeights(const plan::Plan &plan);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H
