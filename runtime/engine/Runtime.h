//===- Runtime.h - Models, sequences and steps on one backend ---*- C++ -*-===//
//
// The runtime a tool or test drives:
//
//   CP_ASSIGN_OR_RETURN(auto rt, Runtime::create({}));        // shared KV pool
//   CP_ASSIGN_OR_RETURN(ModelId m, rt->loadModel("x.cpplan"));
//   GenerateOptions opts;
//   opts.maxNewTokens = 24;
//   opts.wantPromptLogits = true;
//   CP_ASSIGN_OR_RETURN(GenerateResult r, rt->generate(m, {3, 17, 42}, opts));
//   // r.generatedIds (24 ids), r.promptLogits ([3, vocab] row-major)
//
// or step by step: startSequence -> prefill(seq, prompt) -> decode({seq},
// {token}) ... -> release(seq). All models draw KV pages from ONE shared
// pool; attention-side weights (embedding, norms, attention, lm_head) live in
// the KV-pool arena, FFN weights in the weights-pool arena, both with
// per-model accounting.
//
// RuntimeOptions::device picks the backend (Backend.h): the CPU fp32
// reference (default) or one CUDA GPU holding both pools (fp32 or bf16, VMM
// KV pool; builds with CROSSPOOL_ENABLE_CUDA only). Everything above the
// backend (checks, sequences, accounting, generation) is the same code.
//
// Not thread-safe: call from one thread (steps of one model run on that
// model's executor workers or CUDA streams).
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_ENGINE_RUNTIME_H
#define CROSSPOOL_RUNTIME_ENGINE_RUNTIME_H

#include "runtime/engine/Backend.h"
#include "runtime/format/PlanFile.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crosspool::runtime {

enum class Device { kCpu, kCuda };
/// Weight and activation storage; math accumulates in fp32 either way.
enum class Precision { kFp32, kBf16 };

/// "cpu" / "cuda" and "fp32" / "bf16"; InvalidArgument naming the flag
/// otherwise.
absl::StatusOr<Device> parseDevice(const std::string &text);
absl::StatusOr<Precision> parsePrecision(const std::string &text);

struct RuntimeOptions {
  Device device = Device::kCpu;
  /// kBf16 needs Device::kCuda.
  Precision precision = Precision::kFp32;
  /// Bytes allowed per pool arena (in the precision's storage); 0 =
  /// unlimited.
  size_t kvPoolWeightBudget = 0;
  size_t weightsPoolWeightBudget = 0;

  /// CPU: the shared KV page pool, kvPages pages of kvPageBytes (multiple of
  /// 64).
  int32_t kvPages = 4096;
  size_t kvPageBytes = 4096;

  /// CUDA: device ordinal.
  int cudaDevice = 0;
  /// CUDA: physical KV chunks of the shared pool, each kvChunkBytes (0 = the
  /// device's recommended allocation granularity, 2 MiB on H100).
  int32_t kvChunks = 64;
  /// CUDA: chunks the pool may grow to with Runtime::growKvPool (each
  /// model reserves virtual addresses for that many); 0 = kvChunks.
  int32_t kvMaxChunks = 0;
  size_t kvChunkBytes = 0;
  /// CUDA: tokens per KV page (the unit of the kernels' page tables).
  int32_t tokensPerPage = 16;
  /// CUDA, fp32 only: weights rounded to bf16 values first. fp32 math on
  /// bf16 weights is the reference that separates weight rounding from
  /// activation rounding when judging bf16 mode.
  bool roundWeightsToBf16 = false;
  /// CUDA: replay decode-sized steps from captured CUDA graphs.
  bool useGraphs = true;
};

struct LoadOptions {
  /// When set, replaces the plan's checkpoint_dir.
  std::string checkpointDir;
};

struct GenerateOptions {
  int64_t maxNewTokens = 16;
  /// Stop after the first generated eos id (the eos id is included).
  bool stopAtEos = false;
  /// Return the logits of every prompt position.
  bool wantPromptLogits = false;
};

struct GenerateResult {
  std::vector<int32_t> generatedIds;
  /// [prompt_len, vocab] row-major; empty unless wantPromptLogits.
  std::vector<float> promptLogits;
};

