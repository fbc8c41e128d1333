//===- ModelDialect.cpp - The model dialect -----------------------------===//
#include "dialects/Model/IR/ModelDialect.h"
#include "dialects/Model/IR/ModelOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::crosspool::model;

#include "dialects/Model/IR/ModelDialect.cpp.inc"
#include "dialects/Model/IR/ModelEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Model/IR/ModelAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/Model/IR/ModelTypes.cpp.inc"

void ModelDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/Model/IR/ModelTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Model/IR/ModelAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/Model/IR/ModelOps.cpp.inc"
      >();
}

LogicalResult HiddenType::verify(function_ref<InFlightDiagnostic()> emitError,
                                 int64_t width) {
  if (width <= 0)
    return emitError() << "expects a positive hidden width but got " << width;
  return success();
}

LogicalResult LogitsType::verify(function_ref<InFlightDiagnostic()> emitError,
                                 int64_t vocab) {
  if (vocab <= 0)
    return emitError() << "expects a positive vocabulary size but got "
                       << vocab;
  return success();
}
