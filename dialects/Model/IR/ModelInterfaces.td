//===- ModelInterfaces.td - Interfaces of the model dialect -*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELINTERFACES_TD
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELINTERFACES_TD

include "mlir/IR/OpBase.td"

def Model_PlacedOpInterface : OpInterface<"PlacedOpInterface"> {
  let description = [{
    A compute op that runs in one pool. The pool is an optional `pool`
    attribute, absent until `crosspool-partition-pools` runs; passes after
    it read and write placement through this interface only.
  }];
  let cppNamespace = "::mlir::crosspool::model";
  let methods = [
    InterfaceMethod<"The pool this op runs in, if placed.",
      "std::optional<::mlir::crosspool::model::Pool>", "getPlacement", (ins),
      [{ return $_op.getPool(); }]>,
    InterfaceMethod<"Places this op in `pool`.",
      "void", "setPlacement", (ins "::mlir::crosspool::model::Pool":$pool),
      [{
        $_op.setPoolAttr(::mlir::crosspool::model::PoolAttr::get(
            $_op->getContext(), pool));
      }]>,
  ];
}

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELINTERFACES_TD
