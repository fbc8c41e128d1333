//===- Moe.cu - Router, per-expert grouping, expert FFN, shared expert ----===//
//
// The Moe task in five launches, none needing the host to see the routing:
//   routeKernel     one block per token: fp32 logits, softmax (double sum as
//                   the CPU), top-k by repeated warp argmax (ties -> lower
//                   index), optional renormalization;
//   groupKernel     one block: counting sort of the T*K (token, slot) pairs by
//                   expert, stable, plus the list of active experts;
//   gateUpKernel    grid (I / 8, active-expert slot): a warp per intermediate
//                   row reads that gate row and up row once per group of up
//                   to 8 of the expert's tokens (16-byte loads), writes
//                   silu(g) * u to an fp32 scratch;
//   downKernel      grid (H / 8, slot): a warp per output column reads the
//                   down row once per token group, scales by the routing
//                   weight, writes one fp32 row per (token, slot);
//   combineKernel   per token, sums its K rows in ascending expert order (the
//                   CPU order; deterministic, no float atomics) plus the
//                   sigmoid-gated shared expert.
// Slots beyond the number of active experts exit at once, so the grid is
// sized on the host from min(E, T*K) without a device-to-host copy.
//
// bf16 with hidden and intermediate multiples of 64 uses the tensor-core
// variants (gateUpMmaKernel, downMmaKernel; Mma.cuh): a block owns 8 rows of
// one active expert (gate and up rows together), its warps split the
// reduction dimension, and every selected expert's weights are streamed
// once per 16 of its tokens, all experts in one launch. The router logits
// then come from the same tensor-core GEMV (many blocks instead of one block
// per token re-reading the whole router) and routeKernel only does the
// softmax and top-k. The down projection rounds the fp32 SwiGLU rows to bf16
// for the mma, as a bf16 model's activations are anyway.
//
// Small T (<= 4 rows, T * top_k <= 64; decode) takes a fused path of three
// launches (plus the shared expert's two), so a decode MoE block pays fewer
// launch ramps, tails and dependent-load chains:
//   routeFusedKernel     one block per router row (+ the shared-expert gate):
//                        logits for all T rows; the last block to finish
//                        (threadfence + a self-resetting atomic counter)
//                        does softmax/top-k, the grouping and two small
//                        descriptor tables;
//   gateUp(Mma)Kernel    as above, each grid slot reading one SlotDesc
//                        (expert pointers, rows, offset) instead of the
//                        numActive -> activeList -> experts chain;
//   downCombine(Mma)Kernel  a block owns 8 output rows and sums, for each
//                        row t, its K experts' down projections scaled by the
//                        routing weights in ascending expert order (the
//                        CPU's order; fixed, no atomics), plus the gated
//                        shared expert: no outbuf, no combine launch.
// setMoeFusedEnabled(false) / CROSSPOOL_MOE_FUSED=0 turns it off.
//
// Large T in bf16 (T * top_k >= moeGemmMinPairsPerExpert() * E, E <=
// moeGemmMaxExperts(), stream not capturing) takes the prefill GEMM path
// instead: cuBLAS GEMMs per active expert over its rows gathered in expert
// order (see "Prefill GEMM path").
//
//===----------------------------------------------------------------------===//

#include "kernels/cpu/ParamChecks.h"
#include "kernels/cuda/Common.cuh"
#include "kernels/cuda/Mma.cuh"

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include <algorithm>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace crosspool::kernels::cuda {
namespace detail {
void countMoeGemmCall(); // CudaCheck.cpp
} // namespace detail
namespace {

using detail::bf16;
using detail::fromF;
using detail::toF;
using detail::Vec16;
using detail::warpDots;

constexpr int kWarps = 8;

absl::Status invalid(const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat("moe: ", msg));
}

__device__ __forceinline__ bool al16(const void *p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

__device__ void softmaxTopK(float *probs, int32_t *taken, int32_t E, int32_t K,
                            bool norm, int32_t *idxOut, float *wtsOut);

template <typename T>
__global__ void routeKernel(const T *__restrict__ x,
                            const T *__restrict__ router, int64_t H, int32_t E,
                            int32_t K, bool norm, bool vec, int32_t *idx,
                            float *wts, const float *__restrict__ logits) {
  extern __shared__ float probs[]; // E probabilities, then E taken flags
  int32_t *taken = reinterpret_cast<int32_t *>(probs + E);
  detail::pdlEnter();
  const int64_t t = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T *xr[1] = {x + t * H};
  if (logits) {
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      probs[e] = logits[t * E + e];
      taken[e] = 0;
    }
  }
  for (int e = warp; e < E && !logits; e += blockDim.x >> 5) {
    float acc[1] = {0.0f};
    warpDots<T, T, 1>(router + int64_t(e) * H, xr, 1, H, vec, acc);
    float s = detail::warpSum(acc[0]);
    if (lane == 0) {
      probs[e] = s;
      taken[e] = 0;
    }
  }
  __syncthreads();
  if (warp != 0)
    return;
  softmaxTopK(probs, taken, E, K, norm, idx + t * K, wts + t * K);
}

/// One warp: softmax of the E logits in `probs` (in place; double sum as the
/// CPU), then top-k by repeated warp argmax (ties to the lower index) into
/// idxOut[0..K), wtsOut[0..K) (global or shared), renormalized when `norm`.
/// `taken` (E ints) must be zero.
__device__ void softmaxTopK(float *probs, int32_t *taken, int32_t E, int32_t K,
                            bool norm, int32_t *idxOut, float *wtsOut) {
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32)
    mx = fmaxf(mx, probs[e]);
  mx = detail::warpMax(mx);
  double sum = 0;
  for (int e = lane; e < E; e += 32)
    sum += exp(double(probs[e]) - double(mx));
  sum = detail::warpSumD(sum);
  __syncwarp();
  for (int e = lane; e < E; e += 32)
    probs[e] = float(exp(double(probs[e]) - double(mx)) / sum);
  __syncwarp();
  float total = 0.0f;
  for (int k = 0; k < K; ++k) {
    float best = -INFINITY;
    int bi = E;
    for (int e = lane; e < E; e += 32)
      if (!taken[e] && (probs[e] > best || bi == E)) {
        best = probs[e];
        bi = e;
      }
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, best, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi < E && (bi == E || ov > best || (ov == best && oi < bi))) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      taken[bi] = 1;
      idxOut[k] = bi;
      wtsOut[k] = best;
    }
    total += best; // same order as the CPU's renormalization sum
    __syncwarp();
  }
  if (norm)
    for (int k = lane; k < K; k += 32)
      wtsOut[k] = wtsOut[k] / total;
}

/// softmaxTopK for one row by a whole block (blockDim.x threads, every one
/// calling it): the E double exps in parallel (stored in `dx`, E doubles),
/// summed in softmaxTopK's order, and the top K by rank (an element's rank is
/// how many others have a higher probability, or an equal one at a lower
/// index: the order softmaxTopK's repeated argmax picks in). The same bits
/// as softmaxTopK; a row with a NaN takes softmaxTopK itself (on warp 0,
/// from `logits`, the row before the softmax). One warp doing it all was
/// ~7 us of every Qwen3 layer's routing at T = 1 (eight double exps per
/// lane, then eight dependent argmax rounds). Every warp finds the maximum
/// and the sum itself (each in one fixed order, so all get the same bits),
/// which saves two broadcast barriers, and with 2E <= blockDim.x two threads
/// share an element's comparisons (the kernel timeline had the rank loop at
/// 2.5 of this function's 4.4 us on an H100, docs/perf.md v9).
__device__ void softmaxTopKBlock(const float *logits, float *probs,
                                 int32_t *taken, double *dx, int32_t E,
                                 int32_t K, bool norm, int32_t *idxOut,
                                 float *wtsOut, float *scratch) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int32_t *nanFlag = reinterpret_cast<int32_t *>(scratch + 1);
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32)
    mx = fmaxf(mx, probs[e]);
  mx = detail::warpMax(mx);
  if (tid == 0)
    *nanFlag = 0;
  for (int e = tid; e < E; e += blockDim.x)
    dx[e] = exp(double(probs[e]) - double(mx));
  __syncthreads();
  double sum = 0;
  for (int e = lane; e < E; e += 32)
    sum += dx[e];
  sum = detail::warpSumD(sum);
  for (int e = tid; e < E; e += blockDim.x) {
    const float pe = float(dx[e] / sum);
    probs[e] = pe;
    if (pe != pe)
      *nanFlag = 1;
  }
  __syncthreads();
  if (*nanFlag) {
    if (warp == 0) {
      for (int e = lane; e < E; e += 32) {
        probs[e] = __ldcg(logits + e);
        taken[e] = 0;
      }
      __syncwarp();
      softmaxTopK(probs, taken, E, K, norm, idxOut, wtsOut);
    }
    __syncthreads();
    return;
  }
  // Comparisons of element e against j in [j0, j1), float4 at a time when
  // the bounds allow (probs is 16-byte aligned: the shared memory base).
  auto countAbove = [&](int e, float pe, int j0, int j1) {
    int rank = 0;
    if (j0 % 4 == 0 && j1 % 4 == 0) {
      const float4 *p4 = reinterpret_cast<const float4 *>(probs);
#pragma unroll 8
      for (int j4 = j0 / 4; j4 < j1 / 4; ++j4) {
        const float4 v = p4[j4];
        const int j = 4 * j4;
        // Bitwise, not short-circuit: no branches in the loop.
        rank += int(v.x > pe) | (int(v.x == pe) & int(j < e));
        rank += int(v.y > pe) | (int(v.y == pe) & int(j + 1 < e));
        rank += int(v.z > pe) | (int(v.z == pe) & int(j + 2 < e));
        rank += int(v.w > pe) | (int(v.w == pe) & int(j + 3 < e));
      }
    } else {
      for (int j = j0; j < j1; ++j) {
        const float pj = probs[j];
        rank += int(pj > pe) | (int(pj == pe) & int(j < e));
      }
    }
    return rank;
  };
  if (2 * E <= int(blockDim.x) && E % 8 == 0) {
    // Lanes l and l ^ 16 of a warp share element warp * 16 + (l & 15).
    const int e = warp * 16 + (lane & 15), half = lane >> 4;
    const float pe = e < E ? probs[e] : 0.0f;
    int rank = e < E ? countAbove(e, pe, half * (E / 2), (half + 1) * (E / 2))
                     : 0;
    rank += __shfl_xor_sync(0xffffffffu, rank, 16);
    if (e < E && half == 0 && rank < K) {
      idxOut[rank] = e;
      wtsOut[rank] = pe;
    }
  } else {
    for (int e = tid; e < E; e += blockDim.x) {
      const float pe = probs[e];
      const int rank = countAbove(e, pe, 0, E);
      if (rank < K) {
        idxOut[rank] = e;
        wtsOut[rank] = pe;
      }
    }
  }
  __syncthreads();
  if (norm) {
    float total = 0.0f;
    for (int k = 0; k < K; ++k) // softmaxTopK's order, in every thread
      total += wtsOut[k];
    const float mine = tid < K ? wtsOut[tid] : 0.0f;
    __syncthreads();
    if (tid < K)
      wtsOut[tid] = mine / total;
  }
  __syncthreads();
}

