//===- StreamCheck.cpp - Static check of a plan's instruction streams -----===//
//
// Everything is checked against the plan alone (no checkpoint, no device), so
// the compiler and the runtime agree on which plans are valid. Each error is
// one line naming the table entry or stream/instruction and expected vs found.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/StreamCheck.h"

#include "runtime/base/Status.h"
#include "runtime/format/StreamModel.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace crosspool::runtime {
namespace {

namespace fb = crosspool::plan;

std::string poolName(fb::Pool pool) {
  switch (pool) {
  case fb::Pool::KV:
    return "KV";
  case fb::Pool::Weights:
    return "Weights";
  }
  return absl::StrCat("<pool ", static_cast<int>(pool), ">");
}

bool isValidPool(fb::Pool pool) {
  return pool == fb::Pool::KV || pool == fb::Pool::Weights;
}

std::string kernelName(fb::Kernel kernel) {
  if (kernel >= fb::Kernel::MIN && kernel <= fb::Kernel::MAX)
    return fb::EnumNameKernel(kernel);
  return absl::StrCat("<kernel ", static_cast<int>(kernel), ">");
}

std::string opName(fb::Opcode op) {
  if (op >= fb::Opcode::MIN && op <= fb::Opcode::MAX)
    return fb::EnumNameOpcode(op);
  return absl::StrCat("<opcode ", static_cast<int>(op), ">");
}

std::string slotKindName(fb::SlotKind kind) {
  if (kind >= fb::SlotKind::MIN && kind <= fb::SlotKind::MAX)
    return fb::EnumNameSlotKind(kind);
  return absl::StrCat("<kind ", static_cast<int>(kind), ">");
}

/// Byte size of one element, 0 for an unknown dtype.
int64_t dtypeBytes(fb::DType dtype) {
  switch (dtype) {
  case fb::DType::F32:
    return 4;
  case fb::DType::F16:
  case fb::DType::BF16:
    return 2;
  }
  return 0;
}

template <typename T> int64_t sizeOf(const flatbuffers::Vector<T> *v) {
  return v ? static_cast<int64_t>(v->size()) : 0;
}

std::vector<int64_t> shapeOf(const fb::Weight &w) {
  std::vector<int64_t> shape;
  if (w.shape())
    shape.assign(w.shape()->begin(), w.shape()->end());
  return shape;
}

std::string shapeStr(const std::vector<int64_t> &shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

/// Element count, -1 when a dim is negative or the product overflows.
int64_t numelOf(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && n > std::numeric_limits<int64_t>::max() / d))
      return -1;
    n *= d;
  }
  return n;
}

/// The pool whose stream runs a kernel: FFN work in Weights, the rest in KV.
fb::Pool homePool(fb::Kernel kernel) {
  return kernel == fb::Kernel::Moe || kernel == fb::Kernel::Mlp
             ? fb::Pool::Weights
             : fb::Pool::KV;
}

