//===- Importer.h - Hugging Face checkpoint -> ModelSpec --------*- C++ -*-===//
#ifndef CROSSPOOL_COMPILER_IMPORTER_IMPORTER_H
#define CROSSPOOL_COMPILER_IMPORTER_IMPORTER_H

#include "compiler/importer/ModelSpec.h"

#include "absl/status/statusor.h"

#include <string>

namespace crosspool::compiler {

/// Reads `dir`/config.json and the safetensors headers (model.safetensors or
/// model.safetensors.index.json shards) of a MixtralForCausalLM,
/// Qwen2MoeForCausalLM, Qwen3MoeForCausalLM or OlmoeForCausalLM checkpoint.
/// Every field that changes the math is read or rejected by name; every
/// weight is checked for presence, dtype (F32/F16/BF16) and shape.
absl::StatusOr<ModelSpec> importCheckpoint(const std::string &dir);

/// Reads a config.json (`path` is the file or its directory) with exactly
/// importCheckpoint's validation, but opens no safetensors: every weight the
/// config implies is synthetic (BF16, no file) with the expected shape,
/// values from `seed` and the tensor name, normal(0, initializer_range)
/// (config field, default 0.02) for matrices and biases and
/// 1 + normal(0, initializer_range) for RMSNorm weights. The spec's name is
/// the config's directory name, its checkpointDir empty.
absl::StatusOr<ModelSpec> importConfig(const std::string &path,
                                       uint64_t seed);

} // namespace crosspool::compiler

#endif // CROSSPOOL_COMPILER_IMPORTER_IMPORTER_H
