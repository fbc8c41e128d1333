//===- CudaBackend.cpp - The Runtime's backend on one GPU -----------------===//
#include "runtime/cuda/CudaBackend.h"

#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/cuda/CudaExecutor.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <limits>

namespace crosspool::runtime::cuda {

namespace fb = crosspool::plan;
namespace cudak = crosspool::kernels::cuda;

/// One model's KV space and executor, registered with its backend while
/// alive (for the pool-wide page accounting and the tests' views).
class CudaModel : public BackendModel {
public:
  CudaModel(CudaBackend &backend, ModelId id,
            std::unique_ptr<VirtualKvSpace> kv,
            std::unique_ptr<CudaExecutor> executor)
      : backend_(backend), id_(id), kv_(std::move(kv)),
        executor_(std::move(executor)) {
    backend_.models_[id_] = this;
  }
  ~CudaModel() override { backend_.models_.erase(id_); }

  absl::Status reserve(SequenceId seq, int64_t numTokens) override {
    return kv_->reserve(seq, numTokens);
  }
  void release(SequenceId seq) override { kv_->release(seq); }
  int64_t pagesInUse() const override { return kv_->pagesInUse(); }
  int64_t pagesFor(int64_t numTokens) const override {
    return numTokens <= 0 ? 0 : kv_->pagesFor(numTokens);
  }
  int64_t chunksInUse() const override { return kv_->chunksInUse(); }
  int64_t pagesPerChunk() const override { return kv_->pagesPerChunk(); }
  size_t pageBytes() const override { return size_t(kv_->pageStride()); }
  int64_t pagesHeld(SequenceId seq) const override {
    int64_t pages = 0;
    for (int l = 0; l < kv_->numLayers(); ++l)
      pages += kv_->pageTable(seq, l).size();
    return pages;
  }
  absl::Status run(const StepRows &rows, const std::vector<SequenceId> &seqs,
                   std::vector<float> *logits) override {
    return executor_->run(toCudaStep(rows, seqs), logits);
  }
  absl::Status runGreedy(const StepRows &rows,
                         const std::vector<SequenceId> &seqs,
                         std::vector<int32_t> *ids) override {
    return executor_->run(toCudaStep(rows, seqs), nullptr, ids);
  }

  const VirtualKvSpace &kv() const { return *kv_; }
  const CudaExecutor &executor() const { return *executor_; }

private:
  CudaStep toCudaStep(const StepRows &rows,
                      const std::vector<SequenceId> &seqs) const {
    CudaStep step;
    step.tokenIds = rows.tokenIds;
    step.rowSeq = rows.rowSeq;
    step.rowPos = rows.rowPos;
    step.logitRows = rows.logitRows;
    step.pageTables.assign(kv_->numLayers(), {});
    for (int l = 0; l < kv_->numLayers(); ++l)
      for (SequenceId s : seqs)
        step.pageTables[l].push_back(kv_->pageTable(s, l));
    return step;
  }

