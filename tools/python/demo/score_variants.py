"""BLEU-4 / CIDEr of every quantisation variant `examples/int8_fidelity.rs` wrote, as a table.

    cargo run --release --example int8_fidelity -- --out-dir /tmp/m2-int8-fidelity
    python tools/python/demo/score_variants.py /tmp/m2-int8-fidelity [--refs assets/demo/test_captions.json]

Prints one Markdown row per variant (in the order the example ran them): identical captions
against f32, how many of the differing ones are near-ties, the largest caption-word log-prob
error, blob bytes, BLEU-4 and CIDEr against the reference captions.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import metrics  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--refs", default=str(ROOT / "assets" / "demo" / "test_captions.json"))
    a = ap.parse_args()
    refs = json.load(open(a.refs))
    rows = sorted(pathlib.Path(a.dir).glob("*.json"), key=lambda p: p.stat().st_mtime)
    print("| variant | what | identical captions | differing (near-ties) | max caption-word "
          "log-prob error | blob bytes | BLEU-4 | CIDEr |")
    print("|---|---|---|---|---|---|---|---|")
    for p in rows:
        v = json.load(open(p))
        n = len(v["captions"])
        m = metrics(refs, v["captions"])
        print(f"| {v['variant']} | {v['what']} | {v['same']}/{n} ({v['same'] / n:.1%}) | "
              f"{n - v['same']} ({v['near_ties']}) | {v['max_word_err']:.2e} | {v['bytes']} | "
              f"{m['BLEU-4']:.4f} | {m['CIDEr']:.4f} |")


if __name__ == "__main__":
    main()
