//===- EngineTest.cpp - Runtime: load plans, share KV pages, generate -----===//
#include "runtime/engine/Runtime.h"
#include "runtime/exec/TaskDecode.h"
#include "runtime/format/PlanFile.h"

#include "test/e2e/Goldens.h"
#include "test/unit/runtime/TinyModel.h"

#include "nlohmann/json.hpp"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CROSSPOOL_COMPILE_BIN
#define CROSSPOOL_COMPILE_BIN ""
#endif

namespace crosspool::runtime {
namespace {

using crosspool::testing::TinyModel;
using crosspool::testing::TPlan;
using ::testing::HasSubstr;

std::string makeTempDir(const std::string &tag) {
  std::string dir = ::testing::TempDir() + "/engine_test_" + tag + "_" +
                    std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

/// Writes the model's checkpoint and plan under a fresh directory; returns the
/// plan path.
std::string writeTinyModel(const TinyModel &model, const std::string &tag,
                           TPlan *planOut = nullptr) {
  std::string dir = makeTempDir(tag);
  TPlan plan = model.writeCheckpoint(dir);
  std::string path = dir + "/tiny.cpplan";
  writeFile(path, plan.serialize());
  if (planOut)
    *planOut = plan;
  return path;
}

void expectLogitsNear(const std::vector<float> &got,
                      const std::vector<double> &want, size_t wantOffset,
                      size_t n, const std::string &what) {
  ASSERT_GE(got.size(), n) << what;
  for (size_t k = 0; k < n; ++k)
    EXPECT_NEAR(got[k], want[wantOffset + k],
                1e-4 * std::max(1.0, std::fabs(want[wantOffset + k])))
        << what << " element " << k;
}

std::vector<double> referenceLastRow(const TinyModel &m,
                                     const std::vector<int32_t> &tokens) {
  std::vector<double> all = m.reference(tokens);
  return std::vector<double>(all.end() - TinyModel::V, all.end());
}

TEST(EngineTest, GenerateMatchesNaiveReferenceAndAccountsWeights) {
  TinyModel model(21);
  std::string path = writeTinyModel(model, "gen");
  auto rt = Runtime::create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto id = (*rt)->loadModel(path);
  ASSERT_TRUE(id.ok()) << id.status();

  std::vector<int32_t> prompt = {4, 9, 1, 14};
  GenerateOptions opts;
  opts.maxNewTokens = 6;
  opts.wantPromptLogits = true;
  auto result = (*rt)->generate(*id, prompt, opts);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->generatedIds, model.referenceGenerate(prompt, 6));
  std::vector<double> want = model.reference(prompt);
  ASSERT_EQ(result->promptLogits.size(), want.size());
  expectLogitsNear(result->promptLogits, want, 0, want.size(), "prompt");
  EXPECT_EQ((*rt)->kvPagesInUse(), 0) << "generate releases its sequence";

  size_t kvBytes = 0, ffnBytes = 0;
  for (const auto &t : model.tensors)
    (t.pool == crosspool::plan::Pool::KV ? kvBytes : ffnBytes) +=
        t.data.size() * 4;
  auto info = (*rt)->modelInfo(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info)->kvPoolWeightBytes, kvBytes);
  EXPECT_EQ((*info)->weightsPoolWeightBytes, ffnBytes);
  EXPECT_EQ((*info)->vocabSize, TinyModel::V);
  EXPECT_EQ((*rt)->kvPoolArena().totalBytes(), kvBytes);
  EXPECT_EQ((*rt)->weightsPoolArena().totalBytes(), ffnBytes);

