//===- Importer.cpp - Hugging Face checkpoint -> ModelSpec
//-----------------===//
//
// Reads config.json the way transformers 5.17 does for the four supported
// MoE families (defaults from their configuration_*.py when a field is
// absent), rejects by name every field that would change the math and that
// we do not implement, and resolves every weight against the safetensors
// headers with its exact expected dtype and shape.
//
//===----------------------------------------------------------------------===//

#include "compiler/importer/Importer.h"

#include "runtime/base/Status.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <sys/stat.h>

namespace crosspool::compiler {

using nlohmann::json;
using runtime::Checkpoint;
using runtime::DType;

namespace {

enum class Family { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe };

struct FamilyInfo {
  Family family;
  const char *architecture;
  const char *modelType;
  // Defaults of the configuration class, used when config.json omits a
  // field (transformers fills them the same way).
  double defaultRopeTheta;
  double defaultRmsNormEps;
  int64_t defaultMaxPositions;
};

constexpr FamilyInfo kFamilies[] = {
    {Family::kMixtral, "MixtralForCausalLM", "mixtral", 1e6, 1e-5, 4096 * 32},
    {Family::kOlmoe, "OlmoeForCausalLM", "olmoe", 1e4, 1e-5, 4096},
    {Family::kQwen2Moe, "Qwen2MoeForCausalLM", "qwen2_moe", 1e4, 1e-6, 32768},
    {Family::kQwen3Moe, "Qwen3MoeForCausalLM", "qwen3_moe", 1e4, 1e-6, 32768},
};

std::string shapeString(const std::vector<int64_t> &shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

/// Typed, error-reporting access to config.json. A field that is absent or
/// JSON null takes the caller's default; a field of the wrong JSON type is an
/// error naming it.
class Config {
public:
  Config(std::string path, json root)
      : path_(std::move(path)), root_(std::move(root)) {}

  const std::string &path() const { return path_; }

  /// Present and not null.
  bool has(const std::string &key) const {
    auto it = root_.find(key);
    return it != root_.end() && !it->is_null();
  }
  /// Present, possibly null.
  bool present(const std::string &key) const { return root_.contains(key); }
  /// The value, or null when absent.
  const json &at(const std::string &key) const {
    static const json kNull;
    auto it = root_.find(key);
    return it == root_.end() ? kNull : *it;
  }

  absl::Status error(const std::string &msg) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", msg));
  }
  absl::Status typeError(const std::string &key, const char *expected) const {
    return error(absl::StrCat("field '", key, "' must be ", expected, ", got ",
                              at(key).dump()));
  }

  absl::StatusOr<int64_t> requireInt(const std::string &key) const {
    if (!has(key))
      return error(absl::StrCat("missing required field '", key, "'"));
    return getInt(key, 0);
  }
  absl::StatusOr<int64_t> getInt(const std::string &key, int64_t dflt) const {
    if (!has(key))
      return dflt;
    const json &v = at(key);
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        return typeError(key, "an integer in int64 range");
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer())
      return v.get<int64_t>();
    return typeError(key, "an integer");
  }
  /// An integer that must be >= `min` (most sizes must be positive).
  absl::StatusOr<int64_t> requireIntAtLeast(const std::string &key,
                                            int64_t min) const {
    CP_ASSIGN_OR_RETURN(int64_t v, requireInt(key));
    if (v < min)
      return error(
          absl::StrCat("field '", key, "' must be >= ", min, ", got ", v));
    return v;
  }
  absl::StatusOr<double> getDouble(const std::string &key, double dflt) const {
    if (!has(key))
      return dflt;
    if (!at(key).is_number())
      return typeError(key, "a number");
    return at(key).get<double>();
  }
  absl::StatusOr<bool> getBool(const std::string &key, bool dflt) const {
    if (!has(key))
      return dflt;
    if (!at(key).is_boolean())
      return typeError(key, "a boolean");
    return at(key).get<bool>();
  }
  absl::StatusOr<std::string> getString(const std::string &key,
                                        const std::string &dflt) const {
    if (!has(key))
      return dflt;
    if (!at(key).is_string())
      return typeError(key, "a string");
    return at(key).get<std::string>();
  }
  /// A list of integers, or a single integer read as a one-element list.
  absl::StatusOr<std::vector<int64_t>> getIntList(const std::string &key,
                                                  std::vector<int64_t> dflt,
                                                  bool allowScalar) const {
    if (!has(key))
      return dflt;
    const json &v = at(key);
    std::vector<int64_t> out;
    if (allowScalar && v.is_number_integer()) {
      out.push_back(v.get<int64_t>());
      return out;
    }
    if (!v.is_array())
      return typeError(key, allowScalar ? "an integer or a list of integers"
                                        : "a list of integers");
    for (const json &e : v) {
      if (!e.is_number_integer())
        return typeError(key, "a list of integers");
      out.push_back(e.get<int64_t>());
    }
    return out;
  }

private:
  std::string path_;
  json root_;
};

absl::StatusOr<std::string> readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open (missing?)"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad())
    return absl::InternalError(absl::StrCat(path, ": read failed"));
  return ss.str();
}

