//===- CudaTestEnv.h - Paths and goldens of the CUDA backend tests -*- C++
//-*-===//
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

#include "runtime/checkpoint/Safetensors.h"
#include "runtime/cuda/CudaBackend.h"
#include "runtime/engine/Runtime.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
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

struct Golden {
  std::vector<int32_t> promptIds, generatedIds;
  std::vector<float> logits; ///< [prompt_len, vocab]
  double minTop2Margin = 0;
};

/// golden.json + golden.safetensors of one model (empty on any error).
inline std::vector<Golden> loadGoldens(const std::string &model) {
  std::string dir = modelsDir() + "/" + model;
  std::ifstream in(dir + "/golden.json");
  if (!in)
    return {};
  nlohmann::json meta = nlohmann::json::parse(in, nullptr, false);
  auto file = runtime::SafetensorsFile::open(dir + "/golden.safetensors");
  if (meta.is_discarded() || !file.ok())
    return {};
  std::vector<Golden> out;
  for (size_t j = 0; j < meta["prompts"].size(); ++j) {
    const auto &p = meta["prompts"][j];
    Golden g;
    g.promptIds = p["prompt_ids"].get<std::vector<int32_t>>();
    g.generatedIds = p["generated_ids"].get<std::vector<int32_t>>();
    g.minTop2Margin = p["min_top2_margin"].get<double>();
    const runtime::TensorInfo *t = (*file)->find("logits_" + std::to_string(j));
    if (!t)
      return {};
    g.logits.resize(t->numElements());
    runtime::convertToF32(t->dtype, (*file)->data(*t), g.logits.size(),
                          g.logits.data());
    out.push_back(std::move(g));
  }
  return out;
}

/// max |a - b| / max |b| (the golden acceptance metric); inf on a size
/// mismatch or a non-finite value.
inline double maxRelativeError(const std::vector<float> &got,
                               const std::vector<float> &want) {
  if (got.size() != want.size())
    return INFINITY;
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    maxDiff = std::max(maxDiff, std::fabs(double(got[i]) - double(want[i])));
    maxRef = std::max(maxRef, std::fabs(double(want[i])));
  }
  if (!std::isfinite(maxDiff))
    return INFINITY;
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

} // namespace crosspool::test::cuda

#endif // CROSSPOOL_TEST_UNIT_CUDA_CUDATESTENV_H
