//===- Kernels.h - CUDA kernels of the KV and weights pools -----*- C++ -*-===//
//
// The CUDA counterparts of kernels/cpu (same math, docs/plan-format.md), on
// device pointers. Two storage modes, chosen per call by DType: kF32 (fp32
// storage and math; matches the CPU kernels to ~1e-5 relative) and kBF16
// (bf16 weights, activations and KV pages, fp32 accumulation). Router
// weights/probabilities, logits and MoE/attention scratch are always fp32.
//
// Every function validates its host-side arguments (InvalidArgument naming
// the field, expected vs actual), enqueues work on `stream` and returns the
// launch status; it never synchronizes. Data that only the device sees (token
// ids, positions, page tables) cannot be validated on the host: the kernels
// guard their memory accesses against it and document what they write then.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CUDA_KERNELS_H
#define CROSSPOOL_KERNELS_CUDA_KERNELS_H

#include "kernels/cpu/Attention.h"
#include "kernels/cpu/Moe.h"

#include "absl/status/status.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace crosspool::kernels::cuda {

/// Programmatic dependent launch (Hopper): every kernel of this library is
/// launched with cudaLaunchAttributeProgrammaticStreamSerialization, waits
/// for the previous grid in the stream (griddepcontrol.wait) before it reads
/// anything a kernel wrote or writes anything, and lets its dependents launch
/// early; weight kernels prefetch their weight slice into L2 before the wait.
/// On by default; the environment variable CROSSPOOL_PDL=0 (read once) or
/// setPdlEnabled(false) turns it off for launches enqueued afterwards (a
/// captured graph keeps what was in force when it was captured).
bool pdlEnabled();
void setPdlEnabled(bool on);

/// The fused small-T MoE path (T <= 4: router + top-k + grouping in one
/// launch, the down projection with the weighted combine in another). On by
/// default; CROSSPOOL_MOE_FUSED=0 (read once) or setMoeFusedEnabled(false)
/// selects the grouped five-launch path for every T (for A/B timing).
bool moeFusedEnabled();
void setMoeFusedEnabled(bool on);

/// The prefill MoE path (bf16 only, never while the stream is being
/// captured into a graph): the routed rows gathered in expert order and the
/// experts' gate/up and down projections as cuBLAS GEMMs over each expert's
/// contiguous rows, spread over a few side streams (the host reads the
/// per-expert counts once: one small copy and a host wait per call). Taken
/// when T * top_k >= moeGemmMinPairsPerExpert() * num_experts, i.e. when an
/// expert has enough rows on average for its weights to be reused. On by
/// default; CROSSPOOL_MOE_GEMM=0 (read once) or setMoeGemmEnabled(false)
/// keeps the grouped tensor-core path for every T (for A/B timing).
bool moeGemmEnabled();
void setMoeGemmEnabled(bool on);
constexpr int32_t kMoeGemmMinPairsPerExpert = 16;
/// The threshold above (default kMoeGemmMinPairsPerExpert, or
/// CROSSPOOL_MOE_GEMM_MIN when set to an integer >= 0; read once).
int32_t moeGemmMinPairsPerExpert();
void setMoeGemmMinPairsPerExpert(int32_t n);
/// The path is only taken for at most this many experts (default
/// kMoeGemmMaxExperts, or CROSSPOOL_MOE_GEMM_MAX_EXPERTS; read once): it
/// enqueues two or three GEMMs per active expert from the host, and on an H100
/// 128 experts (Qwen3-30B-A3B) made it slower than the grouped path up to
/// T = 2048 (6.7 vs 6.0 ms per layer) while 60 experts (Qwen1.5-MoE) gained
/// 6x at T = 2048 (1.55 vs 9.6 ms).
constexpr int32_t kMoeGemmMaxExperts = 64;
int32_t moeGemmMaxExperts();
void setMoeGemmMaxExperts(int32_t n);
/// Side streams of the prefill path (1 to 8, default 4, or
/// CROSSPOOL_MOE_GEMM_STREAMS; read once).
constexpr int32_t kMoeGemmMaxStreams = 8;
int32_t moeGemmStreams();
void setMoeGemmStreams(int32_t n);
/// moe() calls that took the prefill path since the process started (for
/// tests and benchmarks).
int64_t moeGemmCalls();

