//===- Sampler.cpp - Per-request token sampling ---------------------------===//

#include "runtime/serving/Sampler.h"

#include "kernels/cpu/Linear.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace crosspool::runtime {

const char *requestStateName(RequestState state) {
  switch (state) {
  case RequestState::Waiting:
    return "waiting";
  case RequestState::Running:
    return "running";
  case RequestState::Finished:
    return "finished";
  case RequestState::Cancelled:
    return "cancelled";
  case RequestState::Failed:
    return "failed";
  }
  return "unknown";
}

absl::Status validateSampling(const SamplingParams &p, int64_t vocab) {
  if (!std::isfinite(p.temperature))
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be finite but got ", p.temperature));
  if (p.topK < 0 || p.topK > vocab)
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be in [0, ", vocab, "] but got ", p.topK));
  if (!(p.topP > 0.0f && p.topP <= 1.0f))
    return absl::InvalidArgumentError(
        absl::StrCat("top_p must be in (0, 1] but got ", p.topP));
  if (p.maxNewTokens < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1 but got ", p.maxNewTokens));
  for (int32_t id : p.stopIds)
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(absl::StrCat(
          "stop id ", id, " is outside the vocabulary (size ", vocab, ")"));
  return absl::OkStatus();
}

double samplingUniform(uint64_t seed, uint64_t index) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t bits = mix(mix(seed) ^ (index * 0xd1b54a32d192ed03ull));
  return double(bits >> 11) * (1.0 / 9007199254740992.0);
}

int32_t sampleToken(const float *logits, int64_t vocab, const SamplingParams &p,
                    int64_t tokenIndex) {
  if (p.temperature <= 0.0f)
    return static_cast<int32_t>(kernels::cpu::argmax(logits, vocab));
  // Most likely first; ties go to the lower id, as in greedy. A NaN logit
  // counts as -inf so the order stays a strict weak one.
  auto value = [&](int32_t i) {
    return std::isnan(logits[i]) ? -INFINITY : double(logits[i]);
  };
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return value(a) > value(b); });
  if (!std::isfinite(value(order[0])))
    return order[0];
  size_t keep = p.topK > 0 ? static_cast<size_t>(p.topK) : order.size();
  std::vector<double> prob(keep);
  double top = value(order[0]) / p.temperature, sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    prob[i] = std::exp(value(order[i]) / p.temperature - top);
    sum += prob[i];
  }
  // Top-p: the shortest prefix whose mass reaches topP (at least one id).
  double mass = 0;
  size_t cut = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += prob[i] / sum;
    if (mass >= double(p.topP)) {
      cut = i + 1;
      break;
    }
  }
  double kept = std::accumulate(prob.begin(), prob.begin() + cut, 0.0);
  double target = samplingUniform(p.seed, tokenIndex) * kept, acc = 0;
  for (size_t i = 0; i < cut; ++i) {
    acc += prob[i];
    if (target < acc)
      return order[i];
  }
  return order[cut - 1];
}

} // namespace crosspool::runtime
