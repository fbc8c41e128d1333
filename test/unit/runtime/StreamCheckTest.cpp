//===- StreamCheckTest.cpp - Static stream check of plans -----------------===//
#include "runtime/format/StreamCheck.h"
#include "runtime/format/StreamModel.h"

#include "test/unit/runtime/TestPlans.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crosspool::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using K = fb::Kernel;

/// Serializes `p` and runs the check on the buffer.
absl::Status check(const TPlan &p) {
  std::string bytes = p.serialize();
  return runtime::checkPlanStreams(*fb::GetPlan(bytes.data()));
}

std::string errorOf(const TPlan &p) {
  absl::Status status = check(p);
  EXPECT_FALSE(status.ok()) << "plan unexpectedly passed the check";
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  return std::string(status.message());
}

TInstr &kvInstr(TPlan &p, int i) { return p.streams[0].instrs[i]; }
TInstr &wInstr(TPlan &p, int i) { return p.streams[1].instrs[i]; }

TEST(StreamCheckTest, ValidTwoPoolPlanPasses) {
  EXPECT_TRUE(check(makeTwoPoolPlan()).ok()) << check(makeTwoPoolPlan());
}

TEST(StreamCheckTest, ValidPlanWithSharedExpertAndQkNormPasses) {
  TPlan p = makeTwoPoolPlan();
  auto add = [&](std::string name, std::vector<int64_t> shape, fb::Pool pool) {
    TWeight w;
    w.name = std::move(name);
    w.shape = shape;
    w.pool = pool;
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    w.nbytes = n * 4;
    p.weights.push_back(w);
    return static_cast<int32_t>(p.weights.size() - 1);
  };
  int32_t sg = add("shared.gate", {5, 8}, fb::Pool::Weights);
  int32_t su = add("shared.up", {5, 8}, fb::Pool::Weights);
  int32_t sd = add("shared.down", {8, 5}, fb::Pool::Weights);
  int32_t seg = add("shared_expert_gate", {1, 8}, fb::Pool::Weights);
  int32_t qn = add("q_norm", {4}, fb::Pool::KV);
  int32_t kn = add("k_norm", {4}, fb::Pool::KV);
  int32_t qb = add("q_bias", {8}, fb::Pool::KV);
  wInstr(p, 1).weights[1] = sg;
  wInstr(p, 1).weights[2] = su;
  wInstr(p, 1).weights[3] = sd;
  wInstr(p, 1).weights[4] = seg;
  kvInstr(p, 2).iparams[4] = 1; // per-head qk-norm
  kvInstr(p, 2).weights[8] = qn;
  kvInstr(p, 2).weights[9] = kn;
  kvInstr(p, 2).weights[4] = qb;
  EXPECT_TRUE(check(p).ok()) << check(p);

  // Ungated shared expert is allowed; a gate without a shared expert is not.
  wInstr(p, 1).weights[4] = -1;
  EXPECT_TRUE(check(p).ok()) << check(p);
  wInstr(p, 1).weights[4] = seg;
  wInstr(p, 1).weights[1] = wInstr(p, 1).weights[2] = wInstr(p, 1).weights[3] =
      -1;
  EXPECT_THAT(errorOf(p), HasSubstr("shared_expert_gate) is set but the model "
                                    "has no shared expert"));
}

TEST(StreamCheckTest, SlotOutOfRange) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 1).outputs = {40};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task RmsNorm): expects a slot "
                        "id below 12 but got 40");
}

TEST(StreamCheckTest, WeightAndChannelOutOfRange) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 1).weights = {99};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task RmsNorm): weights[0] "
                        "(norm): weight 99 out of range (plan has 16 weights)");
  p = makeTwoPoolPlan();
  kvInstr(p, 5).channel = 7;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 5 (Send): expects a channel id "
                        "below 2 but got 7");
}

TEST(StreamCheckTest, SlotOfOtherPool) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 3).inputs = {kH, kMoeOut};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 3 (Task Add): expects slot 7 in "
                        "pool KV but it is in pool Weights");
}

TEST(StreamCheckTest, WeightOfOtherPool) {
  TPlan p = makeTwoPoolPlan();
  p.weights[kE1Down].pool = fb::Pool::KV;
  EXPECT_THAT(errorOf(p),
              AllOf(HasSubstr("stream 1 (Weights) instr 1 (Task Moe): "
                              "weights[10] (expert down): weight 15"),
                    HasSubstr("is in pool KV but kernel Moe runs in pool "
                              "Weights")));
}