  ASSERT_TRUE((*rt)->unloadModel(*id).ok());
  EXPECT_EQ((*rt)->kvPoolArena().totalBytes(), 0u);
  EXPECT_EQ((*rt)->weightsPoolArena().totalBytes(), 0u);
  EXPECT_EQ((*rt)->unloadModel(*id).code(), absl::StatusCode::kNotFound);
}

TEST(EngineTest, StopAtEosIsOptional) {
  TinyModel model(22);
  std::string path = writeTinyModel(model, "eos");
  auto rt = std::move(Runtime::create({}).value());
  ModelId id = rt->loadModel(path).value();
  // Find a prompt whose greedy continuation contains eos (id 2) early.
  for (int32_t a = 0; a < TinyModel::V; ++a) {
    std::vector<int32_t> ref = model.referenceGenerate({a}, 8);
    auto eos = std::find(ref.begin(), ref.end(), 2);
    if (eos == ref.end() || eos == ref.end() - 1)
      continue;
    GenerateOptions opts;
    opts.maxNewTokens = 8;
    EXPECT_EQ(rt->generate(id, {a}, opts)->generatedIds, ref);
    opts.stopAtEos = true;
    EXPECT_EQ(rt->generate(id, {a}, opts)->generatedIds,
              std::vector<int32_t>(ref.begin(), eos + 1));
    return;
  }
  GTEST_SKIP() << "no prompt of this model generates eos early";
}

TEST(EngineTest, TwoModelsShareOnePagePool) {
  TinyModel a(31), b(32);
  std::string pa = writeTinyModel(a, "share_a"),
              pb = writeTinyModel(b, "share_b");
  // 8 pages of 64 bytes = 2 tokens of one layer each; 5 tokens of a 2-layer
  // model take 3 pages per layer = 6 pages.
  RuntimeOptions options;
  options.kvPages = 8;
  options.kvPageBytes = 64;
  auto rt = std::move(Runtime::create(options).value());
  ModelId ma = rt->loadModel(pa).value(), mb = rt->loadModel(pb).value();
  std::vector<int32_t> prompt = {7, 3, 12, 5, 1};

  SequenceId sa = rt->startSequence(ma).value();
  auto la = rt->prefill(sa, prompt);
  ASSERT_TRUE(la.ok()) << la.status();
  expectLogitsNear(*la, a.reference(prompt), 0, prompt.size() * TinyModel::V,
                   "model a");
  EXPECT_EQ(rt->kvPagesInUse(), 6);
  EXPECT_EQ(rt->kvPagesInUse(ma), 6);

  SequenceId sb = rt->startSequence(mb).value();
  auto lb = rt->prefill(sb, prompt);
  ASSERT_FALSE(lb.ok());
  EXPECT_EQ(lb.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(lb.status().message()),
              HasSubstr("KV pool exhausted"));
  EXPECT_EQ(rt->kvPagesInUse(), 6) << "a failed reservation takes nothing";
  EXPECT_EQ(rt->sequenceLength(sb).value(), 0);

  // Model a's pages go back to the shared pool; model b gets them.
  ASSERT_TRUE(rt->release(sa).ok());
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  lb = rt->prefill(sb, prompt);
  ASSERT_TRUE(lb.ok()) << lb.status();
  expectLogitsNear(*lb, b.reference(prompt), 0, prompt.size() * TinyModel::V,
                   "model b on reused pages");
  EXPECT_EQ(rt->kvPagesInUse(mb), 6);
  EXPECT_EQ(rt->kvPagesInUse(ma), 0);

  // Decoding model b past 6 tokens needs 2 more pages (8 in all): fits.
  std::vector<int32_t> tokens = prompt;
  for (int32_t next : {9, 0}) {
    tokens.push_back(next);
    auto l = rt->decode({sb}, {next});
    ASSERT_TRUE(l.ok()) << l.status();
    expectLogitsNear(*l, referenceLastRow(b, tokens), 0, TinyModel::V,
                     "model b decode");
  }
  EXPECT_EQ(rt->kvPagesPeak(), 8);

  // And back: model a runs correctly on the pages model b held.
  ASSERT_TRUE(rt->release(sb).ok());
  SequenceId sa2 = rt->startSequence(ma).value();
  auto la2 = rt->prefill(sa2, tokens);
  ASSERT_TRUE(la2.ok()) << la2.status();
  expectLogitsNear(*la2, a.reference(tokens), 0, tokens.size() * TinyModel::V,
                   "model a on reused pages");
  ASSERT_TRUE(rt->release(sa2).ok());
}

TEST(EngineTest, InterleavedAndBatchedDecodeMatchReference) {
  TinyModel a(41), b(42);
  std::string pa = writeTinyModel(a, "inter_a"),
              pb = writeTinyModel(b, "inter_b");
  auto rt = std::move(Runtime::create({}).value());
  ModelId ma = rt->loadModel(pa).value(), mb = rt->loadModel(pb).value();
  std::vector<int32_t> ta = {1, 2, 3}, ta2 = {15}, tb = {8, 6};
  SequenceId sa = rt->startSequence(ma).value();
  SequenceId sa2 = rt->startSequence(ma).value();
  SequenceId sb = rt->startSequence(mb).value();
  ASSERT_TRUE(rt->prefill(sa, ta).ok());
  ASSERT_TRUE(rt->prefill(sb, tb).ok());
  ASSERT_TRUE(rt->prefill(sa2, ta2).ok());
  for (int round = 0; round < 4; ++round) {
    int32_t x = (round * 5 + 1) % TinyModel::V,
            y = (round * 3 + 2) % TinyModel::V;
    // Two sequences of model a in one step, then model b.
    ta.push_back(x);
    ta2.push_back(y);
    auto l = rt->decode({sa2, sa}, {y, x});
    ASSERT_TRUE(l.ok()) << l.status();
    expectLogitsNear(*l, referenceLastRow(a, ta2), 0, TinyModel::V, "a2");
    std::vector<float> second(l->begin() + TinyModel::V, l->end());
    expectLogitsNear(second, referenceLastRow(a, ta), 0, TinyModel::V, "a");
    tb.push_back(x);
    l = rt->decode({sb}, {x});
    ASSERT_TRUE(l.ok()) << l.status();
    expectLogitsNear(*l, referenceLastRow(b, tb), 0, TinyModel::V, "b");
  }
  EXPECT_EQ(rt->sequenceLength(sa).value(), 7);
  EXPECT_EQ(rt->unloadModel(ma).code(), absl::StatusCode::kFailedPrecondition);
  for (SequenceId s : {sa, sa2, sb})
    ASSERT_TRUE(rt->release(s).ok());
  EXPECT_TRUE(rt->unloadModel(ma).ok());
}

TEST(EngineTest, KvExhaustedInGenerateIsAClearError) {
  TinyModel model(51);
  std::string path = writeTinyModel(model, "exhaust");
  RuntimeOptions options;
  options.kvPages = 4;
  options.kvPageBytes = 64;
  auto rt = std::move(Runtime::create(options).value());
  ModelId id = rt->loadModel(path).value();
  GenerateOptions opts;
  opts.maxNewTokens = 10; // 4 pages hold 4 tokens of 2 layers
  auto r = rt->generate(id, {1, 2}, opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("KV pool exhausted: sequence"));
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  // Still usable within the budget.
  opts.maxNewTokens = 3;
  auto ok = rt->generate(id, {1, 2}, opts);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->generatedIds, model.referenceGenerate({1, 2}, 3));
}

