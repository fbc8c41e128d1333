//===- StreamModel.cpp - Stream semantics shared by compiler and runtime --===//
//
// Messages follow the compiler's style ("expects X but got Y"): the exec
// dialect prints them on the offending op, the runtime after its location.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/StreamModel.h"

#include "runtime/base/Status.h"

#include "absl/strings/str_cat.h"

#include <tuple>

namespace crosspool::runtime {
namespace {

using Op = StreamModel::Op;
using Kind = StreamModel::Kind;

class Checker {
public:
  Checker(const StreamModel &model, const InstrCheck &check)
      : m(model), check(check), numSlots(model.slots.size()),
        numChannels(model.channels.size()), sends(numChannels, 0),
        recvs(numChannels, 0) {}

  absl::Status run() {
    for (auto [id, what, kind] :
         {std::tuple(m.inputSlot, "input", Kind::TokenIds),
          std::tuple(m.outputSlot, "output", Kind::Logits)}) {
      if (id < 0 || id >= numSlots)
        return invalid({}, absl::StrCat("expects the ", what, " slot below ",
                                        numSlots, " but got ", id));
      if (m.slots[id].kind != kind)
        return invalid({}, absl::StrCat("expects the ", what, " slot ", id,
                                        " of kind ", name(m.kindNames, kind),
                                        " but got ",
                                        name(m.kindNames, m.slots[id].kind)));
    }
    for (size_t s = 0; s < m.streams.size(); ++s)
      CP_RETURN_IF_ERROR(checkStream(s));
    for (int64_t c = 0; c < numChannels; ++c) {
      int64_t perStep = m.channels[c].perStep;
      for (auto [count, what] :
           {std::pair(sends[c], " sends"), std::pair(recvs[c], " receives")})
        if (count != perStep)
          return invalid({-1, -1, c},
                         absl::StrCat("expects ", perStep, what,
                                      " per step but got ", count));
    }
    if (!outputWritten)
      return invalid({}, absl::StrCat("expects an instruction writing the "
                                      "output slot ",
                                      m.outputSlot));
    return simulate();
  }

  StreamErrorLocation where;

private:
  absl::Status invalid(StreamErrorLocation at, const std::string &what) {
    where = at;
    return absl::InvalidArgumentError(what);
  }

  template <typename T>
  static std::string name(const std::vector<std::string> &names, T value) {
    size_t i = static_cast<size_t>(value);
    return i < names.size() ? names[i] : absl::StrCat("<", i, ">");
  }
  std::string poolName(int pool) const { return name(m.poolNames, pool); }

  absl::Status checkStream(int64_t s) {
    const StreamModel::Stream &stream = m.streams[s];
    std::vector<bool> written(numSlots, false);
    // The runtime fills the input slot before each step.
    if (m.slots[m.inputSlot].pool == stream.pool)
      written[m.inputSlot] = true;
    for (int64_t i = 0; i < static_cast<int64_t>(stream.instrs.size()); ++i) {
      const StreamModel::Instr &in = stream.instrs[i];
      StreamErrorLocation here{s, i, -1};
      for (const std::vector<int64_t> *ids : {&in.inputs, &in.outputs})
        for (int64_t id : *ids) {
          if (id < 0 || id >= numSlots)
            return invalid(here, absl::StrCat("expects a slot id below ",
                                              numSlots, " but got ", id));
          if (m.slots[id].pool != stream.pool)
            return invalid(here, absl::StrCat("expects slot ", id, " in pool ",
                                              poolName(stream.pool),
                                              " but it is in pool ",
                                              poolName(m.slots[id].pool)));
        }
      if (check)
        if (absl::Status status = check(s, i); !status.ok()) {
          where = here;
          return status;
        }
      if (in.op != Op::Task)
        CP_RETURN_IF_ERROR(checkTransfer(here, stream.pool, in));
      for (int64_t id : in.inputs)
        if (!written[id])
          return invalid(here, absl::StrCat("reads slot ", id,
                                            " before it is written in this "
                                            "step"));
      for (int64_t id : in.outputs) {
        written[id] = true;
        outputWritten = outputWritten || id == m.outputSlot;
      }
    }
    return absl::OkStatus();
  }

