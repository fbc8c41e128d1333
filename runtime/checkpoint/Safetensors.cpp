//===- Safetensors.cpp - Read-only mmapped safetensors checkpoints --------===//
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//  "__metadata__": {..}}, then the data section; offsets count from the start
// of the data section. Every check here guards against a file a user hands
// us, so each failure is a Status naming the file and the tensor or field.
//
//===----------------------------------------------------------------------===//

#include "runtime/checkpoint/Safetensors.h"

#include "runtime/base/Status.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crosspool::runtime {

namespace {

struct DTypeEntry {
  DType dtype;
  const char *name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kF64, "F64", 8},
    {DType::kI64, "I64", 8},   {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},     {DType::kBool, "BOOL", 1},
};

const DTypeEntry *findDType(const std::string &name) {
  for (const DTypeEntry &entry : kDTypes)
    if (name == entry.name)
      return &entry;
  return nullptr;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

/// Reads a JSON value as a non-negative integer; nlohmann stores JSON
/// integers as unsigned when non-negative and signed when negative.
bool asNonNegative(const nlohmann::json &value, uint64_t &out) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

std::string errnoText() { return std::strerror(errno); }

bool isRegularFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

} // namespace

const char *dtypeName(DType dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return entry.name;
  return "?";
}

size_t dtypeSize(DType dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return entry.size;
  return 0;
}

int64_t TensorInfo::numElements() const {
  int64_t n = 1;
  for (int64_t dim : shape)
    n *= dim;
  return n;
}

//===----------------------------------------------------------------------===//
// SafetensorsFile
//===----------------------------------------------------------------------===//

