#!/usr/bin/env python3
"""Generate a COCO-size M² checkpoint, vocabulary and region features for the benchmark.

    python3 bench/gen_coco.py --out bench/out [--seed 20200614] [--images 8]

Writes (deterministic for a given seed):
  coco-bench.safetensors   the reference's exact state_dict: 165 keys, names, shapes and dtypes
                           as docs/SPEC.md §3.1 (38,439,424 f32 numbers, ~154 MB), state
                           buffers included
  coco-vocab.json          the released COCO vocabulary (copied from tests/fixtures)
  features.npy             [images, 50, 2048] f32, non-negative like ReLU'd CNN features; some
                           images have fewer valid regions followed by zero rows
  features-1.npy           [1, 50, 2048], the first image alone (for the peak-RSS run)

The weights are random but shaped like a trained model's: Xavier-uniform matrices (as the
reference's init, which also overwrites pos_emb and word_emb, docs/SPEC.md Q1/Q2), LayerNorm gains
1 ± 0.1, small biases U(−0.05, 0.05), memory slots N(0, 1/d_k) and N(0, 1/m) (the attention
class's init), and a vocabulary read-out with a Zipf-like prior and logits of std ≈ 2, so that
beams are neither uniform noise nor collapsed onto one word (a pure Xavier read-out gives
logits of std ≈ 0.3 over 10,201 words: every beam is a random draw). <eos> is kept unlikely so
every caption decodes 5 live beams for all 20 steps (the engine skips finished beams; the
issue's targets are for the full 20 steps). Nothing here means anything
linguistically; the benchmark only needs the right sizes and non-degenerate beams.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file

D_IN, D, H, DK, DFF, M, V, POS, R = 2048, 512, 8, 64, 2048, 40, 10201, 55, 50
N_ENC = N_DEC = 3
EOS = 3


def xavier(rng, out, inp, shape=None):
    bound = np.sqrt(6.0 / (out + inp))
    return rng.uniform(-bound, bound, size=shape or (out, inp)).astype(np.float32)


def bias(rng, n):
    return rng.uniform(-0.05, 0.05, size=n).astype(np.float32)


def ln(rng, sd, prefix):
    sd[prefix + ".weight"] = (1.0 + rng.uniform(-0.1, 0.1, size=D)).astype(np.float32)
    sd[prefix + ".bias"] = rng.uniform(-0.05, 0.05, size=D).astype(np.float32)


def linear(rng, sd, prefix, out, inp, with_bias=True):
    sd[prefix + ".weight"] = xavier(rng, out, inp)
    if with_bias:
        sd[prefix + ".bias"] = bias(rng, out)


def attention(rng, sd, prefix):
    for p in ("fc_q", "fc_k", "fc_v", "fc_o"):
        linear(rng, sd, f"{prefix}.{p}", D, D)


def pwff(rng, sd, prefix):
    linear(rng, sd, prefix + ".fc1", DFF, D)
    linear(rng, sd, prefix + ".fc2", D, DFF)
    ln(rng, sd, prefix + ".layer_norm")


def state_dict(seed):
    rng = np.random.default_rng(seed)
    sd = {}
    # ---- encoder (docs/SPEC.md §3.1, state_dict order) ----
    for i in range(N_ENC):
        p = f"encoder.layers.{i}"
        sd[p + ".mhatt.attention.m_k"] = (rng.standard_normal((1, M, D)) / np.sqrt(DK)).astype(np.float32)
        sd[p + ".mhatt.attention.m_v"] = (rng.standard_normal((1, M, D)) / np.sqrt(M)).astype(np.float32)
        attention(rng, sd, p + ".mhatt.attention")
        ln(rng, sd, p + ".mhatt.layer_norm")
        pwff(rng, sd, p + ".pwff")
    linear(rng, sd, "encoder.fc", D, D_IN)
    ln(rng, sd, "encoder.layer_norm")
    # ---- decoder ----
    sd["decoder.running_mask_self_attention"] = np.zeros((1, 1, 0), dtype=np.uint8)
    sd["decoder.running_seq"] = np.zeros((1,), dtype=np.int64)
    sd["decoder.word_emb.weight"] = xavier(rng, V, D)
    sd["decoder.pos_emb.weight"] = xavier(rng, POS, D)  # docs/SPEC.md Q1: random, not sinusoidal
    for i in range(N_DEC):
        p = f"decoder.layers.{i}"
        sd[p + ".self_att.running_keys"] = np.zeros((0, D), dtype=np.float32)
        sd[p + ".self_att.running_values"] = np.zeros((0, D), dtype=np.float32)
        attention(rng, sd, p + ".self_att.attention")
        ln(rng, sd, p + ".self_att.layer_norm")
        attention(rng, sd, p + ".enc_att.attention")
        ln(rng, sd, p + ".enc_att.layer_norm")
        pwff(rng, sd, p + ".pwff")
        for a in (1, 2, 3):
            linear(rng, sd, f"{p}.fc_alpha{a}", D, 2 * D)
    # Read-out: random directions, row norms growing with word frequency (Zipf-like prior:
    # the vocab is sorted by frequency), logit std ≈ 2 on LayerNorm-ed inputs. <eos> is made
    # unlikely: the engine stops decoding beams once they have finished, so a caption that ends
    # early costs less; the benchmark measures the case, 5 live beams for all 20 steps.
    rank = np.arange(V, dtype=np.float64)
    gain = 1.0 + 1.5 / np.log(rank + 3.0)
    gain[EOS] = 0.2
    w = rng.standard_normal((V, D)) * (2.0 / np.sqrt(D)) * gain[:, None]
    sd["decoder.fc.weight"] = w.astype(np.float32)
    return sd


def features(seed, images):
    rng = np.random.default_rng(seed + 1)
    valid = [R, 36, R, 10, R, 24, R, 1][:images] + [R] * max(0, images - 8)
    x = np.zeros((images, R, D_IN), dtype=np.float32)
    dim_scale = np.exp(rng.normal(0.0, 0.6, size=D_IN))  # some channels are "hot"
    for k, n in enumerate(valid):
        raw = rng.normal(-0.4, 1.0, size=(n, D_IN)) * dim_scale
        x[k, :n] = np.maximum(raw, 0.0).astype(np.float32)  # ReLU'd: ~35 % non-zero
    return x, valid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    ap.add_argument("--seed", type=int, default=20200614)
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    sd = state_dict(a.seed)
    n = sum(v.size for k, v in sd.items() if v.dtype == np.float32)
    assert len(sd) == 165, len(sd)
    assert n == 38_439_424, n
    ckpt = os.path.join(a.out, "coco-bench.safetensors")
    save_file(sd, ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)

    here = os.path.dirname(os.path.abspath(__file__))
    vocab_src = os.path.join(here, "..", "tests", "fixtures", "coco-vocab.json")
    with open(vocab_src) as f:
        assert len(json.load(f)) == V
    shutil.copyfile(vocab_src, os.path.join(a.out, "coco-vocab.json"))

    x, valid = features(a.seed, a.images)
    np.save(os.path.join(a.out, "features.npy"), x)
    np.save(os.path.join(a.out, "features-1.npy"), x[:1])
    print(f"wrote {ckpt} ({os.path.getsize(ckpt):,} bytes, {len(sd)} keys, {n:,} f32 numbers), "
          f"features {x.shape} valid regions {valid}", file=sys.stderr)


if __name__ == "__main__":
    main()
