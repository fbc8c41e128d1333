// RUN: crosspool-opt %s -split-input-file -verify-diagnostics --crosspool-emit-plan=output=%t.cpplan | FileCheck --check-prefix=IR %s
// RUN: python3 %S/Inputs/dump-plan.py %S/../../runtime/format/Plan.fbs %t.cpplan | FileCheck %s
// RUN: not crosspool-opt %s -split-input-file --crosspool-emit-plan 2>&1 | FileCheck --check-prefix=NOOUT %s
// RUN: not crosspool-opt %s -split-input-file --crosspool-emit-plan=output=%t.nodir/x.cpplan 2>&1 | FileCheck --check-prefix=NODIR %s

// The lowered two-layer model serialized: header from model.config, only
// the weights tasks use (in module order; the tied lm_head is a second entry
// naming the embedding tensor), -1 for absent weights, params as documented.
// The pass leaves the IR unchanged.

// NOOUT: error: expects an output path (output=<path>)
// NODIR: error: cannot write plan '{{.*}}.nodir/x.cpplan'

// IR: exec.program input 0 output 19
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
exec.program input 0 output 19 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : hidden, width 8, pool kv
  exec.slot 4 : hidden, width 8, pool kv
  exec.slot 5 : hidden, width 8, pool kv
  exec.slot 6 : hidden, width 8, pool weights
  exec.slot 7 : hidden, width 8, pool weights
  exec.slot 8 : hidden, width 8, pool kv
  exec.slot 9 : hidden, width 8, pool kv
  exec.slot 10 : hidden, width 8, pool kv
  exec.slot 11 : hidden, width 8, pool kv
  exec.slot 12 : hidden, width 8, pool kv
  exec.slot 13 : hidden, width 8, pool kv
  exec.slot 14 : hidden, width 8, pool weights
  exec.slot 15 : hidden, width 8, pool weights
  exec.slot 16 : hidden, width 8, pool kv
  exec.slot 17 : hidden, width 8, pool kv
  exec.slot 18 : hidden, width 8, pool kv
  exec.slot 19 : logits, width 16, pool kv
  exec.channel 0 : kv -> weights, width 8, per_step 2
  exec.channel 1 : weights -> kv, width 8, per_step 2
  exec.kv_layer 0 : kv_heads 1, head_dim 4
  exec.kv_layer 1 : kv_heads 1, head_dim 4
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@embed)
    exec.task rms_norm [1] -> [2] weights(@norm) fparams [1.000000e-05]
    exec.task attention [2] -> [3] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [0, 2, 1, 4, 0, 0, 0] fparams [1.000000e+04, 1.000000e-05, 0.000000e+00, 1.000000e+00, 5.000000e-01]
    exec.task add [1, 3] -> [4]
    exec.task rms_norm [4] -> [5] weights(@norm) fparams [1.000000e-05]
    exec.send slot 5 channel 0 seq 1
    exec.recv slot 8 channel 1 seq 1
    exec.task add [4, 8] -> [9]
    exec.task rms_norm [9] -> [10] weights(@norm) fparams [1.000000e-05]
    exec.task attention [10] -> [11] weights(@q, @k, @v, @o, none, none, none, none, none, none) iparams [1, 2, 1, 4, 0, 0, 1] fparams [1.000000e+04, 1.000000e-05, 0.000000e+00, 2.000000e+00, 5.000000e-01]
    exec.task add [9, 11] -> [12]
    exec.task rms_norm [12] -> [13] weights(@norm) fparams [1.000000e-05]
    exec.send slot 13 channel 0 seq 2
    exec.recv slot 16 channel 1 seq 2
    exec.task add [12, 16] -> [17]
    exec.task rms_norm [17] -> [18] weights(@norm) fparams [1.000000e-05]
    exec.task lm_head [18] -> [19] weights(@lm_head)
  }
  exec.stream weights {
    exec.recv slot 6 channel 0 seq 1
    exec.task moe [6] -> [7] weights(@router, none, none, none, none, @gate, @up, @down, @gate, @up, @down) iparams [2, 1, 0]
    exec.send slot 7 channel 1 seq 1
    exec.recv slot 14 channel 0 seq 2
    exec.task mlp [14] -> [15] weights(@gate, @up, @down)
    exec.send slot 15 channel 1 seq 2
  }
}
// CHECK: version: 2
// CHECK-NEXT: model_name: tiny
// CHECK-NEXT: architecture: MixtralForCausalLM
// CHECK-NEXT: checkpoint_dir: /ckpt/tiny
// CHECK-NEXT: vocab_size: 16
// CHECK-NEXT: hidden_size: 8
// CHECK-NEXT: max_position_embeddings: 64
// CHECK-NEXT: eos_token_ids: [2]
// CHECK-NEXT: input_slot: 0
// CHECK-NEXT: output_slot: 19
// CHECK-NEXT: weight 0: model.embed_tokens.weight file=model.safetensors offset=0 nbytes=512 dtype=F32 shape=[16, 8] pool=KV
// CHECK-NEXT: weight 1: norm file=model.safetensors offset=512 nbytes=32 dtype=F32 shape=[8] pool=KV
// CHECK-NEXT: weight 2: q file=model.safetensors offset=544 nbytes=256 dtype=F32 shape=[8, 8] pool=KV
// CHECK-NEXT: weight 3: k file=model.safetensors offset=800 nbytes=128 dtype=F32 shape=[4, 8] pool=KV
// CHECK-NEXT: weight 4: v file=model.safetensors offset=928 nbytes=128 dtype=F32 shape=[4, 8] pool=KV
// CHECK-NEXT: weight 5: o file=model.safetensors offset=1056 nbytes=256 dtype=F32 shape=[8, 8] pool=KV
// CHECK-NEXT: weight 6: router file=model.safetensors offset=1312 nbytes=64 dtype=F32 shape=[2, 8] pool=Weights
// CHECK-NEXT: weight 7: gate file=model.safetensors offset=1376 nbytes=128 dtype=F32 shape=[4, 8] pool=Weights
// CHECK-NEXT: weight 8: up file=model.safetensors offset=1504 nbytes=128 dtype=F32 shape=[4, 8] pool=Weights
// CHECK-NEXT: weight 9: down file=model.safetensors offset=1632 nbytes=64 dtype=BF16 shape=[8, 4] pool=Weights
// CHECK-NEXT: weight 10: model.embed_tokens.weight file=model.safetensors offset=0 nbytes=512 dtype=F32 shape=[16, 8] pool=KV
// CHECK-NEXT: slot 0: TokenIds width=1 pool=KV
// CHECK-NEXT: slot 1: Hidden width=8 pool=KV
// CHECK: slot 6: Hidden width=8 pool=Weights
// CHECK: slot 19: Logits width=16 pool=KV
// CHECK-NEXT: channel 0: KV -> Weights width=8 per_step=2
// CHECK-NEXT: channel 1: Weights -> KV width=8 per_step=2
// CHECK-NEXT: kv_layer 0: kv_heads=1 head_dim=4
// CHECK-NEXT: kv_layer 1: kv_heads=1 head_dim=4
// CHECK-NEXT: stream KV
// CHECK-NEXT: Task Embed in=[0] out=[1] w=[0] i=[] f=[]
// CHECK-NEXT: Task RmsNorm in=[1] out=[2] w=[1] i=[] f=[1e-05]
// CHECK-NEXT: Task Attention in=[2] out=[3] w=[2, 3, 4, 5, -1, -1, -1, -1, -1, -1] i=[0, 2, 1, 4, 0, 0, 0] f=[10000.0, 1e-05, 0.0, 1.0, 0.5]
// CHECK-NEXT: Task Add in=[1, 3] out=[4] w=[] i=[] f=[]
// CHECK-NEXT: Task RmsNorm in=[4] out=[5] w=[1] i=[] f=[1e-05]
// CHECK-NEXT: Send slot=[5] channel=0 seq=1
// CHECK-NEXT: Recv slot=[8] channel=1 seq=1
// CHECK: Task Attention in=[10] out=[11] w=[2, 3, 4, 5, -1, -1, -1, -1, -1, -1] i=[1, 2, 1, 4, 0, 0, 1] f=[10000.0, 1e-05, 0.0, 2.0, 0.5]
// CHECK: Send slot=[13] channel=0 seq=2
// CHECK-NEXT: Recv slot=[16] channel=1 seq=2
// CHECK: Task LmHead in=[18] out=[19] w=[10] i=[] f=[]
// CHECK-NEXT: stream Weights
// CHECK-NEXT: Recv slot=[6] channel=0 seq=1
// CHECK-NEXT: Task Moe in=[6] out=[7] w=[6, -1, -1, -1, -1, 7, 8, 9, 7, 8, 9] i=[2, 1, 0] f=[]
// CHECK-NEXT: Send slot=[7] channel=1 seq=1
// CHECK-NEXT: Recv slot=[14] channel=0 seq=2
// CHECK-NEXT: Task Mlp in=[14] out=[15] w=[7, 8, 9] i=[] f=[]
// CHECK-NEXT: Send slot=[15] channel=1 seq=2
// CHECK-NOT: {{.}}

