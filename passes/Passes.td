//===- Passes.td - CrossPool compiler passes ---------------*- tablegen -*-===//
#ifndef CROSSPOOL_PASSES_PASSES_TD
#define CROSSPOOL_PASSES_PASSES_TD

include "mlir/Pass/PassBase.td"

def PartitionPools : Pass<"crosspool-partition-pools", "::mlir::ModuleOp"> {
  let summary = "Place every model op and weight in the KV or the weights pool";
  let description = [{
    Cuts each layer at the attention / FFN boundary. The KV pool runs
    `model.embed`, `model.rms_norm`, `model.attention`, `model.add` (the
    residual stream) and `model.lm_head`; the weights pool runs `model.moe`
    and `model.mlp`. Every `model.weight` gets the pool of the ops that use
    it; a weight used from both pools is an error (it would have to be held
    twice). An existing placement is overwritten. Unused weights are left
    unplaced.

    ```mlir
    %y = model.moe %x {...} : !model.hidden<64>
    // becomes
    %y = model.moe %x {..., pool = #model<pool weights>} : !model.hidden<64>
    ```
  }];
  let dependentDialects = ["::mlir::crosspool::model::ModelDialect"];
  let statistics = [
    Statistic<"numKvOps", "kv-ops", "Ops placed in the KV pool">,
    Statistic<"numWeightsOps", "weights-ops", "Ops placed in the weights pool">,
    Statistic<"kvWeightBytes", "kv-weight-bytes",
              "Checkpoint bytes of weights placed in the KV pool">,
    Statistic<"weightsPoolBytes", "weights-pool-bytes",
              "Checkpoint bytes of weights placed in the weights pool">,
  ];
}

def InsertTransfers : Pass<"crosspool-insert-transfers", "::mlir::ModuleOp"> {
  let summary = "Make every pool crossing an explicit model.transfer";
  let description = [{
    For every use of a hidden-state value in an op placed in another pool
    than the value's producer, inserts `model.transfer` right after the
    producer and rewires the use. One transfer serves all uses of a value in
    one destination pool. Requires every compute op to be placed (run
    `crosspool-partition-pools` first); a function argument lives in the
    pool of its first user. Only `!model.hidden` values may cross pools.

    ```mlir
    %n = model.rms_norm %h, @w {eps = 1.0e-05 : f64, pool = #model<pool kv>}
        : !model.hidden<64>
    %t = model.transfer %n from kv to weights : !model.hidden<64>
    %y = model.moe %t {..., pool = #model<pool weights>} : !model.hidden<64>
    ```
  }];
  let dependentDialects = ["::mlir::crosspool::model::ModelDialect"];
  let statistics = [
    Statistic<"numTransfers", "transfers", "Transfers inserted">,
  ];
}

def LowerControl : Pass<"crosspool-lower-control", "::mlir::ModuleOp"> {
  let summary = "Lower the placed forward function to per-pool instruction streams";
  let description = [{
    Replaces `func.func @forward` (placed and with explicit transfers) by an
    `exec.program`:
    * one slot per activation value (the `!model.ids` argument becomes the
      input slot, the returned logits the output slot), in the pool of the
      value's producer (a transfer's result: its `to` pool);
    * one channel per (from pool, to pool, width) of the transfers, with
      `per_step` = its number of transfers;
    * one stream per pool holding, in program order, a task per compute op
      (weights, iparams and fparams exactly as docs/plan-format.md) and for
      each transfer a send (`from` stream) and a receive (`to` stream),
      numbered `seq = 1..per_step` per channel;
    * one `exec.kv_layer` per KV layer index of the attention ops.
    `model.weight` and `model.config` stay; the program verifier checks the
    result statically (ids, pools, pairing, no deadlock).
  }];
  let dependentDialects = ["::mlir::crosspool::exec::ExecDialect"];
  let statistics = [
    Statistic<"numSlots", "slots", "Activation slots declared">,
    Statistic<"numChannels", "channels", "Channels declared">,
    Statistic<"numInstructions", "instructions",
              "Instructions in all streams">,
  ];
}

def EmitPlan : Pass<"crosspool-emit-plan", "::mlir::ModuleOp"> {
  let summary = "Serialize the exec program into a FlatBuffers plan file";
  let description = [{
    Writes the `exec.program`, the `model.weight` symbols its tasks use (in
    module order) and the `model.config` metadata as a plan
    (runtime/format/Plan.fbs, version kPlanSchemaVersion) to `output`. The
    buffer is checked with the FlatBuffers verifier and the runtime's static
    stream check (runtime/format/StreamCheck.h) before it is written, so the
    compiler never writes a plan the runtime would refuse. The IR is not
    changed.
  }];
  let options = [
    Option<"output", "output", "std::string", /*default=*/"\"\"",
           "Path of the .cpplan file to write">,
  ];
  let statistics = [
    Statistic<"planBytes", "plan-bytes", "Size of the written plan">,
    Statistic<"numWeights", "weights", "Weights in the plan">,
  ];
}

#endif // CROSSPOOL_PASSES_PASSES_TD
