//===- TestPlans.h - Mutable plans for format tests -------------*- C++ -*-===//
//
// A plain-struct mirror of Plan.fbs that tests edit freely and then serialize
// with the generated Create* helpers, plus a small valid two-pool plan.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TEST_UNIT_RUNTIME_TESTPLANS_H
#define CROSSPOOL_TEST_UNIT_RUNTIME_TESTPLANS_H

#include "runtime/format/PlanVersion.h"
#include "runtime/format/Plan_generated.h"

#include <cstdint>
#include <string>
#include <vector>

namespace crosspool::testing {

namespace fb = crosspool::plan;

struct TWeight {
  std::string name, file = "model.safetensors";
  uint64_t offset = 0, nbytes = 0;
  fb::DType dtype = fb::DType::F32;
  std::vector<int64_t> shape;
  fb::Pool pool = fb::Pool::KV;
  bool synthetic = false; ///< then `file` is written only when non-empty
  uint64_t seed = 0;
  fb::SyntheticInit init = fb::SyntheticInit::Normal;
  float initStd = 0.0f;
};
struct TSlot {
  fb::SlotKind kind = fb::SlotKind::Hidden;
  int64_t width = 0;
  fb::Pool pool = fb::Pool::KV;
};
struct TChannel {
  fb::Pool from = fb::Pool::KV, to = fb::Pool::Weights;
  int64_t width = 0;
  int32_t perStep = 1;
};
struct TInstr {
  fb::Opcode op = fb::Opcode::Task;
  fb::Kernel kernel = fb::Kernel::None;
  std::vector<int32_t> inputs, outputs, weights;
  std::vector<int64_t> iparams;
  std::vector<double> fparams;
  int32_t channel = -1;
  int32_t seq = 0;
};
struct TStream {
  fb::Pool pool = fb::Pool::KV;
  std::vector<TInstr> instrs;
};
struct TPlan {
  uint32_t version = fb::kPlanSchemaVersion;
  std::string modelName = "tiny", architecture = "MixtralForCausalLM",
              checkpointDir = "/nonexistent/tiny";
  int64_t vocabSize = 16, hiddenSize = 8, maxPositionEmbeddings = 64;
  std::vector<int64_t> eosTokenIds = {2};
  std::vector<TWeight> weights;
  std::vector<TSlot> slots;
  std::vector<TChannel> channels;
  std::vector<TStream> streams;
  std::vector<std::pair<int32_t, int32_t>>
      kvLayers; ///< (num_kv_heads, head_dim)
  int32_t inputSlot = 0, outputSlot = 0;
  bool omitStreams = false; ///< leave the required `streams` field out

