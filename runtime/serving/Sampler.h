//===- Sampler.h - Per-request token sampling ------------------*- C++ -*-===//
//
// Greedy, temperature, top-k and top-p sampling over one row of logits. The
// random draw for output token i of a request is a hash of (seed, i), not a
// stream advanced per call, so a request's tokens do not depend on how it
// was batched, preempted or recomputed.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_SAMPLER_H
#define CROSSPOOL_RUNTIME_SERVING_SAMPLER_H

#include "runtime/serving/Request.h"

#include "absl/status/status.h"

#include <cstdint>

namespace crosspool::runtime {

/// InvalidArgument naming the field for a parameter out of range
/// (topK < 0 or > vocab, topP outside (0, 1], maxNewTokens < 1, a stop id
/// outside the vocabulary, a non-finite temperature).
absl::Status validateSampling(const SamplingParams &params, int64_t vocab);

/// Uniform double in [0, 1) from (seed, index) (SplitMix64 of both).
double samplingUniform(uint64_t seed, uint64_t index);

/// The id chosen for output token `tokenIndex` from `logits[vocab]`.
int32_t sampleToken(const float *logits, int64_t vocab,
                    const SamplingParams &params, int64_t tokenIndex);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_SAMPLER_H
