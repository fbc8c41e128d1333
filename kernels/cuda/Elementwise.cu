//===- Elementwise.cu - Embedding, RMSNorm, add, SwiGLU, argmax -----------===//
//
// Row kernels: one block per token row. They move T * H elements, far less
// than any weight read of a layer, so they stay simple (coalesced scalar
// accesses); sums of squares are in double as in the CPU reference.
//
//===----------------------------------------------------------------------===//

#include "kernels/cuda/Common.cuh"

#include "absl/strings/str_cat.h"

#include <cmath>

namespace crosspool::kernels::cuda {
namespace {

using detail::bf16;
using detail::fromF;
using detail::toF;

constexpr int kRowThreads = 256;

absl::Status invalid(const char *kernel, const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", msg));
}

template <typename T>
__global__ void embedKernel(const int32_t *__restrict__ ids,
                            const T *__restrict__ table, int64_t V, int64_t H,
                            T *__restrict__ out, int32_t *badIds) {
  detail::pdlEnter();
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  T *dst = out + t * H;
  if (id < 0 || id >= V) {
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      dst[i] = fromF<T>(NAN);
    if (badIds && threadIdx.x == 0)
      atomicAdd(badIds, 1);
    return;
  }
  const T *src = table + int64_t(id) * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    dst[i] = src[i];
}

/// hOut = h + delta (when given; else hOut is h), then y = hOut * r * w; r
/// from the stored hOut. Each element is read and written by one thread, so
/// hOut may alias h or delta.
template <typename T>
__global__ void addRmsNormKernel(const T *h, const T *delta,
                                 const T *__restrict__ w, float eps, int64_t H,
                                 T *hOut, T *y, bool early) {
  __shared__ double scratch[32];
  detail::pdlEnterEarly(early);
  const T *hr = h + blockIdx.x * H;
  T *hw = hOut + blockIdx.x * H;
  T *yr = y + blockIdx.x * H;
  double sumSq = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    float v = toF(hr[i]);
    if (delta) {
      T stored = fromF<T>(v + toF(delta[blockIdx.x * H + i]));
      hw[i] = stored;
      v = toF(stored);
    }
    sumSq += double(v) * double(v);
  }
  sumSq = detail::blockSumD(sumSq, scratch);
  // HF: fp32 mean of squares, rsqrt of (mean + eps), x * r, then w * that.
  const T *nr = delta ? hw : hr;
  const float variance = float(sumSq / double(H));
  const float r = float(1.0 / sqrt(double(variance + eps)));
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    yr[i] = fromF<T>(toF(w[i]) * (toF(nr[i]) * r));
}

/// Packs 16 bytes' worth of floats in the storage type (round to nearest,
/// as fromF).
template <typename T>
__device__ __forceinline__ uint4
pack16(const float (&v)[detail::Vec16<T>::kN]) {
  if constexpr (sizeof(T) == 4) {
    return make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]),
                      __float_as_uint(v[2]), __float_as_uint(v[3]));
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo = __bfloat16_as_ushort(fromF<bf16>(v[2 * i]));
      const uint32_t hi = __bfloat16_as_ushort(fromF<bf16>(v[2 * i + 1]));
      w[i] = lo | (hi << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

/// addRmsNormKernel for rows of at most C 16-byte chunks per thread (H % N
/// == 0, every pointer 16-byte aligned): one 16-byte load per chunk of h,
/// delta and w, all issued before any is used, and the row kept in
/// registers for the second pass. The row-at-a-time kernel above issues its
/// scalar loads one dependent round trip after another, which at decode
/// (one row, one block) is most of its time. Same math: the stored h, a
/// double sum of squares, fp32 variance and scale.
template <typename T, int C>
__global__ void __launch_bounds__(kRowThreads)
    addRmsNormVecKernel(const T *h, const T *delta, const T *__restrict__ w,
                        float eps, int64_t H, T *hOut, T *y, bool early) {
  constexpr int N = detail::Vec16<T>::kN;
  __shared__ double scratch[32];
  const int64_t chunks = H / N;
  const uint4 *wv4 = reinterpret_cast<const uint4 *>(w);
  // The norm weight is never written by a kernel: start it towards L2.
  detail::prefetchL2(w, H * int64_t(sizeof(T)));
  detail::pdlEnterEarly(early);
  const uint4 *hr = reinterpret_cast<const uint4 *>(h + blockIdx.x * H);
  uint4 *hw = reinterpret_cast<uint4 *>(hOut + blockIdx.x * H);
  const uint4 *dr =
      delta ? reinterpret_cast<const uint4 *>(delta + blockIdx.x * H) : nullptr;
  uint4 *yr = reinterpret_cast<uint4 *>(y + blockIdx.x * H);
  uint4 hv[C], dv[C], wv[C];
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * blockDim.x;
    const bool in = i < chunks;
    hv[c] = in ? hr[i] : make_uint4(0, 0, 0, 0);
    dv[c] = in && dr ? dr[i] : make_uint4(0, 0, 0, 0);
    wv[c] = in ? __ldg(wv4 + i) : make_uint4(0, 0, 0, 0);
  }
  float v[C][N];
  double sumSq = 0;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * blockDim.x;
    detail::unpack16<T>(hv[c], v[c]);
    if (dr) {
      float d[N];
      detail::unpack16<T>(dv[c], d);
#pragma unroll
      for (int j = 0; j < N; ++j)
        v[c][j] = toF(fromF<T>(v[c][j] + d[j]));
      if (i < chunks)
        hw[i] = pack16<T>(v[c]);
    }
    if (i < chunks)
#pragma unroll
      for (int j = 0; j < N; ++j)
        sumSq += double(v[c][j]) * double(v[c][j]);
  }
  sumSq = detail::blockSumD(sumSq, scratch);
  const float variance = float(sumSq / double(H));
  const float r = float(1.0 / sqrt(double(variance + eps)));
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * blockDim.x;
    if (i >= chunks)
      continue;
    float wf[N], o[N];
    detail::unpack16<T>(wv[c], wf);
