//===- Goldens.h - Hugging Face goldens for end-to-end tests ----*- C++ -*-===//
//
// tools/make_goldens.py recorded, per tiny checkpoint, transformers' fp32
// logits at every prompt position and a 24-token greedy continuation.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TEST_E2E_GOLDENS_H
#define CROSSPOOL_TEST_E2E_GOLDENS_H

#include "runtime/checkpoint/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace crosspool::test {

struct GoldenPrompt {
  std::vector<int64_t> promptIds;
  std::vector<int64_t> generatedIds;
  std::vector<float> logits; ///< [prompt_len, vocab]
  double minTop2Margin = 0;
};

inline std::string modelsDir() {
  return std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models";
}
inline std::string planPath(const std::string &model) {
  return std::string(CROSSPOOL_BINARY_DIR) + "/plans/" + model + ".cpplan";
}

/// Reads golden.json + golden.safetensors of test/data/models/<model>.
inline std::vector<GoldenPrompt> loadGoldens(const std::string &model) {
  std::string dir = modelsDir() + "/" + model;
  std::ifstream in(dir + "/golden.json");
  nlohmann::json meta = nlohmann::json::parse(in);
  auto file = runtime::SafetensorsFile::open(dir + "/golden.safetensors");
  std::vector<GoldenPrompt> out;
  if (!file.ok())
    return out;
  for (size_t j = 0; j < meta["prompts"].size(); ++j) {
    const auto &p = meta["prompts"][j];
    GoldenPrompt g;
    g.promptIds = p["prompt_ids"].get<std::vector<int64_t>>();
    g.generatedIds = p["generated_ids"].get<std::vector<int64_t>>();
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

/// max |a - b| / max |b|: the acceptance metric of the golden tests.
inline double maxRelativeError(const std::vector<float> &got,
                               const std::vector<float> &want) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    maxDiff = std::max(maxDiff, std::fabs(double(got[i]) - double(want[i])));
    maxRef = std::max(maxRef, std::fabs(double(want[i])));
  }
  if (got.size() != want.size() || !std::isfinite(maxDiff))
    return INFINITY;
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

} // namespace crosspool::test

#endif // CROSSPOOL_TEST_E2E_GOLDENS_H
