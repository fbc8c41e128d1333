//===- PageAllocatorTest.cpp - The shared KV page pool --------------------===//
#include "runtime/pools/PageAllocator.h"

#include "gtest/gtest.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>

namespace crosspool::runtime {
namespace {

std::unique_ptr<PageAllocator> makeAllocator(int32_t pages, size_t bytes) {
  auto allocator = PageAllocator::create(pages, bytes);
  EXPECT_TRUE(allocator.ok()) << allocator.status();
  return std::move(allocator).value();
}

TEST(PageAllocatorTest, RejectsBadGeometry) {
  auto a = PageAllocator::create(0, 256);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.status().message(),
            "KV page pool: number of pages must be positive but got 0");
  a = PageAllocator::create(4, 100);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(), "KV page pool: page size must be a positive "
                                  "multiple of 64 bytes but got 100");
  EXPECT_FALSE(PageAllocator::create(4, 0).ok());
}

TEST(PageAllocatorTest, ExhaustionAndLifoReuse) {
  auto pool = makeAllocator(4, 256);
  EXPECT_EQ(pool->numPages(), 4);
  EXPECT_EQ(pool->pageBytes(), 256u);
  for (int32_t expected = 0; expected < 4; ++expected) {
    auto page = pool->allocate();
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_EQ(*page, expected);
    EXPECT_EQ(pool->numFree(), 3 - expected);
  }
  auto none = pool->allocate();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(none.status().message(), "KV pool exhausted: all 4 pages in use");

  ASSERT_TRUE(pool->release(1).ok());
  ASSERT_TRUE(pool->release(3).ok());
  EXPECT_EQ(pool->numFree(), 2);
  // Last released, first reused.
  EXPECT_EQ(*pool->allocate(), 3);
  EXPECT_EQ(*pool->allocate(), 1);
  EXPECT_FALSE(pool->allocate().ok());
}

TEST(PageAllocatorTest, DoubleFreeAndOutOfRangeDoNotCorrupt) {
  auto pool = makeAllocator(4, 64);
  std::vector<int32_t> pages;
  ASSERT_TRUE(pool->allocateMany(4, &pages).ok());
  ASSERT_TRUE(pool->release(2).ok());
  absl::Status twice = pool->release(2);
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(twice.message(),
            "KV page pool: cannot release page 2: it is already free");
  absl::Status outside = pool->release(4);
  EXPECT_EQ(outside.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(outside.message(),
            "KV page pool: cannot release page 4: out of range [0, 4)");
  EXPECT_FALSE(pool->release(-1).ok());
  EXPECT_EQ(pool->numFree(), 1);
  // Page 2 comes back exactly once.
  EXPECT_EQ(*pool->allocate(), 2);
  EXPECT_FALSE(pool->allocate().ok());
}

TEST(PageAllocatorTest, AllocateManyIsAllOrNothing) {
  auto pool = makeAllocator(4, 64);
  std::vector<int32_t> pages;
  ASSERT_TRUE(pool->allocateMany(3, &pages).ok());
  EXPECT_EQ(pages, (std::vector<int32_t>{0, 1, 2}));
  absl::Status status = pool->allocateMany(2, &pages);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "KV pool exhausted: 2 pages needed but 1 of 4 are free");
  EXPECT_EQ(pages.size(), 3u);
  EXPECT_EQ(pool->numFree(), 1);
}

TEST(PageAllocatorTest, PagesAreDisjointAlignedMemory) {
  auto pool = makeAllocator(3, 128);
  auto *p0 = static_cast<unsigned char *>(pool->pageData(0));
  auto *p1 = static_cast<unsigned char *>(pool->pageData(1));
  auto *p2 = static_cast<unsigned char *>(pool->pageData(2));
  EXPECT_EQ(p1 - p0, 128);
  EXPECT_EQ(p2 - p1, 128);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p0) % 64, 0u);
  EXPECT_EQ(pool->pageData(3), nullptr);
  EXPECT_EQ(pool->pageData(-1), nullptr);
  std::memset(p0, 0x11, 128);
  std::memset(p2, 0x33, 128);
  std::memset(p1, 0x22, 128);
  EXPECT_EQ(p0[127], 0x11);
  EXPECT_EQ(p2[0], 0x33);
}

TEST(PageAllocatorTest, ConcurrentAllocateReleaseNeverSharesAPage) {
  auto pool = makeAllocator(16, 64);
  std::vector<std::atomic<int>> owners(16);
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int iter = 0; iter < 2000; ++iter) {
        auto page = pool->allocate();
        if (!page.ok())
          continue;
        if (owners[*page].fetch_add(1) != 0)
          ++violations;
        owners[*page].fetch_sub(1);
        if (!pool->release(*page).ok())
          ++violations;
      }
    });
  for (auto &t : threads)
    t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(pool->numFree(), 16);
  std::set<int32_t> seen;
  for (int i = 0; i < 16; ++i)
    seen.insert(*pool->allocate());
  EXPECT_EQ(seen.size(), 16u);
}

} // namespace
} // namespace crosspool::runtime
