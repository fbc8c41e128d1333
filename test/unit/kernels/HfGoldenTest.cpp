//===- HfGoldenTest.cpp - CPU kernels wired as a model vs HF goldens ------===//
//
// Builds each tiny checkpoint's forward pass directly from the kernels (no
// plan, no executor) and checks prompt logits and 24 greedy tokens against
// the transformers 5.17 goldens in test/data/models. This pins the kernels'
// math to Hugging Face before any other layer of the runtime is involved.
//
//===----------------------------------------------------------------------===//

#include "kernels/cpu/Kernels.h"
#include "runtime/checkpoint/Safetensors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>

namespace crosspool::kernels::cpu {
namespace {

using runtime::Checkpoint;
using runtime::SafetensorsFile;
using json = nlohmann::json;

std::string modelDir(const std::string &name) {
  return std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models/" + name;
}

/// The weights of one layer, converted to fp32.
struct Layer {
  std::vector<float> inNorm, postNorm;
  std::vector<float> q, k, v, o, qb, kb, vb, qn, kn;
  bool moe = false;
  std::vector<float> router, sGate, sUp, sDown, sGateVec;
  std::vector<std::vector<float>> eGate, eUp, eDown;
  std::vector<float> dGate, dUp, dDown;
  int64_t denseI = 0;
  std::vector<ExpertWeights> experts;
};

/// A tiny model assembled from the checkpoint and its config.json.
class KernelModel {
public:
  std::string error;
  int64_t H = 0, V = 0, expertI = 0, sharedI = 0;
  int32_t numLayers = 0, E = 0, topK = 0;
  bool normTopk = false;
  float eps = 1e-6f;
  AttentionParams attn;
  std::vector<float> embedW, finalNorm, lmHeadW;
  std::vector<Layer> layers;

