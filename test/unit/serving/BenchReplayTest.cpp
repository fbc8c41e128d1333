//===- BenchReplayTest.cpp - crosspool-bench serve end to end -------------===//
//
// Replays through the tool with three model families and checks the JSON
// report against the workload (request counts, caps computed here from the
// trace file itself) and the pool bounds.

#include "gtest/gtest.h"

#include "test/unit/serving/BenchCli.h"

#include "nlohmann/json.hpp"

#include "absl/strings/str_split.h"

#include <cstdlib>
#include <fstream>

using crosspool::testing::readFile;
using crosspool::testing::runBench;

namespace {

std::string plans() {
  std::string dir = std::string(CROSSPOOL_BINARY_DIR) + "/plans/";
  return dir + "mixtral_tiny.cpplan " + dir + "qwen2_moe_tiny.cpplan " + dir +
         "qwen3_moe_tiny.cpplan";
}

TEST(BenchReplayTest, ThreeModesSideBySideWithJson) {
  std::string json = ::testing::TempDir() + "/serve.json";
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() +
      " --mode all --requests 40 --rate 30 --cv 3 --prompt-range 8:64 "
      "--output-range 4:24 --gpus 3 --gpu-mem-mb 1.6 --quiet --json-out " +
      json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  ASSERT_EQ(j["runs"].size(), 3u);
  std::vector<std::string> modes;
  for (const nlohmann::json &run : j["runs"]) {
    modes.push_back(run["mode"]);
    const nlohmann::json &all = run["overall"];
    EXPECT_EQ(all["requests"], 40);
    EXPECT_EQ(all["finished"].get<int>() + all["failed"].get<int>(), 40);
    EXPECT_LE(run["kv_chunks_peak"].get<int>(),
              run["kv_chunks_capacity"].get<int>());
    int perModel = 0;
    for (const nlohmann::json &m : run["models"])
      perModel += m["requests"].get<int>();
    EXPECT_EQ(perModel, 40);
    EXPECT_FALSE(run["kv_over_time"].empty());
    // TBT samples come sorted (ready for a CDF).
    std::vector<double> tbt = all["tbt_sorted_samples_s"];
    EXPECT_TRUE(std::is_sorted(tbt.begin(), tbt.end()));
  }
  EXPECT_EQ(modes,
            std::vector<std::string>({"crosspool", "kvcached", "static"}));
  EXPECT_EQ(j["runs"][0]["overall"]["failed"], 0);
  EXPECT_EQ(j["runs"][0]["kv_groups"]["chunks"].size(), 1u);
  EXPECT_EQ(j["runs"][1]["kv_groups"]["chunks"].size(), 3u);
  EXPECT_NE(r.out.find("mode kvcached:"), std::string::npos);
}

TEST(BenchReplayTest, TraceReplayReportsItsCapsAndSearchesARate) {
  const int kRows = 30, kMaxPrompt = 64, kMaxOutput = 16;
  std::string path = std::string(CROSSPOOL_SOURCE_DIR) +
                     "/test/unit/serving/data/azure_conv_2023_head40.csv";
  std::string text = readFile(path);
  ASSERT_FALSE(text.empty()) << "cannot read " << path;
  // Independent count of the rows the caps cut.
  std::vector<std::string> lines = absl::StrSplit(text, "\r\n");
  int prompts = 0, outputs = 0;
  for (int i = 1; i <= kRows; ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    prompts += std::stoi(f[1]) > kMaxPrompt;
    outputs += std::stoi(f[2]) > kMaxOutput;
  }
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() + " --trace " + path + " --requests 30 --rate 50 " +
      "--max-prompt 64 --max-output 16 --quiet --slo-tbt-ms 5 "
      "--search-rate 5:400:2");
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  std::string want = "prompts capped: " + std::to_string(prompts) +
                     " of 30 (per model: ";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  want = "outputs capped: " + std::to_string(outputs) + " of 30 to 16 tokens";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("crosspool: max sustainable rate"), std::string::npos)
      << r.out;
}

/// A run's JSON without its host wall times (step_summary, the step log's
/// measured columns), which differ between equal replays.
nlohmann::json withoutWallTimes(nlohmann::json run) {
  run.erase("step_summary");
  for (const char *col : {"wall_ms", "runtime_ms", "prep_ms", "launch_ms",
                          "wait_ms", "copy_ms", "kv_map_ms", "kv_unmap_ms"})
    run["step_log"].erase(col);
  return run;
}

