//===- CudaExecutor.cpp - A plan's streams on one GPU ---------------------===//
#include "runtime/cuda/CudaExecutor.h"

#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/exec/TaskDecode.h"
#include "runtime/format/StreamCheck.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <atomic>
#include <chrono>

namespace crosspool::runtime::cuda {

namespace fb = crosspool::plan;
namespace cudak = crosspool::kernels::cuda;

/// An instruction decoded once at load (decodePlanStreams) with its device
/// weight pointers resolved.
struct CudaExecutor::Instr : DecodedInstr {
  std::vector<const void *> w;
  cudak::AttentionWeights attnWeights;
  cudak::MoeWeights moeWeights;
  /// An Add that also runs the next instruction's RmsNorm (one addRmsNorm
  /// launch): its weight, epsilon and output slot; -1 = plain Add.
  const void *normW = nullptr;
  float normEps = 0;
  int32_t normOut = -1;
  /// The RmsNorm folded into the Add before it: nothing to launch.
  bool folded = false;
};

struct CudaExecutor::Pool {
  fb::Pool pool = fb::Pool::KV;
  std::vector<Instr> instrs;
  /// Where this pool's work is enqueued: its own stream, or the first
  /// pool's in one-stream mode (ownStream is then still created, unused).
  cudaStream_t stream = nullptr;
  cudaStream_t ownStream = nullptr;
  cublasHandle_t blas = nullptr;
  void *workspace = nullptr;
  int64_t workspaceBytes = 0;
  void *mlpScratch = nullptr; ///< gate and up rows of Mlp tasks
  int64_t mlpScratchBytes = 0;
  /// Fork (first pool: inputs are on the device) and join (other pools:
  /// their part of the step is done) point of a step.
  cudaEvent_t inputsReady = nullptr;
  cudak::BlockContext ctx(int32_t numSms) const {
    cudak::BlockContext c;
    c.stream = stream;
    c.blas = blas;
    c.numSms = numSms;
    c.workspace = workspace;
    c.workspaceBytes = workspaceBytes;
    return c;
  }
};

namespace {

absl::Status prefixed(const absl::Status &st, const std::string &prefix) {
  return absl::Status(st.code(), absl::StrCat(prefix, st.message()));
}

using Clock = std::chrono::steady_clock;

double secondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

} // namespace

absl::StatusOr<std::unique_ptr<CudaExecutor>>
CudaExecutor::create(const fb::Plan &plan, std::vector<const void *> weights,
                     std::vector<cudak::KvCacheView> kvLayers, cudak::DType dt,
                     std::string name, bool useGraphs) {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", msg));
  };
  absl::Status check = checkPlanStreams(plan);
  if (!check.ok())
    return prefixed(check, name + ": ");
  const auto &planWeights = *plan.weights();
  if (weights.size() != planWeights.size())
    return fail(absl::StrCat("expects ", planWeights.size(),
                             " device weights but got ", weights.size()));
  for (size_t i = 0; i < weights.size(); ++i)
    if (!weights[i])
      return fail(absl::StrCat("weight ", i, " '",
                               planWeights.Get(i)->name()->str(),
                               "' has no device data"));
  size_t numKv = plan.kv_layers() ? plan.kv_layers()->size() : 0;
  if (kvLayers.size() != numKv)
    return fail(absl::StrCat("expects ", numKv, " KV layer views but got ",
                             kvLayers.size()));

