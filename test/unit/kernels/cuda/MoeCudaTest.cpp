//===- MoeCudaTest.cpp - Router and MoE block vs the CPU kernels ----------===//

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Kernels.h"

#include "test/unit/kernels/cuda/CudaTestUtil.h"

#include <cublas_v2.h>

#include <cmath>
#include <functional>
#include <set>

namespace crosspool::kernels::cuda {
namespace {

using namespace testing;

struct MoeCase {
  int32_t E, K;
  int64_t H, I;
  bool norm;
  int64_t sharedI; // 0: no shared expert
  bool sharedGate;
};

class MoeCudaTest : public ::testing::TestWithParam<DType> {
protected:
  void SetUp() override {
    CP_SKIP_WITHOUT_GPU();
    ASSERT_EQ(cublasCreate(&blas_), CUBLAS_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (blas_)
      cublasDestroy(blas_);
  }

  /// `fused`: whether moe() may take the fused small-T path (T <= 4).
  void check(const MoeCase &c, int64_t T, uint32_t seed, bool fused = true) {
    const DType dt = GetParam();
    SCOPED_TRACE(::testing::Message()
                 << dtypeName(dt) << " E=" << c.E << " K=" << c.K << " H="
                 << c.H << " I=" << c.I << " T=" << T << " shared=" << c.sharedI
                 << " norm=" << c.norm << " fused=" << fused);
    struct Restore {
      ~Restore() { setMoeFusedEnabled(true); }
    } restore;
    setMoeFusedEnabled(fused);
    const float ws = 2.0f / std::sqrt(float(c.H));
    // A large router scale makes routing decisive, as in trained models.
    std::vector<float> router =
        storageRound(randomVec(c.E * c.H, seed, 8.0f * ws), dt);
    std::vector<std::vector<float>> gate(c.E), up(c.E), down(c.E);
    for (int32_t e = 0; e < c.E; ++e) {
      gate[e] = storageRound(randomVec(c.I * c.H, seed + 10 * e + 1, ws), dt);
      up[e] = storageRound(randomVec(c.I * c.H, seed + 10 * e + 2, ws), dt);
      down[e] = storageRound(
          randomVec(c.H * c.I, seed + 10 * e + 3, 2.0f / std::sqrt(float(c.I))),
          dt);
    }
    std::vector<float> sg, su, sd, sgate;
    if (c.sharedI) {
      sg = storageRound(randomVec(c.sharedI * c.H, seed + 7001, ws), dt);
      su = storageRound(randomVec(c.sharedI * c.H, seed + 7002, ws), dt);
      sd = storageRound(randomVec(c.H * c.sharedI, seed + 7003,
                                  2.0f / std::sqrt(float(c.sharedI))),
                        dt);
      sgate = storageRound(randomVec(c.H, seed + 7004, ws), dt);
    }
    std::vector<float> x = storageRound(randomVec(T * c.H, seed + 9999), dt);

    // CPU oracle.
    std::vector<cpu::ExpertWeights> cpuExperts(c.E);
    for (int32_t e = 0; e < c.E; ++e)
      cpuExperts[e] = {gate[e].data(), up[e].data(), down[e].data()};
    cpu::MoeWeights cw;
    cw.router = router.data();
    cw.experts = cpuExperts.data();
    if (c.sharedI) {
      cw.shared = {sg.data(), su.data(), sd.data()};
      if (c.sharedGate)
        cw.sharedGate = sgate.data();
    }
    MoeParams p;
    p.hidden = c.H;
    p.numExperts = c.E;
    p.topK = c.K;
    p.normTopkProb = c.norm;
    p.intermediate = c.I;
    p.sharedIntermediate = c.sharedI;
    std::vector<float> ref(T * c.H);
    ASSERT_TRUE(cpu::moe(x.data(), T, cw, p, ref.data()).ok());
    std::vector<int32_t> refIdx(T * c.K);
    std::vector<float> refW(T * c.K);
    cpu::route(x.data(), router.data(), T, c.H, c.E, c.K, c.norm, refIdx.data(),
               refW.data());

    // Device: every expert in its own allocation, like an arena would.
    std::vector<DeviceBuffer> bufs;
    std::vector<ExpertPtrs> table(c.E);
    for (int32_t e = 0; e < c.E; ++e) {
      bufs.push_back(upload(gate[e], dt));
      table[e].gate = bufs.back().get();
      bufs.push_back(upload(up[e], dt));
      table[e].up = bufs.back().get();
      bufs.push_back(upload(down[e], dt));
      table[e].down = bufs.back().get();
    }
    DeviceBuffer dTable(table.size() * sizeof(ExpertPtrs));
    ASSERT_EQ(cudaMemcpy(dTable.get(), table.data(),
                         table.size() * sizeof(ExpertPtrs),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    DeviceBuffer dRouter = upload(router, dt), dx = upload(x, dt);
    DeviceBuffer dsg = upload(sg, dt), dsu = upload(su, dt),
                 dsd = upload(sd, dt), dsgate = upload(sgate, dt);
    MoeWeights w;
    w.router = dRouter.get();
    w.experts = dTable.as<ExpertPtrs>();
    if (c.sharedI) {
      w.shared = {dsg.get(), dsu.get(), dsd.get()};
      if (c.sharedGate)
        w.sharedGate = dsgate.get();
    }
    DeviceBuffer y(T * c.H * dtypeBytes(dt)), idx(T * c.K * 4),
        ws2(moeWorkspaceBytes(T, p));
    y.poison();
    idx.poison();
    ws2.poison();
    BlockContext ctx;
    ctx.blas = blas_;
    ctx.workspace = ws2.get();
    ctx.workspaceBytes = int64_t(ws2.bytes());
    CP_ASSERT_OK(moe(dx.get(), T, w, p, y.get(), dt, ctx, idx.as<int32_t>()));
    CP_ASSERT_SYNC();

    // Routing: equal, except where two probabilities tie within rounding
    // (then the CPU's own values at that slot must be that close).
    std::vector<int32_t> gotIdx = downloadInts(idx.get(), T * c.K);
    std::set<int64_t> tiedRows;
    for (int64_t t = 0; t < T; ++t)
      for (int32_t k = 0; k < c.K; ++k)
        if (gotIdx[t * c.K + k] != refIdx[t * c.K + k]) {
          bool nearTie = k + 1 < c.K &&
                         std::fabs(refW[t * c.K + k] - refW[t * c.K + k + 1]) <
                             1e-5f * refW[t * c.K];
          nearTie |=
              k > 0 && std::fabs(refW[t * c.K + k] - refW[t * c.K + k - 1]) <
                           1e-5f * refW[t * c.K];
          ASSERT_TRUE(nearTie || k == c.K - 1)
              << "row " << t << " slot " << k << ": expert "
              << gotIdx[t * c.K + k] << " vs " << refIdx[t * c.K + k];
          tiedRows.insert(t);
        }
    ASSERT_LE(tiedRows.size(), size_t(1) + size_t(T) / 8);
    std::vector<float> got = download(y.get(), T * c.H, dt), g2, r2;
    for (int64_t t = 0; t < T; ++t)
      if (!tiedRows.count(t))
        for (int64_t i = 0; i < c.H; ++i) {
          g2.push_back(got[t * c.H + i]);
          r2.push_back(ref[t * c.H + i]);
        }
    for (float v : got)
      ASSERT_TRUE(std::isfinite(v)) << "unwritten output";
    EXPECT_LE(relErr(g2, r2), tolerance(GetParam()));

    // On the fused path (T <= 4), the other down/combine layout (one warp a
    // row instead of two, or back) and plain loads instead of the
    // evict-first hints (or back) give the same bits.
    if (fused && T <= 4)
      for (int alt = 0; alt < 2; ++alt) {
        const bool split = downSplitEnabled(), hint = streamHintEnabled();
        if (alt == 0)
          setDownSplitEnabled(!split);
        else
          setStreamHintEnabled(!hint);
        DeviceBuffer y2(T * c.H * dtypeBytes(dt));
        y2.poison();
        CP_ASSERT_OK(moe(dx.get(), T, w, p, y2.get(), dt, ctx, nullptr));
        CP_ASSERT_SYNC();
        setDownSplitEnabled(split);
        setStreamHintEnabled(hint);
        std::vector<uint8_t> b1(T * c.H * dtypeBytes(dt)), b2(b1.size());
        cudaMemcpy(b1.data(), y.get(), b1.size(), cudaMemcpyDeviceToHost);
        cudaMemcpy(b2.data(), y2.get(), b2.size(), cudaMemcpyDeviceToHost);
        EXPECT_EQ(b1, b2) << (alt == 0 ? "split " : "hint ")
                          << (alt == 0 ? split : hint);
      }

    // The router alone, with its weights.
    DeviceBuffer i2(T * c.K * 4), w2(T * c.K * 4);
    i2.poison();
    w2.poison();
    CP_ASSERT_OK(route(dx.get(), dRouter.get(), T, c.H, c.E, c.K, c.norm,
                       i2.as<int32_t>(), w2.as<float>(), dt, nullptr));
    CP_ASSERT_SYNC();
    EXPECT_EQ(downloadInts(i2.get(), T * c.K), gotIdx);
    std::vector<float> gotW = download(w2.get(), T * c.K, DType::kF32), a, b;
    for (int64_t t = 0; t < T; ++t)
      if (!tiedRows.count(t))
        for (int32_t k = 0; k < c.K; ++k) {
          a.push_back(gotW[t * c.K + k]);
          b.push_back(refW[t * c.K + k]);
        }
    EXPECT_LE(relErr(a, b), 1e-5);
  }

  cublasHandle_t blas_ = nullptr;
};

TEST_P(MoeCudaTest, TopTwoOfEight) {
  for (int64_t T : {1, 8, 32, 37})
    check(MoeCase{8, 2, 128, 96, false, 0, false}, T, uint32_t(100 + T));
}

TEST_P(MoeCudaTest, TopEightOfEightWithRenorm) {
  for (int64_t T : {1, 8})
    check(MoeCase{8, 8, 64, 32, true, 0, false}, T, uint32_t(200 + T));
}

TEST_P(MoeCudaTest, TopEightOf128Renormalized) {
  for (int64_t T : {1, 8, 32, 37})
    check(MoeCase{128, 8, 256, 64, true, 0, false}, T, uint32_t(300 + T));
}

TEST_P(MoeCudaTest, TopTwoOf128) {
  for (int64_t T : {1, 32})
    check(MoeCase{128, 2, 128, 48, false, 0, false}, T, uint32_t(400 + T));
}

TEST_P(MoeCudaTest, SharedExpertGatedAndUngated) {
  for (int64_t T : {1, 8, 37}) {
    check(MoeCase{8, 2, 128, 64, false, 160, true}, T, uint32_t(500 + T));
    check(MoeCase{8, 2, 128, 64, true, 96, false}, T, uint32_t(600 + T));
  }
}

// bf16 tensor-core expert kernels (hidden, intermediate multiples of 64)
// with more than 16 tokens per expert (several m-tiles per weight pass) and
// a gated shared expert on the same path.
TEST_P(MoeCudaTest, ManyTokensPerExpertOnTheMmaPath) {
  setMoeGemmEnabled(false); // T * K >= 16 * E would take the GEMM path
  struct Restore {
    ~Restore() { setMoeGemmEnabled(true); }
  } restore;
  for (int64_t T : {37, 70})
    check(MoeCase{4, 2, 128, 128, false, 192, true}, T, uint32_t(800 + T));
}

TEST_P(MoeCudaTest, OddSizesTakeTheScalarPath) {
  check(MoeCase{6, 3, 70, 45, false, 30, true}, 5, 700);
  check(MoeCase{6, 3, 70, 45, false, 30, true}, 3, 701); // fused, FMA
}

// The fused small-T path (router + top-k + grouping in one launch, down
// projection + weighted combine in another) at T = 1 and 3, with and without
// renormalization, with a gated and an ungated shared expert, against the
// CPU kernels; and the grouped path at the same T for comparison.
TEST_P(MoeCudaTest, FusedSmallT) {
  for (int64_t T : {1, 3})
    for (bool norm : {false, true}) {
      const uint32_t seed = uint32_t(900 + 10 * T + norm);
      check(MoeCase{128, 8, 256, 64, norm, 0, false}, T, seed);
      check(MoeCase{8, 2, 128, 64, norm, 160, true}, T, seed + 100);
      check(MoeCase{8, 2, 128, 64, norm, 96, false}, T, seed + 200);
      check(MoeCase{8, 8, 64, 32, norm, 0, false}, T, seed + 300); // K = E
    }
  check(MoeCase{128, 8, 256, 64, true, 0, false}, 4, 990); // largest fused T
  // One token at Qwen3's and OLMoE's intermediate sizes, and a gated shared
  // expert beside it.
  check(MoeCase{128, 8, 256, 768, true, 0, false}, 1, 991);
  check(MoeCase{64, 8, 128, 1024, false, 0, false}, 1, 992);
  check(MoeCase{8, 2, 128, 512, false, 160, true}, 1, 993);
}

// Routing ties and NaN on the fused path (block-parallel softmax + top-k by
// rank at T = 1, or one warp's repeated argmax) against the CPU router and the
// grouped path (one warp's repeated argmax): experts 7, 50 and 100 share the
// highest logit and every other expert ties at zero, so the top 8 are 7, 50,
// 100, then 0..4 (lower index first); a NaN input row routes as the grouped
// path routes it.
TEST_P(MoeCudaTest, FusedRoutingTiesAndNaN) {
  const DType dt = GetParam();
  const int32_t E = 128, K = 8;
  const int64_t H = 64, I = 64;
  struct Restore {
    ~Restore() {
      setMoeFusedEnabled(true);
      setRouteBlockEnabled(true);
    }
  } restore;
  std::vector<float> router(E * H, 0.0f), x;
  for (int32_t e : {100, 7, 50})
    for (int64_t i = 0; i < H; ++i)
      router[e * H + i] = 0.25f;
  std::vector<float> zeros(I * H, 0.0f);
  DeviceBuffer dz = upload(zeros, dt), dRouter = upload(router, dt);
  std::vector<ExpertPtrs> table(E, ExpertPtrs{dz.get(), dz.get(), dz.get()});
  DeviceBuffer dTable(table.size() * sizeof(ExpertPtrs));
  ASSERT_EQ(cudaMemcpy(dTable.get(), table.data(),
                       table.size() * sizeof(ExpertPtrs),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  MoeWeights w;
  w.router = dRouter.get();
  w.experts = dTable.as<ExpertPtrs>();
  for (bool block : {true, false})
    for (bool norm : {false, true})
      for (int64_t T : {1, 3}) {
        setRouteBlockEnabled(block);
        MoeParams p;
        p.hidden = H;
        p.numExperts = E;
        p.topK = K;
        p.normTopkProb = norm;
        p.intermediate = I;
        auto routeOn = [&](const std::vector<float> &xs, bool fused) {
          setMoeFusedEnabled(fused);
          DeviceBuffer dx = upload(xs, dt), y(T * H * dtypeBytes(dt)),
                       idx(T * K * 4), ws(moeWorkspaceBytes(T, p));
          idx.poison();
          BlockContext ctx;
          ctx.blas = blas_;
          ctx.workspace = ws.get();
          ctx.workspaceBytes = int64_t(ws.bytes());
          EXPECT_TRUE(
              moe(dx.get(), T, w, p, y.get(), dt, ctx, idx.as<int32_t>()).ok());
          EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          std::vector<int32_t> got(T * K);
          cudaMemcpy(got.data(), idx.get(), got.size() * 4,
                     cudaMemcpyDeviceToHost);
          return got;
        };
        SCOPED_TRACE(::testing::Message()
                     << dtypeName(dt) << " T=" << T << " norm=" << norm
                     << " block=" << block);
        std::vector<float> ones(T * H, 1.0f);
        std::vector<int32_t> cpuIdx(T * K);
        std::vector<float> cpuW(T * K);
        cpu::route(ones.data(), router.data(), T, H, E, K, norm, cpuIdx.data(),
                   cpuW.data());
        const std::vector<int32_t> expect = {7, 50, 100, 0, 1, 2, 3, 4};
        const std::vector<int32_t> fusedIdx = routeOn(ones, true);
        for (int64_t t = 0; t < T; ++t)
          for (int32_t k = 0; k < K; ++k) {
            EXPECT_EQ(fusedIdx[t * K + k], expect[k]) << "row " << t;
            EXPECT_EQ(cpuIdx[t * K + k], expect[k]) << "row " << t;
          }
        std::vector<float> withNaN = ones;
        withNaN[0] = std::nanf("");
        EXPECT_EQ(routeOn(withNaN, true), routeOn(withNaN, false));
      }
}

TEST_P(MoeCudaTest, GroupedPathAtSmallT) {
  for (int64_t T : {1, 3}) {
    check(MoeCase{128, 8, 256, 64, true, 0, false}, T, uint32_t(1000 + T),
          /*fused=*/false);
    check(MoeCase{8, 2, 128, 64, false, 160, true}, T, uint32_t(1100 + T),
          /*fused=*/false);
  }
}

/// One MoE layer's weights on the host (rounded to the storage type), on the
/// device, and as the CPU kernel's view.
struct MoeModel {
  MoeParams p;
  std::vector<float> router, sg, su, sd, sgate;
  std::vector<std::vector<float>> gate, up, down;
  std::vector<cpu::ExpertWeights> cpuExperts;
  cpu::MoeWeights cw;
  std::vector<DeviceBuffer> bufs;
  MoeWeights w;

  MoeModel(const MoeCase &c, DType dt, uint32_t seed) {
    p.hidden = c.H;
    p.numExperts = c.E;
    p.topK = c.K;
    p.normTopkProb = c.norm;
    p.intermediate = c.I;
    p.sharedIntermediate = c.sharedI;
    const float ws = 2.0f / std::sqrt(float(c.H));
    router = storageRound(randomVec(c.E * c.H, seed, 8.0f * ws), dt);
    gate.resize(c.E);
    up.resize(c.E);
    down.resize(c.E);
    for (int32_t e = 0; e < c.E; ++e) {
      gate[e] = storageRound(randomVec(c.I * c.H, seed + 10 * e + 1, ws), dt);
      up[e] = storageRound(randomVec(c.I * c.H, seed + 10 * e + 2, ws), dt);
      down[e] = storageRound(
          randomVec(c.H * c.I, seed + 10 * e + 3, 2.0f / std::sqrt(float(c.I))),
          dt);
    }
    cpuExperts.resize(c.E);
    for (int32_t e = 0; e < c.E; ++e)
      cpuExperts[e] = {gate[e].data(), up[e].data(), down[e].data()};
    cw.router = router.data();
    cw.experts = cpuExperts.data();
    std::vector<ExpertPtrs> table(c.E);
    for (int32_t e = 0; e < c.E; ++e) {
      bufs.push_back(upload(gate[e], dt));
      table[e].gate = bufs.back().get();
      bufs.push_back(upload(up[e], dt));
      table[e].up = bufs.back().get();
      bufs.push_back(upload(down[e], dt));
      table[e].down = bufs.back().get();
    }
    bufs.push_back(DeviceBuffer(table.size() * sizeof(ExpertPtrs)));
    cudaMemcpy(bufs.back().get(), table.data(),
               table.size() * sizeof(ExpertPtrs), cudaMemcpyHostToDevice);
    w.experts = bufs.back().as<ExpertPtrs>();
    bufs.push_back(upload(router, dt));
    w.router = bufs.back().get();
    if (c.sharedI) {
      sg = storageRound(randomVec(c.sharedI * c.H, seed + 7001, ws), dt);
      su = storageRound(randomVec(c.sharedI * c.H, seed + 7002, ws), dt);
      sd = storageRound(randomVec(c.H * c.sharedI, seed + 7003,
                                  2.0f / std::sqrt(float(c.sharedI))),
                        dt);
      cw.shared = {sg.data(), su.data(), sd.data()};
      bufs.push_back(upload(sg, dt));
      w.shared.gate = bufs.back().get();
      bufs.push_back(upload(su, dt));
      w.shared.up = bufs.back().get();
      bufs.push_back(upload(sd, dt));
      w.shared.down = bufs.back().get();
      if (c.sharedGate) {
        sgate = storageRound(randomVec(c.H, seed + 7004, ws), dt);
        cw.sharedGate = sgate.data();
        bufs.push_back(upload(sgate, dt));
        w.sharedGate = bufs.back().get();
      }
    }
  }

  std::vector<float> cpuMoe(const std::vector<float> &x, int64_t T) const {
    std::vector<float> ref(T * p.hidden);
    EXPECT_TRUE(cpu::moe(x.data(), T, cw, p, ref.data()).ok());
    return ref;
  }
};

// A captured graph of the fused path replayed three times with different
// inputs: routeFusedKernel's last-block counter must be back at zero after
// every replay (a stale counter leaves the routing, and so the output, of the
// previous input). Also: the graph's result is bit-identical to eager runs
// with PDL on and off and with the early prefetch of the down rows (reads
// the pairs before the PDL wait) on and off: every kernel is deterministic
// and a prefetch is only a hint.
/// moe() of case `c` at T rows on two inputs (model seed `seed`, inputs
/// seed + 100 + 7i + T), captured once into a CUDA graph (with the switches
/// in force when called) and replayed `replays` times alternating the inputs:
/// each replay within the tolerance of the CPU, repeats of an input
/// bit-identical. Then `eager(run, graphOut)`: run(i) runs moe() eagerly on
/// input i (with the switches in force then) and returns its output.
using EagerRun = std::function<std::vector<float>(int)>;
void replayThenEager(
    const MoeCase &c, DType dt, uint32_t seed, int64_t T, int replays,
    const std::function<void(const EagerRun &,
                             const std::vector<std::vector<float>> &)> &eager) {
  SCOPED_TRACE(::testing::Message() << dtypeName(dt) << " T=" << T);
  MoeModel m(c, dt, seed + T);
  std::vector<std::vector<float>> xs, refs;
  for (uint32_t i = 0; i < 2; ++i) {
    xs.push_back(storageRound(randomVec(T * c.H, seed + 100 + 7 * i + T), dt));
    refs.push_back(m.cpuMoe(xs.back(), T));
  }
  DeviceBuffer dx(T * c.H * dtypeBytes(dt)), y(T * c.H * dtypeBytes(dt)),
      ws(moeWorkspaceBytes(T, m.p));
  ws.poison(); // the counters must not live in (uninitialized) workspace
  CP_ASSERT_SYNC();
  cudaStream_t stream = nullptr;
  CP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BlockContext ctx;
  ctx.stream = stream;
  ctx.workspace = ws.get();
  ctx.workspaceBytes = int64_t(ws.bytes());
  auto setX = [&](int i) {
    DeviceBuffer src = upload(xs[i], dt);
    EXPECT_EQ(cudaMemcpyAsync(dx.get(), src.get(), dx.bytes(),
                              cudaMemcpyDeviceToDevice, stream),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    y.poison(); // legacy stream: finish it before the non-blocking one
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  };
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CP_ASSERT_CUDA(
      cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  absl::Status enq = moe(dx.get(), T, m.w, m.p, y.get(), dt, ctx);
  CP_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  CP_ASSERT_OK(enq);
  CP_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<std::vector<float>> graphOut(2);
  for (int rep = 0; rep < replays; ++rep) {
    const int i = rep % 2;
    setX(i);
    CP_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
    std::vector<float> got = download(y.get(), T * c.H, dt);
    EXPECT_LE(relErr(got, refs[i]), tolerance(dt)) << "replay " << rep;
    if (rep < 2)
      graphOut[i] = got;
    else
      EXPECT_EQ(got, graphOut[i]) << "replays of one input differ";
  }
  eager(
      [&](int i) {
        setX(i);
        EXPECT_TRUE(moe(dx.get(), T, m.w, m.p, y.get(), dt, ctx).ok());
        EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        return download(y.get(), T * c.H, dt);
      },
      graphOut);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_P(MoeCudaTest, FusedGraphReplaysResetTheCounter) {
  for (int64_t T : {1, 3})
    replayThenEager(
        MoeCase{16, 4, 128, 64, true, 96, true}, GetParam(), 1200, T, 3,
        [](const EagerRun &run, const std::vector<std::vector<float>> &out) {
          for (bool pdl : {true, false})
            for (bool early : {true, false}) {
              setPdlEnabled(pdl);
              setEarlyPrefetchEnabled(early);
              for (int i = 0; i < 2; ++i)
                EXPECT_EQ(run(i), out[i]) << "eager, pdl " << pdl << ", early "
                                          << early << ", input " << i;
            }
          setPdlEnabled(true);
          setEarlyPrefetchEnabled(false);
        });
}

//===----------------------------------------------------------------------===//
// The prefill GEMM path (bf16; fp32 keeps the grouped path)
//===----------------------------------------------------------------------===//

/// The rows (H values each) of `got` and `ref` whose routings `ia`, `ib`
/// ([T, K]) agree, appended to `a` and `b`; returns how many rows.
int64_t sameRouteRows(const std::vector<float> &got,
                      const std::vector<float> &ref,
                      const std::vector<int32_t> &ia,
                      const std::vector<int32_t> &ib, int64_t T, int32_t K,
                      int64_t H, std::vector<float> &a, std::vector<float> &b) {
  int64_t same = 0;
  for (int64_t t = 0; t < T; ++t) {
    bool eq = true;
    for (int32_t k = 0; k < K; ++k)
      eq &= ia[t * K + k] == ib[t * K + k];
    if (!eq)
      continue;
    ++same;
    a.insert(a.end(), got.begin() + t * H, got.begin() + (t + 1) * H);
    b.insert(b.end(), ref.begin() + t * H, ref.begin() + (t + 1) * H);
  }
  return same;
}

/// The CPU routing of x for `m`.
std::vector<int32_t> cpuRouting(const MoeModel &m, const std::vector<float> &x,
                                int64_t T) {
  std::vector<int32_t> idx(T * m.p.topK);
  std::vector<float> wts(T * m.p.topK);
  cpu::route(x.data(), m.router.data(), T, m.p.hidden, m.p.numExperts, m.p.topK,
             m.p.normTopkProb, idx.data(), wts.data());
  return idx;
}

/// Restores the prefill-path settings at scope exit.
struct GemmSettings {
  GemmSettings(int32_t minPairs, int32_t streams) {
    setMoeGemmEnabled(true);
    setMoeGemmMinPairsPerExpert(minPairs);
    setMoeGemmMaxExperts(1 << 20);
    setMoeGemmStreams(streams);
  }
  ~GemmSettings() {
    setMoeGemmEnabled(true);
    setMoeGemmMinPairsPerExpert(kMoeGemmMinPairsPerExpert);
    setMoeGemmMaxExperts(kMoeGemmMaxExperts);
    setMoeGemmStreams(4);
  }
};

// Prompt-sized T (odd counts included) on the GEMM path, against the CPU
// kernels: renormalized and not, a gated and an ungated shared expert, E
// from 8 to 128, one side stream, the default four and more streams than
// active experts. moeGemmCalls() proves the path was taken (bf16) or not
// (fp32).
TEST_P(MoeCudaTest, PrefillGemmPath) {
  const DType dt = GetParam();
  struct Run {
    MoeCase c;
    int64_t T;
    int32_t streams;
  };
  const Run runs[] = {
      {{16, 4, 128, 64, true, 0, false}, 64, 4},
      {{16, 4, 128, 64, false, 0, false}, 200, 4},
      {{16, 4, 128, 64, true, 0, false}, 300, 1},
      {{8, 2, 256, 96, false, 160, true}, 64, 4},
      {{8, 2, 256, 96, false, 160, true}, 201, 8},
      {{8, 2, 128, 64, true, 96, false}, 200, 2},
      {{60, 4, 128, 64, false, 128, true}, 300, 4}, // Qwen1.5-MoE-like
      {{128, 8, 128, 64, true, 0, false}, 200, 4},  // Qwen3-like
      {{128, 8, 128, 64, true, 0, false}, 64, 3},   // some experts idle
  };
  for (const Run &r : runs) {
    // Threshold 0: the path whatever the rows per expert.
    GemmSettings settings(0, r.streams);
    const int64_t before = moeGemmCalls();
    check(r.c, r.T, uint32_t(1500 + r.T + r.c.E), /*fused=*/true);
    EXPECT_EQ(moeGemmCalls() - before, dt == DType::kBF16 ? 1 : 0)
        << "E=" << r.c.E << " T=" << r.T;
  }
}

// The default threshold: T * K >= 16 * E takes the path, fewer pairs do not;
// CROSSPOOL_MOE_GEMM=0's setter turns it off.
TEST_P(MoeCudaTest, PrefillGemmThresholdAndSwitch) {
  const DType dt = GetParam();
  GemmSettings settings(kMoeGemmMinPairsPerExpert, 4);
  const MoeCase c{16, 4, 128, 64, true, 0, false}; // 16 * 16 / 4 = 64 rows
  int64_t before = moeGemmCalls();
  check(c, 63, 1601);
  EXPECT_EQ(moeGemmCalls(), before);
  check(c, 64, 1602);
  EXPECT_EQ(moeGemmCalls() - before, dt == DType::kBF16 ? 1 : 0);
  // More experts than moeGemmMaxExperts(): the grouped path, at any T.
  setMoeGemmMaxExperts(8);
  before = moeGemmCalls();
  check(c, 128, 1604);
  EXPECT_EQ(moeGemmCalls(), before);
  setMoeGemmMaxExperts(16);
  check(c, 128, 1605);
  EXPECT_EQ(moeGemmCalls() - before, dt == DType::kBF16 ? 1 : 0);
  setMoeGemmEnabled(false);
  before = moeGemmCalls();
  check(c, 128, 1603);
  EXPECT_EQ(moeGemmCalls(), before);
}

/// A copy of `m`'s expert table whose experts each live in one allocation
/// holding the three matrices in `order` (0 gate, 1 up, 2 down): [0, 1, 2]
/// is a stacked [2I, H] gate/up (one GEMM), [0, 2, 1] puts up after gate
/// but not adjacent (strided-batched GEMM), [1, 0, 2] puts it before (two
/// GEMMs).
struct ArenaTable {
  std::vector<DeviceBuffer> bufs;
  DeviceBuffer table;

  ArenaTable(const MoeModel &m, DType dt, const int order[3]) {
    const int64_t E = m.p.numExperts;
    std::vector<ExpertPtrs> t(E);
    for (int64_t e = 0; e < E; ++e) {
      const std::vector<float> *mats[3] = {&m.gate[e], &m.up[e], &m.down[e]};
      std::vector<float> all;
      for (int j = 0; j < 3; ++j)
        all.insert(all.end(), mats[order[j]]->begin(), mats[order[j]]->end());
      bufs.push_back(upload(all, dt));
      char *base = static_cast<char *>(bufs.back().get());
      const void *ptr[3];
      int64_t at = 0;
      for (int j = 0; j < 3; ++j) {
        ptr[order[j]] = base + at * dtypeBytes(dt);
        at += int64_t(mats[order[j]]->size());
      }
      t[e] = {ptr[0], ptr[1], ptr[2]};
    }
    table.allocate(t.size() * sizeof(ExpertPtrs));
    cudaMemcpy(table.get(), t.data(), t.size() * sizeof(ExpertPtrs),
               cudaMemcpyHostToDevice);
  }
};

// The three gate/up layouts of the GEMM path, each against the CPU and
// against the grouped path (CROSSPOOL_MOE_GEMM=0) on rows routed alike.
TEST_P(MoeCudaTest, PrefillGemmWeightLayouts) {
  const DType dt = GetParam();
  const MoeCase c{8, 2, 128, 64, true, 96, true};
  const int64_t T = 150;
  MoeModel m(c, dt, 1700);
  const std::vector<float> x = storageRound(randomVec(T * c.H, 1701), dt);
  const std::vector<float> ref = m.cpuMoe(x, T);
  const std::vector<int32_t> refIdx = cpuRouting(m, x, T);
  DeviceBuffer dx = upload(x, dt), ws(moeWorkspaceBytes(T, m.p));
  BlockContext ctx;
  ctx.blas = blas_;
  ctx.workspace = ws.get();
  ctx.workspaceBytes = int64_t(ws.bytes());
  const int orders[3][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}};
  for (const auto &order : orders) {
    SCOPED_TRACE(::testing::Message() << dtypeName(dt) << " order " << order[0]
                                      << order[1] << order[2]);
    ArenaTable arena(m, dt, order);
    MoeWeights w = m.w;
    w.experts = arena.table.as<ExpertPtrs>();
    std::vector<std::vector<float>> outs;
    std::vector<std::vector<int32_t>> idxs;
    for (bool gemm : {true, false}) {
      GemmSettings settings(0, 4);
      setMoeGemmEnabled(gemm);
      DeviceBuffer y(T * c.H * dtypeBytes(dt)), idx(T * c.K * 4);
      y.poison();
      ws.poison();
      CP_ASSERT_SYNC();
      const int64_t before = moeGemmCalls();
      CP_ASSERT_OK(
          moe(dx.get(), T, w, m.p, y.get(), dt, ctx, idx.as<int32_t>()));
      CP_ASSERT_SYNC();
      EXPECT_EQ(moeGemmCalls() - before, gemm && dt == DType::kBF16 ? 1 : 0);
      outs.push_back(download(y.get(), T * c.H, dt));
      idxs.push_back(downloadInts(idx.get(), T * c.K));
      // Rows routed as the CPU routes them (all but a few near ties).
      std::vector<float> a, b;
      EXPECT_GE(sameRouteRows(outs.back(), ref, idxs.back(), refIdx, T, c.K,
                              c.H, a, b),
                T - T / 8)
          << "gemm " << gemm;
      EXPECT_LE(relErr(a, b), tolerance(dt)) << "gemm " << gemm;
    }
    std::vector<float> a, b;
    EXPECT_GE(
        sameRouteRows(outs[0], outs[1], idxs[0], idxs[1], T, c.K, c.H, a, b),
        T - T / 8);
    // Same rounding points, only the accumulation order differs.
    EXPECT_LE(relErr(a, b), dt == DType::kBF16 ? 1e-2 : 1e-6);
  }
}

// During stream capture moe() keeps the grouped path (the GEMM path waits
// on the host): a graph captured at T = 128 with the GEMM path enabled and
// replayed matches the CPU, and the counter does not move.
TEST_P(MoeCudaTest, PrefillGemmNotTakenWhileCapturing) {
  const DType dt = GetParam();
  GemmSettings settings(0, 4);
  const MoeCase c{16, 4, 128, 64, false, 96, true};
  const int64_t T = 128;
  MoeModel m(c, dt, 1800);
  const std::vector<float> x = storageRound(randomVec(T * c.H, 1801), dt);
  const std::vector<float> ref = m.cpuMoe(x, T);
  const std::vector<int32_t> refIdx = cpuRouting(m, x, T);
  DeviceBuffer dx = upload(x, dt), y(T * c.H * dtypeBytes(dt)),
               ws(moeWorkspaceBytes(T, m.p)), idx(T * c.K * 4);
  // Output against the CPU on the rows routed as the CPU routes them.
  auto expectNearCpu = [&](const char *what) {
    std::vector<float> a, b;
    EXPECT_GE(sameRouteRows(download(y.get(), T * c.H, dt), ref,
                            downloadInts(idx.get(), T * c.K), refIdx, T, c.K,
                            c.H, a, b),
              T - T / 8)
        << what;
    EXPECT_LE(relErr(a, b), tolerance(dt)) << what;
  };
  ws.poison();
  y.poison();
  CP_ASSERT_SYNC();
  cudaStream_t stream = nullptr;
  CP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BlockContext ctx;
  ctx.stream = stream;
  ctx.blas = blas_;
  ctx.workspace = ws.get();
  ctx.workspaceBytes = int64_t(ws.bytes());
  const int64_t before = moeGemmCalls();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CP_ASSERT_CUDA(
      cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  absl::Status enq =
      moe(dx.get(), T, m.w, m.p, y.get(), dt, ctx, idx.as<int32_t>());
  CP_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  CP_ASSERT_OK(enq);
  EXPECT_EQ(moeGemmCalls(), before);
  CP_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<float> graphOut;
  for (int rep = 0; rep < 2; ++rep) {
    CP_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
    std::vector<float> got = download(y.get(), T * c.H, dt);
    expectNearCpu("graph");
    if (rep == 0)
      graphOut = got;
    else
      EXPECT_EQ(got, graphOut);
  }
  EXPECT_EQ(moeGemmCalls(), before);
  // Eagerly on the same stream: the GEMM path (bf16), close to the graph.
  y.poison();
  CP_ASSERT_SYNC();
  CP_ASSERT_OK(moe(dx.get(), T, m.w, m.p, y.get(), dt, ctx, idx.as<int32_t>()));
  CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(moeGemmCalls() - before, dt == DType::kBF16 ? 1 : 0);
  expectNearCpu("eager");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Modes, MoeCudaTest,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto &info) {
                           return std::string(dtypeName(info.param));
                         });

TEST(MoeCudaArgsTest, RejectsBadArguments) {
  MoeParams p;
  p.hidden = 64;
  p.numExperts = 8;
  p.topK = 9;
  p.intermediate = 32;
  int32_t dummy = 0;
  MoeWeights w;
  w.router = &dummy;
  w.experts = reinterpret_cast<const ExpertPtrs *>(&dummy);
  BlockContext ctx;
  EXPECT_EQ(moe(&dummy, 1, w, p, &dummy, DType::kF32, ctx).code(),
            absl::StatusCode::kInvalidArgument); // top_k > E
  p.topK = 2;
  EXPECT_EQ(moe(&dummy, 1, w, p, &dummy, DType::kF32, ctx).code(),
            absl::StatusCode::kInvalidArgument); // no workspace
  MoeWeights half = w;
  half.shared.gate = &dummy;
  EXPECT_EQ(moe(&dummy, 1, half, p, &dummy, DType::kF32, ctx).code(),
            absl::StatusCode::kInvalidArgument); // 1 of 3 shared weights
  MoeWeights gateOnly = w;
  gateOnly.sharedGate = &dummy;
  EXPECT_EQ(moe(&dummy, 1, gateOnly, p, &dummy, DType::kF32, ctx).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(route(&dummy, &dummy, 1, 64, 8, 0, false, &dummy,
                  reinterpret_cast<float *>(&dummy), DType::kF32, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(moe(&dummy, 0, w, p, &dummy, DType::kF32, ctx).code(),
            absl::StatusCode::kOk); // nothing to do
}

} // namespace
} // namespace crosspool::kernels::cuda
