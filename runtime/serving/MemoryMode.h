//===- MemoryMode.h - KV budgets of the three memory modes ----*- C++ -*-===//
//
// The three memory designs compared by the serving benchmark, as KV page
// budgets over simulated GPUs of `gpuMemoryBytes` each (same kernels, same
// scheduler; only what a model's KV may use differs):
//
//   crosspool  `kvGpus` GPUs form the KV pool: they hold the attention-side
//              weights of every model and ONE KV page budget shared by all
//              models; the other GPUs (the weights pool) hold every FFN /
//              expert weight and no KV. With one GPU both pools share it.
//   kvcached   each model's whole weights live on one GPU (largest first onto
//              the GPU with the most free memory); the memory left on a GPU
//              is an elastic KV budget shared by the models placed there.
//   static     the kvcached placement, but the memory left on a GPU is cut
//              at start into fixed per-model partitions (by `demandShare`,
//              equal when none is given).
//
// The result is a set of quota groups: every model draws KV pages from one
// group and a group's pages are shared by its models. The engine enforces the
// groups at admission and growth; the Runtime's physical pool is sized to
// their sum.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_SERVING_MEMORYMODE_H
#define CROSSPOOL_RUNTIME_SERVING_MEMORYMODE_H

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::runtime {

enum class MemoryMode { CrossPool, KvCached, Static };

const char *memoryModeName(MemoryMode mode);
/// "crosspool" | "kvcached" | "static"; InvalidArgument otherwise.
absl::StatusOr<MemoryMode> parseMemoryMode(absl::string_view text);

struct ClusterSpec {
  int32_t gpus = 2;
  size_t gpuMemoryBytes = 0;
  /// crosspool only: GPUs of the KV pool (the rest are the weights pool).
  int32_t kvGpus = 1;
};

/// Bytes of one model's weights on each side of the attention / FFN cut.
struct ModelFootprint {
  std::string name;
  size_t attentionWeightBytes = 0;
  size_t ffnWeightBytes = 0;
};

/// Quota groups: a model's KV pages count against groupPages[modelGroup[m]].
struct KvLayout {
  std::vector<int64_t> groupPages;
  std::vector<std::string> groupNames;
  std::vector<int32_t> modelGroup;
  /// GPU holding the model's weights (kvcached / static), -1 in crosspool.
  std::vector<int32_t> modelGpu;

  int64_t totalPages() const;
  /// One line per group: name, pages, models.
  std::string describe(const std::vector<ModelFootprint> &models) const;
};

/// One group of `pages` shared by `numModels` models (a plain shared pool).
KvLayout sharedLayout(int64_t pages, int numModels);

/// The layout of `mode`. `demandShare` (optional, one per model, >= 0)
/// sizes static partitions. InvalidArgument when the weights do not fit
/// (naming the model or pool, bytes needed and available) or the spec is
/// bad (gpus < 1, kvGpus not in [1, gpus - 1] unless gpus == 1, memory 0).
absl::StatusOr<KvLayout>
planKvLayout(MemoryMode mode, const ClusterSpec &cluster,
             const std::vector<ModelFootprint> &models, size_t pageBytes,
             const std::vector<double> &demandShare = {});

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_MEMORYMODE_H
