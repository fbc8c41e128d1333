//===- CudaGoldenTest.cpp - CUDA backend vs Hugging Face goldens ----------===//
//
// Every bundled checkpoint's plan runs on the GPU through the Runtime's CUDA
// backend (both pools on one device, VMM KV pool, device-local channel
// hand-off):
// * fp32: prompt logits within 1e-4 of transformers' (max |diff| / max |HF|)
//   and all 24 greedy tokens identical;
// * bf16, the "bf16" set (checkpoints scaled like trained models, on which
//   transformers' own bf16 run meets this with a 1.5x margin): prompt logits
//   within 3e-2 of the fp32 golden, and greedy tokens identical up to the
//   first step whose top-1/top-2 logit margin is below 0.05;
// * bf16, the scaled-up "seen"/"unseen" sets: these amplify any rounding so
//   much that transformers' own bf16 run is up to 0.42 away from its fp32
//   logits (tools/make_goldens.py records it in golden_bf16.json): a routing
//   choice flipped by rounding shows as a spike at single prompt positions,
//   at any position, in transformers' bf16 run as in ours. There the test
//   asserts what separates a systematic error from such flips: the median
//   over prompt positions within 3e-2 (or 1.5 x what transformers' bf16 run
//   or fp32 math on bf16-rounded weights gets, for one-token prompts), and
//   the maximum within max(0.2, 1.5 x transformers' bf16 error). Their greedy
//   tokens are reported, not asserted.
// Per-step margins come from the golden when it has them, else from the CPU
// fp32 backend (which matches transformers to 1e-4 and token for token).
//
//===----------------------------------------------------------------------===//
#include "test/unit/cuda/CudaTestEnv.h"

#include "kernels/cpu/Linear.h"
#include "runtime/cuda/CudaExecutor.h"
#include "runtime/engine/Runtime.h"
#include "runtime/format/PlanFile.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdio>

using namespace crosspool;
using crosspool::runtime::Runtime;
using crosspool::runtime::RuntimeOptions;
namespace cudak = crosspool::kernels::cuda;
namespace tc = crosspool::test::cuda;

