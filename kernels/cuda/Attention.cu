//===- Attention.cu - qk-norm + RoPE + paged KV write, paged attention ----===//
//
// qkNormRopeKvWriteKernel: one block per token row; the row's q and k are
// staged in shared memory so the per-head (Qwen3) or whole-projection (OLMoE)
// RMSNorm, the clip and the rotate_half RoPE run without extra passes over
// global memory. inv_freq comes from the host, computed exactly like the CPU
// kernel (fp32 powf), and cos/sin in double of the fp32 angle as there: a
// one-ulp difference in inv_freq would already move angles at position 5000
// by 3e-4.
//
// attendKernel: flash-style tiled online softmax for both decode and
// prefill. A block owns `rowsPerBlock` consecutive rows x all G query heads
// of one KV head (GQA: every K/V tile is loaded once for G heads) and one
// position split. K/V tiles of kTileK positions come through the page table
// with 16-byte loads issued in batches before use; scores, probabilities and
// the accumulators live in shared memory (no register arrays indexed at run
// time, so no local-memory spills for any head_dim). Splits write partial
// (max, sum, unnormalized acc) and attendReduceKernel merges them.
//
// attendDecodeMmaKernel: the decode case (one row per block) with bf16 KV
// and head_dim 32/64/128 on tensor cores, without shared-memory tiles. Each
// warp takes 16 positions at a time: scores S[heads x 8 keys] = Q K^T by
// mma.sync with K rows loaded straight from the pages (Mma.cuh's permuted-k
// trick), an online softmax in registers (rows across a lane quad), and
// acc[heads x dims] += P V with P reused from the score fragments and V's
// B fragments packed from 16-byte row loads by byte permutes (lane (g, t)
// loads dims [8g, 8g + 8) of keys 2t, 2t + 1, 8 + 2t, 9 + 2t, which is n-tile
// j's column g for the dims 8n + j). The four warps' partial softmaxes are
// merged through shared memory at the end. Rows beyond the G query heads
// of the KV head are zero (m16 tiles; G <= 16).
//
// attendPrefillMmaKernel: the prompt case (bf16 KV, head_dim 32/64/128,
// 16 % G == 0) on the same per-16-key tensor-core step (mmaKeyStep): a warp
// per m16 tile of (position, head) rows, each row masked to its own causal
// / sliding-window range. The default for prompt rows (prefillMmaEnabled);
// attendKernel keeps fp32 and the other shapes.
//
//===----------------------------------------------------------------------===//

#include "kernels/cpu/ParamChecks.h"
#include "kernels/cuda/Common.cuh"
#include "kernels/cuda/Mma.cuh"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace crosspool::kernels::cuda {
namespace {

using detail::bf16;
using detail::fromF;
using detail::toF;

constexpr int kMaxHeadDim = 512;
constexpr int kTileK = 32;
constexpr int kAttnThreads = 128;
constexpr int kRowThreads = 256;

/// inv_freq[i] for i < head_dim / 2, passed by value.
struct RopeTable {
  float invFreq[kMaxHeadDim / 2];
};

/// The device's view of a KvCacheView.
struct KvDev {
  char *base;
  int64_t stride;
  const int32_t *pageTable;
  int32_t maxPages, numSeqs, tpp;
};

/// Byte offset of the K row of position `pos` of sequence `seq` for KV head
/// 0, or -1 when the page is unmapped or beyond the table. `viaL2`: the
/// table entry is read through L2 (__ldcg), for lookups before the PDL wait
/// (the table is stored before the step's first kernel, Common.cuh).
__device__ __forceinline__ int64_t kvRowOffset(const KvDev &kv, int32_t seq,
                                               int32_t pos, int64_t rowBytes,
                                               bool viaL2 = false) {
  if (seq < 0 || seq >= kv.numSeqs || pos < 0)
    return -1;
  int32_t pi = pos / kv.tpp;
  if (pi >= kv.maxPages)
    return -1;
  const int32_t *entry = kv.pageTable + int64_t(seq) * kv.maxPages + pi;
  int32_t id = viaL2 ? __ldcg(entry) : *entry;
  if (id < 0)
    return -1;
  return int64_t(id) * kv.stride + int64_t(pos % kv.tpp) * rowBytes;
}

struct QkArgs {
  int32_t nh, nkv, hd, qkNorm;
  float eps, clip;
  const int32_t *rowSeq, *rowPos;
  KvDev kv;
  /// q and k rows are whole 16-byte chunks, 16-byte aligned.
  bool vec;
};

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    qkNormRopeKvWriteKernel(T *q, const T *__restrict__ k,
                            const T *__restrict__ v,
                            const T *__restrict__ qNorm,
                            const T *__restrict__ kNorm, QkArgs a,
                            RopeTable rope) {
  extern __shared__ float sm[];
  __shared__ double scratch[32];
  detail::pdlEnter();
  const int64_t t = blockIdx.x;
  const int qDim = a.nh * a.hd, kvDim = a.nkv * a.hd, half = a.hd / 2;
  float *sq = sm, *sk = sq + qDim, *sc = sk + kvDim, *ss = sc + half;
  T *qr = q + t * qDim;
  const T *kr = k + t * kvDim, *vr = v + t * kvDim;
  const int32_t pos = a.rowPos[t];

  if (a.vec) {
    // q then k (contiguous in shared memory) in 16-byte chunks, a batch of
    // four per thread issued before any is used: at decode this one block
    // would otherwise wait for one round trip per scalar load.
    constexpr int N = detail::Vec16<T>::kN;
    const int qc = qDim / N, total = qc + kvDim / N;
    for (int base = threadIdx.x; base < total; base += 4 * blockDim.x) {
      uint4 r[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = base + u * int(blockDim.x);
        r[u] = c < qc ? *reinterpret_cast<const uint4 *>(qr + c * N)
               : c < total
                   ? __ldg(reinterpret_cast<const uint4 *>(kr + (c - qc) * N))
                   : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = base + u * int(blockDim.x);
        if (c < total) {
          float f[N];
          detail::unpack16<T>(r[u], f);
#pragma unroll
          for (int j = 0; j < N; ++j)
            sq[c * N + j] = f[j];
        }
      }
    }
  } else {
    for (int i = threadIdx.x; i < qDim; i += blockDim.x)
      sq[i] = toF(qr[i]);
    for (int i = threadIdx.x; i < kvDim; i += blockDim.x)
      sk[i] = toF(kr[i]);
  }
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float angle = rope.invFreq[i] * float(pos);
    sc[i] = float(cos(double(angle)));
    ss[i] = float(sin(double(angle)));
  }
  __syncthreads();

  // qk-norm as cpu::rmsNorm: double sum of squares, fp32 variance.
  if (a.qkNorm == 1) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int hh = warp; hh < a.nh + a.nkv; hh += blockDim.x >> 5) {
      float *x = hh < a.nh ? sq + hh * a.hd : sk + (hh - a.nh) * a.hd;
      const T *w = hh < a.nh ? qNorm : kNorm;
      double s = 0;
      for (int i = lane; i < a.hd; i += 32)
        s += double(x[i]) * double(x[i]);
      s = detail::warpSumD(s);
      float var = float(s / double(a.hd));
      float r = float(1.0 / sqrt(double(var + a.eps)));
      for (int i = lane; i < a.hd; i += 32)
        x[i] = toF(w[i]) * (x[i] * r);
    }
  } else if (a.qkNorm == 2) {
    for (int part = 0; part < 2; ++part) {
      float *x = part == 0 ? sq : sk;
      const T *w = part == 0 ? qNorm : kNorm;
      const int n = part == 0 ? qDim : kvDim;
      double s = 0;
      for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += double(x[i]) * double(x[i]);
      s = detail::blockSumD(s, scratch);
      float var = float(s / double(n));
      float r = float(1.0 / sqrt(double(var + a.eps)));
      for (int i = threadIdx.x; i < n; i += blockDim.x)
        x[i] = toF(w[i]) * (x[i] * r);
    }
  }
  __syncthreads(); // per-head norms were written warp by warp
  if (a.clip > 0) {
    for (int i = threadIdx.x; i < qDim; i += blockDim.x)
      sq[i] = fminf(fmaxf(sq[i], -a.clip), a.clip);
    for (int i = threadIdx.x; i < kvDim; i += blockDim.x)
      sk[i] = fminf(fmaxf(sk[i], -a.clip), a.clip);
  }
  __syncthreads();

  for (int e = threadIdx.x; e < (a.nh + a.nkv) * half; e += blockDim.x) {
    int h = e / half, i = e % half;
    float *x = h < a.nh ? sq + h * a.hd : sk + (h - a.nh) * a.hd;
    float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * sc[i] + (-x2) * ss[i];
    x[i + half] = x2 * sc[i] + x1 * ss[i];
  }
  __syncthreads();

  for (int i = threadIdx.x; i < qDim; i += blockDim.x)
    qr[i] = fromF<T>(sq[i]);
  const int64_t off =
      kvRowOffset(a.kv, a.rowSeq[t], pos, int64_t(kvDim) * sizeof(T));
  if (off < 0)
    return;
  T *kd = reinterpret_cast<T *>(a.kv.base + off);
  T *vd = kd + int64_t(a.kv.tpp) * kvDim;
  for (int i = threadIdx.x; i < kvDim; i += blockDim.x) {
    kd[i] = fromF<T>(sk[i]);
    float vv = toF(vr[i]);
    if (a.clip > 0)
      vv = fminf(fmaxf(vv, -a.clip), a.clip);
    vd[i] = fromF<T>(vv);
  }
}

