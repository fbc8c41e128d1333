//===- ServeArgs.cpp - Flags of `crosspool-bench serve` -------------------===//

#include "tools/crosspool-bench/ServeArgs.h"

#include "runtime/base/Status.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include <cmath>
#include <functional>
#include <map>

namespace crosspool::bench {

using namespace crosspool::runtime;

const char *kServeUsage =
    "usage: crosspool-bench serve MODEL.cpplan [MODEL.cpplan ...] "
    "[--mode crosspool|kvcached|static|all[,...]] "
    "[--trace FILE.csv | --cv C] [--rate R] [--requests N] "
    "[--prompt-range LO:HI] [--output-range LO:HI] [--long-context LO:HI] "
    "[--max-prompt N] [--max-output N] [--popularity zipf:S|cold:F|uniform] "
    "[--seed N] [--gpus N] [--gpu-mem-mb MB | --gpu-mem-gb GB] [--kv-gpus N] "
    "[--gpu-reserve-mb MB] "
    "[--kv-page-bytes B] [--device cpu|cuda] [--precision fp32|bf16] "
    "[--max-step-tokens N] [--max-batch-seqs N] "
    "[--watermark-chunks N] [--policy round-robin|oldest-first] "
    "[--tbt-target-ms MS] [--min-prefill-chunk N] "
    "[--clock cost|measured] [--step-base-us US] [--per-token-us US] "
    "[--per-context-token-us US] [--weight-bytes-per-us B] "
    "[--slo-tbt-ms MS [--slo-ttft-ms MS] --search-rate LO:HI[:ITERS]] "
    "[--max-wall-s S] [--warm-replays N] [--json-out FILE] [--quiet]";

namespace {

absl::Status bad(const std::string &flag, const std::string &expects,
                 const std::string &got) {
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " expects ", expects, " but got '", got, "'"));
}

absl::Status parseInt(const std::string &flag, const std::string &v,
                      int64_t min, int64_t *out) {
  if (!absl::SimpleAtoi(v, out) || *out < min)
    return bad(flag, absl::StrCat("an integer >= ", min), v);
  return absl::OkStatus();
}

absl::Status parseDouble(const std::string &flag, const std::string &v,
                         double min, bool strict, double *out) {
  if (!absl::SimpleAtod(v, out) || !std::isfinite(*out) ||
      (strict ? *out <= min : *out < min))
    return bad(flag, absl::StrCat("a number ", strict ? "> " : ">= ", min), v);
  return absl::OkStatus();
}

absl::Status parseRange(const std::string &flag, const std::string &v,
                        int64_t min, Range *out) {
  std::vector<std::string> p = absl::StrSplit(v, ':');
  if (p.size() != 2 || !absl::SimpleAtoi(p[0], &out->lo) ||
      !absl::SimpleAtoi(p[1], &out->hi) || out->lo < min || out->hi < out->lo)
    return bad(flag, absl::StrCat("LO:HI with ", min, " <= LO <= HI"), v);
  return absl::OkStatus();
}

using Handler = std::function<absl::Status(const std::string &)>;

/// Walks argv: `switches` take no value, `flags` take the next argument (or
/// --flag=value), anything else not starting with "--" is positional.
absl::Status parseFlagList(const std::vector<std::string> &argv,
                           const std::map<std::string, Handler> &flags,
                           const std::map<std::string, bool *> &switches,
                           std::vector<std::string> *positional) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string &arg = argv[i];
    if (auto sw = switches.find(arg); sw != switches.end()) {
      *sw->second = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      positional->push_back(arg);
      continue;
    }
    std::string name = arg, value;
    bool inlineValue = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inlineValue = true;
    }
    auto it = flags.find(name);
    if (it == flags.end())
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", name, "'"));
    if (!inlineValue) {
      if (i + 1 >= argv.size())
        return absl::InvalidArgumentError(
            absl::StrCat(name, " expects a value"));
      value = argv[++i];
    }
    CP_RETURN_IF_ERROR(it->second(value));
  }
  return absl::OkStatus();
}

/// A comma-separated list of integers >= min.
absl::Status parseIntList(const std::string &flag, const std::string &v,
                          int64_t min, std::vector<int64_t> *out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(v, ',')) {
    int64_t x = 0;
    if (!absl::SimpleAtoi(part, &x) || x < min)
      return bad(flag, absl::StrCat("a comma-separated list of integers >= ",
                                    min),
                 v);
    out->push_back(x);
  }
  return absl::OkStatus();
}

