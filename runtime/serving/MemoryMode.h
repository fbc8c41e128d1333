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
// The result is a set of quota groups in physical KV chunks (the pool's
// allocation grain, Backend.h: a 2 MiB chunk on CUDA holding pages of one
// model at a time; a page on the CPU): every model draws KV from one group
// and a group's chunks are shared by its models. The engine enforces the
// groups exactly at admission and growth; the Runtime's physical pool holds
// at least their sum.
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

/// Quota groups: the KV chunks a model holds count against
/// groupChunks[modelGroup[m]].
struct KvLayout {
  std::vector<int64_t> groupChunks;
  std::vector<std::string> groupNames;
  std::vector<int32_t> modelGroup;
  /// GPU holding the model's weights (kvcached / static), -1 in crosspool.
  std::vector<int32_t> modelGpu;

  int64_t totalChunks() const;
  /// One line per group: name, chunks, bytes (with chunkBytes > 0), models
  /// and, with pagesPerChunk (one per model), the pages each model would
  /// have if it held the whole group.
  std::string describe(const std::vector<ModelFootprint> &models,
                       size_t chunkBytes = 0,
                       const std::vector<int64_t> &pagesPerChunk = {}) const;
};

/// One group of `chunks` shared by `numModels` models (a plain shared pool).
KvLayout sharedLayout(int64_t chunks, int numModels);

/// The layout of `mode` in chunks of `chunkBytes` (memory left for KV is
/// rounded down to whole chunks). `demandShare` (optional, one per model, >= 0)
/// sizes static partitions. InvalidArgument when the weights do not fit
/// (naming the model or pool, bytes needed and available) or the spec is
/// bad (gpus < 1, kvGpus not in [1, gpus - 1] unless gpus == 1, memory 0).
absl::StatusOr<KvLayout>
planKvLayout(MemoryMode mode, const ClusterSpec &cluster,
             const std::vector<ModelFootprint> &models, size_t chunkBytes,
             const std::vector<double> &demandShare = {});

/// Chunks a model holding `pages` pages in `chunks` chunks holds after
/// `extraPages` more: its mapped chunks fill before another is taken, so
/// max(chunks, ceil((pages + extraPages) / pagesPerChunk)); `chunks` when
/// extraPages <= 0.
int64_t chunksAfterPages(int64_t chunks, int64_t pages, int64_t extraPages,
                         int64_t pagesPerChunk);

/// Physical KV chunks for a card with `freeBytes` free (after its weights
/// and workspaces) beside `existingChunks` already created: existing +
/// floor((freeBytes - reserveBytes) / chunkBytes). InvalidArgument (one line
/// with the numbers) when the reserve does not leave one chunk.
absl::StatusOr<int64_t> kvChunksForCard(size_t freeBytes, size_t reserveBytes,
                                        size_t chunkBytes,
                                        int64_t existingChunks);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_SERVING_MEMORYMODE_H
