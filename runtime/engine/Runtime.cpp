//===- Runtime.cpp - Models, sequences and steps on one backend -----------===//
#include "runtime/engine/Runtime.h"

#include "kernels/cpu/Linear.h"
#include "runtime/base/Status.h"
#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/VerifyWeights.h"
#ifdef CROSSPOOL_HAVE_CUDA_BACKEND
#include "runtime/cuda/CudaBackend.h"
#endif

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <map>
#include <set>
#include <sys/stat.h>
#include <tuple>

namespace crosspool::runtime {

namespace fb = crosspool::plan;

struct Runtime::Model {
  ModelInfo info;
  std::unique_ptr<PlanFile> plan;
  /// KV storage and executor; destroyed before the plan it reads.
  std::unique_ptr<BackendModel> backend;
  std::set<SequenceId> live;
};

namespace {

bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parentDir(const std::string &path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

absl::Status prefixed(const absl::Status &status, const std::string &prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

} // namespace

absl::StatusOr<Device> parseDevice(const std::string &text) {
  if (text == "cpu")
    return Device::kCpu;
  if (text == "cuda")
    return Device::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("--device: expects cpu or cuda but got '", text, "'"));
}

absl::StatusOr<Precision> parsePrecision(const std::string &text) {
  if (text == "fp32")
    return Precision::kFp32;
  if (text == "bf16")
    return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("--precision: expects fp32 or bf16 but got '", text, "'"));
}

absl::StatusOr<std::unique_ptr<Runtime>>
Runtime::create(const RuntimeOptions &options) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->options_ = options;
  if (options.device == Device::kCpu) {
    CP_ASSIGN_OR_RETURN(rt->backend_, createCpuBackend(options));
    return rt;
  }
#ifdef CROSSPOOL_HAVE_CUDA_BACKEND
  CP_ASSIGN_OR_RETURN(rt->backend_, cuda::createCudaBackend(options));
  return rt;
#else
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA backend (configure with "
      "-DCROSSPOOL_ENABLE_CUDA=ON)");
#endif
}

Runtime::~Runtime() {
  // Executors and KV storage go before the backend's arenas and KV pool.
  models_.clear();
}

absl::StatusOr<Runtime::Model *> Runtime::findModel(ModelId model) const {
  auto it = models_.find(model);
  if (it == models_.end())
    return absl::NotFoundError(absl::StrCat("unknown model id ", model));
  return it->second.get();
}

absl::StatusOr<const ModelInfo *> Runtime::modelInfo(ModelId model) const {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  return &m->info;
}

int32_t Runtime::kvPagesInUse() const {
  int64_t pages = 0;
  for (const auto &entry : models_)
    pages += entry.second->backend->pagesInUse();
  return static_cast<int32_t>(pages);
}

int64_t Runtime::kvPagesInUse(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second->backend->pagesInUse();
}

int64_t Runtime::kvPagesFor(ModelId model, int64_t numTokens) const {
  auto it = models_.find(model);
  if (it == models_.end() || numTokens <= 0)
    return 0;
  return it->second->backend->pagesFor(numTokens);
}

int64_t Runtime::kvChunksInUse() const {
  int64_t chunks = 0;
  for (const auto &entry : models_)
    chunks += entry.second->backend->chunksInUse();
  return chunks;
}

int64_t Runtime::kvChunksInUse(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second->backend->chunksInUse();
}

int64_t Runtime::kvPagesPerChunk(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second->backend->pagesPerChunk();
}

size_t Runtime::kvPageBytes(ModelId model) const {
  auto it = models_.find(model);
  if (it == models_.end())
    return 0;
  size_t bytes = it->second->backend->pageBytes();
  return bytes ? bytes : backend_->kvPageBytes();
}

int64_t Runtime::kvPagesHeld(SequenceId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return 0;
  return models_.at(it->second.model)->backend->pagesHeld(seq);
}