SafetensorsFile::~SafetensorsFile() {
  if (base_)
    ::munmap(const_cast<uint8_t *>(base_), size_);
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", errnoText()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string msg = absl::StrCat(path, ": cannot stat: ", errnoText());
    ::close(fd);
    return absl::InternalError(msg);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": file is ", size,
        " bytes, too small for the 8-byte header length (truncated file?)"));
  }
  void *mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED)
    return absl::InternalError(
        absl::StrCat(path, ": mmap failed: ", errnoText()));

  // From here on the destructor unmaps on every error path.
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->base_ = static_cast<const uint8_t *>(mapping);
  file->size_ = size;

  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = (headerLen << 8) | file->base_[i];
  if (headerLen > size - 8)
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header length ", headerLen, " exceeds the file size (", size,
        " bytes, ", size - 8, " after the length field; truncated file?)"));
  const char *headerBegin = reinterpret_cast<const char *>(file->base_ + 8);
  nlohmann::json header = nlohmann::json::parse(
      headerBegin, headerBegin + headerLen, /*cb=*/nullptr,
      /*allow_exceptions=*/false);
  if (header.is_discarded())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not valid JSON"));
  if (!header.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not a JSON object"));

  const uint64_t dataStart = 8 + headerLen;
  const uint64_t dataSize = size - dataStart;
  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const nlohmann::json &entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": '__metadata__' is not a JSON object"));
      continue;
    }
    std::string where = absl::StrCat(path, ": tensor '", name, "'");
    if (!entry.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat(where, " entry is not a JSON object"));
    for (const char *field : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(field))
        return absl::InvalidArgumentError(
            absl::StrCat(where, " has no '", field, "'"));
    const nlohmann::json &dtypeJson = entry["dtype"];
    if (!dtypeJson.is_string())
      return absl::InvalidArgumentError(
          absl::StrCat(where, " 'dtype' is not a string"));
    const DTypeEntry *dtype = findDType(dtypeJson.get<std::string>());
    if (!dtype)
      return absl::InvalidArgumentError(absl::StrCat(
          where, " has unknown dtype '", dtypeJson.get<std::string>(), "'"));

    const nlohmann::json &shapeJson = entry["shape"];
    if (!shapeJson.is_array())
      return absl::InvalidArgumentError(
          absl::StrCat(where, " 'shape' is not an array"));
    TensorInfo info;
    info.name = name;
    info.dtype = dtype->dtype;
    // Element count in 128 bits' worth of care: stop as soon as it passes
    // the data section, so a hostile shape cannot overflow.
    uint64_t numel = 1;
    bool tooLarge = false;
    for (const nlohmann::json &dim : shapeJson) {
      uint64_t d = 0;
      if (!asNonNegative(dim, d) || d > static_cast<uint64_t>(INT64_MAX))
        return absl::InvalidArgumentError(
            absl::StrCat(where, " 'shape' has an invalid dimension ",
                         dim.dump(), " (expected a non-negative integer)"));
      info.shape.push_back(static_cast<int64_t>(d));
      if (d != 0 && numel > dataSize / d)
        tooLarge = true;
      numel *= d;
    }
    const nlohmann::json &offsetsJson = entry["data_offsets"];
    uint64_t begin = 0, end = 0;
    if (!offsetsJson.is_array() || offsetsJson.size() != 2 ||
        !asNonNegative(offsetsJson[0], begin) ||
        !asNonNegative(offsetsJson[1], end))
      return absl::InvalidArgumentError(absl::StrCat(
          where, " 'data_offsets' must be two non-negative integers, got ",
          offsetsJson.dump()));
    if (begin > end)
      return absl::InvalidArgumentError(absl::StrCat(
          where, " data_offsets [", begin, ", ", end, "] begin after end"));
    if (end > dataSize)
      return absl::InvalidArgumentError(absl::StrCat(
          where, " data_offsets [", begin, ", ", end,
          "] exceed the data section (", dataSize, " bytes; truncated file?)"));
    // numel*size is the true byte count unless it overflowed past dataSize,
    // in which case it cannot equal end-begin <= dataSize anyway.
    if (tooLarge || numel * dtype->size != end - begin)
      return absl::InvalidArgumentError(absl::StrCat(
          where, " data_offsets [", begin, ", ", end, "] hold ", end - begin,
          " bytes but ", dtype->name, " ", shapeString(info.shape), " needs ",
          tooLarge ? std::string("more than the data section")
                   : absl::StrCat(numel * dtype->size)));
    info.offset = dataStart + begin;
    info.nbytes = end - begin;
    if (end > begin)
      ranges.push_back({begin, end, name});
    file->index_[name] = file->tensors_.size();
    file->tensors_.push_back(std::move(info));
  }

  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensors '", ranges[i - 1].name, "' [", ranges[i - 1].begin,
          ", ", ranges[i - 1].end, "] and '", ranges[i].name, "' [",
          ranges[i].begin, ", ", ranges[i].end, "] overlap"));
  return file;
}

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