TEST(EngineTest, BadRequestsAreRejected) {
  TinyModel model(61);
  std::string path = writeTinyModel(model, "bad");
  auto rt = std::move(Runtime::create({}).value());
  ModelId id = rt->loadModel(path).value();
  GenerateOptions opts;
  auto r = rt->generate(id, {3, 300}, opts);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "prompt id 300 is outside the vocabulary (size 16)");
  r = rt->generate(id, {-1}, opts);
  EXPECT_EQ(r.status().message(),
            "prompt id -1 is outside the vocabulary (size 16)");
  r = rt->generate(id, {}, opts);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("empty prompt"));
  opts.maxNewTokens = -1;
  r = rt->generate(id, {1}, opts);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("max_new_tokens must be >= 0 but got -1"));
  EXPECT_EQ(rt->generate(id + 7, {1}, {}).status().code(),
            absl::StatusCode::kNotFound);

  SequenceId s = rt->startSequence(id).value();
  EXPECT_THAT(std::string(rt->decode({s}, {1}).status().message()),
              HasSubstr("has no prompt"));
  EXPECT_THAT(std::string(rt->prefill(s, {16}).status().message()),
              HasSubstr("prompt id 16 is outside"));
  ASSERT_TRUE(rt->prefill(s, {1}).ok());
  EXPECT_THAT(std::string(rt->decode({s, s}, {1, 2}).status().message()),
              HasSubstr("appears twice"));
  EXPECT_THAT(std::string(rt->decode({s}, {1, 2}).status().message()),
              HasSubstr("one id per sequence"));
  EXPECT_EQ(rt->decode({s + 100}, {1}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(rt->sequenceLength(s).value(), 1) << "failed calls append nothing";
  EXPECT_TRUE(rt->release(s).ok());
  EXPECT_EQ(rt->release(s).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rt->prefill(s, {1}).status().code(), absl::StatusCode::kNotFound);
}

TEST(EngineTest, BadFilesAreRejectedAndLeaveNothingLoaded) {
  TinyModel model(71);
  TPlan plan;
  std::string path = writeTinyModel(model, "files", &plan);
  auto rt = std::move(Runtime::create({}).value());

  auto r = rt->loadModel(path + ".missing");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(".missing"));

  LoadOptions elsewhere;
  elsewhere.checkpointDir = path + ".nodir";
  r = rt->loadModel(path, elsewhere);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(".nodir"));

  // A plan whose weight offset does not match the checkpoint.
  TPlan wrong = plan;
  wrong.weights[3].offset += 4;
  std::string wrongPath = path + ".wrong.cpplan";
  writeFile(wrongPath, wrong.serialize());
  r = rt->loadModel(wrongPath);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(wrongPath));
  EXPECT_EQ(rt->kvPoolArena().totalBytes(), 0u);
  EXPECT_EQ(rt->weightsPoolArena().totalBytes(), 0u);

  // A weight budget too small for the FFN weights: nothing stays allocated.
  RuntimeOptions small;
  small.weightsPoolWeightBudget = 64;
  auto tight = std::move(Runtime::create(small).value());
  r = tight->loadModel(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tight->kvPoolArena().totalBytes(), 0u);
  EXPECT_EQ(tight->weightsPoolArena().totalBytes(), 0u);

  RuntimeOptions badPages;
  badPages.kvPageBytes = 100;
  EXPECT_EQ(Runtime::create(badPages).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The good plan still loads.
  EXPECT_TRUE(rt->loadModel(path).ok());
}