absl::StatusOr<std::vector<const void *>>
Runtime::placeWeights(ModelId id, const std::string &planPath,
                      const fb::Plan &plan, const Checkpoint *checkpoint) {
  // A tied lm_head names the embedding again: one buffer per (pool, tensor,
  // byte offset). The offset tells apart the experts of one stacked tensor.
  std::map<std::tuple<fb::Pool, std::string, uint64_t>, const void *> placed;
  std::vector<const void *> weights;
  absl::Status status = [&]() -> absl::Status {
    // Each pool's distinct tensors, announced so the backend can hold them
    // in one allocation.
    std::map<fb::Pool, std::pair<size_t, size_t>> perPool; // numel, tensors
    std::set<std::tuple<fb::Pool, std::string, uint64_t>> seen;
    for (const fb::Weight *w : *plan.weights())
      if (seen.insert({w->pool(), w->name()->str(), w->offset()}).second) {
        perPool[w->pool()].first += weightNumElements(*w);
        perPool[w->pool()].second += 1;
      }
    for (const auto &[pool, total] : perPool) {
      absl::Status reserved =
          backend_->reserveWeights(id, pool, total.first, total.second);
      if (!reserved.ok())
        return prefixed(reserved, absl::StrCat(planPath, ": "));
    }
    for (const fb::Weight *w : *plan.weights()) {
      auto key = std::make_tuple(w->pool(), w->name()->str(), w->offset());
      const std::string &name = std::get<1>(key);
      auto it = placed.find(key);
      if (it != placed.end()) {
        weights.push_back(it->second);
        continue;
      }
      absl::StatusOr<const void *> data;
      if (w->synthetic()) {
        data = backend_->placeSyntheticWeight(id, w->pool(), syntheticInit(*w),
                                              weightNumElements(*w));
      } else {
        CP_ASSIGN_OR_RETURN(Checkpoint::Located located,
                            checkpoint->find(name));
        // verifyPlanWeights checked [offset, offset + nbytes) lies inside
        // the tensor: the plan's weight may be one expert of a stacked one.
        const uint8_t *bytes = located.file->data(*located.info) +
                               (w->offset() - located.info->offset);
        data = backend_->placeWeight(id, w->pool(), bytes,
                                     toCheckpointDType(w->dtype()),
                                     weightNumElements(*w));
      }
      if (!data.ok())
        return prefixed(data.status(),
                        absl::StrCat(planPath, ": weight '", name, "': "));
      placed[key] = *data;
      weights.push_back(*data);
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    backend_->unloadWeights(id);
    return status;
  }
  return weights;
}

absl::StatusOr<ModelId> Runtime::loadModel(const std::string &planPath,
                                           const LoadOptions &options) {
  auto model = std::make_unique<Model>();
  CP_ASSIGN_OR_RETURN(model->plan, PlanFile::load(planPath));
  const fb::Plan &plan = model->plan->plan();

  // A plan compiled with --synthetic reads no file: no checkpoint to open.
  std::string dir;
  std::unique_ptr<Checkpoint> checkpoint;
  if (planHasFileWeights(plan)) {
    dir = options.checkpointDir.empty() ? plan.checkpoint_dir()->str()
                                        : options.checkpointDir;
    if (!dir.empty() && dir[0] != '/' && !isDirectory(dir) &&
        isDirectory(parentDir(planPath) + "/" + dir))
      dir = parentDir(planPath) + "/" + dir;
    CP_ASSIGN_OR_RETURN(checkpoint, Checkpoint::open(dir));
  }
  absl::Status verified = checkpoint ? verifyPlanWeights(plan, *checkpoint)
                                     : verifySyntheticWeights(plan);
  if (!verified.ok())
    return prefixed(verified, absl::StrCat(planPath, ": "));

  ModelInfo &info = model->info;
  info.name = plan.model_name()->str();
  info.planPath = planPath;
  info.checkpointDir = dir;
  info.vocabSize = plan.vocab_size();
  info.hiddenSize = plan.hidden_size();
  info.maxPositionEmbeddings = plan.max_position_embeddings();
  if (plan.eos_token_ids())
    info.eosTokenIds.assign(plan.eos_token_ids()->begin(),
                            plan.eos_token_ids()->end());

  ModelId id = nextModel_++;
  CP_ASSIGN_OR_RETURN(std::vector<const void *> weights,
                      placeWeights(id, planPath, plan, checkpoint.get()));
  info.kvPoolWeightBytes = kvPoolArena().bytesUsed(id);
  info.weightsPoolWeightBytes = weightsPoolArena().bytesUsed(id);
  absl::StatusOr<std::unique_ptr<BackendModel>> backendModel =
      backend_->createModel(id, plan, std::move(weights), info.name);
  if (!backendModel.ok()) {
    backend_->unloadWeights(id);
    return backendModel.status();
  }
  model->backend = std::move(*backendModel);
  models_[id] = std::move(model);
  ++modelLoads_;
  return id;
}

absl::Status Runtime::unloadModel(ModelId model) {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  if (!m->live.empty())
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot unload model ", model, " (", m->info.name, "): it has ",
        m->live.size(), " live sequences; release them first"));
  models_.erase(model);
  backend_->unloadWeights(model);
  return absl::OkStatus();
}

