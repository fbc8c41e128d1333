#!/usr/bin/env python3
"""Hugging Face transformers' bf16 decode step on real-size MoE shapes, against the same floor.

Side-by-side baseline for `crosspool-decode-bench` (tools/crosspool-decode-bench): the same models,
batches and contexts, run through transformers' own modeling code in bf16 with random weights
generated on the GPU (no download, nothing materialized on the CPU), and reported against the same
memory-bandwidth floor.

Per point (model, batch B, context C, cache kind):
  * the KV cache of B sequences at context C is made directly from random K/V tensors (no prefill,
    nothing timed but decode): a `DynamicCache` (transformers' default, which concatenates a new K/V
    tensor per layer every step) and a `StaticCache` (max_cache_len C+1, what `generate` uses with
    `cache_implementation="static"`); optionally the static cache under
    `torch.compile(mode="reduce-overhead")` (`--compile`).
  * one decode step = `model(input_ids [B,1], position_ids=C, past_key_values=cache,
    logits_to_keep=1)` + greedy argmax, timed with CUDA events from an idle GPU (so Python launch
    overhead counts, as it does in serving); 3 warm-ups, median of `--reps` (10). The cache is put
    back to context C before every step (outside the timed region), so every step is at exactly C.
  * points whose KV cache (plus transient per-step copies) does not fit the free GPU memory are
    skipped ("skipped: OOM / too large"); so is a model whose weights do not fit (Mixtral on H100).

Floor (the same formula as tools/crosspool-decode-bench/DecodeBench.cpp; `floor_bytes` below):

    bytes/step = L * (attn + router + D(B) * expert + shared) + lm_head + KV
      attn    = (2 * heads * head_dim * H + 2 * kv_heads * head_dim * H) * 2   q, k, v, o (bf16)
      router  = E * H * 2
      expert  = 3 * H * I * 2                                                   gate, up, down
      shared  = (3 * H * I_shared + H) * 2        Qwen1.5-MoE shared expert + its gate, else 0
      lm_head = V * H * 2
      KV      = L * B * C * 2 * kv_heads * head_dim * 2                         K and V read once
      D(B)    = E * (1 - (1 - k/E)^B)      expected distinct experts per layer for B tokens, top-k
    floor_ms = bytes / copy_bandwidth, copy_bandwidth = 2 * N / t for a device-to-device copy of
    N bytes (read + written; N = 1 GiB by default, median of 20 after 2 warm-ups);
    fraction_of_floor = floor_ms / step_ms.
Norm vectors, biases and the embedding rows read are left out (negligible), as in the C++ bench.

Usage:
  python3 tools/hf_decode_bench.py [--model qwen3-30b-a3b,olmoe-1b-7b|all]
      [--batch 1,8,32] [--context 1024,32768] [--cache dynamic,static] [--compile]
      [--attn sdpa|eager] [--experts-impl default|grouped_mm|batched_mm|eager]
      [--reps 10] [--warmup 3] [--copy-gib 1] [--seed 0] [--json-out FILE]
  python3 tools/hf_decode_bench.py --dry-run [--assume-bw-gbs 3000] [--assume-mem-gib 80]
    prints the configs and the floor arithmetic without importing torch or transformers.
Models: qwen3-30b-a3b, olmoe-1b-7b, qwen1.5-moe-a2.7b, mixtral-8x7b (weights only fit an H200);
`all` = all four. Needs torch + transformers 5.x (tested against 5.17's cache API) and one GPU.
"""
import argparse
import json
import math
import sys
import time

BF16 = 2

