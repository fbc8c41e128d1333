//===- Executor.cpp - CPU reference executor of a plan's streams ----------===//
#include "runtime/exec/Executor.h"

#include "kernels/cpu/Kernels.h"
#include "runtime/base/Status.h"
#include "runtime/format/StreamCheck.h"

#include "absl/strings/str_cat.h"

#include <algorithm>

namespace crosspool::runtime {

namespace fb = crosspool::plan;
namespace cpu = crosspool::kernels::cpu;

/// An instruction decoded once at load: slot ids, resolved weight pointers
/// and kernel parameter structs, so a step does no FlatBuffers lookups.
struct Executor::Instr {
  fb::Opcode op = fb::Opcode::Task;
  fb::Kernel kernel = fb::Kernel::None;
  std::string where; ///< "stream 0 (KV) instr 3 (Task Embed)"
  int32_t in0 = -1, in1 = -1, out = -1;
  int32_t channel = -1, seq = 0;
  int64_t width = 0;    ///< floats per row of in0 (Send: of the moved slot)
  int64_t outWidth = 0; ///< floats per row of out
  std::vector<const float *> w;
  float eps = 0;
  int64_t intermediate = 0; ///< Mlp
  int32_t kvLayer = -1;
  cpu::AttentionWeights attnWeights;
  cpu::AttentionParams attnParams;
  std::vector<cpu::ExpertWeights> experts;
  cpu::MoeWeights moeWeights; ///< `experts` pointer set per call
  cpu::MoeParams moeParams;
};

struct Executor::Slot {
  fb::SlotKind kind = fb::SlotKind::Hidden;
  int64_t width = 0;
  std::vector<float> data;
};

namespace {

const char *poolName(fb::Pool pool) {
  return pool == fb::Pool::KV ? "KV" : "Weights";
}

const char *opName(fb::Opcode op) { return fb::EnumNameOpcode(op); }

} // namespace

void StepDescriptor::setKvPages(const KvCache &kv,
                                const std::vector<int64_t> &seqIds) {
  kvPages.assign(kv.numLayers(), {});
  tokensPerPage.assign(kv.numLayers(), 0);
  for (int l = 0; l < kv.numLayers(); ++l) {
    tokensPerPage[l] = kv.tokensPerPage(l);
    kvPages[l].resize(seqIds.size());
    for (size_t s = 0; s < seqIds.size(); ++s) {
      const std::vector<int32_t> &table = kv.pageTable(seqIds[s], l);
      std::vector<float *> &pages = kvPages[l][s];
      pages.clear();
      for (int32_t page : table)
        pages.push_back(kv.pageData(page));
    }
  }
}

absl::StatusOr<std::unique_ptr<Executor>>
Executor::create(const fb::Plan &plan, std::vector<const float *> weights,
                 std::string name) {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", msg));
  };
  if (!plan.weights() || !plan.slots() || !plan.streams())
    return fail("plan lacks weights, slots or streams");
  absl::Status check = checkPlanStreams(plan);
  if (!check.ok())
    return absl::Status(check.code(),
                        absl::StrCat(name, ": ", check.message()));
  const auto &planWeights = *plan.weights();
  if (weights.size() != planWeights.size())
    return fail(absl::StrCat("expects ", planWeights.size(),
                             " weight pointers but got ", weights.size()));
  for (size_t i = 0; i < weights.size(); ++i)
    if (!weights[i])
      return fail(absl::StrCat("weight ", i, " '",
                               planWeights.Get(i)->name()->str(),
                               "' has no data"));

  std::unique_ptr<Executor> ex(new Executor());
  ex->name_ = name;
  ex->vocab_ = plan.vocab_size();
  ex->inputSlot_ = plan.input_slot();
  ex->outputSlot_ = plan.output_slot();
  ex->numKvLayers_ = plan.kv_layers() ? plan.kv_layers()->size() : 0;

  for (const fb::Slot *s : *plan.slots()) {
    auto slot = std::make_unique<Slot>();
    slot->kind = s->kind();
    slot->width = s->width();
    ex->slots_.push_back(std::move(slot));
  }
  if (plan.channels()) {
    for (size_t c = 0; c < plan.channels()->size(); ++c) {
      const fb::Channel *ch = plan.channels()->Get(c);
      ex->channels_.push_back(std::make_unique<InProcessChannel>(
          ch->width(),
          absl::StrCat(name, ": channel ", c, " (", poolName(ch->from()), "->",
                       poolName(ch->to()), ")")));
      ex->perStep_.push_back(ch->per_step());
    }
  }

