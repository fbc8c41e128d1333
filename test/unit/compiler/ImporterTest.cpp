//===- ImporterTest.cpp - config.json + safetensors -> ModelSpec ----------===//
//
// Expected values come from each checkpoint's config.json and from the
// safetensors headers read here with plain JSON parsing (independent of the
// checkpoint reader). Bad-input cases edit a temp copy of a checkpoint.
//
//===----------------------------------------------------------------------===//

#include "compiler/importer/Importer.h"

#include "nlohmann/json.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace crosspool::compiler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::DType;
using ::testing::HasSubstr;
using Shape = std::vector<int64_t>;

std::string modelDir(const std::string &name) {
  return std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models/" + name;
}

std::string readAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeAll(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors file split into its parsed header and its data section.
struct RawSafetensors {
  json header;
  std::string data;
  uint64_t headerLen = 0;
};

RawSafetensors readRaw(const std::string &path) {
  std::string bytes = readAll(path);
  RawSafetensors raw;
  for (int i = 7; i >= 0; --i)
    raw.headerLen = (raw.headerLen << 8) | static_cast<uint8_t>(bytes[i]);
  raw.header = json::parse(bytes.substr(8, raw.headerLen));
  raw.data = bytes.substr(8 + raw.headerLen);
  return raw;
}

void writeRaw(const std::string &path, const json &header,
              const std::string &data) {
  std::string h = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] =
        static_cast<char>((static_cast<uint64_t>(h.size()) >> (8 * i)) & 0xff);
  writeAll(path, out + h + data);
}

ModelSpec importOk(const std::string &dir) {
  auto spec = importCheckpoint(dir);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *std::move(spec) : ModelSpec();
}

/// Checks a WeightRef against the file's header, parsed independently.
void expectWeight(const ModelSpec &spec, const WeightRef &ref,
                  const std::string &name, const std::string &file, DType dtype,
                  const Shape &shape) {
  SCOPED_TRACE(name);
  EXPECT_EQ(ref.name, name);
  EXPECT_EQ(ref.file, file);
  EXPECT_EQ(ref.dtype, dtype);
  EXPECT_EQ(ref.shape, shape);
  RawSafetensors raw = readRaw(spec.checkpointDir + "/" + file);
  ASSERT_TRUE(raw.header.contains(name));
  uint64_t begin = raw.header[name]["data_offsets"][0].get<uint64_t>();
  uint64_t end = raw.header[name]["data_offsets"][1].get<uint64_t>();
  EXPECT_EQ(ref.offset, 8 + raw.headerLen + begin);
  EXPECT_EQ(ref.nbytes, end - begin);
}

