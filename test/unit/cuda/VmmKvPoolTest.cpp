//===- VmmKvPoolTest.cpp - The shared VMM KV pool on the GPU --------------===//
//
// Models take turns growing into the same physical chunks of one shared
// pool, and a request that needs more pages than are free gets
// ResourceExhausted with nothing changed. Emptied chunks stay mapped
// (cached) in their model until the pool gives them to another model; the
// driver calls are counted.
//
//===----------------------------------------------------------------------===//
#include "test/unit/cuda/CudaTestEnv.h"

#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/VmmKvPool.h"
#include "kernels/cpu/Linear.h"

#include <set>

#include <cuda_runtime_api.h>

using namespace crosspool;
using namespace crosspool::runtime::cuda;
namespace cudak = crosspool::kernels::cuda;
namespace tc = crosspool::test::cuda;

namespace {

constexpr size_t kChunk = 2u << 20;

// Model A: 2 layers, 2 KV heads x 32, fp32, 2048 tokens per page = 1 MiB
// pages (2 per chunk); model B: 1 layer, 4 x 64, bf16, 1024 tokens per page
// = 1 MiB pages.
TEST(VmmKvPool, ModelsTakeTurnsOnTheSamePhysicalChunks) {
  CP_SKIP_WITHOUT_CUDA();
  auto pool = PhysicalChunkPool::create(0, 2, kChunk);
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_EQ((*pool)->chunkBytes() % kChunk, 0u);
  auto a = VirtualKvSpace::create(**pool, {{2, 32}, {2, 32}}, 2048,
                                  cudak::DType::kF32, "model A");
  auto b = VirtualKvSpace::create(**pool, {{4, 64}}, 1024, cudak::DType::kBF16,
                                  "model B");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const int32_t perChunk = (*a)->pagesPerChunk();
  ASSERT_EQ(perChunk, int32_t((*pool)->chunkBytes() / (1u << 20)));
  ASSERT_NE((*a)->base(), (*b)->base()) << "each model has its own range";

  // A grows one sequence over both chunks: 2 layers x perChunk pages.
  ASSERT_TRUE((*a)->reserve(1, int64_t(perChunk) * 2048).ok());
  EXPECT_EQ((*a)->pagesInUse(), 2 * perChunk);
  EXPECT_EQ((*pool)->numFree(), 0);
  std::vector<int32_t> aChunks = (*a)->usedChunks();
  ASSERT_EQ(aChunks, (std::vector<int32_t>{0, 1}));

  // Write a pattern through A's mapping of the chunk behind its first page.
  int32_t aPage = (*a)->pageTable(1, 0)[0];
  int32_t physical = (*a)->chunkOfPage(aPage);
  std::vector<uint32_t> pattern(1024);
  for (size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = 0x9e3779b9u * uint32_t(i + 1);
  char *chunkBaseA = reinterpret_cast<char *>((*a)->base()) +
                     size_t(aPage / perChunk) * (*pool)->chunkBytes();
  ASSERT_EQ(cudaMemcpy(chunkBaseA, pattern.data(), pattern.size() * 4,
                       cudaMemcpyHostToDevice),
            cudaSuccess);

  // B cannot get a page while A holds everything; nothing changes.
  absl::Status blocked = (*b)->reserve(7, 10);
  EXPECT_EQ(blocked.code(), absl::StatusCode::kResourceExhausted) << blocked;
  EXPECT_NE(blocked.message().find("KV pool exhausted"), std::string::npos);
  EXPECT_EQ((*b)->pagesInUse(), 0);
  EXPECT_TRUE((*b)->usedChunks().empty());

  // A ends: its chunks stay mapped in A, empty, but free for everyone.
  EXPECT_EQ((*pool)->counters().maps, 2);
  (*a)->release(1);
  EXPECT_EQ((*a)->pagesInUse(), 0);
  EXPECT_TRUE((*a)->usedChunks().empty());
  EXPECT_EQ((*a)->chunksInUse(), 0);
  EXPECT_EQ((*a)->cachedChunks(), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ((*pool)->numFree(), 2);
  EXPECT_EQ((*pool)->numCached(), 2);
  EXPECT_EQ((*pool)->numUnmapped(), 0);
  EXPECT_EQ((*pool)->counters().unmaps, 0);
  // B grows into the same physical chunk, taken back from A, and sees A's
  // bytes there (the same memory, not a copy).
  ASSERT_TRUE((*b)->reserve(7, int64_t(perChunk) * 1024).ok());
  EXPECT_EQ((*b)->usedChunks(), std::vector<int32_t>{physical})
      << "the lowest free chunk, the one A used first";
  EXPECT_EQ((*a)->cachedChunks(), std::vector<int32_t>{1 - physical});
  EXPECT_EQ((*pool)->counters().reclaims, 1);
  EXPECT_EQ((*pool)->counters().unmaps, 1);
  EXPECT_EQ((*pool)->counters().maps, 3);
  int32_t bPage = (*b)->pageTable(7, 0)[0];
  EXPECT_EQ((*b)->chunkOfPage(bPage), physical);
  char *chunkBaseB = reinterpret_cast<char *>((*b)->base()) +
                     size_t(bPage / perChunk) * (*pool)->chunkBytes();
  std::vector<uint32_t> seen(pattern.size());
  ASSERT_EQ(cudaMemcpy(seen.data(), chunkBaseB, seen.size() * 4,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(seen, pattern);

  // B needs more than the one free chunk holds: ResourceExhausted, and its
  // existing pages stay.
  absl::Status tooMuch = (*b)->reserve(8, int64_t(perChunk + 1) * 1024);
  EXPECT_EQ(tooMuch.code(), absl::StatusCode::kResourceExhausted) << tooMuch;
  EXPECT_EQ((*b)->pagesInUse(), perChunk);
  EXPECT_EQ((*pool)->numFree(), 1);
  // A grows again into the chunk B left free: still mapped in A, so no
  // driver call.
  ASSERT_TRUE((*a)->reserve(2, 2048).ok());
  EXPECT_EQ((*a)->usedChunks(), std::vector<int32_t>{1 - physical});
  EXPECT_EQ((*pool)->counters().maps, 3);
  EXPECT_EQ((*pool)->counters().reuses, 1);
  (*b)->release(7);
  (*a)->release(2);
  EXPECT_EQ((*pool)->numFree(), 2);
  EXPECT_EQ((*pool)->numCached(), 2);
}

// One model starting and ending sequences maps each chunk once; with the
// policy off (unmap with the last page) every start maps again. Either way
// the chunk counts a scheduler sees are the same.
TEST(VmmKvPool, FreedChunksStayMappedForReuse) {
  CP_SKIP_WITHOUT_CUDA();
  for (bool keep : {true, false}) {
    SCOPED_TRACE(keep ? "keep mapped" : "unmap at once");
    auto pool = PhysicalChunkPool::create(0, 3, kChunk);
    ASSERT_TRUE(pool.ok()) << pool.status();
    (*pool)->setKeepFreedChunksMapped(keep);
    // 1 layer, 2 x 32 fp32, 2048 tokens per page: 512 KiB pages.
    auto a = VirtualKvSpace::create(**pool, {{2, 32}}, 2048,
                                    cudak::DType::kF32, "model A");
    ASSERT_TRUE(a.ok()) << a.status();
    const int32_t perChunk = (*a)->pagesPerChunk();
    ASSERT_GE(perChunk, 2);
    for (int round = 0; round < 4; ++round) {
      // Two sequences of perChunk + 1 pages: 3 chunks (the pool's all).
      ASSERT_TRUE((*a)->reserve(1, int64_t(perChunk) * 2048).ok());
      ASSERT_TRUE((*a)->reserve(2, 2048).ok());
      EXPECT_EQ((*a)->chunksInUse(), 2);
      ASSERT_TRUE((*a)->reserve(2, int64_t(perChunk + 1) * 2048).ok());
      EXPECT_EQ((*a)->pagesInUse(), 2 * perChunk + 1);
      EXPECT_EQ((*a)->chunksInUse(), 3);
      EXPECT_EQ((*pool)->numFree(), 0);
      (*a)->release(1);
      EXPECT_EQ((*a)->chunksInUse(), 2) << "sequence 1 filled chunk 0 alone";
      EXPECT_EQ((*pool)->numFree(), 1);
      (*a)->release(2);
      EXPECT_EQ((*a)->chunksInUse(), 0);
      EXPECT_EQ((*pool)->numFree(), 3);
      EXPECT_EQ((*a)->chunksCached(), keep ? 3 : 0);
      EXPECT_EQ((*pool)->counters().maps, keep ? 3 : 3 * (round + 1));
      EXPECT_EQ((*pool)->counters().unmaps, keep ? 0 : 3 * (round + 1));
    }
    EXPECT_GE((*pool)->counters().mapS, 0.0);
  }
}

TEST(VmmKvPool, BadGeometryIsAnError) {
  CP_SKIP_WITHOUT_CUDA();
  auto pool = PhysicalChunkPool::create(0, 1, kChunk);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto huge = VirtualKvSpace::create(**pool, {{8, 128}}, 1 << 20,
                                     cudak::DType::kF32, "huge");
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  auto zero =
      VirtualKvSpace::create(**pool, {{2, 32}}, 0, cudak::DType::kF32, "zero");
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PhysicalChunkPool::create(0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Through the runtime: two compiled models share a one-chunk pool. While
// qwen3_moe_tiny holds a sequence, olmoe_tiny's request fails with
// ResourceExhausted; once qwen3 releases, olmoe maps the same physical chunk
// and still reproduces its golden.
TEST(CudaRuntimeKvPool, TwoModelsTakeTurnsOnOneChunk) {
  CP_SKIP_WITHOUT_CUDA();
  runtime::RuntimeOptions o = tc::cudaOptions(cudak::DType::kF32);
  o.kvChunks = 1;
  o.kvChunkBytes = kChunk;
  o.tokensPerPage = 2048; // qwen3 tiny: 1 MiB fp32 pages, 2 layers = 1 chunk
  auto rt = runtime::Runtime::create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto qwen = (*rt)->loadModel(tc::planPath("qwen3_moe_tiny"),
                               tc::loadOptions("qwen3_moe_tiny"));
  auto olmoe = (*rt)->loadModel(tc::planPath("olmoe_tiny"),
                                tc::loadOptions("olmoe_tiny"));
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  ASSERT_TRUE(olmoe.ok()) << olmoe.status();
  auto qwenGold = tc::loadGoldens("qwen3_moe_tiny");
  auto olmoeGold = tc::loadGoldens("olmoe_tiny");
  ASSERT_EQ(qwenGold.size(), 3u);
  ASSERT_EQ(olmoeGold.size(), 3u);
  if (tc::cudaBackend(**rt).kvChunkPool().chunkBytes() != kChunk)
    GTEST_SKIP() << "allocation granularity above 2 MiB";

  auto seq = (*rt)->startSequence(*qwen);
  ASSERT_TRUE(seq.ok());
  ASSERT_TRUE((*rt)->prefill(*seq, qwenGold[2].promptIds).ok());
  std::vector<int32_t> qwenChunks = tc::cudaBackend(**rt).kvSpace(*qwen)->usedChunks();
  ASSERT_EQ(qwenChunks, std::vector<int32_t>{0});
  EXPECT_EQ(tc::cudaBackend(**rt).kvChunkPool().numFree(), 0);

  runtime::GenerateOptions opts;
  opts.maxNewTokens = 24;
  auto blocked = (*rt)->generate(*olmoe, olmoeGold[2].promptIds, opts);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kResourceExhausted)
      << blocked.status();
  EXPECT_EQ((*rt)->kvPagesInUse(*olmoe), 0);

  ASSERT_TRUE((*rt)->release(*seq).ok());
  EXPECT_EQ(tc::cudaBackend(**rt).kvChunkPool().numFree(), 1);
  auto oseq = (*rt)->startSequence(*olmoe);
  ASSERT_TRUE(oseq.ok());
  ASSERT_TRUE((*rt)->prefill(*oseq, olmoeGold[2].promptIds).ok());
  EXPECT_EQ(tc::cudaBackend(**rt).kvSpace(*olmoe)->usedChunks(), qwenChunks)
      << "olmoe grows into the physical chunk qwen3 gave back";
  ASSERT_TRUE((*rt)->release(*oseq).ok());
  auto run = (*rt)->generate(*olmoe, olmoeGold[2].promptIds, opts);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->generatedIds, olmoeGold[2].generatedIds);
  auto qrun = (*rt)->generate(*qwen, qwenGold[1].promptIds, opts);
  ASSERT_TRUE(qrun.ok()) << qrun.status();
  EXPECT_EQ(qrun->generatedIds, qwenGold[1].generatedIds);
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
}

// Decode graphs are keyed by a context bucket, not the exact longest
// context: an upper bound within 25% (512 at least), 4 buckets per octave.
TEST(CudaExecutorGraphs, ContextBucketsAreCloseUpperBounds) {
  EXPECT_EQ(CudaExecutor::contextBucket(1), 512);
  EXPECT_EQ(CudaExecutor::contextBucket(512), 512);
  EXPECT_EQ(CudaExecutor::contextBucket(513), 640);
  EXPECT_EQ(CudaExecutor::contextBucket(1000), 1024);
  EXPECT_EQ(CudaExecutor::contextBucket(1025), 1280);
  EXPECT_EQ(CudaExecutor::contextBucket(4097), 5120);
  EXPECT_EQ(CudaExecutor::contextBucket(8192), 8192);
  std::set<int32_t> buckets;
  for (int32_t ctx = 1; ctx <= 8192; ++ctx) {
    int32_t b = CudaExecutor::contextBucket(ctx);
    ASSERT_GE(b, ctx);
    ASSERT_LE(b, std::max<int32_t>(512, ctx + ctx / 4)) << ctx;
    buckets.insert(b);
  }
  EXPECT_EQ(buckets.size(), 17u); // 512, then 4 per octave up to 8192
}

// Runtime::step picks the last row of every chunk before the LM head (a
// gather on the device) and stepGreedy returns device argmax ids: both give
// the goldens' next tokens, for prefill chunks, a decode batch (graph, no
// gather) and a mixed batch (graph with the gather), and the picked row's
// logits equal the full prefill's last row.
TEST(CudaRuntimeSteps, PickedRowsAndGreedyIdsMatchTheGoldens) {
  CP_SKIP_WITHOUT_CUDA();
  auto rt = runtime::Runtime::create(tc::cudaOptions(cudak::DType::kF32));
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto qwen = (*rt)->loadModel(tc::planPath("qwen3_moe_tiny"),
                               tc::loadOptions("qwen3_moe_tiny"));
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  auto gold = tc::loadGoldens("qwen3_moe_tiny");
  ASSERT_EQ(gold.size(), 3u);
  auto info = (*rt)->modelInfo(*qwen);
  ASSERT_TRUE(info.ok());
  const int64_t V = (*info)->vocabSize;
  auto start = [&] {
    auto s = (*rt)->startSequence(*qwen);
    EXPECT_TRUE(s.ok());
    return *s;
  };

  runtime::SequenceId s0 = start();
  auto full = (*rt)->prefill(s0, gold[0].promptIds);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(full->size(), gold[0].promptIds.size() * V);
  ASSERT_TRUE((*rt)->release(s0).ok());

  runtime::SequenceId a = start(), b = start();
  auto picked = (*rt)->step({a, b}, {gold[0].promptIds, gold[1].promptIds});
  ASSERT_TRUE(picked.ok()) << picked.status();
  ASSERT_EQ(picked->size(), size_t(2 * V));
  const float *lastFull = full->data() + (gold[0].promptIds.size() - 1) * V;
  for (int64_t v = 0; v < V; ++v)
    ASSERT_NEAR((*picked)[v], lastFull[v], 1e-3f) << "logit " << v;
  EXPECT_EQ(kernels::cpu::argmax(picked->data(), V),
            gold[0].generatedIds[0]);
  EXPECT_EQ(kernels::cpu::argmax(picked->data() + V, V),
            gold[1].generatedIds[0]);

  runtime::SequenceId c = start(), d = start(), e = start();
  auto ids = (*rt)->stepGreedy({c, d}, {gold[0].promptIds, gold[1].promptIds});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{gold[0].generatedIds[0],
                                        gold[1].generatedIds[0]}));
  ids = (*rt)->stepGreedy({c, d},
                          {{gold[0].generatedIds[0]}, {gold[1].generatedIds[0]}});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{gold[0].generatedIds[1],
                                        gold[1].generatedIds[1]}));
  ids = (*rt)->stepGreedy({c, e, d}, {{gold[0].generatedIds[1]},
                                      gold[2].promptIds,
                                      {gold[1].generatedIds[1]}});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{gold[0].generatedIds[2],
                                        gold[2].generatedIds[0],
                                        gold[1].generatedIds[2]}));
  EXPECT_GT(tc::cudaBackend(**rt).counters().graphLaunches, 0);
  for (runtime::SequenceId s : {a, b, c, d, e})
    ASSERT_TRUE((*rt)->release(s).ok());
  EXPECT_EQ((*rt)->kvPagesInUse(), 0);
  EXPECT_EQ((*rt)->kvChunksInUse(), 0);
}

} // namespace
