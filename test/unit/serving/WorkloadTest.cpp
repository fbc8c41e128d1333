//===- WorkloadTest.cpp - Traces, arrivals, popularity, memory modes ------===//

#include "runtime/serving/Workload.h"
#include "runtime/serving/MemoryMode.h"
#include "runtime/serving/ServeReport.h"

#include "gtest/gtest.h"

#include <cmath>
#include <numeric>

using namespace crosspool::runtime;

namespace {

const char *kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens";

TEST(TraceTest, ParsesAzureFormatWithCrlfAndNoFinalNewline) {
  std::string text = std::string(kHeader) +
                     "\r\n2023-11-16 18:15:46.6805900,374,44\r\n"
                     "2023-11-16 18:15:50.9951690,396,109\r\n"
                     "2023-11-16 18:16:01.0000000,91,16";
  absl::StatusOr<std::vector<TraceEntry>> t = parseTraceCsv(text, "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 3u);
  EXPECT_DOUBLE_EQ((*t)[0].arrival, 0.0);
  EXPECT_NEAR((*t)[1].arrival, 4.314579, 1e-6);
  EXPECT_NEAR((*t)[2].arrival, 14.31941, 1e-6);
  EXPECT_EQ((*t)[1].promptTokens, 396);
  EXPECT_EQ((*t)[1].outputTokens, 109);
  // Midnight and month boundaries are real calendar arithmetic.
  t = parseTraceCsv(std::string(kHeader) + "\n2023-12-31 23:59:59.5,1,1\n"
                                           "2024-01-01 00:00:01.0,1,1\n",
                    "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NEAR((*t)[1].arrival, 1.5, 1e-9);
  // Plain seconds are accepted too.
  t = parseTraceCsv(std::string(kHeader) + "\n10,5,6\n12.5,7,8\n", "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_DOUBLE_EQ((*t)[1].arrival, 2.5);
}

TEST(TraceTest, MalformedTracesNameFileLineAndField) {
  auto error = [](const std::string &text) {
    absl::StatusOr<std::vector<TraceEntry>> t = parseTraceCsv(text, "bad.csv");
    return t.ok() ? std::string("ok") : std::string(t.status().message());
  };
  std::string h = std::string(kHeader) + "\n";
  EXPECT_EQ(error("time,prompt,output\n1,2,3\n"),
            "bad.csv:1: expects the header "
            "'TIMESTAMP,ContextTokens,GeneratedTokens' but got "
            "'time,prompt,output'");
  EXPECT_EQ(error(""), "bad.csv:1: expects the header "
                       "'TIMESTAMP,ContextTokens,GeneratedTokens' but got ''");
  EXPECT_EQ(error(h), "bad.csv: the trace has no requests");
  EXPECT_EQ(error(h + "1,2\n"), "bad.csv:2: expects 3 fields but got 2");
  EXPECT_EQ(error(h + "1,2,3,4\n"), "bad.csv:2: expects 3 fields but got 4");
  EXPECT_EQ(error(h + "1,2,3\n\n2,3,4\n"),
            "bad.csv:3: expects 3 fields but got 1");
  EXPECT_EQ(error(h + "yesterday,2,3\n"),
            "bad.csv:2: TIMESTAMP expects 'YYYY-MM-DD HH:MM:SS.f' or seconds "
            ">= 0 but got 'yesterday'");
  EXPECT_EQ(error(h + "2023-13-01 00:00:00,2,3\n"),
            "bad.csv:2: TIMESTAMP expects 'YYYY-MM-DD HH:MM:SS.f' or seconds "
            ">= 0 but got '2023-13-01 00:00:00'");
  EXPECT_EQ(error(h + "1,2,3\n2,abc,3\n"),
            "bad.csv:3: ContextTokens expects an integer but got 'abc'");
  EXPECT_EQ(error(h + "1,2,3.5\n"),
            "bad.csv:2: GeneratedTokens expects an integer but got '3.5'");
  EXPECT_EQ(error(h + "1,-4,3\n"), "bad.csv:2: ContextTokens expects >= 1 but "
                                   "got -4");
  EXPECT_EQ(error(h + "1,4,0\n"),
            "bad.csv:2: GeneratedTokens expects >= 1 but got 0");
  EXPECT_EQ(error(h + "5,4,3\n2,4,3\n"),
            "bad.csv:3: timestamps must not go back in time: 2 is before the "
            "previous row");
  absl::StatusOr<std::vector<TraceEntry>> missing =
      loadTraceCsv("/nonexistent/trace.csv");
  EXPECT_EQ(missing.status().message(),
            "cannot read trace '/nonexistent/trace.csv'");
}

TEST(TraceTest, ScalesToRateAndCapsLengths) {
  std::vector<TraceEntry> t = {{0, 10, 5}, {1, 700, 5}, {4, 10, 300}};
  scaleToRate(t, 1.0); // 2 gaps over 4 s -> factor 0.5
  EXPECT_DOUBLE_EQ(t[1].arrival, 0.5);
  EXPECT_DOUBLE_EQ(t[2].arrival, 2.0);
  auto [prompts, outputs] = capLengths(t, 512, 64);
  EXPECT_EQ(prompts, 1);
  EXPECT_EQ(outputs, 1);
  EXPECT_EQ(t[1].promptTokens, 512);
  EXPECT_EQ(t[2].outputTokens, 64);
  EXPECT_EQ(t[0].promptTokens, 10);
}

TEST(ArrivalTest, GammaGapsHaveTheRequestedMeanAndCv) {
  // Tolerances: 4 standard errors. The sample mean's is cv * mean /
  // sqrt(n); the sample CV's about cv * sqrt((kurtosis - 1) / n) / 2 with a
  // Gamma kurtosis of 3 + 6 cv^2.
  const double n = 100000;
  for (double cv : {0.5, 1.0, 3.0}) {
    std::vector<double> t = gammaArrivals(int64_t(n) + 1, 5.0, cv, 7);
    std::vector<double> gaps;
    for (size_t i = 1; i < t.size(); ++i)
      gaps.push_back(t[i] - t[i - 1]);
    double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
    double var = 0;
    for (double g : gaps)
      var += (g - mean) * (g - mean) / gaps.size();
    EXPECT_NEAR(mean, 0.2, 4 * cv * 0.2 / std::sqrt(n)) << "cv " << cv;
    EXPECT_NEAR(std::sqrt(var) / mean, cv,
                4 * cv * std::sqrt((2 + 6 * cv * cv) / n) / 2)
        << "cv " << cv;
  }
  EXPECT_EQ(gammaArrivals(10, 5.0, 2.0, 3), gammaArrivals(10, 5.0, 2.0, 3));
}

TEST(PopularityTest, SharesAndAssignment) {
  absl::StatusOr<Popularity> zipf = parsePopularity("zipf:1");
  ASSERT_TRUE(zipf.ok());
  std::vector<double> s = popularityShares(*zipf, 3);
  EXPECT_NEAR(s[0], 6.0 / 11, 1e-12);
  EXPECT_NEAR(s[1], 3.0 / 11, 1e-12);
  EXPECT_NEAR(s[2], 2.0 / 11, 1e-12);
  absl::StatusOr<Popularity> cold = parsePopularity("cold:0.7");
  ASSERT_TRUE(cold.ok());
  s = popularityShares(*cold, 3);
  EXPECT_NEAR(s[0], 0.7, 1e-12);
  EXPECT_NEAR(s[1], 0.15, 1e-12);
  std::vector<int> m = assignModels(30000, s, 5);
  std::vector<double> f(3, 0);
  for (int x : m)
    f[x] += 1.0 / m.size();
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(f[i], s[i], 0.01);
  for (const char *badText :
       {"zipf", "zipf:-1", "cold:1", "cold:0", "hot:0.5", "zipf:x", ""})
    EXPECT_EQ(parsePopularity(badText).status().message(),
              std::string("bad popularity '") + badText +
                  "' (expects zipf:S with S >= 0, cold:F with 0 < F < 1, or "
                  "uniform)");
}

/// Footprints in bytes, 10-byte pages: A 100+900, B 100+400, C 50+200.
std::vector<ModelFootprint> footprints() {
  return {{"A", 100, 900}, {"B", 100, 400}, {"C", 50, 200}};
}

TEST(MemoryModeTest, CrossPoolSharesOneKvBudget) {
  ClusterSpec c{3, 1200, 1};
  absl::StatusOr<KvLayout> l =
      planKvLayout(MemoryMode::CrossPool, c, footprints(), 10);
  ASSERT_TRUE(l.ok()) << l.status();
  // KV GPU: 1200 - 250 attention bytes = 950 -> 95 pages for all models.
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({95}));
  EXPECT_EQ(l->modelGroup, std::vector<int32_t>({0, 0, 0}));
  // One GPU hosts both pools: 1200... too small for all weights.
  c.gpus = 1;
  c.gpuMemoryBytes = 2000;
  l = planKvLayout(MemoryMode::CrossPool, c, footprints(), 10);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({25})); // 2000 - 1750
  c = {2, 1200, 1};
  EXPECT_EQ(planKvLayout(MemoryMode::CrossPool, c, footprints(), 10)
                .status()
                .message(),
            "the weights pool (1 GPUs of 1200 bytes) cannot hold the 1500 FFN "
            "weight bytes of all models");
  c = {3, 1200, 3};
  EXPECT_EQ(planKvLayout(MemoryMode::CrossPool, c, footprints(), 10)
                .status()
                .message(),
            "crosspool mode expects 1 <= kv GPUs < GPUs (3) but got 3");
}

TEST(MemoryModeTest, KvCachedAndStaticPlaceWholeModels) {
  ClusterSpec c{2, 1200, 1};
  // A (1000) -> gpu0, leaves 200; B (500) -> gpu1, leaves 700; C (250) ->
  // gpu1 (more free), leaves 450.
  absl::StatusOr<KvLayout> l =
      planKvLayout(MemoryMode::KvCached, c, footprints(), 10);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({20, 45}));
  EXPECT_EQ(l->modelGroup, std::vector<int32_t>({0, 1, 1}));
  EXPECT_EQ(l->modelGpu, std::vector<int32_t>({0, 1, 1}));
  // Static: gpu1's 450 bytes split B:C = 0.3:0.2 -> 270 and 180.
  l = planKvLayout(MemoryMode::Static, c, footprints(), 10, {0.5, 0.3, 0.2});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({20, 27, 18}));
  EXPECT_EQ(l->modelGroup, std::vector<int32_t>({0, 1, 2}));
  // Equal split without shares.
  l = planKvLayout(MemoryMode::Static, c, footprints(), 10);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({20, 22, 22}));
  c.gpuMemoryBytes = 900;
  EXPECT_EQ(planKvLayout(MemoryMode::KvCached, c, footprints(), 10)
                .status()
                .message(),
            "model 'A' needs 1000 weight bytes but the emptiest of 2 GPUs has "
            "900 of 900 free");
  EXPECT_EQ(parseMemoryMode("vllm").status().message(),
            "unknown memory mode 'vllm' (expects crosspool, kvcached or "
            "static)");
}

