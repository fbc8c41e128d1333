//===- MoeCudaTest.cpp - Router and MoE block vs the CPU kernels ----------===//

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Kernels.h"

#include "test/unit/kernels/cuda/CudaTestUtil.h"

#include <cublas_v2.h>

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
TEST_P(MoeCudaTest, FusedGraphReplaysResetTheCounter) {
  const DType dt = GetParam();
  for (int64_t T : {1, 3}) {
    SCOPED_TRACE(::testing::Message() << dtypeName(dt) << " T=" << T);
    const MoeCase c{16, 4, 128, 64, true, 96, true};
    MoeModel m(c, dt, uint32_t(1200 + T));
    std::vector<std::vector<float>> xs, refs;
    for (uint32_t i = 0; i < 2; ++i) {
      xs.push_back(storageRound(randomVec(T * c.H, 1300 + 7 * i + T), dt));
      refs.push_back(m.cpuMoe(xs.back(), T));
    }
    DeviceBuffer dx(T * c.H * dtypeBytes(dt)), y(T * c.H * dtypeBytes(dt)),
        ws(moeWorkspaceBytes(T, m.p));
    ws.poison(); // the counter must not live in (uninitialized) workspace
    CP_ASSERT_SYNC();
    cudaStream_t stream = nullptr;
    CP_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    BlockContext ctx;
    ctx.stream = stream;
    ctx.workspace = ws.get();
    ctx.workspaceBytes = int64_t(ws.bytes());
    auto setX = [&](int i) {
      DeviceBuffer src = upload(xs[i], dt);
      CP_ASSERT_CUDA(cudaMemcpyAsync(dx.get(), src.get(), dx.bytes(),
                                     cudaMemcpyDeviceToDevice, stream));
      CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
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
    for (int rep = 0; rep < 3; ++rep) {
      const int i = rep % 2;
      setX(i);
      y.poison(); // legacy stream: finish it before the non-blocking one
      CP_ASSERT_SYNC();
      CP_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
      CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
      std::vector<float> got = download(y.get(), T * c.H, dt);
      EXPECT_LE(relErr(got, refs[i]), tolerance(dt)) << "replay " << rep;
      if (rep < 2)
        graphOut[i] = got;
      else
        EXPECT_EQ(got, graphOut[i]) << "replays of one input differ";
    }
    for (bool pdl : {true, false})
      for (bool early : {true, false}) {
        setPdlEnabled(pdl);
        setEarlyPrefetchEnabled(early);
        for (int i = 0; i < 2; ++i) {
          setX(i);
          y.poison();
          CP_ASSERT_SYNC();
          CP_ASSERT_OK(moe(dx.get(), T, m.w, m.p, y.get(), dt, ctx));
          CP_ASSERT_CUDA(cudaStreamSynchronize(stream));
          EXPECT_EQ(download(y.get(), T * c.H, dt), graphOut[i])
              << "eager, pdl " << pdl << ", early " << early << ", input "
              << i;
        }
      }
    setPdlEnabled(true);
    setEarlyPrefetchEnabled(true);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
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