TEST(ImporterTest, MixtralTiny) {
  ModelSpec spec = importOk(modelDir("mixtral_tiny"));
  EXPECT_EQ(spec.name, "mixtral_tiny");
  EXPECT_EQ(spec.architecture, "MixtralForCausalLM");
  EXPECT_EQ(spec.checkpointDir,
            fs::canonical(modelDir("mixtral_tiny")).string());
  EXPECT_EQ(spec.vocabSize, 256);
  EXPECT_EQ(spec.hiddenSize, 64);
  EXPECT_EQ(spec.maxPositionEmbeddings, 512);
  EXPECT_EQ(spec.eosTokenIds, Shape{2});
  EXPECT_DOUBLE_EQ(spec.rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 10000.0);
  EXPECT_EQ(spec.ropeType, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(spec.ropeFactor, 1.0);
  EXPECT_FALSE(spec.tieWordEmbeddings);
  const std::string f = "model.safetensors";
  expectWeight(spec, spec.embed, "model.embed_tokens.weight", f, DType::kF32,
               {256, 64});
  expectWeight(spec, spec.lmHead, "lm_head.weight", f, DType::kF32, {256, 64});
  expectWeight(spec, spec.finalNorm, "model.norm.weight", f, DType::kF32, {64});
  ASSERT_EQ(spec.layers.size(), 2u);
  for (const LayerSpec &layer : spec.layers) {
    const AttentionSpec &a = layer.attention;
    EXPECT_EQ(a.numHeads, 4);
    EXPECT_EQ(a.numKvHeads, 2);
    EXPECT_EQ(a.headDim, 16);
    EXPECT_EQ(a.qkNorm, QkNorm::kNone);
    EXPECT_FALSE(a.qBias || a.kBias || a.vBias || a.oBias || a.qNorm ||
                 a.kNorm);
    EXPECT_EQ(a.clipQkv, 0.0);
    EXPECT_EQ(a.slidingWindow, 0);
    ASSERT_TRUE(layer.moe);
    EXPECT_FALSE(layer.mlp);
    EXPECT_EQ(layer.moe->numExperts, 8);
    EXPECT_EQ(layer.moe->topK, 2);
    EXPECT_TRUE(layer.moe->normTopkProb); // Mixtral always renormalizes
    EXPECT_EQ(layer.moe->experts.size(), 8u);
    EXPECT_FALSE(layer.moe->sharedExpert || layer.moe->sharedExpertGate);
  }
  const LayerSpec &l1 = spec.layers[1];
  expectWeight(spec, l1.attention.q, "model.layers.1.self_attn.q_proj.weight",
               f, DType::kF32, {64, 64});
  expectWeight(spec, l1.attention.k, "model.layers.1.self_attn.k_proj.weight",
               f, DType::kF32, {32, 64});
  expectWeight(spec, l1.attention.v, "model.layers.1.self_attn.v_proj.weight",
               f, DType::kF32, {32, 64});
  expectWeight(spec, l1.attention.o, "model.layers.1.self_attn.o_proj.weight",
               f, DType::kF32, {64, 64});
  expectWeight(spec, l1.inputNorm, "model.layers.1.input_layernorm.weight", f,
               DType::kF32, {64});
  expectWeight(spec, l1.postAttentionNorm,
               "model.layers.1.post_attention_layernorm.weight", f, DType::kF32,
               {64});
  expectWeight(spec, l1.moe->router,
               "model.layers.1.block_sparse_moe.gate.weight", f, DType::kF32,
               {8, 64});
  // w1 = gate, w3 = up, w2 = down.
  const MlpSpec &e3 = l1.moe->experts[3];
  expectWeight(spec, e3.gate,
               "model.layers.1.block_sparse_moe.experts.3.w1.weight", f,
               DType::kF32, {96, 64});
  expectWeight(spec, e3.up,
               "model.layers.1.block_sparse_moe.experts.3.w3.weight", f,
               DType::kF32, {96, 64});
  expectWeight(spec, e3.down,
               "model.layers.1.block_sparse_moe.experts.3.w2.weight", f,
               DType::kF32, {64, 96});
}

TEST(ImporterTest, MixtralWideTiedBf16) {
  ModelSpec spec = importOk(modelDir("mixtral_wide"));
  EXPECT_EQ(spec.hiddenSize, 96);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 500000.0);
  EXPECT_TRUE(spec.tieWordEmbeddings);
  EXPECT_EQ(spec.lmHead.name, "model.embed_tokens.weight");
  EXPECT_EQ(spec.lmHead.offset, spec.embed.offset);
  ASSERT_EQ(spec.layers.size(), 3u);
  const LayerSpec &l2 = spec.layers[2];
  EXPECT_EQ(l2.attention.numHeads, 6);
  EXPECT_EQ(l2.attention.numKvHeads, 3);
  EXPECT_EQ(l2.attention.headDim, 16);
  ASSERT_TRUE(l2.moe);
  EXPECT_EQ(l2.moe->numExperts, 4);
  EXPECT_EQ(l2.moe->topK, 1);
  EXPECT_TRUE(l2.moe->normTopkProb);
  expectWeight(spec, l2.moe->experts[3].down,
               "model.layers.2.block_sparse_moe.experts.3.w2.weight",
               "model.safetensors", DType::kBF16, {96, 64});
  expectWeight(spec, l2.attention.k, "model.layers.2.self_attn.k_proj.weight",
               "model.safetensors", DType::kBF16, {48, 96});
}

