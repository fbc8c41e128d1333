//===- AttentionCudaTest.cpp - Paged attention block vs the CPU kernel ----===//
//
// Each check builds a paged KV cache with scattered page ids (and a page
// stride larger than a page), fills the positions before the step with
// random K/V on both sides, runs one step of the Attention task on the CPU
// (cpu::attention) and on the device, and compares the outputs and every
// cached K/V value the step can see, including the ones it wrote.
//
//===----------------------------------------------------------------------===//

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Kernels.h"

#include "test/unit/kernels/cuda/CudaTestUtil.h"

#include <cublas_v2.h>

#include <map>
#include <numeric>
#include <optional>

namespace crosspool::kernels::cuda {
namespace {

using namespace testing;

struct Geometry {
  int32_t nh, nkv, hd;
  int64_t hidden;
  int32_t qkNorm;
  float clip;
  int32_t window;
  bool bias;
  int32_t tpp = 16;
};

/// One step: rows (sequence, position); positions of a sequence before its
/// first row are already in the cache.
struct Step {
  std::vector<int32_t> rowSeq, rowPos;
};

Step decodeStep(std::vector<int32_t> positions) {
  Step s;
  for (size_t i = 0; i < positions.size(); ++i) {
    s.rowSeq.push_back(int32_t(i));
    s.rowPos.push_back(positions[i]);
  }
  return s;
}

Step prefillStep(std::vector<std::pair<int32_t, int32_t>> seqRanges) {
  Step s;
  for (size_t i = 0; i < seqRanges.size(); ++i)
    for (int32_t p = seqRanges[i].first; p < seqRanges[i].second; ++p) {
      s.rowSeq.push_back(int32_t(i));
      s.rowPos.push_back(p);
    }
  return s;
}

/// Decode rows of sequences 0..n-1 first, then a prompt chunk [a, b) of
/// sequence n (the order the serving engine builds a mixed step in).
Step mixedStep(std::vector<int32_t> decodePositions, int32_t a, int32_t b) {
  Step s = decodeStep(decodePositions);
  for (int32_t p = a; p < b; ++p) {
    s.rowSeq.push_back(int32_t(decodePositions.size()));
    s.rowPos.push_back(p);
  }
  return s;
}

class AttentionHarness {
public:
  AttentionHarness(const Geometry &g, DType dt, uint32_t seed)
      : g_(g), dt_(dt), seed_(seed) {
    p_.hidden = g.hidden;
    p_.numHeads = g.nh;
    p_.numKvHeads = g.nkv;
    p_.headDim = g.hd;
    p_.qkNorm = g.qkNorm;
    p_.slidingWindow = g.window;
    p_.ropeTheta = 1000000.0f;
    p_.qkNormEps = 1e-6f;
    p_.clipQkv = g.clip;
    p_.softmaxScale = 1.0f / std::sqrt(float(g.hd));
    const int64_t qd = int64_t(g.nh) * g.hd, kd = int64_t(g.nkv) * g.hd;
    const float ws = 1.5f / std::sqrt(float(g.hidden));
    q_ = storageRound(randomVec(qd * g.hidden, seed + 1, ws), dt);
    k_ = storageRound(randomVec(kd * g.hidden, seed + 2, ws), dt);
    v_ = storageRound(randomVec(kd * g.hidden, seed + 3, ws), dt);
    o_ = storageRound(randomVec(g.hidden * qd, seed + 4, ws), dt);
    if (g.bias) {
      qb_ = storageRound(randomVec(qd, seed + 5, 0.2f), dt);
      kb_ = storageRound(randomVec(kd, seed + 6, 0.2f), dt);
      vb_ = storageRound(randomVec(kd, seed + 7, 0.2f), dt);
      ob_ = storageRound(randomVec(g.hidden, seed + 8, 0.2f), dt);
    }
    if (g.qkNorm) {
      int64_t nq = g.qkNorm == 1 ? g.hd : qd, nk = g.qkNorm == 1 ? g.hd : kd;
      qn_ = storageRound(randomVec(nq, seed + 9, 1.5f), dt);
      kn_ = storageRound(randomVec(nk, seed + 10, 1.5f), dt);
    }
  }

