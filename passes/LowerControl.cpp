//===- LowerControl.cpp - Model IR -> per-pool instruction streams ---------===//
//
// Control lowering (DESIGN.md, mechanism 3): the forward function becomes
// one ordered instruction stream per pool that a worker (later a persistent
// kernel) runs without host decisions. Slots are numbered in program order;
// kernel parameters follow docs/plan-format.md exactly.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Exec/IR/ExecOps.h"
#include "dialects/Model/IR/ModelOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <map>
#include <tuple>

namespace mlir::crosspool {
#define GEN_PASS_DEF_LOWERCONTROL
#include "passes/Passes.h.inc"
} // namespace mlir::crosspool

using namespace mlir;
using namespace mlir::crosspool;
using exec::Kernel;
using exec::SlotKind;
using model::Pool;

namespace {

struct SlotDecl {
  SlotKind kind;
  int64_t width;
  Pool pool;
};

/// One instruction before it becomes an op: a task, or a send/recv.
struct Instr {
  enum { Task, Send, Recv } opcode;
  Location loc;
  Kernel kernel = Kernel::Add;
  SmallVector<int32_t> inputs, outputs;
  SmallVector<Attribute> weights;
  SmallVector<int64_t> iparams;
  SmallVector<double> fparams;
  int32_t slot = 0, channel = 0, seq = 0;
};

struct ChannelDecl {
  int32_t id;
  int32_t perStep = 0;
};

using ChannelKey = std::tuple<Pool, Pool, int64_t>;

/// The task fields of one compute op, per docs/plan-format.md.
struct TaskFields {
  Kernel kernel;
  SmallVector<Attribute> weights;
  SmallVector<int64_t> iparams;
  SmallVector<double> fparams;
};

Attribute optionalRef(MLIRContext *ctx, FlatSymbolRefAttr ref) {
  return ref ? Attribute(ref) : UnitAttr::get(ctx);
}

void appendSwiGlu(SmallVector<Attribute> &weights, model::SwiGluAttr ffn) {
  weights.append({ffn.getGate(), ffn.getUp(), ffn.getDown()});
}

TaskFields taskFields(Operation *op) {
  MLIRContext *ctx = op->getContext();
  return llvm::TypeSwitch<Operation *, TaskFields>(op)
      .Case([&](model::EmbedOp embed) {
        return TaskFields{Kernel::Embed, {embed.getWeightAttr()}, {}, {}};
      })
      .Case([&](model::RmsNormOp norm) {
        return TaskFields{Kernel::RmsNorm,
                          {norm.getWeightAttr()},
                          {},
                          {norm.getEps().convertToDouble()}};
      })
      .Case([&](model::AttentionOp attn) {
        TaskFields fields{Kernel::Attention, {}, {}, {}};
        fields.weights = {attn.getQProjAttr(),
                          attn.getKProjAttr(),
                          attn.getVProjAttr(),
                          attn.getOProjAttr(),
                          optionalRef(ctx, attn.getQBiasAttr()),
                          optionalRef(ctx, attn.getKBiasAttr()),
                          optionalRef(ctx, attn.getVBiasAttr()),
                          optionalRef(ctx, attn.getOBiasAttr()),
                          optionalRef(ctx, attn.getQNormAttr()),
                          optionalRef(ctx, attn.getKNormAttr())};
        fields.iparams = {static_cast<int64_t>(attn.getKvLayer()),
                          static_cast<int64_t>(attn.getNumHeads()),
                          static_cast<int64_t>(attn.getNumKvHeads()),
                          static_cast<int64_t>(attn.getHeadDim()),
                          static_cast<int64_t>(attn.getQkNorm()),
                          static_cast<int64_t>(attn.getSlidingWindow()),
                          static_cast<int64_t>(attn.getRopeType())};
        fields.fparams = {attn.getRopeTheta().convertToDouble(),
                          attn.getQkNormEps().convertToDouble(),
                          attn.getClipQkv().convertToDouble(),
                          attn.getRopeFactor().convertToDouble(),
                          attn.getSoftmaxScale().convertToDouble()};
        return fields;
      })
      .Case([&](model::AddOp) { return TaskFields{Kernel::Add, {}, {}, {}}; })
      .Case([&](model::MoeOp moe) {
        TaskFields fields{Kernel::Moe, {moe.getRouterAttr()}, {}, {}};
        if (model::SwiGluAttr shared = moe.getSharedExpertAttr())
          appendSwiGlu(fields.weights, shared);
        else
          fields.weights.append(3, UnitAttr::get(ctx));
        fields.weights.push_back(optionalRef(ctx, moe.getSharedExpertGateAttr()));
        for (auto expert : moe.getExperts().getAsRange<model::SwiGluAttr>())
          appendSwiGlu(fields.weights, expert);
        fields.iparams = {static_cast<int64_t>(moe.getNumExperts()),
                          static_cast<int64_t>(moe.getTopK()),
                          moe.getNormTopkProb() ? 1 : 0};
        return fields;
      })
      .Case([&](model::MlpOp mlp) {
        TaskFields fields{Kernel::Mlp, {}, {}, {}};
        appendSwiGlu(fields.weights, mlp.getFfn());
        return fields;
      })
      .Case([&](model::LmHeadOp head) {
        return TaskFields{Kernel::LmHead, {head.getWeightAttr()}, {}, {}};
      });
}

class Lowering {
public:
  explicit Lowering(func::FuncOp func) : func(func) {}

