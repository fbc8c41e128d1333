//===- AttentionTest.cpp - RoPE and the paged attention block -------------===//

#include "kernels/cpu/Attention.h"

#include "test/unit/kernels/KernelTestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

namespace crosspool::kernels::cpu {
namespace {

using testing::randomVec;
using testing::refLinear;
using testing::relMaxErr;
using testing::toDouble;

TEST(RopeTest, PositionZeroIsIdentity) {
  std::vector<float> v = randomVec(16, 1), orig = v;
  applyRope(v.data(), 2, 8, 0, 10000.0f, 1.0f);
  EXPECT_EQ(v, orig);
}

TEST(RopeTest, HeadDimTwoRotatesByOneRadianAtPositionOne) {
  std::vector<float> v = {1, 0, 0, 1}; // two heads of head_dim 2
  applyRope(v.data(), 2, 2, 1, 10000.0f, 1.0f);
  EXPECT_NEAR(v[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(v[1], std::sin(1.0), 1e-7);
  EXPECT_NEAR(v[2], -std::sin(1.0), 1e-7);
  EXPECT_NEAR(v[3], std::cos(1.0), 1e-7);
  // Linear scaling by 2 at position 2 is the same 1 radian.
  std::vector<float> w = {1, 0};
  applyRope(w.data(), 1, 2, 2, 10000.0f, 2.0f);
  EXPECT_NEAR(w[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(w[1], std::sin(1.0), 1e-7);
}

TEST(RopeTest, RotateHalfPairsIWithIPlusHalf) {
  // head_dim 4, theta 100: inv_freq = [1, 0.1]; pairs (0,2) and (1,3).
  std::vector<float> v = {1, 1, 1, 1};
  applyRope(v.data(), 1, 4, 1, 100.0f, 1.0f);
  EXPECT_NEAR(v[0], std::cos(1.0) - std::sin(1.0), 1e-6);
  EXPECT_NEAR(v[1], std::cos(0.1) - std::sin(0.1), 1e-6);
  EXPECT_NEAR(v[2], std::cos(1.0) + std::sin(1.0), 1e-6);
  EXPECT_NEAR(v[3], std::cos(0.1) + std::sin(0.1), 1e-6);
}

/// Attention geometry and options of one test configuration.
struct AttnCase {
  const char *name;
  int32_t numHeads, numKvHeads, headDim;
  int64_t hidden;
  int32_t qkNorm;
  float clip;
  int32_t window;
  int32_t ropeType;
  float ropeFactor;
  float theta;
  bool biases;
};

/// Random weights for a case, plus the kernel's views of them.
struct AttnModel {
  AttnCase c;
  std::vector<float> q, k, v, o, qb, kb, vb, ob, qn, kn;

  explicit AttnModel(const AttnCase &cs) : c(cs) {
    int64_t qd = int64_t(c.numHeads) * c.headDim;
    int64_t kd = int64_t(c.numKvHeads) * c.headDim;
    q = randomVec(static_cast<size_t>(qd * c.hidden), 11, 0.5f);
    k = randomVec(static_cast<size_t>(kd * c.hidden), 12, 0.5f);
    v = randomVec(static_cast<size_t>(kd * c.hidden), 13, 0.5f);
    o = randomVec(static_cast<size_t>(c.hidden * qd), 14, 0.5f);
    if (c.biases) {
      qb = randomVec(static_cast<size_t>(qd), 15);
      kb = randomVec(static_cast<size_t>(kd), 16);
      vb = randomVec(static_cast<size_t>(kd), 17);
      ob = randomVec(static_cast<size_t>(c.hidden), 18);
    }
    // Norm weights around 1.5 so normalized q.k scores are far from uniform.
    size_t qnLen = static_cast<size_t>(c.qkNorm == 1 ? c.headDim : qd);
    size_t knLen = static_cast<size_t>(c.qkNorm == 1 ? c.headDim : kd);
    qn = randomVec(qnLen, 19, 0.5f);
    kn = randomVec(knLen, 20, 0.5f);
    for (float &f : qn)
      f += 1.5f;
    for (float &f : kn)
      f += 1.5f;
  }

  AttentionWeights weights() const {
    AttentionWeights w;
    w.q = q.data();
    w.k = k.data();
    w.v = v.data();
    w.o = o.data();
    if (c.biases) {
      w.qBias = qb.data();
      w.kBias = kb.data();
      w.vBias = vb.data();
      w.oBias = ob.data();
    }
    if (c.qkNorm) {
      w.qNorm = qn.data();
      w.kNorm = kn.data();
    }
    return w;
  }

  AttentionParams params() const {
    AttentionParams p;
    p.hidden = c.hidden;
    p.numHeads = c.numHeads;
    p.numKvHeads = c.numKvHeads;
    p.headDim = c.headDim;
    p.qkNorm = c.qkNorm;
    p.slidingWindow = c.window;
    p.ropeType = c.ropeType;
    p.ropeTheta = c.theta;
    p.qkNormEps = 1e-6f;
    p.clipQkv = c.clip;
    p.ropeFactor = c.ropeFactor;
    p.softmaxScale = float(1.0 / std::sqrt(double(c.headDim)));
    return p;
  }
};

void refRmsNormGroups(std::vector<double> &x, const std::vector<float> &w,
                      size_t group) {
  for (size_t g0 = 0; g0 < x.size(); g0 += group) {
    double ms = 0;
    for (size_t i = 0; i < group; ++i)
      ms += x[g0 + i] * x[g0 + i];
    double inv = 1.0 / std::sqrt(ms / double(group) + 1e-6);
    for (size_t i = 0; i < group; ++i)
      x[g0 + i] *= inv * w[group == w.size() ? i : g0 + i];
  }
}

void refRope(std::vector<double> &x, int32_t hd, double pos, double theta) {
  int32_t half = hd / 2;
  for (size_t h0 = 0; h0 < x.size(); h0 += static_cast<size_t>(hd))
    for (int32_t i = 0; i < half; ++i) {
      double ang = pos * std::pow(theta, -2.0 * i / hd);
      double a = x[h0 + i], b = x[h0 + i + half];
      x[h0 + i] = a * std::cos(ang) - b * std::sin(ang);
      x[h0 + i + half] = b * std::cos(ang) + a * std::sin(ang);
    }
}

/// Independent double reference over one whole sequence with contiguous K/V:
/// row p of the result is the attention output of token p.
std::vector<std::vector<double>>
refAttention(const AttnModel &m, const std::vector<std::vector<float>> &xs) {
  const AttnCase &c = m.c;
  const int64_t qd = int64_t(c.numHeads) * c.headDim;
  const int64_t kd = int64_t(c.numKvHeads) * c.headDim;
  const float *nul = nullptr;
  std::vector<std::vector<double>> qs, ks, vs, outs;
  for (size_t p = 0; p < xs.size(); ++p) {
    std::vector<double> x = toDouble(xs[p].data(), c.hidden);
    std::vector<double> q =
        refLinear(x, m.q.data(), c.biases ? m.qb.data() : nul, c.hidden, qd);
    std::vector<double> k =
        refLinear(x, m.k.data(), c.biases ? m.kb.data() : nul, c.hidden, kd);
    std::vector<double> v =
        refLinear(x, m.v.data(), c.biases ? m.vb.data() : nul, c.hidden, kd);
    if (c.qkNorm == 1) {
      refRmsNormGroups(q, m.qn, static_cast<size_t>(c.headDim));
      refRmsNormGroups(k, m.kn, static_cast<size_t>(c.headDim));
    } else if (c.qkNorm == 2) {
      refRmsNormGroups(q, m.qn, static_cast<size_t>(qd));
      refRmsNormGroups(k, m.kn, static_cast<size_t>(kd));
    }
    if (c.clip > 0)
      for (auto *vec : {&q, &k, &v})
        for (double &d : *vec)
          d = std::clamp(d, -double(c.clip), double(c.clip));
    double pos = c.ropeType == 1 ? double(p) / c.ropeFactor : double(p);
    refRope(q, c.headDim, pos, c.theta);
    refRope(k, c.headDim, pos, c.theta);
    qs.push_back(q);
    ks.push_back(k);
    vs.push_back(v);
  }
  const int32_t group = c.numHeads / c.numKvHeads;
  const double scale = 1.0 / std::sqrt(double(c.headDim));
  for (size_t p = 0; p < xs.size(); ++p) {
    std::vector<double> heads(static_cast<size_t>(qd), 0.0);
    for (int32_t h = 0; h < c.numHeads; ++h) {
      int32_t g = h / group;
      std::vector<double> w(p + 1, 0.0);
      double mx = -1e300;
      for (size_t j = 0; j <= p; ++j) {
        if (c.window > 0 && int64_t(j) <= int64_t(p) - c.window)
          continue;
        double s = 0;
        for (int32_t i = 0; i < c.headDim; ++i)
          s += qs[p][static_cast<size_t>(h * c.headDim + i)] *
               ks[j][static_cast<size_t>(g * c.headDim + i)];
        w[j] = s * scale;
        mx = std::max(mx, w[j]);
      }
      double z = 0;
      for (size_t j = 0; j <= p; ++j) {
        bool in = !(c.window > 0 && int64_t(j) <= int64_t(p) - c.window);
        w[j] = in ? std::exp(w[j] - mx) : 0.0;
        z += w[j];
      }
      for (size_t j = 0; j <= p; ++j)
        for (int32_t i = 0; i < c.headDim; ++i)
          heads[static_cast<size_t>(h * c.headDim + i)] +=
              w[j] / z * vs[j][static_cast<size_t>(g * c.headDim + i)];
    }
    outs.push_back(refLinear(heads, m.o.data(), c.biases ? m.ob.data() : nul,
                             qd, c.hidden));
  }
  return outs;
}

/// A toy page pool: pages handed out in a scrambled order and filled with
/// NaN, so reading a slot nobody wrote poisons the result.
struct PagePool {
  std::vector<std::vector<float>> pages;
  size_t next = 0;
  std::vector<size_t> order;

  PagePool(size_t numPages, int64_t pageFloats) {
    pages.assign(numPages,
                 std::vector<float>(static_cast<size_t>(pageFloats),
                                    std::numeric_limits<float>::quiet_NaN()));
    order.resize(numPages);
    for (size_t i = 0; i < numPages; ++i)
      order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
  }
  float *take() { return pages[order[next++]].data(); }
};

class AttentionPagedTest
    : public ::testing::TestWithParam<std::tuple<AttnCase, int32_t>> {};

TEST_P(AttentionPagedTest, PrefillThenDecodeMatchesContiguousReference) {
  const auto [c, tpp] = GetParam();
  AttnModel m(c);
  // Sequence A: 5 prompt tokens then 2 decode steps; B: 3 then 2.
  const int lenA = 7, lenB = 5;
  std::vector<std::vector<float>> xa, xb;
  for (int i = 0; i < lenA; ++i)
    xa.push_back(randomVec(static_cast<size_t>(c.hidden), 1000 + i, 2.0f));
  for (int i = 0; i < lenB; ++i)
    xb.push_back(randomVec(static_cast<size_t>(c.hidden), 2000 + i, 2.0f));
  std::vector<std::vector<double>> wantA = refAttention(m, xa);
  std::vector<std::vector<double>> wantB = refAttention(m, xb);

  KvLayerView kv;
  kv.tokensPerPage = tpp;
  kv.numKvHeads = c.numKvHeads;
  kv.headDim = c.headDim;
  PagePool pool(32, kvPageFloats(kv));
  auto pagesFor = [&](int len) {
    std::vector<float *> ps;
    for (int i = 0; i < (len + tpp - 1) / tpp; ++i)
      ps.push_back(pool.take());
    return ps;
  };
  std::vector<float *> pagesA = pagesFor(lenA), pagesB = pagesFor(lenB);

  // Each step: rows as (sequence A/B, position); the step's sequence array
  // order varies too (step 3 lists B first).
  struct Row {
    char seq;
    int pos;
  };
  std::vector<std::vector<Row>> steps = {{{'A', 0},
                                          {'A', 1},
                                          {'B', 0},
                                          {'A', 2},
                                          {'A', 3},
                                          {'B', 1},
                                          {'B', 2},
                                          {'A', 4}},
                                         {{'A', 5}, {'B', 3}},
                                         {{'B', 4}, {'A', 6}}};
  for (size_t s = 0; s < steps.size(); ++s) {
    bool bFirst = s == 2;
    std::vector<KvSequencePages> seqs(2);
    seqs[bFirst ? 1 : 0] = {pagesA.data(), int32_t(pagesA.size())};
    seqs[bFirst ? 0 : 1] = {pagesB.data(), int32_t(pagesB.size())};
    kv.seqs = seqs.data();
    kv.numSeqs = 2;
    const std::vector<Row> &rows = steps[s];
    int64_t T = int64_t(rows.size());
    std::vector<float> x;
    std::vector<int32_t> rowSeq, rowPos;
    std::vector<double> want;
    for (const Row &r : rows) {
      const auto &src = r.seq == 'A' ? xa : xb;
      x.insert(x.end(), src[static_cast<size_t>(r.pos)].begin(),
               src[static_cast<size_t>(r.pos)].end());
      rowSeq.push_back((r.seq == 'A') == !bFirst ? 0 : 1);
      rowPos.push_back(r.pos);
      const auto &w = r.seq == 'A' ? wantA : wantB;
      want.insert(want.end(), w[static_cast<size_t>(r.pos)].begin(),
                  w[static_cast<size_t>(r.pos)].end());
    }
    std::vector<float> out(static_cast<size_t>(T * c.hidden));
    absl::Status st = attention(x.data(), T, m.weights(), m.params(),
                                rowSeq.data(), rowPos.data(), kv, out.data());
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_LT(relMaxErr(out, want), 1e-5)
        << c.name << " tpp " << tpp << " step " << s;
  }
}

const AttnCase kCases[] = {
    // name, nh, nkv, hd, hidden, qkNorm, clip, window, ropeType, factor,
    // theta, biases
    {"mixtral_gqa", 4, 2, 8, 16, 0, 0, 0, 0, 1, 10000, false},
    {"qwen2_bias_mqa", 4, 1, 8, 16, 0, 0, 0, 0, 1, 1000000, true},
    {"qwen3_headnorm", 4, 2, 8, 24, 1, 0, 0, 0, 1, 10000, false},
    {"olmoe_projnorm_clip", 4, 4, 6, 20, 2, 0.6f, 0, 0, 1, 10000, false},
    {"window_linear_rope", 6, 2, 4, 12, 0, 0, 3, 1, 2.5f, 500, true},
};

INSTANTIATE_TEST_SUITE_P(
    Configs, AttentionPagedTest,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(1, 3, 16)),
    [](const ::testing::TestParamInfo<std::tuple<AttnCase, int32_t>> &info) {
      return std::string(std::get<0>(info.param).name) + "_tpp" +
             std::to_string(std::get<1>(info.param));
    });

TEST(AttentionTest, ClipActuallyClips) {
  // Guards the olmoe case above against a clip bound nothing reaches: the
  // reference output changes when the clip is removed.
  AttnCase c = kCases[3];
  AttnModel m(c);
  std::vector<std::vector<float>> xs;
  for (int i = 0; i < 4; ++i)
    xs.push_back(randomVec(static_cast<size_t>(c.hidden), 1000 + i, 2.0f));
  std::vector<std::vector<double>> clipped = refAttention(m, xs);
  m.c.clip = 0;
  std::vector<std::vector<double>> unclipped = refAttention(m, xs);
  double diff = 0;
  for (size_t p = 0; p < xs.size(); ++p)
    for (size_t i = 0; i < clipped[p].size(); ++i)
      diff = std::max(diff, std::fabs(clipped[p][i] - unclipped[p][i]));
  EXPECT_GT(diff, 1e-2);
}

TEST(AttentionTest, SingleTokenOutputIsProjectedValue) {
  // One position: softmax weight 1, so a = Wo (Wv x + bv) + bo whatever q, k.
  AttnCase c = kCases[1];
  AttnModel m(c);
  std::vector<float> x = randomVec(static_cast<size_t>(c.hidden), 5);
  KvLayerView kv;
  kv.tokensPerPage = 4;
  kv.numKvHeads = c.numKvHeads;
  kv.headDim = c.headDim;
  std::vector<float> page(static_cast<size_t>(kvPageFloats(kv)));
  float *pages[] = {page.data()};
  KvSequencePages seq{pages, 1};
  kv.seqs = &seq;
  kv.numSeqs = 1;
  int32_t rowSeq = 0, rowPos = 0;
  std::vector<float> out(static_cast<size_t>(c.hidden));
  ASSERT_TRUE(attention(x.data(), 1, m.weights(), m.params(), &rowSeq, &rowPos,
                        kv, out.data())
                  .ok());
  int64_t kd = int64_t(c.numKvHeads) * c.headDim;
  std::vector<double> v = refLinear(toDouble(x.data(), c.hidden), m.v.data(),
                                    m.vb.data(), c.hidden, kd);
  std::vector<double> heads; // every query head reads the single kv head
  for (int32_t h = 0; h < c.numHeads; ++h)
    heads.insert(heads.end(), v.begin(), v.end());
  std::vector<double> want =
      refLinear(heads, m.o.data(), m.ob.data(), int64_t(c.numHeads) * c.headDim,
                c.hidden);
  EXPECT_LT(relMaxErr(out, want), 1e-6);
  // The V block starts after tokensPerPage K rows; slot 0 holds v.
  for (int64_t i = 0; i < kd; ++i)
    EXPECT_NEAR(page[static_cast<size_t>(4 * kd + i)],
                v[static_cast<size_t>(i)], 1e-5);
}

TEST(AttentionTest, OutputMayAliasInput) {
  AttnCase c = kCases[0];
  AttnModel m(c);
  std::vector<std::vector<float>> xs = {
      randomVec(static_cast<size_t>(c.hidden), 1),
      randomVec(static_cast<size_t>(c.hidden), 2)};
  std::vector<std::vector<double>> want = refAttention(m, xs);
  KvLayerView kv;
  kv.tokensPerPage = 2;
  kv.numKvHeads = c.numKvHeads;
  kv.headDim = c.headDim;
  std::vector<float> page(static_cast<size_t>(kvPageFloats(kv)));
  float *pages[] = {page.data()};
  KvSequencePages seq{pages, 1};
  kv.seqs = &seq;
  kv.numSeqs = 1;
  int32_t rowSeq[] = {0, 0}, rowPos[] = {0, 1};
  std::vector<float> x = xs[0];
  x.insert(x.end(), xs[1].begin(), xs[1].end());
  ASSERT_TRUE(attention(x.data(), 2, m.weights(), m.params(), rowSeq, rowPos,
                        kv, x.data())
                  .ok());
  std::vector<double> flat = want[0];
  flat.insert(flat.end(), want[1].begin(), want[1].end());
  EXPECT_LT(relMaxErr(x, flat), 1e-5);
}

TEST(AttentionTest, BadArgumentsAreErrorsAndWriteNothing) {
  AttnCase c = kCases[2];
  AttnModel m(c);
  std::vector<float> x = randomVec(static_cast<size_t>(2 * c.hidden), 3);
  KvLayerView kv;
  kv.tokensPerPage = 2;
  kv.numKvHeads = c.numKvHeads;
  kv.headDim = c.headDim;
  std::vector<float> page0(static_cast<size_t>(kvPageFloats(kv)), 5.0f),
      page1 = page0;
  float *pages[] = {page0.data(), page1.data()};
  KvSequencePages seq{pages, 2};
  kv.seqs = &seq;
  kv.numSeqs = 1;
  int32_t rowSeq[] = {0, 0}, rowPos[] = {2, 3};
  const AttentionParams p = m.params();
  const AttentionWeights w = m.weights();

  auto expectInvalid = [&](const AttentionWeights &aw,
                           const AttentionParams &ap, const KvLayerView &akv,
                           const int32_t *seqs, const int32_t *poss,
                           const std::string &needle) {
    std::vector<float> out(static_cast<size_t>(2 * c.hidden), 9.0f);
    absl::Status st =
        attention(x.data(), 2, aw, ap, seqs, poss, akv, out.data());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(st.message().find(needle), std::string::npos) << st;
    EXPECT_EQ(out, std::vector<float>(static_cast<size_t>(2 * c.hidden), 9.0f))
        << needle;
    EXPECT_EQ(page1, std::vector<float>(page1.size(), 5.0f)) << needle;
  };
  // Sanity: the valid call works (and then restore the page).
  {
    std::vector<float> out(static_cast<size_t>(2 * c.hidden));
    int32_t okPos[] = {0, 1};
    ASSERT_TRUE(
        attention(x.data(), 2, w, p, rowSeq, okPos, kv, out.data()).ok());
  }

  int32_t badSeq[] = {0, 1}, negSeq[] = {-1, 0};
  expectInvalid(w, p, kv, badSeq, rowPos, "names sequence 1");
  expectInvalid(w, p, kv, negSeq, rowPos, "names sequence -1");
  int32_t negPos[] = {1, -2}, farPos[] = {2, 4};
  expectInvalid(w, p, kv, rowSeq, negPos, "negative position -2");
  expectInvalid(w, p, kv, rowSeq, farPos, "needs 3 pages");
  float *withNull[] = {page0.data(), nullptr};
  KvSequencePages nullSeq{withNull, 2};
  KvLayerView nkv = kv;
  nkv.seqs = &nullSeq;
  expectInvalid(w, p, nkv, rowSeq, rowPos, "page 1 of sequence 0 is null");
  KvSequencePages noTable{nullptr, 2};
  nkv.seqs = &noTable;
  expectInvalid(w, p, nkv, rowSeq, rowPos, "no page table");
  nkv = kv;
  nkv.headDim = c.headDim * 2;
  expectInvalid(w, p, nkv, rowSeq, rowPos, "does not match");
  nkv = kv;
  nkv.tokensPerPage = 0;
  expectInvalid(w, p, nkv, rowSeq, rowPos, "tokens_per_page 0");

  AttentionParams bp = p;
  bp.numHeads = 3;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "not a multiple");
  bp = p;
  bp.qkNorm = 3;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "qk_norm expects");
  bp = p;
  bp.ropeType = 2;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "rope_type expects");
  bp = p;
  bp.ropeType = 1;
  bp.ropeFactor = 0;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "positive factor");
  bp = p;
  bp.slidingWindow = -1;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "sliding_window");
  bp = p;
  bp.clipQkv = -1;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "clip_qkv");
  bp = p;
  bp.hidden = 0;
  expectInvalid(w, bp, kv, rowSeq, rowPos, "expects positive");

  AttentionWeights bw = w;
  bw.k = nullptr;
  expectInvalid(bw, p, kv, rowSeq, rowPos, "projection weight");
  bw = w;
  bw.kNorm = nullptr;
  expectInvalid(bw, p, kv, rowSeq, rowPos, "q_norm and k_norm");
}

TEST(AttentionTest, OddHeadDimIsAnError) {
  AttnCase c = {"odd", 2, 2, 3, 8, 0, 0, 0, 0, 1, 10000, false};
  AttnModel m(c);
  KvLayerView kv;
  kv.tokensPerPage = 1;
  kv.numKvHeads = 2;
  kv.headDim = 3;
  absl::Status st = attention(nullptr, 0, m.weights(), m.params(), nullptr,
                              nullptr, kv, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("even head_dim but got 3"), std::string::npos)
      << st;
}

} // namespace
} // namespace crosspool::kernels::cpu