/// CUDA units by hand: 2 MiB chunks; a Qwen3-30B-A3B-shaped model (4 KV
/// heads x 128, bf16: a 16-token page of one layer is 2 * 16 * 4 * 128 * 2 =
/// 32 KiB, 64 per chunk) and an OLMoE-shaped one (16 KV heads: 128 KiB, 16
/// per chunk) on one card.
TEST(MemoryModeTest, CudaChunksOnOneCard) {
  const size_t MiB = 1024 * 1024, GiB = 1024 * MiB;
  std::vector<ModelFootprint> ms = {{"qwen3", 3 * GiB, 54 * GiB},
                                    {"olmoe", 1 * GiB, 12 * GiB}};
  ClusterSpec c;
  c.gpus = 1;
  // 70 GiB of weights + 2000 chunks + 1 MiB that makes no whole chunk.
  c.gpuMemoryBytes = 70 * GiB + 2000 * 2 * MiB + MiB;
  absl::StatusOr<KvLayout> l =
      planKvLayout(MemoryMode::CrossPool, c, ms, 2 * MiB);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({2000}));
  EXPECT_EQ(l->describe(ms, 2 * MiB, {64, 16}),
            "crosspool KV pool: 2000 KV chunks = 4194304000 bytes for qwen3 "
            "(128000 pages), olmoe (32000 pages)\n");
  l = planKvLayout(MemoryMode::KvCached, c, ms, 2 * MiB);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({2000}));
  EXPECT_EQ(l->modelGroup, std::vector<int32_t>({0, 0}));
  // Static: floor(0.75 * 2000.5) = 1500 and floor(0.25 * 2000.5) = 500.
  l = planKvLayout(MemoryMode::Static, c, ms, 2 * MiB, {0.75, 0.25});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->groupChunks, std::vector<int64_t>({1500, 500}));
  c.gpuMemoryBytes = 70 * GiB;
  EXPECT_EQ(planKvLayout(MemoryMode::CrossPool, c, ms, 2 * MiB)
                .status()
                .message(),
            "the KV pool (1 GPUs of 75161927680 bytes) cannot hold the "
            "75161927680 attention-side weight bytes of all models");
}

