//===- ExecOps.cpp - Ops of the execution dialect -----------------------===//
#include "dialects/Exec/IR/ExecOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::crosspool;
using namespace mlir::crosspool::exec;

//===----------------------------------------------------------------------===//
// Kernel signatures
//===----------------------------------------------------------------------===//

KernelSignature exec::getKernelSignature(Kernel kernel) {
  static const unsigned kAttentionOptional[] = {4, 5, 6, 7, 8, 9};
  static const unsigned kMoeOptional[] = {1, 2, 3, 4};
  switch (kernel) {
  case Kernel::Embed:
    return {1, 1, 1, 0, 0, SlotKind::TokenIds, SlotKind::Hidden, {}};
  case Kernel::RmsNorm:
    return {1, 1, 1, 0, 1, SlotKind::Hidden, SlotKind::Hidden, {}};
  case Kernel::Attention:
    return {1, 1, 10, 7, 5, SlotKind::Hidden, SlotKind::Hidden,
            kAttentionOptional};
  case Kernel::Add:
    return {2, 1, 0, 0, 0, SlotKind::Hidden, SlotKind::Hidden, {}};
  case Kernel::Moe:
    return {1, 1, 5, 3, 0, SlotKind::Hidden, SlotKind::Hidden, kMoeOptional};
  case Kernel::Mlp:
    return {1, 1, 3, 0, 0, SlotKind::Hidden, SlotKind::Hidden, {}};
  case Kernel::LmHead:
    return {1, 1, 1, 0, 0, SlotKind::Hidden, SlotKind::Logits, {}};
  }
  llvm_unreachable("unknown kernel");
}

int64_t exec::expectedWeightCount(Kernel kernel, ArrayRef<int64_t> iparams) {
  KernelSignature sig = getKernelSignature(kernel);
  if (kernel == Kernel::Moe && !iparams.empty())
    return sig.numWeights + 3 * iparams[0];
  return sig.numWeights;
}

//===----------------------------------------------------------------------===//
// custom<WeightRefs>: `@a, none, @b` inside `weights(...)`
//===----------------------------------------------------------------------===//

static ParseResult parseWeightRefs(OpAsmParser &parser, ArrayAttr &weights) {
  MLIRContext *ctx = parser.getContext();
  SmallVector<Attribute> refs;
  auto parseOne = [&]() -> ParseResult {
    if (succeeded(parser.parseOptionalKeyword("none"))) {
      refs.push_back(UnitAttr::get(ctx));
      return success();
    }
    StringAttr name;
    if (parser.parseSymbolName(name))
      return failure();
    refs.push_back(FlatSymbolRefAttr::get(name));
    return success();
  };
  if (parser.parseCommaSeparatedList(parseOne))
    return failure();
  weights = ArrayAttr::get(ctx, refs);
  return success();
}

static void printWeightRefs(OpAsmPrinter &printer, Operation *,
                            ArrayAttr weights) {
  llvm::interleaveComma(weights, printer, [&](Attribute ref) {
    if (isa<UnitAttr>(ref))
      printer << "none";
    else
      printer << ref;
  });
}

#define GET_OP_CLASSES
#include "dialects/Exec/IR/ExecOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

LogicalResult SlotOp::verify() {
  if (getKind() == SlotKind::TokenIds && getWidth() != 1)
    return emitOpError() << "expects width 1 for a token_ids slot but got "
                         << getWidth();
  return success();
}

LogicalResult ChannelOp::verify() {
  if (getFrom() == getTo())
    return emitOpError() << "expects different pools but both are "
                         << model::stringifyPool(getFrom());
  return success();
}

LogicalResult ProgramOp::verifyRegions() { return verifyProgram(*this); }

//===----------------------------------------------------------------------===//
// TaskOp
//===----------------------------------------------------------------------===//

