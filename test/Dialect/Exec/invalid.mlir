// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --allow-unregistered-dialect

// Every diagnostic of the exec dialect: declarations, task arity and
// parameters, and the program's static stream check (pools, dataflow,
// channel pairing, deadlock). Each case breaks one line of a valid program.

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  // expected-error @below {{'exec.slot' op expects width 1 for a token_ids slot but got 4}}
  exec.slot 0 : token_ids, width 4, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  // expected-error @below {{'exec.slot' op attribute 'width' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  exec.slot 1 : hidden, width 0, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  // expected-error @below {{expects one of token_ids, hidden, logits but got 'activations'}}
  exec.slot 1 : activations, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  // expected-error @below {{'exec.channel' op expects different pools but both are kv}}
  exec.channel 1 : kv -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  // expected-error @below {{'exec.channel' op attribute 'per_step' failed to satisfy constraint: 32-bit signless integer attribute whose value is positive}}
  exec.channel 1 : weights -> kv, width 8, per_step 0
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  // expected-error @below {{'exec.slot' op expects slot id 2 (ids are dense, in order) but got 3}}
  exec.slot 3 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  // expected-error @below {{'exec.channel' op expects channel id 1 (ids are dense, in order) but got 2}}
  exec.channel 2 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  // expected-error @below {{'exec.kv_layer' op expects kv_layer id 0 (ids are dense, in order) but got 1}}
  exec.kv_layer 1 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  // expected-error @below {{'exec.stream' op expects one stream per pool but pool kv already has one}}
  exec.stream kv {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op expects only exec.slot, exec.channel, exec.kv_layer and exec.stream ops but got test.op}}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  "test.op"() : () -> ()
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op expects the input slot below 8 but got 9}}
exec.program input 9 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op expects the input slot 1 of kind token_ids but got hidden}}
exec.program input 1 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op expects the output slot 6 of kind logits but got hidden}}
exec.program input 0 output 6 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op expects an instruction writing the output slot 7}}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects 2 inputs for add but got 1}}
    exec.task add [1] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects 1 outputs for add but got 2}}
    exec.task add [1, 5] -> [6, 2]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects 1 fparams for rms_norm but got 0}}
    exec.task rms_norm [1] -> [2] weights(@norm)
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects 0 iparams for rms_norm but got 1}}
    exec.task rms_norm [1] -> [2] weights(@norm) iparams [3] fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects 1 weights for rms_norm but got 2}}
    exec.task rms_norm [1] -> [2] weights(@norm, @norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects weight 0 of rms_norm to be present}}
    exec.task rms_norm [1] -> [2] weights(none) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects @nothing to name a model.weight}}
    exec.task rms_norm [1] -> [2] weights(@nothing) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects weight @mlp in pool kv but it is in pool weights}}
    exec.task rms_norm [1] -> [2] weights(@mlp) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{expects one of embed, rms_norm, attention, add, moe, mlp, lm_head but got 'softmax'}}
    exec.task softmax [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects 7 iparams for attention but got 6}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects num_heads a positive multiple of num_kv_heads but got 3 and 2}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 3, 2, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects a positive even head_dim but got 5}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 5, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects a non-negative kv layer but got -1}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [-1, 2, 1, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects qk_norm in [0, 2] but got 3}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 4, 3, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects a non-negative sliding_window but got -4}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, -4, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects rope_type in [0, 1] but got 2}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 2] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects q_norm and k_norm weights exactly when qk_norm != 0 (qk_norm 1)}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 1, 4, 1, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects weight 3 of attention to be present}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, none, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects a kv layer below 1 but got 1}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [1, 2, 1, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects kv_heads 1 and head_dim 4 of kv layer 0 but got 2 and 4}}
    exec.task attention [1] -> [2] weights(@norm, @norm, @norm, @norm, none, none, none, none, none, none) iparams [0, 2, 2, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects top_k in [1, 2] but got 3}}
    exec.task moe [3] -> [4] weights(@mlp, none, none, none, none, @mlp, @mlp, @mlp, @mlp, @mlp, @mlp) iparams [2, 3, 0]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects norm_topk_prob 0 or 1 but got 2}}
    exec.task moe [3] -> [4] weights(@mlp, none, none, none, none, @mlp, @mlp, @mlp, @mlp, @mlp, @mlp) iparams [2, 1, 2]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects 11 weights for moe but got 8}}
    exec.task moe [3] -> [4] weights(@mlp, none, none, none, none, @mlp, @mlp, @mlp) iparams [2, 1, 0]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects a positive expert count but got 0}}
    exec.task moe [3] -> [4] weights(@mlp, none, none, none, none, @mlp, @mlp, @mlp) iparams [0, 1, 0]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects the shared expert weights all present or all absent}}
    exec.task moe [3] -> [4] weights(@mlp, @mlp, none, none, none, @mlp, @mlp, @mlp) iparams [1, 1, 0]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    // expected-error @below {{'exec.task' op expects the shared expert weights all present or all absent}}
    exec.task moe [3] -> [4] weights(@mlp, none, none, none, @mlp, @mlp, @mlp, @mlp) iparams [1, 1, 0]
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects a slot id below 8 but got 9}}
    exec.task add [1, 9] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects slot 3 in pool kv but it is in pool weights}}
    exec.task add [1, 3] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects slot 0 of kind hidden but got token_ids}}
    exec.task add [1, 0] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op expects slot 7 of kind hidden but got logits}}
    exec.task add [1, 5] -> [7]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    // expected-error @below {{'exec.task' op reads slot 6 before it is written in this step}}
    exec.task add [1, 6] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    // expected-error @below {{'exec.send' op expects a channel id below 2 but got 5}}
    exec.send slot 2 channel 5 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    // expected-error @below {{'exec.send' op expects channel 1 to send from pool kv but it sends from pool weights}}
    exec.send slot 2 channel 1 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    // expected-error @below {{'exec.recv' op expects channel 0 to receive from pool kv but it receives from pool weights}}
    exec.recv slot 5 channel 0 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    // expected-error @below {{'exec.send' op expects seq 1 on channel 0 but got 2}}
    exec.send slot 2 channel 0 seq 2
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    // expected-error @below {{'exec.send' op expects at most 1 messages per step on channel 0 but got seq 2}}
    exec.send slot 2 channel 0 seq 2
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 4, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    // expected-error @below {{'exec.task' op expects input slot 1 of width 4 (the width of output slot 2) but got 8}}
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  // expected-error @below {{'exec.channel' op expects 2 sends per step but got 1}}
  exec.channel 0 : kv -> weights, width 8, per_step 2
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    // expected-error @below {{'exec.recv' op deadlocks: message 1 of channel 1 is never sent while the streams wait}}
    exec.recv slot 5 channel 1 seq 1
    exec.send slot 2 channel 0 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}

// -----

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @mlp : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
exec.program input 0 output 7 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool weights
  exec.slot 4 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool kv
  exec.slot 7 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    exec.send slot 2 channel 0 seq 1
    exec.recv slot 5 channel 1 seq 1
    exec.task add [1, 5] -> [6]
    exec.task lm_head [6] -> [7] weights(@lm_head)
  }
  // expected-error @below {{'exec.stream' op expects only exec.task, exec.send and exec.recv ops but got test.op}}
  exec.stream weights {
    "test.op"() : () -> ()
    exec.recv slot 3 channel 0 seq 1
    exec.task mlp [3] -> [4] weights(@mlp, @mlp, @mlp)
    exec.send slot 4 channel 1 seq 1
  }
}