  std::unique_ptr<CudaExecutor> ex(new CudaExecutor());
  ex->name_ = name;
  ex->dt_ = dt;
  ex->useGraphs_ = useGraphs;
  ex->vocab_ = plan.vocab_size();
  ex->inputSlot_ = plan.input_slot();
  ex->outputSlot_ = plan.output_slot();
  ex->kv_ = std::move(kvLayers);
  ex->oneStream_ = oneStreamEnabled();
  int device = 0;
  CP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CP_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
      &ex->numSms_, cudaDevAttrMultiProcessorCount, device));

  for (const fb::Slot *s : *plan.slots()) {
    ex->slotWidth_.push_back(s->width());
    ex->slotPool_.push_back(static_cast<int>(s->pool()));
    ex->slotKind_.push_back(static_cast<int>(s->kind()));
    ex->slotPtr_.push_back(nullptr);
  }
  if (plan.channels()) {
    for (const fb::Channel *ch : *plan.channels()) {
      ex->eventBase_.push_back(static_cast<int32_t>(ex->events_.size()));
      ex->perStep_.push_back(ch->per_step());
      for (int32_t i = 0; i < ch->per_step(); ++i) {
        cudaEvent_t e;
        CP_CUDA_RETURN_IF_ERROR(
            cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        ex->events_.push_back(e);
      }
    }
  }

  CP_ASSIGN_OR_RETURN(std::vector<DecodedStream> decoded,
                      decodePlanStreams(plan, name));
  for (DecodedStream &stream : decoded) {
    auto pool = std::make_unique<Pool>();
    pool->pool = stream.pool;
    CP_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&pool->ownStream, cudaStreamNonBlocking));
    pool->stream = ex->oneStream_ && !ex->pools_.empty() ? ex->pools_[0]->stream
                                                         : pool->ownStream;
    CP_CUBLAS_RETURN_IF_ERROR(cublasCreate(&pool->blas));
    CP_CUBLAS_RETURN_IF_ERROR(cublasSetStream(pool->blas, pool->stream));
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&pool->inputsReady, cudaEventDisableTiming));
    ex->pools_.push_back(std::move(pool));
    std::vector<Instr> &instrs = ex->pools_.back()->instrs;
    for (DecodedInstr &d : stream.instrs) {
      Instr in;
      static_cast<DecodedInstr &>(in) = std::move(d);
      in.w = resolveWeights(in.weightIds, weights);
      if (in.op == fb::Opcode::Task && in.kernel == fb::Kernel::Attention)
        in.attnWeights = attentionWeightsOf<cudak::AttentionWeights>(in.w);
      if (in.op == fb::Opcode::Task && in.kernel == fb::Kernel::Moe) {
        // The kernel reads the expert pointers from a device table.
        std::vector<cudak::ExpertPtrs> experts =
            moeExpertsOf<cudak::ExpertPtrs>(in.w, in.moeParams.numExperts);
        void *table = nullptr;
        size_t bytes = experts.size() * sizeof(cudak::ExpertPtrs);
        CP_CUDA_RETURN_IF_ERROR(cudaMalloc(&table, std::max<size_t>(bytes, 1)));
        ex->expertTables_.push_back(table);
        CP_CUDA_RETURN_IF_ERROR(
            cudaMemcpy(table, experts.data(), bytes, cudaMemcpyHostToDevice));
        in.moeWeights = moeWeightsOf<cudak::MoeWeights>(in.w);
        in.moeWeights.experts = static_cast<const cudak::ExpertPtrs *>(table);
      }
      instrs.push_back(std::move(in));
    }
    if (fuseAddRmsNormEnabled()) {
      std::vector<DecodedInstr> view(instrs.begin(), instrs.end());
      for (size_t i : addRmsNormPairs(view)) {
        Instr &norm = instrs[i + 1];
        instrs[i].normW = norm.w[0];
        instrs[i].normEps = norm.eps;
        instrs[i].normOut = norm.out;
        norm.folded = true;
        ++ex->counters_.addNormFolds;
      }
    }
  }
  if (ex->pools_.empty())
    return fail("plan has no streams");
  // Rows can be picked before the LM head when its output is the logits
  // slot and nothing else reads or writes that slot (e.g. no channel).
  int lmHeads = 0;
  bool otherUse = false;
  for (const auto &pool : ex->pools_)
    for (const Instr &in : pool->instrs) {
      bool isHead =
          in.op == fb::Opcode::Task && in.kernel == fb::Kernel::LmHead;
      if (isHead && in.out == ex->outputSlot_) {
        ++lmHeads;
        ex->lmHeadWidth_ = in.width;
        otherUse |= in.in0 == ex->outputSlot_;
        continue;
      }
      otherUse |= in.in0 == ex->outputSlot_ || in.in1 == ex->outputSlot_ ||
                  in.out == ex->outputSlot_;
    }
  ex->selectRows_ = lmHeads == 1 && !otherUse && ex->lmHeadWidth_ > 0;

  // Zero-copy hand-off: a Recv slot that only the Recv writes, of a sent
  // slot that only one instruction writes, is the sent slot's buffer (both
  // pools are on this device). Neither is overwritten within a step, and
  // steps end with a synchronize, so the receiver reads what was sent.
  ex->slotAlias_.assign(ex->slotPtr_.size(), -1);
  std::vector<int32_t> writers(ex->slotPtr_.size(), 0);
  std::map<std::pair<int32_t, int32_t>, int32_t> sentSlot; // (channel, seq)
  for (const auto &pool : ex->pools_)
    for (const Instr &in : pool->instrs) {
      if (in.out >= 0 && in.op != fb::Opcode::Send)
        ++writers[size_t(in.out)];
      if (in.op == fb::Opcode::Send)
        sentSlot[{in.channel, in.seq}] = in.in0;
    }
  if (ex->inputSlot_ >= 0)
    ++writers[size_t(ex->inputSlot_)]; // the staging copy
  for (const auto &pool : ex->pools_)
    for (const Instr &in : pool->instrs) {
      if (in.op != fb::Opcode::Recv)
        continue;
      auto it = sentSlot.find({in.channel, in.seq});
      if (it == sentSlot.end())
        continue;
      const int32_t src = it->second, dst = in.out;
      if (writers[size_t(src)] == 1 && writers[size_t(dst)] == 1 &&
          src != ex->inputSlot_ && dst != ex->outputSlot_ &&
          src != ex->outputSlot_ &&
          ex->slotWidth_[size_t(src)] == ex->slotWidth_[size_t(dst)] &&
          ex->slotKind_[size_t(src)] == ex->slotKind_[size_t(dst)])
        ex->slotAlias_[size_t(dst)] = src;
    }
  for (size_t s = 0; s < ex->slotAlias_.size(); ++s) // to the owning slot
    while (ex->slotAlias_[s] >= 0 &&
           ex->slotAlias_[size_t(ex->slotAlias_[s])] >= 0)
      ex->slotAlias_[s] = ex->slotAlias_[size_t(ex->slotAlias_[s])];
  for (int32_t a : ex->slotAlias_)
    ex->counters_.zeroCopyRecvs += a >= 0;
  return ex;
}

