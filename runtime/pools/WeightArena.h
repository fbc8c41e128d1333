//===- WeightArena.h - fp32 weight storage of one weights GPU --*- C++ -*-===//
//
// Holds the converted (fp32) weights of every model placed on one device of
// a pool, with per-model accounting so a cold model can be unloaded and its
// bytes counted against the pool budget. The CPU backend keeps host buffers;
// a CUDA arena implements the same contract with device memory.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_POOLS_WEIGHTARENA_H
#define CROSSPOOL_RUNTIME_POOLS_WEIGHTARENA_H

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/SyntheticInit.h"
#include "runtime/pools/PoolArena.h"

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crosspool::runtime {

class WeightArena : public PoolArena {
public:
  /// `budgetBytes` == 0: unlimited. `name` (e.g. "weights pool") prefixes
  /// error messages.
  explicit WeightArena(size_t budgetBytes = 0, std::string name = "arena");
  WeightArena(const WeightArena &) = delete;
  WeightArena &operator=(const WeightArena &) = delete;

  /// Copies `numElements` of `dtype` (F32/F16/BF16) from `src` into a new fp32
  /// buffer owned by `modelId`; the pointer stays valid until unload(modelId).
  /// ResourceExhausted when it would exceed the budget (nothing is added),
  /// InvalidArgument for another dtype or a null source.
  absl::StatusOr<const float *> add(int modelId, const void *src, DType dtype,
                                    size_t numElements);
  /// `numElements` fp32 values of synthetic tensor `init` (SyntheticInit.h,
  /// the generator shared with the GPU arena) in a new buffer owned by
  /// `modelId`. Same budget and errors as add().
  absl::StatusOr<const float *> addSynthetic(int modelId,
                                             const synthetic::TensorInit &init,
                                             size_t numElements);
  /// Frees every buffer of `modelId`.
  void unload(int modelId);

  /// fp32 bytes held for `modelId` (0 when unknown).
  size_t bytesUsed(int modelId) const override;
  size_t totalBytes() const override;
  size_t budgetBytes() const { return budgetBytes_; }

private:
  /// Charges the budget and allocates `numElements` floats for `modelId`.
  absl::StatusOr<float *> reserve(int modelId, size_t numElements);

  const size_t budgetBytes_;
  const std::string name_;
  mutable absl::Mutex mutex_;
  struct Model {
    std::vector<std::unique_ptr<float[]>> buffers;
    size_t bytes = 0;
  };
  std::map<int, Model> models_ ABSL_GUARDED_BY(mutex_);
  size_t totalBytes_ ABSL_GUARDED_BY(mutex_) = 0;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_POOLS_WEIGHTARENA_H