TEST(BenchReplayTest, ModelsLoadOnceAndEveryReplayStartsClean) {
  // crosspool twice in one process, with kvcached and a rate search between:
  // the second crosspool replay must equal the first (a page left held or
  // any state carried over would change admission and latencies), and a
  // fresh process must give the same run again.
  const std::string common =
      " --requests 60 --rate 40 --cv 3 --prompt-range 8:96 --output-range "
      "4:24 --gpus 3 --gpu-mem-mb 1.45 --quiet ";
  std::string json = ::testing::TempDir() + "/serve_reuse.json";
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() + common +
      "--mode crosspool,kvcached,crosspool --slo-tbt-ms 4 --search-rate "
      "5:400:2 --json-out " +
      json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  EXPECT_EQ(j["config"]["model_loads"], 3);
  int64_t replays = j["config"]["replays"];
  EXPECT_GE(replays, 6); // 3 main replays and at least one probe each
  EXPECT_NE(r.out.find("models loaded 3 times for " + std::to_string(replays) +
                       " replays"),
            std::string::npos)
      << r.out;
  ASSERT_EQ(j["runs"].size(), 3u);
  EXPECT_GT(j["runs"][0]["overall"]["preemptions"].get<int>() +
                j["runs"][1]["overall"]["preemptions"].get<int>(),
            0)
      << "the workload should fill the pool";
  EXPECT_EQ(withoutWallTimes(j["runs"][0]), withoutWallTimes(j["runs"][2]));

  std::string fresh = ::testing::TempDir() + "/serve_fresh.json";
  r = runBench("serve " + plans() + common + "--mode crosspool --json-out " +
               fresh);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json f = nlohmann::json::parse(readFile(fresh));
  nlohmann::json a = j["runs"][0], b = f["runs"][0];
  a.erase("max_sustainable_rate");
  a.erase("rate_probes");
  EXPECT_EQ(withoutWallTimes(a), withoutWallTimes(b));
}

// Warm-up replays run before the measured ones and leave nothing behind:
// the measured run equals the same run without them, and the report says
// how many there were (CPU default: none).
TEST(BenchReplayTest, WarmUpReplaysAreDiscarded) {
  const std::string common =
      " --mode crosspool --requests 40 --rate 40 --cv 3 --prompt-range 8:96 "
      "--output-range 4:24 --gpus 3 --gpu-mem-mb 1.45 --quiet ";
  std::string warm = ::testing::TempDir() + "/serve_warm.json",
              cold = ::testing::TempDir() + "/serve_cold.json";
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() + common + "--warm-replays 2 --json-out " + warm);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("warm-up: 2 replay(s) in crosspool mode"),
            std::string::npos)
      << r.out;
  r = runBench("serve " + plans() + common + "--json-out " + cold);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_EQ(r.out.find("warm-up:"), std::string::npos) << r.out;
  nlohmann::json w = nlohmann::json::parse(readFile(warm)),
                 c = nlohmann::json::parse(readFile(cold));
  EXPECT_EQ(w["config"]["warm_replays"], 2);
  EXPECT_EQ(c["config"]["warm_replays"], 0);
  EXPECT_EQ(w["config"]["replays"], 1);
  ASSERT_EQ(w["runs"].size(), 1u);
  EXPECT_EQ(withoutWallTimes(w["runs"][0]), withoutWallTimes(c["runs"][0]));
}

