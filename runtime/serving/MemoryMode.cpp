//===- MemoryMode.cpp - KV budgets of the three memory designs ------------===//

#include "runtime/serving/MemoryMode.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <numeric>

namespace crosspool::runtime {

const char *memoryModeName(MemoryMode mode) {
  switch (mode) {
  case MemoryMode::CrossPool:
    return "crosspool";
  case MemoryMode::KvCached:
    return "kvcached";
  case MemoryMode::Static:
    return "static";
  }
  return "unknown";
}

absl::StatusOr<MemoryMode> parseMemoryMode(absl::string_view text) {
  if (text == "crosspool")
    return MemoryMode::CrossPool;
  if (text == "kvcached")
    return MemoryMode::KvCached;
  if (text == "static")
    return MemoryMode::Static;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown memory mode '", text,
                   "' (expects crosspool, kvcached or static)"));
}

int64_t KvLayout::totalChunks() const {
  return std::accumulate(groupChunks.begin(), groupChunks.end(), int64_t(0));
}

std::string
KvLayout::describe(const std::vector<ModelFootprint> &models,
                   size_t chunkBytes,
                   const std::vector<int64_t> &pagesPerChunk) const {
  std::string out;
  for (size_t g = 0; g < groupChunks.size(); ++g) {
    std::vector<std::string> names;
    for (size_t m = 0; m < modelGroup.size(); ++m) {
      if (modelGroup[m] != int32_t(g))
        continue;
      std::string name =
          m < models.size() ? models[m].name : absl::StrCat("model ", m);
      if (m < pagesPerChunk.size())
        absl::StrAppend(&name, " (", groupChunks[g] * pagesPerChunk[m],
                        " pages)");
      names.push_back(std::move(name));
    }
    absl::StrAppend(&out, groupNames[g], ": ", groupChunks[g], " KV chunks");
    if (chunkBytes > 0)
      absl::StrAppend(&out, " = ", groupChunks[g] * int64_t(chunkBytes),
                      " bytes");
    absl::StrAppend(&out, " for ", absl::StrJoin(names, ", "), "\n");
  }
  return out;
}

KvLayout sharedLayout(int64_t chunks, int numModels) {
  KvLayout layout;
  layout.groupChunks = {chunks};
  layout.groupNames = {"shared KV pool"};
  layout.modelGroup.assign(numModels, 0);
  layout.modelGpu.assign(numModels, -1);
  return layout;
}

namespace {

int64_t chunksIn(size_t bytes, size_t chunkBytes) {
  return static_cast<int64_t>(bytes / chunkBytes);
}

/// Largest model first onto the GPU with the most free bytes (first on
/// ties): balances what is left for KV, which is what kvcached and static
/// live on.
absl::StatusOr<std::vector<int32_t>>
placeWholeModels(const ClusterSpec &c, const std::vector<ModelFootprint> &ms,
                 std::vector<size_t> *freeBytes) {
  freeBytes->assign(c.gpus, c.gpuMemoryBytes);
  std::vector<size_t> order(ms.size());
  std::iota(order.begin(), order.end(), 0);
  auto total = [&](size_t m) {
    return ms[m].attentionWeightBytes + ms[m].ffnWeightBytes;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return total(a) > total(b); });
  std::vector<int32_t> gpu(ms.size(), -1);
  for (size_t m : order) {
    size_t best = std::max_element(freeBytes->begin(), freeBytes->end()) -
                  freeBytes->begin();
    if ((*freeBytes)[best] < total(m))
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", ms[m].name, "' needs ", total(m),
          " weight bytes but the emptiest of ", c.gpus, " GPUs has ",
          (*freeBytes)[best], " of ", c.gpuMemoryBytes, " free"));
    (*freeBytes)[best] -= total(m);
    gpu[m] = static_cast<int32_t>(best);
  }
  return gpu;
}

} // namespace

