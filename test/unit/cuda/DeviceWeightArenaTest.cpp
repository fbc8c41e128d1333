//===- DeviceWeightArenaTest.cpp - Slabbed device weights on the GPU ------===//
//
// The weights arena carves tensors from per-model slabs: the card's free
// memory must drop by what the arena says it holds (not by 2 MiB per tensor,
// the driver's unit), tensors must be aligned and disjoint, accounting is per
// model, unload gives the memory back, and a request the card cannot hold is
// an error the arena survives. Skips without a CUDA device.
//
//===----------------------------------------------------------------------===//

#include "test/unit/cuda/CudaTestEnv.h"

#include "runtime/cuda/DeviceWeightArena.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace crosspool::test::cuda {
namespace {

using runtime::cuda::DeviceWeightArena;
constexpr size_t kMiB = size_t(1) << 20;

size_t freeBytes() {
  size_t f = 0, t = 0;
  EXPECT_EQ(cudaMemGetInfo(&f, &t), cudaSuccess);
  return f;
}

TEST(DeviceWeightArena, ManyExpertSizedTensorsCostTheirBytes) {
  CP_SKIP_WITHOUT_CUDA();
  ASSERT_EQ(cudaFree(nullptr), cudaSuccess); // context up before measuring
  const size_t before = freeBytes();
  // 400 tensors of 3 MiB + 1 KiB (Qwen3-30B-A3B's expert matrices are
  // 3 MiB; one cudaMalloc each would hold 4 MiB apiece: 1600 MiB), two
  // models interleaved: model 0 announced up front (one slab), model 1 not
  // (growing slabs).
  const size_t n = 400, bytes = 3 * kMiB + 1024;
  std::vector<std::pair<char *, int>> got;
  {
    DeviceWeightArena arena(0, "weights pool");
    ASSERT_TRUE(
        arena.reserve(0, DeviceWeightArena::bytesFor(n / 2 * bytes, n / 2))
            .ok());
    const size_t announced = arena.bytesReserved();
    EXPECT_GE(announced, n / 2 * bytes);
    EXPECT_LE(announced, n / 2 * (bytes + 256) + 2 * kMiB);
    for (size_t i = 0; i < n; ++i) {
      int model = int(i % 2);
      auto p = arena.allocate(model, bytes);
      ASSERT_TRUE(p.ok()) << p.status();
      ASSERT_EQ(reinterpret_cast<uintptr_t>(*p) % 256, 0u) << "tensor " << i;
      got.push_back({static_cast<char *>(*p), model});
    }
    EXPECT_EQ(arena.bytesUsed(), n * bytes);
    EXPECT_EQ(arena.bytesUsed(0), n / 2 * bytes);
    EXPECT_EQ(arena.bytesUsed(1), n / 2 * bytes);
    // Model 1's slabs double to 64 MiB: at most the last one's tail and
    // under a tensor per slab beyond its bytes. Model 0 took no new slab.
    EXPECT_LE(arena.bytesReserved() - announced, n / 2 * bytes + 100 * kMiB);
    EXPECT_LT(arena.bytesReserved(), 1300 * kMiB);
    const size_t held = before - freeBytes();
    EXPECT_LE(held, arena.bytesReserved() + 8 * kMiB);
    EXPECT_GE(held + 8 * kMiB, arena.bytesReserved());
    // A second reserve once tensors exist is refused.
    EXPECT_EQ(arena.reserve(0, kMiB).code(),
              absl::StatusCode::kFailedPrecondition);

    // Disjoint: sorted starts are at least `bytes` apart.
    std::vector<char *> starts;
    for (auto &g : got)
      starts.push_back(g.first);
    std::sort(starts.begin(), starts.end());
    for (size_t i = 1; i < starts.size(); ++i)
      ASSERT_GE(size_t(starts[i] - starts[i - 1]), bytes) << "overlap at " << i;
    // Each tensor holds its own pattern after all are written.
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(cudaMemset(got[i].first, int(i & 0xff), bytes), cudaSuccess);
    for (size_t i = 0; i < n; ++i) {
      unsigned char first = 0, last = 0;
      ASSERT_EQ(cudaMemcpy(&first, got[i].first, 1, cudaMemcpyDeviceToHost),
                cudaSuccess);
      ASSERT_EQ(cudaMemcpy(&last, got[i].first + bytes - 1, 1,
                           cudaMemcpyDeviceToHost),
                cudaSuccess);
      EXPECT_EQ(first, i & 0xff) << "tensor " << i;
      EXPECT_EQ(last, i & 0xff) << "tensor " << i;
    }

    // Unloading one model frees its slabs only.
    const size_t reservedBoth = arena.bytesReserved();
    arena.unload(0);
    EXPECT_EQ(arena.bytesUsed(0), 0u);
    EXPECT_EQ(arena.bytesUsed(), n / 2 * bytes);
    EXPECT_LT(arena.bytesReserved(), reservedBoth);
    unsigned char last = 0;
    ASSERT_EQ(cudaMemcpy(&last, got[n - 1].first, 1, cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(last, (n - 1) & 0xff);
    arena.unload(1);
    EXPECT_EQ(arena.bytesReserved(), 0u);
  }
  EXPECT_LE(before - std::min(before, freeBytes()), 8 * kMiB);
}

TEST(DeviceWeightArena, MoreThanTheCardIsAnErrorTheArenaSurvives) {
  CP_SKIP_WITHOUT_CUDA();
  DeviceWeightArena arena(0, "weights pool");
  auto small = arena.allocate(3, 1000);
  ASSERT_TRUE(small.ok()) << small.status();
  size_t f = 0, t = 0;
  ASSERT_EQ(cudaMemGetInfo(&f, &t), cudaSuccess);
  absl::Status tooBig = arena.reserve(4, 2 * t);
  EXPECT_EQ(tooBig.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(tooBig.message().find("device bytes free"), std::string::npos)
      << tooBig;
  EXPECT_EQ(arena.bytesUsed(4), 0u);
  auto huge = arena.allocate(3, 2 * t);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(huge.status().message().find("weights pool"), std::string::npos)
      << huge.status();
  EXPECT_EQ(arena.bytesUsed(3), 1000u);
  // A later kernel launch or copy is not poisoned by the failed allocation.
  EXPECT_EQ(cudaMemset(*small, 7, 1000), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto next = arena.allocate(3, 5000);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(arena.bytesUsed(3), 6000u);
}

TEST(DeviceWeightArena, BudgetIsPerPoolAndNamed) {
  CP_SKIP_WITHOUT_CUDA();
  DeviceWeightArena arena(10 * kMiB, "KV pool");
  ASSERT_TRUE(arena.allocate(0, 6 * kMiB).ok());
  auto over = arena.allocate(1, 5 * kMiB);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("KV pool: budget"), std::string::npos)
      << over.status();
  EXPECT_EQ(arena.bytesUsed(1), 0u);
  arena.unload(0);
  EXPECT_TRUE(arena.allocate(1, 9 * kMiB).ok());
}

} // namespace
} // namespace crosspool::test::cuda
