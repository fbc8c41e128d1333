//===- CudaExecutor.h - A plan's streams on one GPU -------------*- C++ -*-===//
//
// Runs a verified plan's per-pool instruction streams with the CUDA kernels
// (kernels/cuda) on one device that holds both pools. Each pool has its own
// CUDA stream, cuBLAS handle, workspace and activation slots, so the two
// halves are ordered only by the plan's channels: a Send records an event on
// the sender's stream, the matching Recv makes the receiver's stream wait on
// it and copies the slot device to device (the device-local hand-off; the
// host never sees hidden states).
//
// The host walks the streams in plan order, switching to the other stream
// when it reaches a Recv whose Send it has not enqueued yet (the same
// simulation as the static stream check), so it only enqueues: one step is
// one burst of launches and one synchronization at the end. Steps of at most
// kGraphMaxRows rows (decode) are captured once per shape (rows, page-table
// size, attention tiling) into a CUDA graph and replayed with one launch;
// ids, positions and page tables live in a fixed device buffer that is
// refreshed before each launch.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_CUDAEXECUTOR_H
#define CROSSPOOL_RUNTIME_CUDA_CUDAEXECUTOR_H

#include "kernels/cuda/Kernels.h"
#include "runtime/format/Plan_generated.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crosspool::runtime::cuda {

/// One step as the host describes it.
struct CudaStep {
  std::vector<int32_t> tokenIds, rowSeq, rowPos;
  /// pageTables[layer][seq]: page ids of sequence `seq` (index of the step)
  /// in KV layer `layer`, in position order.
  std::vector<std::vector<std::vector<int32_t>>> pageTables;
};

class CudaExecutor {
public:
  /// `weights[i]`: device data of plan weight i in `dt` storage. `kvLayers`:
  /// the view of each KV layer (base, stride, geometry; page tables come per
  /// step). `plan` must outlive the executor.
  static absl::StatusOr<std::unique_ptr<CudaExecutor>>
  create(const plan::Plan &plan, std::vector<const void *> weights,
         std::vector<kernels::cuda::KvCacheView> kvLayers,
         kernels::cuda::DType dt, std::string name = "model",
         bool useGraphs = true);
  static constexpr int64_t kGraphMaxRows = 64;
  static constexpr size_t kMaxGraphs = 32;
  ~CudaExecutor();
  CudaExecutor(const CudaExecutor &) = delete;
  CudaExecutor &operator=(const CudaExecutor &) = delete;

  /// Runs one step and waits for it. With `logits`, copies the T x vocab fp32
  /// logits to the host.
  absl::Status run(const CudaStep &step, std::vector<float> *logits);
  /// Device logits of the last step ([T, vocab] fp32).
  const float *deviceLogits() const;

  int64_t vocabSize() const { return vocab_; }
  /// Device bytes of activations, workspaces and staging now held.
  size_t scratchBytes() const;
  /// Steps run by replaying a captured CUDA graph.
  int64_t graphLaunches() const { return graphLaunches_; }

private:
  struct Instr;
  struct Pool;
  CudaExecutor() = default;
  absl::Status checkStep(const CudaStep &step) const;
  absl::Status ensureCapacity(int64_t T, int32_t maxContext, int32_t numSeqs,
                              int32_t maxPages);
  absl::Status runTask(const Instr &in, Pool &pool, int64_t T,
                       int32_t maxContext);
  /// Enqueues one step on the pools' streams (fork after the inputs, join
  /// into the first stream at the end), without synchronizing.
  absl::Status enqueueStep(int64_t T, int32_t maxContext);
  absl::StatusOr<cudaGraphExec_t> graphFor(int64_t T, int32_t maxContext);
  void dropGraphs();

  std::string name_;
  kernels::cuda::DType dt_ = kernels::cuda::DType::kF32;
  int64_t vocab_ = 0;
  int32_t inputSlot_ = -1, outputSlot_ = -1;
  int32_t numSms_ = 132;
  std::vector<kernels::cuda::KvCacheView> kv_;
  std::vector<int64_t> slotWidth_;
  std::vector<int> slotPool_;
  std::vector<int> slotKind_;
  std::vector<void *> slotPtr_;
  int64_t slotRows_ = 0;
  std::vector<int32_t> perStep_;
  std::vector<std::unique_ptr<Pool>> pools_; ///< one per stream
  /// Per step inputs: ids, rowSeq, rowPos, then page tables of every layer.
  int32_t *stagingHost_ = nullptr;
  int32_t *stagingDev_ = nullptr;
  size_t stagingInts_ = 0;
  int32_t maxPagesPerSeq_ = 0, numSeqs_ = 0;
  /// Device expert pointer tables of the Moe tasks.
  std::vector<void *> expertTables_;
  std::vector<cudaEvent_t> events_;
  std::vector<int32_t> eventBase_; ///< first event of each channel
  bool useGraphs_ = true;
  std::map<std::vector<int64_t>, cudaGraphExec_t> graphs_;
  int64_t graphLaunches_ = 0;
};

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_CUDAEXECUTOR_H