/// Run by one warp (lane 0..31) over the per-expert row counts sc[0, E):
/// exclusive offsets into so[] (and offsets[] / counts[] when not null), the
/// experts that have rows, ascending, into active[], and their number into
/// *numActive (lane 31).
__device__ __forceinline__ void
scanExpertCounts(const int32_t *sc, int E, int lane, int32_t *so,
                 int32_t *offsets, int32_t *counts, int32_t *active,
                 int32_t *numActive) {
  const int per = (E + 31) / 32, lo = min(E, lane * per), hi = min(E, lo + per);
  int32_t sum = 0, act = 0;
  for (int e = lo; e < hi; ++e) {
    sum += sc[e];
    act += sc[e] > 0;
  }
  int32_t incS = sum, incA = act;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t vs = __shfl_up_sync(0xffffffffu, incS, o);
    const int32_t va = __shfl_up_sync(0xffffffffu, incA, o);
    if (lane >= o) {
      incS += vs;
      incA += va;
    }
  }
  int32_t off = incS - sum, a = incA - act;
  for (int e = lo; e < hi; ++e) {
    so[e] = off;
    if (offsets)
      offsets[e] = off;
    if (counts)
      counts[e] = sc[e];
    off += sc[e];
    if (sc[e] > 0)
      active[a++] = e;
  }
  if (lane == 31)
    *numActive = incA;
}

constexpr int kGroupStage = 4096;

/// Stable counting sort of the T*K routed pairs by expert, in shared memory:
/// counts by shared atomics, offsets and the active list by a one-warp scan,
/// then each expert's thread collects its rows in order (from a staged copy
/// of the routing when it fits). A non-null `idxCopy` gets a copy of idx (the
/// caller's routed indices), saving a separate copy launch.
__global__ void groupKernel(const int32_t *__restrict__ idx, int64_t n,
                            int32_t E, int32_t *counts, int32_t *offsets,
                            int32_t *activeList, int32_t *numActive,
                            int32_t *rowsOf, int32_t *__restrict__ idxCopy) {
  extern __shared__ int32_t gsm[]; // E counts, E offsets, staged idx
  int32_t *sc = gsm, *so = gsm + E, *sidx = gsm + 2 * E;
  detail::pdlEnter();
  const bool staged = n <= kGroupStage;
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    sc[e] = 0;
  __syncthreads();
  for (int64_t f = threadIdx.x; f < n; f += blockDim.x) {
    int32_t e = idx[f];
    if (staged)
      sidx[f] = e;
    if (idxCopy)
      idxCopy[f] = e;
    if (e >= 0 && e < E)
      atomicAdd(&sc[e], 1);
  }
  __syncthreads();
  if (threadIdx.x < 32)
    scanExpertCounts(sc, E, threadIdx.x, so, offsets, counts, activeList,
                     numActive);
  __syncthreads();
  if (!rowsOf) // the GEMM path collects the rows with scatterRowsKernel
    return;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    if (sc[e] == 0)
      continue;
    int32_t at = so[e];
    for (int64_t f = 0; f < n; ++f)
      if ((staged ? sidx[f] : idx[f]) == e)
        rowsOf[at++] = int32_t(f);
  }
}

/// groupKernel's rowsOf with one block per expert instead of one thread:
/// block e scans the n routed pairs 256 at a time and appends the matches in
/// ascending flat index (ballot + per-warp counts), so the order is
/// groupKernel's (stable). At prefill sizes (n in the thousands) the serial
/// per-expert scan would take tens of microseconds.
__global__ void __launch_bounds__(256)
    scatterRowsKernel(const int32_t *__restrict__ idx, int64_t n,
                      const int32_t *__restrict__ offsets, int32_t *rowsOf) {
  __shared__ int32_t warpCnt[8];
  __shared__ int32_t base;
  detail::pdlEnter();
  const int e = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0)
    base = offsets[e];
  for (int64_t c0 = 0; c0 < n; c0 += 256) {
    const int64_t f = c0 + threadIdx.x;
    const bool hit = f < n && idx[f] == e;
    const unsigned mask = __ballot_sync(0xffffffffu, hit);
    if (lane == 0)
      warpCnt[warp] = __popc(mask);
    __syncthreads(); // warpCnt and base ready
    int32_t before = 0, total = 0;
    for (int w = 0; w < 8; ++w) {
      before += w < warp ? warpCnt[w] : 0;
      total += warpCnt[w];
    }
    if (hit)
      rowsOf[base + before + __popc(mask & ((1u << lane) - 1u))] = int32_t(f);
    __syncthreads(); // everyone read warpCnt and base
    if (threadIdx.x == 0)
      base += total;
  }
}

/// A grid slot's expert for the fused path: n == 0 = no expert.
struct SlotDesc {
  ExpertPtrs e;
  int32_t n, base;
};

/// One (token, selected expert) pair of the fused path, stored in the
/// combine order (per token, ascending expert index): the expert's down
/// weights, the routing weight and the pair's row in the SwiGLU buffer.
struct PairDesc {
  const void *down;
  float w;
  int32_t pos;
};

/// Which rows a grid slot works on: an active routed expert, or (experts ==
/// null) the shared expert over all T rows.
struct GroupArgs {
  const ExpertPtrs *experts;
  ExpertPtrs single;
  const int32_t *numActive, *activeList, *offsets, *counts, *rowsOf;
  int32_t K;
  int64_t T;
  /// When not null (the fused small-T path): one descriptor per grid slot,
  /// written by routeFusedKernel, instead of the numActive -> activeList ->
  /// experts/counts/offsets chain (one dependent load instead of three).
  const SlotDesc *slots = nullptr;
  /// Expert weights are read once per step (ldWeight).
  bool once = false;
};

__device__ __forceinline__ bool groupOf(const GroupArgs &g, int slot,
                                        ExpertPtrs &e, int64_t &n,
                                        int64_t &base) {
  if (!g.experts) {
    if (slot > 0)
      return false;
    e = g.single;
    n = g.T;
    base = 0;
    return true;
  }
  if (g.slots) {
    const SlotDesc d = g.slots[slot];
    if (d.n <= 0)
      return false;
    e = d.e;
    n = d.n;
    base = d.base;
    return true;
  }
  if (slot >= *g.numActive)
    return false;
  int32_t ex = g.activeList[slot];
  e = g.experts[ex];
  n = g.counts[ex];
  base = g.offsets[ex];
  return true;
}

/// (token, slot) flat index of the j-th row of a group.
__device__ __forceinline__ int64_t flatRow(const GroupArgs &g, int64_t base,
                                           int64_t j) {
  return g.experts ? g.rowsOf[base + j] : j;
}