  explicit KernelModel(const std::string &dir) {
    std::ifstream in(dir + "/config.json");
    json cfg = json::parse(in);
    auto ck = Checkpoint::open(dir);
    if (!ck.ok()) {
      error = std::string(ck.status().message());
      return;
    }
    ckpt_ = std::move(*ck);
    std::string family = cfg["model_type"];
    H = cfg["hidden_size"];
    V = cfg["vocab_size"];
    numLayers = cfg["num_hidden_layers"];
    eps = cfg["rms_norm_eps"].get<float>();
    E = cfg.contains("num_local_experts") ? cfg["num_local_experts"].get<int>()
                                          : cfg["num_experts"].get<int>();
    topK = cfg["num_experts_per_tok"];
    normTopk = family == "mixtral" ||
               (cfg.contains("norm_topk_prob") && cfg["norm_topk_prob"]);
    expertI = cfg.contains("moe_intermediate_size")
                  ? cfg["moe_intermediate_size"].get<int64_t>()
                  : cfg["intermediate_size"].get<int64_t>();
    if (cfg.contains("shared_expert_intermediate_size"))
      sharedI = cfg["shared_expert_intermediate_size"];
    attn.hidden = H;
    attn.numHeads = cfg["num_attention_heads"];
    attn.numKvHeads = cfg["num_key_value_heads"];
    attn.headDim = cfg.contains("head_dim") && !cfg["head_dim"].is_null()
                       ? cfg["head_dim"].get<int32_t>()
                       : int32_t(H / attn.numHeads);
    attn.ropeTheta = cfg["rope_parameters"]["rope_theta"].get<float>();
    attn.qkNormEps = eps;
    attn.clipQkv = cfg.contains("clip_qkv") && !cfg["clip_qkv"].is_null()
                       ? cfg["clip_qkv"].get<float>()
                       : 0.0f;
    attn.softmaxScale = float(std::pow(double(attn.headDim), -0.5));
    if (cfg.contains("sliding_window") && cfg["sliding_window"].is_number() &&
        (family == "mixtral" ||
         (cfg.contains("use_sliding_window") && cfg["use_sliding_window"])))
      attn.slidingWindow = cfg["sliding_window"];

    embedW = get("model.embed_tokens.weight");
    finalNorm = get("model.norm.weight");
    lmHeadW = has("lm_head.weight") ? get("lm_head.weight") : embedW;
    const std::string moeName =
        family == "mixtral" ? "block_sparse_moe" : "mlp";
    for (int32_t l = 0; l < numLayers; ++l) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      Layer L;
      L.inNorm = get(p + "input_layernorm.weight");
      L.postNorm = get(p + "post_attention_layernorm.weight");
      std::string a = p + "self_attn.";
      L.q = get(a + "q_proj.weight");
      L.k = get(a + "k_proj.weight");
      L.v = get(a + "v_proj.weight");
      L.o = get(a + "o_proj.weight");
      L.qb = getOpt(a + "q_proj.bias");
      L.kb = getOpt(a + "k_proj.bias");
      L.vb = getOpt(a + "v_proj.bias");
      L.qn = getOpt(a + "q_norm.weight");
      L.kn = getOpt(a + "k_norm.weight");
      std::string m = p + moeName + ".";
      L.moe = has(m + "gate.weight") &&
              has(m + "experts.0." +
                  std::string(family == "mixtral" ? "w1.weight"
                                                  : "gate_proj.weight"));
      if (L.moe) {
        L.router = get(m + "gate.weight");
        for (int32_t e = 0; e < E; ++e) {
          std::string x = m + "experts." + std::to_string(e) + ".";
          bool mx = family == "mixtral";
          L.eGate.push_back(get(x + (mx ? "w1" : "gate_proj") + ".weight"));
          L.eUp.push_back(get(x + (mx ? "w3" : "up_proj") + ".weight"));
          L.eDown.push_back(get(x + (mx ? "w2" : "down_proj") + ".weight"));
        }
        for (int32_t e = 0; e < E; ++e)
          L.experts.push_back(
              {L.eGate[e].data(), L.eUp[e].data(), L.eDown[e].data()});
        L.sGate = getOpt(m + "shared_expert.gate_proj.weight");
        L.sUp = getOpt(m + "shared_expert.up_proj.weight");
        L.sDown = getOpt(m + "shared_expert.down_proj.weight");
        L.sGateVec = getOpt(m + "shared_expert_gate.weight");
      } else {
        L.dGate = get(m + "gate_proj.weight");
        L.dUp = get(m + "up_proj.weight");
        L.dDown = get(m + "down_proj.weight");
        L.denseI = int64_t(L.dGate.size()) / H;
      }
      layers.push_back(std::move(L));
    }
    if (!layers.empty() && !layers[0].qn.empty())
      attn.qkNorm = int64_t(layers[0].qn.size()) == attn.headDim ? 1 : 2;
  }

