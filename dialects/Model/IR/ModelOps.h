//===- ModelOps.h - Types, attributes and ops of the model dialect -*- C++ -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_H
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_H

#include "dialects/Model/IR/ModelDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Model/IR/ModelEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Model/IR/ModelAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/Model/IR/ModelTypes.h.inc"

#include "dialects/Model/IR/ModelInterfaces.h.inc"

namespace mlir::crosspool {

/// `custom<EnumKeyword>($attr)` in op formats: an enum attribute as its bare
/// keyword (`kv`, `rms_norm`), without the dialect prefix of the full form.
template <typename EnumAttrT>
ParseResult parseEnumKeyword(OpAsmParser &parser, EnumAttrT &attr) {
  using Enum = decltype(std::declval<EnumAttrT>().getValue());
  SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  // Our enums are small and dense from 0 or 1; stringifyEnum returns "" for
  // values that are not cases.
  SmallVector<StringRef> names;
  for (int value = 0; value < 32; ++value) {
    StringRef name = stringifyEnum(static_cast<Enum>(value));
    if (name.empty())
      continue;
    if (name == keyword) {
      attr = EnumAttrT::get(parser.getContext(), static_cast<Enum>(value));
      return success();
    }
    names.push_back(name);
  }
  InFlightDiagnostic diag = parser.emitError(loc) << "expects one of ";
  llvm::interleaveComma(names, diag);
  return diag << " but got '" << keyword << "'";
}

template <typename EnumAttrT>
void printEnumKeyword(OpAsmPrinter &printer, Operation *, EnumAttrT attr) {
  printer << stringifyEnum(attr.getValue());
}

} // namespace mlir::crosspool

#define GET_OP_CLASSES
#include "dialects/Model/IR/ModelOps.h.inc"

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_H
