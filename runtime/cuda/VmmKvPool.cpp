//===- VmmKvPool.cpp - KV-cache pool on CUDA virtual memory ---------------===//
#include "runtime/cuda/VmmKvPool.h"

#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/cuda/DriverCheck.h"

#include "absl/strings/str_cat.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>

namespace crosspool::runtime::cuda {

namespace cudak = crosspool::kernels::cuda;

namespace {

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

CUmemAllocationProp deviceProp(int device) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

} // namespace

absl::StatusOr<std::unique_ptr<PhysicalChunkPool>>
PhysicalChunkPool::create(int device, int32_t numChunks, size_t chunkBytes,
                          int32_t maxChunks) {
  if (numChunks <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV pool: expects at least one physical chunk but got ", numChunks));
  if (maxChunks != 0 && maxChunks < numChunks)
    return absl::InvalidArgumentError(
        absl::StrCat("KV pool: the chunks it may grow to (", maxChunks,
                     ") are fewer than its ", numChunks, " chunks"));
  // The runtime API creates (and makes current) the primary context that the
  // driver calls below use.
  CP_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  CP_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));
  CP_ASSIGN_OR_RETURN(const DriverApi *api, driverApi());
  const DriverApi &drv = *api;
  CUmemAllocationProp prop = deviceProp(device);
  size_t minGran = 0, recGran = 0;
  CP_CU_RETURN_IF_ERROR(drv.memGetAllocationGranularity(
      &minGran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  CP_CU_RETURN_IF_ERROR(drv.memGetAllocationGranularity(
      &recGran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  if (chunkBytes == 0)
    chunkBytes = recGran;
  chunkBytes = (chunkBytes + minGran - 1) / minGran * minGran;

  std::unique_ptr<PhysicalChunkPool> pool(new PhysicalChunkPool());
  pool->device_ = device;
  pool->chunkBytes_ = chunkBytes;
  pool->capacity_ = std::max(numChunks, maxChunks);
  CP_RETURN_IF_ERROR(pool->grow(numChunks));
  return pool;
}

absl::Status PhysicalChunkPool::grow(int32_t numChunks) {
  if (numChunks > capacity_)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV pool: cannot grow to ", numChunks, " chunks: room for ", capacity_,
        " was reserved (RuntimeOptions::kvMaxChunks)"));
  const int32_t before = static_cast<int32_t>(handles_.size());
  if (numChunks <= before)
    return absl::OkStatus();
  CP_ASSIGN_OR_RETURN(const DriverApi *drv, driverApi());
  CUmemAllocationProp prop = deviceProp(device_);
  for (int32_t i = before; i < numChunks; ++i) {
    CUmemGenericAllocationHandle h;
    CUresult res = drv->memCreate(&h, chunkBytes_, &prop, 0);
    if (res != CUDA_SUCCESS) {
      absl::Status st =
          driverErrorStatus(res, "cuMemCreate", __FILE__, __LINE__);
      // All or nothing: the chunks made by this call go back.
      while (int32_t(handles_.size()) > before) {
        drv->memRelease(handles_.back());
        handles_.pop_back();
      }
      return absl::Status(st.code(),
                          absl::StrCat("KV pool: physical chunk ", i, " of ",
                                       numChunks, " (", chunkBytes_,
                                       " bytes): ", st.message()));
    }
    handles_.push_back(h);
  }
  for (int32_t i = before; i < numChunks; ++i)
    free_.insert(free_.end(), i);
  return absl::OkStatus();
}

PhysicalChunkPool::~PhysicalChunkPool() {
  if (handles_.empty())
    return;
  const DriverApi *drv = *driverApi(); // loaded: create() succeeded
  for (CUmemGenericAllocationHandle h : handles_)
    drv->memRelease(h);
}

absl::StatusOr<int32_t> PhysicalChunkPool::acquire() {
  if (free_.empty() && !cached_.empty()) {
    // Take back the lowest cached chunk: its model unmaps it (it is empty).
    auto [space, slot] = cached_.begin()->second;
    space->evictCached(slot); // -> uncache + release: now in free_
    ++counters_.reclaims;
  }
  if (free_.empty())
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV pool exhausted: all ", handles_.size(), " physical chunks of ",
        chunkBytes_, " bytes hold pages"));
  int32_t c = *free_.begin();
  free_.erase(free_.begin());
  return c;
}

void PhysicalChunkPool::release(int32_t chunk) { free_.insert(chunk); }