/// qkNormRopeKvWriteKernel for per-head (or no) qk-norm with one warp per
/// (row, head) instead of one block per row: at decode the block version is
/// one SM walking 36 heads through barriers, ~7 us of a Qwen3 layer in the
/// step, where 36 warps on 9 SMs finish in one load round trip. Lane l holds
/// elements l + 32j (j < NJ = hd / 32) of its head, the order the block
/// kernel sums squares in; RoPE pairs (i, i + hd/2) sit in one lane (NJ
/// even) or, for hd = 32, in lanes l and l ^ 16.
///
/// FULL: the full-projection qk-norm (OLMoE): one block per row, a warp per
/// head (heads <= 32); each warp's sum of squares goes through shared
/// memory and every warp adds the q (or k) heads' sums in head order.
template <typename T, int NJ, bool FULL>
__global__ void __launch_bounds__(FULL ? 1024 : 128)
    qkHeadKernel(T *q, const T *__restrict__ k, const T *__restrict__ v,
                 const T *__restrict__ qNorm, const T *__restrict__ kNorm,
                 int64_t numRows, QkArgs a, RopeTable rope) {
  const int lane = threadIdx.x & 31;
  const int heads = a.nh + a.nkv;
  const int64_t gw =
      int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const bool active = FULL || gw < numRows * heads;
  const int64_t t = gw / heads;
  const int hh = int(gw % heads), kh = hh - a.nh;
  const bool isQ = hh < a.nh;
  constexpr int hd = NJ * 32;
  const int64_t qDim = int64_t(a.nh) * hd, kvDim = int64_t(a.nkv) * hd;
  // Before the wait, off the critical path: the row's position and the KV
  // page lookup (stored before the step's first kernel, read through L2;
  // Common.cuh) and the RoPE cos / sin of this lane's pairs. The q/k/v
  // projection, the direct predecessor, writes none of them.
  constexpr int NP = NJ == 1 ? 1 : NJ / 2; // RoPE pairs per lane
  float rc[NP], rs[NP];
  int32_t pos = 0;
  int64_t off = -1;
  if (active) {
    pos = __ldcg(a.rowPos + t);
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      const float angle =
          rope.invFreq[NJ == 1 ? (lane & 15) : lane + 32 * j] * float(pos);
      rc[j] = float(cos(double(angle)));
      rs[j] = float(sin(double(angle)));
    }
    if (!isQ)
      off = kvRowOffset(a.kv, __ldcg(a.rowSeq + t), pos,
                        kvDim * int64_t(sizeof(T)), /*viaL2=*/true);
  }
  detail::pdlEnter();
  if (!active)
    return;
  T *qr = q + t * qDim + int64_t(hh) * hd;
  const T *src = isQ ? qr : k + t * kvDim + int64_t(kh) * hd;
  float x[NJ];
#pragma unroll
  for (int j = 0; j < NJ; ++j)
    x[j] = toF(src[lane + 32 * j]);
  if constexpr (FULL) {
    __shared__ double part[32];
    double sum = 0;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      sum += double(x[j]) * double(x[j]);
    sum = detail::warpSumD(sum);
    if (lane == 0)
      part[hh] = sum;
    __syncthreads();
    double total = 0;
    for (int h = isQ ? 0 : a.nh; h < (isQ ? a.nh : heads); ++h)
      total += part[h];
    const float var = float(total / double(isQ ? qDim : kvDim));
    const float r = float(1.0 / sqrt(double(var + a.eps)));
    const T *w = isQ ? qNorm + int64_t(hh) * hd : kNorm + int64_t(kh) * hd;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      x[j] = toF(w[lane + 32 * j]) * (x[j] * r);
  } else if (a.qkNorm == 1) {
    const T *w = isQ ? qNorm : kNorm;
    double sum = 0;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      sum += double(x[j]) * double(x[j]);
    sum = detail::warpSumD(sum);
    const float var = float(sum / double(hd));
    const float r = float(1.0 / sqrt(double(var + a.eps)));
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      x[j] = toF(w[lane + 32 * j]) * (x[j] * r);
  }
  if (a.clip > 0)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      x[j] = fminf(fmaxf(x[j], -a.clip), a.clip);
  if constexpr (NJ == 1) {
    // hd 32: element i < 16 pairs with i + 16 in lane i ^ 16.
    const float other = __shfl_xor_sync(0xffffffffu, x[0], 16);
    const float c = rc[0], sn = rs[0];
    x[0] = lane < 16 ? x[0] * c + (-other) * sn : x[0] * c + other * sn;
  } else {
    constexpr int HJ = NJ / 2;
#pragma unroll
    for (int j = 0; j < HJ; ++j) {
      const float c = rc[j], sn = rs[j];
      const float x1 = x[j], x2 = x[j + HJ];
      x[j] = x1 * c + (-x2) * sn;
      x[j + HJ] = x2 * c + x1 * sn;
    }
  }
  if (isQ) {
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      qr[lane + 32 * j] = fromF<T>(x[j]);
    return;
  }
  if (off < 0)
    return;
  T *kd = reinterpret_cast<T *>(a.kv.base + off) + int64_t(kh) * hd;
  T *vd = kd + int64_t(a.kv.tpp) * kvDim;
  const T *vr = v + t * kvDim + int64_t(kh) * hd;
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    kd[lane + 32 * j] = fromF<T>(x[j]);
    float vv = toF(vr[lane + 32 * j]);
    if (a.clip > 0)
      vv = fminf(fmaxf(vv, -a.clip), a.clip);
    vd[lane + 32 * j] = fromF<T>(vv);
  }
}

/// Launches qkHeadKernel when the geometry allows (hd in {32, 64, 128, 256};
/// qk-norm none or per head, or full-projection with at most 32 heads);
/// false otherwise.
template <typename T>
bool launchQkHead(T *q, const T *k, const T *v, const T *qNorm, const T *kNorm,
                  int64_t numRows, const QkArgs &a, const RopeTable &rope,
                  cudaStream_t stream) {
  const int heads = a.nh + a.nkv;
  const bool full = a.qkNorm == 2;
  if (full && heads > 32)
    return false;
  const int64_t warps = numRows * heads;
  const dim3 grid =
      full ? dim3(unsigned(numRows)) : dim3(unsigned((warps + 3) / 4));
  const dim3 block = full ? dim3(unsigned(32 * heads)) : dim3(128);
  auto go = [&](auto kernel) {
    detail::launch(kernel, grid, block, 0, stream, q, k, v, qNorm, kNorm,
                   numRows, a, rope);
    return true;
  };
  switch (a.hd) {
  case 32:
    return full ? go(qkHeadKernel<T, 1, true>) : go(qkHeadKernel<T, 1, false>);
  case 64:
    return full ? go(qkHeadKernel<T, 2, true>) : go(qkHeadKernel<T, 2, false>);
  case 128:
    return full ? go(qkHeadKernel<T, 4, true>) : go(qkHeadKernel<T, 4, false>);
  case 256:
    return full ? go(qkHeadKernel<T, 8, true>) : go(qkHeadKernel<T, 8, false>);
  default:
    return false;
  }
}

struct AttendArgs {
  const void *q;
  void *out;
  float *partAcc, *partMl;
  const int32_t *rowSeq, *rowPos;
  KvDev kv;
  int64_t T;
  int32_t nh, nkv, hd, G, window;
  float scale;
  int32_t rowsPerBlock, numSplits, splitLen;
};