  auto shape0 = [&](int32_t id) -> int64_t {
    return id < 0 ? 0 : planWeights.Get(id)->shape()->Get(0);
  };
  bool poolSeen[2] = {false, false};
  for (size_t s = 0; s < plan.streams()->size(); ++s) {
    const fb::Stream *stream = plan.streams()->Get(s);
    int pool = static_cast<int>(stream->pool());
    if (pool < 0 || pool > 1)
      return fail(absl::StrCat("stream ", s, " has an unknown pool ", pool));
    if (poolSeen[pool])
      return fail(absl::StrCat("stream ", s,
                               ": expects one stream per pool "
                               "but pool ",
                               poolName(stream->pool()), " has two"));
    poolSeen[pool] = true;
    std::vector<Instr> instrs;
    for (size_t i = 0; i < stream->instrs()->size(); ++i) {
      const fb::Instr *src = stream->instrs()->Get(i);
      Instr in;
      in.op = src->op();
      in.kernel = src->kernel();
      in.where = absl::StrCat("stream ", s, " (", poolName(stream->pool()),
                              ") instr ", i, " (", opName(in.op));
      if (in.op == fb::Opcode::Task)
        absl::StrAppend(&in.where, " ", fb::EnumNameKernel(in.kernel));
      absl::StrAppend(&in.where, ")");
      in.channel = src->channel();
      in.seq = src->seq();
      if (src->inputs() && src->inputs()->size() > 0)
        in.in0 = src->inputs()->Get(0);
      if (src->inputs() && src->inputs()->size() > 1)
        in.in1 = src->inputs()->Get(1);
      if (src->outputs() && src->outputs()->size() > 0)
        in.out = src->outputs()->Get(0);
      if (in.in0 >= 0)
        in.width = ex->slots_[in.in0]->width;
      if (in.out >= 0)
        in.outWidth = ex->slots_[in.out]->width;
      if (src->weights())
        for (int32_t id : *src->weights())
          in.w.push_back(id < 0 ? nullptr : weights[id]);
      auto ip = [&](int k) { return src->iparams()->Get(k); };
      auto fp = [&](int k) { return src->fparams()->Get(k); };

      if (in.op == fb::Opcode::Task) {
        switch (in.kernel) {
        case fb::Kernel::Embed:
          if (in.in0 != ex->inputSlot_)
            return fail(absl::StrCat(in.where,
                                     ": Embed must read the input "
                                     "slot ",
                                     ex->inputSlot_, " but reads slot ",
                                     in.in0));
          break;
        case fb::Kernel::RmsNorm:
          in.eps = static_cast<float>(fp(0));
          break;
        case fb::Kernel::Mlp:
          in.intermediate = shape0(src->weights()->Get(0));
          break;
        case fb::Kernel::Attention: {
          if (in.outWidth != in.width)
            return fail(absl::StrCat(in.where, ": expects output width ",
                                     in.width, " but got ", in.outWidth));
          in.kvLayer = static_cast<int32_t>(ip(0));
          cpu::AttentionWeights &aw = in.attnWeights;
          aw.q = in.w[0], aw.k = in.w[1], aw.v = in.w[2], aw.o = in.w[3];
          aw.qBias = in.w[4], aw.kBias = in.w[5], aw.vBias = in.w[6];
          aw.oBias = in.w[7], aw.qNorm = in.w[8], aw.kNorm = in.w[9];
          cpu::AttentionParams &ap = in.attnParams;
          ap.hidden = in.width;
          ap.numHeads = static_cast<int32_t>(ip(1));
          ap.numKvHeads = static_cast<int32_t>(ip(2));
          ap.headDim = static_cast<int32_t>(ip(3));
          ap.qkNorm = static_cast<int32_t>(ip(4));
          ap.slidingWindow = static_cast<int32_t>(ip(5));
          ap.ropeType = static_cast<int32_t>(ip(6));
          ap.ropeTheta = static_cast<float>(fp(0));
          ap.qkNormEps = static_cast<float>(fp(1));
          ap.clipQkv = static_cast<float>(fp(2));
          ap.ropeFactor = static_cast<float>(fp(3));
          ap.softmaxScale = static_cast<float>(fp(4));
          break;
        }
        case fb::Kernel::Moe: {
          int32_t numExperts = static_cast<int32_t>(ip(0));
          cpu::MoeParams &mp = in.moeParams;
          mp.hidden = in.width;
          mp.numExperts = numExperts;
          mp.topK = static_cast<int32_t>(ip(1));
          mp.normTopkProb = ip(2) != 0;
          mp.intermediate = shape0(src->weights()->Get(5));
          mp.sharedIntermediate = shape0(src->weights()->Get(1));
          cpu::MoeWeights &mw = in.moeWeights;
          mw.router = in.w[0];
          mw.shared = {in.w[1], in.w[2], in.w[3]};
          mw.sharedGate = in.w[4];
          for (int32_t e = 0; e < numExperts; ++e) {
            int64_t inter = shape0(src->weights()->Get(5 + 3 * e));
            if (inter != mp.intermediate)
              return fail(absl::StrCat(
                  in.where,
                  ": expects every expert to have intermediate "
                  "size ",
                  mp.intermediate, " but expert ", e, " has ", inter));
            in.experts.push_back(
                {in.w[5 + 3 * e], in.w[6 + 3 * e], in.w[7 + 3 * e]});
          }
          break;
        }
        default:
          break;
        }
      }
      instrs.push_back(std::move(in));
    }
    ex->streams_.push_back(std::move(instrs));
  }

