//===- DeviceWeightArena.h - Device weights with per-model accounting -*- C++
//-*-===//
//
// One pool's weights on the device: every tensor of every model loaded into
// this pool, with a byte budget for the pool and per-model accounting, so a
// model's weights are freed as a whole when it is unloaded. Tensors are
// carved from per-model slabs rather than one cudaMalloc each: the driver
// rounds every allocation up to 2 MiB, which for Qwen3-30B-A3B's 18,432
// expert matrices of 3 MiB wasted 18 GiB and left an 80 GB card without room
// for the model. The runtime announces each model's bytes first (reserve:
// one slab); unannounced tensors go to slabs doubling from 2 to 64 MiB. Uploads
// convert the checkpoint's dtype (F32/F16/BF16, mmapped) to the storage type of
// the precision mode (fp32 or bf16) on the host, then copy once.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_DEVICEWEIGHTARENA_H
#define CROSSPOOL_RUNTIME_CUDA_DEVICEWEIGHTARENA_H

#include "kernels/cuda/Kernels.h"
#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/SyntheticInit.h"
#include "runtime/pools/PoolArena.h"

#include "absl/status/statusor.h"

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace crosspool::runtime::cuda {

class DeviceWeightArena : public PoolArena {
public:
  /// budgetBytes 0 = unlimited.
  DeviceWeightArena(size_t budgetBytes, std::string name)
      : budget_(budgetBytes), name_(std::move(name)) {}
  ~DeviceWeightArena();
  DeviceWeightArena(const DeviceWeightArena &) = delete;
  DeviceWeightArena &operator=(const DeviceWeightArena &) = delete;

  /// Device bytes that `tensors` tensors of `bytes` in all take, aligned.
  static size_t bytesFor(size_t bytes, size_t tensors);
  /// One slab of `bytes` for `model` (before its first allocation), so a
  /// model announced up front (bytesFor its tensors) is one cudaMalloc with
  /// under 2 MiB to spare. ResourceExhausted, naming the free memory, when
  /// the card cannot hold it; past the budget it is left to allocate().
  absl::Status reserve(int model, size_t bytes);
  /// `bytes` of uninitialized device memory owned by `model`.
  /// ResourceExhausted past the budget or when the device is full.
  absl::StatusOr<void *> allocate(int model, size_t bytes);
  /// numel values of `src` (checkpoint dtype) converted to `dt` on the device.
  /// `roundToBf16` rounds fp32 values to bf16 first (kept in fp32 storage).
  absl::StatusOr<void *> upload(int model, const void *src,
                                runtime::DType srcType, size_t numel,
                                kernels::cuda::DType dt,
                                bool roundToBf16 = false);
  /// numel values of synthetic tensor `init`, generated on the device by the
  /// generator the CPU arena uses (SyntheticFill.h), stored as `dt`.
  absl::StatusOr<void *> addSynthetic(int model,
                                      const synthetic::TensorInit &init,
                                      size_t numel, kernels::cuda::DType dt);
  /// Frees everything of `model`.
  void unload(int model);
  size_t bytesUsed(int model) const override;
  size_t bytesUsed() const { return used_; }
  /// Device bytes held in slabs (bytesUsed plus alignment and slab tails).
  size_t bytesReserved() const { return reserved_; }
  size_t totalBytes() const override { return used_; }
  const std::string &name() const { return name_; }

private:
  size_t budget_;
  std::string name_;
  size_t used_ = 0, reserved_ = 0;
  struct Slab {
    char *base;
    size_t capacity, top;
  };
  struct ModelSlabs {
    std::vector<Slab> slabs;
    size_t used = 0;
  };
  std::map<int, ModelSlabs> models_;
  absl::Status newSlab(int model, size_t cap);
};

} // namespace crosspool::runtime::cuda

#endif // CROSSPOOL_RUNTIME_CUDA_DEVICEWEIGHTARENA_H