/// Shared-memory floats of attendKernel besides the int row table.
int64_t attendSmemBytes(int32_t rowsPerBlock, int32_t G, int32_t hd) {
  int64_t nq = int64_t(rowsPerBlock) * G;
  int64_t floats =
      2 * nq * hd + int64_t(kTileK) * (2 * hd + 1) + nq * kTileK + 3 * nq;
  int64_t ints = 4 * int64_t(rowsPerBlock) + 1;
  int64_t longs = kTileK;
  return floats * 4 + ints * 4 + 8 + longs * 8;
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(kAttnThreads) attendKernel(AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smRaw[];
  detail::pdlEnter();
  const int BQ = a.rowsPerBlock, G = a.G, hd = a.hd, NQ = BQ * G;
  const int split = blockIdx.x, kvh = blockIdx.y;
  const int64_t t0 = int64_t(blockIdx.z) * BQ;
  const int tid = threadIdx.x, nthr = blockDim.x;

  int64_t *kOff = reinterpret_cast<int64_t *>(smRaw);
  float *Qs = reinterpret_cast<float *>(kOff + kTileK);
  float *acc = Qs + NQ * hd;
  float *Ks = acc + NQ * hd; // rows padded to hd + 1: conflict-free dots
  float *Vs = Ks + kTileK * (hd + 1);
  float *S = Vs + kTileK * hd;
  float *mS = S + NQ * kTileK;
  float *lS = mS + NQ;
  float *alphaS = lS + NQ;
  int32_t *rPos = reinterpret_cast<int32_t *>(alphaS + NQ);
  int32_t *rSeq = rPos + BQ;
  int32_t *rLo = rSeq + BQ;
  int32_t *seqList = rLo + BQ;
  int32_t *numSeqList = seqList + BQ;

  for (int r = tid; r < BQ; r += nthr) {
    int64_t t = t0 + r;
    int32_t pos = -1, seq = -1;
    if (t < a.T) {
      pos = a.rowPos[t];
      seq = a.rowSeq[t];
      if (seq < 0 || seq >= a.kv.numSeqs || pos < 0)
        pos = seq = -1;
    }
    rPos[r] = pos;
    rSeq[r] = seq;
    rLo[r] = a.window > 0 ? max(0, pos - a.window + 1) : 0;
  }
  const int qStride = a.nh * hd;
  const T *q = static_cast<const T *>(a.q);
  for (int e = tid; e < NQ * hd; e += nthr) {
    int qi = e / hd, d = e % hd;
    int64_t t = t0 + qi / G;
    int h = kvh * G + qi % G;
    Qs[e] = t < a.T ? toF(q[t * qStride + h * hd + d]) : 0.0f;
    acc[e] = 0.0f;
  }
  for (int qi = tid; qi < NQ; qi += nthr) {
    mS[qi] = -INFINITY;
    lS[qi] = 0.0f;
  }
  __syncthreads();
  if (tid == 0) {
    int n = 0;
    for (int r = 0; r < BQ; ++r) {
      if (rSeq[r] < 0)
        continue;
      bool seen = false;
      for (int i = 0; i < n; ++i)
        seen |= seqList[i] == rSeq[r];
      if (!seen)
        seqList[n++] = rSeq[r];
    }
    *numSeqList = n;
  }
  __syncthreads();

  const int64_t rowBytes = int64_t(a.nkv) * hd * sizeof(T);
  const int64_t headOff = int64_t(kvh) * hd * sizeof(T);
  const int64_t vOff = int64_t(a.kv.tpp) * rowBytes;
  const int splitBegin = split * a.splitLen;
  const int splitEnd =
      split == a.numSplits - 1 ? INT_MAX : splitBegin + a.splitLen;

  const int nSeq = *numSeqList;
  for (int si = 0; si < nSeq; ++si) {
    const int32_t s = seqList[si];
    int lo = INT_MAX, hi = -1;
    for (int r = 0; r < BQ; ++r)
      if (rSeq[r] == s) {
        lo = min(lo, rLo[r]);
        hi = max(hi, rPos[r]);
      }
    const int begin = max(lo, splitBegin), end = min(hi + 1, splitEnd);
    for (int kt = begin; kt < end; kt += kTileK) {
      if (tid < kTileK) {
        int j = kt + tid;
        kOff[tid] = j < end ? kvRowOffset(a.kv, s, j, rowBytes) : -1;
      }
      __syncthreads();
      if constexpr (VEC) {
        constexpr int N = detail::Vec16<T>::kN;
        const int cr = hd / N, total = kTileK * cr;
        for (int base = 0; base < total; base += 4 * kAttnThreads) {
          uint4 rk[4], rv[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            int e = base + u * kAttnThreads + tid;
            rk[u] = rv[u] = make_uint4(0, 0, 0, 0);
            if (e < total) {
              int64_t off = kOff[e / cr];
              if (off >= 0) {
                const char *p =
                    a.kv.base + off + headOff + int64_t(e % cr) * 16;
                rk[u] = __ldg(reinterpret_cast<const uint4 *>(p));
                rv[u] = __ldg(reinterpret_cast<const uint4 *>(p + vOff));
              }
            }
          }
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            int e = base + u * kAttnThreads + tid;
            if (e < total) {
              int kk = e / cr, c = (e % cr) * N;
              float fk[N], fv[N];
              detail::unpack16<T>(rk[u], fk);
              detail::unpack16<T>(rv[u], fv);
#pragma unroll
              for (int j = 0; j < N; ++j) {
                Ks[kk * (hd + 1) + c + j] = fk[j];
                Vs[kk * hd + c + j] = fv[j];
              }
            }
          }
        }
      } else {
        for (int e = tid; e < kTileK * hd; e += nthr) {
          int kk = e / hd, d = e % hd;
          int64_t off = kOff[kk];
          float kvk = 0.0f, kvv = 0.0f;
          if (off >= 0) {
            const T *p = reinterpret_cast<const T *>(a.kv.base + off + headOff);
            kvk = toF(p[d]);
            kvv = toF(p[vOff / int64_t(sizeof(T)) + d]);
          }
          Ks[kk * (hd + 1) + d] = kvk;
          Vs[kk * hd + d] = kvv;
        }
      }
      __syncthreads();

      for (int i = tid; i < NQ * kTileK; i += nthr) {
        int qi = i / kTileK, kk = i % kTileK, r = qi / G, j = kt + kk;
        float sc = -INFINITY;
        if (rSeq[r] == s && j < end && j <= rPos[r] && j >= rLo[r] &&
            kOff[kk] >= 0) {
          const float *qv = Qs + qi * hd, *kv = Ks + kk * (hd + 1);
          float d0 = 0.0f, d1 = 0.0f;
          int d = 0;
          for (; d + 1 < hd; d += 2) {
            d0 = fmaf(qv[d], kv[d], d0);
            d1 = fmaf(qv[d + 1], kv[d + 1], d1);
          }
          if (d < hd)
            d0 = fmaf(qv[d], kv[d], d0);
          sc = (d0 + d1) * a.scale;
        }
        S[i] = sc;
      }
      __syncthreads();

      for (int qi = tid; qi < NQ; qi += nthr) {
        float *row = S + qi * kTileK;
        float mx = mS[qi];
        for (int kk = 0; kk < kTileK; ++kk)
          mx = fmaxf(mx, row[kk]);
        float alpha = 1.0f, sum = 0.0f;
        if (mx == -INFINITY) {
          for (int kk = 0; kk < kTileK; ++kk)
            row[kk] = 0.0f;
        } else {
          alpha = expf(mS[qi] - mx); // exp(-inf) = 0 on the first tile
          for (int kk = 0; kk < kTileK; ++kk) {
            float pv = expf(row[kk] - mx);
            row[kk] = pv;
            sum += pv;
          }
          mS[qi] = mx;
        }
        lS[qi] = lS[qi] * alpha + sum;
        alphaS[qi] = alpha;
      }
      __syncthreads();

      for (int e = tid; e < NQ * hd; e += nthr) {
        int qi = e / hd, d = e % hd;
        const float *pr = S + qi * kTileK;
        float v0 = acc[e] * alphaS[qi], v1 = 0.0f;
#pragma unroll 8
        for (int kk = 0; kk < kTileK; kk += 2) {
          v0 = fmaf(pr[kk], Vs[kk * hd + d], v0);
          v1 = fmaf(pr[kk + 1], Vs[(kk + 1) * hd + d], v1);
        }
        acc[e] = v0 + v1;
      }
      __syncthreads();
    }
  }

  T *out = static_cast<T *>(a.out);
  for (int e = tid; e < NQ * hd; e += nthr) {
    int qi = e / hd, d = e % hd;
    int64_t t = t0 + qi / G;
    if (t >= a.T)
      continue;
    int h = kvh * G + qi % G;
    if (a.numSplits == 1) {
      float l = lS[qi];
      out[t * qStride + h * hd + d] = fromF<T>(l > 0 ? acc[e] / l : 0.0f);
    } else {
      int64_t slot = (t * a.nh + h) * a.numSplits + split;
      a.partAcc[slot * hd + d] = acc[e];
      if (d == 0) {
        a.partMl[2 * slot] = mS[qi];
        a.partMl[2 * slot + 1] = lS[qi];
      }
    }
  }
}