TEST(ImporterTest, Qwen2MoeTinySharded) {
  ModelSpec spec = importOk(modelDir("qwen2_moe_tiny"));
  EXPECT_EQ(spec.architecture, "Qwen2MoeForCausalLM");
  EXPECT_FALSE(spec.tieWordEmbeddings);
  expectWeight(spec, spec.lmHead, "lm_head.weight",
               "model-00001-of-00010.safetensors", DType::kBF16, {256, 64});
  expectWeight(spec, spec.finalNorm, "model.norm.weight",
               "model-00010-of-00010.safetensors", DType::kBF16, {64});
  ASSERT_EQ(spec.layers.size(), 3u);
  // mlp_only_layers = [1].
  EXPECT_TRUE(spec.layers[0].moe);
  EXPECT_FALSE(spec.layers[1].moe);
  EXPECT_TRUE(spec.layers[2].moe);
  ASSERT_TRUE(spec.layers[1].mlp);
  expectWeight(spec, spec.layers[1].mlp->gate,
               "model.layers.1.mlp.gate_proj.weight",
               "model-00006-of-00010.safetensors", DType::kBF16, {96, 64});
  expectWeight(spec, spec.layers[1].mlp->down,
               "model.layers.1.mlp.down_proj.weight",
               "model-00006-of-00010.safetensors", DType::kBF16, {64, 96});
  const MoeSpec &moe = *spec.layers[0].moe;
  EXPECT_EQ(moe.numExperts, 8);
  EXPECT_EQ(moe.topK, 2);
  EXPECT_FALSE(moe.normTopkProb);
  ASSERT_TRUE(moe.sharedExpert);
  ASSERT_TRUE(moe.sharedExpertGate);
  expectWeight(spec, *moe.sharedExpertGate,
               "model.layers.0.mlp.shared_expert_gate.weight",
               "model-00005-of-00010.safetensors", DType::kBF16, {1, 64});
  expectWeight(spec, moe.sharedExpert->up,
               "model.layers.0.mlp.shared_expert.up_proj.weight",
               "model-00005-of-00010.safetensors", DType::kBF16, {48, 64});
  expectWeight(spec, moe.experts[0].down,
               "model.layers.0.mlp.experts.0.down_proj.weight",
               "model-00003-of-00010.safetensors", DType::kBF16, {64, 32});
  for (const LayerSpec &layer : spec.layers) {
    const AttentionSpec &a = layer.attention;
    ASSERT_TRUE(a.qBias && a.kBias && a.vBias);
    EXPECT_FALSE(a.oBias);
    EXPECT_EQ(a.qBias->shape, Shape{64});
    EXPECT_EQ(a.kBias->shape, Shape{32});
    EXPECT_EQ(a.qkNorm, QkNorm::kNone);
  }
  expectWeight(spec, *spec.layers[0].attention.kBias,
               "model.layers.0.self_attn.k_proj.bias",
               "model-00005-of-00010.safetensors", DType::kBF16, {32});
}

TEST(ImporterTest, Qwen2MoeSparseStep2) {
  ModelSpec spec = importOk(modelDir("qwen2_moe_sparse2"));
  ASSERT_EQ(spec.layers.size(), 4u);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 20000.0);
  EXPECT_EQ(spec.hiddenSize, 48);
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    const LayerSpec &layer = spec.layers[i];
    EXPECT_EQ(layer.attention.numHeads, 6);
    EXPECT_EQ(layer.attention.numKvHeads, 1);
    EXPECT_EQ(layer.attention.headDim, 8);
    EXPECT_EQ(layer.attention.k.shape, (Shape{8, 48}));
    // decoder_sparse_step 2: (i + 1) % 2 == 0, i.e. odd layers are sparse.
    if (i % 2 == 1) {
      ASSERT_TRUE(layer.moe);
      EXPECT_EQ(layer.moe->numExperts, 12);
      EXPECT_EQ(layer.moe->topK, 3);
      EXPECT_TRUE(layer.moe->normTopkProb);
      EXPECT_EQ(layer.moe->experts[11].gate.shape, (Shape{24, 48}));
      EXPECT_EQ(layer.moe->sharedExpert->down.shape, (Shape{48, 40}));
    } else {
      ASSERT_TRUE(layer.mlp);
      EXPECT_EQ(layer.mlp->up.shape, (Shape{80, 48}));
    }
  }
}

TEST(ImporterTest, Qwen3MoeTinyTiedPerHeadNorm) {
  ModelSpec spec = importOk(modelDir("qwen3_moe_tiny"));
  EXPECT_EQ(spec.architecture, "Qwen3MoeForCausalLM");
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 1000000.0);
  EXPECT_TRUE(spec.tieWordEmbeddings);
  EXPECT_EQ(spec.lmHead.name, spec.embed.name);
  EXPECT_EQ(spec.lmHead.name, "model.embed_tokens.weight");
  ASSERT_EQ(spec.layers.size(), 2u);
  const std::string f = "model.safetensors";
  for (const LayerSpec &layer : spec.layers) {
    const AttentionSpec &a = layer.attention;
    EXPECT_EQ(a.headDim, 32); // explicit head_dim, not hidden / heads = 16
    EXPECT_EQ(a.qkNorm, QkNorm::kPerHead);
    ASSERT_TRUE(a.qNorm && a.kNorm);
    EXPECT_EQ(a.qNorm->shape, Shape{32});
    EXPECT_EQ(a.kNorm->shape, Shape{32});
    EXPECT_EQ(a.q.shape, (Shape{128, 64}));
    EXPECT_EQ(a.o.shape, (Shape{64, 128}));
    EXPECT_FALSE(a.qBias || a.oBias);
    ASSERT_TRUE(layer.moe);
    EXPECT_TRUE(layer.moe->normTopkProb);
    EXPECT_EQ(layer.moe->numExperts, 8);
    EXPECT_FALSE(layer.moe->sharedExpert);
  }
  expectWeight(spec, *spec.layers[1].attention.qNorm,
               "model.layers.1.self_attn.q_norm.weight", f, DType::kF32, {32});
  expectWeight(spec, spec.layers[1].moe->experts[7].up,
               "model.layers.1.mlp.experts.7.up_proj.weight", f, DType::kF32,
               {32, 64});
  expectWeight(spec, spec.layers[0].moe->router,
               "model.layers.0.mlp.gate.weight", f, DType::kF32, {8, 64});
}

