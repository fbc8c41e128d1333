//===- CudaBackend.h - The Runtime's backend on one GPU ---------*- C++ -*-===//
//
// Both pools on one device, accounted separately:
//
// * weights pool: FFN/expert weights of every loaded model in one
//   DeviceWeightArena (per-model accounting, freed on unload);
// * KV pool: attention-side weights (embedding, norms, attention, lm_head) in
//   a second DeviceWeightArena, and the KV cache in a PhysicalChunkPool shared
//   by all models, each model with its own VirtualKvSpace (VmmKvPool.h).
//
// Weights come from the mmapped checkpoint converted to the precision mode
// (fp32: exact checks; bf16: bf16 storage, fp32 accumulation), or are
// generated on the device when synthetic. Every step ends with a device
// synchronize, so the KV pool may unmap a chunk between steps. KV pages are the
// kernels' pages (tokensPerPage tokens of one layer); a model's pages per
// physical chunk follow its geometry. Not thread-safe.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_CUDABACKEND_H
#define CROSSPOOL_RUNTIME_CUDA_CUDABACKEND_H

#include "runtime/cuda/DeviceWeightArena.h"
#include "runtime/cuda/VmmKvPool.h"
#include "runtime/engine/Backend.h"
#include "runtime/engine/Runtime.h"

#include "absl/status/statusor.h"

#include <map>
#include <memory>

namespace crosspool::runtime::cuda {

/// True when a CUDA device is usable.
bool cudaDeviceAvailable();

class CudaModel;

class CudaBackend : public Backend {
public:
  /// FailedPrecondition without a device; InvalidArgument for a bad KV
  /// geometry.
  static absl::StatusOr<std::unique_ptr<CudaBackend>>
  create(const RuntimeOptions &options);
  ~CudaBackend() override;

  absl::StatusOr<const void *> placeWeight(ModelId model, plan::Pool pool,
                                           const void *src, DType dtype,
                                           size_t numel) override;
  absl::StatusOr<const void *>
  placeSyntheticWeight(ModelId model, plan::Pool pool,
                       const synthetic::TensorInit &init,
                       size_t numel) override;
  absl::Status reserveWeights(ModelId model, plan::Pool pool, size_t numel,
                              size_t tensors) override;
  void unloadWeights(ModelId model) override;
  const PoolArena &arena(plan::Pool pool) const override;
  absl::StatusOr<std::unique_ptr<BackendModel>>
  createModel(ModelId model, const plan::Plan &plan,
              std::vector<const void *> weights,
              const std::string &name) override;
  /// Chunks x pages per chunk of the loaded model with the largest pages
  /// (0 with no model loaded).
  int64_t kvPagesTotal() const override;
  /// The largest page stride of the loaded models (0 with none).
  size_t kvPageBytes() const override;
  int64_t kvChunksTotal() const override { return chunks_->numChunks(); }
  size_t kvChunkBytes() const override { return chunks_->chunkBytes(); }
  /// Creates chunks up to `chunks` (RuntimeOptions::kvMaxChunks bounds it).
  absl::Status growKvPool(int64_t chunks) override;
  /// cudaMemGetInfo of the backend's device.
  absl::StatusOr<std::pair<size_t, size_t>> deviceMemory() const override;

  const PhysicalChunkPool &kvChunkPool() const { return *chunks_; }
  /// The model's KV space (nullptr for an unknown id): tests read chunk ids.
  const VirtualKvSpace *kvSpace(ModelId model) const;
  kernels::cuda::DType dtype() const { return dtype_; }
  /// Steps of all loaded models replayed from CUDA graphs.
  int64_t graphLaunches() const;
  /// The KV pool's driver calls and the loaded models' executor costs.
  BackendCounters counters() const override;

private:
  friend class CudaModel;
  CudaBackend() = default;
  DeviceWeightArena &arenaFor(plan::Pool pool) {
    return pool == plan::Pool::KV ? *kvArena_ : *weightsArena_;
  }

  kernels::cuda::DType dtype_ = kernels::cuda::DType::kF32;
  int device_ = 0;
  int32_t tokensPerPage_ = 16;
  bool roundWeightsToBf16_ = false;
  bool useGraphs_ = true;
  std::unique_ptr<PhysicalChunkPool> chunks_;
  std::unique_ptr<DeviceWeightArena> kvArena_, weightsArena_;
  /// Live models (registered by CudaModel for its lifetime).
  std::map<ModelId, const CudaModel *> models_;
};

/// createCpuBackend's CUDA counterpart (Runtime::create with Device::kCuda).
absl::StatusOr<std::unique_ptr<Backend>>
createCudaBackend(const RuntimeOptions &options);

/// The CUDA backend of `rt`, or nullptr when it runs on another device.
const CudaBackend *cudaBackendOf(const Runtime &rt);

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_CUDABACKEND_H
