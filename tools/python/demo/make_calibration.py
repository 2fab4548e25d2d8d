"""The demo model's int8 calibration images: assets/demo/calib_features.npy.

    python tools/python/demo/make_calibration.py [--out assets/demo] [--images 256]

The region features of the first N *training* scenes (the same scenes, in the same order, that
train.py trained on: make_split is sequential in its seeded generator), never test scenes, so
that the bundled int8 blob (`m2-pack … --calibrate assets/demo/calib_features.npy`) is measured
on images its rounding never saw. Needs numpy and scikit-learn only (no torch).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from regions import extract  # noqa: E402
from scenes import MAX_REGIONS, make_split, split_digits  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
SPLIT_SEED, TRAIN_SEED = 0, 1  # train.py's SEEDS["split"], SEEDS["train"]
N_CALIB = 256


def write_calibration(out: pathlib.Path, n: int = N_CALIB) -> pathlib.Path:
    sp = split_digits(SPLIT_SEED)
    canv, feats, _caps, _meta = make_split(sp["train"], n, TRAIN_SEED)
    for c, f in zip(canv, feats):  # the twin's features, re-extracted as a self-check
        g, _ = extract(c, MAX_REGIONS)
        assert np.array_equal(g.view(np.uint32), f.view(np.uint32))
    path = out / "calib_features.npy"
    np.save(path, feats.astype(np.float32))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    ap.add_argument("--images", type=int, default=N_CALIB)
    a = ap.parse_args()
    p = write_calibration(pathlib.Path(a.out), a.images)
    print(f"wrote {p}: {np.load(p).shape}")


if __name__ == "__main__":
    main()