  LogicalResult run();
  exec::ProgramOp build(OpBuilder &builder);

  SmallVector<SlotDecl> slots;
  llvm::MapVector<ChannelKey, ChannelDecl> channels;
  std::map<int64_t, std::pair<int64_t, int64_t>> kvLayers;
  std::map<Pool, std::vector<Instr>> streams;

private:
  int32_t newSlot(Value value, SlotKind kind, int64_t width, Pool pool) {
    slots.push_back({kind, width, pool});
    int32_t id = slots.size() - 1;
    slotOf[value] = id;
    return id;
  }

  FailureOr<int32_t> readSlot(Operation *user, Value value, Pool pool);
  LogicalResult lowerCompute(model::PlacedOpInterface op);
  LogicalResult lowerTransfer(model::TransferOp transfer);
  LogicalResult recordKvLayer(model::AttentionOp attn);

  func::FuncOp func;
  DenseMap<Value, int32_t> slotOf;
  int32_t outputSlot = -1;
};

FailureOr<int32_t> Lowering::readSlot(Operation *user, Value value, Pool pool) {
  auto it = slotOf.find(value);
  if (it == slotOf.end())
    return user->emitOpError() << "expects operands produced by lowered ops";
  Pool valuePool = slots[it->second].pool;
  if (valuePool != pool)
    return user->emitOpError()
           << "expects operands in pool " << model::stringifyPool(pool)
           << " but one is in pool " << model::stringifyPool(valuePool)
           << " (run crosspool-insert-transfers first)";
  return it->second;
}

LogicalResult Lowering::recordKvLayer(model::AttentionOp attn) {
  int64_t layer = attn.getKvLayer();
  auto [it, inserted] = kvLayers.try_emplace(
      layer, static_cast<int64_t>(attn.getNumKvHeads()),
      static_cast<int64_t>(attn.getHeadDim()));
  if (!inserted)
    return attn.emitOpError() << "expects each kv_layer used once but "
                              << layer << " is used again";
  return success();
}

LogicalResult Lowering::lowerCompute(model::PlacedOpInterface op) {
  std::optional<Pool> pool = op.getPlacement();
  if (!pool)
    return op->emitOpError()
           << "expects a pool placement (run crosspool-partition-pools first)";
  if (auto attn = dyn_cast<model::AttentionOp>(*op))
    if (failed(recordKvLayer(attn)))
      return failure();
  TaskFields fields = taskFields(op);
  Instr instr{Instr::Task, op->getLoc()};
  instr.kernel = fields.kernel;
  instr.weights = std::move(fields.weights);
  instr.iparams = std::move(fields.iparams);
  instr.fparams = std::move(fields.fparams);
  for (Value operand : op->getOperands()) {
    FailureOr<int32_t> slot = readSlot(op, operand, *pool);
    if (failed(slot))
      return failure();
    instr.inputs.push_back(*slot);
  }
  Value result = op->getResult(0);
  if (auto logits = dyn_cast<model::LogitsType>(result.getType()))
    instr.outputs.push_back(
        newSlot(result, SlotKind::Logits, logits.getVocab(), *pool));
  else
    instr.outputs.push_back(
        newSlot(result, SlotKind::Hidden,
                cast<model::HiddenType>(result.getType()).getWidth(), *pool));
  streams[*pool].push_back(std::move(instr));
  return success();
}

LogicalResult Lowering::lowerTransfer(model::TransferOp transfer) {
  Pool from = transfer.getFrom(), to = transfer.getTo();
  FailureOr<int32_t> source = readSlot(transfer, transfer.getInput(), from);
  if (failed(source))
    return failure();
  int64_t width = transfer.getType().getWidth();
  auto [it, inserted] = channels.insert(
      {ChannelKey{from, to, width},
       ChannelDecl{static_cast<int32_t>(channels.size())}});
  ChannelDecl &channel = it->second;
  int32_t seq = ++channel.perStep;
  Instr send{Instr::Send, transfer.getLoc()};
  send.slot = *source;
  send.channel = channel.id;
  send.seq = seq;
  streams[from].push_back(std::move(send));
  Instr recv{Instr::Recv, transfer.getLoc()};
  recv.slot = newSlot(transfer, SlotKind::Hidden, width, to);
  recv.channel = channel.id;
  recv.seq = seq;
  streams[to].push_back(std::move(recv));
  return success();
}

LogicalResult Lowering::run() {
  FunctionType type = func.getFunctionType();
  if (type.getNumInputs() != 1 || !isa<model::TokenIdsType>(type.getInput(0)) ||
      type.getNumResults() != 1 ||
      !isa<model::LogitsType>(type.getResult(0)))
    return func.emitOpError()
           << "expects the signature (!model.ids) -> !model.logits<V> but got "
           << type;
  if (!func.getBody().hasOneBlock())
    return func.emitOpError() << "expects a single block";
  Block &body = func.getBody().front();

  // The runtime writes the ids into the pool of their first user.
  BlockArgument ids = body.getArgument(0);
  Pool idsPool = Pool::KV;
  for (Operation &op : body)
    if (llvm::is_contained(op.getOperands(), ids))
      if (auto placed = dyn_cast<model::PlacedOpInterface>(op))
        if (std::optional<Pool> pool = placed.getPlacement()) {
          idsPool = *pool;
          break;
        }
  newSlot(ids, SlotKind::TokenIds, 1, idsPool);

  for (Operation &op : body) {
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](model::TransferOp transfer) {
              return lowerTransfer(transfer);
            })
            .Case([&](model::PlacedOpInterface placed) {
              return lowerCompute(placed);
            })
            .Case([&](func::ReturnOp ret) -> LogicalResult {
              auto it = slotOf.find(ret.getOperand(0));
              if (it == slotOf.end())
                return ret.emitOpError()
                       << "expects to return logits produced by a lowered op";
              outputSlot = it->second;
              return success();
            })
            .Default([&](Operation *other) {
              return other->emitOpError()
                     << "cannot be lowered to exec streams";
            });
    if (failed(result))
      return failure();
  }

  // KV layers become a dense table indexed by Attention.iparams[0].
  int64_t expected = 0;
  for (auto &[layer, geometry] : kvLayers) {
    if (layer != expected)
      return func.emitOpError() << "expects kv_layer indices 0.."
                                << kvLayers.size() - 1 << " but " << expected
                                << " is missing";
    ++expected;
  }
  return success();
}

