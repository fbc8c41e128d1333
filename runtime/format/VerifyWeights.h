//===- VerifyWeights.h - Plan weights vs checkpoint headers -----*- C++ -*-===//
//
// A plan names checkpoint tensors by file and byte range; the runtime maps
// those bytes without re-parsing names, so a plan compiled against another
// version of a checkpoint must be refused before anything is mapped.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H
#define CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/Plan_generated.h"

#include "absl/status/status.h"

namespace crosspool::runtime {

/// The checkpoint dtype a plan dtype names.
DType toCheckpointDType(plan::DType dtype);

/// Checks that every plan weight exists in `checkpoint` with the same file,
/// offset, nbytes, dtype and shape. FailedPrecondition naming the weight and
/// the field (plan vs checkpoint) on the first mismatch, NotFound when absent.
absl::Status verifyPlanWeights(const plan::Plan &plan,
                               const Checkpoint &checkpoint);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_FORMAT_VERIFYWEIGHTS_H
