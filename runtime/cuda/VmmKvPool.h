//===- VmmKvPool.h - KV-cache pool on CUDA virtual memory -------*- C++ -*-===//
//
// The KV-cache pool of one GPU, shared by every model loaded on it.
//
// Physical memory is a fixed set of chunks (cuMemCreate, each a multiple of
// the allocation granularity, 2 MiB on Hopper) with ONE free list
// (PhysicalChunkPool). Each model reserves its own virtual address range
// (cuMemAddressReserve, room for every chunk of the pool) and maps a physical
// chunk into the next free chunk slot of that range (cuMemMap +
// cuMemSetAccess) only when one of its sequences needs a page and no mapped
// chunk of the model has a free one; when the last page of a chunk is freed
// the chunk is unmapped and goes back to the shared list, where any model can
// take it.
//
// Kernels see ordinary paged KV (kernels/cuda KvCacheView): page `id` of a
// model starts at base + id * pageStride. A page holds tokensPerPage tokens
// of one layer of one sequence; it is a sub-division of a chunk
// (pagesPerChunk = chunkBytes / pageStride), so page id = slot *
// pagesPerChunk + index in the chunk. The stride is the largest page of the
// model's layers rounded up to 256 bytes.
//
// Not thread-safe. Unmapping happens in release(); callers release only
// sequences the device has finished with (the runtime synchronizes at the end
// of every step).
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

  /// Takes a chunk (lowest free id first, so reuse is deterministic);
  /// ResourceExhausted when none is free.
  absl::StatusOr<int32_t> acquire();
  void release(int32_t chunk);

  int device() const { return device_; }
  size_t chunkBytes() const { return chunkBytes_; }
  int32_t numChunks() const { return static_cast<int32_t>(handles_.size()); }
  int32_t numFree() const { return static_cast<int32_t>(free_.size()); }
  /// Chunks the pool may grow to.
  int32_t capacity() const { return capacity_; }
  CUmemGenericAllocationHandle handle(int32_t chunk) const {
    return handles_[chunk];
  }

private:
  PhysicalChunkPool() = default;
  int device_ = 0;
  size_t chunkBytes_ = 0;
  int32_t capacity_ = 0;
  std::vector<CUmemGenericAllocationHandle> handles_;
  /// Sorted descending so back() is the lowest free id.
  std::vector<int32_t> free_;
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
  /// Frees the sequence's pages; chunks left empty are unmapped and returned.
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
  /// Physical chunks mapped now.
  int32_t chunksMapped() const { return chunksMapped_; }
  /// Pages a sequence of numTokens tokens needs over all layers.
  int64_t pagesFor(int64_t numTokens) const;
  /// Physical chunk ids mapped now, in slot order (-1 entries skipped).
  std::vector<int32_t> mappedChunks() const;
  /// Physical chunk behind a page id (-1 when unmapped).
  int32_t chunkOfPage(int32_t page) const;
  CUdeviceptr base() const { return base_; }

private:
  struct SlotState {
    int32_t chunk = -1;
    int32_t used = 0;
    std::vector<int32_t> freePages; ///< indices in the chunk, LIFO
  };
  VirtualKvSpace(PhysicalChunkPool &pool) : pool_(pool) {}
  absl::StatusOr<int32_t> allocPage();
  void freePage(int32_t page);
  absl::Status mapSlot(int32_t slot, int32_t chunk);
  void unmapSlot(int32_t slot);

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
  /// Mapped slots with a free page, and unmapped slots: allocPage takes the
  /// lowest of the first set, else maps the lowest of the second, without
  /// scanning every slot (a pool sized to a card has tens of thousands).
  std::set<int32_t> openSlots_, unmappedSlots_;
  int64_t freeMappedPages_ = 0;
  int32_t chunksMapped_ = 0;
  int64_t pagesInUse_ = 0;
  /// seq -> per layer page ids.
  std::map<SequenceId, std::vector<std::vector<int32_t>>> tables_;
};

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_VMMKVPOOL_H
