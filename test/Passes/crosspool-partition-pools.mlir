// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --crosspool-partition-pools | FileCheck %s

// Attention-side ops and the residual stream go to the KV pool, FFN blocks
// (moe, mlp) to the weights pool; each weight follows its users.

// CHECK-DAG: model.weight @embed {{.*}}pool = #model<pool kv>
// CHECK-DAG: model.weight @norm {{.*}}pool = #model<pool kv>
// CHECK-DAG: model.weight @q {{.*}}pool = #model<pool kv>
// CHECK-DAG: model.weight @o {{.*}}pool = #model<pool kv>
// CHECK-DAG: model.weight @router {{.*}}pool = #model<pool weights>
// CHECK-DAG: model.weight @gate {{.*}}pool = #model<pool weights>
// CHECK-DAG: model.weight @down {{.*}}pool = #model<pool weights>
// CHECK-DAG: model.weight @lm_head {{.*}}pool = #model<pool kv>
// An unused weight stays unplaced.
// CHECK-DAG: model.weight @unused : tensor<8xf32> {file = "model.safetensors", nbytes = 32 : i64, offset = 0 : i64, tensor = "unused"}
// CHECK-LABEL: func.func @forward
// CHECK: model.embed {{.*}}{pool = #model<pool kv>}
// CHECK: model.rms_norm {{.*}}pool = #model<pool kv>
// CHECK: model.attention {{.*}}pool = #model<pool kv>
// CHECK: model.add {{.*}}{pool = #model<pool kv>}
// CHECK: model.rms_norm {{.*}}pool = #model<pool kv>
// CHECK: model.moe {{.*}}pool = #model<pool weights>
// CHECK: model.add {{.*}}{pool = #model<pool kv>}
// CHECK: model.mlp {{.*}}pool = #model<pool weights>
// CHECK: model.lm_head {{.*}}{pool = #model<pool kv>}
// CHECK-NOT: model.transfer
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

// -----

// An existing placement is overwritten by the policy.
// CHECK-LABEL: func.func @replaced
model.weight @n : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @replaced(%x: !model.hidden<8>) -> !model.hidden<8> {
  // CHECK: model.rms_norm %{{.*}}, @n {eps = 1.000000e-05 : f64, pool = #model<pool kv>}
  %y = model.rms_norm %x, @n {eps = 1.0e-05 : f64, pool = #model<pool weights>} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

// A weight read from both pools would have to be held twice.
// expected-error @below {{weight @g is used from both pools: expects it in pool kv but model.mlp in pool weights uses it}}
model.weight @g : tensor<8x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
func.func @shared(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-note @below {{first used here in pool kv}}
  %a = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @g, k_proj = @k, v_proj = @k, o_proj = @g} : !model.hidden<8>
  %y = model.mlp %a {ffn = #model.swiglu<gate = @g, up = @g, down = @g>} : !model.hidden<8>
  return %y : !model.hidden<8>
}
