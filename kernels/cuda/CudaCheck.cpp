//===- CudaCheck.cpp - CUDA / cuBLAS errors as absl::Status ---------------===//

#include "kernels/cuda/CudaCheck.h"

#include "kernels/cuda/Kernels.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace crosspool::kernels::cuda {

namespace {
/// -1: not decided yet (read the environment on first use), else 0 / 1.
std::atomic<int> gPdl{-1}, gMoeFused{-1}, gEarlyPrefetch{-1}, gRouteBlock{-1},
    gDownSplit{-1}, gEarlyTrigger{-1}, gPrefillMma{-1}, gStreamHint{-1},
    gGemvStaged{-1};
} // namespace

bool switchValue(std::atomic<int> &sw, const char *envName, bool dflt) {
  int v = sw.load(std::memory_order_relaxed);
  if (v < 0) {
    const char *env = std::getenv(envName);
    int fromEnv = dflt ? 1 : 0;
    if (env && (!std::strcmp(env, "0") || !std::strcmp(env, "off")))
      fromEnv = 0;
    else if (env && (!std::strcmp(env, "1") || !std::strcmp(env, "on")))
      fromEnv = 1;
    // A setter racing with the first read wins.
    sw.compare_exchange_strong(v, fromEnv);
    v = sw.load(std::memory_order_relaxed);
  }
  return v == 1;
}

bool pdlEnabled() { return switchValue(gPdl, "CROSSPOOL_PDL"); }
void setPdlEnabled(bool on) { gPdl.store(on ? 1 : 0); }
bool moeFusedEnabled() { return switchValue(gMoeFused, "CROSSPOOL_MOE_FUSED"); }
void setMoeFusedEnabled(bool on) { gMoeFused.store(on ? 1 : 0); }
bool earlyPrefetchEnabled() {
  return switchValue(gEarlyPrefetch, "CROSSPOOL_EARLY_PREFETCH", false);
}
void setEarlyPrefetchEnabled(bool on) { gEarlyPrefetch.store(on ? 1 : 0); }

bool routeBlockEnabled() {
  return switchValue(gRouteBlock, "CROSSPOOL_ROUTE_BLOCK");
}
void setRouteBlockEnabled(bool on) { gRouteBlock.store(on ? 1 : 0); }

bool earlyTriggerEnabled() {
  return switchValue(gEarlyTrigger, "CROSSPOOL_EARLY_TRIGGER");
}
void setEarlyTriggerEnabled(bool on) { gEarlyTrigger.store(on ? 1 : 0); }

bool downSplitEnabled() {
  return switchValue(gDownSplit, "CROSSPOOL_DOWN_SPLIT");
}
void setDownSplitEnabled(bool on) { gDownSplit.store(on ? 1 : 0); }

bool prefillMmaEnabled() {
  return switchValue(gPrefillMma, "CROSSPOOL_PREFILL_MMA");
}
void setPrefillMmaEnabled(bool on) { gPrefillMma.store(on ? 1 : 0); }

bool streamHintEnabled() {
  return switchValue(gStreamHint, "CROSSPOOL_STREAM_HINT");
}
void setStreamHintEnabled(bool on) { gStreamHint.store(on ? 1 : 0); }

bool gemvStagedEnabled() {
  return switchValue(gGemvStaged, "CROSSPOOL_GEMV_STAGED");
}
void setGemvStagedEnabled(bool on) { gGemvStaged.store(on ? 1 : 0); }


namespace {
std::atomic<int> gMoeGemm{-1}, gMoeGemmMin{-1}, gMoeGemmStreams{-1},
    gMoeGemmMaxExperts{-1};
std::atomic<int64_t> gMoeGemmCalls{0};

/// The integer setting's value: `envName` when it parses as an integer in
/// [lo, hi], else `dflt`.
int intSetting(std::atomic<int> &v, const char *envName, int lo, int hi,
               int dflt) {
  int cur = v.load(std::memory_order_relaxed);
  if (cur < 0) {
    int fromEnv = dflt;
    if (const char *env = std::getenv(envName)) {
      char *end = nullptr;
      long n = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && n >= lo && n <= hi)
        fromEnv = int(n);
    }
    v.compare_exchange_strong(cur, fromEnv);
    cur = v.load(std::memory_order_relaxed);
  }
  return cur;
}
} // namespace

bool moeGemmEnabled() { return switchValue(gMoeGemm, "CROSSPOOL_MOE_GEMM"); }
void setMoeGemmEnabled(bool on) { gMoeGemm.store(on ? 1 : 0); }
int32_t moeGemmMinPairsPerExpert() {
  return intSetting(gMoeGemmMin, "CROSSPOOL_MOE_GEMM_MIN", 0, 1 << 20,
                    kMoeGemmMinPairsPerExpert);
}
void setMoeGemmMinPairsPerExpert(int32_t n) {
  gMoeGemmMin.store(std::max<int32_t>(n, 0));
}
int32_t moeGemmMaxExperts() {
  return intSetting(gMoeGemmMaxExperts, "CROSSPOOL_MOE_GEMM_MAX_EXPERTS", 0,
                    1 << 20, kMoeGemmMaxExperts);
}
void setMoeGemmMaxExperts(int32_t n) {
  gMoeGemmMaxExperts.store(std::max<int32_t>(n, 0));
}
int32_t moeGemmStreams() {
  return intSetting(gMoeGemmStreams, "CROSSPOOL_MOE_GEMM_STREAMS", 1,
                    kMoeGemmMaxStreams, 4);
}
void setMoeGemmStreams(int32_t n) {
  gMoeGemmStreams.store(std::clamp<int32_t>(n, 1, kMoeGemmMaxStreams));
}
int64_t moeGemmCalls() { return gMoeGemmCalls.load(); }
namespace detail {
void countMoeGemmCall() { gMoeGemmCalls.fetch_add(1); }
} // namespace detail

absl::Status cudaErrorStatus(cudaError_t err, const char *call,
                             const char *file, int line) {
  std::string msg = absl::StrCat(file, ":", line, ": ", call,
                                 " failed: ", cudaGetErrorName(err), " (",
                                 cudaGetErrorString(err), ")");
  switch (err) {
  case cudaErrorMemoryAllocation:
    return absl::ResourceExhaustedError(msg);
  case cudaErrorInvalidValue:
  case cudaErrorInvalidConfiguration:
    return absl::InvalidArgumentError(msg);
  case cudaErrorNoDevice:
  case cudaErrorInsufficientDriver:
    return absl::FailedPreconditionError(msg);
  default:
    return absl::InternalError(msg);
  }
}

absl::Status cublasErrorStatus(cublasStatus_t st, const char *call,
                               const char *file, int line) {
  std::string msg = absl::StrCat(file, ":", line, ": ", call,
                                 " failed: ", cublasGetStatusName(st), " (",
                                 cublasGetStatusString(st), ")");
  switch (st) {
  case CUBLAS_STATUS_ALLOC_FAILED:
    return absl::ResourceExhaustedError(msg);
  case CUBLAS_STATUS_INVALID_VALUE:
  case CUBLAS_STATUS_NOT_SUPPORTED:
    return absl::InvalidArgumentError(msg);
  default:
    return absl::InternalError(msg);
  }
}

} // namespace crosspool::kernels::cuda
