//===- SyntheticWeights.h - Seeded random tensors made on the GPU -*- C++
//-*-===//
//
// Real-size models are measured without downloads: every tensor is filled on
// the device from (seed, tensor id) by the one synthetic-weights generator
// (runtime/format/SyntheticInit.h, via runtime/cuda/SyntheticFill.h) that
// synthetic plans use too, so a run is reproducible and costs no host
// traffic.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H
#define CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H

#include "runtime/cuda/SyntheticFill.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

namespace crosspool::bench {

/// n bf16 values at `dst` from (seed, stream), zero-mean with the standard
/// deviation of uniform [-scale, scale] (scale / sqrt(3)).
inline cudaError_t fillSyntheticBf16(void *dst, int64_t n, uint64_t seed,
                                     uint64_t stream, float scale,
                                     cudaStream_t cs = nullptr) {
  if (n <= 0)
    return cudaSuccess;
  synthetic::TensorInit init;
  init.seed = seed;
  init.stream = stream;
  init.kind = synthetic::InitKind::kNormal;
  init.std = scale / std::sqrt(3.0f);
  init.roundToBf16 = true;
  return runtime::cuda::fillSynthetic(dst, static_cast<uint64_t>(n), init,
                                      /*bf16Storage=*/true, cs);
}

} // namespace crosspool::bench

#endif // CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H
