//===- ModelBuilder.h - ModelSpec -> model dialect --------------*- C++ -*-===//
#ifndef CROSSPOOL_COMPILER_MODELBUILDER_H
#define CROSSPOOL_COMPILER_MODELBUILDER_H

#include "compiler/importer/ModelSpec.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

namespace crosspool::compiler {

/// Builds the model-dialect module of `spec`: one `model.config`, one
/// `model.weight` per tensor role (a tied lm_head gets its own symbol naming
/// the embedding tensor), and `func.func @forward(!model.ids) ->
/// !model.logits<V>` holding embed, per layer [rms_norm, attention, add,
/// rms_norm, moe|mlp, add], the final rms_norm and lm_head. Loads the
/// dialects it needs into `context`. Returns null after emitting a
/// diagnostic when the spec cannot be expressed (unsupported dtype) or the
/// result does not verify (shapes inconsistent with the attributes).
mlir::OwningOpRef<mlir::ModuleOp> buildModelModule(mlir::MLIRContext &context,
                                                   const ModelSpec &spec);

} // namespace crosspool::compiler

#endif // CROSSPOOL_COMPILER_MODELBUILDER_H