/// Fields of other architectures that would change the math if a config of
/// ours carried them with a non-neutral value; we implement none of them.
absl::Status rejectForeignMathFields(const Config &cfg) {
  // Neutral value 1.0.
  for (const char *key :
       {"attention_multiplier", "embedding_multiplier", "residual_multiplier",
        "logits_scaling", "logit_scale", "scale_emb", "scale_depth",
        "partial_rotary_factor", "attention_scaling"}) {
    if (!cfg.has(key))
      continue;
    CP_ASSIGN_OR_RETURN(double v, cfg.getDouble(key, 1.0));
    if (v != 1.0)
      return cfg.error(absl::StrCat("unsupported value for '", key,
                                    "': ", cfg.at(key).dump(),
                                    " (only 1.0 or absent is supported)"));
  }
  // Neutral value null/absent.
  for (const char *key : {"query_pre_attn_scalar", "attn_logit_softcapping",
                          "final_logit_softcapping", "router_logit_softcapping",
                          "quantization_config", "dim_model_base"}) {
    if (cfg.has(key))
      return cfg.error(absl::StrCat("unsupported field '", key,
                                    "': ", cfg.at(key).dump(),
                                    " (only null or absent is supported)"));
  }
  CP_ASSIGN_OR_RETURN(bool mlpBias, cfg.getBool("mlp_bias", false));
  if (mlpBias)
    return cfg.error("unsupported value for 'mlp_bias': true (expected false)");
  return absl::OkStatus();
}

/// rope_parameters (transformers v5) or rope_theta + rope_scaling (older
/// hub configs); transformers prefers rope_scaling when both are present.
absl::Status readRope(const Config &cfg, const FamilyInfo &family,
                      ModelSpec &spec) {
  std::string field;
  json rope = json::object();
  if (cfg.has("rope_scaling"))
    field = "rope_scaling";
  else if (cfg.has("rope_parameters"))
    field = "rope_parameters";
  if (!field.empty()) {
    rope = cfg.at(field);
    if (!rope.is_object())
      return cfg.typeError(field, "an object");
  }
  for (auto it = rope.begin(); it != rope.end(); ++it)
    if (it.value().is_object())
      return cfg.error(absl::StrCat("unsupported per-layer-type '", field,
                                    "' (entry '", it.key(), "')"));

  auto number = [&](const char *key, double dflt) -> absl::StatusOr<double> {
    if (!rope.contains(key) || rope[key].is_null())
      return dflt;
    if (!rope[key].is_number())
      return cfg.error(absl::StrCat("field '", field, ".", key,
                                    "' must be a number, got ",
                                    rope[key].dump()));
    return rope[key].get<double>();
  };
  CP_ASSIGN_OR_RETURN(double topTheta,
                      cfg.getDouble("rope_theta", family.defaultRopeTheta));
  CP_ASSIGN_OR_RETURN(spec.ropeTheta, number("rope_theta", topTheta));
  if (!(spec.ropeTheta > 0))
    return cfg.error(
        absl::StrCat("rope_theta must be positive, got ", spec.ropeTheta));
  CP_ASSIGN_OR_RETURN(double partial, number("partial_rotary_factor", 1.0));
  if (partial != 1.0)
    return cfg.error(absl::StrCat("unsupported value for '", field,
                                  ".partial_rotary_factor': ", partial,
                                  " (only 1.0 is supported)"));

  std::string type = "default";
  for (const char *key : {"rope_type", "type"}) {
    if (rope.contains(key) && !rope[key].is_null()) {
      if (!rope[key].is_string())
        return cfg.error(absl::StrCat("field '", field, ".", key,
                                      "' must be a string, got ",
                                      rope[key].dump()));
      type = rope[key].get<std::string>();
      break;
    }
  }
  if (type == "default") {
    spec.ropeType = RopeType::kDefault;
    spec.ropeFactor = 1.0;
  } else if (type == "linear") {
    spec.ropeType = RopeType::kLinear;
    if (!rope.contains("factor"))
      return cfg.error(
          absl::StrCat("rope type 'linear' needs '", field, ".factor'"));
    CP_ASSIGN_OR_RETURN(spec.ropeFactor, number("factor", 1.0));
    if (!(spec.ropeFactor > 0))
      return cfg.error(absl::StrCat("field '", field,
                                    ".factor' must be positive, got ",
                                    spec.ropeFactor));
  } else {
    return cfg.error(absl::StrCat("unsupported rope type '", type, "' in '",
                                  field, "' (supported: default, linear)"));
  }
  return absl::OkStatus();
}