/// One token: four blocks per SM (64 registers, no spills) instead of three
/// (78): a third more loads in flight; Qwen3-30B-A3B B1/1K 3.515 -> 3.481 ms
/// on an H100 (a warp per gate or up row instead, 3.475 -> 3.493, and five
/// blocks, which spill, were not kept).
template <typename T, int TB>
__global__ void __launch_bounds__(kWarps * 32, TB == 1 ? 4 : 2)
    gateUpKernel(const T *__restrict__ x, int64_t H, int64_t I, GroupArgs g,
                 float *__restrict__ hbuf) {
  detail::pdlEnter();
  ExpertPtrs e;
  int64_t n, base;
  if (!groupOf(g, blockIdx.y, e, n, base))
    return;
  const int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (i >= I || !e.gate || !e.up)
    return;
  const T *gw = static_cast<const T *>(e.gate) + i * H;
  const T *uw = static_cast<const T *>(e.up) + i * H;
  const bool vec = H % Vec16<T>::kN == 0 && al16(gw) && al16(uw) && al16(x);
  const int K = g.experts ? g.K : 1;
  for (int64_t r0 = 0; r0 < n; r0 += TB) {
    const int nt = n - r0 < TB ? int(n - r0) : TB;
    const T *xr[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      xr[tt] = x + (tt < nt ? flatRow(g, base, r0 + tt) / K : 0) * H;
    float ag[TB], au[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      ag[tt] = au[tt] = 0.0f;
    warpDots<T, T, TB>(gw, xr, nt, H, vec, ag, g.once);
    warpDots<T, T, TB>(uw, xr, nt, H, vec, au, g.once);
#pragma unroll
    for (int tt = 0; tt < TB; ++tt) {
      float gs = detail::warpSum(ag[tt]), us = detail::warpSum(au[tt]);
      if ((threadIdx.x & 31) == 0 && tt < nt)
        hbuf[(base + r0 + tt) * I + i] = gs / (1.0f + expf(-gs)) * us;
    }
  }
}

template <typename T, int TB>
__global__ void __launch_bounds__(kWarps * 32, 2)
    downKernel(const float *__restrict__ hbuf, int64_t H, int64_t I,
               GroupArgs g, const float *__restrict__ rowWeight,
               float *__restrict__ outbuf) {
  detail::pdlEnter();
  ExpertPtrs e;
  int64_t n, base;
  if (!groupOf(g, blockIdx.y, e, n, base))
    return;
  const int64_t o = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (o >= H || !e.down)
    return;
  const T *dw = static_cast<const T *>(e.down) + o * I;
  const bool vec = I % Vec16<T>::kN == 0 && al16(dw) && al16(hbuf);
  for (int64_t r0 = 0; r0 < n; r0 += TB) {
    const int nt = n - r0 < TB ? int(n - r0) : TB;
    const float *xr[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      xr[tt] = hbuf + (base + r0 + (tt < nt ? tt : 0)) * I;
    float acc[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      acc[tt] = 0.0f;
    warpDots<T, float, TB>(dw, xr, nt, I, vec, acc, g.once);
#pragma unroll
    for (int tt = 0; tt < TB; ++tt) {
      float s = detail::warpSum(acc[tt]);
      if ((threadIdx.x & 31) == 0 && tt < nt) {
        int64_t f = flatRow(g, base, r0 + tt);
        outbuf[f * H + o] = rowWeight ? s * rowWeight[f] : s;
      }
    }
  }
}

/// gateUpKernel on tensor cores (bf16, H % 64 == 0): 8 rows of gate and of
/// up per block, W warps over H. HALF: every group has at most 8 rows (the
/// launch's T <= 8), so the mma's rows g + 8 are constant zeros: the
/// compiler drops their loads and registers (118 -> under 85 per thread), and
/// three 256-thread blocks fit an SM instead of two (50 % more weight bytes
/// in flight per SM, 768 blocks of a decode step in two waves, not three).
template <int W, bool HALF>
__global__ void __launch_bounds__(W * 32, HALF ? 768 / (W * 32) : 1)
    gateUpMmaKernel(const bf16 *__restrict__ x, int64_t H, int64_t I,
                    GroupArgs g, float *__restrict__ hbuf) {
  __shared__ float red[2 * W * 4 * 32];
  const int64_t n0 = int64_t(blockIdx.x) * 8;
  // Request the block's weight rows as early as they are known: the shared
  // expert's (g.experts == null) before the PDL wait, as a GEMV's; a routed
  // expert's once its slot is read, while the token rows are still being
  // looked up (rowsOf -> x is two more dependent loads).
  const int64_t pfBytes = n0 < I ? (I - n0 < 8 ? I - n0 : 8) * H * 2 : 0;
  if (!g.experts && blockIdx.y == 0 && pfBytes > 0 && g.single.gate &&
      g.single.up) {
    detail::prefetchL2(static_cast<const bf16 *>(g.single.gate) + n0 * H,
                       pfBytes);
    detail::prefetchL2(static_cast<const bf16 *>(g.single.up) + n0 * H,
                       pfBytes);
  }
  detail::pdlEnter();
  ExpertPtrs e;
  int64_t n, base;
  if (!groupOf(g, blockIdx.y, e, n, base) || !e.gate || !e.up)
    return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gq = lane >> 2, t = lane & 3;
  const int64_t row = n0 + gq;
  const bf16 *gw = static_cast<const bf16 *>(e.gate);
  const bf16 *uw = static_cast<const bf16 *>(e.up);
  if (g.experts && pfBytes > 0) {
    detail::prefetchL2(gw + n0 * H, pfBytes);
    detail::prefetchL2(uw + n0 * H, pfBytes);
  }
  const bool wal = al16(gw) && al16(uw);
  const bf16 *wr[2] = {row < I ? gw + row * H + t * 16 : nullptr,
                       row < I ? uw + row * H + t * 16 : nullptr};
  const int K = g.experts ? g.K : 1;
  for (int64_t m0 = 0; m0 < n; m0 += 16) {
    const bf16 *xg = m0 + gq < n
                         ? x + (flatRow(g, base, m0 + gq) / K) * H + t * 16
                         : nullptr;
    const bf16 *xh = !HALF && m0 + gq + 8 < n
                         ? x + (flatRow(g, base, m0 + gq + 8) / K) * H + t * 16
                         : nullptr;
    float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    detail::tileDots<2, W, bf16>(xg, xh, wr, wal, true, int(H / 64), warp, c,
                                 g.once);
    detail::reduceTiles<2, W>(c, red);
    if (warp == 0)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t j = m0 + gq + (r >= 2 ? 8 : 0);
        const int64_t i = n0 + 2 * t + (r & 1);
        const float gs = c[0][r], us = c[1][r];
        if (j < n && i < I)
          hbuf[(base + j) * I + i] = gs / (1.0f + expf(-gs)) * us;
      }
  }
}

/// downKernel on tensor cores (bf16 weights, I % 64 == 0). (No HALF variant
/// as gateUpMmaKernel's: its fp32 activation loads need the registers, and
/// capped at 85 it spills.)
template <int W>
__global__ void __launch_bounds__(W * 32)
    downMmaKernel(const float *__restrict__ hbuf, int64_t H, int64_t I,
                  GroupArgs g, const float *__restrict__ rowWeight,
                  float *__restrict__ outbuf) {
  __shared__ float red[W * 4 * 32];
  const int64_t n0 = int64_t(blockIdx.x) * 8;
  const int64_t pfBytes = n0 < H ? (H - n0 < 8 ? H - n0 : 8) * I * 2 : 0;
  // The shared expert's rows before the wait (see gateUpMmaKernel).
  if (!g.experts && blockIdx.y == 0 && pfBytes > 0 && g.single.down)
    detail::prefetchL2(static_cast<const bf16 *>(g.single.down) + n0 * I,
                       pfBytes);
  detail::pdlEnter();
  ExpertPtrs e;
  int64_t n, base;
  if (!groupOf(g, blockIdx.y, e, n, base) || !e.down)
    return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gq = lane >> 2, t = lane & 3;
  const int64_t row = n0 + gq;
  const bf16 *dw = static_cast<const bf16 *>(e.down);
  if (g.experts && pfBytes > 0)
    detail::prefetchL2(dw + n0 * I, pfBytes);
  const bf16 *wr[1] = {row < H ? dw + row * I + t * 16 : nullptr};
  const bool wal = al16(dw), xal = al16(hbuf);
  for (int64_t m0 = 0; m0 < n; m0 += 16) {
    const float *xg =
        m0 + gq < n ? hbuf + (base + m0 + gq) * I + t * 16 : nullptr;
    const float *xh =
        m0 + gq + 8 < n ? hbuf + (base + m0 + gq + 8) * I + t * 16 : nullptr;
    float c[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    detail::tileDots<1, W, float>(xg, xh, wr, wal, xal, int(I / 64), warp, c,
                                  g.once);
    detail::reduceTiles<1, W>(c, red);
    if (warp == 0)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t j = m0 + gq + (r >= 2 ? 8 : 0);
        const int64_t o = n0 + 2 * t + (r & 1);
        if (j < n && o < H) {
          const int64_t f = flatRow(g, base, j);
          outbuf[f * H + o] = rowWeight ? c[0][r] * rowWeight[f] : c[0][r];
        }
      }
  }
}

/// Warps per block of the mma kernels: split `len / 64` chunks so each warp
/// has a few, at most 8 warps.
int mmaWarps(int64_t len) {
  const int64_t chunks = len / 64;
  return chunks >= 16 ? 8 : 4;
}

template <typename T>
__global__ void
combineKernel(const int32_t *__restrict__ idx, const float *__restrict__ outbuf,
              const float *__restrict__ sharedOut,
              const float *__restrict__ gateLogit, int32_t K, int64_t H, T *y) {
  extern __shared__ int32_t rowIdx[];
  detail::pdlEnter();
  const int64_t t = blockIdx.x;
  for (int k = threadIdx.x; k < K; k += blockDim.x)
    rowIdx[k] = idx[t * K + k];
  __syncthreads();
  float f = 1.0f;
  if (gateLogit)
    f = 1.0f / (1.0f + expf(-gateLogit[t]));
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.0f;
    int prev = -1;
    for (int step = 0; step < K; ++step) {
      int bk = -1, be = INT_MAX;
      for (int k = 0; k < K; ++k)
        if (rowIdx[k] > prev && rowIdx[k] < be) {
          be = rowIdx[k];
          bk = k;
        }
      if (bk < 0)
        break;
      acc += outbuf[(t * K + bk) * H + c];
      prev = be;
    }
    if (sharedOut)
      acc += f * sharedOut[t * H + c];
    y[t * H + c] = fromF<T>(acc);
  }
}

//===----------------------------------------------------------------------===//
// Fused small-T path (T <= kFusedMaxT): routeFusedKernel, the expert gate/up
// kernels reading SlotDescs, and downCombine*Kernel (down projection, routing
// weights, shared expert and the per-token sum in one launch).
//===----------------------------------------------------------------------===//

constexpr int kFusedMaxT = 4;
constexpr int kFusedMaxPairs = 64;
constexpr int kFusedThreads = 256;

/// Last-block counters of routeFusedKernel, one per workspace (see
/// routeCounterSlot). Zero at module load; every launch leaves its counter
/// at zero again (atomicInc wraps at gridDim.x - 1), so graph replays need
/// no reset.
constexpr int kRouteCounters = 1024;
__device__ unsigned int gRouteCounters[kRouteCounters];

struct RouteFusedArgs {
  const void *x, *router, *sharedGate;
  const ExpertPtrs *experts;
  int64_t H;
  int32_t E, K, T, numSlots;
  bool norm, vec;
  float *logits, *gateLogit, *wts;
  int32_t *idx, *routedCopy, *rowsOf;
  SlotDesc *slots;
  PairDesc *pairs;
  int32_t counter;
  bool blockTopK; ///< T == 1 routing by the whole block (routeBlockEnabled)
};

/// Float offset of the staged expert table in routeFusedKernel's dynamic
/// shared memory (after 2TE + 3E + 3TK 4-byte words, 16-byte aligned).
__host__ __device__ inline int64_t routeFusedExpertsOffset(int64_t T, int64_t E,
                                                           int64_t K) {
  return (2 * T * E + 3 * E + 3 * T * K + 3) / 4 * 4;
}

/// Grid E (+1 with a shared-expert gate): block b computes the router logit
/// of expert b (the gate logit for b == E) for all T rows, the 256 threads
/// splitting H and summing in a fixed order; the router row is prefetched to
/// L2 before the PDL wait. The last block to
/// finish (threadfence + atomic counter) does softmax/top-k per row, the
/// grouping by expert (rowsOf, one SlotDesc per grid slot of the gate/up
/// kernel) and the PairDescs of the down/combine kernel.
template <typename TX>
__global__ void __launch_bounds__(kFusedThreads)
    routeFusedKernel(RouteFusedArgs a) {
  constexpr int N = Vec16<TX>::kN;
  extern __shared__ float fsm[];
  __shared__ float red[kFusedThreads / 32][kFusedMaxT];
  __shared__ int32_t amLast, sNumAct;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = blockIdx.x;
  const int64_t H = a.H;
  const TX *row = b < a.E ? static_cast<const TX *>(a.router) + int64_t(b) * H
                          : static_cast<const TX *>(a.sharedGate);
  const TX *x = static_cast<const TX *>(a.x);
  const int64_t chunks = a.vec ? H / N : 0;
  // Only a prefetch before the wait: a hint is correct even if the weights
  // were written by a kernel that has not completed yet.
  detail::prefetchL2(row, H * int64_t(sizeof(TX)));
  // The expert table (copied in once at load; no kernel writes it) goes to
  // shared memory before the wait, in every block, since any may be the
  // last: read by the last block after the handshake it was one more L2
  // round trip on the chain (H100, one card, final kernels: Qwen3-30B-A3B
  // B1/1K 3.399 -> 3.365 ms, B4 8.39 -> 8.37; docs/perf.md v9).
  ExpertPtrs *sEx = reinterpret_cast<ExpertPtrs *>(
      fsm + routeFusedExpertsOffset(a.T, a.E, a.K));
  for (int e = tid; e < a.E; e += kFusedThreads)
    sEx[e] = a.experts[e];
  detail::pdlEnter();

  float acc[kFusedMaxT];
#pragma unroll
  for (int t = 0; t < kFusedMaxT; ++t)
    acc[t] = 0.0f;
  if (a.vec) {
    for (int64_t c = tid; c < chunks; c += kFusedThreads) {
      float wv[N];
      detail::unpack16<TX>(__ldg(reinterpret_cast<const uint4 *>(row) + c), wv);
#pragma unroll
      for (int t = 0; t < kFusedMaxT; ++t)
        if (t < a.T) {
          float xv[N];
          detail::loadVec<TX, N>(x + t * H + c * N, xv);
#pragma unroll
          for (int j = 0; j < N; ++j)
            acc[t] = fmaf(xv[j], wv[j], acc[t]);
        }
    }
  } else {
    for (int64_t i = tid; i < H; i += kFusedThreads) {
      const float wv = toF(row[i]);
#pragma unroll
      for (int t = 0; t < kFusedMaxT; ++t)
        if (t < a.T)
          acc[t] = fmaf(toF(x[t * H + i]), wv, acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < kFusedMaxT; ++t) {
    const float v = detail::warpSum(acc[t]);
    if (lane == 0)
      red[warp][t] = v;
  }
  __syncthreads();
  if (tid < a.T) {
    float v = 0.0f;
    for (int w = 0; w < kFusedThreads / 32; ++w) // fixed order
      v += red[w][tid];
    if (b < a.E)
      a.logits[tid * a.E + b] = v;
    else
      a.gateLogit[tid] = v;
    // Visible before the counter moves (at one row thread 0 wrote it, and
    // its release below orders it).
    if (a.T > 1)
      __threadfence();
  }
  __syncthreads();
  if (tid == 0) {
    unsigned prev;
    if (a.T == 1) {
      // acq_rel: releases this block's logit, and the last block acquires
      // every other block's (its threads read them after the barrier). The
      // two full fences around a plain atomic below cost ~1 us of the
      // one-token route's critical path (H100 kernel timeline).
      asm volatile("atom.acq_rel.gpu.global.inc.u32 %0, [%1], %2;"
                   : "=r"(prev)
                   : "l"(&gRouteCounters[a.counter]), "r"(gridDim.x - 1)
                   : "memory");
    } else {
      prev = atomicInc(&gRouteCounters[a.counter], gridDim.x - 1);
    }
    amLast = prev == gridDim.x - 1;
  }
  __syncthreads();
  if (!amLast)
    return;
  if (a.T > 1)
    __threadfence();

  // The last block: routing, grouping, pair list.
  const int E = a.E, K = a.K, T = a.T, n = T * K;
  float *probs = fsm;                                          // T*E
  int32_t *taken = reinterpret_cast<int32_t *>(probs + T * E); // T*E
  int32_t *sc = taken + T * E, *so = sc + E, *sAct = so + E;   // E each
  int32_t *sIdx = sAct + E, *sPos = sIdx + n;                  // n each
  float *sW = reinterpret_cast<float *>(sPos + n);             // n
  for (int i = tid; i < T * E; i += kFusedThreads) {
    probs[i] = __ldcg(a.logits + i);
    taken[i] = 0;
  }
  __syncthreads();
  // One row: the whole block; more rows: a warp each (in parallel, which
  // beats rows one after another through the block version).
  if (T == 1 && a.blockTopK) {
    double *dx = reinterpret_cast<double *>(sEx + E); // E
    softmaxTopKBlock(a.logits, probs, taken, dx, E, K, a.norm, sIdx, sW,
                     &red[0][0]);
  } else {
    if (warp < T)
      softmaxTopK(probs + warp * E, taken + warp * E, E, K, a.norm,
                  sIdx + warp * K, sW + warp * K);
    __syncthreads();
  }
  if (T == 1 && a.blockTopK) {
    // One row: each selected expert has one routed row, so the grouping is
    // the K experts in ascending order, one phase instead of counts, scan
    // and collection (the same descriptors as below).
    for (int f = tid; f < K; f += kFusedThreads) {
      const int e = sIdx[f];
      int r = 0; // position of e among the row's (distinct) experts
      for (int j = 0; j < K; ++j)
        r += sIdx[j] < e;
      a.idx[f] = e;
      a.wts[f] = sW[f];
      if (a.routedCopy)
        a.routedCopy[f] = e;
      a.rowsOf[r] = f;
      a.slots[r] = SlotDesc{sEx[e], 1, r};
      a.pairs[r] = PairDesc{sEx[e].down, sW[f], r};
    }
    for (int sl = K + tid; sl < a.numSlots; sl += kFusedThreads)
      a.slots[sl] = SlotDesc{};
    return;
  }
  for (int f = tid; f < n; f += kFusedThreads) {
    a.idx[f] = sIdx[f];
    a.wts[f] = sW[f];
    if (a.routedCopy)
      a.routedCopy[f] = sIdx[f];
  }
  for (int e = tid; e < E; e += kFusedThreads) {
    int32_t c = 0;
    for (int f = 0; f < n; ++f)
      c += sIdx[f] == e;
    sc[e] = c;
  }
  __syncthreads();
  if (warp == 0)
    scanExpertCounts(sc, E, lane, so, nullptr, nullptr, sAct, &sNumAct);
  __syncthreads();
  for (int e = tid; e < E; e += kFusedThreads) {
    if (sc[e] == 0)
      continue;
    int32_t at = so[e];
    for (int f = 0; f < n; ++f) // ascending flat index: stable
      if (sIdx[f] == e) {
        a.rowsOf[at] = f;
        sPos[f] = at++;
      }
  }
  __syncthreads();
  for (int sl = tid; sl < a.numSlots; sl += kFusedThreads) {
    SlotDesc d{};
    if (sl < sNumAct) {
      const int e = sAct[sl];
      d.e = sEx[e];
      d.n = sc[e];
      d.base = so[e];
    }
    a.slots[sl] = d;
  }
  for (int f = tid; f < n; f += kFusedThreads) {
    const int t = f / K, e = sIdx[f];
    int rank = 0; // a row's K experts are distinct
    for (int k = 0; k < K; ++k)
      rank += sIdx[t * K + k] < e;
    a.pairs[t * K + rank] = PairDesc{sEx[e].down, sW[f], sPos[f]};
  }
}

/// Dynamic shared memory of routeFusedKernel's last block.
static_assert(sizeof(ExpertPtrs) % 8 == 0, "doubles follow the table");
int64_t routeFusedSmem(int64_t T, int64_t E, int64_t K) {
  // + E doubles of softmaxTopKBlock after the expert table.
  return routeFusedExpertsOffset(T, E, K) * 4 +
         E * int64_t(sizeof(ExpertPtrs)) + E * 8;
}

struct DownCombineArgs {
  const float *hbuf;
  const PairDesc *pairs;
  const float *sharedOut, *gateLogit;
  void *y;
  int64_t H, I;
  int32_t T, K;
  /// Prefetch the block's down rows before the PDL wait (early prefetch).
  bool early;
  /// Down weights are read once per step (ldWeight).
  bool once;
};

/// Before the PDL wait: rows [r0, r0 + 8) of every pair's down matrix into
/// L2, so the down projection's DRAM traffic overlaps the gate/up kernel's
/// tail instead of following it. The pairs were written by routeFusedKernel,
/// at least two launches back, hence complete (Common.cuh); only their
/// pointers are read, through L2. A prefetch is a hint: nothing here reaches
/// the results.
__device__ __forceinline__ void prefetchDownEarly(const DownCombineArgs &a,
                                                  int64_t r0, int esize) {
  if (r0 >= a.H)
    return;
  const int64_t rows = a.H - r0 < 8 ? a.H - r0 : 8;
  const int64_t bytes = rows * a.I * esize;
  const int64_t lines = (bytes + 127) / 128 + 1; // + 1: start not aligned
  const int64_t P = int64_t(a.T) * a.K;
  for (int64_t i = threadIdx.x; i < P * lines; i += blockDim.x) {
    const int64_t p = i / lines, l = i - p * lines;
    const char *d =
        static_cast<const char *>(detail::ldcgEarly(&a.pairs[p].down));
    if (!d)
      continue;
    const uintptr_t start = reinterpret_cast<uintptr_t>(d + r0 * a.I * esize);
    const uintptr_t addr = (start & ~uintptr_t(127)) + uintptr_t(l) * 128;
    if (addr < start + uintptr_t(bytes))
      asm volatile("prefetch.global.L2 [%0];" ::"l"(addr));
  }
}

/// y[t, o] = sum over t's pairs in combine order of w * (down_e[o] . h_pair)
/// (+ sigmoid(gate) * shared[t, o]): the down projection and combineKernel
/// in one launch, for bf16 down weights with I % 64 == 0. A block owns 8
/// output rows; warp w takes pairs w, w + W, ... over all of I on the tensor
/// cores (so all pairs' loads are in flight at once), and the per-pair
/// results are summed in the fixed pair order: deterministic.
template <int W>
__global__ void __launch_bounds__(W * 32)
    downCombineMmaKernel(DownCombineArgs a) {
  __shared__ float part[kFusedMaxPairs][8];
  __shared__ PairDesc sp[kFusedMaxPairs];
  const int64_t n0 = int64_t(blockIdx.x) * 8;
  if (a.early)
    prefetchDownEarly(a, n0, 2);
  detail::pdlEnter();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, t = lane & 3;
  const int P = a.T * a.K;
  for (int p = tid; p < P; p += W * 32)
    sp[p] = a.pairs[p];
  __syncthreads();
  const int64_t row = n0 + gq;
  const bool xal = al16(a.hbuf);
  for (int p = warp; p < P; p += W) {
    const PairDesc d = sp[p];
    const bf16 *dw = static_cast<const bf16 *>(d.down);
    const bf16 *wr[1] = {dw && row < a.H ? dw + row * a.I + t * 16 : nullptr};
    const float *xg =
        dw && gq == 0 ? a.hbuf + int64_t(d.pos) * a.I + t * 16 : nullptr;
    float c[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    detail::tileDots<1, 1, float>(xg, nullptr, wr, al16(dw), xal, int(a.I / 64),
                                  0, c, a.once);
    if (gq == 0) { // C row 0 (the pair's activation), columns 2t, 2t + 1
      part[p][2 * t] = c[0][0];
      part[p][2 * t + 1] = c[0][1];
    }
  }
  __syncthreads();
  if (tid < 8 * a.T) {
    const int tt = tid >> 3, r = tid & 7;
    const int64_t o = n0 + r;
    if (o < a.H) {
      float acc = 0.0f;
      for (int k = 0; k < a.K; ++k) {
        const int p = tt * a.K + k;
        acc += sp[p].down ? part[p][r] * sp[p].w : 0.0f;
      }
      if (a.sharedOut) {
        const float f =
            a.gateLogit ? 1.0f / (1.0f + expf(-a.gateLogit[tt])) : 1.0f;
        acc += f * a.sharedOut[tt * a.H + o];
      }
      static_cast<bf16 *>(a.y)[tt * a.H + o] = fromF<bf16>(acc);
    }
  }
}

/// The same with FMA warp dots (fp32, or bf16 off the tensor-core shapes):
/// a warp per output row, pairs in combine order.
/// SPLIT warps share an output row, each taking a contiguous 1/SPLIT of its
/// K pairs; the first adds the others' per-pair terms after its own, in pair
/// order, so the sum is the one-warp kernel's. At one token the row count
/// (H = 2048 warps) is all the parallelism there is: two warps a row double
/// the loads in flight per SM without more registers per warp.
constexpr int kDownMaxTerms = 16; ///< per warp and token with SPLIT > 1

template <typename T, int SPLIT>
__global__ void __launch_bounds__(kWarps * 32)
    downCombineKernel(DownCombineArgs a) {
  constexpr int kRows = kWarps / SPLIT;
  __shared__ PairDesc sp[kFusedMaxPairs];
  __shared__ float terms[SPLIT > 1 ? kWarps : 1][SPLIT > 1 ? kDownMaxTerms : 1];
  __shared__ bool used[SPLIT > 1 ? kWarps : 1][SPLIT > 1 ? kDownMaxTerms : 1];
  if (a.early)
    prefetchDownEarly(a, int64_t(blockIdx.x) * kRows, int(sizeof(T)));
  detail::pdlEnter();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int P = a.T * a.K;
  for (int p = tid; p < P; p += kWarps * 32)
    sp[p] = a.pairs[p];
  __syncthreads();
  const int64_t o = int64_t(blockIdx.x) * kRows + warp / SPLIT;
  const int part = warp % SPLIT;
  const int per = (a.K + SPLIT - 1) / SPLIT;
  const int k0 = part * per, k1 = min(a.K, k0 + per);
  if (SPLIT == 1 && o >= a.H)
    return;
  for (int tt = 0; tt < a.T; ++tt) {
    float acc = 0.0f;
    for (int k = k0; k < k1 && o < a.H; ++k) {
      const PairDesc d = sp[tt * a.K + k];
      if (SPLIT > 1 && part > 0 && lane == 0)
        used[warp][k - k0] = d.down != nullptr;
      if (!d.down)
        continue;
      const T *dw = static_cast<const T *>(d.down) + o * a.I;
      const float *xr[1] = {a.hbuf + int64_t(d.pos) * a.I};
      const bool vec = a.I % Vec16<T>::kN == 0 && al16(dw) && al16(xr[0]);
      float s[1] = {0.0f};
      warpDots<T, float, 1>(dw, xr, 1, a.I, vec, s, a.once);
      // Rounded product, then the add (no contraction): the same bits
      // whichever warp adds the term.
      const float term = __fmul_rn(detail::warpSum(s[0]), d.w);
      if (SPLIT > 1 && part > 0) {
        if (lane == 0)
          terms[warp][k - k0] = term;
      } else {
        acc = __fadd_rn(acc, term);
      }
    }
    if constexpr (SPLIT > 1) {
      __syncthreads();
      if (part == 0 && o < a.H && lane == 0)
        for (int q = 1; q < SPLIT; ++q) {
          const int q0 = q * per, q1 = min(a.K, q0 + per);
          for (int k = q0; k < q1; ++k)
            if (used[warp + q][k - q0])
              acc = __fadd_rn(acc, terms[warp + q][k - q0]);
        }
      __syncthreads();
      if (part != 0 || o >= a.H)
        continue;
    }
    if (a.sharedOut) {
      const float f =
          a.gateLogit ? 1.0f / (1.0f + expf(-a.gateLogit[tt])) : 1.0f;
      acc = fmaf(f, a.sharedOut[tt * a.H + o], acc);
    }
    if (lane == 0)
      static_cast<T *>(a.y)[tt * a.H + o] = fromF<T>(acc);
  }
}

template <typename F> void withTB(int64_t rows, F &&f) {
  if (rows == 1)
    f(std::integral_constant<int, 1>{});
  else if (rows == 2)
    f(std::integral_constant<int, 2>{});
  else if (rows <= 4)
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 8>{});
}

struct MoeScratch {
  int32_t *idx, *counts, *offsets, *activeList, *numActive, *rowsOf;
  float *wts, *hbuf, *outbuf, *hbufShared, *sharedOut, *gateLogit, *logits;
  SlotDesc *slots;
  PairDesc *pairs;
  /// The prefill GEMM path's buffers (aliasing hbuf/outbuf and hbufShared,
  /// which it does not use): the SwiGLU rows in expert order, the gathered
  /// input rows and the fp32 gate/up output (dead once the SwiGLU ran), the
  /// fp32 down output in the place of the latter two, and the shared
  /// expert's gate/up output and SwiGLU rows.
  bf16 *gHidden, *gX, *gSharedHidden;
  float *gGateUp, *gDown, *gSharedGateUp;
  int32_t *posOf;
};

int64_t rnd(int64_t bytes) { return detail::workspaceRound(bytes); }

MoeScratch carveMoe(detail::WorkspaceCarver &c, int64_t T, const MoeParams &p) {
  const int64_t TK = T * p.topK, E = p.numExperts, H = p.hidden,
                I = p.intermediate,
                Is = std::max<int64_t>(p.sharedIntermediate, 0);
  MoeScratch s;
  s.idx = c.take<int32_t>(TK);
  s.wts = c.take<float>(TK);
  s.counts = c.take<int32_t>(E);
  s.offsets = c.take<int32_t>(E);
  s.activeList = c.take<int32_t>(E);
  s.numActive = c.take<int32_t>(1);
  s.rowsOf = c.take<int32_t>(TK);
  // Routed region: hbuf + outbuf, or gHidden + max(gX + gGateUp, gDown).
  const int64_t oldRouted = rnd(TK * I * 4) + rnd(TK * H * 4);
  const int64_t newRouted =
      rnd(TK * I * 2) +
      std::max(rnd(TK * H * 2) + rnd(TK * 2 * I * 4), rnd(TK * H * 4));
  char *routed = c.take<char>(std::max(oldRouted, newRouted));
  // Shared region: hbufShared, or gSharedGateUp + gSharedHidden.
  const int64_t oldShared = rnd(T * Is * 4);
  const int64_t newShared = rnd(T * 2 * Is * 4) + rnd(T * Is * 2);
  char *shared = c.take<char>(std::max(oldShared, newShared));
  s.sharedOut = c.take<float>(T * p.hidden);
  s.gateLogit = c.take<float>(T);
  s.logits = c.take<float>(T * E);
  s.slots = c.take<SlotDesc>(std::min(E, TK));
  s.pairs = c.take<PairDesc>(TK);
  s.posOf = c.take<int32_t>(TK);
  // Sub-buffers (null bases when measuring stay null-based: only offsets
  // matter then).
  auto at = [](char *base, int64_t off) { return base ? base + off : nullptr; };
  s.hbuf = reinterpret_cast<float *>(routed);
  s.outbuf = reinterpret_cast<float *>(at(routed, rnd(TK * I * 4)));
  s.gHidden = reinterpret_cast<bf16 *>(routed);
  s.gX = reinterpret_cast<bf16 *>(at(routed, rnd(TK * I * 2)));
  s.gGateUp =
      reinterpret_cast<float *>(at(routed, rnd(TK * I * 2) + rnd(TK * H * 2)));
  s.gDown = reinterpret_cast<float *>(at(routed, rnd(TK * I * 2)));
  s.hbufShared = reinterpret_cast<float *>(shared);
  s.gSharedGateUp = reinterpret_cast<float *>(shared);
  s.gSharedHidden = reinterpret_cast<bf16 *>(at(shared, rnd(T * 2 * Is * 4)));
  return s;
}

/// Router logits of T rows into s.logits (GEMV or GEMM per `algo`), then
/// softmax + top-k (+ renormalization) into s.idx / s.wts.
template <typename T>
absl::Status routeFromLogits(const void *x, const void *router, int64_t Tn,
                             int64_t H, int64_t E, int64_t K, bool normTopkProb,
                             const MoeScratch &s, const BlockContext &ctx,
                             LinearAlgo algo) {
  const DType dt = std::is_same_v<T, bf16> ? DType::kBF16 : DType::kF32;
  CP_RETURN_IF_ERROR(lmHead(x, router, Tn, H, E, s.logits, dt, ctx, algo));
  const size_t smem = size_t(E) * 8;
  auto kernel = routeKernel<T>;
  CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  CP_CUDA_RETURN_IF_ERROR(
      detail::launch(kernel, dim3(unsigned(Tn)), dim3(256), smem, ctx.stream,
                     static_cast<const T *>(x), static_cast<const T *>(router),
                     H, int32_t(E), int32_t(K), normTopkProb, false, s.idx,
                     s.wts, static_cast<const float *>(s.logits)));
  return absl::OkStatus();
}

/// gate/up over `slots` grid slots: the tensor-core kernel when `mma` (bf16,
/// H % 64 == 0, x aligned) and I % 64 == 0, else the FMA one.
template <typename T>
cudaError_t launchGateUp(const T *x, int64_t H, int64_t I, const GroupArgs &g,
                         float *hbuf, unsigned slots, bool mma,
                         cudaStream_t st) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (mma && I % 64 == 0) {
      const dim3 gridUp(unsigned((I + 7) / 8), slots);
      // A group holds at most one row per token (an expert is selected once
      // per token; the shared expert takes all T).
      const bool half = g.T <= 8;
      if (mmaWarps(H) == 8)
        return half ? detail::launch(gateUpMmaKernel<8, true>, gridUp,
                                     dim3(256), 0, st, x, H, I, g, hbuf)
                    : detail::launch(gateUpMmaKernel<8, false>, gridUp,
                                     dim3(256), 0, st, x, H, I, g, hbuf);
      return half ? detail::launch(gateUpMmaKernel<4, true>, gridUp, dim3(128),
                                   0, st, x, H, I, g, hbuf)
                  : detail::launch(gateUpMmaKernel<4, false>, gridUp, dim3(128),
                                   0, st, x, H, I, g, hbuf);
    }
  }
  cudaError_t err = cudaSuccess;
  withTB(g.T, [&](auto tb) {
    constexpr int TB = decltype(tb)::value;
    err = detail::launch(gateUpKernel<T, TB>,
                         dim3(unsigned((I + kWarps - 1) / kWarps), slots),
                         dim3(kWarps * 32), 0, st, x, H, I, g, hbuf);
  });
  return err;
}

/// down over `slots` grid slots (same kernel choice as launchGateUp).
template <typename T>
cudaError_t launchDown(int64_t H, int64_t I, const GroupArgs &g,
                       const float *hbuf, const float *rowWeight, float *outbuf,
                       unsigned slots, bool mma, cudaStream_t st) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (mma && I % 64 == 0) {
      const dim3 gridDown(unsigned((H + 7) / 8), slots);
      if (mmaWarps(I) == 8)
        return detail::launch(downMmaKernel<8>, gridDown, dim3(256), 0, st,
                              hbuf, H, I, g, rowWeight, outbuf);
      return detail::launch(downMmaKernel<4>, gridDown, dim3(128), 0, st, hbuf,
                            H, I, g, rowWeight, outbuf);
    }
  }
  cudaError_t err = cudaSuccess;
  withTB(g.T, [&](auto tb) {
    constexpr int TB = decltype(tb)::value;
    err = detail::launch(
        downKernel<T, TB>, dim3(unsigned((H + kWarps - 1) / kWarps), slots),
        dim3(kWarps * 32), 0, st, hbuf, H, I, g, rowWeight, outbuf);
  });
  return err;
}