/// The lane's A fragments of one m16 row of q (a head of head_dim 32 * NC):
/// elements [32c + 8tq, 32c + 8tq + 8) of `row` for every chunk c, the
/// permuted-k layout of Mma.cuh; zeros for a null row.
template <int NC>
__device__ __forceinline__ void qFragments(const bf16 *row, uint4 (&f)[NC]) {
  const int tq = threadIdx.x & 3;
#pragma unroll
  for (int c = 0; c < NC; ++c)
    f[c] = row ? __ldg(reinterpret_cast<const uint4 *>(row + c * 32 + tq * 8))
               : make_uint4(0, 0, 0, 0);
}

/// One 16-key step of the tensor-core attention kernels for the warp's m16
/// tile of query rows (the lane's rows g and g + 8; q fragments qa, qb):
/// K and V of the 16 keys straight from the pages (`offNext`: this lane's
/// key (lane & 15) row offset, or -1; replaced by next() once the loads are
/// issued, so the page-table lookup of the following step overlaps them),
/// S = Q K^T on the tensor cores, the online softmax of rows g and g + 8 in
/// registers (m, l) and acc += P V with V's B fragments from byte permutes.
/// visible(i, row): key i of the lane (2tq, 2tq+1, 8+2tq, 9+2tq) counts for
/// row g (row 0) or g + 8 (row 1); unmapped keys never do.
template <int HD, typename Next, typename Visible>
__device__ __forceinline__ void
mmaKeyStep(const uint4 (&qa)[HD / 32], const uint4 (&qb)[HD / 32],
           const char *kvBase, int64_t vOff, float scale, int64_t &offNext,
           Next next, Visible visible, float (&acc)[HD / 8][4], float &m0,
           float &m1, float &l0, float &l1) {
  constexpr int NC = HD / 32;
  constexpr int DV = HD >= 64 ? 8 : 4;
  constexpr int NG = HD / (8 * DV);
  constexpr int VW = DV / 2;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2, tq = lane & 3;
  const uint4 z = make_uint4(0, 0, 0, 0);
  const int64_t off = offNext;
  const int64_t oK0 = __shfl_sync(0xffffffffu, off, g);
  const int64_t oK1 = __shfl_sync(0xffffffffu, off, g + 8);
  const int64_t oV[4] = {__shfl_sync(0xffffffffu, off, 2 * tq),
                         __shfl_sync(0xffffffffu, off, 2 * tq + 1),
                         __shfl_sync(0xffffffffu, off, 8 + 2 * tq),
                         __shfl_sync(0xffffffffu, off, 9 + 2 * tq)};
  uint4 kA[NC], kB[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    kA[c] = oK0 >= 0 ? __ldg(reinterpret_cast<const uint4 *>(
                           kvBase + oK0 + (c * 32 + tq * 8) * 2))
                     : z;
    kB[c] = oK1 >= 0 ? __ldg(reinterpret_cast<const uint4 *>(
                           kvBase + oK1 + (c * 32 + tq * 8) * 2))
                     : z;
  }
  uint32_t vw[4][NG][VW];
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int gi = 0; gi < NG; ++gi) {
      const char *p = kvBase + vOff + oV[k] + (gi * 8 * DV + g * DV) * 2;
      if constexpr (DV == 8) {
        uint4 v = oV[k] >= 0 ? __ldg(reinterpret_cast<const uint4 *>(p)) : z;
        vw[k][gi][0] = v.x, vw[k][gi][1] = v.y, vw[k][gi][2] = v.z,
        vw[k][gi][3] = v.w;
      } else {
        uint2 v = oV[k] >= 0 ? __ldg(reinterpret_cast<const uint2 *>(p))
                             : make_uint2(0, 0);
        vw[k][gi][0] = v.x, vw[k][gi][1] = v.y;
      }
    }

  offNext = next();
  float s0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    detail::mmaChunk32(s0, qa[c], qb[c], kA[c]);
    detail::mmaChunk32(s1, qa[c], qb[c], kB[c]);
  }
  // Lane's keys: s0[0,1] / s1[0,1] are keys 2tq, 2tq+1, 8+2tq, 9+2tq of
  // row g, s*[2,3] the same keys of row g + 8; visible(i, row) may hide
  // key i from a row (causal and window ranges of prompt rows).
  const float sv[2][4] = {{s0[0], s0[1], s1[0], s1[1]},
                          {s0[2], s0[3], s1[2], s1[3]}};
  float x0[4], x1[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x0[i] = oV[i] >= 0 && visible(i, 0) ? sv[0][i] * scale : -INFINITY;
    x1[i] = oV[i] >= 0 && visible(i, 1) ? sv[1][i] * scale : -INFINITY;
  }
  float mx0 = fmaxf(fmaxf(x0[0], x0[1]), fmaxf(x0[2], x0[3]));
  float mx1 = fmaxf(fmaxf(x1[0], x1[1]), fmaxf(x1[2], x1[3]));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  // Online softmax of one row: new max, rescale factor of the old terms,
  // this step's probabilities (all zero while the row has seen nothing).
  auto online = [](float &m, float mx, const float(&x)[4], float(&p)[4],
                   float &al) {
    const float n = fmaxf(m, mx);
    al = 1.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      p[i] = 0.0f;
    if (n != -INFINITY) {
      al = __expf(m - n);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        p[i] = __expf(x[i] - n);
      m = n;
    }
  };
  float al0, al1, p0[4], p1[4];
  online(m0, mx0, x0, p0, al0);
  online(m1, mx1, x1, p1, al1);
  l0 = l0 * al0 + (p0[0] + p0[1] + p0[2] + p0[3]);
  l1 = l1 * al1 + (p1[0] + p1[1] + p1[2] + p1[3]);
  const uint32_t pa0 = detail::packBf16(p0[0], p0[1]);
  const uint32_t pa1 = detail::packBf16(p1[0], p1[1]);
  const uint32_t pa2 = detail::packBf16(p0[2], p0[3]);
  const uint32_t pa3 = detail::packBf16(p1[2], p1[3]);
#pragma unroll
  for (int gi = 0; gi < NG; ++gi)
#pragma unroll
    for (int j = 0; j < DV; ++j) {
      const int n = gi * DV + j;
      const uint32_t sel = (j & 1) ? 0x7632u : 0x5410u;
      const uint32_t b0 =
          __byte_perm(vw[0][gi][j >> 1], vw[1][gi][j >> 1], sel);
      const uint32_t b1 =
          __byte_perm(vw[2][gi][j >> 1], vw[3][gi][j >> 1], sel);
      acc[n][0] *= al0;
      acc[n][1] *= al0;
      acc[n][2] *= al1;
      acc[n][3] *= al1;
      detail::mma16816(acc[n], pa0, pa1, pa2, pa3, b0, b1);
    }
}

/// See the file comment. HD: head_dim; R2: G > 8 (rows g + 8 are heads).
template <int HD, bool R2>
__global__ void __launch_bounds__(kAttnThreads)
    attendDecodeMmaKernel(AttendArgs a) {
  constexpr int NC = HD / 32;          // 32-dim chunks of q and k
  constexpr int DV = HD >= 64 ? 8 : 4; // dims per lane and V load
  constexpr int NG = HD / (8 * DV);    // V dim groups per lane
  constexpr int NT = HD / 8;           // n-tiles of the output
  constexpr int NW = kAttnThreads / 32;
  __shared__ float accW[NW][16][HD];
  __shared__ float mW[NW][16], lW[NW][16];

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int64_t t = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const int G = a.G;

  // Before the wait: the row's position and its first page lookups (stored
  // before the step's first kernel, read through L2; Common.cuh). The
  // qk-norm / RoPE / KV write before this kernel writes K/V rows, never
  // the table.
  int32_t pos = __ldcg(a.rowPos + t), seq = __ldcg(a.rowSeq + t);
  if (seq < 0 || seq >= a.kv.numSeqs || pos < 0)
    pos = seq = -1;
  const int lo = a.window > 0 ? max(0, pos - a.window + 1) : 0;
  const int splitBegin = split * a.splitLen;
  const int splitEnd =
      split == a.numSplits - 1 ? INT_MAX : splitBegin + a.splitLen;
  const int begin = max(lo, splitBegin), end = min(pos + 1, splitEnd);
  const int64_t rowBytes = int64_t(a.nkv) * HD * 2;
  int64_t offNext = -1;
  {
    const int my = begin + 16 * warp + (lane & 15);
    offNext = my < end ? kvRowOffset(a.kv, seq, my, rowBytes, /*viaL2=*/true)
                       : int64_t(-1);
  }
  detail::pdlEnter();

  // Q fragments of heads g and g + 8 (zero beyond G).
  const bf16 *q = static_cast<const bf16 *>(a.q);
  const int64_t qStride = int64_t(a.nh) * HD;
  uint4 qa[NC], qb[NC];
  qFragments(g < G ? q + t * qStride + int64_t(kvh * G + g) * HD : nullptr, qa);
  qFragments(R2 && g + 8 < G ? q + t * qStride + int64_t(kvh * G + g + 8) * HD
                             : nullptr,
             qb);

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const int64_t headOff = int64_t(kvh) * HD * 2;
  const int64_t vOff = int64_t(a.kv.tpp) * rowBytes;
  const char *kvBase = a.kv.base + headOff;
  const float scale = a.scale;

  // Page-table lookups run one step ahead of the K/V loads that use them.
  for (int kb = begin + 16 * warp; kb < end; kb += 16 * NW)
    mmaKeyStep<HD>(
        qa, qb, kvBase, vOff, scale, offNext,
        [&] {
          const int my = kb + 16 * NW + (lane & 15);
          return my < end ? kvRowOffset(a.kv, seq, my, rowBytes) : int64_t(-1);
        },
        [](int, int) { return true; }, acc, m0, m1, l0, l1);

  // Lane-partial sums over the quad, then the warps' merge.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (tq == 0) {
    mW[warp][g] = m0;
    lW[warp][g] = l0;
    mW[warp][g + 8] = m1;
    lW[warp][g + 8] = l1;
  }