/// Early prefetch (needs PDL): a kernel whose weights depend on routing (the
/// fused MoE down/combine) reads the routing, written two launches back,
/// before its PDL wait and prefetches the selected weights into L2 while its
/// predecessor still runs. Off by default: neutral at one token, 10 % slower
/// at four (Qwen3-30B-A3B on an H100, docs/perf.md v7);
/// CROSSPOOL_EARLY_PREFETCH=1 (read once) or setEarlyPrefetchEnabled(true)
/// turns it on for launches enqueued afterwards.
bool earlyPrefetchEnabled();
void setEarlyPrefetchEnabled(bool on);

/// One-token routing on the fused path with the whole block (the double
/// exps in parallel, top-k by rank) instead of one warp (eight exps per
/// lane, K dependent argmax rounds), and its grouping in one phase (each
/// expert has one row); the same bits. On by default;
/// CROSSPOOL_ROUTE_BLOCK=0 (read once) or setRouteBlockEnabled(false) keeps
/// the one-warp version.
bool routeBlockEnabled();
void setRouteBlockEnabled(bool on);

/// The fused path's down/combine kernel with two warps per output row (each
/// half of the row's pairs, summed in pair order: the same bits) instead of
/// one: at one token the H rows are all the parallelism the kernel has. On
/// by default; CROSSPOOL_DOWN_SPLIT=0 (read once) or
/// setDownSplitEnabled(false) keeps one warp per row.
bool downSplitEnabled();
void setDownSplitEnabled(bool on);

/// At one row, the decode attention's split merge and add + RMSNorm let the
/// next kernel launch before they wait for their own predecessor (PDL
/// trigger first, Common.cuh pdlEnterEarly), so the o projection's and the
/// q/k/v projection's weights stream into L2 while the attention or the MoE
/// still runs (H100, Qwen3 B1: -1 %; at B4 it cost 0.7 %, so more rows
/// trigger after the wait). CROSSPOOL_EARLY_TRIGGER=0 (read once) or
/// setEarlyTriggerEnabled(false) triggers after the wait like every other
/// kernel.
bool earlyTriggerEnabled();
void setEarlyTriggerEnabled(bool on);

/// Prompt attention on tensor cores (bf16 KV, head_dim 32/64/128, 16 % G ==
/// 0): a warp per 16 (position, head) rows walking its keys with mma.sync,
/// instead of the scalar shared-memory kernel (20-25x faster on an H200 at 1024
/// prompt rows, docs/perf.md). On by default; CROSSPOOL_PREFILL_MMA=0 (read
/// once) or setPrefillMmaEnabled(false) keeps the scalar kernel.
bool prefillMmaEnabled();
void setPrefillMmaEnabled(bool on);

/// Weights that a decode step reads once enter L2 at evict-first priority
/// (Common.cuh ldWeight, bulkLoad): the routed experts on the one-token FMA
/// kernels and on the grouped path (T > 4), the one-token GEMVs. The 75 MB
/// an MoE layer streams then no longer evicts the lines the next kernels
/// prefetched before their PDL wait (H100, Qwen3-30B-A3B B1: -0.19 ms
/// alone, -0.16 ms on top of gemvStagedEnabled; docs/perf.md v9). Not on
/// the tensor-core tiles at 2-4 tokens (0.5 % slower at B4) or the GEMV
/// tiles (neutral). Same bits either way. CROSSPOOL_STREAM_HINT=0 (read
/// once) or setStreamHintEnabled(false) loads them as every other weight.
bool streamHintEnabled();
void setStreamHintEnabled(bool on);

/// One-token bf16 GEMVs (q/k/v, o, lm_head, dense MLPs) copy each block's
/// weight rows into shared memory with TMA bulk copies issued before the PDL
/// wait (Linear.cu gemvStagedKernel), so a projection's weights stream while
/// the kernel before it still runs and arrive in shared memory, not just in
/// L2 (Qwen3-30B-A3B B1 on an H100: 4.10 -> 3.75 ms alone, 3.59 with the
/// stream hint); same bits as the register kernel.
/// CROSSPOOL_GEMV_STAGED=0 (read once) or setGemvStagedEnabled(false) keeps
/// the register kernel.
bool gemvStagedEnabled();
void setGemvStagedEnabled(bool on);

#ifdef CROSSPOOL_TRACE
/// Profiling builds only (Common.cuh): every block's PDL wait appends a
/// record {grid id, t before, t after (globaltimer ns), block, SM} to `buf`
/// (`cap` records of 32 bytes) at index atomicAdd(n, 1); null stops.
void traceAttach(void *buf, unsigned *n, unsigned cap);
#endif

/// Storage type of weights, activations and KV pages.
enum class DType : int32_t { kF32 = 0, kBF16 = 1 };

inline int64_t dtypeBytes(DType d) { return d == DType::kF32 ? 4 : 2; }
const char *dtypeName(DType d);