int32_t CudaExecutor::contextBucket(int32_t ctx) {
  if (ctx <= 512)
    return 512;
  // ctx in (p, 2p]: round up to a multiple of p / 4 (at most 25% more).
  int32_t p = 1;
  while (p * 2 < ctx)
    p *= 2;
  int32_t g = std::max(1, p / 4);
  return int32_t((int64_t(ctx) + g - 1) / g * g);
}

CudaExecutor::~CudaExecutor() {
  for (auto &p : pools_)
    if (p->stream)
      cudaStreamSynchronize(p->stream);
  dropGraphs();
  for (size_t s = 0; s < slotPtr_.size(); ++s)
    if (s >= slotAlias_.size() || slotAlias_[s] < 0)
      cudaFree(slotPtr_[s]);
  for (void *p : expertTables_)
    cudaFree(p);
  for (cudaEvent_t e : events_)
    cudaEventDestroy(e);
  for (auto &p : pools_) {
    cudaFree(p->workspace);
    cudaFree(p->mlpScratch);
    if (p->inputsReady)
      cudaEventDestroy(p->inputsReady);
    if (p->blas)
      cublasDestroy(p->blas);
    if (p->ownStream)
      cudaStreamDestroy(p->ownStream);
  }
  cudaFree(stagingDev_);
  cudaFreeHost(stagingHost_);
  cudaFree(gatherBuf_);
  cudaFree(idsDev_);
  cudaFreeHost(idsHost_);
}

size_t CudaExecutor::scratchBytes() const {
  size_t n = stagingInts_ * 4 + outCapacity_ * 4;
  if (gatherBuf_)
    n += outCapacity_ * lmHeadWidth_ * cudak::dtypeBytes(dt_);
  for (size_t s = 0; s < slotPtr_.size(); ++s)
    if (slotPtr_[s] && slotAlias_[s] < 0)
      n += (selectRows_ && int(s) == outputSlot_ ? outCapacity_ : slotRows_) *
           slotWidth_[s] *
           (slotKind_[s] == int(fb::SlotKind::Hidden) ? cudak::dtypeBytes(dt_)
                                                      : 4);
  for (const auto &p : pools_)
    n += p->workspaceBytes + p->mlpScratchBytes;
  return n;
}

const float *CudaExecutor::deviceLogits() const {
  return static_cast<const float *>(slotPtr_[outputSlot_]);
}