/// gate/up then down (the grouped path and the shared expert).
template <typename T>
absl::Status launchExperts(const T *x, int64_t H, int64_t I, const GroupArgs &g,
                           float *hbuf, const float *rowWeight, float *outbuf,
                           unsigned slots, bool mma, cudaStream_t st) {
  CP_CUDA_RETURN_IF_ERROR(launchGateUp<T>(x, H, I, g, hbuf, slots, mma, st));
  CP_CUDA_RETURN_IF_ERROR(
      launchDown<T>(H, I, g, hbuf, rowWeight, outbuf, slots, mma, st));
  return absl::OkStatus();
}

/// The routeFusedKernel counter of a workspace, or -1 when all are taken
/// (then the grouped path runs). Two MoE calls that may run at the same time
/// never share a workspace (they would race on its scratch already), and
/// uses of one workspace are ordered by the stream (and, under PDL, by every
/// kernel's wait before it touches memory), so a counter per workspace is
/// never used by two launches at once.
int routeCounterSlot(const void *workspace) {
  static std::mutex mu;
  static std::unordered_map<const void *, int> slots;
  std::lock_guard<std::mutex> lock(mu);
  auto it = slots.find(workspace);
  if (it != slots.end())
    return it->second;
  if (int(slots.size()) >= kRouteCounters)
    return -1;
  const int slot = int(slots.size());
  slots.emplace(workspace, slot);
  return slot;
}

