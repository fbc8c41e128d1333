//===- Executor.cpp - CPU reference executor of a plan's streams ----------===//
#include "runtime/exec/Executor.h"

#include "kernels/cpu/Kernels.h"
#include "runtime/base/Status.h"
#include "runtime/exec/TaskDecode.h"
#include "runtime/format/StreamCheck.h"

#include "absl/strings/str_cat.h"

#include <algorithm>

namespace crosspool::runtime {

namespace fb = crosspool::plan;
namespace cpu = crosspool::kernels::cpu;

/// An instruction decoded once at load (decodePlanStreams) with its weight
/// pointers resolved, so a step does no FlatBuffers lookups.
struct Executor::Instr : DecodedInstr {
  std::vector<const float *> w;
  cpu::AttentionWeights attnWeights;
  std::vector<cpu::ExpertWeights> experts;
  cpu::MoeWeights moeWeights; ///< `experts` pointer set per call
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

  CP_ASSIGN_OR_RETURN(std::vector<DecodedStream> decoded,
                      decodePlanStreams(plan, name));
  for (DecodedStream &stream : decoded) {
    std::vector<Instr> instrs;
    for (DecodedInstr &d : stream.instrs) {
      Instr in;
      static_cast<DecodedInstr &>(in) = std::move(d);
      in.w = resolveWeights(in.weightIds, weights);
      if (in.op == fb::Opcode::Task && in.kernel == fb::Kernel::Attention)
        in.attnWeights = attentionWeightsOf<cpu::AttentionWeights>(in.w);
      if (in.op == fb::Opcode::Task && in.kernel == fb::Kernel::Moe) {
        in.moeWeights = moeWeightsOf<cpu::MoeWeights>(in.w);
        in.experts =
            moeExpertsOf<cpu::ExpertWeights>(in.w, in.moeParams.numExperts);
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
  CP_RETURN_IF_ERROR(
      checkStepRows(T, step.rowSeq.size(), step.rowPos.size(), name));
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
