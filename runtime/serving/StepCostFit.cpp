//===- StepCostFit.cpp - Online step-time estimate for chunk sizing -------===//

#include "runtime/serving/StepCostFit.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace crosspool::runtime {

StepCostFit::StepCostFit(StepCoefficients prior, double prefillScale,
                         double decodeScale, int64_t window)
    : prior_(prior), fit_(prior), prefillScale_(std::max(1.0, prefillScale)),
      decodeScale_(std::max(1.0, decodeScale)),
      window_(std::max<int64_t>(1, window)) {}

void StepCostFit::add(int64_t prefillTokens, int64_t decodeRows, double us) {
  samples_.push_back({double(prefillTokens), double(decodeRows), us});
  while (int64_t(samples_.size()) > window_)
    samples_.pop_front();
  refit();
}

void StepCostFit::refit() {
  // Normal equations (X^T X + L) c = X^T y + L p, L = w diag(1, S^2, B^2).
  const double w = 1e-3; // the prior's weight, in observations
  const double l[3] = {w, w * prefillScale_ * prefillScale_,
                       w * decodeScale_ * decodeScale_};
  const double p[3] = {prior_.baseUs, prior_.perPrefillTokenUs,
                       prior_.perDecodeRowUs};
  double a[3][4] = {};
  for (int j = 0; j < 3; ++j) {
    a[j][j] = l[j];
    a[j][3] = l[j] * p[j];
  }
  for (const Sample &s : samples_) {
    const double x[3] = {1.0, s.prefill, s.decode};
    for (int j = 0; j < 3; ++j) {
      for (int k = 0; k < 3; ++k)
        a[j][k] += x[j] * x[k];
      a[j][3] += x[j] * s.us;
    }
  }
  // Gaussian elimination with partial pivoting; the matrix is symmetric
  // positive definite (L > 0), so every pivot is nonzero.
  for (int col = 0; col < 3; ++col) {
    int piv = col;
    for (int r = col + 1; r < 3; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[piv][col]))
        piv = r;
    for (int k = 0; k < 4; ++k)
      std::swap(a[col][k], a[piv][k]);
    for (int r = col + 1; r < 3; ++r) {
      double f = a[r][col] / a[col][col];
      for (int k = col; k < 4; ++k)
        a[r][k] -= f * a[col][k];
    }
  }
  double c[3];
  for (int j = 2; j >= 0; --j) {
    double v = a[j][3];
    for (int k = j + 1; k < 3; ++k)
      v -= a[j][k] * c[k];
    c[j] = v / a[j][j];
  }
  fit_.baseUs = std::max(0.0, c[0]);
  fit_.perPrefillTokenUs = std::max(0.0, c[1]);
  fit_.perDecodeRowUs = std::max(0.0, c[2]);
}

int64_t prefillTokenCap(const StepCoefficients &c, double shareUs,
                        int64_t decodeRows, int64_t committedPrefill,
                        int64_t minChunk, int64_t budget) {
  budget = std::max<int64_t>(0, budget);
  if (!(c.perPrefillTokenUs > 0))
    return budget;
  double room = (shareUs - c.predictUs(committedPrefill, decodeRows)) /
                c.perPrefillTokenUs;
  int64_t n = room >= double(budget) ? budget
              : room <= 0            ? 0
                                     : int64_t(std::floor(room));
  return std::min(budget, std::max(n, minChunk));
}

} // namespace crosspool::runtime
