//===- DecodeBench.cpp - crosspool-decode-bench: decode steps vs the floor ===//
//
// Measures one decode step (B sequences, one new token each, every sequence
// at context C) of real-size MoE shapes on one GPU with the kernels of
// kernels/cuda in bf16, weights generated on the device from a seed (no
// checkpoint), and reports it against the memory-bandwidth floor:
//
//   bytes/step = L * (attention weights + router + D(B) experts + B*C KV)
//                + lm_head,   D(B) = E * (1 - (1 - k/E)^B)
//   floor      = bytes / device-to-device copy bandwidth (same run)
//
// The per-step kernel sequence is the one a compiled plan runs on the CUDA
// backend (embed; per layer: add+RMSNorm, attention, add+RMSNorm, MoE; final
// norm, lm_head, argmax), built here from the shapes alone, and captured into
// one CUDA graph (the eager time is reported too).
//
// When weights + KV exceed the device, expert weights of layer l alias those
// of layer l mod Lp and KV page-table entries wrap around a smaller physical
// page pool. Every layer then still reads as many distinct bytes, each far
// larger than L2, so DRAM traffic per step is unchanged; the table says when
// it happened.
//
// Usage: crosspool-decode-bench [--model qwen3-30b-a3b|olmoe-1b-7b|all]
//          [--batches 1,8,32] [--contexts 1024,32768] [--reps N]
//          [--json FILE] [--seed S] [--pdl on|off|both]
//          [--moe-fused on|off|both] [--early on|off|both]
//
// --pdl / --moe-fused / --early run every point with programmatic dependent
// launch, the fused small-T MoE path and the early (before the PDL wait)
// prefetch of routed down weights on, off, or both ways (same process, same
// weights; default: PDL and fused on, early off, as the library), one table
// row per variant ("PDL off" / "MoE grouped" / "early on" in the notes).
//
//===----------------------------------------------------------------------===//

#include "kernels/cuda/Kernels.h"
#include "tools/crosspool-decode-bench/SyntheticWeights.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace cudak = crosspool::kernels::cuda;
using crosspool::bench::fillSyntheticBf16;