//===--- The tools, on hand-built plans -----------------------------------===//

struct ToolResult {
  int status;
  std::string out, err;
};

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ToolResult runTool(const std::string &tool, const std::string &args) {
  std::string dir = makeTempDir("tool");
  std::string cmd = std::string(CROSSPOOL_BINARY_DIR) + "/bin/" + tool + " " +
                    args + " > " + dir + "/out 2> " + dir + "/err";
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, readFile(dir + "/out"),
          readFile(dir + "/err")};
}

std::string jsonIds(const std::vector<int32_t> &ids) {
  std::string out = "{\"generated_ids\": [";
  for (size_t k = 0; k < ids.size(); ++k)
    out += (k ? ", " : "") + std::to_string(ids[k]);
  return out + "]}\n";
}

TEST(EngineTest, RunToolPrintsJsonLogitsAndOneLineErrors) {
  TinyModel model(81);
  std::string plan = writeTinyModel(model, "tool_run");
  std::string logits = makeTempDir("tool_logits") + "/logits.safetensors";
  ToolResult r = runTool("crosspool-run", plan +
                                              " --prompt-ids 3,15,4 "
                                              "--max-new-tokens 5 "
                                              "--logits-out " +
                                              logits);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, jsonIds(model.referenceGenerate({3, 15, 4}, 5)));
  EXPECT_EQ(r.err, "");
  auto file = SafetensorsFile::open(logits);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 1u);
  const TensorInfo *t = (*file)->find("logits");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, TinyModel::V}));
  std::vector<float> got(t->numElements());
  std::memcpy(got.data(), (*file)->data(*t), got.size() * 4);
  expectLogitsNear(got, model.reference({3, 15, 4}), 0, got.size(), "file");

  struct Case {
    std::string args, error;
  } cases[] = {
      {plan + " --prompt-ids 3,300",
       "prompt id 300 is outside the vocabulary (size 16)"},
      {plan + " --prompt-ids 3,x", "--prompt-ids: 'x' is not an integer id"},
      {plan, "missing --prompt-ids"},
      {"--prompt-ids 1", "missing the plan file"},
      {plan + " --prompt-ids 1 --bogus 2", "unknown flag '--bogus'"},
      {plan + " --prompt-ids 1 --max-new-tokens -2",
       "--max-new-tokens: expects an integer >= 0 but got '-2'"},
      {plan + " --prompt-ids 1 --kv-pages", "--kv-pages expects a value"},
      {plan + ".missing --prompt-ids 1", "cannot open plan file"},
      {plan + " --prompt-ids 1 --checkpoint " + plan + ".nodir", ".nodir"},
      {plan + " --prompt-ids 1,2 --max-new-tokens 9 --kv-pages 4 "
              "--kv-page-bytes 64",
       "KV pool exhausted"},
      {plan + " --prompt-ids 1 --kv-page-bytes 100",
       "multiple of 64 bytes but got 100"},
  };
  for (const Case &c : cases) {
    ToolResult bad = runTool("crosspool-run", c.args);
    EXPECT_EQ(bad.status, 1) << c.args;
    EXPECT_EQ(bad.out, "") << c.args;
    EXPECT_THAT(bad.err, ::testing::StartsWith("crosspool-run: error: "))
        << c.args;
    EXPECT_THAT(bad.err, HasSubstr(c.error)) << c.args;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << c.args;
  }
}

