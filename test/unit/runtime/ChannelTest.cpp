//===- ChannelTest.cpp - In-process hidden-state channels -----------------===//
#include "runtime/transport/Channel.h"

#include "gtest/gtest.h"

#include <atomic>
#include <chrono>
#include <thread>

namespace crosspool::runtime {
namespace {

TEST(ChannelTest, MessagesArriveInOrder) {
  InProcessChannel ch(3, "c0");
  const float m1[6] = {1, 2, 3, 4, 5, 6};
  const float m2[3] = {7, 8, 9};
  ASSERT_TRUE(ch.send(m1, 2, 3).ok());
  ASSERT_TRUE(ch.send(m2, 1, 3).ok());
  EXPECT_EQ(ch.sent(), 2u);
  std::vector<float> out;
  int64_t rows = -1;
  ASSERT_TRUE(ch.recv(1, &out, &rows).ok());
  EXPECT_EQ(rows, 2);
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  ASSERT_TRUE(ch.recv(2, &out, &rows).ok());
  EXPECT_EQ(rows, 1);
  EXPECT_EQ(out, (std::vector<float>{7, 8, 9}));
}

TEST(ChannelTest, CountersGrowAcrossSteps) {
  // per_step = 2: step s receives targets 2s+1 and 2s+2; nothing resets.
  InProcessChannel ch(1);
  std::vector<float> out;
  int64_t rows;
  for (int step = 0; step < 5; ++step) {
    for (int seq = 1; seq <= 2; ++seq) {
      float v = 10.0f * step + seq;
      ASSERT_TRUE(ch.send(&v, 1, 1).ok());
    }
    EXPECT_EQ(ch.sent(), uint64_t(2 * step + 2));
    for (int seq = 1; seq <= 2; ++seq) {
      ASSERT_TRUE(ch.recv(2 * step + seq, &out, &rows).ok());
      EXPECT_EQ(out, std::vector<float>{10.0f * step + seq});
    }
  }
  EXPECT_EQ(ch.sent(), 10u);
}

TEST(ChannelTest, BlockingRecvIsWokenBySend) {
  InProcessChannel ch(2);
  std::atomic<bool> received{false};
  std::vector<float> out;
  int64_t rows = 0;
  absl::Status status;
  std::thread receiver([&] {
    status = ch.recv(1, &out, &rows);
    received = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(received.load()); // nothing sent yet
  const float m[2] = {0.5f, -0.5f};
  ASSERT_TRUE(ch.send(m, 1, 2).ok());
  receiver.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(rows, 1);
  EXPECT_EQ(out, (std::vector<float>{0.5f, -0.5f}));
}

TEST(ChannelTest, CloseWakesBlockedReceiverWithTheError) {
  InProcessChannel ch(2);
  absl::Status status;
  std::atomic<bool> returned{false};
  std::thread receiver([&] {
    std::vector<float> out;
    int64_t rows;
    status = ch.recv(1, &out, &rows);
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load());
  ch.close(absl::InternalError("weights worker: moe kernel failed"));
  receiver.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(), "weights worker: moe kernel failed");
  // Later calls fail the same way; the first reason wins.
  ch.close(absl::CancelledError("second"));
  const float m[2] = {1, 2};
  EXPECT_EQ(ch.send(m, 1, 2).message(), "weights worker: moe kernel failed");
  std::vector<float> out;
  int64_t rows;
  EXPECT_EQ(ch.recv(1, &out, &rows).code(), absl::StatusCode::kInternal);
}

TEST(ChannelTest, WidthMismatch) {
  InProcessChannel ch(4, "channel 0 (KV->Weights)");
  const float m[6] = {};
  absl::Status status = ch.send(m, 2, 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "channel 0 (KV->Weights): send expects width 4 but got 3");
  EXPECT_EQ(ch.sent(), 0u);
  EXPECT_FALSE(ch.send(nullptr, 1, 4).ok());
  EXPECT_FALSE(ch.send(m, -1, 4).ok());
}

TEST(ChannelTest, OutOfOrderTarget) {
  InProcessChannel ch(1, "c1");
  float v = 1;
  ASSERT_TRUE(ch.send(&v, 1, 1).ok());
  ASSERT_TRUE(ch.send(&v, 1, 1).ok());
  std::vector<float> out;
  int64_t rows;
  absl::Status skip = ch.recv(2, &out, &rows); // message 1 not consumed yet
  EXPECT_EQ(skip.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(skip.message(),
            "c1: recv of message 2 but the next unconsumed message is 1");
  ASSERT_TRUE(ch.recv(1, &out, &rows).ok());
  EXPECT_EQ(ch.recv(1, &out, &rows).message(),
            "c1: recv of message 1 but the next unconsumed message is 2");
  EXPECT_FALSE(ch.recv(0, &out, &rows).ok());
  ASSERT_TRUE(ch.recv(2, &out, &rows).ok());
}

} // namespace
} // namespace crosspool::runtime
