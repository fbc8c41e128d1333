//===- ModelOps.td - Ops of the model dialect --------------*- tablegen -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_TD
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_TD

include "dialects/Model/IR/ModelAttrs.td"
include "dialects/Model/IR/ModelDialect.td"
include "dialects/Model/IR/ModelInterfaces.td"
include "dialects/Model/IR/ModelTypes.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Model_PositiveI64Attr : ConfinedAttr<I64Attr, [IntPositive]>;

//===----------------------------------------------------------------------===//
// Module-level declarations
//===----------------------------------------------------------------------===//

def Model_ConfigOp : Model_Op<"config", [HasParent<"::mlir::ModuleOp">]> {
  let summary = "model-level metadata copied into the plan";
  let description = [{
    The checkpoint-wide facts the runtime needs besides the ops: names, the
    checkpoint directory that weight `file`s are relative to, vocabulary and
    hidden sizes, the longest context and the end-of-sequence ids. A module
    holds at most one; `crosspool-emit-plan` requires it. Per-layer KV-cache
    geometry is not repeated here: it is read from the `model.attention` ops
    (`kv_layer`, `num_kv_heads`, `head_dim`).

    ```mlir
    model.config {model_name = "qwen3_moe_tiny", architecture = "Qwen3MoeForCausalLM",
                  checkpoint_dir = "/ckpt/qwen3_moe_tiny", vocab_size = 256,
                  hidden_size = 64, max_position_embeddings = 512,
                  eos_token_ids = array<i64: 2>}
    ```
  }];
  let arguments = (ins StrAttr:$model_name, StrAttr:$architecture,
                       StrAttr:$checkpoint_dir, Model_PositiveI64Attr:$vocab_size,
                       Model_PositiveI64Attr:$hidden_size,
                       Model_PositiveI64Attr:$max_position_embeddings,
                       DenseI64ArrayAttr:$eos_token_ids);
  let assemblyFormat = "attr-dict";
}