# The config.json fields of each real checkpoint that set the decode step's shapes.
# `hf` is what goes into the transformers config class; the rest feeds the floor arithmetic.
SHAPES = {
    "qwen3-30b-a3b": dict(
        family="qwen3_moe", config_class="Qwen3MoeConfig",
        hidden=2048, layers=48, heads=32, kv_heads=4, head_dim=128, experts=128, top_k=8,
        inter=768, shared_inter=0, vocab=151936, qkv_bias=False, qk_norm="head",
        hf=dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
                num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
                moe_intermediate_size=768, intermediate_size=6144, vocab_size=151936,
                norm_topk_prob=True, max_position_embeddings=40960, rms_norm_eps=1e-6,
                tie_word_embeddings=False, decoder_sparse_step=1, mlp_only_layers=[],
                use_sliding_window=False, rope_theta=1e6)),
    "olmoe-1b-7b": dict(
        family="olmoe", config_class="OlmoeConfig",
        hidden=2048, layers=16, heads=16, kv_heads=16, head_dim=128, experts=64, top_k=8,
        inter=1024, shared_inter=0, vocab=50304, qkv_bias=False, qk_norm="projection",
        hf=dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                num_key_value_heads=16, num_experts=64, num_experts_per_tok=8,
                intermediate_size=1024, vocab_size=50304, norm_topk_prob=False,
                max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
                clip_qkv=None, rope_theta=1e4)),
    "qwen1.5-moe-a2.7b": dict(
        family="qwen2_moe", config_class="Qwen2MoeConfig",
        hidden=2048, layers=24, heads=16, kv_heads=16, head_dim=128, experts=60, top_k=4,
        inter=1408, shared_inter=5632, vocab=151936, qkv_bias=True, qk_norm=None,
        hf=dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                num_key_value_heads=16, num_experts=60, num_experts_per_tok=4,
                moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                intermediate_size=5632, vocab_size=151936, norm_topk_prob=False,
                max_position_embeddings=8192, rms_norm_eps=1e-6, tie_word_embeddings=False,
                decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False,
                qkv_bias=True, rope_theta=1e6)),
    "mixtral-8x7b": dict(
        family="mixtral", config_class="MixtralConfig",
        hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, experts=8, top_k=2,
        inter=14336, shared_inter=0, vocab=32000, qkv_bias=False, qk_norm=None,
        hf=dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
                intermediate_size=14336, vocab_size=32000, max_position_embeddings=32768,
                rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None,
                rope_theta=1e6)),
}
DEFAULT_MODELS = "qwen3-30b-a3b,olmoe-1b-7b"  # the ones issue 3's acceptance names


