//===- ModelTypes.td - Activation types of the model dialect -*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELTYPES_TD
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELTYPES_TD

include "dialects/Model/IR/ModelDialect.td"
include "mlir/IR/AttrTypeBase.td"

class Model_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Model_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Model_TokenIdsType : Model_Type<"TokenIds", "ids"> {
  let summary = "token ids of one step";
  let description = [{
    One int32 token id per token row of the step (all tokens of all
    sequences in the step). The runtime fills it before the step runs.

    ```mlir
    func.func @forward(%ids: !model.ids) -> !model.logits<256>
    ```
  }];
}

def Model_HiddenType : Model_Type<"Hidden", "hidden"> {
  let summary = "hidden states of one step";
  let description = [{
    `T x width` fp32 values, one row per token of the step (`T` is only known
    at run time, so only the width is part of the type).

    ```mlir
    %h = model.add %a, %b : !model.hidden<64>
    ```
  }];
  let parameters = (ins "int64_t":$width);
  let assemblyFormat = "`<` $width `>`";
  let genVerifyDecl = 1;
}

def Model_LogitsType : Model_Type<"Logits", "logits"> {
  let summary = "next-token logits of one step";
  let description = [{
    `T x vocab` fp32 logits, one row per token of the step.

    ```mlir
    %l = model.lm_head %h, @lm_head : !model.hidden<64> -> !model.logits<256>
    ```
  }];
  let parameters = (ins "int64_t":$vocab);
  let assemblyFormat = "`<` $vocab `>`";
  let genVerifyDecl = 1;
}

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELTYPES_TD
