//===- Channel.cpp - Hidden-state channels between pools ------------------===//
#include "runtime/transport/Channel.h"

#include "absl/strings/str_cat.h"

namespace crosspool::runtime {

InProcessChannel::InProcessChannel(int64_t width, std::string name)
    : width_(width), name_(std::move(name)) {}

absl::Status InProcessChannel::send(const float *data, int64_t rows,
                                    int64_t width) {
  if (width != width_)
    return absl::InvalidArgumentError(absl::StrCat(
        name_, ": send expects width ", width_, " but got ", width));
  if (rows < 0 || (rows > 0 && !data))
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": send of ", rows, " rows from ",
                     data ? "valid" : "null", " data"));
  // Copy outside the lock: the receiver may be popping concurrently.
  Message message{std::vector<float>(data, data + rows * width), rows};
  absl::MutexLock lock(&mutex_);
  if (!closed_.ok())
    return closed_;
  queue_.push_back(std::move(message));
  ++sent_;
  return absl::OkStatus();
}

absl::Status InProcessChannel::recv(uint64_t target, std::vector<float> *out,
                                    int64_t *rows) {
  absl::MutexLock lock(&mutex_);
  if (!closed_.ok())
    return closed_;
  if (target != consumed_ + 1)
    return absl::FailedPreconditionError(
        absl::StrCat(name_, ": recv of message ", target,
                     " but the next unconsumed message is ", consumed_ + 1));
  auto ready = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return sent_ >= target || !closed_.ok();
  };
  mutex_.Await(absl::Condition(&ready));
  if (!closed_.ok())
    return closed_;
  Message &front = queue_.front();
  *out = std::move(front.data);
  *rows = front.rows;
  queue_.pop_front();
  ++consumed_;
  return absl::OkStatus();
}

uint64_t InProcessChannel::sent() const {
  absl::MutexLock lock(&mutex_);
  return sent_;
}

void InProcessChannel::close(absl::Status reason) {
  if (reason.ok())
    reason = absl::CancelledError(absl::StrCat(name_, ": closed"));
  absl::MutexLock lock(&mutex_);
  if (closed_.ok())
    closed_ = std::move(reason);
}

} // namespace crosspool::runtime