TEST(EngineTest, ServeToolInterleavesModelsAndPreempts) {
  TinyModel a(91), b(92);
  std::string pa = writeTinyModel(a, "serve_a"),
              pb = writeTinyModel(b, "serve_b");
  std::string requests = " --request 0:1,2,3:6 --request 1:4:6 "
                         "--request 0:9,9:6 --request 1:5,6,7,8:6";
  auto ids = [](const std::vector<int32_t> &v) {
    std::string out;
    for (size_t k = 0; k < v.size(); ++k)
      out += (k ? ", " : "") + std::to_string(v[k]);
    return "generated [" + out + "] ttft_ms ";
  };
  // 20 pages of 2 tokens x 2 layers hold 10 tokens in all: the four requests
  // (up to 9 tokens each) must share them, with preemption, and still get
  // exactly the reference tokens.
  std::string dir = makeTempDir("serve_json");
  for (std::string pages : {"4096", "20"}) {
    std::string json = dir + "/serve_" + pages + ".json";
    ToolResult r =
        runTool("crosspool-serve", pa + " " + pb + requests +
                                       " --kv-page-bytes 64 "
                                       "--kv-pages " +
                                       pages + " --json-out " + json);
    ASSERT_EQ(r.status, 0) << r.err << r.out;
    EXPECT_THAT(r.out, HasSubstr("request 0 model 0 (tiny) prompt_len 3 " +
                                 ids(a.referenceGenerate({1, 2, 3}, 6))));
    EXPECT_THAT(r.out, HasSubstr("request 1 model 1 (tiny) prompt_len 1 " +
                                 ids(b.referenceGenerate({4}, 6))));
    EXPECT_THAT(r.out, HasSubstr("request 2 model 0 (tiny) prompt_len 2 " +
                                 ids(a.referenceGenerate({9, 9}, 6))));
    EXPECT_THAT(r.out, HasSubstr("request 3 model 1 (tiny) prompt_len 4 " +
                                 ids(b.referenceGenerate({5, 6, 7, 8}, 6))));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("state failed")));
    EXPECT_THAT(r.out, HasSubstr("kv pool: " + pages +
                                 " pages x 64 bytes shared by 2 models"));
    EXPECT_THAT(r.out, HasSubstr("in use at end 0"));
    EXPECT_THAT(r.out, HasSubstr("served 4 requests, 24 tokens in "));
    // Pool table rows: 2 requests and 12 tokens per model.
    EXPECT_THAT(r.out, ::testing::ContainsRegex(
                           "\n0 +tiny +[0-9]+ +[0-9]+ +2 +12 +[1-9][0-9]*\n"));
    EXPECT_THAT(r.out, ::testing::ContainsRegex(
                           "\n1 +tiny +[0-9]+ +[0-9]+ +2 +12 +[1-9][0-9]*\n"));
    if (pages == "20") {
      EXPECT_THAT(r.out, ::testing::ContainsRegex(
                             "preemptions [1-9][0-9]* state finished"));
      EXPECT_THAT(r.out, ::testing::ContainsRegex(", [1-9][0-9]* preemptions"));
      EXPECT_THAT(r.out, HasSubstr("peak in use 20 (100.0%)"));
    } else {
      EXPECT_THAT(r.out, HasSubstr(", 0 preemptions"));
    }
    // The JSON report carries the same records.
    std::ifstream in(json);
    ASSERT_TRUE(in) << json;
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(j.is_discarded());
    ASSERT_EQ(j["requests"].size(), 4u);
    EXPECT_EQ(j["requests"][3]["output"].get<std::vector<int32_t>>(),
              b.referenceGenerate({5, 6, 7, 8}, 6));
    EXPECT_EQ(j["overall"]["output_tokens"].get<int64_t>(), 24);
    EXPECT_EQ(j["kv_chunks_capacity"].get<int64_t>(), std::stoll(pages))
        << "on the CPU a KV chunk is one page";
    EXPECT_LE(j["kv_chunks_peak"].get<int64_t>(), std::stoll(pages));
  }

  // Sampling: the same seed gives the same tokens whatever the pool size
  // (preemption recomputes), and temperature 0 is greedy.
  std::string sampled[2];
  for (int k = 0; k < 2; ++k) {
    ToolResult r = runTool("crosspool-serve",
                           pa + " " + pb + requests +
                               " --kv-page-bytes 64 --temperature 1.5 "
                               "--top-k 8 --top-p 0.95 --seed 7 --kv-pages " +
                               (k ? "20" : "4096"));
    ASSERT_EQ(r.status, 0) << r.err << r.out;
    for (size_t at = r.out.find("generated ["); at != std::string::npos;
         at = r.out.find("generated [", at + 1))
      sampled[k] += r.out.substr(at, r.out.find(']', at) - at) + "\n";
  }
  EXPECT_EQ(sampled[0], sampled[1]);
  EXPECT_EQ(std::count(sampled[0].begin(), sampled[0].end(), '\n'), 4);
  EXPECT_THAT(sampled[0], ::testing::Not(HasSubstr(
                              ids(a.referenceGenerate({1, 2, 3}, 6)))));
  ToolResult greedy =
      runTool("crosspool-serve", pa + " --request 0:1,2,3:6 --temperature 0 "
                                      "--seed 99");
  ASSERT_EQ(greedy.status, 0) << greedy.err;
  EXPECT_THAT(greedy.out, HasSubstr(ids(a.referenceGenerate({1, 2, 3}, 6))));

  // A request that cannot fit even alone fails; the others still finish.
  ToolResult r = runTool("crosspool-serve",
                         pa + " --request 0:1,2,3,4,5,6,7:4 --request 0:1:2 "
                              "--kv-page-bytes 64 --kv-pages 8");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("request 0 model 0 (tiny) prompt_len 7 "
                               "generated [] ttft_ms - tbt_ms - preemptions 0 "
                               "state failed reason can never fit: needs 10 "
                               "KV pages"));
  EXPECT_THAT(r.out, HasSubstr("request 1 model 0 (tiny) prompt_len 1 " +
                               ids(a.referenceGenerate({1}, 2))));
  EXPECT_THAT(r.out, HasSubstr("state finished reason max_tokens"));

  r = runTool("crosspool-serve", pa + " --request 1:1:2");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "crosspool-serve: error: --request names model 1 but only "
                   "1 plans were given\n");
  r = runTool("crosspool-serve", pa + " --request 0:1");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("expects 3 fields but got 2"));
  r = runTool("crosspool-serve", "");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("missing plan files"));
  r = runTool("crosspool-serve", pa + " --top-p 0");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err,
              ::testing::StartsWith(
                  "crosspool-serve: error: request 0 (model 0, tiny): "));
  EXPECT_THAT(r.err, HasSubstr("top"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");
  r = runTool("crosspool-serve", pa + " --temperature warm");
  EXPECT_EQ(r.err, "crosspool-serve: error: --temperature: expects a number "
                   "but got 'warm'\n");
  r = runTool("crosspool-serve", pa + " --request 0:1,999999:2");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("prompt id 999999 is outside the vocabulary"));
  r = runTool("crosspool-serve", pa + " --json-out /nonexistent_dir/x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "crosspool-serve: error: --json-out: cannot write "
                   "'/nonexistent_dir/x.json'\n");
  r = runTool("crosspool-serve", pa + " --bogus 1");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("unknown flag '--bogus'"));
}

