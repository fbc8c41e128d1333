//===- CudaTestEnv.h - Paths and goldens of the CUDA tests -----*- C++ -*-===//
//
// The GPU tests run on a machine where the repository and the plans may sit
// elsewhere than at build time: CROSSPOOL_TEST_MODELS (test/data/models) and
// CROSSPOOL_TEST_PLANS (directory of <model>.cpplan made by crosspool-compile)
// override the compiled-in defaults. Plans name their checkpoint directory
// absolutely, so tests pass the models directory as LoadOptions.checkpointDir.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TEST_UNIT_CUDA_CUDATESTENV_H
#define CROSSPOOL_TEST_UNIT_CUDA_CUDATESTENV_H

#include "runtime/cuda/CudaBackend.h"
#include "runtime/engine/Runtime.h"
#include "test/e2e/Goldens.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace crosspool::test::cuda {

#define CP_SKIP_WITHOUT_CUDA()                                                 \
  do {                                                                         \
    if (!::crosspool::runtime::cuda::cudaDeviceAvailable())                    \
      GTEST_SKIP() << "no CUDA device";                                        \
  } while (0)

inline std::string envOr(const char *name, const std::string &fallback) {
  const char *v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}
inline std::string modelsDir() {
  return envOr("CROSSPOOL_TEST_MODELS",
               std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models");
}
inline std::string plansDir() {
  return envOr("CROSSPOOL_TEST_PLANS",
               std::string(CROSSPOOL_BINARY_DIR) + "/plans");
}
inline std::string planPath(const std::string &model) {
  return plansDir() + "/" + model + ".cpplan";
}
inline runtime::LoadOptions loadOptions(const std::string &model) {
  runtime::LoadOptions o;
  o.checkpointDir = modelsDir() + "/" + model;
  return o;
}

/// Runtime options of the CUDA backend in precision `dt`.
inline runtime::RuntimeOptions cudaOptions(kernels::cuda::DType dt) {
  runtime::RuntimeOptions o;
  o.device = runtime::Device::kCuda;
  o.precision = dt == kernels::cuda::DType::kBF16 ? runtime::Precision::kBf16
                                                  : runtime::Precision::kFp32;
  return o;
}

/// The CUDA backend behind `rt` (chunk pool, KV spaces, graph counters).
inline const runtime::cuda::CudaBackend &cudaBackend(const runtime::Runtime &rt) {
  return *runtime::cuda::cudaBackendOf(rt);
}

using Golden = BasicGoldenPrompt<int32_t>;

/// The goldens of one model under modelsDir() (empty on any error).
inline std::vector<Golden> loadGoldens(const std::string &model) {
  return loadGoldensFrom<int32_t>(modelsDir() + "/" + model);
}

using Bf16Reference = BasicBf16Reference<int32_t>;

/// transformers' own bf16 run of one model's golden prompts (empty on any
/// error).
inline std::vector<Bf16Reference> loadBf16Reference(const std::string &model) {
  return loadBf16ReferenceFrom<int32_t>(modelsDir() + "/" + model);
}

using ::crosspool::test::maxRelativeError;

} // namespace crosspool::test::cuda

#endif // CROSSPOOL_TEST_UNIT_CUDA_CUDATESTENV_H
