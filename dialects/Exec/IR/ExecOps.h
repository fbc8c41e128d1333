//===- ExecOps.h - Attributes and ops of the execution dialect -*- C++ -*-===//
#ifndef CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_H
#define CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_H

#include "dialects/Exec/IR/ExecDialect.h"
#include "dialects/Model/IR/ModelOps.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"

#include "dialects/Exec/IR/ExecEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Exec/IR/ExecAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/Exec/IR/ExecOps.h.inc"

namespace mlir::crosspool::exec {

/// The fixed shape of a kernel's task (docs/plan-format.md, "Kernels").
struct KernelSignature {
  unsigned numInputs, numOutputs;
  /// Weight count; the Moe count depends on iparams[0] (5 + 3 * experts).
  unsigned numWeights;
  unsigned numIparams, numFparams;
  SlotKind inputKind, outputKind;
  /// Positions in `weights` that may be absent (`none`).
  ArrayRef<unsigned> optionalWeights;
};

KernelSignature getKernelSignature(Kernel kernel);

/// Weight count of a task of `kernel` with `iparams` (Moe: 5 + 3 * experts).
int64_t expectedWeightCount(Kernel kernel, ArrayRef<int64_t> iparams);

/// The static stream check of docs/plan-format.md over a program whose ops
/// are individually valid. Emits the first problem on the offending op.
LogicalResult verifyProgram(ProgramOp program);

} // namespace mlir::crosspool::exec

#endif // CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_H
