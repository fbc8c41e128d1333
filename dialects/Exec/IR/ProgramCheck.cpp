//===- ProgramCheck.cpp - Static stream check of an exec.program ---------===//
//
// The checks of docs/plan-format.md ("Static stream check") on the IR form,
// so a bad program is rejected with a diagnostic on the offending op before
// a plan is written. The stream semantics are the runtime's own code
// (runtime/format/StreamModel.h); this file checks what only the IR has
// (dense ids, op kinds) and maps each error back onto its op.
//
//===----------------------------------------------------------------------===//
#include "dialects/Exec/IR/ExecOps.h"
#include "runtime/base/Status.h"
#include "runtime/format/StreamModel.h"

#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::crosspool;
using namespace mlir::crosspool::exec;
using ::crosspool::runtime::checkStreamModel;
using ::crosspool::runtime::StreamErrorLocation;
using ::crosspool::runtime::StreamModel;

namespace {

/// The declarations of a program, indexed by id.
struct Tables {
  SmallVector<SlotOp> slots;
  SmallVector<ChannelOp> channels;
  SmallVector<KvLayerOp> kvLayers;
  SmallVector<StreamOp> streams;
};

/// Checks declarations are numbered densely in order and at most one stream
/// exists per pool.
LogicalResult collect(ProgramOp program, Tables &tables) {
  auto add = [](auto op, StringRef what, auto &table) -> LogicalResult {
    if (op.getId() != table.size())
      return op.emitOpError()
             << "expects " << what << " id " << table.size()
             << " (ids are dense, in order) but got " << op.getId();
    table.push_back(op);
    return success();
  };
  for (Operation &op : program.getBody().front()) {
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](SlotOp slot) { return add(slot, "slot", tables.slots); })
            .Case([&](ChannelOp channel) {
              return add(channel, "channel", tables.channels);
            })
            .Case([&](KvLayerOp layer) {
              return add(layer, "kv_layer", tables.kvLayers);
            })
            .Case([&](StreamOp stream) -> LogicalResult {
              for (StreamOp other : tables.streams)
                if (other.getPool() == stream.getPool())
                  return stream.emitOpError()
                         << "expects one stream per pool but pool "
                         << model::stringifyPool(stream.getPool())
                         << " already has one";
              tables.streams.push_back(stream);
              return success();
            })
            .Default([&](Operation *other) -> LogicalResult {
              return program.emitOpError()
                     << "expects only exec.slot, exec.channel, exec.kv_layer "
                        "and exec.stream ops but got "
                     << other->getName();
            });
    if (failed(result))
      return failure();
  }
  return success();
}

/// An error for checkStreamModel, worded by streaming `parts` as a
/// diagnostic would.
template <typename... Ts> absl::Status invalid(const Ts &...parts) {
  std::string what;
  llvm::raw_string_ostream os(what);
  (os << ... << parts);
  return absl::InvalidArgumentError(os.str());
}

/// The program in the shared stream model, with the op behind each
/// instruction so that an error lands on the op that caused it.
LogicalResult buildModel(ProgramOp program, const Tables &tables,
                         StreamModel &model,
                         SmallVector<SmallVector<Operation *>> &ops) {
  for (uint32_t pool = 0; pool <= model::getMaxEnumValForPool(); ++pool)
    model.poolNames.push_back(
        model::stringifyPool(static_cast<model::Pool>(pool)).str());
  for (uint32_t kind = 0; kind <= getMaxEnumValForSlotKind(); ++kind)
    model.kindNames.push_back(
        stringifySlotKind(static_cast<SlotKind>(kind)).str());
  for (SlotOp slot : tables.slots)
    model.slots.push_back({static_cast<int>(slot.getPool()),
                           static_cast<StreamModel::Kind>(slot.getKind()),
                           static_cast<int64_t>(slot.getWidth())});
  for (ChannelOp ch : tables.channels)
    model.channels.push_back(
        {static_cast<int>(ch.getFrom()), static_cast<int>(ch.getTo()),
         static_cast<int64_t>(ch.getWidth()), ch.getPerStep()});
  for (StreamOp stream : tables.streams) {
    StreamModel::Stream &modelStream = model.streams.emplace_back();
    modelStream.pool = static_cast<int>(stream.getPool());
    SmallVector<Operation *> &streamOps = ops.emplace_back();
    for (Operation &op : stream.getBody().front()) {
      StreamModel::Instr instr;
      if (auto task = dyn_cast<TaskOp>(op)) {
        instr.inputs.assign(task.getInputs().begin(), task.getInputs().end());
        instr.outputs.assign(task.getOutputs().begin(),
                             task.getOutputs().end());
      } else if (auto send = dyn_cast<SendOp>(op)) {
        instr.op = StreamModel::Op::Send;
        instr.inputs = {send.getSlot()};
        instr.channel = send.getChannel();
        instr.seq = send.getSeq();
      } else if (auto recv = dyn_cast<RecvOp>(op)) {
        instr.op = StreamModel::Op::Recv;
        instr.outputs = {recv.getSlot()};
        instr.channel = recv.getChannel();
        instr.seq = recv.getSeq();
      } else {
        return stream.emitOpError()
               << "expects only exec.task, exec.send and exec.recv ops but got "
               << op.getName();
      }
      modelStream.instrs.push_back(std::move(instr));
      streamOps.push_back(&op);
    }
  }
  model.inputSlot = program.getInputSlot();
  model.outputSlot = program.getOutputSlot();
  return success();
}