def tiny_shape(s):
    """The same family and features at toy sizes (--tiny: a smoke test of the script itself, also
    on --device cpu)."""
    t = dict(s, hidden=64, layers=2, heads=4, kv_heads=2 if s["kv_heads"] < s["heads"] else 4,
             head_dim=16, experts=8, top_k=2, inter=32,
             shared_inter=48 if s["shared_inter"] else 0, vocab=256)
    hf = dict(s["hf"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=t["kv_heads"], num_experts_per_tok=2, vocab_size=256,
              intermediate_size=48 if s["shared_inter"] else 32)
    hf["num_local_experts" if "num_local_experts" in hf else "num_experts"] = 8
    if "head_dim" in hf:
        hf["head_dim"] = 16
    if "moe_intermediate_size" in hf:
        hf["moe_intermediate_size"] = 32
    if "shared_expert_intermediate_size" in hf:
        hf["shared_expert_intermediate_size"] = 48
    t["hf"] = hf
    return t


# ----------------------------------------------------------------------------------------------
# Floor arithmetic (pure Python; the same formula as DecodeBench.cpp).
# ----------------------------------------------------------------------------------------------

def distinct_experts(experts, top_k, batch):
    """Expected distinct experts one layer touches for `batch` tokens routed top-k of E uniformly:
    D(B) = E * (1 - (1 - k/E)^B)."""
    return experts * (1.0 - (1.0 - top_k / experts) ** batch)


def kv_bytes_per_token(s):
    """K and V of one token over all layers, bf16."""
    return s["layers"] * 2 * s["kv_heads"] * s["head_dim"] * BF16


def floor_bytes(s, batch, context):
    """Bytes one decode step must move (B sequences at context C, one new token each).

    Returns a dict: attn, router, experts, shared, lm_head (all layers summed), weight_bytes,
    kv_bytes, bytes_per_step and distinct_experts_formula."""
    H, L = s["hidden"], s["layers"]
    q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    d = distinct_experts(s["experts"], s["top_k"], batch)
    attn = L * (2 * q * H + 2 * kv * H) * BF16
    router = L * s["experts"] * H * BF16
    experts = L * d * 3 * H * s["inter"] * BF16
    shared = L * (3 * H * s["shared_inter"] + H) * BF16 if s["shared_inter"] else 0
    lm_head = s["vocab"] * H * BF16
    weight = attn + router + experts + shared + lm_head
    kvb = float(batch) * context * kv_bytes_per_token(s)
    return dict(attn=attn, router=router, experts=experts, shared=shared, lm_head=lm_head,
                weight_bytes=weight, kv_bytes=kvb, bytes_per_step=weight + kvb,
                distinct_experts_formula=d)


def floor_ms(s, batch, context, bandwidth_bytes_per_s):
    return floor_bytes(s, batch, context)["bytes_per_step"] / bandwidth_bytes_per_s * 1e3


def param_count(s):
    """Exact parameter count of the transformers model built from `s["hf"]` (for memory checks)."""
    H, L = s["hidden"], s["layers"]
    q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    attn = 2 * q * H + 2 * kv * H + (q + 2 * kv if s["qkv_bias"] else 0)
    if s["qk_norm"] == "head":
        attn += 2 * s["head_dim"]
    elif s["qk_norm"] == "projection":
        attn += q + kv
    moe = s["experts"] * H + s["experts"] * 3 * H * s["inter"]
    if s["shared_inter"]:
        moe += 3 * H * s["shared_inter"] + H
    return L * (attn + moe + 2 * H) + H + 2 * s["vocab"] * H


def weight_bytes_total(s):
    return param_count(s) * BF16


def step_memory_bytes(s, batch, context, cache, attn_impl):
    """GPU memory a point needs beyond the weights: the KV cache plus what one step allocates on
    top of it (dynamic: one layer's concatenated K/V copy; attention: sdpa/eager may repeat one
    layer's K/V across the query groups), logits and a margin for activations and workspaces."""
    per_layer_kv = 2 * s["kv_heads"] * s["head_dim"] * BF16 * batch * (context + 1)
    total_kv = s["layers"] * per_layer_kv
    groups = s["heads"] // s["kv_heads"]
    extra = per_layer_kv * (groups if groups > 1 else 0)  # repeat_kv when GQA can't be used
    if cache == "dynamic":
        extra += per_layer_kv  # torch.cat of the old and new K/V
    if attn_impl == "eager":
        extra += batch * s["heads"] * (context + 1) * 4 * 2
    logits = batch * s["vocab"] * 4 * 2
    return total_kv + extra + logits + (1 << 30)


def parse_list(text, what):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(v <= 0 for v in vals):
        raise SystemExit(f"hf_decode_bench: {what} expects positive integers like 1,8,32 "
                         f"but got '{text}'")
    return vals


def parse_models(text):
    if text == "all":
        return list(SHAPES)
    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in SHAPES:
            raise SystemExit(f"hf_decode_bench: --model expects {', '.join(SHAPES)} or all "
                             f"but got '{m}'")
    return names


def fmt_gb(b):
    return f"{b / 1e9:.3f}"


def dry_run(args, models, batches, contexts, caches):
    bw = args.assume_bw_gbs * 1e9
    mem = args.assume_mem_gib * (1 << 30)
    print(f"dry run: no torch; assumed copy bandwidth {args.assume_bw_gbs:.0f} GB/s "
          f"(read+written), assumed device memory {args.assume_mem_gib:.0f} GiB")
    for name in models:
        s = tiny_shape(SHAPES[name]) if args.tiny else SHAPES[name]
        print(f"\n== {name}: transformers {s['config_class']}(")
        for k, v in s["hf"].items():
            print(f"       {k}={v!r},")
        print("   )")
        wb = weight_bytes_total(s)
        fits = wb + (2 << 30) <= mem
        print(f"   params {param_count(s) / 1e9:.3f} B -> bf16 weights {fmt_gb(wb)} GB "
              f"({'fits' if fits else 'does NOT fit'} {args.assume_mem_gib:.0f} GiB); "
              f"KV {kv_bytes_per_token(s)} B/token")
        fb1 = floor_bytes(s, 1, 0)
        print(f"   per step: attn {fmt_gb(fb1['attn'])} GB + router {fmt_gb(fb1['router'])} GB"
              f" + lm_head {fmt_gb(fb1['lm_head'])} GB"
              + (f" + shared expert {fmt_gb(fb1['shared'])} GB" if fb1["shared"] else "")
              + f" + D(B) x {fmt_gb(s['layers'] * 3 * s['hidden'] * s['inter'] * BF16)} GB"
              f" (one expert, all layers) + B x C x {kv_bytes_per_token(s)} B KV")
        print("   | batch | context | D(B) | weight GB | KV GB | GB/step | floor ms |"
              + "".join(f" fits ({c}) |" for c in caches))
        for c in contexts:
            for b in batches:
                fb = floor_bytes(s, b, c)
                cols = []
                for cache in caches:
                    need = step_memory_bytes(s, b, c, cache, args.attn)
                    cols.append("yes" if fits and wb + need <= mem else "skip")
                print(f"   | {b} | {c} | {fb['distinct_experts_formula']:.2f} | "
                      f"{fmt_gb(fb['weight_bytes'])} | {fmt_gb(fb['kv_bytes'])} | "
                      f"{fmt_gb(fb['bytes_per_step'])} | {fb['bytes_per_step'] / bw * 1e3:.3f} |"
                      + "".join(f" {x} |" for x in cols))
    return 0


# ----------------------------------------------------------------------------------------------
# GPU part (torch and transformers imported lazily).
# ----------------------------------------------------------------------------------------------

def on_cuda(device):
    return str(device).startswith("cuda")


def sync(torch, device):
    if on_cuda(device):
        torch.cuda.synchronize()


def empty_cache(torch, device):
    if on_cuda(device):
        torch.cuda.empty_cache()


def copy_bandwidth(torch, gib, device, reps=20):
    """Device-to-device copy bandwidth, bytes read + written per second (median of reps)."""
    n = int(gib * (1 << 30))
    a = torch.empty(n, dtype=torch.uint8, device=device)
    a.fill_(1)
    b = torch.empty_like(a)
    ms = median_ms(torch, device, lambda: b.copy_(a), warmup=2, reps=reps)
    del a, b
    empty_cache(torch, device)
    return 2.0 * n / (ms * 1e-3)


def median_ms(torch, device, fn, warmup, reps, before=None):
    """Median ms of fn() over reps runs, CUDA events around each (host clock on the CPU);
    `before` (untimed) runs first, and the GPU is idle when the start event is recorded."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    sync(torch, device)
    cuda = on_cuda(device)
    if cuda:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        if before:
            before()
        sync(torch, device)
        if cuda:
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def build_model(torch, transformers, s, args):
    """The transformers model for shape s, bf16, parameters made on the GPU and filled with random
    normals scaled by 1/sqrt(fan_in) (router rows too, so routing is spread over the experts)."""
    cfg_cls = getattr(transformers, s["config_class"])
    hf = dict(s["hf"])
    theta = hf.pop("rope_theta")
    hf["max_position_embeddings"] = max(hf["max_position_embeddings"], max(args.contexts) + 64)
    cfg = cfg_cls(**hf, rope_parameters={"rope_type": "default", "rope_theta": theta})
    kwargs = dict(dtype=torch.bfloat16, attn_implementation=args.attn)
    if args.experts_impl != "default":
        kwargs["experts_implementation"] = args.experts_impl
    t0 = time.time()
    # Parameters are allocated (and transformers' own init runs) directly on the GPU.
    with torch.device(args.device):
        model = transformers.AutoModelForCausalLM.from_config(cfg, **kwargs)
    gen = torch.Generator(device=args.device)
    gen.manual_seed(args.seed)
    n = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.device.type != torch.device(args.device).type or p.dtype != torch.bfloat16:
                raise RuntimeError(f"parameter {pname} is {p.dtype} on {p.device}, "
                                   f"expected bfloat16 on {args.device}")
            if p.dim() >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]), generator=gen)
            elif pname.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
            n += p.numel()
    model.eval()
    sync(torch, args.device)
    impl = getattr(model.config, "_experts_implementation", None)
    attn = getattr(model.config, "_attn_implementation", None)
    print(f"  built {type(model).__name__}: {n:,} params "
          f"(expected {param_count(s):,}), attn={attn}, experts={impl}, "
          f"{time.time() - t0:.1f} s", flush=True)
    return model, cfg, n, attn, impl


def make_cache(torch, transformers, model, s, kind, batch, context, gen, device):
    """A cache holding `context` random tokens for each of `batch` sequences, and a function that
    puts it back to exactly `context` tokens (run before every step)."""
    cfg = model.config
    shape = (batch, s["kv_heads"], context, s["head_dim"])
    if kind == "dynamic":
        cache = transformers.DynamicCache(config=cfg)
        if len(cache.layers) != s["layers"]:
            raise RuntimeError(f"DynamicCache(config) made {len(cache.layers)} layers, "
                               f"expected {s['layers']}")
        for layer in cache.layers:
            k = torch.randn(shape, dtype=torch.bfloat16, device=device, generator=gen)
            v = torch.randn(shape, dtype=torch.bfloat16, device=device, generator=gen)
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k, v
        if cache.get_seq_length() != context:
            raise RuntimeError(f"DynamicCache holds {cache.get_seq_length()} tokens, "
                               f"expected {context}")

        def reset():
            # Each step concatenates one token; slice it off (a view, no copy) so the next step
            # again reads C tokens and concatenates into a C+1 tensor, as transformers does.
            for layer in cache.layers:
                if layer.keys.shape[-2] != context:
                    layer.keys = layer.keys[:, :, :context]
                    layer.values = layer.values[:, :, :context]
        return cache, reset
    cache = transformers.StaticCache(config=cfg, max_cache_len=context + 1)
    if len(cache.layers) != s["layers"]:
        raise RuntimeError(f"StaticCache made {len(cache.layers)} layers, expected {s['layers']}")
    fake = torch.zeros((batch, s["kv_heads"], 0, s["head_dim"]), dtype=torch.bfloat16,
                       device=device)
    for layer in cache.layers:
        layer.lazy_initialization(fake, fake)
        layer.keys.normal_(generator=gen)
        layer.values.normal_(generator=gen)
        layer.cumulative_length.fill_(context)

    def reset():
        for layer in cache.layers:
            layer.cumulative_length.fill_(context)
    return cache, reset


def measured_distinct(torch, model, step, reset, device):
    """Distinct experts per layer actually routed to in one (untimed) step, from the routers'
    outputs (router_logits, scores, indices); None if the routers can't be found."""
    seen = []
    hooks = []

    def hook(_m, _inp, out):
        try:
            seen.append(int(torch.unique(out[2]).numel()))
        except Exception:  # noqa: BLE001 - a router with another output layout
            pass
    for m in model.modules():
        if type(m).__name__.endswith("TopKRouter"):
            hooks.append(m.register_forward_hook(hook))
    try:
        reset()
        step()
        sync(torch, device)
    finally:
        for h in hooks:
            h.remove()
    return sum(seen) / len(seen) if seen else None


def run_gpu(args, models):
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"hf_decode_bench: needs torch and transformers ({e}); --dry-run works without them",
              file=sys.stderr)
        return 1

    cuda = on_cuda(args.device)
    if cuda and not torch.cuda.is_available():
        print("hf_decode_bench: no CUDA device (use --dry-run for the arithmetic only)",
              file=sys.stderr)
        return 1
    dev = torch.cuda.get_device_name(0) if cuda else "cpu"
    bw = copy_bandwidth(torch, args.copy_gib, args.device)
    print(f"device: {dev}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"D2D copy bandwidth {bw / 1e9:.0f} GB/s ({args.copy_gib:g} GiB copy, read+written)",
          flush=True)
    caches = list(args.caches)
    if args.compile and "static+compile" not in caches:
        caches.append("static+compile")
    results = []
    for name in models:
        s = tiny_shape(SHAPES[name]) if args.tiny else SHAPES[name]
        free, total = torch.cuda.mem_get_info() if cuda else (1 << 50, 1 << 50)
        wb = weight_bytes_total(s)
        print(f"\n== {name}: weights {fmt_gb(wb)} GB, free {fmt_gb(free)} GB of "
              f"{fmt_gb(total)} GB", flush=True)

        def skip_all(reason):
            for c in args.contexts:
                for b in args.batch:
                    for kind in caches:
                        results.append(point_record(name, s, b, c, kind, bw, None, None,
                                                    reason, args, None, None))
        if wb + (2 << 30) > free:
            reason = (f"skipped: OOM / too large (weights {fmt_gb(wb)} GB > free "
                      f"{fmt_gb(free)} GB - 2 GiB)")
            print("  " + reason, flush=True)
            skip_all(reason)
            continue
        try:
            model, _cfg, _n, attn, impl = build_model(torch, transformers, s, args)
        except torch.cuda.OutOfMemoryError as e:
            reason = f"skipped: OOM / too large (building the model: {str(e).splitlines()[0]})"
            print("  " + reason, flush=True)
            skip_all(reason)
            empty_cache(torch, args.device)
            continue
        compiled = [None]  # the torch.compile'd model, made on first use (--compile)
        gen = torch.Generator(device=args.device)
        gen.manual_seed(args.seed + 1)
        with torch.inference_mode():
            for c in args.contexts:
                for b in args.batch:
                    for kind in caches:
                        results.append(run_point(torch, transformers, model, s, name, b, c, kind,
                                                 bw, args, gen, attn, impl, compiled))
        del model, compiled
        import gc
        gc.collect()
        empty_cache(torch, args.device)
    print_table(results, bw, dev)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(dict(device=dev, torch=torch.__version__,
                           transformers=transformers.__version__,
                           copy_bandwidth_gbs=bw / 1e9, copy_bytes=int(args.copy_gib * (1 << 30)),
                           reps=args.reps, warmup=args.warmup, attn_implementation=args.attn,
                           points=results), f, indent=1)
        print(f"wrote {args.json_out}")
    return 0


