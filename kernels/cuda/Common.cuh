//===- Common.cuh - Device helpers shared by the CUDA kernels ---*- CUDA
//-*-===//
//
// Storage-type conversions, 16-byte vector loads, warp/block reductions and
// the workspace carver. Only .cu files of kernels/cuda include this.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CUDA_COMMON_CUH
#define CROSSPOOL_KERNELS_CUDA_COMMON_CUH

#include "kernels/cuda/CudaCheck.h"
#include "kernels/cuda/Kernels.h"
#include "runtime/base/Status.h"

#include <cuda_bf16.h>

#include <cstdint>
#include <utility>

namespace crosspool::kernels::cuda::detail {

using bf16 = __nv_bfloat16;

//===----------------------------------------------------------------------===//
// Programmatic dependent launch (PDL). Semantics relied on (PTX ISA,
// griddepcontrol; CUDA runtime,
// cudaLaunchAttributeProgrammaticStreamSerialization):
// * a grid launched with the attribute may start before the previous kernel
//   of its stream has finished, once every block of that kernel executed
//   griddepcontrol.launch_dependents or exited;
// * griddepcontrol.wait blocks until the prerequisite grids have COMPLETED
//   and their memory operations are visible (not merely triggered), so the
//   trigger position never matters for correctness;
// * without the attribute (PDL off, or a previous operation that is not a
//   kernel) both instructions are no-ops and ordinary stream order holds.
// Rules every kernel here follows: pdlWait() runs in every thread before
// its first read of anything another kernel may write (activations,
// routing, page tables, workspaces) and before its first global write (the
// previous kernel may still read what we overwrite); only weights, which no
// kernel writes, are touched before it (L2 prefetch). Because every kernel
// waits, completion is transitive: a kernel's wait returning implies every
// earlier kernel of the stream has completed. pdlTrigger() comes right after
// the wait, so at most one dependent grid is resident and waiting.
//===----------------------------------------------------------------------===//

// Before its own pdlWait() a grid may also rely on everything enqueued two
// or more operations back: it started only once every block of its
// predecessor triggered, and each of those blocks triggers after its own
// wait returned, i.e. after the grid before it had completed (a predecessor
// launched without the attribute, like a cuBLAS kernel, starts only after
// its own predecessor completed anyway). Every kernel of this library
// therefore calls pdlWait() before any early return. Such data is read
// before the wait only with loads that go to L2 (ldcgEarly; L1 is not
// coherent) and only where the direct predecessor cannot write it.

#ifdef CROSSPOOL_TRACE
// Kernel timeline (a build with -DCROSSPOOL_TRACE, for profiling only):
// thread 0 of every block records its grid, SM and the global timer before
// and after its PDL wait. Each translation unit has its own copy of these
// pointers (no relocatable device code); kernels::cuda::traceAttach sets
// them all.
struct TraceRec {
  unsigned long long grid, tBefore, tAfter;
  unsigned block, sm;
};
static __device__ TraceRec *gTrace;
static __device__ unsigned *gTraceN;
static __device__ unsigned gTraceCap;
#define CROSSPOOL_TRACE_TU(NAME)                                               \
  void traceAttach##NAME(void *buf, unsigned *n, unsigned cap) {               \
    detail::TraceRec *b = static_cast<detail::TraceRec *>(buf);                \
    cudaMemcpyToSymbol(detail::gTrace, &b, sizeof(b));                         \
    cudaMemcpyToSymbol(detail::gTraceN, &n, sizeof(n));                        \
    cudaMemcpyToSymbol(detail::gTraceCap, &cap, sizeof(cap));                  \
  }
#endif

/// Profiling builds: thread 0 of the block records point `id` (< 128) of
/// its kernel (block field 0x80000000 | id << 24 | block); else nothing.
__device__ __forceinline__ void traceMark(unsigned id) {
#if defined(CROSSPOOL_TRACE) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x == 0 && threadIdx.y == 0 && gTrace) {
    unsigned long long t, grid;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    const unsigned i = atomicAdd(gTraceN, 1u);
    const unsigned b =
        blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (i < gTraceCap)
      gTrace[i] = TraceRec{grid, t, t, 0x80000000u | (id << 24) | b, sm};
  }
#endif
}

__device__ __forceinline__ void pdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#ifdef CROSSPOOL_TRACE
  unsigned long long t0, t1, grid;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
#endif
  asm volatile("griddepcontrol.wait;" ::: "memory");
#ifdef CROSSPOOL_TRACE
  if (threadIdx.x == 0 && threadIdx.y == 0 && gTrace) {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    const unsigned i = atomicAdd(gTraceN, 1u);
    if (i < gTraceCap)
      gTrace[i] = TraceRec{grid, t0, t1,
                           blockIdx.x + gridDim.x * (blockIdx.y +
                                                     gridDim.y * blockIdx.z),
                           sm};
  }
#endif
#endif
}

__device__ __forceinline__ void pdlTrigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

/// The usual kernel prologue: wait for the previous grid, then let the next
/// one launch.
__device__ __forceinline__ void pdlEnter() {
  pdlWait();
  pdlTrigger();
}