  absl::Status checkTransfer(StreamErrorLocation here, int pool,
                             const StreamModel::Instr &in) {
    bool isSend = in.op == Op::Send;
    const char *verb = isSend ? "send" : "receive";
    if (in.inputs.size() != (isSend ? 1u : 0u) ||
        in.outputs.size() != (isSend ? 0u : 1u))
      return invalid(here,
                     absl::StrCat("expects a ", verb, " to move one slot"));
    int64_t c = in.channel;
    if (c < 0 || c >= numChannels)
      return invalid(here, absl::StrCat("expects a channel id below ",
                                        numChannels, " but got ", c));
    const StreamModel::Channel &ch = m.channels[c];
    int end = isSend ? ch.from : ch.to;
    if (end != pool)
      return invalid(here,
                     absl::StrCat("expects channel ", c, " to ", verb,
                                  " from pool ", poolName(pool), " but it ",
                                  verb, "s from pool ", poolName(end)));
    int64_t slot = isSend ? in.inputs[0] : in.outputs[0];
    if (m.slots[slot].width != ch.width)
      return invalid(here,
                     absl::StrCat("expects slot ", slot, " of channel width ",
                                  ch.width, " but got ", m.slots[slot].width));
    int64_t &count = isSend ? sends[c] : recvs[c];
    if (in.seq != count + 1)
      return invalid(here,
                     absl::StrCat("expects seq ", count + 1, " on channel ", c,
                                  " but got ", in.seq));
    if (in.seq > ch.perStep)
      return invalid(here, absl::StrCat("expects at most ", ch.perStep,
                                        " messages per step on channel ", c,
                                        " but got seq ", in.seq));
    ++count;
    return absl::OkStatus();
  }

  /// Runs one step of all streams round-robin; a Recv blocks until its
  /// message was sent. Per-step counts are already checked, so completing one
  /// step means every later step completes too.
  absl::Status simulate() {
    std::vector<size_t> pc(m.streams.size(), 0);
    std::vector<int64_t> sent(numChannels, 0);
    for (bool progress = true; progress;) {
      progress = false;
      for (size_t s = 0; s < m.streams.size(); ++s)
        for (const auto &instrs = m.streams[s].instrs; pc[s] < instrs.size();
             ++pc[s], progress = true) {
          const StreamModel::Instr &in = instrs[pc[s]];
          if (in.op == Op::Recv && sent[in.channel] < in.seq)
            break;
          if (in.op == Op::Send)
            ++sent[in.channel];
        }
    }
    // Only a Recv blocks: the error is on the first, naming the others.
    std::string what;
    for (size_t s = 0; s < m.streams.size(); ++s) {
      if (pc[s] == m.streams[s].instrs.size())
        continue;
      const StreamModel::Instr &in = m.streams[s].instrs[pc[s]];
      if (!what.empty()) {
        absl::StrAppend(&what, "; stream ", s, " (",
                        poolName(m.streams[s].pool), ") instr ", pc[s],
                        " waits for message ", in.seq, " of channel ",
                        in.channel);
        continue;
      }
      where = {static_cast<int64_t>(s), static_cast<int64_t>(pc[s]), -1};
      what = absl::StrCat("deadlocks: message ", in.seq, " of channel ",
                          in.channel, " is never sent while the streams wait");
    }
    return what.empty() ? absl::OkStatus() : absl::InvalidArgumentError(what);
  }

  const StreamModel &m;
  const InstrCheck &check;
  int64_t numSlots, numChannels;
  std::vector<int64_t> sends, recvs;
  bool outputWritten = false;
};

} // namespace

absl::Status checkStreamModel(const StreamModel &model, const InstrCheck &check,
                              StreamErrorLocation *where) {
  Checker checker(model, check);
  absl::Status status = checker.run();
  if (where)
    *where = checker.where;
  return status;
}

} // namespace crosspool::runtime