namespace {

const std::vector<std::string> kModels = {
    "mixtral_tiny", "qwen2_moe_tiny",    "qwen3_moe_tiny", "olmoe_tiny",
    "mixtral_wide", "qwen2_moe_sparse2", "qwen3_moe_wide", "olmoe_clip",
    "mixtral_bf16", "qwen2_moe_bf16",    "qwen3_moe_bf16", "olmoe_bf16"};

/// Checkpoints scaled like trained models (tools/make_goldens.py, set "bf16").
bool isTrainedScaled(const std::string &model) {
  return model.size() > 5 && model.compare(model.size() - 5, 5, "_bf16") == 0;
}

std::unique_ptr<Runtime> makeRuntime(cudak::DType dt,
                                     bool roundWeightsToBf16 = false) {
  RuntimeOptions o = tc::cudaOptions(dt);
  o.roundWeightsToBf16 = roundWeightsToBf16;
  o.kvChunks = 8;
  auto rt = Runtime::create(o);
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

class CudaGoldenFp32 : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGoldenFp32, LogitsAndGreedyTokensMatchTransformers) {
  CP_SKIP_WITHOUT_CUDA();
  const std::string model = GetParam();
  auto goldens = tc::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u)
      << "goldens of " << model << " in " << tc::modelsDir();
  auto rt = makeRuntime(cudak::DType::kF32);
  ASSERT_TRUE(rt);
  auto id = rt->loadModel(tc::planPath(model), tc::loadOptions(model));
  ASSERT_TRUE(id.ok()) << id.status();
  auto info = rt->modelInfo(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_GT((*info)->kvPoolWeightBytes, 0u);
  EXPECT_GT((*info)->weightsPoolWeightBytes, 0u);
  for (size_t j = 0; j < goldens.size(); ++j) {
    const tc::Golden &g = goldens[j];
    runtime::GenerateOptions opts;
    opts.maxNewTokens = int64_t(g.generatedIds.size());
    opts.wantPromptLogits = true;
    auto r = rt->generate(*id, g.promptIds, opts);
    ASSERT_TRUE(r.ok()) << r.status();
    double err = tc::maxRelativeError(r->promptLogits, g.logits);
    std::printf("[cuda fp32] %-18s prompt %zu (len %2zu): max rel logit "
                "error %.2e\n",
                model.c_str(), j, g.promptIds.size(), err);
    EXPECT_LE(err, 1e-4) << model << " prompt " << j;
    EXPECT_EQ(r->generatedIds, g.generatedIds) << model << " prompt " << j;
  }
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  EXPECT_EQ(tc::cudaBackend(*rt).kvChunkPool().numFree(),
            tc::cudaBackend(*rt).kvChunkPool().numChunks())
      << "every chunk goes back when the sequences end";
  ASSERT_TRUE(rt->unloadModel(*id).ok());
  EXPECT_EQ(rt->weightsPoolArena().totalBytes(), 0u);
  EXPECT_EQ(rt->kvPoolArena().totalBytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(AllCheckpoints, CudaGoldenFp32,
                         ::testing::ValuesIn(kModels),
                         [](const auto &info) { return info.param; });

/// Per greedy step of the CPU fp32 backend: top-1 minus top-2 logit.
std::vector<double> cpuStepMargins(const std::string &model,
                                   const std::vector<int32_t> &prompt,
                                   int steps, std::vector<int32_t> *tokens) {
  std::vector<double> margins;
  auto rt = runtime::Runtime::create({});
  if (!rt.ok())
    return margins;
  auto id = (*rt)->loadModel(tc::planPath(model), tc::loadOptions(model));
  if (!id.ok())
    return margins;
  auto seq = (*rt)->startSequence(*id);
  auto logits = (*rt)->prefill(*seq, prompt);
  const int64_t V = (*(*rt)->modelInfo(*id))->vocabSize;
  std::vector<float> last(logits->end() - V, logits->end());
  for (int n = 0; n < steps; ++n) {
    int32_t best = int32_t(kernels::cpu::argmax(last.data(), V));
    double second = -INFINITY;
    for (int64_t v = 0; v < V; ++v)
      if (v != best)
        second = std::max(second, double(last[v]));
    margins.push_back(double(last[best]) - second);
    tokens->push_back(best);
    auto next = (*rt)->decode({*seq}, {best});
    if (!next.ok())
      break;
    last = *next;
  }
  return margins;
}

class CudaGoldenBf16 : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGoldenBf16, WithinBf16ToleranceAndTokensUpToTheFirstNearTie) {
  CP_SKIP_WITHOUT_CUDA();
  const std::string model = GetParam();
  auto goldens = tc::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u);
  auto hf = tc::loadBf16Reference(model);
  ASSERT_EQ(hf.size(), 3u) << "golden_bf16 of " << model;
  const bool strict = isTrainedScaled(model);
  auto rt = makeRuntime(cudak::DType::kBF16);
  ASSERT_TRUE(rt);
  auto id = rt->loadModel(tc::planPath(model), tc::loadOptions(model));
  ASSERT_TRUE(id.ok()) << id.status();
  // Diagnostic reference: fp32 math on bf16-rounded weights (how much of the
  // error the weights' rounding alone causes).
  auto ref = makeRuntime(cudak::DType::kF32, /*roundWeightsToBf16=*/true);
  ASSERT_TRUE(ref);
  auto refId = ref->loadModel(tc::planPath(model), tc::loadOptions(model));
  ASSERT_TRUE(refId.ok()) << refId.status();
  for (size_t j = 0; j < goldens.size(); ++j) {
    const tc::Golden &g = goldens[j];
    std::vector<double> margins = g.top2Margins;
    if (margins.empty()) {
      std::vector<int32_t> cpuTokens;
      margins = cpuStepMargins(model, g.promptIds, int(g.generatedIds.size()),
                               &cpuTokens);
      ASSERT_EQ(cpuTokens, g.generatedIds) << "CPU oracle disagrees with HF";
    }
    ASSERT_EQ(margins.size(), g.generatedIds.size());
    size_t nearTie = margins.size();
    for (size_t i = 0; i < margins.size(); ++i)
      if (margins[i] < 0.05) {
        nearTie = i;
        break;
      }
    runtime::GenerateOptions opts;
    opts.maxNewTokens = int64_t(g.generatedIds.size());
    opts.wantPromptLogits = true;
    auto r = rt->generate(*id, g.promptIds, opts);
    ASSERT_TRUE(r.ok()) << r.status();
    double err = tc::maxRelativeError(r->promptLogits, g.logits);
    auto refRun = ref->generate(*refId, g.promptIds, opts);
    ASSERT_TRUE(refRun.ok()) << refRun.status();
    double refErr = tc::maxRelativeError(refRun->promptLogits, g.logits);
    // Prompt positions whose own error passes 3e-2 (one spike = a routing
    // flip at that token; all positions = a systematic error).
    std::string spikes;
    std::vector<double> perPosition;
    const size_t V = g.logits.size() / g.promptIds.size();
    double maxRef = 0;
    for (float v : g.logits)
      maxRef = std::max(maxRef, double(std::fabs(v)));
    for (size_t pos = 0; pos < g.promptIds.size(); ++pos) {
      double d = 0;
      for (size_t v = 0; v < V; ++v)
        d = std::max(d, std::fabs(double(r->promptLogits[pos * V + v]) -
                                  g.logits[pos * V + v]));
      perPosition.push_back(d / maxRef);
      if (d / maxRef > 3e-2)
        spikes += " " + std::to_string(pos);
    }
    std::sort(perPosition.begin(), perPosition.end());
    const size_t n = perPosition.size();
    const double median =
        n % 2 ? perPosition[n / 2]
              : 0.5 * (perPosition[n / 2 - 1] + perPosition[n / 2]);
    size_t diverge = g.generatedIds.size();
    for (size_t i = 0; i < g.generatedIds.size(); ++i)
      if (r->generatedIds[i] != g.generatedIds[i]) {
        diverge = i;
        break;
      }
    const double limit =
        strict ? 3e-2 : std::max(0.2, 1.5 * hf[j].maxRelErrorVsFp32);
    const double medianLimit =
        strict
            ? 3e-2
            : std::max(3e-2, 1.5 * std::max(hf[j].maxRelErrorVsFp32, refErr));
    auto step = [&](size_t s) {
      return s < g.generatedIds.size() ? std::to_string(s)
                                       : std::string("none");
    };
    std::printf(
        "[cuda bf16] %-18s prompt %zu (len %2zu): max rel logit error %.2e "
        "(limit %.2e; median over positions %.2e, limit %.2e; transformers "
        "bf16: %.2e; bf16 weights + fp32 math: "
        "%.2e; positions over 3e-2:%s), first step with HF margin < 0.05: "
        "%s, transformers bf16 diverges at: %s, first token divergence: %s\n",
        model.c_str(), j, g.promptIds.size(), err, limit, median, medianLimit,
        hf[j].maxRelErrorVsFp32, refErr,
        spikes.empty() ? " none" : spikes.c_str(), step(nearTie).c_str(),
        step(hf[j].firstDivergence).c_str(), step(diverge).c_str());
    EXPECT_LE(err, limit) << model << " prompt " << j;
    EXPECT_LE(median, medianLimit) << model << " prompt " << j;
    if (strict)
      EXPECT_GE(diverge, nearTie)
          << model << " prompt " << j << ": diverged at step " << diverge
          << " before the first near-tie at step " << nearTie;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCheckpoints, CudaGoldenBf16,
                         ::testing::ValuesIn(kModels),
                         [](const auto &info) { return info.param; });

// Three sequences prefilled separately, then greedy-decoded together (one
// step, three rows, three page tables): each must still follow its golden.
TEST(CudaBatchedDecode, ThreeSequencesInOneStepFollowTheirGoldens) {
  CP_SKIP_WITHOUT_CUDA();
  const std::string model = "qwen3_moe_tiny";
  auto goldens = tc::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u);
  auto rt = makeRuntime(cudak::DType::kF32);
  ASSERT_TRUE(rt);
  auto id = rt->loadModel(tc::planPath(model), tc::loadOptions(model));
  ASSERT_TRUE(id.ok()) << id.status();
  const int64_t V = (*rt->modelInfo(*id))->vocabSize;
  std::vector<runtime::SequenceId> seqs;
  std::vector<int32_t> next;
  for (const tc::Golden &g : goldens) {
    auto seq = rt->startSequence(*id);
    ASSERT_TRUE(seq.ok());
    auto logits = rt->prefill(*seq, g.promptIds);
    ASSERT_TRUE(logits.ok()) << logits.status();
    seqs.push_back(*seq);
    next.push_back(
        int32_t(kernels::cpu::argmax(logits->data() + logits->size() - V, V)));
  }
  std::vector<std::vector<int32_t>> got(3);
  for (size_t n = 0; n < goldens[0].generatedIds.size(); ++n) {
    for (size_t s = 0; s < 3; ++s)
      got[s].push_back(next[s]);
    auto logits = rt->decode(seqs, next);
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t s = 0; s < 3; ++s)
      next[s] = int32_t(kernels::cpu::argmax(logits->data() + s * V, V));
  }
  for (size_t s = 0; s < 3; ++s)
    EXPECT_EQ(got[s], goldens[s].generatedIds) << "sequence " << s;
  for (auto seq : seqs)
    ASSERT_TRUE(rt->release(seq).ok());
  EXPECT_EQ(rt->kvPagesInUse(), 0);
}

