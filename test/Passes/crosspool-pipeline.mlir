// RUN: crosspool-opt %s --crosspool-pipeline | FileCheck %s
// RUN: crosspool-opt %s --crosspool-pipeline --mlir-print-ir-after-all -o /dev/null 2>&1 | FileCheck --check-prefix=DUMP %s

// The named pipeline runs partition, transfers and lower-control in order;
// --mlir-print-ir-after-all shows each stage.

// DUMP: IR Dump After PartitionPools (crosspool-partition-pools)
// DUMP-NOT: model.transfer
// DUMP: IR Dump After InsertTransfers (crosspool-insert-transfers)
// DUMP-COUNT-4: model.transfer
// DUMP: IR Dump After LowerControl (crosspool-lower-control)
// DUMP: exec.program

// CHECK-NOT: func.func
// CHECK: exec.program input 0 output 19
// CHECK: exec.channel 0 : kv -> weights, width 8, per_step 2
// CHECK: exec.channel 1 : weights -> kv, width 8, per_step 2
// CHECK: exec.stream kv
// CHECK: exec.stream weights
// CHECK-NEXT: exec.recv slot 6 channel 0 seq 1
// CHECK-NEXT: exec.task moe
model.config {model_name = "tiny", architecture = "MixtralForCausalLM", checkpoint_dir = "/ckpt/tiny", vocab_size = 16, hidden_size = 8, max_position_embeddings = 64, eos_token_ids = array<i64: 2>}
model.weight @embed : tensor<16x8xf32> {tensor = "model.embed_tokens.weight", file = "model.safetensors", offset = 0, nbytes = 512}
model.weight @norm : tensor<8xf32> {tensor = "norm", file = "model.safetensors", offset = 512, nbytes = 32}
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "model.safetensors", offset = 544, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "model.safetensors", offset = 800, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "model.safetensors", offset = 928, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "model.safetensors", offset = 1056, nbytes = 256}
model.weight @router : tensor<2x8xf32> {tensor = "router", file = "model.safetensors", offset = 1312, nbytes = 64}
model.weight @gate : tensor<4x8xf32> {tensor = "gate", file = "model.safetensors", offset = 1376, nbytes = 128}
model.weight @up : tensor<4x8xf32> {tensor = "up", file = "model.safetensors", offset = 1504, nbytes = 128}
model.weight @down : tensor<8x4xbf16> {tensor = "down", file = "model.safetensors", offset = 1632, nbytes = 64}
model.weight @lm_head : tensor<16x8xf32> {tensor = "model.embed_tokens.weight", file = "model.safetensors", offset = 0, nbytes = 512}
model.weight @unused : tensor<8xf32> {tensor = "unused", file = "model.safetensors", offset = 0, nbytes = 32}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h0 = model.embed %ids, @embed : !model.ids -> !model.hidden<8>
  %n0 = model.rms_norm %h0, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  %a0 = model.attention %n0 {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  %r0 = model.add %h0, %a0 : !model.hidden<8>
  %p0 = model.rms_norm %r0, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  %m0 = model.moe %p0 {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @router, experts = [#model.swiglu<gate = @gate, up = @up, down = @down>, #model.swiglu<gate = @gate, up = @up, down = @down>]} : !model.hidden<8>
  %h1 = model.add %r0, %m0 : !model.hidden<8>
  %n1 = model.rms_norm %h1, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  %a1 = model.attention %n1 {kv_layer = 1, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope linear>, rope_factor = 2.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  %r1 = model.add %h1, %a1 : !model.hidden<8>
  %p1 = model.rms_norm %r1, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  %f1 = model.mlp %p1 {ffn = #model.swiglu<gate = @gate, up = @up, down = @down>} : !model.hidden<8>
  %h2 = model.add %r1, %f1 : !model.hidden<8>
  %n2 = model.rms_norm %h2, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  %l = model.lm_head %n2, @lm_head : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}
