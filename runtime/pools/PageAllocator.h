//===- PageAllocator.h - The KV page pool shared by all models -*- C++ -*-===//
//
// One pool of fixed-size pages that every model's KvCache draws from: the KV
// pool is sized for the aggregate active demand of all models, not for the sum
// of per-model worst cases. On the CPU backend the pool is one aligned host
// arena; a CUDA backend backs the same interface with VMM physical pages.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_POOLS_PAGEALLOCATOR_H
#define CROSSPOOL_RUNTIME_POOLS_PAGEALLOCATOR_H

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace crosspool::runtime {

class PageAllocator {
public:
  /// Pages start at 64-byte aligned addresses, so `pageBytes` must be a
  /// positive multiple of kPageAlignment.
  static constexpr size_t kPageAlignment = 64;

  /// InvalidArgument for a bad geometry, ResourceExhausted when the host
  /// arena cannot be allocated.
  static absl::StatusOr<std::unique_ptr<PageAllocator>>
  create(int32_t numPages, size_t pageBytes);
  ~PageAllocator();
  PageAllocator(const PageAllocator &) = delete;
  PageAllocator &operator=(const PageAllocator &) = delete;

  /// One free page; the most recently released page comes first (LIFO keeps
  /// recently touched memory hot). ResourceExhausted when none is free.
  absl::StatusOr<int32_t> allocate();
  /// `count` pages appended to `pages`, all or nothing: on ResourceExhausted
  /// nothing was taken.
  absl::Status allocateMany(int64_t count, std::vector<int32_t> *pages);
  /// Returns a page to the pool. Out of range or already free is an error
  /// that leaves the pool unchanged.
  absl::Status release(int32_t page);

  int32_t numFree() const;
  int32_t numPages() const { return numPages_; }
  size_t pageBytes() const { return pageBytes_; }
  /// Start of a page's bytes; nullptr when out of range. Stable for the
  /// allocator's lifetime.
  void *pageData(int32_t page) const;

private:
  PageAllocator(int32_t numPages, size_t pageBytes, void *arena);

  const int32_t numPages_;
  const size_t pageBytes_;
  void *const arena_;
  mutable absl::Mutex mutex_;
  std::vector<int32_t> freeList_ ABSL_GUARDED_BY(mutex_); ///< top = back
  std::vector<bool> inUse_ ABSL_GUARDED_BY(mutex_);
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_POOLS_PAGEALLOCATOR_H
