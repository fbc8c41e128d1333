//===- Attention.cpp - CPU fp32 attention block with paged KV -------------===//

#include "kernels/cpu/Attention.h"

#include "kernels/cpu/Elementwise.h"
#include "kernels/cpu/Linear.h"
#include "kernels/cpu/ParamChecks.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace crosspool::kernels::cpu {
namespace {

absl::Status checkArgs(int64_t T, const AttentionWeights &w,
                       const AttentionParams &p, const int32_t *rowSeq,
                       const int32_t *rowPos, const KvLayerView &kv) {
  if (absl::Status st = checkAttentionParams(p); !st.ok())
    return st;
  if (!w.q || !w.k || !w.v || !w.o)
    return invalidAttention("missing q/k/v/o projection weight");
  if (p.qkNorm != 0 && (!w.qNorm || !w.kNorm))
    return invalidAttention(
        absl::StrCat("qk_norm ", p.qkNorm, " needs q_norm and k_norm weights"));
  if (absl::Status st =
          checkKvGeometry(p, kv.tokensPerPage, kv.numKvHeads, kv.headDim);
      !st.ok())
    return st;
  if (T > 0 && (!rowSeq || !rowPos || (kv.numSeqs > 0 && !kv.seqs)))
    return invalidAttention(
        "missing row sequence/position arrays or sequence pages");
  for (int64_t t = 0; t < T; ++t) {
    int32_t s = rowSeq[t];
    if (s < 0 || s >= kv.numSeqs)
      return invalidAttention(absl::StrCat("row ", t, " names sequence ", s,
                                           " but the step has ", kv.numSeqs));
    int32_t pos = rowPos[t];
    if (pos < 0)
      return invalidAttention(
          absl::StrCat("row ", t, " has negative position ", pos));
    const KvSequencePages &seq = kv.seqs[s];
    int64_t needed = int64_t(pos) / kv.tokensPerPage + 1;
    if (needed > seq.numPages)
      return invalidAttention(
          absl::StrCat("row ", t, " at position ", pos, " needs ", needed,
                       " pages of sequence ", s, " but it has ", seq.numPages));
    if (!seq.pages)
      return invalidAttention(
          absl::StrCat("sequence ", s, " has no page table"));
    for (int64_t pg = 0; pg < needed; ++pg)
      if (!seq.pages[pg])
        return invalidAttention(
            absl::StrCat("page ", pg, " of sequence ", s, " is null"));
  }
  return absl::OkStatus();
}

} // namespace

int64_t kvPageFloats(const KvLayerView &kv) {
  return 2 * int64_t(kv.tokensPerPage) * kv.numKvHeads * kv.headDim;
}

void applyRope(float *vec, int32_t numHeads, int32_t headDim, int64_t pos,
               float theta, float factor) {
  int32_t half = headDim / 2;
  // fp32 like HF: inv_freq = 1 / theta^(2i/hd) (then / factor for linear
  // scaling), angle = inv_freq * float(pos), cos/sin of that fp32 angle.
  std::vector<float> cosv(static_cast<size_t>(half)),
      sinv(static_cast<size_t>(half));
  for (int32_t i = 0; i < half; ++i) {
    float exponent = float(2 * i) / float(headDim);
    float invFreq = 1.0f / std::pow(theta, exponent);
    invFreq /= factor;
    float angle = invFreq * float(pos);
    cosv[static_cast<size_t>(i)] = float(std::cos(double(angle)));
    sinv[static_cast<size_t>(i)] = float(std::sin(double(angle)));
  }
  for (int32_t h = 0; h < numHeads; ++h) {
    float *x = vec + int64_t(h) * headDim;
    for (int32_t i = 0; i < half; ++i) {
      float x1 = x[i], x2 = x[i + half];
      x[i] = x1 * cosv[static_cast<size_t>(i)] +
             (-x2) * sinv[static_cast<size_t>(i)];
      x[i + half] =
          x2 * cosv[static_cast<size_t>(i)] + x1 * sinv[static_cast<size_t>(i)];
    }
  }
}