absl::StatusOr<SequenceId> Runtime::startSequence(ModelId model) {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  SequenceId seq = nextSeq_++;
  seqs_[seq] = {model, 0};
  m->live.insert(seq);
  return seq;
}

absl::Status Runtime::release(SequenceId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
  Model *m = models_.at(it->second.model).get();
  m->backend->release(seq);
  m->live.erase(seq);
  seqs_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Runtime::sequenceLength(SequenceId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
  return it->second.length;
}

absl::Status Runtime::checkIds(const Model &m,
                               const std::vector<int32_t> &ids) const {
  for (int32_t id : ids)
    if (id < 0 || id >= m.info.vocabSize)
      return absl::InvalidArgumentError(
          absl::StrCat("prompt id ", id, " is outside the vocabulary (size ",
                       m.info.vocabSize, ")"));
  return absl::OkStatus();
}

absl::Status Runtime::reserve(Model &m, SequenceId seq, int64_t numTokens) {
  // RoPE and the checkpoint's training only cover max_position_embeddings.
  if (m.info.maxPositionEmbeddings > 0 &&
      numTokens > m.info.maxPositionEmbeddings)
    return absl::OutOfRangeError(absl::StrCat(
        "sequence of ", numTokens, " tokens exceeds ", m.info.name,
        "'s max_position_embeddings (", m.info.maxPositionEmbeddings, ")"));
  CP_RETURN_IF_ERROR(m.backend->reserve(seq, numTokens));
  peakPages_ = std::max(peakPages_, kvPagesInUse());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>>
Runtime::runStep(Model &m, const std::vector<SequenceId> &seqs,
                 const StepRows &rows) {
  std::vector<float> logits;
  CP_RETURN_IF_ERROR(m.backend->run(rows, seqs, &logits));
  return logits;
}

absl::StatusOr<std::vector<float>>
Runtime::prefill(SequenceId seq, const std::vector<int32_t> &ids) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
  Model &m = *models_.at(it->second.model);
  if (ids.empty())
    return absl::InvalidArgumentError("empty prompt: expects at least one id");
  CP_RETURN_IF_ERROR(checkIds(m, ids));
  int64_t start = it->second.length;
  CP_RETURN_IF_ERROR(reserve(m, seq, start + ids.size()));
  StepRows step;
  step.tokenIds = ids;
  step.rowSeq.assign(ids.size(), 0);
  for (size_t i = 0; i < ids.size(); ++i)
    step.rowPos.push_back(static_cast<int32_t>(start + i));
  CP_ASSIGN_OR_RETURN(std::vector<float> logits, runStep(m, {seq}, step));
  it->second.length += ids.size();
  return logits;
}

absl::StatusOr<std::vector<float>>
Runtime::decode(const std::vector<SequenceId> &seqs,
                const std::vector<int32_t> &ids) {
  if (seqs.empty() || seqs.size() != ids.size())
    return absl::InvalidArgumentError(
        absl::StrCat("decode expects one id per sequence and at least one "
                     "sequence but got ",
                     seqs.size(), " sequences and ", ids.size(), " ids"));
  Model *m = nullptr;
  std::set<SequenceId> distinct;
  for (SequenceId seq : seqs) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end())
      return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
    Model *sm = models_.at(it->second.model).get();
    if (m && sm != m)
      return absl::InvalidArgumentError(
          "decode expects sequences of one model in one step");
    m = sm;
    if (!distinct.insert(seq).second)
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", seq, " appears twice in one decode step"));
    if (it->second.length == 0)
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", seq, " has no prompt; prefill it first"));
  }
  CP_RETURN_IF_ERROR(checkIds(*m, ids));
  // A failure part-way leaves earlier sequences with one spare position,
  // which the next step uses anyway.
  for (SequenceId seq : seqs)
    CP_RETURN_IF_ERROR(reserve(*m, seq, seqs_[seq].length + 1));
  StepRows step;
  step.tokenIds = ids;
  for (size_t i = 0; i < seqs.size(); ++i) {
    step.rowSeq.push_back(static_cast<int32_t>(i));
    step.rowPos.push_back(static_cast<int32_t>(seqs_[seqs[i]].length));
  }
  CP_ASSIGN_OR_RETURN(std::vector<float> logits, runStep(*m, seqs, step));
  for (SequenceId seq : seqs)
    ++seqs_[seq].length;
  return logits;
}

