//===- ModelAttrs.td - Attributes of the model dialect -----*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELATTRS_TD
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELATTRS_TD

include "dialects/Model/IR/ModelDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

class Model_I32Enum<string name, string description, list<I32EnumAttrCase> cases>
    : I32EnumAttr<name, description, cases> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::crosspool::model";
}

// Values match `crosspool.plan.Pool` in runtime/format/Plan.fbs.
def Model_Pool : Model_I32Enum<"Pool", "GPU memory pool", [
  I32EnumAttrCase<"KV", 0, "kv">,
  I32EnumAttrCase<"Weights", 1, "weights">
]>;
/// Printed `#model<pool kv>`; `kv` inside op formats.
def Model_PoolAttr : EnumAttr<Model_Dialect, Model_Pool, "pool">;

// Values match Attention.iparams[4] in docs/plan-format.md.
def Model_QkNorm : Model_I32Enum<"QkNorm", "query/key normalization", [
  I32EnumAttrCase<"None", 0, "none">,
  I32EnumAttrCase<"PerHead", 1, "per_head">,
  I32EnumAttrCase<"Full", 2, "full">
]>;
/// `none`, `per_head` (Qwen3: RMSNorm over head_dim per head) or `full`
/// (OLMoE: RMSNorm over the whole projection).
def Model_QkNormAttr : EnumAttr<Model_Dialect, Model_QkNorm, "qk_norm">;

// Values match Attention.iparams[6] in docs/plan-format.md.
def Model_RopeType : Model_I32Enum<"RopeType", "rotary embedding scaling", [
  I32EnumAttrCase<"Default", 0, "default">,
  I32EnumAttrCase<"Linear", 1, "linear">
]>;
def Model_RopeTypeAttr : EnumAttr<Model_Dialect, Model_RopeType, "rope">;

// Values match `crosspool.plan.SyntheticInit` in runtime/format/Plan.fbs.
def Model_SyntheticInit : Model_I32Enum<"SyntheticInit",
                                        "synthetic weight distribution", [
  I32EnumAttrCase<"Normal", 0, "normal">,
  I32EnumAttrCase<"OnePlusNormal", 1, "one_plus_normal">
]>;

def Model_SyntheticAttr : AttrDef<Model_Dialect, "Synthetic"> {
  let mnemonic = "synthetic";
  let summary = "a weight generated from a seed instead of read from a file";
  let description = [{
    The runtime generates the values from (`seed`, tensor name)
    (runtime/format/SyntheticInit.h): `normal` is normal(0, `std`),
    `one_plus_normal` is 1 + normal(0, `std`) (RMSNorm weights).

    ```mlir
    #model.synthetic<seed = 7, init = normal, std = 2.000000e-02 : f64>
    ```
  }];
  let parameters = (ins "uint64_t":$seed,
                        "::mlir::crosspool::model::SyntheticInit":$init,
                        "::mlir::FloatAttr":$std);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Model_SwiGluAttr : AttrDef<Model_Dialect, "SwiGlu"> {
  let mnemonic = "swiglu";
  let summary = "the three weights of a SwiGLU feed-forward block";
  let description = [{
    `y = down(silu(gate x) * up x)`, with `gate` and `up` of shape
    `[intermediate, hidden]` and `down` of shape `[hidden, intermediate]`.

    ```mlir
    #model.swiglu<gate = @l0_e0_gate, up = @l0_e0_up, down = @l0_e0_down>
    ```
  }];
  let parameters = (ins "::mlir::FlatSymbolRefAttr":$gate,
                        "::mlir::FlatSymbolRefAttr":$up,
                        "::mlir::FlatSymbolRefAttr":$down);
  let assemblyFormat = "`<` struct(params) `>`";
}

def Model_SwiGluArrayAttr
    : TypedArrayAttrBase<Model_SwiGluAttr, "array of SwiGLU weight triples">;

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELATTRS_TD
