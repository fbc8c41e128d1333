//===- Linear.h - CPU fp32 linear layers, dense MLP, lm_head ----*- C++ -*-===//
//
// Row-major activations: `x[T, in]` holds T token rows. Weights follow
// PyTorch `nn.Linear`: `W[out, in]`, `y = x W^T + b`.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CPU_LINEAR_H
#define CROSSPOOL_KERNELS_CPU_LINEAR_H

#include <cstdint>

namespace crosspool::kernels::cpu {

/// y[T, out] = x[T, in] W[out, in]^T + bias[out]; `bias` may be null.
/// `y` must not overlap `x` or `w`. Dot products accumulate in double.
void linear(const float *x, const float *w, const float *bias, int64_t T,
            int64_t in, int64_t out, float *y);

/// logits[T, V] = h[T, H] W[V, H]^T (a linear layer without bias).
void lmHead(const float *h, const float *w, int64_t T, int64_t H, int64_t V,
            float *logits);

/// Index of the largest of `row[0..n)`; ties go to the lower index. NaNs are
/// never chosen unless every value is NaN (then 0). Returns -1 when n <= 0.
int64_t argmax(const float *row, int64_t n);

/// Dense SwiGLU MLP: y[T, H] = down(silu(gate x) * up x) with
/// gate, up: [I, H] and down: [H, I]. `y` may alias `x`.
void mlp(const float *x, const float *gate, const float *up, const float *down,
         int64_t T, int64_t H, int64_t I, float *y);

} // namespace crosspool::kernels::cpu

#endif // CROSSPOOL_KERNELS_CPU_LINEAR_H