absl::Status CudaExecutor::checkStep(const CudaStep &step) const {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": step: ", msg));
  };
  size_t T = step.tokenIds.size();
  CP_RETURN_IF_ERROR(
      checkStepRows(T, step.rowSeq.size(), step.rowPos.size(), name_));
  if (step.pageTables.size() != kv_.size())
    return fail(absl::StrCat("expects page tables of ", kv_.size(),
                             " KV layers but got ", step.pageTables.size()));
  for (size_t i = 0; i < step.logitRows.size(); ++i)
    if (step.logitRows[i] < 0 || size_t(step.logitRows[i]) >= T)
      return fail(absl::StrCat("logit row ", step.logitRows[i],
                               " is outside the step's ", T, " rows"));
  for (size_t t = 0; t < T; ++t)
    if (step.tokenIds[t] < 0 || step.tokenIds[t] >= vocab_)
      return fail(absl::StrCat("row ", t, " has token id ", step.tokenIds[t],
                               " outside the vocabulary (size ", vocab_, ")"));
  for (size_t l = 0; l < kv_.size(); ++l) {
    const auto &seqs = step.pageTables[l];
    for (size_t t = 0; t < T; ++t) {
      int32_t s = step.rowSeq[t], p = step.rowPos[t];
      if (s < 0 || size_t(s) >= seqs.size())
        return fail(absl::StrCat("row ", t, " names sequence ", s,
                                 " but the step has ", seqs.size()));
      if (p < 0)
        return fail(absl::StrCat("row ", t, " has negative position ", p));
      if (size_t(p / kv_[l].tokensPerPage) >= seqs[s].size())
        return fail(absl::StrCat("row ", t, " at position ", p, " of sequence ",
                                 s,
                                 " has no KV page in "
                                 "layer ",
                                 l));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaExecutor::ensureCapacity(int64_t T, int32_t maxContext,
                                          int32_t numSeqs, int32_t maxPages,
                                          int64_t outRows) {
  if (T > slotRows_) {
    for (auto &p : pools_)
      CP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(p->stream));
    dropGraphs();
    int64_t rows = std::max<int64_t>((T + 15) / 16 * 16, 2 * slotRows_);
    for (size_t s = 0; s < slotPtr_.size(); ++s) {
      if (selectRows_ && int(s) == outputSlot_)
        continue; // sized by the rows through the LM head, below
      if (slotAlias_[s] >= 0)
        continue; // the sent slot's buffer, set below
      cudaFree(slotPtr_[s]);
      slotPtr_[s] = nullptr;
      if (int(s) == inputSlot_)
        continue; // ids live in the staging buffer
      int64_t elem = slotKind_[s] == int(fb::SlotKind::Hidden)
                         ? cudak::dtypeBytes(dt_)
                         : 4;
      CP_CUDA_RETURN_IF_ERROR(
          cudaMalloc(&slotPtr_[s], size_t(rows * slotWidth_[s] * elem)));
    }
    for (size_t s = 0; s < slotPtr_.size(); ++s)
      if (slotAlias_[s] >= 0)
        slotPtr_[s] = slotPtr_[size_t(slotAlias_[s])];
    slotRows_ = rows;
  }
  for (auto &p : pools_) {
    int64_t ws = 0, mlp = 0;
    for (const Instr &in : p->instrs) {
      if (in.op != fb::Opcode::Task)
        continue;
      if (in.kernel == fb::Kernel::Attention)
        ws = std::max(ws, cudak::attentionWorkspaceBytes(
                              T, in.attnParams,
                              cudak::planAttend(T, in.attnParams, maxContext,
                                                numSms_, attendRows_)));
      else if (in.kernel == fb::Kernel::Moe)
        ws = std::max(ws, cudak::moeWorkspaceBytes(T, in.moeParams));
      else if (in.kernel == fb::Kernel::Mlp)
        mlp = std::max(mlp, 2 * T * in.intermediate * cudak::dtypeBytes(dt_));
    }
    if (ws > p->workspaceBytes) {
      CP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(p->stream));
      dropGraphs();
      cudaFree(p->workspace);
      p->workspace = nullptr;
      p->workspaceBytes = 0;
      CP_CUDA_RETURN_IF_ERROR(cudaMalloc(&p->workspace, size_t(ws)));
      p->workspaceBytes = ws;
    }
    if (mlp > p->mlpScratchBytes) {
      CP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(p->stream));
      dropGraphs();
      cudaFree(p->mlpScratch);
      p->mlpScratch = nullptr;
      p->mlpScratchBytes = 0;
      CP_CUDA_RETURN_IF_ERROR(cudaMalloc(&p->mlpScratch, size_t(mlp)));
      p->mlpScratchBytes = mlp;
    }
  }
  // The logits slot, the rows gathered for the LM head and the greedy ids
  // hold outRows rows (all T when rows are not picked before the LM head).
  int64_t outNeed = selectRows_ ? outRows : T;
  if (outNeed > outCapacity_) {
    for (auto &p : pools_)
      CP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(p->stream));
    dropGraphs();
    int64_t rows = (outNeed + 15) / 16 * 16;
    cudaFree(idsDev_);
    cudaFreeHost(idsHost_);
    idsDev_ = idsHost_ = nullptr;
    outCapacity_ = 0;
    if (selectRows_) {
      cudaFree(slotPtr_[outputSlot_]);
      cudaFree(gatherBuf_);
      slotPtr_[outputSlot_] = gatherBuf_ = nullptr;
      CP_CUDA_RETURN_IF_ERROR(cudaMalloc(
          &slotPtr_[outputSlot_], size_t(rows * slotWidth_[outputSlot_] * 4)));
      CP_CUDA_RETURN_IF_ERROR(cudaMalloc(
          &gatherBuf_, size_t(rows * lmHeadWidth_ * cudak::dtypeBytes(dt_))));
    }
    CP_CUDA_RETURN_IF_ERROR(
        cudaMalloc(reinterpret_cast<void **>(&idsDev_), size_t(rows) * 4));
    CP_CUDA_RETURN_IF_ERROR(
        cudaMallocHost(reinterpret_cast<void **>(&idsHost_), size_t(rows) * 4));
    outCapacity_ = rows;
  }
  size_t ints = size_t(3 * T + int64_t(kv_.size()) * numSeqs * maxPages +
                       (selectRows_ ? outRows : 0));
  if (ints > stagingInts_) {
    dropGraphs();
    cudaFree(stagingDev_);
    cudaFreeHost(stagingHost_);
    stagingDev_ = nullptr;
    stagingHost_ = nullptr;
    stagingInts_ = 0;
    size_t n = std::max(ints, 2 * stagingInts_);
    CP_CUDA_RETURN_IF_ERROR(
        cudaMalloc(reinterpret_cast<void **>(&stagingDev_), n * 4));
    CP_CUDA_RETURN_IF_ERROR(
        cudaMallocHost(reinterpret_cast<void **>(&stagingHost_), n * 4));
    stagingInts_ = n;
  }
  return absl::OkStatus();
}

