// RUN: crosspool-opt %s | crosspool-opt | FileCheck %s
// RUN: crosspool-opt %s --mlir-print-op-generic | crosspool-opt | FileCheck %s

// One layer split across the pools: every declaration, every kernel's task
// form (absent optional weights as `none`), and a send/recv pair each way.

model.weight @embed : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @norm : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
model.weight @q : tensor<8x8xf32> {tensor = "q", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @k : tensor<4x8xf32> {tensor = "k", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @v : tensor<4x8xf32> {tensor = "v", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool kv>}
model.weight @o : tensor<8x8xf32> {tensor = "o", file = "m.safetensors", offset = 0, nbytes = 256, pool = #model<pool kv>}
model.weight @router : tensor<2x8xf32> {tensor = "r", file = "m.safetensors", offset = 0, nbytes = 64, pool = #model<pool weights>}
model.weight @gate : tensor<4x8xf32> {tensor = "g", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @up : tensor<4x8xf32> {tensor = "u", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @down : tensor<8x4xf32> {tensor = "d", file = "m.safetensors", offset = 0, nbytes = 128, pool = #model<pool weights>}
model.weight @lm_head : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}

// CHECK-LABEL: exec.program input 0 output 10 {
exec.program input 0 output 10 {
  // CHECK-NEXT: exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 0 : token_ids, width 1, pool kv
  // CHECK-NEXT: exec.slot 1 : hidden, width 8, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool kv
  exec.slot 4 : hidden, width 8, pool kv
  // CHECK: exec.slot 5 : hidden, width 8, pool weights
  exec.slot 5 : hidden, width 8, pool weights
  exec.slot 6 : hidden, width 8, pool weights
  exec.slot 7 : hidden, width 8, pool weights
  exec.slot 8 : hidden, width 8, pool kv
  exec.slot 9 : hidden, width 8, pool kv
  // CHECK: exec.slot 10 : logits, width 16, pool kv
  exec.slot 10 : logits, width 16, pool kv
  // CHECK-NEXT: exec.channel 0 : kv -> weights, width 8, per_step 1
  exec.channel 0 : kv -> weights, width 8, per_step 1
  // CHECK-NEXT: exec.channel 1 : weights -> kv, width 8, per_step 1
  exec.channel 1 : weights -> kv, width 8, per_step 1
  // CHECK-NEXT: exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  // CHECK-NEXT: exec.stream kv {
  exec.stream kv {
    // CHECK-NEXT: exec.task embed [0] -> [1] weights(@embed)
    exec.task embed [0] -> [1] weights(@embed)
    // CHECK-NEXT: exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.000000e-05]
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.0e-05]
    // CHECK-NEXT: exec.task attention [2] -> [3] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 0] fparams [1.000000e+04, 1.000000e-05, 0.000000e+00, 1.000000e+00, 5.000000e-01]
    exec.task attention [2] -> [3] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 0] fparams [1.0e+04, 1.0e-05, 0.0, 1.0, 0.5]
    // CHECK-NEXT: exec.task add [1, 3] -> [4]{{$}}
    exec.task add [1, 3] -> [4]
    // CHECK-NEXT: exec.send slot 4 channel 0 seq 1
    exec.send slot 4 channel 0 seq 1
    // CHECK-NEXT: exec.recv slot 8 channel 1 seq 1
    exec.recv slot 8 channel 1 seq 1
    exec.task add [4, 8] -> [9]
    // CHECK: exec.task lm_head [9] -> [10] weights(@lm_head)
    exec.task lm_head [9] -> [10] weights(@lm_head)
  }
  // CHECK: exec.stream weights {
  exec.stream weights {
    // CHECK-NEXT: exec.recv slot 5 channel 0 seq 1
    exec.recv slot 5 channel 0 seq 1
    // CHECK-NEXT: exec.task moe [5] -> [6] weights(@router, none, none, none, none, @gate, @up, @down, @gate, @up, @down) iparams [2, 1, 1]
    exec.task moe [5] -> [6] weights(@router, none, none, none, none, @gate, @up, @down, @gate, @up, @down) iparams [2, 1, 1]
    // CHECK-NEXT: exec.task mlp [6] -> [7] weights(@gate, @up, @down)
    exec.task mlp [6] -> [7] weights(@gate, @up, @down)
    // CHECK-NEXT: exec.send slot 7 channel 1 seq 1
    exec.send slot 7 channel 1 seq 1
  }
}
