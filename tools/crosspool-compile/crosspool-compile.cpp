//===- crosspool-compile.cpp - Checkpoint directory -> pool plan ---------===//
//
//   crosspool-compile CHECKPOINT_DIR -o model.cpplan
//       [--emit=plan|mlir] [--stage=import|partition|transfers|exec]
//
// Imports a Hugging Face checkpoint, builds the model dialect, runs the
// CrossPool pipeline up to --stage and writes the plan (or the IR at that
// stage). Every failure is one line `crosspool-compile: error: ...`, exit 1.
//
//===----------------------------------------------------------------------===//
#include "compiler/InitAll.h"
#include "compiler/ModelBuilder.h"
#include "compiler/importer/Importer.h"
#include "passes/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

using namespace mlir;
namespace cl = llvm::cl;

namespace {

enum class Emit { Plan, Mlir };
enum class Stage { Import, Partition, Transfers, Exec };

cl::opt<std::string> checkpointDir(cl::Positional, cl::Required,
                                   cl::desc("<checkpoint dir>"));
cl::opt<std::string> outputPath("o", cl::desc("Output file ('-' = stdout)"),
                                cl::value_desc("path"), cl::init(""));
cl::opt<Emit> emit("emit", cl::desc("What to write"), cl::init(Emit::Plan),
                   cl::values(clEnumValN(Emit::Plan, "plan",
                                         "the FlatBuffers pool plan (default)"),
                              clEnumValN(Emit::Mlir, "mlir",
                                         "the IR at --stage, as text")));
cl::opt<Stage> stage(
    "stage", cl::desc("Last compilation stage to run"), cl::init(Stage::Exec),
    cl::values(clEnumValN(Stage::Import, "import", "model dialect as imported"),
               clEnumValN(Stage::Partition, "partition",
                          "after crosspool-partition-pools"),
               clEnumValN(Stage::Transfers, "transfers",
                          "after crosspool-insert-transfers"),
               clEnumValN(Stage::Exec, "exec",
                          "after crosspool-lower-control (default)")));

int fail(const llvm::Twine &message) {
  llvm::errs() << "crosspool-compile: error: " << message << "\n";
  return 1;
}

/// Writes `bytes` to `path` ("-" or empty: stdout).
int writeOutput(StringRef path, StringRef bytes) {
  std::string error;
  std::unique_ptr<llvm::ToolOutputFile> file =
      openOutputFile(path.empty() ? "-" : path, &error);
  if (!file)
    return fail(error); // Names the file and the system error.
  file->os() << bytes;
  file->os().flush();
  if (file->os().has_error()) {
    std::string message = file->os().error().message();
    file->os().clear_error();
    return fail("cannot write output '" + path + "': " + message);
  }
  file->keep();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv, "CrossPool compiler: Hugging Face checkpoint -> pool plan\n");

  if (emit == Emit::Plan && stage != Stage::Exec)
    return fail("--emit=plan needs --stage=exec (use --emit=mlir to see an "
                "earlier stage)");
  if (emit == Emit::Plan && (outputPath.empty() || outputPath == "-"))
    return fail("--emit=plan needs an output file (-o model.cpplan)");
  if (!llvm::sys::fs::is_directory(checkpointDir))
    return fail("checkpoint directory '" + checkpointDir +
                "' does not exist or is not a directory");

  DialectRegistry registry;
  mlir::crosspool::registerAllDialects(registry);
  MLIRContext context(registry);
  // One line per error, location first when there is one; notes add nothing
  // a user needs to fix the input.
  ScopedDiagnosticHandler handler(&context, [](Diagnostic &diag) {
    if (diag.getSeverity() != DiagnosticSeverity::Error)
      return success();
    std::string where;
    if (auto name = dyn_cast<NameLoc>(diag.getLocation()))
      where = name.getName().str() + ": ";
    else if (auto file = dyn_cast<FileLineColLoc>(diag.getLocation()))
      where = (file.getFilename().str() + ":" +
               std::to_string(file.getLine()) + ": ");
    llvm::errs() << "crosspool-compile: error: " << where << diag.str()
                 << "\n";
    return success();
  });

  absl::StatusOr<::crosspool::compiler::ModelSpec> spec =
      ::crosspool::compiler::importCheckpoint(checkpointDir);
  if (!spec.ok())
    return fail(std::string(spec.status().message()));

  OwningOpRef<ModuleOp> module =
      ::crosspool::compiler::buildModelModule(context, *spec);
  if (!module)
    return 1;

  PassManager pm(&context);
  if (stage >= Stage::Partition)
    pm.addPass(mlir::crosspool::createPartitionPools());
  if (stage >= Stage::Transfers)
    pm.addPass(mlir::crosspool::createInsertTransfers());
  if (stage >= Stage::Exec)
    pm.addPass(mlir::crosspool::createLowerControl());
  if (failed(pm.run(*module)))
    return 1;

  if (emit == Emit::Mlir) {
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os);
    os << "\n";
    return writeOutput(outputPath, text);
  }
  std::string plan;
  if (failed(mlir::crosspool::serializePlan(*module, plan)))
    return 1;
  return writeOutput(outputPath, plan);
}