TEST(MemoryModeTest, ChunksAfterMorePages) {
  // 150 pages in 3 chunks of 64: 42 more fill them, the 43rd maps a 4th.
  EXPECT_EQ(chunksAfterPages(3, 150, 0, 64), 3);
  EXPECT_EQ(chunksAfterPages(3, 150, 42, 64), 3);
  EXPECT_EQ(chunksAfterPages(3, 150, 43, 64), 4);
  EXPECT_EQ(chunksAfterPages(3, 150, 43 + 64, 64), 5);
  EXPECT_EQ(chunksAfterPages(0, 0, 1, 16), 1);
  // Fragmented: 10 pages spread over 5 chunks; the next page fits in them.
  EXPECT_EQ(chunksAfterPages(5, 10, 1, 16), 5);
  EXPECT_EQ(chunksAfterPages(5, 10, 71, 16), 6);
  // CPU: a chunk is a page.
  EXPECT_EQ(chunksAfterPages(7, 7, 3, 1), 10);
}

TEST(MemoryModeTest, KvChunksForCard) {
  const size_t MiB = 1024 * 1024, GiB = 1024 * MiB;
  // 256 chunks exist; 10 GiB free - 2 GiB reserve = 4096 more.
  absl::StatusOr<int64_t> n = kvChunksForCard(10 * GiB, 2 * GiB, 2 * MiB, 256);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 256 + 4096);
  n = kvChunksForCard(10 * GiB + 3 * MiB, 2 * GiB, 2 * MiB, 0);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4097);
  EXPECT_EQ(kvChunksForCard(GiB, 2 * GiB, 2 * MiB, 256).status().message(),
            "the GPU has 1024.0 MiB free after the weights and workspaces, "
            "not more than the 2048.0 MiB reserve (--gpu-reserve-mb): no room "
            "for KV");
}

