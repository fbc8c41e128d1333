//===- VmmKvPool.h - KV-cache pool on CUDA virtual memory -------*- C++ -*-===//
//
// The KV-cache pool of one GPU, shared by every model loaded on it.
//
// Physical memory is a fixed set of chunks (cuMemCreate, each a multiple of
// the allocation granularity, 2 MiB on Hopper) with ONE free list
// (PhysicalChunkPool). Each model reserves its own virtual address range
// (cuMemAddressReserve, room for every chunk of the pool) and maps a physical
// chunk into the next free chunk slot of that range (cuMemMap +
// cuMemSetAccess) only when one of its sequences needs a page and no chunk
// of the model has a free one.
//
// A chunk whose last page is freed stays mapped in its model's range, empty
// ("cached", as kvcached keeps freed pages mapped): the model takes it again
// without a driver call, and it still counts as free in the shared pool.
// When a model needs a chunk and the pool has no unmapped one, the pool takes
// back the lowest cached chunk of any model (cuMemUnmap there) and gives it
// to the requester. So chunks still come from one shared free list, are
// mapped on demand and go back when the pool needs them; only the unmap is
// deferred to that moment. A model's chunks in use are the ones holding
// pages (what schedulers count).
//
// Kernels see ordinary paged KV (kernels/cuda KvCacheView): page `id` of a
// model starts at base + id * pageStride. A page holds tokensPerPage tokens
// of one layer of one sequence; it is a sub-division of a chunk
// (pagesPerChunk = chunkBytes / pageStride), so page id = slot *
// pagesPerChunk + index in the chunk. The stride is the largest page of the
// model's layers rounded up to 256 bytes.
//
// Not thread-safe. Unmapping happens in reserve() (a reclaim) or on
// destruction; callers reserve and release only while the device is not
// running the model's steps (the runtime synchronizes at the end of every
// step).
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_VMMKVPOOL_H
#define CROSSPOOL_RUNTIME_CUDA_VMMKVPOOL_H

#include "kernels/cuda/Kernels.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cuda.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace crosspool::runtime::cuda {

class VirtualKvSpace;

/// Driver calls of the pool and their wall time (cumulative).
struct KvPoolCounters {
  int64_t maps = 0, unmaps = 0;
  double mapS = 0, unmapS = 0;
  /// Cached chunks a model took again without mapping, and cached chunks
  /// the pool took back from one model (unmapped) to give to another.
  int64_t reuses = 0, reclaims = 0;
};

/// Physical KV chunks of one device with one free list for all models.
class PhysicalChunkPool {
public:
  /// numChunks chunks of chunkBytes (0 = the device's recommended
  /// granularity; otherwise rounded up to the minimum granularity), all
  /// created now. The pool may later grow to maxChunks (0 = numChunks):
  /// every VirtualKvSpace reserves addresses for that many.
  static absl::StatusOr<std::unique_ptr<PhysicalChunkPool>>
  create(int device, int32_t numChunks, size_t chunkBytes = 0,
         int32_t maxChunks = 0);
  ~PhysicalChunkPool();
  PhysicalChunkPool(const PhysicalChunkPool &) = delete;
  PhysicalChunkPool &operator=(const PhysicalChunkPool &) = delete;

  /// Creates chunks until the pool has `numChunks` (never shrinks). All or
  /// nothing: InvalidArgument beyond capacity(), the driver's error (e.g.
  /// out of memory) when a chunk cannot be created.
  absl::Status grow(int32_t numChunks);

  /// Takes an unmapped chunk (lowest free id first, so reuse is
  /// deterministic); when none is unmapped, takes back the lowest cached
  /// chunk of any model first (unmapping it there). ResourceExhausted when
  /// every chunk holds pages.
  absl::StatusOr<int32_t> acquire();
  /// An unmapped chunk back to the free list.
  void release(int32_t chunk);

  int device() const { return device_; }
  size_t chunkBytes() const { return chunkBytes_; }
  int32_t numChunks() const { return static_cast<int32_t>(handles_.size()); }
  /// Chunks holding no page: unmapped plus cached (any model may take them).
  int32_t numFree() const {
    return static_cast<int32_t>(free_.size() + cached_.size());
  }
  int32_t numUnmapped() const { return static_cast<int32_t>(free_.size()); }
  int32_t numCached() const { return static_cast<int32_t>(cached_.size()); }
  /// Chunks the pool may grow to.
  int32_t capacity() const { return capacity_; }
  CUmemGenericAllocationHandle handle(int32_t chunk) const {
    return handles_[chunk];
  }
  /// Whether emptied chunks stay mapped (default true); false unmaps a chunk
  /// with its last page (the policy before caching).
  void setKeepFreedChunksMapped(bool keep) { keepMapped_ = keep; }
  bool keepFreedChunksMapped() const { return keepMapped_; }
  const KvPoolCounters &counters() const { return counters_; }

private:
  friend class VirtualKvSpace;
  PhysicalChunkPool() = default;
  /// A space reports a chunk it keeps mapped while empty (cache) or takes
  /// again / unmaps (uncache).
  void cache(int32_t chunk, VirtualKvSpace *space, int32_t slot) {
    cached_[chunk] = {space, slot};
  }
  void uncache(int32_t chunk) { cached_.erase(chunk); }

