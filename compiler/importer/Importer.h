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

} // namespace crosspool::compiler

#endif // CROSSPOOL_COMPILER_IMPORTER_IMPORTER_H
