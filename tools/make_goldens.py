#!/usr/bin/env python3
"""Builds tiny random MoE checkpoints with Hugging Face transformers and records goldens.

No download: each checkpoint is built from a config, its random weights scaled up so routing and
attention are not uniform, and saved in the Hugging Face layout (config.json + safetensors).
For every prompt the golden holds transformers' fp32 logits at every prompt position and a
24-token greedy continuation (full recompute per token, so no cache code is involved), plus the
top-1/top-2 logit margin of each greedy step so a near-tie is visible.

Usage: python3 tools/make_goldens.py OUT_DIR [--set seen|unseen|all]
Writes OUT_DIR/<name>/{config.json, model*.safetensors, golden.safetensors, golden.json}.
Runs on CPU in float32 (deterministic); transformers 5.17 + torch 2.11 on the GPU machine.
"""
import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

NEW_TOKENS = 24


def families():
    from transformers import (MixtralConfig, MixtralForCausalLM, OlmoeConfig, OlmoeForCausalLM,
                              Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                              Qwen3MoeForCausalLM)
    return {
        "mixtral": (MixtralConfig, MixtralForCausalLM),
        "qwen2_moe": (Qwen2MoeConfig, Qwen2MoeForCausalLM),
        "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
        "olmoe": (OlmoeConfig, OlmoeForCausalLM),
    }


COMMON = dict(vocab_size=256, max_position_embeddings=512, rms_norm_eps=1e-5,
              initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# "seen" checkpoints back the committed goldens; "unseen" ones differ in every shape knob and are
# only checked by the end-to-end test that compiles them fresh, proving nothing is hard-coded.
CHECKPOINTS = {
    "seen": [
        ("mixtral_tiny", "mixtral", "float32", None, dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
            rope_theta=10000.0, tie_word_embeddings=False)),
        ("qwen2_moe_tiny", "qwen2_moe", "bfloat16", "60KB", dict(
            hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            shared_expert_intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
            decoder_sparse_step=1, mlp_only_layers=[1], rope_theta=10000.0,
            tie_word_embeddings=False)),
        ("qwen3_moe_tiny", "qwen3_moe", "float32", None, dict(
            hidden_size=64, intermediate_size=96, moe_intermediate_size=32, head_dim=32,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_experts=8,
            num_experts_per_tok=2, norm_topk_prob=True, rope_theta=1000000.0,
            tie_word_embeddings=True)),
        ("olmoe_tiny", "olmoe", "float16", None, dict(
            hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
            rope_theta=10000.0, tie_word_embeddings=False)),
    ],
    "unseen": [
        ("mixtral_wide", "mixtral", "bfloat16", None, dict(
            hidden_size=96, intermediate_size=64, num_hidden_layers=3, num_attention_heads=6,
            num_key_value_heads=3, num_local_experts=4, num_experts_per_tok=1,
            rope_theta=500000.0, tie_word_embeddings=True)),
        ("qwen2_moe_sparse2", "qwen2_moe", "float32", None, dict(
            hidden_size=48, intermediate_size=80, moe_intermediate_size=24,
            shared_expert_intermediate_size=40, num_hidden_layers=4, num_attention_heads=6,
            num_key_value_heads=1, num_experts=12, num_experts_per_tok=3, norm_topk_prob=True,
            decoder_sparse_step=2, mlp_only_layers=[], rope_theta=20000.0,
            tie_word_embeddings=False)),
        ("qwen3_moe_wide", "qwen3_moe", "bfloat16", None, dict(
            hidden_size=80, intermediate_size=64, moe_intermediate_size=24, head_dim=16,
            num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4, num_experts=16,
            num_experts_per_tok=4, norm_topk_prob=False, mlp_only_layers=[0],
            rope_theta=10000.0, tie_word_embeddings=False)),
        ("olmoe_clip", "olmoe", "float32", None, dict(
            hidden_size=64, intermediate_size=48, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=8, num_experts=6, num_experts_per_tok=3, norm_topk_prob=True,
            clip_qkv=2.5, rope_theta=10000.0, tie_word_embeddings=False)),
    ],
}

PROMPT_LENGTHS = [1, 6, 29]


def build(family, dtype_name, overrides, seed):
    cfg_cls, model_cls = families()[family]
    kwargs = dict(COMMON)
    kwargs.update(overrides)
    cfg = cfg_cls(**kwargs)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights: random around 1 so a missing scale shows
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif "gate.weight" in name and "proj" not in name:  # router: sharp, non-uniform
                p.copy_(0.5 * torch.randn_like(p))
            elif "bias" in name:
                p.copy_(0.2 * torch.randn_like(p))
        # Round to the storage dtype so the fp32 golden sees exactly the stored values.
        dtype = getattr(torch, dtype_name)
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return cfg, model, dtype


@torch.no_grad()
def golden_for(model, prompt):
    ids = torch.tensor([prompt], dtype=torch.long)
    logits = model(ids).logits[0].float().contiguous()
    generated, margins = [], []
    cur = ids
    for _ in range(NEW_TOKENS):
        last = model(cur).logits[0, -1].double()
        top2 = torch.topk(last, 2)
        nxt = int(top2.indices[0])
        margins.append(float(top2.values[0] - top2.values[1]))
        generated.append(nxt)
        cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    return logits, generated, margins


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--set", default="all", choices=["seen", "unseen", "all"])
    args = ap.parse_args()
    torch.set_num_threads(8)
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"transformers {transformers.__version__} torch {torch.__version__}", flush=True)
    sets = ["seen", "unseen"] if args.set == "all" else [args.set]
    index = {}
    for set_name in sets:
        for i, (name, family, dtype_name, shard, overrides) in enumerate(CHECKPOINTS[set_name]):
            seed = 1000 + 17 * i + (0 if set_name == "seen" else 500)
            cfg, model, dtype = build(family, dtype_name, overrides, seed)
            d = os.path.join(args.out, name)
            os.makedirs(d, exist_ok=True)
            # Save in the storage dtype (what a real checkpoint holds); goldens use fp32 math.
            stored = type(model)(cfg).eval()
            stored.load_state_dict(model.state_dict())
            stored = stored.to(dtype)
            save_kw = dict(safe_serialization=True)
            if shard:
                save_kw["max_shard_size"] = shard
            stored.save_pretrained(d, **save_kw)
            for extra in ("generation_config.json",):
                if os.path.exists(os.path.join(d, extra)):
                    os.remove(os.path.join(d, extra))
            gen = torch.Generator().manual_seed(seed)
            tensors, meta = {}, {"family": family, "dtype": dtype_name, "prompts": []}
            for j, n in enumerate(PROMPT_LENGTHS):
                prompt = torch.randint(3, cfg.vocab_size, (n,), generator=gen).tolist()
                logits, generated, margins = golden_for(model, prompt)
                tensors[f"logits_{j}"] = logits
                meta["prompts"].append({"prompt_ids": prompt, "generated_ids": generated,
                                        "min_top2_margin": min(margins)})
            save_file(tensors, os.path.join(d, "golden.safetensors"))
            with open(os.path.join(d, "golden.json"), "w") as f:
                json.dump(meta, f, indent=1)
            index[name] = {"set": set_name, "family": family, "dtype": dtype_name,
                           "min_margin": min(p["min_top2_margin"] for p in meta["prompts"])}
            print(f"{name}: {family} {dtype_name} files={sorted(os.listdir(d))} "
                  f"min_margin={index[name]['min_margin']:.4f}", flush=True)
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