  /// One step: rows (sequence, position) with token ids -> logits [T, V].
  absl::Status step(const std::vector<int32_t> &ids,
                    const std::vector<int32_t> &rowSeq,
                    const std::vector<int32_t> &rowPos,
                    std::vector<std::vector<KvSequencePages>> &kvSeqs,
                    int32_t tokensPerPage, std::vector<float> &logits) {
    const int64_t T = int64_t(ids.size());
    std::vector<float> h(static_cast<size_t>(T * H)),
        x(static_cast<size_t>(T * H)), y(static_cast<size_t>(T * H));
    if (absl::Status st = embed(ids.data(), T, embedW.data(), V, H, h.data());
        !st.ok())
      return st;
    for (int32_t l = 0; l < numLayers; ++l) {
      Layer &L = layers[static_cast<size_t>(l)];
      rmsNorm(h.data(), L.inNorm.data(), eps, T, H, x.data());
      AttentionWeights w;
      w.q = L.q.data();
      w.k = L.k.data();
      w.v = L.v.data();
      w.o = L.o.data();
      w.qBias = L.qb.empty() ? nullptr : L.qb.data();
      w.kBias = L.kb.empty() ? nullptr : L.kb.data();
      w.vBias = L.vb.empty() ? nullptr : L.vb.data();
      w.qNorm = L.qn.empty() ? nullptr : L.qn.data();
      w.kNorm = L.kn.empty() ? nullptr : L.kn.data();
      KvLayerView kv;
      kv.seqs = kvSeqs[static_cast<size_t>(l)].data();
      kv.numSeqs = int32_t(kvSeqs[static_cast<size_t>(l)].size());
      kv.tokensPerPage = tokensPerPage;
      kv.numKvHeads = attn.numKvHeads;
      kv.headDim = attn.headDim;
      if (absl::Status st = attention(x.data(), T, w, attn, rowSeq.data(),
                                      rowPos.data(), kv, y.data());
          !st.ok())
        return st;
      add(h.data(), y.data(), h.data(), T * H);
      rmsNorm(h.data(), L.postNorm.data(), eps, T, H, x.data());
      if (L.moe) {
        MoeWeights mw;
        mw.router = L.router.data();
        mw.experts = L.experts.data();
        if (!L.sGate.empty())
          mw.shared = {L.sGate.data(), L.sUp.data(), L.sDown.data()};
        mw.sharedGate = L.sGateVec.empty() ? nullptr : L.sGateVec.data();
        MoeParams mp;
        mp.hidden = H;
        mp.numExperts = E;
        mp.topK = topK;
        mp.normTopkProb = normTopk;
        mp.intermediate = expertI;
        mp.sharedIntermediate = sharedI;
        if (absl::Status st = moe(x.data(), T, mw, mp, y.data()); !st.ok())
          return st;
      } else {
        mlp(x.data(), L.dGate.data(), L.dUp.data(), L.dDown.data(), T, H,
            L.denseI, y.data());
      }
      add(h.data(), y.data(), h.data(), T * H);
    }
    rmsNorm(h.data(), finalNorm.data(), eps, T, H, h.data());
    logits.resize(static_cast<size_t>(T * V));
    lmHead(h.data(), lmHeadW.data(), T, H, V, logits.data());
    return absl::OkStatus();
  }

private:
  std::unique_ptr<Checkpoint> ckpt_;

  bool has(const std::string &name) const { return ckpt_->contains(name); }
  std::vector<float> getOpt(const std::string &name) {
    return has(name) ? get(name) : std::vector<float>();
  }
  std::vector<float> get(const std::string &name) {
    auto loc = ckpt_->find(name);
    if (!loc.ok()) {
      error = std::string(loc.status().message());
      return {};
    }
    const runtime::TensorInfo &info = *loc->info;
    std::vector<float> out(static_cast<size_t>(info.numElements()));
    runtime::convertToF32(info.dtype, loc->file->data(info), out.size(),
                          out.data());
    return out;
  }
};

class HfGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGoldenTest, PromptLogitsAndGreedyTokensMatch) {
  const std::string dir = modelDir(GetParam());
  KernelModel model(dir);
  ASSERT_EQ(model.error, "");
  std::ifstream in(dir + "/golden.json");
  json golden = json::parse(in);
  auto goldenLogits = SafetensorsFile::open(dir + "/golden.safetensors");
  ASSERT_TRUE(goldenLogits.ok()) << goldenLogits.status();

  const auto &prompts = golden["prompts"];
  const size_t S = prompts.size();
  const int32_t tpp = 4, genLen = 24;
  // Every sequence's pages, per layer.
  std::vector<std::vector<std::vector<float>>> storage;
  std::vector<std::vector<std::vector<float *>>> tables(
      static_cast<size_t>(model.numLayers),
      std::vector<std::vector<float *>>(S));
  std::vector<std::vector<KvSequencePages>> kvSeqs(
      static_cast<size_t>(model.numLayers));
  const int64_t pageFloats =
      2 * int64_t(tpp) * model.attn.numKvHeads * model.attn.headDim;
  for (int32_t l = 0; l < model.numLayers; ++l)
    for (size_t s = 0; s < S; ++s) {
      size_t len = prompts[s]["prompt_ids"].size() + genLen;
      for (size_t pg = 0; pg < (len + tpp - 1) / tpp; ++pg) {
        storage.emplace_back();
        storage.back().emplace_back(static_cast<size_t>(pageFloats), NAN);
        tables[static_cast<size_t>(l)][s].push_back(
            storage.back().back().data());
      }
      kvSeqs[static_cast<size_t>(l)].push_back(
          {tables[static_cast<size_t>(l)][s].data(),
           int32_t(tables[static_cast<size_t>(l)][s].size())});
    }

