//===- SyntheticWeights.h - Seeded random tensors made on the GPU -*- C++
//-*-===//
//
// Real-size models are measured without downloads: every tensor is filled on
// the device from (seed, tensor id) by a counter-based hash, uniform in
// [-scale, scale], so a run is reproducible and costs no host traffic.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H
#define CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H

#include <cuda_runtime_api.h>

#include <cstdint>

namespace crosspool::bench {

/// n bf16 values at `dst`, uniform in [-scale, scale] from (seed, stream).
cudaError_t fillSyntheticBf16(void *dst, int64_t n, uint64_t seed,
                              uint64_t stream, float scale,
                              cudaStream_t cs = nullptr);

} // namespace crosspool::bench

#endif // CROSSPOOL_TOOLS_DECODEBENCH_SYNTHETICWEIGHTS_H