absl::StatusOr<std::unique_ptr<VirtualKvSpace>>
VirtualKvSpace::create(PhysicalChunkPool &pool,
                       std::vector<KvLayerShape> layers, int32_t tokensPerPage,
                       cudak::DType dtype, std::string name) {
  if (tokensPerPage <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": KV tokens per page must be > 0 but got ", tokensPerPage));
  std::unique_ptr<VirtualKvSpace> s(new VirtualKvSpace(pool));
  s->name_ = std::move(name);
  s->tokensPerPage_ = tokensPerPage;
  s->dtype_ = dtype;
  int64_t page = 256;
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].numKvHeads <= 0 || layers[l].headDim <= 0)
      return absl::InvalidArgumentError(absl::StrCat(
          s->name_, ": KV layer ", l, " has ", layers[l].numKvHeads,
          " kv heads of dim ", layers[l].headDim));
    page = std::max<int64_t>(page, 2LL * tokensPerPage * layers[l].numKvHeads *
                                       layers[l].headDim *
                                       cudak::dtypeBytes(dtype));
  }
  s->layers_ = std::move(layers);
  s->pageStride_ = (page + 255) / 256 * 256;
  if (s->pageStride_ > static_cast<int64_t>(pool.chunkBytes()))
    return absl::InvalidArgumentError(absl::StrCat(
        s->name_, ": a KV page of ", tokensPerPage, " tokens needs ",
        s->pageStride_, " bytes but a physical chunk has only ",
        pool.chunkBytes()));
  s->pagesPerChunk_ = static_cast<int32_t>(pool.chunkBytes() / s->pageStride_);
  s->slots_.resize(pool.capacity());
  for (int32_t i = 0; i < pool.capacity(); ++i)
    s->unmappedSlots_.insert(s->unmappedSlots_.end(), i);
  s->rangeBytes_ = pool.chunkBytes() * pool.capacity();
  CP_ASSIGN_OR_RETURN(const DriverApi *drv, driverApi());
  CP_CU_RETURN_IF_ERROR(drv->memAddressReserve(&s->base_, s->rangeBytes_,
                                               pool.chunkBytes(), 0, 0));
  return s;
}

VirtualKvSpace::~VirtualKvSpace() {
  if (!base_)
    return; // nothing was reserved, so nothing is mapped
  const DriverApi *drv = *driverApi();
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].chunk >= 0)
      unmapSlot(static_cast<int32_t>(i));
  drv->memAddressFree(base_, rangeBytes_);
}

absl::Status VirtualKvSpace::mapSlot(int32_t slot, int32_t chunk) {
  const DriverApi *drv = *driverApi();
  auto start = std::chrono::steady_clock::now();
  CUdeviceptr va = base_ + size_t(slot) * pool_.chunkBytes();
  CP_CU_RETURN_IF_ERROR(
      drv->memMap(va, pool_.chunkBytes(), 0, pool_.handle(chunk), 0));
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = pool_.device();
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CUresult res = drv->memSetAccess(va, pool_.chunkBytes(), &access, 1);
  if (res != CUDA_SUCCESS) {
    drv->memUnmap(va, pool_.chunkBytes());
    return driverErrorStatus(res, "cuMemSetAccess", __FILE__, __LINE__);
  }
  ++pool_.counters_.maps;
  pool_.counters_.mapS += secondsSince(start);
  SlotState &st = slots_[slot];
  st.chunk = chunk;
  st.used = 0;
  st.freePages.clear();
  for (int32_t i = pagesPerChunk_ - 1; i >= 0; --i)
    st.freePages.push_back(i);
  unmappedSlots_.erase(slot);
  return absl::OkStatus();
}

void VirtualKvSpace::unmapSlot(int32_t slot) {
  const DriverApi *drv = *driverApi();
  SlotState &st = slots_[slot];
  auto start = std::chrono::steady_clock::now();
  drv->memUnmap(base_ + size_t(slot) * pool_.chunkBytes(), pool_.chunkBytes());
  ++pool_.counters_.unmaps;
  pool_.counters_.unmapS += secondsSince(start);
  if (st.used > 0) { // destruction with live pages
    freeMappedPages_ -= int64_t(st.freePages.size());
    --chunksInUse_;
  }
  if (cachedSlots_.erase(slot))
    pool_.uncache(st.chunk);
  pool_.release(st.chunk);
  openSlots_.erase(slot);
  unmappedSlots_.insert(slot);
  st = SlotState();
}

void VirtualKvSpace::evictCached(int32_t slot) { unmapSlot(slot); }

absl::StatusOr<int32_t> VirtualKvSpace::allocPage() {
  // Fill chunks holding pages before taking another, lowest slot first;
  // then an empty chunk still mapped here; then map one from the pool.
  if (openSlots_.empty()) {
    if (!cachedSlots_.empty()) {
      int32_t slot = *cachedSlots_.begin();
      cachedSlots_.erase(cachedSlots_.begin());
      pool_.uncache(slots_[slot].chunk);
      ++pool_.counters_.reuses;
      openSlots_.insert(slot);
    } else {
      int32_t emptySlot =
          unmappedSlots_.empty() ? -1 : *unmappedSlots_.begin();
      if (emptySlot < 0)
        return absl::ResourceExhaustedError(
            absl::StrCat(name_, ": KV pool exhausted: virtual range full"));
      CP_ASSIGN_OR_RETURN(int32_t chunk, pool_.acquire());
      absl::Status mapped = mapSlot(emptySlot, chunk);
      if (!mapped.ok()) {
        pool_.release(chunk);
        return mapped;
      }
      openSlots_.insert(emptySlot);
    }
    // The chunk now holds pages (one after this call).
    ++chunksInUse_;
    freeMappedPages_ += pagesPerChunk_;
  }
  int32_t i = *openSlots_.begin();
  SlotState &st = slots_[i];
  int32_t idx = st.freePages.back();
  st.freePages.pop_back();
  if (st.freePages.empty())
    openSlots_.erase(openSlots_.begin());
  ++st.used;
  --freeMappedPages_;
  ++pagesInUse_;
  return i * pagesPerChunk_ + idx;
}