  /// Runs `step` on both sides; `forced` replaces chooseAttendConfig.
  /// `decodeRows`: the step's leading rows are passed to attention() as
  /// decode rows (AttendRows), with maxContext over the other rows, as the
  /// CUDA executor does for a mixed step.
  void run(const Step &step, std::optional<AttendConfig> forced,
           cublasHandle_t blas, int64_t decodeRows = 0) {
    SCOPED_TRACE(::testing::Message()
                 << dtypeName(dt_) << " nh=" << g_.nh << " nkv=" << g_.nkv
                 << " hd=" << g_.hd << " qkNorm=" << g_.qkNorm
                 << " clip=" << g_.clip << " window=" << g_.window
                 << " T=" << step.rowSeq.size());
    const int64_t T = int64_t(step.rowSeq.size());
    const int32_t numSeqs =
        *std::max_element(step.rowSeq.begin(), step.rowSeq.end()) + 1;
    std::vector<int32_t> first(numSeqs, INT32_MAX), ctxLen(numSeqs, 0);
    for (int64_t t = 0; t < T; ++t) {
      first[step.rowSeq[t]] = std::min(first[step.rowSeq[t]], step.rowPos[t]);
      ctxLen[step.rowSeq[t]] =
          std::max(ctxLen[step.rowSeq[t]], step.rowPos[t] + 1);
    }
    const int32_t tpp = g_.tpp;
    const int64_t kvDim = int64_t(g_.nkv) * g_.hd;
    const int64_t pageFloats = 2 * tpp * kvDim;
    int32_t maxPages = 0, totalPages = 0;
    for (int32_t s = 0; s < numSeqs; ++s) {
      int32_t n = (ctxLen[s] + tpp - 1) / tpp;
      maxPages = std::max(maxPages, n);
      totalPages += n;
    }
    // Scattered page ids: a shuffled range plus unused gaps.
    const int32_t poolPages = totalPages + 3;
    std::vector<int32_t> ids(poolPages);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(seed_ + 11));
    std::vector<int32_t> table(size_t(numSeqs) * maxPages, -1);
    std::vector<std::vector<float>> cpuPages(poolPages,
                                             std::vector<float>(pageFloats));
    int32_t next = 0;
    for (int32_t s = 0; s < numSeqs; ++s)
      for (int32_t pg = 0; pg < (ctxLen[s] + tpp - 1) / tpp; ++pg)
        table[size_t(s) * maxPages + pg] = ids[next++];
    // Earlier positions: random K/V (post-norm magnitudes).
    std::mt19937 gen(seed_ + 12);
    std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
    for (int32_t s = 0; s < numSeqs; ++s)
      for (int32_t pos = 0; pos < first[s]; ++pos) {
        float *page = cpuPages[table[size_t(s) * maxPages + pos / tpp]].data();
        for (int64_t i = 0; i < kvDim; ++i) {
          page[(pos % tpp) * kvDim + i] = dist(gen);
          page[tpp * kvDim + (pos % tpp) * kvDim + i] = dist(gen);
        }
      }
    for (auto &pg : cpuPages)
      pg = storageRound(pg, dt_);

    // Device pages: one range, stride above the page size.
    const int64_t esize = dtypeBytes(dt_);
    const int64_t stride = pageFloats * esize + 256;
    DeviceBuffer pool(size_t(poolPages * stride));
    pool.poison();
    for (int32_t id = 0; id < poolPages; ++id) {
      DeviceBuffer tmp = upload(cpuPages[id], dt_);
      ASSERT_EQ(cudaMemcpy(pool.as<char>() + id * stride, tmp.get(),
                           pageFloats * esize, cudaMemcpyDeviceToDevice),
                cudaSuccess);
    }
    DeviceBuffer dTable = uploadInts(table);
    KvCacheView kv;
    kv.base = pool.get();
    kv.pageStrideBytes = stride;
    kv.pageTable = dTable.as<int32_t>();
    kv.maxPagesPerSeq = maxPages;
    kv.numSeqs = numSeqs;
    kv.tokensPerPage = tpp;
    kv.numKvHeads = g_.nkv;
    kv.headDim = g_.hd;
    kv.dtype = dt_;

