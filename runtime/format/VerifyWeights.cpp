//===- VerifyWeights.cpp - Plan weights vs checkpoint headers -------------===//
#include "runtime/format/VerifyWeights.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <cmath>
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

synthetic::TensorInit syntheticInit(const plan::Weight &w) {
  synthetic::TensorInit init;
  init.seed = w.seed();
  init.stream = synthetic::nameStream(w.name() ? w.name()->string_view()
                                               : std::string_view());
  init.kind = w.init() == plan::SyntheticInit::OnePlusNormal
                  ? synthetic::InitKind::kOnePlusNormal
                  : synthetic::InitKind::kNormal;
  init.std = w.init_std();
  init.roundToBf16 = w.dtype() == plan::DType::BF16;
  return init;
}

uint64_t weightNumElements(const plan::Weight &w) {
  uint64_t n = 1;
  if (w.shape())
    for (int64_t d : *w.shape())
      n *= static_cast<uint64_t>(d);
  return n;
}

bool planHasFileWeights(const plan::Plan &plan) {
  if (!plan.weights())
    return false;
  for (const plan::Weight *w : *plan.weights())
    if (!w->synthetic())
      return true;
  return false;
}

absl::Status verifySyntheticWeights(const plan::Plan &plan) {
  if (!plan.weights())
    return absl::OkStatus();
  for (size_t i = 0; i < plan.weights()->size(); ++i) {
    const plan::Weight &w = *plan.weights()->Get(i);
    if (!w.synthetic())
      continue;
    std::string name = w.name() ? w.name()->str() : "";
    auto bad = [&](const std::string &msg) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan weight ", i, " '", name, "' (synthetic): ", msg));
    };
    if (w.file() && w.file()->size() > 0)
      return bad(absl::StrCat("has file '", w.file()->str(),
                              "' but a synthetic weight has none"));
    if (w.offset() != 0)
      return bad(absl::StrCat("has offset ", w.offset(), ", expected 0"));
    if (w.init() != plan::SyntheticInit::Normal &&
        w.init() != plan::SyntheticInit::OnePlusNormal)
      return bad(absl::StrCat("unknown init kind ",
                              static_cast<int>(w.init())));
    if (!std::isfinite(w.init_std()) || !(w.init_std() > 0))
      return bad(absl::StrCat("init_std must be finite and positive, got ",
                              w.init_std()));
    if (w.dtype() != plan::DType::F32 && w.dtype() != plan::DType::BF16)
      return bad(absl::StrCat("dtype <", static_cast<int>(w.dtype()),
                              "> is not supported (synthetic weights are F32 "
                              "or BF16)"));
    std::vector<int64_t> shape;
    if (w.shape())
      shape.assign(w.shape()->begin(), w.shape()->end());
    uint64_t numel = 1;
    for (int64_t d : shape) {
      if (d < 0)
        return bad(absl::StrCat("negative dimension in shape [",
                                absl::StrJoin(shape, ", "), "]"));
      numel *= static_cast<uint64_t>(d);
    }
    size_t elem = dtypeSize(toCheckpointDType(w.dtype()));
    if (w.nbytes() != numel * elem)
      return bad(absl::StrCat("nbytes ", w.nbytes(), " but shape [",
                              absl::StrJoin(shape, ", "), "] of ",
                              dtypeName(toCheckpointDType(w.dtype())),
                              " needs ", numel * elem));
  }
  return absl::OkStatus();
}

absl::Status verifyPlanWeights(const plan::Plan &plan,
                               const Checkpoint &checkpoint) {
  if (!plan.weights())
    return absl::OkStatus();
  if (absl::Status s = verifySyntheticWeights(plan); !s.ok())
    return s;
  for (size_t i = 0; i < plan.weights()->size(); ++i) {
    const plan::Weight &w = *plan.weights()->Get(i);
    if (w.synthetic())
      continue;
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
