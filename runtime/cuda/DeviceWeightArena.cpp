//===- DeviceWeightArena.cpp - Device weights with per-model accounting ---===//
#include "runtime/cuda/DeviceWeightArena.h"

#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/cuda/SyntheticFill.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace crosspool::runtime::cuda {

namespace cudak = crosspool::kernels::cuda;

namespace {
constexpr size_t kAlign = 256;               // every tensor's start
constexpr size_t kGranule = size_t(2) << 20; // the driver's allocation unit
constexpr size_t kMaxSlab = size_t(64) << 20;
size_t roundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }
} // namespace

DeviceWeightArena::~DeviceWeightArena() {
  for (auto &entry : models_)
    for (Slab &s : entry.second.slabs)
      cudaFree(s.base);
}

size_t DeviceWeightArena::bytesFor(size_t bytes, size_t tensors) {
  return bytes + tensors * kAlign;
}

absl::Status DeviceWeightArena::newSlab(int model, size_t cap) {
  void *p = nullptr;
  cudaError_t err = cudaMalloc(&p, cap);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    size_t freeB = 0, totalB = 0;
    (void)cudaMemGetInfo(&freeB, &totalB);
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": cannot hold ", cap, " more bytes for model ", model, " (",
        cudaGetErrorString(err), "; ", freeB, " of ", totalB,
        " device bytes free, ", reserved_, " held by this arena)"));
  }
  models_[model].slabs.push_back({static_cast<char *>(p), cap, 0});
  reserved_ += cap;
  return absl::OkStatus();
}

absl::Status DeviceWeightArena::reserve(int model, size_t bytes) {
  auto it = models_.find(model);
  if (it != models_.end() && !it->second.slabs.empty())
    return absl::FailedPreconditionError(absl::StrCat(
        name_, ": reserve for model ", model, " after its first tensor"));
  if (bytes == 0 || (budget_ && used_ + bytes > budget_))
    return absl::OkStatus(); // allocate() reports the budget per tensor
  return newSlab(model, roundUp(bytes, kGranule));
}

absl::StatusOr<void *> DeviceWeightArena::allocate(int model, size_t bytes) {
  if (budget_ && used_ + bytes > budget_)
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": budget of ", budget_, " bytes exceeded (", used_, " used, ",
        bytes, " more requested by model ", model, ")"));
  ModelSlabs &m = models_[model];
  const size_t need = roundUp(std::max<size_t>(bytes, 1), kAlign);
  if (m.slabs.empty() || m.slabs.back().capacity - m.slabs.back().top < need) {
    // A new slab: twice the last one up to kMaxSlab, at least this tensor;
    // when the card cannot hold that, just this tensor.
    const size_t exact = roundUp(need, kGranule);
    const size_t grown = m.slabs.empty()
                             ? kGranule
                             : std::min(kMaxSlab, 2 * m.slabs.back().capacity);
    absl::Status st = newSlab(model, std::max(exact, grown));
    if (!st.ok() && grown > exact)
      st = newSlab(model, exact);
    if (!st.ok()) {
      if (m.slabs.empty())
        models_.erase(model);
      return st;
    }
  }
  Slab &s = m.slabs.back();
  void *out = s.base + s.top;
  s.top += need;
  m.used += bytes;
  used_ += bytes;
  return out;
}

absl::StatusOr<void *> DeviceWeightArena::upload(int model, const void *src,
                                                 runtime::DType srcType,
                                                 size_t numel, cudak::DType dt,
                                                 bool roundToBf16) {
  std::vector<float> f32(numel);
  convertToF32(srcType, src, numel, f32.data());
  CP_ASSIGN_OR_RETURN(void *dst,
                      allocate(model, numel * cudak::dtypeBytes(dt)));
  const void *host = f32.data();
  std::vector<uint16_t> bf;
  if (dt == cudak::DType::kBF16 || roundToBf16) {
    bf.resize(numel);
    for (size_t i = 0; i < numel; ++i) {
      uint32_t u;
      std::memcpy(&u, &f32[i], 4);
      if ((u & 0x7fffffffu) > 0x7f800000u)
        bf[i] = 0x7fc0;
      else
        bf[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    host = bf.data();
  }
  if (dt == cudak::DType::kF32 && roundToBf16) {
    for (size_t i = 0; i < numel; ++i) {
      uint32_t u = uint32_t(bf[i]) << 16;
      std::memcpy(&f32[i], &u, 4);
    }
    host = f32.data();
  }
  CP_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, host, numel * cudak::dtypeBytes(dt),
                                     cudaMemcpyHostToDevice));
  return dst;
}

absl::StatusOr<void *>
DeviceWeightArena::addSynthetic(int model, const synthetic::TensorInit &init,
                                size_t numel, cudak::DType dt) {
  if (!std::isfinite(init.std) || !(init.std > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        name_, ": model ", model,
        ": synthetic init std must be finite and positive, got ", init.std));
  CP_ASSIGN_OR_RETURN(void *dst,
                      allocate(model, numel * cudak::dtypeBytes(dt)));
  CP_CUDA_RETURN_IF_ERROR(
      fillSynthetic(dst, numel, init, dt == cudak::DType::kBF16));
  // Loading is not timed: surface a kernel fault here, naming the arena.
  CP_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return dst;
}

void DeviceWeightArena::unload(int model) {
  auto it = models_.find(model);
  if (it == models_.end())
    return;
  for (Slab &s : it->second.slabs) {
    cudaFree(s.base);
    reserved_ -= s.capacity;
  }
  used_ -= it->second.used;
  models_.erase(it);
}

size_t DeviceWeightArena::bytesUsed(int model) const {
  auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second.used;
}

} // namespace crosspool::runtime::cuda
