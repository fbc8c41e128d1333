//===- CudaExecutor.h - A plan's streams on one GPU -------------*- C++ -*-===//
//
// Runs a verified plan's per-pool instruction streams with the CUDA kernels
// (kernels/cuda) on one device that holds both pools. Each pool has its own
// cuBLAS handle, workspace and activation slots. By default every pool is
// enqueued on one CUDA stream in the host walk's order, which respects the
// plan's channels, and a Recv slot shares the sent slot's buffer when
// neither is written twice in a step: the device-local hand-off costs
// nothing, and programmatic dependent launch chains across it. With a
// stream per pool (oneStreamEnabled false) the halves are ordered only by
// the channels: a Send records an event on the sender's stream, the matching
// Recv makes the receiver's stream wait on it (and copies the slot device to
// device unless it shares the buffer). The host never sees hidden states.
//
// Plan Add -> RmsNorm pairs (runtime::addRmsNormPairs) can run as one
// kernels::cuda::addRmsNorm launch, the same bits in one launch instead of
// two (fuseAddRmsNormEnabled; on by default, verified bit for bit on an
// H100 by CudaFusedAddNorm.SameBitsAsAddThenRmsNorm).
//
// The host walks the streams in plan order, switching to the other stream
// when it reaches a Recv whose Send it has not enqueued yet (the same
// simulation as the static stream check), so it only enqueues: one step is
// one burst of launches and one synchronization at the end. Steps of at most
// kGraphMaxRows rows (decode) are captured once per shape (rows, sequences,
// rows through the LM head, and a context bucket: the page-table width and
// attention tiling follow the longest context rounded up to a quarter of its
// power of two, so a growing batch does not re-capture every 16 tokens) into
// a CUDA graph and replayed with one launch; ids, positions, page tables and
// the LM head's rows live in a fixed device buffer refreshed before each
// launch. At most kMaxGraphs per executor, the least recently used evicted.
//
// Only the rows a step asks for (CudaStep::logitRows, e.g. the last row of
// each prefill chunk) go through the LM head: they are gathered before it,
// so a 2048-row prefill chunk computes and returns one row of logits, not
// 2048 x vocab floats. runGreedy's ids come from an argmax on the device.
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
  /// Rows whose logits are wanted, each in [0, T) (empty: every row).
  std::vector<int32_t> logitRows;
};

/// An executor's cumulative host-side step costs (BackendCounters' part).
struct ExecutorCounters {
  /// Plan Add -> RmsNorm pairs run as one launch, and Recv slots that are
  /// the sent slot's buffer (no copy), per step (fixed at create).
  int64_t addNormFolds = 0, zeroCopyRecvs = 0;
  int64_t steps = 0, graphLaunches = 0, graphCaptures = 0;
  double prepS = 0, launchS = 0, waitS = 0, copyS = 0, graphCaptureS = 0;
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
  /// Runs each plan Add that feeds the next instruction's RmsNorm
  /// (runtime::addRmsNormPairs) as one addRmsNorm launch: the same bits
  /// (addRmsNorm rounds h + delta to the storage type before the norm, as
  /// add then rmsNorm do), two launches fewer per layer. Read by create();
  /// on by default; CROSSPOOL_FUSE_ADD_NORM=0 (read once) or
  /// setFuseAddRmsNormEnabled(false) turns it off.
  static bool fuseAddRmsNormEnabled();
  static void setFuseAddRmsNormEnabled(bool on);
  /// Enqueues every pool's work on one CUDA stream, in the host walk's
  /// order (which respects the channels), instead of one stream per pool
  /// joined by events: a model's step is a chain (attention, hand-off, FFN,
  /// hand-off, ...) with nothing to overlap, and cross-stream edges cost
  /// a full kernel drain each and break programmatic dependent launch. Read
  /// by create(); on by default; CROSSPOOL_ONE_STREAM=0 (read once) or
  /// setOneStreamEnabled(false) restores a stream per pool.
  static bool oneStreamEnabled();
  static void setOneStreamEnabled(bool on);
  static constexpr int64_t kGraphMaxRows = 64;
  static constexpr size_t kMaxGraphs = 256;
  ~CudaExecutor();
  CudaExecutor(const CudaExecutor &) = delete;
  CudaExecutor &operator=(const CudaExecutor &) = delete;

  /// Runs one step and waits for it. With `logits`, copies the fp32 logits
  /// of step.logitRows (every row when empty), [rows, vocab], to the host.
  /// With `greedyIds`, writes instead the argmax of each of those rows
  /// (computed on the device; ties and NaN as kernels::cpu::argmax).
  absl::Status run(const CudaStep &step, std::vector<float> *logits,
                   std::vector<int32_t> *greedyIds = nullptr);
  /// Device logits of the last step ([rows of step.logitRows, vocab] fp32).
  const float *deviceLogits() const;
  const ExecutorCounters &counters() const { return counters_; }
  /// CUDA graphs held now.
  size_t graphsHeld() const { return graphs_.size(); }
  /// The longest context the graph of a step with longest context `ctx` is
  /// captured for (>= ctx; exposed for tests).
  static int32_t contextBucket(int32_t ctx);

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
                              int32_t maxPages, int64_t outRows);
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
  /// slotAlias_[s] >= 0: slot s is a Recv slot sharing that sent slot's
  /// buffer (set at create; no allocation, no copy).
  std::vector<int32_t> slotAlias_;
  bool oneStream_ = true;
  int64_t slotRows_ = 0;
  std::vector<int32_t> perStep_;
  std::vector<std::unique_ptr<Pool>> pools_; ///< one per stream
  /// Per step inputs: ids, rowSeq, rowPos, then page tables of every layer.
  int32_t *stagingHost_ = nullptr;
  int32_t *stagingDev_ = nullptr;
  size_t stagingInts_ = 0;
  int32_t maxPagesPerSeq_ = 0, numSeqs_ = 0;
  /// This step's decode rows (see cudak::AttendRows); set by run().
  kernels::cuda::AttendRows attendRows_;
  /// Rows through the LM head this step, and whether they are gathered
  /// (their row indices follow the page tables in the staging buffer).
  int64_t outRows_ = 0;
  bool gatherOut_ = false;
  /// The LM head reads only the rows it is asked for: set at create when the
  /// plan's one LmHead writes the output slot and nothing else touches it
  /// (otherwise every row goes through it and rows are picked at the copy).
  bool selectRows_ = false;
  int64_t lmHeadWidth_ = 0;
  /// Rows the output slot, the gather buffer and the ids hold.
  int64_t outCapacity_ = 0;
  void *gatherBuf_ = nullptr;
  int32_t *idsDev_ = nullptr, *idsHost_ = nullptr;
  ExecutorCounters counters_;
  int64_t useClock_ = 0;
  std::map<std::vector<int64_t>, int64_t> graphUse_;
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