/// The IR-side checks of one op, run by checkStreamModel once its slot ids
/// are valid: slot kinds, row widths, the kv layer of an attention task.
absl::Status checkOp(Tables &tables, Operation *op) {
  auto expectKind = [&](int64_t id, SlotKind kind) {
    SlotKind actual = tables.slots[id].getKind();
    if (actual != kind)
      return invalid("expects slot ", id, " of kind ", stringifySlotKind(kind),
                     " but got ", stringifySlotKind(actual));
    return absl::OkStatus();
  };
  if (auto send = dyn_cast<SendOp>(op))
    return expectKind(send.getSlot(), SlotKind::Hidden);
  if (auto recv = dyn_cast<RecvOp>(op))
    return expectKind(recv.getSlot(), SlotKind::Hidden);
  auto task = cast<TaskOp>(op);
  Kernel kernel = task.getKernel();
  KernelSignature sig = getKernelSignature(kernel);
  for (int32_t id : task.getInputs())
    CP_RETURN_IF_ERROR(expectKind(id, sig.inputKind));
  SlotOp out = tables.slots[task.getOutputs()[0]];
  CP_RETURN_IF_ERROR(expectKind(out.getId(), sig.outputKind));
  // Every kernel but Embed and LmHead keeps the row width.
  if (kernel != Kernel::Embed && kernel != Kernel::LmHead)
    for (int32_t id : task.getInputs())
      if (tables.slots[id].getWidth() != out.getWidth())
        return invalid("expects input slot ", id, " of width ", out.getWidth(),
                       " (the width of output slot ", out.getId(), ") but got ",
                       tables.slots[id].getWidth());
  if (kernel != Kernel::Attention)
    return absl::OkStatus();
  ArrayRef<int64_t> ip = task.getIparams();
  if (ip[0] >= static_cast<int64_t>(tables.kvLayers.size()))
    return invalid("expects a kv layer below ", tables.kvLayers.size(),
                   " but got ", ip[0]);
  KvLayerOp layer = tables.kvLayers[ip[0]];
  if (static_cast<int64_t>(layer.getNumKvHeads()) != ip[2] ||
      static_cast<int64_t>(layer.getHeadDim()) != ip[3])
    return invalid("expects kv_heads ", layer.getNumKvHeads(), " and head_dim ",
                   layer.getHeadDim(), " of kv layer ", ip[0], " but got ",
                   ip[2], " and ", ip[3]);
  return absl::OkStatus();
}

} // namespace

LogicalResult exec::verifyProgram(ProgramOp program) {
  Tables tables;
  if (failed(collect(program, tables)))
    return failure();
  StreamModel model;
  SmallVector<SmallVector<Operation *>> ops;
  if (failed(buildModel(program, tables, model, ops)))
    return failure();
  StreamErrorLocation loc;
  absl::Status status = checkStreamModel(
      model,
      [&](int64_t stream, int64_t instr) {
        return checkOp(tables, ops[stream][instr]);
      },
      &loc);
  if (status.ok())
    return success();
  Operation *culprit = loc.stream >= 0    ? ops[loc.stream][loc.instr]
                       : loc.channel >= 0 ? tables.channels[loc.channel]
                                          : program.getOperation();
  return culprit->emitOpError()
         << StringRef(status.message().data(), status.message().size());
}
