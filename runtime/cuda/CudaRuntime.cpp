//===- CudaRuntime.cpp - Models, sequences and steps on one GPU -----------===//
#include "runtime/cuda/CudaRuntime.h"

#include "kernels/cpu/Linear.h"
#include "kernels/cuda/CudaCheck.h"
#include "runtime/base/Status.h"
#include "runtime/checkpoint/Safetensors.h"
#include "runtime/format/VerifyWeights.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <sys/stat.h>

namespace crosspool::runtime::cuda {

namespace fb = crosspool::plan;
namespace cudak = crosspool::kernels::cuda;

struct CudaRuntime::Model {
  ModelInfo info;
  std::unique_ptr<PlanFile> plan;
  std::unique_ptr<VirtualKvSpace> kv;
  /// Declared last: destroyed (streams drained) before the KV space.
  std::unique_ptr<CudaExecutor> executor;
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

absl::StatusOr<cudak::DType> parsePrecision(const std::string &text) {
  if (text == "fp32")
    return cudak::DType::kF32;
  if (text == "bf16")
    return cudak::DType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("--precision: expects fp32 or bf16 but got '", text, "'"));
}

bool cudaDeviceAvailable() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

absl::StatusOr<std::unique_ptr<CudaRuntime>>
CudaRuntime::create(const CudaRuntimeOptions &options) {
  if (!cudaDeviceAvailable())
    return absl::FailedPreconditionError(
        "--device cuda: no CUDA device is available");
  if (options.tokensPerPage <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV tokens per page must be > 0 but got ", options.tokensPerPage));
  std::unique_ptr<CudaRuntime> rt(new CudaRuntime());
  rt->options_ = options;
  CP_ASSIGN_OR_RETURN(
      rt->chunks_, PhysicalChunkPool::create(options.device, options.kvChunks,
                                             options.kvChunkBytes));
  rt->kvArena_ = std::make_unique<DeviceWeightArena>(options.kvPoolWeightBudget,
                                                     "KV pool weights");
  rt->weightsArena_ = std::make_unique<DeviceWeightArena>(
      options.weightsPoolWeightBudget, "weights pool weights");
  return rt;
}

CudaRuntime::~CudaRuntime() {
  // Executors and KV spaces before the arenas and the chunk pool.
  models_.clear();
}

absl::StatusOr<CudaRuntime::Model *>
CudaRuntime::findModel(ModelId model) const {
  auto it = models_.find(model);
  if (it == models_.end())
    return absl::NotFoundError(absl::StrCat("unknown model id ", model));
  return it->second.get();
}

absl::StatusOr<const ModelInfo *> CudaRuntime::modelInfo(ModelId model) const {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  return &m->info;
}

int64_t CudaRuntime::kvPagesInUse() const {
  int64_t n = 0;
  for (const auto &entry : models_)
    n += entry.second->kv->pagesInUse();
  return n;
}

int64_t CudaRuntime::kvPagesInUse(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second->kv->pagesInUse();
}

int64_t CudaRuntime::graphLaunches() const {
  int64_t n = 0;
  for (const auto &entry : models_)
    n += entry.second->executor->graphLaunches();
  return n;
}

const VirtualKvSpace *CudaRuntime::kvSpace(ModelId model) const {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : it->second->kv.get();
}

absl::StatusOr<ModelId> CudaRuntime::loadModel(const std::string &planPath,
                                               const LoadOptions &options) {
  auto model = std::make_unique<Model>();
  CP_ASSIGN_OR_RETURN(model->plan, PlanFile::load(planPath));
  const fb::Plan &plan = model->plan->plan();
  std::string dir = options.checkpointDir.empty() ? plan.checkpoint_dir()->str()
                                                  : options.checkpointDir;
  if (!dir.empty() && dir[0] != '/' && !isDirectory(dir) &&
      isDirectory(parentDir(planPath) + "/" + dir))
    dir = parentDir(planPath) + "/" + dir;
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint,
                      Checkpoint::open(dir));
  absl::Status verified = verifyPlanWeights(plan, *checkpoint);
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
  auto unloadWeights = [&] {
    kvArena_->unload(id);
    weightsArena_->unload(id);
  };
  std::map<std::pair<int, std::string>, const void *> placed;
  std::vector<const void *> weights;
  for (const fb::Weight *w : *plan.weights()) {
    auto key = std::make_pair(static_cast<int>(w->pool()), w->name()->str());
    auto it = placed.find(key);
    if (it != placed.end()) {
      weights.push_back(it->second);
      continue;
    }
    absl::StatusOr<Checkpoint::Located> located = checkpoint->find(key.second);
    if (!located.ok()) {
      unloadWeights();
      return located.status();
    }
    DeviceWeightArena &arena =
        w->pool() == fb::Pool::KV ? *kvArena_ : *weightsArena_;
    absl::StatusOr<void *> data = arena.upload(
        id, located->file->data(*located->info), toCheckpointDType(w->dtype()),
        located->info->numElements(), options_.precision,
        options_.roundWeightsToBf16);
    if (!data.ok()) {
      unloadWeights();
      return prefixed(data.status(),
                      absl::StrCat(planPath, ": weight '", key.second, "': "));
    }
    placed[key] = *data;
    weights.push_back(*data);
  }
  info.kvPoolWeightBytes = kvArena_->bytesUsed(id);
  info.weightsPoolWeightBytes = weightsArena_->bytesUsed(id);

  std::vector<KvLayerShape> layers;
  for (const fb::KvLayer *l : *plan.kv_layers())
    layers.push_back({l->num_kv_heads(), l->head_dim()});
  absl::StatusOr<std::unique_ptr<VirtualKvSpace>> kv = VirtualKvSpace::create(
      *chunks_, layers, options_.tokensPerPage, options_.precision, info.name);
  if (!kv.ok()) {
    unloadWeights();
    return kv.status();
  }
  model->kv = std::move(*kv);
  std::vector<cudak::KvCacheView> views;
  for (int l = 0; l < model->kv->numLayers(); ++l)
    views.push_back(model->kv->layerView(l));
  absl::StatusOr<std::unique_ptr<CudaExecutor>> executor =
      CudaExecutor::create(plan, std::move(weights), std::move(views),
                           options_.precision, info.name, options_.useGraphs);
  if (!executor.ok()) {
    model.reset();
    unloadWeights();
    return executor.status();
  }
  model->executor = std::move(*executor);
  models_[id] = std::move(model);
  return id;
}

absl::Status CudaRuntime::unloadModel(ModelId model) {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  if (!m->live.empty())
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot unload model ", model, " (", m->info.name, "): it has ",
        m->live.size(), " live sequences; release them first"));
  models_.erase(model);
  kvArena_->unload(model);
  weightsArena_->unload(model);
  return absl::OkStatus();
}

