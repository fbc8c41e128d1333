//===- crosspool-run.cpp - Run one prompt through a compiled plan ---------===//
//
//   crosspool-run model.cpplan --prompt-ids 3,17,42 [--max-new-tokens 16]
//       [--logits-out F.safetensors] [--checkpoint DIR] [--kv-pages N]
//       [--kv-page-bytes B] [--stop-at-eos]
//       [--device cpu|cuda] [--precision fp32|bf16]
//
// Prints exactly one JSON object {"generated_ids": [...]} on stdout. Greedy;
// stops at max-new-tokens (at the first eos only with --stop-at-eos).
// --logits-out writes a safetensors file with one F32 tensor `logits`
// [prompt_len, vocab]. Any error: one line `crosspool-run: error: ...` on
// stderr and exit status 1.
//
//===----------------------------------------------------------------------===//
#include "runtime/base/Status.h"
#include "runtime/base/ToolMain.h"
#include "runtime/engine/Runtime.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

using namespace crosspool::runtime;

namespace {

struct Args {
  std::string plan;
  std::vector<int32_t> promptIds;
  bool havePrompt = false;
  int64_t maxNewTokens = 16;
  std::string logitsOut;
  std::string checkpoint;
  RuntimeOptions runtime;
  bool stopAtEos = false;
};

const char *kUsage =
    "usage: crosspool-run MODEL.cpplan --prompt-ids ID,ID,... "
    "[--max-new-tokens N] [--logits-out FILE.safetensors] [--checkpoint DIR] "
    "[--kv-pages N] [--kv-page-bytes B] [--stop-at-eos] [--device cpu|cuda] "
    "[--precision fp32|bf16]";

template <typename T>
absl::Status parseNumber(const std::string &flag, const std::string &text,
                         T min, T *out) {
  int64_t v;
  if (!absl::SimpleAtoi(text, &v) || v < int64_t(min) ||
      uint64_t(v) > uint64_t(std::numeric_limits<T>::max()))
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": expects an integer >= ", min, " but got '", text, "'"));
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

absl::Status parseIds(const std::string &text, std::vector<int32_t> *ids) {
  if (text.empty())
    return absl::InvalidArgumentError(
        "--prompt-ids: empty prompt: expects at least one id");
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id))
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt-ids: '", part, "' is not an integer id"));
    ids->push_back(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<Args> parseArgs(int argc, char **argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg.rfind("--", 0) != 0) {
      if (!args.plan.empty())
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", arg,
                         "' (plan already given: '", args.plan, "')"));
      args.plan = arg;
      continue;
    }
    size_t eq = arg.find('=');
    bool inlineValue = eq != std::string::npos;
    if (inlineValue) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (arg == "--stop-at-eos") {
      if (inlineValue)
        return absl::InvalidArgumentError("--stop-at-eos takes no value");
      args.stopAtEos = true;
      continue;
    }
    if (arg == "--help" || arg == "-h")
      return absl::InvalidArgumentError(kUsage);
    static const char *const kValued[] = {"--prompt-ids", "--max-new-tokens",
                                          "--logits-out", "--checkpoint",
                                          "--kv-pages",   "--kv-page-bytes",
                                          "--device",     "--precision"};
    if (std::find(std::begin(kValued), std::end(kValued), arg) ==
        std::end(kValued))
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", arg, "'; ", kUsage));
    if (!inlineValue) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(
            absl::StrCat(arg, " expects a value"));
      value = argv[++i];
    }
    if (arg == "--prompt-ids") {
      args.promptIds.clear();
      CP_RETURN_IF_ERROR(parseIds(value, &args.promptIds));
      args.havePrompt = true;
    } else if (arg == "--max-new-tokens") {
      CP_RETURN_IF_ERROR(
          parseNumber<int64_t>(arg, value, 0, &args.maxNewTokens));
    } else if (arg == "--logits-out") {
      args.logitsOut = value;
    } else if (arg == "--device") {
      CP_ASSIGN_OR_RETURN(args.runtime.device, parseDevice(value));
    } else if (arg == "--precision") {
      CP_ASSIGN_OR_RETURN(args.runtime.precision, parsePrecision(value));
    } else if (arg == "--checkpoint") {
      args.checkpoint = value;
    } else if (arg == "--kv-pages") {
      CP_RETURN_IF_ERROR(
          parseNumber<int32_t>(arg, value, 1, &args.runtime.kvPages));
    } else {
      CP_RETURN_IF_ERROR(
          parseNumber<size_t>(arg, value, 1, &args.runtime.kvPageBytes));
    }
  }
  if (args.plan.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("missing the plan file; ", kUsage));
  if (!args.havePrompt)
    return absl::InvalidArgumentError(
        absl::StrCat("missing --prompt-ids; ", kUsage));
  return args;
}

/// One F32 tensor `logits` [rows, vocab].
absl::Status writeLogits(const std::string &path,
                         const std::vector<float> &logits, int64_t rows,
                         int64_t vocab) {
  std::string header = absl::StrCat(
      "{\"logits\":{\"dtype\":\"F32\",\"shape\":[", rows, ",", vocab,
      "],\"data_offsets\":[0,", logits.size() * sizeof(float), "]}}");
  while (header.size() % 8)
    header += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t len = header.size();
  out.write(reinterpret_cast<const char *>(&len), sizeof(len));
  out.write(header.data(), header.size());
  out.write(reinterpret_cast<const char *>(logits.data()),
            logits.size() * sizeof(float));
  out.close();
  if (!out)
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot write the logits file"));
  return absl::OkStatus();
}

absl::Status runMain(int argc, char **argv) {
  CP_ASSIGN_OR_RETURN(Args args, parseArgs(argc, argv));
  CP_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt,
                      Runtime::create(args.runtime));
  LoadOptions load;
  load.checkpointDir = args.checkpoint;
  CP_ASSIGN_OR_RETURN(ModelId model, rt->loadModel(args.plan, load));
  CP_ASSIGN_OR_RETURN(const ModelInfo *info, rt->modelInfo(model));
  GenerateOptions opts;
  opts.maxNewTokens = args.maxNewTokens;
  opts.stopAtEos = args.stopAtEos;
  opts.wantPromptLogits = !args.logitsOut.empty();
  CP_ASSIGN_OR_RETURN(GenerateResult result,
                      rt->generate(model, args.promptIds, opts));
  if (!args.logitsOut.empty())
    CP_RETURN_IF_ERROR(writeLogits(args.logitsOut, result.promptLogits,
                                   int64_t(args.promptIds.size()),
                                   info->vocabSize));
  std::printf("{\"generated_ids\": [%s]}\n",
              absl::StrJoin(result.generatedIds, ", ").c_str());
  return absl::OkStatus();
}

} // namespace

int main(int argc, char **argv) {
  if (crosspool::tools::printHelpIfAsked(argc, argv, kUsage))
    return 0;
  absl::Status status = runMain(argc, argv);
  if (!status.ok()) {
    crosspool::tools::printToolError("crosspool-run", status);
    return 1;
  }
  return 0;
}
