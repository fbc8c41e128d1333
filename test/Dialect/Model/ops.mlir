// RUN: crosspool-opt %s | crosspool-opt | FileCheck %s
// RUN: crosspool-opt %s --mlir-print-op-generic | crosspool-opt | FileCheck %s

// A two-layer model exercising every op and optional attribute: biases,
// per-head and full qk-norm, clipping, sliding window, linear RoPE, an MoE
// block with a gated shared expert, a dense MLP and explicit transfers.

// CHECK: model.config {architecture = "TestForCausalLM", checkpoint_dir = "/ckpt", eos_token_ids = array<i64: 2, 5>, hidden_size = 8 : i64, max_position_embeddings = 64 : i64, model_name = "tiny", vocab_size = 16 : i64}
model.config {model_name = "tiny", architecture = "TestForCausalLM",
              checkpoint_dir = "/ckpt", vocab_size = 16, hidden_size = 8,
              max_position_embeddings = 64, eos_token_ids = array<i64: 2, 5>}

// CHECK: model.weight @embed : tensor<16x8xf32> {file = "model.safetensors", nbytes = 512 : i64, offset = 0 : i64, pool = #model<pool kv>, tensor = "model.embed_tokens.weight"}
model.weight @embed : tensor<16x8xf32> {tensor = "model.embed_tokens.weight", file = "model.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// CHECK: model.weight @norm : tensor<8xbf16>
model.weight @norm : tensor<8xbf16> {tensor = "model.norm.weight", file = "model.safetensors", offset = 512, nbytes = 16}
// A synthetic weight has no file and no offset.
// CHECK: model.weight @synth_norm : tensor<8xbf16> {nbytes = 16 : i64, synthetic = #model.synthetic<seed = 7, init = one_plus_normal, std = 2.000000e-02 : f64>, tensor = "model.norm.weight"}
model.weight @synth_norm : tensor<8xbf16> {tensor = "model.norm.weight", nbytes = 16, synthetic = #model.synthetic<seed = 7, init = one_plus_normal, std = 2.000000e-02 : f64>}
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "model.safetensors", offset = 528, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "model.safetensors", offset = 784, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "model.safetensors", offset = 912, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "model.safetensors", offset = 1040, nbytes = 256}
model.weight @q_bias : tensor<8xf32> {tensor = "q_bias", file = "model.safetensors", offset = 1296, nbytes = 32}
model.weight @k_bias : tensor<4xf32> {tensor = "k_bias", file = "model.safetensors", offset = 1328, nbytes = 16}
model.weight @v_bias : tensor<4xf32> {tensor = "v_bias", file = "model.safetensors", offset = 1344, nbytes = 16}
model.weight @o_bias : tensor<8xf32> {tensor = "o_bias", file = "model.safetensors", offset = 1360, nbytes = 32}
model.weight @head_norm : tensor<4xf16> {tensor = "head_norm", file = "model.safetensors", offset = 1392, nbytes = 8}
model.weight @q_full_norm : tensor<8xf32> {tensor = "q_full_norm", file = "model.safetensors", offset = 1400, nbytes = 32}
model.weight @k_full_norm : tensor<4xf32> {tensor = "k_full_norm", file = "model.safetensors", offset = 1432, nbytes = 16}
model.weight @router : tensor<2x8xf32> {tensor = "router", file = "model-00002-of-00002.safetensors", offset = 0, nbytes = 64}
model.weight @gate : tensor<4x8xf32> {tensor = "gate", file = "model-00002-of-00002.safetensors", offset = 64, nbytes = 128}
model.weight @up : tensor<4x8xf32> {tensor = "up", file = "model-00002-of-00002.safetensors", offset = 192, nbytes = 128}
model.weight @down : tensor<8x4xf32> {tensor = "down", file = "model-00002-of-00002.safetensors", offset = 320, nbytes = 128}
model.weight @shared_gate : tensor<1x8xf32> {tensor = "shared_gate", file = "model-00002-of-00002.safetensors", offset = 448, nbytes = 32}
model.weight @lm_head : tensor<16x8xf32> {tensor = "model.embed_tokens.weight", file = "model.safetensors", offset = 0, nbytes = 512}

// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[IDS:.*]]: !model.ids) -> !model.logits<16>
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  // CHECK: %[[H0:.*]] = model.embed %[[IDS]], @embed {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %h0 = model.embed %ids, @embed {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // CHECK: %[[N0:.*]] = model.rms_norm %[[H0]], @norm {eps = 1.000000e-05 : f64} : !model.hidden<8>
  %n0 = model.rms_norm %h0, @norm {eps = 1.0e-05 : f64} : !model.hidden<8>
  // CHECK: %[[A0:.*]] = model.attention %[[N0]] {clip_qkv = 0.000000e+00 : f64, head_dim = 4 : i64, k_bias = @k_bias, k_norm = @head_norm, k_proj = @k, kv_layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, o_bias = @o_bias, o_proj = @o, q_bias = @q_bias, q_norm = @head_norm, q_proj = @q, qk_norm = #model<qk_norm per_head>, qk_norm_eps = {{.*}} : f64, rope_factor = 1.000000e+00 : f64, rope_theta = 1.000000e+06 : f64, rope_type = #model<rope default>, sliding_window = 0 : i64, softmax_scale = 5.000000e-01 : f64, v_bias = @v_bias, v_proj = @v} : !model.hidden<8>
  %a0 = model.attention %n0 {kv_layer = 0, num_heads = 2, num_kv_heads = 1,
      head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+06 : f64,
      rope_type = #model<rope default>, rope_factor = 1.0 : f64,
      qk_norm = #model<qk_norm per_head>, qk_norm_eps = 1.0e-06 : f64,
      clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k,
      v_proj = @v, o_proj = @o, q_bias = @q_bias, k_bias = @k_bias,
      v_bias = @v_bias, o_bias = @o_bias, q_norm = @head_norm,
      k_norm = @head_norm} : !model.hidden<8>
  // CHECK: %[[R0:.*]] = model.add %[[H0]], %[[A0]] : !model.hidden<8>
  %r0 = model.add %h0, %a0 : !model.hidden<8>
  // CHECK: %[[T0:.*]] = model.transfer %[[R0]] from kv to weights : !model.hidden<8>
  %t0 = model.transfer %r0 from kv to weights : !model.hidden<8>
  // CHECK: %[[M0:.*]] = model.moe %[[T0]] {experts = [#model.swiglu<gate = @gate, up = @up, down = @down>, #model.swiglu<gate = @gate, up = @up, down = @down>], norm_topk_prob = true, num_experts = 2 : i64, pool = #model<pool weights>, router = @router, shared_expert = #model.swiglu<gate = @gate, up = @up, down = @down>, shared_expert_gate = @shared_gate, top_k = 1 : i64} : !model.hidden<8>
  %m0 = model.moe %t0 {num_experts = 2, top_k = 1, norm_topk_prob = true,
      router = @router,
      experts = [#model.swiglu<gate = @gate, up = @up, down = @down>,
                 #model.swiglu<gate = @gate, up = @up, down = @down>],
      shared_expert = #model.swiglu<gate = @gate, up = @up, down = @down>,
      shared_expert_gate = @shared_gate, pool = #model<pool weights>}
      : !model.hidden<8>
  // CHECK: %[[B0:.*]] = model.transfer %[[M0]] from weights to kv : !model.hidden<8>
  %b0 = model.transfer %m0 from weights to kv : !model.hidden<8>
  %h1 = model.add %r0, %b0 : !model.hidden<8>
  // CHECK: model.attention
  // CHECK-SAME: clip_qkv = 2.500000e+00 : f64
  // CHECK-SAME: k_norm = @k_full_norm
  // CHECK-SAME: q_norm = @q_full_norm
  // CHECK-SAME: qk_norm = #model<qk_norm full>
  // CHECK-SAME: rope_factor = 2.000000e+00 : f64
  // CHECK-SAME: rope_type = #model<rope linear>
  // CHECK-SAME: sliding_window = 16 : i64
  %a1 = model.attention %h1 {kv_layer = 1, num_heads = 2, num_kv_heads = 1,
      head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64,
      rope_type = #model<rope linear>, rope_factor = 2.0 : f64,
      qk_norm = #model<qk_norm full>, qk_norm_eps = 1.0e-05 : f64,
      clip_qkv = 2.5 : f64, sliding_window = 16, q_proj = @q, k_proj = @k,
      v_proj = @v, o_proj = @o, q_norm = @q_full_norm, k_norm = @k_full_norm}
      : !model.hidden<8>
  // CHECK: %[[F1:.*]] = model.mlp %{{.*}} {ffn = #model.swiglu<gate = @gate, up = @up, down = @down>} : !model.hidden<8>
  %f1 = model.mlp %a1 {ffn = #model.swiglu<gate = @gate, up = @up, down = @down>} : !model.hidden<8>
  // CHECK: %[[L:.*]] = model.lm_head %[[F1]], @lm_head : !model.hidden<8> -> !model.logits<16>
  %l = model.lm_head %f1, @lm_head : !model.hidden<8> -> !model.logits<16>
  // CHECK: return %[[L]] : !model.logits<16>
  return %l : !model.logits<16>
}
