//===- SafetensorsTest.cpp - safetensors parsing, validation, conversion --===//
//
// Files are written by hand (header JSON + raw little-endian bytes) so every
// expected value and every error is known independently of the parser.
//
//===----------------------------------------------------------------------===//

#include "runtime/checkpoint/Safetensors.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace crosspool::runtime {
namespace {

using ::testing::HasSubstr;

std::string makeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/safetensors_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char *dir = ::mkdtemp(buf.data());
  EXPECT_NE(dir, nullptr);
  return dir ? std::string(dir) : std::string();
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// 8-byte little-endian length + header + data, like the format's writers.
std::string safetensorsBytes(const std::string &header,
                             const std::string &data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T> std::string rawBytes(const std::vector<T> &values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(&out[0], values.data(), out.size());
  return out;
}

std::string errorOf(const std::string &path) {
  auto file = SafetensorsFile::open(path);
  EXPECT_FALSE(file.ok()) << "expected " << path << " to be rejected";
  return file.ok() ? std::string() : std::string(file.status().message());
}

class SafetensorsTest : public ::testing::Test {
protected:
  void SetUp() override { dir_ = makeTempDir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  /// Writes `name` in the temp dir and returns its path.
  std::string write(const std::string &name, const std::string &header,
                    const std::string &data) {
    std::string path = dir_ + "/" + name;
    writeBytes(path, safetensorsBytes(header, data));
    return path;
  }
  std::string dir_;
};

TEST_F(SafetensorsTest, ReadsF32F16Bf16Values) {
  std::vector<float> f32 = {1.5f, -2.0f, 0.25f, 1e-3f};
  // F16 bit patterns with their exact values (IEEE binary16).
  std::vector<uint16_t> f16 = {
      0x3C00, // 1.0
      0xC000, // -2.0
      0x3555, // (1 + 341/1024) * 2^-2 = 0.333251953125
      0x0001, // smallest subnormal 2^-24
      0x03FF, // largest subnormal 1023 * 2^-24
      0x0400, // smallest normal 2^-14
      0x7BFF, // largest finite 65504
      0x8000, // -0.0
      0x7C00, // +inf
      0xFC00, // -inf
      0x7E00, // nan
  };
  // BF16 bit patterns: the upper half of a float32.
  std::vector<uint16_t> bf16 = {
      0x3F80, // 1.0
      0xC0A0, // -(1 + 32/128) * 2^2 = -5.0
      0x3EAA, // (1 + 42/128) * 2^-2 = 0.33203125
      0x0001, // float32 subnormal 2^-133
      0xFF80, // -inf
      0x7FC0, // nan
  };
  std::string data = rawBytes(f32) + rawBytes(f16) + rawBytes(bf16);
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("h":{"dtype":"F16","shape":[11],"data_offsets":[16,38]},)"
      R"("b":{"dtype":"BF16","shape":[2,3],"data_offsets":[38,50]}})";
  auto fileOr = SafetensorsFile::open(write("v.safetensors", header, data));
  ASSERT_TRUE(fileOr.ok()) << fileOr.status();
  const SafetensorsFile &file = **fileOr;
  EXPECT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.fileSize(), 8 + header.size() + data.size());
  EXPECT_EQ(file.find("missing"), nullptr);

  const TensorInfo *a = file.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a->offset, 8 + header.size());
  EXPECT_EQ(a->nbytes, 16u);
  EXPECT_EQ(a->numElements(), 4);
  std::vector<float> out(4);
  convertToF32(a->dtype, file.data(*a), 4, out.data());
  EXPECT_EQ(out, f32);

  const TensorInfo *h = file.find("h");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->offset, 8 + header.size() + 16);
  out.resize(11);
  convertToF32(h->dtype, file.data(*h), 11, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], 0.333251953125f);
  EXPECT_EQ(out[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[4], 1023.0f * std::ldexp(1.0f, -24));
  EXPECT_EQ(out[5], std::ldexp(1.0f, -14));
  EXPECT_EQ(out[6], 65504.0f);
  EXPECT_EQ(out[7], 0.0f);
  EXPECT_TRUE(std::signbit(out[7]));
  EXPECT_EQ(out[8], INFINITY);
  EXPECT_EQ(out[9], -INFINITY);
  EXPECT_TRUE(std::isnan(out[10]));

  const TensorInfo *b = file.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kBF16);
  out.resize(6);
  convertToF32(b->dtype, file.data(*b), 6, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -5.0f);
  EXPECT_EQ(out[2], 0.33203125f);
  EXPECT_EQ(out[3], std::ldexp(1.0f, -133));
  EXPECT_EQ(out[4], -INFINITY);
  EXPECT_TRUE(std::isnan(out[5]));
}