namespace {
std::atomic<int> gFuseAddNorm{-1}, gOneStream{-1};
} // namespace

bool CudaExecutor::oneStreamEnabled() {
  return cudak::switchValue(gOneStream, "CROSSPOOL_ONE_STREAM", true);
}

void CudaExecutor::setOneStreamEnabled(bool on) {
  gOneStream.store(on ? 1 : 0);
}

bool CudaExecutor::fuseAddRmsNormEnabled() {
  return cudak::switchValue(gFuseAddNorm, "CROSSPOOL_FUSE_ADD_NORM", true);
}

void CudaExecutor::setFuseAddRmsNormEnabled(bool on) {
  gFuseAddNorm.store(on ? 1 : 0);
}

absl::Status CudaExecutor::runTask(const Instr &in, Pool &pool, int64_t T,
                                   int32_t maxContext) {
  void *y = slotPtr_[in.out];
  const void *x = in.in0 >= 0 ? slotPtr_[in.in0] : nullptr;
  const cudak::BlockContext ctx = pool.ctx(numSms_);
  switch (in.kernel) {
  case fb::Kernel::Embed:
    return cudak::embed(stagingDev_, T, in.w[0], vocab_, in.outWidth, y, dt_,
                        nullptr, pool.stream);
  case fb::Kernel::RmsNorm:
    return cudak::rmsNorm(x, in.w[0], in.eps, T, in.width, y, dt_, pool.stream);
  case fb::Kernel::Add:
    if (in.normOut >= 0)
      return cudak::addRmsNormInto(x, slotPtr_[in.in1], in.normW, in.normEps, T,
                                   in.width, y, slotPtr_[in.normOut], dt_,
                                   pool.stream);
    return cudak::add(x, slotPtr_[in.in1], y, T * in.width, dt_, pool.stream);
  case fb::Kernel::LmHead:
    if (gatherOut_) {
      // Only the wanted rows: gather them (an embedding lookup whose table
      // is this step's hidden rows), then the LM head on those.
      const int32_t *rows = stagingDev_ + 3 * T +
                            int64_t(kv_.size()) * numSeqs_ * maxPagesPerSeq_;
      CP_RETURN_IF_ERROR(cudak::embed(rows, outRows_, x, T, in.width,
                                      gatherBuf_, dt_, nullptr, pool.stream));
      return cudak::lmHead(gatherBuf_, in.w[0], outRows_, in.width, vocab_,
                           static_cast<float *>(y), dt_, ctx);
    }
    return cudak::lmHead(x, in.w[0], T, in.width, vocab_,
                         static_cast<float *>(y), dt_, ctx);
  case fb::Kernel::Mlp: {
    char *g = static_cast<char *>(pool.mlpScratch);
    char *u = g + T * in.intermediate * cudak::dtypeBytes(dt_);
    CP_RETURN_IF_ERROR(cudak::linear(x, in.w[0], nullptr, T, in.width,
                                     in.intermediate, g, dt_, ctx));
    CP_RETURN_IF_ERROR(cudak::linear(x, in.w[1], nullptr, T, in.width,
                                     in.intermediate, u, dt_, ctx));
    CP_RETURN_IF_ERROR(
        cudak::swiglu(g, u, g, T * in.intermediate, dt_, pool.stream));
    return cudak::linear(g, in.w[2], nullptr, T, in.intermediate, in.outWidth,
                         y, dt_, ctx);
  }
  case fb::Kernel::Moe:
    return cudak::moe(x, T, in.moeWeights, in.moeParams, y, dt_, ctx);
  case fb::Kernel::Attention: {
    cudak::KvCacheView kv = kv_[in.kvLayer];
    kv.pageTable =
        stagingDev_ + 3 * T + int64_t(in.kvLayer) * numSeqs_ * maxPagesPerSeq_;
    kv.maxPagesPerSeq = maxPagesPerSeq_;
    kv.numSeqs = numSeqs_;
    return cudak::attention(x, T, in.attnWeights, in.attnParams,
                            stagingDev_ + T, stagingDev_ + 2 * T, kv,
                            maxContext, y, ctx, attendRows_);
  }
  default:
    return absl::InternalError("unknown kernel");
  }
}

