//===- WeightArena.cpp - fp32 weight storage of one weights GPU -----------===//
#include "runtime/pools/WeightArena.h"

#include "absl/strings/str_cat.h"

#include <limits>
#include <new>

namespace crosspool::runtime {

WeightArena::WeightArena(size_t budgetBytes, std::string name)
    : budgetBytes_(budgetBytes), name_(std::move(name)) {}

absl::StatusOr<const float *> WeightArena::add(int modelId, const void *src,
                                               DType dtype,
                                               size_t numElements) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16)
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": model ", modelId, ": cannot load ",
                     dtypeName(dtype), " weights (expects F32, F16 or BF16)"));
  if (!src && numElements > 0)
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": model ", modelId, ": null weight source"));
  if (numElements > std::numeric_limits<size_t>::max() / sizeof(float))
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": model ", modelId, ": ", numElements, " elements overflow"));
  size_t bytes = numElements * sizeof(float);
  {
    // Charge the budget before converting so concurrent adds cannot overshoot.
    absl::MutexLock lock(&mutex_);
    if (budgetBytes_ != 0 && bytes > budgetBytes_ - totalBytes_)
      return absl::ResourceExhaustedError(
          absl::StrCat(name_, " exhausted: model ", modelId, " needs ", bytes,
                       " more bytes but ", totalBytes_, " of the budget of ",
                       budgetBytes_, " bytes are in use"));
    totalBytes_ += bytes;
    models_[modelId].bytes += bytes;
  }
  std::unique_ptr<float[]> buffer(new (std::nothrow) float[numElements]);
  if (!buffer && numElements > 0) {
    absl::MutexLock lock(&mutex_);
    totalBytes_ -= bytes;
    models_[modelId].bytes -= bytes;
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": model ", modelId, ": cannot allocate ", bytes, " bytes"));
  }
  if (numElements > 0)
    convertToF32(dtype, src, numElements, buffer.get());
  const float *result = buffer.get();
  absl::MutexLock lock(&mutex_);
  models_[modelId].buffers.push_back(std::move(buffer));
  return result;
}

void WeightArena::unload(int modelId) {
  Model model;
  {
    absl::MutexLock lock(&mutex_);
    auto it = models_.find(modelId);
    if (it == models_.end())
      return;
    model = std::move(it->second);
    totalBytes_ -= model.bytes;
    models_.erase(it);
  }
  // Buffers are freed here, outside the lock.
}

size_t WeightArena::bytesUsed(int modelId) const {
  absl::MutexLock lock(&mutex_);
  auto it = models_.find(modelId);
  return it == models_.end() ? 0 : it->second.bytes;
}

size_t WeightArena::totalBytes() const {
  absl::MutexLock lock(&mutex_);
  return totalBytes_;
}

} // namespace crosspool::runtime