/// What the block-level kernels (linear, attention, moe) need beyond their
/// operands. The workspace is device memory owned by the caller, at least the
/// `...WorkspaceBytes()` of the call; it may be reused once the stream passed
/// the call.
struct BlockContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  /// Multiprocessors of the device (cudaDevAttrMultiProcessorCount): sizes the
  /// split of long attention rows.
  int32_t numSms = 132;
  void *workspace = nullptr;
  int64_t workspaceBytes = 0;
};

//===----------------------------------------------------------------------===//
// Elementwise (Elementwise.cu)
//===----------------------------------------------------------------------===//

/// out[T, H] = table[ids[t], :] for table[V, H]. An id outside [0, V) gets a
/// row of NaN and, when `badIds` (device int32) is not null, increments it.
absl::Status embed(const int32_t *ids, int64_t T, const void *table, int64_t V,
                   int64_t H, void *out, DType dt, int32_t *badIds,
                   cudaStream_t stream);

/// y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w, sum of squares in double as
/// the CPU kernel. `y` may alias `x`.
absl::Status rmsNorm(const void *x, const void *w, float eps, int64_t T,
                     int64_t H, void *y, DType dt, cudaStream_t stream);

/// The residual add fused with the next norm: h += delta (rounded to the
/// storage type), then y = rmsNorm(h) * w. `delta` may be null (plain norm
/// that also keeps h). `y` must not alias `h` or `delta`.
absl::Status addRmsNorm(void *h, const void *delta, const void *w, float eps,
                        int64_t T, int64_t H, void *y, DType dt,
                        cudaStream_t stream);
/// addRmsNorm with the sum stored elsewhere: hOut = h + delta (rounded),
/// y = rmsNorm(hOut) * w, the same bits as add(h, delta, hOut) then
/// rmsNorm(hOut, y). hOut may alias h or delta; with a delta, `y` aliasing
/// h, delta or hOut is InvalidArgument.
absl::Status addRmsNormInto(const void *h, const void *delta, const void *w,
                            float eps, int64_t T, int64_t H, void *hOut,
                            void *y, DType dt, cudaStream_t stream);

/// c[i] = a[i] + b[i]; `c` may alias `a` or `b`.
absl::Status add(const void *a, const void *b, void *c, int64_t n, DType dt,
                 cudaStream_t stream);

/// out[i] = silu(gate[i]) * up[i]; `out` may alias either input.
absl::Status swiglu(const void *gate, const void *up, void *out, int64_t n,
                    DType dt, cudaStream_t stream);

/// out[t] = argmax of logits[t, 0..V) as cpu::argmax (ties and NaN: the
/// lower index; NaN only when the whole row is NaN, then 0).
absl::Status argmaxRows(const float *logits, int64_t T, int64_t V, int32_t *out,
                        cudaStream_t stream);