absl::StatusOr<SequenceId> CudaRuntime::startSequence(ModelId model) {
  CP_ASSIGN_OR_RETURN(Model * m, findModel(model));
  SequenceId seq = nextSeq_++;
  seqs_[seq] = {model, 0};
  m->live.insert(seq);
  return seq;
}

absl::Status CudaRuntime::release(SequenceId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
  Model *m = models_.at(it->second.model).get();
  m->kv->release(seq);
  m->live.erase(seq);
  seqs_.erase(it);
  return absl::OkStatus();
}

absl::Status CudaRuntime::checkIds(const Model &m,
                                   const std::vector<int32_t> &ids) const {
  for (int32_t id : ids)
    if (id < 0 || id >= m.info.vocabSize)
      return absl::InvalidArgumentError(
          absl::StrCat("prompt id ", id, " is outside the vocabulary (size ",
                       m.info.vocabSize, ")"));
  return absl::OkStatus();
}

absl::Status CudaRuntime::reserve(Model &m, SequenceId seq, int64_t numTokens) {
  // As the CPU runtime: RoPE and training only cover max_position_embeddings.
  if (m.info.maxPositionEmbeddings > 0 &&
      numTokens > m.info.maxPositionEmbeddings)
    return absl::OutOfRangeError(absl::StrCat(
        "sequence of ", numTokens, " tokens exceeds ", m.info.name,
        "'s max_position_embeddings (", m.info.maxPositionEmbeddings, ")"));
  return m.kv->reserve(seq, numTokens);
}

absl::StatusOr<std::vector<float>>
CudaRuntime::runStep(Model &m, const std::vector<SequenceId> &seqs,
                     CudaStep &step) {
  step.pageTables.assign(m.kv->numLayers(), {});
  for (int l = 0; l < m.kv->numLayers(); ++l)
    for (SequenceId s : seqs)
      step.pageTables[l].push_back(m.kv->pageTable(s, l));
  std::vector<float> logits;
  CP_RETURN_IF_ERROR(m.executor->run(step, &logits));
  return logits;
}

absl::StatusOr<std::vector<float>>
CudaRuntime::prefill(SequenceId seq, const std::vector<int32_t> &ids) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    return absl::NotFoundError(absl::StrCat("unknown sequence id ", seq));
  Model &m = *models_.at(it->second.model);
  if (ids.empty())
    return absl::InvalidArgumentError("empty prompt: expects at least one id");
  CP_RETURN_IF_ERROR(checkIds(m, ids));
  int64_t start = it->second.length;
  CP_RETURN_IF_ERROR(reserve(m, seq, start + int64_t(ids.size())));
  CudaStep step;
  step.tokenIds = ids;
  step.rowSeq.assign(ids.size(), 0);
  for (size_t i = 0; i < ids.size(); ++i)
    step.rowPos.push_back(static_cast<int32_t>(start + i));
  CP_ASSIGN_OR_RETURN(std::vector<float> logits, runStep(m, {seq}, step));
  it->second.length += ids.size();
  return logits;
}

absl::StatusOr<std::vector<float>>
CudaRuntime::decode(const std::vector<SequenceId> &seqs,
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
  for (SequenceId seq : seqs)
    CP_RETURN_IF_ERROR(reserve(*m, seq, seqs_[seq].length + 1));
  CudaStep step;
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

absl::StatusOr<GenerateResult>
CudaRuntime::generate(ModelId model, const std::vector<int32_t> &prompt,
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

} // namespace crosspool::runtime::cuda
