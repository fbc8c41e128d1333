//===- ElementwiseLinearCudaTest.cpp - Row kernels and linear layers ------===//

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Kernels.h"

#include "test/unit/kernels/cuda/CudaTestUtil.h"

#include <cublas_v2.h>

namespace crosspool::kernels::cuda {
namespace {

using namespace testing;

class ElementwiseCudaTest : public ::testing::TestWithParam<DType> {
protected:
  void SetUp() override { CP_SKIP_WITHOUT_GPU(); }
};

TEST_P(ElementwiseCudaTest, EmbedGathersRowsAndFlagsBadIds) {
  const DType dt = GetParam();
  const int64_t V = 50, H = 72, T = 6;
  std::vector<float> table = storageRound(randomVec(V * H, 101), dt);
  std::vector<int32_t> ids = {3, 0, 49, 3, -1, 50};
  DeviceBuffer dTable = upload(table, dt), dIds = uploadInts(ids);
  DeviceBuffer out(T * H * dtypeBytes(dt)), bad(4);
  out.poison();
  CP_ASSERT_CUDA(cudaMemset(bad.get(), 0, 4));
  CP_ASSERT_OK(embed(dIds.as<int32_t>(), T, dTable.get(), V, H, out.get(), dt,
                     bad.as<int32_t>(), nullptr));
  CP_ASSERT_SYNC();
  std::vector<float> got = download(out.get(), T * H, dt);
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t i = 0; i < H; ++i)
      ASSERT_EQ(got[t * H + i], table[ids[t] * H + i]) << t << "," << i;
  for (int64_t t = 4; t < 6; ++t)
    for (int64_t i = 0; i < H; ++i)
      ASSERT_TRUE(std::isnan(got[t * H + i]));
  EXPECT_EQ(downloadInts(bad.get(), 1)[0], 2);
}

TEST_P(ElementwiseCudaTest, AddRmsNormMatchesCpu) {
  const DType dt = GetParam();
  // H covers 1, 2 and 4 16-byte chunks per thread on the register-row kernel
  // and rows too long for it (12288 bf16, 8192 fp32) or unaligned (100 bf16).
  for (int64_t T : {1, 8, 37})
    for (int64_t H : {64, 2048, 100, 4096, 8192, 12288}) {
      uint32_t seed = uint32_t(T * 1000 + H);
      std::vector<float> h = storageRound(randomVec(T * H, seed, 2.0f), dt);
      std::vector<float> d = storageRound(randomVec(T * H, seed + 1), dt);
      std::vector<float> w = storageRound(randomVec(H, seed + 2), dt);
      DeviceBuffer dh = upload(h, dt), dd = upload(d, dt), dw = upload(w, dt);
      DeviceBuffer y(T * H * dtypeBytes(dt));
      y.poison();
      CP_ASSERT_OK(addRmsNorm(dh.get(), dd.get(), dw.get(), 1e-6f, T, H,
                              y.get(), dt, nullptr));
      CP_ASSERT_SYNC();
      std::vector<float> hRef(T * H), yRef(T * H);
      cpu::add(h.data(), d.data(), hRef.data(), T * H);
      hRef = storageRound(hRef, dt);
      cpu::rmsNorm(hRef.data(), w.data(), 1e-6f, T, H, yRef.data());
      EXPECT_LE(relErr(download(dh.get(), T * H, dt), hRef), tolerance(dt))
          << "residual T=" << T << " H=" << H;
      EXPECT_LE(relErr(download(y.get(), T * H, dt), yRef), tolerance(dt))
          << "norm T=" << T << " H=" << H;

      // Plain norm, in place.
      CP_ASSERT_OK(
          rmsNorm(dh.get(), dw.get(), 1e-5f, T, H, dh.get(), dt, nullptr));
      CP_ASSERT_SYNC();
      cpu::rmsNorm(hRef.data(), w.data(), 1e-5f, T, H, yRef.data());
      EXPECT_LE(relErr(download(dh.get(), T * H, dt), yRef), tolerance(dt));
    }
}

// addRmsNormInto (the runtime's fold of a plan Add into a new slot and the
// RmsNorm after it) gives the same bits as add then rmsNorm on the device,
// with the sum in a third buffer and in the delta's; h stays as it was.
TEST_P(ElementwiseCudaTest, AddRmsNormIntoIsAddThenNormBitForBit) {
  const DType dt = GetParam();
  const size_t e = size_t(dtypeBytes(dt));
  auto bytesOf = [&](const DeviceBuffer &b, int64_t n) {
    std::vector<uint8_t> v(size_t(n) * e);
    cudaMemcpy(v.data(), b.get(), v.size(), cudaMemcpyDeviceToHost);
    return v;
  };
  for (int64_t T : {1, 5})
    for (int64_t H : {2048, 100, 12288}) {
      const int64_t n = T * H;
      uint32_t seed = uint32_t(T * 7 + H);
      DeviceBuffer h = upload(randomVec(n, seed, 3.0f), dt);
      DeviceBuffer w = upload(randomVec(H, seed + 2), dt);
      const std::vector<float> dHost = randomVec(n, seed + 1);
      DeviceBuffer d = upload(dHost, dt);
      // Reference: two kernels.
      DeviceBuffer sumRef(n * e), yRef(n * e);
      CP_ASSERT_OK(add(h.get(), d.get(), sumRef.get(), n, dt, nullptr));
      CP_ASSERT_OK(
          rmsNorm(sumRef.get(), w.get(), 1e-6f, T, H, yRef.get(), dt, nullptr));
      CP_ASSERT_SYNC();
      const auto hBefore = bytesOf(h, n);
      // Into a third buffer.
      DeviceBuffer sum(n * e), y(n * e);
      sum.poison();
      y.poison();
      CP_ASSERT_OK(addRmsNormInto(h.get(), d.get(), w.get(), 1e-6f, T, H,
                                  sum.get(), y.get(), dt, nullptr));
      CP_ASSERT_SYNC();
      EXPECT_EQ(bytesOf(sum, n), bytesOf(sumRef, n)) << "T=" << T << " H=" << H;
      EXPECT_EQ(bytesOf(y, n), bytesOf(yRef, n)) << "T=" << T << " H=" << H;
      EXPECT_EQ(bytesOf(h, n), hBefore) << "h must not be written";
      // Into the delta's buffer.
      y.poison();
      CP_ASSERT_OK(addRmsNormInto(h.get(), d.get(), w.get(), 1e-6f, T, H,
                                  d.get(), y.get(), dt, nullptr));
      CP_ASSERT_SYNC();
      EXPECT_EQ(bytesOf(d, n), bytesOf(sumRef, n)) << "T=" << T << " H=" << H;
      EXPECT_EQ(bytesOf(y, n), bytesOf(yRef, n)) << "T=" << T << " H=" << H;
      // The norm's output may not alias the rows it reads.
      EXPECT_EQ(addRmsNormInto(h.get(), d.get(), w.get(), 1e-6f, T, H,
                               sum.get(), sum.get(), dt, nullptr)
                    .code(),
                absl::StatusCode::kInvalidArgument);
    }
}

TEST_P(ElementwiseCudaTest, AddAndSwigluMatchCpu) {
  const DType dt = GetParam();
  const int64_t n = 10007;
  std::vector<float> a = storageRound(randomVec(n, 7, 4.0f), dt);
  std::vector<float> b = storageRound(randomVec(n, 8, 4.0f), dt);
  DeviceBuffer da = upload(a, dt), db = upload(b, dt), c(n * dtypeBytes(dt));
  c.poison();
  CP_ASSERT_OK(add(da.get(), db.get(), c.get(), n, dt, nullptr));
  CP_ASSERT_SYNC();
  std::vector<float> ref(n);
  cpu::add(a.data(), b.data(), ref.data(), n);
  EXPECT_LE(relErr(download(c.get(), n, dt), ref), tolerance(dt));

  c.poison();
  CP_ASSERT_OK(swiglu(da.get(), db.get(), c.get(), n, dt, nullptr));
  CP_ASSERT_SYNC();
  for (int64_t i = 0; i < n; ++i)
    ref[i] = cpu::silu(a[i]) * b[i];
  EXPECT_LE(relErr(download(c.get(), n, dt), ref), tolerance(dt));
}

INSTANTIATE_TEST_SUITE_P(Modes, ElementwiseCudaTest,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto &info) {
                           return std::string(dtypeName(info.param));
                         });