#pragma unroll
    for (int j = 0; j < N; ++j)
      o[j] = wf[j] * (v[c][j] * r);
    yr[i] = pack16<T>(o);
  }
}

/// Launches the register-row kernel when the row fits C <= 4 chunks per
/// thread and everything is 16-byte aligned; false otherwise.
template <typename T>
bool launchAddRmsNormVec(const T *h, const T *delta, const T *w, float eps,
                         int64_t T_, int64_t H, T *hOut, T *y,
                         cudaStream_t stream) {
  constexpr int N = detail::Vec16<T>::kN;
  if (H % N != 0 || !detail::aligned16(h) || !detail::aligned16(w) ||
      !detail::aligned16(y) || (delta && !detail::aligned16(delta)) ||
      !detail::aligned16(hOut))
    return false;
  const int64_t perThread = (H / N + kRowThreads - 1) / kRowThreads;
  const bool early = earlyTriggerEnabled() && T_ == 1;
  const dim3 grid{unsigned(T_)}, block{unsigned(kRowThreads)};
  if (perThread <= 1)
    detail::launch(addRmsNormVecKernel<T, 1>, grid, block, 0, stream, h, delta,
                   w, eps, H, hOut, y, early);
  else if (perThread <= 2)
    detail::launch(addRmsNormVecKernel<T, 2>, grid, block, 0, stream, h, delta,
                   w, eps, H, hOut, y, early);
  else if (perThread <= 4)
    detail::launch(addRmsNormVecKernel<T, 4>, grid, block, 0, stream, h, delta,
                   w, eps, H, hOut, y, early);
  else
    return false;
  return true;
}

template <typename T>
__global__ void addKernel(const T *a, const T *b, T *c, int64_t n) {
  detail::pdlEnter();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    c[i] = fromF<T>(toF(a[i]) + toF(b[i]));
}