  ex->workerStatus_.assign(ex->streams_.size(), absl::OkStatus());
  for (size_t s = 0; s < ex->streams_.size(); ++s)
    ex->workers_.emplace_back([raw = ex.get(), s] { raw->workerLoop(s); });
  return ex;
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : workers_)
    t.join();
}

void Executor::closeChannels(const absl::Status &status) {
  for (auto &ch : channels_)
    ch->close(status);
}

void Executor::workerLoop(size_t stream) {
  uint64_t seen = 0;
  for (;;) {
    const StepDescriptor *step;
    uint64_t stepIndex;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
      step = current_;
      stepIndex = stepCounter_;
    }
    absl::Status status = runStream(stream, *step, stepIndex);
    // Wake the peer stream if it is (or will be) waiting for our messages.
    if (!status.ok())
      closeChannels(status);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      workerStatus_[stream] = status;
      if (--pending_ == 0)
        done_.notify_all();
    }
  }
}

absl::Status Executor::runStream(size_t stream, const StepDescriptor &step,
                                 uint64_t stepIndex) {
  const int64_t T = static_cast<int64_t>(step.tokenIds.size());
  for (const Instr &in : streams_[stream]) {
    switch (in.op) {
    case fb::Opcode::Task: {
      absl::Status status = runTask(in, step, T);
      if (!status.ok())
        return absl::Status(
            status.code(),
            absl::StrCat(name_, ": ", in.where, ": ", status.message()));
      break;
    }
    case fb::Opcode::Send: {
      Slot &slot = *slots_[in.in0];
      CP_RETURN_IF_ERROR(
          channels_[in.channel]->send(slot.data.data(), T, slot.width));
      break;
    }
    case fb::Opcode::Recv: {
      Slot &slot = *slots_[in.out];
      uint64_t target = stepIndex * perStep_[in.channel] + in.seq;
      int64_t rows = 0;
      CP_RETURN_IF_ERROR(
          channels_[in.channel]->recv(target, &slot.data, &rows));
      if (rows != T || static_cast<int64_t>(slot.data.size()) != T * slot.width)
        return absl::InternalError(
            absl::StrCat(name_, ": ", in.where, ": expects a message of ", T,
                         " rows x ", slot.width, " but got ", slot.data.size(),
                         " floats in ", rows, " rows"));
      break;
    }
    default:
      return absl::InternalError(
          absl::StrCat(name_, ": ", in.where, ": unknown opcode"));
    }
  }
  return absl::OkStatus();
}

