//===- Request.h - A serving request and its record -----------*- C++ -*-===//
//
// What a client submits to the ServingEngine (model, prompt ids, sampling
// parameters, arrival time) and what the engine records about it (state, the
// reason it ended, output ids, the time of every output token, preemptions).
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_REQUEST_H
#define CROSSPOOL_RUNTIME_SERVING_REQUEST_H

#include "runtime/engine/Runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::runtime {

using RequestId = int64_t;

/// Per-request sampling. Output is a pure function of (model, prompt, these
/// parameters): batching, preemption and recomputation never change it.
struct SamplingParams {
  /// <= 0: greedy (argmax, lowest id on ties); topK / topP / seed unused.
  float temperature = 0.0f;
  /// Keep only the k most likely ids; 0 = all.
  int32_t topK = 0;
  /// Keep the smallest set of most likely ids whose probability reaches
  /// topP (after top-k); 1 = all. Must be in (0, 1].
  float topP = 1.0f;
  /// Token i of the output uses the uniform number hash(seed, i).
  uint64_t seed = 0;
  /// Output ids at most (>= 1).
  int64_t maxNewTokens = 16;
  /// Generation ends after emitting one of these ids (it is kept in the
  /// output).
  std::vector<int32_t> stopIds;
};

struct RequestSpec {
  ModelId model = 0;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  /// Seconds on the engine clock; < 0 means "now" (at submit).
  double arrivalTime = -1;
};

enum class RequestState { Waiting, Running, Finished, Cancelled, Failed };

const char *requestStateName(RequestState state);

struct RequestRecord {
  RequestId id = -1;
  ModelId model = 0;
  RequestState state = RequestState::Waiting;
  /// Why it ended: "max_tokens", "stop_id", "max_position", "cancelled", or
  /// the failure message.
  std::string reason;
  int64_t promptTokens = 0;
  std::vector<int32_t> output;
  double arrivalTime = 0;
  double finishTime = -1;
  /// Engine-clock time at which output[i] was produced.
  std::vector<double> tokenTimes;
  /// Times it lost its KV pages to preemption, and the tokens it re-prefilled.
  int32_t preemptions = 0;
  int64_t recomputedTokens = 0;

  bool terminal() const {
    return state != RequestState::Waiting && state != RequestState::Running;
  }
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_REQUEST_H
