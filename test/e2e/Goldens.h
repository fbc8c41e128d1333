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

/// One prompt of a model's goldens; `Id` is the token id type of the test's
/// API (int64_t here, int32_t for the Runtime tests).
template <typename Id> struct BasicGoldenPrompt {
  std::vector<Id> promptIds;
  std::vector<Id> generatedIds;
  std::vector<float> logits; ///< [prompt_len, vocab]
  double minTop2Margin = 0;
  /// Per greedy step, top-1 minus top-2 logit (only the "bf16" set records
  /// it; empty otherwise).
  std::vector<double> top2Margins;
};

/// transformers' own bf16 run of one golden prompt (golden_bf16.json +
/// golden_bf16.safetensors): how far transformers itself gets from its fp32
/// golden in bf16.
template <typename Id> struct BasicBf16Reference {
  std::vector<Id> generatedIds;
  std::vector<float> logits;      ///< [prompt_len, vocab]
  double maxRelErrorVsFp32 = 0;   ///< of the prompt logits
  size_t firstDivergence = 0;     ///< first greedy step != the fp32 golden's
};
using GoldenPrompt = BasicGoldenPrompt<int64_t>;

inline std::string modelsDir() {
  return std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models";
}
inline std::string planPath(const std::string &model) {
  return std::string(CROSSPOOL_BINARY_DIR) + "/plans/" + model + ".cpplan";
}

/// golden.json + golden.safetensors of the checkpoint directory `dir`
/// (empty on any error).
template <typename Id>
std::vector<BasicGoldenPrompt<Id>> loadGoldensFrom(const std::string &dir) {
  std::ifstream in(dir + "/golden.json");
  if (!in)
    return {};
  nlohmann::json meta = nlohmann::json::parse(in, nullptr, false);
  auto file = runtime::SafetensorsFile::open(dir + "/golden.safetensors");
  if (meta.is_discarded() || !file.ok())
    return {};
  std::vector<BasicGoldenPrompt<Id>> out;
  for (size_t j = 0; j < meta["prompts"].size(); ++j) {
    const auto &p = meta["prompts"][j];
    BasicGoldenPrompt<Id> g;
    g.promptIds = p["prompt_ids"].get<std::vector<Id>>();
    g.generatedIds = p["generated_ids"].get<std::vector<Id>>();
    g.minTop2Margin = p["min_top2_margin"].get<double>();
    if (p.contains("top2_margins"))
      g.top2Margins = p["top2_margins"].get<std::vector<double>>();
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

/// golden_bf16.{json,safetensors} of the checkpoint directory `dir` (empty on
/// any error).
template <typename Id>
std::vector<BasicBf16Reference<Id>> loadBf16ReferenceFrom(const std::string &dir) {
  std::ifstream in(dir + "/golden_bf16.json");
  if (!in)
    return {};
  nlohmann::json meta = nlohmann::json::parse(in, nullptr, false);
  auto file = runtime::SafetensorsFile::open(dir + "/golden_bf16.safetensors");
  if (meta.is_discarded() || !file.ok())
    return {};
  std::vector<BasicBf16Reference<Id>> out;
  for (size_t j = 0; j < meta["prompts"].size(); ++j) {
    const auto &p = meta["prompts"][j];
    BasicBf16Reference<Id> r;
    r.generatedIds = p["generated_ids"].get<std::vector<Id>>();
    r.maxRelErrorVsFp32 = p["max_rel_error_vs_fp32_golden"].get<double>();
    r.firstDivergence = p["first_divergence_from_fp32_golden"].get<size_t>();
    const runtime::TensorInfo *t = (*file)->find("logits_" + std::to_string(j));
    if (!t)
      return {};
    r.logits.resize(t->numElements());
    runtime::convertToF32(t->dtype, (*file)->data(*t), r.logits.size(),
                          r.logits.data());
    out.push_back(std::move(r));
  }
  return out;
}

/// The goldens of test/data/models/<model>.
inline std::vector<GoldenPrompt> loadGoldens(const std::string &model) {
  return loadGoldensFrom<int64_t>(modelsDir() + "/" + model);
}

/// max |a - b| / max |b|: the acceptance metric of the golden tests; inf on
/// a size mismatch or a non-finite value.
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