    // CPU oracle.
    std::vector<float> x =
        storageRound(randomVec(T * g_.hidden, seed_ + 13), dt_);
    std::vector<std::vector<float *>> seqPagePtrs(numSeqs);
    std::vector<cpu::KvSequencePages> seqs(numSeqs);
    for (int32_t s = 0; s < numSeqs; ++s) {
      for (int32_t pg = 0; pg < (ctxLen[s] + tpp - 1) / tpp; ++pg)
        seqPagePtrs[s].push_back(
            cpuPages[table[size_t(s) * maxPages + pg]].data());
      seqs[s].pages = seqPagePtrs[s].data();
      seqs[s].numPages = int32_t(seqPagePtrs[s].size());
    }
    cpu::KvLayerView cpuKv{seqs.data(), numSeqs, tpp, g_.nkv, g_.hd};
    cpu::AttentionWeights cw;
    cw.q = q_.data();
    cw.k = k_.data();
    cw.v = v_.data();
    cw.o = o_.data();
    if (g_.bias) {
      cw.qBias = qb_.data();
      cw.kBias = kb_.data();
      cw.vBias = vb_.data();
      cw.oBias = ob_.data();
    }
    if (g_.qkNorm) {
      cw.qNorm = qn_.data();
      cw.kNorm = kn_.data();
    }
    std::vector<float> ref(T * g_.hidden);
    ASSERT_TRUE(cpu::attention(x.data(), T, cw, p_, step.rowSeq.data(),
                               step.rowPos.data(), cpuKv, ref.data())
                    .ok());

    // Device.
    DeviceBuffer dq = upload(q_, dt_), dk = upload(k_, dt_),
                 dv = upload(v_, dt_), dO = upload(o_, dt_);
    DeviceBuffer dqb = upload(qb_, dt_), dkb = upload(kb_, dt_),
                 dvb = upload(vb_, dt_), dob = upload(ob_, dt_);
    DeviceBuffer dqn = upload(qn_, dt_), dkn = upload(kn_, dt_);
    AttentionWeights w;
    w.q = dq.get();
    w.k = dk.get();
    w.v = dv.get();
    w.o = dO.get();
    if (g_.bias) {
      w.qBias = dqb.get();
      w.kBias = dkb.get();
      w.vBias = dvb.get();
      w.oBias = dob.get();
    }
    if (g_.qkNorm) {
      w.qNorm = dqn.get();
      w.kNorm = dkn.get();
    }
    DeviceBuffer dx = upload(x, dt_), out(T * g_.hidden * esize);
    DeviceBuffer dSeq = uploadInts(step.rowSeq), dPos = uploadInts(step.rowPos);
    out.poison();
    AttendRows rows;
    rows.decodeRows = decodeRows;
    int32_t maxContext = 1;
    for (int64_t t = 0; t < T; ++t) {
      int32_t &bound = t < decodeRows ? rows.decodeContext : maxContext;
      bound = std::max(bound, step.rowPos[t] + 1);
    }
    BlockContext ctx;
    ctx.blas = blas;
    ctx.numSms = numSms();
    if (!forced) {
      const AttendPlan plan = planAttend(T, p_, maxContext, ctx.numSms, rows);
      if (decodeRows > 0)
        EXPECT_EQ(plan.decode.rowsPerBlock, 1);
      DeviceBuffer ws(attentionWorkspaceBytes(T, p_, plan));
      ws.poison();
      ctx.workspace = ws.get();
      ctx.workspaceBytes = int64_t(ws.bytes());
      CP_ASSERT_OK(attention(dx.get(), T, w, p_, dSeq.as<int32_t>(),
                             dPos.as<int32_t>(), kv, maxContext, out.get(), ctx,
                             rows));
      CP_ASSERT_SYNC();
    } else {
      // The block by hand, with the forced tiling.
      const int64_t qd = int64_t(g_.nh) * g_.hd;
      DeviceBuffer bq(T * qd * esize), bk(T * kvDim * esize),
          bv(T * kvDim * esize), heads(T * qd * esize);
      DeviceBuffer ws(attendWorkspaceBytes(T, p_, *forced));
      heads.poison();
      ws.poison();
      CP_ASSERT_OK(
          linear(dx.get(), w.q, w.qBias, T, g_.hidden, qd, bq.get(), dt_, ctx));
      CP_ASSERT_OK(linear(dx.get(), w.k, w.kBias, T, g_.hidden, kvDim, bk.get(),
                          dt_, ctx));
      CP_ASSERT_OK(linear(dx.get(), w.v, w.vBias, T, g_.hidden, kvDim, bv.get(),
                          dt_, ctx));
      CP_ASSERT_OK(qkNormRopeKvWrite(bq.get(), bk.get(), bv.get(), T, w.qNorm,
                                     w.kNorm, p_, dSeq.as<int32_t>(),
                                     dPos.as<int32_t>(), kv, nullptr));
      BlockContext actx = ctx;
      actx.workspace = ws.get();
      actx.workspaceBytes = int64_t(ws.bytes());
      CP_ASSERT_OK(attend(bq.get(), T, p_, dSeq.as<int32_t>(),
                          dPos.as<int32_t>(), kv, *forced, heads.get(), actx));
      CP_ASSERT_OK(linear(heads.get(), w.o, w.oBias, T, qd, g_.hidden,
                          out.get(), dt_, ctx));
      CP_ASSERT_SYNC();
    }
    const double tol = dt_ == DType::kF32 ? 2e-5 : 3e-2;
    EXPECT_LE(relErr(download(out.get(), T * g_.hidden, dt_), ref), tol);

