//===- StreamModel.h - Stream semantics shared by compiler and runtime -*- C++
//-*-===//
//
// The stream part of docs/plan-format.md ("Static stream check"). The runtime
// (checkPlanStreams, on a FlatBuffers plan) and the exec dialect's verifier
// (on MLIR ops) both translate into this neutral model and run this one
// checker, so they cannot drift apart. Plain C++ and Abseil only.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_STREAMMODEL_H
#define CROSSPOOL_RUNTIME_FORMAT_STREAMMODEL_H

#include "absl/status/status.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace crosspool::runtime {

/// A program reduced to what the stream semantics depend on. Pools are small
/// integers; pools and kinds are named (for messages) by the caller.
struct StreamModel {
  enum class Op { Task, Send, Recv };
  enum class Kind { TokenIds, Hidden, Logits };
  struct Slot {
    int pool;
    Kind kind;
    int64_t width;
  };
  struct Channel {
    int from, to;
    int64_t width, perStep;
  };
  /// A Send reads its slot as inputs[0], a Recv writes it as outputs[0].
  struct Instr {
    Op op = Op::Task;
    std::vector<int64_t> inputs, outputs;
    int64_t channel = -1, seq = 0;
  };
  struct Stream {
    int pool;
    std::vector<Instr> instrs;
  };
  std::vector<std::string> poolNames, kindNames;
  std::vector<Slot> slots;
  std::vector<Channel> channels;
  std::vector<Stream> streams;
  int64_t inputSlot = -1, outputSlot = -1;
};

/// What an error is about: instruction `instr` of stream `stream`, else
/// channel `channel`, else (all -1) the whole program.
struct StreamErrorLocation {
  int64_t stream = -1, instr = -1, channel = -1;
};

/// The caller's checks of one instruction (arity, slot kinds, weights): run
/// once its slot ids are in range and in the stream's pool, before its
/// channel and write-before-read checks.
using InstrCheck = std::function<absl::Status(int64_t stream, int64_t instr)>;

/// Checks the input (TokenIds) and output (Logits) slots; slot ids (in range,
/// in the stream's pool); Send/Recv pairing per channel (from/to pools, width,
/// seq = 1..per_step in order); writes before reads within a step; that the
/// output is written; and that one step of all streams, a Recv blocking until
/// its message was sent, completes. Returns InvalidArgument with a one-line
/// message and sets `*where` to what it is about.
absl::Status checkStreamModel(const StreamModel &model,
                              const InstrCheck &check = nullptr,
                              StreamErrorLocation *where = nullptr);

} // namespace crosspool::runtime

#endif // CROSSPOOL_RUNTIME_FORMAT_STREAMMODEL_H
