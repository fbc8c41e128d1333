//===- ModelDialect.td - The model dialect -----------------*- tablegen -*-===//
//
// The model dialect: one coarse op per transformer sub-block, weights as
// module-level symbols naming checkpoint tensors.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_TD
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_TD

include "mlir/IR/OpBase.td"

def Model_Dialect : Dialect {
  let name = "model";
  let summary = "Coarse transformer sub-blocks of a checkpoint, placed in pools";
  let description = [{
    The model dialect describes one forward step of a Hugging Face MoE
    checkpoint as a single `func.func @forward(%ids: !model.ids) ->
    !model.logits<V>`. Ops are coarse (an attention block, an MoE block, a
    norm), never individual matmuls: kernels are hand-written, the IR is
    where placement and transfers are decided and read.

    * Weights are `model.weight` symbols at module level, naming a checkpoint
      tensor (file, byte offset, size, dtype, shape). Ops reference them by
      `FlatSymbolRefAttr`, so passes can count bytes per pool.
    * Every config field that changes the math is an attribute of the op
      that uses it.
    * Values are per-step activations: each row is one token of the step;
      the types carry the row width (`!model.hidden<64>`).
    * `crosspool-partition-pools` adds a `pool` attribute (`#model<pool kv>`
      or `#model<pool weights>`) to ops and weights;
      `crosspool-insert-transfers` makes every pool crossing an explicit
      `model.transfer`.
  }];
  let cppNamespace = "::mlir::crosspool::model";
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
}

class Model_Op<string mnemonic, list<Trait> traits = []>
    : Op<Model_Dialect, mnemonic, traits>;

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_TD
