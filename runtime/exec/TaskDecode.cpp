//===- TaskDecode.cpp - A plan's instructions as typed structs ------------===//
#include "runtime/exec/TaskDecode.h"

#include "absl/strings/str_cat.h"

namespace crosspool::runtime {

namespace fb = crosspool::plan;

namespace {

const char *poolName(fb::Pool pool) {
  return pool == fb::Pool::KV ? "KV" : "Weights";
}

} // namespace

absl::StatusOr<std::vector<DecodedStream>>
decodePlanStreams(const fb::Plan &plan, const std::string &name) {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", msg));
  };
  const auto &planWeights = *plan.weights();
  const auto &slots = *plan.slots();
  const int32_t inputSlot = plan.input_slot();
  const int32_t outputSlot = plan.output_slot();
  const size_t numKvLayers = plan.kv_layers() ? plan.kv_layers()->size() : 0;
  auto shape0 = [&](int32_t id) -> int64_t {
    return id < 0 ? 0 : planWeights.Get(id)->shape()->Get(0);
  };

  std::vector<DecodedStream> streams;
  bool poolSeen[2] = {false, false};
  for (size_t s = 0; s < plan.streams()->size(); ++s) {
    const fb::Stream *stream = plan.streams()->Get(s);
    int pool = static_cast<int>(stream->pool());
    if (pool < 0 || pool > 1)
      return fail(absl::StrCat("stream ", s, " has an unknown pool ", pool));
    if (poolSeen[pool])
      return fail(absl::StrCat("stream ", s,
                               ": expects one stream per pool "
                               "but pool ",
                               poolName(stream->pool()), " has two"));
    poolSeen[pool] = true;
    DecodedStream decoded;
    decoded.pool = stream->pool();
    for (size_t i = 0; i < stream->instrs()->size(); ++i) {
      const fb::Instr *src = stream->instrs()->Get(i);
      DecodedInstr in;
      in.op = src->op();
      in.kernel = src->kernel();
      in.where = absl::StrCat("stream ", s, " (", poolName(stream->pool()),
                              ") instr ", i, " (", fb::EnumNameOpcode(in.op));
      if (in.op == fb::Opcode::Task)
        absl::StrAppend(&in.where, " ", fb::EnumNameKernel(in.kernel));
      absl::StrAppend(&in.where, ")");
      in.channel = src->channel();
      in.seq = src->seq();
      if (src->inputs() && src->inputs()->size() > 0)
        in.in0 = src->inputs()->Get(0);
      if (src->inputs() && src->inputs()->size() > 1)
        in.in1 = src->inputs()->Get(1);
      if (src->outputs() && src->outputs()->size() > 0)
        in.out = src->outputs()->Get(0);
      if (in.in0 >= 0)
        in.width = slots.Get(in.in0)->width();
      if (in.out >= 0)
        in.outWidth = slots.Get(in.out)->width();
      if (src->weights())
        in.weightIds.assign(src->weights()->begin(), src->weights()->end());
      auto ip = [&](int k) { return src->iparams()->Get(k); };
      auto fp = [&](int k) { return src->fparams()->Get(k); };

      if (in.op == fb::Opcode::Task) {
        switch (in.kernel) {
        case fb::Kernel::Embed:
          if (in.in0 != inputSlot)
            return fail(absl::StrCat(in.where,
                                     ": Embed must read the input "
                                     "slot ",
                                     inputSlot, " but reads slot ", in.in0));
          break;
        case fb::Kernel::RmsNorm:
          in.eps = static_cast<float>(fp(0));
          break;
        case fb::Kernel::LmHead:
          if (in.out != outputSlot)
            return fail(absl::StrCat(in.where,
                                     ": LmHead must write the "
                                     "output slot ",
                                     outputSlot, " but writes slot ", in.out));
          break;
        case fb::Kernel::Mlp:
          in.intermediate = shape0(in.weightIds[0]);
          break;
        case fb::Kernel::Attention: {
          if (in.outWidth != in.width)
            return fail(absl::StrCat(in.where, ": expects output width ",
                                     in.width, " but got ", in.outWidth));
          in.kvLayer = static_cast<int32_t>(ip(0));
          if (in.kvLayer < 0 || size_t(in.kvLayer) >= numKvLayers)
            return fail(absl::StrCat(in.where, ": KV layer ", in.kvLayer,
                                     " is out of range [0, ", numKvLayers,
                                     ")"));
          kernels::cpu::AttentionParams &ap = in.attnParams;
          ap.hidden = in.width;
          ap.numHeads = static_cast<int32_t>(ip(1));
          ap.numKvHeads = static_cast<int32_t>(ip(2));
          ap.headDim = static_cast<int32_t>(ip(3));
          ap.qkNorm = static_cast<int32_t>(ip(4));
          ap.slidingWindow = static_cast<int32_t>(ip(5));
          ap.ropeType = static_cast<int32_t>(ip(6));
          ap.ropeTheta = static_cast<float>(fp(0));
          ap.qkNormEps = static_cast<float>(fp(1));
          ap.clipQkv = static_cast<float>(fp(2));
          ap.ropeFactor = static_cast<float>(fp(3));
          ap.softmaxScale = static_cast<float>(fp(4));
          break;
        }
        case fb::Kernel::Moe: {
          kernels::cpu::MoeParams &mp = in.moeParams;
          mp.hidden = in.width;
          mp.numExperts = static_cast<int32_t>(ip(0));
          mp.topK = static_cast<int32_t>(ip(1));
          mp.normTopkProb = ip(2) != 0;
          mp.intermediate = shape0(in.weightIds[5]);
          mp.sharedIntermediate = shape0(in.weightIds[1]);
          for (int32_t e = 0; e < mp.numExperts; ++e) {
            int64_t inter = shape0(in.weightIds[5 + 3 * e]);
            if (inter != mp.intermediate)
              return fail(absl::StrCat(
                  in.where,
                  ": expects every expert to have intermediate "
                  "size ",
                  mp.intermediate, " but expert ", e, " has ", inter));
          }
          break;
        }
        default:
          break;
        }
      }
      decoded.instrs.push_back(std::move(in));
    }
    streams.push_back(std::move(decoded));
  }
  return streams;
}

absl::Status checkStepRows(size_t numTokens, size_t numRowSeqs,
                           size_t numRowPos, const std::string &name) {
  auto fail = [&](const std::string &msg) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": step: ", msg));
  };
  if (numTokens == 0)
    return fail("expects at least one token row but got 0");
  if (numRowSeqs != numTokens || numRowPos != numTokens)
    return fail(absl::StrCat("expects ", numTokens,
                             " row sequences and positions but got ",
                             numRowSeqs, " and ", numRowPos));
  return absl::OkStatus();
}

std::vector<size_t> addRmsNormPairs(const std::vector<DecodedInstr> &instrs) {
  std::vector<size_t> pairs;
  for (size_t i = 0; i + 1 < instrs.size(); ++i) {
    const DecodedInstr &add = instrs[i], &norm = instrs[i + 1];
    if (add.op != fb::Opcode::Task || add.kernel != fb::Kernel::Add ||
        norm.op != fb::Opcode::Task || norm.kernel != fb::Kernel::RmsNorm)
      continue;
    const int32_t a = add.in0, b = add.in1, c = add.out, y = norm.out;
    if (norm.in0 == c && y != a && y != b && y != c && norm.width == add.width)
      pairs.push_back(i);
  }
  return pairs;
}

} // namespace crosspool::runtime
