//===- Executor.h - CPU reference executor of a plan's streams --*- C++ -*-===//
//
// Runs a verified plan's per-pool instruction streams on the CPU fp32
// reference kernels. One persistent worker thread per stream (one per pool);
// the host posts one StepDescriptor per step and waits. Hidden states cross
// pools only through the plan's channels (InProcessChannel), whose message
// counters grow monotonically from construction: a Recv of step s waits for
// message s * per_step + seq.
//
// A worker error (a kernel rejecting its input, a bad id) closes every
// channel with that status, so the peer worker blocked in a Recv wakes up
// instead of hanging; the step returns the status and the executor stays
// failed (its channels are closed), i.e. every later step returns it too.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_EXEC_EXECUTOR_H
#define CROSSPOOL_RUNTIME_EXEC_EXECUTOR_H

#include "runtime/format/Plan_generated.h"
#include "runtime/pools/KvCache.h"
#include "runtime/transport/Channel.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crosspool::runtime {

/// What the host posts for one step: T token rows of one or more sequences.
struct StepDescriptor {
  /// Token id per row (T).
  std::vector<int32_t> tokenIds;
  /// Per row: index of its sequence into `kvPages[layer]` (T).
  std::vector<int32_t> rowSeq;
  /// Per row: position of the token in its sequence (T).
  std::vector<int32_t> rowPos;
  /// kvPages[layer][seq]: page start pointers of sequence `seq` in KV layer
  /// `layer`, in position order (layout of runtime/pools/KvCache.h).
  std::vector<std::vector<std::vector<float *>>> kvPages;
  /// Tokens held by one page, per KV layer.
  std::vector<int32_t> tokensPerPage;

  /// Fills kvPages / tokensPerPage from `kv` for the sequences `seqIds`
  /// (sequence index i of the step is KvCache sequence seqIds[i]). The
  /// sequences must already hold pages for every position used this step.
  void setKvPages(const KvCache &kv, const std::vector<int64_t> &seqIds);
};

class Executor {
public:
  /// `plan` must outlive the executor; it is checked again with
  /// checkPlanStreams. `weights[i]` is the fp32 data of plan weight i
  /// (numel(shape) floats, alive as long as the executor); none may be null.
  /// Rejects a plan with two streams for one pool. `name` prefixes errors.
  static absl::StatusOr<std::unique_ptr<Executor>>
  create(const plan::Plan &plan, std::vector<const float *> weights,
         std::string name = "model");
  /// Stops and joins the workers.
  ~Executor();
  Executor(const Executor &) = delete;
  Executor &operator=(const Executor &) = delete;

  /// Runs one step of every stream on `step` and copies the output (logits)
  /// slot, T x vocab floats, into `logits`. Returns the first worker error.
  absl::Status run(const StepDescriptor &step, std::vector<float> *logits);

  /// Steps completed so far (the `s` of the next step's Recv targets).
  uint64_t stepsDone() const { return stepCounter_; }
  int64_t vocabSize() const { return vocab_; }

private:
  struct Instr;
  struct Slot;
  Executor() = default;
  void workerLoop(size_t stream);
  absl::Status runStream(size_t stream, const StepDescriptor &step,
                         uint64_t stepIndex);
  absl::Status runTask(const Instr &in, const StepDescriptor &step, int64_t T);
  void closeChannels(const absl::Status &status);

  std::string name_;
  int64_t vocab_ = 0;
  int32_t inputSlot_ = -1, outputSlot_ = -1;
  int64_t numKvLayers_ = 0;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<int32_t> perStep_;
  std::vector<std::vector<Instr>> streams_;
  std::vector<std::unique_ptr<Slot>> slots_;

  // Host <-> worker hand-off.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const StepDescriptor *current_ = nullptr;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool stop_ = false;
  std::vector<absl::Status> workerStatus_;
  uint64_t stepCounter_ = 0;
  absl::Status failed_;
  std::vector<std::thread> workers_;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_EXEC_EXECUTOR_H
