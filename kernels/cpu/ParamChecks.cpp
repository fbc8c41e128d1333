//===- ParamChecks.cpp - Host checks of attention and MoE params ----------===//

#include "kernels/cpu/ParamChecks.h"

#include "absl/strings/str_cat.h"

namespace crosspool::kernels {

absl::Status invalidAttention(const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat("attention: ", msg));
}

absl::Status invalidMoe(const std::string &msg) {
  return absl::InvalidArgumentError(absl::StrCat("moe: ", msg));
}

absl::Status checkAttentionParams(const cpu::AttentionParams &p,
                                  int32_t maxHeadDim) {
  if (p.hidden <= 0 || p.numHeads <= 0 || p.numKvHeads <= 0 || p.headDim <= 0)
    return invalidAttention(absl::StrCat(
        "expects positive hidden, num_heads, num_kv_heads, head_dim but got ",
        p.hidden, ", ", p.numHeads, ", ", p.numKvHeads, ", ", p.headDim));
  if (p.numHeads % p.numKvHeads != 0)
    return invalidAttention(absl::StrCat("num_heads ", p.numHeads,
                                         " is not a multiple of num_kv_heads ",
                                         p.numKvHeads));
  if (maxHeadDim == 0 && p.headDim % 2 != 0)
    return invalidAttention(
        absl::StrCat("RoPE expects an even head_dim but got ", p.headDim));
  if (maxHeadDim != 0 && (p.headDim % 2 != 0 || p.headDim > maxHeadDim))
    return invalidAttention(absl::StrCat(
        "expects an even head_dim <= ", maxHeadDim, " but got ", p.headDim));
  if (p.qkNorm < 0 || p.qkNorm > 2)
    return invalidAttention(
        absl::StrCat("qk_norm expects 0, 1 or 2 but got ", p.qkNorm));
  if (p.ropeType < 0 || p.ropeType > 1)
    return invalidAttention(
        absl::StrCat("rope_type expects 0 or 1 but got ", p.ropeType));
  if (p.ropeType == 1 && !(p.ropeFactor > 0))
    return invalidAttention(absl::StrCat(
        "linear RoPE expects a positive factor but got ", p.ropeFactor));
  if (!(p.ropeTheta > 0))
    return invalidAttention(
        absl::StrCat("expects a positive rope_theta but got ", p.ropeTheta));
  if (p.slidingWindow < 0)
    return invalidAttention(
        absl::StrCat("expects sliding_window >= 0 but got ", p.slidingWindow));
  if (!(p.clipQkv >= 0))
    return invalidAttention(
        absl::StrCat("expects clip_qkv >= 0 but got ", p.clipQkv));
  return absl::OkStatus();
}

absl::Status checkKvGeometry(const cpu::AttentionParams &p,
                             int32_t tokensPerPage, int32_t numKvHeads,
                             int32_t headDim) {
  if (tokensPerPage <= 0 || numKvHeads != p.numKvHeads || headDim != p.headDim)
    return invalidAttention(
        absl::StrCat("KV layer geometry (tokens_per_page ", tokensPerPage,
                     ", num_kv_heads ", numKvHeads, ", head_dim ", headDim,
                     ") does not match the attention (num_kv_heads ",
                     p.numKvHeads, ", head_dim ", p.headDim, ")"));
  return absl::OkStatus();
}

absl::Status checkMoeParams(const cpu::MoeParams &p, bool hasRouter,
                            bool hasExperts, int numShared,
                            bool hasSharedGate) {
  if (p.hidden <= 0 || p.numExperts <= 0 || p.intermediate <= 0)
    return invalidMoe(absl::StrCat(
        "expects positive hidden, num_experts, intermediate but got ", p.hidden,
        ", ", p.numExperts, ", ", p.intermediate));
  if (p.topK < 1 || p.topK > p.numExperts)
    return invalidMoe(
        absl::StrCat("top_k expects [1, ", p.numExperts, "] but got ", p.topK));
  if (!hasRouter || !hasExperts)
    return invalidMoe("missing router or expert table");
  if (numShared != 0 && numShared != 3)
    return invalidMoe(
        absl::StrCat("shared expert has ", numShared, " of its 3 weights"));
  if (numShared == 0 && hasSharedGate)
    return invalidMoe("shared expert gate without a shared expert");
  if (numShared == 3 && p.sharedIntermediate <= 0)
    return invalidMoe(absl::StrCat(
        "expects a positive shared expert intermediate size but got ",
        p.sharedIntermediate));
  return absl::OkStatus();
}

} // namespace crosspool::kernels
