//===- PlanFile.h - A loaded, verified .cpplan file -------------*- C++ -*-===//
//
// The runtime's only way to obtain a Plan: the bytes are owned here and are
// checked, in order, for being non-empty, the "CPPL" identifier, the schema
// version, the FlatBuffers verifier, the required fields and the static
// stream check. A plan that comes out of load() is safe to execute.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_PLANFILE_H
#define CROSSPOOL_RUNTIME_FORMAT_PLANFILE_H

#include "runtime/format/Plan_generated.h"

#include "absl/status/statusor.h"

#include <memory>
#include <string>

namespace crosspool::runtime {

class PlanFile {
public:
  /// Reads and checks `path`. Errors are one line prefixed by the path, e.g.
  /// `model.cpplan: plan schema version 7 is not supported (this runtime
  /// reads version 1)`.
  static absl::StatusOr<std::unique_ptr<PlanFile>>
  load(const std::string &path);
  /// Same checks on bytes already in memory; `name` prefixes error messages.
  static absl::StatusOr<std::unique_ptr<PlanFile>> fromBytes(std::string bytes,
                                                             std::string name);

  PlanFile(const PlanFile &) = delete;
  PlanFile &operator=(const PlanFile &) = delete;

  const plan::Plan &plan() const { return *plan_; }
  /// The path or name given to load()/fromBytes().
  const std::string &name() const { return name_; }
  const std::string &bytes() const { return bytes_; }

private:
  PlanFile() = default;
  std::string bytes_;
  std::string name_;
  const plan::Plan *plan_ = nullptr;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_FORMAT_PLANFILE_H