/// Kernel-specific parameter ranges the kernels rely on.
static LogicalResult verifyParams(TaskOp task) {
  ArrayRef<int64_t> ip = task.getIparams();
  ArrayRef<Attribute> weights = task.getWeightRefs();
  auto present = [&](unsigned i) { return !isa<UnitAttr>(weights[i]); };
  switch (task.getKernel()) {
  case Kernel::Attention: {
    int64_t heads = ip[1], kvHeads = ip[2], headDim = ip[3];
    if (ip[0] < 0)
      return task.emitOpError() << "expects a non-negative kv layer but got "
                                << ip[0];
    if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
      return task.emitOpError()
             << "expects num_heads a positive multiple of num_kv_heads but got "
             << heads << " and " << kvHeads;
    if (headDim <= 0 || headDim % 2 != 0)
      return task.emitOpError() << "expects a positive even head_dim but got "
                                << headDim;
    if (ip[4] < 0 || ip[4] > 2)
      return task.emitOpError() << "expects qk_norm in [0, 2] but got " << ip[4];
    if (ip[5] < 0)
      return task.emitOpError()
             << "expects a non-negative sliding_window but got " << ip[5];
    if (ip[6] < 0 || ip[6] > 1)
      return task.emitOpError() << "expects rope_type in [0, 1] but got "
                                << ip[6];
    bool norms = present(8) && present(9);
    if ((ip[4] != 0) != norms || (!norms && (present(8) || present(9))))
      return task.emitOpError()
             << "expects q_norm and k_norm weights exactly when qk_norm != 0 "
                "(qk_norm "
             << ip[4] << ")";
    return success();
  }
  case Kernel::Moe: {
    int64_t experts = ip[0], topK = ip[1];
    if (topK < 1 || topK > experts)
      return task.emitOpError() << "expects top_k in [1, " << experts
                                << "] but got " << topK;
    if (ip[2] != 0 && ip[2] != 1)
      return task.emitOpError() << "expects norm_topk_prob 0 or 1 but got "
                                << ip[2];
    bool shared = present(1) && present(2) && present(3);
    if (!shared && (present(1) || present(2) || present(3) || present(4)))
      return task.emitOpError()
             << "expects the shared expert weights all present or all absent";
    return success();
  }
  default:
    return success();
  }
}

LogicalResult TaskOp::verify() {
  Kernel kernel = getKernel();
  StringRef name = stringifyKernel(kernel);
  KernelSignature sig = getKernelSignature(kernel);
  auto count = [&](StringRef what, size_t actual,
                   int64_t expected) -> LogicalResult {
    if (static_cast<int64_t>(actual) == expected)
      return success();
    return emitOpError() << "expects " << expected << " " << what << " for "
                         << name << " but got " << actual;
  };
  if (failed(count("inputs", getInputs().size(), sig.numInputs)) ||
      failed(count("outputs", getOutputs().size(), sig.numOutputs)) ||
      failed(count("iparams", getIparams().size(), sig.numIparams)) ||
      failed(count("fparams", getFparams().size(), sig.numFparams)))
    return failure();
  if (kernel == Kernel::Moe && getIparams()[0] <= 0)
    return emitOpError() << "expects a positive expert count but got "
                         << getIparams()[0];
  if (failed(count("weights", getWeightRefs().size(),
                   expectedWeightCount(kernel, getIparams()))))
    return failure();
  for (auto [i, ref] : llvm::enumerate(getWeightRefs())) {
    if (!isa<UnitAttr>(ref) || llvm::is_contained(sig.optionalWeights, i))
      continue;
    return emitOpError() << "expects weight " << i << " of " << name
                         << " to be present";
  }
  return verifyParams(*this);
}

LogicalResult TaskOp::verifySymbolUses(SymbolTableCollection &tables) {
  model::Pool pool = cast<StreamOp>(getOperation()->getParentOp()).getPool();
  for (Attribute ref : getWeightRefs()) {
    auto symbol = dyn_cast<FlatSymbolRefAttr>(ref);
    if (!symbol)
      continue;
    auto weight = tables.lookupNearestSymbolFrom<model::WeightOp>(*this, symbol);
    if (!weight)
      return emitOpError() << "expects " << symbol
                           << " to name a model.weight";
    std::optional<model::Pool> weightPool = weight.getPool();
    if (weightPool && *weightPool != pool)
      return emitOpError() << "expects weight " << symbol << " in pool "
                           << model::stringifyPool(pool) << " but it is in pool "
                           << model::stringifyPool(*weightPool);
  }
  return success();
}
