//===- Backend.h - What a device backend does for the Runtime ---*- C++ -*-===//
//
// The Runtime (Runtime.h) keeps every piece of bookkeeping once: plans,
// checkpoints, models, sequences, id and length checks, KV peak accounting,
// generation. A Backend does what differs per device:
//
// * places each plan weight in its pool's arena (host fp32 on the CPU;
//   device memory in the precision mode on CUDA), per model;
// * builds a model's KV storage and executor (BackendModel): the CPU's
//   KvCache over one shared PageAllocator, CUDA's VirtualKvSpace over one
//   shared PhysicalChunkPool;
// * runs one step of token rows to logits.
//
// KV pages are the pages the backend's kernels see: the CPU's fixed-size
// pages; on CUDA a model's pages of tokensPerPage tokens (several per
// physical chunk). KV chunks are the shared pool's physical allocation
// grain: a CUDA chunk (2 MiB on Hopper) holds pages of ONE model at a time;
// on the CPU a chunk is one page. A scheduler that must not exhaust the pool
// counts chunks (BackendModel::chunksInUse, pagesPerChunk).
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_ENGINE_BACKEND_H
#define CROSSPOOL_RUNTIME_ENGINE_BACKEND_H

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/Plan_generated.h"
#include "runtime/format/SyntheticInit.h"
#include "runtime/pools/PoolArena.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace crosspool::runtime {

using ModelId = int;
using SequenceId = int64_t;
struct RuntimeOptions;

/// The token rows of one step. Row r appends tokenIds[r] at position
/// rowPos[r] to the step's sequence rowSeq[r] (an index into the sequence
/// list passed with the rows).
struct StepRows {
  std::vector<int32_t> tokenIds, rowSeq, rowPos;
  /// Rows whose logits the caller needs, ascending (empty: every row). A
  /// backend may honour it (CUDA: only these rows go through the LM head and
  /// to the host) or ignore it and write every row (CPU); Runtime::step
  /// accepts both.
  std::vector<int32_t> logitRows;
};

/// Cumulative host-side costs of a backend since it was created (zeros where
/// a backend does not measure them). Tools take differences around a step.
struct BackendCounters {
  /// KV chunks mapped into / unmapped from a model's range, and the wall
  /// time of those driver calls (cuMemMap + cuMemSetAccess, cuMemUnmap).
  int64_t kvMaps = 0, kvUnmaps = 0;
  double kvMapS = 0, kvUnmapS = 0;
  /// Emptied chunks a model took again without mapping (still mapped), and
  /// ones the pool took back from a model to give to another.
  int64_t kvReuses = 0, kvReclaims = 0;
  /// Executor steps and their wall time split: host preparation (checks,
  /// page tables, staging), launching (kernels enqueued or a graph launched,
  /// including graph captures), waiting for the device in the final
  /// synchronize, copying logits or ids to the host.
  int64_t steps = 0;
  double prepS = 0, launchS = 0, waitS = 0, copyS = 0;
  int64_t graphLaunches = 0, graphCaptures = 0;
  double graphCaptureS = 0;
  /// Plan Add -> RmsNorm pairs the loaded models' executors run as one
  /// launch each, and channel messages handed off without a copy (per step).
  int64_t addNormFolds = 0, zeroCopyRecvs = 0;
};

