// RUN: crosspool-opt %s -split-input-file -verify-diagnostics

// Every diagnostic of the model dialect: types, weights, each op's local
// verifier and its weight-shape checks.

// expected-error @below {{expects a positive hidden width but got 0}}
func.func @f(%x: !model.hidden<0>)

// -----

// expected-error @below {{expects a positive vocabulary size but got -3}}
func.func @f(%x: !model.logits<-3>)

// -----

// expected-error @below {{'model.weight' op expects nbytes 256 for 'tensor<8x8xf32>' but got 128}}
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 128}

// -----

// expected-error @below {{'model.weight' op expects a synthetic weight to have no file and no offset}}
model.weight @q : tensor<8xbf16> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 16, synthetic = #model.synthetic<seed = 1, init = normal, std = 2.000000e-02 : f64>}

// -----

// expected-error @below {{expects a finite positive std but got 0}}
model.weight @q : tensor<8xbf16> {tensor = "q", nbytes = 16, synthetic = #model.synthetic<seed = 1, init = normal, std = 0.000000e+00 : f64>}

// -----

// expected-error @below {{'model.weight' op expects a synthetic weight of f32 or bf16 but got 'tensor<8xf16>'}}
model.weight @q : tensor<8xf16> {tensor = "q", nbytes = 16, synthetic = #model.synthetic<seed = 1, init = normal, std = 1.000000e+00 : f64>}

// -----

// expected-error @below {{'model.weight' op expects a file and an offset (or a synthetic attribute)}}
model.weight @q : tensor<8xf32> {tensor = "q", nbytes = 32}

// -----

// expected-error @below {{attribute 'type' failed to satisfy constraint}}
model.weight @q : tensor<8xi32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 32}

// -----

// expected-error @below {{attribute 'type' failed to satisfy constraint}}
model.weight @q : tensor<?xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 32}

// -----

// expected-error @below {{attribute 'offset' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
model.weight @q : tensor<8xf32> {tensor = "q", file = "m.safetensors", offset = -1, nbytes = 32}

// -----

// expected-error @below {{attribute 'vocab_size' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
model.config {model_name = "m", architecture = "A", checkpoint_dir = "/c", vocab_size = 0, hidden_size = 8, max_position_embeddings = 8, eos_token_ids = array<i64>}

// -----

model.weight @n : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.rms_norm' op expects a non-negative eps but got -1.000000e+00}}
  %y = model.rms_norm %x, @n {eps = -1.0 : f64} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @n : tensor<4xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 16}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.rms_norm' op expects weight @n of shape [8] but got [4]}}
  %y = model.rms_norm %x, @n {eps = 1.0e-5 : f64} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.rms_norm' op expects weight to name a model.weight but @missing does not exist}}
  %y = model.rms_norm %x, @missing {eps = 1.0e-5 : f64} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