def Model_WeightOp : Model_Op<"weight", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "a checkpoint tensor used as a weight";
  let description = [{
    Names one tensor of the checkpoint: `tensor` is its name in the
    safetensors header, `file` the safetensors file relative to the
    checkpoint directory, `offset` the byte offset of its data from the start
    of that file and `nbytes` its size. The type gives dtype and shape. The
    runtime maps the bytes into the weight's pool without a copy through the
    compiler. `pool` is added by `crosspool-partition-pools`.

    A tied lm_head is a second symbol naming the embedding tensor again.

    A synthetic weight (`crosspool-compile --synthetic`) carries `synthetic`
    instead of `file` and `offset`: the runtime generates its values.

    ```mlir
    model.weight @layers_0_q_proj : tensor<64x64xbf16>
        {tensor = "model.layers.0.self_attn.q_proj.weight",
         file = "model.safetensors", offset = 123 : i64, nbytes = 8192 : i64}
    model.weight @layers_0_k_proj : tensor<64x64xbf16>
        {tensor = "model.layers.0.self_attn.k_proj.weight", nbytes = 8192 : i64,
         synthetic = #model.synthetic<seed = 0, init = normal, std = 2.000000e-02 : f64>}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<StaticShapeTensorOf<[F32, F16, BF16]>>:$type,
                       StrAttr:$tensor, OptionalAttr<StrAttr>:$file,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$offset,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$nbytes,
                       OptionalAttr<Model_PoolAttr>:$pool,
                       OptionalAttr<Model_SyntheticAttr>:$synthetic);
  let assemblyFormat = "$sym_name `:` $type attr-dict";
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Compute ops (one per transformer sub-block)
//===----------------------------------------------------------------------===//

/// A compute op: references weights and is placed in a pool.
class Model_ComputeOp<string mnemonic, list<Trait> traits = []>
    : Model_Op<mnemonic, traits # [
        DeclareOpInterfaceMethods<SymbolUserOpInterface>,
        Model_PlacedOpInterface]>;

def Model_EmbedOp : Model_ComputeOp<"embed", [Pure]> {
  let summary = "token embedding lookup";
  let description = [{
    Row `t` of the result is row `ids[t]` of `weight` (`[vocab, hidden]`).

    ```mlir
    %h = model.embed %ids, @embed : !model.ids -> !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_TokenIdsType:$ids, FlatSymbolRefAttr:$weight,
                       OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat =
      "$ids `,` $weight attr-dict `:` qualified(type($ids)) `->` qualified(type($result))";
}

def Model_RmsNormOp : Model_ComputeOp<"rms_norm",
                                      [Pure, SameOperandsAndResultType]> {
  let summary = "RMS normalization with a learned scale";
  let description = [{
    `y = x * rsqrt(mean(x^2) + eps) * weight` per row; `weight` is `[width]`.

    ```mlir
    %y = model.rms_norm %x, @layers_0_input_norm {eps = 1.0e-05 : f64}
        : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input, FlatSymbolRefAttr:$weight,
                       F64Attr:$eps, OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

def Model_AttentionOp : Model_ComputeOp<"attention", [SameOperandsAndResultType]> {
  let summary = "causal self-attention block with RoPE and a paged KV cache";
  let description = [{
    The whole attention sub-block: q/k/v projections (optional biases),
    optional qk-norm (`per_head`: RMSNorm of each head over `head_dim`,
    weights `[head_dim]`; `full`: RMSNorm of the whole projection, weights
    `[heads * head_dim]` / `[kv_heads * head_dim]`), optional clamp to
    `[-clip_qkv, clip_qkv]` (0 = none), RoPE (`rope_theta`, `rope_type`,
    `rope_factor`), the KV-cache append into layer `kv_layer`, grouped-query
    softmax attention over earlier positions (scaled by `softmax_scale`,
    limited to `sliding_window` positions when non-zero) and the output
    projection. Projection shapes: `q_proj [heads*head_dim, hidden]`,
    `k_proj`/`v_proj [kv_heads*head_dim, hidden]`,
    `o_proj [hidden, heads*head_dim]`. The op writes the KV cache, so it is
    not pure. Exact math: docs/plan-format.md, kernel `Attention`.

    ```mlir
    %a = model.attention %x {kv_layer = 0 : i64, num_heads = 4 : i64,
        num_kv_heads = 2 : i64, head_dim = 16 : i64, softmax_scale = 0.25 : f64,
        rope_theta = 1.0e+04 : f64, rope_type = #model<rope default>,
        rope_factor = 1.0 : f64, qk_norm = #model<qk_norm none>,
        qk_norm_eps = 1.0e-05 : f64, clip_qkv = 0.0 : f64,
        sliding_window = 0 : i64, q_proj = @layers_0_q_proj,
        k_proj = @layers_0_k_proj, v_proj = @layers_0_v_proj,
        o_proj = @layers_0_o_proj} : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input,
      ConfinedAttr<I64Attr, [IntNonNegative]>:$kv_layer,
      Model_PositiveI64Attr:$num_heads, Model_PositiveI64Attr:$num_kv_heads,
      Model_PositiveI64Attr:$head_dim,
      F64Attr:$softmax_scale, F64Attr:$rope_theta,
      Model_RopeTypeAttr:$rope_type, F64Attr:$rope_factor,
      Model_QkNormAttr:$qk_norm, F64Attr:$qk_norm_eps, F64Attr:$clip_qkv,
      ConfinedAttr<I64Attr, [IntNonNegative]>:$sliding_window,
      FlatSymbolRefAttr:$q_proj, FlatSymbolRefAttr:$k_proj,
      FlatSymbolRefAttr:$v_proj, FlatSymbolRefAttr:$o_proj,
      OptionalAttr<FlatSymbolRefAttr>:$q_bias,
      OptionalAttr<FlatSymbolRefAttr>:$k_bias,
      OptionalAttr<FlatSymbolRefAttr>:$v_bias,
      OptionalAttr<FlatSymbolRefAttr>:$o_bias,
      OptionalAttr<FlatSymbolRefAttr>:$q_norm,
      OptionalAttr<FlatSymbolRefAttr>:$k_norm,
      OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

def Model_AddOp : Model_Op<"add", [Pure, Commutative,
                                   SameOperandsAndResultType,
                                   Model_PlacedOpInterface]> {
  let summary = "residual addition";
  let description = [{
    Element-wise `lhs + rhs`: the residual stream.

    ```mlir
    %h1 = model.add %h0, %a : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$lhs, Model_HiddenType:$rhs,
                       OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` qualified(type($result))";
}

def Model_MoeOp : Model_ComputeOp<"moe", [Pure, SameOperandsAndResultType]> {
  let summary = "mixture-of-experts block: router, top-k experts, shared expert";
  let description = [{
    Per row: `p = softmax(x router^T)` over `num_experts`; the `top_k`
    largest (ties to the lower index), renormalized to sum 1 when
    `norm_topk_prob`; `y = sum_k p_k * expert_k(x)` with each expert a
    SwiGLU block. With `shared_expert`, `y += g * shared_expert(x)` where
    `g = sigmoid(x . shared_expert_gate)` (`[1, hidden]`), or 1 without a
    gate. `router` is `[num_experts, hidden]`.

    ```mlir
    %y = model.moe %x {num_experts = 2 : i64, top_k = 1 : i64,
        norm_topk_prob = false, router = @layers_0_router,
        experts = [#model.swiglu<gate = @e0_gate, up = @e0_up, down = @e0_down>,
                   #model.swiglu<gate = @e1_gate, up = @e1_up, down = @e1_down>]}
        : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input,
                       Model_PositiveI64Attr:$num_experts,
                       Model_PositiveI64Attr:$top_k, BoolAttr:$norm_topk_prob,
                       FlatSymbolRefAttr:$router,
                       Model_SwiGluArrayAttr:$experts,
                       OptionalAttr<Model_SwiGluAttr>:$shared_expert,
                       OptionalAttr<FlatSymbolRefAttr>:$shared_expert_gate,
                       OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

def Model_MlpOp : Model_ComputeOp<"mlp", [Pure, SameOperandsAndResultType]> {
  let summary = "dense SwiGLU feed-forward block";
  let description = [{
    `y = down(silu(gate x) * up x)`.

    ```mlir
    %y = model.mlp %x {ffn = #model.swiglu<gate = @layers_1_mlp_gate,
        up = @layers_1_mlp_up, down = @layers_1_mlp_down>} : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input, Model_SwiGluAttr:$ffn,
                       OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($result))";
}

def Model_LmHeadOp : Model_ComputeOp<"lm_head", [Pure]> {
  let summary = "output projection to vocabulary logits";
  let description = [{
    `logits = h weight^T` with `weight` of shape `[vocab, hidden]` (the
    embedding tensor again when embeddings are tied).

    ```mlir
    %l = model.lm_head %h, @lm_head : !model.hidden<64> -> !model.logits<256>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input, FlatSymbolRefAttr:$weight,
                       OptionalAttr<Model_PoolAttr>:$pool);
  let results = (outs Model_LogitsType:$result);
  let assemblyFormat =
      "$input `,` $weight attr-dict `:` qualified(type($input)) `->` qualified(type($result))";
}

def Model_TransferOp : Model_Op<"transfer", [Pure, SameOperandsAndResultType]> {
  let summary = "explicit hidden-state move between pools";
  let description = [{
    The result is the input, now resident in pool `to`. Inserted by
    `crosspool-insert-transfers` wherever a value produced in one pool is
    used in another; lowered to a send in the `from` stream and a receive in
    the `to` stream.

    ```mlir
    %t = model.transfer %h from kv to weights : !model.hidden<64>
    ```
  }];
  let arguments = (ins Model_HiddenType:$input, Model_PoolAttr:$from,
                       Model_PoolAttr:$to);
  let results = (outs Model_HiddenType:$result);
  let assemblyFormat =
      "$input `from` custom<EnumKeyword>($from) `to` custom<EnumKeyword>($to) "
      "attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELOPS_TD