/// A loaded model's facts and pool accounting.
struct ModelInfo {
  std::string name;
  std::string planPath;
  std::string checkpointDir;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  std::vector<int64_t> eosTokenIds;
  int64_t maxPositionEmbeddings = 0; ///< the plan's; 0 when unknown
  size_t kvPoolWeightBytes = 0;      ///< bytes in the KV-pool arena
  size_t weightsPoolWeightBytes = 0; ///< bytes in the weights-pool arena
};

class Runtime {
public:
  /// InvalidArgument for a bad KV geometry or bf16 on the CPU;
  /// FailedPrecondition for cuda without a device or in a build without CUDA.
  static absl::StatusOr<std::unique_ptr<Runtime>>
  create(const RuntimeOptions &options = {});
  ~Runtime();
  Runtime(const Runtime &) = delete;
  Runtime &operator=(const Runtime &) = delete;

  /// PlanFile::load -> Checkpoint::open(checkpoint_dir) -> verifyPlanWeights
  /// -> weights into the pool arenas -> the backend's KV storage and
  /// executor. Nothing
  /// stays allocated on failure. A relative checkpoint_dir is tried as given,
  /// then relative to the plan file's directory.
  absl::StatusOr<ModelId> loadModel(const std::string &planPath,
                                    const LoadOptions &options = {});
  /// Frees the model's weights and KV. FailedPrecondition while it has live
  /// sequences; NotFound for an unknown id.
  absl::Status unloadModel(ModelId model);
  absl::StatusOr<const ModelInfo *> modelInfo(ModelId model) const;

  /// A new empty sequence of `model` (no KV pages yet).
  absl::StatusOr<SequenceId> startSequence(ModelId model);
  /// Appends `ids` to the sequence in one step; returns their logits
  /// [ids.size(), vocab]. Errors (nothing changes): empty prompt, an id
  /// outside the vocabulary, KV pool exhausted (ResourceExhausted).
  absl::StatusOr<std::vector<float>> prefill(SequenceId seq,
                                             const std::vector<int32_t> &ids);
  /// One step appending ids[i] to seqs[i] (all of one model, distinct);
  /// returns logits [seqs.size(), vocab]. Same errors as prefill.
  absl::StatusOr<std::vector<float>> decode(const std::vector<SequenceId> &seqs,
                                            const std::vector<int32_t> &ids);
  /// One step of one model that appends chunks[i] (one or more ids) to
  /// seqs[i] (distinct sequences): prefill chunks of new or preempted
  /// sequences and decode tokens of running ones batched in one executor
  /// run. Returns the logits of the LAST row of every chunk,
  /// [seqs.size(), vocab]. Same errors as decode (an empty chunk is one);
  /// a sequence may have length 0 (its first chunk is its prompt's start).
  absl::StatusOr<std::vector<float>>
  step(const std::vector<SequenceId> &seqs,
       const std::vector<std::vector<int32_t>> &chunks);
  /// As step, but returns only the greedy id of every chunk's last row
  /// (kernels::cpu::argmax of its logits, as sampling with temperature 0):
  /// on CUDA the argmax runs on the device and no logits reach the host.
  absl::StatusOr<std::vector<int32_t>>
  stepGreedy(const std::vector<SequenceId> &seqs,
             const std::vector<std::vector<int32_t>> &chunks);
  /// Returns the sequence's KV pages to the shared pool.
  absl::Status release(SequenceId seq);
  /// Tokens the sequence holds (prompt + appended).
  absl::StatusOr<int64_t> sequenceLength(SequenceId seq) const;

  /// Greedy generation on a fresh sequence (released at the end, also on
  /// error): prefill the prompt, then argmax / decode until maxNewTokens ids
  /// (or the first eos id when stopAtEos).
  absl::StatusOr<GenerateResult> generate(ModelId model,
                                          const std::vector<int32_t> &prompt,
                                          const GenerateOptions &options);