void VirtualKvSpace::freePage(int32_t page) {
  int32_t slot = page / pagesPerChunk_;
  SlotState &st = slots_[slot];
  st.freePages.push_back(page % pagesPerChunk_);
  ++freeMappedPages_;
  --pagesInUse_;
  if (--st.used > 0) {
    openSlots_.insert(slot);
    return;
  }
  // Empty: no longer in use. Keep it mapped for the next page (of this
  // model, or of another once the pool takes it back), or unmap it now.
  openSlots_.erase(slot);
  freeMappedPages_ -= pagesPerChunk_;
  --chunksInUse_;
  if (pool_.keepFreedChunksMapped()) {
    cachedSlots_.insert(slot);
    pool_.cache(st.chunk, this, slot);
  } else {
    unmapSlot(slot);
  }
}

int64_t VirtualKvSpace::pagesFor(int64_t numTokens) const {
  if (numTokens <= 0)
    return 0;
  return int64_t(layers_.size()) *
         ((numTokens + tokensPerPage_ - 1) / tokensPerPage_);
}

absl::Status VirtualKvSpace::reserve(SequenceId seq, int64_t numTokens) {
  auto &tables = tables_[seq];
  tables.resize(layers_.size());
  int64_t perLayer = (numTokens + tokensPerPage_ - 1) / tokensPerPage_;
  int64_t need = 0;
  for (const auto &t : tables)
    need += std::max<int64_t>(0, perLayer - int64_t(t.size()));
  if (need == 0)
    return absl::OkStatus();
  int64_t room = int64_t(pool_.numFree()) * pagesPerChunk_ + freeMappedPages_;
  if (need > room)
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": KV pool exhausted: sequence ", seq, " needs ", need,
        " more pages for ", numTokens, " tokens but only ", room, " are free (",
        pool_.numFree(), " of ", pool_.numChunks(), " physical chunks of ",
        pagesPerChunk_, " pages)"));
  std::vector<std::pair<size_t, int32_t>> added;
  for (size_t l = 0; l < tables.size(); ++l) {
    while (int64_t(tables[l].size()) < perLayer) {
      absl::StatusOr<int32_t> page = allocPage();
      if (!page.ok()) {
        for (auto it = added.rbegin(); it != added.rend(); ++it) {
          tables[it->first].pop_back();
          freePage(it->second);
        }
        return page.status();
      }
      tables[l].push_back(*page);
      added.push_back({l, *page});
    }
  }
  return absl::OkStatus();
}

void VirtualKvSpace::release(SequenceId seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end())
    return;
  for (const auto &t : it->second)
    for (int32_t page : t)
      freePage(page);
  tables_.erase(it);
}

const std::vector<int32_t> &VirtualKvSpace::pageTable(SequenceId seq,
                                                      int layer) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(seq);
  if (it == tables_.end() || layer < 0 ||
      layer >= static_cast<int>(it->second.size()))
    return kEmpty;
  return it->second[layer];
}

cudak::KvCacheView VirtualKvSpace::layerView(int layer) const {
  cudak::KvCacheView v;
  v.base = reinterpret_cast<void *>(base_);
  v.pageStrideBytes = pageStride_;
  v.tokensPerPage = tokensPerPage_;
  v.numKvHeads = layers_[layer].numKvHeads;
  v.headDim = layers_[layer].headDim;
  v.dtype = dtype_;
  return v;
}

std::vector<int32_t> VirtualKvSpace::usedChunks() const {
  std::vector<int32_t> out;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].chunk >= 0 && slots_[i].used > 0)
      out.push_back(slots_[i].chunk);
  return out;
}

std::vector<int32_t> VirtualKvSpace::cachedChunks() const {
  std::vector<int32_t> out;
  for (int32_t slot : cachedSlots_)
    out.push_back(slots_[slot].chunk);
  return out;
}

int32_t VirtualKvSpace::chunkOfPage(int32_t page) const {
  if (page < 0 || page / pagesPerChunk_ >= int32_t(slots_.size()))
    return -1;
  return slots_[page / pagesPerChunk_].chunk;
}

} // namespace crosspool::runtime::cuda
