//===- Elementwise.cpp - CPU fp32 embedding, RMSNorm, add, SiLU -----------===//

#include "kernels/cpu/Elementwise.h"

#include "absl/strings/str_cat.h"

#include <cmath>
#include <cstring>

namespace crosspool::kernels::cpu {

absl::Status embed(const int32_t *ids, int64_t T, const float *table, int64_t V,
                   int64_t H, float *out) {
  for (int64_t t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= V)
      return absl::InvalidArgumentError(
          absl::StrCat("embed: token id ", ids[t], " at row ", t,
                       " is outside the vocabulary [0, ", V, ")"));
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(out + t * H, table + int64_t(ids[t]) * H,
                static_cast<size_t>(H) * sizeof(float));
  return absl::OkStatus();
}

void rmsNorm(const float *x, const float *w, float eps, int64_t T, int64_t H,
             float *y) {
  for (int64_t t = 0; t < T; ++t) {
    const float *xr = x + t * H;
    float *yr = y + t * H;
    double sumSq = 0;
    for (int64_t i = 0; i < H; ++i)
      sumSq += double(xr[i]) * xr[i];
    // HF: variance (fp32 mean), rsqrt in fp32, x * r, then weight * that.
    float variance = float(sumSq / double(H));
    float r = float(1.0 / std::sqrt(double(variance + eps)));
    for (int64_t i = 0; i < H; ++i)
      yr[i] = w[i] * (xr[i] * r);
  }
}

void add(const float *a, const float *b, float *c, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    c[i] = a[i] + b[i];
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

} // namespace crosspool::kernels::cpu