#pragma unroll
  for (int gi = 0; gi < NG; ++gi)
#pragma unroll
    for (int j = 0; j < DV; ++j) {
      const int n = gi * DV + j;
      const int d0 = gi * 8 * DV + (2 * tq) * DV + j;
      const int d1 = gi * 8 * DV + (2 * tq + 1) * DV + j;
      accW[warp][g][d0] = acc[n][0];
      accW[warp][g][d1] = acc[n][1];
      accW[warp][g + 8][d0] = acc[n][2];
      accW[warp][g + 8][d1] = acc[n][3];
    }
  __syncthreads();

  bf16 *out = static_cast<bf16 *>(a.out);
  for (int e = threadIdx.x; e < G * HD; e += kAttnThreads) {
    const int row = e / HD, d = e % HD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w)
      M = fmaxf(M, mW[w][row]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY)
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float f = __expf(mW[w][row] - M); // 0 for an empty warp
        L += lW[w][row] * f;
        O += accW[w][row][d] * f;
      }
    const int h = kvh * G + row;
    if (a.numSplits == 1) {
      out[t * qStride + int64_t(h) * HD + d] =
          __float2bfloat16_rn(L > 0 ? O / L : 0.0f);
    } else {
      const int64_t slot = (t * a.nh + h) * a.numSplits + split;
      a.partAcc[slot * HD + d] = O;
      if (d == 0) {
        a.partMl[2 * slot] = M;
        a.partMl[2 * slot + 1] = L;
      }
    }
  }
}

/// Prompt rows on tensor cores (bf16 KV, head_dim 32/64/128, G | 16): warp
/// w of a block owns one m16 tile of 16 (position, query head) rows, R =
/// 16 / G consecutive positions x the G heads of KV head blockIdx.y (row r:
/// position r / G, head r % G), and walks all keys of its split for them
/// with attendDecodeMmaKernel's per-16-key step (K/V straight from the
/// pages, online softmax in registers), each row masked to its own causal
/// (and sliding-window) range. Rows of different sequences in one tile take
/// one pass per sequence. A block is 4 tiles: rowsPerBlock = 4R, the prompt
/// tiling chooseAttendConfig picks (64 / G rows) for head_dim <= 128. Every
/// lane writes its own rows' outputs: no cross-warp merge.
template <int HD>
__global__ void __launch_bounds__(kAttnThreads)
    attendPrefillMmaKernel(AttendArgs a) {
  constexpr int NC = HD / 32;
  constexpr int DV = HD >= 64 ? 8 : 4;
  constexpr int NG = HD / (8 * DV);
  constexpr int NT = HD / 8;
  detail::pdlEnter();

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const int G = a.G, R = 16 / G;
  const int64_t tw = (int64_t(blockIdx.z) * (kAttnThreads / 32) + warp) * R;
  if (tw >= a.T)
    return; // warp-uniform; no block-wide barrier follows

  // This lane's two rows (g and g + 8 of the tile).
  const int64_t tA = tw + g / G, tB = tw + (g + 8) / G;
  const int hA = kvh * G + g % G, hB = kvh * G + (g + 8) % G;
  auto rowOf = [&](int64_t t, int32_t &seq, int32_t &pos) {
    seq = -1;
    pos = -1;
    if (t < a.T) {
      seq = a.rowSeq[t];
      pos = a.rowPos[t];
      if (seq < 0 || seq >= a.kv.numSeqs || pos < 0)
        seq = pos = -1;
    }
  };
  int32_t seqA, posA, seqB, posB;
  rowOf(tA, seqA, posA);
  rowOf(tB, seqB, posB);

  const bf16 *q = static_cast<const bf16 *>(a.q);
  const int64_t qStride = int64_t(a.nh) * HD;
  uint4 qa[NC], qb[NC];
  qFragments(posA >= 0 ? q + tA * qStride + int64_t(hA) * HD : nullptr, qa);
  qFragments(posB >= 0 ? q + tB * qStride + int64_t(hB) * HD : nullptr, qb);

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const int64_t rowBytes = int64_t(a.nkv) * HD * 2;
  const int64_t vOff = int64_t(a.kv.tpp) * rowBytes;
  const char *kvBase = a.kv.base + int64_t(kvh) * HD * 2;
  const float scale = a.scale;
  const int splitBegin = split * a.splitLen;
  const int splitEnd =
      split == a.numSplits - 1 ? INT_MAX : splitBegin + a.splitLen;
  const int loA = a.window > 0 ? max(0, posA - a.window + 1) : 0;
  const int loB = a.window > 0 ? max(0, posB - a.window + 1) : 0;

  // One pass per distinct sequence among the tile's R positions (usually
  // one). `done`: positions already covered.
  uint32_t done = 0;
  for (int r = 0; r < R; ++r) {
    if (done >> r & 1u)
      continue;
    int32_t S, p0r;
    rowOf(tw + r, S, p0r);
    // Key range of the pass: over the tile's positions in sequence S.
    int kLo = INT_MAX, kHi = -1;
    for (int r2 = r; r2 < R; ++r2) {
      int32_t s2, p2;
      rowOf(tw + r2, s2, p2);
      if (s2 != S)
        continue;
      done |= 1u << r2;
      if (S < 0)
        continue;
      kLo = min(kLo, a.window > 0 ? max(0, p2 - a.window + 1) : 0);
      kHi = max(kHi, p2);
    }
    if (S < 0)
      continue;
    const int begin = max(kLo, splitBegin), end = min(kHi + 1, splitEnd);
    const bool inA = seqA == S, inB = seqB == S;
    int64_t offNext = -1;
    {
      const int my = begin + (lane & 15);
      offNext = my < end ? kvRowOffset(a.kv, S, my, rowBytes) : int64_t(-1);
    }
    for (int kb = begin; kb < end; kb += 16)
      mmaKeyStep<HD>(
          qa, qb, kvBase, vOff, scale, offNext,
          [&] {
            const int my = kb + 16 + (lane & 15);
            return my < end ? kvRowOffset(a.kv, S, my, rowBytes) : int64_t(-1);
          },
          [&](int i, int row) {
            // Key i of the lane: kb + 2tq (+1), kb + 8 + 2tq (+1).
            const int kp = kb + (i >> 1) * 8 + 2 * tq + (i & 1);
            return row == 0 ? inA && kp <= posA && kp >= loA
                            : inB && kp <= posB && kp >= loB;
          },
          acc, m0, m1, l0, l1);
  }

  // Row sums over the lane quad (every lane of the quad gets them).
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  bf16 *out = static_cast<bf16 *>(a.out);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t t = half ? tB : tA;
    const int h = half ? hB : hA;
    const int32_t pos = half ? posB : posA;
    const float m = half ? m1 : m0, l = half ? l1 : l0;
    if (t >= a.T || (half ? (g + 8) : g) >= 16)
      continue;
    const int64_t slot = (t * a.nh + h) * a.numSplits + split;
#pragma unroll
    for (int gi = 0; gi < NG; ++gi)
#pragma unroll
      for (int j = 0; j < DV; ++j) {
        const int n = gi * DV + j;
#pragma unroll
        for (int c2 = 0; c2 < 2; ++c2) {
          const int d = gi * 8 * DV + (2 * tq + c2) * DV + j;
          const float o = acc[n][2 * half + c2];
          if (a.numSplits == 1)
            out[t * qStride + int64_t(h) * HD + d] =
                __float2bfloat16_rn(pos >= 0 && l > 0 ? o / l : 0.0f);
          else
            a.partAcc[slot * HD + d] = o;
        }
      }
    if (a.numSplits > 1 && tq == 0) {
      a.partMl[2 * slot] = m;
      a.partMl[2 * slot + 1] = l;
    }
  }
}