/// The fused small-T MoE block: routeFusedKernel, gate/up of the selected
/// experts, the shared expert's two kernels (when there is one), and
/// downCombine: 3 launches instead of 6 (5 + the router GEMV).
/// The shared expert over all Tn rows into s.sharedOut (its SwiGLU rows in
/// s.hbufShared); the fused and the grouped paths both add it at the end.
template <typename T>
absl::Status launchSharedExpert(const T *x, int64_t H, int64_t Tn,
                                const MoeWeights &w, const MoeParams &p,
                                const MoeScratch &s, bool mma,
                                cudaStream_t st) {
  const int64_t Is = p.sharedIntermediate;
  GroupArgs gs{nullptr, w.shared, nullptr, nullptr, nullptr,
               nullptr, nullptr,  1,       Tn};
  return launchExperts<T>(x, H, Is, gs, s.hbufShared, nullptr, s.sharedOut, 1,
                          mma && Is % 64 == 0, st);
}

template <typename T>
absl::Status runMoeFused(const T *x, int64_t Tn, const MoeWeights &w,
                         const MoeParams &p, T *y, bool mma, int counter,
                         const MoeScratch &s, const BlockContext &ctx,
                         int32_t *routedIndices) {
  cudaStream_t st = ctx.stream;
  const int64_t H = p.hidden, I = p.intermediate, K = p.topK, E = p.numExperts;
  const bool hasShared = w.shared.gate != nullptr;
  const bool hasGate = hasShared && w.sharedGate;
  const unsigned slots = unsigned(std::min<int64_t>(E, Tn * K));
  RouteFusedArgs ra{};
  ra.x = x;
  ra.router = w.router;
  ra.sharedGate = hasGate ? w.sharedGate : nullptr;
  ra.experts = w.experts;
  ra.H = H;
  ra.E = int32_t(E);
  ra.K = int32_t(K);
  ra.T = int32_t(Tn);
  ra.numSlots = int32_t(slots);
  ra.norm = p.normTopkProb;
  ra.vec = H % Vec16<T>::kN == 0 && detail::aligned16(x) &&
           detail::aligned16(w.router) &&
           (!hasGate || detail::aligned16(w.sharedGate));
  ra.logits = s.logits;
  ra.gateLogit = s.gateLogit;
  ra.wts = s.wts;
  ra.idx = s.idx;
  ra.routedCopy = routedIndices;
  ra.rowsOf = s.rowsOf;
  ra.slots = s.slots;
  ra.pairs = s.pairs;
  ra.counter = counter;
  ra.blockTopK = routeBlockEnabled();
  const size_t smem = size_t(routeFusedSmem(Tn, E, K));
  CP_CUDA_RETURN_IF_ERROR(detail::launch(routeFusedKernel<T>,
                                         dim3(unsigned(E + (hasGate ? 1 : 0))),
                                         dim3(kFusedThreads), smem, st, ra));

  GroupArgs g{w.experts, ExpertPtrs{}, nullptr,    nullptr, nullptr,
              nullptr,   s.rowsOf,     int32_t(K), Tn,      s.slots};
  // One token: the FMA warp-per-row kernels (eight 16-byte loads in flight
  // per lane, no zero mma rows) beat the tensor-core tiles by ~2 us per
  // layer on an H100 (MoE T=1 48.0 -> 45.9 us); from two tokens on the
  // tiles win (T=4: 130.6 vs 148.2 us; docs/perf.md v7).
  const bool tiles = mma && Tn > 1;
  // The tiles at 2-4 tokens lost 0.5 % with the hint (B4, H100).
  g.once = !tiles && streamHintEnabled();
  CP_CUDA_RETURN_IF_ERROR(
      launchGateUp<T>(x, H, I, g, s.hbuf, slots, tiles, st));
  if (hasShared)
    CP_RETURN_IF_ERROR(launchSharedExpert<T>(x, H, Tn, w, p, s, mma, st));
  DownCombineArgs da{};
  da.hbuf = s.hbuf;
  da.pairs = s.pairs;
  da.sharedOut = hasShared ? s.sharedOut : nullptr;
  da.gateLogit = hasGate ? s.gateLogit : nullptr;
  da.y = y;
  da.H = H;
  da.I = I;
  da.T = int32_t(Tn);
  da.K = int32_t(K);
  da.early = pdlEnabled() && earlyPrefetchEnabled();
  da.once = g.once;
  bool downMma = false;
  if constexpr (std::is_same_v<T, bf16>)
    downMma = tiles && I % 64 == 0;
  if (downMma)
    CP_CUDA_RETURN_IF_ERROR(detail::launch(downCombineMmaKernel<8>,
                                           dim3(unsigned((H + 7) / 8)),
                                           dim3(256), 0, st, da));
  else if (K <= 2 * kDownMaxTerms && downSplitEnabled())
    CP_CUDA_RETURN_IF_ERROR(
        detail::launch(downCombineKernel<T, 2>,
                       dim3(unsigned((H + kWarps / 2 - 1) / (kWarps / 2))),
                       dim3(kWarps * 32), 0, st, da));
  else
    CP_CUDA_RETURN_IF_ERROR(detail::launch(
        downCombineKernel<T, 1>, dim3(unsigned((H + kWarps - 1) / kWarps)),
        dim3(kWarps * 32), 0, st, da));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Prefill GEMM path (bf16, T * K >= moeGemmMinPairsPerExpert() * E, not
// capturing): route + group as the grouped path, then
//   gatherRowsKernel   the routed input rows in expert order (X_sorted),
//                      and each pair's position in that order;
//   host               counts and the expert table copied to the host (one
//                      wait), the active experts split into contiguous
//                      ranges over the side streams;
//   per side stream    per expert one cuBLAS GEMM for gate and up into an
//                      fp32 [rows, 2I] (strided-batched when the two are not
//                      one [2I, H] matrix), swigluRowsKernel over the
//                      stream's rows (rounded to bf16, as the mma down
//                      kernel rounds its input); after all streams got
//                      there (the down output overlays their inputs), one
//                      down GEMM per expert into fp32 [rows, H]; the shared
//                      expert (own buffers) on stream 0;
//   combineSortedKernel  per token: sum of w * down row over its K pairs in
//                      ascending expert order (product rounded, then added:
//                      the grouped path's rounding), plus the gated shared
//                      expert. Deterministic; no atomics.
// Same rounding points as the grouped path; only the order of the fp32
// accumulation inside each dot product differs.
//===----------------------------------------------------------------------===//

/// xs[pos] = x[token of rowsOf[pos]] in 16-byte chunks (H % 8 == 0, x and
/// xs 16-byte aligned), posOf[rowsOf[pos]] = pos.
__global__ void gatherRowsKernel(const bf16 *__restrict__ x,
                                 const int32_t *__restrict__ rowsOf, int64_t n,
                                 int32_t K, int64_t H, bf16 *__restrict__ xs,
                                 int32_t *__restrict__ posOf) {
  detail::pdlEnter();
  const int64_t chunks = H / 8;
  for (int64_t pos = blockIdx.x; pos < n; pos += gridDim.x) {
    const int32_t f = rowsOf[pos];
    if (threadIdx.x == 0)
      posOf[f] = int32_t(pos);
    const uint4 *src = reinterpret_cast<const uint4 *>(x + int64_t(f / K) * H);
    uint4 *dst = reinterpret_cast<uint4 *>(xs + pos * H);
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x)
      dst[c] = src[c];
  }
}

/// h[r, i] = bf16(silu(g) * u) for g = gu[r, i], u = gu[r, I + i], r < rows.
__global__ void swigluRowsKernel(const float *__restrict__ gu, int64_t rows,
                                 int64_t I, bf16 *__restrict__ h) {
  detail::pdlEnter();
  const int64_t n = rows * I;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / I, c = i - r * I;
    const float gs = gu[r * 2 * I + c], us = gu[r * 2 * I + I + c];
    h[i] = __float2bfloat16_rn(gs / (1.0f + expf(-gs)) * us);
  }
}