    // Every visible cached value, the step's own writes included.
    std::vector<std::vector<float>> gotPages(poolPages);
    for (int32_t id = 0; id < poolPages; ++id)
      gotPages[id] = download(pool.as<char>() + id * stride, pageFloats, dt_);
    std::vector<float> gotK, wantK;
    for (int32_t s = 0; s < numSeqs; ++s)
      for (int32_t pos = 0; pos < ctxLen[s]; ++pos) {
        int32_t id = table[size_t(s) * maxPages + pos / tpp];
        const std::vector<float> &page = gotPages[id];
        for (int64_t i = 0; i < kvDim; ++i)
          for (int64_t blk = 0; blk < 2; ++blk) {
            int64_t at = blk * tpp * kvDim + (pos % tpp) * kvDim + i;
            gotK.push_back(page[at]);
            wantK.push_back(cpuPages[id][at]);
          }
      }
    EXPECT_LE(relErr(gotK, wantK), dt_ == DType::kF32 ? 1e-5 : 1e-2)
        << "KV cache contents";
  }

private:
  Geometry g_;
  DType dt_;
  uint32_t seed_;
  AttentionParams p_;
  std::vector<float> q_, k_, v_, o_, qb_, kb_, vb_, ob_, qn_, kn_;
};

class AttentionCudaTest : public ::testing::TestWithParam<DType> {
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

std::vector<int32_t> spreadPositions(int n, uint32_t seed, int maxPos) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, maxPos);
  std::vector<int32_t> v(n);
  for (int32_t &p : v)
    p = d(gen);
  return v;
}

TEST_P(AttentionCudaTest, GqaRatiosAndQkNormModesDecodeAndPrefill) {
  const DType dt = GetParam();
  uint32_t seed = 1000;
  // GQA ratios 1, 2, 4, 8 and the three qk-norm modes.
  for (Geometry g : {Geometry{4, 4, 32, 64, 0, 0.0f, 0, true},
                     Geometry{4, 2, 32, 96, 1, 0.0f, 0, false},
                     Geometry{8, 2, 16, 64, 2, 0.0f, 0, false},
                     Geometry{8, 1, 64, 128, 1, 0.0f, 0, false},
                     Geometry{8, 2, 32, 64, 2, 1.0f, 0, false},
                     Geometry{4, 2, 32, 64, 0, 0.0f, 7, true},
                     Geometry{6, 2, 30, 60, 1, 0.0f, 0, false},
                     Geometry{4, 2, 64, 64, 1, 1.0f, 0, false},
                     Geometry{4, 2, 256, 64, 1, 0.0f, 0, false},
                     Geometry{16, 16, 128, 256, 2, 0.0f, 0, false},
                     Geometry{32, 4, 64, 128, 2, 0.0f, 0, false}}) {
    AttentionHarness h(g, dt, seed += 100);
    h.run(decodeStep({40}), std::nullopt, blas_);
    h.run(decodeStep(spreadPositions(8, seed + 1, 300)), std::nullopt, blas_);
    h.run(decodeStep(spreadPositions(32, seed + 2, 200)), std::nullopt, blas_);
    h.run(prefillStep({{0, 37}}), std::nullopt, blas_);
    // Chunked prefill of one sequence next to a fresh one: query tiles that
    // straddle two sequences.
    h.run(prefillStep({{20, 40}, {0, 17}}), std::nullopt, blas_);
  }
}

