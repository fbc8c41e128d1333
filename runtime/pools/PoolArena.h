//===- PoolArena.h - Weight bytes of one pool, per model ---------*- C++ -*-===//
//
// What the runtime reports about one pool's weight storage, whatever holds it
// (host buffers in WeightArena, device memory in cuda::DeviceWeightArena):
// bytes per model and in total, so callers account pools without knowing the
// backend.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_POOLS_POOLARENA_H
#define CROSSPOOL_RUNTIME_POOLS_POOLARENA_H

#include <cstddef>

namespace crosspool::runtime {

class PoolArena {
public:
  virtual ~PoolArena() = default;
  /// Bytes held for `modelId` (0 when unknown).
  virtual size_t bytesUsed(int modelId) const = 0;
  /// Bytes held for every model.
  virtual size_t totalBytes() const = 0;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_POOLS_POOLARENA_H
