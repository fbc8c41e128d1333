//===- BenchReplayTest.cpp - crosspool-bench serve end to end -------------===//
//
// Replays through the tool with three model families and checks the JSON
// report against the workload (request counts, caps computed here from the
// trace file itself) and the pool bounds.

#include "gtest/gtest.h"

#include "test/unit/serving/BenchCli.h"

#include "nlohmann/json.hpp"

#include "absl/strings/str_split.h"

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
    EXPECT_LE(run["kv_pages_peak"].get<int>(),
              run["kv_pages_capacity"].get<int>());
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
  EXPECT_EQ(j["runs"][0]["kv_groups"]["pages"].size(), 1u);
  EXPECT_EQ(j["runs"][1]["kv_groups"]["pages"].size(), 3u);
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
  std::string want = "capped " + std::to_string(prompts) +
                     " of 30 prompts to 64 "
                     "tokens and " +
                     std::to_string(outputs) + " outputs to 16 tokens";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("crosspool: max sustainable rate"), std::string::npos)
      << r.out;
}

TEST(BenchReplayTest, MissingPlanIsOneLine) {
  crosspool::testing::CliResult r =
      runBench("serve /nonexistent/x.cpplan --quiet");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("crosspool-bench serve: error: "), std::string::npos);
  EXPECT_NE(r.err.find("/nonexistent/x.cpplan"), std::string::npos);
}

} // namespace
