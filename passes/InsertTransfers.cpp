//===- InsertTransfers.cpp - Explicit hidden-state moves between pools -----===//
//
// After partitioning, a value produced in one pool and used in the other
// must be moved; making each move an op lets lower-control turn it into a
// send/receive pair and lets a reader count the traffic per layer.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Model/IR/ModelOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::crosspool {
#define GEN_PASS_DEF_INSERTTRANSFERS
#include "passes/Passes.h.inc"
} // namespace mlir::crosspool

using namespace mlir;
using namespace mlir::crosspool;
using model::Pool;

namespace {

struct InsertTransfersPass
    : crosspool::impl::InsertTransfersBase<InsertTransfersPass> {
  void runOnOperation() override {
    pools.clear();
    transfers.clear();
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(insertTransfers(func)))
        return signalPassFailure();
  }

  LogicalResult insertTransfers(func::FuncOp func) {
    SmallVector<model::PlacedOpInterface> placed;
    WalkResult walk = func.walk([&](model::PlacedOpInterface op) {
      if (!op.getPlacement()) {
        op->emitOpError() << "expects a pool placement (run "
                             "crosspool-partition-pools first)";
        return WalkResult::interrupt();
      }
      placed.push_back(op);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return failure();

    // Arguments are written by the runtime into the pool of their first
    // user, in program order.
    for (model::PlacedOpInterface op : placed)
      for (Value operand : op->getOperands())
        if (isa<BlockArgument>(operand))
          pools.try_emplace(operand, *op.getPlacement());

    // Existing transfers are reused, so the pass is idempotent.
    func.walk([&](model::TransferOp transfer) {
      transfers.try_emplace({transfer.getInput(), transfer.getTo()}, transfer);
    });

    for (model::PlacedOpInterface op : placed) {
      Pool userPool = *op.getPlacement();
      for (OpOperand &operand : op->getOpOperands()) {
        Value value = operand.get();
        std::optional<Pool> valuePool = poolOf(value);
        if (!valuePool || *valuePool == userPool)
          continue;
        // Moving a moved value back: use the original.
        if (auto back = value.getDefiningOp<model::TransferOp>();
            back && back.getFrom() == userPool) {
          operand.set(back.getInput());
          continue;
        }
        if (!isa<model::HiddenType>(value.getType()))
          return op->emitOpError()
                 << "expects only !model.hidden values to cross pools but "
                    "operand "
                 << operand.getOperandNumber() << " of type "
                 << value.getType() << " comes from pool "
                 << model::stringifyPool(*valuePool);
        operand.set(transferOf(value, *valuePool, userPool));
      }
    }
    return success();
  }

  std::optional<Pool> poolOf(Value value) {
    if (auto transfer = value.getDefiningOp<model::TransferOp>())
      return transfer.getTo();
    if (auto op = value.getDefiningOp<model::PlacedOpInterface>())
      return op.getPlacement();
    auto it = pools.find(value);
    if (it == pools.end())
      return std::nullopt;
    return it->second;
  }

  /// The one transfer of `value` into pool `to`, created right after the
  /// producer so the send can start as early as possible.
  Value transferOf(Value value, Pool from, Pool to) {
    auto [it, inserted] = transfers.try_emplace({value, to});
    if (!inserted)
      return it->second;
    OpBuilder builder(&getContext());
    builder.setInsertionPointAfterValue(value);
    MLIRContext *ctx = &getContext();
    auto transfer = builder.create<model::TransferOp>(
        value.getLoc(), value.getType(), value, model::PoolAttr::get(ctx, from),
        model::PoolAttr::get(ctx, to));
    ++numTransfers;
    it->second = transfer;
    return transfer;
  }

  DenseMap<Value, Pool> pools;
  DenseMap<std::pair<Value, Pool>, model::TransferOp> transfers;
};

} // namespace
