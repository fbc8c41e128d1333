//===- SyntheticFill.cu - Synthetic weights generated on the GPU ----------===//
#include "runtime/cuda/SyntheticFill.h"

#include <algorithm>

namespace crosspool::runtime::cuda {

namespace {

namespace syn = ::crosspool::synthetic;

template <typename T>
__global__ void fillKernel(T *dst, uint64_t n, uint64_t key,
                           syn::InitKind kind, float scale, bool roundToBf16) {
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    if constexpr (sizeof(T) == 2)
      dst[i] = syn::bf16Value(key, i, kind, scale);
    else
      dst[i] = syn::storedValue(key, i, kind, scale, roundToBf16);
  }
}

} // namespace

cudaError_t fillSynthetic(void *dst, uint64_t n,
                          const synthetic::TensorInit &init, bool bf16Storage,
                          cudaStream_t stream) {
  if (n == 0)
    return cudaSuccess;
  const uint64_t key = syn::streamKey(init.seed, init.stream);
  const float scale = syn::scaleFor(init.std);
  const int threads = 256;
  const int blocks =
      static_cast<int>(std::min<uint64_t>((n + threads - 1) / threads, 4096));
  if (bf16Storage)
    fillKernel<uint16_t><<<blocks, threads, 0, stream>>>(
        static_cast<uint16_t *>(dst), n, key, init.kind, scale, true);
  else
    fillKernel<float><<<blocks, threads, 0, stream>>>(
        static_cast<float *>(dst), n, key, init.kind, scale, init.roundToBf16);
  return cudaGetLastError();
}

} // namespace crosspool::runtime::cuda