/// Resolves checkpoint tensor names into WeightRefs, checking presence,
/// dtype and shape.
///
/// Without a checkpoint (importConfig) every name the config implies
/// "exists" in the hub layout (one tensor per expert) and resolves to a
/// synthetic BF16 weight of the expected shape.
class WeightResolver {
public:
  WeightResolver(const Checkpoint &ckpt, std::string dir)
      : ckpt_(&ckpt), dir_(std::move(dir)) {}
  /// Synthetic weights of `seed`, std `initStd`.
  WeightResolver(uint64_t seed, double initStd)
      : seed_(seed), initStd_(initStd) {}

  bool contains(const std::string &name) const {
    return !ckpt_ || ckpt_->contains(name);
  }

  absl::StatusOr<WeightRef> get(const std::string &name,
                                const std::vector<int64_t> &shape) const {
    if (!ckpt_)
      return syntheticRef(name, shape);
    const Checkpoint &ckpt = *ckpt_;
    if (!ckpt.contains(name))
      return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name,
                                              "' (expected shape ",
                                              shapeString(shape), ")"));
    CP_ASSIGN_OR_RETURN(Checkpoint::Located loc, ckpt.find(name));
    const runtime::TensorInfo &info = *loc.info;
    if (info.dtype != DType::kF32 && info.dtype != DType::kF16 &&
        info.dtype != DType::kBF16)
      return absl::InvalidArgumentError(absl::StrCat(
          dir_, "/", loc.fileName, ": tensor '", name, "' has dtype ",
          runtime::dtypeName(info.dtype), ", expected F32, F16 or BF16"));
    if (info.shape != shape)
      return absl::InvalidArgumentError(
          absl::StrCat(dir_, "/", loc.fileName, ": tensor '", name,
                       "' has shape ", shapeString(info.shape), ", expected ",
                       shapeString(shape), " (from config.json)"));
    WeightRef ref;
    ref.name = name;
    ref.file = loc.fileName;
    ref.offset = info.offset;
    ref.nbytes = info.nbytes;
    ref.dtype = info.dtype;
    ref.shape = shape;
    return ref;
  }

  /// Row block `index` of a stacked tensor: a byte-range view whose rows
  /// are contiguous (`rows` x `cols` starting at row `index * rows`).
  static WeightRef slice(const WeightRef &stacked, int64_t index, int64_t rows,
                         int64_t cols) {
    WeightRef ref = stacked;
    uint64_t bytes =
        static_cast<uint64_t>(rows) * cols * runtime::dtypeSize(stacked.dtype);
    ref.offset = stacked.offset + static_cast<uint64_t>(index) * bytes;
    ref.nbytes = bytes;
    ref.shape = {rows, cols};
    return ref;
  }

private:
  WeightRef syntheticRef(const std::string &name,
                         const std::vector<int64_t> &shape) const {
    WeightRef ref;
    ref.name = name;
    ref.dtype = DType::kBF16;
    ref.shape = shape;
    uint64_t numel = 1;
    for (int64_t d : shape)
      numel *= static_cast<uint64_t>(d);
    ref.nbytes = numel * runtime::dtypeSize(DType::kBF16);
    ref.synthetic = true;
    ref.seed = seed_;
    // RMSNorm weights (input/post-attention/final/q/k norms) start near 1
    // like a trained model's; everything else is a zero-mean matrix or bias.
    const std::string suffix = "norm.weight";
    bool norm = name.size() >= suffix.size() &&
                name.compare(name.size() - suffix.size(), suffix.size(),
                             suffix) == 0;
    ref.init = norm ? synthetic::InitKind::kOnePlusNormal
                    : synthetic::InitKind::kNormal;
    ref.initStd = initStd_;
    return ref;
  }

  const Checkpoint *ckpt_ = nullptr;
  std::string dir_;
  uint64_t seed_ = 0;
  double initStd_ = 0.0;
};

/// Everything read from config.json that shapes weights and layers.
struct Dims {
  int64_t hidden = 0, vocab = 0, numLayers = 0, heads = 0, kvHeads = 0,
          headDim = 0;
  int64_t intermediate = 0;       ///< dense MLP (and Mixtral experts)
  int64_t moeIntermediate = 0;    ///< experts (Qwen)
  int64_t sharedIntermediate = 0; ///< Qwen2Moe shared expert
  int64_t numExperts = 0, topK = 0;
  bool normTopkProb = false;
  bool qkvBias = false;  ///< Qwen2Moe: q/k/v biases
  bool attnBias = false; ///< Qwen3Moe/OLMoE: q/k/v/o biases
  int64_t decoderSparseStep = 1;
  std::vector<int64_t> mlpOnlyLayers;
};

