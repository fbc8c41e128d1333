//===- Safetensors.h - Read-only mmapped safetensors checkpoints -*- C++ -*-===//
//
// Shared by the importer (which only reads headers) and the runtime (which
// maps tensor data into pools). Plain C++: no MLIR, no LLVM.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CHECKPOINT_SAFETENSORS_H
#define CROSSPOOL_RUNTIME_CHECKPOINT_SAFETENSORS_H

#include "absl/status/statusor.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// Element types a checkpoint tensor may hold. Only F32/F16/BF16 are weights
/// we compute with; the others are parsed so errors can name them.
enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

/// "F32", "BF16", ... as written in safetensors headers.
const char *dtypeName(DType dtype);
size_t dtypeSize(DType dtype);

/// One tensor of one file. `offset` counts from the start of the file.
struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  int64_t numElements() const;
};

/// One mmapped .safetensors file; header fully validated on open (JSON,
/// offsets inside the file, sizes matching dtype x shape, no overlap).
class SafetensorsFile {
public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>>
  open(const std::string &path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  const std::string &path() const { return path_; }
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  /// nullptr when absent.
  const TensorInfo *find(const std::string &name) const;
  /// Start of a tensor's bytes inside the mapping.
  const uint8_t *data(const TensorInfo &info) const { return base_ + info.offset; }
  uint64_t fileSize() const { return size_; }

private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

/// A Hugging Face checkpoint directory: model.safetensors, or the shards
/// named by model.safetensors.index.json.
class Checkpoint {
public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>>
  open(const std::string &dir);

  const std::string &dir() const { return dir_; }
  /// The file (name relative to dir) holding `name`, or nullptr.
  struct Located {
    const SafetensorsFile *file;
    std::string fileName;
    const TensorInfo *info;
  };
  absl::StatusOr<Located> find(const std::string &name) const;
  bool contains(const std::string &name) const;
  /// All tensor names, sorted.
  std::vector<std::string> tensorNames() const;
  /// Opened file by name relative to dir, or nullptr.
  const SafetensorsFile *file(const std::string &fileName) const;

private:
  std::string dir_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::string> tensorToFile_;
};

/// Converts `n` elements of `dtype` (F32/F16/BF16) to fp32.
void convertToF32(DType dtype, const void *src, size_t n, float *dst);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_CHECKPOINT_SAFETENSORS_H
