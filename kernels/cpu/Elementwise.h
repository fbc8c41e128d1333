//===- Elementwise.h - CPU fp32 embedding, RMSNorm, add, SiLU ---*- C++ -*-===//
#ifndef CROSSPOOL_KERNELS_CPU_ELEMENTWISE_H
#define CROSSPOOL_KERNELS_CPU_ELEMENTWISE_H

#include "absl/status/status.h"

#include <cstdint>

namespace crosspool::kernels::cpu {

/// out[T, H] = table[ids[t], :] for table[V, H]. Every id is checked before
/// anything is written: an id outside [0, V) gives InvalidArgument naming the
/// row and id, and `out` is left untouched.
absl::Status embed(const int32_t *ids, int64_t T, const float *table, int64_t V,
                   int64_t H, float *out);

/// y[t, :] = x[t, :] * rsqrt(mean(x[t, :]^2) + eps) * w, as Hugging Face
/// RMSNorm in fp32 (normalize first, then multiply by the weight).
/// `y` may alias `x`.
void rmsNorm(const float *x, const float *w, float eps, int64_t T, int64_t H,
             float *y);

/// c[i] = a[i] + b[i]; `c` may alias `a` or `b`.
void add(const float *a, const float *b, float *c, int64_t n);

/// x * sigmoid(x), as torch's SiLU in fp32.
float silu(float x);

} // namespace crosspool::kernels::cpu

#endif // CROSSPOOL_KERNELS_CPU_ELEMENTWISE_H