absl::StatusOr<Runtime::Model *>
Runtime::prepareStep(const std::vector<SequenceId> &seqs,
                     const std::vector<std::vector<int32_t>> &chunks,
                     StepRows *rows) {
  if (seqs.empty() || seqs.size() != chunks.size())
    return absl::InvalidArgumentError(
        absl::StrCat("step expects one chunk per sequence and at least one "
                     "sequence but got ",
                     seqs.size(), " sequences and ", chunks.size(), " chunks"));
  Model *m = nullptr;
  std::set<SequenceId> distinct;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto it = seqs_.find(seqs[i]);
    if (it == seqs_.end())
      return absl::NotFoundError(absl::StrCat("unknown sequence id ", seqs[i]));
    Model *sm = models_.at(it->second.model).get();
    if (m && sm != m)
      return absl::InvalidArgumentError(
          "step expects sequences of one model in one step");
    m = sm;
    if (!distinct.insert(seqs[i]).second)
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", seqs[i], " appears twice in one step"));
    if (chunks[i].empty())
      return absl::InvalidArgumentError(
          absl::StrCat("step expects at least one id for sequence ", seqs[i]));
  }
  for (const std::vector<int32_t> &chunk : chunks)
    CP_RETURN_IF_ERROR(checkIds(*m, chunk));
  // As in decode, a failure part-way leaves earlier sequences with spare
  // positions that their next steps use.
  for (size_t i = 0; i < seqs.size(); ++i)
    CP_RETURN_IF_ERROR(
        reserve(*m, seqs[i], seqs_[seqs[i]].length + chunks[i].size()));
  for (size_t i = 0; i < seqs.size(); ++i) {
    int64_t start = seqs_[seqs[i]].length;
    for (size_t k = 0; k < chunks[i].size(); ++k) {
      rows->tokenIds.push_back(chunks[i][k]);
      rows->rowSeq.push_back(static_cast<int32_t>(i));
      rows->rowPos.push_back(static_cast<int32_t>(start + k));
    }
    // Only the last row of a chunk is sampled: the others need no LM head.
    rows->logitRows.push_back(static_cast<int32_t>(rows->tokenIds.size() - 1));
  }
  return m;
}

