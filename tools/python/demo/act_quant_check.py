"""Would the int8 engine caption like the f32 one? An emulation in float32 with the PyTorch model.

    python tools/python/demo/act_quant_check.py [--checkpoint assets/demo/checkpoint.safetensors]

(i) the model with every int8 weight on the engine's int8 grid (int8_grid.snap_rows; a
checkpoint from train.py --qat-from already is, so this changes nothing there) against (ii) the
same model with every nn.Linear's input also rounded per row (per token) to Q levels,
`s = absmax(row) / Q`, `x = clamp(round_half_away(x / s), -Q, Q) * s`: Q = 32767 (int16
activations) and Q = 127 (int8 activations, the engine today). Prints how many of the 300 test
scenes' beam-5 best captions (collapsed, docs/SPEC.md §11) are identical between (i) and (ii),
and between the unrounded checkpoint and (i).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2_torch import M2, M2Config, beam_search, caption_eval, load_reference  # noqa: E402
from int8_grid import int8_modules, snap_rows  # noqa: E402

A = pathlib.Path(__file__).resolve().parents[3] / "assets" / "demo"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(A / "checkpoint.safetensors"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    cfg = M2Config(**json.load(open(A / "config.json")))
    itos = json.load(open(A / "vocab.json"))
    model = M2(cfg).eval()
    load_reference(model, load_file(a.checkpoint))
    feats = torch.from_numpy(np.load(A / "test_features.npy"))
    state = {"q": None}

    def pre_hook(_module, args):
        return (snap_rows(args[0], state["q"]),) if state["q"] else None

    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_pre_hook(pre_hook)

    def captions():
        return [caption_eval(t, itos) for t in beam_search(model, feats, 5, 20)[0]]

    unsnapped = captions()
    moved = 0
    for m in int8_modules(model).values():
        s = snap_rows(m.weight)
        moved += int((s != m.weight).sum())
        m.weight.copy_(s)
    ref = captions()
    res = {"checkpoint": a.checkpoint, "weights_moved_by_snapping": moved,
           "scenes": len(ref), "same_unsnapped_vs_snapped": sum(x == y for x, y in zip(unsnapped, ref))}
    for q in (32767, 127):
        state["q"] = q
        res[f"same_snapped_vs_act_q{q}"] = sum(x == y for x, y in zip(ref, captions()))
    state["q"] = None
    print(json.dumps(res))


if __name__ == "__main__":
    main()
