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

namespace crosspool::kernels::cuda {
namespace {

using detail::bf16;
using detail::fromF;
using detail::toF;
using detail::Vec16;

constexpr int kGemvWarps = 8;
constexpr int kMaxTokens = 8;

/// y[t, o] = x[t] . w[o] + bias[o] for t in [0, T), one warp per o. TB is the
/// token group (weights are re-read, from cache, once per group). VEC: `in`
/// is a multiple of the 16-byte element count and every row 16-byte aligned.
template <typename T, typename TY, int TB, bool VEC>
__global__ void __launch_bounds__(kGemvWarps * 32, 2)
    gemvKernel(const T *__restrict__ x, const T *__restrict__ w,
               const T *__restrict__ bias, int64_t numTokens, int64_t in,
               int64_t out, TY *__restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
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
    detail::warpDots<T, T, TB>(wr, xr, nt, in, VEC, acc);
#pragma unroll
    for (int tt = 0; tt < TB; ++tt) {
      float s = detail::warpSum(acc[tt]);
      if (lane == 0 && tt < nt)
        y[(t0 + tt) * out + o] = fromF<TY>(s + b);
    }
  }
}

template <typename T, typename TY, int TB>
void launchGemvTB(const T *x, const T *w, const T *bias, int64_t numTokens,
                  int64_t in, int64_t out, TY *y, bool vec,
                  cudaStream_t stream) {
  unsigned blocks = unsigned((out + kGemvWarps - 1) / kGemvWarps);
  if (vec)
    gemvKernel<T, TY, TB, true><<<blocks, kGemvWarps * 32, 0, stream>>>(
        x, w, bias, numTokens, in, out, y);
  else
    gemvKernel<T, TY, TB, false><<<blocks, kGemvWarps * 32, 0, stream>>>(
        x, w, bias, numTokens, in, out, y);
}

template <typename T, typename TY>
void launchGemv(const T *x, const T *w, const T *bias, int64_t numTokens,
                int64_t in, int64_t out, TY *y, cudaStream_t stream) {
  constexpr int N = Vec16<T>::kN;
  bool vec = in % N == 0 && detail::aligned16(x) && detail::aligned16(w);
  if (numTokens == 1)
    launchGemvTB<T, TY, 1>(x, w, bias, numTokens, in, out, y, vec, stream);
  else if (numTokens == 2)
    launchGemvTB<T, TY, 2>(x, w, bias, numTokens, in, out, y, vec, stream);
  else if (numTokens <= 4)
    launchGemvTB<T, TY, 4>(x, w, bias, numTokens, in, out, y, vec, stream);
  else
    launchGemvTB<T, TY, kMaxTokens>(x, w, bias, numTokens, in, out, y, vec,
                                    stream);
}

/// y[t, o] = x[t] . w[o] + bias[o] for bf16 x, w; 8 rows o per block.
template <typename TY, int W>
__global__ void __launch_bounds__(W * 32)
    gemvMmaKernel(const bf16 *__restrict__ x, const bf16 *__restrict__ w,
                  const bf16 *__restrict__ bias, int64_t numTokens, int64_t in,
                  int64_t out, TY *__restrict__ y) {
  __shared__ float red[W * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t n0 = int64_t(blockIdx.x) * 8;
  const bf16 *wr[1] = {n0 + g < out ? w + (n0 + g) * in + t * 16 : nullptr};
  const int chunks = int(in / 64);
  for (int64_t m0 = 0; m0 < numTokens; m0 += 16) {
    const bf16 *xg = m0 + g < numTokens ? x + (m0 + g) * in + t * 16 : nullptr;
    const bf16 *xh =
        m0 + g + 8 < numTokens ? x + (m0 + g + 8) * in + t * 16 : nullptr;
    float c[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    detail::tileDots<1, W, bf16>(xg, xh, wr, true, true, chunks, warp, c);
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
void launchGemvMma(const bf16 *x, const bf16 *w, const bf16 *bias,
                   int64_t numTokens, int64_t in, int64_t out, TY *y,
                   int numSms, cudaStream_t stream) {
  const int64_t blocks = (out + 7) / 8;
  const int64_t chunks = in / 64;
  // Few row blocks: more warps per block split `in`, so every SM has loads
  // in flight; never more warps than chunks.
  int warps = blocks < 4 * int64_t(std::max(numSms, 1)) ? 16 : 8;
  while (warps > 4 && chunks < warps)
    warps /= 2;
  const unsigned grid = unsigned(blocks);
  if (warps == 16)
    gemvMmaKernel<TY, 16><<<grid, 16 * 32, 0, stream>>>(x, w, bias, numTokens,
                                                         in, out, y);
  else if (warps == 8)
    gemvMmaKernel<TY, 8><<<grid, 8 * 32, 0, stream>>>(x, w, bias, numTokens,
                                                       in, out, y);
  else
    gemvMmaKernel<TY, 4><<<grid, 4 * 32, 0, stream>>>(x, w, bias, numTokens,
                                                       in, out, y);
}

/// y[t, :] = bias (or 0), so cuBLAS can add the product with beta = 1.
template <typename T, typename TY>
__global__ void broadcastBiasKernel(const T *bias, int64_t T_, int64_t out,
                                    TY *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T_ * out;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = fromF<TY>(toF(bias[i % out]));
}

absl::Status invalid(const char *kernel, const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", msg));
}

absl::Status linearImpl(const char *kernel, const void *x, const void *w,
                        const void *bias, int64_t T, int64_t in, int64_t out,
                        void *y, DType dt, bool floatOut,
                        const BlockContext &ctx, LinearAlgo algo) {
  if (T < 0 || in <= 0 || out <= 0)
    return invalid(kernel,
                   absl::StrCat("expects T >= 0 and positive in, out but got ",
                                T, ", ", in, ", ", out));
  if (T == 0)
    return absl::OkStatus();
  if (!x || !w || !y)
    return invalid(kernel, "null input, weight or output");
  if (algo == LinearAlgo::kAuto)
    algo = T <= kGemvMaxRows ? LinearAlgo::kGemv : LinearAlgo::kBlas;

  if (algo == LinearAlgo::kGemv) {
    if (out > int64_t(INT32_MAX) * kGemvWarps)
      return invalid(kernel, absl::StrCat("out ", out, " too large"));
    // One token: the one-warp-per-row FMA kernel measured ~1 us faster on
    // q_proj (no cross-warp reduction); from two tokens on the mma kernel
    // reads the weights once for up to 16 rows (docs/perf.md).
    const bool mma = dt == DType::kBF16 && T >= 2 && in % 64 == 0 &&
                     detail::aligned16(x) && detail::aligned16(w);
    if (mma && floatOut)
      launchGemvMma(static_cast<const bf16 *>(x), static_cast<const bf16 *>(w),
                    static_cast<const bf16 *>(bias), T, in, out,
                    static_cast<float *>(y), ctx.numSms, ctx.stream);
    else if (mma)
      launchGemvMma(static_cast<const bf16 *>(x), static_cast<const bf16 *>(w),
                    static_cast<const bf16 *>(bias), T, in, out,
                    static_cast<bf16 *>(y), ctx.numSms, ctx.stream);
    else if (dt == DType::kF32)
      launchGemv(static_cast<const float *>(x), static_cast<const float *>(w),
                 static_cast<const float *>(bias), T, in, out,
                 static_cast<float *>(y), ctx.stream);
    else if (floatOut)
      launchGemv(static_cast<const bf16 *>(x), static_cast<const bf16 *>(w),
                 static_cast<const bf16 *>(bias), T, in, out,
                 static_cast<float *>(y), ctx.stream);
    else
      launchGemv(static_cast<const bf16 *>(x), static_cast<const bf16 *>(w),
                 static_cast<const bf16 *>(bias), T, in, out,
                 static_cast<bf16 *>(y), ctx.stream);
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("gemvKernel");
    return absl::OkStatus();
  }

  if (!ctx.blas)
    return invalid(kernel, "the cuBLAS path needs a cuBLAS handle");
  if (T > INT32_MAX || in > INT32_MAX || out > INT32_MAX)
    return invalid(kernel, "dimension beyond cuBLAS's int range");
  const bool f32 = dt == DType::kF32;
  const cudaDataType_t ab = f32 ? CUDA_R_32F : CUDA_R_16BF;
  const cudaDataType_t c = (f32 || floatOut) ? CUDA_R_32F : CUDA_R_16BF;
  float beta = 0.0f;
  if (bias) {
    int64_t n = T * out;
    unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65536));
    if (f32)
      broadcastBiasKernel<<<blocks, 256, 0, ctx.stream>>>(
          static_cast<const float *>(bias), T, out, static_cast<float *>(y));
    else if (floatOut)
      broadcastBiasKernel<<<blocks, 256, 0, ctx.stream>>>(
          static_cast<const bf16 *>(bias), T, out, static_cast<float *>(y));
    else
      broadcastBiasKernel<<<blocks, 256, 0, ctx.stream>>>(
          static_cast<const bf16 *>(bias), T, out, static_cast<bf16 *>(y));
    CP_CUDA_RETURN_IF_LAUNCH_FAILED("broadcastBiasKernel");
    beta = 1.0f;
  }
  const float alpha = 1.0f;
  CP_CUBLAS_RETURN_IF_ERROR(cublasSetStream(ctx.blas, ctx.stream));
  // Row-major y[T, out] is column-major y^T[out, T] = W[out, in] x^T, and
  // row-major W[out, in] is column-major W^T, hence OP_T on it.
  CP_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
      ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(T), int(in), &alpha, w,
      ab, int(in), x, ab, int(in), &beta, y, c, int(out),
      f32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

} // namespace

absl::Status linear(const void *x, const void *w, const void *bias, int64_t T,
                    int64_t in, int64_t out, void *y, DType dt,
                    const BlockContext &ctx, LinearAlgo algo) {
  return linearImpl("linear", x, w, bias, T, in, out, y, dt,
                    /*floatOut=*/false, ctx, algo);
}

absl::Status lmHead(const void *h, const void *w, int64_t T, int64_t H,
                    int64_t V, float *logits, DType dt, const BlockContext &ctx,
                    LinearAlgo algo) {
  return linearImpl("lm_head", h, w, nullptr, T, H, V, logits, dt,
                    /*floatOut=*/true, ctx, algo);
}

} // namespace crosspool::kernels::cuda