absl::StatusOr<KvLayout> planKvLayout(MemoryMode mode, const ClusterSpec &c,
                                      const std::vector<ModelFootprint> &ms,
                                      size_t chunkBytes,
                                      const std::vector<double> &demandShare) {
  if (c.gpus < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("gpus must be >= 1 but got ", c.gpus));
  if (c.gpuMemoryBytes == 0 || chunkBytes == 0)
    return absl::InvalidArgumentError(
        "GPU memory and KV chunk bytes must be positive");
  if (ms.empty())
    return absl::InvalidArgumentError("expects at least one model");
  if (!demandShare.empty() && demandShare.size() != ms.size())
    return absl::InvalidArgumentError(
        absl::StrCat("expects one demand share per model (", ms.size(),
                     ") but got ", demandShare.size()));
  for (double s : demandShare)
    if (!(s >= 0))
      return absl::InvalidArgumentError(
          absl::StrCat("demand shares must be >= 0 but got ", s));
  KvLayout layout;
  const int n = static_cast<int>(ms.size());

  if (mode == MemoryMode::CrossPool) {
    if (c.gpus > 1 && (c.kvGpus < 1 || c.kvGpus >= c.gpus))
      return absl::InvalidArgumentError(
          absl::StrCat("crosspool mode expects 1 <= kv GPUs < GPUs (", c.gpus,
                       ") but got ", c.kvGpus));
    size_t attn = 0, ffn = 0;
    for (const ModelFootprint &m : ms) {
      attn += m.attentionWeightBytes;
      ffn += m.ffnWeightBytes;
    }
    // One GPU hosts both pools; otherwise FFN weights are spread over the
    // weights-pool GPUs at expert granularity (counted as total bytes).
    int32_t kvGpus = c.gpus == 1 ? 1 : c.kvGpus;
    size_t kvBytes = size_t(kvGpus) * c.gpuMemoryBytes;
    size_t kvSideWeights = c.gpus == 1 ? attn + ffn : attn;
    if (c.gpus > 1 && ffn > size_t(c.gpus - kvGpus) * c.gpuMemoryBytes)
      return absl::InvalidArgumentError(absl::StrCat(
          "the weights pool (", c.gpus - kvGpus, " GPUs of ", c.gpuMemoryBytes,
          " bytes) cannot hold the ", ffn, " FFN weight bytes of all models"));
    if (kvSideWeights >= kvBytes)
      return absl::InvalidArgumentError(
          absl::StrCat("the KV pool (", kvGpus, " GPUs of ", c.gpuMemoryBytes,
                       " bytes) cannot hold the ", kvSideWeights,
                       " attention-side weight bytes of all models"));
    layout = sharedLayout(chunksIn(kvBytes - kvSideWeights, chunkBytes), n);
    layout.groupNames = {"crosspool KV pool"};
    return layout;
  }

  std::vector<size_t> freeBytes;
  absl::StatusOr<std::vector<int32_t>> gpu =
      placeWholeModels(c, ms, &freeBytes);
  if (!gpu.ok())
    return gpu.status();
  layout.modelGpu = *gpu;
  layout.modelGroup.assign(n, -1);
  if (mode == MemoryMode::KvCached) {
    for (int32_t g = 0; g < c.gpus; ++g) {
      layout.groupChunks.push_back(chunksIn(freeBytes[g], chunkBytes));
      layout.groupNames.push_back(absl::StrCat("gpu", g, " elastic KV"));
    }
    for (int m = 0; m < n; ++m)
      layout.modelGroup[m] = layout.modelGpu[m];
    return layout;
  }
  // Static: each model's fixed share of its GPU's free memory.
  for (int32_t g = 0; g < c.gpus; ++g) {
    double shareSum = 0;
    int count = 0;
    for (int m = 0; m < n; ++m)
      if (layout.modelGpu[m] == g) {
        shareSum += demandShare.empty() ? 1.0 : demandShare[m];
        ++count;
      }
    for (int m = 0; m < n; ++m) {
      if (layout.modelGpu[m] != g)
        continue;
      double share =
          shareSum > 0 ? (demandShare.empty() ? 1.0 : demandShare[m]) / shareSum
                       : 1.0 / count;
      layout.modelGroup[m] = static_cast<int32_t>(layout.groupChunks.size());
      layout.groupChunks.push_back(chunksIn(
          static_cast<size_t>(double(freeBytes[g]) * share), chunkBytes));
      layout.groupNames.push_back(
          absl::StrCat("gpu", g, " static partition of ", ms[m].name));
    }
  }
  return layout;
}

int64_t chunksAfterPages(int64_t chunks, int64_t pages, int64_t extraPages,
                         int64_t pagesPerChunk) {
  if (extraPages <= 0)
    return chunks;
  int64_t per = std::max<int64_t>(1, pagesPerChunk);
  return std::max(chunks, (pages + extraPages + per - 1) / per);
}

absl::StatusOr<int64_t> kvChunksForCard(size_t freeBytes, size_t reserveBytes,
                                        size_t chunkBytes,
                                        int64_t existingChunks) {
  const double mib = 1024.0 * 1024;
  if (chunkBytes == 0 ||
      freeBytes < reserveBytes + (existingChunks > 0 ? 0 : chunkBytes))
    return absl::InvalidArgumentError(absl::StrFormat(
        "the GPU has %.1f MiB free after the weights and workspaces, not "
        "more than the %.1f MiB reserve (--gpu-reserve-mb): no room for KV",
        double(freeBytes) / mib, double(reserveBytes) / mib));
  return existingChunks +
         static_cast<int64_t>((freeBytes - reserveBytes) / chunkBytes);
}

} // namespace crosspool::runtime
