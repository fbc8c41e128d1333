//===- KvCache.h - One model's paged view of the shared KV pool -*- C++ -*-===//
//
// Page layout (fp32), read by the attention kernels through pageData():
// a page holds tokensPerPage(layer) consecutive positions of ONE layer of ONE
// sequence,
//
//   K block: float[tokensPerPage][num_kv_heads][head_dim]
//   V block: float[tokensPerPage][num_kv_heads][head_dim]   (right after K)
//
// with tokensPerPage(layer) = pageBytes / (2 * num_kv_heads * head_dim * 4).
// Position p of a sequence in layer l lives in page
// pageTable(seq, l)[p / tokensPerPage(l)], row p % tokensPerPage(l) of each
// block. Pages come from the PageAllocator shared by all models, so one
// model's released pages are what the next reservation of any model gets.
//
// Not thread-safe: the engine reserves and releases between steps, the
// attention worker reads page tables during a step. The PageAllocator under
// it is thread-safe, so KvCaches of different models may be used from
// different threads.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_POOLS_KVCACHE_H
#define CROSSPOOL_RUNTIME_POOLS_KVCACHE_H

#include "runtime/pools/PageAllocator.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// KV geometry of one attention layer (the plan's KvLayer).
struct KvLayerGeometry {
  int32_t numKvHeads = 0;
  int32_t headDim = 0;
};

class KvCache {
public:
  /// InvalidArgument when there are no layers, a geometry is not positive,
  /// or a page is too small for one token of some layer. `name` (the model)
  /// prefixes error messages.
  static absl::StatusOr<std::unique_ptr<KvCache>>
  create(PageAllocator &allocator, std::vector<KvLayerGeometry> layers,
         std::string name = "model");
  /// Returns all pages of all sequences to the allocator.
  ~KvCache();
  KvCache(const KvCache &) = delete;
  KvCache &operator=(const KvCache &) = delete;

  /// Ensures pages for positions [0, numTokens) of `seqId` in every layer.
  /// All or nothing: on ResourceExhausted (naming pages needed and free)
  /// this call took no page.
  absl::Status reserve(int64_t seqId, int64_t numTokens);
  /// Returns the sequence's pages to the shared pool; unknown ids are ignored.
  void release(int64_t seqId);

  bool hasSequence(int64_t seqId) const { return seqs_.count(seqId) != 0; }
  /// Page ids covering the sequence's positions in `layer`, in position
  /// order; empty for an unknown sequence or layer.
  const std::vector<int32_t> &pageTable(int64_t seqId, int layer) const;
  /// Positions reserved for the sequence in every layer (0 when unknown).
  int64_t capacityTokens(int64_t seqId) const;

  int numLayers() const { return static_cast<int>(layers_.size()); }
  const KvLayerGeometry &layer(int layer) const { return layers_[layer]; }
  int tokensPerPage(int layer) const { return tokensPerPage_[layer]; }
  /// Floats of one token of one layer in one block: num_kv_heads * head_dim.
  int64_t rowFloats(int layer) const {
    return int64_t(layers_[layer].numKvHeads) * layers_[layer].headDim;
  }
  /// Start of a page (its K block); nullptr when out of range.
  float *pageData(int32_t page) const {
    return static_cast<float *>(allocator_.pageData(page));
  }
  /// K / V row ([num_kv_heads][head_dim]) of position `pos` of a sequence;
  /// nullptr when the position is not reserved.
  float *keyRow(int64_t seqId, int layer, int64_t pos) const;
  float *valueRow(int64_t seqId, int layer, int64_t pos) const;

  /// Pages this model holds now.
  int64_t pagesInUse() const { return pagesInUse_; }
  PageAllocator &allocator() const { return allocator_; }

private:
  KvCache(PageAllocator &allocator, std::vector<KvLayerGeometry> layers,
          std::vector<int> tokensPerPage, std::string name);
  float *row(int64_t seqId, int layer, int64_t pos, bool value) const;

  PageAllocator &allocator_;
  std::vector<KvLayerGeometry> layers_;
  std::vector<int> tokensPerPage_;
  std::string name_;
  /// Per sequence, per layer: page ids in position order.
  std::map<int64_t, std::vector<std::vector<int32_t>>> seqs_;
  int64_t pagesInUse_ = 0;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_POOLS_KVCACHE_H
