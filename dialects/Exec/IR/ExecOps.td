//===- ExecOps.td - Ops of the execution dialect -----------*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_TD
#define CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_TD

include "dialects/Exec/IR/ExecAttrs.td"
include "dialects/Exec/IR/ExecDialect.td"
include "dialects/Model/IR/ModelAttrs.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/IR/SymbolInterfaces.td"

def Exec_Id : ConfinedAttr<I32Attr, [IntNonNegative]>;
def Exec_PositiveI64 : ConfinedAttr<I64Attr, [IntPositive]>;
def Exec_PositiveI32 : ConfinedAttr<I32Attr, [IntPositive]>;

/// A task's weights in kernel order: `model.weight` symbols, `unit` where an
/// optional weight is absent (printed `none`).
def Exec_WeightRefArrayAttr : TypedArrayAttrBase<
    AnyAttrOf<[FlatSymbolRefAttr, UnitAttr]>,
    "array of weight symbols or unit (absent)">;

def Exec_ProgramOp : Exec_Op<"program", [
    HasParent<"::mlir::ModuleOp">, IsolatedFromAbove, NoTerminator,
    SingleBlock]> {
  let summary = "the streams, slots and channels of one compiled model";
  let description = [{
    Holds, in this order, the `exec.slot`, `exec.channel` and
    `exec.kv_layer` declarations (each numbered densely from 0 in order) and
    one `exec.stream` per pool. `input` is the `token_ids` slot the runtime
    fills each step, `output` the `logits` slot it reads. The weights the
    tasks name are the module's `model.weight` symbols; model metadata is
    the module's `model.config`.

    The region verifier runs the static stream check of
    docs/plan-format.md: ids in range, kernel arity, pool ownership of
    slots, writes before reads, send/recv pairing with `seq = 1..per_step`,
    and a simulation of one step proving the streams cannot deadlock.

    ```mlir
    exec.program input 0 output 2 {
      exec.slot 0 : token_ids, width 1, pool kv
      exec.slot 1 : hidden, width 64, pool kv
      exec.slot 2 : logits, width 256, pool kv
      exec.stream kv {
        exec.task embed [0] -> [1] weights(@embed)
        exec.task lm_head [1] -> [2] weights(@lm_head)
      }
    }
    ```
  }];
  let arguments = (ins Exec_Id:$input_slot, Exec_Id:$output_slot);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat =
      "`input` $input_slot `output` $output_slot attr-dict-with-keyword $body";
  let hasRegionVerifier = 1;
}

def Exec_SlotOp : Exec_Op<"slot", [HasParent<"ProgramOp">]> {
  let summary = "an activation buffer";
  let description = [{
    Slot `id` holds `T x width` fp32 values for the `T` token rows of a step
    (`token_ids`: `T` int32 ids, width 1). Only the stream of `pool` reads or
    writes it.

    ```mlir
    exec.slot 3 : hidden, width 64, pool weights
    ```
  }];
  let arguments = (ins Exec_Id:$id, Exec_SlotKindAttr:$kind,
                       Exec_PositiveI64:$width, Model_PoolAttr:$pool);
  let assemblyFormat =
      "$id `:` custom<EnumKeyword>($kind) `,` `width` $width `,` `pool` "
      "custom<EnumKeyword>($pool) attr-dict";
  let hasVerifier = 1;
}

def Exec_ChannelOp : Exec_Op<"channel", [HasParent<"ProgramOp">]> {
  let summary = "a one-way hidden-state link between two pools";
  let description = [{
    Carries `width` floats per token row from pool `from` to pool `to`,
    `per_step` messages per step. Its counter grows monotonically across
    steps: the receive of message `seq` in step `s` waits for
    `s * per_step + seq`.

    ```mlir
    exec.channel 0 : kv -> weights, width 64, per_step 2
    ```
  }];
  let arguments = (ins Exec_Id:$id, Model_PoolAttr:$from, Model_PoolAttr:$to,
                       Exec_PositiveI64:$width, Exec_PositiveI32:$per_step);
  let assemblyFormat = "$id `:` custom<EnumKeyword>($from) `->` "
                       "custom<EnumKeyword>($to) `,` `width` $width `,` "
                       "`per_step` $per_step attr-dict";
  let hasVerifier = 1;
}