TEST(ArgmaxCudaTest, MatchesCpuWithTiesAndNaN) {
  CP_SKIP_WITHOUT_GPU();
  const int64_t V = 3001, T = 5;
  std::vector<float> l = randomVec(T * V, 9);
  l[0 * V + 17] = 5.0f; // tie: the lower index wins
  l[0 * V + 2900] = 5.0f;
  l[1 * V + 3] = NAN; // NaN is never chosen
  l[1 * V + 3000] = 7.0f;
  for (int64_t i = 0; i < V; ++i)
    l[2 * V + i] = NAN; // all NaN: 0
  l[3 * V + V - 1] = 9.0f;
  DeviceBuffer dl = upload(l, DType::kF32), out(T * 4);
  out.poison();
  CP_ASSERT_OK(argmaxRows(dl.as<float>(), T, V, out.as<int32_t>(), nullptr));
  CP_ASSERT_SYNC();
  std::vector<int32_t> got = downloadInts(out.get(), T);
  for (int64_t t = 0; t < T; ++t)
    EXPECT_EQ(got[t], cpu::argmax(l.data() + t * V, V)) << "row " << t;
  EXPECT_EQ(got[0], 17);
  EXPECT_EQ(got[2], 0);

  // A Qwen3-sized vocabulary (rows 16-byte aligned: the 16-byte-load path,
  // several batches per thread): ties across batches, the last element, a
  // NaN in the same float4 as the maximum.
  const int64_t W = 151936;
  std::vector<float> m = randomVec(3 * W, 10);
  m[0 * W + 100] = 6.0f;
  m[0 * W + 150000] = 6.0f;
  m[1 * W + W - 1] = 8.0f;
  m[1 * W + W - 2] = NAN;
  m[2 * W + 4 * 1024 * 8 + 3] = 7.0f;
  DeviceBuffer dm = upload(m, DType::kF32), out2(3 * 4);
  out2.poison();
  CP_ASSERT_OK(argmaxRows(dm.as<float>(), 3, W, out2.as<int32_t>(), nullptr));
  CP_ASSERT_SYNC();
  got = downloadInts(out2.get(), 3);
  for (int64_t t = 0; t < 3; ++t)
    EXPECT_EQ(got[t], cpu::argmax(m.data() + t * W, W)) << "row " << t;
  EXPECT_EQ(got[0], 100);
  EXPECT_EQ(got[1], W - 1);
  EXPECT_EQ(got[2], 4 * 1024 * 8 + 3);
}