absl::StatusOr<MlpSpec> mlpWeights(const WeightResolver &w,
                                   const std::string &prefix,
                                   const char *gateName, const char *upName,
                                   const char *downName, int64_t hidden,
                                   int64_t inter) {
  MlpSpec mlp;
  CP_ASSIGN_OR_RETURN(mlp.gate, w.get(absl::StrCat(prefix, gateName, ".weight"),
                                      {inter, hidden}));
  CP_ASSIGN_OR_RETURN(
      mlp.up, w.get(absl::StrCat(prefix, upName, ".weight"), {inter, hidden}));
  CP_ASSIGN_OR_RETURN(mlp.down, w.get(absl::StrCat(prefix, downName, ".weight"),
                                      {hidden, inter}));
  return mlp;
}

absl::StatusOr<MoeSpec> moeWeights(const WeightResolver &w, Family family,
                                   const std::string &layerPrefix,
                                   const Dims &d) {
  const bool mixtral = family == Family::kMixtral;
  const std::string hubPrefix =
      layerPrefix + (mixtral ? "block_sparse_moe." : "mlp.");
  const char *gateName = mixtral ? "w1" : "gate_proj";
  const char *upName = mixtral ? "w3" : "up_proj";
  const char *downName = mixtral ? "w2" : "down_proj";
  const bool qwen = family == Family::kQwen2Moe || family == Family::kQwen3Moe;
  const int64_t inter = qwen ? d.moeIntermediate : d.intermediate;

  MoeSpec moe;
  moe.numExperts = d.numExperts;
  moe.topK = d.topK;
  moe.normTopkProb = d.normTopkProb;

  // Hub checkpoints store one tensor per expert; transformers v5 in-memory
  // state dicts stack them ([E, 2I, H] gate|up, [E, H, I] down). Accept the
  // stacked form when the per-expert one is absent.
  std::string stackedPrefix;
  if (!w.contains(absl::StrCat(hubPrefix, "experts.0.", gateName, ".weight")))
    for (const std::string &p : {hubPrefix, layerPrefix + "mlp."})
      if (w.contains(p + "experts.gate_up_proj")) {
        stackedPrefix = p;
        break;
      }
  std::string routerPrefix = stackedPrefix.empty() ? hubPrefix : stackedPrefix;
  CP_ASSIGN_OR_RETURN(moe.router, w.get(routerPrefix + "gate.weight",
                                        {d.numExperts, d.hidden}));
  if (stackedPrefix.empty()) {
    for (int64_t e = 0; e < d.numExperts; ++e) {
      CP_ASSIGN_OR_RETURN(
          MlpSpec expert,
          mlpWeights(w, absl::StrCat(hubPrefix, "experts.", e, "."), gateName,
                     upName, downName, d.hidden, inter));
      moe.experts.push_back(std::move(expert));
    }
  } else {
    CP_ASSIGN_OR_RETURN(WeightRef gateUp,
                        w.get(stackedPrefix + "experts.gate_up_proj",
                              {d.numExperts, 2 * inter, d.hidden}));
    CP_ASSIGN_OR_RETURN(WeightRef down,
                        w.get(stackedPrefix + "experts.down_proj",
                              {d.numExperts, d.hidden, inter}));
    for (int64_t e = 0; e < d.numExperts; ++e) {
      MlpSpec expert;
      // transformers chunks gate_up_proj[e] along rows: gate first, then up.
      expert.gate = WeightResolver::slice(gateUp, 2 * e, inter, d.hidden);
      expert.up = WeightResolver::slice(gateUp, 2 * e + 1, inter, d.hidden);
      expert.down = WeightResolver::slice(down, e, d.hidden, inter);
      moe.experts.push_back(std::move(expert));
    }
  }

  if (family == Family::kQwen2Moe) {
    CP_ASSIGN_OR_RETURN(MlpSpec shared,
                        mlpWeights(w, hubPrefix + "shared_expert.", "gate_proj",
                                   "up_proj", "down_proj", d.hidden,
                                   d.sharedIntermediate));
    moe.sharedExpert = std::move(shared);
    CP_ASSIGN_OR_RETURN(
        WeightRef gate,
        w.get(hubPrefix + "shared_expert_gate.weight", {1, d.hidden}));
    moe.sharedExpertGate = std::move(gate);
  }
  return moe;
}

