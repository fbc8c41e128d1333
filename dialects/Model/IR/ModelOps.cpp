//===- ModelOps.cpp - Ops of the model dialect --------------------------===//
//
// Local verifiers check attributes against each other; verifySymbolUses
// checks each referenced weight exists and has the shape the op's attributes
// and operand widths imply.
//
//===----------------------------------------------------------------------===//
#include "dialects/Model/IR/ModelOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>

using namespace mlir;
using namespace mlir::crosspool::model;

#include "dialects/Model/IR/ModelInterfaces.cpp.inc"

#define GET_OP_CLASSES
#include "dialects/Model/IR/ModelOps.cpp.inc"

namespace {

/// Wildcard dimension for weights whose extent no attribute fixes (the
/// intermediate size of an expert); it is then checked for consistency.
constexpr int64_t kAnyDim = -1;

/// Prints `[a, b]`.
std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s = "[";
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(shape, os, [&](int64_t d) {
    if (d == kAnyDim)
      os << "?";
    else
      os << d;
  });
  os << "]";
  return s;
}

/// Resolves `ref` to a model.weight and checks its shape against `expected`
/// (kAnyDim matches anything). `role` names the operand slot in diagnostics.
FailureOr<WeightOp> checkWeight(Operation *op, SymbolTableCollection &tables,
                                FlatSymbolRefAttr ref, StringRef role,
                                ArrayRef<int64_t> expected) {
  Operation *symbol = tables.lookupNearestSymbolFrom(op, ref);
  if (!symbol)
    return op->emitOpError() << "expects " << role
                             << " to name a model.weight but " << ref
                             << " does not exist";
  auto weight = dyn_cast<WeightOp>(symbol);
  if (!weight)
    return op->emitOpError() << "expects " << role
                             << " to name a model.weight but " << ref << " is a "
                             << symbol->getName();
  ArrayRef<int64_t> shape = weight.getTensorType().getShape();
  bool matches = shape.size() == expected.size() &&
                 llvm::all_of(llvm::zip(shape, expected), [](auto pair) {
                   auto [actual, want] = pair;
                   return want == kAnyDim || actual == want;
                 });
  if (!matches)
    return op->emitOpError()
           << "expects " << role << " " << ref << " of shape "
           << shapeString(expected) << " but got " << shapeString(shape);
  return weight;
}

LogicalResult checkOptionalWeight(Operation *op, SymbolTableCollection &tables,
                                  FlatSymbolRefAttr ref, StringRef role,
                                  ArrayRef<int64_t> expected) {
  if (!ref)
    return success();
  return checkWeight(op, tables, ref, role, expected);
}

/// Checks a SwiGLU triple: gate/up `[I, hidden]`, down `[hidden, I]` with one
/// intermediate size `I`.
LogicalResult checkSwiGlu(Operation *op, SymbolTableCollection &tables,
                          SwiGluAttr ffn, const Twine &role, int64_t hidden) {
  std::string gateRole = (role + " gate").str();
  FailureOr<WeightOp> gate =
      checkWeight(op, tables, ffn.getGate(), gateRole, {kAnyDim, hidden});
  if (failed(gate))
    return failure();
  int64_t inter = gate->getTensorType().getDimSize(0);
  std::string upRole = (role + " up").str();
  std::string downRole = (role + " down").str();
  if (failed(checkWeight(op, tables, ffn.getUp(), upRole, {inter, hidden})) ||
      failed(checkWeight(op, tables, ffn.getDown(), downRole, {hidden, inter})))
    return failure();
  return success();
}

int64_t widthOf(Value value) {
  return cast<HiddenType>(value.getType()).getWidth();
}

} // namespace

//===----------------------------------------------------------------------===//
// ConfigOp / WeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  RankedTensorType type = getTensorType();
  int64_t elementBytes = type.getElementType().getIntOrFloatBitWidth() / 8;
  int64_t expected = type.getNumElements() * elementBytes;
  if (getNbytes() != expected)
    return emitOpError() << "expects nbytes " << expected << " for " << type
                         << " but got " << getNbytes();
  if (getSynthetic()) {
    if (getFileAttr() || getOffsetAttr())
      return emitOpError()
             << "expects a synthetic weight to have no file and no offset";
    if (type.getElementType().isF16())
      return emitOpError() << "expects a synthetic weight of f32 or bf16 but "
                              "got "
                           << type;
  } else if (!getFileAttr() || !getOffsetAttr()) {
    return emitOpError()
           << "expects a file and an offset (or a synthetic attribute)";
  }
  return success();
}

LogicalResult
SyntheticAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                      uint64_t seed, SyntheticInit init, FloatAttr std) {
  double value = std ? std.getValueAsDouble() : 0.0;
  if (!std || !std::isfinite(value) || !(value > 0))
    return emitError() << "expects a finite positive std but got "
                       << (std ? std.getValueAsDouble() : 0.0);
  return success();
}

//===----------------------------------------------------------------------===//
// Compute ops
//===----------------------------------------------------------------------===//

LogicalResult EmbedOp::verifySymbolUses(SymbolTableCollection &tables) {
  return checkWeight(*this, tables, getWeightAttr(), "weight",
                     {kAnyDim, cast<HiddenType>(getType()).getWidth()});
}

LogicalResult RmsNormOp::verify() {
  if (!(getEps().convertToDouble() >= 0.0))
    return emitOpError() << "expects a non-negative eps but got "
                         << getEps().convertToDouble();
  return success();
}

