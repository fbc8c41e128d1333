//===- InitAll.h - Register CrossPool dialects and passes -------*- C++ -*-===//
//
// The one place tools register what they use: no static registrars.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_COMPILER_INITALL_H
#define CROSSPOOL_COMPILER_INITALL_H

#include "dialects/Exec/IR/ExecDialect.h"
#include "dialects/Model/IR/ModelDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"

namespace mlir::crosspool {

/// The model and exec dialects, and func for the forward function.
inline void registerAllDialects(DialectRegistry &registry) {
  registry.insert<model::ModelDialect, exec::ExecDialect, func::FuncDialect>();
}

/// Every crosspool-* pass and the crosspool-pipeline pipeline.
inline void registerAllPasses() {
  registerCrossPoolPasses();
  registerCrossPoolPipelines();
}

} // namespace mlir::crosspool

#endif // CROSSPOOL_COMPILER_INITALL_H