template <typename T>
__global__ void swigluKernel(const T *g, const T *u, T *out, int64_t n) {
  detail::pdlEnter();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float x = toF(g[i]);
    out[i] = fromF<T>(x / (1.0f + expf(-x)) * toF(u[i]));
  }
}

/// True when (a, ia) ranks before (b, ib) in cpu::argmax's order: NaN last,
/// larger first, ties to the lower index. A total order, so any reduction
/// tree gives the sequential answer.
__device__ __forceinline__ bool argBefore(float a, int64_t ia, float b,
                                          int64_t ib) {
  bool na = isnan(a), nb = isnan(b);
  if (na != nb)
    return nb;
  if (!na && a != b)
    return a > b;
  return ia < ib;
}

constexpr int kArgmaxBatch = 8;

__global__ void argmaxKernel(const float *__restrict__ logits, int64_t V,
                             int32_t *out) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  detail::pdlEnter();
  const float *row = logits + blockIdx.x * V;
  float best = NAN;
  int64_t bi = V; // sentinel after every real index
  auto consider = [&](float v, int64_t i) {
    if (argBefore(v, i, best, bi)) {
      best = v;
      bi = i;
    }
  };
  // 16-byte loads, kArgmaxBatch of them in flight per thread: a row of a
  // 152K vocabulary is ~37 loads per thread, one L2 round trip each when
  // issued one at a time. argBefore is a total order, so the visiting order
  // does not change the answer.
  int64_t start = 0;
  if (reinterpret_cast<uintptr_t>(row) % 16 == 0) {
    const float4 *r4 = reinterpret_cast<const float4 *>(row);
    const int64_t n4 = V / 4, step = int64_t(blockDim.x);
    for (int64_t b = threadIdx.x; b < n4; b += step * kArgmaxBatch) {
      float4 v[kArgmaxBatch];
#pragma unroll
      for (int u = 0; u < kArgmaxBatch; ++u) {
        const int64_t c = b + u * step;
        v[u] = c < n4 ? r4[c] : make_float4(NAN, NAN, NAN, NAN);
      }
#pragma unroll
      for (int u = 0; u < kArgmaxBatch; ++u) {
        const int64_t c = b + u * step;
        if (c < n4) {
          consider(v[u].x, 4 * c);
          consider(v[u].y, 4 * c + 1);
          consider(v[u].z, 4 * c + 2);
          consider(v[u].w, 4 * c + 3);
        }
      }
    }
    start = n4 * 4;
  }
  for (int64_t i = start + threadIdx.x; i < V; i += blockDim.x)
    consider(row[i], i);
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, best, o);
    int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (argBefore(ov, oi, best, bi)) {
      best = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < int(blockDim.x >> 5); ++k)
      if (argBefore(sv[k], si[k], best, bi)) {
        best = sv[k];
        bi = si[k];
      }
    out[blockIdx.x] = bi >= V ? 0 : int32_t(bi);
  }
}

int gridFor(int64_t n) {
  int64_t blocks = (n + kRowThreads - 1) / kRowThreads;
  return int(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

/// Reads `chunks` 16-byte chunks grid-stride, kUnroll loads in flight per
/// thread, and folds them into one word that is stored only if it equals a
/// value no real input produces (so the loads cannot be dropped).
constexpr int kProbeUnroll = 8;
__global__ void streamReadKernel(const uint4 *__restrict__ p, int64_t chunks,
                                 uint32_t *sink) {
  detail::pdlEnter();
  uint32_t acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kProbeUnroll - 1) * stride < chunks; i += kProbeUnroll * stride) {
    uint4 v[kProbeUnroll];
#pragma unroll
    for (int u = 0; u < kProbeUnroll; ++u)
      v[u] = __ldcs(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < kProbeUnroll; ++u)
      acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < chunks; i += stride) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u)
    *sink = acc;
}

} // namespace

const char *dtypeName(DType d) { return d == DType::kF32 ? "f32" : "bf16"; }

