//===- StepCostFit.h - Step-time estimate for chunk sizing -----*- C++ -*-===//
//
// The SLO-aware prefill chunk sizing of ServingEngine (Options::tbtTargetMs)
// predicts a step's clock time per model as
//
//   us = baseUs + perPrefillTokenUs * prefillTokens
//        + perDecodeRowUs * decodeRows
//
// fitted from that model's past steps: a least-squares fit over the last
// `window` steps, pulled towards a prior (the cost-model parameters) as if
// the prior were three extra observations of weight w = 1/1000, one of each
// coefficient alone at its scale (a base step, a `prefillScale`-token
// prefill, a `decodeScale`-row decode): minimise
//
//   sum_i (us_i - x_i . c)^2
//     + w ((c0 - p0)^2 + (S (c1 - p1))^2 + (B (c2 - p2))^2)
//
// Before any sample the fit is the prior; a coefficient the samples do not
// determine (e.g. the prefill cost while only decode steps ran) stays at the
// prior; one they do follows the data (the prior weighs w of one sample).
// Deterministic: the same samples give the same coefficients.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_STEPCOSTFIT_H
#define CROSSPOOL_RUNTIME_SERVING_STEPCOSTFIT_H

#include <cstdint>
#include <deque>

namespace crosspool::runtime {

/// Coefficients of the linear step-time model, in microseconds.
struct StepCoefficients {
  double baseUs = 0;
  double perPrefillTokenUs = 0;
  double perDecodeRowUs = 0;

  /// Predicted microseconds of a step of this shape.
  double predictUs(int64_t prefillTokens, int64_t decodeRows) const {
    return baseUs + perPrefillTokenUs * double(prefillTokens) +
           perDecodeRowUs * double(decodeRows);
  }
};

/// The fit over a sliding window of steps (see the file comment).
class StepCostFit {
public:
  StepCostFit() = default;
  /// `prefillScale`, `decodeScale` (>= 1): how strongly the prior holds
  /// each per-row coefficient (e.g. max step tokens, max batch sequences).
  StepCostFit(StepCoefficients prior, double prefillScale, double decodeScale,
              int64_t window = 64);

  /// Records one step of the model: its shape and the clock time it took.
  void add(int64_t prefillTokens, int64_t decodeRows, double us);
  /// The current estimate (the prior before any sample). Coefficients are
  /// clamped to >= 0 (a negative cost is noise, never a prediction).
  const StepCoefficients &coefficients() const { return fit_; }
  const StepCoefficients &prior() const { return prior_; }
  int64_t samples() const { return int64_t(samples_.size()); }

private:
  struct Sample {
    double prefill, decode, us;
  };
  void refit();

  StepCoefficients prior_, fit_;
  double prefillScale_ = 1, decodeScale_ = 1;
  int64_t window_ = 64;
  std::deque<Sample> samples_;
};

/// Prefill tokens a step may carry so that its predicted time stays within
/// `shareUs`:
///   n = floor((shareUs - predictUs(committedPrefill, decodeRows))
///             / perPrefillTokenUs),
/// at least `minChunk` (prefill always progresses), at most `budget` (the
/// rows left in the step). perPrefillTokenUs <= 0 gives `budget` (prefill
/// is predicted free). Result in [min(minChunk, budget), budget].
int64_t prefillTokenCap(const StepCoefficients &c, double shareUs,
                        int64_t decodeRows, int64_t committedPrefill,
                        int64_t minChunk, int64_t budget);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_STEPCOSTFIT_H
