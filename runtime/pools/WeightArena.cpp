//===- WeightArena.cpp - fp32 weight storage of one weights GPU -----------===//
#include "runtime/pools/WeightArena.h"

#include "runtime/base/Status.h"

#include "absl/strings/str_cat.h"

#include <cmath>
#include <limits>
#include <new>

namespace crosspool::runtime {

WeightArena::WeightArena(size_t budgetBytes, std::string name)
    : budgetBytes_(budgetBytes), name_(std::move(name)) {}

absl::StatusOr<float *> WeightArena::reserve(int modelId,
                                             size_t numElements) {
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
  float *result = buffer.get();
  absl::MutexLock lock(&mutex_);
  models_[modelId].buffers.push_back(std::move(buffer));
  return result;
}

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
  CP_ASSIGN_OR_RETURN(float *buffer, reserve(modelId, numElements));
  if (numElements > 0)
    convertToF32(dtype, src, numElements, buffer);
  return buffer;
}

absl::StatusOr<const float *>
WeightArena::addSynthetic(int modelId, const synthetic::TensorInit &init,
                          size_t numElements) {
  if (!std::isfinite(init.std) || !(init.std > 0))
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": model ", modelId,
                     ": synthetic init std must be finite and positive, got ",
                     init.std));
  CP_ASSIGN_OR_RETURN(float *buffer, reserve(modelId, numElements));
  synthetic::fillHost(buffer, numElements, init);
  return buffer;
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