TEST(StreamCheckTest, KernelInWrongStream) {
  TPlan p = makeTwoPoolPlan();
  // An Mlp on the KV stream: FFN work belongs to the weights pool.
  kvInstr(p, 3) = task(K::Mlp, {kH}, {kH2}, {kE0Gate, kE0Up, kE0Down});
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 3 (Task Mlp): kernel Mlp runs "
                        "in the Weights pool, not in the KV stream");
}

TEST(StreamCheckTest, WrongArity) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 1).weights = {kInNorm, kInNorm};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task RmsNorm): expects 1 "
                        "weights but got 2");
  p = makeTwoPoolPlan();
  kvInstr(p, 1).fparams = {};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task RmsNorm): expects 1 "
                        "fparams but got 0");
  p = makeTwoPoolPlan();
  kvInstr(p, 2).iparams.pop_back();
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 2 (Task Attention): expects 7 "
                        "iparams but got 6");
  p = makeTwoPoolPlan();
  kvInstr(p, 3).inputs = {kH};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 3 (Task Add): expects 2 inputs "
                        "but got 1");
  p = makeTwoPoolPlan();
  wInstr(p, 1).weights.pop_back();
  EXPECT_EQ(errorOf(p), "stream 1 (Weights) instr 1 (Task Moe): expects 11 "
                        "weights (5 + 3 * num_experts) but got 10");
  p = makeTwoPoolPlan();
  wInstr(p, 2).outputs = {kMoeIn};
  EXPECT_EQ(errorOf(p),
            "stream 1 (Weights) instr 2 (Send): expects 0 outputs but got 1");
  p = makeTwoPoolPlan();
  kvInstr(p, 0).kernel = K::None;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 0 (Task None): Task expects a "
                        "kernel but got none");
}

TEST(StreamCheckTest, RequiredAndOptionalWeights) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 2).weights[0] = -1;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 2 (Task Attention): weights[0] "
                        "(q_w) is required but is -1");
  p = makeTwoPoolPlan();
  kvInstr(p, 2).iparams[4] = 2; // qk-norm without norm weights
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 2 (Task Attention): weights[8] "
                        "(q_norm_w) is required with qk_norm 2");
}

TEST(StreamCheckTest, ShapesAndWidths) {
  TPlan p = makeTwoPoolPlan();
  p.weights[kInNorm].shape = {6};
  p.weights[kInNorm].nbytes = 24;
  EXPECT_THAT(errorOf(p), HasSubstr("instr 1 (Task RmsNorm): weights[0] "
                                    "(norm) 'model.layers.0.input_layernorm."
                                    "weight': expects 8 elements but got 6"));
  p = makeTwoPoolPlan();
  p.weights[kK].shape = {8, 8};
  p.weights[kK].nbytes = 256;
  EXPECT_THAT(errorOf(p), HasSubstr("weights[1] (k_w) 'model.layers.0.self_"
                                    "attn.k_proj.weight': expects shape "
                                    "[4, 8] but got [8, 8]"));
  p = makeTwoPoolPlan();
  p.weights[kE0Down].shape = {8, 5};
  p.weights[kE0Down].nbytes = 160;
  EXPECT_THAT(errorOf(p), HasSubstr("weights[7] (expert down) 'model.layers."
                                    "0.mlp.experts.0.down_proj.weight': "
                                    "expects shape [8, 6] but got [8, 5]"));
  p = makeTwoPoolPlan();
  p.slots[kLogits].width = 15;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 9 (Task LmHead): output slot 11 "
                        "expects width 16 but got 15");
  p = makeTwoPoolPlan();
  p.weights[kEmbed].shape = {17, 8};
  p.weights[kEmbed].nbytes = 17 * 8 * 4;
  EXPECT_THAT(errorOf(p), HasSubstr("expects shape [16, 8] but got [17, 8]"));
}

TEST(StreamCheckTest, SlotKinds) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 0).inputs = {kIds};
  kvInstr(p, 1).inputs = {kIds};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task RmsNorm): inputs[0]: "
                        "slot 0 expects kind Hidden but got TokenIds");
  p = makeTwoPoolPlan();
  kvInstr(p, 9).outputs = {kFinal};
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 9 (Task LmHead): outputs[0]: "
                        "slot 10 expects kind Logits but got Hidden");
  p = makeTwoPoolPlan();
  p.inputSlot = kH;
  EXPECT_EQ(errorOf(p),
            "plan: expects the input slot 1 of kind TokenIds but got "
            "Hidden");
  p = makeTwoPoolPlan();
  p.slots[kIds].width = 2;
  EXPECT_EQ(errorOf(p), "slot 0: TokenIds slot expects width 1 but got 2");
}

