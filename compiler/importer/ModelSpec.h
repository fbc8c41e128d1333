//===- ModelSpec.h - A checkpoint's architecture, read from disk -*- C++ -*-===//
//
// What the importer reads out of config.json + safetensors headers, before
// any IR exists: every field that changes the math, and every weight as a
// reference into a checkpoint file. Plain C++ (no MLIR) so it is testable
// alone; ModelBuilder turns it into the model dialect.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_COMPILER_IMPORTER_MODELSPEC_H
#define CROSSPOOL_COMPILER_IMPORTER_MODELSPEC_H

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/SyntheticInit.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crosspool::compiler {

/// A weight: a checkpoint tensor (file name relative to the checkpoint dir).
/// `offset` counts from the start of `file`. For experts stored stacked
/// (transformers v5 `experts.gate_up_proj` [E, 2I, H] / `experts.down_proj`
/// [E, H, I]) each expert's matrix is a contiguous view into that tensor:
/// `name` is the stacked tensor's name, `offset`/`nbytes`/`shape` the slice.
///
/// A synthetic weight (importConfig) has no file: `file` is empty, `offset`
/// 0, and the runtime generates its values from (`seed`, `name`) with
/// `init` / `initStd` (runtime/format/SyntheticInit.h).
struct WeightRef {
  std::string name;
  std::string file;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  runtime::DType dtype = runtime::DType::kF32;
  std::vector<int64_t> shape;
  bool synthetic = false;
  uint64_t seed = 0;
  synthetic::InitKind init = synthetic::InitKind::kNormal;
  double initStd = 0.0;
};

enum class QkNorm {
  kNone,
  kPerHead, ///< Qwen3: RMSNorm over head_dim, applied per head.
  kFull,    ///< OLMoE: RMSNorm over the whole q (or k) projection.
};

enum class RopeType { kDefault, kLinear };

struct AttentionSpec {
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0;
  WeightRef q, k, v, o;
  std::optional<WeightRef> qBias, kBias, vBias, oBias;
  QkNorm qkNorm = QkNorm::kNone;
  std::optional<WeightRef> qNorm, kNorm;
  double clipQkv = 0.0;       ///< 0: no clamp (OLMoE clip_qkv).
  int64_t slidingWindow = 0;  ///< 0: full causal attention.
};

struct MlpSpec {
  WeightRef gate, up, down; ///< SwiGLU: down(silu(gate x) * up x)
};

struct MoeSpec {
  int64_t numExperts = 0, topK = 0;
  bool normTopkProb = false;
  WeightRef router;                  ///< [num_experts, hidden]
  std::vector<MlpSpec> experts;
  std::optional<MlpSpec> sharedExpert;
  std::optional<WeightRef> sharedExpertGate; ///< [1, hidden], sigmoid gate
};

struct LayerSpec {
  WeightRef inputNorm, postAttentionNorm;
  AttentionSpec attention;
  std::optional<MoeSpec> moe; ///< exactly one of moe / mlp
  std::optional<MlpSpec> mlp;
};

struct ModelSpec {
  std::string name;          ///< checkpoint directory base name
  std::string architecture;  ///< e.g. "Qwen3MoeForCausalLM"
  std::string checkpointDir; ///< absolute path; empty when synthetic
  int64_t vocabSize = 0, hiddenSize = 0, maxPositionEmbeddings = 0;
  std::vector<int64_t> eosTokenIds;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  RopeType ropeType = RopeType::kDefault;
  double ropeFactor = 1.0;
  bool tieWordEmbeddings = false;
  WeightRef embed, finalNorm, lmHead; ///< lmHead == embed when tied
  std::vector<LayerSpec> layers;
};

} // namespace crosspool::compiler

#endif // CROSSPOOL_COMPILER_IMPORTER_MODELSPEC_H