def point_record(name, s, b, c, kind, bw, step_ms, distinct, status, args, attn, impl):
    fb = floor_bytes(s, b, c)
    fl = fb["bytes_per_step"] / bw * 1e3
    return dict(model=name, batch=b, context=c, cache=kind, framework="transformers",
                attn_implementation=attn or args.attn, experts_implementation=impl,
                step_ms=step_ms, bytes_per_step=fb["bytes_per_step"],
                weight_bytes=fb["weight_bytes"], kv_bytes=fb["kv_bytes"],
                distinct_experts_formula=fb["distinct_experts_formula"],
                distinct_experts_measured=distinct, floor_ms=fl,
                fraction_of_floor=(fl / step_ms) if step_ms else None,
                copy_bandwidth_gbs=bw / 1e9, status=status)


def run_point(torch, transformers, model, s, name, b, c, kind, bw, args, gen, attn, impl,
              compiled_holder):
    import gc

    def done(step_ms, distinct, status):
        rec = point_record(name, s, b, c, kind, bw, step_ms, distinct, status, args, attn, impl)
        if step_ms is None:
            print(f"  B={b:2d} C={c:6d} {kind:14s}: {status}", flush=True)
        else:
            print(f"  B={b:2d} C={c:6d} {kind:14s}: step {step_ms:8.3f} ms, floor "
                  f"{rec['floor_ms']:.3f} ms ({100 * rec['fraction_of_floor']:.1f}% of floor), "
                  f"experts/layer {rec['distinct_experts_formula']:.1f} formula / "
                  + (f"{distinct:.1f}" if distinct is not None else "?") + " measured",
                  flush=True)
        return rec

    gc.collect()
    empty_cache(torch, args.device)
    cache_kind = "static" if kind.startswith("static") else "dynamic"
    cuda = on_cuda(args.device)
    free = torch.cuda.mem_get_info()[0] if cuda else 1 << 50
    reserved_free = (torch.cuda.memory_reserved() - torch.cuda.memory_allocated()) if cuda else 0
    need = step_memory_bytes(s, b, c, cache_kind, args.attn)
    if need > free + reserved_free:
        return done(None, None, f"skipped: OOM / too large (needs ~{fmt_gb(need)} GB, "
                                f"{fmt_gb(free + reserved_free)} GB free)")
    cache = None
    try:
        cache, reset = make_cache(torch, transformers, model, s, cache_kind, b, c, gen,
                                  args.device)
        ids = torch.randint(0, s["vocab"], (b, 1), device=args.device, generator=gen)
        pos = torch.full((b, 1), c, dtype=torch.long, device=args.device)
        fwd = model
        if kind == "static+compile":
            if compiled_holder[0] is None:
                compiled_holder[0] = torch.compile(model, mode="reduce-overhead", dynamic=False)
            fwd = compiled_holder[0]

        def step():
            out = fwd(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True,
                      logits_to_keep=1)
            return out.logits[:, -1, :].argmax(dim=-1)

        distinct = None
        if kind != "static+compile":
            distinct = measured_distinct(torch, model, step, reset, args.device)
        warmup = args.warmup + (3 if kind == "static+compile" else 0)
        ms = median_ms(torch, args.device, step, warmup=warmup, reps=args.reps, before=reset)
        return done(ms, distinct, "ok")
    except torch.cuda.OutOfMemoryError as e:
        return done(None, None, f"skipped: OOM / too large ({str(e).splitlines()[0][:120]})")
    except Exception as e:  # noqa: BLE001 - report the point and go on with the others
        msg = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        if args.verbose:
            import traceback
            traceback.print_exc()
        return done(None, None, msg)
    finally:
        del cache
        gc.collect()
        empty_cache(torch, args.device)


