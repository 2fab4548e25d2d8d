#!/usr/bin/env python3
"""A straightforward PyTorch implementation of M² (docs/SPEC.md §4–§6 forward, §8 beam search)
— the benchmark's baseline when torch is importable. Same weights (the checkpoint's
safetensors), f32.

    python3 bench/torch_ref.py --checkpoint bench/out/coco-bench.safetensors \
        --features bench/out/features.npy [--threads 2] [--n 2] [--warmup 1] [--vocab V.json]

Written in the reference's style, not optimised: every beam step re-runs the decoder over the
whole prefix (causal mask) and re-projects the encoder outputs into cross-attention keys and
values for every beam (the reference recomputes those per beam per step, docs/SPEC.md §7.2).
Prints one JSON line: {"kind": "baseline", "what", "median_ms", "min_ms", "n", "threads",
"tokens", "caption"}.
"""

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

H, PAD, BOS, EOS = 8, 1, 2, 3


class M2Ref:
    def __init__(self, path):
        sd = load_file(path)
        self.w = {k: torch.from_numpy(v.copy()) for k, v in sd.items() if v.dtype == np.float32 and v.size}
        self.d = self.w["encoder.fc.weight"].shape[0]
        self.dk = self.d // H
        self.m = self.w["encoder.layers.0.mhatt.attention.m_k"].shape[1]

    def lin(self, x, p):
        return F.linear(x, self.w[p + ".weight"], self.w.get(p + ".bias"))

    def ln(self, x, p):
        return F.layer_norm(x, (self.d,), self.w[p + ".weight"], self.w[p + ".bias"], 1e-5)

    def mha(self, q_in, kv_in, mask, p, memory=False):
        """Post-norm MHA; mask [B, nq or 1, nk] bool, True = masked (−∞)."""
        b, nq, d = q_in.shape
        a = p + ".attention"
        q = self.lin(q_in, a + ".fc_q").view(b, nq, H, self.dk).transpose(1, 2)
        k = self.lin(kv_in, a + ".fc_k")
        v = self.lin(kv_in, a + ".fc_v")
        if memory:
            mk = self.w[a + ".m_k"].expand(b, self.m, d) * math.sqrt(self.dk)
            mv = self.w[a + ".m_v"].expand(b, self.m, d) * math.sqrt(self.m)
            k, v = torch.cat([k, mk], 1), torch.cat([v, mv], 1)
            if mask is not None:
                mask = torch.cat([mask, torch.zeros(b, mask.shape[1], self.m, dtype=torch.bool)], -1)
        k = k.view(b, -1, H, self.dk).permute(0, 2, 3, 1)  # [b, h, dk, nk]
        v = v.view(b, -1, H, self.dk).transpose(1, 2)  # [b, h, nk, dk]
        att = torch.matmul(q, k) / math.sqrt(self.dk)
        if mask is not None:
            att = att.masked_fill(mask.unsqueeze(1), float("-inf"))
        o = torch.matmul(torch.softmax(att, -1), v).transpose(1, 2).reshape(b, nq, d)
        return self.ln(q_in + self.lin(o, a + ".fc_o"), p + ".layer_norm")

    def pwff(self, x, p):
        return self.ln(x + self.lin(F.relu(self.lin(x, p + ".fc1")), p + ".fc2"), p + ".layer_norm")

    def encode(self, x):
        """x [1, R, d_in] → levels [3, 1, R, d], mask [1, 1, R] (True = masked, docs/SPEC.md
        §5.2)."""
        out = self.ln(F.relu(self.lin(x, "encoder.fc")), "encoder.layer_norm")
        mask = (out.sum(-1) == 0).unsqueeze(1)
        levels = []
        for i in range(3):
            p = f"encoder.layers.{i}"
            out = self.pwff(self.mha(out, out, mask, p + ".mhatt", memory=True), p + ".pwff")
            levels.append(out)
        return levels, mask

    def decode(self, tokens, levels, mask):
        """Full-prefix decoder: tokens [B, T] → log-probs of the last position [B, V]."""
        b, t = tokens.shape
        q_ok = (tokens != PAD).float().unsqueeze(-1)
        x = self.w["decoder.word_emb.weight"][tokens] + self.w["decoder.pos_emb.weight"][1 : t + 1].unsqueeze(0)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1).unsqueeze(0)
        self_mask = causal | (tokens == PAD).unsqueeze(1)
        enc = [lv.expand(b, -1, -1) for lv in levels]  # the reference repeats them per beam
        enc_mask = mask.expand(b, -1, -1)
        for i in range(3):
            p = f"decoder.layers.{i}"
            s = self.mha(x, x, self_mask, p + ".self_att") * q_ok
            g = 0
            for lvl in range(3):
                c = self.mha(s, enc[lvl], enc_mask, p + ".enc_att") * q_ok
                alpha = torch.sigmoid(self.lin(torch.cat([s, c], -1), f"{p}.fc_alpha{lvl + 1}"))
                g = g + alpha * c
            g = g / math.sqrt(3) * q_ok
            x = self.pwff(g, p + ".pwff") * q_ok
        logits = F.linear(x[:, -1], self.w["decoder.fc.weight"])
        return torch.log_softmax(logits, -1)

    @torch.no_grad()
    def beam_search(self, feats, beam=5, steps=20):
        levels, mask = self.encode(feats.unsqueeze(0))
        lp0 = self.decode(torch.tensor([[BOS]]), levels, mask)[0]
        score, words = torch.topk(lp0, beam)
        seqs = words.unsqueeze(1)
        finished = words == EOS
        v = lp0.shape[0]
        for _ in range(1, steps):
            tokens = torch.cat([torch.full((beam, 1), BOS), seqs], 1)
            lp = self.decode(tokens, levels, mask)
            cand = score.unsqueeze(1) + lp
            frozen = torch.full((v,), -999.0)
            for b in range(beam):
                if finished[b]:
                    cand[b] = frozen
                    cand[b, 0] = score[b]
            score, idx = torch.topk(cand.view(-1), beam)
            parent, word = idx // v, idx % v
            seqs = torch.cat([seqs[parent], word.unsqueeze(1)], 1)
            finished = finished[parent] | (word == EOS)
        best = int(torch.argmax(score))
        return seqs[best].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--vocab")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = M2Ref(a.checkpoint)
    feats = torch.from_numpy(np.load(a.features).astype(np.float32))
    if feats.dim() == 2:
        feats = feats.unsqueeze(0)
    first = None
    for k in range(a.warmup):
        toks = model.beam_search(feats[k % len(feats)])
        first = first or toks
    ms = []
    for k in range(a.n):
        t = time.perf_counter()
        toks = model.beam_search(feats[k % len(feats)])
        ms.append((time.perf_counter() - t) * 1e3)
        first = first or toks
    caption = None
    if a.vocab:
        itos = json.load(open(a.vocab))
        words = []
        for t in first:
            if itos[t] == "<eos>":
                break
            if not words or words[-1] != itos[t]:
                words.append(itos[t])
        caption = " ".join(words).strip()
    print(json.dumps({
        "kind": "baseline",
        "what": f"PyTorch {torch.__version__} f32, {a.threads} threads (full prefix per step, cross K/V per beam per step)",
        "median_ms": float(np.median(ms)), "min_ms": min(ms), "n": a.n, "threads": a.threads,
        "tokens": first, "caption": caption,
    }))


if __name__ == "__main__":
    main()