absl::Status CudaExecutor::enqueueStep(int64_t T, int32_t maxContext) {
  // Fork: the other pools start after the inputs are on the device (inside a
  // capture this makes them join the graph).
  // In one-stream mode every pool is enqueued on the first pool's stream in
  // this walk's order, which already respects every channel: no events.
  Pool &first = *pools_[0];
  if (!oneStream_) {
    CP_CUDA_RETURN_IF_ERROR(cudaEventRecord(first.inputsReady, first.stream));
    for (size_t p = 1; p < pools_.size(); ++p)
      CP_CUDA_RETURN_IF_ERROR(
          cudaStreamWaitEvent(pools_[p]->stream, first.inputsReady, 0));
  }

  // Enqueue both streams in an order that respects the channels.
  std::vector<char> sent(events_.size(), 0);
  std::vector<int32_t> sentSlot(events_.size(), -1);
  std::vector<size_t> pc(pools_.size(), 0);
  bool progress = true;
  while (progress) {
    progress = false;
    for (size_t p = 0; p < pools_.size(); ++p) {
      Pool &pool = *pools_[p];
      while (pc[p] < pool.instrs.size()) {
        const Instr &in = pool.instrs[pc[p]];
        if (in.op == fb::Opcode::Recv &&
            !sent[eventBase_[in.channel] + in.seq - 1])
          break;
        absl::Status status;
        if (in.op == fb::Opcode::Task) {
          if (!in.folded)
            status = runTask(in, pool, T, maxContext);
        } else {
          int32_t msg = eventBase_[in.channel] + in.seq - 1;
          status = [&]() -> absl::Status {
            if (in.op == fb::Opcode::Send) {
              if (!oneStream_)
                CP_CUDA_RETURN_IF_ERROR(
                    cudaEventRecord(events_[msg], pool.stream));
              sent[msg] = 1;
              sentSlot[msg] = in.in0;
              return absl::OkStatus();
            }
            if (!oneStream_)
              CP_CUDA_RETURN_IF_ERROR(
                  cudaStreamWaitEvent(pool.stream, events_[msg], 0));
            if (slotAlias_[size_t(in.out)] >= 0)
              return absl::OkStatus(); // the same buffer
            int64_t elem = slotKind_[in.out] == int(fb::SlotKind::Hidden)
                               ? cudak::dtypeBytes(dt_)
                               : 4;
            CP_CUDA_RETURN_IF_ERROR(
                cudaMemcpyAsync(slotPtr_[in.out], slotPtr_[sentSlot[msg]],
                                size_t(T * slotWidth_[in.out] * elem),
                                cudaMemcpyDeviceToDevice, pool.stream));
            return absl::OkStatus();
          }();
        }
        if (!status.ok())
          return prefixed(status, absl::StrCat(name_, ": ", in.where, ": "));
        ++pc[p];
        progress = true;
      }
    }
  }
  for (size_t p = 0; p < pools_.size(); ++p)
    if (pc[p] != pools_[p]->instrs.size())
      return absl::InternalError(
          absl::StrCat(name_, ": streams deadlocked at instruction ", pc[p],
                       " of stream ", p));
  // Join: the first stream ends after every other one.
  for (size_t p = 1; p < pools_.size() && !oneStream_; ++p) {
    CP_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(pools_[p]->inputsReady, pools_[p]->stream));
    CP_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(first.stream, pools_[p]->inputsReady, 0));
  }
  return absl::OkStatus();
}