// Every step is logged: the log and the summary agree with the step count,
// rows split into decode rows and prefill tokens, and the cost-model clock
// advances each step by 500 us + 40 us x rows + 0.02 us x positions
// attended (the defaults). With the measured clock each step advances it by
// its host wall time.
TEST(BenchReplayTest, StepLogMatchesTheStepsAndTheClock) {
  std::string json = ::testing::TempDir() + "/serve_steps.json";
  const std::string common =
      " --requests 30 --rate 30 --cv 2 --prompt-range 8:80 --output-range "
      "4:16 --gpus 3 --gpu-mem-mb 1.6 --max-step-tokens 48 --quiet ";
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() + common + "--mode crosspool --json-out " + json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("steps: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" with prefill (median "), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  const nlohmann::json &run = j["runs"][0];
  const int64_t steps = run["steps"];
  ASSERT_GT(steps, 10);
  const nlohmann::json &sum = run["step_summary"];
  EXPECT_EQ(sum["decode_only_steps"].get<int64_t>() +
                sum["prefill_steps"].get<int64_t>(),
            steps);
  EXPECT_GT(sum["prefill_steps"].get<int64_t>(), 0);
  EXPECT_GT(sum["decode_only_steps"].get<int64_t>(), 0);
  const nlohmann::json &log = run["step_log"];
  EXPECT_EQ(log["total"].get<int64_t>(), steps);
  ASSERT_EQ(log["kept"].get<int64_t>(), steps) << "fewer than 1500: all kept";
  ASSERT_EQ(log["rows"].size(), size_t(steps));
  int64_t decodeOnly = 0;
  double last = 0;
  for (int64_t i = 0; i < steps; ++i) {
    int64_t rows = log["rows"][i], seqs = log["seqs"][i];
    int64_t decode = log["decode_seqs"][i], prefill = log["prefill_tokens"][i];
    int64_t context = log["context"][i];
    EXPECT_EQ(decode + prefill, rows) << "step " << i;
    EXPECT_LE(seqs, rows);
    EXPECT_LE(rows, 48);
    EXPECT_GE(context, rows);
    decodeOnly += prefill == 0;
    EXPECT_NEAR(log["clock_ms"][i].get<double>(),
                (500 + 40.0 * rows + 0.02 * context) / 1e3, 1.5e-3)
        << "step " << i;
    double t = log["t_s"][i];
    EXPECT_GE(t, last);
    last = t;
    EXPECT_GE(log["wall_ms"][i].get<double>(),
              log["runtime_ms"][i].get<double>());
    int model = log["model"][i];
    EXPECT_TRUE(model >= 0 && model < 3);
  }
  EXPECT_EQ(decodeOnly, sum["decode_only_steps"].get<int64_t>());
  // The CPU backend measures no map/graph costs.
  EXPECT_EQ(sum["backend"]["kv_maps"], 0);
  EXPECT_EQ(sum["backend"]["graph_captures"], 0);

  std::string measured = ::testing::TempDir() + "/serve_steps_measured.json";
  r = runBench("serve " + plans() + common +
               "--mode crosspool --clock measured --json-out " + measured);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json m = nlohmann::json::parse(readFile(measured));
  const nlohmann::json &mlog = m["runs"][0]["step_log"];
  ASSERT_GT(mlog["kept"].get<int64_t>(), 10);
  for (size_t i = 0; i < mlog["wall_ms"].size(); ++i) {
    // Equal but for rounding: the clock's advance is (now + wall) - now,
    // which can land on the other side of a microsecond when rounded.
    EXPECT_NEAR(mlog["clock_ms"][i].get<double>(),
                mlog["wall_ms"][i].get<double>(), 1.0001e-3)
        << "step " << i;
    EXPECT_GE(mlog["wall_ms"][i].get<double>(),
              mlog["runtime_ms"][i].get<double>());
  }
}

TEST(BenchReplayTest, TbtTargetCapsPrefillAndIsReported) {
  // Long prompts arriving while others decode, with and without a target.
  const std::string common =
      " --requests 24 --rate 60 --cv 2 --prompt-range 120:300 --output-range "
      "8:24 --gpus 3 --gpu-mem-mb 1.6 --mode crosspool --quiet ";
  auto replay = [&](const std::string &flags, const std::string &name) {
    std::string json = ::testing::TempDir() + "/" + name;
    crosspool::testing::CliResult r =
        runBench("serve " + plans() + common + flags + " --json-out " + json);
    EXPECT_EQ(r.exitCode, 0) << r.err << r.out;
    return std::make_pair(r.out, nlohmann::json::parse(readFile(json)));
  };
  auto [offOut, off] = replay("", "serve_tbt_off.json");
  auto [onOut, on] =
      replay("--tbt-target-ms 3 --min-prefill-chunk 8", "serve_tbt_on.json");
  EXPECT_EQ(off["config"]["tbt_target_ms"], 0.0);
  EXPECT_EQ(off["config"]["min_prefill_chunk"], 64);
  EXPECT_EQ(on["config"]["tbt_target_ms"], 3.0);
  EXPECT_EQ(on["config"]["min_prefill_chunk"], 8);
  EXPECT_EQ(offOut.find("prefill chunks: capped"), std::string::npos);
  EXPECT_NE(onOut.find("prefill chunks: capped while any request decodes to "
                       "a predicted 3 ms / (models with work) per step, at "
                       "least 8 tokens"),
            std::string::npos)
      << onOut;
  for (const nlohmann::json &caps : off["runs"][0]["step_log"]["prefill_cap"])
    EXPECT_EQ(caps, -1);
  const nlohmann::json &log = on["runs"][0]["step_log"];
  int64_t capped = 0;
  ASSERT_EQ(log["prefill_cap"].size(), log["rows"].size());
  ASSERT_EQ(log["predicted_ms"].size(), log["rows"].size());
  for (size_t i = 0; i < log["rows"].size(); ++i) {
    int64_t cap = log["prefill_cap"][i];
    if (cap < 0)
      continue;
    ++capped;
    EXPECT_GE(cap, 8);
    EXPECT_LE(log["prefill_tokens"][i].get<int64_t>(),
              cap + log["seqs"][i].get<int64_t>() -
                  log["decode_seqs"][i].get<int64_t>());
  }
  EXPECT_GT(capped, 0);
  EXPECT_EQ(on["runs"][0]["overall"]["finished"], 24);
  EXPECT_EQ(off["runs"][0]["overall"]["finished"], 24);
  EXPECT_LT(on["runs"][0]["overall"]["tbt_s"]["p99"].get<double>(),
            off["runs"][0]["overall"]["tbt_s"]["p99"].get<double>());
}

TEST(BenchReplayTest, WallCapStopsAReplayAndAccountsEveryRequest) {
  std::string json = ::testing::TempDir() + "/serve_capped.json";
  crosspool::testing::CliResult r = runBench(
      "serve " + plans() +
      " --requests 400 --rate 400 --prompt-range 64:200 --output-range "
      "16:48 --gpus 3 --max-wall-s 0.002 --quiet --slo-tbt-ms 1000 "
      "--search-rate 1:2:1 --json-out " +
      json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  const nlohmann::json &run = j["runs"][0];
  EXPECT_TRUE(run["stopped_by_wall_cap"].get<bool>());
  const nlohmann::json &all = run["overall"];
  int notRun = all["not_run"];
  EXPECT_GT(notRun, 0);
  EXPECT_LE(notRun, all["cancelled"].get<int>());
  // Nothing dropped: every request ended one way or another.
  EXPECT_EQ(all["requests"], 400);
  EXPECT_EQ(all["finished"].get<int>() + all["failed"].get<int>() +
                all["cancelled"].get<int>(),
            400);
  EXPECT_NE(r.out.find("STOPPED BY --max-wall-s: " + std::to_string(notRun) +
                       " of 400 requests not run"),
            std::string::npos)
      << r.out;
  // A stopped replay never counts as sustainable, however lax the SLO.
  for (const nlohmann::json &p : run["rate_probes"]) {
    EXPECT_TRUE(p["stopped_by_wall_cap"].get<bool>());
    EXPECT_FALSE(p["meets_slo"].get<bool>());
  }
  EXPECT_EQ(run["max_sustainable_rate"], 0);
}

TEST(BenchReplayTest, PromptsAreCappedByEachModelsOwnPositions) {
  // Two synthetic OLMoE-tiny plans with 96 and 300 positions.
  std::string dir = ::testing::TempDir() + "/serve_caps";
  std::string cfg = readFile(std::string(CROSSPOOL_SOURCE_DIR) +
                             "/test/data/models/olmoe_tiny/config.json");
  ASSERT_NE(cfg.find("\"max_position_embeddings\": 512"), std::string::npos);
  std::string list;
  for (int positions : {96, 300}) {
    std::string d = dir + "/p" + std::to_string(positions);
    ASSERT_EQ(std::system(("mkdir -p " + d).c_str()), 0);
    std::string c = cfg;
    c.replace(c.find("\"max_position_embeddings\": 512"),
              std::string("\"max_position_embeddings\": 512").size(),
              "\"max_position_embeddings\": " + std::to_string(positions));
    std::ofstream(d + "/config.json") << c;
    std::string plan = d + ".cpplan";
    ASSERT_EQ(std::system((std::string(CROSSPOOL_COMPILE_BIN) +
                           " --synthetic " + d + " -o " + plan)
                              .c_str()),
              0);
    list += plan + " ";
  }
  std::string json = dir + "/serve.json";
  crosspool::testing::CliResult r =
      runBench("serve " + list +
               "--requests 40 --long-context 100:250 --max-output 8 "
               "--popularity uniform --gpus 2 --mode crosspool --quiet "
               "--json-out " +
               json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  const nlohmann::json &caps = j["config"]["prompt_caps"];
  ASSERT_EQ(caps.size(), 2u);
  // Cap = positions - max output + 1: 89 and 293. Every 100-250 prompt of
  // the small model is cut; none of the large one's is.
  EXPECT_EQ(caps[0]["model"], "p96");
  EXPECT_EQ(caps[0]["prompt_cap"], 89);
  EXPECT_EQ(caps[0]["prompts_capped"], caps[0]["requests"]);
  EXPECT_EQ(caps[0]["longest_prompt"], 89);
  EXPECT_EQ(caps[1]["model"], "p300");
  EXPECT_EQ(caps[1]["prompt_cap"], 293);
  EXPECT_EQ(caps[1]["prompts_capped"], 0);
  EXPECT_GT(caps[1]["longest_prompt"].get<int>(), 89);
  EXPECT_EQ(caps[0]["requests"].get<int>() + caps[1]["requests"].get<int>(),
            40);
  std::string want =
      "prompts capped: " + caps[0]["prompts_capped"].dump() +
      " of 40 (per model: p96 " + caps[0]["prompts_capped"].dump() + " of " +
      caps[0]["requests"].dump() + " to 89, p300 0 of " +
      caps[1]["requests"].dump() + " to 293)";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  EXPECT_EQ(j["runs"][0]["overall"]["finished"], 40);
}

TEST(BenchReplayTest, MissingPlanIsOneLine) {
  crosspool::testing::CliResult r =
      runBench("serve /nonexistent/x.cpplan --quiet");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("crosspool-bench serve: error: "), std::string::npos);
  EXPECT_NE(r.err.find("/nonexistent/x.cpplan"), std::string::npos);
}

// crosspool-bench decode on the CPU: a table row and a JSON point per
// (context, batch), every timed step recorded; a plan that does not exist
// and a context beyond the model's positions are one-line errors.
TEST(BenchDecodeTest, StepsThroughTheRuntime) {
  const std::string plan =
      std::string(CROSSPOOL_BINARY_DIR) + "/plans/qwen3_moe_tiny.cpplan";
  const std::string json = ::testing::TempDir() + "/decode.json";
  crosspool::testing::CliResult r =
      runBench("decode " + plan +
               " --batches 1,3 --contexts 5,40 --steps 4 --json-out " + json);
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("| batch | context | step ms (median)"),
            std::string::npos);
  EXPECT_NE(r.out.find("| 3 | 40 | "), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(readFile(json));
  EXPECT_EQ(j["device"], "cpu");
  ASSERT_EQ(j["points"].size(), 4u);
  std::vector<std::pair<int, int>> order;
  for (const nlohmann::json &p : j["points"]) {
    order.emplace_back(p["context"].get<int>(), p["batch"].get<int>());
    EXPECT_EQ(p["step_ms"].size(), 4u);
    EXPECT_GT(p["step_ms_median"].get<double>(), 0.0);
    EXPECT_LE(p["step_ms_median"].get<double>(),
              p["step_ms_p90"].get<double>());
  }
  EXPECT_EQ(order, (std::vector<std::pair<int, int>>{
                       {5, 1}, {5, 3}, {40, 1}, {40, 3}}));

  crosspool::testing::CliResult missing =
      runBench("decode /nonexistent/x.cpplan --steps 1");
  EXPECT_EQ(missing.exitCode, 1);
  EXPECT_NE(missing.err.find("crosspool-bench decode: error: "),
            std::string::npos);
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);
  crosspool::testing::CliResult tooLong =
      runBench("decode " + plan + " --contexts 100000 --steps 1");
  EXPECT_EQ(tooLong.exitCode, 1);
  EXPECT_NE(tooLong.err.find("exceed the model's"), std::string::npos)
      << tooLong.err;
}

} // namespace