constexpr int kReduceThreads = 512;
static_assert(kMaxHeadDim <= kReduceThreads,
              "attendReduceKernel needs a thread per column");

/// Max (MAX) or sum of `v` over the block, in a fixed order: every thread
/// gets the same bits. blockDim.x is a multiple of 32; `sh` holds a float per
/// warp and may be reused after the call.
template <bool MAX> __device__ float blockReduceFixed(float v, float *sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = MAX ? fmaxf(v, u) : v + u;
  }
  if (lane == 0)
    sh[warp] = v;
  __syncthreads();
  float r = sh[0];
  for (int w = 1; w < nw; ++w)
    r = MAX ? fmaxf(r, sh[w]) : r + sh[w];
  __syncthreads();
  return r;
}

/// Merges the splits of one (row, head): out = sum_s e^(m_s - M) acc_s /
/// sum_s e^(m_s - M) l_s. Parallel over splits: thread (grp, col) of
/// `groups` groups of hd / VW columns sums splits grp, grp + groups, ... of
/// its VW dims, then group 0 adds the groups' sums in order (fixed tree, so
/// deterministic). M and L come from block reductions in a fixed order.
template <typename T, int VW>
__global__ void __launch_bounds__(kReduceThreads)
    attendReduceKernel(const float *__restrict__ partAcc,
                       const float *__restrict__ partMl, int32_t numSplits,
                       int32_t hd, int32_t groups, T *__restrict__ out,
                       bool early) {
  __shared__ float red[kReduceThreads / 32];
  __shared__ float4 grpSum[kReduceThreads];
  detail::pdlEnterEarly(early);
  const int64_t th = blockIdx.x; // t * nh + h
  const int tid = threadIdx.x, nthr = blockDim.x;
  const float *ml = partMl + th * numSplits * 2;
  const int C = hd / VW, grp = tid / C, col = tid - grp * C;
  const float *acc = partAcc + th * numSplits * hd + col * VW;
  auto loadAcc = [&](int s, float (&v)[VW]) {
    if constexpr (VW == 4) {
      const float4 x = *reinterpret_cast<const float4 *>(acc + int64_t(s) * hd);
      v[0] = x.x;
      v[1] = x.y;
      v[2] = x.z;
      v[3] = x.w;
    } else {
      v[0] = acc[int64_t(s) * hd];
    }
  };
  // Every load is issued before the first reduction waits: the thread's
  // split (m, l) and its first kPre acc vectors. Loaded after M and L,
  // they were a third dependent L2 round trip (the one-token kernel
  // timeline, docs/perf.md v9). Same arithmetic, same bits.
  constexpr int kPre = 4;
  float pre[kPre][VW];
  if (grp < groups)
#pragma unroll
    for (int k = 0; k < kPre; ++k)
      if (grp + k * groups < numSplits)
        loadAcc(grp + k * groups, pre[k]);
  const bool oneEach = numSplits <= nthr;
  const float myM = oneEach && tid < numSplits ? ml[2 * tid] : -INFINITY;
  const float myL = oneEach && tid < numSplits ? ml[2 * tid + 1] : 0.0f;

  float m = -INFINITY;
  if (oneEach)
    m = fmaxf(m, myM);
  else
    for (int s = tid; s < numSplits; s += nthr)
      m = fmaxf(m, ml[2 * s]);
  const float M = blockReduceFixed<true>(m, red);
  float l = 0.0f;
  if (M != -INFINITY) {
    if (oneEach) {
      if (tid < numSplits)
        l += myL * expf(myM - M);
    } else {
      for (int s = tid; s < numSplits; s += nthr)
        l += ml[2 * s + 1] * expf(ml[2 * s] - M);
    }
  }
  const float L = blockReduceFixed<false>(l, red);

  float o[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // the first VW are used
  // Split s's term (in split order: the prefetched ones first).
  auto addSplit = [&](int s, const float (&v)[VW]) {
    const float ms = ml[2 * s];
    // An empty split (m = -inf) adds nothing, whatever its acc holds.
    const bool live = ms != -INFINITY;
    const float w = live ? expf(ms - M) : 0.0f;
#pragma unroll
    for (int i = 0; i < VW; ++i)
      o[i] += live ? v[i] * w : 0.0f;
  };
  if (grp < groups && L > 0) {
#pragma unroll
    for (int k = 0; k < kPre; ++k)
      if (grp + k * groups < numSplits)
        addSplit(grp + k * groups, pre[k]);
#pragma unroll 4
    for (int s = grp + kPre * groups; s < numSplits; s += groups) {
      float v[VW];
      loadAcc(s, v);
      addSplit(s, v);
    }
  }
  if (grp < groups)
    grpSum[tid] = make_float4(o[0], o[1], o[2], o[3]);
  __syncthreads();
  if (grp == 0) {
    float r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int g = 0; g < groups; ++g) {
      const float4 x = grpSum[g * C + col];
      r[0] += x.x;
      r[1] += x.y;
      r[2] += x.z;
      r[3] += x.w;
    }
#pragma unroll
    for (int i = 0; i < VW; ++i)
      out[th * hd + col * VW + i] = fromF<T>(L > 0 ? r[i] / L : 0.0f);
  }
}

/// Launches attendReduceKernel: float4 columns when hd allows, and as many
/// split groups as fit kReduceThreads (at most one per split).
template <typename T>
absl::Status launchAttendReduce(const AttendArgs &a, cudaStream_t stream) {
  const bool v4 = a.hd % 4 == 0 && detail::aligned16(a.partAcc);
  const int C = v4 ? a.hd / 4 : a.hd; // <= kMaxHeadDim = kReduceThreads
  const int groups =
      std::max(1, std::min<int>(a.numSplits, kReduceThreads / C));
  const int threads = (C * groups + 31) / 32 * 32;
  T *out = static_cast<T *>(a.out);
  const bool early = earlyTriggerEnabled() && a.T == 1;
  if (v4)
    detail::launch(attendReduceKernel<T, 4>, dim3(unsigned(a.T * a.nh)),
                   dim3(threads), 0, stream, a.partAcc, a.partMl, a.numSplits,
                   a.hd, groups, out, early);
  else
    detail::launch(attendReduceKernel<T, 1>, dim3(unsigned(a.T * a.nh)),
                   dim3(threads), 0, stream, a.partAcc, a.partMl, a.numSplits,
                   a.hd, groups, out, early);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("attendReduceKernel");
  return absl::OkStatus();
}

absl::Status invalid(const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat("attention: ", msg));
}

absl::Status checkParams(const AttentionParams &p) {
  return checkAttentionParams(p, kMaxHeadDim);
}

absl::Status checkKv(const AttentionParams &p, const KvCacheView &kv) {
  if (absl::Status st =
          checkKvGeometry(p, kv.tokensPerPage, kv.numKvHeads, kv.headDim);
      !st.ok())
    return st;
  if (!kv.base || !kv.pageTable || kv.numSeqs <= 0 || kv.maxPagesPerSeq <= 0)
    return invalid(absl::StrCat(
        "KV view needs a base, a page table and positive num_seqs and "
        "max_pages_per_seq but got num_seqs ",
        kv.numSeqs, ", max_pages_per_seq ", kv.maxPagesPerSeq));
  if (kv.pageStrideBytes < kvPageBytes(kv))
    return invalid(absl::StrCat("page stride ", kv.pageStrideBytes,
                                " bytes is below the page size ",
                                kvPageBytes(kv)));
  return absl::OkStatus();
}

KvDev kvDev(const KvCacheView &kv) {
  return KvDev{static_cast<char *>(kv.base),
               kv.pageStrideBytes,
               kv.pageTable,
               kv.maxPagesPerSeq,
               kv.numSeqs,
               kv.tokensPerPage};
}

/// Partial results of the splits: acc [T*nh*splits*hd], (m, l) pairs.
int64_t partAccFloats(int64_t T, const AttentionParams &p,
                      const AttendConfig &c) {
  return c.numSplits > 1 ? T * p.numHeads * c.numSplits * p.headDim : 0;
}
int64_t partMlFloats(int64_t T, const AttentionParams &p,
                     const AttendConfig &c) {
  return c.numSplits > 1 ? T * p.numHeads * c.numSplits * 2 : 0;
}