absl::Status invalid(const std::string &where, const std::string &what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

/// An instruction's error; the caller adds which instruction.
absl::Status invalid(const std::string &what) {
  return absl::InvalidArgumentError(what);
}

class Checker {
public:
  explicit Checker(const fb::Plan &plan)
      : plan_(plan), numSlots_(sizeOf(plan.slots())),
        numWeights_(sizeOf(plan.weights())),
        numChannels_(sizeOf(plan.channels())),
        numStreams_(sizeOf(plan.streams())),
        numKvLayers_(sizeOf(plan.kv_layers())) {}

  absl::Status run() {
    CP_RETURN_IF_ERROR(checkTables());
    kvLayerUser_.assign(numKvLayers_, "");
    StreamErrorLocation loc;
    absl::Status status = checkStreamModel(
        toStreamModel(),
        [this](int64_t s, int64_t i) { return checkInstr(s, i); }, &loc);
    if (status.ok())
      return status;
    std::string at = loc.stream >= 0    ? where(loc.stream, loc.instr)
                     : loc.channel >= 0 ? absl::StrCat("channel ", loc.channel)
                                        : "plan";
    return invalid(at, std::string(status.message()));
  }

private:
  const fb::Slot &slot(int64_t id) const { return *plan_.slots()->Get(id); }
  const fb::Weight &weight(int64_t id) const {
    return *plan_.weights()->Get(id);
  }
  const fb::Stream &stream(int64_t s) const { return *plan_.streams()->Get(s); }
  const fb::Instr &instr(int64_t s, int64_t i) const {
    return *stream(s).instrs()->Get(i);
  }

  std::string where(int64_t s, int64_t i) const {
    const fb::Instr &in = instr(s, i);
    std::string what = opName(in.op());
    if (in.op() == fb::Opcode::Task)
      absl::StrAppend(&what, " ", kernelName(in.kernel()));
    return absl::StrCat("stream ", s, " (", poolName(stream(s).pool()),
                        ") instr ", i, " (", what, ")");
  }

  absl::Status checkTables() {
    if (plan_.vocab_size() <= 0)
      return invalid("plan",
                     absl::StrCat("vocab_size must be positive but got ",
                                  plan_.vocab_size()));
    if (plan_.hidden_size() <= 0)
      return invalid("plan",
                     absl::StrCat("hidden_size must be positive but got ",
                                  plan_.hidden_size()));
    for (int64_t w = 0; w < numWeights_; ++w) {
      const fb::Weight &wt = weight(w);
      std::string at = absl::StrCat("weight ", w);
      if (!wt.name() || wt.name()->size() == 0)
        return invalid(at, "missing name");
      at = absl::StrCat(at, " '", wt.name()->str(), "'");
      // Synthetic weights (schema 2) have no file: VerifyWeights checks them.
      if (!wt.synthetic() && (!wt.file() || wt.file()->size() == 0))
        return invalid(at, "missing file");
      if (!isValidPool(wt.pool()))
        return invalid(
            at, absl::StrCat("unknown pool ", static_cast<int>(wt.pool())));
      int64_t elem = dtypeBytes(wt.dtype());
      if (elem == 0)
        return invalid(
            at, absl::StrCat("unknown dtype ", static_cast<int>(wt.dtype())));
      std::vector<int64_t> shape = shapeOf(wt);
      int64_t numel = numelOf(shape);
      if (shape.empty() || numel <= 0)
        return invalid(at, absl::StrCat("expects a non-empty shape but got ",
                                        shapeStr(shape)));
      if (numel > std::numeric_limits<int64_t>::max() / elem ||
          static_cast<uint64_t>(numel * elem) != wt.nbytes())
        return invalid(at,
                       absl::StrCat("nbytes ", wt.nbytes(),
                                    " does not match shape ", shapeStr(shape),
                                    " of ", fb::EnumNameDType(wt.dtype()),
                                    " (expects ", numel * elem, ")"));
    }
    for (int64_t id = 0; id < numSlots_; ++id) {
      const fb::Slot &sl = slot(id);
      std::string at = absl::StrCat("slot ", id);
      if (!isValidPool(sl.pool()))
        return invalid(
            at, absl::StrCat("unknown pool ", static_cast<int>(sl.pool())));
      if (sl.kind() < fb::SlotKind::MIN || sl.kind() > fb::SlotKind::MAX)
        return invalid(
            at, absl::StrCat("unknown kind ", static_cast<int>(sl.kind())));
      if (sl.width() <= 0)
        return invalid(
            at, absl::StrCat("width must be positive but got ", sl.width()));
      if (sl.kind() == fb::SlotKind::TokenIds && sl.width() != 1)
        return invalid(
            at,
            absl::StrCat("TokenIds slot expects width 1 but got ", sl.width()));
    }
    for (int64_t c = 0; c < numChannels_; ++c) {
      const fb::Channel &ch = *plan_.channels()->Get(c);
      std::string at = absl::StrCat("channel ", c);
      if (!isValidPool(ch.from()) || !isValidPool(ch.to()))
        return invalid(at, "unknown pool");
      if (ch.from() == ch.to())
        return invalid(at, absl::StrCat("goes from pool ", poolName(ch.from()),
                                        " to itself"));
      if (ch.width() <= 0)
        return invalid(
            at, absl::StrCat("width must be positive but got ", ch.width()));
      if (ch.per_step() < 1)
        return invalid(
            at, absl::StrCat("per_step must be >= 1 but got ", ch.per_step()));
    }
    for (int64_t l = 0; l < numKvLayers_; ++l) {
      const fb::KvLayer &kv = *plan_.kv_layers()->Get(l);
      if (kv.num_kv_heads() <= 0 || kv.head_dim() <= 0)
        return invalid(absl::StrCat("kv_layer ", l),
                       absl::StrCat("expects positive num_kv_heads and "
                                    "head_dim but got ",
                                    kv.num_kv_heads(), " and ", kv.head_dim()));
    }
    // Exactly one stream per pool: two would race on the pool's slots.
    std::vector<int64_t> streamOf(2, -1);
    for (int64_t s = 0; s < numStreams_; ++s) {
      fb::Pool pool = stream(s).pool();
      if (!isValidPool(pool))
        return invalid(absl::StrCat("stream ", s),
                       absl::StrCat("unknown pool ", static_cast<int>(pool)));
      int64_t &owner = streamOf[static_cast<int>(pool)];
      if (owner >= 0)
        return invalid(absl::StrCat("stream ", s),
                       absl::StrCat("streams ", owner, " and ", s,
                                    " both run pool ", poolName(pool),
                                    "; expects exactly one stream per pool"));
      owner = s;
    }
    auto needStream = [&](fb::Pool pool, const std::string &who) {
      if (streamOf[static_cast<int>(pool)] < 0)
        return invalid(who, absl::StrCat("uses pool ", poolName(pool),
                                         " but no stream runs that pool"));
      return absl::OkStatus();
    };
    for (int64_t id = 0; id < numSlots_; ++id)
      CP_RETURN_IF_ERROR(
          needStream(slot(id).pool(), absl::StrCat("slot ", id)));
    for (int64_t c = 0; c < numChannels_; ++c) {
      const fb::Channel &ch = *plan_.channels()->Get(c);
      CP_RETURN_IF_ERROR(needStream(ch.from(), absl::StrCat("channel ", c)));
      CP_RETURN_IF_ERROR(needStream(ch.to(), absl::StrCat("channel ", c)));
    }
    return absl::OkStatus();
  }

  static absl::Status expectCount(const char *what, int64_t expected,
                                  int64_t actual) {
    if (expected != actual)
      return invalid(
          absl::StrCat("expects ", expected, " ", what, " but got ", actual));
    return absl::OkStatus();
  }

  /// The plan's streams in the shared model; an unknown opcode becomes a
  /// Task, which checkInstr rejects before the model looks at it.
  StreamModel toStreamModel() const {
    StreamModel model;
    model.poolNames = {poolName(fb::Pool::KV), poolName(fb::Pool::Weights)};
    for (fb::SlotKind kind : fb::EnumValuesSlotKind())
      model.kindNames.push_back(slotKindName(kind));
    for (int64_t id = 0; id < numSlots_; ++id)
      model.slots.push_back({static_cast<int>(slot(id).pool()),
                             static_cast<StreamModel::Kind>(slot(id).kind()),
                             slot(id).width()});
    for (int64_t c = 0; c < numChannels_; ++c) {
      const fb::Channel &ch = *plan_.channels()->Get(c);
      model.channels.push_back({static_cast<int>(ch.from()),
                                static_cast<int>(ch.to()), ch.width(),
                                ch.per_step()});
    }
    for (int64_t s = 0; s < numStreams_; ++s) {
      StreamModel::Stream &st = model.streams.emplace_back();
      st.pool = static_cast<int>(stream(s).pool());
      for (int64_t i = 0; i < sizeOf(stream(s).instrs()); ++i) {
        const fb::Instr &in = instr(s, i);
        StreamModel::Instr &mi = st.instrs.emplace_back();
        mi.op = in.op() == fb::Opcode::Send   ? StreamModel::Op::Send
                : in.op() == fb::Opcode::Recv ? StreamModel::Op::Recv
                                              : StreamModel::Op::Task;
        if (in.inputs())
          mi.inputs.assign(in.inputs()->begin(), in.inputs()->end());
        if (in.outputs())
          mi.outputs.assign(in.outputs()->begin(), in.outputs()->end());
        mi.channel = in.channel();
        mi.seq = in.seq();
      }
    }
    model.inputSlot = plan_.input_slot();
    model.outputSlot = plan_.output_slot();
    return model;
  }

  /// The plan-specific checks of one instruction, run by checkStreamModel
  /// once its slot ids are valid; errors leave the location to the caller.
  absl::Status checkInstr(int64_t s, int64_t i) {
    const fb::Instr &in = instr(s, i);
    switch (in.op()) {
    case fb::Opcode::Task:
      return checkTask(s, i);
    case fb::Opcode::Send:
    case fb::Opcode::Recv: {
      bool isSend = in.op() == fb::Opcode::Send;
      if (in.kernel() != fb::Kernel::None)
        return invalid(absl::StrCat("expects kernel None but got ",
                                    kernelName(in.kernel())));
      CP_RETURN_IF_ERROR(
          expectCount("inputs", isSend ? 1 : 0, sizeOf(in.inputs())));
      CP_RETURN_IF_ERROR(
          expectCount("outputs", isSend ? 0 : 1, sizeOf(in.outputs())));
      CP_RETURN_IF_ERROR(expectCount("weights", 0, sizeOf(in.weights())));
      CP_RETURN_IF_ERROR(expectCount("iparams", 0, sizeOf(in.iparams())));
      return expectCount("fparams", 0, sizeOf(in.fparams()));
    }
    default:
      return invalid("unknown opcode");
    }
  }

  /// Checks weights[k] of a task: in range, or -1 when `optional`; in the
  /// stream's pool. Returns the id (or -1) through `id`.
  absl::Status weightRef(int64_t s, int64_t i, int64_t k, const char *label,
                         bool optional, int32_t *id) const {
    const fb::Instr &in = instr(s, i);
    *id = in.weights()->Get(k);
    std::string at = absl::StrCat("weights[", k, "] (", label, ")");
    if (*id == -1) {
      if (optional)
        return absl::OkStatus();
      return invalid(absl::StrCat(at, " is required but is -1"));
    }
    if (*id < 0 || *id >= numWeights_)
      return invalid(absl::StrCat(at, ": weight ", *id,
                                  " out of range (plan has ", numWeights_,
                                  " weights)"));
    const fb::Weight &w = weight(*id);
    if (w.pool() != stream(s).pool())
      return invalid(absl::StrCat(
          at, ": weight ", *id, " '", w.name()->str(), "' is in pool ",
          poolName(w.pool()), " but kernel ", kernelName(in.kernel()),
          " runs in pool ", poolName(stream(s).pool())));
    return absl::OkStatus();
  }

  absl::Status expectShape(int64_t s, int64_t i, int64_t k, const char *label,
                           int32_t id,
                           const std::vector<int64_t> &expected) const {
    if (id < 0)
      return absl::OkStatus();
    std::vector<int64_t> actual = shapeOf(weight(id));
    if (actual != expected)
      return invalid(absl::StrCat("weights[", k, "] (", label, ") '",
                                  weight(id).name()->str(), "': expects shape ",
                                  shapeStr(expected), " but got ",
                                  shapeStr(actual)));
    return absl::OkStatus();
  }

  /// 1-D parameters (norm weights, biases) are checked by element count.
  absl::Status expectNumel(int64_t s, int64_t i, int64_t k, const char *label,
                           int32_t id, int64_t expected) const {
    if (id < 0)
      return absl::OkStatus();
    int64_t actual = numelOf(shapeOf(weight(id)));
    if (actual != expected)
      return invalid(absl::StrCat("weights[", k, "] (", label, ") '",
                                  weight(id).name()->str(), "': expects ",
                                  expected, " elements but got ", actual));
    return absl::OkStatus();
  }

  absl::Status expectWidth(int64_t s, int64_t i, const char *what,
                           int32_t slotId, int64_t expected) const {
    if (slot(slotId).width() != expected)
      return invalid(absl::StrCat(what, " slot ", slotId, " expects width ",
                                  expected, " but got ", slot(slotId).width()));
    return absl::OkStatus();
  }

  absl::Status checkTask(int64_t s, int64_t i) {
    const fb::Instr &in = instr(s, i);
    fb::Kernel kernel = in.kernel();
    if (kernel <= fb::Kernel::None || kernel > fb::Kernel::MAX)
      return invalid("Task expects a kernel but got none");
    if (in.channel() != -1 || in.seq() != 0)
      return invalid(absl::StrCat("Task expects channel -1 and seq 0 but got "
                                  "channel ",
                                  in.channel(), " and seq ", in.seq()));
    if (homePool(kernel) != stream(s).pool())
      return invalid(absl::StrCat("kernel ", kernelName(kernel),
                                  " runs in the ", poolName(homePool(kernel)),
                                  " pool, not in the ",
                                  poolName(stream(s).pool()), " stream"));

    // Arity: inputs, outputs, iparams, fparams, then weights (Moe's weight
    // count depends on its iparams).
    int64_t numInputs = kernel == fb::Kernel::Add ? 2 : 1;
    int64_t numIparams = 0, numFparams = 0;
    if (kernel == fb::Kernel::RmsNorm)
      numFparams = 1;
    if (kernel == fb::Kernel::Attention) {
      numIparams = 7;
      numFparams = 5;
    }
    if (kernel == fb::Kernel::Moe)
      numIparams = 3;
    CP_RETURN_IF_ERROR(expectCount("inputs", numInputs, sizeOf(in.inputs())));
    CP_RETURN_IF_ERROR(expectCount("outputs", 1, sizeOf(in.outputs())));
    CP_RETURN_IF_ERROR(
        expectCount("iparams", numIparams, sizeOf(in.iparams())));
    CP_RETURN_IF_ERROR(
        expectCount("fparams", numFparams, sizeOf(in.fparams())));
    for (int64_t k = 0; k < numFparams; ++k)
      if (!std::isfinite(in.fparams()->Get(k)))
        return invalid(absl::StrCat("fparams[", k, "] must be finite but got ",
                                    in.fparams()->Get(k)));

    // Slot kinds: only Embed reads token ids, only LmHead writes logits.
    for (int64_t k = 0; k < numInputs; ++k) {
      fb::SlotKind expected = kernel == fb::Kernel::Embed
                                  ? fb::SlotKind::TokenIds
                                  : fb::SlotKind::Hidden;
      int32_t id = in.inputs()->Get(k);
      if (slot(id).kind() != expected)
        return invalid(absl::StrCat("inputs[", k, "]: slot ", id,
                                    " expects kind ", slotKindName(expected),
                                    " but got ",
                                    slotKindName(slot(id).kind())));
    }
    fb::SlotKind outKind = kernel == fb::Kernel::LmHead ? fb::SlotKind::Logits
                                                        : fb::SlotKind::Hidden;
    int32_t out = in.outputs()->Get(0);
    if (slot(out).kind() != outKind)
      return invalid(absl::StrCat("outputs[0]: slot ", out, " expects kind ",
                                  slotKindName(outKind), " but got ",
                                  slotKindName(slot(out).kind())));
    int32_t x = in.inputs()->Get(0);
    int64_t width = slot(x).width();

    switch (kernel) {
    case fb::Kernel::Embed:
    case fb::Kernel::LmHead:
    case fb::Kernel::RmsNorm: {
      CP_RETURN_IF_ERROR(expectCount("weights", 1, sizeOf(in.weights())));
      int32_t w;
      const char *label = kernel == fb::Kernel::Embed    ? "embed"
                          : kernel == fb::Kernel::LmHead ? "lm_head"
                                                         : "norm";
      CP_RETURN_IF_ERROR(weightRef(s, i, 0, label, false, &w));
      if (kernel == fb::Kernel::RmsNorm) {
        CP_RETURN_IF_ERROR(expectWidth(s, i, "output", out, width));
        CP_RETURN_IF_ERROR(expectNumel(s, i, 0, label, w, width));
        if (in.fparams()->Get(0) < 0)
          return invalid(
              absl::StrCat("eps must be >= 0 but got ", in.fparams()->Get(0)));
      } else if (kernel == fb::Kernel::Embed) {
        int64_t h = slot(out).width();
        CP_RETURN_IF_ERROR(
            expectShape(s, i, 0, label, w, {plan_.vocab_size(), h}));
      } else {
        CP_RETURN_IF_ERROR(
            expectWidth(s, i, "output", out, plan_.vocab_size()));
        CP_RETURN_IF_ERROR(
            expectShape(s, i, 0, label, w, {plan_.vocab_size(), width}));
      }
      return absl::OkStatus();
    }
    case fb::Kernel::Add:
      CP_RETURN_IF_ERROR(expectCount("weights", 0, sizeOf(in.weights())));
      CP_RETURN_IF_ERROR(
          expectWidth(s, i, "inputs[1]", in.inputs()->Get(1), width));
      return expectWidth(s, i, "output", out, width);
    case fb::Kernel::Mlp: {
      CP_RETURN_IF_ERROR(expectCount("weights", 3, sizeOf(in.weights())));
      CP_RETURN_IF_ERROR(expectWidth(s, i, "output", out, width));
      return checkMlp(s, i, 0, "gate", "up", "down", false, width);
    }
    case fb::Kernel::Moe:
      return checkMoe(s, i, width);
    case fb::Kernel::Attention:
      return checkAttention(s, i, width);
    default:
      return invalid("unknown kernel");
    }
  }

  /// A SwiGLU MLP at weights[first..first+2]: gate [I,H], up [I,H], down [H,I].
  absl::Status checkMlp(int64_t s, int64_t i, int64_t first, const char *gate,
                        const char *up, const char *down, bool optional,
                        int64_t h) const {
    int32_t g, u, d;
    CP_RETURN_IF_ERROR(weightRef(s, i, first, gate, optional, &g));
    CP_RETURN_IF_ERROR(weightRef(s, i, first + 1, up, optional, &u));
    CP_RETURN_IF_ERROR(weightRef(s, i, first + 2, down, optional, &d));
    if ((g < 0) != (u < 0) || (g < 0) != (d < 0))
      return invalid(absl::StrCat("weights[", first, "..", first + 2, "] (",
                                  gate, ", ", up, ", ", down,
                                  ") must be all present or all -1"));
    if (g < 0)
      return absl::OkStatus();
    std::vector<int64_t> gs = shapeOf(weight(g));
    int64_t inter = gs.size() == 2 ? gs[0] : -1;
    CP_RETURN_IF_ERROR(expectShape(s, i, first, gate, g, {inter, h}));
    CP_RETURN_IF_ERROR(expectShape(s, i, first + 1, up, u, {inter, h}));
    return expectShape(s, i, first + 2, down, d, {h, inter});
  }

  absl::Status checkMoe(int64_t s, int64_t i, int64_t h) const {
    const fb::Instr &in = instr(s, i);
    int64_t experts = in.iparams()->Get(0), topK = in.iparams()->Get(1),
            norm = in.iparams()->Get(2);
    if (experts < 1 || experts > (1 << 20))
      return invalid(absl::StrCat(
          "num_experts must be in [1, 1048576] but got ", experts));
    if (topK < 1 || topK > experts)
      return invalid(
          absl::StrCat("top_k must be in [1, ", experts, "] but got ", topK));
    if (norm != 0 && norm != 1)
      return invalid(
          absl::StrCat("norm_topk_prob must be 0 or 1 but got ", norm));
    CP_RETURN_IF_ERROR(expectCount("weights (5 + 3 * num_experts)",
                                   5 + 3 * experts, sizeOf(in.weights())));
    CP_RETURN_IF_ERROR(expectWidth(s, i, "output", in.outputs()->Get(0), h));
    int32_t router, sharedGate;
    CP_RETURN_IF_ERROR(weightRef(s, i, 0, "router", false, &router));
    CP_RETURN_IF_ERROR(expectShape(s, i, 0, "router", router, {experts, h}));
    CP_RETURN_IF_ERROR(
        checkMlp(s, i, 1, "shared_gate", "shared_up", "shared_down", true, h));
    CP_RETURN_IF_ERROR(
        weightRef(s, i, 4, "shared_expert_gate", true, &sharedGate));
    if (sharedGate >= 0 && in.weights()->Get(1) < 0)
      return invalid("weights[4] (shared_expert_gate) is set but "
                     "the model has no shared expert");
    CP_RETURN_IF_ERROR(
        expectShape(s, i, 4, "shared_expert_gate", sharedGate, {1, h}));
    for (int64_t e = 0; e < experts; ++e)
      CP_RETURN_IF_ERROR(checkMlp(s, i, 5 + 3 * e, "expert gate", "expert up",
                                  "expert down", false, h));
    return absl::OkStatus();
  }

  absl::Status checkAttention(int64_t s, int64_t i, int64_t h) {
    const fb::Instr &in = instr(s, i);
    CP_RETURN_IF_ERROR(expectCount("weights", 10, sizeOf(in.weights())));
    const auto &ip = *in.iparams();
    int64_t layer = ip.Get(0), nh = ip.Get(1), nkv = ip.Get(2), hd = ip.Get(3),
            qkNorm = ip.Get(4), window = ip.Get(5), ropeType = ip.Get(6);
    if (layer < 0 || layer >= numKvLayers_)
      return invalid(absl::StrCat("kv_layer ", layer,
                                  " out of range (plan has ", numKvLayers_,
                                  " kv_layers)"));
    if (!kvLayerUser_[layer].empty())
      return invalid(absl::StrCat("kv_layer ", layer, " is already used by ",
                                  kvLayerUser_[layer]));
    kvLayerUser_[layer] = where(s, i);
    const fb::KvLayer &kv = *plan_.kv_layers()->Get(layer);
    if (nh < 1 || nh > (1 << 16) || nkv < 1 || nh % nkv != 0)
      return invalid(absl::StrCat("num_heads ", nh,
                                  " must be a positive multiple of "
                                  "num_kv_heads ",
                                  nkv));
    if (nkv != kv.num_kv_heads() || hd != kv.head_dim())
      return invalid(absl::StrCat("num_kv_heads/head_dim ", nkv, "/", hd,
                                  " do not match kv_layer ", layer, " (",
                                  kv.num_kv_heads(), "/", kv.head_dim(), ")"));
    if (qkNorm < 0 || qkNorm > 2)
      return invalid(
          absl::StrCat("qk_norm must be 0, 1 or 2 but got ", qkNorm));
    if (window < 0)
      return invalid(
          absl::StrCat("sliding_window must be >= 0 but got ", window));
    if (ropeType != 0 && ropeType != 1)
      return invalid(
          absl::StrCat("rope_type must be 0 or 1 but got ", ropeType));
    const auto &fp = *in.fparams();
    if (fp.Get(0) <= 0 || fp.Get(3) <= 0 || fp.Get(1) < 0 || fp.Get(2) < 0)
      return invalid(absl::StrCat("expects rope_theta > 0, qk_norm_eps >= 0, "
                                  "clip_qkv >= 0, rope_factor > 0 but got ",
                                  fp.Get(0), ", ", fp.Get(1), ", ", fp.Get(2),
                                  ", ", fp.Get(3)));

    int64_t hOut = slot(in.outputs()->Get(0)).width();
    int32_t w[10];
    static const char *const kLabels[10] = {"q_w",      "k_w",     "v_w", "o_w",
                                            "q_b",      "k_b",     "v_b", "o_b",
                                            "q_norm_w", "k_norm_w"};
    for (int k = 0; k < 10; ++k)
      CP_RETURN_IF_ERROR(weightRef(s, i, k, kLabels[k], k >= 4, &w[k]));
    for (int k = 8; k < 10; ++k)
      if ((w[k] >= 0) != (qkNorm != 0))
        return invalid(absl::StrCat("weights[", k, "] (", kLabels[k], ") ",
                                    qkNorm ? "is required" : "must be -1",
                                    " with qk_norm ", qkNorm));
    CP_RETURN_IF_ERROR(expectShape(s, i, 0, kLabels[0], w[0], {nh * hd, h}));
    CP_RETURN_IF_ERROR(expectShape(s, i, 1, kLabels[1], w[1], {nkv * hd, h}));
    CP_RETURN_IF_ERROR(expectShape(s, i, 2, kLabels[2], w[2], {nkv * hd, h}));
    CP_RETURN_IF_ERROR(expectShape(s, i, 3, kLabels[3], w[3], {hOut, nh * hd}));
    CP_RETURN_IF_ERROR(expectNumel(s, i, 4, kLabels[4], w[4], nh * hd));
    CP_RETURN_IF_ERROR(expectNumel(s, i, 5, kLabels[5], w[5], nkv * hd));
    CP_RETURN_IF_ERROR(expectNumel(s, i, 6, kLabels[6], w[6], nkv * hd));
    CP_RETURN_IF_ERROR(expectNumel(s, i, 7, kLabels[7], w[7], hOut));
    CP_RETURN_IF_ERROR(
        expectNumel(s, i, 8, kLabels[8], w[8], qkNorm == 2 ? nh * hd : hd));
    return expectNumel(s, i, 9, kLabels[9], w[9], qkNorm == 2 ? nkv * hd : hd);
  }

  const fb::Plan &plan_;
  int64_t numSlots_, numWeights_, numChannels_, numStreams_, numKvLayers_;
  std::vector<std::string> kvLayerUser_;
};

} // namespace

absl::Status checkPlanStreams(const plan::Plan &plan) {
  return Checker(plan).run();
}

} // namespace crosspool::runtime