// A mixed step, as the serving engine builds it: decode rows of two running
// sequences first, then a third sequence's whole prompt. Launched eagerly,
// the executor attends the decode rows in a pass of their own
// (cudak::AttendRows); every sequence still follows its golden.
TEST(CudaMixedSteps, DecodeRowsBesideAPromptFollowTheirGoldens) {
  CP_SKIP_WITHOUT_CUDA();
  const std::string model = "qwen3_moe_tiny";
  auto goldens = tc::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u);
  RuntimeOptions o = tc::cudaOptions(cudak::DType::kF32);
  o.useGraphs = false;
  o.kvChunks = 8;
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(tc::planPath(model), tc::loadOptions(model));
  ASSERT_TRUE(id.ok()) << id.status();
  const int64_t V = (*(*rt)->modelInfo(*id))->vocabSize;
  std::vector<runtime::SequenceId> seqs;
  std::vector<std::vector<int32_t>> chunks(3), got(3);
  for (int s = 0; s < 3; ++s) {
    auto seq = (*rt)->startSequence(*id);
    ASSERT_TRUE(seq.ok());
    seqs.push_back(*seq);
  }
  for (int s = 0; s < 2; ++s) {
    auto logits = (*rt)->prefill(seqs[s], goldens[s].promptIds);
    ASSERT_TRUE(logits.ok()) << logits.status();
    chunks[s] = {
        int32_t(kernels::cpu::argmax(logits->data() + logits->size() - V, V))};
  }
  chunks[2] = goldens[2].promptIds;
  for (size_t n = 0; n < goldens[0].generatedIds.size(); ++n) {
    auto logits = (*rt)->step(seqs, chunks);
    ASSERT_TRUE(logits.ok()) << logits.status();
    if (n == 0) {
      const std::vector<float> &g = goldens[2].logits;
      std::vector<float> want(g.end() - V, g.end());
      std::vector<float> row(logits->begin() + 2 * V, logits->begin() + 3 * V);
      EXPECT_LE(tc::maxRelativeError(row, want), 1e-4)
          << "the prompt's last row, beside two decode rows";
    }
    for (int s = 0; s < 3; ++s) {
      if (n > 0 || s < 2)
        got[s].push_back(chunks[s][0]);
      chunks[s] = {int32_t(kernels::cpu::argmax(logits->data() + s * V, V))};
    }
  }
  got[2].push_back(chunks[2][0]);
  for (int s = 0; s < 3; ++s)
    EXPECT_EQ(got[s], goldens[s].generatedIds) << "sequence " << s;
  for (auto seq : seqs)
    ASSERT_TRUE((*rt)->release(seq).ok());
}

