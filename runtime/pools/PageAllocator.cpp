//===- PageAllocator.cpp - The physical KV page pool shared by all models -===//
#include "runtime/pools/PageAllocator.h"

#include "absl/strings/str_cat.h"

#include <cstdlib>
#include <limits>

namespace crosspool::runtime {

absl::StatusOr<std::unique_ptr<PageAllocator>>
PageAllocator::create(int32_t numPages, size_t pageBytes) {
  if (numPages <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV page pool: number of pages must be positive but got ", numPages));
  if (pageBytes == 0 || pageBytes % kPageAlignment != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("KV page pool: page size must be a positive multiple of ",
                     kPageAlignment, " bytes but got ", pageBytes));
  if (pageBytes > std::numeric_limits<size_t>::max() / numPages)
    return absl::InvalidArgumentError(
        absl::StrCat("KV page pool: ", numPages, " pages of ", pageBytes,
                     " bytes overflow the address space"));
  size_t total = static_cast<size_t>(numPages) * pageBytes;
  void *arena = std::aligned_alloc(kPageAlignment, total);
  if (!arena)
    return absl::ResourceExhaustedError(
        absl::StrCat("KV page pool: cannot allocate ", total, " bytes (",
                     numPages, " pages of ", pageBytes, " bytes)"));
  return std::unique_ptr<PageAllocator>(
      new PageAllocator(numPages, pageBytes, arena));
}

PageAllocator::PageAllocator(int32_t numPages, size_t pageBytes, void *arena)
    : numPages_(numPages), pageBytes_(pageBytes), arena_(arena),
      inUse_(numPages, false) {
  // Reverse order so a fresh pool hands out pages 0, 1, 2, ...
  freeList_.reserve(numPages);
  for (int32_t p = numPages - 1; p >= 0; --p)
    freeList_.push_back(p);
}

PageAllocator::~PageAllocator() { std::free(arena_); }

absl::StatusOr<int32_t> PageAllocator::allocate() {
  std::vector<int32_t> pages;
  absl::Status status = allocateMany(1, &pages);
  if (!status.ok())
    return status;
  return pages[0];
}

absl::Status PageAllocator::allocateMany(int64_t count,
                                         std::vector<int32_t> *pages) {
  if (count < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("KV page pool: cannot allocate ", count, " pages"));
  absl::MutexLock lock(&mutex_);
  if (static_cast<size_t>(count) > freeList_.size())
    return absl::ResourceExhaustedError(
        freeList_.empty()
            ? absl::StrCat("KV pool exhausted: all ", numPages_,
                           " pages in use")
            : absl::StrCat("KV pool exhausted: ", count, " pages needed but ",
                           freeList_.size(), " of ", numPages_, " are free"));
  for (int64_t i = 0; i < count; ++i) {
    int32_t page = freeList_.back();
    freeList_.pop_back();
    inUse_[page] = true;
    pages->push_back(page);
  }
  return absl::OkStatus();
}

absl::Status PageAllocator::release(int32_t page) {
  if (page < 0 || page >= numPages_)
    return absl::InvalidArgumentError(
        absl::StrCat("KV page pool: cannot release page ", page,
                     ": out of range [0, ", numPages_, ")"));
  absl::MutexLock lock(&mutex_);
  if (!inUse_[page])
    return absl::FailedPreconditionError(absl::StrCat(
        "KV page pool: cannot release page ", page, ": it is already free"));
  inUse_[page] = false;
  freeList_.push_back(page);
  return absl::OkStatus();
}

int32_t PageAllocator::numFree() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int32_t>(freeList_.size());
}

void *PageAllocator::pageData(int32_t page) const {
  if (page < 0 || page >= numPages_)
    return nullptr;
  return static_cast<char *>(arena_) + static_cast<size_t>(page) * pageBytes_;
}

} // namespace crosspool::runtime