TEST_F(SafetensorsTest, DTypeNamesAndSizes) {
  EXPECT_STREQ(dtypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(dtypeName(DType::kI64), "I64");
  EXPECT_EQ(dtypeSize(DType::kF32), 4u);
  EXPECT_EQ(dtypeSize(DType::kF16), 2u);
  EXPECT_EQ(dtypeSize(DType::kI64), 8u);
  EXPECT_EQ(dtypeSize(DType::kBool), 1u);
}

TEST_F(SafetensorsTest, AcceptsScalarAndEmptyTensors) {
  std::string header =
      R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})";
  auto file = SafetensorsFile::open(
      write("s.safetensors", header, rawBytes(std::vector<float>{7.0f})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->find("s")->numElements(), 1);
  EXPECT_EQ((*file)->find("e")->numElements(), 0);
  EXPECT_EQ((*file)->find("e")->nbytes, 0u);
}

TEST_F(SafetensorsTest, RejectsFileTooSmallForLength) {
  std::string path = dir_ + "/tiny.safetensors";
  writeBytes(path, "abc");
  std::string err = errorOf(path);
  EXPECT_THAT(err, HasSubstr(path));
  EXPECT_THAT(err, HasSubstr("too small"));
}

TEST_F(SafetensorsTest, RejectsMissingFile) {
  EXPECT_THAT(errorOf(dir_ + "/absent.safetensors"),
              HasSubstr("absent.safetensors: cannot open"));
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  std::string path = dir_ + "/long.safetensors";
  std::string bytes = safetensorsBytes("{}", "");
  bytes[0] = static_cast<char>(100); // claims 100 header bytes, has 2
  writeBytes(path, bytes);
  EXPECT_THAT(errorOf(path),
              HasSubstr("header length 100 exceeds the file size"));
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  std::string header =
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string bytes = safetensorsBytes(header, std::string(16, '\0'));
  std::string path = dir_ + "/trunc.safetensors";
  writeBytes(path, bytes.substr(0, bytes.size() - 5));
  EXPECT_THAT(errorOf(path),
              HasSubstr("trunc.safetensors: tensor 'w' data_offsets [0, 16] "
                        "exceed the data section (11 bytes"));
}

TEST_F(SafetensorsTest, RejectsCorruptJson) {
  std::string err = errorOf(write("bad.safetensors", R"({"w":{"dtype":)", ""));
  EXPECT_THAT(err, HasSubstr("bad.safetensors: header is not valid JSON"));
  EXPECT_THAT(errorOf(write("arr.safetensors", "[1,2]", "")),
              HasSubstr("header is not a JSON object"));
}

TEST_F(SafetensorsTest, RejectsUnknownDType) {
  std::string header =
      R"({"q":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})";
  EXPECT_THAT(errorOf(write("u.safetensors", header, std::string(4, '\0'))),
              HasSubstr("tensor 'q' has unknown dtype 'Q4'"));
}

TEST_F(SafetensorsTest, RejectsMissingFields) {
  std::string header = R"({"w":{"shape":[1],"data_offsets":[0,4]}})";
  EXPECT_THAT(errorOf(write("m.safetensors", header, std::string(4, '\0'))),
              HasSubstr("tensor 'w' has no 'dtype'"));
  header = R"({"w":{"dtype":"F32","data_offsets":[0,4]}})";
  EXPECT_THAT(errorOf(write("m2.safetensors", header, std::string(4, '\0'))),
              HasSubstr("tensor 'w' has no 'shape'"));
  header = R"({"w":{"dtype":"F32","shape":[1]}})";
  EXPECT_THAT(errorOf(write("m3.safetensors", header, std::string(4, '\0'))),
              HasSubstr("tensor 'w' has no 'data_offsets'"));
  header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})";
  EXPECT_THAT(errorOf(write("m4.safetensors", header, std::string(4, '\0'))),
              HasSubstr("'data_offsets' must be two non-negative integers"));
}