//===--- Real compiled plans (only when crosspool-compile is available) ---===//

std::string compilePlan(const std::string &model, const std::string &dir) {
  std::string bin = CROSSPOOL_COMPILE_BIN;
  if (const char *env = std::getenv("CROSSPOOL_COMPILE_BIN"))
    bin = env;
  if (bin.empty() || ::access(bin.c_str(), X_OK) != 0)
    return "";
  std::string out = dir + "/" + model + ".cpplan";
  std::string cmd = bin + " " + crosspool::test::modelsDir() + "/" + model +
                    " -o " + out + " > " + out + ".log 2>&1";
  return std::system(cmd.c_str()) == 0 ? out : "error: " + cmd;
}

// The CUDA executor folds each Add whose RmsNorm follows (addRmsNormPairs)
// into one launch. Compiled plans write each sum to a new slot: every layer
// must still give two folds (post-attention norm; the next layer's input
// norm or the final norm), all in the KV-pool stream.
TEST(EngineTest, CompiledPlansFoldEveryResidualAddIntoItsNorm) {
  std::string dir = makeTempDir("folds");
  for (const std::string model : {"qwen3_moe_tiny", "olmoe_tiny"}) {
    std::string path = compilePlan(model, dir);
    if (path.empty())
      GTEST_SKIP() << "crosspool-compile not available";
    ASSERT_EQ(path.rfind("error: ", 0), std::string::npos) << path;
    auto file = PlanFile::load(path);
    ASSERT_TRUE(file.ok()) << file.status();
    auto streams = decodePlanStreams((*file)->plan(), model);
    ASSERT_TRUE(streams.ok()) << streams.status();
    size_t kvPairs = 0, weightsPairs = 0;
    for (const DecodedStream &st : *streams)
      (st.pool == plan::Pool::KV ? kvPairs : weightsPairs) +=
          addRmsNormPairs(st.instrs).size();
    const size_t layers = (*file)->plan().kv_layers()->size();
    EXPECT_EQ(kvPairs, 2 * layers) << model;
    EXPECT_EQ(weightsPairs, 0u) << model;
  }
}

