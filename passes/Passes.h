//===- Passes.h - CrossPool compiler passes ---------------------*- C++ -*-===//
#ifndef CROSSPOOL_PASSES_PASSES_H
#define CROSSPOOL_PASSES_PASSES_H

#include "dialects/Exec/IR/ExecDialect.h"
#include "dialects/Model/IR/ModelDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <string>

namespace mlir::crosspool {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// partition-pools, insert-transfers, lower-control: model IR -> exec IR.
void buildCrossPoolPipeline(OpPassManager &pm);

/// Registers `crosspool-pipeline` (buildCrossPoolPipeline) for textual
/// pipelines and crosspool-opt.
void registerCrossPoolPipelines();

/// Serializes a lowered module (exec.program, model.weight, model.config)
/// into plan bytes and runs the runtime's static stream check on them.
/// Emits a diagnostic and fails if the module cannot become a valid plan.
LogicalResult serializePlan(ModuleOp module, std::string &buffer);

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::crosspool

#endif // CROSSPOOL_PASSES_PASSES_H
