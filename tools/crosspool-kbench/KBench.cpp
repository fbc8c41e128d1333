//===- KBench.cpp - crosspool-kbench: CUDA kernel microbenchmarks ---------===//
//
// Times the memory-bound kernels at Qwen3-30B-A3B shapes with device events
// (median of repeats, after warm-up) and prints, per kernel, the time, the
// bytes that must move (each weight/KV byte read once, outputs written once),
// the achieved GB/s and its fraction of the device-to-device copy bandwidth
// measured in the same run. Weights are rotated among enough copies to
// exceed L2, so the numbers are DRAM numbers. Inputs are random, never zeros.
//
// The "read" rows are the streaming floor of a kernel of that many bytes: a
// pure 16-byte-load read as one launch, so the difference between a kernel
// and its read row is what the kernel loses beyond launch, ramp and tail.
//
// Two times per kernel: `stream_us` brackets one host call with events (a
// short kernel's time then includes the host's launch latency, since the
// device idles while the host enqueues), and `graph_us`, the per-call time
// of kGraphCalls calls captured into one CUDA graph and replayed (the
// device-side cost a runtime that launches ahead or uses graphs sees). The
// graph time is taken twice, with programmatic dependent launch on
// (`graph_us`) and off (`nopdl_us`, the kernels launched without the
// attribute, i.e. full serialization between consecutive calls), both
// captured and replayed in the same process. The fractions use graph_us.
// The MoE block is timed at T = 1, 4 (fused small-T path), 8, 32, at T = 1
// on the grouped path ("grouped") and at T = 1 and 4 with the early prefetch
// of the down rows ("early", CROSSPOOL_EARLY_PREFETCH=1; off by default) for
// comparison.
//
// --prefill adds prompt-sized rows: the MoE block at T = 128, 512, 2048 for
// Qwen3-30B-A3B and for Qwen1.5-MoE-A2.7B (H 2048, 60 experts top-4, I 1408,
// shared expert 5632 with a sigmoid gate; also T = 1), each T twice: on the
// grouped tensor-core path ("nogemm", CROSSPOOL_MOE_GEMM=0, graph-timed) and
// on the cuBLAS prefill path ("gemm", forced at any T; it waits on the host
// once per call, so it cannot be captured: all three time columns are the
// stream time, host wait included), and the q/o
// projections at T = 512 (cuBLAS). For those the table also gives the
// achieved TFLOP/s and its fraction of the H100 SXM dense bf16 tensor-core
// peak (989 TFLOP/s): a row is bandwidth-bound while bw_floor_us (bytes at
// the copy bandwidth) exceeds tc_floor_us (flops at that peak).
//
// Usage: crosspool-kbench [--reps N] [--prefill]
//
//===----------------------------------------------------------------------===//

#include "kernels/cuda/Kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace cudak = crosspool::kernels::cuda;