  std::string serialize() const {
    flatbuffers::FlatBufferBuilder b;
    std::vector<flatbuffers::Offset<fb::Weight>> ws;
    for (const TWeight &w : weights)
      ws.push_back(fb::CreateWeightDirect(
          b, w.name.c_str(),
          w.synthetic && w.file.empty() ? nullptr : w.file.c_str(), w.offset,
          w.nbytes, w.dtype, &w.shape, w.pool, w.synthetic, w.seed, w.init,
          w.initStd));
    std::vector<flatbuffers::Offset<fb::Slot>> ss;
    for (const TSlot &s : slots)
      ss.push_back(fb::CreateSlot(b, s.kind, s.width, s.pool));
    std::vector<flatbuffers::Offset<fb::Channel>> cs;
    for (const TChannel &c : channels)
      cs.push_back(fb::CreateChannel(b, c.from, c.to, c.width, c.perStep));
    std::vector<flatbuffers::Offset<fb::Stream>> sts;
    for (const TStream &st : streams) {
      std::vector<flatbuffers::Offset<fb::Instr>> is;
      for (const TInstr &in : st.instrs)
        is.push_back(fb::CreateInstrDirect(
            b, in.op, in.kernel, &in.inputs, &in.outputs, &in.weights,
            &in.iparams, &in.fparams, in.channel, in.seq));
      sts.push_back(fb::CreateStreamDirect(b, st.pool, &is));
    }
    std::vector<flatbuffers::Offset<fb::KvLayer>> ks;
    for (auto [heads, dim] : kvLayers)
      ks.push_back(fb::CreateKvLayer(b, heads, dim));
    auto root = fb::CreatePlanDirect(
        b, version, modelName.c_str(), architecture.c_str(),
        checkpointDir.c_str(), vocabSize, hiddenSize, maxPositionEmbeddings,
        &eosTokenIds, &ws, &ss, &cs, omitStreams ? nullptr : &sts, &ks,
        inputSlot, outputSlot);
    fb::FinishPlanBuffer(b, root);
    return std::string(reinterpret_cast<const char *>(b.GetBufferPointer()),
                       b.GetSize());
  }
};

inline TInstr task(fb::Kernel kernel, std::vector<int32_t> inputs,
                   std::vector<int32_t> outputs, std::vector<int32_t> weights,
                   std::vector<int64_t> iparams = {},
                   std::vector<double> fparams = {}) {
  TInstr in;
  in.kernel = kernel;
  in.inputs = std::move(inputs);
  in.outputs = std::move(outputs);
  in.weights = std::move(weights);
  in.iparams = std::move(iparams);
  in.fparams = std::move(fparams);
  return in;
}
inline TInstr send(int32_t slot, int32_t channel, int32_t seq) {
  TInstr in;
  in.op = fb::Opcode::Send;
  in.inputs = {slot};
  in.channel = channel;
  in.seq = seq;
  return in;
}
inline TInstr recv(int32_t slot, int32_t channel, int32_t seq) {
  TInstr in;
  in.op = fb::Opcode::Recv;
  in.outputs = {slot};
  in.channel = channel;
  in.seq = seq;
  return in;
}

/// Slot ids of makeTwoPoolPlan().
enum TinySlot : int32_t {
  kIds = 0,     // TokenIds, KV
  kH = 1,       // embed out
  kX = 2,       // input norm out
  kA = 3,       // attention out
  kH2 = 4,      // h + a
  kX2 = 5,      // post-attention norm out (sent)
  kMoeIn = 6,   // Weights pool
  kMoeOut = 7,  // Weights pool
  kFfn = 8,     // received back on KV
  kH3 = 9,      // h2 + ffn
  kFinal = 10,  // final norm out
  kLogits = 11, // Logits, KV
};

/// Weight ids of makeTwoPoolPlan().
enum TinyWeight : int32_t {
  kEmbed = 0,
  kInNorm,
  kQ,
  kK,
  kV,
  kO,
  kPostNorm,
  kFinalNorm,
  kLmHead,
  kRouter,
  kE0Gate,
  kE0Up,
  kE0Down,
  kE1Gate,
  kE1Up,
  kE1Down,
};

/// A valid one-layer MoE plan over two pools: V=16, H=8, 2 heads of 4 with
/// 1 KV head, 2 experts (top-1) with intermediate 6.
///   KV:      embed, norm, attention, add, norm, send, recv, add, norm, lm_head
///   Weights: recv, moe, send
inline TPlan makeTwoPoolPlan() {
  TPlan p;
  const int64_t v = 16, h = 8, i = 6;
  uint64_t offset = 0;
  auto weight = [&](std::string name, std::vector<int64_t> shape,
                    fb::Pool pool) {
    TWeight w;
    w.name = std::move(name);
    w.shape = std::move(shape);
    w.pool = pool;
    int64_t n = 1;
    for (int64_t d : w.shape)
      n *= d;
    w.offset = offset;
    w.nbytes = n * 4;
    offset += w.nbytes;
    p.weights.push_back(w);
  };
  const fb::Pool kv = fb::Pool::KV, wp = fb::Pool::Weights;
  weight("model.embed_tokens.weight", {v, h}, kv);
  weight("model.layers.0.input_layernorm.weight", {h}, kv);
  weight("model.layers.0.self_attn.q_proj.weight", {8, h}, kv);
  weight("model.layers.0.self_attn.k_proj.weight", {4, h}, kv);
  weight("model.layers.0.self_attn.v_proj.weight", {4, h}, kv);
  weight("model.layers.0.self_attn.o_proj.weight", {h, 8}, kv);
  weight("model.layers.0.post_attention_layernorm.weight", {h}, kv);
  weight("model.norm.weight", {h}, kv);
  weight("lm_head.weight", {v, h}, kv);
  weight("model.layers.0.mlp.gate.weight", {2, h}, wp);
  for (int e = 0; e < 2; ++e) {
    std::string prefix = "model.layers.0.mlp.experts." + std::to_string(e);
    weight(prefix + ".gate_proj.weight", {i, h}, wp);
    weight(prefix + ".up_proj.weight", {i, h}, wp);
    weight(prefix + ".down_proj.weight", {h, i}, wp);
  }

  p.slots = {{fb::SlotKind::TokenIds, 1, kv}, {fb::SlotKind::Hidden, h, kv},
             {fb::SlotKind::Hidden, h, kv},   {fb::SlotKind::Hidden, h, kv},
             {fb::SlotKind::Hidden, h, kv},   {fb::SlotKind::Hidden, h, kv},
             {fb::SlotKind::Hidden, h, wp},   {fb::SlotKind::Hidden, h, wp},
             {fb::SlotKind::Hidden, h, kv},   {fb::SlotKind::Hidden, h, kv},
             {fb::SlotKind::Hidden, h, kv},   {fb::SlotKind::Logits, v, kv}};
  p.channels = {{kv, wp, h, 1}, {wp, kv, h, 1}};
  p.kvLayers = {{1, 4}};
  p.inputSlot = kIds;
  p.outputSlot = kLogits;

  using K = fb::Kernel;
  TStream kvStream{kv, {}};
  kvStream.instrs = {
      task(K::Embed, {kIds}, {kH}, {kEmbed}),
      task(K::RmsNorm, {kH}, {kX}, {kInNorm}, {}, {1e-6}),
      task(K::Attention, {kX}, {kA}, {kQ, kK, kV, kO, -1, -1, -1, -1, -1, -1},
           {0, 2, 1, 4, 0, 0, 0}, {10000.0, 1e-6, 0.0, 1.0, 0.5}),
      task(K::Add, {kH, kA}, {kH2}, {}),
      task(K::RmsNorm, {kH2}, {kX2}, {kPostNorm}, {}, {1e-6}),
      send(kX2, 0, 1),
      recv(kFfn, 1, 1),
      task(K::Add, {kH2, kFfn}, {kH3}, {}),
      task(K::RmsNorm, {kH3}, {kFinal}, {kFinalNorm}, {}, {1e-6}),
      task(K::LmHead, {kFinal}, {kLogits}, {kLmHead}),
  };
  TStream wStream{wp, {}};
  wStream.instrs = {
      recv(kMoeIn, 0, 1),
      task(K::Moe, {kMoeIn}, {kMoeOut},
           {kRouter, -1, -1, -1, -1, kE0Gate, kE0Up, kE0Down, kE1Gate, kE1Up,
            kE1Down},
           {2, 1, 0}),
      send(kMoeOut, 1, 1),
  };
  p.streams = {kvStream, wStream};
  return p;
}

} // namespace crosspool::testing

#endif // CROSSPOOL_TEST_UNIT_RUNTIME_TESTPLANS_H