absl::Status Executor::runTask(const Instr &in, const StepDescriptor &step,
                               int64_t T) {
  Slot &out = *slots_[in.out];
  out.data.resize(static_cast<size_t>(T * out.width));
  const float *x =
      in.kernel == fb::Kernel::Embed ? nullptr : slots_[in.in0]->data.data();
  float *y = out.data.data();
  switch (in.kernel) {
  case fb::Kernel::Embed:
    return cpu::embed(step.tokenIds.data(), T, in.w[0], vocab_, in.outWidth, y);
  case fb::Kernel::RmsNorm:
    cpu::rmsNorm(x, in.w[0], in.eps, T, in.width, y);
    return absl::OkStatus();
  case fb::Kernel::Add:
    cpu::add(x, slots_[in.in1]->data.data(), y, T * in.width);
    return absl::OkStatus();
  case fb::Kernel::LmHead:
    cpu::lmHead(x, in.w[0], T, in.width, vocab_, y);
    return absl::OkStatus();
  case fb::Kernel::Mlp:
    cpu::mlp(x, in.w[0], in.w[1], in.w[2], T, in.width, in.intermediate, y);
    return absl::OkStatus();
  case fb::Kernel::Moe: {
    cpu::MoeWeights w = in.moeWeights;
    w.experts = in.experts.data();
    return cpu::moe(x, T, w, in.moeParams, y);
  }
  case fb::Kernel::Attention: {
    const auto &layerPages = step.kvPages[in.kvLayer];
    std::vector<cpu::KvSequencePages> seqs(layerPages.size());
    for (size_t s = 0; s < layerPages.size(); ++s)
      seqs[s] = {layerPages[s].data(),
                 static_cast<int32_t>(layerPages[s].size())};
    cpu::KvLayerView kv;
    kv.seqs = seqs.data();
    kv.numSeqs = static_cast<int32_t>(seqs.size());
    kv.tokensPerPage = step.tokensPerPage[in.kvLayer];
    kv.numKvHeads = in.attnParams.numKvHeads;
    kv.headDim = in.attnParams.headDim;
    return cpu::attention(x, T, in.attnWeights, in.attnParams,
                          step.rowSeq.data(), step.rowPos.data(), kv, y);
  }
  default:
    return absl::InternalError("unknown kernel");
  }
}

/// Checks what the kernels would otherwise reject mid-step, so a malformed
/// descriptor is an error of this call and does not fail the executor.
static absl::Status checkStep(const StepDescriptor &step, int64_t numKvLayers,
                              const std::string &name) {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": step: ", msg));
  };
  size_t T = step.tokenIds.size();
  if (T == 0)
    return fail("expects at least one token row but got 0");
  if (step.rowSeq.size() != T || step.rowPos.size() != T)
    return fail(absl::StrCat("expects ", T,
                             " row sequences and positions but "
                             "got ",
                             step.rowSeq.size(), " and ", step.rowPos.size()));
  if (static_cast<int64_t>(step.kvPages.size()) != numKvLayers ||
      static_cast<int64_t>(step.tokensPerPage.size()) != numKvLayers)
    return fail(absl::StrCat("expects KV pages of ", numKvLayers,
                             " layers but got ", step.kvPages.size()));
  for (int64_t l = 0; l < numKvLayers; ++l) {
    const auto &seqs = step.kvPages[l];
    if (step.tokensPerPage[l] <= 0)
      return fail(absl::StrCat("KV layer ", l, " has ", step.tokensPerPage[l],
                               " tokens per page"));
    for (size_t t = 0; t < T; ++t) {
      int32_t s = step.rowSeq[t], p = step.rowPos[t];
      if (s < 0 || static_cast<size_t>(s) >= seqs.size())
        return fail(absl::StrCat("row ", t, " names sequence ", s,
                                 " but the step has ", seqs.size()));
      if (p < 0)
        return fail(absl::StrCat("row ", t, " has negative position ", p));
      if (static_cast<size_t>(p / step.tokensPerPage[l]) >= seqs[s].size())
        return fail(absl::StrCat("row ", t, " at position ", p, " of sequence ",
                                 s, " has no KV page in layer ", l, " (",
                                 seqs[s].size(), " pages of ",
                                 step.tokensPerPage[l], " tokens)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Executor::run(const StepDescriptor &step,
                           std::vector<float> *logits) {
  if (!failed_.ok())
    return failed_;
  CP_RETURN_IF_ERROR(checkStep(step, numKvLayers_, name_));
  {
    std::unique_lock<std::mutex> lock(mutex_);
    current_ = &step;
    ++generation_;
    pending_ = streams_.size();
    wake_.notify_all();
    done_.wait(lock, [&] { return pending_ == 0; });
    current_ = nullptr;
  }
  for (const absl::Status &status : workerStatus_) {
    if (!status.ok()) {
      failed_ = status;
      return status;
    }
  }
  ++stepCounter_;
  const std::vector<float> &out = slots_[outputSlot_]->data;
  logits->assign(out.begin(), out.begin() + step.tokenIds.size() *
                                                static_cast<size_t>(vocab_));
  return absl::OkStatus();
}

} // namespace crosspool::runtime