/// pdlEnter, or with `early` the trigger first: the next grid may then
/// launch (and prefetch its weights) while this one still waits for its own
/// predecessor, e.g. the o projection's weights stream into L2 during the
/// decode attention that precedes the split merge. Deadlock-free (a grid
/// launches only once every block of its predecessor is resident) and
/// still transitive for completion (every kernel waits before reading), but
/// the next grid no longer starts after the grid two back completed: only
/// kernels whose successors read nothing but weights before their own wait
/// trigger early (the split merge, add + RMSNorm; earlyTriggerEnabled).
__device__ __forceinline__ void pdlEnterEarly(bool early) {
  if (early)
    pdlTrigger();
  pdlWait();
  if (!early)
    pdlTrigger();
}

/// Hints L2 to fetch `bytes` at `p` (weights), one 128-byte line per thread
/// of the block: every thread calls it with the same arguments. A hint has
/// no effect on correctness (L2 is the point of coherence; nothing reaches
/// the registers), so it may precede pdlWait() whatever wrote the bytes.
__device__ __forceinline__ void prefetchL2(const void *p, int64_t bytes) {
  const char *c = static_cast<const char *>(p);
  const uintptr_t first = reinterpret_cast<uintptr_t>(c) & ~uintptr_t(127);
  const uintptr_t end = reinterpret_cast<uintptr_t>(c) + uintptr_t(bytes);
  for (uintptr_t a = first + uintptr_t(threadIdx.x) * 128; a < end;
       a += uintptr_t(blockDim.x) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
}

/// A 16-byte weight load for bytes read once per step (expert rows, one-token
/// GEMV rows): with `once` the line enters L2 at evict-first priority
/// (streamHintEnabled), so streaming 50-75 MB of experts does not push out
/// the lines the next kernels prefetched before their PDL wait; else __ldg.
/// Same bits either way.
__device__ __forceinline__ uint4 ldWeight(const uint4 *p, bool once) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (once) {
    uint4 v;
    uint64_t pol;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    asm("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p), "l"(pol));
    return v;
  }
#endif
  return __ldg(p);
}

/// A pointer-sized load through L2 for reads before pdlWait() (see above).
template <typename P> __device__ __forceinline__ P ldcgEarly(const P *p) {
  static_assert(sizeof(P) == 8, "pointer-sized");
  return reinterpret_cast<P>(
      __ldcg(reinterpret_cast<const unsigned long long *>(p)));
}

//===--- Bulk copies into shared memory (TMA, sm_90) ----------------------===//
// One thread initializes an mbarrier per copy (mbarInit, then
// fenceBarrierInit and a __syncthreads before anyone waits), issues
// bulkLoad, and the consumers wait on the barrier's phase 0 (mbarWait). The
// copy engine moves the bytes without registers or threads, so a block can
// have all of its weight rows in flight at once.

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbarInit(uint64_t *bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smemAddr(bar)),
               "r"(count));
#endif
}

/// Makes mbarInit visible to the copy engine.
__device__ __forceinline__ void fenceBarrierInit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) from
/// global to shared memory; `bar` (count 1) completes its phase when they
/// have landed. `once`: the bytes enter L2 at evict-first priority
/// (ldWeight).
__device__ __forceinline__ void bulkLoad(void *dst, const void *src,
                                         uint32_t bytes, uint64_t *bar,
                                         bool once) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(
          smemAddr(bar)),
      "r"(bytes)
      : "memory");
  if (once) {
    uint64_t pol;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
                 "bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                     smemAddr(dst)),
                 "l"(src), "r"(bytes), "r"(smemAddr(bar)), "l"(pol)
                 : "memory");
  } else {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
                 "bytes [%0], [%1], %2, [%3];" ::"r"(smemAddr(dst)),
                 "l"(src), "r"(bytes), "r"(smemAddr(bar))
                 : "memory");
  }
#endif
}

/// Waits until `bar` completed the phase of the given parity.
__device__ __forceinline__ void mbarWait(uint64_t *bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n"
               ".reg .pred done;\n"
               "WAIT_%=:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra WAIT_%=;\n"
               "}" ::"r"(smemAddr(bar)),
               "r"(parity)
               : "memory");
#endif
}

/// Launches `kernel` on `stream` with the PDL attribute when pdlEnabled().
/// Returns the launch error (also left for cudaGetLastError).
template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args &&...args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdlEnabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

