//===- ProgramCheck.cpp - Static stream check of an exec.program ---------===//
//
// The checks of docs/plan-format.md ("Static stream check") on the IR form,
// so a bad program is rejected with a diagnostic on the offending op before
// a plan is written. The emitter runs the runtime's checker
// (runtime/format/StreamCheck.h) on the serialized plan as well.
//
//===----------------------------------------------------------------------===//
#include "dialects/Exec/IR/ExecOps.h"

#include "llvm/ADT/BitVector.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::crosspool;
using namespace mlir::crosspool::exec;

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
  auto dense = [](Operation *op, StringRef what, uint32_t id,
                  size_t expected) -> LogicalResult {
    if (id == expected)
      return success();
    return op->emitOpError() << "expects " << what << " id " << expected
                             << " (ids are dense, in order) but got " << id;
  };
  for (Operation &op : program.getBody().front()) {
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](SlotOp slot) {
              if (failed(dense(slot, "slot", slot.getId(), tables.slots.size())))
                return failure();
              tables.slots.push_back(slot);
              return success();
            })
            .Case([&](ChannelOp channel) {
              if (failed(dense(channel, "channel", channel.getId(),
                               tables.channels.size())))
                return failure();
              tables.channels.push_back(channel);
              return success();
            })
            .Case([&](KvLayerOp layer) {
              if (failed(dense(layer, "kv_layer", layer.getId(),
                               tables.kvLayers.size())))
                return failure();
              tables.kvLayers.push_back(layer);
              return success();
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

/// Per-stream checks: ids in range, pool ownership, slot kinds and widths,
/// writes before reads, per-channel seq numbering.
class StreamChecker {
public:
  StreamChecker(ProgramOp program, Tables &tables)
      : program(program), tables(tables),
        written(tables.slots.size()),
        sends(tables.channels.size(), 0), recvs(tables.channels.size(), 0) {}

  LogicalResult check(StreamOp stream) {
    pool = stream.getPool();
    written.reset();
    uint32_t input = program.getInputSlot();
    if (tables.slots[input].getPool() == pool)
      written.set(input);
    for (Operation &op : stream.getBody().front()) {
      LogicalResult result =
          llvm::TypeSwitch<Operation *, LogicalResult>(&op)
              .Case([&](TaskOp task) { return checkTask(task); })
              .Case([&](SendOp send) { return checkSend(send); })
              .Case([&](RecvOp recv) { return checkRecv(recv); })
              .Default([&](Operation *other) -> LogicalResult {
                return stream.emitOpError()
                       << "expects only exec.task, exec.send and exec.recv "
                          "ops but got "
                       << other->getName();
              });
      if (failed(result))
        return failure();
    }
    return success();
  }

  /// After all streams: every channel carried per_step messages each way.
  LogicalResult checkChannelCounts() {
    for (ChannelOp channel : tables.channels) {
      uint32_t perStep = channel.getPerStep();
      if (sends[channel.getId()] != perStep)
        return channel.emitOpError() << "expects " << perStep
                                     << " sends per step but got "
                                     << sends[channel.getId()];
      if (recvs[channel.getId()] != perStep)
        return channel.emitOpError() << "expects " << perStep
                                     << " receives per step but got "
                                     << recvs[channel.getId()];
    }
    return success();
  }

private:
  FailureOr<SlotOp> slotFor(Operation *op, int64_t id) {
    if (id < 0 || id >= static_cast<int64_t>(tables.slots.size()))
      return op->emitOpError() << "expects a slot id below "
                               << tables.slots.size() << " but got " << id;
    SlotOp slot = tables.slots[id];
    if (slot.getPool() != pool)
      return op->emitOpError() << "expects slot " << id << " in pool "
                               << model::stringifyPool(pool)
                               << " but it is in pool "
                               << model::stringifyPool(slot.getPool());
    return slot;
  }

  FailureOr<SlotOp> readSlot(Operation *op, int64_t id, SlotKind kind) {
    FailureOr<SlotOp> slot = slotFor(op, id);
    if (failed(slot))
      return failure();
    if (slot->getKind() != kind)
      return op->emitOpError() << "expects slot " << id << " of kind "
                               << stringifySlotKind(kind) << " but got "
                               << stringifySlotKind(slot->getKind());
    if (!written.test(id))
      return op->emitOpError() << "reads slot " << id
                               << " before it is written in this step";
    return slot;
  }

  FailureOr<SlotOp> writeSlot(Operation *op, int64_t id, SlotKind kind) {
    FailureOr<SlotOp> slot = slotFor(op, id);
    if (failed(slot))
      return failure();
    if (slot->getKind() != kind)
      return op->emitOpError() << "expects slot " << id << " of kind "
                               << stringifySlotKind(kind) << " but got "
                               << stringifySlotKind(slot->getKind());
    written.set(id);
    return slot;
  }

  LogicalResult checkTask(TaskOp task) {
    KernelSignature sig = getKernelSignature(task.getKernel());
    SmallVector<SlotOp> ins;
    for (int32_t id : task.getInputs()) {
      FailureOr<SlotOp> slot = readSlot(task, id, sig.inputKind);
      if (failed(slot))
        return failure();
      ins.push_back(*slot);
    }
    FailureOr<SlotOp> out =
        writeSlot(task, task.getOutputs()[0], sig.outputKind);
    if (failed(out))
      return failure();
    // Every kernel but Embed and LmHead keeps the row width.
    Kernel kernel = task.getKernel();
    if (kernel != Kernel::Embed && kernel != Kernel::LmHead)
      for (SlotOp in : ins)
        if (in.getWidth() != out->getWidth())
          return task.emitOpError()
                 << "expects input slot " << in.getId() << " of width "
                 << out->getWidth() << " (the width of output slot "
                 << out->getId() << ") but got " << in.getWidth();
    if (kernel == Kernel::Attention)
      return checkKvLayer(task);
    return success();
  }

  LogicalResult checkKvLayer(TaskOp task) {
    ArrayRef<int64_t> ip = task.getIparams();
    if (ip[0] >= static_cast<int64_t>(tables.kvLayers.size()))
      return task.emitOpError() << "expects a kv layer below "
                                << tables.kvLayers.size() << " but got "
                                << ip[0];
    KvLayerOp layer = tables.kvLayers[ip[0]];
    if (static_cast<int64_t>(layer.getNumKvHeads()) != ip[2] ||
        static_cast<int64_t>(layer.getHeadDim()) != ip[3])
      return task.emitOpError()
             << "expects kv_heads " << layer.getNumKvHeads() << " and head_dim "
             << layer.getHeadDim() << " of kv layer " << ip[0] << " but got "
             << ip[2] << " and " << ip[3];
    return success();
  }

  FailureOr<ChannelOp> channelFor(Operation *op, uint32_t id) {
    if (id >= tables.channels.size())
      return op->emitOpError() << "expects a channel id below "
                               << tables.channels.size() << " but got " << id;
    return tables.channels[id];
  }

  LogicalResult checkMessage(Operation *op, ChannelOp channel, SlotOp slot,
                             model::Pool end, uint32_t seq, uint32_t &count,
                             StringRef side) {
    if (end != pool)
      return op->emitOpError()
             << "expects channel " << channel.getId() << " to " << side
             << " from pool " << model::stringifyPool(pool) << " but it "
             << side << "s from pool " << model::stringifyPool(end);
    if (slot.getWidth() != channel.getWidth())
      return op->emitOpError() << "expects slot " << slot.getId()
                               << " of channel width " << channel.getWidth()
                               << " but got " << slot.getWidth();
    if (seq != count + 1)
      return op->emitOpError() << "expects seq " << count + 1
                               << " on channel " << channel.getId()
                               << " but got " << seq;
    if (seq > channel.getPerStep())
      return op->emitOpError() << "expects at most " << channel.getPerStep()
                               << " messages per step on channel "
                               << channel.getId() << " but got seq " << seq;
    ++count;
    return success();
  }

  LogicalResult checkSend(SendOp send) {
    FailureOr<SlotOp> slot = readSlot(send, send.getSlot(), SlotKind::Hidden);
    FailureOr<ChannelOp> channel;
    if (failed(slot) || failed(channel = channelFor(send, send.getChannel())))
      return failure();
    return checkMessage(send, *channel, *slot, channel->getFrom(),
                        send.getSeq(), sends[send.getChannel()], "send");
  }

  LogicalResult checkRecv(RecvOp recv) {
    FailureOr<SlotOp> slot = writeSlot(recv, recv.getSlot(), SlotKind::Hidden);
    FailureOr<ChannelOp> channel;
    if (failed(slot) || failed(channel = channelFor(recv, recv.getChannel())))
      return failure();
    return checkMessage(recv, *channel, *slot, channel->getTo(), recv.getSeq(),
                        recvs[recv.getChannel()], "receive");
  }

  ProgramOp program;
  Tables &tables;
  model::Pool pool = model::Pool::KV;
  llvm::BitVector written;
  SmallVector<uint32_t> sends, recvs;
};

/// Runs one step of all streams: a receive blocks until its message was
/// sent. Fails on the first blocked receive when no stream can progress.
LogicalResult simulateStep(Tables &tables) {
  SmallVector<size_t> next(tables.streams.size(), 0);
  SmallVector<uint32_t> sent(tables.channels.size(), 0);
  SmallVector<SmallVector<Operation *>> instrs;
  for (StreamOp stream : tables.streams)
    instrs.push_back(llvm::to_vector(llvm::map_range(
        stream.getBody().front(), [](Operation &op) { return &op; })));
  bool progress = true;
  while (progress) {
    progress = false;
    for (auto [i, ops] : llvm::enumerate(instrs)) {
      for (; next[i] < ops.size(); ++next[i], progress = true) {
        Operation *op = ops[next[i]];
        if (auto recv = dyn_cast<RecvOp>(op)) {
          if (sent[recv.getChannel()] < recv.getSeq())
            break;
        } else if (auto send = dyn_cast<SendOp>(op)) {
          ++sent[send.getChannel()];
        }
      }
    }
  }
  for (auto [i, ops] : llvm::enumerate(instrs)) {
    if (next[i] == ops.size())
      continue;
    auto recv = cast<RecvOp>(ops[next[i]]);
    return recv.emitOpError()
           << "deadlocks: message " << recv.getSeq() << " of channel "
           << recv.getChannel() << " is never sent while the streams wait";
  }
  return success();
}

} // namespace

LogicalResult exec::verifyProgram(ProgramOp program) {
  Tables tables;
  if (failed(collect(program, tables)))
    return failure();
  auto checkEnd = [&](uint32_t id, StringRef what,
                      SlotKind kind) -> LogicalResult {
    if (id >= tables.slots.size())
      return program.emitOpError() << "expects the " << what
                                   << " slot below " << tables.slots.size()
                                   << " but got " << id;
    if (tables.slots[id].getKind() != kind)
      return program.emitOpError()
             << "expects the " << what << " slot " << id << " of kind "
             << stringifySlotKind(kind) << " but got "
             << stringifySlotKind(tables.slots[id].getKind());
    return success();
  };
  if (failed(checkEnd(program.getInputSlot(), "input", SlotKind::TokenIds)) ||
      failed(checkEnd(program.getOutputSlot(), "output", SlotKind::Logits)))
    return failure();

  StreamChecker checker(program, tables);
  for (StreamOp stream : tables.streams)
    if (failed(checker.check(stream)))
      return failure();
  if (failed(checker.checkChannelCounts()))
    return failure();

  // The output must be produced every step by its pool's stream.
  uint32_t output = program.getOutputSlot();
  bool producesOutput = llvm::any_of(tables.streams, [&](StreamOp stream) {
    return llvm::any_of(stream.getBody().front(), [&](Operation &op) {
      auto task = dyn_cast<TaskOp>(op);
      return task && task.getOutputs()[0] == static_cast<int32_t>(output);
    });
  });
  if (!producesOutput)
    return program.emitOpError() << "expects a task writing the output slot "
                                 << output;
  return simulateStep(tables);
}