/// The tensor-core decode kernel for one head_dim, or false when none fits.
bool launchDecodeMma(const AttendArgs &args, dim3 grid, cudaStream_t stream) {
  const bool r2 = args.G > 8;
#define CP_DECODE_MMA(HD)                                                      \
  if (args.hd == HD) {                                                         \
    if (r2)                                                                    \
      detail::launch(attendDecodeMmaKernel<HD, true>, grid,                    \
                     dim3(kAttnThreads), 0, stream, args);                     \
    else                                                                       \
      detail::launch(attendDecodeMmaKernel<HD, false>, grid,                   \
                     dim3(kAttnThreads), 0, stream, args);                     \
    return true;                                                               \
  }
  CP_DECODE_MMA(32)
  CP_DECODE_MMA(64)
  CP_DECODE_MMA(128)
#undef CP_DECODE_MMA
  return false;
}

/// The tensor-core prompt kernel for one head_dim, or false when none fits.
bool launchPrefillMma(const AttendArgs &args, dim3 grid, cudaStream_t stream) {
#define CP_PREFILL_MMA(HD)                                                     \
  if (args.hd == HD) {                                                         \
    detail::launch(attendPrefillMmaKernel<HD>, grid, dim3(kAttnThreads), 0,    \
                   stream, args);                                              \
    return true;                                                               \
  }
  CP_PREFILL_MMA(32)
  CP_PREFILL_MMA(64)
  CP_PREFILL_MMA(128)
#undef CP_PREFILL_MMA
  return false;
}

template <typename T>
absl::Status launchAttend(const AttendArgs &args, bool vec, int64_t smem,
                          dim3 grid, cudaStream_t stream) {
  const bool mmaOk = std::is_same_v<T, bf16> && vec &&
                     detail::aligned16(args.q) && args.G <= 16;
  const bool decodeMma =
      mmaOk && args.rowsPerBlock == 1 && launchDecodeMma(args, grid, stream);
  const bool prefillMma = !decodeMma && mmaOk && 16 % args.G == 0 &&
                          args.rowsPerBlock == 4 * (16 / args.G) &&
                          prefillMmaEnabled() &&
                          launchPrefillMma(args, grid, stream);
  if (decodeMma) {
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("attendDecodeMmaKernel");
  } else if (prefillMma) {
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("attendPrefillMmaKernel");
  } else {
    auto kernel = vec ? attendKernel<T, true> : attendKernel<T, false>;
    CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    detail::launch(kernel, grid, dim3(kAttnThreads), size_t(smem), stream,
                   args);
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("attendKernel");
  }
  if (args.numSplits > 1)
    return launchAttendReduce<T>(args, stream);
  return absl::OkStatus();
}

} // namespace

int64_t kvPageBytes(const KvCacheView &kv) {
  return 2 * int64_t(kv.tokensPerPage) * kv.numKvHeads * kv.headDim *
         dtypeBytes(kv.dtype);
}

absl::Status qkNormRopeKvWrite(void *q, void *k, void *v, int64_t T,
                               const void *qNorm, const void *kNorm,
                               const AttentionParams &p, const int32_t *rowSeq,
                               const int32_t *rowPos, const KvCacheView &kv,
                               cudaStream_t stream) {
  if (absl::Status st = checkParams(p); !st.ok())
    return st;
  if (absl::Status st = checkKv(p, kv); !st.ok())
    return st;
  if (T < 0)
    return invalid(absl::StrCat("expects T >= 0 but got ", T));
  if (T == 0)
    return absl::OkStatus();
  if (!q || !k || !v || !rowSeq || !rowPos)
    return invalid("null q, k, v, row sequence or row position array");
  if (p.qkNorm != 0 && (!qNorm || !kNorm))
    return invalid(
        absl::StrCat("qk_norm ", p.qkNorm, " needs q_norm and k_norm weights"));

  RopeTable rope{};
  const float factor = p.ropeType == 1 ? p.ropeFactor : 1.0f;
  for (int32_t i = 0; i < p.headDim / 2; ++i) {
    // Exactly cpu::applyRope's fp32 arithmetic.
    float exponent = float(2 * i) / float(p.headDim);
    float invFreq = 1.0f / std::pow(p.ropeTheta, exponent);
    invFreq /= factor;
    rope.invFreq[i] = invFreq;
  }
  const int64_t n16 = 16 / dtypeBytes(kv.dtype);
  const bool vec = (int64_t(p.numHeads) * p.headDim) % n16 == 0 &&
                   (int64_t(p.numKvHeads) * p.headDim) % n16 == 0 &&
                   detail::aligned16(q) && detail::aligned16(k);
  QkArgs a{p.numHeads, p.numKvHeads, p.headDim, p.qkNorm,  p.qkNormEps,
           p.clipQkv,  rowSeq,       rowPos,    kvDev(kv), vec};
  int64_t smem = (int64_t(p.numHeads + p.numKvHeads) * p.headDim + p.headDim) *
                 int64_t(sizeof(float));
  const bool perHead =
      kv.dtype == DType::kF32
          ? launchQkHead(static_cast<float *>(q), static_cast<const float *>(k),
                         static_cast<const float *>(v),
                         static_cast<const float *>(qNorm),
                         static_cast<const float *>(kNorm), T, a, rope, stream)
          : launchQkHead(static_cast<bf16 *>(q), static_cast<const bf16 *>(k),
                         static_cast<const bf16 *>(v),
                         static_cast<const bf16 *>(qNorm),
                         static_cast<const bf16 *>(kNorm), T, a, rope, stream);
  if (perHead) {
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("qkHeadKernel");
    return absl::OkStatus();
  }
  if (kv.dtype == DType::kF32) {
    auto kernel = qkNormRopeKvWriteKernel<float>;
    CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    detail::launch(kernel, dim3(unsigned(T)), dim3(kRowThreads), size_t(smem),
                   stream, static_cast<float *>(q),
                   static_cast<const float *>(k), static_cast<const float *>(v),
                   static_cast<const float *>(qNorm),
                   static_cast<const float *>(kNorm), a, rope);
  } else {
    auto kernel = qkNormRopeKvWriteKernel<bf16>;
    CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    detail::launch(kernel, dim3(unsigned(T)), dim3(kRowThreads), size_t(smem),
                   stream, static_cast<bf16 *>(q), static_cast<const bf16 *>(k),
                   static_cast<const bf16 *>(v),
                   static_cast<const bf16 *>(qNorm),
                   static_cast<const bf16 *>(kNorm), a, rope);
  }
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("qkNormRopeKvWriteKernel");
  return absl::OkStatus();
}

AttendConfig chooseAttendConfig(int64_t T, const AttentionParams &p,
                                int32_t maxContext, int32_t numSms,
                                bool oneRowPerBlock) {
  AttendConfig c;
  const int32_t G = std::max(1, p.numHeads / std::max(1, p.numKvHeads));
  // Decode batches hold one row per sequence: a row per block wastes no
  // score work on rows of other sequences. Longer steps are prompts, whose
  // consecutive rows share every K/V tile.
  if (T > 32 && !oneRowPerBlock) {
    int32_t nq = p.headDim <= 128 ? 64 : 32;
    c.rowsPerBlock = std::max(1, nq / G);
  }
  int64_t tiles = (T + c.rowsPerBlock - 1) / c.rowsPerBlock;
  int64_t blocks = std::max<int64_t>(1, tiles * p.numKvHeads);
  // Blocks per SM: measured on an H100 (docs/perf.md), four help long
  // contexts over two (ctx 32K, T=8: 258 -> 225 us; T=1: 51 -> 45 us, the
  // splits merged in parallel by attendReduceKernel), while at ctx 1K, T=8
  // the extra 64-position splits cost more than they hide (15 -> 23 us);
  // below 4K one block per SM beats two (v9, decode steps: OLMoE B1/1K
  // 1.415 -> 1.376 ms with 8 splits of 128 positions instead of 16 of 64,
  // Qwen3-30B-A3B B4 8.58 -> 8.55, Qwen3 B1 unchanged: 16 splits either way).
  int64_t ctx = std::max(1, maxContext);
  int64_t want = (ctx >= 4096 ? 4 : 1) * int64_t(std::max(1, numSms));
  if (blocks < want && ctx > 64) {
    int64_t splits = (want + blocks - 1) / blocks;
    // 64 positions keep a short context's splits worth a block (4 warps x
    // 16) while still spreading 1K positions over 16 blocks per KV head.
    int64_t len = std::max<int64_t>(64, (ctx + splits - 1) / splits);
    len = (len + kTileK - 1) / kTileK * kTileK;
    c.splitLen = int32_t(len);
    c.numSplits = int32_t((ctx + len - 1) / len);
  }
  return c;
}

