"""Bundle the trained demo model and its test scenes into assets/demo/ (PyTorch side).

    python tools/python/demo/make_assets.py --run /tmp/m2-demo

Regenerates the test scenes (deterministic; only test-split digits), runs the PyTorch model's
beam search (beam 5, 20 steps, docs/SPEC.md §8) on them, and writes:
  checkpoint.safetensors, vocab.json, config.json   the model (reference state_dict names)
  test_scenes.npy     [K,48,48] u8   the scenes' pixels (what the region extractor reads)
  test_features.npy   [K,4,72] f32   region features (regions.py == src/regions/mod.rs)
  test_captions.json  [K][5]         reference captions
  test_digits.json    [K][n]         ground truth digits (label, size, box, source index)
  torch_bs_tokens.npy [K,20] i64, torch_bs_scores.npy [K] f32, torch_captions.json
  torch_metrics.json  BLEU-4 / CIDEr of the PyTorch captions
  scenes/scene_XX.png (48x48 raw) and scenes/scene_XX_x8.png (384x384 for viewing), gallery.png
  calib_features.npy  [256,4,72] f32 the first 256 training scenes (int8 calibration; make_calibration.py)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2_torch import M2, M2Config, beam_search, caption_eval, load_reference  # noqa: E402
from regions import extract  # noqa: E402
from scenes import MAX_REGIONS, make_split, split_digits  # noqa: E402
from train import MAX_LEN, N_TEST, SEEDS, metrics  # noqa: E402
import make_calibration  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
N_PNG = 8


def load_model(run: pathlib.Path):
    cfg = M2Config(**json.load(open(run / "config.json")))
    model = M2(cfg).eval()
    load_reference(model, load_file(str(run / "checkpoint.safetensors")))
    itos = json.load(open(run / "vocab.json"))
    return model, itos


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="/tmp/m2-demo")
    ap.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    run, out = pathlib.Path(a.run), pathlib.Path(a.out)
    (out / "scenes").mkdir(parents=True, exist_ok=True)

    model, itos = load_model(run)
    sp = split_digits(SEEDS["split"])
    canv, feats, caps, meta = make_split(sp["test"], N_TEST, SEEDS["test"])
    # the twin's features are what the bundled file holds; re-extract as a self-check
    for c, f in zip(canv, feats):
        g, _ = extract(c, MAX_REGIONS)
        assert np.array_equal(g.view(np.uint32), f.view(np.uint32))
    t0 = time.time()
    toks, tlp, all_t, all_s = beam_search(model, torch.from_numpy(feats), 5, MAX_LEN)
    dt = time.time() - t0
    hyps = [caption_eval(t, itos) for t in toks]
    m = metrics(caps, hyps)
    m.update({"images": len(hyps), "beam": 5, "max_len": MAX_LEN,
              "exact_match_any_ref": float(np.mean([h in r for h, r in zip(hyps, caps)])),
              "torch_seconds": round(dt, 2)})
    print(json.dumps(m))

    for f in ("checkpoint.safetensors", "vocab.json", "config.json", "train_log.json"):
        shutil.copy(run / f, out / f)
    np.save(out / "test_scenes.npy", canv)
    np.save(out / "test_features.npy", feats)
    json.dump(caps, open(out / "test_captions.json", "w"), indent=0)
    json.dump(meta, open(out / "test_digits.json", "w"))
    np.save(out / "torch_bs_tokens.npy", toks.numpy().astype(np.int64))
    np.save(out / "torch_bs_scores.npy", all_s[:, 0].numpy().astype(np.float32))
    json.dump(hyps, open(out / "torch_captions.json", "w"), indent=0)
    json.dump(m, open(out / "torch_metrics.json", "w"), indent=1)

    # PNGs: raw (what `m2 caption --image` reads) and 8x upscaled for viewing, plus a gallery
    tiles = []
    for i in range(N_PNG):
        Image.fromarray(canv[i]).save(out / "scenes" / f"scene_{i:02d}.png")
        big = Image.fromarray(canv[i]).resize((384, 384), Image.NEAREST)
        big.save(out / "scenes" / f"scene_{i:02d}_x8.png")
        tiles.append(big)
    import textwrap
    W, Hc = 384, 384 + 110
    gal = Image.new("RGB", (4 * W + 5 * 8, 2 * Hc + 3 * 8), (255, 255, 255))
    dr = ImageDraw.Draw(gal)
    from PIL import ImageFont
    font = ImageFont.load_default(size=14)
    for i, t in enumerate(tiles):
        x, y = 8 + (i % 4) * (W + 8), 8 + (i // 4) * (Hc + 8)
        gal.paste(t.convert("RGB"), (x, y))
        lines = [(ln, (0, 0, 160)) for ln in textwrap.wrap(f"model: {hyps[i]}", 48)]
        lines += [(ln, (90, 90, 90)) for ln in textwrap.wrap(f"ref: {caps[i][0]}", 48)]
        for j, (ln, col) in enumerate(lines[:6]):
            dr.text((x + 4, y + 390 + 17 * j), ln, fill=col, font=font)
    gal.save(out / "gallery.png")
    index = [{"png": f"scene_{i:02d}.png", "refs": caps[i], "torch": hyps[i], "digits": meta[i]}
             for i in range(N_PNG)]
    json.dump(index, open(out / "scenes" / "index.json", "w"), indent=1)
    assert (make_calibration.SPLIT_SEED, make_calibration.TRAIN_SEED) == (SEEDS["split"], SEEDS["train"])
    make_calibration.write_calibration(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
