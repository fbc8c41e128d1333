//===- SyntheticFillTest.cpp - GPU synthetic weights == CPU generator -----===//
//
// The device fill (runtime/cuda/SyntheticFill.h) calls the same generator as
// the CPU arena; one seed must give bit-identical values on both, in bf16
// and in fp32 storage, for both init kinds. The device tests skip without a
// CUDA device.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/SyntheticFill.h"
#include "runtime/format/SyntheticInit.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

namespace syn = crosspool::synthetic;
using crosspool::runtime::cuda::fillSynthetic;

bool haveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

syn::TensorInit makeInit(syn::InitKind kind, bool roundToBf16) {
  syn::TensorInit init;
  init.seed = 123456789;
  init.stream = syn::nameStream("model.layers.3.mlp.experts.7.up_proj.weight");
  init.kind = kind;
  init.std = 0.02f;
  init.roundToBf16 = roundToBf16;
  return init;
}

TEST(SyntheticFillCudaTest, Bf16MatchesHostGeneratorBitForBit) {
  if (!haveGpu())
    GTEST_SKIP() << "no CUDA device";
  const uint64_t n = 777;
  for (auto kind : {syn::InitKind::kNormal, syn::InitKind::kOnePlusNormal}) {
    syn::TensorInit init = makeInit(kind, true);
    void *d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, n * 2), cudaSuccess);
    ASSERT_EQ(fillSynthetic(d, n, init, /*bf16Storage=*/true), cudaSuccess);
    std::vector<uint16_t> got(n);
    ASSERT_EQ(cudaMemcpy(got.data(), d, n * 2, cudaMemcpyDeviceToHost),
              cudaSuccess);
    cudaFree(d);
    std::vector<float> ref(n);
    syn::fillHost(ref.data(), n, init);
    for (uint64_t i = 0; i < n; ++i)
      ASSERT_EQ(syn::fromBf16Bits(got[i]), ref[i]) << "element " << i;
  }
}

TEST(SyntheticFillCudaTest, Fp32MatchesHostGeneratorBitForBit) {
  if (!haveGpu())
    GTEST_SKIP() << "no CUDA device";
  const uint64_t n = 513;
  for (bool round : {true, false})
    for (auto kind : {syn::InitKind::kNormal, syn::InitKind::kOnePlusNormal}) {
      syn::TensorInit init = makeInit(kind, round);
      void *d = nullptr;
      ASSERT_EQ(cudaMalloc(&d, n * 4), cudaSuccess);
      ASSERT_EQ(fillSynthetic(d, n, init, /*bf16Storage=*/false), cudaSuccess);
      std::vector<float> got(n);
      ASSERT_EQ(cudaMemcpy(got.data(), d, n * 4, cudaMemcpyDeviceToHost),
                cudaSuccess);
      cudaFree(d);
      std::vector<float> ref(n);
      syn::fillHost(ref.data(), n, init);
      for (uint64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[i], ref[i]) << "element " << i << " round " << round;
    }
}

// Tensors past 2^32 elements (Mixtral's embedding is not, but stacked
// buffers may be): the generator takes 64-bit indices, no truncation. Host
// only, so it also runs without a GPU.
TEST(SyntheticFillCudaTest, GeneratorUsesSixtyFourBitIndices) {
  syn::TensorInit init = makeInit(syn::InitKind::kNormal, false);
  const uint64_t key = syn::streamKey(init.seed, init.stream);
  const float scale = syn::scaleFor(init.std);
  int same = 0;
  for (uint64_t i = 0; i < 64; ++i)
    same += syn::value(key, (1ull << 32) + i, init.kind, scale) ==
            syn::value(key, i, init.kind, scale);
  EXPECT_LT(same, 4);
}

} // namespace
