//===- VerifyWeights.cpp - Plan weights vs checkpoint headers -------------===//
#include "runtime/format/VerifyWeights.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <string>
#include <vector>

namespace crosspool::runtime {

DType toCheckpointDType(plan::DType dtype) {
  switch (dtype) {
  case plan::DType::F16:
    return DType::kF16;
  case plan::DType::BF16:
    return DType::kBF16;
  case plan::DType::F32:
  default:
    return DType::kF32;
  }
}

absl::Status verifyPlanWeights(const plan::Plan &plan,
                               const Checkpoint &checkpoint) {
  if (!plan.weights())
    return absl::OkStatus();
  for (size_t i = 0; i < plan.weights()->size(); ++i) {
    const plan::Weight &w = *plan.weights()->Get(i);
    std::string name = w.name() ? w.name()->str() : "";
    std::string at = absl::StrCat("plan weight ", i, " '", name, "'");
    auto located = checkpoint.find(name);
    if (!located.ok())
      return absl::NotFoundError(
          absl::StrCat(at, ": not in checkpoint ", checkpoint.dir()));
    const TensorInfo &info = *located->info;
    auto mismatch = [&](const char *field, const std::string &planValue,
                        const std::string &ckptValue) {
      return absl::FailedPreconditionError(absl::StrCat(
          at, ": plan says ", field, " ", planValue, " but checkpoint ",
          checkpoint.dir(), " has ", ckptValue));
    };
    std::string file = w.file() ? w.file()->str() : "";
    if (file != located->fileName)
      return mismatch("file", file, located->fileName);
    // A plan weight is either the whole tensor or a contiguous byte-range
    // view into it (one expert of a stacked [E, ...] expert tensor).
    bool whole = w.offset() == info.offset && w.nbytes() == info.nbytes;
    if (!whole && (w.offset() < info.offset ||
                   w.offset() + w.nbytes() > info.offset + info.nbytes))
      return mismatch("bytes",
                      absl::StrCat("[", w.offset(), ", ",
                                   w.offset() + w.nbytes(), ")"),
                      absl::StrCat("[", info.offset, ", ",
                                   info.offset + info.nbytes, ")"));
    bool knownDType = w.dtype() == plan::DType::F32 ||
                      w.dtype() == plan::DType::F16 ||
                      w.dtype() == plan::DType::BF16;
    if (!knownDType || toCheckpointDType(w.dtype()) != info.dtype)
      return mismatch("dtype",
                      knownDType
                          ? dtypeName(toCheckpointDType(w.dtype()))
                          : absl::StrCat("<", static_cast<int>(w.dtype()), ">"),
                      dtypeName(info.dtype));
    std::vector<int64_t> shape;
    if (w.shape())
      shape.assign(w.shape()->begin(), w.shape()->end());
    int64_t numel = 1;
    for (int64_t d : shape)
      numel *= d;
    if (w.nbytes() != static_cast<uint64_t>(numel) * dtypeSize(info.dtype))
      return absl::FailedPreconditionError(absl::StrCat(
          at, ": plan says nbytes ", w.nbytes(), " but shape [",
          absl::StrJoin(shape, ", "), "] of ", dtypeName(info.dtype), " needs ",
          static_cast<uint64_t>(numel) * dtypeSize(info.dtype)));
    if (whole && shape != info.shape)
      return mismatch("shape",
                      absl::StrCat("[", absl::StrJoin(shape, ", "), "]"),
                      absl::StrCat("[", absl::StrJoin(info.shape, ", "), "]"));
  }
  return absl::OkStatus();
}

} // namespace crosspool::runtime
