//===- TinyModel.h - A hand-built two-pool model + naive oracle -*- C++ -*-===//
//
// For executor/engine tests: deterministic pseudo-random weights, the plan
// that runs them (KV stream: embed, per layer norm/attention/add/norm/send/
// recv/add, final norm, lm_head; Weights stream: per layer recv/FFN/send over
// two channels with per_step = layers), a safetensors writer, and a naive
// double-precision reference forward pass that recomputes the whole sequence
// without any KV cache: an oracle independent of the kernels and the pages.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TEST_UNIT_RUNTIME_TINYMODEL_H
#define CROSSPOOL_TEST_UNIT_RUNTIME_TINYMODEL_H

#include "test/unit/runtime/TestPlans.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace crosspool::testing {

/// Layer 0: qkv bias, MoE (4 experts, top-2, renormalized, gated shared
/// expert). Layer 1: per-head qk-norm, dense MLP.
struct TinyModel {
  static constexpr int64_t V = 16, H = 8, NH = 2, NKV = 1, HD = 4, I = 6, E = 4,
                           TOPK = 2, L = 2;
  static constexpr double kEps = 1e-5, kTheta = 10000.0;

  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    fb::Pool pool;
    std::vector<float> data;
  };
  std::vector<Tensor> tensors; ///< plan weight i == tensors[i]
  std::map<std::string, int32_t> ids;

  explicit TinyModel(uint32_t seed) {
    uint64_t state = seed * 2654435761u + 12345;
    auto uniform = [&] {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return double((state >> 33) & 0xffffff) / double(0x1000000) * 2.0 - 1.0;
    };
    auto add = [&](const std::string &name, std::vector<int64_t> shape,
                   fb::Pool pool, double scale, double offset = 0.0) {
      int64_t n = 1;
      for (int64_t d : shape)
        n *= d;
      Tensor t{name, shape, pool, {}};
      for (int64_t k = 0; k < n; ++k)
        t.data.push_back(float(offset + scale * uniform()));
      ids[name] = int32_t(tensors.size());
      tensors.push_back(std::move(t));
    };
    const fb::Pool kv = fb::Pool::KV, wp = fb::Pool::Weights;
    add("embed", {V, H}, kv, 1.0);
    for (int l = 0; l < L; ++l) {
      std::string p = "l" + std::to_string(l) + ".";
      add(p + "in_norm", {H}, kv, 0.2, 1.0);
      add(p + "q", {NH * HD, H}, kv, 0.6);
      add(p + "k", {NKV * HD, H}, kv, 0.6);
      add(p + "v", {NKV * HD, H}, kv, 0.6);
      add(p + "o", {H, NH * HD}, kv, 0.6);
      if (l == 0) {
        add(p + "q_b", {NH * HD}, kv, 0.3);
        add(p + "k_b", {NKV * HD}, kv, 0.3);
        add(p + "v_b", {NKV * HD}, kv, 0.3);
      } else {
        add(p + "q_norm", {HD}, kv, 0.2, 1.0);
        add(p + "k_norm", {HD}, kv, 0.2, 1.0);
      }
      add(p + "post_norm", {H}, kv, 0.2, 1.0);
      if (l == 0) {
        add(p + "router", {E, H}, wp, 1.0);
        add(p + "shared_gate", {I, H}, wp, 0.5);
        add(p + "shared_up", {I, H}, wp, 0.5);
        add(p + "shared_down", {H, I}, wp, 0.5);
        add(p + "shared_expert_gate", {1, H}, wp, 0.5);
        for (int e = 0; e < E; ++e) {
          std::string q = p + "e" + std::to_string(e) + ".";
          add(q + "gate", {I, H}, wp, 0.5);
          add(q + "up", {I, H}, wp, 0.5);
          add(q + "down", {H, I}, wp, 0.5);
        }
      } else {
        add(p + "gate", {I, H}, wp, 0.5);
        add(p + "up", {I, H}, wp, 0.5);
        add(p + "down", {H, I}, wp, 0.5);
      }
    }
    add("final_norm", {H}, kv, 0.2, 1.0);
    add("lm_head", {V, H}, kv, 0.8);
  }

  int32_t id(const std::string &name) const { return ids.at(name); }
  const std::vector<float> &w(const std::string &name) const {
    return tensors[id(name)].data;
  }
  std::vector<const float *> pointers() const {
    std::vector<const float *> out;
    for (const Tensor &t : tensors)
      out.push_back(t.data.data());
    return out;
  }

  /// Writes model.safetensors into `dir` and returns the plan referencing
  /// it (weights at their true byte offsets).
  TPlan writeCheckpoint(const std::string &dir) const {
    std::string header = "{";
    uint64_t begin = 0;
    for (size_t k = 0; k < tensors.size(); ++k) {
      const Tensor &t = tensors[k];
      uint64_t n = t.data.size() * 4;
      header += (k ? "," : "") + std::string("\"") + t.name +
                "\":{\"dtype\":\"F32\",\"shape\":[";
      for (size_t d = 0; d < t.shape.size(); ++d)
        header += (d ? "," : "") + std::to_string(t.shape[d]);
      header += "],\"data_offsets\":[" + std::to_string(begin) + "," +
                std::to_string(begin + n) + "]}";
      begin += n;
    }
    header += "}";
    while (header.size() % 8)
      header += ' ';
    std::ofstream out(dir + "/model.safetensors", std::ios::binary);
    uint64_t len = header.size();
    out.write(reinterpret_cast<const char *>(&len), 8);
    out.write(header.data(), header.size());
    for (const Tensor &t : tensors)
      out.write(reinterpret_cast<const char *>(t.data.data()),
                t.data.size() * 4);
    TPlan p = plan();
    uint64_t offset = 8 + header.size();
    for (TWeight &w : p.weights) {
      w.offset = offset;
      offset += w.nbytes;
    }
    p.checkpointDir = dir;
    return p;
  }

  TPlan plan() const {
    TPlan p;
    p.modelName = "tiny";
    p.vocabSize = V;
    p.hiddenSize = H;
    p.eosTokenIds = {2};
    for (const Tensor &t : tensors) {
      TWeight w;
      w.name = t.name;
      w.shape = t.shape;
      w.pool = t.pool;
      w.nbytes = t.data.size() * 4;
      p.weights.push_back(w);
    }
    const fb::Pool kv = fb::Pool::KV, wp = fb::Pool::Weights;
    enum : int32_t { sIds, sH, sX, sA, sF, sLogits, sWx, sWy };
    p.slots = {{fb::SlotKind::TokenIds, 1, kv}, {fb::SlotKind::Hidden, H, kv},
               {fb::SlotKind::Hidden, H, kv},   {fb::SlotKind::Hidden, H, kv},
               {fb::SlotKind::Hidden, H, kv},   {fb::SlotKind::Logits, V, kv},
               {fb::SlotKind::Hidden, H, wp},   {fb::SlotKind::Hidden, H, wp}};
    p.inputSlot = sIds;
    p.outputSlot = sLogits;
    p.channels = {{kv, wp, H, int32_t(L)}, {wp, kv, H, int32_t(L)}};
    TStream kvs, ws;
    kvs.pool = kv;
    ws.pool = wp;
    kvs.instrs.push_back(task(fb::Kernel::Embed, {sIds}, {sH}, {id("embed")}));
    for (int l = 0; l < L; ++l) {
      std::string q = "l" + std::to_string(l) + ".";
      auto opt = [&](const std::string &n) {
        return ids.count(q + n) ? id(q + n) : -1;
      };
      p.kvLayers.push_back({int32_t(NKV), int32_t(HD)});
      kvs.instrs.push_back(task(fb::Kernel::RmsNorm, {sH}, {sX},
                                {id(q + "in_norm")}, {}, {kEps}));
      kvs.instrs.push_back(
          task(fb::Kernel::Attention, {sX}, {sA},
               {id(q + "q"), id(q + "k"), id(q + "v"), id(q + "o"), opt("q_b"),
                opt("k_b"), opt("v_b"), -1, opt("q_norm"), opt("k_norm")},
               {l, NH, NKV, HD, l == 1 ? 1 : 0, 0, 0},
               {kTheta, kEps, 0.0, 1.0, 1.0 / std::sqrt(double(HD))}));
      kvs.instrs.push_back(task(fb::Kernel::Add, {sH, sA}, {sH}, {}));
      kvs.instrs.push_back(task(fb::Kernel::RmsNorm, {sH}, {sX},
                                {id(q + "post_norm")}, {}, {kEps}));
      kvs.instrs.push_back(send(sX, 0, l + 1));
      kvs.instrs.push_back(recv(sF, 1, l + 1));
      kvs.instrs.push_back(task(fb::Kernel::Add, {sH, sF}, {sH}, {}));
      ws.instrs.push_back(recv(sWx, 0, l + 1));
      if (l == 0) {
        std::vector<int32_t> moe = {id(q + "router"), id(q + "shared_gate"),
                                    id(q + "shared_up"), id(q + "shared_down"),
                                    id(q + "shared_expert_gate")};
        for (int e = 0; e < E; ++e)
          for (const char *m : {"gate", "up", "down"})
            moe.push_back(id(q + "e" + std::to_string(e) + "." + m));
        ws.instrs.push_back(
            task(fb::Kernel::Moe, {sWx}, {sWy}, moe, {E, TOPK, 1}));
      } else {
        ws.instrs.push_back(
            task(fb::Kernel::Mlp, {sWx}, {sWy},
                 {id(q + "gate"), id(q + "up"), id(q + "down")}));
      }
      ws.instrs.push_back(send(sWy, 1, l + 1));
    }
    kvs.instrs.push_back(
        task(fb::Kernel::RmsNorm, {sH}, {sX}, {id("final_norm")}, {}, {kEps}));
    kvs.instrs.push_back(
        task(fb::Kernel::LmHead, {sX}, {sLogits}, {id("lm_head")}));
    p.streams = {kvs, ws};
    return p;
  }

  //===--- Naive reference (double, whole sequence, no cache) ------------===//

  using Vec = std::vector<double>;
  static Vec linear(const Vec &x, const std::vector<float> &W, int64_t out,
                    const std::vector<float> *b = nullptr) {
    int64_t in = int64_t(x.size());
    Vec y(out, 0.0);
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t k = 0; k < in; ++k)
        s += W[o * in + k] * x[k];
      y[o] = s;
    }
    return y;
  }
  static Vec rms(const Vec &x, const std::vector<float> &w, int64_t off = 0,
                 int64_t n = -1) {
    if (n < 0)
      n = int64_t(x.size());
    Vec y = x;
    double ss = 0;
    for (int64_t k = 0; k < n; ++k)
      ss += x[off + k] * x[off + k];
    double r = 1.0 / std::sqrt(ss / n + kEps);
    for (int64_t k = 0; k < n; ++k)
      y[off + k] = x[off + k] * r * w[k];
    return y;
  }
  static void rope(Vec &x, int64_t heads, int64_t pos) {
    for (int64_t h = 0; h < heads; ++h) {
      double *v = &x[h * HD];
      Vec orig(v, v + HD);
      for (int64_t i = 0; i < HD / 2; ++i) {
        double angle = pos * std::pow(kTheta, -2.0 * i / HD);
        double c = std::cos(angle), s = std::sin(angle);
        v[i] = orig[i] * c - orig[i + HD / 2] * s;
        v[i + HD / 2] = orig[i + HD / 2] * c + orig[i] * s;
      }
    }
  }
  static double silu(double x) { return x / (1.0 + std::exp(-x)); }
  Vec swiglu(const Vec &x, const std::string &p) const {
    Vec g = linear(x, w(p + "gate"), I), u = linear(x, w(p + "up"), I);
    for (int64_t k = 0; k < I; ++k)
      g[k] = silu(g[k]) * u[k];
    return linear(g, w(p + "down"), H);
  }

  /// Logits [ids.size(), V] of every position of `ids`.
  std::vector<double> reference(const std::vector<int32_t> &tokens) const {
    const int64_t n = int64_t(tokens.size());
    std::vector<Vec> h(n);
    for (int64_t t = 0; t < n; ++t)
      h[t] = Vec(w("embed").begin() + tokens[t] * H,
                 w("embed").begin() + (tokens[t] + 1) * H);
    for (int l = 0; l < L; ++l) {
      std::string p = "l" + std::to_string(l) + ".";
      std::vector<Vec> q(n), k(n), v(n);
      for (int64_t t = 0; t < n; ++t) {
        Vec x = rms(h[t], w(p + "in_norm"));
        bool bias = l == 0;
        q[t] = linear(x, w(p + "q"), NH * HD, bias ? &w(p + "q_b") : nullptr);
        k[t] = linear(x, w(p + "k"), NKV * HD, bias ? &w(p + "k_b") : nullptr);
        v[t] = linear(x, w(p + "v"), NKV * HD, bias ? &w(p + "v_b") : nullptr);
        if (l == 1) {
          for (int64_t hh = 0; hh < NH; ++hh)
            q[t] = rms(q[t], w(p + "q_norm"), hh * HD, HD);
          for (int64_t hh = 0; hh < NKV; ++hh)
            k[t] = rms(k[t], w(p + "k_norm"), hh * HD, HD);
        }
        rope(q[t], NH, t);
        rope(k[t], NKV, t);
      }
      for (int64_t t = 0; t < n; ++t) {
        Vec cat(NH * HD, 0.0);
        for (int64_t hh = 0; hh < NH; ++hh) {
          int64_t kvh = hh / (NH / NKV);
          Vec s(t + 1);
          double mx = -1e300;
          for (int64_t j = 0; j <= t; ++j) {
            double d = 0;
            for (int64_t e = 0; e < HD; ++e)
              d += q[t][hh * HD + e] * k[j][kvh * HD + e];
            s[j] = d / std::sqrt(double(HD));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (double &sj : s)
            z += (sj = std::exp(sj - mx));
          for (int64_t j = 0; j <= t; ++j)
            for (int64_t e = 0; e < HD; ++e)
              cat[hh * HD + e] += s[j] / z * v[j][kvh * HD + e];
        }
        Vec o = linear(cat, w(p + "o"), H);
        for (int64_t e = 0; e < H; ++e)
          h[t][e] += o[e];
      }
      for (int64_t t = 0; t < n; ++t) {
        Vec x = rms(h[t], w(p + "post_norm"));
        Vec y(H, 0.0);
        if (l == 0) {
          Vec r = linear(x, w(p + "router"), E);
          double mx = *std::max_element(r.begin(), r.end()), z = 0;
          for (double &re : r)
            z += (re = std::exp(re - mx));
          for (double &re : r)
            re /= z;
          std::vector<int> order(E);
          for (int e = 0; e < E; ++e)
            order[e] = e;
          std::stable_sort(order.begin(), order.end(),
                           [&](int a, int b) { return r[a] > r[b]; });
          double sum = 0;
          for (int kk = 0; kk < TOPK; ++kk)
            sum += r[order[kk]];
          for (int kk = 0; kk < TOPK; ++kk) {
            int e = order[kk];
            Vec ye = swiglu(x, p + "e" + std::to_string(e) + ".");
            for (int64_t d = 0; d < H; ++d)
              y[d] += r[e] / sum * ye[d];
          }
          Vec ys = swiglu(x, p + "shared_");
          double g = linear(x, w(p + "shared_expert_gate"), 1)[0];
          double sg = 1.0 / (1.0 + std::exp(-g));
          for (int64_t d = 0; d < H; ++d)
            y[d] += sg * ys[d];
        } else {
          y = swiglu(x, p);
        }
        for (int64_t d = 0; d < H; ++d)
          h[t][d] += y[d];
      }
    }
    std::vector<double> logits;
    for (int64_t t = 0; t < n; ++t) {
      Vec x = rms(h[t], w("final_norm"));
      Vec lg = linear(x, w("lm_head"), V);
      logits.insert(logits.end(), lg.begin(), lg.end());
    }
    return logits;
  }

  /// Greedy continuation by the reference (recomputing everything each time).
  std::vector<int32_t> referenceGenerate(std::vector<int32_t> tokens,
                                         int n) const {
    std::vector<int32_t> out;
    for (int k = 0; k < n; ++k) {
      std::vector<double> lg = reference(tokens);
      const double *last = lg.data() + (tokens.size() - 1) * V;
      int32_t best = int32_t(std::max_element(last, last + V) - last);
      out.push_back(best);
      tokens.push_back(best);
    }
    return out;
  }
};

} // namespace crosspool::testing

#endif // CROSSPOOL_TEST_UNIT_RUNTIME_TINYMODEL_H