namespace {

#define KB_CHECK(expr)                                                         \
  do {                                                                         \
    cudaError_t kbErr_ = (expr);                                               \
    if (kbErr_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "crosspool-kbench: %s:%d: %s failed: %s\n",         \
                   __FILE__, __LINE__, #expr, cudaGetErrorString(kbErr_));     \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

#define KB_OK(expr)                                                            \
  do {                                                                         \
    absl::Status kbSt_ = (expr);                                               \
    if (!kbSt_.ok()) {                                                         \
      std::fprintf(stderr, "crosspool-kbench: %s:%d: %s\n", __FILE__,          \
                   __LINE__, kbSt_.ToString().c_str());                        \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

int gReps = 50;
cudaStream_t gStream;

/// Device buffer of `bytes` random bf16 values in [-scale, scale].
void *randomBf16(size_t count, uint32_t seed, float scale = 0.05f) {
  std::vector<uint16_t> h(count);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (uint16_t &v : h) {
    float f = d(gen);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    v = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  void *p = nullptr;
  KB_CHECK(cudaMalloc(&p, count * 2));
  KB_CHECK(cudaMemcpy(p, h.data(), count * 2, cudaMemcpyHostToDevice));
  return p;
}

constexpr int kGraphCalls = 20;
double gGraphMs = 0, gGraphNoPdlMs = 0;

/// Per-call milliseconds of fn(0..kGraphCalls-1) captured into a graph:
/// median over replays.
double graphMs(const std::function<void(int)> &fn) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  KB_CHECK(cudaStreamBeginCapture(gStream, cudaStreamCaptureModeRelaxed));
  for (int i = 0; i < kGraphCalls; ++i)
    fn(i);
  KB_CHECK(cudaStreamEndCapture(gStream, &graph));
  KB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  KB_CHECK(cudaEventCreate(&a));
  KB_CHECK(cudaEventCreate(&b));
  KB_CHECK(cudaGraphLaunch(exec, gStream));
  std::vector<float> ms;
  for (int r = 0; r < std::max(5, gReps / 4); ++r) {
    KB_CHECK(cudaEventRecord(a, gStream));
    KB_CHECK(cudaGraphLaunch(exec, gStream));
    KB_CHECK(cudaEventRecord(b, gStream));
    KB_CHECK(cudaEventSynchronize(b));
    float t = 0;
    KB_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t / kGraphCalls);
  }
  KB_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

/// Median milliseconds of `fn(rep)` between two events on the stream, over
/// gReps samples after 3 warm-ups.
double eventMedianMs(const std::function<void(int)> &fn) {
  cudaEvent_t a, b;
  KB_CHECK(cudaEventCreate(&a));
  KB_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i)
    fn(i);
  std::vector<float> ms;
  for (int r = 0; r < gReps; ++r) {
    KB_CHECK(cudaEventRecord(a, gStream));
    fn(r);
    KB_CHECK(cudaEventRecord(b, gStream));
    KB_CHECK(cudaEventSynchronize(b));
    float t = 0;
    KB_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  KB_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

/// Median milliseconds of `fn(rep)` on the stream; also sets gGraphMs (PDL
/// on) and gGraphNoPdlMs (PDL off) from graph replays.
double medianMs(const std::function<void(int)> &fn) {
  cudak::setPdlEnabled(false);
  gGraphNoPdlMs = graphMs(fn);
  cudak::setPdlEnabled(true);
  gGraphMs = graphMs(fn);
  return eventMedianMs(fn);
}

/// Median milliseconds of `fn(rep)` on the stream only (for code that cannot
/// be captured, like the MoE prefill GEMM path, which waits on the host);
/// the graph columns get the same number.
double streamOnlyMs(const std::function<void(int)> &fn) {
  gGraphMs = gGraphNoPdlMs = eventMedianMs(fn);
  return gGraphMs;
}

struct Row {
  std::string name;
  double ms, graphMs, graphNoPdlMs, bytes, flops;
};
std::vector<Row> gRows;

/// Dense bf16 tensor-core peak of the H100 SXM (spec, no sparsity).
constexpr double kTcPeakFlops = 989e12;

void report(const std::string &name, double ms, double bytes,
            double flops = 0) {
  gRows.push_back({name, ms, gGraphMs, gGraphNoPdlMs, bytes, flops});
  std::fprintf(stderr, "  %-44s %9.1f us %9.1f us (no PDL %9.1f us)\n",
               name.c_str(), ms * 1e3, gGraphMs * 1e3, gGraphNoPdlMs * 1e3);
}

/// Copies needed so the working set exceeds L2 several times.
int rotations(double bytesEach, int l2Bytes) {
  return std::max(1, int(std::ceil(4.0 * l2Bytes / bytesEach)));
}

} // namespace

int main(int argc, char **argv) {
  bool prefill = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      gReps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--prefill")) {
      prefill = true;
    } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: crosspool-kbench [--reps N] [--prefill]\n");
      return 0;
    } else {
      std::fprintf(stderr,
                   "crosspool-kbench: unknown argument '%s' (expected "
                   "--reps N or --prefill)\n",
                   argv[i]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "crosspool-kbench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  KB_CHECK(cudaGetDeviceProperties(&prop, 0));
  KB_CHECK(cudaStreamCreate(&gStream));
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "crosspool-kbench: cublasCreate failed\n");
    return 1;
  }
  std::fprintf(stderr, "device: %s, %d SMs, L2 %d MB\n", prop.name,
               prop.multiProcessorCount, prop.l2CacheSize >> 20);
  const int l2 = prop.l2CacheSize;
  void *ws = nullptr;
  const int64_t wsBytes = int64_t(1) << 30;
  KB_CHECK(cudaMalloc(&ws, wsBytes));
  cudak::BlockContext ctx;
  ctx.stream = gStream;
  ctx.blas = blas;
  ctx.numSms = prop.multiProcessorCount;
  ctx.workspace = ws;
  ctx.workspaceBytes = wsBytes;

  // 1. Bandwidth ceiling: 1 GiB device-to-device copy (read + write).
  const size_t copyBytes = size_t(1) << 30;
  void *src = randomBf16(copyBytes / 2, 1, 1.0f), *dst = nullptr;
  KB_CHECK(cudaMalloc(&dst, copyBytes));
  double copyMs = medianMs([&](int) {
    KB_CHECK(cudaMemcpyAsync(dst, src, copyBytes, cudaMemcpyDeviceToDevice,
                             gStream));
  });
  report("d2d copy 1 GiB", copyMs, 2.0 * copyBytes);
  KB_CHECK(cudaFree(src));
  KB_CHECK(cudaFree(dst));
  const double copyGBs = 2.0 * copyBytes / (copyMs * 1e-3) / 1e9;

  // 1a. Streaming-read floor: the time a pure read of the bytes of one
  // kernel takes as its own launch (ramp and tail included), at the sizes of
  // the Qwen3 decode kernels, with 4 and 8 blocks of 256 threads per SM.
  {
    uint32_t *sink = nullptr;
    KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&sink), 4));
    struct Probe {
      const char *what;
      double mb;
    };
    for (const Probe &pr :
         {Probe{"KV 1K", 2.0}, Probe{"o_proj", 16.78}, Probe{"qkv", 20.97},
          Probe{"down x8", 25.17}, Probe{"gate/up x8", 50.33},
          Probe{"experts x8", 75.5}}) {
      const size_t bytes = size_t(pr.mb * 1e6) / 256 * 256;
      const int n = rotations(double(bytes), l2);
      std::vector<void *> bufs;
      for (int i = 0; i < n; ++i)
        bufs.push_back(randomBf16(bytes / 2, 300 + i, 1.0f));
      for (int perSm : {4, 8}) {
        double ms = medianMs([&](int r) {
          KB_OK(cudak::streamRead(bufs[r % n], int64_t(bytes),
                                  int64_t(perSm) * prop.multiProcessorCount,
                                  sink, gStream));
        });
        char name[96];
        std::snprintf(name, sizeof name, "read %.1f MB (%s) %dx256/SM", pr.mb,
                      pr.what, perSm);
        report(name, ms, double(bytes));
      }
      for (void *p : bufs)
        KB_CHECK(cudaFree(p));
    }
    KB_CHECK(cudaFree(sink));
  }

