"""Prints a .cpplan as one line per table row, for FileCheck.

usage: dump-plan.py PLAN.fbs PLAN.cpplan
Decodes with `flatc --json` (defaults are omitted there, so they are filled
in here exactly as Plan.fbs declares them).
"""
import json
import os
import subprocess
import sys
import tempfile

schema, plan = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as tmp:
    binary = os.path.join(tmp, "plan.bin")
    with open(plan, "rb") as src, open(binary, "wb") as dst:
        dst.write(src.read())
    subprocess.run(["flatc", "--json", "--strict-json", "--raw-binary", "-o",
                    tmp, schema, "--", binary], check=True)
    with open(os.path.join(tmp, "plan.json")) as f:
        p = json.load(f)

for key in ["version", "model_name", "architecture", "checkpoint_dir",
            "vocab_size", "hidden_size", "max_position_embeddings",
            "eos_token_ids", "input_slot", "output_slot"]:
    print(f"{key}: {p.get(key, 0)}")
for i, w in enumerate(p.get("weights", [])):
    # Synthetic weights (no file) print their generator instead.
    source = (f"synthetic seed={w.get('seed', 0)} init={w.get('init', 'Normal')} "
              f"std={w.get('init_std', 0.0):.6g}" if w.get("synthetic", False)
              else f"file={w.get('file', '')} offset={w.get('offset', 0)}")
    print(f"weight {i}: {w['name']} {source} "
          f"nbytes={w.get('nbytes', 0)} dtype={w.get('dtype', 'F32')} "
          f"shape={w.get('shape', [])} pool={w.get('pool', 'KV')}")
for i, s in enumerate(p.get("slots", [])):
    print(f"slot {i}: {s.get('kind', 'TokenIds')} width={s.get('width', 0)} "
          f"pool={s.get('pool', 'KV')}")
for i, c in enumerate(p.get("channels", [])):
    print(f"channel {i}: {c.get('from', 'KV')} -> {c.get('to', 'KV')} "
          f"width={c.get('width', 0)} per_step={c.get('per_step', 0)}")
for i, k in enumerate(p.get("kv_layers", [])):
    print(f"kv_layer {i}: kv_heads={k.get('num_kv_heads', 0)} "
          f"head_dim={k.get('head_dim', 0)}")
for s in p.get("streams", []):
    print(f"stream {s.get('pool', 'KV')}")
    for ins in s.get("instrs", []):
        op = ins.get("op", "Task")
        if op == "Task":
            print(f"  Task {ins.get('kernel', 'None')} in={ins.get('inputs', [])} "
                  f"out={ins.get('outputs', [])} w={ins.get('weights', [])} "
                  f"i={ins.get('iparams', [])} f={ins.get('fparams', [])}")
        else:
            slots = ins.get("inputs", []) + ins.get("outputs", [])
            print(f"  {op} slot={slots} channel={ins.get('channel', -1)} "
                  f"seq={ins.get('seq', 0)}")