int64_t attendWorkspaceBytes(int64_t T, const AttentionParams &p,
                             const AttendConfig &c) {
  return detail::workspaceRound(partAccFloats(T, p, c) * 4) +
         detail::workspaceRound(partMlFloats(T, p, c) * 4);
}

AttendPlan planAttend(int64_t T, const AttentionParams &p, int32_t maxContext,
                      int32_t numSms, const AttendRows &rows) {
  AttendPlan plan;
  plan.decodeRows =
      std::clamp<int64_t>(rows.decodeRows, 0, std::max<int64_t>(T, 0));
  if (plan.decodeRows > 0)
    plan.decode = chooseAttendConfig(plan.decodeRows, p, rows.decodeContext,
                                     numSms, /*oneRowPerBlock=*/true);
  if (plan.decodeRows < T)
    plan.prompt =
        chooseAttendConfig(T - plan.decodeRows, p, maxContext, numSms);
  return plan;
}

absl::Status attend(const void *q, int64_t T, const AttentionParams &p,
                    const int32_t *rowSeq, const int32_t *rowPos,
                    const KvCacheView &kv, const AttendConfig &c, void *heads,
                    const BlockContext &ctx) {
  if (absl::Status st = checkParams(p); !st.ok())
    return st;
  if (absl::Status st = checkKv(p, kv); !st.ok())
    return st;
  if (T < 0)
    return invalid(absl::StrCat("expects T >= 0 but got ", T));
  if (T == 0)
    return absl::OkStatus();
  if (!q || !heads || !rowSeq || !rowPos)
    return invalid("null q, output, row sequence or row position array");
  if (c.rowsPerBlock <= 0 || c.numSplits <= 0 || c.splitLen <= 0 ||
      (c.numSplits > 1 && c.splitLen % kTileK != 0))
    return invalid(absl::StrCat(
        "attend config expects positive rows_per_block, num_splits and a "
        "split_len multiple of ",
        kTileK, " but got ", c.rowsPerBlock, ", ", c.numSplits, ", ",
        c.splitLen));
  if (int64_t(c.numSplits) * c.splitLen > int64_t(INT32_MAX) + c.splitLen)
    return invalid("attend config covers more than 2^31 positions");
  const int32_t G = p.numHeads / p.numKvHeads;
  const int64_t smem = attendSmemBytes(c.rowsPerBlock, G, p.headDim);
  if (smem > 227 * 1024)
    return invalid(absl::StrCat("attend tile of ", c.rowsPerBlock, " rows x ",
                                G, " heads x head_dim ", p.headDim, " needs ",
                                smem, " bytes of shared memory (max 232448)"));
  const int64_t need = attendWorkspaceBytes(T, p, c);
  if (ctx.workspaceBytes < need || (need > 0 && !ctx.workspace))
    return invalid(absl::StrCat("attend needs ", need,
                                " bytes of workspace but got ",
                                ctx.workspaceBytes));
  detail::WorkspaceCarver carve(ctx.workspace, ctx.workspaceBytes);
  AttendArgs a{};
  a.q = q;
  a.out = heads;
  a.partAcc = carve.take<float>(partAccFloats(T, p, c));
  a.partMl = carve.take<float>(partMlFloats(T, p, c));
  a.rowSeq = rowSeq;
  a.rowPos = rowPos;
  a.kv = kvDev(kv);
  a.T = T;
  a.nh = p.numHeads;
  a.nkv = p.numKvHeads;
  a.hd = p.headDim;
  a.G = G;
  a.window = p.slidingWindow;
  a.scale = p.softmaxScale;
  a.rowsPerBlock = c.rowsPerBlock;
  a.numSplits = c.numSplits;
  a.splitLen = c.splitLen;
  const int64_t tiles = (T + c.rowsPerBlock - 1) / c.rowsPerBlock;
  if (tiles > 65535)
    return invalid(absl::StrCat("attend: ", tiles,
                                " row tiles exceed the grid limit 65535"));
  dim3 grid(unsigned(c.numSplits), unsigned(p.numKvHeads), unsigned(tiles));
  const int64_t esize = dtypeBytes(kv.dtype);
  const bool vec = (p.headDim * esize) % 16 == 0 &&
                   detail::aligned16(kv.base) && kv.pageStrideBytes % 16 == 0;
  if (kv.dtype == DType::kF32)
    return launchAttend<float>(a, vec, smem, grid, ctx.stream);
  return launchAttend<bf16>(a, vec, smem, grid, ctx.stream);
}

int64_t attentionWorkspaceBytes(int64_t T, const AttentionParams &p,
                                const AttendPlan &plan) {
  // Each buffer is sized for fp32, enough for either storage type. The two
  // attend passes run one after the other on one stream and share theirs.
  const int64_t qDim = int64_t(p.numHeads) * p.headDim;
  const int64_t kvDim = int64_t(p.numKvHeads) * p.headDim;
  const int64_t D = plan.decodeRows;
  return 2 * detail::workspaceRound(T * qDim * 4) +
         2 * detail::workspaceRound(T * kvDim * 4) +
         std::max(D > 0 ? attendWorkspaceBytes(D, p, plan.decode) : 0,
                  D < T ? attendWorkspaceBytes(T - D, p, plan.prompt) : 0);
}

int64_t attentionWorkspaceBytes(int64_t T, const AttentionParams &p,
                                const AttendConfig &c) {
  AttendPlan plan;
  plan.prompt = c;
  return attentionWorkspaceBytes(T, p, plan);
}

absl::Status attention(const void *x, int64_t T, const AttentionWeights &w,
                       const AttentionParams &p, const int32_t *rowSeq,
                       const int32_t *rowPos, const KvCacheView &kv,
                       int32_t maxContext, void *out, const BlockContext &ctx,
                       const AttendRows &rows) {
  if (absl::Status st = checkParams(p); !st.ok())
    return st;
  if (!w.q || !w.k || !w.v || !w.o)
    return invalid("missing q/k/v/o projection weight");
  if (T < 0)
    return invalid(absl::StrCat("expects T >= 0 but got ", T));
  if (rows.decodeRows < 0 || rows.decodeRows > T)
    return invalid(absl::StrCat("expects 0 <= decode rows <= T = ", T,
                                " but got ", rows.decodeRows));
  if (T == 0)
    return absl::OkStatus();
  const AttendPlan plan = planAttend(T, p, maxContext, ctx.numSms, rows);
  const int64_t need = attentionWorkspaceBytes(T, p, plan);
  if (ctx.workspaceBytes < need || !ctx.workspace)
    return invalid(absl::StrCat("attention needs ", need,
                                " bytes of workspace but got ",
                                ctx.workspaceBytes));
  const int64_t qDim = int64_t(p.numHeads) * p.headDim;
  const int64_t kvDim = int64_t(p.numKvHeads) * p.headDim;
  detail::WorkspaceCarver carve(ctx.workspace, ctx.workspaceBytes);
  float *qb = carve.take<float>(T * qDim);
  float *kb = carve.take<float>(T * kvDim);
  float *vb = carve.take<float>(T * kvDim);
  float *hb = carve.take<float>(T * qDim);
  BlockContext rest = ctx;
  rest.workspace = static_cast<char *>(ctx.workspace) + carve.used();
  rest.workspaceBytes = ctx.workspaceBytes - carve.used();
  const DType dt = kv.dtype;
  const int64_t H = p.hidden;
  // q, k and v in one GEMV launch at decode sizes.
  const LinearSeg qkv[3] = {{w.q, w.qBias, qDim, qb},
                            {w.k, w.kBias, kvDim, kb},
                            {w.v, w.vBias, kvDim, vb}};
  CP_RETURN_IF_ERROR(linearMulti(x, T, H, qkv, 3, dt, ctx));
  CP_RETURN_IF_ERROR(qkNormRopeKvWrite(qb, kb, vb, T, w.qNorm, w.kNorm, p,
                                       rowSeq, rowPos, kv, ctx.stream));
  const int64_t D = plan.decodeRows;
  if (D > 0)
    CP_RETURN_IF_ERROR(
        attend(qb, D, p, rowSeq, rowPos, kv, plan.decode, hb, rest));
  if (D < T) {
    const int64_t off = D * qDim * dtypeBytes(dt); // bytes of D rows
    CP_RETURN_IF_ERROR(attend(reinterpret_cast<const char *>(qb) + off, T - D,
                              p, rowSeq + D, rowPos + D, kv, plan.prompt,
                              reinterpret_cast<char *>(hb) + off, rest));
  }
  // x is no longer read, so out may alias it.
  return linear(hb, w.o, w.oBias, T, qDim, H, out, dt, ctx);
}

#ifdef CROSSPOOL_TRACE
CROSSPOOL_TRACE_TU(Attention)
#endif

} // namespace crosspool::kernels::cuda