TEST_F(SafetensorsTest, RejectsNegativeShape) {
  std::string header =
      R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})";
  EXPECT_THAT(errorOf(write("n.safetensors", header, std::string(16, '\0'))),
              HasSubstr("tensor 'w' 'shape' has an invalid dimension -1"));
}

TEST_F(SafetensorsTest, RejectsOffsetsOutOfRange) {
  std::string header =
      R"({"x":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})";
  EXPECT_THAT(
      errorOf(write("model.safetensors", header, std::string(64, '\0'))),
      HasSubstr("model.safetensors: tensor 'x' data_offsets [0, 100] "
                "exceed the data section (64 bytes"));
  header = R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})";
  EXPECT_THAT(errorOf(write("rev.safetensors", header, std::string(64, '\0'))),
              HasSubstr("tensor 'x' data_offsets [8, 4] begin after end"));
}

TEST_F(SafetensorsTest, RejectsSizeMismatch) {
  std::string header =
      R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  EXPECT_THAT(errorOf(write("sz.safetensors", header, std::string(16, '\0'))),
              HasSubstr("tensor 'w' data_offsets [0, 12] hold 12 bytes but "
                        "F32 [2, 2] needs 16"));
  // A shape whose byte count overflows 64 bits must not wrap around.
  header =
      R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
  EXPECT_THAT(errorOf(write("ovf.safetensors", header, "")),
              HasSubstr("needs more than the data section"));
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  std::string header =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})";
  EXPECT_THAT(errorOf(write("ov.safetensors", header, std::string(20, '\0'))),
              HasSubstr("tensors 'a' [0, 16] and 'b' [12, 20] overlap"));
}

//===----------------------------------------------------------------------===//
// Checkpoint directories
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, OpensSingleFileCheckpoint) {
  write("model.safetensors",
        R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        rawBytes(std::vector<float>{3.0f, 4.0f}));
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->contains("w"));
  EXPECT_FALSE((*ckpt)->contains("v"));
  auto loc = (*ckpt)->find("w");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->fileName, "model.safetensors");
  float v[2];
  convertToF32(loc->info->dtype, loc->file->data(*loc->info), 2, v);
  EXPECT_EQ(v[0], 3.0f);
  EXPECT_EQ(v[1], 4.0f);
  auto missing = (*ckpt)->find("v");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("checkpoint has no tensor 'v'"));
}

TEST_F(SafetensorsTest, OpensShardedCheckpoint) {
  write("s1.safetensors",
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
        rawBytes(std::vector<float>{1.0f}));
  write("s2.safetensors",
        R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
        R"("c":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})",
        rawBytes(std::vector<uint16_t>{0x4000, 0x4040, 0x3800}));
  writeBytes(dir_ + "/model.safetensors.index.json",
             R"({"metadata":{},"weight_map":{"a":"s1.safetensors",)"
             R"("b":"s2.safetensors","c":"s2.safetensors"}})");
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->tensorNames(), (std::vector<std::string>{"a", "b", "c"}));
  auto b = (*ckpt)->find("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->fileName, "s2.safetensors");
  EXPECT_EQ(b->file, (*ckpt)->file("s2.safetensors"));
  float v[2];
  convertToF32(b->info->dtype, b->file->data(*b->info), 2, v);
  EXPECT_EQ(v[0], 2.0f); // bf16 0x4000
  EXPECT_EQ(v[1], 3.0f); // bf16 0x4040
  auto c = (*ckpt)->find("c");
  ASSERT_TRUE(c.ok());
  convertToF32(c->info->dtype, c->file->data(*c->info), 1, v);
  EXPECT_EQ(v[0], 0.5f); // f16 0x3800
  EXPECT_EQ((*ckpt)->file("nope.safetensors"), nullptr);
}