TEST(TraceTest, CapsPromptsPerModel) {
  std::vector<TraceEntry> t = {
      {0, 100, 5}, {1, 5000, 70}, {2, 5000, 8}, {3, 9000, 64}, {4, 40, 65}};
  std::vector<int> model = {0, 0, 1, 1, 2};
  int64_t outputs = 0;
  std::vector<int64_t> cut =
      capLengthsPerModel(t, model, {4033, 8129, 0}, 64, &outputs);
  EXPECT_EQ(cut, std::vector<int64_t>({1, 1, 0}));
  EXPECT_EQ(outputs, 2);
  std::vector<int64_t> prompts, outs;
  for (const TraceEntry &e : t) {
    prompts.push_back(e.promptTokens);
    outs.push_back(e.outputTokens);
  }
  EXPECT_EQ(prompts, std::vector<int64_t>({100, 4033, 5000, 8129, 40}));
  EXPECT_EQ(outs, std::vector<int64_t>({5, 64, 8, 64, 64}));
}

TEST(ReportTest, PercentilesInterpolateBetweenRanks) {
  std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile(v, 0.99), 3.97);
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 4.0);
  LatencySummary s = summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.p95, 3.85);
  EXPECT_DOUBLE_EQ(s.max, 4.0);
  EXPECT_TRUE(std::isnan(percentile({}, 0.5)));
}

} // namespace