namespace {

#define DB_CHECK(expr)                                                         \
  do {                                                                         \
    cudaError_t dbErr_ = (expr);                                               \
    if (dbErr_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "crosspool-decode-bench: %s:%d: %s failed: %s\n",   \
                   __FILE__, __LINE__, #expr, cudaGetErrorString(dbErr_));     \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

#define DB_OK(expr)                                                            \
  do {                                                                         \
    absl::Status dbSt_ = (expr);                                               \
    if (!dbSt_.ok()) {                                                         \
      std::fprintf(stderr, "crosspool-decode-bench: %s:%d: %s\n", __FILE__,    \
                   __LINE__, dbSt_.ToString().c_str());                        \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

/// The config.json fields that set the decode step's shapes.
struct Shape {
  std::string name;
  int64_t hidden, layers, heads, kvHeads, headDim, experts, topK, inter, vocab;
  int32_t qkNorm; ///< 1 per head (Qwen3), 2 whole projection (OLMoE)
  bool normTopk;
  float ropeTheta, eps;
};

const Shape kShapes[] = {
    {"qwen3-30b-a3b", 2048, 48, 32, 4, 128, 128, 8, 768, 151936, 1, true, 1e6f,
     1e-6f},
    {"olmoe-1b-7b", 2048, 16, 16, 16, 128, 64, 8, 1024, 50304, 2, false, 1e4f,
     1e-5f},
};

constexpr int32_t kTokensPerPage = 16;
constexpr int64_t kBf16 = 2;

int gReps = 20;
cudaStream_t gStream;

void *deviceAlloc(size_t bytes) {
  void *p = nullptr;
  DB_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  return p;
}

uint64_t gSeed = 1234, gTensor = 0;
void *synthetic(int64_t n, float scale) {
  void *p = deviceAlloc(size_t(n * kBf16));
  DB_CHECK(fillSyntheticBf16(p, n, gSeed, gTensor++, scale, gStream));
  return p;
}

/// Median milliseconds over gReps runs of fn (after two warm-ups), device
/// events around each run.
double medianMs(const std::function<void()> &fn) {
  cudaEvent_t a, b;
  DB_CHECK(cudaEventCreate(&a));
  DB_CHECK(cudaEventCreate(&b));
  fn();
  fn();
  std::vector<float> ms;
  for (int r = 0; r < gReps; ++r) {
    DB_CHECK(cudaEventRecord(a, gStream));
    fn();
    DB_CHECK(cudaEventRecord(b, gStream));
    DB_CHECK(cudaEventSynchronize(b));
    float t = 0;
    DB_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

/// Device-to-device copy bandwidth (read + write bytes per second).
double copyBandwidth() {
  const size_t bytes = size_t(2) << 30;
  void *a = deviceAlloc(bytes), *b = deviceAlloc(bytes);
  DB_CHECK(cudaMemsetAsync(a, 1, bytes, gStream));
  double ms = medianMs([&] {
    DB_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, gStream));
  });
  DB_CHECK(cudaFree(a));
  DB_CHECK(cudaFree(b));
  return 2.0 * double(bytes) / (ms * 1e-3);
}

struct Result {
  std::string model;
  int B, C;
  bool pdl = true, moeFused = true, early = false;
  double attnMs, moeMs, headMs, attnFloorMs, moeFloorMs, headFloorMs;
  double eagerMs, graphMs, bytes, weightBytes, kvBytes, distinctFormula,
      distinctMeasured, floorMs;
  int physicalExpertLayers;
  bool kvAliased;
  bool graphOk;
};

struct Model {
  Shape s;
  std::vector<cudak::AttentionWeights> attn;
  std::vector<const void *> inNorm, postNorm;
  std::vector<cudak::MoeWeights> moe;
  std::vector<void *> expertTables;
  const void *embed = nullptr, *lmHead = nullptr, *finalNorm = nullptr;
  int physicalExpertLayers = 0;
  cudak::AttentionParams ap;
  cudak::MoeParams mp;
  int64_t expertBytes() const { return 3 * s.hidden * s.inter * kBf16; }
  int64_t attnWeightBytes() const {
    int64_t q = s.heads * s.headDim, kv = s.kvHeads * s.headDim;
    return (2 * q * s.hidden + 2 * kv * s.hidden) * kBf16;
  }
};

Model buildModel(const Shape &s, size_t expertBudget) {
  Model m;
  m.s = s;
  m.ap.hidden = s.hidden;
  m.ap.numHeads = int32_t(s.heads);
  m.ap.numKvHeads = int32_t(s.kvHeads);
  m.ap.headDim = int32_t(s.headDim);
  m.ap.qkNorm = s.qkNorm;
  m.ap.ropeTheta = s.ropeTheta;
  m.ap.qkNormEps = s.eps;
  m.ap.softmaxScale = 1.0f / std::sqrt(float(s.headDim));
  m.mp.hidden = s.hidden;
  m.mp.numExperts = int32_t(s.experts);
  m.mp.topK = int32_t(s.topK);
  m.mp.normTopkProb = s.normTopk;
  m.mp.intermediate = s.inter;
  const int64_t H = s.hidden, q = s.heads * s.headDim,
                kv = s.kvHeads * s.headDim;
  const float sH = 1.0f / std::sqrt(float(H));
  m.embed = synthetic(s.vocab * H, 1.0f);
  m.lmHead = synthetic(s.vocab * H, sH);
  m.finalNorm = synthetic(H, 1.0f);
  for (int64_t l = 0; l < s.layers; ++l) {
    cudak::AttentionWeights w;
    w.q = synthetic(q * H, sH);
    w.k = synthetic(kv * H, sH);
    w.v = synthetic(kv * H, sH);
    w.o = synthetic(H * q, 1.0f / std::sqrt(float(q)));
    int64_t normLen = s.qkNorm == 1 ? s.headDim : q;
    w.qNorm = synthetic(normLen, 1.0f);
    w.kNorm = synthetic(s.qkNorm == 1 ? s.headDim : kv, 1.0f);
    m.attn.push_back(w);
    m.inNorm.push_back(synthetic(H, 1.0f));
    m.postNorm.push_back(synthetic(H, 1.0f));
  }
  const int64_t perLayer = s.experts * m.expertBytes();
  m.physicalExpertLayers = int(std::max<int64_t>(
      1, std::min<int64_t>(s.layers, int64_t(expertBudget) / perLayer)));
  std::vector<char *> phys;
  for (int l = 0; l < m.physicalExpertLayers; ++l)
    phys.push_back(static_cast<char *>(synthetic(perLayer / kBf16, sH)));
  for (int64_t l = 0; l < s.layers; ++l) {
    cudak::MoeWeights w;
    w.router = synthetic(s.experts * H, sH);
    std::vector<cudak::ExpertPtrs> table(s.experts);
    char *base = phys[l % m.physicalExpertLayers];
    const int64_t gu = H * s.inter * kBf16;
    for (int64_t e = 0; e < s.experts; ++e) {
      char *ex = base + e * m.expertBytes();
      table[e] = {ex, ex + gu, ex + 2 * gu};
    }
    void *d = deviceAlloc(table.size() * sizeof(cudak::ExpertPtrs));
    DB_CHECK(cudaMemcpy(d, table.data(), table.size() * sizeof(table[0]),
                        cudaMemcpyHostToDevice));
    m.expertTables.push_back(d);
    w.experts = static_cast<const cudak::ExpertPtrs *>(d);
    m.moe.push_back(w);
  }
  DB_CHECK(cudaStreamSynchronize(gStream));
  return m;
}

/// One decode step of B rows at context C, enqueued on gStream.
struct Step {
  const Model *m;
  int B, C;
  int32_t *ids, *rowSeq, *rowPos, *next;
  std::vector<cudak::KvCacheView> kv;
  void *h, *x, *a, *delta;
  float *logits;
  cudak::BlockContext ctx;
  int32_t *routed = nullptr; ///< [L][B*topK] when counting experts

  /// Parts of the step to enqueue (the breakdown times each alone).
  enum Part { kAttention = 1, kMoe = 2, kHead = 4, kAll = 7 };

  absl::Status enqueue(int parts = kAll) const {
    const Shape &s = m->s;
    const cudak::DType dt = cudak::DType::kBF16;
    absl::Status st = cudak::embed(ids, B, m->embed, s.vocab, s.hidden, h, dt,
                                   nullptr, ctx.stream);
    if (!st.ok())
      return st;
    for (int64_t l = 0; l < s.layers; ++l) {
      if (parts & kAttention) {
        st = cudak::addRmsNorm(h, l == 0 ? nullptr : delta, m->inNorm[l], s.eps,
                               B, s.hidden, x, dt, ctx.stream);
        if (st.ok())
          st = cudak::attention(x, B, m->attn[l], m->ap, rowSeq, rowPos, kv[l],
                                C, a, ctx);
      }
      if (st.ok() && (parts & kMoe)) {
        st = cudak::addRmsNorm(h, a, m->postNorm[l], s.eps, B, s.hidden, x, dt,
                               ctx.stream);
        if (st.ok())
          st = cudak::moe(x, B, m->moe[l], m->mp, delta, dt, ctx,
                          routed ? routed + l * B * s.topK : nullptr);
      }
      if (!st.ok())
        return st;
    }
    if (!(parts & kHead))
      return st;
    st = cudak::addRmsNorm(h, delta, m->finalNorm, s.eps, B, s.hidden, x, dt,
                           ctx.stream);
    if (st.ok())
      st = cudak::lmHead(x, m->lmHead, B, s.hidden, s.vocab, logits, dt, ctx);
    if (st.ok())
      st = cudak::argmaxRows(logits, B, s.vocab, next, ctx.stream);
    return st;
  }
};

Result runPoint(const Model &m, int B, int C, void *kvPool, int64_t kvPages,
                cublasHandle_t blas, int numSms, double bandwidth) {
  const Shape &s = m.s;
  Result r{};
  r.model = s.name;
  r.B = B;
  r.C = C;
  r.physicalExpertLayers = m.physicalExpertLayers;
  Step st;
  st.m = &m;
  st.B = B;
  st.C = C;
  std::vector<int32_t> ids(B), seq(B), pos(B, C - 1);
  for (int b = 0; b < B; ++b) {
    ids[b] = int32_t((b * 7919 + 13) % s.vocab);
    seq[b] = b;
  }
  int32_t *dIn = static_cast<int32_t *>(deviceAlloc(4 * 4 * B));
  st.ids = dIn, st.rowSeq = dIn + B, st.rowPos = dIn + 2 * B,
  st.next = dIn + 3 * B;
  DB_CHECK(cudaMemcpy(st.ids, ids.data(), 4 * B, cudaMemcpyHostToDevice));
  DB_CHECK(cudaMemcpy(st.rowSeq, seq.data(), 4 * B, cudaMemcpyHostToDevice));
  DB_CHECK(cudaMemcpy(st.rowPos, pos.data(), 4 * B, cudaMemcpyHostToDevice));
  // Page tables: distinct pages while the pool lasts, then wrap around.
  const int32_t pagesPerSeq = (C + kTokensPerPage - 1) / kTokensPerPage;
  const int64_t needed = int64_t(s.layers) * B * pagesPerSeq;
  r.kvAliased = needed > kvPages;
  std::vector<int32_t> table(static_cast<size_t>(needed));
  for (int64_t i = 0; i < needed; ++i)
    table[i] = int32_t(i % kvPages);
  int32_t *dTable = static_cast<int32_t *>(deviceAlloc(table.size() * 4));
  DB_CHECK(cudaMemcpy(dTable, table.data(), table.size() * 4,
                      cudaMemcpyHostToDevice));
  for (int64_t l = 0; l < s.layers; ++l) {
    cudak::KvCacheView v;
    v.base = kvPool;
    v.tokensPerPage = kTokensPerPage;
    v.numKvHeads = int32_t(s.kvHeads);
    v.headDim = int32_t(s.headDim);
    v.dtype = cudak::DType::kBF16;
    v.pageStrideBytes = cudak::kvPageBytes(v);
    v.pageTable = dTable + l * B * pagesPerSeq;
    v.maxPagesPerSeq = pagesPerSeq;
    v.numSeqs = B;
    st.kv.push_back(v);
  }
  const int64_t H = s.hidden;
  st.h = deviceAlloc(B * H * kBf16);
  st.x = deviceAlloc(B * H * kBf16);
  st.a = deviceAlloc(B * H * kBf16);
  st.delta = deviceAlloc(B * H * kBf16);
  st.logits = static_cast<float *>(deviceAlloc(size_t(B) * s.vocab * 4));
  int64_t ws =
      std::max(cudak::attentionWorkspaceBytes(
                   B, m.ap, cudak::chooseAttendConfig(B, m.ap, C, numSms)),
               cudak::moeWorkspaceBytes(B, m.mp));
  st.ctx.stream = gStream;
  st.ctx.blas = blas;
  st.ctx.numSms = numSms;
  st.ctx.workspace = deviceAlloc(size_t(ws));
  st.ctx.workspaceBytes = ws;

  // Experts actually touched, from one eager step's routing.
  st.routed = static_cast<int32_t *>(deviceAlloc(s.layers * B * s.topK * 4));
  DB_OK(st.enqueue());
  DB_CHECK(cudaStreamSynchronize(gStream));
  std::vector<int32_t> routed(size_t(s.layers * B * s.topK));
  DB_CHECK(cudaMemcpy(routed.data(), st.routed, routed.size() * 4,
                      cudaMemcpyDeviceToHost));
  double touched = 0;
  for (int64_t l = 0; l < s.layers; ++l) {
    std::set<int32_t> e(routed.begin() + l * B * s.topK,
                        routed.begin() + (l + 1) * B * s.topK);
    touched += double(e.size());
  }
  DB_CHECK(cudaFree(st.routed));
  st.routed = nullptr;
  r.distinctMeasured = touched / double(s.layers);
  r.distinctFormula =
      double(s.experts) *
      (1.0 - std::pow(1.0 - double(s.topK) / double(s.experts), B));

  r.eagerMs = medianMs([&] { DB_OK(st.enqueue()); });
  // Breakdown (eager): all attention blocks alone, all MoE blocks alone,
  // final norm + lm_head + argmax alone.
  r.attnMs = medianMs([&] { DB_OK(st.enqueue(Step::kAttention)); });
  r.moeMs = medianMs([&] { DB_OK(st.enqueue(Step::kMoe)); });
  r.headMs = medianMs([&] { DB_OK(st.enqueue(Step::kHead)); });
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  r.graphOk = false;
  if (cudaStreamBeginCapture(gStream, cudaStreamCaptureModeThreadLocal) ==
      cudaSuccess) {
    absl::Status enq = st.enqueue();
    cudaError_t end = cudaStreamEndCapture(gStream, &graph);
    if (enq.ok() && end == cudaSuccess &&
        cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess)
      r.graphOk = true;
    else
      std::fprintf(stderr, "  graph capture failed (%s / %s): eager only\n",
                   enq.ToString().c_str(), cudaGetErrorString(end));
  }
  cudaGetLastError();
  r.graphMs = r.graphOk
                  ? medianMs([&] { DB_CHECK(cudaGraphLaunch(exec, gStream)); })
                  : r.eagerMs;
#ifdef CROSSPOOL_TRACE
  // One replay with every block's PDL wait timed (Common.cuh), as CSV.
  if (const char *out = std::getenv("CROSSPOOL_TRACE_OUT"); out && r.graphOk) {
    const unsigned cap = 1u << 20;
    void *buf = deviceAlloc(size_t(cap) * 32);
    unsigned *n = static_cast<unsigned *>(deviceAlloc(4));
    DB_CHECK(cudaMemset(n, 0, 4));
    cudak::traceAttach(buf, n, cap);
    DB_CHECK(cudaGraphLaunch(exec, gStream));
    DB_CHECK(cudaStreamSynchronize(gStream));
    DB_CHECK(cudaMemset(n, 0, 4));
    DB_CHECK(cudaGraphLaunch(exec, gStream));
    DB_CHECK(cudaStreamSynchronize(gStream));
    cudak::traceAttach(nullptr, nullptr, 0);
    unsigned count = 0;
    DB_CHECK(cudaMemcpy(&count, n, 4, cudaMemcpyDeviceToHost));
    count = std::min(count, cap);
    std::vector<unsigned long long> recs(size_t(count) * 4);
    DB_CHECK(cudaMemcpy(recs.data(), buf, size_t(count) * 32,
                        cudaMemcpyDeviceToHost));
    const std::string path =
        std::string(out) + "-" + s.name + "-B" + std::to_string(B) + "-C" +
        std::to_string(C) + ".csv";
    if (FILE *f = std::fopen(path.c_str(), "w")) {
      std::fprintf(f, "grid,t_before,t_after,block,sm\n");
      for (unsigned i = 0; i < count; ++i) {
        const unsigned long long *q = &recs[size_t(i) * 4];
        std::fprintf(f, "%llu,%llu,%llu,%llu,%llu\n", q[0], q[1], q[2],
                     q[3] & 0xffffffffull, q[3] >> 32);
      }
      std::fclose(f);
    }
  }
#endif
  if (exec)
    cudaGraphExecDestroy(exec);
  if (graph)
    cudaGraphDestroy(graph);

  const double L = double(s.layers);
  r.weightBytes =
      L * (double(m.attnWeightBytes()) + double(s.experts * H * kBf16) +
           r.distinctFormula * double(m.expertBytes())) +
      double(s.vocab * H * kBf16);
  r.kvBytes = L * double(B) * double(C) * 2.0 * double(s.kvHeads) *
              double(s.headDim) * kBf16;
  r.bytes = r.weightBytes + r.kvBytes;
  r.floorMs = r.bytes / bandwidth * 1e3;
  r.attnFloorMs =
      (L * double(m.attnWeightBytes()) + r.kvBytes) / bandwidth * 1e3;
  r.moeFloorMs = L *
                 (double(s.experts * H * kBf16) +
                  r.distinctFormula * double(m.expertBytes())) /
                 bandwidth * 1e3;
  r.headFloorMs = double(s.vocab * H * kBf16) / bandwidth * 1e3;

  for (void *p : {(void *)dIn, (void *)dTable, st.h, st.x, st.a, st.delta,
                  (void *)st.logits, st.ctx.workspace})
    DB_CHECK(cudaFree(p));
  return r;
}

bool parseList(const std::string &text, std::vector<int> *out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v <= 0)
      return false;
    out->push_back(v);
  }
  return !out->empty();
}

} // namespace

constexpr const char *kUsage =
    "crosspool-decode-bench [--model qwen3-30b-a3b|olmoe-1b-7b|all] "
    "[--batches 1,8,32] [--contexts 1024,32768] [--reps N] [--json FILE] "
    "[--seed S] [--pdl on|off|both] [--moe-fused on|off|both] "
    "[--early on|off|both]";

int main(int argc, char **argv) {
  std::string which = "all", jsonPath;
  std::vector<int> batches = {1, 8, 32}, contexts = {1024, 32768};
  std::vector<bool> pdlModes = {true}, fusedModes = {true},
                    earlyModes = {false};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool hasValue = i + 1 < argc;
    if (a == "--model" && hasValue) {
      which = argv[++i];
    } else if (a == "--batches" && hasValue) {
      if (!parseList(argv[++i], &batches)) {
        std::fprintf(stderr, "crosspool-decode-bench: --batches expects "
                             "positive integers like 1,8,32\n");
        return 2;
      }
    } else if (a == "--contexts" && hasValue) {
      if (!parseList(argv[++i], &contexts)) {
        std::fprintf(stderr, "crosspool-decode-bench: --contexts expects "
                             "positive integers like 1024,32768\n");
        return 2;
      }
    } else if (a == "--reps" && hasValue) {
      gReps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--seed" && hasValue) {
      gSeed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--json" && hasValue) {
      jsonPath = argv[++i];
    } else if ((a == "--pdl" || a == "--moe-fused" || a == "--early") &&
               hasValue) {
      std::string v = argv[++i];
      std::vector<bool> *dst = a == "--pdl"         ? &pdlModes
                               : a == "--moe-fused" ? &fusedModes
                                                    : &earlyModes;
      if (v == "on")
        *dst = {true};
      else if (v == "off")
        *dst = {false};
      else if (v == "both")
        *dst = {true, false};
      else {
        std::fprintf(stderr,
                     "crosspool-decode-bench: %s expects on, off or both but "
                     "got '%s'\n",
                     a.c_str(), v.c_str());
        return 2;
      }
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", kUsage);
      return 0;
    } else {
      std::fprintf(stderr,
                   "crosspool-decode-bench: unknown argument '%s'; usage: %s\n",
                   a.c_str(), kUsage);
      return 2;
    }
  }
  std::vector<Shape> shapes;
  for (const Shape &s : kShapes)
    if (which == "all" || which == s.name)
      shapes.push_back(s);
  if (shapes.empty()) {
    std::fprintf(stderr,
                 "crosspool-decode-bench: --model: expects "
                 "qwen3-30b-a3b, olmoe-1b-7b or all but got '%s'\n",
                 which.c_str());
    return 2;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "crosspool-decode-bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  DB_CHECK(cudaGetDeviceProperties(&prop, 0));
  DB_CHECK(cudaStreamCreateWithFlags(&gStream, cudaStreamNonBlocking));
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS ||
      cublasSetStream(blas, gStream) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "crosspool-decode-bench: cublasCreate failed\n");
    return 1;
  }
  const double bw = copyBandwidth();
  std::fprintf(stderr, "device: %s, %d SMs; D2D copy bandwidth %.0f GB/s\n",
               prop.name, prop.multiProcessorCount, bw / 1e9);

