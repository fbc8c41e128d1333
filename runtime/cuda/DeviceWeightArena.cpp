//===- DeviceWeightArena.cpp - Device weights with per-model accounting ---===//
#include "runtime/cuda/DeviceWeightArena.h"

#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/cuda/SyntheticFill.h"

#include "absl/strings/str_cat.h"

#include <cmath>
#include <cstring>

namespace crosspool::runtime::cuda {

namespace cudak = crosspool::kernels::cuda;

DeviceWeightArena::~DeviceWeightArena() {
  for (auto &entry : blocks_)
    for (Block &b : entry.second)
      cudaFree(b.ptr);
}

absl::StatusOr<void *> DeviceWeightArena::allocate(int model, size_t bytes) {
  if (budget_ && used_ + bytes > budget_)
    return absl::ResourceExhaustedError(absl::StrCat(
        name_, ": budget of ", budget_, " bytes exceeded (", used_, " used, ",
        bytes, " more requested by model ", model, ")"));
  void *p = nullptr;
  absl::Status st = [&]() -> absl::Status {
    CP_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes ? bytes : 1));
    return absl::OkStatus();
  }();
  if (!st.ok())
    return absl::Status(st.code(), absl::StrCat(name_, ": ", st.message()));
  blocks_[model].push_back({p, bytes});
  used_ += bytes;
  return p;
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
  auto it = blocks_.find(model);
  if (it == blocks_.end())
    return;
  for (Block &b : it->second) {
    cudaFree(b.ptr);
    used_ -= b.bytes;
  }
  blocks_.erase(it);
}

size_t DeviceWeightArena::bytesUsed(int model) const {
  auto it = blocks_.find(model);
  size_t n = 0;
  if (it != blocks_.end())
    for (const Block &b : it->second)
      n += b.bytes;
  return n;
}

} // namespace crosspool::runtime::cuda
