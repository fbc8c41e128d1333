//===- CudaRuntime.h - Models, sequences and steps on one GPU ---*- C++ -*-===//
//
// The CUDA counterpart of runtime/engine/Runtime (same calls, same
// ModelInfo / GenerateOptions / GenerateResult), with both pools on one
// device, accounted separately:
//
// * weights pool: FFN/expert weights of every loaded model in one
//   DeviceWeightArena (per-model accounting, freed on unload);
// * KV pool: attention-side weights (embedding, norms, attention, lm_head) in
//   a second DeviceWeightArena, and the KV cache in a PhysicalChunkPool shared
//   by all models, each model with its own VirtualKvSpace (VmmKvPool.h).
//
// Weights come from the mmapped checkpoint converted to the precision mode
// (fp32: exact checks; bf16: bf16 storage, fp32 accumulation). Every step
// ends with a device synchronize, so releasing a sequence may unmap at once.
// Not thread-safe.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_CUDARUNTIME_H
#define CROSSPOOL_RUNTIME_CUDA_CUDARUNTIME_H

#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/DeviceWeightArena.h"
#include "runtime/cuda/VmmKvPool.h"
#include "runtime/engine/Runtime.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace crosspool::runtime::cuda {

struct CudaRuntimeOptions {
  int device = 0;
  kernels::cuda::DType precision = kernels::cuda::DType::kF32;
  /// Physical KV chunks of the shared pool, each kvChunkBytes (0 = the
  /// device's recommended allocation granularity, 2 MiB on H100).
  int32_t kvChunks = 64;
  size_t kvChunkBytes = 0;
  /// Tokens per KV page (the unit of the kernels' page tables).
  int32_t tokensPerPage = 16;
  /// fp32 mode only: weights rounded to bf16 values first. fp32 math on
  /// bf16 weights is the reference that separates weight rounding from
  /// activation rounding when judging bf16 mode.
  bool roundWeightsToBf16 = false;
  /// Replay decode-sized steps from captured CUDA graphs (CudaExecutor).
  bool useGraphs = true;
  /// Bytes allowed per pool's weight arena; 0 = unlimited.
  size_t kvPoolWeightBudget = 0;
  size_t weightsPoolWeightBudget = 0;
};

/// "fp32" / "bf16" -> DType; InvalidArgument otherwise.
absl::StatusOr<kernels::cuda::DType> parsePrecision(const std::string &text);

/// True when a CUDA device is usable.
bool cudaDeviceAvailable();

class CudaRuntime {
public:
  static absl::StatusOr<std::unique_ptr<CudaRuntime>>
  create(const CudaRuntimeOptions &options = {});
  ~CudaRuntime();
  CudaRuntime(const CudaRuntime &) = delete;
  CudaRuntime &operator=(const CudaRuntime &) = delete;

  /// As Runtime::loadModel; weights go to the device in the precision mode.
  absl::StatusOr<ModelId> loadModel(const std::string &planPath,
                                    const LoadOptions &options = {});
  absl::Status unloadModel(ModelId model);
  absl::StatusOr<const ModelInfo *> modelInfo(ModelId model) const;

  absl::StatusOr<SequenceId> startSequence(ModelId model);
  absl::StatusOr<std::vector<float>> prefill(SequenceId seq,
                                             const std::vector<int32_t> &ids);
  absl::StatusOr<std::vector<float>> decode(const std::vector<SequenceId> &seqs,
                                            const std::vector<int32_t> &ids);
  absl::Status release(SequenceId seq);
  absl::StatusOr<GenerateResult> generate(ModelId model,
                                          const std::vector<int32_t> &prompt,
                                          const GenerateOptions &options);

  /// KV accounting: pages of all models now, of one model; physical chunks.
  int64_t kvPagesInUse() const;
  int64_t kvPagesInUse(ModelId model) const;
  const PhysicalChunkPool &kvChunkPool() const { return *chunks_; }
  /// The model's KV space (nullptr for an unknown id): tests read chunk ids.
  const VirtualKvSpace *kvSpace(ModelId model) const;
  const DeviceWeightArena &kvPoolArena() const { return *kvArena_; }
  const DeviceWeightArena &weightsPoolArena() const { return *weightsArena_; }
  kernels::cuda::DType precision() const { return options_.precision; }
  /// Steps of all loaded models replayed from CUDA graphs.
  int64_t graphLaunches() const;

private:
  struct Model;
  struct Sequence {
    ModelId model;
    int64_t length = 0;
  };
  CudaRuntime() = default;
  absl::StatusOr<Model *> findModel(ModelId model) const;
  absl::Status checkIds(const Model &m, const std::vector<int32_t> &ids) const;
  absl::Status reserve(Model &m, SequenceId seq, int64_t numTokens);
  absl::StatusOr<std::vector<float>>
  runStep(Model &m, const std::vector<SequenceId> &seqs, CudaStep &step);

  CudaRuntimeOptions options_;
  std::unique_ptr<PhysicalChunkPool> chunks_;
  std::unique_ptr<DeviceWeightArena> kvArena_, weightsArena_;
  std::map<ModelId, std::unique_ptr<Model>> models_;
  std::map<SequenceId, Sequence> seqs_;
  ModelId nextModel_ = 0;
  SequenceId nextSeq_ = 0;
};

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_CUDARUNTIME_H