absl::StatusOr<std::vector<float>>
Runtime::step(const std::vector<SequenceId> &seqs,
              const std::vector<std::vector<int32_t>> &chunks) {
  StepRows step;
  CP_ASSIGN_OR_RETURN(Model * m, prepareStep(seqs, chunks, &step));
  CP_ASSIGN_OR_RETURN(std::vector<float> all, runStep(*m, seqs, step));
  for (size_t i = 0; i < seqs.size(); ++i)
    seqs_[seqs[i]].length += chunks[i].size();
  const int64_t V = m->info.vocabSize;
  const size_t T = step.tokenIds.size();
  if (all.size() == seqs.size() * size_t(V))
    return all; // the backend computed only the requested rows
  if (all.size() != T * size_t(V))
    return absl::InternalError(absl::StrCat(
        "step: the backend returned ", all.size(), " logits for ", T, " rows (",
        seqs.size(), " requested) of vocabulary ", V));
  std::vector<float> logits(seqs.size() * V);
  for (size_t i = 0; i < seqs.size(); ++i)
    std::copy(all.begin() + step.logitRows[i] * V,
              all.begin() + (step.logitRows[i] + 1) * V,
              logits.begin() + i * V);
  return logits;
}

absl::StatusOr<std::vector<int32_t>>
Runtime::stepGreedy(const std::vector<SequenceId> &seqs,
                    const std::vector<std::vector<int32_t>> &chunks) {
  StepRows step;
  CP_ASSIGN_OR_RETURN(Model * m, prepareStep(seqs, chunks, &step));
  std::vector<int32_t> ids;
  absl::Status st = m->backend->runGreedy(step, seqs, &ids);
  if (absl::IsUnimplemented(st)) {
    // No device argmax: logits to the host, the same argmax there.
    CP_ASSIGN_OR_RETURN(std::vector<float> all, runStep(*m, seqs, step));
    const int64_t V = m->info.vocabSize;
    const bool selected = all.size() == seqs.size() * size_t(V);
    if (!selected && all.size() != step.tokenIds.size() * size_t(V))
      return absl::InternalError(absl::StrCat(
          "step: the backend returned ", all.size(), " logits for ",
          step.tokenIds.size(), " rows of vocabulary ", V));
    ids.clear();
    for (size_t i = 0; i < seqs.size(); ++i) {
      size_t row = selected ? i : size_t(step.logitRows[i]);
      ids.push_back(
          static_cast<int32_t>(kernels::cpu::argmax(all.data() + row * V, V)));
    }
  } else {
    CP_RETURN_IF_ERROR(st);
    if (ids.size() != seqs.size())
      return absl::InternalError(
          absl::StrCat("greedy step: the backend returned ", ids.size(),
                       " ids for ", seqs.size(), " sequences"));
  }
  for (size_t i = 0; i < seqs.size(); ++i)
    seqs_[seqs[i]].length += chunks[i].size();
  return ids;
}

absl::StatusOr<GenerateResult>
Runtime::generate(ModelId model, const std::vector<int32_t> &prompt,
                  const GenerateOptions &options) {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  if (prompt.empty())
    return absl::InvalidArgumentError("empty prompt: expects at least one id");
  if (options.maxNewTokens < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens must be >= 0 but got ", options.maxNewTokens));
  CP_RETURN_IF_ERROR(checkIds(*m, prompt));
  CP_ASSIGN_OR_RETURN(SequenceId seq, startSequence(model));
  GenerateResult result;
  absl::Status status = [&]() -> absl::Status {
    const int64_t V = m->info.vocabSize;
    CP_ASSIGN_OR_RETURN(std::vector<float> logits, prefill(seq, prompt));
    if (options.wantPromptLogits)
      result.promptLogits = logits;
    const float *last = logits.data() + (prompt.size() - 1) * V;
    for (int64_t n = 0; n < options.maxNewTokens; ++n) {
      int32_t next = static_cast<int32_t>(kernels::cpu::argmax(last, V));
      result.generatedIds.push_back(next);
      if (options.stopAtEos && std::count(m->info.eosTokenIds.begin(),
                                          m->info.eosTokenIds.end(), next))
        break;
      if (n + 1 == options.maxNewTokens)
        break;
      CP_ASSIGN_OR_RETURN(logits, decode({seq}, {next}));
      last = logits.data();
    }
    return absl::OkStatus();
  }();
  CP_RETURN_IF_ERROR(release(seq));
  CP_RETURN_IF_ERROR(status);
  return result;
}

} // namespace crosspool::runtime