absl::StatusOr<AttentionSpec> attentionWeights(const WeightResolver &w,
                                               Family family,
                                               const std::string &layerPrefix,
                                               const Dims &d) {
  const std::string p = layerPrefix + "self_attn.";
  const int64_t qDim = d.heads * d.headDim, kvDim = d.kvHeads * d.headDim;
  AttentionSpec a;
  a.numHeads = d.heads;
  a.numKvHeads = d.kvHeads;
  a.headDim = d.headDim;
  CP_ASSIGN_OR_RETURN(a.q, w.get(p + "q_proj.weight", {qDim, d.hidden}));
  CP_ASSIGN_OR_RETURN(a.k, w.get(p + "k_proj.weight", {kvDim, d.hidden}));
  CP_ASSIGN_OR_RETURN(a.v, w.get(p + "v_proj.weight", {kvDim, d.hidden}));
  CP_ASSIGN_OR_RETURN(a.o, w.get(p + "o_proj.weight", {d.hidden, qDim}));
  if (d.qkvBias || d.attnBias) {
    CP_ASSIGN_OR_RETURN(a.qBias, w.get(p + "q_proj.bias", {qDim}));
    CP_ASSIGN_OR_RETURN(a.kBias, w.get(p + "k_proj.bias", {kvDim}));
    CP_ASSIGN_OR_RETURN(a.vBias, w.get(p + "v_proj.bias", {kvDim}));
  }
  if (d.attnBias) {
    CP_ASSIGN_OR_RETURN(a.oBias, w.get(p + "o_proj.bias", {d.hidden}));
  }
  if (family == Family::kQwen3Moe) {
    a.qkNorm = QkNorm::kPerHead;
    CP_ASSIGN_OR_RETURN(a.qNorm, w.get(p + "q_norm.weight", {d.headDim}));
    CP_ASSIGN_OR_RETURN(a.kNorm, w.get(p + "k_norm.weight", {d.headDim}));
  } else if (family == Family::kOlmoe) {
    a.qkNorm = QkNorm::kFull;
    CP_ASSIGN_OR_RETURN(a.qNorm, w.get(p + "q_norm.weight", {qDim}));
    CP_ASSIGN_OR_RETURN(a.kNorm, w.get(p + "k_norm.weight", {kvDim}));
  }
  return a;
}

absl::StatusOr<const FamilyInfo *> readArchitecture(const Config &cfg) {
  if (!cfg.has("architectures"))
    return cfg.error("missing required field 'architectures'");
  const json &archs = cfg.at("architectures");
  if (!archs.is_array() || archs.empty() || !archs[0].is_string())
    return cfg.typeError("architectures", "a non-empty list of strings");
  std::string arch = archs[0].get<std::string>();
  const FamilyInfo *family = nullptr;
  std::vector<std::string> supported;
  for (const FamilyInfo &f : kFamilies) {
    supported.push_back(f.architecture);
    if (arch == f.architecture)
      family = &f;
  }
  if (!family)
    return cfg.error(
        absl::StrCat("unsupported architecture '", arch,
                     "' (supported: ", absl::StrJoin(supported, ", "), ")"));
  CP_ASSIGN_OR_RETURN(std::string modelType,
                      cfg.getString("model_type", family->modelType));
  if (modelType != family->modelType)
    return cfg.error(absl::StrCat("'model_type' is \"", modelType,
                                  "\" but architecture '", arch, "' expects \"",
                                  family->modelType, "\""));
  return family;
}

/// Number of experts: the family's canonical key, or its attribute_map alias.
absl::StatusOr<int64_t> readNumExperts(const Config &cfg, Family family) {
  std::vector<std::string> keys;
  switch (family) {
  case Family::kMixtral:
    keys = {"num_local_experts", "num_experts"};
    break;
  case Family::kQwen3Moe:
  case Family::kOlmoe:
    keys = {"num_experts", "num_local_experts"};
    break;
  case Family::kQwen2Moe:
    keys = {"num_experts"}; // Qwen2MoeConfig has no alias.
    break;
  }
  std::optional<int64_t> found;
  std::string foundKey;
  for (const std::string &key : keys) {
    if (!cfg.has(key))
      continue;
    CP_ASSIGN_OR_RETURN(int64_t v, cfg.getInt(key, 0));
    if (found && *found != v)
      return cfg.error(absl::StrCat("'", foundKey, "' (", *found, ") and '",
                                    key, "' (", v, ") disagree"));
    found = v;
    foundKey = key;
  }
  if (!found)
    return cfg.error(absl::StrCat("missing required field '", keys[0], "'"));
  if (*found < (family == Family::kMixtral || family == Family::kOlmoe ? 1 : 0))
    return cfg.error(
        absl::StrCat("field '", foundKey, "' must be positive, got ", *found));
  return *found;
}


/// Synthetic import (importConfig): the generator seed.
struct SyntheticImport {
  uint64_t seed = 0;
};