// Decode steps replayed from captured CUDA graphs give the same bits as the
// same steps launched one by one, and the graphs are really used.
TEST(CudaGraphs, ReplayedStepsMatchEagerSteps) {
  CP_SKIP_WITHOUT_CUDA();
  const std::string model = "olmoe_tiny";
  auto goldens = tc::loadGoldens(model);
  ASSERT_EQ(goldens.size(), 3u);
  std::vector<std::vector<float>> logits[2];
  int64_t launches[2] = {0, 0};
  for (int graphs = 0; graphs < 2; ++graphs) {
    RuntimeOptions o = tc::cudaOptions(cudak::DType::kBF16);
    o.useGraphs = graphs == 1;
    auto rt = Runtime::create(o);
    ASSERT_TRUE(rt.ok()) << rt.status();
    auto id = (*rt)->loadModel(tc::planPath(model), tc::loadOptions(model));
    ASSERT_TRUE(id.ok()) << id.status();
    std::vector<runtime::SequenceId> seqs;
    for (const tc::Golden &g : goldens) {
      auto seq = (*rt)->startSequence(*id);
      ASSERT_TRUE(seq.ok());
      ASSERT_TRUE((*rt)->prefill(*seq, g.promptIds).ok());
      seqs.push_back(*seq);
    }
    std::vector<int32_t> next = {5, 6, 7};
    for (int n = 0; n < 20; ++n) {
      auto l = (*rt)->decode(seqs, next);
      ASSERT_TRUE(l.ok()) << l.status();
      logits[graphs].push_back(*l);
      for (int s = 0; s < 3; ++s)
        next[s] = int32_t((next[s] * 31 + n) % 256);
    }
    launches[graphs] = tc::cudaBackend(**rt).graphLaunches();
  }
  EXPECT_EQ(launches[0], 0);
  EXPECT_EQ(launches[1], 3 + 20) << "every step is decode-sized";
  ASSERT_EQ(logits[0].size(), logits[1].size());
  for (size_t n = 0; n < logits[0].size(); ++n)
    EXPECT_EQ(logits[0][n], logits[1][n]) << "decode step " << n;
}