TEST_F(SafetensorsTest, RejectsMissingIndexShard) {
  writeBytes(dir_ + "/model.safetensors.index.json",
             R"({"weight_map":{"a":"gone.safetensors"}})");
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  std::string err(ckpt.status().message());
  EXPECT_THAT(err, HasSubstr("shard 'gone.safetensors' listed in weight_map"));
  EXPECT_THAT(err, HasSubstr("cannot open"));
}

TEST_F(SafetensorsTest, RejectsTensorMissingFromShard) {
  write("s1.safetensors",
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
        std::string(4, '\0'));
  writeBytes(dir_ + "/model.safetensors.index.json",
             R"({"weight_map":{"a":"s1.safetensors","z":"s1.safetensors"}})");
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("weight_map maps tensor 'z' to shard 's1.safetensors' "
                        "but that file has no such tensor"));
}

TEST_F(SafetensorsTest, RejectsBadIndex) {
  writeBytes(dir_ + "/model.safetensors.index.json", R"({"weight_map": [)");
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(
      std::string(ckpt.status().message()),
      HasSubstr("model.safetensors.index.json: not a valid JSON object"));
  writeBytes(dir_ + "/model.safetensors.index.json", R"({"metadata":{}})");
  ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("missing or non-object 'weight_map'"));
  writeBytes(dir_ + "/model.safetensors.index.json",
             R"({"weight_map":{"a":"../escape.safetensors"}})");
  ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(std::string(ckpt.status().message()),
              HasSubstr("invalid shard file '../escape.safetensors'"));
}

TEST_F(SafetensorsTest, RejectsDirectoryWithoutWeights) {
  auto ckpt = Checkpoint::open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(
      std::string(ckpt.status().message()),
      HasSubstr("no model.safetensors or model.safetensors.index.json"));
}

TEST(SafetensorsRealCheckpoint, OpensShardedQwen2MoeTiny) {
  auto ckpt = Checkpoint::open(std::string(CROSSPOOL_SOURCE_DIR) +
                               "/test/data/models/qwen2_moe_tiny");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->tensorNames().size(), 91u); // entries of weight_map

  auto lmHead = (*ckpt)->find("lm_head.weight");
  ASSERT_TRUE(lmHead.ok());
  EXPECT_EQ(lmHead->fileName, "model-00001-of-00010.safetensors");
  EXPECT_EQ(lmHead->info->dtype, DType::kBF16);
  EXPECT_EQ(lmHead->info->shape, (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(lmHead->info->offset, 120u); // 8 + 112-byte header
  float v[4];
  convertToF32(DType::kBF16, lmHead->file->data(*lmHead->info), 3, v);
  // bf16 0x3d75, 0x3e12, 0xbda6 read with a separate script.
  EXPECT_EQ(v[0], 0.059814453125f);
  EXPECT_EQ(v[1], 0.142578125f);
  EXPECT_EQ(v[2], -0.0810546875f);

  auto kBias = (*ckpt)->find("model.layers.0.self_attn.k_proj.bias");
  ASSERT_TRUE(kBias.ok());
  EXPECT_EQ(kBias->info->shape, (std::vector<int64_t>{32}));
  auto dense = (*ckpt)->find("model.layers.1.mlp.gate_proj.weight");
  ASSERT_TRUE(dense.ok());
  EXPECT_EQ(dense->info->shape, (std::vector<int64_t>{96, 64}));
  auto sharedGate =
      (*ckpt)->find("model.layers.0.mlp.shared_expert_gate.weight");
  ASSERT_TRUE(sharedGate.ok());
  EXPECT_EQ(sharedGate->info->shape, (std::vector<int64_t>{1, 64}));

  auto norm = (*ckpt)->find("model.norm.weight");
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(norm->fileName, "model-00010-of-00010.safetensors");
  convertToF32(DType::kBF16, norm->file->data(*norm->info), 4, v);
  EXPECT_EQ(v[0], 1.3828125f); // 0x3fb1
  EXPECT_EQ(v[1], 0.9921875f); // 0x3f7e
  EXPECT_EQ(v[2], 1.6796875f); // 0x3fd7
  EXPECT_EQ(v[3], 1.1328125f); // 0x3f91
}

} // namespace
} // namespace crosspool::runtime
