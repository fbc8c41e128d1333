//===- ModelBuilder.cpp - ModelSpec -> model dialect ---------------------===//
#include "compiler/ModelBuilder.h"

#include "dialects/Model/IR/ModelOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

#include <cmath>

using namespace mlir;
namespace cc = ::crosspool::compiler;
namespace model = ::mlir::crosspool::model;
namespace rt = ::crosspool::runtime;
using cc::AttentionSpec;
using cc::LayerSpec;
using cc::MlpSpec;
using cc::ModelSpec;
using cc::WeightRef;

namespace {

class SpecBuilder {
public:
  SpecBuilder(MLIRContext &context, const ModelSpec &spec)
      : ctx(&context), spec(spec), builder(&context) {}

  OwningOpRef<ModuleOp> build();

private:
  /// Declares `ref` as weight symbol `@symbol`; null after a diagnostic.
  FlatSymbolRefAttr weight(const WeightRef &ref, const Twine &symbol);
  FlatSymbolRefAttr optionalWeight(const std::optional<WeightRef> &ref,
                                   const Twine &symbol) {
    return ref ? weight(*ref, symbol) : FlatSymbolRefAttr();
  }
  model::SwiGluAttr swiGlu(const MlpSpec &mlp, const Twine &prefix);
  Value layer(Value hidden, const LayerSpec &spec, int64_t index);
  Value attention(Value x, const AttentionSpec &spec, int64_t index,
                  const std::string &prefix);
  Value ffn(Value x, const LayerSpec &spec, int64_t index,
            const std::string &prefix);
  Location loc(const Twine &name) {
    return NameLoc::get(StringAttr::get(ctx, name));
  }
  Value rmsNorm(Value x, const WeightRef &ref, const Twine &symbol,
                const Twine &name) {
    FlatSymbolRefAttr w = weight(ref, symbol);
    return builder.create<model::RmsNormOp>(loc(name), x.getType(), x, w,
                                            builder.getF64FloatAttr(spec.rmsNormEps),
                                            model::PoolAttr());
  }