absl::StatusOr<cudaGraphExec_t> CudaExecutor::graphFor(int64_t T,
                                                       int32_t maxContext) {
  // Everything a captured launch bakes in: row count, page-table shape and
  // the attention tiling that maxContext selects (pointers are fixed until
  // ensureCapacity reallocates, which drops every graph).
  std::vector<int64_t> key = {T, numSeqs_, maxPagesPerSeq_, outRows_,
                              gatherOut_ ? 1 : 0};
  for (const auto &pool : pools_)
    for (const Instr &in : pool->instrs)
      if (in.op == fb::Opcode::Task && in.kernel == fb::Kernel::Attention) {
        const cudak::AttendPlan a = cudak::planAttend(
            T, in.attnParams, maxContext, numSms_, attendRows_);
        key.insert(key.end(),
                   {a.decodeRows, a.decode.rowsPerBlock, a.decode.numSplits,
                    a.decode.splitLen, a.prompt.rowsPerBlock,
                    a.prompt.numSplits, a.prompt.splitLen});
      }
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    graphUse_[key] = ++useClock_;
    return it->second;
  }
  if (graphs_.size() >= kMaxGraphs) {
    // Evict the least recently used graph.
    auto lru = std::min_element(
        graphUse_.begin(), graphUse_.end(),
        [](const auto &a, const auto &b) { return a.second < b.second; });
    cudaGraphExecDestroy(graphs_.at(lru->first));
    graphs_.erase(lru->first);
    graphUse_.erase(lru);
  }
  auto captureStart = Clock::now();
  cudaStream_t s0 = pools_[0]->stream;
  CP_CUDA_RETURN_IF_ERROR(
      cudaStreamBeginCapture(s0, cudaStreamCaptureModeThreadLocal));
  absl::Status enqueued = enqueueStep(T, maxContext);
  cudaGraph_t graph = nullptr;
  cudaError_t ended = cudaStreamEndCapture(s0, &graph);
  if (!enqueued.ok()) {
    if (graph)
      cudaGraphDestroy(graph);
    return enqueued;
  }
  if (ended != cudaSuccess)
    return cudak::cudaErrorStatus(ended, "cudaStreamEndCapture", __FILE__,
                                  __LINE__);
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess)
    return cudak::cudaErrorStatus(inst, "cudaGraphInstantiate", __FILE__,
                                  __LINE__);
  graphs_[key] = exec;
  graphUse_[key] = ++useClock_;
  ++counters_.graphCaptures;
  counters_.graphCaptureS += secondsBetween(captureStart, Clock::now());
  return exec;
}

void CudaExecutor::dropGraphs() {
  for (auto &entry : graphs_)
    cudaGraphExecDestroy(entry.second);
  graphs_.clear();
  graphUse_.clear();
}