TEST(ImporterTest, Qwen3MoeWideDenseFirstLayer) {
  ModelSpec spec = importOk(modelDir("qwen3_moe_wide"));
  ASSERT_EQ(spec.layers.size(), 3u);
  EXPECT_FALSE(spec.tieWordEmbeddings);
  ASSERT_TRUE(spec.layers[0].mlp); // mlp_only_layers = [0]
  EXPECT_EQ(spec.layers[0].mlp->gate.shape, (Shape{64, 80}));
  for (size_t i = 1; i < 3; ++i) {
    ASSERT_TRUE(spec.layers[i].moe);
    EXPECT_EQ(spec.layers[i].moe->numExperts, 16);
    EXPECT_EQ(spec.layers[i].moe->topK, 4);
    EXPECT_FALSE(spec.layers[i].moe->normTopkProb);
    EXPECT_EQ(spec.layers[i].moe->experts[15].down.shape, (Shape{80, 24}));
  }
  EXPECT_EQ(spec.layers[2].attention.headDim, 16);
  EXPECT_EQ(spec.layers[2].attention.numHeads, 8);
  EXPECT_EQ(spec.layers[2].attention.qNorm->shape, Shape{16});
  EXPECT_EQ(spec.lmHead.dtype, DType::kBF16);
}

TEST(ImporterTest, OlmoeTinyFullQkNorm) {
  ModelSpec spec = importOk(modelDir("olmoe_tiny"));
  EXPECT_EQ(spec.architecture, "OlmoeForCausalLM");
  ASSERT_EQ(spec.layers.size(), 2u);
  const AttentionSpec &a = spec.layers[0].attention;
  EXPECT_EQ(a.qkNorm, QkNorm::kFull);
  EXPECT_EQ(a.clipQkv, 0.0);
  expectWeight(spec, *a.qNorm, "model.layers.0.self_attn.q_norm.weight",
               "model.safetensors", DType::kF16, {64});
  expectWeight(spec, *a.kNorm, "model.layers.0.self_attn.k_norm.weight",
               "model.safetensors", DType::kF16, {32});
  ASSERT_TRUE(spec.layers[0].moe);
  EXPECT_FALSE(spec.layers[0].moe->normTopkProb);
  EXPECT_EQ(spec.layers[0].moe->experts[5].gate.shape, (Shape{32, 64}));
}

TEST(ImporterTest, OlmoeClip) {
  ModelSpec spec = importOk(modelDir("olmoe_clip"));
  ASSERT_EQ(spec.layers.size(), 2u);
  for (const LayerSpec &layer : spec.layers) {
    EXPECT_DOUBLE_EQ(layer.attention.clipQkv, 2.5);
    EXPECT_EQ(layer.attention.numHeads, 8);
    EXPECT_EQ(layer.attention.numKvHeads, 8);
    EXPECT_EQ(layer.attention.headDim, 8);
    EXPECT_EQ(layer.attention.kNorm->shape, Shape{64});
    EXPECT_TRUE(layer.moe->normTopkProb);
    EXPECT_EQ(layer.moe->numExperts, 6);
    EXPECT_EQ(layer.moe->topK, 3);
    EXPECT_EQ(layer.moe->experts[0].gate.shape, (Shape{48, 64}));
  }
}

//===----------------------------------------------------------------------===//
// Edited copies
//===----------------------------------------------------------------------===//

