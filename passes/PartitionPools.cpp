//===- PartitionPools.cpp - Place model ops and weights in pools -----------===//
//
// The attention / FFN cut of DESIGN.md: attention-side work stays with its KV
// cache, FFN work (most of an MoE model's bytes) goes to the weights pool.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Model/IR/ModelOps.h"

#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::crosspool {
#define GEN_PASS_DEF_PARTITIONPOOLS
#include "passes/Passes.h.inc"
} // namespace mlir::crosspool

using namespace mlir;
using namespace mlir::crosspool;
using model::Pool;

namespace {

/// FFN blocks run next to their weights; everything else next to the KV
/// cache and the residual stream.
Pool homePool(Operation *op) {
  return isa<model::MoeOp, model::MlpOp>(op) ? Pool::Weights : Pool::KV;
}

struct PartitionPoolsPass
    : crosspool::impl::PartitionPoolsBase<PartitionPoolsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    // Weight -> (pool, first user in that pool), in first-use order.
    llvm::MapVector<Operation *, std::pair<Pool, Operation *>> placement;
    WalkResult walk = module.walk([&](model::PlacedOpInterface placed) {
      Operation *op = placed;
      Pool pool = homePool(op);
      placed.setPlacement(pool);
      ++(pool == Pool::KV ? numKvOps : numWeightsOps);
      std::optional<SymbolTable::UseRange> uses = SymbolTable::getSymbolUses(op);
      if (!uses)
        return WalkResult::advance();
      for (const SymbolTable::SymbolUse &use : *uses) {
        auto weight = symbols.lookup<model::WeightOp>(
            use.getSymbolRef().getLeafReference());
        if (!weight)
          continue; // The op verifier reports unresolved symbols.
        auto [it, inserted] = placement.insert({weight, {pool, op}});
        if (inserted || it->second.first == pool)
          continue;
        InFlightDiagnostic diag =
            weight.emitError()
            << "weight @" << weight.getSymName()
            << " is used from both pools: expects it in pool "
            << model::stringifyPool(it->second.first) << " but "
            << op->getName() << " in pool " << model::stringifyPool(pool)
            << " uses it";
        diag.attachNote(it->second.second->getLoc())
            << "first used here in pool "
            << model::stringifyPool(it->second.first);
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();

    for (auto &[op, poolAndUser] : placement) {
      auto weight = cast<model::WeightOp>(op);
      Pool pool = poolAndUser.first;
      weight.setPoolAttr(model::PoolAttr::get(&getContext(), pool));
      (pool == Pool::KV ? kvWeightBytes : weightsPoolBytes) +=
          weight.getNbytes();
    }
  }
};

} // namespace