absl::Status attention(const float *x, int64_t T, const AttentionWeights &w,
                       const AttentionParams &p, const int32_t *rowSeq,
                       const int32_t *rowPos, const KvLayerView &kv,
                       float *out) {
  if (absl::Status st = checkArgs(T, w, p, rowSeq, rowPos, kv); !st.ok())
    return st;
  if (T == 0)
    return absl::OkStatus();

  const int64_t H = p.hidden, hd = p.headDim;
  const int64_t qDim = int64_t(p.numHeads) * hd;
  const int64_t kvDim = int64_t(p.numKvHeads) * hd;
  std::vector<float> q(static_cast<size_t>(T * qDim)),
      k(static_cast<size_t>(T * kvDim)), v(static_cast<size_t>(T * kvDim));
  linear(x, w.q, w.qBias, T, H, qDim, q.data());
  linear(x, w.k, w.kBias, T, H, kvDim, k.data());
  linear(x, w.v, w.vBias, T, H, kvDim, v.data());

  if (p.qkNorm == 1) {
    rmsNorm(q.data(), w.qNorm, p.qkNormEps, T * p.numHeads, hd, q.data());
    rmsNorm(k.data(), w.kNorm, p.qkNormEps, T * p.numKvHeads, hd, k.data());
  } else if (p.qkNorm == 2) {
    rmsNorm(q.data(), w.qNorm, p.qkNormEps, T, qDim, q.data());
    rmsNorm(k.data(), w.kNorm, p.qkNormEps, T, kvDim, k.data());
  }

  if (p.clipQkv > 0) {
    float c = p.clipQkv;
    for (std::vector<float> *buf : {&q, &k, &v})
      for (float &f : *buf)
        f = std::min(std::max(f, -c), c);
  }

  float factor = p.ropeType == 1 ? p.ropeFactor : 1.0f;
  for (int64_t t = 0; t < T; ++t) {
    applyRope(q.data() + t * qDim, p.numHeads, p.headDim, rowPos[t],
              p.ropeTheta, factor);
    applyRope(k.data() + t * kvDim, p.numKvHeads, p.headDim, rowPos[t],
              p.ropeTheta, factor);
  }

  // Write every row before any row attends: one step may carry a whole
  // prompt whose tokens see each other causally.
  const int64_t tpp = kv.tokensPerPage;
  const int64_t blockFloats = tpp * kvDim;
  for (int64_t t = 0; t < T; ++t) {
    const KvSequencePages &seq = kv.seqs[rowSeq[t]];
    float *page = seq.pages[rowPos[t] / tpp];
    int64_t slot = rowPos[t] % tpp;
    std::memcpy(page + slot * kvDim, k.data() + t * kvDim,
                static_cast<size_t>(kvDim) * sizeof(float));
    std::memcpy(page + blockFloats + slot * kvDim, v.data() + t * kvDim,
                static_cast<size_t>(kvDim) * sizeof(float));
  }

  const int64_t group = p.numHeads / p.numKvHeads;
  std::vector<float> heads(static_cast<size_t>(T * qDim));
  std::vector<double> scores, acc(static_cast<size_t>(hd));
  for (int64_t t = 0; t < T; ++t) {
    const KvSequencePages &seq = kv.seqs[rowSeq[t]];
    const int64_t pos = rowPos[t];
    const int64_t lo = p.slidingWindow > 0
                           ? std::max<int64_t>(0, pos - p.slidingWindow + 1)
                           : 0;
    scores.resize(static_cast<size_t>(pos - lo + 1));
    for (int64_t h = 0; h < p.numHeads; ++h) {
      const float *qh = q.data() + t * qDim + h * hd;
      const int64_t kvh = h / group;
      // Scores as HF: fp32 q.k, times the scale, softmax in fp32 (we keep the
      // exponentials and their sum in double).
      float maxScore = -INFINITY;
      for (int64_t j = lo; j <= pos; ++j) {
        const float *kj = seq.pages[j / tpp] + (j % tpp) * kvDim + kvh * hd;
        double d = 0;
        for (int64_t i = 0; i < hd; ++i)
          d += double(qh[i]) * kj[i];
        float s = float(d) * p.softmaxScale;
        scores[static_cast<size_t>(j - lo)] = s;
        maxScore = std::max(maxScore, s);
      }
      double sum = 0;
      for (double &s : scores) {
        s = std::exp(s - double(maxScore));
        sum += s;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = lo; j <= pos; ++j) {
        const float *vj =
            seq.pages[j / tpp] + blockFloats + (j % tpp) * kvDim + kvh * hd;
        double pj = float(scores[static_cast<size_t>(j - lo)] / sum);
        for (int64_t i = 0; i < hd; ++i)
          acc[static_cast<size_t>(i)] += pj * vj[i];
      }
      float *dst = heads.data() + t * qDim + h * hd;
      for (int64_t i = 0; i < hd; ++i)
        dst[i] = float(acc[static_cast<size_t>(i)]);
    }
  }
  // x is no longer read, so out may alias it.
  linear(heads.data(), w.o, w.oBias, T, qDim, H, out);
  return absl::OkStatus();
}

} // namespace crosspool::kernels::cpu
