//===- Passes.cpp - CrossPool pipelines ------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

void crosspool::buildCrossPoolPipeline(OpPassManager &pm) {
  pm.addPass(createPartitionPools());
  pm.addPass(createInsertTransfers());
  pm.addPass(createLowerControl());
}

void crosspool::registerCrossPoolPipelines() {
  PassPipelineRegistration<>(
      "crosspool-pipeline",
      "Partition into pools, insert transfers and lower to exec streams",
      buildCrossPoolPipeline);
}