// The executor's modes change launches, not math: Add -> RmsNorm pairs as
// one addRmsNorm launch (setFuseAddRmsNormEnabled) and every pool on one
// stream (setOneStreamEnabled) give the same bits as two launches on a
// stream per pool, for every checkpoint's prompt logits and greedy decode,
// fp32 and bf16, eager and graph-replayed. Compiled plans fold two pairs
// and hand off two messages without a copy per layer.
TEST(CudaExecutorModes, SameBitsInEveryMode) {
  CP_SKIP_WITHOUT_CUDA();
  using runtime::cuda::CudaExecutor;
  struct Restore {
    bool fuse = CudaExecutor::fuseAddRmsNormEnabled();
    bool one = CudaExecutor::oneStreamEnabled();
    ~Restore() {
      CudaExecutor::setFuseAddRmsNormEnabled(fuse);
      CudaExecutor::setOneStreamEnabled(one);
    }
  } restore;
  for (const std::string &model : kModels)
    for (cudak::DType dt : {cudak::DType::kF32, cudak::DType::kBF16}) {
      SCOPED_TRACE(model + " " + cudak::dtypeName(dt));
      auto goldens = tc::loadGoldens(model);
      ASSERT_FALSE(goldens.empty());
      auto file = runtime::PlanFile::load(tc::planPath(model));
      ASSERT_TRUE(file.ok()) << file.status();
      const int64_t layers = int64_t((*file)->plan().kv_layers()->size());
      std::vector<std::vector<float>> out[4];
      for (int mode = 0; mode < 4; ++mode) {
        const bool fused = mode & 1, oneStream = mode & 2;
        SCOPED_TRACE(absl::StrCat("fused ", fused, " one stream ", oneStream));
        CudaExecutor::setFuseAddRmsNormEnabled(fused);
        CudaExecutor::setOneStreamEnabled(oneStream);
        auto rt = Runtime::create(tc::cudaOptions(dt));
        ASSERT_TRUE(rt.ok()) << rt.status();
        auto id = (*rt)->loadModel(tc::planPath(model), tc::loadOptions(model));
        ASSERT_TRUE(id.ok()) << id.status();
        const runtime::BackendCounters c = (*rt)->backendCounters();
        EXPECT_EQ(c.addNormFolds, fused ? 2 * layers : 0);
        EXPECT_EQ(c.zeroCopyRecvs, 2 * layers);
        auto seq = (*rt)->startSequence(*id);
        ASSERT_TRUE(seq.ok());
        auto l = (*rt)->prefill(*seq, goldens[0].promptIds);
        ASSERT_TRUE(l.ok()) << l.status();
        out[mode].push_back(*l);
        int32_t next = 3;
        for (int n = 0; n < 6; ++n) { // decode steps are graph replays
          auto d = (*rt)->decode({*seq}, {next});
          ASSERT_TRUE(d.ok()) << d.status();
          out[mode].push_back(*d);
          next = int32_t(std::max_element(d->begin(), d->end()) - d->begin());
        }
        ASSERT_EQ(out[mode].size(), out[0].size());
        for (size_t n = 0; n < out[0].size(); ++n)
          EXPECT_EQ(out[mode][n], out[0][n]) << "step " << n;
      }
    }
}

TEST(CudaBadRequests, ClearErrorsAndNothingLeaks) {
  CP_SKIP_WITHOUT_CUDA();
  auto rt = makeRuntime(cudak::DType::kF32);
  ASSERT_TRUE(rt);
  auto id =
      rt->loadModel(tc::planPath("olmoe_tiny"), tc::loadOptions("olmoe_tiny"));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::GenerateOptions opts;
  auto outside = rt->generate(*id, {3, 256, 4}, opts);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("256"), std::string::npos);
  EXPECT_FALSE(rt->generate(*id, {-1}, opts).ok());
  auto empty = rt->generate(*id, {}, opts);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  // max_position_embeddings is 512: a 513-token prompt is refused up front.
  auto tooLong = rt->generate(*id, std::vector<int32_t>(513, 7), opts);
  EXPECT_EQ(tooLong.status().code(), absl::StatusCode::kOutOfRange)
      << tooLong.status();
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  EXPECT_EQ(rt->loadModel("/nonexistent.cpplan").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(rt->unloadModel(99).code(), absl::StatusCode::kNotFound);
  auto seq = rt->startSequence(*id);
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(rt->decode({*seq}, {3}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(rt->unloadModel(*id).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(rt->release(*seq).ok());
  ASSERT_TRUE(rt->unloadModel(*id).ok());
}

} // namespace