def Exec_KvLayerOp : Exec_Op<"kv_layer", [HasParent<"ProgramOp">]> {
  let summary = "KV-cache geometry of one attention layer";
  let description = [{
    What the page allocator needs for KV layer `id`; an attention task's
    `iparams[0]` names it and its `iparams[2]`/`iparams[3]` must agree.

    ```mlir
    exec.kv_layer 0 : kv_heads 2, head_dim 16
    ```
  }];
  let arguments = (ins Exec_Id:$id, Exec_PositiveI64:$num_kv_heads,
                       Exec_PositiveI64:$head_dim);
  let assemblyFormat =
      "$id `:` `kv_heads` $num_kv_heads `,` `head_dim` $head_dim attr-dict";
}

def Exec_StreamOp : Exec_Op<"stream", [HasParent<"ProgramOp">, NoTerminator,
                                       SingleBlock]> {
  let summary = "the ordered instructions one pool runs each step";
  let description = [{
    `exec.task`, `exec.send` and `exec.recv` ops executed in order once per
    step by the workers of `pool`.

    ```mlir
    exec.stream weights {
      exec.recv slot 5 channel 0 seq 1
      exec.task mlp [5] -> [6] weights(@gate, @up, @down)
      exec.send slot 6 channel 1 seq 1
    }
    ```
  }];
  let arguments = (ins Model_PoolAttr:$pool);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "custom<EnumKeyword>($pool) attr-dict-with-keyword $body";
}

def Exec_TaskOp : Exec_Op<"task", [
    HasParent<"StreamOp">, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "run one kernel on slots";
  let description = [{
    Runs `kernel` reading the `inputs` slots and writing the `outputs` slots.
    `weights`, `iparams` and `fparams` follow the kernel table of
    docs/plan-format.md exactly (order, count, `none` for an absent optional
    weight). The verifier checks each kernel's arity.

    ```mlir
    exec.task rms_norm [1] -> [2] weights(@layers_0_input_norm)
        fparams [1.0e-05]
    exec.task moe [4] -> [5] weights(@router, none, none, none, none,
        @e0_gate, @e0_up, @e0_down) iparams [1, 1, 0]
    ```
  }];
  let arguments = (ins Exec_KernelAttr:$kernel, DenseI32ArrayAttr:$inputs,
                       DenseI32ArrayAttr:$outputs,
                       OptionalAttr<Exec_WeightRefArrayAttr>:$weights,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{}">:$iparams,
                       DefaultValuedAttr<DenseF64ArrayAttr, "{}">:$fparams);
  let assemblyFormat = [{
    custom<EnumKeyword>($kernel) $inputs `->` $outputs
    (`weights` `(` custom<WeightRefs>($weights)^ `)`)?
    (`iparams` $iparams^)? (`fparams` $fparams^)? attr-dict
  }];
  let extraClassDeclaration = [{
    /// `weights`, empty when absent.
    ::llvm::ArrayRef<::mlir::Attribute> getWeightRefs() {
      if (::mlir::ArrayAttr weights = getWeightsAttr())
        return weights.getValue();
      return {};
    }
  }];
  let hasVerifier = 1;
}

def Exec_SendOp : Exec_Op<"send", [HasParent<"StreamOp">]> {
  let summary = "send a slot's rows over a channel";
  let description = [{
    Copies slot `slot` into channel `channel` as message `seq` (1-based) of
    that channel within the step. Must be in the stream of the channel's
    `from` pool.

    ```mlir
    exec.send slot 4 channel 0 seq 1
    ```
  }];
  let arguments = (ins Exec_Id:$slot, Exec_Id:$channel,
                       Exec_PositiveI32:$seq);
  let assemblyFormat = "`slot` $slot `channel` $channel `seq` $seq attr-dict";
}

def Exec_RecvOp : Exec_Op<"recv", [HasParent<"StreamOp">]> {
  let summary = "wait for a channel message and copy it into a slot";
  let description = [{
    Blocks until channel `channel`'s counter reaches
    `step * per_step + seq`, then copies that message into slot `slot`. Must
    be in the stream of the channel's `to` pool.

    ```mlir
    exec.recv slot 5 channel 0 seq 1
    ```
  }];
  let arguments = (ins Exec_Id:$slot, Exec_Id:$channel,
                       Exec_PositiveI32:$seq);
  let assemblyFormat = "`slot` $slot `channel` $channel `seq` $seq attr-dict";
}

#endif // CROSSPOOL_DIALECTS_EXEC_IR_EXECOPS_TD