TEST(StreamCheckTest, ReadBeforeWrite) {
  TPlan p = makeTwoPoolPlan();
  std::swap(kvInstr(p, 1), kvInstr(p, 2)); // attention before its norm
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 1 (Task Attention): reads slot "
                        "2 before it is written in this step");
  // A slot written in the Weights stream never counts as written on KV, and
  // the receive slot is not defined before its Recv.
  p = makeTwoPoolPlan();
  std::swap(kvInstr(p, 6), kvInstr(p, 7));
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 6 (Task Add): reads slot 8 "
                        "before it is written in this step");
}

TEST(StreamCheckTest, OutputSlotNeverWritten) {
  TPlan p = makeTwoPoolPlan();
  p.streams[0].instrs.pop_back();
  EXPECT_EQ(errorOf(p), "plan: expects an instruction writing the output "
                        "slot 11");
}

TEST(StreamCheckTest, UnpairedSend) {
  // A second message on channel 0 that the weights stream never receives.
  TPlan p = makeTwoPoolPlan();
  p.channels[0].perStep = 2;
  p.streams[0].instrs.insert(p.streams[0].instrs.begin() + 6, send(kX2, 0, 2));
  EXPECT_EQ(errorOf(p), "channel 0: expects 2 receives per step but got 1");
  // More sends than per_step.
  p = makeTwoPoolPlan();
  p.streams[0].instrs.insert(p.streams[0].instrs.begin() + 6, send(kX2, 0, 2));
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 6 (Send): expects at most 1 "
                        "messages per step on channel 0 but got seq 2");
  // A receive with no send at all.
  p = makeTwoPoolPlan();
  p.streams[0].instrs.erase(p.streams[0].instrs.begin() + 5);
  EXPECT_EQ(errorOf(p), "channel 0: expects 1 sends per step but got 0");
}

TEST(StreamCheckTest, SendOrRecvInWrongStream) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 5).channel = 1; // KV sends on the Weights->KV channel
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 5 (Send): expects channel 1 to "
                        "send from pool KV but it sends from pool Weights");
  p = makeTwoPoolPlan();
  wInstr(p, 0).channel = 1;
  EXPECT_EQ(errorOf(p), "stream 1 (Weights) instr 0 (Recv): expects channel "
                        "1 to receive from pool Weights but it receives "
                        "from pool KV");
}

TEST(StreamCheckTest, SeqOutOfOrder) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 5).seq = 2;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 5 (Send): expects seq 1 on "
                        "channel 0 but got 2");
  // Two messages per step, received in swapped order.
  p = makeTwoPoolPlan();
  p.channels[0].perStep = 2;
  p.streams[0].instrs.insert(p.streams[0].instrs.begin() + 6, send(kH2, 0, 2));
  p.streams[1].instrs.insert(p.streams[1].instrs.begin() + 1,
                             recv(kMoeOut, 0, 2));
  EXPECT_TRUE(check(p).ok()) << check(p);
  wInstr(p, 0).seq = 2;
  wInstr(p, 1).seq = 1;
  EXPECT_EQ(errorOf(p), "stream 1 (Weights) instr 0 (Recv): expects seq 1 "
                        "on channel 0 but got 2");
}

TEST(StreamCheckTest, ChannelWidthMismatch) {
  TPlan p = makeTwoPoolPlan();
  p.channels[1].width = 4;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 6 (Recv): expects slot 8 of "
                        "channel width 4 but got 8");
}

TEST(StreamCheckTest, DeadlockBothStreamsRecvFirst) {
  TPlan p = makeTwoPoolPlan();
  std::swap(kvInstr(p, 5), kvInstr(p, 6)); // KV receives before it sends
  EXPECT_EQ(errorOf(p),
            "stream 0 (KV) instr 5 (Recv): deadlocks: message 1 of channel 1 "
            "is never sent while the streams wait; stream 1 (Weights) "
            "instr 0 waits for message 1 of channel 0");
}

TEST(StreamCheckTest, StreamsPerPool) {
  TPlan p = makeTwoPoolPlan();
  p.streams[1].pool = fb::Pool::KV;
  EXPECT_EQ(errorOf(p), "stream 1: streams 0 and 1 both run pool KV; "
                        "expects exactly one stream per pool");
  p = makeTwoPoolPlan();
  p.streams.pop_back();
  EXPECT_EQ(errorOf(p),
            "slot 6: uses pool Weights but no stream runs that pool");
}