absl::Status CudaExecutor::run(const CudaStep &step, std::vector<float> *logits,
                               std::vector<int32_t> *greedyIds) {
  const Clock::time_point t0 = Clock::now();
  CP_RETURN_IF_ERROR(checkStep(step));
  const int64_t T = static_cast<int64_t>(step.tokenIds.size());
  int32_t numSeqs = 0, maxPages = 1, maxContext = 1;
  for (int32_t s : step.rowSeq)
    numSeqs = std::max(numSeqs, s + 1);
  for (int32_t p : step.rowPos)
    maxContext = std::max(maxContext, p + 1);
  for (const auto &layer : step.pageTables) {
    numSeqs = std::max<int32_t>(numSeqs, int32_t(layer.size()));
    for (const auto &t : layer)
      maxPages = std::max<int32_t>(maxPages, int32_t(t.size()));
  }
  // Rows through the LM head: the wanted ones, gathered unless they are
  // simply every row in order (a decode batch).
  const std::vector<int32_t> &want = step.logitRows;
  bool identity = want.empty() || int64_t(want.size()) == T;
  for (size_t i = 0; identity && i < want.size(); ++i)
    identity = want[i] == int32_t(i);
  const int64_t nWant = want.empty() ? T : int64_t(want.size());
  gatherOut_ = selectRows_ && !identity;
  outRows_ = selectRows_ ? nWant : T;
  const bool graphStep = useGraphs_ && T <= kGraphMaxRows;
  // Decode rows (leading rows of sequences with no other row in the step;
  // the serving engine puts them first) get an attend pass of their own.
  std::vector<int32_t> rowsOfSeq(size_t(numSeqs), 0); // s < numSeqs
  for (int32_t s : step.rowSeq)
    if (s >= 0)
      ++rowsOfSeq[size_t(s)];
  int64_t decodeRows = 0;
  int32_t decodeContext = 1, promptContext = 1;
  while (decodeRows < T && step.rowSeq[decodeRows] >= 0 &&
         rowsOfSeq[size_t(step.rowSeq[decodeRows])] == 1)
    decodeContext = std::max(decodeContext, step.rowPos[decodeRows++] + 1);
  for (int64_t r = decodeRows; r < T; ++r)
    promptContext = std::max(promptContext, step.rowPos[r] + 1);
  attendRows_ = {};
  if (graphStep) {
    // One graph per context bucket: maxContext is only an upper bound of
    // every row's context (used for the attention tiling) and the page
    // tables are padded with -1, so the graph replays until the longest
    // context leaves the bucket, not just for 16 tokens.
    maxContext = contextBucket(maxContext);
    for (const cudak::KvCacheView &kv : kv_)
      maxPages = std::max<int32_t>(
          maxPages, (maxContext + kv.tokensPerPage - 1) / kv.tokensPerPage);
    // Graphs are keyed by one context bucket: a decode-only step is one
    // decode pass, a mixed one keeps a single pass.
    if (decodeRows == T)
      attendRows_ = {T, maxContext};
  } else if (decodeRows > 0) {
    attendRows_ = {decodeRows, decodeContext};
    maxContext = decodeRows < T ? promptContext : decodeContext;
  }
  CP_RETURN_IF_ERROR(
      ensureCapacity(T, maxContext, numSeqs, maxPages, outRows_));
  numSeqs_ = numSeqs;
  maxPagesPerSeq_ = maxPages;

  // The previous step ended with a synchronize, so the staging buffer is free.
  int32_t *h = stagingHost_;
  std::copy(step.tokenIds.begin(), step.tokenIds.end(), h);
  std::copy(step.rowSeq.begin(), step.rowSeq.end(), h + T);
  std::copy(step.rowPos.begin(), step.rowPos.end(), h + 2 * T);
  int32_t *tables = h + 3 * T;
  const size_t tableInts = kv_.size() * numSeqs * maxPages;
  std::fill(tables, tables + tableInts, -1);
  for (size_t l = 0; l < step.pageTables.size(); ++l)
    for (size_t s = 0; s < step.pageTables[l].size(); ++s)
      std::copy(step.pageTables[l][s].begin(), step.pageTables[l][s].end(),
                tables + (l * numSeqs + s) * maxPages);
  size_t ints = size_t(3 * T) + tableInts;
  if (gatherOut_) {
    std::copy(want.begin(), want.end(), tables + tableInts);
    ints += want.size();
  }
  cudaStream_t s0 = pools_[0]->stream;
  CP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(stagingDev_, stagingHost_, ints * 4,
                                          cudaMemcpyHostToDevice, s0));
  const Clock::time_point t1 = Clock::now();

  absl::Status status;
  bool replayed = false;
  if (graphStep) {
    absl::StatusOr<cudaGraphExec_t> exec = graphFor(T, maxContext);
    if (exec.ok()) {
      cudaError_t err = cudaGraphLaunch(*exec, s0);
      if (err != cudaSuccess)
        status =
            cudak::cudaErrorStatus(err, "cudaGraphLaunch", __FILE__, __LINE__);
      ++graphLaunches_;
      ++counters_.graphLaunches;
      replayed = true;
    } else {
      // A step that cannot be captured (or a kernel rejecting its input)
      // runs eagerly from now on; a real input error shows up again there.
      cudaGetLastError();
      useGraphs_ = false;
    }
  }
  if (!replayed)
    status = enqueueStep(T, maxContext);
  // The argmax of the LM head's rows (after the join into the first stream).
  const int64_t headRows = selectRows_ ? outRows_ : T;
  if (status.ok() && greedyIds) {
    status = cudak::argmaxRows(deviceLogits(), headRows, vocab_, idsDev_, s0);
    if (status.ok()) {
      cudaError_t err = cudaMemcpyAsync(idsHost_, idsDev_, size_t(headRows) * 4,
                                        cudaMemcpyDeviceToHost, s0);
      if (err != cudaSuccess)
        status =
            cudak::cudaErrorStatus(err, "cudaMemcpyAsync", __FILE__, __LINE__);
    }
  }
  const Clock::time_point t2 = Clock::now();
  // Drain every stream even after an error, so no buffer is in use when the
  // caller retries or frees.
  for (auto &p : pools_) {
    cudaError_t err = cudaStreamSynchronize(p->stream);
    if (err != cudaSuccess && status.ok())
      status = cudak::cudaErrorStatus(err, "cudaStreamSynchronize", __FILE__,
                                      __LINE__);
  }
  const Clock::time_point t3 = Clock::now();
  counters_.prepS += secondsBetween(t0, t1);
  counters_.launchS += secondsBetween(t1, t2);
  counters_.waitS += secondsBetween(t2, t3);
  ++counters_.steps;
  CP_RETURN_IF_ERROR(status);
  // Rows of the LM head's output that the caller wants, in order.
  auto headRow = [&](int64_t i) -> int64_t {
    return selectRows_ || want.empty() ? i : want[i];
  };
  if (greedyIds) {
    greedyIds->resize(size_t(nWant));
    for (int64_t i = 0; i < nWant; ++i)
      (*greedyIds)[i] = idsHost_[headRow(i)];
  }
  if (logits) {
    logits->resize(size_t(nWant * vocab_));
    if (selectRows_ || identity) {
      CP_CUDA_RETURN_IF_ERROR(cudaMemcpy(logits->data(), deviceLogits(),
                                         logits->size() * sizeof(float),
                                         cudaMemcpyDeviceToHost));
    } else {
      for (int64_t i = 0; i < nWant; ++i)
        CP_CUDA_RETURN_IF_ERROR(cudaMemcpy(
            logits->data() + i * vocab_, deviceLogits() + headRow(i) * vocab_,
            size_t(vocab_) * sizeof(float), cudaMemcpyDeviceToHost));
    }
  }
  counters_.copyS += secondsBetween(t3, Clock::now());
  return absl::OkStatus();
}

} // namespace crosspool::runtime::cuda