  // Prefill: every prompt in one step.
  std::vector<int32_t> ids, rowSeq, rowPos;
  for (size_t s = 0; s < S; ++s) {
    std::vector<int32_t> p = prompts[s]["prompt_ids"];
    for (size_t i = 0; i < p.size(); ++i) {
      ids.push_back(p[i]);
      rowSeq.push_back(int32_t(s));
      rowPos.push_back(int32_t(i));
    }
  }
  std::vector<float> logits;
  ASSERT_TRUE(model.step(ids, rowSeq, rowPos, kvSeqs, tpp, logits).ok());
  std::vector<int32_t> next(S), lastPos(S);
  size_t row = 0;
  for (size_t s = 0; s < S; ++s) {
    const runtime::TensorInfo *gi =
        (*goldenLogits)->find("logits_" + std::to_string(s));
    ASSERT_NE(gi, nullptr);
    const float *want =
        reinterpret_cast<const float *>((*goldenLogits)->data(*gi));
    size_t len = prompts[s]["prompt_ids"].size();
    ASSERT_EQ(gi->numElements(), int64_t(len) * model.V);
    double maxDiff = 0, maxRef = 0;
    for (size_t i = 0; i < len * static_cast<size_t>(model.V); ++i) {
      maxDiff = std::max(
          maxDiff,
          std::fabs(double(logits[row * static_cast<size_t>(model.V) + i]) -
                    want[i]));
      maxRef = std::max(maxRef, std::fabs(double(want[i])));
    }
    EXPECT_LE(maxDiff / maxRef, 1e-4) << GetParam() << " prompt " << s;
    row += len;
    next[s] = int32_t(argmax(
        logits.data() + (row - 1) * static_cast<size_t>(model.V), model.V));
    lastPos[s] = int32_t(len) - 1;
  }

  // Greedy decode: one row per sequence per step, the cache carries context.
  std::vector<std::vector<int32_t>> generated(S);
  for (int32_t g = 0; g < genLen; ++g) {
    ids.clear();
    rowSeq.clear();
    rowPos.clear();
    for (size_t s = 0; s < S; ++s) {
      generated[s].push_back(next[s]);
      ids.push_back(next[s]);
      rowSeq.push_back(int32_t(s));
      rowPos.push_back(++lastPos[s]);
    }
    if (g + 1 == genLen)
      break;
    ASSERT_TRUE(model.step(ids, rowSeq, rowPos, kvSeqs, tpp, logits).ok());
    for (size_t s = 0; s < S; ++s)
      next[s] = int32_t(
          argmax(logits.data() + s * static_cast<size_t>(model.V), model.V));
  }
  for (size_t s = 0; s < S; ++s)
    EXPECT_EQ(generated[s],
              prompts[s]["generated_ids"].get<std::vector<int32_t>>())
        << GetParam() << " prompt " << s;
}

INSTANTIATE_TEST_SUITE_P(Models, HfGoldenTest,
                         ::testing::Values("mixtral_tiny", "qwen2_moe_tiny",
                                           "qwen3_moe_tiny", "olmoe_tiny",
                                           "mixtral_wide", "qwen2_moe_sparse2",
                                           "qwen3_moe_wide", "olmoe_clip"));

} // namespace
} // namespace crosspool::kernels::cpu
