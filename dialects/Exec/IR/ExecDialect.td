//===- ExecDialect.td - The execution dialect --------------*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_TD
#define CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_TD

include "mlir/IR/OpBase.td"

def Exec_Dialect : Dialect {
  let name = "exec";
  let summary = "Per-pool instruction streams: the execution form of a plan";
  let description = [{
    The exec dialect is the plan before serialization: one `exec.program`
    holding slot, channel and KV-layer declarations and one `exec.stream`
    per pool, each an ordered list of `exec.task`, `exec.send` and
    `exec.recv` executed once per step. It maps one to one onto the
    FlatBuffers plan (runtime/format/Plan.fbs) and its semantics are those
    of docs/plan-format.md.

    Streams are position-independent: they name activation buffers by slot
    id and weights by `model.weight` symbol, never by address, so one
    program serves every batch size and context length. Channel counters
    grow monotonically (message `seq` of step `s` is complete when the
    counter reaches `s * per_step + seq`), so no instruction resets state
    between steps; running a second micro-batch through the same streams
    needs only a second slot table and its own counter base.
  }];
  let cppNamespace = "::mlir::crosspool::exec";
  let dependentDialects = ["::mlir::crosspool::model::ModelDialect"];
  let useDefaultAttributePrinterParser = 1;
}

class Exec_Op<string mnemonic, list<Trait> traits = []>
    : Op<Exec_Dialect, mnemonic, traits>;

#endif // CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_TD