TEST(EngineTest, CompiledPlansShareThePoolAndMatchGoldens) {
  std::string dir = makeTempDir("compiled");
  std::vector<std::string> names = {"mixtral_tiny", "qwen3_moe_tiny"};
  std::vector<std::string> plans;
  for (const std::string &n : names) {
    std::string p = compilePlan(n, dir);
    if (p.empty())
      GTEST_SKIP() << "crosspool-compile not available";
    ASSERT_EQ(p.rfind("error: ", 0), std::string::npos) << p;
    plans.push_back(p);
  }
  // Small pool: both models' sequences draw from the same few pages.
  RuntimeOptions options;
  options.kvPages = 64;
  auto rt = std::move(Runtime::create(options).value());
  std::vector<ModelId> ids;
  for (const std::string &p : plans) {
    auto id = rt->loadModel(p);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t m = 0; m < names.size(); ++m) {
      auto goldens = crosspool::test::loadGoldens(names[m]);
      ASSERT_FALSE(goldens.empty()) << names[m];
      for (const auto &g : goldens) {
        std::vector<int32_t> prompt(g.promptIds.begin(), g.promptIds.end());
        GenerateOptions opts;
        opts.maxNewTokens = int64_t(g.generatedIds.size());
        opts.wantPromptLogits = true;
        auto r = rt->generate(ids[m], prompt, opts);
        ASSERT_TRUE(r.ok()) << names[m] << ": " << r.status();
        EXPECT_LT(crosspool::test::maxRelativeError(r->promptLogits, g.logits),
                  1e-4)
            << names[m];
        EXPECT_EQ(std::vector<int64_t>(r->generatedIds.begin(),
                                       r->generatedIds.end()),
                  g.generatedIds)
            << names[m];
      }
    }
  }
  EXPECT_EQ(rt->kvPagesInUse(), 0);
  EXPECT_GT(rt->kvPagesPeak(), 0);
}

} // namespace
} // namespace crosspool::runtime