  std::vector<Result> results;
  for (const Shape &s : shapes) {
    size_t freeB = 0, totalB = 0;
    DB_CHECK(cudaMemGetInfo(&freeB, &totalB));
    // Expert weights first (all layers distinct when they fit), then KV:
    // what the largest point needs, or what is left (at least 4 GB).
    int64_t pageBytes = 2 * kTokensPerPage * s.kvHeads * s.headDim * kBf16;
    int64_t maxNeeded = 0;
    for (int B : batches)
      for (int C : contexts)
        maxNeeded = std::max<int64_t>(
            maxNeeded,
            s.layers * B * ((C + kTokensPerPage - 1) / kTokensPerPage));
    int64_t q = s.heads * s.headDim, kv = s.kvHeads * s.headDim;
    int64_t other = 2 * s.vocab * s.hidden * kBf16 +
                    s.layers * (2 * q + 2 * kv + s.experts) * s.hidden * kBf16 +
                    (int64_t(3) << 30); // activations, workspaces, cuBLAS
    int64_t allExperts = s.layers * s.experts * 3 * s.hidden * s.inter * kBf16;
    int64_t left = int64_t(freeB) - other - allExperts;
    int64_t kvBytes = std::min<int64_t>(
        maxNeeded * pageBytes, std::max<int64_t>(left, int64_t(4) << 30));
    int64_t kvPages = kvBytes / pageBytes;
    void *kvPool = deviceAlloc(size_t(kvPages * pageBytes));
    DB_CHECK(fillSyntheticBf16(kvPool, kvPages * pageBytes / kBf16, gSeed, 999,
                               1.0f, gStream));
    size_t expertBudget = size_t(
        std::max<int64_t>(0, int64_t(freeB) - other - kvPages * pageBytes));
    Model m = buildModel(s, expertBudget);
    std::fprintf(stderr,
                 "%s: %lld layers, expert weights of %d distinct layers "
                 "(%.1f GB), KV pool %.1f GB\n",
                 s.name.c_str(), (long long)s.layers, m.physicalExpertLayers,
                 m.physicalExpertLayers * double(s.experts) * m.expertBytes() /
                     1e9,
                 kvPages * double(pageBytes) / 1e9);
    for (int C : contexts)
      for (int B : batches)
        for (bool fused : fusedModes)
          for (bool early : earlyModes)
            for (bool pdl : pdlModes) {
              cudak::setPdlEnabled(pdl);
              cudak::setMoeFusedEnabled(fused);
              cudak::setEarlyPrefetchEnabled(early);
              Result r = runPoint(m, B, C, kvPool, kvPages, blas,
                                  prop.multiProcessorCount, bw);
              r.pdl = pdl;
              r.moeFused = fused;
              r.early = early;
              std::fprintf(stderr,
                           "  B=%2d C=%5d pdl %-3s moe %-7s early %-3s: graph "
                           "%.3f ms eager %.3f ms floor %.3f ms (%.0f%%)\n",
                           B, C, pdl ? "on" : "off",
                           fused ? "fused" : "grouped", early ? "on" : "off",
                           r.graphMs, r.eagerMs, r.floorMs,
                           100 * r.floorMs / r.graphMs);
              results.push_back(r);
            }
    cudak::setPdlEnabled(true);
    cudak::setMoeFusedEnabled(true);
    cudak::setEarlyPrefetchEnabled(false);
    // Free this model (and everything else) before the next one.
    cublasDestroy(blas);
    DB_CHECK(cudaDeviceReset());
    DB_CHECK(cudaStreamCreateWithFlags(&gStream, cudaStreamNonBlocking));
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(blas, gStream) != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "crosspool-decode-bench: cublasCreate failed\n");
      return 1;
    }
  }

  std::printf(
      "| model | batch | context | step ms (graph) | step ms (eager) | "
      "GB/step | distinct experts/layer (formula / measured) | floor ms "
      "| floor / step | notes |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Result &r : results) {
    std::string notes;
    if (r.physicalExpertLayers < (r.model == "qwen3-30b-a3b" ? 48 : 16))
      notes += "experts aliased over " +
               std::to_string(r.physicalExpertLayers) + " layers; ";
    if (r.kvAliased)
      notes += "KV pages wrap; ";
    if (!r.graphOk)
      notes += "no graph; ";
    if (!r.pdl)
      notes += "PDL off; ";
    if (!r.moeFused)
      notes += "MoE grouped; ";
    if (r.early)
      notes += "early on; ";
    std::printf("| %s | %d | %d | %.3f | %.3f | %.3f | %.1f / %.1f | %.3f | "
                "%.0f%% | %s |\n",
                r.model.c_str(), r.B, r.C, r.graphMs, r.eagerMs, r.bytes / 1e9,
                r.distinctFormula, r.distinctMeasured, r.floorMs,
                100 * r.floorMs / r.graphMs, notes.c_str());
  }
  std::printf("\nBreakdown (eager, each part alone; ms and %% of its own "
              "floor):\n\n| model | batch | context | attention blocks | MoE "
              "blocks | lm_head + argmax |\n|---|---:|---:|---:|---:|---:|\n");
  for (const Result &r : results)
    std::printf("| %s | %d | %d | %.3f (%.0f%%) | %.3f (%.0f%%) | %.3f "
                "(%.0f%%) |\n",
                r.model.c_str(), r.B, r.C, r.attnMs,
                100 * r.attnFloorMs / r.attnMs, r.moeMs,
                100 * r.moeFloorMs / r.moeMs, r.headMs,
                100 * r.headFloorMs / r.headMs);
  std::printf("\nD2D copy bandwidth: %.0f GB/s on %s\n", bw / 1e9, prop.name);
  if (!jsonPath.empty()) {
    FILE *f = std::fopen(jsonPath.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "crosspool-decode-bench: cannot write %s\n",
                   jsonPath.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"device\": \"%s\", \"copy_bandwidth_gbs\": %.1f, "
                 "\"points\": [\n",
                 prop.name, bw / 1e9);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result &r = results[i];
      std::fprintf(
          f,
          "  {\"model\": \"%s\", \"batch\": %d, \"context\": %d, "
          "\"step_ms_graph\": %.4f, \"step_ms_eager\": %.4f, \"graph\": %s, "
          "\"bytes_per_step\": %.0f, \"weight_bytes\": %.0f, \"kv_bytes\": "
          "%.0f, \"distinct_experts_formula\": %.2f, "
          "\"distinct_experts_measured\": %.2f, \"floor_ms\": %.4f, "
          "\"fraction_of_floor\": %.4f, \"physical_expert_layers\": %d, "
          "\"kv_pages_wrap\": %s, \"attention_ms\": %.4f, \"moe_ms\": %.4f, "
          "\"head_ms\": %.4f, \"attention_floor_ms\": %.4f, "
          "\"moe_floor_ms\": %.4f, \"head_floor_ms\": %.4f, \"pdl\": %s, "
          "\"moe_fused\": %s, \"early_prefetch\": %s}%s\n",
          r.model.c_str(), r.B, r.C, r.graphMs, r.eagerMs,
          r.graphOk ? "true" : "false", r.bytes, r.weightBytes, r.kvBytes,
          r.distinctFormula, r.distinctMeasured, r.floorMs,
          r.floorMs / r.graphMs, r.physicalExpertLayers,
          r.kvAliased ? "true" : "false", r.attnMs, r.moeMs, r.headMs,
          r.attnFloorMs, r.moeFloorMs, r.headFloorMs, r.pdl ? "true" : "false",
          r.moeFused ? "true" : "false", r.early ? "true" : "false",
          i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}
