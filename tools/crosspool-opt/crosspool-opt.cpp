//===- crosspool-opt.cpp - Run CrossPool passes on .mlir files -----------===//
//
// mlir-opt with the CrossPool dialects, passes and pipelines, for reading
// and tuning IR (e.g. --crosspool-pipeline --mlir-print-ir-after-all).
//
//===----------------------------------------------------------------------===//
#include "compiler/InitAll.h"

#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::crosspool::registerAllDialects(registry);
  mlir::crosspool::registerAllPasses();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "CrossPool optimizer driver\n", registry));
}
