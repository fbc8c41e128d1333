//===- Mma.cuh - bf16 tensor-core helpers of the decode kernels -*- CUDA -*-===//
//
// mma.sync m16n8k16 (bf16 in, fp32 accumulate) fed straight from 16-byte
// global loads. A dot product does not care in which order its k terms come,
// as long as both operands use the same order: lane (g, t) loads the 8
// consecutive elements [c0 + 8t, c0 + 8t + 8) of its row of A and of its
// column of B, and registers 0/1 form the first k16 step, 2/3 the second.
// So one 16-byte load per lane and operand feeds two mma steps over 32
// elements, with no shared memory and no shuffles.
//
// Fragment layout (PTX ISA, m16n8k16, g = lane / 4, t = lane % 4):
//   A regs {0,1,2,3}: (row g, k 2t..), (row g+8, k 2t..), (row g, k 2t+8..),
//                     (row g+8, k 2t+8..)
//   B regs {0,1}:     (k 2t.., col g), (k 2t+8.., col g)
//   C {0,1,2,3}:      (row g, col 2t), (row g, col 2t+1), (row g+8, col 2t),
//                     (row g+8, col 2t+1)
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CUDA_MMA_CUH
#define CROSSPOOL_KERNELS_CUDA_MMA_CUH

#include "kernels/cuda/Common.cuh"

#include <cuda_bf16.h>

#include <cstdint>

namespace crosspool::kernels::cuda::detail {

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0,
                                         uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// c += A(rows g, g+8; 32 k) . B(col g; 32 k) for 16-byte chunks holding the
/// same 8 k-elements of A row g (`ag`), A row g + 8 (`ah`) and B col g (`b`).
__device__ __forceinline__ void mmaChunk32(float (&c)[4], uint4 ag, uint4 ah,
                                           uint4 b) {
  mma16816(c, ag.x, ah.x, ag.y, ah.y, b.x, b.y);
  mma16816(c, ag.z, ah.z, ag.w, ah.w, b.z, b.w);
}

__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

/// 8 bf16 at `p` (16-byte aligned when `al`, else any 2-byte alignment);
/// `once`: read once per step (ldWeight).
__device__ __forceinline__ uint4 ld8(const __nv_bfloat16 *p, bool al,
                                     bool once = false) {
  if (al)
    return ldWeight(reinterpret_cast<const uint4 *>(p), once);
  const unsigned short *s = reinterpret_cast<const unsigned short *>(p);
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    w[i] = uint32_t(__ldg(s + 2 * i)) | (uint32_t(__ldg(s + 2 * i + 1)) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

/// 8 floats at `p` rounded to bf16 (16-byte aligned when `al`).
__device__ __forceinline__ uint4 ld8(const float *p, bool al) {
  float f[8];
  if (al) {
    float4 a = __ldg(reinterpret_cast<const float4 *>(p));
    float4 b = __ldg(reinterpret_cast<const float4 *>(p) + 1);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i)
      f[i] = __ldg(p + i);
  }
  return make_uint4(packBf16(f[0], f[1]), packBf16(f[2], f[3]),
                    packBf16(f[4], f[5]), packBf16(f[6], f[7]));
}

} // namespace crosspool::kernels::cuda::detail

#endif // CROSSPOOL_KERNELS_CUDA_MMA_CUH

#ifndef CROSSPOOL_KERNELS_CUDA_MMA_TILE_DOTS
#define CROSSPOOL_KERNELS_CUDA_MMA_TILE_DOTS
namespace crosspool::kernels::cuda::detail {

/// One warp's share of C[16 rows of X x 8 rows of W_i] += X W_i^T over the
/// 64-element chunks warp, warp + W, ... of `chunks`, for NW weight matrices
/// sharing the activations. `xg` / `xh`: X rows g and g + 8, `w[i]`: row g of
/// W_i, each already offset by 16t elements; null = a zero row. Lane (g, t)
/// loads elements [16t, 16t + 16) of each chunk (two 16-byte loads), so a
/// row's four lanes cover a whole 128-byte line at once; mma step s takes its
/// words 2s, 2s + 1 (a permutation of k shared by both operands). All loads
/// of a batch of U chunks are issued before the first mma. `once`: the
/// weights are read once per step (ldWeight).
template <int NW, int W, typename TX>
__device__ __forceinline__ void
tileDots(const TX *xg, const TX *xh, const __nv_bfloat16 *const (&w)[NW],
         bool wal, bool xal, int chunks, int warp, float (&c)[NW][4],
         bool once = false) {
  constexpr int U = NW == 1 ? 4 : 2;
  const uint4 z = make_uint4(0, 0, 0, 0);
  for (int base = warp; base < chunks; base += W * U) {
    uint4 wv[NW][U][2], xa[U][2], xb[U][2];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ch = base + u * W;
      const bool ok = ch < chunks;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int i = 0; i < NW; ++i)
          wv[i][u][h] =
              ok && w[i] ? ld8(w[i] + int64_t(ch) * 64 + 8 * h, wal, once) : z;
        xa[u][h] = ok && xg ? ld8(xg + int64_t(ch) * 64 + 8 * h, xal) : z;
        xb[u][h] = ok && xh ? ld8(xh + int64_t(ch) * 64 + 8 * h, xal) : z;
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < NW; ++i)
          mmaChunk32(c[i], xa[u][h], xb[u][h], wv[i][u][h]);
  }
}

/// Sums the W warps' C fragments of NW tiles through shared memory `red`
/// ([NW][W][4][32] floats); warp 0 gets the totals in `c`. Ends with a
/// barrier, so `red` may be reused at once.
template <int NW, int W>
__device__ __forceinline__ void reduceTiles(float (&c)[NW][4], float *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < NW; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      red[((i * W + warp) * 4 + r) * 32 + lane] = c[i][r];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int i = 0; i < NW; ++i)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        float s = 0.0f;
        for (int k = 0; k < W; ++k) // fixed order: deterministic
          s += red[((i * W + k) * 4 + r) * 32 + lane];
        c[i][r] = s;
      }
  }
  __syncthreads();
}

} // namespace crosspool::kernels::cuda::detail
#endif