def print_table(results, bw, dev):
    print(f"\nHugging Face transformers decode step (bf16), {dev}, "
          f"copy bandwidth {bw / 1e9:.0f} GB/s")
    print("| model | batch | context | cache | step ms | GB/step | distinct experts/layer "
          "(formula / measured) | floor ms | floor / step | notes |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        dm = r["distinct_experts_measured"]
        step = f"{r['step_ms']:.3f}" if r["step_ms"] is not None else "-"
        frac = f"{100 * r['fraction_of_floor']:.1f}%" if r["fraction_of_floor"] else "-"
        notes = "" if r["status"] == "ok" else r["status"]
        print(f"| {r['model']} | {r['batch']} | {r['context']} | {r['cache']} | {step} | "
              f"{r['bytes_per_step'] / 1e9:.3f} | {r['distinct_experts_formula']:.1f} / "
              + (f"{dm:.1f}" if dm is not None else "-")
              + f" | {r['floor_ms']:.3f} | {frac} | {notes} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODELS,
                   help=f"comma list of {', '.join(SHAPES)}, or all (default {DEFAULT_MODELS})")
    p.add_argument("--batch", "--batches", default="1,8,32")
    p.add_argument("--context", "--contexts", default="1024,32768")
    p.add_argument("--cache", default="dynamic,static",
                   help="comma list of dynamic, static (default both)")
    p.add_argument("--compile", action="store_true",
                   help="also time the static cache under torch.compile(mode='reduce-overhead')")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--experts-impl", default="default",
                   choices=["default", "grouped_mm", "batched_mm", "eager"],
                   help="transformers' experts_implementation (default: its own default)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--copy-gib", type=float, default=1.0,
                   help="size of the D2D copy measuring bandwidth (crosspool-decode-bench uses 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", "--json", default=None)
    p.add_argument("--dry-run", action="store_true",
                   help="print configs and floor arithmetic; no torch needed")
    p.add_argument("--assume-bw-gbs", type=float, default=3000.0,
                   help="dry run: copy bandwidth to assume (GB/s, read+written)")
    p.add_argument("--assume-mem-gib", type=float, default=79.0,
                   help="dry run: device memory to assume (GiB)")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failed points")
    p.add_argument("--tiny", action="store_true",
                   help="toy sizes of the same families: a smoke test of this script")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny)")
    args = p.parse_args(argv)
    models = parse_models(args.model)
    args.batch = parse_list(args.batch, "--batch")
    args.contexts = parse_list(args.context, "--context")
    args.caches = [c.strip() for c in args.cache.split(",") if c.strip()]
    for c in args.caches:
        if c not in ("dynamic", "static"):
            raise SystemExit(f"hf_decode_bench: --cache expects dynamic, static but got '{c}'")
    if args.reps < 1 or args.warmup < 0:
        raise SystemExit("hf_decode_bench: --reps must be >= 1 and --warmup >= 0")
    if args.dry_run:
        return dry_run(args, models, args.batch, args.contexts, args.caches)
    return run_gpu(args, models)


if __name__ == "__main__":
    sys.exit(main())
