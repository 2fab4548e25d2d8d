"""Train the demo M² on digit scenes (XE, Adam), deterministic given --seed.

    python tools/python/demo/train.py --out /tmp/m2-demo      # ~10 min on 2 cores
    python tools/python/demo/train.py --qat-from assets/demo/checkpoint.safetensors --out /tmp/m2-qat

--qat-from: quantisation-aware fine-tuning of a trained checkpoint (default 3 epochs, lr 1e-4,
no warmup, cosine): every weight m2-pack stores int8 is, in the forward pass, its value on the
engine's int8 grid (int8_grid.py, scale recomputed from the current weights every step), with a
straight-through gradient. The saved checkpoint holds those weights snapped onto the grid, so
packing it at int8 rounds them without error.

Writes to --out: checkpoint.safetensors (reference state_dict names), vocab.json, config.json,
train_log.json. `make_assets.py` then evaluates and bundles into assets/demo/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2_torch import M2, M2Config, beam_search, caption_eval, load_reference  # noqa: E402
from int8_grid import Int8Grid, int8_modules, quantize_rows, snap_fixed_point  # noqa: E402
from scenes import MAX_REGIONS, build_vocab, make_split, split_digits  # noqa: E402
from regions import D_IN  # noqa: E402

N_TRAIN, N_VAL, N_TEST = 20000, 500, 300
SEEDS = {"split": 0, "train": 1, "val": 2, "test": 3}
MAX_LEN = 20  # decoder max_len; pos_rows = 21; beam search runs 20 steps


def datasets():
    sp = split_digits(SEEDS["split"])
    out = {}
    for name, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
        out[name] = make_split(sp[name], n, SEEDS[name])
    return out, sp


def encode(caps, stoi, T):
    """[bos] w... [eos] padded with <pad> to T."""
    ids = np.full((len(caps), T), stoi["<pad>"], dtype=np.int64)
    for i, c in enumerate(caps):
        t = [stoi["<bos>"]] + [stoi.get(w, 0) for w in c.split()] + [stoi["<eos>"]]
        assert len(t) <= T, c
        ids[i, :len(t)] = t
    return ids


def metrics(refs, hyps):
    """BLEU-4 and CIDEr(-D) of pycocoevalcap on whitespace-tokenised, lower-case captions."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        b, _ = Bleu(4).compute_score(gts, res)
    c, _ = Cider().compute_score(gts, res)
    return {"BLEU-4": float(b[3]), "CIDEr": float(c)}


def start_qat(model, ckpt: pathlib.Path, itos, cfg):
    """Load the checkpoint to fine-tune and put its int8 weights on the int8 grid (forward) with
    a straight-through gradient. Returns the checkpoint's train_log.json, if any."""
    side = ckpt.parent
    if (side / "vocab.json").exists():
        assert json.load(open(side / "vocab.json")) == itos, "vocabulary differs from the checkpoint's"
    if (side / "config.json").exists():
        assert json.load(open(side / "config.json")) == cfg.to_dict(), "config differs from the checkpoint's"
    load_reference(model, load_file(str(ckpt)))
    for m in int8_modules(model).values():
        parametrize.register_parametrization(m, "weight", Int8Grid())
    log = side / "train_log.json"
    return json.load(open(log)) if log.exists() else None


