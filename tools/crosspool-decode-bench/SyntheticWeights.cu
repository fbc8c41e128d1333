//===- SyntheticWeights.cu - Seeded random tensors made on the GPU --------===//
#include "tools/crosspool-decode-bench/SyntheticWeights.h"

#include <cuda_bf16.h>

namespace crosspool::bench {

namespace {

__device__ __forceinline__ uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fillKernel(__nv_bfloat16 *dst, int64_t n, uint64_t key,
                           float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t r = splitmix(key ^ uint64_t(i));
    float u = float(r >> 40) * (1.0f / float(1 << 24)); // [0, 1)
    dst[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
  }
}

} // namespace

cudaError_t fillSyntheticBf16(void *dst, int64_t n, uint64_t seed,
                              uint64_t stream, float scale, cudaStream_t cs) {
  if (n <= 0)
    return cudaSuccess;
  uint64_t key = seed * 0x100000001b3ull ^ (stream + 1) * 0xc2b2ae3d27d4eb4full;
  fillKernel<<<1024, 256, 0, cs>>>(static_cast<__nv_bfloat16 *>(dst), n, key,
                                   scale);
  return cudaGetLastError();
}

} // namespace crosspool::bench