class ImporterEditTest : public ::testing::Test {
protected:
  void TearDown() override {
    if (!dir_.empty())
      fs::remove_all(dir_);
  }
  /// Copies test/data/models/<name> into a fresh temp dir and returns it.
  std::string copy(const std::string &name) {
    std::string tmpl = ::testing::TempDir() + "/importer_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    EXPECT_NE(::mkdtemp(buf.data()), nullptr);
    dir_ = std::string(buf.data()) + "/" + name;
    fs::create_directory(dir_);
    for (const auto &entry : fs::directory_iterator(modelDir(name))) {
      std::string file = entry.path().filename().string();
      if (file.rfind("golden", 0) == 0)
        continue; // goldens are not part of the checkpoint
      fs::copy_file(entry.path(), dir_ + "/" + file);
    }
    return dir_;
  }
  void editConfig(const std::function<void(json &)> &edit) {
    json config = json::parse(readAll(dir_ + "/config.json"));
    edit(config);
    writeAll(dir_ + "/config.json", config.dump(2));
  }
  void editHeader(const std::string &file,
                  const std::function<void(json &)> &edit) {
    RawSafetensors raw = readRaw(dir_ + "/" + file);
    edit(raw.header);
    writeRaw(dir_ + "/" + file, raw.header, raw.data);
  }
  std::string importError() {
    auto spec = importCheckpoint(dir_);
    EXPECT_FALSE(spec.ok()) << "expected the import of " << dir_ << " to fail";
    return spec.ok() ? std::string() : std::string(spec.status().message());
  }
  std::string dir_;
};

TEST_F(ImporterEditTest, LegacyRopeScalingLinear) {
  copy("mixtral_tiny");
  editConfig([](json &c) {
    c.erase("rope_parameters");
    c["rope_theta"] = 50000.0;
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.ropeType, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(spec.ropeFactor, 4.0);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 50000.0);
  EXPECT_EQ(spec.name, "mixtral_tiny");
}

TEST_F(ImporterEditTest, LegacyRopeNullScalingAndClassDefaults) {
  copy("mixtral_tiny");
  editConfig([](json &c) {
    c.erase("rope_parameters");
    c["rope_scaling"] = nullptr;
    c.erase("rms_norm_eps");
    c["eos_token_id"] = {2, 7};
  });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.ropeType, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 1e6); // MixtralConfig.default_theta
  EXPECT_DOUBLE_EQ(spec.rmsNormEps, 1e-5);
  EXPECT_EQ(spec.eosTokenIds, (Shape{2, 7}));
}

TEST_F(ImporterEditTest, V5RopeParametersLinear) {
  copy("qwen3_moe_tiny");
  editConfig([](json &c) {
    c["rope_parameters"] = {
        {"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 123.0}};
  });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.ropeType, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(spec.ropeFactor, 2.0);
  EXPECT_DOUBLE_EQ(spec.ropeTheta, 123.0);
}

TEST_F(ImporterEditTest, Qwen3NumExpertsAliasAndSlidingWindow) {
  copy("qwen3_moe_tiny");
  editConfig([](json &c) {
    c.erase("num_local_experts");
    c["num_experts"] = 8;
    c["use_sliding_window"] = true;
    c["sliding_window"] = 64;
  });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.layers[0].moe->numExperts, 8);
  EXPECT_EQ(spec.layers[0].attention.slidingWindow, 64);
}

TEST_F(ImporterEditTest, IntermediateSizeOnlyNeededByDenseLayers) {
  copy("qwen3_moe_tiny"); // every layer sparse
  editConfig([](json &c) { c.erase("intermediate_size"); });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.layers.size(), 2u);
  editConfig([](json &c) { c["num_experts"] = 4; }); // disagrees with 8
  EXPECT_THAT(
      importError(),
      HasSubstr("'num_experts' (4) and 'num_local_experts' (8) disagree"));
}

TEST_F(ImporterEditTest, RejectsDenseLayerWithoutIntermediateSize) {
  copy("qwen2_moe_tiny"); // layer 1 is dense
  editConfig([](json &c) { c.erase("intermediate_size"); });
  EXPECT_THAT(
      importError(),
      HasSubstr("layer 1 is a dense MLP but 'intermediate_size' is missing"));
}

TEST_F(ImporterEditTest, MixtralSlidingWindow) {
  copy("mixtral_tiny");
  editConfig([](json &c) { c["sliding_window"] = 16; });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.layers[1].attention.slidingWindow, 16);
}

TEST_F(ImporterEditTest, Qwen2QkvBiasOffAndDefaultOn) {
  copy("qwen2_moe_sparse2");
  editConfig([](json &c) { c["qkv_bias"] = false; });
  ModelSpec spec = importOk(dir_);
  EXPECT_FALSE(spec.layers[0].attention.qBias);
  editConfig([](json &c) { c.erase("qkv_bias"); }); // older configs: always on
  spec = importOk(dir_);
  EXPECT_TRUE(spec.layers[0].attention.qBias);
}