absl::Status embed(const int32_t *ids, int64_t T, const void *table, int64_t V,
                   int64_t H, void *out, DType dt, int32_t *badIds,
                   cudaStream_t stream) {
  if (T < 0 || V <= 0 || H <= 0)
    return invalid("embed", absl::StrCat("expects T >= 0 and positive V, H "
                                         "but got ",
                                         T, ", ", V, ", ", H));
  if (T == 0)
    return absl::OkStatus();
  if (!ids || !table || !out)
    return invalid("embed", "null ids, table or output");
  if (dt == DType::kF32)
    detail::launch(embedKernel<float>, dim3(unsigned(T)), dim3(kRowThreads), 0,
                   stream, ids, static_cast<const float *>(table), V, H,
                   static_cast<float *>(out), badIds);
  else
    detail::launch(embedKernel<bf16>, dim3(unsigned(T)), dim3(kRowThreads), 0,
                   stream, ids, static_cast<const bf16 *>(table), V, H,
                   static_cast<bf16 *>(out), badIds);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("embedKernel");
  return absl::OkStatus();
}

absl::Status addRmsNorm(void *h, const void *delta, const void *w, float eps,
                        int64_t T, int64_t H, void *y, DType dt,
                        cudaStream_t stream) {
  return addRmsNormInto(h, delta, w, eps, T, H, h, y, dt, stream);
}

absl::Status addRmsNormInto(const void *h, const void *delta, const void *w,
                            float eps, int64_t T, int64_t H, void *hOut,
                            void *y, DType dt, cudaStream_t stream) {
  if (T < 0 || H <= 0)
    return invalid("rms_norm", absl::StrCat("expects T >= 0 and H > 0 but got ",
                                            T, ", ", H));
  if (!(eps >= 0))
    return invalid("rms_norm", absl::StrCat("expects eps >= 0 but got ", eps));
  if (T == 0)
    return absl::OkStatus();
  if (!h || !w || !y || !hOut)
    return invalid("rms_norm", "null input, weight or output");
  if (delta && (y == h || y == hOut || y == delta))
    return invalid("rms_norm", "the norm's output aliases the residual row");
  if (dt == DType::kF32) {
    using F = float;
    if (!launchAddRmsNormVec(
            static_cast<const F *>(h), static_cast<const F *>(delta),
            static_cast<const F *>(w), eps, T, H, static_cast<F *>(hOut),
            static_cast<F *>(y), stream))
      detail::launch(addRmsNormKernel<F>, dim3(unsigned(T)), dim3(kRowThreads),
                     0, stream, static_cast<const F *>(h),
                     static_cast<const F *>(delta), static_cast<const F *>(w),
                     eps, H, static_cast<F *>(hOut), static_cast<F *>(y),
                     earlyTriggerEnabled() && T == 1);
  } else {
    if (!launchAddRmsNormVec(
            static_cast<const bf16 *>(h), static_cast<const bf16 *>(delta),
            static_cast<const bf16 *>(w), eps, T, H, static_cast<bf16 *>(hOut),
            static_cast<bf16 *>(y), stream))
      detail::launch(addRmsNormKernel<bf16>, dim3(unsigned(T)),
                     dim3(kRowThreads), 0, stream, static_cast<const bf16 *>(h),
                     static_cast<const bf16 *>(delta),
                     static_cast<const bf16 *>(w), eps, H,
                     static_cast<bf16 *>(hOut), static_cast<bf16 *>(y),
                     earlyTriggerEnabled() && T == 1);
  }
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("addRmsNormKernel");
  return absl::OkStatus();
}

absl::Status rmsNorm(const void *x, const void *w, float eps, int64_t T,
                     int64_t H, void *y, DType dt, cudaStream_t stream) {
  // Without a delta the kernel only reads h, so aliasing y is fine: each
  // element is read into the sum before the block barrier and rewritten by
  // the thread that reads it last.
  return addRmsNorm(const_cast<void *>(x), nullptr, w, eps, T, H, y, dt,
                    stream);
}

