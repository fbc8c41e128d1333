//===- PlanVersion.h - Plan schema version ----------------------*- C++ -*-===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_PLANVERSION_H
#define CROSSPOOL_RUNTIME_FORMAT_PLANVERSION_H

#include <cstdint>

namespace crosspool::plan {
/// Written by the compiler, checked by the runtime: bump on any change to
/// Plan.fbs or to the semantics in docs/plan-format.md.
/// 2: synthetic weights (Weight.synthetic/seed/init/init_std).
inline constexpr uint32_t kPlanSchemaVersion = 2;
} // namespace crosspool::plan

#endif // CROSSPOOL_RUNTIME_FORMAT_PLANVERSION_H