  // 2. bf16 GEMV at Qwen3-30B-A3B attention shapes (hidden 2048).
  struct Gemv {
    const char *name;
    int64_t in, out, T;
  };
  std::vector<Gemv> gemvs = {
      Gemv{"gemv q_proj 2048->4096 T=1", 2048, 4096, 1},
      Gemv{"gemv k_proj 2048->512 T=1", 2048, 512, 1},
      Gemv{"gemv router 2048->128 T=1", 2048, 128, 1},
      Gemv{"gemv o_proj 4096->2048 T=1", 4096, 2048, 1},
      Gemv{"gemv q_proj 2048->4096 T=8", 2048, 4096, 8},
      Gemv{"gemv q_proj 2048->4096 T=16", 2048, 4096, 16}};
  if (prefill) {
    gemvs.push_back(Gemv{"linear q_proj 2048->4096 T=512", 2048, 4096, 512});
    gemvs.push_back(Gemv{"linear o_proj 4096->2048 T=512", 4096, 2048, 512});
  }
  for (const Gemv &g : gemvs) {
    const double wBytes = double(g.in) * g.out * 2;
    const int n = rotations(wBytes, l2);
    std::vector<void *> ws2;
    for (int i = 0; i < n; ++i)
      ws2.push_back(randomBf16(size_t(g.in * g.out), 10 + i));
    void *x = randomBf16(size_t(g.T * g.in), 9, 1.0f), *y = nullptr;
    KB_CHECK(cudaMalloc(&y, size_t(g.T * g.out * 2)));
    double ms = medianMs([&](int r) {
      KB_OK(cudak::linear(
          x, ws2[r % n], nullptr, g.T, g.in, g.out, y, cudak::DType::kBF16, ctx,
          g.T <= cudak::kGemvMaxRows ? cudak::LinearAlgo::kGemv
                                     : cudak::LinearAlgo::kAuto));
    });
    report(g.name, ms, wBytes + 2.0 * g.T * (g.in + g.out),
           g.T > cudak::kGemvMaxRows ? 2.0 * g.T * g.in * g.out : 0.0);
    for (void *p : ws2)
      KB_CHECK(cudaFree(p));
    KB_CHECK(cudaFree(x));
    KB_CHECK(cudaFree(y));
  }

