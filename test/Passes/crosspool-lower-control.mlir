// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --allow-unregistered-dialect --crosspool-lower-control | FileCheck %s

// The placed, transferred forward function becomes one exec.program: a slot
// per value in program order, one channel per direction numbering its
// messages per step, one stream per pool, and kernel parameters exactly as
// docs/plan-format.md.

model.config {architecture = "MixtralForCausalLM", checkpoint_dir = "/ckpt/tiny", eos_token_ids = array<i64: 2>, hidden_size = 8 : i64, max_position_embeddings = 64 : i64, model_name = "tiny", vocab_size = 16 : i64}
model.weight @embed : tensor<16x8xf32> {file = "model.safetensors", nbytes = 512 : i64, offset = 0 : i64, pool = #model<pool kv>, tensor = "model.embed_tokens.weight"}
model.weight @norm : tensor<8xf32> {file = "model.safetensors", nbytes = 32 : i64, offset = 512 : i64, pool = #model<pool kv>, tensor = "norm"}
model.weight @q : tensor<8x8xf32> {file = "model.safetensors", nbytes = 256 : i64, offset = 544 : i64, pool = #model<pool kv>, tensor = "q"}
model.weight @k : tensor<4x8xf32> {file = "model.safetensors", nbytes = 128 : i64, offset = 800 : i64, pool = #model<pool kv>, tensor = "k"}
model.weight @v : tensor<4x8xf32> {file = "model.safetensors", nbytes = 128 : i64, offset = 928 : i64, pool = #model<pool kv>, tensor = "v"}
model.weight @o : tensor<8x8xf32> {file = "model.safetensors", nbytes = 256 : i64, offset = 1056 : i64, pool = #model<pool kv>, tensor = "o"}
model.weight @router : tensor<2x8xf32> {file = "model.safetensors", nbytes = 64 : i64, offset = 1312 : i64, pool = #model<pool weights>, tensor = "router"}
model.weight @gate : tensor<4x8xf32> {file = "model.safetensors", nbytes = 128 : i64, offset = 1376 : i64, pool = #model<pool weights>, tensor = "gate"}
model.weight @up : tensor<4x8xf32> {file = "model.safetensors", nbytes = 128 : i64, offset = 1504 : i64, pool = #model<pool weights>, tensor = "up"}
model.weight @down : tensor<8x4xbf16> {file = "model.safetensors", nbytes = 64 : i64, offset = 1632 : i64, pool = #model<pool weights>, tensor = "down"}
model.weight @lm_head : tensor<16x8xf32> {file = "model.safetensors", nbytes = 512 : i64, offset = 0 : i64, pool = #model<pool kv>, tensor = "model.embed_tokens.weight"}
model.weight @unused : tensor<8xf32> {file = "model.safetensors", nbytes = 32 : i64, offset = 0 : i64, tensor = "unused"}
func.func @forward(%arg0: !model.ids) -> !model.logits<16> {
  %0 = model.embed %arg0, @embed {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %1 = model.rms_norm %0, @norm {eps = 1.000000e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %2 = model.attention %1 {clip_qkv = 0.000000e+00 : f64, head_dim = 4 : i64, k_proj = @k, kv_layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, o_proj = @o, pool = #model<pool kv>, q_proj = @q, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.000000e-05 : f64, rope_factor = 1.000000e+00 : f64, rope_theta = 1.000000e+04 : f64, rope_type = #model<rope default>, sliding_window = 0 : i64, softmax_scale = 5.000000e-01 : f64, v_proj = @v} : !model.hidden<8>
  %3 = model.add %0, %2 {pool = #model<pool kv>} : !model.hidden<8>
  %4 = model.rms_norm %3, @norm {eps = 1.000000e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %5 = model.transfer %4 from kv to weights : !model.hidden<8>
  %6 = model.moe %5 {experts = [#model.swiglu<gate = @gate, up = @up, down = @down>, #model.swiglu<gate = @gate, up = @up, down = @down>], norm_topk_prob = false, num_experts = 2 : i64, pool = #model<pool weights>, router = @router, top_k = 1 : i64} : !model.hidden<8>
  %7 = model.transfer %6 from weights to kv : !model.hidden<8>
  %8 = model.add %3, %7 {pool = #model<pool kv>} : !model.hidden<8>
  %9 = model.rms_norm %8, @norm {eps = 1.000000e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %10 = model.attention %9 {clip_qkv = 0.000000e+00 : f64, head_dim = 4 : i64, k_proj = @k, kv_layer = 1 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, o_proj = @o, pool = #model<pool kv>, q_proj = @q, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.000000e-05 : f64, rope_factor = 2.000000e+00 : f64, rope_theta = 1.000000e+04 : f64, rope_type = #model<rope linear>, sliding_window = 0 : i64, softmax_scale = 5.000000e-01 : f64, v_proj = @v} : !model.hidden<8>
  %11 = model.add %8, %10 {pool = #model<pool kv>} : !model.hidden<8>
  %12 = model.rms_norm %11, @norm {eps = 1.000000e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %13 = model.transfer %12 from kv to weights : !model.hidden<8>
  %14 = model.mlp %13 {ffn = #model.swiglu<gate = @gate, up = @up, down = @down>, pool = #model<pool weights>} : !model.hidden<8>
  %15 = model.transfer %14 from weights to kv : !model.hidden<8>
  %16 = model.add %11, %15 {pool = #model<pool kv>} : !model.hidden<8>
  %17 = model.rms_norm %16, @norm {eps = 1.000000e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %18 = model.lm_head %17, @lm_head {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %18 : !model.logits<16>
}
// Weights and metadata stay; the function is replaced.
// CHECK: model.config
// CHECK: model.weight @embed
// CHECK-NOT: func.func
// CHECK-LABEL: exec.program input 0 output 19 {
// CHECK-NEXT: exec.slot 0 : token_ids, width 1, pool kv
// CHECK-NEXT: exec.slot 1 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 2 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 3 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 4 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 5 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 6 : hidden, width 8, pool weights
// CHECK-NEXT: exec.slot 7 : hidden, width 8, pool weights
// CHECK-NEXT: exec.slot 8 : hidden, width 8, pool kv
// CHECK: exec.slot 14 : hidden, width 8, pool weights
// CHECK-NEXT: exec.slot 15 : hidden, width 8, pool weights
// CHECK: exec.slot 18 : hidden, width 8, pool kv
// CHECK-NEXT: exec.slot 19 : logits, width 16, pool kv
// CHECK-NEXT: exec.channel 0 : kv -> weights, width 8, per_step 2
// CHECK-NEXT: exec.channel 1 : weights -> kv, width 8, per_step 2
// CHECK-NEXT: exec.kv_layer 0 : kv_heads 1, head_dim 4
// CHECK-NEXT: exec.kv_layer 1 : kv_heads 1, head_dim 4
// CHECK-NEXT: exec.stream kv {
// CHECK-NEXT: exec.task embed [0] -> [1] weights(@embed)
// CHECK-NEXT: exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.000000e-05]
// CHECK-NEXT: exec.task attention [2] -> [3] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 0] fparams [1.000000e+04, 1.000000e-05, 0.000000e+00, 1.000000e+00, 5.000000e-01]
// CHECK-NEXT: exec.task add [1, 3] -> [4]
// CHECK-NEXT: exec.task rms_norm [4] -> [5] weights(@norm) fparams [1.000000e-05]
// CHECK-NEXT: exec.send slot 5 channel 0 seq 1
// CHECK-NEXT: exec.recv slot 8 channel 1 seq 1
// CHECK-NEXT: exec.task add [4, 8] -> [9]
// CHECK-NEXT: exec.task rms_norm [9] -> [10] weights(@norm) fparams [1.000000e-05]
// Layer 1 uses linear RoPE with factor 2: rope_type 1, rope_factor 2.
// CHECK-NEXT: exec.task attention [10] -> [11] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [1, 2, 1, 4, 0, 0, 1] fparams [1.000000e+04, 1.000000e-05, 0.000000e+00, 2.000000e+00, 5.000000e-01]
// CHECK-NEXT: exec.task add [9, 11] -> [12]
// CHECK-NEXT: exec.task rms_norm [12] -> [13] weights(@norm) fparams [1.000000e-05]
// CHECK-NEXT: exec.send slot 13 channel 0 seq 2
// CHECK-NEXT: exec.recv slot 16 channel 1 seq 2
// CHECK-NEXT: exec.task add [12, 16] -> [17]
// CHECK-NEXT: exec.task rms_norm [17] -> [18] weights(@norm) fparams [1.000000e-05]
// CHECK-NEXT: exec.task lm_head [18] -> [19] weights(@lm_head)
// CHECK-NEXT: }
// CHECK-NEXT: exec.stream weights {
// CHECK-NEXT: exec.recv slot 6 channel 0 seq 1
// CHECK-NEXT: exec.task moe [6] -> [7] weights(@router, none, none, none, none, @gate, @up, @down, @gate, @up, @down) iparams [2, 1, 0]
// CHECK-NEXT: exec.send slot 7 channel 1 seq 1
// CHECK-NEXT: exec.recv slot 14 channel 0 seq 2
// CHECK-NEXT: exec.task mlp [14] -> [15] weights(@gate, @up, @down)
// CHECK-NEXT: exec.send slot 15 channel 1 seq 2
// CHECK-NEXT: }

// -----

// Biases, qk-norm, clipping, sliding window and a gated shared expert land
// in their documented positions.
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @qb : tensor<8xf32> {tensor = "qb", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @kb : tensor<4xf32> {tensor = "kb", file = "m.safetensors", offset = 0, nbytes = 16, pool = #model<pool kv>}
model.weight @hn : tensor<4xf32> {tensor = "hn", file = "m.safetensors", offset = 0, nbytes = 16, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @r : tensor<3x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 96, pool = #model<pool weights>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool weights>}
// CHECK-LABEL: exec.program input 0 output 6
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // CHECK: exec.task attention [1] -> [2] weights(@q, @k, @k, @q, @qb, @kb, @kb, none, @hn, @hn) iparams [0, 2, 1, 4, 1, 32, 0] fparams [5.000000e+05, 1.000000e-06, 8.000000e+00, 1.000000e+00, 2.500000e-01]
  %a = model.attention %h {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.25 : f64, rope_theta = 5.0e+05 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm per_head>, qk_norm_eps = 1.0e-06 : f64, clip_qkv = 8.0 : f64, sliding_window = 32, q_proj = @q, k_proj = @k, v_proj = @k, o_proj = @q, q_bias = @qb, k_bias = @kb, v_bias = @kb, q_norm = @hn, k_norm = @hn, pool = #model<pool kv>} : !model.hidden<8>
  %t = model.transfer %a from kv to weights : !model.hidden<8>
  // CHECK: exec.task moe [3] -> [4] weights(@r, @g, @g, @d, @sg, @g, @g, @d, @g, @g, @d, @g, @g, @d) iparams [3, 2, 1]
  %m = model.moe %t {num_experts = 3, top_k = 2, norm_topk_prob = true, router = @r, experts = [#model.swiglu<gate = @g, up = @g, down = @d>, #model.swiglu<gate = @g, up = @g, down = @d>, #model.swiglu<gate = @g, up = @g, down = @d>], shared_expert = #model.swiglu<gate = @g, up = @g, down = @d>, shared_expert_gate = @sg, pool = #model<pool weights>} : !model.hidden<8>
  %b = model.transfer %m from weights to kv : !model.hidden<8>
  %l = model.lm_head %b, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

// expected-error @below {{expects a func.func @forward to lower}}
module {
  func.func @other() {
    return
  }
}

// -----

// expected-error @below {{'func.func' op expects the signature (!model.ids) -> !model.logits<V> but got '(!model.hidden<8>) -> !model.hidden<8>'}}
func.func @forward(%x: !model.hidden<8>) -> !model.hidden<8> {
  return %x : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // expected-error @below {{'model.attention' op expects a pool placement (run crosspool-partition-pools first)}}
  %a = model.attention %h {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  %l = model.lm_head %a, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

// Without transfers the weights pool would read a KV-pool slot.
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // expected-error @below {{'model.mlp' op expects operands in pool weights but one is in pool kv (run crosspool-insert-transfers first)}}
  %f = model.mlp %h {ffn = #model.swiglu<gate = @g, up = @g, down = @d>, pool = #model<pool weights>} : !model.hidden<8>
  %l = model.lm_head %f, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // expected-error @below {{'model.transfer' op expects operands in pool weights but one is in pool kv (run crosspool-insert-transfers first)}}
  %t = model.transfer %h from weights to kv : !model.hidden<8>
  %l = model.lm_head %t, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %a = model.attention %h {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, pool = #model<pool kv>} : !model.hidden<8>
  // expected-error @below {{'model.attention' op expects each kv_layer used once but 0 is used again}}
  %b = model.attention %a {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, pool = #model<pool kv>} : !model.hidden<8>
  %l = model.lm_head %b, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
// expected-error @below {{'func.func' op expects kv_layer indices 0..0 but 0 is missing}}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %a = model.attention %h {kv_layer = 1, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, pool = #model<pool kv>} : !model.hidden<8>
  %l = model.lm_head %a, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // expected-error @below {{'test.op' op cannot be lowered to exec streams}}
  %x = "test.op"(%h) : (!model.hidden<8>) -> !model.hidden<8>
  %l = model.lm_head %x, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}

// -----

// expected-error @below {{expects no exec.program before lowering}}
module {
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %l = model.lm_head %h, @e {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}
  exec.program input 0 output 2 {
    exec.slot 0 : token_ids, width 1, pool kv
    exec.slot 1 : hidden, width 8, pool kv
    exec.slot 2 : logits, width 16, pool kv
    exec.stream kv {
      exec.task embed [0] -> [1] weights(@e)
      exec.task lm_head [1] -> [2] weights(@e)
    }
  }
}