// -----

// expected-error @below {{expects one model.config (model metadata) but got 0}}
module {
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @n : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32, pool = #model<pool kv>}
exec.program input 0 output 3 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : logits, width 16, pool kv
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@e)
    exec.task rms_norm [1] -> [2] weights(@n) fparams [1.0e-05]
    exec.task lm_head [2] -> [3] weights(@e)
  }
}
}

// -----

// expected-error @below {{expects one exec.program (run crosspool-lower-control first) but got 0}}
module {
model.config {model_name = "m", architecture = "A", checkpoint_dir = "/c", vocab_size = 16, hidden_size = 8, max_position_embeddings = 8, eos_token_ids = array<i64: 2>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
}

// -----

model.config {model_name = "m", architecture = "A", checkpoint_dir = "/c", vocab_size = 16, hidden_size = 8, max_position_embeddings = 8, eos_token_ids = array<i64: 2>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
// expected-error @below {{'model.weight' op expects a pool (run crosspool-partition-pools first)}}
model.weight @n : tensor<8xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 32}
exec.program input 0 output 3 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : logits, width 16, pool kv
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@e)
    exec.task rms_norm [1] -> [2] weights(@n) fparams [1.0e-05]
    exec.task lm_head [2] -> [3] weights(@e)
  }
}