absl::StatusOr<std::unique_ptr<Checkpoint>>
Checkpoint::open(const std::string &dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string indexPath = dir + "/model.safetensors.index.json";
  const std::string singlePath = dir + "/model.safetensors";

  if (isRegularFile(indexPath)) {
    std::string text;
    {
      int fd = ::open(indexPath.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        return absl::NotFoundError(
            absl::StrCat(indexPath, ": cannot open: ", errnoText()));
      char buf[65536];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof(buf))) > 0)
        text.append(buf, static_cast<size_t>(n));
      ::close(fd);
      if (n < 0)
        return absl::InternalError(
            absl::StrCat(indexPath, ": read failed: ", errnoText()));
    }
    nlohmann::json index = nlohmann::json::parse(text, nullptr, false);
    if (index.is_discarded() || !index.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat(indexPath, ": not a valid JSON object"));
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      return absl::InvalidArgumentError(
          absl::StrCat(indexPath, ": missing or non-object 'weight_map'"));
    const nlohmann::json &weightMap = index["weight_map"];
    for (auto it = weightMap.begin(); it != weightMap.end(); ++it) {
      if (!it.value().is_string())
        return absl::InvalidArgumentError(
            absl::StrCat(indexPath, ": weight_map entry '", it.key(),
                         "' is not a file name string"));
      std::string shard = it.value().get<std::string>();
      // Shards live inside the checkpoint directory; refuse paths that
      // would escape it.
      if (shard.empty() || shard[0] == '/' ||
          shard.find("..") != std::string::npos)
        return absl::InvalidArgumentError(
            absl::StrCat(indexPath, ": weight_map entry '", it.key(),
                         "' names an invalid shard file '", shard, "'"));
      if (!ckpt->files_.count(shard)) {
        auto file = SafetensorsFile::open(dir + "/" + shard);
        if (!file.ok())
          return absl::Status(file.status().code(),
                              absl::StrCat(indexPath, ": shard '", shard,
                                           "' listed in weight_map: ",
                                           file.status().message()));
        ckpt->files_[shard] = std::move(file).value();
      }
      if (!ckpt->files_[shard]->find(it.key()))
        return absl::InvalidArgumentError(absl::StrCat(
            indexPath, ": weight_map maps tensor '", it.key(), "' to shard '",
            shard, "' but that file has no such tensor"));
      ckpt->tensorToFile_[it.key()] = shard;
    }
    return ckpt;
  }

  if (isRegularFile(singlePath)) {
    CP_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(singlePath));
    for (const TensorInfo &info : file->tensors())
      ckpt->tensorToFile_[info.name] = "model.safetensors";
    ckpt->files_["model.safetensors"] = std::move(file);
    return ckpt;
  }
  return absl::NotFoundError(absl::StrCat(
      dir, ": no model.safetensors or model.safetensors.index.json"));
}

absl::StatusOr<Checkpoint::Located>
Checkpoint::find(const std::string &name) const {
  auto it = tensorToFile_.find(name);
  if (it == tensorToFile_.end())
    return absl::NotFoundError(
        absl::StrCat(dir_, ": checkpoint has no tensor '", name, "'"));
  const SafetensorsFile *file = files_.at(it->second).get();
  return Located{file, it->second, file->find(name)};
}

bool Checkpoint::contains(const std::string &name) const {
  return tensorToFile_.count(name) != 0;
}

std::vector<std::string> Checkpoint::tensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensorToFile_.size());
  for (const auto &entry : tensorToFile_)
    names.push_back(entry.first);
  return names;
}

const SafetensorsFile *Checkpoint::file(const std::string &fileName) const {
  auto it = files_.find(fileName);
  return it == files_.end() ? nullptr : it->second.get();
}

//===----------------------------------------------------------------------===//
// Conversion
//===----------------------------------------------------------------------===//

namespace {

/// IEEE binary16 -> binary32, exact for every input (subnormals are
/// normalized, inf/nan keep sign and payload).
float halfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal: value = mant * 2^-24; shift the leading one into the
    // implicit bit position and lower the exponent to match.
    int e = -14;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= 0x3ffu;
    bits = sign | (static_cast<uint32_t>(e + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

} // namespace

void convertToF32(DType dtype, const void *src, size_t n, float *dst) {
  const uint8_t *bytes = static_cast<const uint8_t *>(src);
  switch (dtype) {
  case DType::kF32:
    std::memcpy(dst, src, n * sizeof(float));
    return;
  case DType::kF16:
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      dst[i] = halfToFloat(h);
    }
    return;
  case DType::kBF16:
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      uint32_t bits = static_cast<uint32_t>(h) << 16;
      std::memcpy(&dst[i], &bits, sizeof(float));
    }
    return;
  default:
    // Callers validate dtypes first; fill with NaN so misuse is visible
    // rather than silently reading garbage.
    for (size_t i = 0; i < n; ++i)
      dst[i] = __builtin_nanf("");
    return;
  }
}

} // namespace crosspool::runtime
