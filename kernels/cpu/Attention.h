//===- Attention.h - CPU fp32 attention block with paged KV -----*- C++ -*-===//
//
// The `Attention` task of docs/plan-format.md: QKV projections, qk-norm,
// clip, RoPE, paged KV write, causal (optionally sliding-window) GQA softmax
// attention, output projection.
//
// KV page layout (shared with the runtime's KV cache): one page holds
// `tokensPerPage` tokens of one layer of one sequence, a K block
// [tokensPerPage][numKvHeads][headDim] followed by a V block of the same
// shape. Position p lives in page p / tokensPerPage, slot p % tokensPerPage.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CPU_ATTENTION_H
#define CROSSPOOL_KERNELS_CPU_ATTENTION_H

#include "absl/status/status.h"

#include <cstdint>

namespace crosspool::kernels::cpu {

/// Attention weights; null where the model has none. Shapes:
/// q [nh*hd, H], k/v [nkv*hd, H], o [H, nh*hd], biases their out size,
/// qNorm/kNorm [hd] (qkNorm 1) or [nh*hd] / [nkv*hd] (qkNorm 2).
struct AttentionWeights {
  const float *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  const float *qBias = nullptr, *kBias = nullptr, *vBias = nullptr,
              *oBias = nullptr;
  const float *qNorm = nullptr, *kNorm = nullptr;
};

/// Attention parameters (plan `iparams` / `fparams`, plus the hidden size).
struct AttentionParams {
  int64_t hidden = 0;
  int32_t numHeads = 0;
  int32_t numKvHeads = 0;
  int32_t headDim = 0;
  /// 0 none, 1 per head over headDim (Qwen3), 2 over the whole projection
  /// (OLMoE).
  int32_t qkNorm = 0;
  /// 0 = no window; else row at p sees j with p - slidingWindow < j <= p.
  int32_t slidingWindow = 0;
  /// 0 default, 1 linear (positions divided by ropeFactor).
  int32_t ropeType = 0;
  float ropeTheta = 10000.0f;
  float qkNormEps = 1e-6f;
  /// 0 = no clipping; else q, k, v clamped to [-clipQkv, clipQkv] after norm.
  float clipQkv = 0.0f;
  float ropeFactor = 1.0f;
  float softmaxScale = 0.0f;
};

/// One sequence's pages of ONE layer, in position order. Pages must not be
/// shared between sequences.
struct KvSequencePages {
  float *const *pages = nullptr;
  int32_t numPages = 0;
};

/// The KV cache of one layer as seen by one step.
struct KvLayerView {
  /// Indexed by the per-row sequence index.
  const KvSequencePages *seqs = nullptr;
  int32_t numSeqs = 0;
  int32_t tokensPerPage = 0;
  int32_t numKvHeads = 0;
  int32_t headDim = 0;
};

/// Floats in one page: 2 * tokensPerPage * numKvHeads * headDim.
int64_t kvPageFloats(const KvLayerView &kv);

/// Applies Hugging Face rotate_half RoPE in place to `numHeads` heads of
/// `headDim` floats at `vec` for position `pos`: inv_freq[i] =
/// 1 / theta^(2i/hd) (computed in fp32 like HF), divided by `factor` for
/// linear scaling (pass 1 for default), angle = pos * inv_freq[i].
void applyRope(float *vec, int32_t numHeads, int32_t headDim, int64_t pos,
               float theta, float factor);

/// Runs the attention block for T rows: x[T, hidden] -> out[T, hidden].
/// Row t belongs to sequence `rowSeq[t]` (index into kv.seqs) at position
/// `rowPos[t]`. K/V of every row are written into the cache before any row
/// attends; positions j <= p of the sequence not written in this step must
/// have been written by earlier steps. Rows must name distinct (sequence,
/// position) pairs. `out` may alias `x`.
/// Returns InvalidArgument (writing nothing) for inconsistent params, a
/// sequence index out of range, a negative position, a position beyond the
/// sequence's pages, or a null page/weight it needs.
absl::Status attention(const float *x, int64_t T, const AttentionWeights &w,
                       const AttentionParams &p, const int32_t *rowSeq,
                       const int32_t *rowPos, const KvLayerView &kv,
                       float *out);

} // namespace crosspool::kernels::cpu

#endif // CROSSPOOL_KERNELS_CPU_ATTENTION_H
