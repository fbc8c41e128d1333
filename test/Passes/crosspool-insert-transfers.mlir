// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --crosspool-insert-transfers | FileCheck %s
// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --crosspool-insert-transfers --crosspool-insert-transfers | FileCheck %s

// Two transfers per FFN layer (into the weights pool and back), each right
// after its producer; the second RUN line checks the pass is idempotent.

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
// CHECK-LABEL: func.func @forward
func.func @forward(%ids: !model.ids) -> !model.logits<16> {
  %h0 = model.embed %ids, @embed {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  %n0 = model.rms_norm %h0, @norm {eps = 1.0e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %a0 = model.attention %n0 {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, pool = #model<pool kv>, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  %r0 = model.add %h0, %a0 {pool = #model<pool kv>} : !model.hidden<8>
  %p0 = model.rms_norm %r0, @norm {eps = 1.0e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %m0 = model.moe %p0 {num_experts = 2, top_k = 1, norm_topk_prob = false, pool = #model<pool weights>, router = @router, experts = [#model.swiglu<gate = @gate, up = @up, down = @down>, #model.swiglu<gate = @gate, up = @up, down = @down>]} : !model.hidden<8>
  %h1 = model.add %r0, %m0 {pool = #model<pool kv>} : !model.hidden<8>
  %n1 = model.rms_norm %h1, @norm {eps = 1.0e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %a1 = model.attention %n1 {kv_layer = 1, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope linear>, rope_factor = 2.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, pool = #model<pool kv>, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  %r1 = model.add %h1, %a1 {pool = #model<pool kv>} : !model.hidden<8>
  %p1 = model.rms_norm %r1, @norm {eps = 1.0e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %f1 = model.mlp %p1 {ffn = #model.swiglu<gate = @gate, up = @up, down = @down>, pool = #model<pool weights>} : !model.hidden<8>
  %h2 = model.add %r1, %f1 {pool = #model<pool kv>} : !model.hidden<8>
  %n2 = model.rms_norm %h2, @norm {eps = 1.0e-05 : f64, pool = #model<pool kv>} : !model.hidden<8>
  %l = model.lm_head %n2, @lm_head {pool = #model<pool kv>} : !model.hidden<8> -> !model.logits<16>
  return %l : !model.logits<16>
}
// CHECK: model.attention
// CHECK-NEXT: model.add
// CHECK-NEXT: %[[P0:.*]] = model.rms_norm %{{.*}}, @norm
// CHECK-NEXT: %[[T0:.*]] = model.transfer %[[P0]] from kv to weights : !model.hidden<8>
// CHECK-NEXT: %[[M0:.*]] = model.moe %[[T0]]
// CHECK-NEXT: %[[B0:.*]] = model.transfer %[[M0]] from weights to kv : !model.hidden<8>
// CHECK-NEXT: model.add %{{.*}}, %[[B0]]
// CHECK: model.attention
// CHECK-NEXT: model.add
// CHECK-NEXT: %[[P1:.*]] = model.rms_norm %{{.*}}, @norm
// CHECK-NEXT: %[[T1:.*]] = model.transfer %[[P1]] from kv to weights
// CHECK-NEXT: %[[F1:.*]] = model.mlp %[[T1]]
// CHECK-NEXT: %[[B1:.*]] = model.transfer %[[F1]] from weights to kv
// CHECK-NEXT: model.add %{{.*}}, %[[B1]]
// CHECK-NOT: model.transfer
// CHECK: return

// -----

// One transfer serves every use of a value in the destination pool.
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
// CHECK-LABEL: func.func @reuse
// CHECK-SAME: (%[[X:.*]]: !model.hidden<8>)
func.func @reuse(%x: !model.hidden<8>) -> !model.hidden<8> {
  // CHECK-NEXT: %[[T:.*]] = model.transfer %[[X]] from kv to weights
  // CHECK-NEXT: %[[A:.*]] = model.add %[[X]], %[[X]]
  %a = model.add %x, %x {pool = #model<pool kv>} : !model.hidden<8>
  // CHECK-NEXT: %[[F:.*]] = model.mlp %[[T]]
  %f = model.mlp %x {ffn = #model.swiglu<gate = @g, up = @g, down = @d>, pool = #model<pool weights>} : !model.hidden<8>
  // CHECK-NEXT: %[[TF:.*]] = model.transfer %[[F]] from weights to kv
  // CHECK-NEXT: %[[G:.*]] = model.mlp %[[T]]
  %g = model.mlp %x {ffn = #model.swiglu<gate = @g, up = @g, down = @d>, pool = #model<pool weights>} : !model.hidden<8>
  // CHECK-NEXT: %[[TG:.*]] = model.transfer %[[G]] from weights to kv
  // CHECK-NEXT: %[[S:.*]] = model.add %[[TF]], %[[TG]]
  %s = model.add %f, %g {pool = #model<pool kv>} : !model.hidden<8>
  // CHECK-NEXT: model.add %[[S]], %[[TF]]
  %r = model.add %s, %f {pool = #model<pool kv>} : !model.hidden<8>
  return %r : !model.hidden<8>
}

// -----

// A value moved to the weights pool and used back in the KV pool is read
// from its original, not moved twice.
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
// CHECK-LABEL: func.func @back
// CHECK-SAME: (%[[X:.*]]: !model.hidden<8>)
func.func @back(%x: !model.hidden<8>) -> !model.hidden<8> {
  %a = model.add %x, %x {pool = #model<pool kv>} : !model.hidden<8>
  // CHECK: %[[T:.*]] = model.transfer %[[A:.*]] from kv to weights
  %t = model.transfer %a from kv to weights : !model.hidden<8>
  // CHECK: model.add %[[A]], %[[A]]
  %b = model.add %t, %t {pool = #model<pool kv>} : !model.hidden<8>
  return %b : !model.hidden<8>
}

// -----

model.weight @n : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @unplaced(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.rms_norm' op expects a pool placement (run crosspool-partition-pools first)}}
  %y = model.rms_norm %x, @n {eps = 1.0e-05 : f64} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

// Token ids are written into one pool only; they cannot be moved.
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512}
func.func @ids(%ids: !model.ids) -> !model.hidden<8> {
  %a = model.embed %ids, @e {pool = #model<pool kv>} : !model.ids -> !model.hidden<8>
  // expected-error @below {{'model.embed' op expects only !model.hidden values to cross pools but operand 0 of type '!model.ids' comes from pool kv}}
  %b = model.embed %ids, @e {pool = #model<pool weights>} : !model.ids -> !model.hidden<8>
  return %b : !model.hidden<8>
}
