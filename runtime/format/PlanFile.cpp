//===- PlanFile.cpp - A loaded, verified .cpplan file ---------------------===//
#include "runtime/format/PlanFile.h"

#include "runtime/base/Status.h"
#include "runtime/format/PlanVersion.h"
#include "runtime/format/StreamCheck.h"

#include "absl/strings/str_cat.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace crosspool::runtime {
namespace {

namespace fb = crosspool::plan;

absl::Status planError(absl::StatusCode code, const std::string &name,
                       const std::string &what) {
  return absl::Status(code, absl::StrCat(name, ": ", what));
}

/// Fields the runtime cannot run without; the verifier accepts their absence.
absl::Status checkRequired(const fb::Plan &plan) {
  if (!plan.model_name())
    return absl::InvalidArgumentError("missing required field model_name");
  if (!plan.checkpoint_dir())
    return absl::InvalidArgumentError("missing required field checkpoint_dir");
  if (!plan.weights())
    return absl::InvalidArgumentError("missing required field weights");
  if (!plan.slots())
    return absl::InvalidArgumentError("missing required field slots");
  if (!plan.streams())
    return absl::InvalidArgumentError("missing required field streams");
  for (size_t s = 0; s < plan.streams()->size(); ++s)
    if (!plan.streams()->Get(s)->instrs())
      return absl::InvalidArgumentError(
          absl::StrCat("stream ", s, ": missing required field instrs"));
  return absl::OkStatus();
}

} // namespace

absl::StatusOr<std::unique_ptr<PlanFile>>
PlanFile::load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open plan file (",
                                            std::strerror(errno), ")"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat(path, ": cannot read plan file"));
  return fromBytes(std::move(buf).str(), path);
}

absl::StatusOr<std::unique_ptr<PlanFile>>
PlanFile::fromBytes(std::string bytes, std::string name) {
  using absl::StatusCode;
  if (bytes.empty())
    return planError(StatusCode::kInvalidArgument, name, "empty plan file");
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE)
    return planError(
        StatusCode::kInvalidArgument, name,
        absl::StrCat("plan file too large (", bytes.size(), " bytes)"));
  // Root offset + identifier: 8 bytes.
  if (bytes.size() < 8 || !fb::PlanBufferHasIdentifier(bytes.data()))
    return planError(StatusCode::kInvalidArgument, name,
                     "not a CrossPool plan (bad file identifier)");

  std::unique_ptr<PlanFile> file(new PlanFile());
  file->bytes_ = std::move(bytes);
  file->name_ = std::move(name);
  const auto *data = reinterpret_cast<const uint8_t *>(file->bytes_.data());
  size_t size = file->bytes_.size();

  // The version is read before the full verification, through a minimal
  // verification of the root table alone, so a plan written for another
  // schema is reported as such rather than as corrupt.
  {
    flatbuffers::Verifier verifier(data, size);
    const auto *root = flatbuffers::GetRoot<flatbuffers::Table>(data);
    if (!root->VerifyTableStart(verifier) ||
        !root->VerifyField<uint32_t>(verifier, fb::Plan::VT_VERSION, 4))
      return planError(StatusCode::kInvalidArgument, file->name_,
                       "corrupt plan (FlatBuffers verification failed)");
    uint32_t version = root->GetField<uint32_t>(fb::Plan::VT_VERSION, 0);
    if (version != fb::kPlanSchemaVersion)
      return planError(StatusCode::kFailedPrecondition, file->name_,
                       absl::StrCat("plan schema version ", version,
                                    " is not supported (this runtime reads "
                                    "version ",
                                    fb::kPlanSchemaVersion, ")"));
  }

  // Plans have many small tables (one per instruction and weight); allow more
  // than the default million.
  flatbuffers::Verifier verifier(data, size, /*max_depth=*/64,
                                 /*max_tables=*/1u << 26);
  if (!fb::VerifyPlanBuffer(verifier))
    return planError(StatusCode::kInvalidArgument, file->name_,
                     "corrupt plan (FlatBuffers verification failed)");
  file->plan_ = fb::GetPlan(data);

  absl::Status status = checkRequired(*file->plan_);
  if (status.ok())
    status = checkPlanStreams(*file->plan_);
  if (!status.ok())
    return planError(status.code(), file->name_, std::string(status.message()));
  return file;
}

} // namespace crosspool::runtime