  MLIRContext *ctx;
  const ModelSpec &spec;
  OpBuilder builder;
  ModuleOp module;
  Block *moduleBody = nullptr;
  bool failedWeight = false;
};

FlatSymbolRefAttr SpecBuilder::weight(const WeightRef &ref, const Twine &symbol) {
  Type element;
  switch (ref.dtype) {
  case rt::DType::kF32:
    element = builder.getF32Type();
    break;
  case rt::DType::kF16:
    element = builder.getF16Type();
    break;
  case rt::DType::kBF16:
    element = builder.getBF16Type();
    break;
  default:
    emitError(loc(ref.name)) << "weight '" << ref.name << "' has dtype "
                             << rt::dtypeName(ref.dtype)
                             << " but expects F32, F16 or BF16";
    failedWeight = true;
    return FlatSymbolRefAttr::get(ctx, symbol.str());
  }
  OpBuilder::InsertionGuard guard(builder);
  // Weights precede the function, in the order they are first used.
  builder.setInsertionPoint(moduleBody, std::prev(moduleBody->end()));
  model::SyntheticAttr synthetic;
  if (ref.synthetic)
    synthetic = model::SyntheticAttr::get(
        ctx, ref.seed,
        ref.init == ::crosspool::synthetic::InitKind::kOnePlusNormal
            ? model::SyntheticInit::OnePlusNormal
            : model::SyntheticInit::Normal,
        builder.getF64FloatAttr(ref.initStd));
  auto op = builder.create<model::WeightOp>(
      loc(ref.name), builder.getStringAttr(symbol),
      TypeAttr::get(RankedTensorType::get(ref.shape, element)),
      builder.getStringAttr(ref.name),
      ref.synthetic ? StringAttr() : builder.getStringAttr(ref.file),
      ref.synthetic ? IntegerAttr() : builder.getI64IntegerAttr(ref.offset),
      builder.getI64IntegerAttr(ref.nbytes), model::PoolAttr(), synthetic);
  return FlatSymbolRefAttr::get(op.getSymNameAttr());
}

model::SwiGluAttr SpecBuilder::swiGlu(const MlpSpec &mlp, const Twine &prefix) {
  FlatSymbolRefAttr gate = weight(mlp.gate, prefix + "_gate");
  FlatSymbolRefAttr up = weight(mlp.up, prefix + "_up");
  FlatSymbolRefAttr down = weight(mlp.down, prefix + "_down");
  return model::SwiGluAttr::get(ctx, gate, up, down);
}

Value SpecBuilder::attention(Value x, const AttentionSpec &a, int64_t index,
                         const std::string &prefix) {
  auto qkNorm = a.qkNorm == cc::QkNorm::kPerHead ? model::QkNorm::PerHead
                : a.qkNorm == cc::QkNorm::kFull  ? model::QkNorm::Full
                                                       : model::QkNorm::None;
  auto ropeType = spec.ropeType == cc::RopeType::kLinear
                      ? model::RopeType::Linear
                      : model::RopeType::Default;
  // Hugging Face scales scores by head_dim^-0.5 in all supported families.
  double softmaxScale = 1.0 / std::sqrt(static_cast<double>(a.headDim));
  auto f64 = [&](double v) { return builder.getF64FloatAttr(v); };
  auto i64 = [&](int64_t v) { return builder.getI64IntegerAttr(v); };
  // Declared one per statement so weights appear in a fixed order.
  FlatSymbolRefAttr q = weight(a.q, prefix + "_q_proj");
  FlatSymbolRefAttr k = weight(a.k, prefix + "_k_proj");
  FlatSymbolRefAttr v = weight(a.v, prefix + "_v_proj");
  FlatSymbolRefAttr o = weight(a.o, prefix + "_o_proj");
  FlatSymbolRefAttr qBias = optionalWeight(a.qBias, prefix + "_q_bias");
  FlatSymbolRefAttr kBias = optionalWeight(a.kBias, prefix + "_k_bias");
  FlatSymbolRefAttr vBias = optionalWeight(a.vBias, prefix + "_v_bias");
  FlatSymbolRefAttr oBias = optionalWeight(a.oBias, prefix + "_o_bias");
  FlatSymbolRefAttr qNorm = optionalWeight(a.qNorm, prefix + "_q_norm");
  FlatSymbolRefAttr kNorm = optionalWeight(a.kNorm, prefix + "_k_norm");
  return builder.create<model::AttentionOp>(
      loc("model.layers." + Twine(index) + ".self_attn"), x.getType(), x,
      i64(index), i64(a.numHeads), i64(a.numKvHeads), i64(a.headDim),
      f64(softmaxScale), f64(spec.ropeTheta),
      model::RopeTypeAttr::get(ctx, ropeType), f64(spec.ropeFactor),
      model::QkNormAttr::get(ctx, qkNorm), f64(spec.rmsNormEps),
      f64(a.clipQkv), i64(a.slidingWindow), q, k, v, o, qBias, kBias, vBias,
      oBias, qNorm, kNorm, model::PoolAttr());
}

Value SpecBuilder::ffn(Value x, const LayerSpec &l, int64_t index,
                   const std::string &prefix) {
  if (l.mlp)
    return builder.create<model::MlpOp>(
        loc("model.layers." + Twine(index) + ".mlp"), x.getType(), x,
        swiGlu(*l.mlp, prefix + "_mlp"), model::PoolAttr());
  const cc::MoeSpec &moe = *l.moe;
  FlatSymbolRefAttr router = weight(moe.router, prefix + "_router");
  SmallVector<Attribute> experts;
  for (auto [e, expert] : llvm::enumerate(moe.experts))
    experts.push_back(swiGlu(expert, prefix + "_expert_" + Twine(e)));
  model::SwiGluAttr shared;
  if (moe.sharedExpert)
    shared = swiGlu(*moe.sharedExpert, prefix + "_shared");
  return builder.create<model::MoeOp>(
      loc("model.layers." + Twine(index) + ".mlp"), x.getType(), x,
      builder.getI64IntegerAttr(moe.numExperts),
      builder.getI64IntegerAttr(moe.topK),
      builder.getBoolAttr(moe.normTopkProb), router,
      builder.getArrayAttr(experts), shared,
      optionalWeight(moe.sharedExpertGate, prefix + "_shared_expert_gate"),
      model::PoolAttr());
}

Value SpecBuilder::layer(Value hidden, const LayerSpec &l, int64_t index) {
  std::string prefix = "layers_" + std::to_string(index);
  std::string name = "model.layers." + std::to_string(index);
  Value normed = rmsNorm(hidden, l.inputNorm, prefix + "_input_norm",
                         name + ".input_layernorm");
  Value attn = attention(normed, l.attention, index, prefix);
  Value mid = builder.create<model::AddOp>(loc(name + ".residual_attn"), hidden,
                                           attn, model::PoolAttr());
  Value normed2 = rmsNorm(mid, l.postAttentionNorm, prefix + "_post_norm",
                          name + ".post_attention_layernorm");
  Value ff = ffn(normed2, l, index, prefix);
  return builder.create<model::AddOp>(loc(name + ".residual_mlp"), mid, ff,
                                      model::PoolAttr());
}

OwningOpRef<ModuleOp> SpecBuilder::build() {
  ctx->loadDialect<model::ModelDialect, func::FuncDialect>();
  OwningOpRef<ModuleOp> owned = ModuleOp::create(loc(spec.name));
  module = *owned;
  moduleBody = module.getBody();
  builder.setInsertionPointToEnd(moduleBody);
  builder.create<model::ConfigOp>(
      loc(spec.name), builder.getStringAttr(spec.name),
      builder.getStringAttr(spec.architecture),
      builder.getStringAttr(spec.checkpointDir),
      builder.getI64IntegerAttr(spec.vocabSize),
      builder.getI64IntegerAttr(spec.hiddenSize),
      builder.getI64IntegerAttr(spec.maxPositionEmbeddings),
      builder.getDenseI64ArrayAttr(spec.eosTokenIds));

  auto hiddenType = model::HiddenType::get(ctx, spec.hiddenSize);
  auto logitsType = model::LogitsType::get(ctx, spec.vocabSize);
  auto funcType = builder.getFunctionType({model::TokenIdsType::get(ctx)},
                                          {logitsType});
  auto func = builder.create<func::FuncOp>(loc(spec.name), "forward", funcType);
  Block *body = func.addEntryBlock();
  builder.setInsertionPointToStart(body);

  Value h = builder.create<model::EmbedOp>(
      loc("model.embed_tokens"), hiddenType, body->getArgument(0),
      weight(spec.embed, "embed"), model::PoolAttr());
  for (auto [i, l] : llvm::enumerate(spec.layers)) {
    if (l.moe.has_value() == l.mlp.has_value()) {
      emitError(loc("model.layers." + Twine(i)))
          << "expects exactly one of moe / mlp in layer " << i;
      return nullptr;
    }
    h = layer(h, l, i);
  }
  h = rmsNorm(h, spec.finalNorm, "final_norm", "model.norm");
  Value logits = builder.create<model::LmHeadOp>(
      loc("lm_head"), logitsType, h, weight(spec.lmHead, "lm_head"),
      model::PoolAttr());
  builder.create<func::ReturnOp>(loc("lm_head"), logits);

  if (failedWeight || failed(verify(module)))
    return nullptr;
  return owned;
}

} // namespace

OwningOpRef<ModuleOp>
cc::buildModelModule(MLIRContext &context,
                                      const ModelSpec &spec) {
  return SpecBuilder(context, spec).build();
}