def finish_qat(model, probe):
    """Replace every int8 weight by its value on the int8 grid (a fixed point of the rounding)
    and check: re-rounding the saved weights gives the trained q in every row, scales within 1
    ulp, and the model's outputs on `probe` do not change."""
    model.eval()
    trained = {}
    for name, m in int8_modules(model).items():
        trained[name] = m.parametrizations.weight.original.detach().clone()
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        with torch.no_grad():
            m.weight.copy_(snap_fixed_point(m.weight.detach().clone()))
    rows, max_ulp = 0, 0
    for name, m in int8_modules(model).items():
        q0, s0 = quantize_rows(trained[name])
        q1, s1 = quantize_rows(m.weight.detach())
        assert torch.equal(q0, q1), f"{name}: q changed"
        ulp = int((s0.view(torch.int32).long() - s1.view(torch.int32).long()).abs().max())
        assert ulp <= 1, f"{name}: scale moved {ulp} ulp"
        rows += q0.shape[0]
        max_ulp = max(max_ulp, ulp)
    with torch.no_grad():
        out = model(*probe)
        saved = {n: m.weight.detach().clone() for n, m in int8_modules(model).items()}
        for m in int8_modules(model).values():
            m.weight.copy_(snap_fixed_point(m.weight.detach().clone()))
        same = torch.equal(out, model(*probe))
        same = same and all(torch.equal(saved[n], m.weight) for n, m in int8_modules(model).items())
    assert same, "re-snapping changed the model"
    r = {"int8_tensors": len(saved), "int8_rows": rows, "q_identical": True,
         "scale_max_ulp_moved": max_ulp, "outputs_unchanged_by_resnap": same}
    print(json.dumps(r), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/m2-demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qat-from", default=None,
                    help="fine-tune this checkpoint quantisation-aware (the int8 grid) instead of "
                         "training from scratch")
    ap.add_argument("--epochs", type=int, default=None, help="default 20 (--qat-from: 3)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lr", type=float, default=None, help="default 1e-3 (--qat-from: 1e-4)")
    ap.add_argument("--warmup", type=int, default=None, help="default 400 (--qat-from: 0)")
    ap.add_argument("--threads", type=int, default=1,
                    help="1 is fastest on a shared 2-core machine (no OpenMP spin contention)")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--time-only", action="store_true", help="time a few steps and exit")
    a = ap.parse_args()
    for k, scratch, qat in (("epochs", 20, 3), ("lr", 1e-3, 1e-4), ("warmup", 400, 0)):
        if getattr(a, k) is None:
            setattr(a, k, qat if a.qat_from else scratch)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    data, _ = datasets()
    tr_c, tr_f, tr_caps, _ = data["train"]
    va_c, va_f, va_caps, _ = data["val"]
    itos = build_vocab(tr_caps)
    stoi = {w: i for i, w in enumerate(itos)}
    print(f"data {time.time() - t0:.1f}s; vocab {len(itos)}", flush=True)

    cfg = M2Config(d_in=D_IN, d_model=a.d_model, h=a.heads, d_k=a.d_model // a.heads,
                   d_v=a.d_model // a.heads, d_ff=a.d_ff, m=a.m, vocab=len(itos),
                   pos_rows=MAX_LEN + 1, pad=stoi["<pad>"], unk=stoi["<unk>"], bos=stoi["<bos>"],
                   eos=stoi["<eos>"])
    model = M2(cfg)
    base_log = None
    if a.qat_from:
        base_log = start_qat(model, pathlib.Path(a.qat_from), itos, cfg)
    n_par = sum(p.numel() for p in model.parameters())
    print(f"params {n_par}", flush=True)

    T = MAX_LEN + 1
    refs_tok = np.stack([encode(r, stoi, T) for r in tr_caps])  # [N, 5, T]
    feats = torch.from_numpy(tr_f)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.lr,
                           betas=(0.9, 0.98))
    steps_per_epoch = len(tr_caps) // a.batch
    total = steps_per_epoch * a.epochs

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        p = (s - a.warmup) / max(1, total - a.warmup)
        return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    rng = np.random.default_rng(a.seed + 100)
    log = {"config": cfg.to_dict(), "params": n_par, "args": vars(a), "epochs": []}
    step = 0
    t_train = time.time()
    for ep in range(a.epochs):
        model.train()
        perm = rng.permutation(len(tr_caps))
        which = rng.integers(0, refs_tok.shape[1], size=len(tr_caps))
        tot, cnt = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * a.batch:(b + 1) * a.batch]
            tok = torch.from_numpy(refs_tok[idx, which[idx]])
            L = int((tok != cfg.pad).sum(1).max())
            tok = tok[:, :L]
            inp, tgt = tok[:, :-1], tok[:, 1:]
            lp = model(feats[idx], inp)
            loss = F.nll_loss(lp.reshape(-1, cfg.vocab), tgt.reshape(-1), ignore_index=cfg.pad)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            tot += float(loss.detach())
            cnt += 1
            if a.time_only and step == 20:
                dt = (time.time() - t_train) / 20
                print(f"{dt * 1000:.1f} ms/step, {steps_per_epoch} steps/epoch -> "
                      f"{dt * steps_per_epoch:.1f} s/epoch", flush=True)
                return
        model.eval()
        with torch.no_grad():
            vt = torch.from_numpy(np.stack([encode(r, stoi, T) for r in va_caps])[:, 0])
            L = int((vt != cfg.pad).sum(1).max())
            vt = vt[:, :L]
            vl = float(F.nll_loss(model(torch.from_numpy(va_f), vt[:, :-1]).reshape(-1, cfg.vocab),
                                  vt[:, 1:].reshape(-1), ignore_index=cfg.pad))
        e = {"epoch": ep + 1, "train_loss": tot / cnt, "val_loss": vl,
             "elapsed_s": round(time.time() - t_train, 1)}
        if (ep + 1) % 10 == 0 or ep + 1 == a.epochs:
            toks, *_ = beam_search(model, torch.from_numpy(va_f[:200]), 5, MAX_LEN)
            hyps = [caption_eval(t, itos) for t in toks]
            e.update({f"val_{k}": v for k, v in metrics(va_caps[:200], hyps).items()})
            e["val_example"] = [hyps[0], va_caps[0][0]]
        log["epochs"].append(e)
        print(json.dumps(e), flush=True)

    log["train_seconds"] = round(time.time() - t_train, 1)
    if a.qat_from:
        log["qat"] = finish_qat(model, (torch.from_numpy(va_f), vt[:, :-1]))
        log["qat"]["base_sha256"] = hashlib.sha256(pathlib.Path(a.qat_from).read_bytes()).hexdigest()
        log["qat"]["base_train_log"] = base_log
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "checkpoint.safetensors"))
    json.dump(itos, open(out / "vocab.json", "w"))
    json.dump(cfg.to_dict(), open(out / "config.json", "w"), indent=1)
    json.dump(log, open(out / "train_log.json", "w"), indent=1)
    print(f"saved to {out} after {log['train_seconds']} s of training", flush=True)


if __name__ == "__main__":
    main()
