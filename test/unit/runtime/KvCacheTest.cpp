//===- KvCacheTest.cpp - Per-model paged KV caches over one page pool -----===//
#include "runtime/pools/KvCache.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <set>

namespace crosspool::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<PageAllocator> makeAllocator(int32_t pages, size_t bytes) {
  auto allocator = PageAllocator::create(pages, bytes);
  EXPECT_TRUE(allocator.ok()) << allocator.status();
  return std::move(allocator).value();
}

std::unique_ptr<KvCache> makeCache(PageAllocator &pool,
                                   std::vector<KvLayerGeometry> layers,
                                   std::string name = "model") {
  auto cache = KvCache::create(pool, std::move(layers), std::move(name));
  EXPECT_TRUE(cache.ok()) << cache.status();
  return std::move(cache).value();
}

TEST(KvCacheTest, TokensPerPage) {
  auto pool = makeAllocator(4, 1024);
  // 1024 / (2 * kv_heads * head_dim * 4): 1024/128 = 8, 1024/32 = 32,
  // 1024/120 = 8 (rounded down), 1024/1024 = 1.
  auto cache = makeCache(*pool, {{2, 8}, {1, 4}, {3, 5}, {8, 16}});
  EXPECT_EQ(cache->tokensPerPage(0), 8);
  EXPECT_EQ(cache->tokensPerPage(1), 32);
  EXPECT_EQ(cache->tokensPerPage(2), 8);
  EXPECT_EQ(cache->tokensPerPage(3), 1);
}

TEST(KvCacheTest, RejectsPageTooSmallAndBadGeometry) {
  auto pool = makeAllocator(4, 64);
  auto cache = KvCache::create(*pool, {{1, 4}, {2, 8}}, "qwen3");
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.status().message(),
            "qwen3: KV page of 64 bytes is too small for one token of layer "
            "1 (needs 128 bytes: 2 x 2 kv heads x 8 x 4)");
  cache = KvCache::create(*pool, {{0, 4}}, "m");
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().message(), "m: KV layer 0 expects positive "
                                      "num_kv_heads and head_dim but got 0 "
                                      "and 4");
  EXPECT_FALSE(KvCache::create(*pool, {}, "m").ok());
}

TEST(KvCacheTest, PageTablesGrowWithReserve) {
  auto pool = makeAllocator(16, 1024);
  auto cache = makeCache(*pool, {{2, 8}, {1, 4}}); // 8 and 32 tokens/page
  ASSERT_TRUE(cache->reserve(7, 5).ok());
  EXPECT_THAT(cache->pageTable(7, 0), ElementsAre(0));
  EXPECT_THAT(cache->pageTable(7, 1), ElementsAre(1));
  EXPECT_EQ(cache->capacityTokens(7), 8);
  EXPECT_EQ(cache->pagesInUse(), 2);

  ASSERT_TRUE(cache->reserve(7, 9).ok()); // layer 0 needs a second page
  EXPECT_THAT(cache->pageTable(7, 0), ElementsAre(0, 2));
  EXPECT_THAT(cache->pageTable(7, 1), ElementsAre(1));
  EXPECT_EQ(cache->capacityTokens(7), 16);

  ASSERT_TRUE(cache->reserve(7, 3).ok()); // never shrinks
  EXPECT_EQ(cache->pageTable(7, 0).size(), 2u);

  ASSERT_TRUE(cache->reserve(7, 33).ok()); // 5 pages and 2 pages
  EXPECT_THAT(cache->pageTable(7, 0), ElementsAre(0, 2, 3, 4, 5));
  EXPECT_THAT(cache->pageTable(7, 1), ElementsAre(1, 6));
  EXPECT_EQ(cache->capacityTokens(7), 40);
  EXPECT_EQ(cache->pagesInUse(), 7);
  EXPECT_EQ(pool->numFree(), 9);

  EXPECT_TRUE(cache->pageTable(8, 0).empty());
  EXPECT_TRUE(cache->pageTable(7, 2).empty());
  EXPECT_EQ(cache->capacityTokens(8), 0);

  cache->release(7);
  EXPECT_FALSE(cache->hasSequence(7));
  EXPECT_EQ(cache->pagesInUse(), 0);
  EXPECT_EQ(pool->numFree(), 16);
  cache->release(7); // unknown: ignored
  EXPECT_EQ(pool->numFree(), 16);

  absl::Status negative = cache->reserve(3, -1);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, FailedReserveTakesNothing) {
  auto pool = makeAllocator(6, 1024);
  auto cache = makeCache(*pool, {{2, 8}, {2, 8}}, "mixtral"); // 8 tokens/page
  ASSERT_TRUE(cache->reserve(1, 16).ok());                    // 2 + 2 pages
  EXPECT_EQ(pool->numFree(), 2);
  absl::Status status = cache->reserve(2, 17); // 3 + 3 pages
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "mixtral: KV pool exhausted: sequence 2 needs 6 more pages for 17 "
            "tokens but only 2 of 6 are free");
  EXPECT_EQ(pool->numFree(), 2);
  EXPECT_EQ(cache->pagesInUse(), 4);
  EXPECT_FALSE(cache->hasSequence(2));
  // Growing an existing sequence past the pool also leaves it untouched.
  status = cache->reserve(1, 40);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("needs 6 more pages"));
  EXPECT_EQ(cache->pageTable(1, 0).size(), 2u);
  EXPECT_EQ(cache->capacityTokens(1), 16);
  EXPECT_EQ(pool->numFree(), 2);
}

