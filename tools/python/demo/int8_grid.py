"""The engine's int8 weight grid, bit-exactly, in float32 (torch).

m2-pack (`src/blob/write.rs` `quantize_rows_i8`) stores every Linear weight, `decoder.fc` and
`decoder.word_emb` as int8 with one scale per row (output channel / word):
`scale = absmax(row) / 127` (f32 division), `q = clamp(round_half_away_from_zero(w / scale),
-127, 127)`, an all-zero row has scale 0 and q 0; the engine reads `f32(q) * scale`.
`snap_rows(w)` is that dequantised value. A checkpoint whose int8 weights equal their own
`snap_rows` loses nothing to int8 weight rounding (train.py --qat-from writes one).
`quantize_rows(x, qmax)` with qmax 32767 / 127 is also the per-row (per-token) activation
rounding the emulation in act_quant_check.py applies to Linear inputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round half away from zero, exactly (Rust's f32::round) for |v| < 2**23.

    (`sign(v) * floor(|v| + 0.5)` is not exact: 0.49999997 + 0.5 rounds to 1.0 in f32.)
    """
    t = torch.trunc(v)
    return t + torch.sign(v) * ((v - t).abs() >= 0.5).to(v.dtype)


def quantize_rows(x: torch.Tensor, qmax: int = 127):
    """(q as float integers, scale [..., 1]): one symmetric scale per row (last dim)."""
    scale = x.abs().amax(-1, keepdim=True) / qmax
    ok = (scale != 0) & torch.isfinite(scale)
    q = round_half_away(x / torch.where(ok, scale, torch.ones_like(scale))).clamp(-qmax, qmax)
    return torch.where(ok, q, torch.zeros_like(q)) + 0.0, scale  # + 0.0: no -0.0


def snap_rows(x: torch.Tensor, qmax: int = 127) -> torch.Tensor:
    """f32(q) * scale: the value the engine computes with."""
    q, scale = quantize_rows(x, qmax)
    return q * scale


class _SnapSTE(torch.autograd.Function):
    """Forward: the int8 grid value; backward: straight through (identity)."""

    @staticmethod
    def forward(ctx, w):
        return snap_rows(w)

    @staticmethod
    def backward(ctx, g):
        return g


class Int8Grid(nn.Module):
    """A torch.nn.utils.parametrize parametrization: the weight as the engine's int8 sees it."""

    def forward(self, w):
        return _SnapSTE.apply(w)


def int8_modules(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module of every weight m2-pack stores int8: all nn.Linear (decoder.fc included)
    and the word embedding."""
    mods = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    return {n: m for n, m in mods.items() if isinstance(m, nn.Linear) or n == "decoder.word_emb"}


def snap_fixed_point(w: torch.Tensor, max_iter: int = 8) -> torch.Tensor:
    """snap_rows repeated until it changes no bit (the scale may move by an ulp once)."""
    for _ in range(max_iter):
        s = snap_rows(w)
        if torch.equal(s.view(torch.int32), w.view(torch.int32)):
            return w
        w = s
    raise RuntimeError("snap_rows did not reach a fixed point")