TEST_P(AttentionCudaTest, ForcedSplitsAndTiles) {
  const DType dt = GetParam();
  Geometry g{8, 2, 32, 64, 1, 0.0f, 0, false};
  AttentionHarness h(g, dt, 77);
  for (AttendConfig c : {AttendConfig{1, 3, 32}, AttendConfig{4, 2, 64},
                         AttendConfig{16, 5, 32}, AttendConfig{3, 1, 1 << 30}})
    h.run(prefillStep({{20, 40}, {0, 17}}), c, blas_);
  Geometry w{4, 2, 32, 64, 0, 0.0f, 24, false};
  AttentionHarness hw(w, dt, 78);
  hw.run(decodeStep({300, 45}), AttendConfig{1, 6, 64}, blas_);
  hw.run(prefillStep({{100, 137}}), AttendConfig{8, 3, 32}, blas_);
}

TEST_P(AttentionCudaTest, LongContextSplitsAcrossBlocks) {
  const DType dt = GetParam();
  Geometry g{32, 4, 128, 256, 1, 0.0f, 0, false};
  AttentionHarness h(g, dt, 4242);
  h.run(decodeStep({5000}), std::nullopt, blas_);
  h.run(decodeStep({4999, 3000, 17}), std::nullopt, blas_);
  // Forced decode splits from 2 to 33 (the 17-position row leaves most of
  // them empty, max -inf), each twice in a row.
  for (int32_t splits : {2, 17, 32, 33}) {
    const int32_t len = (5000 / splits + 1 + 31) / 32 * 32;
    for (int rep = 0; rep < 2; ++rep) {
      SCOPED_TRACE(::testing::Message() << splits << " splits, run " << rep);
      h.run(decodeStep({4999, 3000, 17}), AttendConfig{1, splits, len}, blas_);
    }
  }
}

// Decode rows of other sequences riding in a prompt chunk's step: their own
// attend pass (one row per block, splits for their context) beside the
// chunk's query tiles; also a decode batch of more than 32 rows.
TEST_P(AttentionCudaTest, DecodeRowsBesidePromptChunks) {
  const DType dt = GetParam();
  Geometry g{8, 2, 64, 128, 1, 0.0f, 0, false};
  AttentionHarness h(g, dt, 6100);
  h.run(mixedStep({2100}, 64, 140), std::nullopt, blas_, 1);
  h.run(mixedStep({1500, 37, 900}, 0, 70), std::nullopt, blas_, 3);
  h.run(mixedStep({1500, 37, 900}, 0, 70), std::nullopt, blas_, 0); // one pass
  h.run(decodeStep(spreadPositions(40, 6101, 500)), std::nullopt, blas_, 40);
  Geometry w{4, 4, 32, 64, 0, 0.0f, 24, true}; // sliding window, G = 1
  AttentionHarness hw(w, dt, 6200);
  hw.run(mixedStep({300, 45}, 10, 90), std::nullopt, blas_, 2);
}

// Prompt chunks late in long prompts, on the tensor-core prompt kernel in
// bf16 (G = 8 and 1, head_dim 128; a sliding window; query tiles that
// straddle two sequences; forced splits) and the scalar one in fp32.
TEST_P(AttentionCudaTest, LongPromptChunks) {
  const DType dt = GetParam();
  struct Restore {
    ~Restore() { setPrefillMmaEnabled(true); }
  } restore;
  for (bool mma : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "prefill mma " << mma);
    setPrefillMmaEnabled(mma);
    Geometry q3{32, 4, 128, 256, 1, 0.0f, 0, false};
    AttentionHarness h3(q3, dt, 7100);
    h3.run(prefillStep({{1500, 1600}}), std::nullopt, blas_);
    h3.run(prefillStep({{900, 940}, {0, 30}}), std::nullopt, blas_);
    h3.run(prefillStep({{500, 563}}), AttendConfig{8, 3, 192}, blas_);
    Geometry q15{16, 16, 128, 256, 0, 0.0f, 0, true};
    AttentionHarness h15(q15, dt, 7200);
    h15.run(prefillStep({{700, 800}}), std::nullopt, blas_);
    h15.run(prefillStep({{50, 90}, {0, 7}, {300, 321}}), std::nullopt, blas_);
    Geometry win{8, 8, 64, 128, 0, 0.0f, 100, false};
    AttentionHarness hw(win, dt, 7300);
    hw.run(prefillStep({{300, 400}}), std::nullopt, blas_);
  }
}

