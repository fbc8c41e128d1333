//===- Linear.cu - GEMV for decode, cuBLAS for prefill, lm_head -----------===//
//
// Decode-sized linear layers are bound by the weight bytes: the GEMV kernel
// gives each warp one output row, streams that weight row once per group of
// up to 8 tokens with 16-byte loads (several in flight per lane), and keeps
// the few activation rows in L1. Larger T goes to cublasGemmEx (bf16 or fp32
// operands, fp32 compute; the pedantic fp32 mode so fp32 never becomes TF32).
//
// bf16 with `in` a multiple of 64 takes gemvMmaKernel instead: a block owns 8
// output rows, its W warps split `in` (so even a 512-row matrix puts enough
// loads in flight), each lane streams 16-byte weight chunks straight into
// mma.sync (Mma.cuh) against up to 16 token rows at once, and the warps'
// partial tiles are summed in a fixed order through shared memory. The
// weights are read once per 16 tokens instead of once per 8, and the tensor
// cores take the multiply-adds off the issue slots.
//
//===----------------------------------------------------------------------===//

#include "kernels/cuda/Common.cuh"
#include "kernels/cuda/Mma.cuh"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <type_traits>

namespace crosspool::kernels::cuda {
namespace {

using detail::bf16;
using detail::fromF;
using detail::toF;
using detail::Vec16;

constexpr int kGemvWarps = 8;
constexpr int kMaxTokens = 8;
constexpr int kMaxSegs = 3;

/// Up to kMaxSegs weight matrices sharing one activation x (the q, k, v
/// projections): segment i owns blocks [begin[i], begin[i + 1]) of one
/// launch, 8 output rows per block.
template <typename T, typename TY> struct GemvSegs {
  const T *w[kMaxSegs];
  const T *bias[kMaxSegs];
  TY *y[kMaxSegs];
  int64_t out[kMaxSegs];
  int64_t begin[kMaxSegs];
  int n;
  /// The weights are read once per step (ldWeight).
  bool once;
};

/// The segment of block `bx`: its weight, bias, output, row count and the
/// block's first row within it (selects by unrolled compares, so the
/// parameter arrays are never indexed at run time).
template <typename T, typename TY>
__device__ __forceinline__ void pickSeg(const GemvSegs<T, TY> &s, int64_t bx,
                                        const T *&w, const T *&bias, TY *&y,
                                        int64_t &out, int64_t &row0) {
  w = s.w[0];
  bias = s.bias[0];
  y = s.y[0];
  out = s.out[0];
  int64_t begin = 0;
#pragma unroll
  for (int i = 1; i < kMaxSegs; ++i)
    if (i < s.n && bx >= s.begin[i]) {
      w = s.w[i];
      bias = s.bias[i];
      y = s.y[i];
      out = s.out[i];
      begin = s.begin[i];
    }
  row0 = (bx - begin) * 8;
}

/// y[t, o] = x[t] . w[o] + bias[o] for t in [0, T), one warp per o. TB is the
/// token group (weights are re-read, from cache, once per group). VEC: `in`
/// is a multiple of the 16-byte element count and every row 16-byte aligned.
template <typename T, typename TY, int TB, bool VEC>
__global__ void __launch_bounds__(kGemvWarps * 32, 2)
    gemvKernel(const T *__restrict__ x, GemvSegs<T, TY> segs, int64_t numTokens,
               int64_t in) {
  static_assert(kGemvWarps == 8, "pickSeg's blocks hold 8 rows");
  const T *w, *bias;
  TY *y;
  int64_t out, r0;
  pickSeg(segs, blockIdx.x, w, bias, y, out, r0);
  // The block's rows are contiguous: start them towards L2 while the
  // previous kernel finishes.
  detail::prefetchL2(w + r0 * in,
                     (out - r0 < kGemvWarps ? out - r0 : kGemvWarps) * in *
                         int64_t(sizeof(T)));
  detail::pdlEnter();
  const int lane = threadIdx.x & 31;
  const int64_t o = r0 + (threadIdx.x >> 5);
  if (o >= out)
    return;
  const T *wr = w + o * in;
  const float b = bias ? toF(bias[o]) : 0.0f;
  for (int64_t t0 = 0; t0 < numTokens; t0 += TB) {
    const int nt = numTokens - t0 < TB ? int(numTokens - t0) : TB;
    const T *xr[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      xr[tt] = x + (t0 + (tt < nt ? tt : 0)) * in;
    float acc[TB];
#pragma unroll
    for (int tt = 0; tt < TB; ++tt)
      acc[tt] = 0.0f;
    detail::warpDots<T, T, TB>(wr, xr, nt, in, VEC, acc, segs.once);
#pragma unroll
    for (int tt = 0; tt < TB; ++tt) {
      float s = detail::warpSum(acc[tt]);
      if (lane == 0 && tt < nt)
        y[(t0 + tt) * out + o] = fromF<TY>(s + b);
    }
  }
}

template <typename T, typename TY, int TB>
void launchGemvTB(const T *x, const GemvSegs<T, TY> &segs, unsigned blocks,
                  int64_t numTokens, int64_t in, bool vec,
                  cudaStream_t stream) {
  if (vec)
    detail::launch(gemvKernel<T, TY, TB, true>, dim3(blocks),
                   dim3(kGemvWarps * 32), 0, stream, x, segs, numTokens, in);
  else
    detail::launch(gemvKernel<T, TY, TB, false>, dim3(blocks),
                   dim3(kGemvWarps * 32), 0, stream, x, segs, numTokens, in);
}

template <typename T, typename TY>
void launchGemv(const T *x, const GemvSegs<T, TY> &segs, unsigned blocks,
                int64_t numTokens, int64_t in, cudaStream_t stream) {
  constexpr int N = Vec16<T>::kN;
  bool vec = in % N == 0 && detail::aligned16(x);
  for (int i = 0; i < segs.n; ++i)
    vec = vec && detail::aligned16(segs.w[i]);
  if (numTokens == 1)
    launchGemvTB<T, TY, 1>(x, segs, blocks, numTokens, in, vec, stream);
  else if (numTokens == 2)
    launchGemvTB<T, TY, 2>(x, segs, blocks, numTokens, in, vec, stream);
  else if (numTokens <= 4)
    launchGemvTB<T, TY, 4>(x, segs, blocks, numTokens, in, vec, stream);
  else
    launchGemvTB<T, TY, kMaxTokens>(x, segs, blocks, numTokens, in, vec,
                                    stream);
}

/// One token, bf16, `in` % 8 == 0, x and w 16-byte aligned (gemvKernel<bf16,
/// TY, 1, true>'s case): the block's 8 weight rows (contiguous) are copied
/// into shared memory by the TMA engine *before* the PDL wait. No kernel of a
/// step writes weights, so the copies may run while the predecessor still
/// does (the block resident beside it since the predecessor's trigger), and
/// after the wait a warp reads only its row from shared memory and x. Each
/// lane visits its 16-byte chunks in warpDots' order with the same fmaf
/// sequence: gemvKernel's bits.
template <typename TY>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemvStagedKernel(const bf16 *__restrict__ x, GemvSegs<bf16, TY> segs,
                     int64_t in) {
  extern __shared__ uint4 rowsSm[];
  __shared__ __align__(8) uint64_t bar[kGemvWarps];
  const bf16 *w, *bias;
  TY *y;
  int64_t out, r0;
  pickSeg(segs, blockIdx.x, w, bias, y, out, r0);
  const int rows = out - r0 < kGemvWarps ? int(out - r0) : kGemvWarps;
  const int64_t chunks = in / 8;
  if (threadIdx.x == 0) {
    for (int r = 0; r < kGemvWarps; ++r)
      detail::mbarInit(&bar[r], 1);
    detail::fenceBarrierInit();
    for (int r = 0; r < rows; ++r)
      detail::bulkLoad(rowsSm + r * chunks, w + (r0 + r) * in,
                       uint32_t(in * 2), &bar[r], segs.once);
  }
  __syncthreads();
  detail::pdlEnter();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (warp >= rows)
    return;
  const int64_t o = r0 + warp;
  const float b = bias ? toF(bias[o]) : 0.0f;
  detail::mbarWait(&bar[warp], 0);
  const uint4 *wr = rowsSm + warp * chunks;
  float acc = 0.0f;
  for (int64_t c = lane; c < chunks; c += 32) {
    float wv[8], xv[8];
    detail::unpack16<bf16>(wr[c], wv);
    detail::loadVec<bf16, 8>(x + c * 8, xv);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      acc = fmaf(xv[j], wv[j], acc);
  }
  const float s = detail::warpSum(acc);
  if (lane == 0)
    y[o] = fromF<TY>(s + b);
}

/// Largest `in` gemvStagedKernel takes (8 rows of it in shared memory).
constexpr int64_t kStagedMaxIn = 8192;

template <typename TY>
cudaError_t launchGemvStaged(const bf16 *x, const GemvSegs<bf16, TY> &segs,
                             int64_t blocks, int64_t in, cudaStream_t stream) {
  const cudaError_t attr = cudaFuncSetAttribute(
      gemvStagedKernel<TY>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      int(kGemvWarps * kStagedMaxIn * 2));
  if (attr != cudaSuccess)
    return attr;
  return detail::launch(gemvStagedKernel<TY>, dim3(unsigned(blocks)),
                        dim3(kGemvWarps * 32), size_t(kGemvWarps * in * 2),
                        stream, x, segs, in);
}

/// y[t, o] = x[t] . w[o] + bias[o] for bf16 x, w; 8 rows o per block.
template <typename TY, int W>
__global__ void __launch_bounds__(W * 32)
    gemvMmaKernel(const bf16 *__restrict__ x, GemvSegs<bf16, TY> segs,
                  int64_t numTokens, int64_t in) {
  __shared__ float red[W * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const bf16 *w, *bias;
  TY *y;
  int64_t out, n0;
  pickSeg(segs, blockIdx.x, w, bias, y, out, n0);
  detail::prefetchL2(w + n0 * in, (out - n0 < 8 ? out - n0 : 8) * in * 2);
  detail::pdlEnter();
  const bf16 *wr[1] = {n0 + g < out ? w + (n0 + g) * in + t * 16 : nullptr};
  const int chunks = int(in / 64);
  for (int64_t m0 = 0; m0 < numTokens; m0 += 16) {
    const bf16 *xg = m0 + g < numTokens ? x + (m0 + g) * in + t * 16 : nullptr;
    const bf16 *xh =
        m0 + g + 8 < numTokens ? x + (m0 + g + 8) * in + t * 16 : nullptr;
    float c[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    detail::tileDots<1, W, bf16>(xg, xh, wr, true, true, chunks, warp, c,
                                 segs.once);
    detail::reduceTiles<1, W>(c, red);
    if (warp == 0)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t tok = m0 + g + (r >= 2 ? 8 : 0);
        const int64_t o = n0 + 2 * t + (r & 1);
        if (tok < numTokens && o < out)
          y[tok * out + o] = fromF<TY>(c[0][r] + (bias ? toF(bias[o]) : 0.0f));
      }
  }
}

template <typename TY>
void launchGemvMma(const bf16 *x, const GemvSegs<bf16, TY> &segs,
                   int64_t blocks, int64_t numTokens, int64_t in, int numSms,
                   cudaStream_t stream) {
  const int64_t chunks = in / 64;
  // Few row blocks: more warps per block split `in`, so every SM has loads
  // in flight; never more warps than chunks.
  int warps = blocks < 4 * int64_t(std::max(numSms, 1)) ? 16 : 8;
  while (warps > 4 && chunks < warps)
    warps /= 2;
  const dim3 grid = dim3(unsigned(blocks));
  if (warps == 16)
    detail::launch(gemvMmaKernel<TY, 16>, grid, dim3(16 * 32), 0, stream, x,
                   segs, numTokens, in);
  else if (warps == 8)
    detail::launch(gemvMmaKernel<TY, 8>, grid, dim3(8 * 32), 0, stream, x, segs,
                   numTokens, in);
  else
    detail::launch(gemvMmaKernel<TY, 4>, grid, dim3(4 * 32), 0, stream, x, segs,
                   numTokens, in);
}

/// Builds the launch's segment table from the host's LinearSegs; returns
/// the total block count.
template <typename T, typename TY>
int64_t makeSegs(const LinearSeg *segs, int n, GemvSegs<T, TY> &out) {
  out = GemvSegs<T, TY>{};
  out.n = n;
  int64_t blocks = 0;
  for (int i = 0; i < n; ++i) {
    out.w[i] = static_cast<const T *>(segs[i].w);
    out.bias[i] = static_cast<const T *>(segs[i].bias);
    out.y[i] = static_cast<TY *>(segs[i].y);
    out.out[i] = segs[i].out;
    out.begin[i] = blocks;
    blocks += (segs[i].out + 7) / 8;
  }
  return blocks;
}

/// One GEMV launch over all segments; T, in, types as checked by linearImpl.
template <typename T, typename TY>
void launchGemvSegs(const void *x, const LinearSeg *segs, int n,
                    int64_t numTokens, int64_t in, bool mma,
                    const BlockContext &ctx) {
  GemvSegs<T, TY> s;
  const int64_t blocks = makeSegs(segs, n, s);
  s.once = streamHintEnabled();
  if constexpr (std::is_same_v<T, bf16>) {
    bool staged = numTokens == 1 && gemvStagedEnabled() && in % 8 == 0 &&
                  in <= kStagedMaxIn && detail::aligned16(x);
    for (int i = 0; i < n; ++i)
      staged = staged && detail::aligned16(segs[i].w);
    if (staged) {
      launchGemvStaged<TY>(static_cast<const bf16 *>(x), s, blocks, in,
                           ctx.stream);
      return;
    }
    if (mma) {
      // Neutral with the hint at 4 and 8 tokens (H100, docs/perf.md v9).
      s.once = false;
      launchGemvMma<TY>(static_cast<const bf16 *>(x), s, blocks, numTokens, in,
                        ctx.numSms, ctx.stream);
      return;
    }
  }
  launchGemv<T, TY>(static_cast<const T *>(x), s, unsigned(blocks), numTokens,
                    in, ctx.stream);
}

/// y[t, :] = bias (or 0), so cuBLAS can add the product with beta = 1.
template <typename T, typename TY>
__global__ void broadcastBiasKernel(const T *bias, int64_t T_, int64_t out,
                                    TY *y) {
  detail::pdlEnter();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T_ * out;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = fromF<TY>(toF(bias[i % out]));
}

absl::Status invalid(const char *kernel, const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", msg));
}

absl::Status linearImpl(const char *kernel, const void *x,
                        const LinearSeg *segs, int n, int64_t T, int64_t in,
                        DType dt, bool floatOut, const BlockContext &ctx,
                        LinearAlgo algo) {
  if (n < 1 || n > kMaxSegs)
    return invalid(kernel, absl::StrCat("expects 1 to ", kMaxSegs,
                                        " weights but got ", n));
  for (int i = 0; i < n; ++i)
    if (T < 0 || in <= 0 || segs[i].out <= 0)
      return invalid(
          kernel, absl::StrCat("expects T >= 0 and positive in, out but got ",
                               T, ", ", in, ", ", segs[i].out));
  if (T == 0)
    return absl::OkStatus();
  if (!x)
    return invalid(kernel, "null input, weight or output");
  int64_t rows = 0;
  for (int i = 0; i < n; ++i) {
    if (!segs[i].w || !segs[i].y)
      return invalid(kernel, "null input, weight or output");
    rows += segs[i].out;
  }
  if (algo == LinearAlgo::kAuto)
    algo = T <= kGemvMaxRows ? LinearAlgo::kGemv : LinearAlgo::kBlas;

  if (algo == LinearAlgo::kGemv) {
    if (rows > int64_t(INT32_MAX) * kGemvWarps)
      return invalid(kernel, absl::StrCat("out ", rows, " too large"));
    // One token: the one-warp-per-row FMA kernel measured ~1 us faster on
    // q_proj (no cross-warp reduction); from two tokens on the mma kernel
    // reads the weights once for up to 16 rows (docs/perf.md).
    bool mma =
        dt == DType::kBF16 && T >= 2 && in % 64 == 0 && detail::aligned16(x);
    for (int i = 0; i < n; ++i)
      mma = mma && detail::aligned16(segs[i].w);
    if (dt == DType::kF32)
      launchGemvSegs<float, float>(x, segs, n, T, in, false, ctx);
    else if (floatOut)
      launchGemvSegs<bf16, float>(x, segs, n, T, in, mma, ctx);
    else
      launchGemvSegs<bf16, bf16>(x, segs, n, T, in, mma, ctx);
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("gemvKernel");
    return absl::OkStatus();
  }

  if (!ctx.blas)
    return invalid(kernel, "the cuBLAS path needs a cuBLAS handle");
  for (int i = 0; i < n; ++i) {
    const int64_t out = segs[i].out;
    const void *w = segs[i].w, *bias = segs[i].bias;
    void *y = segs[i].y;
    if (T > INT32_MAX || in > INT32_MAX || out > INT32_MAX)
      return invalid(kernel, "dimension beyond cuBLAS's int range");
    const bool f32 = dt == DType::kF32;
    const cudaDataType_t ab = f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t c = (f32 || floatOut) ? CUDA_R_32F : CUDA_R_16BF;
    float beta = 0.0f;
    if (bias) {
      int64_t nn = T * out;
      unsigned blocks = unsigned(std::min<int64_t>((nn + 255) / 256, 65536));
      if (f32)
        detail::launch(broadcastBiasKernel<float, float>, dim3(blocks),
                       dim3(256), 0, ctx.stream,
                       static_cast<const float *>(bias), T, out,
                       static_cast<float *>(y));
      else if (floatOut)
        detail::launch(broadcastBiasKernel<bf16, float>, dim3(blocks),
                       dim3(256), 0, ctx.stream,
                       static_cast<const bf16 *>(bias), T, out,
                       static_cast<float *>(y));
      else
        detail::launch(broadcastBiasKernel<bf16, bf16>, dim3(blocks), dim3(256),
                       0, ctx.stream, static_cast<const bf16 *>(bias), T, out,
                       static_cast<bf16 *>(y));
      CP_CUDA_RETURN_IF_LAUNCH_FAILED("broadcastBiasKernel");
      beta = 1.0f;
    }
    const float alpha = 1.0f;
    CP_CUBLAS_RETURN_IF_ERROR(cublasSetStream(ctx.blas, ctx.stream));
    // Row-major y[T, out] is column-major y^T[out, T] = W[out, in] x^T, and
    // row-major W[out, in] is column-major W^T, hence OP_T on it.
    CP_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
        ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(T), int(in), &alpha,
        w, ab, int(in), x, ab, int(in), &beta, y, c, int(out),
        f32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  }
  return absl::OkStatus();
}

} // namespace

absl::Status linear(const void *x, const void *w, const void *bias, int64_t T,
                    int64_t in, int64_t out, void *y, DType dt,
                    const BlockContext &ctx, LinearAlgo algo) {
  const LinearSeg seg{w, bias, out, y};
  return linearImpl("linear", x, &seg, 1, T, in, dt, /*floatOut=*/false, ctx,
                    algo);
}

absl::Status linearMulti(const void *x, int64_t T, int64_t in,
                         const LinearSeg *segs, int n, DType dt,
                         const BlockContext &ctx, LinearAlgo algo) {
  if (!segs)
    return invalid("linear", "null weight list");
  return linearImpl("linear", x, segs, n, T, in, dt, /*floatOut=*/false, ctx,
                    algo);
}

absl::Status lmHead(const void *h, const void *w, int64_t T, int64_t H,
                    int64_t V, float *logits, DType dt, const BlockContext &ctx,
                    LinearAlgo algo) {
  const LinearSeg seg{w, nullptr, V, logits};
  return linearImpl("lm_head", h, &seg, 1, T, H, dt, /*floatOut=*/true, ctx,
                    algo);
}

#ifdef CROSSPOOL_TRACE
CROSSPOOL_TRACE_TU(Linear)
#endif

} // namespace crosspool::kernels::cuda
