//===- PlanTest.cpp - Loading .cpplan files and checking their weights ----===//
#include "runtime/format/PlanFile.h"
#include "runtime/format/VerifyWeights.h"

#include "test/unit/runtime/TestPlans.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

namespace crosspool::testing {
namespace {

using runtime::PlanFile;
using ::testing::HasSubstr;

std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "_" + name;
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string loadError(std::string bytes, std::string name = "x.cpplan") {
  auto file = PlanFile::fromBytes(std::move(bytes), std::move(name));
  EXPECT_FALSE(file.ok()) << "plan unexpectedly loaded";
  return file.ok() ? "" : std::string(file.status().message());
}

TEST(PlanFileTest, LoadsValidPlanFromDisk) {
  std::string path = tempPath("valid.cpplan");
  writeFile(path, makeTwoPoolPlan().serialize());
  auto file = PlanFile::load(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const fb::Plan &plan = (*file)->plan();
  EXPECT_EQ(plan.version(), fb::kPlanSchemaVersion);
  EXPECT_EQ(plan.model_name()->str(), "tiny");
  EXPECT_EQ(plan.streams()->size(), 2u);
  EXPECT_EQ(plan.streams()->Get(0)->instrs()->size(), 10u);
  EXPECT_EQ(plan.weights()->Get(kLmHead)->name()->str(), "lm_head.weight");
  EXPECT_EQ((*file)->name(), path);
  std::remove(path.c_str());
}

TEST(PlanFileTest, MissingAndEmptyFiles) {
  std::string path = tempPath("absent.cpplan");
  auto file = PlanFile::load(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(file.status().message(),
            path + ": cannot open plan file (No such file or directory)");

  std::string empty = tempPath("empty.cpplan");
  writeFile(empty, "");
  file = PlanFile::load(empty);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().message(), empty + ": empty plan file");
  std::remove(empty.c_str());
}

TEST(PlanFileTest, BadVersionNamesBothVersions) {
  TPlan p = makeTwoPoolPlan();
  p.version = 7;
  auto file = PlanFile::fromBytes(p.serialize(), "model.cpplan");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(file.status().message(),
            "model.cpplan: plan schema version 7 is not supported (this "
            "runtime reads version 2)");
  // An absent version field reads as 0.
  p.version = 0;
  EXPECT_EQ(loadError(p.serialize()),
            "x.cpplan: plan schema version 0 is not supported (this runtime "
            "reads version 2)");
}

TEST(PlanFileTest, BadIdentifier) {
  std::string bytes = makeTwoPoolPlan().serialize();
  bytes.replace(4, 4, "XXXX");
  EXPECT_EQ(loadError(bytes), "x.cpplan: not a CrossPool plan (bad file "
                              "identifier)");
  EXPECT_EQ(loadError("CPPL"), "x.cpplan: not a CrossPool plan (bad file "
                               "identifier)");
  EXPECT_EQ(loadError("{\"not\": \"a plan\"}"),
            "x.cpplan: not a CrossPool plan (bad file identifier)");
}

TEST(PlanFileTest, TruncatedAndCorruptBytes) {
  std::string bytes = makeTwoPoolPlan().serialize();
  EXPECT_EQ(loadError(bytes.substr(0, bytes.size() / 2)),
            "x.cpplan: corrupt plan (FlatBuffers verification failed)");
  EXPECT_EQ(loadError(bytes.substr(0, bytes.size() - 8)),
            "x.cpplan: corrupt plan (FlatBuffers verification failed)");
  // Root offset pointing past the end of the buffer.
  std::string badRoot = bytes;
  badRoot[0] = badRoot[1] = badRoot[2] = '\x7f';
  EXPECT_EQ(loadError(badRoot),
            "x.cpplan: corrupt plan (FlatBuffers verification failed)");
}

TEST(PlanFileTest, EveryCorruptedByteIsRejectedOrChecked) {
  // Flipping any single byte must give a verified-and-checked plan or a
  // one-line error, never a crash (ASan builds make this strict).
  std::string bytes = makeTwoPoolPlan().serialize();
  int rejected = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char flip : {0x01u, 0x80u, 0xffu}) {
      std::string mutated = bytes;
      mutated[i] = static_cast<char>(mutated[i] ^ flip);
      auto file = PlanFile::fromBytes(mutated, "m.cpplan");
      if (!file.ok()) {
        ++rejected;
        std::string message(file.status().message());
        EXPECT_EQ(message.rfind("m.cpplan: ", 0), 0u) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      }
    }
  }
  EXPECT_GT(rejected, static_cast<int>(bytes.size()));
}

TEST(PlanFileTest, MissingRequiredField) {
  TPlan p = makeTwoPoolPlan();
  p.omitStreams = true;
  EXPECT_EQ(loadError(p.serialize()),
            "x.cpplan: missing required field streams");
}

TEST(PlanFileTest, StreamCheckErrorsArePrefixedWithTheFile) {
  TPlan p = makeTwoPoolPlan();
  std::swap(p.streams[0].instrs[5], p.streams[0].instrs[6]);
  EXPECT_THAT(loadError(p.serialize(), "model.cpplan"),
              HasSubstr("model.cpplan: stream 0 (KV) instr 5 (Recv): "
                        "deadlocks: message 1 of channel 1"));
}

/// Offsets of tensors computed from the raw safetensors header, independent
/// of the checkpoint reader: 8 + header length + data_offsets[0].
TWeight rawWeight(const std::string &dir, const std::string &file,
                  const std::string &name, fb::Pool pool) {
  std::ifstream in(dir + "/" + file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char *>(&n), 8);
  std::string header(n, '\0');
  in.read(&header[0], n);
  auto json = nlohmann::json::parse(header);
  const auto &t = json.at(name);
  TWeight w;
  w.name = name;
  w.file = file;
  uint64_t begin = t.at("data_offsets")[0], end = t.at("data_offsets")[1];
  w.offset = 8 + n + begin;
  w.nbytes = end - begin;
  std::string dtype = t.at("dtype");
  w.dtype = dtype == "BF16"  ? fb::DType::BF16
            : dtype == "F16" ? fb::DType::F16
                             : fb::DType::F32;
  w.shape = t.at("shape").get<std::vector<int64_t>>();
  w.pool = pool;
  return w;
}

class VerifyWeightsTest : public ::testing::Test {
protected:
  static std::string modelDir(const std::string &name) {
    return std::string(CROSSPOOL_SOURCE_DIR) + "/test/data/models/" + name;
  }
  absl::Status verify(const TPlan &p, const runtime::Checkpoint &ckpt) {
    bytes_ = p.serialize();
    return runtime::verifyPlanWeights(*fb::GetPlan(bytes_.data()), ckpt);
  }
  std::string bytes_;
};

TEST_F(VerifyWeightsTest, MatchingWeightsPass) {
  std::string dir = modelDir("mixtral_tiny");
  auto ckpt = runtime::Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  TPlan p;
  p.weights = {
      rawWeight(dir, "model.safetensors", "model.embed_tokens.weight",
                fb::Pool::KV),
      rawWeight(dir, "model.safetensors",
                "model.layers.0.block_sparse_moe.experts.0.w1.weight",
                fb::Pool::Weights),
      rawWeight(dir, "model.safetensors", "lm_head.weight", fb::Pool::KV)};
  EXPECT_TRUE(verify(p, **ckpt).ok()) << verify(p, **ckpt);
}

TEST_F(VerifyWeightsTest, ShardedBf16CheckpointNamesTheShard) {
  std::string dir = modelDir("qwen2_moe_tiny");
  auto ckpt = runtime::Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::ifstream in(dir + "/model.safetensors.index.json");
  auto index = nlohmann::json::parse(in);
  TPlan p;
  for (auto [name, file] : index.at("weight_map").items())
    p.weights.push_back(rawWeight(dir, file, name, fb::Pool::KV));
  ASSERT_GT(p.weights.size(), 10u);
  EXPECT_TRUE(verify(p, **ckpt).ok()) << verify(p, **ckpt);
  EXPECT_EQ(p.weights[0].dtype, fb::DType::BF16);

  // The same tensor claimed in another shard.
  TWeight &w = p.weights[0];
  std::string real = w.file;
  w.file = real == "model-00001-of-00010.safetensors"
               ? "model-00002-of-00010.safetensors"
               : "model-00001-of-00010.safetensors";
  absl::Status status = verify(p, **ckpt);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("plan weight 0 '", w.name, "': plan says file ",
                         w.file, " but checkpoint ", dir, " has ", real));
}