  // 2a. add + RMSNorm of one decode row (latency-bound: one block).
  for (int64_t T : {1, 8}) {
    const int64_t H = 2048;
    void *h = randomBf16(size_t(T * H), 20, 1.0f);
    void *d = randomBf16(size_t(T * H), 21, 0.01f);
    void *w = randomBf16(size_t(H), 22, 1.0f), *y = nullptr;
    KB_CHECK(cudaMalloc(&y, size_t(T * H * 2)));
    double ms = medianMs([&](int) {
      KB_OK(cudak::addRmsNorm(h, d, w, 1e-6f, T, H, y, cudak::DType::kBF16,
                              gStream));
    });
    char name[96];
    std::snprintf(name, sizeof name, "add+rmsnorm H=2048 T=%lld", (long long)T);
    report(name, ms, 2.0 * (4.0 * T * H + H));
    for (void *p : {h, d, w, y})
      KB_CHECK(cudaFree(p));
  }

  // 2b. q, k, v projections in one launch (linearMulti), as attention()
  // runs them, against the three separate GEMVs above.
  for (int64_t T : {1, 8}) {
    const int64_t in = 2048, outs[3] = {4096, 512, 512};
    const double wBytes = double(in) * (outs[0] + outs[1] + outs[2]) * 2;
    const int n = rotations(wBytes, l2);
    std::vector<void *> wq;
    for (int i = 0; i < 3 * n; ++i)
      wq.push_back(randomBf16(size_t(in * outs[i % 3]), 40 + i));
    void *x = randomBf16(size_t(T * in), 9, 1.0f), *y[3];
    for (int i = 0; i < 3; ++i)
      KB_CHECK(cudaMalloc(&y[i], size_t(T * outs[i] * 2)));
    double ms = medianMs([&](int r) {
      cudak::LinearSeg segs[3];
      for (int i = 0; i < 3; ++i)
        segs[i] = {wq[3 * (r % n) + i], nullptr, outs[i], y[i]};
      KB_OK(cudak::linearMulti(x, T, in, segs, 3, cudak::DType::kBF16, ctx,
                               cudak::LinearAlgo::kGemv));
    });
    char name[96];
    std::snprintf(name, sizeof name, "gemv qkv 2048->4096+512+512 T=%lld",
                  (long long)T);
    report(name, ms, wBytes + 2.0 * T * (in + 5120));
    for (void *p : wq)
      KB_CHECK(cudaFree(p));
    KB_CHECK(cudaFree(x));
    for (void *p : y)
      KB_CHECK(cudaFree(p));
  }