/// Rewrites qwen3_moe_tiny into transformers v5's stacked expert layout and
/// checks every expert view selects exactly the original per-expert bytes.
TEST_F(ImporterEditTest, StackedExpertLayout) {
  copy("qwen3_moe_tiny");
  const int64_t experts = 8, inter = 32, hidden = 64;
  RawSafetensors raw = readRaw(dir_ + "/model.safetensors");
  auto bytesOf = [&](const std::string &name) {
    const json &e = raw.header[name];
    uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    return raw.data.substr(b, end - b);
  };
  json header = json::object();
  std::string data;
  auto add = [&](const std::string &name, const Shape &shape,
                 const std::string &bytes) {
    header[name] = {
        {"dtype", "F32"},
        {"shape", shape},
        {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  };
  std::vector<std::string> original;
  for (auto it = raw.header.begin(); it != raw.header.end(); ++it) {
    const std::string &name = it.key();
    if (name == "__metadata__" || name.find(".experts.") != std::string::npos)
      continue;
    add(name, it.value()["shape"].get<Shape>(), bytesOf(name));
  }
  for (int layer = 0; layer < 2; ++layer) {
    std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    std::string gateUp, down;
    for (int e = 0; e < experts; ++e) {
      std::string q = p + std::to_string(e) + ".";
      gateUp += bytesOf(q + "gate_proj.weight") + bytesOf(q + "up_proj.weight");
      down += bytesOf(q + "down_proj.weight");
    }
    add(p + "gate_up_proj", {experts, 2 * inter, hidden}, gateUp);
    add(p + "down_proj", {experts, hidden, inter}, down);
  }
  writeRaw(dir_ + "/model.safetensors", header, data);

  ModelSpec spec = importOk(dir_);
  ASSERT_EQ(spec.layers.size(), 2u);
  std::string file = readAll(dir_ + "/model.safetensors");
  for (int layer = 0; layer < 2; ++layer) {
    const MoeSpec &moe = *spec.layers[layer].moe;
    ASSERT_EQ(moe.experts.size(), 8u);
    EXPECT_EQ(moe.router.name,
              "model.layers." + std::to_string(layer) + ".mlp.gate.weight");
    for (int e = 0; e < experts; ++e) {
      SCOPED_TRACE(e);
      std::string q = "model.layers." + std::to_string(layer) +
                      ".mlp.experts." + std::to_string(e) + ".";
      const MlpSpec &x = moe.experts[e];
      EXPECT_EQ(x.gate.shape, (Shape{inter, hidden}));
      EXPECT_EQ(x.down.shape, (Shape{hidden, inter}));
      EXPECT_EQ(x.gate.nbytes, static_cast<uint64_t>(inter * hidden * 4));
      EXPECT_EQ(file.substr(x.gate.offset, x.gate.nbytes),
                bytesOf(q + "gate_proj.weight"));
      EXPECT_EQ(file.substr(x.up.offset, x.up.nbytes),
                bytesOf(q + "up_proj.weight"));
      EXPECT_EQ(file.substr(x.down.offset, x.down.nbytes),
                bytesOf(q + "down_proj.weight"));
    }
  }
}

TEST_F(ImporterEditTest, RejectsMalformedConfig) {
  copy("mixtral_tiny");
  writeAll(dir_ + "/config.json",
           "{\"architectures\": [\"MixtralForCausalLM\"");
  EXPECT_THAT(importError(), HasSubstr("config.json: not valid JSON"));
  writeAll(dir_ + "/config.json", "[1, 2]");
  EXPECT_THAT(importError(),
              HasSubstr("config.json: top level is not a JSON object"));
}

TEST_F(ImporterEditTest, RejectsMissingConfig) {
  copy("mixtral_tiny");
  fs::remove(dir_ + "/config.json");
  EXPECT_THAT(importError(), HasSubstr("config.json: cannot open"));
}

TEST_F(ImporterEditTest, RejectsMissingDirectory) {
  auto spec = importCheckpoint("/nonexistent/crosspool/model");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(
      std::string(spec.status().message()),
      HasSubstr(
          "/nonexistent/crosspool/model: checkpoint directory does not exist"));
}

TEST_F(ImporterEditTest, RejectsUnsupportedArchitecture) {
  copy("mixtral_tiny");
  editConfig([](json &c) { c["architectures"] = {"LlamaForCausalLM"}; });
  EXPECT_THAT(
      importError(),
      HasSubstr("config.json: unsupported architecture 'LlamaForCausalLM' "
                "(supported: MixtralForCausalLM, OlmoeForCausalLM, "
                "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM)"));
  editConfig([](json &c) { c.erase("architectures"); });
  EXPECT_THAT(importError(),
              HasSubstr("missing required field 'architectures'"));
}

TEST_F(ImporterEditTest, RejectsModelTypeMismatch) {
  copy("mixtral_tiny");
  editConfig([](json &c) { c["model_type"] = "llama"; });
  EXPECT_THAT(importError(),
              HasSubstr("'model_type' is \"llama\" but architecture "
                        "'MixtralForCausalLM' expects \"mixtral\""));
}

TEST_F(ImporterEditTest, RejectsUnsupportedHiddenAct) {
  copy("olmoe_tiny");
  editConfig([](json &c) { c["hidden_act"] = "gelu"; });
  EXPECT_THAT(importError(),
              HasSubstr("config.json: unsupported value for 'hidden_act': "
                        "\"gelu\" (expected \"silu\")"));
}

TEST_F(ImporterEditTest, RejectsUnsupportedRopeType) {
  copy("qwen3_moe_tiny");
  editConfig([](json &c) {
    c["rope_parameters"] = {
        {"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e6}};
  });
  EXPECT_THAT(importError(),
              HasSubstr("unsupported rope type 'yarn' in 'rope_parameters' "
                        "(supported: default, linear)"));
  editConfig([](json &c) {
    c.erase("rope_parameters");
    c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  });
  EXPECT_THAT(importError(),
              HasSubstr("unsupported rope type 'dynamic' in 'rope_scaling'"));
  editConfig([](json &c) {
    c["rope_scaling"] = {{"type", "default"}, {"partial_rotary_factor", 0.5}};
  });
  EXPECT_THAT(importError(),
              HasSubstr("'rope_scaling.partial_rotary_factor': 0.5"));
}

TEST_F(ImporterEditTest, RejectsMissingAndMistypedFields) {
  copy("qwen2_moe_tiny");
  editConfig([](json &c) { c.erase("hidden_size"); });
  EXPECT_THAT(importError(),
              HasSubstr("config.json: missing required field 'hidden_size'"));
  editConfig([](json &c) { c["hidden_size"] = "64"; });
  EXPECT_THAT(
      importError(),
      HasSubstr(
          "config.json: field 'hidden_size' must be an integer, got \"64\""));
  editConfig([](json &c) {
    c["hidden_size"] = 64;
    c["tie_word_embeddings"] = 1;
  });
  EXPECT_THAT(
      importError(),
      HasSubstr("field 'tie_word_embeddings' must be a boolean, got 1"));
  editConfig([](json &c) {
    c["tie_word_embeddings"] = false;
    c.erase("moe_intermediate_size");
  });
  EXPECT_THAT(importError(),
              HasSubstr("missing required field 'moe_intermediate_size'"));
}

TEST_F(ImporterEditTest, RejectsInconsistentSizes) {
  copy("mixtral_tiny");
  editConfig([](json &c) { c["num_key_value_heads"] = 3; });
  EXPECT_THAT(importError(),
              HasSubstr("'num_key_value_heads' (3) must be positive "
                        "and divide 'num_attention_heads' (4)"));
  editConfig([](json &c) {
    c["num_key_value_heads"] = 2;
    c["num_attention_heads"] = 6;
  });
  EXPECT_THAT(importError(), HasSubstr("'hidden_size' (64) is not divisible by "
                                       "'num_attention_heads' (6)"));
  editConfig([](json &c) {
    c["num_attention_heads"] = 4;
    c["num_experts_per_tok"] = 9;
  });
  EXPECT_THAT(
      importError(),
      HasSubstr("'num_experts_per_tok' (9) must be in [1, num_experts = 8]"));
}

TEST_F(ImporterEditTest, RejectsMathFieldsWeDoNotImplement) {
  copy("mixtral_tiny");
  editConfig([](json &c) { c["attention_multiplier"] = 0.5; });
  EXPECT_THAT(importError(),
              HasSubstr("unsupported value for 'attention_multiplier': 0.5"));
  editConfig([](json &c) {
    c["attention_multiplier"] = 1.0; // neutral: accepted
    c["final_logit_softcapping"] = 30.0;
  });
  EXPECT_THAT(importError(),
              HasSubstr("unsupported field 'final_logit_softcapping': 30.0"));
}

TEST_F(ImporterEditTest, RejectsQwen2SlidingWindow) {
  copy("qwen2_moe_sparse2");
  editConfig([](json &c) { c["use_sliding_window"] = true; });
  EXPECT_THAT(importError(),
              HasSubstr("unsupported value for 'use_sliding_window': true"));
  editConfig([](json &c) {
    c["use_sliding_window"] = false;
    c["layer_types"][1] = "sliding_attention";
  });
  EXPECT_THAT(
      importError(),
      HasSubstr("unsupported 'layer_types' entry \"sliding_attention\""));
}

TEST_F(ImporterEditTest, RejectsBadOlmoeFields) {
  copy("olmoe_clip");
  editConfig([](json &c) { c["clip_qkv"] = -1.0; });
  EXPECT_THAT(importError(),
              HasSubstr("field 'clip_qkv' must be null or positive, got -1.0"));
  editConfig([](json &c) {
    c["clip_qkv"] = nullptr;
    c["head_dim"] = 16;
  });
  EXPECT_THAT(importError(), HasSubstr("unsupported value for 'head_dim': 16"));
}

TEST_F(ImporterEditTest, RejectsMissingTensor) {
  copy("qwen2_moe_tiny");
  json index = json::parse(readAll(dir_ + "/model.safetensors.index.json"));
  index["weight_map"].erase("model.layers.2.self_attn.q_proj.weight");
  writeAll(dir_ + "/model.safetensors.index.json", index.dump());
  EXPECT_THAT(
      importError(),
      HasSubstr("missing tensor 'model.layers.2.self_attn.q_proj.weight' "
                "(expected shape [64, 64])"));
}

TEST_F(ImporterEditTest, RejectsMissingExpert) {
  copy("mixtral_tiny");
  editHeader("model.safetensors", [](json &h) {
    h.erase("model.layers.1.block_sparse_moe.experts.7.w3.weight");
  });
  EXPECT_THAT(
      importError(),
      HasSubstr("missing tensor "
                "'model.layers.1.block_sparse_moe.experts.7.w3.weight'"));
}

TEST_F(ImporterEditTest, RejectsWrongShape) {
  copy("mixtral_tiny");
  // Same byte count, different shape.
  editHeader("model.safetensors", [](json &h) {
    h["model.layers.0.self_attn.q_proj.weight"]["shape"] = {32, 128};
  });
  EXPECT_THAT(
      importError(),
      HasSubstr(
          "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.weight' "
          "has shape [32, 128], expected [64, 64] (from config.json)"));
}

TEST_F(ImporterEditTest, RejectsConfigShapeMismatch) {
  copy("qwen3_moe_tiny");
  editConfig([](json &c) { c["moe_intermediate_size"] = 48; });
  EXPECT_THAT(
      importError(),
      HasSubstr(
          "tensor 'model.layers.0.mlp.experts.0.gate_proj.weight' has shape "
          "[32, 64], expected [48, 64]"));
}

TEST_F(ImporterEditTest, RejectsWrongDType) {
  copy("mixtral_tiny");
  editHeader("model.safetensors", [](json &h) {
    h["model.embed_tokens.weight"]["dtype"] = "I64";
    h["model.embed_tokens.weight"]["shape"] = {256, 32}; // same byte count
  });
  EXPECT_THAT(importError(),
              HasSubstr("tensor 'model.embed_tokens.weight' has dtype I64, "
                        "expected F32, F16 or BF16"));
}

TEST_F(ImporterEditTest, RejectsTruncatedSafetensors) {
  copy("olmoe_tiny");
  std::string bytes = readAll(dir_ + "/model.safetensors");
  writeAll(dir_ + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  std::string err = importError();
  EXPECT_THAT(err, HasSubstr("model.safetensors: tensor '"));
  EXPECT_THAT(err, HasSubstr("exceed the data section"));
}

TEST_F(ImporterEditTest, RejectsMissingLmHeadWhenUntied) {
  copy("olmoe_tiny");
  editHeader("model.safetensors", [](json &h) { h.erase("lm_head.weight"); });
  EXPECT_THAT(
      importError(),
      HasSubstr(
          "missing tensor 'lm_head.weight' (tie_word_embeddings is false"));
  // Tying makes the same checkpoint valid: lm_head reads the embedding.
  editConfig([](json &c) { c["tie_word_embeddings"] = true; });
  ModelSpec spec = importOk(dir_);
  EXPECT_EQ(spec.lmHead.name, "model.embed_tokens.weight");
}

TEST_F(ImporterEditTest, RejectsMissingWeights) {
  copy("olmoe_tiny");
  fs::remove(dir_ + "/model.safetensors");
  EXPECT_THAT(
      importError(),
      HasSubstr("no model.safetensors or model.safetensors.index.json"));
}

} // namespace
} // namespace crosspool::compiler