LogicalResult RmsNormOp::verifySymbolUses(SymbolTableCollection &tables) {
  return checkWeight(*this, tables, getWeightAttr(), "weight",
                     {widthOf(getInput())});
}

LogicalResult AttentionOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads(), dim = getHeadDim();
  if (heads % kvHeads != 0)
    return emitOpError() << "expects num_heads (" << heads
                         << ") to be a multiple of num_kv_heads (" << kvHeads
                         << ")";
  // RoPE rotates the two halves of each head, so head_dim must be even.
  if (dim % 2 != 0)
    return emitOpError() << "expects an even head_dim but got " << dim;
  if (!(getSoftmaxScale().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive softmax_scale but got "
                         << getSoftmaxScale().convertToDouble();
  if (!(getRopeTheta().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive rope_theta but got "
                         << getRopeTheta().convertToDouble();
  if (!(getRopeFactor().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive rope_factor but got "
                         << getRopeFactor().convertToDouble();
  if (!(getClipQkv().convertToDouble() >= 0.0))
    return emitOpError() << "expects a non-negative clip_qkv but got "
                         << getClipQkv().convertToDouble();
  if (!(getQkNormEps().convertToDouble() >= 0.0))
    return emitOpError() << "expects a non-negative qk_norm_eps but got "
                         << getQkNormEps().convertToDouble();
  bool hasNorm = getQNormAttr() || getKNormAttr();
  bool bothNorms = getQNormAttr() && getKNormAttr();
  if (getQkNorm() == QkNorm::None && hasNorm)
    return emitOpError() << "expects no q_norm/k_norm weights with qk_norm "
                            "none";
  if (getQkNorm() != QkNorm::None && !bothNorms)
    return emitOpError() << "expects q_norm and k_norm weights with qk_norm "
                         << stringifyQkNorm(getQkNorm());
  return success();
}

LogicalResult AttentionOp::verifySymbolUses(SymbolTableCollection &tables) {
  int64_t hidden = widthOf(getInput());
  int64_t headDim = getHeadDim();
  int64_t qWidth = static_cast<int64_t>(getNumHeads()) * headDim;
  int64_t kvWidth = static_cast<int64_t>(getNumKvHeads()) * headDim;
  bool perHead = getQkNorm() == QkNorm::PerHead;
  Operation *op = *this;
  if (failed(checkWeight(op, tables, getQProjAttr(), "q_proj", {qWidth, hidden})) ||
      failed(checkWeight(op, tables, getKProjAttr(), "k_proj", {kvWidth, hidden})) ||
      failed(checkWeight(op, tables, getVProjAttr(), "v_proj", {kvWidth, hidden})) ||
      failed(checkWeight(op, tables, getOProjAttr(), "o_proj", {hidden, qWidth})) ||
      failed(checkOptionalWeight(op, tables, getQBiasAttr(), "q_bias", {qWidth})) ||
      failed(checkOptionalWeight(op, tables, getKBiasAttr(), "k_bias", {kvWidth})) ||
      failed(checkOptionalWeight(op, tables, getVBiasAttr(), "v_bias", {kvWidth})) ||
      failed(checkOptionalWeight(op, tables, getOBiasAttr(), "o_bias", {hidden})) ||
      failed(checkOptionalWeight(op, tables, getQNormAttr(), "q_norm",
                                 {perHead ? headDim : qWidth})) ||
      failed(checkOptionalWeight(op, tables, getKNormAttr(), "k_norm",
                                 {perHead ? headDim : kvWidth})))
    return failure();
  return success();
}

LogicalResult MoeOp::verify() {
  int64_t experts = getNumExperts(), topK = getTopK();
  if (topK > experts)
    return emitOpError() << "expects top_k <= num_experts (" << experts
                         << ") but got " << topK;
  if (static_cast<int64_t>(getExperts().size()) != experts)
    return emitOpError() << "expects " << experts << " experts but got "
                         << getExperts().size();
  if (getSharedExpertGateAttr() && !getSharedExpertAttr())
    return emitOpError() << "expects a shared_expert with a shared_expert_gate";
  return success();
}

LogicalResult MoeOp::verifySymbolUses(SymbolTableCollection &tables) {
  int64_t hidden = widthOf(getInput());
  Operation *op = *this;
  int64_t experts = getNumExperts();
  if (failed(checkWeight(op, tables, getRouterAttr(), "router",
                         {experts, hidden})))
    return failure();
  for (auto [i, expert] : llvm::enumerate(getExperts().getAsRange<SwiGluAttr>()))
    if (failed(checkSwiGlu(op, tables, expert, "expert " + Twine(i), hidden)))
      return failure();
  if (SwiGluAttr shared = getSharedExpertAttr())
    if (failed(checkSwiGlu(op, tables, shared, "shared_expert", hidden)))
      return failure();
  return checkOptionalWeight(op, tables, getSharedExpertGateAttr(),
                             "shared_expert_gate", {1, hidden});
}

LogicalResult MlpOp::verifySymbolUses(SymbolTableCollection &tables) {
  return checkSwiGlu(*this, tables, getFfn(), "ffn", widthOf(getInput()));
}

LogicalResult LmHeadOp::verifySymbolUses(SymbolTableCollection &tables) {
  return checkWeight(*this, tables, getWeightAttr(), "weight",
                     {cast<LogitsType>(getType()).getVocab(),
                      widthOf(getInput())});
}

LogicalResult TransferOp::verify() {
  if (getFrom() == getTo())
    return emitOpError() << "expects different pools but both are "
                         << stringifyPool(getFrom());
  return success();
}