TEST(ElementwiseCudaArgsTest, RejectsBadArguments) {
  EXPECT_EQ(
      embed(nullptr, 2, nullptr, 4, 4, nullptr, DType::kF32, nullptr, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      rmsNorm(nullptr, nullptr, 1e-6f, 1, 0, nullptr, DType::kF32, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      rmsNorm(nullptr, nullptr, -1.0f, 1, 4, nullptr, DType::kF32, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(add(nullptr, nullptr, nullptr, -1, DType::kF32, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(argmaxRows(nullptr, 1, 0, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  uint32_t word = 0;
  EXPECT_EQ(streamRead(&word, 24, 1, &word, nullptr).code(), // not 16 x n
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(streamRead(&word, 32, 0, &word, nullptr).code(), // no blocks
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(streamRead(nullptr, 32, 1, &word, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(streamRead(reinterpret_cast<char *>(&word) + 4, 32, 1, &word,
                       nullptr)
                .code(), // unaligned
            absl::StatusCode::kInvalidArgument);
}

// streamRead reads every 16-byte chunk (grid-stride body and tail): a
// chunk holding the probe's magic word among zeros is the only way the sink
// gets written, wherever the chunk is.
TEST(StreamReadCudaTest, ReadsEveryChunk) {
  CP_SKIP_WITHOUT_GPU();
  const uint32_t kMagic = 0x9e3779b9u;
  const int64_t chunks = 100003; // not a multiple of any grid
  for (int64_t at : {int64_t(0), chunks / 2, chunks - 1}) {
    std::vector<int32_t> words(size_t(chunks) * 4, 0);
    words[size_t(at) * 4 + 2] = int32_t(kMagic);
    DeviceBuffer buf(words.size() * 4), sink(4);
    CP_ASSERT_CUDA(cudaMemcpy(buf.get(), words.data(), buf.bytes(),
                              cudaMemcpyHostToDevice));
    CP_ASSERT_CUDA(cudaMemset(sink.get(), 0, 4));
    CP_ASSERT_OK(
        streamRead(buf.get(), chunks * 16, 7, sink.as<uint32_t>(), nullptr));
    CP_ASSERT_SYNC();
    EXPECT_EQ(uint32_t(downloadInts(sink.get(), 1)[0]), kMagic)
        << "magic chunk " << at;
  }
  DeviceBuffer zeros(int64_t(chunks) * 16), sink(4);
  CP_ASSERT_CUDA(cudaMemset(zeros.get(), 0, zeros.bytes()));
  CP_ASSERT_CUDA(cudaMemset(sink.get(), 0x5a, 4));
  CP_ASSERT_OK(
      streamRead(zeros.get(), chunks * 16, 64, sink.as<uint32_t>(), nullptr));
  CP_ASSERT_SYNC();
  EXPECT_EQ(uint32_t(downloadInts(sink.get(), 1)[0]), 0x5a5a5a5au);
}

struct LinearCase {
  DType dt;
  LinearAlgo algo;
};

std::string linearCaseName(const LinearCase &c) {
  std::string algo = c.algo == LinearAlgo::kGemv   ? "gemv"
                     : c.algo == LinearAlgo::kBlas ? "blas"
                                                   : "auto";
  return std::string(dtypeName(c.dt)) + "_" + algo;
}

class LinearCudaTest : public ::testing::TestWithParam<LinearCase> {
protected:
  void SetUp() override {
    CP_SKIP_WITHOUT_GPU();
    ASSERT_EQ(cublasCreate(&blas_), CUBLAS_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (blas_)
      cublasDestroy(blas_);
  }
  cublasHandle_t blas_ = nullptr;
};

TEST_P(LinearCudaTest, MatchesCpuAcrossShapes) {
  const DType dt = GetParam().dt;
  const LinearAlgo algo = GetParam().algo;
  BlockContext ctx;
  ctx.blas = blas_;
  struct Shape {
    int64_t in, out;
    bool bias;
  };
  for (int64_t T : {1, 2, 3, 8, 16, 32, 37})
    for (Shape s : {Shape{2048, 384, false}, Shape{512, 1000, true},
                    Shape{100, 36, true}}) {
      uint32_t seed = uint32_t(T * 7919 + s.in + s.out);
      std::vector<float> x = storageRound(randomVec(T * s.in, seed), dt);
      std::vector<float> w =
          storageRound(randomVec(s.out * s.in, seed + 1, 0.1f), dt);
      std::vector<float> b = storageRound(randomVec(s.out, seed + 2), dt);
      DeviceBuffer dx = upload(x, dt), dw = upload(w, dt), db = upload(b, dt);
      DeviceBuffer y(T * s.out * dtypeBytes(dt)), logits(T * s.out * 4);
      y.poison();
      logits.poison();
      CP_ASSERT_OK(linear(dx.get(), dw.get(), s.bias ? db.get() : nullptr, T,
                          s.in, s.out, y.get(), dt, ctx, algo));
      CP_ASSERT_OK(lmHead(dx.get(), dw.get(), T, s.in, s.out,
                          logits.as<float>(), dt, ctx, algo));
      CP_ASSERT_SYNC();
      std::vector<float> ref(T * s.out), refNoBias(T * s.out);
      cpu::linear(x.data(), w.data(), s.bias ? b.data() : nullptr, T, s.in,
                  s.out, ref.data());
      cpu::lmHead(x.data(), w.data(), T, s.in, s.out, refNoBias.data());
      EXPECT_LE(relErr(download(y.get(), T * s.out, dt), ref), tolerance(dt))
          << "T=" << T << " in=" << s.in << " out=" << s.out;
      // fp32 logits: only the bf16 operands' products differ, no rounding
      // of the output.
      EXPECT_LE(
          relErr(download(logits.get(), T * s.out, DType::kF32), refNoBias),
          dt == DType::kF32 ? 1e-5 : 1e-4)
          << "lm_head T=" << T << " in=" << s.in;
    }
}

// Three weights sharing x in one launch (the q/k/v projections), row
// counts that do not fill the last 8-row block, biases on two of them.
TEST_P(LinearCudaTest, MultiMatchesCpuPerWeight) {
  const DType dt = GetParam().dt;
  const LinearAlgo algo = GetParam().algo;
  BlockContext ctx;
  ctx.blas = blas_;
  const int64_t in = 512;
  const int64_t outs[3] = {384, 64, 76};
  const bool hasBias[3] = {true, false, true};
  for (int64_t T : {1, 3, 16, 37}) {
    const uint32_t seed = uint32_t(5000 + T);
    std::vector<float> x = storageRound(randomVec(T * in, seed), dt);
    DeviceBuffer dx = upload(x, dt);
    std::vector<std::vector<float>> w(3), b(3);
    std::vector<DeviceBuffer> dw, db, dy;
    LinearSeg segs[3];
    for (int i = 0; i < 3; ++i) {
      w[i] = storageRound(randomVec(outs[i] * in, seed + 10 * i + 1, 0.1f), dt);
      b[i] = storageRound(randomVec(outs[i], seed + 10 * i + 2), dt);
      dw.push_back(upload(w[i], dt));
      db.push_back(upload(b[i], dt));
      dy.push_back(DeviceBuffer(T * outs[i] * dtypeBytes(dt)));
      dy.back().poison();
      segs[i] = {dw.back().get(), hasBias[i] ? db.back().get() : nullptr,
                 outs[i], dy.back().get()};
    }
    CP_ASSERT_OK(linearMulti(dx.get(), T, in, segs, 3, dt, ctx, algo));
    CP_ASSERT_SYNC();
    for (int i = 0; i < 3; ++i) {
      std::vector<float> ref(T * outs[i]);
      cpu::linear(x.data(), w[i].data(), hasBias[i] ? b[i].data() : nullptr, T,
                  in, outs[i], ref.data());
      EXPECT_LE(relErr(download(dy[i].get(), T * outs[i], dt), ref),
                tolerance(dt))
          << "T=" << T << " weight " << i;
    }
  }
  float dummy = 0;
  LinearSeg one{&dummy, nullptr, 1, &dummy};
  EXPECT_EQ(linearMulti(&dummy, 1, 4, &one, 0, dt, ctx).code(),
            absl::StatusCode::kInvalidArgument);
  LinearSeg four[4] = {one, one, one, one};
  EXPECT_EQ(linearMulti(&dummy, 1, 4, four, 4, dt, ctx).code(),
            absl::StatusCode::kInvalidArgument);
  LinearSeg noOut = one;
  noOut.y = nullptr;
  EXPECT_EQ(linearMulti(&dummy, 1, 4, &noOut, 1, dt, ctx).code(),
            absl::StatusCode::kInvalidArgument);
}

// PDL launches whose stream predecessor is not one of our kernels: a GEMV
// reading what cuBLAS just wrote, and one reading what an async copy just
// uploaded, back to back on a non-blocking stream with no synchronization
// in between, with PDL on and off.
TEST_P(LinearCudaTest, GemvAfterCublasAndAfterCopy) {
  const DType dt = GetParam().dt;
  const int64_t T = 3, in = 256, mid = 192, out = 320;
  std::vector<float> x = storageRound(randomVec(T * in, 61), dt);
  std::vector<float> w1 = storageRound(randomVec(mid * in, 62, 0.1f), dt);
  std::vector<float> w2 = storageRound(randomVec(out * mid, 63, 0.1f), dt);
  DeviceBuffer dx = upload(x, dt), dw1 = upload(w1, dt), dw2 = upload(w2, dt);
  std::vector<float> h(T * mid), ref(T * out), ref2(T * mid);
  cpu::linear(x.data(), w1.data(), nullptr, T, in, mid, h.data());
  h = storageRound(h, dt);
  cpu::linear(h.data(), w2.data(), nullptr, T, mid, out, ref.data());
  cudaStream_t stream = nullptr;
  CP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BlockContext ctx;
  ctx.blas = blas_;
  ctx.stream = stream;
  for (bool pdl : {true, false}) {
    setPdlEnabled(pdl);
    DeviceBuffer dh(T * mid * dtypeBytes(dt)), dy(T * out * dtypeBytes(dt));
    dh.poison();
    dy.poison();
    CP_ASSERT_SYNC();
    CP_ASSERT_OK(linear(dx.get(), dw1.get(), nullptr, T, in, mid, dh.get(), dt,
                        ctx, LinearAlgo::kBlas));
    CP_ASSERT_OK(linear(dh.get(), dw2.get(), nullptr, T, mid, out, dy.get(), dt,
                        ctx, LinearAlgo::kGemv));
    CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
    EXPECT_LE(relErr(download(dy.get(), T * out, dt), ref), 2 * tolerance(dt))
        << "after cuBLAS, pdl " << pdl;

    // The same first layer's input uploaded by an async copy right before.
    std::vector<uint16_t> hb(x.size());
    std::vector<float> hostX = x;
    const void *src = hostX.data();
    size_t bytes = x.size() * 4;
    if (dt == DType::kBF16) {
      for (size_t i = 0; i < x.size(); ++i)
        hb[i] = toBf16(x[i]);
      src = hb.data();
      bytes = hb.size() * 2;
    }
    DeviceBuffer dx2(bytes), dh2(T * mid * dtypeBytes(dt));
    dx2.poison();
    dh2.poison();
    CP_ASSERT_SYNC();
    CP_ASSERT_CUDA(
        cudaMemcpyAsync(dx2.get(), src, bytes, cudaMemcpyHostToDevice, stream));
    CP_ASSERT_OK(linear(dx2.get(), dw1.get(), nullptr, T, in, mid, dh2.get(),
                        dt, ctx, LinearAlgo::kGemv));
    CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
    EXPECT_LE(relErr(download(dh2.get(), T * mid, dt), h), tolerance(dt))
        << "after a copy, pdl " << pdl;
  }
  setPdlEnabled(true);
  cudaStreamDestroy(stream);
}

// One token in bf16: the staged kernel (weight rows copied to shared
// memory before the PDL wait) and the evict-first weight loads give the
// register kernel's bytes, for rows that do not fill the last block, a
// bias, an fp32 output (lm_head), three weights in one launch, and an `in`
// too wide to stage (the register kernel either way); and match the CPU.
TEST_P(LinearCudaTest, StagedGemvSameBitsAsRegisterKernel) {
  if (GetParam().dt != DType::kBF16 || GetParam().algo != LinearAlgo::kGemv)
    GTEST_SKIP() << "one-token bf16 GEMV only";
  const DType dt = DType::kBF16;
  BlockContext ctx;
  ctx.blas = blas_;
  struct Shape {
    int64_t in, out;
    bool bias;
  };
  auto run = [&](bool staged, const DeviceBuffer &dx,
                 const std::vector<DeviceBuffer> &dw, const DeviceBuffer &db,
                 const std::vector<int64_t> &outs, int64_t in, bool bias,
                 bool floatOut) {
    setGemvStagedEnabled(staged);
    setStreamHintEnabled(staged);
    std::vector<DeviceBuffer> ys;
    std::vector<LinearSeg> segs;
    for (size_t i = 0; i < outs.size(); ++i) {
      ys.emplace_back(outs[i] * (floatOut ? 4 : 2));
      ys.back().poison();
      segs.push_back({dw[i].get(), bias ? db.get() : nullptr, outs[i],
                      ys.back().get()});
    }
    const absl::Status st =
        floatOut ? lmHead(dx.get(), dw[0].get(), 1, in, outs[0],
                          ys[0].as<float>(), dt, ctx, LinearAlgo::kGemv)
                 : linearMulti(dx.get(), 1, in, segs.data(), int(segs.size()),
                               dt, ctx, LinearAlgo::kGemv);
    EXPECT_TRUE(st.ok()) << st;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < outs.size(); ++i)
      out.push_back(
          download(ys[i].get(), outs[i], floatOut ? DType::kF32 : dt));
    return out;
  };
  for (Shape s : {Shape{4096, 100, true}, Shape{2048, 384, false},
                  Shape{8192, 16, true}, Shape{8200, 24, false},
                  Shape{520, 9, true}})
    for (bool floatOut : {false, true}) {
      const uint32_t seed = uint32_t(s.in * 31 + s.out);
      std::vector<float> x = storageRound(randomVec(s.in, seed), dt);
      std::vector<float> w =
          storageRound(randomVec(s.out * s.in, seed + 1, 0.1f), dt);
      std::vector<float> b = storageRound(randomVec(s.out, seed + 2), dt);
      DeviceBuffer dx = upload(x, dt), db = upload(b, dt);
      std::vector<DeviceBuffer> dw;
      dw.push_back(upload(w, dt));
      const bool bias = s.bias && !floatOut;
      auto a = run(true, dx, dw, db, {s.out}, s.in, bias, floatOut);
      auto r = run(false, dx, dw, db, {s.out}, s.in, bias, floatOut);
      EXPECT_EQ(a, r) << "in=" << s.in << " out=" << s.out
                      << " floatOut=" << floatOut;
      std::vector<float> ref(s.out);
      cpu::linear(x.data(), w.data(), bias ? b.data() : nullptr, 1, s.in,
                  s.out, ref.data());
      EXPECT_LE(relErr(a[0], ref),
                floatOut ? 1e-4 : tolerance(dt))
          << "in=" << s.in << " out=" << s.out;
    }
  // q/k/v: three weights, one launch.
  const int64_t in = 2048;
  const std::vector<int64_t> outs = {384, 64, 76};
  std::vector<float> x = storageRound(randomVec(in, 77), dt);
  DeviceBuffer dx = upload(x, dt);
  std::vector<DeviceBuffer> dw;
  for (int i = 0; i < 3; ++i)
    dw.push_back(
        upload(storageRound(randomVec(outs[i] * in, 78 + i, 0.1f), dt), dt));
  DeviceBuffer none(16);
  EXPECT_EQ(run(true, dx, dw, none, outs, in, false, false),
            run(false, dx, dw, none, outs, in, false, false));
  setGemvStagedEnabled(true);
  setStreamHintEnabled(true);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, LinearCudaTest,
    ::testing::Values(LinearCase{DType::kF32, LinearAlgo::kGemv},
                      LinearCase{DType::kF32, LinearAlgo::kBlas},
                      LinearCase{DType::kF32, LinearAlgo::kAuto},
                      LinearCase{DType::kBF16, LinearAlgo::kGemv},
                      LinearCase{DType::kBF16, LinearAlgo::kBlas},
                      LinearCase{DType::kBF16, LinearAlgo::kAuto}),
    [](const auto &info) { return linearCaseName(info.param); });

TEST(LinearCudaArgsTest, RejectsBadArguments) {
  BlockContext ctx;
  EXPECT_EQ(
      linear(nullptr, nullptr, nullptr, 1, 0, 4, nullptr, DType::kF32, ctx)
          .code(),
      absl::StatusCode::kInvalidArgument);
  float dummy = 0;
  // The cuBLAS path without a handle.
  EXPECT_EQ(linear(&dummy, &dummy, nullptr, 64, 1, 1, &dummy, DType::kF32, ctx,
                   LinearAlgo::kBlas)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

} // namespace
} // namespace crosspool::kernels::cuda