/// One block per token t: y[t] = sum over its K pairs in ascending expert
/// order of w * ys[pos] (+ sigmoid(gate) * sharedOut[t]).
__global__ void combineSortedKernel(const int32_t *__restrict__ idx,
                                    const float *__restrict__ wts,
                                    const int32_t *__restrict__ posOf,
                                    const float *__restrict__ ys,
                                    const float *__restrict__ sharedOut,
                                    const float *__restrict__ gateLogit,
                                    int32_t K, int64_t H, bf16 *y) {
  extern __shared__ int32_t cpos[]; // K positions, then K weights
  float *cw = reinterpret_cast<float *>(cpos + K);
  detail::pdlEnter();
  const int64_t t = blockIdx.x;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const int32_t e = idx[t * K + k];
    int rank = 0; // distinct experts; ties (never) by slot
    for (int j = 0; j < K; ++j) {
      const int32_t ej = idx[t * K + j];
      rank += ej < e || (ej == e && j < k);
    }
    cpos[rank] = posOf[t * K + k];
    cw[rank] = wts[t * K + k];
  }
  __syncthreads();
  float f = 1.0f;
  if (gateLogit)
    f = 1.0f / (1.0f + expf(-gateLogit[t]));
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.0f;
    for (int k = 0; k < K; ++k)
      acc += __fmul_rn(ys[int64_t(cpos[k]) * H + c], cw[k]);
    if (sharedOut)
      acc += f * sharedOut[t * H + c];
    y[t * H + c] = __float2bfloat16_rn(acc);
  }
}

/// Side streams of the prefill path on one device, each with its own cuBLAS
/// handle (a handle's workspace must not be shared by concurrent streams),
/// fork/join events and a pinned host buffer for the counts and the expert
/// table. Created on first use, kept for the process. `mu` is held from the
/// fork to the join, so concurrent moe() calls take turns enqueueing.
struct GemmSide {
  std::mutex mu;
  int n = 0;
  cudaStream_t streams[kMoeGemmMaxStreams] = {};
  cublasHandle_t handles[kMoeGemmMaxStreams] = {};
  cudaEvent_t fork = nullptr, routed = nullptr;
  cudaEvent_t join[kMoeGemmMaxStreams] = {};
  cudaEvent_t mid[kMoeGemmMaxStreams] = {};
  void *host = nullptr;
  size_t hostBytes = 0;
};

/// The current device's GemmSide (lock its `mu` before use).
absl::StatusOr<GemmSide *> gemmSide() {
  static std::mutex mapMu;
  static std::unordered_map<int, GemmSide *> sides;
  int dev = 0;
  CP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mapMu);
  auto it = sides.find(dev);
  if (it == sides.end())
    it = sides.emplace(dev, new GemmSide).first; // kept for the process
  return it->second;
}