template <typename T> __device__ __forceinline__ float toF(T v);
template <> __device__ __forceinline__ float toF<float>(float v) { return v; }
template <> __device__ __forceinline__ float toF<bf16>(bf16 v) {
  return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T fromF(float v);
template <> __device__ __forceinline__ float fromF<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 fromF<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

/// Elements of T in one 16-byte access.
template <typename T> struct Vec16 {
  static constexpr int kN = 16 / sizeof(T);
};

/// Widens a raw 16-byte chunk already in registers.
template <typename T>
__device__ __forceinline__ void unpack16(uint4 raw,
                                         float (&out)[Vec16<T>::kN]) {
  if constexpr (sizeof(T) == 4) {
    out[0] = __uint_as_float(raw.x);
    out[1] = __uint_as_float(raw.y);
    out[2] = __uint_as_float(raw.z);
    out[3] = __uint_as_float(raw.w);
  } else {
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
}

/// Loads 16 bytes at `p` (16-byte aligned) through the read-only path and
/// widens them to floats.
template <typename T>
__device__ __forceinline__ void load16(const T *__restrict__ p,
                                       float (&out)[Vec16<T>::kN]) {
  unpack16<T>(__ldg(reinterpret_cast<const uint4 *>(p)), out);
}

/// Loads N consecutive elements (N * sizeof(TX) a multiple of 16, 16-byte
/// aligned) as floats.
template <typename TX, int N>
__device__ __forceinline__ void loadVec(const TX *__restrict__ p,
                                        float (&out)[N]) {
  constexpr int M = Vec16<TX>::kN;
  static_assert(N % M == 0, "whole 16-byte chunks");
#pragma unroll
  for (int k = 0; k < N / M; ++k) {
    float part[M];
    load16(p + k * M, part);
#pragma unroll
    for (int j = 0; j < M; ++j)
      out[k * M + j] = part[j];
  }
}

/// acc[tt] += w . xr[tt] over `len` elements for tt < nt, across the warp
/// (each lane keeps a partial sum; the caller reduces). With `vec` (len a
/// multiple of the 16-byte element count of TW, all pointers 16-byte
/// aligned) each lane issues kBatch independent 16-byte weight loads before
/// using any, so enough bytes are in flight to approach DRAM bandwidth; the
/// activation rows are small and come from L1. One token gets 8 loads per
/// lane (4 KB per warp): a 4 KB bf16 row (in = 2048) is then a single DRAM
/// round trip and an 8 KB one (o_proj) two, instead of two and four. Each
/// lane still visits its chunks in ascending order, so the sums are the same
/// bits whatever kBatch is. `once`: the weights are read once per step
/// (ldWeight).
template <typename TW, typename TX, int TB>
__device__ __forceinline__ void
warpDots(const TW *__restrict__ w, const TX *const (&xr)[TB], int nt,
         int64_t len, bool vec, float (&acc)[TB], bool once = false) {
  constexpr int kBatch = TB >= 4 ? 2 : TB == 2 ? 4 : 8;
  const int lane = threadIdx.x & 31;
  if (vec) {
    constexpr int N = Vec16<TW>::kN;
    const int64_t chunks = len / N;
    for (int64_t c0 = lane; c0 < chunks; c0 += 32 * kBatch) {
      uint4 raw[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int64_t c = c0 + 32 * u;
        raw[u] = c < chunks
                     ? ldWeight(reinterpret_cast<const uint4 *>(w + c * N), once)
                     : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int64_t c = c0 + 32 * u;
        if (c >= chunks)
          break;
        float wv[N];
        unpack16<TW>(raw[u], wv);
#pragma unroll
        for (int tt = 0; tt < TB; ++tt)
          if (tt < nt) {
            float xv[N];
            loadVec<TX, N>(xr[tt] + c * N, xv);
#pragma unroll
            for (int j = 0; j < N; ++j)
              acc[tt] = fmaf(xv[j], wv[j], acc[tt]);
          }
      }
    }
  } else {
    for (int64_t c = lane; c < len; c += 32) {
      float wv = toF(w[c]);
#pragma unroll
      for (int tt = 0; tt < TB; ++tt)
        if (tt < nt)
          acc[tt] = fmaf(toF(xr[tt][c]), wv, acc[tt]);
    }
  }
}

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double warpSumD(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
/// thread gets the total. `scratch` holds 32 doubles.
__device__ __forceinline__ double blockSumD(double v, double *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int numWarps = blockDim.x >> 5;
  v = warpSumD(v);
  __syncthreads(); // scratch may still be read by a previous call
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  double t = lane < numWarps ? scratch[lane] : 0.0;
  return warpSumD(t);
}

/// True when `p` is 16-byte aligned.
inline bool aligned16(const void *p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

/// Hands out 256-byte aligned pieces of a caller's workspace.
class WorkspaceCarver {
public:
  WorkspaceCarver(void *base, int64_t bytes)
      : base_(static_cast<char *>(base)), bytes_(bytes) {}
  template <typename T> T *take(int64_t count) {
    int64_t n = (count * int64_t(sizeof(T)) + 255) / 256 * 256;
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += n;
    return p;
  }
  int64_t used() const { return used_; }
  bool fits() const { return used_ <= bytes_; }

private:
  char *base_;
  int64_t bytes_;
  int64_t used_ = 0;
};

/// Rounds up to the carver's granule.
inline int64_t workspaceRound(int64_t bytes) {
  return (bytes + 255) / 256 * 256;
}

} // namespace crosspool::kernels::cuda::detail

#endif // CROSSPOOL_KERNELS_CUDA_COMMON_CUH