TEST_F(VerifyWeightsTest, EachMismatchIsNamed) {
  std::string dir = modelDir("mixtral_tiny");
  auto ckpt = runtime::Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  TPlan base;
  base.weights = {
      rawWeight(dir, "model.safetensors", "lm_head.weight", fb::Pool::KV),
      rawWeight(dir, "model.safetensors", "model.embed_tokens.weight",
                fb::Pool::KV)};
  const TWeight good = base.weights[1];
  std::string prefix = "plan weight 1 'model.embed_tokens.weight': ";

  TPlan p = base;
  p.weights[1].offset += 4;
  EXPECT_EQ(verify(p, **ckpt).message(),
            absl::StrCat(prefix, "plan says bytes [", good.offset + 4, ", ",
                         good.offset + good.nbytes + 4, ") but checkpoint ",
                         dir, " has [", good.offset, ", ",
                         good.offset + good.nbytes, ")"));
  p = base;
  p.weights[1].nbytes = 8;
  EXPECT_EQ(verify(p, **ckpt).message(),
            absl::StrCat(prefix, "plan says nbytes 8 but shape [256, 64] of "
                                 "F32 needs ",
                         good.nbytes));
  // A contiguous view inside the tensor (one expert of a stacked tensor) is
  // fine: rows 1..2 of the embedding.
  p = base;
  p.weights[1].offset += 64 * 4;
  p.weights[1].nbytes = 2 * 64 * 4;
  p.weights[1].shape = {2, 64};
  EXPECT_TRUE(verify(p, **ckpt).ok()) << verify(p, **ckpt);
  p = base;
  p.weights[1].dtype = fb::DType::BF16;
  EXPECT_EQ(verify(p, **ckpt).message(),
            absl::StrCat(prefix, "plan says dtype BF16 but checkpoint ", dir,
                         " has F32"));
  p = base;
  p.weights[1].shape = {64, 256};
  EXPECT_EQ(verify(p, **ckpt).message(),
            absl::StrCat(prefix, "plan says shape [64, 256] but checkpoint ",
                         dir, " has [256, 64]"));
  p = base;
  p.weights[1].name = "model.embed.weight";
  absl::Status status = verify(p, **ckpt);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "plan weight 1 'model.embed.weight': not in "
                              "checkpoint " +
                                  dir);
}

} // namespace
} // namespace crosspool::testing
