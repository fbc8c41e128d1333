//===- KvCache.cpp - One model's paged view of the shared KV pool ---------===//
#include "runtime/pools/KvCache.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdint>

namespace crosspool::runtime {

absl::StatusOr<std::unique_ptr<KvCache>>
KvCache::create(PageAllocator &allocator, std::vector<KvLayerGeometry> layers,
                std::string name) {
  if (layers.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": KV cache needs at least one layer"));
  std::vector<int> tokensPerPage;
  for (size_t l = 0; l < layers.size(); ++l) {
    const KvLayerGeometry &g = layers[l];
    if (g.numKvHeads <= 0 || g.headDim <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": KV layer ", l,
                       " expects positive num_kv_heads and head_dim "
                       "but got ",
                       g.numKvHeads, " and ", g.headDim));
    uint64_t tokenBytes = 2ull * g.numKvHeads * g.headDim * sizeof(float);
    uint64_t perPage = allocator.pageBytes() / tokenBytes;
    if (perPage == 0)
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": KV page of ", allocator.pageBytes(),
                       " bytes is too small for one token of layer ", l,
                       " (needs ", tokenBytes, " bytes: 2 x ", g.numKvHeads,
                       " kv heads x ", g.headDim, " x 4)"));
    if (perPage > (1u << 30))
      perPage = 1u << 30;
    tokensPerPage.push_back(static_cast<int>(perPage));
  }
  return std::unique_ptr<KvCache>(new KvCache(
      allocator, std::move(layers), std::move(tokensPerPage), std::move(name)));
}

KvCache::KvCache(PageAllocator &allocator, std::vector<KvLayerGeometry> layers,
                 std::vector<int> tokensPerPage, std::string name)
    : allocator_(allocator), layers_(std::move(layers)),
      tokensPerPage_(std::move(tokensPerPage)), name_(std::move(name)) {}

KvCache::~KvCache() {
  while (!seqs_.empty())
    release(seqs_.begin()->first);
}

absl::Status KvCache::reserve(int64_t seqId, int64_t numTokens) {
  if (numTokens < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        name_, ": cannot reserve ", numTokens, " tokens for sequence ", seqId));
  auto it = seqs_.find(seqId);
  std::vector<int64_t> missing(layers_.size(), 0);
  int64_t needed = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    int64_t want = (numTokens + tokensPerPage_[l] - 1) / tokensPerPage_[l];
    int64_t have = it == seqs_.end() ? 0 : it->second[l].size();
    missing[l] = want > have ? want - have : 0;
    needed += missing[l];
  }
  std::vector<int32_t> pages;
  if (needed > 0) {
    absl::Status status = allocator_.allocateMany(needed, &pages);
    if (absl::IsResourceExhausted(status))
      return absl::ResourceExhaustedError(absl::StrCat(
          name_, ": KV pool exhausted: sequence ", seqId, " needs ", needed,
          " more pages for ", numTokens, " tokens but only ",
          allocator_.numFree(), " of ", allocator_.numPages(), " are free"));
    if (!status.ok())
      return status;
  }
  auto &tables = seqs_[seqId];
  tables.resize(layers_.size());
  size_t next = 0;
  for (size_t l = 0; l < layers_.size(); ++l)
    for (int64_t k = 0; k < missing[l]; ++k)
      tables[l].push_back(pages[next++]);
  pagesInUse_ += needed;
  return absl::OkStatus();
}

void KvCache::release(int64_t seqId) {
  auto it = seqs_.find(seqId);
  if (it == seqs_.end())
    return;
  for (const auto &table : it->second)
    for (int32_t page : table) {
      // Pages are only ever taken by this object, so release cannot fail.
      (void)allocator_.release(page);
      --pagesInUse_;
    }
  seqs_.erase(it);
}

const std::vector<int32_t> &KvCache::pageTable(int64_t seqId, int layer) const {
  static const std::vector<int32_t> kEmpty;
  auto it = seqs_.find(seqId);
  if (it == seqs_.end() || layer < 0 || layer >= numLayers())
    return kEmpty;
  return it->second[layer];
}

int64_t KvCache::capacityTokens(int64_t seqId) const {
  auto it = seqs_.find(seqId);
  if (it == seqs_.end())
    return 0;
  int64_t capacity = INT64_MAX;
  for (size_t l = 0; l < layers_.size(); ++l)
    capacity = std::min<int64_t>(capacity, int64_t(it->second[l].size()) *
                                               tokensPerPage_[l]);
  return capacity;
}

float *KvCache::row(int64_t seqId, int layer, int64_t pos, bool value) const {
  if (layer < 0 || layer >= numLayers() || pos < 0)
    return nullptr;
  const std::vector<int32_t> &table = pageTable(seqId, layer);
  int64_t tpp = tokensPerPage_[layer];
  if (pos / tpp >= int64_t(table.size()))
    return nullptr;
  float *page = pageData(table[pos / tpp]);
  int64_t rowOffset = (pos % tpp) * rowFloats(layer);
  return page + (value ? tpp * rowFloats(layer) : 0) + rowOffset;
}

float *KvCache::keyRow(int64_t seqId, int layer, int64_t pos) const {
  return row(seqId, layer, pos, false);
}
float *KvCache::valueRow(int64_t seqId, int layer, int64_t pos) const {
  return row(seqId, layer, pos, true);
}

} // namespace crosspool::runtime