func.func private @n()
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.rms_norm' op expects weight to name a model.weight but @n is a func.func}}
  %y = model.rms_norm %x, @n {eps = 1.0e-5 : f64} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.add' op requires the same type for all operands and results}}
  %y = "model.add"(%x, %x) : (!model.hidden<8>, !model.hidden<8>) -> !model.hidden<4>
  return %x : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects num_heads (3) to be a multiple of num_kv_heads (2)}}
  %y = model.attention %x {kv_layer = 0, num_heads = 3, num_kv_heads = 2, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects an even head_dim but got 3}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 3, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{attribute 'num_kv_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 0, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects a positive softmax_scale but got 0.000000e+00}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.0 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects a positive rope_theta but got -1.000000e+00}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = -1.0 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects a positive rope_factor but got 0.000000e+00}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 0.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects a non-negative clip_qkv but got -2.000000e+00}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = -2.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects a non-negative qk_norm_eps but got -1.000000e+00}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = -1.0 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{attribute 'sliding_window' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = -1, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{attribute 'kv_layer' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %y = model.attention %x {kv_layer = -1, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects no q_norm/k_norm weights with qk_norm none}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, q_norm = @q, k_norm = @k} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects q_norm and k_norm weights with qk_norm per_head}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm per_head>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, q_norm = @q} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op requires attribute 'rope_theta'}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<8x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects k_proj @k of shape [4, 8] but got [8, 8]}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x4xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 128}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects o_proj @o of shape [8, 8] but got [8, 4]}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @qb : tensor<4xf32> {tensor = "qb", file = "m.safetensors", offset = 0, nbytes = 16}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects q_bias @qb of shape [8] but got [4]}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, q_bias = @qb} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @qn : tensor<8xf32> {tensor = "qn", file = "m.safetensors", offset = 0, nbytes = 32}
model.weight @kn : tensor<4xf32> {tensor = "kn", file = "m.safetensors", offset = 0, nbytes = 16}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects q_norm @qn of shape [4] but got [8]}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm per_head>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, q_norm = @qn, k_norm = @kn} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256}
model.weight @qn : tensor<8xf32> {tensor = "qn", file = "m.safetensors", offset = 0, nbytes = 32}
model.weight @kn : tensor<8xf32> {tensor = "kn", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.attention' op expects k_norm @kn of shape [4] but got [8]}}
  %y = model.attention %x {kv_layer = 0, num_heads = 2, num_kv_heads = 1, head_dim = 4, softmax_scale = 0.5 : f64, rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>, rope_factor = 1.0 : f64, qk_norm = #model<qk_norm full>, qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64, sliding_window = 0, q_proj = @q, k_proj = @k, v_proj = @v, o_proj = @o, q_norm = @qn, k_norm = @kn} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects top_k <= num_experts (2) but got 3}}
  %y = model.moe %x {num_experts = 2, top_k = 3, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>]} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects 2 experts but got 1}}
  %y = model.moe %x {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>]} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects a shared_expert with a shared_expert_gate}}
  %y = model.moe %x {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>], shared_expert_gate = @sg} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<3x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 96}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects router @r of shape [2, 8] but got [3, 8]}}
  %y = model.moe %x {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>]} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x5xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 160}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects expert 0 down @d of shape [8, 4] but got [8, 5]}}
  %y = model.moe %x {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>]} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.moe' op expects shared_expert_gate @u of shape [1, 8] but got [4, 8]}}
  %y = model.moe %x {num_experts = 2, top_k = 1, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>], shared_expert = #model.swiglu<gate = @g, up = @u, down = @d>, shared_expert_gate = @u} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @r : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64}
model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @sg : tensor<1x8xf32> {tensor = "sg", file = "m.safetensors", offset = 0, nbytes = 32}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{attribute 'top_k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = model.moe %x {num_experts = 2, top_k = 0, norm_topk_prob = false, router = @r, experts = [#model.swiglu<gate = @g, up = @u, down = @d>, #model.swiglu<gate = @g, up = @u, down = @d>]} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @g : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128}
model.weight @u : tensor<5x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 160}
model.weight @d : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128}
func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.mlp' op expects ffn up @u of shape [4, 8] but got [5, 8]}}
  %y = model.mlp %x {ffn = #model.swiglu<gate = @g, up = @u, down = @d>} : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

model.weight @e : tensor<16x4xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 256}
func.func @f(%ids: !model.ids) -> !model.hidden<8> {
  // expected-error @below {{'model.embed' op expects weight @e of shape [?, 8] but got [16, 4]}}
  %h = model.embed %ids, @e : !model.ids -> !model.hidden<8>
  return %h : !model.hidden<8>
}

// -----

model.weight @lm : tensor<16x8xf32> {tensor = "lm", file = "m.safetensors", offset = 0, nbytes = 512}
func.func @f(%x: !model.hidden<8>) -> !model.logits<32> {
  // expected-error @below {{'model.lm_head' op expects weight @lm of shape [32, 8] but got [16, 8]}}
  %l = model.lm_head %x, @lm : !model.hidden<8> -> !model.logits<32>
  return %l : !model.logits<32>
}

// -----

func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.transfer' op expects different pools but both are kv}}
  %y = model.transfer %x from kv to kv : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{expects one of kv, weights but got 'hbm'}}
  %y = model.transfer %x from hbm to kv : !model.hidden<8>
  return %y : !model.hidden<8>
}

// -----

func.func @f(%x: !model.hidden<8>) -> !model.hidden<8> {
  // expected-error @below {{'model.add' op attribute 'pool' failed to satisfy constraint: GPU memory pool}}
  %y = model.add %x, %x {pool = 3 : i32} : !model.hidden<8>
  return %y : !model.hidden<8>
}