absl::Status add(const void *a, const void *b, void *c, int64_t n, DType dt,
                 cudaStream_t stream) {
  if (n < 0)
    return invalid("add", absl::StrCat("expects n >= 0 but got ", n));
  if (n == 0)
    return absl::OkStatus();
  if (!a || !b || !c)
    return invalid("add", "null operand");
  if (dt == DType::kF32)
    detail::launch(addKernel<float>, dim3(gridFor(n)), dim3(kRowThreads), 0,
                   stream, static_cast<const float *>(a),
                   static_cast<const float *>(b), static_cast<float *>(c), n);
  else
    detail::launch(addKernel<bf16>, dim3(gridFor(n)), dim3(kRowThreads), 0,
                   stream, static_cast<const bf16 *>(a),
                   static_cast<const bf16 *>(b), static_cast<bf16 *>(c), n);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("addKernel");
  return absl::OkStatus();
}

absl::Status swiglu(const void *gate, const void *up, void *out, int64_t n,
                    DType dt, cudaStream_t stream) {
  if (n < 0)
    return invalid("swiglu", absl::StrCat("expects n >= 0 but got ", n));
  if (n == 0)
    return absl::OkStatus();
  if (!gate || !up || !out)
    return invalid("swiglu", "null operand");
  if (dt == DType::kF32)
    detail::launch(swigluKernel<float>, dim3(gridFor(n)), dim3(kRowThreads), 0,
                   stream, static_cast<const float *>(gate),
                   static_cast<const float *>(up), static_cast<float *>(out),
                   n);
  else
    detail::launch(swigluKernel<bf16>, dim3(gridFor(n)), dim3(kRowThreads), 0,
                   stream, static_cast<const bf16 *>(gate),
                   static_cast<const bf16 *>(up), static_cast<bf16 *>(out), n);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("swigluKernel");
  return absl::OkStatus();
}

absl::Status argmaxRows(const float *logits, int64_t T, int64_t V, int32_t *out,
                        cudaStream_t stream) {
  if (T < 0 || V <= 0)
    return invalid("argmax", absl::StrCat("expects T >= 0 and V > 0 but got ",
                                          T, ", ", V));
  if (T == 0)
    return absl::OkStatus();
  if (!logits || !out)
    return invalid("argmax", "null logits or output");
  detail::launch(argmaxKernel, dim3(unsigned(T)), dim3(1024), 0, stream, logits,
                 V, out);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("argmaxKernel");
  return absl::OkStatus();
}

absl::Status streamRead(const void *p, int64_t bytes, int64_t blocks,
                        uint32_t *sink, cudaStream_t stream) {
  if (bytes < 0 || bytes % 16 != 0 || blocks <= 0)
    return invalid("streamRead",
                   absl::StrCat("expects bytes >= 0, a multiple of 16, and "
                                "blocks > 0 but got ",
                                bytes, " and ", blocks));
  if (bytes == 0)
    return absl::OkStatus();
  if (!p || !sink || !detail::aligned16(p))
    return invalid("streamRead", "null or unaligned operand");
  detail::launch(streamReadKernel, dim3(unsigned(blocks)), dim3(kRowThreads), 0,
                 stream, static_cast<const uint4 *>(p), bytes / 16, sink);
  CP_CUDA_RETURN_IF_LAUNCH_FAILED("streamReadKernel");
  return absl::OkStatus();
}

#ifdef CROSSPOOL_TRACE
CROSSPOOL_TRACE_TU(Elementwise)
void traceAttachAttention(void *, unsigned *, unsigned);
void traceAttachLinear(void *, unsigned *, unsigned);
void traceAttachMoe(void *, unsigned *, unsigned);
void traceAttach(void *buf, unsigned *n, unsigned cap) {
  traceAttachAttention(buf, n, cap);
  traceAttachLinear(buf, n, cap);
  traceAttachMoe(buf, n, cap);
  traceAttachElementwise(buf, n, cap);
}
#endif

} // namespace crosspool::kernels::cuda