exec::ProgramOp Lowering::build(OpBuilder &builder) {
  MLIRContext *ctx = builder.getContext();
  Location loc = func.getLoc();
  auto i32 = [&](int64_t v) { return builder.getI32IntegerAttr(v); };
  auto i64 = [&](int64_t v) { return builder.getI64IntegerAttr(v); };
  auto program =
      builder.create<exec::ProgramOp>(loc, i32(0), i32(outputSlot));
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToStart(&program.getBody().emplaceBlock());
  auto poolAttr = [&](Pool pool) { return model::PoolAttr::get(ctx, pool); };

  for (auto [id, slot] : llvm::enumerate(slots))
    builder.create<exec::SlotOp>(
        loc, i32(id), exec::SlotKindAttr::get(ctx, slot.kind), i64(slot.width),
        poolAttr(slot.pool));
  for (auto &[key, channel] : channels) {
    auto [from, to, width] = key;
    builder.create<exec::ChannelOp>(loc, i32(channel.id), poolAttr(from),
                                    poolAttr(to), i64(width),
                                    i32(channel.perStep));
  }
  for (auto &[layer, geometry] : kvLayers)
    builder.create<exec::KvLayerOp>(loc, i32(layer), i64(geometry.first),
                                    i64(geometry.second));
  for (auto &[pool, instrs] : streams) {
    auto stream = builder.create<exec::StreamOp>(loc, poolAttr(pool));
    OpBuilder::InsertionGuard streamGuard(builder);
    builder.setInsertionPointToStart(&stream.getBody().emplaceBlock());
    for (Instr &instr : instrs) {
      switch (instr.opcode) {
      case Instr::Task:
        builder.create<exec::TaskOp>(
            instr.loc, exec::KernelAttr::get(ctx, instr.kernel),
            builder.getDenseI32ArrayAttr(instr.inputs),
            builder.getDenseI32ArrayAttr(instr.outputs),
            instr.weights.empty() ? ArrayAttr()
                                  : builder.getArrayAttr(instr.weights),
            builder.getDenseI64ArrayAttr(instr.iparams),
            builder.getDenseF64ArrayAttr(instr.fparams));
        break;
      case Instr::Send:
        builder.create<exec::SendOp>(instr.loc, i32(instr.slot),
                                     i32(instr.channel), i32(instr.seq));
        break;
      case Instr::Recv:
        builder.create<exec::RecvOp>(instr.loc, i32(instr.slot),
                                     i32(instr.channel), i32(instr.seq));
        break;
      }
    }
  }
  return program;
}

struct LowerControlPass
    : crosspool::impl::LowerControlBase<LowerControlPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto func = module.lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      module.emitError() << "expects a func.func @forward to lower";
      return signalPassFailure();
    }
    if (!module.getOps<exec::ProgramOp>().empty()) {
      module.emitError() << "expects no exec.program before lowering";
      return signalPassFailure();
    }
    Lowering lowering(func);
    if (failed(lowering.run()))
      return signalPassFailure();

    OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
    exec::ProgramOp program = lowering.build(builder);
    func.erase();
    numSlots = lowering.slots.size();
    numChannels = lowering.channels.size();
    for (auto &[pool, instrs] : lowering.streams)
      numInstructions += instrs.size();
    // The static stream check: a failure here is a lowering bug, reported
    // on the offending exec op rather than as invalid IR after the pass.
    if (failed(verify(program)))
      return signalPassFailure();
  }
};

} // namespace