/// Grows `g` to `want` streams (with g->mu held).
absl::Status growGemmSide(GemmSide &g, int want) {
  if (!g.fork) {
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&g.fork, cudaEventDisableTiming));
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&g.routed, cudaEventDisableTiming));
  }
  while (g.n < want) {
    const int i = g.n;
    CP_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&g.streams[i], cudaStreamNonBlocking));
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&g.join[i], cudaEventDisableTiming));
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&g.mid[i], cudaEventDisableTiming));
    CP_CUBLAS_RETURN_IF_ERROR(cublasCreate(&g.handles[i]));
    CP_CUBLAS_RETURN_IF_ERROR(cublasSetStream(g.handles[i], g.streams[i]));
    ++g.n;
  }
  return absl::OkStatus();
}

/// Row-major C[rows, ldc-strided] (fp32) = A[rows, k] W[m, k]^T for bf16 A
/// (lda k) and W (ldw k): column-major C^T = W A^T (see Linear.cu).
cublasStatus_t gemmRows(cublasHandle_t h, const void *w, const void *a,
                        int64_t m, int64_t rows, int64_t k, float *c,
                        int64_t ldc) {
  const float alpha = 1.0f, beta = 0.0f;
  return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(rows), int(k),
                      &alpha, w, CUDA_R_16BF, int(k), a, CUDA_R_16BF, int(k),
                      &beta, c, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

/// gate and up of one SwiGLU FFN over `rows` rows of a (bf16 [rows, H]) into
/// gu (fp32 [rows, 2I]): one GEMM when up directly follows gate (a [2I, H]
/// matrix), one strided-batched GEMM of two when up lies after gate
/// elsewhere, else two GEMMs.
absl::Status gemmGateUp(cublasHandle_t h, const ExpertPtrs &e, const bf16 *a,
                        int64_t rows, int64_t H, int64_t I, float *gu) {
  const bf16 *g = static_cast<const bf16 *>(e.gate);
  const bf16 *u = static_cast<const bf16 *>(e.up);
  if (u == g + I * H) {
    CP_CUBLAS_RETURN_IF_ERROR(gemmRows(h, g, a, 2 * I, rows, H, gu, 2 * I));
    return absl::OkStatus();
  }
  if (u > g) {
    const float alpha = 1.0f, beta = 0.0f;
    CP_CUBLAS_RETURN_IF_ERROR(cublasGemmStridedBatchedEx(
        h, CUBLAS_OP_T, CUBLAS_OP_N, int(I), int(rows), int(H), &alpha, g,
        CUDA_R_16BF, int(H), static_cast<long long>(u - g), a, CUDA_R_16BF,
        int(H), 0LL, &beta, gu, CUDA_R_32F, int(2 * I),
        static_cast<long long>(I), 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return absl::OkStatus();
  }
  CP_CUBLAS_RETURN_IF_ERROR(gemmRows(h, g, a, I, rows, H, gu, 2 * I));
  CP_CUBLAS_RETURN_IF_ERROR(gemmRows(h, u, a, I, rows, H, gu + I, 2 * I));
  return absl::OkStatus();
}

unsigned elementwiseBlocks(int64_t n, int32_t numSms) {
  const int64_t want = (n + 255) / 256;
  return unsigned(std::max<int64_t>(
      1, std::min<int64_t>(want, int64_t(std::max(numSms, 1)) * 16)));
}

/// One SwiGLU FFN over `rows` rows of `a` on (h, st): gate/up GEMM(s), the
/// SwiGLU into `hid`, the down GEMM into `out` (fp32 [rows, H]).
absl::Status ffnRows(cublasHandle_t h, cudaStream_t st, const ExpertPtrs &e,
                     const bf16 *a, int64_t rows, int64_t H, int64_t I,
                     float *gu, bf16 *hid, float *out, int32_t numSms) {
  if (rows == 0)
    return absl::OkStatus();
  CP_RETURN_IF_ERROR(gemmGateUp(h, e, a, rows, H, I, gu));
  CP_CUDA_RETURN_IF_ERROR(detail::launch(
      swigluRowsKernel, dim3(elementwiseBlocks(rows * I, numSms)), dim3(256), 0,
      st, static_cast<const float *>(gu), rows, I, hid));
  CP_CUBLAS_RETURN_IF_ERROR(gemmRows(h, e.down, hid, H, rows, I, out, H));
  return absl::OkStatus();
}

/// Whether moe() takes the prefill GEMM path for this call.
bool useGemmPath(const void *x, int64_t Tn, const MoeWeights &w,
                 const MoeParams &p, DType dt, const BlockContext &ctx) {
  if (dt != DType::kBF16 || !ctx.blas || !moeGemmEnabled())
    return false;
  if (Tn * p.topK < int64_t(moeGemmMinPairsPerExpert()) * p.numExperts ||
      p.numExperts > moeGemmMaxExperts())
    return false;
  // Shapes the gather's 16-byte chunks and cuBLAS's int sizes take.
  const int64_t Is = w.shared.gate ? p.sharedIntermediate : 0;
  if (p.hidden % 8 != 0 || p.intermediate % 8 != 0 || Is % 8 != 0 ||
      !detail::aligned16(x) || !detail::aligned16(ctx.workspace))
    return false;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(ctx.stream, &cap) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return cap == cudaStreamCaptureStatusNone;
}

/// The prefill GEMM path (see above). `s` is the carved workspace.
absl::Status runMoeGemm(const bf16 *x, int64_t Tn, const MoeWeights &w,
                        const MoeParams &p, bf16 *y, const MoeScratch &s,
                        const BlockContext &ctx, int32_t *routedIndices) {
  cudaStream_t st = ctx.stream;
  const int64_t H = p.hidden, I = p.intermediate, K = p.topK, E = p.numExperts;
  const int64_t TK = Tn * K;
  const bool hasShared = w.shared.gate != nullptr;
  const int64_t Is = hasShared ? p.sharedIntermediate : 0;

  // 1. Routing: router logits (cuBLAS above kGemvMaxRows rows), softmax and
  // top-k, grouping.
  CP_RETURN_IF_ERROR(routeFromLogits<bf16>(
      x, w.router, Tn, H, E, K, p.normTopkProb, s, ctx, LinearAlgo::kAuto));
  const size_t groupSmem =
      (size_t(2) * E + (std::min<int64_t>(TK, kGroupStage) + 3) / 4 * 4) * 4;
  CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      groupKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
      int(groupSmem)));
  CP_CUDA_RETURN_IF_ERROR(
      detail::launch(groupKernel, dim3(1), dim3(256), groupSmem, st,
                     static_cast<const int32_t *>(s.idx), TK, int32_t(E),
                     s.counts, s.offsets, s.activeList, s.numActive,
                     static_cast<int32_t *>(nullptr), routedIndices));
  CP_CUDA_RETURN_IF_ERROR(
      detail::launch(scatterRowsKernel, dim3(unsigned(E)), dim3(256), 0, st,
                     static_cast<const int32_t *>(s.idx), TK,
                     static_cast<const int32_t *>(s.offsets), s.rowsOf));
  // 2. Gather into expert order.
  CP_CUDA_RETURN_IF_ERROR(detail::launch(
      gatherRowsKernel, dim3(unsigned(std::min<int64_t>(TK, 1 << 16))),
      dim3(128), 0, st, x, static_cast<const int32_t *>(s.rowsOf), TK,
      int32_t(K), H, s.gX, s.posOf));
  if (hasShared && w.sharedGate)
    CP_RETURN_IF_ERROR(
        lmHead(x, w.sharedGate, Tn, H, 1, s.gateLogit, DType::kBF16, ctx));

  CP_ASSIGN_OR_RETURN(GemmSide * side, gemmSide());
  std::lock_guard<std::mutex> lock(side->mu);
  CP_RETURN_IF_ERROR(growGemmSide(*side, moeGemmStreams()));
  const int ns = std::min(moeGemmStreams(), side->n);
  // 3. Counts and the expert table to the host.
  const size_t hostBytes = size_t(E) * (4 + sizeof(ExpertPtrs)) + 16;
  if (side->hostBytes < hostBytes) {
    if (side->host)
      CP_CUDA_RETURN_IF_ERROR(cudaFreeHost(side->host));
    side->host = nullptr;
    side->hostBytes = 0;
    CP_CUDA_RETURN_IF_ERROR(
        cudaHostAlloc(&side->host, hostBytes, cudaHostAllocPortable));
    side->hostBytes = hostBytes;
  }
  ExpertPtrs *hostExperts = static_cast<ExpertPtrs *>(side->host);
  int32_t *hostCounts = reinterpret_cast<int32_t *>(hostExperts + E);
  CP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hostCounts, s.counts, size_t(E) * 4,
                                          cudaMemcpyDeviceToHost, st));
  CP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hostExperts, w.experts,
                                          size_t(E) * sizeof(ExpertPtrs),
                                          cudaMemcpyDeviceToHost, st));
  CP_CUDA_RETURN_IF_ERROR(cudaEventRecord(side->routed, st));
  // Fork: every side stream starts after the gather (and the gate logit).
  CP_CUDA_RETURN_IF_ERROR(cudaEventRecord(side->fork, st));
  for (int i = 0; i < ns; ++i)
    CP_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side->streams[i], side->fork));
  // Everything from here to the join runs in `enqueue`, so the side streams
  // are joined into `st` even when it fails halfway (the caller may reuse
  // the workspace once `st` passed this call).
  auto enqueue = [&]() -> absl::Status {
    // The shared expert needs no routing: enqueue it before the host waits.
    if (hasShared)
      CP_RETURN_IF_ERROR(ffnRows(side->handles[0], side->streams[0], w.shared,
                                 x, Tn, H, Is, s.gSharedGateUp, s.gSharedHidden,
                                 s.sharedOut, ctx.numSms));
    CP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(side->routed));

    // 4. The active experts in contiguous ranges of about equal cost (weight
    // bytes plus the rows' work), one range per side stream.
    std::vector<int64_t> off(E + 1, 0);
    for (int64_t e = 0; e < E; ++e)
      off[e + 1] = off[e] + hostCounts[e];
    if (off[E] != TK)
      return absl::InternalError(absl::StrCat("moe: the grouped rows sum to ",
                                              off[E], ", expected ", TK,
                                              " (T * top_k)"));
    for (int64_t e = 0; e < E; ++e) {
      const ExpertPtrs &ex = hostExperts[e];
      if (hostCounts[e] > 0 && (!ex.gate || !ex.up || !ex.down))
        return invalid(absl::StrCat("expert ", e, " was selected for ",
                                    hostCounts[e],
                                    " rows but has a null weight pointer"));
    }
    auto cost = [](int64_t rows, int64_t inter) {
      return double(inter) * (1.0 + double(rows) / 64.0);
    };
    double total = hasShared ? cost(Tn, Is) : 0.0;
    for (int64_t e = 0; e < E; ++e)
      if (hostCounts[e] > 0)
        total += cost(hostCounts[e], I);
    double acc = hasShared ? cost(Tn, Is) : 0.0;
    std::vector<int64_t> first(ns + 1, 0); // stream i: [first[i], first[i+1])
    for (int i = 0; i < ns; ++i) {
      int64_t e1 = first[i];
      const double target = total * double(i + 1) / double(ns);
      while (e1 < E && (i == ns - 1 || acc < target)) {
        if (hostCounts[e1] > 0)
          acc += cost(hostCounts[e1], I);
        ++e1;
      }
      first[i + 1] = e1;
    }
    // Phase 1 per stream: gate/up GEMMs, then one SwiGLU over its rows.
    for (int i = 0; i < ns; ++i) {
      cublasHandle_t h = side->handles[i];
      cudaStream_t ss = side->streams[i];
      const int64_t e0 = first[i], e1 = first[i + 1];
      const int64_t r0 = off[e0], r1 = off[e1];
      for (int64_t e = e0; e < e1; ++e)
        if (hostCounts[e] > 0)
          CP_RETURN_IF_ERROR(gemmGateUp(h, hostExperts[e], s.gX + off[e] * H,
                                        hostCounts[e], H, I,
                                        s.gGateUp + off[e] * 2 * I));
      if (r1 > r0)
        CP_CUDA_RETURN_IF_ERROR(detail::launch(
            swigluRowsKernel,
            dim3(elementwiseBlocks((r1 - r0) * I, ctx.numSms)), dim3(256), 0,
            ss, static_cast<const float *>(s.gGateUp + r0 * 2 * I), r1 - r0, I,
            s.gHidden + r0 * I));
      CP_CUDA_RETURN_IF_ERROR(cudaEventRecord(side->mid[i], ss));
    }
    // Phase 2: the down output overlays the gathered rows and the gate/up
    // output of ALL streams, so every stream first waits for every other
    // stream's phase 1.
    for (int i = 0; i < ns; ++i) {
      cublasHandle_t h = side->handles[i];
      cudaStream_t ss = side->streams[i];
      for (int j = 0; j < ns; ++j)
        if (j != i)
          CP_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(ss, side->mid[j]));
      for (int64_t e = first[i]; e < first[i + 1]; ++e)
        if (hostCounts[e] > 0)
          CP_CUBLAS_RETURN_IF_ERROR(
              gemmRows(h, hostExperts[e].down, s.gHidden + off[e] * I, H,
                       hostCounts[e], I, s.gDown + off[e] * H, H));
    }
    return absl::OkStatus();
  };
  const absl::Status enqueued = enqueue();
  // Join.
  for (int i = 0; i < ns; ++i) {
    CP_CUDA_RETURN_IF_ERROR(cudaEventRecord(side->join[i], side->streams[i]));
    CP_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(st, side->join[i]));
  }
  CP_RETURN_IF_ERROR(enqueued);
  // 5. Combine.
  CP_CUDA_RETURN_IF_ERROR(detail::launch(
      combineSortedKernel, dim3(unsigned(Tn)), dim3(256), size_t(K) * 8, st,
      static_cast<const int32_t *>(s.idx), static_cast<const float *>(s.wts),
      static_cast<const int32_t *>(s.posOf),
      static_cast<const float *>(s.gDown),
      static_cast<const float *>(hasShared ? s.sharedOut : nullptr),
      static_cast<const float *>(hasShared && w.sharedGate ? s.gateLogit
                                                           : nullptr),
      int32_t(K), H, y));
  detail::countMoeGemmCall();
  return absl::OkStatus();
}

