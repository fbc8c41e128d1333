//===- ExecAttrs.td - Enums of the execution dialect -------*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_EXEC_IR_EXECATTRS_TD
#define CROSSPOOL_DIALECTS_EXEC_IR_EXECATTRS_TD

include "dialects/Exec/IR/ExecDialect.td"
include "mlir/IR/EnumAttr.td"

class Exec_I32Enum<string name, string description, list<I32EnumAttrCase> cases>
    : I32EnumAttr<name, description, cases> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::crosspool::exec";
}

// Values match `crosspool.plan.Kernel` in runtime/format/Plan.fbs.
def Exec_Kernel : Exec_I32Enum<"Kernel", "hand-written kernel of a task", [
  I32EnumAttrCase<"Embed", 1, "embed">,
  I32EnumAttrCase<"RmsNorm", 2, "rms_norm">,
  I32EnumAttrCase<"Attention", 3, "attention">,
  I32EnumAttrCase<"Add", 4, "add">,
  I32EnumAttrCase<"Moe", 5, "moe">,
  I32EnumAttrCase<"Mlp", 6, "mlp">,
  I32EnumAttrCase<"LmHead", 7, "lm_head">
]>;
def Exec_KernelAttr : EnumAttr<Exec_Dialect, Exec_Kernel, "kernel">;

// Values match `crosspool.plan.SlotKind` in runtime/format/Plan.fbs.
def Exec_SlotKind : Exec_I32Enum<"SlotKind", "contents of an activation slot", [
  I32EnumAttrCase<"TokenIds", 0, "token_ids">,
  I32EnumAttrCase<"Hidden", 1, "hidden">,
  I32EnumAttrCase<"Logits", 2, "logits">
]>;
def Exec_SlotKindAttr : EnumAttr<Exec_Dialect, Exec_SlotKind, "slot_kind">;

#endif // CROSSPOOL_DIALECTS_EXEC_IR_EXECATTRS_TD