/// One loaded model on a backend: its KV storage and its executor.
class BackendModel {
public:
  virtual ~BackendModel() = default;
  /// Grows `seq` (created on first use) to numTokens positions in every KV
  /// layer. All or nothing; ResourceExhausted when the shared pool is out.
  virtual absl::Status reserve(SequenceId seq, int64_t numTokens) = 0;
  /// Returns the sequence's pages to the shared pool.
  virtual void release(SequenceId seq) = 0;
  /// KV pages the model holds now.
  virtual int64_t pagesInUse() const = 0;
  /// KV pages a sequence of numTokens tokens occupies over all layers.
  virtual int64_t pagesFor(int64_t numTokens) const = 0;
  /// KV pages `seq` holds now (0 when unknown).
  virtual int64_t pagesHeld(SequenceId seq) const = 0;
  /// Physical chunks of the shared pool the model holds now. The pool fills
  /// a model's mapped chunks before it takes another and frees a chunk with
  /// its last page, so a model holding P pages in C chunks needs
  /// max(C, ceil((P + k) / pagesPerChunk())) chunks after k more pages.
  /// CPU: one page per chunk.
  virtual int64_t chunksInUse() const { return pagesInUse(); }
  virtual int64_t pagesPerChunk() const { return 1; }
  /// Bytes of one of the model's pages (0: the pool's kvPageBytes()).
  virtual size_t pageBytes() const { return 0; }
  /// Runs one step; `seqs` hold pages for every position of `rows`.
  /// Writes [rows, vocab] fp32 logits.
  virtual absl::Status run(const StepRows &rows,
                           const std::vector<SequenceId> &seqs,
                           std::vector<float> *logits) = 0;
  /// Runs one step and writes the greedy id (kernels::cpu::argmax of the
  /// row's logits) of every row in rows.logitRows, computed where the logits
  /// are, so only ids reach the host. Unimplemented (before running
  /// anything): the Runtime uses run() and takes the argmax on the host.
  virtual absl::Status runGreedy(const StepRows &rows,
                                 const std::vector<SequenceId> &seqs,
                                 std::vector<int32_t> *ids) {
    return absl::UnimplementedError("no device-side greedy step");
  }
};

class Backend {
public:
  virtual ~Backend() = default;

  /// Places one weight of `model` (numel values of dtype at src, host
  /// memory) in `pool`; returns the pointer the executor reads, valid until
  /// unloadWeights(model). ResourceExhausted past the pool's budget.
  virtual absl::StatusOr<const void *> placeWeight(ModelId model,
                                                   plan::Pool pool,
                                                   const void *src, DType dtype,
                                                   size_t numel) = 0;
  /// Places numel values of synthetic tensor `init` (SyntheticInit.h), made
  /// by the generator every backend shares; otherwise as placeWeight.
  virtual absl::StatusOr<const void *>
  placeSyntheticWeight(ModelId model, plan::Pool pool,
                       const synthetic::TensorInit &init, size_t numel) = 0;
  /// Before the first placement: `model` will place `tensors` weights of
  /// `numel` values in all into `pool`, so a backend can hold them in one
  /// allocation. A hint; placements beyond it still work.
  virtual absl::Status reserveWeights(ModelId model, plan::Pool pool,
                                      size_t numel, size_t tensors) {
    (void)model, (void)pool, (void)numel, (void)tensors;
    return absl::OkStatus();
  }
  /// Frees every weight of `model` in both pools.
  virtual void unloadWeights(ModelId model) = 0;
  virtual const PoolArena &arena(plan::Pool pool) const = 0;

  /// KV storage and executor of `model`; weights[i] is placeWeight's
  /// pointer for plan weight i. `plan` outlives the result.
  virtual absl::StatusOr<std::unique_ptr<BackendModel>>
  createModel(ModelId model, const plan::Plan &plan,
              std::vector<const void *> weights, const std::string &name) = 0;

  /// Pages of the shared KV pool, and the bytes of one.
  virtual int64_t kvPagesTotal() const = 0;
  virtual size_t kvPageBytes() const = 0;
  /// Physical chunks of the shared KV pool and the bytes of one (CPU: its
  /// pages).
  virtual int64_t kvChunksTotal() const { return kvPagesTotal(); }
  virtual size_t kvChunkBytes() const { return kvPageBytes(); }
  /// Grows the KV pool to `chunks` physical chunks (never shrinks); lets a
  /// tool size the pool from the memory left after loading its models.
  /// Unimplemented where the pool is fixed at creation (CPU).
  virtual absl::Status growKvPool(int64_t chunks) {
    return absl::UnimplementedError(
        "this backend's KV pool is fixed at creation (set its size in "
        "RuntimeOptions)");
  }
  /// Free and total bytes of the device (Unimplemented on the CPU).
  virtual absl::StatusOr<std::pair<size_t, size_t>> deviceMemory() const {
    return absl::UnimplementedError("this backend has no device memory");
  }
  /// Cumulative costs (BackendCounters); all zero on the CPU.
  virtual BackendCounters counters() const { return {}; }
};

/// The CPU fp32 reference backend (KvCache pages over one PageAllocator,
/// Executor). InvalidArgument for a bad KV geometry or a precision other
/// than fp32.
absl::StatusOr<std::unique_ptr<Backend>>
createCpuBackend(const RuntimeOptions &options);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_ENGINE_BACKEND_H