/// The common import: `dir` is the config's directory (absolute); with
/// `synth`, weights are synthetic and no checkpoint is opened.
absl::StatusOr<ModelSpec> importFrom(const std::string &dir,
                                     const std::string &configPath,
                                     const SyntheticImport *synth) {
  CP_ASSIGN_OR_RETURN(std::string configText, readFile(configPath));
  json root = json::parse(configText, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    return absl::InvalidArgumentError(
        absl::StrCat(configPath, ": not valid JSON"));
  if (!root.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(configPath, ": top level is not a JSON object"));
  Config cfg(configPath, std::move(root));

  CP_ASSIGN_OR_RETURN(const FamilyInfo *familyInfo, readArchitecture(cfg));
  const Family family = familyInfo->family;

  ModelSpec spec;
  spec.architecture = familyInfo->architecture;
  spec.checkpointDir = synth ? "" : dir;
  spec.name = dir.substr(dir.find_last_of('/') + 1);

  CP_RETURN_IF_ERROR(rejectForeignMathFields(cfg));

  CP_ASSIGN_OR_RETURN(std::string act, cfg.getString("hidden_act", "silu"));
  if (act != "silu")
    return cfg.error(absl::StrCat("unsupported value for 'hidden_act': \"", act,
                                  "\" (expected \"silu\")"));

  Dims d;
  CP_ASSIGN_OR_RETURN(d.vocab, cfg.requireIntAtLeast("vocab_size", 1));
  CP_ASSIGN_OR_RETURN(d.hidden, cfg.requireIntAtLeast("hidden_size", 1));
  CP_ASSIGN_OR_RETURN(d.numLayers,
                      cfg.requireIntAtLeast("num_hidden_layers", 1));
  CP_ASSIGN_OR_RETURN(d.heads, cfg.requireIntAtLeast("num_attention_heads", 1));
  {
    // Absent: the configuration class default; null: transformers copies
    // num_attention_heads (Mixtral/OLMoE __post_init__).
    int64_t dflt = d.heads;
    if (family == Family::kMixtral)
      dflt = 8;
    else if (family == Family::kQwen2Moe)
      dflt = 16;
    else if (family == Family::kQwen3Moe)
      dflt = 4;
    if (cfg.present("num_key_value_heads") &&
        cfg.at("num_key_value_heads").is_null())
      dflt = d.heads;
    CP_ASSIGN_OR_RETURN(d.kvHeads, cfg.getInt("num_key_value_heads", dflt));
  }
  if (d.kvHeads < 1 || d.heads % d.kvHeads != 0)
    return cfg.error(absl::StrCat("'num_key_value_heads' (", d.kvHeads,
                                  ") must be positive and divide "
                                  "'num_attention_heads' (",
                                  d.heads, ")"));
  if (cfg.has("head_dim")) {
    CP_ASSIGN_OR_RETURN(d.headDim, cfg.getInt("head_dim", 0));
    if (d.headDim < 1)
      return cfg.error(
          absl::StrCat("field 'head_dim' must be positive, got ", d.headDim));
  } else {
    if (d.hidden % d.heads != 0)
      return cfg.error(absl::StrCat("'hidden_size' (", d.hidden,
                                    ") is not divisible by "
                                    "'num_attention_heads' (",
                                    d.heads, ") and 'head_dim' is not set"));
    d.headDim = d.hidden / d.heads;
  }
  // OLMoE sizes its q/k norms from hidden_size, so a head_dim other than
  // hidden_size / heads cannot load in transformers either.
  if (family == Family::kOlmoe && d.headDim * d.heads != d.hidden)
    return cfg.error(
        absl::StrCat("unsupported value for 'head_dim': ", d.headDim,
                     " (OLMoE needs hidden_size / "
                     "num_attention_heads = ",
                     d.hidden / d.heads, ")"));

  CP_ASSIGN_OR_RETURN(
      spec.rmsNormEps,
      cfg.getDouble("rms_norm_eps", familyInfo->defaultRmsNormEps));
  if (!(spec.rmsNormEps > 0))
    return cfg.error(absl::StrCat("field 'rms_norm_eps' must be positive, got ",
                                  spec.rmsNormEps));
  CP_ASSIGN_OR_RETURN(
      spec.maxPositionEmbeddings,
      cfg.getInt("max_position_embeddings", familyInfo->defaultMaxPositions));
  if (spec.maxPositionEmbeddings < 1)
    return cfg.error("field 'max_position_embeddings' must be positive");
  {
    std::vector<int64_t> dflt;
    if (family == Family::kMixtral)
      dflt = {2};
    else if (family == Family::kOlmoe)
      dflt = {50279};
    if (cfg.present("eos_token_id") && cfg.at("eos_token_id").is_null())
      dflt.clear();
    CP_ASSIGN_OR_RETURN(spec.eosTokenIds,
                        cfg.getIntList("eos_token_id", dflt, true));
    for (int64_t id : spec.eosTokenIds)
      if (id < 0)
        return cfg.error(
            absl::StrCat("'eos_token_id' ", id, " must be non-negative"));
  }
  CP_ASSIGN_OR_RETURN(spec.tieWordEmbeddings,
                      cfg.getBool("tie_word_embeddings", false));
  CP_RETURN_IF_ERROR(readRope(cfg, *familyInfo, spec));
  spec.vocabSize = d.vocab;
  spec.hiddenSize = d.hidden;

  // MoE sizes.
  CP_ASSIGN_OR_RETURN(d.numExperts, readNumExperts(cfg, family));
  CP_ASSIGN_OR_RETURN(d.topK, cfg.requireInt("num_experts_per_tok"));
  if (d.numExperts > 0 && (d.topK < 1 || d.topK > d.numExperts))
    return cfg.error(
        absl::StrCat("'num_experts_per_tok' (", d.topK,
                     ") must be in [1, num_experts = ", d.numExperts, "]"));
  // Mixtral/OLMoE experts use intermediate_size; Qwen uses it only for
  // dense layers, so it is checked there (a fully sparse Qwen model never
  // reads it).
  if (family == Family::kMixtral || family == Family::kOlmoe) {
    CP_ASSIGN_OR_RETURN(d.intermediate,
                        cfg.requireIntAtLeast("intermediate_size", 1));
  } else {
    CP_ASSIGN_OR_RETURN(d.intermediate, cfg.getInt("intermediate_size", 0));
  }

  int64_t slidingWindow = 0;
  switch (family) {
  case Family::kMixtral: {
    d.normTopkProb = true; // MixtralTopKRouter always renormalizes.
    CP_ASSIGN_OR_RETURN(slidingWindow, cfg.getInt("sliding_window", 0));
    if (cfg.has("sliding_window") && slidingWindow < 1)
      return cfg.error(
          absl::StrCat("field 'sliding_window' must be null or positive, got ",
                       slidingWindow));
    break;
  }
  case Family::kOlmoe: {
    CP_ASSIGN_OR_RETURN(d.normTopkProb, cfg.getBool("norm_topk_prob", false));
    CP_ASSIGN_OR_RETURN(d.attnBias, cfg.getBool("attention_bias", false));
    if (cfg.has("sliding_window"))
      return cfg.error(absl::StrCat("unsupported field 'sliding_window': ",
                                    cfg.at("sliding_window").dump(),
                                    " (OLMoE attention is full causal)"));
    break;
  }
  case Family::kQwen2Moe:
  case Family::kQwen3Moe: {
    CP_ASSIGN_OR_RETURN(d.normTopkProb, cfg.getBool("norm_topk_prob", false));
    CP_ASSIGN_OR_RETURN(d.moeIntermediate,
                        cfg.requireIntAtLeast("moe_intermediate_size", 1));
    CP_ASSIGN_OR_RETURN(d.decoderSparseStep,
                        cfg.getInt("decoder_sparse_step", 1));
    if (d.decoderSparseStep < 1)
      return cfg.error(
          absl::StrCat("field 'decoder_sparse_step' must be >= 1, got ",
                       d.decoderSparseStep));
    CP_ASSIGN_OR_RETURN(d.mlpOnlyLayers, cfg.getIntList("mlp_only_layers", {},
                                                        /*allowScalar=*/false));
    CP_ASSIGN_OR_RETURN(bool useSliding,
                        cfg.getBool("use_sliding_window", false));
    if (family == Family::kQwen2Moe) {
      CP_ASSIGN_OR_RETURN(d.qkvBias, cfg.getBool("qkv_bias", true));
      CP_ASSIGN_OR_RETURN(
          d.sharedIntermediate,
          cfg.requireIntAtLeast("shared_expert_intermediate_size", 1));
      if (useSliding)
        return cfg.error("unsupported value for 'use_sliding_window': true "
                         "(sliding-window layers are not supported for "
                         "Qwen2MoeForCausalLM)");
      if (cfg.has("layer_types")) {
        const json &types = cfg.at("layer_types");
        if (!types.is_array() ||
            static_cast<int64_t>(types.size()) != d.numLayers)
          return cfg.typeError("layer_types",
                               "a list with one entry per layer");
        for (const json &t : types)
          if (t != "full_attention")
            return cfg.error(absl::StrCat("unsupported 'layer_types' entry ",
                                          t.dump(),
                                          " (expected \"full_attention\")"));
      }
    } else {
      CP_ASSIGN_OR_RETURN(d.attnBias, cfg.getBool("attention_bias", false));
      // Qwen3MoeConfig keeps sliding_window only with use_sliding_window,
      // and then applies it to every layer.
      if (useSliding && cfg.has("sliding_window")) {
        CP_ASSIGN_OR_RETURN(slidingWindow, cfg.getInt("sliding_window", 0));
        if (slidingWindow < 1)
          return cfg.error(absl::StrCat(
              "field 'sliding_window' must be positive, got ", slidingWindow));
      }
    }
    break;
  }
  }

  // Weights.
  std::unique_ptr<Checkpoint> ckpt;
  std::optional<WeightResolver> resolver;
  if (synth) {
    CP_ASSIGN_OR_RETURN(double initStd,
                        cfg.getDouble("initializer_range", 0.02));
    if (!std::isfinite(initStd) || !(initStd > 0))
      return cfg.error(absl::StrCat(
          "field 'initializer_range' must be positive, got ", initStd));
    resolver.emplace(synth->seed, initStd);
  } else {
    CP_ASSIGN_OR_RETURN(ckpt, Checkpoint::open(dir));
    resolver.emplace(*ckpt, dir);
  }
  const WeightResolver &w = *resolver;
  CP_ASSIGN_OR_RETURN(spec.embed,
                      w.get("model.embed_tokens.weight", {d.vocab, d.hidden}));
  CP_ASSIGN_OR_RETURN(spec.finalNorm, w.get("model.norm.weight", {d.hidden}));
  if (spec.tieWordEmbeddings) {
    spec.lmHead = spec.embed;
  } else {
    if (!w.contains("lm_head.weight"))
      return absl::NotFoundError(absl::StrCat(
          dir, ": missing tensor 'lm_head.weight' (tie_word_embeddings is "
               "false, so the output projection must be stored)"));
    CP_ASSIGN_OR_RETURN(spec.lmHead,
                        w.get("lm_head.weight", {d.vocab, d.hidden}));
  }

  for (int64_t i = 0; i < d.numLayers; ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    LayerSpec layer;
    CP_ASSIGN_OR_RETURN(layer.inputNorm,
                        w.get(prefix + "input_layernorm.weight", {d.hidden}));
    CP_ASSIGN_OR_RETURN(
        layer.postAttentionNorm,
        w.get(prefix + "post_attention_layernorm.weight", {d.hidden}));
    CP_ASSIGN_OR_RETURN(layer.attention,
                        attentionWeights(w, family, prefix, d));
    layer.attention.slidingWindow = slidingWindow;
    if (family == Family::kOlmoe) {
      CP_ASSIGN_OR_RETURN(layer.attention.clipQkv,
                          cfg.getDouble("clip_qkv", 0.0));
      if (cfg.has("clip_qkv") && !(layer.attention.clipQkv > 0))
        return cfg.error(
            absl::StrCat("field 'clip_qkv' must be null or positive, got ",
                         cfg.at("clip_qkv").dump()));
    }

    bool sparse = true;
    if (family == Family::kQwen2Moe || family == Family::kQwen3Moe) {
      bool mlpOnly = false;
      for (int64_t l : d.mlpOnlyLayers)
        mlpOnly |= l == i;
      sparse =
          !mlpOnly && d.numExperts > 0 && (i + 1) % d.decoderSparseStep == 0;
    }
    if (sparse) {
      CP_ASSIGN_OR_RETURN(MoeSpec moe, moeWeights(w, family, prefix, d));
      layer.moe = std::move(moe);
    } else {
      if (d.intermediate < 1)
        return cfg.error(absl::StrCat(
            "layer ", i, " is a dense MLP but 'intermediate_size' is ",
            cfg.has("intermediate_size") ? "not positive" : "missing"));
      CP_ASSIGN_OR_RETURN(MlpSpec mlp,
                          mlpWeights(w, prefix + "mlp.", "gate_proj", "up_proj",
                                     "down_proj", d.hidden, d.intermediate));
      layer.mlp = std::move(mlp);
    }
    spec.layers.push_back(std::move(layer));
  }
  return spec;
}

} // namespace

absl::StatusOr<ModelSpec> importCheckpoint(const std::string &dirArg) {
  char *resolved = ::realpath(dirArg.c_str(), nullptr);
  if (!resolved)
    return absl::NotFoundError(
        absl::StrCat(dirArg, ": checkpoint directory does not exist"));
  std::string dir(resolved);
  std::free(resolved);
  return importFrom(dir, dir + "/config.json", nullptr);
}

absl::StatusOr<ModelSpec> importConfig(const std::string &pathArg,
                                       uint64_t seed) {
  char *resolved = ::realpath(pathArg.c_str(), nullptr);
  if (!resolved)
    return absl::NotFoundError(
        absl::StrCat(pathArg, ": config file or directory does not exist"));
  std::string path(resolved);
  std::free(resolved);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return absl::NotFoundError(absl::StrCat(pathArg, ": cannot stat"));
  std::string dir = path, configPath = path + "/config.json";
  if (!S_ISDIR(st.st_mode)) {
    configPath = path;
    dir = path.substr(0, path.find_last_of('/'));
    if (dir.empty())
      dir = "/";
  }
  SyntheticImport synth;
  synth.seed = seed;
  return importFrom(dir, configPath, &synth);
}

} // namespace crosspool::compiler