// head_dim not a multiple of 4: the split merge's scalar-column path, with
// more splits than one block of split groups covers.
TEST_P(AttentionCudaTest, SplitMergeOddColumns) {
  const DType dt = GetParam();
  Geometry g{4, 2, 18, 64, 0, 0.0f, 0, false};
  AttentionHarness h(g, dt, 5150);
  h.run(decodeStep({1500, 33}), AttendConfig{1, 47, 32}, blas_);
  h.run(decodeStep({700}), std::nullopt, blas_);
}

// More than 8 query heads per KV head: the decode kernel's second row
// group of each m16 tile holds real heads (G = 16 and 12).
TEST_P(AttentionCudaTest, WideGqaGroupsDecode) {
  const DType dt = GetParam();
  for (Geometry g : {Geometry{16, 1, 64, 128, 1, 0.0f, 0, false},
                     Geometry{24, 2, 32, 96, 0, 0.0f, 0, true}}) {
    AttentionHarness h(g, dt, 9100);
    h.run(decodeStep({700}), std::nullopt, blas_);
    h.run(decodeStep(spreadPositions(5, 9101, 400)), std::nullopt, blas_);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, AttentionCudaTest,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto &info) {
                           return std::string(dtypeName(info.param));
                         });

TEST(AttentionCudaArgsTest, RejectsBadArguments) {
  AttentionParams p;
  p.hidden = 64;
  p.numHeads = 6;
  p.numKvHeads = 4; // not a divisor
  p.headDim = 16;
  KvCacheView kv;
  kv.tokensPerPage = 16;
  kv.numKvHeads = 4;
  kv.headDim = 16;
  int32_t dummy = 0;
  kv.base = &dummy;
  kv.pageTable = &dummy;
  kv.numSeqs = 1;
  kv.maxPagesPerSeq = 1;
  kv.pageStrideBytes = kvPageBytes(kv);
  BlockContext ctx;
  // Host pointers stand in for device ones: every call must fail in the
  // host-side validation, before any launch (T = 0 for the valid control).
  auto code = [&](const AttentionParams &pp, const KvCacheView &kk,
                  int64_t T = 1) {
    return attend(&dummy, T, pp, &dummy, &dummy, kk, AttendConfig{}, &dummy,
                  ctx)
        .code();
  };
  EXPECT_EQ(code(p, kv), absl::StatusCode::kInvalidArgument);
  p.numHeads = 8;
  EXPECT_EQ(code(p, kv, 0), absl::StatusCode::kOk);
  AttentionParams bad = p;
  bad.qkNorm = 3;
  EXPECT_EQ(code(bad, kv), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.headDim = 15;
  EXPECT_EQ(code(bad, kv), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.ropeTheta = 0;
  EXPECT_EQ(code(bad, kv), absl::StatusCode::kInvalidArgument);
  KvCacheView badKv = kv;
  badKv.headDim = 32;
  EXPECT_EQ(code(p, badKv), absl::StatusCode::kInvalidArgument);
  badKv = kv;
  badKv.pageStrideBytes = kvPageBytes(kv) - 4;
  EXPECT_EQ(code(p, badKv), absl::StatusCode::kInvalidArgument);
  badKv = kv;
  badKv.pageTable = nullptr;
  EXPECT_EQ(code(p, badKv), absl::StatusCode::kInvalidArgument);
  // Splits need workspace.
  EXPECT_EQ(attend(&dummy, 1, p, &dummy, &dummy, kv, AttendConfig{1, 4, 32},
                   &dummy, ctx)
                .code(),
            absl::StatusCode::kInvalidArgument);
  AttentionWeights w; // no projections
  EXPECT_EQ(
      attention(&dummy, 1, w, p, &dummy, &dummy, kv, 1, &dummy, ctx).code(),
      absl::StatusCode::kInvalidArgument);
  // More decode rows than rows.
  AttentionWeights some;
  some.q = some.k = some.v = some.o = &dummy;
  EXPECT_EQ(attention(&dummy, 1, some, p, &dummy, &dummy, kv, 1, &dummy, ctx,
                      AttendRows{2, 1})
                .code(),
            absl::StatusCode::kInvalidArgument);
}

} // namespace
} // namespace crosspool::kernels::cuda
