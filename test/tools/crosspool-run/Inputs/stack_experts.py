#!/usr/bin/env python3
"""Rewrites a per-expert Hugging Face MoE checkpoint into the stacked layout
(transformers v5 in memory): mlp.experts.gate_up_proj [E, 2I, H] (each
expert's gate rows, then its up rows) and mlp.experts.down_proj [E, H, I].
Standard library only. Usage: stack_experts.py SRC_DIR DST_DIR"""
import json
import re
import shutil
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return header, data


def main(src, dst):
    header, data = read(f"{src}/model.safetensors")
    raw = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}
    out, experts = {}, {}
    for name, info in header.items():
        m = re.match(r"(model\.layers\.\d+\.mlp)\.experts\.(\d+)\.(gate|up|down)_proj\.weight", name)
        if m:
            experts.setdefault(m.group(1), {})[(int(m.group(2)), m.group(3))] = name
        else:
            out[name] = (info["dtype"], info["shape"], raw[name])
    for prefix, parts in experts.items():
        n = 1 + max(e for e, _ in parts)
        g0 = header[parts[(0, "gate")]]
        d0 = header[parts[(0, "down")]]
        i, h = g0["shape"]
        out[f"{prefix}.experts.gate_up_proj"] = (
            g0["dtype"], [n, 2 * i, h],
            b"".join(raw[parts[(e, "gate")]] + raw[parts[(e, "up")]] for e in range(n)))
        out[f"{prefix}.experts.down_proj"] = (
            d0["dtype"], [n] + d0["shape"], b"".join(raw[parts[(e, "down")]] for e in range(n)))
    hdr, blob, off = {}, b"", 0
    for name, (dtype, shape, b) in out.items():
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blob += b
        off += len(b)
    text = json.dumps(hdr).encode()
    text += b" " * (-len(text) % 8)
    with open(f"{dst}/model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)
    shutil.copy(f"{src}/config.json", f"{dst}/config.json")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