Handler deviceFlag(Device *out) {
  return [out](const std::string &v) -> absl::Status {
    absl::StatusOr<Device> d = parseDevice(v);
    if (!d.ok())
      return bad("--device", "cpu or cuda", v);
    *out = *d;
    return absl::OkStatus();
  };
}

Handler precisionFlag(Precision *out) {
  return [out](const std::string &v) -> absl::Status {
    absl::StatusOr<Precision> p = parsePrecision(v);
    if (!p.ok())
      return bad("--precision", "fp32 or bf16", v);
    *out = *p;
    return absl::OkStatus();
  };
}

} // namespace

absl::StatusOr<ServeArgs> parseServeArgs(const std::vector<std::string> &argv) {
  ServeArgs a;
  a.engine.cost = StepCostModel();
  a.cluster.gpus = 3;
  bool haveCv = false, haveSearch = false, haveMb = false, haveGb = false,
       haveReserve = false;
  double gpuMemGb = 0;
  int64_t i64 = 0;
  std::map<std::string, Handler> flags = {
      {"--mode",
       [&](const std::string &v) -> absl::Status {
         a.modes.clear();
         for (absl::string_view m : absl::StrSplit(v, ',')) {
           if (m == "all") {
             a.modes = {MemoryMode::CrossPool, MemoryMode::KvCached,
                        MemoryMode::Static};
             continue;
           }
           absl::StatusOr<MemoryMode> mode = parseMemoryMode(m);
           if (!mode.ok())
             return absl::InvalidArgumentError(
                 absl::StrCat("--mode: ", mode.status().message()));
           a.modes.push_back(*mode);
         }
         return absl::OkStatus();
       }},
      {"--trace",
       [&](const std::string &v) {
         a.trace = v;
         return absl::OkStatus();
       }},
      {"--rate",
       [&](const std::string &v) {
         return parseDouble("--rate", v, 0, true, &a.rate);
       }},
      {"--cv",
       [&](const std::string &v) {
         haveCv = true;
         return parseDouble("--cv", v, 0, true, &a.cv);
       }},
      {"--requests",
       [&](const std::string &v) {
         return parseInt("--requests", v, 1, &a.requests);
       }},
      {"--prompt-range",
       [&](const std::string &v) {
         return parseRange("--prompt-range", v, 1, &a.promptRange);
       }},
      {"--output-range",
       [&](const std::string &v) {
         return parseRange("--output-range", v, 1, &a.outputRange);
       }},
      {"--long-context",
       [&](const std::string &v) {
         return parseRange("--long-context", v, 1, &a.longContext);
       }},
      {"--max-prompt",
       [&](const std::string &v) {
         return parseInt("--max-prompt", v, 1, &a.maxPrompt);
       }},
      {"--max-output",
       [&](const std::string &v) {
         return parseInt("--max-output", v, 1, &a.maxOutput);
       }},
      {"--popularity",
       [&](const std::string &v) -> absl::Status {
         absl::StatusOr<Popularity> p = parsePopularity(v);
         if (!p.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--popularity: ", p.status().message()));
         a.popularity = *p;
         return absl::OkStatus();
       }},
      {"--seed",
       [&](const std::string &v) -> absl::Status {
         CP_RETURN_IF_ERROR(parseInt("--seed", v, 0, &i64));
         a.seed = uint64_t(i64);
         return absl::OkStatus();
       }},
      {"--gpus",
       [&](const std::string &v) -> absl::Status {
         CP_RETURN_IF_ERROR(parseInt("--gpus", v, 1, &i64));
         a.cluster.gpus = int32_t(i64);
         return absl::OkStatus();
       }},
      {"--kv-gpus",
       [&](const std::string &v) -> absl::Status {
         CP_RETURN_IF_ERROR(parseInt("--kv-gpus", v, 1, &i64));
         a.cluster.kvGpus = int32_t(i64);
         return absl::OkStatus();
       }},
      {"--gpu-mem-mb",
       [&](const std::string &v) {
         haveMb = true;
         return parseDouble("--gpu-mem-mb", v, 0, true, &a.gpuMemMb);
       }},
      {"--gpu-mem-gb",
       [&](const std::string &v) {
         haveGb = true;
         return parseDouble("--gpu-mem-gb", v, 0, true, &gpuMemGb);
       }},
      {"--gpu-reserve-mb",
       [&](const std::string &v) {
         haveReserve = true;
         return parseDouble("--gpu-reserve-mb", v, 0, false, &a.gpuReserveMb);
       }},
      {"--max-wall-s",
       [&](const std::string &v) {
         return parseDouble("--max-wall-s", v, 0, true, &a.maxWallS);
       }},
      {"--warm-replays",
       [&](const std::string &v) {
         return parseInt("--warm-replays", v, 0, &a.warmReplays);
       }},
      {"--kv-page-bytes",
       [&](const std::string &v) -> absl::Status {
         CP_RETURN_IF_ERROR(parseInt("--kv-page-bytes", v, 64, &i64));
         if (i64 % 64)
           return bad("--kv-page-bytes", "a multiple of 64", v);
         a.kvPageBytes = size_t(i64);
         return absl::OkStatus();
       }},
      {"--device", deviceFlag(&a.device)},
      {"--precision", precisionFlag(&a.precision)},
      {"--max-step-tokens",
       [&](const std::string &v) {
         return parseInt("--max-step-tokens", v, 1, &a.engine.maxStepTokens);
       }},
      {"--max-batch-seqs",
       [&](const std::string &v) -> absl::Status {
         CP_RETURN_IF_ERROR(parseInt("--max-batch-seqs", v, 1, &i64));
         a.engine.maxBatchSeqs = int32_t(i64);
         return absl::OkStatus();
       }},
      {"--watermark-chunks",
       [&](const std::string &v) {
         return parseInt("--watermark-chunks", v, 0,
                         &a.engine.watermarkChunks);
       }},
      {"--tbt-target-ms",
       [&](const std::string &v) {
         return parseDouble("--tbt-target-ms", v, 0, false,
                            &a.engine.tbtTargetMs);
       }},
      {"--min-prefill-chunk",
       [&](const std::string &v) {
         return parseInt("--min-prefill-chunk", v, 1,
                         &a.engine.minPrefillChunk);
       }},
      {"--policy",
       [&](const std::string &v) -> absl::Status {
         if (v == "round-robin")
           a.engine.policy = ServingEngine::Policy::RoundRobin;
         else if (v == "oldest-first")
           a.engine.policy = ServingEngine::Policy::OldestFirst;
         else
           return bad("--policy", "round-robin or oldest-first", v);
         return absl::OkStatus();
       }},
      {"--clock",
       [&](const std::string &v) -> absl::Status {
         if (v == "cost")
           a.engine.clock = ServingEngine::Clock::CostModel;
         else if (v == "measured")
           a.engine.clock = ServingEngine::Clock::Measured;
         else
           return bad("--clock", "cost or measured", v);
         return absl::OkStatus();
       }},
      {"--step-base-us",
       [&](const std::string &v) {
         return parseDouble("--step-base-us", v, 0, false,
                            &a.engine.cost.stepBaseUs);
       }},
      {"--per-token-us",
       [&](const std::string &v) {
         return parseDouble("--per-token-us", v, 0, false,
                            &a.engine.cost.perTokenUs);
       }},
      {"--per-context-token-us",
       [&](const std::string &v) {
         return parseDouble("--per-context-token-us", v, 0, false,
                            &a.engine.cost.perContextTokenUs);
       }},
      {"--weight-bytes-per-us",
       [&](const std::string &v) {
         return parseDouble("--weight-bytes-per-us", v, 0, false,
                            &a.engine.cost.weightBytesPerUs);
       }},
      {"--slo-tbt-ms",
       [&](const std::string &v) {
         return parseDouble("--slo-tbt-ms", v, 0, true, &a.sloTbtMs);
       }},
      {"--slo-ttft-ms",
       [&](const std::string &v) {
         return parseDouble("--slo-ttft-ms", v, 0, true, &a.sloTtftMs);
       }},
      {"--search-rate",
       [&](const std::string &v) -> absl::Status {
         haveSearch = true;
         std::vector<std::string> p = absl::StrSplit(v, ':');
         int64_t iters = a.searchIters;
         if ((p.size() != 2 && p.size() != 3) ||
             !absl::SimpleAtod(p[0], &a.searchLo) ||
             !absl::SimpleAtod(p[1], &a.searchHi) || !(a.searchLo > 0) ||
             !(a.searchHi > a.searchLo) || !std::isfinite(a.searchHi) ||
             (p.size() == 3 &&
              (!absl::SimpleAtoi(p[2], &iters) || iters < 0 || iters > 30)))
           return bad("--search-rate",
                      "LO:HI[:ITERS] with 0 < LO < HI and 0 <= ITERS <= 30", v);
         a.searchIters = int(iters);
         return absl::OkStatus();
       }},
      {"--json-out",
       [&](const std::string &v) {
         a.jsonOut = v;
         return absl::OkStatus();
       }},
  };
  CP_RETURN_IF_ERROR(
      parseFlagList(argv, flags, {{"--quiet", &a.quiet}}, &a.plans));
  if (a.plans.empty())
    return absl::InvalidArgumentError("expects at least one MODEL.cpplan");
  if (!a.trace.empty() && haveCv)
    return absl::InvalidArgumentError(
        "--cv is for synthetic arrivals and cannot be used with --trace");
  if (a.trace.empty() && a.rate == 0)
    a.rate = 4.0;
  if (haveSearch != (a.sloTbtMs > 0))
    return absl::InvalidArgumentError(
        "--search-rate and --slo-tbt-ms must be given together");
  if (a.sloTtftMs > 0 && !haveSearch)
    return absl::InvalidArgumentError("--slo-ttft-ms needs --search-rate");
  if (haveMb && haveGb)
    return absl::InvalidArgumentError(
        "--gpu-mem-mb and --gpu-mem-gb are alternatives: give one");
  if (haveGb)
    a.gpuMemMb = gpuMemGb * 1024;
  a.gpuMemGiven = haveMb || haveGb;
  if (haveReserve && a.device != Device::kCuda)
    return absl::InvalidArgumentError(
        "--gpu-reserve-mb is for --device cuda (the CPU pool is sized by "
        "--gpu-mem-mb)");
  if (a.device == Device::kCuda && a.cluster.gpus > 1 && !a.gpuMemGiven)
    return absl::InvalidArgumentError(absl::StrCat(
        "--device cuda with --gpus ", a.cluster.gpus,
        " needs --gpu-mem-gb (the memory of each simulated GPU); without it "
        "the one card is the cluster (--gpus 1)"));
  a.cluster.gpuMemoryBytes = size_t(a.gpuMemMb * 1024 * 1024);
  if (a.warmReplays < 0)
    a.warmReplays = a.device == Device::kCuda ? 1 : 0;
  return a;
}

const char *kDecodeUsage =
    "usage: crosspool-bench decode MODEL.cpplan [--batches 1,8,32] "
    "[--contexts 1024,...] [--steps N] [--device cpu|cuda] "
    "[--precision fp32|bf16] [--json-out FILE]";

absl::StatusOr<DecodeArgs>
parseDecodeArgs(const std::vector<std::string> &argv) {
  DecodeArgs a;
  std::vector<std::string> plans;
  std::map<std::string, Handler> flags = {
      {"--batches",
       [&](const std::string &v) {
         return parseIntList("--batches", v, 1, &a.batches);
       }},
      {"--contexts",
       [&](const std::string &v) {
         return parseIntList("--contexts", v, 1, &a.contexts);
       }},
      {"--steps",
       [&](const std::string &v) {
         return parseInt("--steps", v, 1, &a.steps);
       }},
      {"--device", deviceFlag(&a.device)},
      {"--precision", precisionFlag(&a.precision)},
      {"--json-out",
       [&](const std::string &v) {
         a.jsonOut = v;
         return absl::OkStatus();
       }},
  };
  CP_RETURN_IF_ERROR(parseFlagList(argv, flags, {}, &plans));
  if (plans.size() != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "expects one MODEL.cpplan but got ", plans.size()));
  a.plan = plans[0];
  if (a.precision == Precision::kBf16 && a.device != Device::kCuda)
    return absl::InvalidArgumentError("--precision bf16 needs --device cuda");
  return a;
}

} // namespace crosspool::bench