  CudaBackend &backend_;
  ModelId id_;
  std::unique_ptr<VirtualKvSpace> kv_;
  /// Declared last: destroyed (streams drained) before the KV space.
  std::unique_ptr<CudaExecutor> executor_;
};

bool cudaDeviceAvailable() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

absl::StatusOr<std::unique_ptr<CudaBackend>>
CudaBackend::create(const RuntimeOptions &options) {
  if (!cudaDeviceAvailable())
    return absl::FailedPreconditionError(
        "--device cuda: no CUDA device is available");
  if (options.tokensPerPage <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV tokens per page must be > 0 but got ", options.tokensPerPage));
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->dtype_ = options.precision == Precision::kBf16 ? cudak::DType::kBF16
                                                    : cudak::DType::kF32;
  b->tokensPerPage_ = options.tokensPerPage;
  b->roundWeightsToBf16_ = options.roundWeightsToBf16;
  b->useGraphs_ = options.useGraphs;
  CP_ASSIGN_OR_RETURN(
      b->chunks_,
      PhysicalChunkPool::create(options.cudaDevice, options.kvChunks,
                                options.kvChunkBytes, options.kvMaxChunks));
  b->device_ = options.cudaDevice;
  b->kvArena_ = std::make_unique<DeviceWeightArena>(options.kvPoolWeightBudget,
                                                    "KV pool weights");
  b->weightsArena_ = std::make_unique<DeviceWeightArena>(
      options.weightsPoolWeightBudget, "weights pool weights");
  return b;
}

CudaBackend::~CudaBackend() = default;

absl::StatusOr<const void *>
CudaBackend::placeWeight(ModelId model, fb::Pool pool, const void *src,
                         DType dtype, size_t numel) {
  CP_ASSIGN_OR_RETURN(void *data,
                      arenaFor(pool).upload(model, src, dtype, numel, dtype_,
                                            roundWeightsToBf16_));
  return static_cast<const void *>(data);
}

absl::StatusOr<const void *>
CudaBackend::placeSyntheticWeight(ModelId model, fb::Pool pool,
                                  const synthetic::TensorInit &init,
                                  size_t numel) {
  CP_ASSIGN_OR_RETURN(void *data,
                      arenaFor(pool).addSynthetic(model, init, numel, dtype_));
  return static_cast<const void *>(data);
}

absl::Status CudaBackend::reserveWeights(ModelId model, fb::Pool pool,
                                         size_t numel, size_t tensors) {
  return arenaFor(pool).reserve(
      model,
      DeviceWeightArena::bytesFor(numel * cudak::dtypeBytes(dtype_), tensors));
}

void CudaBackend::unloadWeights(ModelId model) {
  kvArena_->unload(model);
  weightsArena_->unload(model);
}

const PoolArena &CudaBackend::arena(fb::Pool pool) const {
  return pool == fb::Pool::KV ? *kvArena_ : *weightsArena_;
}

absl::StatusOr<std::unique_ptr<BackendModel>>
CudaBackend::createModel(ModelId model, const fb::Plan &plan,
                         std::vector<const void *> weights,
                         const std::string &name) {
  std::vector<KvLayerShape> layers;
  if (plan.kv_layers())
    for (const fb::KvLayer *l : *plan.kv_layers())
      layers.push_back({l->num_kv_heads(), l->head_dim()});
  CP_ASSIGN_OR_RETURN(
      std::unique_ptr<VirtualKvSpace> kv,
      VirtualKvSpace::create(*chunks_, layers, tokensPerPage_, dtype_, name));
  std::vector<cudak::KvCacheView> views;
  for (int l = 0; l < kv->numLayers(); ++l)
    views.push_back(kv->layerView(l));
  CP_ASSIGN_OR_RETURN(std::unique_ptr<CudaExecutor> executor,
                      CudaExecutor::create(plan, std::move(weights),
                                           std::move(views), dtype_, name,
                                           useGraphs_));
  return std::unique_ptr<BackendModel>(
      new CudaModel(*this, model, std::move(kv), std::move(executor)));
}

int64_t CudaBackend::kvPagesTotal() const {
  int64_t perChunk = 0;
  for (const auto &entry : models_) {
    int64_t p = entry.second->kv().pagesPerChunk();
    perChunk = perChunk == 0 ? p : std::min(perChunk, p);
  }
  return int64_t(chunks_->numChunks()) * perChunk;
}

size_t CudaBackend::kvPageBytes() const {
  int64_t stride = 0;
  for (const auto &entry : models_)
    stride = std::max(stride, entry.second->kv().pageStride());
  return size_t(stride);
}

absl::Status CudaBackend::growKvPool(int64_t chunks) {
  if (chunks > std::numeric_limits<int32_t>::max())
    return absl::InvalidArgumentError(
        absl::StrCat("KV pool: cannot grow to ", chunks, " chunks"));
  return chunks_->grow(static_cast<int32_t>(chunks));
}

absl::StatusOr<std::pair<size_t, size_t>> CudaBackend::deviceMemory() const {
  CP_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  size_t freeBytes = 0, totalBytes = 0;
  CP_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&freeBytes, &totalBytes));
  return std::make_pair(freeBytes, totalBytes);
}

const VirtualKvSpace *CudaBackend::kvSpace(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : &it->second->kv();
}

BackendCounters CudaBackend::counters() const {
  BackendCounters c;
  const KvPoolCounters &kv = chunks_->counters();
  c.kvMaps = kv.maps;
  c.kvUnmaps = kv.unmaps;
  c.kvMapS = kv.mapS;
  c.kvUnmapS = kv.unmapS;
  c.kvReuses = kv.reuses;
  c.kvReclaims = kv.reclaims;
  // Executors of unloaded models take their counts with them.
  for (const auto &entry : models_) {
    const ExecutorCounters &e = entry.second->executor().counters();
    c.steps += e.steps;
    c.prepS += e.prepS;
    c.launchS += e.launchS;
    c.waitS += e.waitS;
    c.copyS += e.copyS;
    c.graphLaunches += e.graphLaunches;
    c.graphCaptures += e.graphCaptures;
    c.graphCaptureS += e.graphCaptureS;
    c.addNormFolds += e.addNormFolds;
    c.zeroCopyRecvs += e.zeroCopyRecvs;
  }
  return c;
}

int64_t CudaBackend::graphLaunches() const {
  int64_t n = 0;
  for (const auto &entry : models_)
    n += entry.second->executor().graphLaunches();
  return n;
}

absl::StatusOr<std::unique_ptr<Backend>>
createCudaBackend(const RuntimeOptions &options) {
  CP_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b,
                      CudaBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

const CudaBackend *cudaBackendOf(const Runtime &rt) {
  return dynamic_cast<const CudaBackend *>(&rt.backend());
}

} // namespace crosspool::runtime::cuda