template <typename T>
absl::Status runMoe(const T *x, int64_t Tn, const MoeWeights &w,
                    const MoeParams &p, T *y, DType dt, const BlockContext &ctx,
                    int32_t *routedIndices) {
  cudaStream_t st = ctx.stream;
  const int64_t H = p.hidden, I = p.intermediate, K = p.topK, E = p.numExperts;
  detail::WorkspaceCarver carver(ctx.workspace, ctx.workspaceBytes);
  MoeScratch s = carveMoe(carver, Tn, p);
  if constexpr (std::is_same_v<T, bf16>)
    if (useGemmPath(x, Tn, w, p, dt, ctx))
      return runMoeGemm(x, Tn, w, p, y, s, ctx, routedIndices);
  const bool mma = dt == DType::kBF16 && H % 64 == 0 && detail::aligned16(x);
  if (moeFusedEnabled() && Tn <= kFusedMaxT && Tn * K <= kFusedMaxPairs &&
      routeFusedSmem(Tn, E, K) <= 40 * 1024) { // + static: under 48 KB
    const int counter = routeCounterSlot(ctx.workspace);
    if (counter >= 0)
      return runMoeFused(x, Tn, w, p, y, mma, counter, s, ctx, routedIndices);
  }
  if (mma && detail::aligned16(w.router)) {
    // Router logits on the tensor-core GEMV, then softmax + top-k.
    CP_RETURN_IF_ERROR(routeFromLogits<T>(
        x, w.router, Tn, H, E, K, p.normTopkProb, s, ctx, LinearAlgo::kGemv));
  } else {
    CP_RETURN_IF_ERROR(route(x, w.router, Tn, H, p.numExperts, p.topK,
                             p.normTopkProb, s.idx, s.wts, dt, st));
  }
  // The staged indices are padded to a multiple of 4: nvcc reads them in
  // pairs (LDS.64), so an odd count would read 4 bytes past the allocation
  // (harmless on the hardware, an error under compute-sanitizer memcheck).
  const size_t groupSmem =
      (size_t(2) * E + (std::min<int64_t>(Tn * K, kGroupStage) + 3) / 4 * 4) *
      4;
  CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      groupKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
      int(groupSmem)));
  CP_CUDA_RETURN_IF_ERROR(detail::launch(
      groupKernel, dim3(1), dim3(256), groupSmem, st,
      static_cast<const int32_t *>(s.idx), Tn * K, int32_t(E), s.counts,
      s.offsets, s.activeList, s.numActive, s.rowsOf, routedIndices));

  GroupArgs g{w.experts,    ExpertPtrs{}, s.numActive,
              s.activeList, s.offsets,    s.counts,
              s.rowsOf,     int32_t(K),   Tn};
  g.once = streamHintEnabled();
  const unsigned slots = unsigned(std::min<int64_t>(E, Tn * K));
  CP_RETURN_IF_ERROR(
      launchExperts<T>(x, H, I, g, s.hbuf, s.wts, s.outbuf, slots, mma, st));

  const bool hasShared = w.shared.gate != nullptr;
  if (hasShared) {
    CP_RETURN_IF_ERROR(launchSharedExpert<T>(x, H, Tn, w, p, s, mma, st));
    if (w.sharedGate)
      CP_RETURN_IF_ERROR(
          lmHead(x, w.sharedGate, Tn, H, 1, s.gateLogit, dt, ctx));
  }
  // The selection loop reads rowIdx with vector loads of up to 16 bytes:
  // pad the table so they never leave the allocation.
  const size_t rowIdxBytes = (size_t(K) * sizeof(int32_t) + 31) / 16 * 16;
  CP_CUDA_RETURN_IF_ERROR(detail::launch(
      combineKernel<T>, dim3(unsigned(Tn)), dim3(256), rowIdxBytes, st,
      static_cast<const int32_t *>(s.idx), static_cast<const float *>(s.outbuf),
      static_cast<const float *>(hasShared ? s.sharedOut : nullptr),
      static_cast<const float *>(hasShared && w.sharedGate ? s.gateLogit
                                                           : nullptr),
      int32_t(K), H, y));
  return absl::OkStatus();
}

} // namespace

absl::Status route(const void *x, const void *router, int64_t T, int64_t H,
                   int32_t numExperts, int32_t topK, bool normTopkProb,
                   int32_t *indices, float *weights, DType dt,
                   cudaStream_t stream) {
  if (T < 0 || H <= 0 || numExperts <= 0)
    return invalid(absl::StrCat(
        "route expects T >= 0 and positive hidden, num_experts but got ", T,
        ", ", H, ", ", numExperts));
  if (topK < 1 || topK > numExperts)
    return invalid(
        absl::StrCat("top_k expects [1, ", numExperts, "] but got ", topK));
  if (T == 0)
    return absl::OkStatus();
  if (!x || !router || !indices || !weights)
    return invalid("route: null input, router or output");
  const size_t smem = size_t(numExperts) * 8;
  const bool vec = H % (16 / dtypeBytes(dt)) == 0 && detail::aligned16(x) &&
                   detail::aligned16(router);
  if (dt == DType::kF32) {
    auto kernel = routeKernel<float>;
    CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    CP_CUDA_RETURN_IF_ERROR(detail::launch(
        kernel, dim3(unsigned(T)), dim3(256), smem, stream,
        static_cast<const float *>(x), static_cast<const float *>(router), H,
        numExperts, topK, normTopkProb, vec, indices, weights,
        static_cast<const float *>(nullptr)));
  } else {
    auto kernel = routeKernel<bf16>;
    CP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    CP_CUDA_RETURN_IF_ERROR(detail::launch(
        kernel, dim3(unsigned(T)), dim3(256), smem, stream,
        static_cast<const bf16 *>(x), static_cast<const bf16 *>(router), H,
        numExperts, topK, normTopkProb, vec, indices, weights,
        static_cast<const float *>(nullptr)));
  }
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("routeKernel");
  return absl::OkStatus();
}

int64_t moeWorkspaceBytes(int64_t T, const MoeParams &p) {
  // The carver only does arithmetic on its base, so a null one measures.
  detail::WorkspaceCarver c(nullptr, 0);
  MoeParams q = p;
  q.topK = std::max(q.topK, 0);
  q.numExperts = std::max(q.numExperts, 0);
  (void)carveMoe(c, std::max<int64_t>(T, 0), q);
  return c.used();
}

absl::Status moe(const void *x, int64_t T, const MoeWeights &w,
                 const MoeParams &p, void *y, DType dt, const BlockContext &ctx,
                 int32_t *routedIndices) {
  if (absl::Status st = checkMoeArgs(w, p); !st.ok())
    return st;
  if (T < 0)
    return invalid(absl::StrCat("expects T >= 0 but got ", T));
  if (T == 0)
    return absl::OkStatus();
  if (!x || !y)
    return invalid("null input or output");
  if (T * p.topK > INT32_MAX)
    return invalid(absl::StrCat("T * top_k = ", T * p.topK,
                                " routed rows exceed the int32 row index"));
  const int64_t need = moeWorkspaceBytes(T, p);
  if (ctx.workspaceBytes < need || !ctx.workspace)
    return invalid(absl::StrCat("needs ", need, " bytes of workspace but got ",
                                ctx.workspaceBytes));
  if (dt == DType::kF32)
    return runMoe(static_cast<const float *>(x), T, w, p,
                  static_cast<float *>(y), dt, ctx, routedIndices);
  return runMoe(static_cast<const bf16 *>(x), T, w, p, static_cast<bf16 *>(y),
                dt, ctx, routedIndices);
}

#ifdef CROSSPOOL_TRACE
CROSSPOOL_TRACE_TU(Moe)
#endif

} // namespace crosspool::kernels::cuda