// -----

// The runtime's stream check also compares weight shapes with slot widths.
model.config {model_name = "m", architecture = "A", checkpoint_dir = "/c", vocab_size = 16, hidden_size = 8, max_position_embeddings = 8, eos_token_ids = array<i64: 2>}
model.weight @e : tensor<16x8xf32> {tensor = "e", file = "m.safetensors", offset = 0, nbytes = 512, pool = #model<pool kv>}
model.weight @n : tensor<4xf32> {tensor = "n", file = "m.safetensors", offset = 0, nbytes = 16, pool = #model<pool kv>}
// expected-error @below {{'exec.program' op produced a plan the runtime rejects: stream 0 (KV) instr 1 (Task RmsNorm): weights[0] (norm) 'n': expects 8 elements but got 4}}
exec.program input 0 output 3 {
  exec.slot 0 : token_ids, width 1, pool kv
  exec.slot 1 : hidden, width 8, pool kv
  exec.slot 2 : hidden, width 8, pool kv
  exec.slot 3 : logits, width 16, pool kv
  exec.stream kv {
    exec.task embed [0] -> [1] weights(@e)
    exec.task rms_norm [1] -> [2] weights(@n) fparams [1.0e-05]
    exec.task lm_head [2] -> [3] weights(@e)
  }
}
