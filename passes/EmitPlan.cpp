//===- EmitPlan.cpp - Exec IR -> FlatBuffers plan file ---------------------===//
//
// The plan is the only contract with the runtime; before it is written it
// goes through the same FlatBuffers verifier and static stream check the
// runtime runs on load, so the compiler never writes a plan the runtime
// would refuse.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Exec/IR/ExecOps.h"
#include "dialects/Model/IR/ModelOps.h"

#include "runtime/format/PlanVersion.h"
#include "runtime/format/Plan_generated.h"
#include "runtime/format/StreamCheck.h"

#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/ToolOutputFile.h"

#include <vector>

namespace mlir::crosspool {
#define GEN_PASS_DEF_EMITPLAN
#include "passes/Passes.h.inc"
} // namespace mlir::crosspool

using namespace mlir;
using namespace mlir::crosspool;
namespace fb = ::flatbuffers;
namespace plan = ::crosspool::plan;

namespace {

plan::Pool toPlan(model::Pool pool) {
  return pool == model::Pool::KV ? plan::Pool::KV : plan::Pool::Weights;
}

/// The op's single instance in `module`, or an error naming what is missing.
template <typename OpT>
FailureOr<OpT> uniqueOp(ModuleOp module, StringRef what) {
  auto ops = module.getOps<OpT>();
  auto count = std::distance(ops.begin(), ops.end());
  if (count != 1)
    return module.emitError() << "expects one " << OpT::getOperationName()
                              << " (" << what << ") but got " << count;
  return *ops.begin();
}

FailureOr<plan::DType> dtypeOf(model::WeightOp weight) {
  Type element = weight.getTensorType().getElementType();
  if (element.isF32())
    return plan::DType::F32;
  if (element.isF16())
    return plan::DType::F16;
  if (element.isBF16())
    return plan::DType::BF16;
  return weight.emitOpError() << "expects an f32, f16 or bf16 tensor but got "
                              << element;
}

std::vector<int32_t> toVector(ArrayRef<int32_t> values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

} // namespace

LogicalResult mlir::crosspool::serializePlan(ModuleOp module, std::string &buffer) {
  FailureOr<model::ConfigOp> config =
      uniqueOp<model::ConfigOp>(module, "model metadata");
  if (failed(config))
    return failure();
  FailureOr<exec::ProgramOp> program =
      uniqueOp<exec::ProgramOp>(module, "run crosspool-lower-control first");
  if (failed(program))
    return failure();

  // Weights the tasks use, numbered in module order.
  llvm::DenseSet<StringAttr> used;
  program->walk([&](exec::TaskOp task) {
    for (Attribute ref : task.getWeightRefs())
      if (auto symbol = dyn_cast<FlatSymbolRefAttr>(ref))
        used.insert(symbol.getAttr());
  });
  fb::FlatBufferBuilder fbb;
  llvm::DenseMap<StringAttr, int32_t> weightIds;
  std::vector<fb::Offset<plan::Weight>> weights;
  for (auto weight : module.getOps<model::WeightOp>()) {
    if (!used.contains(weight.getSymNameAttr()))
      continue;
    std::optional<model::Pool> pool = weight.getPool();
    if (!pool)
      return weight.emitOpError()
             << "expects a pool (run crosspool-partition-pools first)";
    FailureOr<plan::DType> dtype = dtypeOf(weight);
    if (failed(dtype))
      return failure();
    std::vector<int64_t> shape(weight.getTensorType().getShape());
    weightIds[weight.getSymNameAttr()] = weights.size();
    model::SyntheticAttr synthetic = weight.getSyntheticAttr();
    plan::SyntheticInit init =
        synthetic && synthetic.getInit() == model::SyntheticInit::OnePlusNormal
            ? plan::SyntheticInit::OnePlusNormal
            : plan::SyntheticInit::Normal;
    // A synthetic weight has no file: leave the string out.
    weights.push_back(plan::CreateWeightDirect(
        fbb, weight.getTensor().str().c_str(),
        synthetic ? nullptr : weight.getFileAttr().str().c_str(),
        weight.getOffset().value_or(0), weight.getNbytes(), *dtype, &shape, toPlan(*pool),
        /*synthetic=*/static_cast<bool>(synthetic),
        synthetic ? synthetic.getSeed() : 0, init,
        synthetic ? static_cast<float>(synthetic.getStd().getValueAsDouble())
                  : 0.0f));
  }
  for (StringAttr name : used)
    if (!weightIds.count(name))
      return program->emitOpError()
             << "expects @" << name.getValue() << " to name a model.weight";

  std::vector<fb::Offset<plan::Slot>> slots;
  std::vector<fb::Offset<plan::Channel>> channels;
  std::vector<fb::Offset<plan::KvLayer>> kvLayers;
  std::vector<fb::Offset<plan::Stream>> streams;
  for (Operation &op : program->getBody().front()) {
    if (auto slot = dyn_cast<exec::SlotOp>(op)) {
      slots.push_back(plan::CreateSlot(
          fbb, static_cast<plan::SlotKind>(slot.getKind()), slot.getWidth(),
          toPlan(slot.getPool())));
    } else if (auto channel = dyn_cast<exec::ChannelOp>(op)) {
      channels.push_back(plan::CreateChannel(
          fbb, toPlan(channel.getFrom()), toPlan(channel.getTo()),
          channel.getWidth(), channel.getPerStep()));
    } else if (auto layer = dyn_cast<exec::KvLayerOp>(op)) {
      kvLayers.push_back(
          plan::CreateKvLayer(fbb, layer.getNumKvHeads(), layer.getHeadDim()));
    } else if (auto stream = dyn_cast<exec::StreamOp>(op)) {
      std::vector<fb::Offset<plan::Instr>> instrs;
      for (Operation &instr : stream.getBody().front()) {
        if (auto task = dyn_cast<exec::TaskOp>(instr)) {
          std::vector<int32_t> inputs = toVector(task.getInputs());
          std::vector<int32_t> outputs = toVector(task.getOutputs());
          std::vector<int32_t> weightRefs;
          for (Attribute ref : task.getWeightRefs()) {
            auto symbol = dyn_cast<FlatSymbolRefAttr>(ref);
            weightRefs.push_back(symbol ? weightIds[symbol.getAttr()] : -1);
          }
          std::vector<int64_t> iparams(task.getIparams());
          std::vector<double> fparams(task.getFparams());
          instrs.push_back(plan::CreateInstrDirect(
              fbb, plan::Opcode::Task,
              static_cast<plan::Kernel>(task.getKernel()), &inputs, &outputs,
              &weightRefs, &iparams, &fparams));
        } else if (auto send = dyn_cast<exec::SendOp>(instr)) {
          std::vector<int32_t> inputs = {static_cast<int32_t>(send.getSlot())};
          instrs.push_back(plan::CreateInstrDirect(
              fbb, plan::Opcode::Send, plan::Kernel::None, &inputs, nullptr,
              nullptr, nullptr, nullptr, send.getChannel(), send.getSeq()));
        } else if (auto recv = dyn_cast<exec::RecvOp>(instr)) {
          std::vector<int32_t> outputs = {static_cast<int32_t>(recv.getSlot())};
          instrs.push_back(plan::CreateInstrDirect(
              fbb, plan::Opcode::Recv, plan::Kernel::None, nullptr, &outputs,
              nullptr, nullptr, nullptr, recv.getChannel(), recv.getSeq()));
        }
      }
      streams.push_back(
          plan::CreateStreamDirect(fbb, toPlan(stream.getPool()), &instrs));
    }
  }

  std::vector<int64_t> eos(config->getEosTokenIds());
  fb::Offset<plan::Plan> root = plan::CreatePlanDirect(
      fbb, plan::kPlanSchemaVersion, config->getModelName().str().c_str(),
      config->getArchitecture().str().c_str(),
      config->getCheckpointDir().str().c_str(), config->getVocabSize(),
      config->getHiddenSize(), config->getMaxPositionEmbeddings(), &eos,
      &weights, &slots, &channels, &streams, &kvLayers,
      program->getInputSlot(), program->getOutputSlot());
  plan::FinishPlanBuffer(fbb, root);

  fb::Verifier verifier(fbb.GetBufferPointer(), fbb.GetSize());
  if (!plan::VerifyPlanBuffer(verifier))
    return program->emitOpError()
           << "produced a plan buffer that fails the FlatBuffers verifier";
  absl::Status status = ::crosspool::runtime::checkPlanStreams(
      *plan::GetPlan(fbb.GetBufferPointer()));
  if (!status.ok())
    return program->emitOpError()
           << "produced a plan the runtime rejects: "
           << StringRef(status.message().data(), status.message().size());
  buffer.assign(reinterpret_cast<const char *>(fbb.GetBufferPointer()),
                fbb.GetSize());
  return success();
}

namespace {

struct EmitPlanPass
    : mlir::crosspool::impl::EmitPlanBase<EmitPlanPass> {
  using EmitPlanBase::EmitPlanBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (output.empty()) {
      module.emitError() << "expects an output path (output=<path>)";
      return signalPassFailure();
    }
    std::string buffer;
    if (failed(serializePlan(module, buffer)))
      return signalPassFailure();
    std::string error;
    std::unique_ptr<llvm::ToolOutputFile> file = openOutputFile(output, &error);
    if (!file) {
      module.emitError() << "cannot write plan '" << output << "': " << error;
      return signalPassFailure();
    }
    file->os() << buffer;
    file->os().flush();
    if (file->os().has_error()) {
      module.emitError() << "cannot write plan '" << output
                         << "': " << file->os().error().message();
      file->os().clear_error();
      return signalPassFailure();
    }
    file->keep();
    planBytes = buffer.size();
    numWeights = plan::GetPlan(buffer.data())->weights()->size();
    markAllAnalysesPreserved();
  }
};

} // namespace