TEST(StreamCheckTest, TableEntries) {
  TPlan p = makeTwoPoolPlan();
  p.weights[kQ].nbytes = 100;
  EXPECT_EQ(errorOf(p), "weight 2 'model.layers.0.self_attn.q_proj.weight': "
                        "nbytes 100 does not match shape [8, 8] of F32 "
                        "(expects 256)");
  p = makeTwoPoolPlan();
  p.channels[0].to = fb::Pool::KV;
  EXPECT_EQ(errorOf(p), "channel 0: goes from pool KV to itself");
  p = makeTwoPoolPlan();
  p.channels[0].perStep = 0;
  EXPECT_EQ(errorOf(p), "channel 0: per_step must be >= 1 but got 0");
  p = makeTwoPoolPlan();
  p.kvLayers = {{0, 4}};
  EXPECT_EQ(errorOf(p), "kv_layer 0: expects positive num_kv_heads and "
                        "head_dim but got 0 and 4");
  p = makeTwoPoolPlan();
  p.slots[kA].width = 0;
  EXPECT_EQ(errorOf(p), "slot 3: width must be positive but got 0");
  p = makeTwoPoolPlan();
  p.outputSlot = 12;
  EXPECT_EQ(errorOf(p), "plan: expects the output slot below 12 but got 12");
}

TEST(StreamCheckTest, AttentionParams) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 2).iparams[0] = 1;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 2 (Task Attention): kv_layer 1 "
                        "out of range (plan has 1 kv_layers)");
  p = makeTwoPoolPlan();
  kvInstr(p, 2).iparams[3] = 2;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 2 (Task Attention): "
                        "num_kv_heads/head_dim 1/2 do not match kv_layer 0 "
                        "(1/4)");
  p = makeTwoPoolPlan();
  kvInstr(p, 2).fparams[0] = 0.0;
  EXPECT_THAT(errorOf(p), HasSubstr("expects rope_theta > 0"));
  p = makeTwoPoolPlan();
  wInstr(p, 1).iparams[1] = 3;
  EXPECT_EQ(errorOf(p), "stream 1 (Weights) instr 1 (Task Moe): top_k must "
                        "be in [1, 2] but got 3");
}

TEST(StreamCheckTest, TaskFieldsOfOtherOpcodes) {
  TPlan p = makeTwoPoolPlan();
  kvInstr(p, 3).channel = 0;
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 3 (Task Add): Task expects "
                        "channel -1 and seq 0 but got channel 0 and seq 0");
  p = makeTwoPoolPlan();
  kvInstr(p, 3).op = static_cast<fb::Opcode>(9);
  EXPECT_EQ(errorOf(p), "stream 0 (KV) instr 3 (<opcode 9>): unknown opcode");
}

/// The shared checker alone (no plan, no hook): errors carry their location.
TEST(StreamCheckTest, StreamModelErrorsCarryTheirLocation) {
  using runtime::StreamModel;
  using Op = StreamModel::Op;
  StreamModel m;
  m.poolNames = {"A", "B"};
  using Kind = StreamModel::Kind;
  m.slots = {
      {0, Kind::TokenIds, 1}, {0, Kind::Hidden, 4}, {1, Kind::Logits, 4}};
  m.channels = {{0, 1, 4, 1}};
  m.streams = {{0, {{Op::Task, {0}, {1}}, {Op::Send, {1}, {}, 0, 1}}},
               {1, {{Op::Recv, {}, {2}, 0, 1}}}};
  m.inputSlot = 0;
  m.outputSlot = 2;
  EXPECT_TRUE(runtime::checkStreamModel(m).ok());
  m.streams[1].instrs[0].outputs = {2, 2};
  runtime::StreamErrorLocation loc;
  absl::Status status = runtime::checkStreamModel(m, nullptr, &loc);
  EXPECT_EQ(status.message(), "expects a receive to move one slot");
  EXPECT_EQ(loc.stream, 1);
  EXPECT_EQ(loc.instr, 0);
  EXPECT_EQ(loc.channel, -1);
  m.streams[1].instrs[0].outputs = {2};
  m.channels[0].perStep = 2;
  status = runtime::checkStreamModel(m, nullptr, &loc);
  EXPECT_EQ(status.message(), "expects 2 sends per step but got 1");
  EXPECT_EQ(loc.stream, -1);
  EXPECT_EQ(loc.channel, 0);
}

} // namespace
} // namespace crosspool::testing
