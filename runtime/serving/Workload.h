//===- Workload.h - Request arrivals for serving replays -------*- C++ -*-===//
//
// Where a replay's requests come from: a CSV trace (the Azure LLM inference
// trace format `TIMESTAMP,ContextTokens,GeneratedTokens`, time-scaled to a
// target rate) or synthetic Gamma arrivals of a chosen burstiness (CV);
// their spread over models (Zipf popularity or one hot model and the rest
// cold); and seeded random prompt ids. All randomness is SplitMix64-based
// and implemented here, so a seed gives the same workload on every platform.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_WORKLOAD_H
#define CROSSPOOL_RUNTIME_SERVING_WORKLOAD_H

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::runtime {

struct TraceEntry {
  double arrival = 0; ///< seconds from the first request
  int64_t promptTokens = 0;
  int64_t outputTokens = 0;
};

/// Parses a trace. The header must be `TIMESTAMP,ContextTokens,
/// GeneratedTokens`; TIMESTAMP is `YYYY-MM-DD HH:MM:SS[.fraction]` or plain
/// seconds; lengths are integers, prompt >= 1 and output >= 1 (a 0-token
/// output cannot be served as a request). Rows must be in time order. CRLF
/// and a missing final newline are accepted. Errors are one line
/// `NAME:LINE: what (expected vs got)`; an empty trace is an error.
absl::StatusOr<std::vector<TraceEntry>> parseTraceCsv(absl::string_view text,
                                                      const std::string &name);
/// Reads `path` and parses it (NotFound naming the path when unreadable).
absl::StatusOr<std::vector<TraceEntry>> loadTraceCsv(const std::string &path);

/// Multiplies arrival times so the trace's mean rate (requests over its
/// span) becomes `rate` requests/s. A one-request trace is left as is.
void scaleToRate(std::vector<TraceEntry> &trace, double rate);

/// Caps every prompt / output length (0 = no cap); returns how many prompts
/// and outputs were cut.
std::pair<int64_t, int64_t> capLengths(std::vector<TraceEntry> &trace,
                                       int64_t maxPrompt, int64_t maxOutput);

/// Caps per model: request i belongs to model[i]; its prompt is cut to
/// maxPrompt[model[i]] (0 = no cap) and its output to maxOutput (0 = none).
/// Returns, per model, how many prompts were cut; *outputsCut counts outputs.
std::vector<int64_t> capLengthsPerModel(std::vector<TraceEntry> &trace,
                                        const std::vector<int> &model,
                                        const std::vector<int64_t> &maxPrompt,
                                        int64_t maxOutput,
                                        int64_t *outputsCut);

/// Deterministic generator (SplitMix64).
class WorkloadRng {
public:
  explicit WorkloadRng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  /// Uniform in [0, 1).
  double uniform();
  /// Uniform integer in [lo, hi].
  int64_t uniformInt(int64_t lo, int64_t hi);
  double normal();
  /// Gamma(shape, scale) by Marsaglia-Tsang.
  double gamma(double shape, double scale);

private:
  uint64_t state_;
};

/// Arrival times (from 0) of `n` requests whose gaps are Gamma with mean
/// 1/rate and coefficient of variation `cv` (shape 1/cv^2; cv 1 = Poisson).
std::vector<double> gammaArrivals(int64_t n, double rate, double cv,
                                  uint64_t seed);

/// How requests spread over models.
struct Popularity {
  enum Kind { Zipf, Cold, Uniform } kind = Zipf;
  /// Zipf: exponent s (model i has weight 1/(i+1)^s). Cold: share of the one
  /// hot model (model 0); the others split the rest evenly.
  double param = 1.0;
};
/// "zipf:S", "cold:F" (0 < F < 1) or "uniform"; InvalidArgument otherwise.
absl::StatusOr<Popularity> parsePopularity(absl::string_view text);
/// Probability of each of `numModels` models.
std::vector<double> popularityShares(const Popularity &p, int numModels);
/// A model index per request drawn from the shares.
std::vector<int> assignModels(int64_t n, const std::vector<double> &shares,
                              uint64_t seed);

/// `length` ids uniform in [0, vocab).
std::vector<int32_t> randomPrompt(WorkloadRng &rng, int64_t length,
                                  int64_t vocab);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_WORKLOAD_H