  int device_ = 0;
  size_t chunkBytes_ = 0;
  int32_t capacity_ = 0;
  bool keepMapped_ = true;
  std::vector<CUmemGenericAllocationHandle> handles_;
  /// Unmapped chunks, lowest first.
  std::set<int32_t> free_;
  /// Empty chunks still mapped: chunk -> (space, slot), lowest chunk first.
  std::map<int32_t, std::pair<VirtualKvSpace *, int32_t>> cached_;
  KvPoolCounters counters_;
};

/// KV geometry of one attention layer.
struct KvLayerShape {
  int32_t numKvHeads = 0;
  int32_t headDim = 0;
};

/// One model's paged KV cache in its own virtual range.
class VirtualKvSpace {
public:
  using SequenceId = int64_t;

  /// Reserves the virtual range (room for pool.capacity() chunks). Fails
  /// (InvalidArgument) when one page of tokensPerPage tokens does not fit a
  /// chunk.
  static absl::StatusOr<std::unique_ptr<VirtualKvSpace>>
  create(PhysicalChunkPool &pool, std::vector<KvLayerShape> layers,
         int32_t tokensPerPage, kernels::cuda::DType dtype, std::string name);
  /// Unmaps every chunk, gives them back to the pool, frees the range.
  ~VirtualKvSpace();
  VirtualKvSpace(const VirtualKvSpace &) = delete;
  VirtualKvSpace &operator=(const VirtualKvSpace &) = delete;

  /// Grows `seq` (created on first use) so every layer has pages for
  /// numTokens positions. All or nothing: ResourceExhausted ("KV pool
  /// exhausted ...") when the shared pool lacks the chunks, nothing changes.
  absl::Status reserve(SequenceId seq, int64_t numTokens);
  /// Frees the sequence's pages; chunks left empty stay mapped as cached
  /// (free for every model; see the file comment), or are unmapped and
  /// returned when the pool does not keep freed chunks mapped.
  void release(SequenceId seq);

  /// Page ids of `seq` in `layer`, in position order (empty if unknown).
  const std::vector<int32_t> &pageTable(SequenceId seq, int layer) const;
  /// The view of one layer without its page table (the executor adds it).
  kernels::cuda::KvCacheView layerView(int layer) const;

  int numLayers() const { return static_cast<int>(layers_.size()); }
  int32_t tokensPerPage() const { return tokensPerPage_; }
  int64_t pageStride() const { return pageStride_; }
  int32_t pagesPerChunk() const { return pagesPerChunk_; }
  int64_t pagesInUse() const { return pagesInUse_; }
  /// Physical chunks holding pages of this model now.
  int32_t chunksInUse() const { return chunksInUse_; }
  /// Empty chunks still mapped in this model's range.
  int32_t chunksCached() const {
    return static_cast<int32_t>(cachedSlots_.size());
  }
  /// Pages a sequence of numTokens tokens needs over all layers.
  int64_t pagesFor(int64_t numTokens) const;
  /// Physical chunk ids holding pages now, in slot order.
  std::vector<int32_t> usedChunks() const;
  /// Physical chunk ids mapped but empty (cached), in slot order.
  std::vector<int32_t> cachedChunks() const;
  /// Physical chunk behind a page id (-1 when unmapped).
  int32_t chunkOfPage(int32_t page) const;
  CUdeviceptr base() const { return base_; }

private:
  struct SlotState {
    int32_t chunk = -1;
    int32_t used = 0;
    std::vector<int32_t> freePages; ///< indices in the chunk, LIFO
  };
  friend class PhysicalChunkPool;
  VirtualKvSpace(PhysicalChunkPool &pool) : pool_(pool) {}
  absl::StatusOr<int32_t> allocPage();
  void freePage(int32_t page);
  absl::Status mapSlot(int32_t slot, int32_t chunk);
  void unmapSlot(int32_t slot);
  /// The pool takes back the cached chunk in `slot` (unmapped here).
  void evictCached(int32_t slot);

  PhysicalChunkPool &pool_;
  std::string name_;
  std::vector<KvLayerShape> layers_;
  int32_t tokensPerPage_ = 0;
  kernels::cuda::DType dtype_ = kernels::cuda::DType::kF32;
  int64_t pageStride_ = 0;
  int32_t pagesPerChunk_ = 0;
  CUdeviceptr base_ = 0;
  size_t rangeBytes_ = 0;
  std::vector<SlotState> slots_;
  /// Slots holding pages with a free page, mapped empty slots (cached), and
  /// unmapped slots: allocPage takes the lowest of the first set, else of
  /// the second, else maps the lowest of the third, without scanning every
  /// slot (a pool sized to a card has tens of thousands).
  std::set<int32_t> openSlots_, cachedSlots_, unmappedSlots_;
  /// Free pages in slots that hold pages (cached slots not counted).
  int64_t freeMappedPages_ = 0;
  int32_t chunksInUse_ = 0;
  int64_t pagesInUse_ = 0;
  /// seq -> per layer page ids.
  std::map<SequenceId, std::vector<std::vector<int32_t>>> tables_;
};

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_VMMKVPOOL_H