  /// KV pool accounting (shared by all models) in the backend's pages
  /// (Backend.h). On CUDA, where a model's page size follows its geometry,
  /// the total counts pages of the loaded model with the largest pages
  /// (exact when all loaded models share a page size).
  int32_t kvPagesTotal() const {
    return static_cast<int32_t>(backend_->kvPagesTotal());
  }
  int32_t kvPagesInUse() const;
  int32_t kvPagesPeak() const { return peakPages_; }
  size_t kvPageBytes() const { return backend_->kvPageBytes(); }
  /// KV pages held by one model now (0 for an unknown id).
  int64_t kvPagesInUse(ModelId model) const;
  /// KV pages a sequence of `model` holding `numTokens` tokens occupies (the
  /// sum over its KV layers of ceil(numTokens / tokensPerPage)); lets a
  /// scheduler admit against a page budget before touching the pool. 0 for
  /// an unknown model.
  int64_t kvPagesFor(ModelId model, int64_t numTokens) const;
  /// KV pages one sequence holds now (0 for an unknown id).
  int64_t kvPagesHeld(SequenceId seq) const;
  /// The pool's physical chunks (Backend.h: the allocation grain; a CUDA
  /// chunk holds pages of one model at a time; CPU: one page per chunk).
  int64_t kvChunksTotal() const { return backend_->kvChunksTotal(); }
  size_t kvChunkBytes() const { return backend_->kvChunkBytes(); }
  int64_t kvChunksInUse() const;
  /// Chunks one model holds now, its pages per chunk, the bytes of one of
  /// its pages (0 / 0 / 0 for an unknown id).
  int64_t kvChunksInUse(ModelId model) const;
  int64_t kvPagesPerChunk(ModelId model) const;
  size_t kvPageBytes(ModelId model) const;
  /// Grows the KV pool to `chunks` chunks (Backend::growKvPool).
  absl::Status growKvPool(int64_t chunks) {
    return backend_->growKvPool(chunks);
  }
  /// Free and total device bytes (Unimplemented on the CPU).
  absl::StatusOr<std::pair<size_t, size_t>> deviceMemory() const {
    return backend_->deviceMemory();
  }
  /// The backend's cumulative host-side costs (KV chunk map/unmap, graph
  /// captures, the split of step time; zeros on the CPU).
  BackendCounters backendCounters() const { return backend_->counters(); }
  /// Successful loadModel calls over the Runtime's life (tools show they
  /// load each model once).
  int64_t modelLoads() const { return modelLoads_; }
  const PoolArena &kvPoolArena() const { return backend_->arena(plan::Pool::KV); }
  const PoolArena &weightsPoolArena() const {
    return backend_->arena(plan::Pool::Weights);
  }
  Device device() const { return options_.device; }
  Precision precision() const { return options_.precision; }
  /// The backend (tests and tools reach backend-specific state through it,
  /// e.g. cuda::CudaBackend's chunk pool).
  const Backend &backend() const { return *backend_; }

private:
  struct Model;
  struct Sequence {
    ModelId model;
    int64_t length = 0;
  };
  Runtime() = default;
  absl::StatusOr<Model *> findModel(ModelId model) const;
  absl::Status checkIds(const Model &m, const std::vector<int32_t> &ids) const;
  absl::Status reserve(Model &m, SequenceId seq, int64_t numTokens);
  /// Every plan weight of model `id` into its pool, from the checkpoint
  /// (null when the plan has no file weights) or generated when synthetic;
  /// a tied weight named twice in one pool is placed once. One pointer per
  /// plan weight. On failure the model's weights are unloaded.
  absl::StatusOr<std::vector<const void *>>
  placeWeights(ModelId id, const std::string &planPath, const plan::Plan &plan,
               const Checkpoint *checkpoint);
  absl::StatusOr<std::vector<float>>
  runStep(Model &m, const std::vector<SequenceId> &seqs, const StepRows &rows);
  /// step()'s checks and KV reservation; fills the rows (logitRows: the last
  /// row of every chunk) and returns the model.
  absl::StatusOr<Model *>
  prepareStep(const std::vector<SequenceId> &seqs,
              const std::vector<std::vector<int32_t>> &chunks, StepRows *rows);

  RuntimeOptions options_;
  std::unique_ptr<Backend> backend_;
  std::map<ModelId, std::unique_ptr<Model>> models_;
  std::map<SequenceId, Sequence> seqs_;
  ModelId nextModel_ = 0;
  SequenceId nextSeq_ = 0;
  int32_t peakPages_ = 0;
  int64_t modelLoads_ = 0;
};

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_ENGINE_RUNTIME_H
