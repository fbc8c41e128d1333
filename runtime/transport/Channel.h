//===- Channel.h - Hidden-state channels between pools ----------*- C++ -*-===//
//
// A one-way link carrying hidden states (rows x width fp32) from one pool's
// stream to another's. Messages are numbered 1, 2, 3, ... from the channel's
// creation and never renumbered: a Recv of step s waits for message
// s * per_step + seq (docs/plan-format.md), so the counter is the only
// synchronization the two streams share.
//
// Design note: InProcessChannel (below) serves the CPU backend, where both
// pool workers are threads of one process. A device-local hand-off (both
// pools on one GPU: a counter in device memory, no copy) and an NCCL /
// CUDA-peer-copy channel between GPUs implement this same interface, so the
// executors do not know which one they talk to.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_TRANSPORT_CHANNEL_H
#define CROSSPOOL_RUNTIME_TRANSPORT_CHANNEL_H

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace crosspool::runtime {

class Channel {
public:
  virtual ~Channel() = default;

  /// Enqueues `rows` x `width` floats as the next message. InvalidArgument
  /// when `width` differs from the channel's; the close() reason once closed.
  virtual absl::Status send(const float *data, int64_t rows, int64_t width) = 0;
  /// Blocks until `sent() >= target`, then moves message number `target`
  /// into `out` (rows x width floats) and its row count into `rows`.
  /// Messages are consumed in order: `target` must be the next unconsumed
  /// message (FailedPrecondition otherwise, without blocking). Returns the
  /// close() reason if the channel is closed before or while waiting.
  virtual absl::Status recv(uint64_t target, std::vector<float> *out,
                            int64_t *rows) = 0;
  /// Messages sent so far (monotonic, never reset).
  virtual uint64_t sent() const = 0;
  /// Fails the channel: blocked and later send/recv calls return `reason`,
  /// so a failed worker never leaves its peer hanging. The first reason wins.
  virtual void close(absl::Status reason) = 0;

  /// Floats per row.
  virtual int64_t width() const = 0;
};

/// Mutex + condition variable + deque; both ends in one process.
class InProcessChannel : public Channel {
public:
  /// `name` (e.g. "channel 0 (KV->Weights)") prefixes error messages.
  explicit InProcessChannel(int64_t width, std::string name = "channel");

  absl::Status send(const float *data, int64_t rows, int64_t width) override;
  absl::Status recv(uint64_t target, std::vector<float> *out,
                    int64_t *rows) override;
  uint64_t sent() const override;
  void close(absl::Status reason) override;
  int64_t width() const override { return width_; }

private:
  struct Message {
    std::vector<float> data;
    int64_t rows;
  };
  const int64_t width_;
  const std::string name_;
  mutable absl::Mutex mutex_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mutex_);
  uint64_t sent_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t consumed_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Status closed_ ABSL_GUARDED_BY(mutex_);
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_TRANSPORT_CHANNEL_H
