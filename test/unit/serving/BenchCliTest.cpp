//===- BenchCliTest.cpp - crosspool-bench serve: bad flags and traces -----===//
//
// Every bad input ends with exit status 1 and exactly one line on stderr
// naming the flag / file:line and what was expected. Flags and the trace are
// checked before any plan is opened, so these need no plans.

#include "gtest/gtest.h"

#include "test/unit/serving/BenchCli.h"

#include <fstream>

using crosspool::testing::runBench;

namespace {

void expectError(const std::string &args, const std::string &line) {
  crosspool::testing::CliResult r = runBench(args);
  EXPECT_EQ(r.exitCode, 1) << args;
  EXPECT_EQ(r.err, line + "\n") << args;
}

const std::string kServeError = "crosspool-bench serve: error: ";

TEST(BenchCliTest, SubcommandErrors) {
  const std::string usage =
      "usage: crosspool-bench serve MODEL.cpplan ... [flags] | decode "
      "MODEL.cpplan [flags] (crosspool-bench serve --help / decode --help "
      "list them)";
  expectError("", "crosspool-bench: error: missing subcommand; " + usage);
  expectError("replay", "crosspool-bench: error: unknown subcommand 'replay' "
                        "(expects serve or decode); " +
                            usage);
  crosspool::testing::CliResult dhelp = runBench("decode --help");
  EXPECT_EQ(dhelp.exitCode, 0);
  EXPECT_NE(dhelp.out.find("[--batches 1,8,32] [--contexts 1024,...]"),
            std::string::npos);
  crosspool::testing::CliResult help = runBench("serve --help");
  EXPECT_EQ(help.exitCode, 0);
  EXPECT_NE(help.out.find("--search-rate LO:HI[:ITERS]"), std::string::npos);
  EXPECT_NE(help.out.find("[--tbt-target-ms MS] [--min-prefill-chunk N]"),
            std::string::npos);
}

TEST(BenchCliTest, BadDecodeFlags) {
  const std::string e = "crosspool-bench decode: error: ";
  expectError("decode", e + "expects one MODEL.cpplan but got 0");
  expectError("decode a.cpplan b.cpplan",
              e + "expects one MODEL.cpplan but got 2");
  expectError("decode a.cpplan --batches 1,0",
              e + "--batches expects a comma-separated list of integers >= 1 "
                  "but got '1,0'");
  expectError("decode a.cpplan --contexts 1k",
              e + "--contexts expects a comma-separated list of integers >= "
                  "1 but got '1k'");
  expectError("decode a.cpplan --steps 0",
              e + "--steps expects an integer >= 1 but got '0'");
  expectError("decode a.cpplan --device tpu",
              e + "--device expects cpu or cuda but got 'tpu'");
  expectError("decode a.cpplan --precision bf16",
              e + "--precision bf16 needs --device cuda");
  expectError("decode a.cpplan --steps", e + "--steps expects a value");
  expectError("decode a.cpplan --mode all", e + "unknown flag '--mode'");
}

TEST(BenchCliTest, BadFlags) {
  const std::string m = "serve a.cpplan ";
  expectError("serve", kServeError + "expects at least one MODEL.cpplan");
  expectError(m + "--rate 0", kServeError + "--rate expects a number > 0 but "
                                            "got '0'");
  expectError(m + "--rate fast",
              kServeError + "--rate expects a number > 0 but got 'fast'");
  expectError(m + "--rate", kServeError + "--rate expects a value");
  expectError(m + "--cv -1",
              kServeError + "--cv expects a number > 0 but got '-1'");
  expectError(m + "--requests 0",
              kServeError + "--requests expects an integer >= 1 but got '0'");
  expectError(m + "--warm-replays -1",
              kServeError +
                  "--warm-replays expects an integer >= 0 but got '-1'");
  expectError(m + "--prompt-range 9:3",
              kServeError +
                  "--prompt-range expects LO:HI with 1 <= LO <= HI but got "
                  "'9:3'");
  expectError(m + "--long-context=8",
              kServeError +
                  "--long-context expects LO:HI with 1 <= LO <= HI but got "
                  "'8'");
  expectError(m + "--mode crosspool,vllm",
              kServeError + "--mode: unknown memory mode 'vllm' (expects "
                            "crosspool, kvcached or static)");
  expectError(m + "--popularity cold:2",
              kServeError + "--popularity: bad popularity 'cold:2' (expects "
                            "zipf:S with S >= 0, cold:F with 0 < F < 1, or "
                            "uniform)");
  expectError(m + "--kv-page-bytes 100",
              kServeError + "--kv-page-bytes expects a multiple of 64 but got "
                            "'100'");
  expectError(m + "--policy fifo",
              kServeError + "--policy expects round-robin or oldest-first but "
                            "got 'fifo'");
  expectError(m + "--clock wall",
              kServeError + "--clock expects cost or measured but got 'wall'");
  expectError(m + "--frobnicate 3",
              kServeError + "unknown flag '--frobnicate'");
  expectError(m + "--search-rate 1:4",
              kServeError +
                  "--search-rate and --slo-tbt-ms must be given together");
  expectError(m + "--slo-tbt-ms 50 --search-rate 4:1",
              kServeError + "--search-rate expects LO:HI[:ITERS] with 0 < LO < "
                            "HI and 0 <= ITERS <= 30 but got '4:1'");
  expectError(m + "--slo-tbt-ms 50 --search-rate 1:4:31",
              kServeError + "--search-rate expects LO:HI[:ITERS] with 0 < LO < "
                            "HI and 0 <= ITERS <= 30 but got '1:4:31'");
  expectError(m + "--trace t.csv --cv 2",
              kServeError + "--cv is for synthetic arrivals and cannot be used "
                            "with --trace");
  expectError(m + "--gpus 0",
              kServeError + "--gpus expects an integer >= 1 but got '0'");
  expectError(m + "--gpu-mem-gb 0",
              kServeError + "--gpu-mem-gb expects a number > 0 but got '0'");
  expectError(m + "--gpu-mem-mb 2 --gpu-mem-gb 1",
              kServeError +
                  "--gpu-mem-mb and --gpu-mem-gb are alternatives: give one");
  expectError(m + "--gpu-reserve-mb 512",
              kServeError + "--gpu-reserve-mb is for --device cuda (the CPU "
                            "pool is sized by --gpu-mem-mb)");
  expectError(m + "--device cuda --gpu-reserve-mb -1",
              kServeError +
                  "--gpu-reserve-mb expects a number >= 0 but got '-1'");
  expectError(m + "--device cuda --gpus 2",
              kServeError + "--device cuda with --gpus 2 needs --gpu-mem-gb "
                            "(the memory of each simulated GPU); without it "
                            "the one card is the cluster (--gpus 1)");
  expectError(m + "--max-wall-s 0",
              kServeError + "--max-wall-s expects a number > 0 but got '0'");
  expectError(m + "--max-wall-s=soon",
              kServeError + "--max-wall-s expects a number > 0 but got 'soon'");
  expectError(m + "--watermark-chunks -2",
              kServeError +
                  "--watermark-chunks expects an integer >= 0 but got '-2'");
  expectError(m + "--tbt-target-ms -1",
              kServeError +
                  "--tbt-target-ms expects a number >= 0 but got '-1'");
  expectError(m + "--tbt-target-ms=fast",
              kServeError +
                  "--tbt-target-ms expects a number >= 0 but got 'fast'");
  expectError(m + "--tbt-target-ms inf",
              kServeError +
                  "--tbt-target-ms expects a number >= 0 but got 'inf'");
  expectError(m + "--tbt-target-ms",
              kServeError + "--tbt-target-ms expects a value");
  expectError(m + "--min-prefill-chunk 0",
              kServeError +
                  "--min-prefill-chunk expects an integer >= 1 but got '0'");
  expectError(m + "--min-prefill-chunk 8.5",
              kServeError +
                  "--min-prefill-chunk expects an integer >= 1 but got '8.5'");
  expectError(m + "--watermark-pages 2",
              kServeError + "unknown flag '--watermark-pages'");
}

TEST(BenchCliTest, MalformedTraces) {
  std::string dir = ::testing::TempDir();
  auto trace = [&](const std::string &name, const std::string &text) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  };
  const std::string h = "TIMESTAMP,ContextTokens,GeneratedTokens\r\n";
  std::string p = trace("hdr.csv", "ts,in,out\n1,2,3\n");
  expectError("serve a.cpplan --trace " + p,
              kServeError + p +
                  ":1: expects the header "
                  "'TIMESTAMP,ContextTokens,GeneratedTokens' but got "
                  "'ts,in,out'");
  p = trace("num.csv", h + "2023-11-16 18:15:46.1,12,x4\r\n");
  expectError("serve a.cpplan --trace " + p,
              kServeError + p +
                  ":2: GeneratedTokens expects an integer but got 'x4'");
  p = trace("neg.csv", h + "2023-11-16 18:15:46.1,12,4\r\n"
                           "2023-11-16 18:15:47.1,-12,4\r\n");
  expectError("serve a.cpplan --trace " + p,
              kServeError + p + ":3: ContextTokens expects >= 1 but got -12");
  p = trace("order.csv", h + "2023-11-16 18:15:46.1,12,4\r\n"
                             "2023-11-16 18:15:45.1,12,4\r\n");
  expectError("serve a.cpplan --trace " + p,
              kServeError + p +
                  ":3: timestamps must not go back in time: 2023-11-16 "
                  "18:15:45.1 is before the previous row");
  expectError("serve a.cpplan --trace /nonexistent.csv",
              kServeError + "cannot read trace '/nonexistent.csv'");
}

} // namespace