/// Reads `bytes` (a multiple of 16, 16-byte aligned) with `blocks` blocks
/// of 256 threads and writes nothing (`sink` is only a store target the
/// compiler cannot prove dead): the best a pure streaming kernel of that size
/// does, launch and ramp included (crosspool-kbench's floor rows).
absl::Status streamRead(const void *p, int64_t bytes, int64_t blocks,
                        uint32_t *sink, cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Linear layers (Linear.cu)
//===----------------------------------------------------------------------===//

/// How `linear` computes: kGemv streams each weight row once per 8 tokens
/// (memory-bound decode), kBlas calls cublasGemmEx (fp32 math; no TF32 in fp32
/// mode), kAuto picks kGemv for T <= kGemvMaxRows.
enum class LinearAlgo : int32_t { kAuto = 0, kGemv = 1, kBlas = 2 };
constexpr int64_t kGemvMaxRows = 16;

/// y[T, out] = x[T, in] W[out, in]^T + bias[out] (`bias` may be null). `y`
/// must not overlap `x` or `w`; its type is `dt`. kBlas needs ctx.blas.
absl::Status linear(const void *x, const void *w, const void *bias, int64_t T,
                    int64_t in, int64_t out, void *y, DType dt,
                    const BlockContext &ctx,
                    LinearAlgo algo = LinearAlgo::kAuto);

/// One weight of linearMulti: y[T, out] = x W^T + bias (bias may be null).
struct LinearSeg {
  const void *w = nullptr;
  const void *bias = nullptr;
  int64_t out = 0;
  void *y = nullptr;
};

/// `linear` for 1 to 3 weights sharing the input x[T, in] (the q, k and v
/// projections): on the GEMV path all of them in ONE launch (the blocks of
/// weight i follow those of weight i - 1), so the small k and v matrices
/// cost no launch and no ramp of their own; on the cuBLAS path one GEMM
/// each. Same numerics per output row as `linear`.
absl::Status linearMulti(const void *x, int64_t T, int64_t in,
                         const LinearSeg *segs, int n, DType dt,
                         const BlockContext &ctx,
                         LinearAlgo algo = LinearAlgo::kAuto);

/// logits[T, V] (fp32) = h[T, H] W[V, H]^T.
absl::Status lmHead(const void *h, const void *w, int64_t T, int64_t H,
                    int64_t V, float *logits, DType dt, const BlockContext &ctx,
                    LinearAlgo algo = LinearAlgo::kAuto);

//===----------------------------------------------------------------------===//
// Attention (Attention.cu)
//===----------------------------------------------------------------------===//

using AttentionParams = cpu::AttentionParams;

/// The paged KV cache of one layer, as the device sees it. Every page of a
/// model lives in one virtual range (CUDA VMM): page `id` starts at
/// `base + id * pageStrideBytes` and holds tokensPerPage tokens of one layer
/// of one sequence, a K block [tokensPerPage][numKvHeads][headDim] then a V
/// block of the same shape, in `dtype` (the layout of kernels/cpu).
struct KvCacheView {
  void *base = nullptr;
  int64_t pageStrideBytes = 0;
  /// Device int32 [numSeqs][maxPagesPerSeq]: page ids of this layer for each
  /// sequence in position order; a negative id is an unmapped page.
  const int32_t *pageTable = nullptr;
  int32_t maxPagesPerSeq = 0;
  int32_t numSeqs = 0;
  int32_t tokensPerPage = 0;
  int32_t numKvHeads = 0;
  int32_t headDim = 0;
  DType dtype = DType::kF32;
};

/// Bytes of one page: 2 * tokensPerPage * numKvHeads * headDim * dtype size.
int64_t kvPageBytes(const KvCacheView &kv);

/// Device pointers of the attention weights (`dt` storage), null where the
/// model has none; shapes as cpu::AttentionWeights.
struct AttentionWeights {
  const void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  const void *qBias = nullptr, *kBias = nullptr, *vBias = nullptr,
             *oBias = nullptr;
  const void *qNorm = nullptr, *kNorm = nullptr;
};

/// Steps 2-5 of the Attention task for T rows, given the projections
/// q [T, nh*hd], k, v [T, nkv*hd] (storage kv.dtype): qk-norm, clip, RoPE in
/// place on q and k (clip on v), then k and v stored at (rowSeq[t],
/// rowPos[t]) through the page table. Rows whose page is unmapped or beyond
/// the table are not stored. rowSeq/rowPos are device int32 [T]. They and
/// the page table are read before the PDL wait (Common.cuh): no kernel
/// enqueued right before this call may write them (the runtime stores them
/// by copy before a step's first kernel).
absl::Status qkNormRopeKvWrite(void *q, void *k, void *v, int64_t T,
                               const void *qNorm, const void *kNorm,
                               const AttentionParams &p, const int32_t *rowSeq,
                               const int32_t *rowPos, const KvCacheView &kv,
                               cudaStream_t stream);

/// How `attend` tiles its work: a block takes `rowsPerBlock` consecutive rows
/// and all query heads of one KV head (they share every K/V load), over one
/// of `numSplits` position ranges of `splitLen` (the last one open-ended);
/// with numSplits > 1 partial softmaxes go to the workspace and a second
/// kernel merges them (flash-decoding), so one long row fills the GPU.
struct AttendConfig {
  int32_t rowsPerBlock = 1;
  int32_t numSplits = 1;
  int32_t splitLen = 1 << 30;
};

/// Picks the tiling: decode-sized T (or any T when `oneRowPerBlock`: rows of
/// different sequences) gets one row per block and enough splits of
/// `maxContext` (an upper bound of rowPos + 1, used only for speed) for about
/// two blocks per multiprocessor; prefill-sized T gets query tiles.
AttendConfig chooseAttendConfig(int64_t T, const AttentionParams &p,
                                int32_t maxContext, int32_t numSms,
                                bool oneRowPerBlock = false);

int64_t attendWorkspaceBytes(int64_t T, const AttentionParams &p,
                             const AttendConfig &c);

/// Which rows of an attention() call are decode rows: rows [0, decodeRows)
/// each belong to a sequence with no other row in the call, at contexts
/// <= decodeContext. They are attended in a pass of their own, one row per
/// block (the tensor-core decode kernel) with splits sized for their
/// context, and the remaining rows (prompt chunks, contexts <= the call's
/// maxContext) get query tiles sized for theirs. Without this, a query tile
/// that holds decode rows next to prompt rows walks every decode row's whole
/// context at the cost of a full tile (docs/serving.md, the 58 GiB result),
/// and a batch of more than 32 decode rows is tiled like a prompt.
struct AttendRows {
  int64_t decodeRows = 0;
  int32_t decodeContext = 1;
};

/// The passes attention() runs for T rows: `decode` over rows
/// [0, decodeRows), `prompt` over the rest (decodeRows == 0: one prompt-tiled
/// pass over all rows; decodeRows == T: one decode pass).
struct AttendPlan {
  int64_t decodeRows = 0;
  AttendConfig decode, prompt;
};
AttendPlan planAttend(int64_t T, const AttentionParams &p, int32_t maxContext,
                      int32_t numSms, const AttendRows &rows = {});

/// Step 6: heads[T, nh*hd] (storage kv.dtype) = causal (optionally
/// sliding-window) GQA softmax attention of q (already normed and rotated)
/// over positions of the row's sequence read through the page table; all K/V
/// a row sees must be stored already. Unmapped pages are skipped.
absl::Status attend(const void *q, int64_t T, const AttentionParams &p,
                    const int32_t *rowSeq, const int32_t *rowPos,
                    const KvCacheView &kv, const AttendConfig &c, void *heads,
                    const BlockContext &ctx);

int64_t attentionWorkspaceBytes(int64_t T, const AttentionParams &p,
                                const AttendConfig &c);
int64_t attentionWorkspaceBytes(int64_t T, const AttentionParams &p,
                                const AttendPlan &plan);

/// The whole Attention task (cpu::attention): x[T, hidden] -> out[T, hidden],
/// `out` may alias `x`. Attends in the passes of
/// planAttend(T, p, maxContext, numSms, rows). rowSeq, rowPos and the page
/// table are read before PDL waits, as in qkNormRopeKvWrite.
absl::Status attention(const void *x, int64_t T, const AttentionWeights &w,
                       const AttentionParams &p, const int32_t *rowSeq,
                       const int32_t *rowPos, const KvCacheView &kv,
                       int32_t maxContext, void *out, const BlockContext &ctx,
                       const AttendRows &rows = {});

//===----------------------------------------------------------------------===//
// Mixture of experts (Moe.cu)
//===----------------------------------------------------------------------===//

using MoeParams = cpu::MoeParams;

/// One SwiGLU expert's device weights: gate, up [I, H], down [H, I].
struct ExpertPtrs {
  const void *gate = nullptr;
  const void *up = nullptr;
  const void *down = nullptr;
};

struct MoeWeights {
  /// Router [E, H] in the storage type.
  const void *router = nullptr;
  /// Device array of E expert pointer triples (built once when a model is
  /// loaded; entries of experts never selected may be null).
  const ExpertPtrs *experts = nullptr;
  /// Shared expert (host struct of device pointers); all null when none.
  ExpertPtrs shared;
  /// Shared expert gate [1, H]; null = ungated.
  const void *sharedGate = nullptr;
};

/// Router: fp32 logits x R^T, softmax, top-k (descending, ties to the lower
/// index), optional renormalization. indices, weights: device [T, topK].
absl::Status route(const void *x, const void *router, int64_t T, int64_t H,
                   int32_t numExperts, int32_t topK, bool normTopkProb,
                   int32_t *indices, float *weights, DType dt,
                   cudaStream_t stream);

int64_t moeWorkspaceBytes(int64_t T, const MoeParams &p);

/// The whole Moe task (cpu::moe) (T <= 4: the fused path of Moe.cu, three
/// launches plus two for a shared expert; large T in bf16: the cuBLAS
/// prefill path, see moeGemmEnabled, which synchronizes with the host once
/// and is never taken while `ctx.stream` is capturing): routing, tokens grouped
/// per expert on the device (each selected expert's weights streamed once per 8
/// of its tokens), fused gate/up/SiLU, down projection scaled by the routing
/// weight, shared expert with its sigmoid gate, and a deterministic per-token
/// sum in ascending expert order. `y` may alias `x`. If `routedIndices` is not
/// null the routing (device int32 [T, topK]) is copied there too.
absl::Status moe(const void *x, int64_t T, const MoeWeights &w,
                 const MoeParams &p, void *y, DType dt, const BlockContext &ctx,
                 int32_t *routedIndices = nullptr);

} // namespace crosspool::kernels::cuda

#endif // CROSSPOOL_KERNELS_CUDA_KERNELS_H
