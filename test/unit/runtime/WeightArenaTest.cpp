//===- WeightArenaTest.cpp - fp32 weight storage with per-model accounting ===//
#include "runtime/pools/WeightArena.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace crosspool::runtime {
namespace {

TEST(WeightArenaTest, CopiesF32Exactly) {
  WeightArena arena;
  const float src[4] = {1.5f, -0.0f, 3.0e-39f, 123456.789f};
  auto out = arena.add(0, src, DType::kF32, 4);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(*out, src);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(std::memcmp(&(*out)[i], &src[i], 4), 0) << i;
}

TEST(WeightArenaTest, ConvertsBf16) {
  WeightArena arena;
  // bf16 = top 16 bits of an fp32: sign, 8 exponent bits, 7 mantissa bits.
  const uint16_t src[7] = {0x3F80, 0xC000, 0x4049, 0x3E80,
                           0x0001, 0x7F80, 0x0000};
  auto out = arena.add(1, src, DType::kBF16, 7);
  ASSERT_TRUE(out.ok()) << out.status();
  const float *f = *out;
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 3.140625f); // 2 * (1 + 73/128)
  EXPECT_EQ(f[3], 0.25f);
  EXPECT_EQ(f[4], std::ldexp(1.0f, -133)); // smallest subnormal
  EXPECT_EQ(f[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[6], 0.0f);
}

TEST(WeightArenaTest, ConvertsF16) {
  WeightArena arena;
  // f16: sign, 5 exponent bits (bias 15), 10 mantissa bits.
  const uint16_t src[8] = {0x3C00, 0xC000, 0x3555, 0x7BFF,
                           0x0001, 0x8000, 0xFC00, 0x3800};
  auto out = arena.add(1, src, DType::kF16, 8);
  ASSERT_TRUE(out.ok()) << out.status();
  const float *f = *out;
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 0.333251953125f);       // 2^-2 * (1 + 341/1024)
  EXPECT_EQ(f[3], 65504.0f);              // largest finite half
  EXPECT_EQ(f[4], std::ldexp(1.0f, -24)); // smallest subnormal half
  EXPECT_EQ(f[5], 0.0f);
  EXPECT_TRUE(std::signbit(f[5]));
  EXPECT_EQ(f[6], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[7], 0.5f);
}

TEST(WeightArenaTest, PerModelAccountingAndUnload) {
  WeightArena arena;
  std::vector<uint16_t> half(10, 0x3C00);
  std::vector<float> single(6, 2.0f);
  auto a = arena.add(1, half.data(), DType::kF16, 10);
  auto b = arena.add(2, single.data(), DType::kF32, 6);
  auto c = arena.add(1, single.data(), DType::kF32, 3);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // Accounting counts the fp32 copies, not the checkpoint bytes.
  EXPECT_EQ(arena.bytesUsed(1), (10u + 3u) * 4u);
  EXPECT_EQ(arena.bytesUsed(2), 24u);
  EXPECT_EQ(arena.bytesUsed(3), 0u);
  EXPECT_EQ(arena.totalBytes(), 76u);

  arena.unload(1);
  EXPECT_EQ(arena.bytesUsed(1), 0u);
  EXPECT_EQ(arena.totalBytes(), 24u);
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ((*b)[i], 2.0f); // other models untouched
  arena.unload(1);            // unknown: no-op
  EXPECT_EQ(arena.totalBytes(), 24u);
}

TEST(WeightArenaTest, BudgetIsEnforced) {
  WeightArena arena(100, "weights pool");
  std::vector<float> src(25, 1.0f);
  ASSERT_TRUE(arena.add(0, src.data(), DType::kF32, 20).ok()); // 80 bytes
  auto over = arena.add(1, src.data(), DType::kF32, 6);        // 24 bytes
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(over.status().message(),
            "weights pool exhausted: model 1 needs 24 more bytes but 80 of "
            "the budget of 100 bytes are in use");
  EXPECT_EQ(arena.totalBytes(), 80u);
  EXPECT_EQ(arena.bytesUsed(1), 0u);
  ASSERT_TRUE(arena.add(1, src.data(), DType::kF32, 5).ok()); // exactly full
  EXPECT_EQ(arena.totalBytes(), 100u);
  EXPECT_FALSE(arena.add(1, src.data(), DType::kF32, 1).ok());
  arena.unload(0);
  EXPECT_TRUE(arena.add(1, src.data(), DType::kF32, 20).ok());
  EXPECT_EQ(arena.totalBytes(), 100u);
}

TEST(WeightArenaTest, RejectsOtherDtypesAndNullSource) {
  WeightArena arena;
  int32_t ints[2] = {1, 2};
  auto bad = arena.add(0, ints, DType::kI32, 2);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "arena: model 0: cannot load I32 weights (expects F32, F16 or "
            "BF16)");
  auto null = arena.add(0, nullptr, DType::kF32, 2);
  EXPECT_EQ(null.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arena.totalBytes(), 0u);
}

} // namespace
} // namespace crosspool::runtime