TEST(KvCacheTest, TwoModelsShareOnePool) {
  auto pool = makeAllocator(8, 1024);
  auto a = makeCache(*pool, {{2, 8}}, "a");         // 8 tokens/page
  auto b = makeCache(*pool, {{1, 4}, {1, 4}}, "b"); // 32 tokens/page
  ASSERT_TRUE(a->reserve(1, 24).ok());
  EXPECT_THAT(a->pageTable(1, 0), ElementsAre(0, 1, 2));
  ASSERT_TRUE(b->reserve(1, 10).ok());
  EXPECT_THAT(b->pageTable(1, 0), ElementsAre(3));
  EXPECT_THAT(b->pageTable(1, 1), ElementsAre(4));
  EXPECT_EQ(pool->numFree(), 3);

  a->release(1);
  EXPECT_EQ(a->pagesInUse(), 0);
  // B needs 4 pages: the 3 A released (last released first), then page 5.
  ASSERT_TRUE(b->reserve(2, 64).ok());
  std::set<int32_t> got;
  for (int l = 0; l < 2; ++l)
    for (int32_t p : b->pageTable(2, l))
      got.insert(p);
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 5}));
  EXPECT_THAT(b->pageTable(2, 0), ElementsAre(2, 1));
  EXPECT_THAT(b->pageTable(2, 1), ElementsAre(0, 5));
  EXPECT_EQ(b->pagesInUse(), 6);
  EXPECT_EQ(pool->numFree(), 2);

  // A cannot get back what B holds now.
  absl::Status status = a->reserve(1, 24);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->numFree(), 2);
}

TEST(KvCacheTest, LayoutKBlockThenVBlock) {
  auto pool = makeAllocator(4, 512);
  auto cache = makeCache(*pool, {{2, 4}}); // 512 / 64 = 8 tokens/page
  ASSERT_EQ(cache->tokensPerPage(0), 8);
  ASSERT_TRUE(cache->reserve(5, 12).ok());
  const int64_t row = 2 * 4;
  for (int64_t pos = 0; pos < 12; ++pos) {
    float *k = cache->keyRow(5, 0, pos);
    float *v = cache->valueRow(5, 0, pos);
    ASSERT_NE(k, nullptr);
    ASSERT_NE(v, nullptr);
    for (int64_t j = 0; j < row; ++j) {
      k[j] = 1000.0f * pos + j;
      v[j] = -1000.0f * pos - j;
    }
  }
  // Independent addressing: page = table[pos / 8], K at (pos % 8) * row,
  // V after the 8-row K block.
  const std::vector<int32_t> &table = cache->pageTable(5, 0);
  ASSERT_EQ(table.size(), 2u);
  for (int64_t pos = 0; pos < 12; ++pos) {
    const float *page =
        static_cast<const float *>(pool->pageData(table[pos / 8]));
    for (int64_t j = 0; j < row; ++j) {
      EXPECT_EQ(page[(pos % 8) * row + j], 1000.0f * pos + j);
      EXPECT_EQ(page[8 * row + (pos % 8) * row + j], -1000.0f * pos - j);
    }
  }
  EXPECT_EQ(cache->pageData(table[1]),
            static_cast<float *>(pool->pageData(table[1])));
  EXPECT_EQ(cache->keyRow(5, 0, 16), nullptr);
  EXPECT_EQ(cache->keyRow(5, 1, 0), nullptr);
  EXPECT_EQ(cache->keyRow(6, 0, 0), nullptr);
}

TEST(KvCacheTest, DestructionReturnsPages) {
  auto pool = makeAllocator(8, 256);
  {
    auto cache = makeCache(*pool, {{1, 8}}); // 4 tokens/page
    ASSERT_TRUE(cache->reserve(1, 9).ok());
    ASSERT_TRUE(cache->reserve(2, 4).ok());
    EXPECT_EQ(pool->numFree(), 4);
  }
  EXPECT_EQ(pool->numFree(), 8);
}

} // namespace
} // namespace crosspool::runtime
