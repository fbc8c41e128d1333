//===- SyntheticFill.h - Synthetic weights generated on the GPU --*- C++ -*-===//
//
// Fills device memory with a synthetic tensor (runtime/format/SyntheticInit.h)
// by a kernel calling the same host/device generator as the CPU arena, so one
// seed gives bit-identical weights on every backend and no host traffic.
// Used by DeviceWeightArena::addSynthetic and crosspool-decode-bench.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_SYNTHETICFILL_H
#define CROSSPOOL_RUNTIME_CUDA_SYNTHETICFILL_H

#include "runtime/format/SyntheticInit.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace crosspool::runtime::cuda {

/// Writes `n` values of `init` at `dst` (device memory): bf16 bits when
/// `bf16Storage`, else fp32 (bf16-rounded values when init.roundToBf16).
/// Asynchronous on `stream`; returns the launch error.
cudaError_t fillSynthetic(void *dst, uint64_t n,
                          const synthetic::TensorInit &init, bool bf16Storage,
                          cudaStream_t stream = nullptr);

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_SYNTHETICFILL_H
