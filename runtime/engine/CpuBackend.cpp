//===- CpuBackend.cpp - The CPU fp32 reference backend --------------------===//
//
// Weights as fp32 host buffers in two WeightArenas, KV pages of every model
// from one PageAllocator (KvCache.h), steps on the CPU Executor.
//
//===----------------------------------------------------------------------===//
#include "runtime/engine/Backend.h"

#include "runtime/base/Status.h"
#include "runtime/engine/Runtime.h"
#include "runtime/exec/Executor.h"
#include "runtime/pools/KvCache.h"
#include "runtime/pools/PageAllocator.h"
#include "runtime/pools/WeightArena.h"

#include "absl/strings/str_cat.h"

namespace crosspool::runtime {

namespace fb = crosspool::plan;

namespace {

class CpuModel : public BackendModel {
public:
  CpuModel(std::unique_ptr<KvCache> kv, std::unique_ptr<Executor> executor)
      : kv_(std::move(kv)), executor_(std::move(executor)) {}

  absl::Status reserve(SequenceId seq, int64_t numTokens) override {
    return kv_->reserve(seq, numTokens);
  }
  void release(SequenceId seq) override { kv_->release(seq); }
  int64_t pagesInUse() const override { return kv_->pagesInUse(); }
  int64_t pagesFor(int64_t numTokens) const override {
    if (numTokens <= 0)
      return 0;
    int64_t pages = 0;
    for (int l = 0; l < kv_->numLayers(); ++l)
      pages += (numTokens + kv_->tokensPerPage(l) - 1) / kv_->tokensPerPage(l);
    return pages;
  }
  int64_t pagesHeld(SequenceId seq) const override {
    int64_t pages = 0;
    for (int l = 0; l < kv_->numLayers(); ++l)
      pages += kv_->pageTable(seq, l).size();
    return pages;
  }
  absl::Status run(const StepRows &rows, const std::vector<SequenceId> &seqs,
                   std::vector<float> *logits) override {
    StepDescriptor step;
    step.tokenIds = rows.tokenIds;
    step.rowSeq = rows.rowSeq;
    step.rowPos = rows.rowPos;
    step.setKvPages(*kv_, seqs);
    return executor_->run(step, logits);
  }

private:
  std::unique_ptr<KvCache> kv_;
  /// Declared last: destroyed (workers joined) before the KV cache.
  std::unique_ptr<Executor> executor_;
};

class CpuBackend : public Backend {
public:
  CpuBackend(std::unique_ptr<PageAllocator> pages,
             const RuntimeOptions &options)
      : pages_(std::move(pages)),
        kvArena_(options.kvPoolWeightBudget, "KV pool weights"),
        weightsArena_(options.weightsPoolWeightBudget,
                      "weights pool weights") {}

  absl::StatusOr<const void *> placeWeight(ModelId model, fb::Pool pool,
                                           const void *src, DType dtype,
                                           size_t numel) override {
    WeightArena &arena = pool == fb::Pool::KV ? kvArena_ : weightsArena_;
    CP_ASSIGN_OR_RETURN(const float *data,
                        arena.add(model, src, dtype, numel));
    return static_cast<const void *>(data);
  }
  absl::StatusOr<const void *>
  placeSyntheticWeight(ModelId model, fb::Pool pool,
                       const synthetic::TensorInit &init,
                       size_t numel) override {
    WeightArena &arena = pool == fb::Pool::KV ? kvArena_ : weightsArena_;
    CP_ASSIGN_OR_RETURN(const float *data,
                        arena.addSynthetic(model, init, numel));
    return static_cast<const void *>(data);
  }
  void unloadWeights(ModelId model) override {
    kvArena_.unload(model);
    weightsArena_.unload(model);
  }
  const PoolArena &arena(fb::Pool pool) const override {
    return pool == fb::Pool::KV ? kvArena_ : weightsArena_;
  }

  absl::StatusOr<std::unique_ptr<BackendModel>>
  createModel(ModelId, const fb::Plan &plan, std::vector<const void *> weights,
              const std::string &name) override {
    std::vector<KvLayerGeometry> layers;
    if (plan.kv_layers())
      for (const fb::KvLayer *l : *plan.kv_layers())
        layers.push_back({l->num_kv_heads(), l->head_dim()});
    CP_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv,
                        KvCache::create(*pages_, std::move(layers), name));
    std::vector<const float *> fp32;
    for (const void *w : weights)
      fp32.push_back(static_cast<const float *>(w));
    CP_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor,
                        Executor::create(plan, std::move(fp32), name));
    return std::unique_ptr<BackendModel>(
        new CpuModel(std::move(kv), std::move(executor)));
  }

  int64_t kvPagesTotal() const override { return pages_->numPages(); }
  size_t kvPageBytes() const override { return pages_->pageBytes(); }

private:
  std::unique_ptr<PageAllocator> pages_;
  WeightArena kvArena_, weightsArena_;
};

} // namespace

absl::StatusOr<std::unique_ptr<Backend>>
createCpuBackend(const RuntimeOptions &options) {
  if (options.precision != Precision::kFp32)
    return absl::InvalidArgumentError(
        "--precision bf16 needs --device cuda (the CPU backend is fp32)");
  CP_ASSIGN_OR_RETURN(
      std::unique_ptr<PageAllocator> pages,
      PageAllocator::create(options.kvPages, options.kvPageBytes));
  return std::unique_ptr<Backend>(new CpuBackend(std::move(pages), options));
}

} // namespace crosspool::runtime