  // 3. MoE block. Expert sets of `E` experts (gate, up, down contiguous per
  // expert) in two arenas, alternated so the weights come from DRAM.
  struct MoeShape {
    const char *label;
    int32_t E, K;
    int64_t H, I, Is; // Is: shared expert intermediate (0 = none)
  };
  struct MoeRun {
    int64_t T;
    bool fused, early;
    /// The prefill GEMM path: -1 as configured, 0 off
    /// (CROSSPOOL_MOE_GEMM=0), 1 forced at any T (stream-timed: it waits on
    /// the host, so it is never captured).
    int gemm = -1;
  };
  auto benchMoe = [&](const MoeShape &sh, const std::vector<MoeRun> &runs) {
    const int32_t E = sh.E, K = sh.K;
    const int64_t H = sh.H, I = sh.I, Is = sh.Is;
    const double expertBytes = 3.0 * I * H * 2;
    const double sharedBytes = 3.0 * Is * H * 2 + (Is > 0 ? H * 2.0 : 0.0);
    // Two full expert sets: far beyond L2; alternate between them.
    std::vector<void *> arenas, shared;
    std::vector<cudak::ExpertPtrs *> tables;
    for (int set = 0; set < 2; ++set) {
      void *arena = randomBf16(size_t(E) * 3 * I * H, 100 + set);
      arenas.push_back(arena);
      std::vector<cudak::ExpertPtrs> t(E);
      for (int32_t e = 0; e < E; ++e) {
        char *base = static_cast<char *>(arena) + size_t(e) * 3 * I * H * 2;
        t[e] = {base, base + I * H * 2, base + 2 * I * H * 2};
      }
      cudak::ExpertPtrs *d = nullptr;
      KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&d),
                          E * sizeof(cudak::ExpertPtrs)));
      KB_CHECK(cudaMemcpy(d, t.data(), E * sizeof(cudak::ExpertPtrs),
                          cudaMemcpyHostToDevice));
      tables.push_back(d);
      // Shared expert gate, up, down and its [1, H] sigmoid gate.
      shared.push_back(Is > 0 ? randomBf16(size_t(3 * Is * H + H), 150 + set)
                              : nullptr);
    }
    void *router = randomBf16(size_t(E * H), 7, 0.5f);
    cudak::MoeParams p;
    p.hidden = H;
    p.numExperts = E;
    p.topK = K;
    p.normTopkProb = Is == 0; // Qwen3 renormalizes, Qwen1.5-MoE does not
    p.intermediate = I;
    p.sharedIntermediate = Is;
    for (const MoeRun &run : runs) {
      const int64_t T = run.T;
      cudak::setMoeFusedEnabled(run.fused);
      cudak::setEarlyPrefetchEnabled(run.early);
      const bool gemmDefault = cudak::moeGemmEnabled();
      if (run.gemm >= 0)
        cudak::setMoeGemmEnabled(run.gemm == 1);
      if (run.gemm == 1) {
        cudak::setMoeGemmMinPairsPerExpert(0);
        cudak::setMoeGemmMaxExperts(1 << 20);
      }
      const int64_t gemmCalls = cudak::moeGemmCalls();
      void *x = randomBf16(size_t(T * H), 200 + T, 1.0f), *y = nullptr;
      int32_t *idx = nullptr;
      KB_CHECK(cudaMalloc(&y, size_t(T * H * 2)));
      KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&idx), size_t(T * K * 4)));
      auto call = [&](int r) {
        cudak::MoeWeights w;
        w.router = router;
        w.experts = tables[r % 2];
        if (Is > 0) {
          const char *b = static_cast<const char *>(shared[r % 2]);
          w.shared = {b, b + Is * H * 2, b + 2 * Is * H * 2};
          w.sharedGate = b + 3 * Is * H * 2;
        }
        KB_OK(cudak::moe(x, T, w, p, y, cudak::DType::kBF16, ctx, idx));
      };
      double ms = run.gemm == 1 ? streamOnlyMs(call) : medianMs(call);
      const bool tookGemm = cudak::moeGemmCalls() > gemmCalls;
      std::vector<int32_t> h(size_t(T * K));
      KB_CHECK(cudaMemcpy(h.data(), idx, h.size() * 4, cudaMemcpyDeviceToHost));
      std::sort(h.begin(), h.end());
      const double distinct =
          double(std::unique(h.begin(), h.end()) - h.begin());
      char name[96];
      std::snprintf(name, sizeof name, "%s T=%lld (%d exp)%s%s%s", sh.label,
                    (long long)T, int(distinct),
                    T <= 4 && !run.fused ? " grouped" : "",
                    run.early ? " early" : "",
                    run.gemm == 1   ? (tookGemm ? " gemm" : " gemm-NOT-TAKEN")
                    : run.gemm == 0 ? " nogemm"
                                    : "");
      cudak::setMoeFusedEnabled(true);
      cudak::setEarlyPrefetchEnabled(false);
      cudak::setMoeGemmEnabled(gemmDefault);
      cudak::setMoeGemmMinPairsPerExpert(cudak::kMoeGemmMinPairsPerExpert);
      cudak::setMoeGemmMaxExperts(cudak::kMoeGemmMaxExperts);
      const double flops =
          T >= 128 ? 2.0 * T * (K * 3.0 * I * H + 3.0 * Is * H + E * H) : 0.0;
      report(name, ms,
             distinct * expertBytes + sharedBytes + E * H * 2.0 + 4.0 * T * H,
             flops);
      KB_CHECK(cudaFree(x));
      KB_CHECK(cudaFree(y));
      KB_CHECK(cudaFree(idx));
    }
    for (void *a : arenas)
      KB_CHECK(cudaFree(a));
    for (void *a : shared)
      if (a)
        KB_CHECK(cudaFree(a));
    for (auto *t : tables)
      KB_CHECK(cudaFree(t));
    KB_CHECK(cudaFree(router));
  };
  const MoeShape qwen3{"moe E=128 k=8 I=768", 128, 8, 2048, 768, 0};
  std::vector<MoeRun> qwen3Runs = {
      {1, true, false}, {1, true, true},  {1, false, false}, {4, true, false},
      {4, true, true},  {8, true, false}, {32, true, false}};
  // Prefill: the grouped path (graph-timed) and the GEMM path (stream-timed)
  // side by side at each T.
  if (prefill)
    for (int64_t T : {128, 512, 2048}) {
      qwen3Runs.push_back({T, true, false, 0});
      qwen3Runs.push_back({T, true, false, 1});
    }
  benchMoe(qwen3, qwen3Runs);
  if (prefill) {
    std::vector<MoeRun> runs = {{1, true, false}, {1, true, true}};
    for (int64_t T : {128, 512, 2048}) {
      runs.push_back({T, true, false, 0});
      runs.push_back({T, true, false, 1});
    }
    benchMoe(MoeShape{"moe E=60 k=4 I=1408 +sh5632", 60, 4, 2048, 1408, 5632},
             runs);
  }

  // 4. Paged decode attention: 32 q heads, 4 KV heads, head_dim 128, bf16.
  for (int32_t context : {1024, 32768})
    for (int32_t T : {1, 8}) {
      cudak::AttentionParams p;
      p.hidden = 2048;
      p.numHeads = 32;
      p.numKvHeads = 4;
      p.headDim = 128;
      p.softmaxScale = 1.0f / std::sqrt(128.0f);
      const int32_t tpp = 16, pagesPerSeq = context / tpp;
      cudak::KvCacheView kv;
      kv.tokensPerPage = tpp;
      kv.numKvHeads = 4;
      kv.headDim = 128;
      kv.dtype = cudak::DType::kBF16;
      kv.pageStrideBytes = cudak::kvPageBytes(kv);
      const int32_t pages = pagesPerSeq * T;
      kv.base = randomBf16(size_t(pages) * kv.pageStrideBytes / 2, 300, 1.0f);
      std::vector<int32_t> table(static_cast<size_t>(pages));
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), std::mt19937(5));
      int32_t *dTable = nullptr, *dSeq = nullptr, *dPos = nullptr;
      KB_CHECK(
          cudaMalloc(reinterpret_cast<void **>(&dTable), table.size() * 4));
      KB_CHECK(cudaMemcpy(dTable, table.data(), table.size() * 4,
                          cudaMemcpyHostToDevice));
      std::vector<int32_t> seq(T), pos(T, context - 1);
      std::iota(seq.begin(), seq.end(), 0);
      KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&dSeq), T * 4));
      KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&dPos), T * 4));
      KB_CHECK(cudaMemcpy(dSeq, seq.data(), T * 4, cudaMemcpyHostToDevice));
      KB_CHECK(cudaMemcpy(dPos, pos.data(), T * 4, cudaMemcpyHostToDevice));
      kv.pageTable = dTable;
      kv.maxPagesPerSeq = pagesPerSeq;
      kv.numSeqs = T;
      void *q = randomBf16(size_t(T) * 32 * 128, 301, 1.0f), *out = nullptr;
      KB_CHECK(cudaMalloc(&out, size_t(T) * 32 * 128 * 2));
      cudak::AttendConfig c =
          cudak::chooseAttendConfig(T, p, context, ctx.numSms);
      double ms = medianMs([&](int) {
        KB_OK(cudak::attend(q, T, p, dSeq, dPos, kv, c, out, ctx));
      });
      char name[96];
      std::snprintf(name, sizeof name, "attend ctx=%d T=%d (%dx%d)", context, T,
                    c.numSplits, c.splitLen);
      report(name, ms, double(pages) * kv.pageStrideBytes + 4.0 * T * 32 * 128);
      for (void *ptr :
           {kv.base, static_cast<void *>(dTable), static_cast<void *>(dSeq),
            static_cast<void *>(dPos), q, out})
        KB_CHECK(cudaFree(ptr));
    }

  // 5. Prompt attention (--prefill): a 1024-row chunk at the end of a C-token
  // prompt, Qwen3 (32 q / 4 KV heads, G 8) and Qwen1.5-MoE (16 / 16, G 1)
  // shapes, bf16, on the tensor-core prompt kernel and the scalar one.
  if (prefill)
    for (int32_t nkvHeads : {4, 16})
      for (int32_t context : {4096, 32768})
        for (bool mma : {true, false}) {
          const int32_t nh = nkvHeads == 4 ? 32 : 16, T = 1024;
          cudak::AttentionParams p;
          p.hidden = 2048;
          p.numHeads = nh;
          p.numKvHeads = nkvHeads;
          p.headDim = 128;
          p.softmaxScale = 1.0f / std::sqrt(128.0f);
          const int32_t tpp = 16, pages = context / tpp;
          cudak::KvCacheView kv;
          kv.tokensPerPage = tpp;
          kv.numKvHeads = nkvHeads;
          kv.headDim = 128;
          kv.dtype = cudak::DType::kBF16;
          kv.pageStrideBytes = cudak::kvPageBytes(kv);
          kv.base =
              randomBf16(size_t(pages) * kv.pageStrideBytes / 2, 310, 1.0f);
          std::vector<int32_t> table(static_cast<size_t>(pages));
          std::iota(table.begin(), table.end(), 0);
          std::shuffle(table.begin(), table.end(), std::mt19937(6));
          std::vector<int32_t> seq(T, 0), pos(T);
          std::iota(pos.begin(), pos.end(), context - T);
          int32_t *dTable = nullptr, *dSeq = nullptr, *dPos = nullptr;
          KB_CHECK(
              cudaMalloc(reinterpret_cast<void **>(&dTable), table.size() * 4));
          KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&dSeq), T * 4));
          KB_CHECK(cudaMalloc(reinterpret_cast<void **>(&dPos), T * 4));
          KB_CHECK(cudaMemcpy(dTable, table.data(), table.size() * 4,
                              cudaMemcpyHostToDevice));
          KB_CHECK(cudaMemcpy(dSeq, seq.data(), T * 4, cudaMemcpyHostToDevice));
          KB_CHECK(cudaMemcpy(dPos, pos.data(), T * 4, cudaMemcpyHostToDevice));
          kv.pageTable = dTable;
          kv.maxPagesPerSeq = pages;
          kv.numSeqs = 1;
          void *q = randomBf16(size_t(T) * nh * 128, 311, 1.0f), *out = nullptr;
          KB_CHECK(cudaMalloc(&out, size_t(T) * nh * 128 * 2));
          const cudak::AttendConfig c =
              cudak::chooseAttendConfig(T, p, context, ctx.numSms);
          const bool wasMma = cudak::prefillMmaEnabled();
          cudak::setPrefillMmaEnabled(mma);
          double ms = medianMs([&](int) {
            KB_OK(cudak::attend(q, T, p, dSeq, dPos, kv, c, out, ctx));
          });
          cudak::setPrefillMmaEnabled(wasMma);
          char name[96];
          std::snprintf(name, sizeof name, "prompt attend %s ctx=%d T=%d %s",
                        nkvHeads == 4 ? "qwen3" : "qwen1.5", context, T,
                        mma ? "mma" : "scalar");
          // Keys per row: context - T + 1 .. context; QK and PV, 2 flops each.
          const double keys = double(T) * (context - T) + 0.5 * T * (T + 1);
          report(name, ms, double(pages) * kv.pageStrideBytes,
                 4.0 * keys * nh * 128);
          for (void *ptr :
               {kv.base, static_cast<void *>(dTable), static_cast<void *>(dSeq),
                static_cast<void *>(dPos), q, out})
            KB_CHECK(cudaFree(ptr));
        }

  std::printf("crosspool-kbench on %s (median of %d, device events)\n",
              prop.name, gReps);
  std::printf("%-44s %9s %9s %9s %9s %8s %8s %8s", "kernel", "stream_us",
              "graph_us", "nopdl_us", "MB", "GB/s", "of_copy", "stream%");
  if (prefill)
    std::printf(" %11s %11s %8s %6s", "bw_floor_us", "tc_floor_us", "TFLOP/s",
                "of_tc");
  std::printf("\n");
  for (const Row &r : gRows) {
    double gbs = r.bytes / (r.graphMs * 1e-3) / 1e9;
    double sgbs = r.bytes / (r.ms * 1e-3) / 1e9;
    std::printf("%-44s %9.1f %9.1f %9.1f %9.2f %8.0f %7.0f%% %7.0f%%",
                r.name.c_str(), r.ms * 1e3, r.graphMs * 1e3,
                r.graphNoPdlMs * 1e3, r.bytes / 1e6, gbs, 100.0 * gbs / copyGBs,
                100.0 * sgbs / copyGBs);
    if (prefill && r.flops > 0) {
      const double tflops = r.flops / (r.graphMs * 1e-3) / 1e12;
      std::printf(" %11.1f %11.1f %8.1f %5.0f%%",
                  r.bytes / (copyGBs * 1e9) * 1e6, r.flops / kTcPeakFlops * 1e6,
                  tflops, 100.0 * tflops * 1e12 / kTcPeakFlops);
    }
    std::printf("\n");
  }
  cublasDestroy(blas);
  KB_CHECK(cudaFree(ws));
  return 0;
}
