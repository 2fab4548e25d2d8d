#!/usr/bin/env python3
"""Turn the JSON lines bench/coco.sh collected into the Markdown report (stdout).

Each input line is {"kind": ..., ...}: "bench" (one `m2 bench --json` object: machine, model,
settings, rows), "baseline" (the in-run baseline's ms/caption), "rss" (a /usr/bin/time -v run
of the CLI).
"""

import json
import sys

MB = 1e6
MIB = 1 << 20


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt_mb(b):
    return f"{b / MB:.1f} MB"


def main():
    lines = load(sys.argv[1])
    benches = [r for r in lines if r["kind"] == "bench"]
    base = next((r for r in lines if r["kind"] == "baseline"), None)
    rss = {(r["dtype"], r["images"]): r for r in lines if r["kind"] == "rss"}
    machine = benches[0]["machine"]
    settings = benches[0]["settings"]
    rows = [dict(r, blob_bytes=b["model"]["blob_bytes"]) for b in benches for r in b["rows"]]
    read = machine["read_gb_per_s"] * 1e9
    base_ms = base["median_ms"] if base else None
    scalar = {(r["dtype"], r["threads"]): r["ms_per_caption"] for r in rows if r["kernel"] == "scalar"}
    out = []
    p = out.append

    p(f"Machine: {machine['cpu']}, {machine['cores']} cores, caches {', '.join(machine['caches'])}; "
      f"one core reads memory at {machine['read_gb_per_s']:.1f} GB/s; kernel paths "
      f"{', '.join(machine['kernel_paths'])}. `m2 bench`: beam {settings['beam']}, {settings['max_len']} steps, "
      f"median of {settings['n']} captions after {settings['warmup']} warm-up, 50-region images.")
    p("")
    if base:
        p(f"Baseline (same run): {base['what']} — **{base['median_ms']:.0f} ms/caption** "
          f"(median of {base['n']}, min {base['min_ms']:.0f}).")
        p("")
    p("| dtype | kernels | threads | ms/caption (min–max) | vs baseline | vs scalar | encoder ms | ms/step | "
      "linear | other | GMAC/s | weight GB/s | read-stream floor | blob |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["ms_per_caption"]
        floor = r["weight_bytes_per_caption"] / read * 1e3
        vs = f"{base_ms / ms:.1f}×" if base_ms else "—"
        sc = scalar.get((r["dtype"], r["threads"]))
        vs_sc = f"{sc / ms:.1f}×" if sc else "—"
        p(f"| {r['dtype']} | {r['kernel']} | {r['threads']} | **{ms:.1f}** ({r['ms_min']:.1f}–{r['ms_max']:.1f}) | "
          f"{vs} | {vs_sc} | {r['encoder_ms']:.1f} | {r['ms_per_step']:.2f} | {r['step_linear_ms']:.2f} | "
          f"{r['step_other_ms']:.2f} | {r['gmac_per_s']:.1f} | {r['weight_gb_per_s']:.2f} | "
          f"{floor:.1f} ms ({ms / floor:.2f}×) | {fmt_mb(r['blob_bytes'])} |")
    p("")
    p(f"Multiply-adds per caption: {rows[0]['macs_per_caption'] / 1e9:.2f} G; workspace "
      f"{rows[0]['workspace_bytes']:,} bytes. ms/step = each caption's (total − its encoder) / steps, median; linear = the step's "
      "linear layers timed alone (`Kernels::linear`); other = attention, softmax, LayerNorm, gates, "
      "log-softmax, top-k.")
    p("")
    if rss:
        p("Peak RSS of the CLI (`/usr/bin/time -v m2 caption … -q`, all cores), one image and eight images:")
        p("")
        p("| dtype | blob | peak RSS, 1 image | peak RSS, 8 images | RSS − blob (1 image) | CLI wall, 8 images |")
        p("|---|---|---|---|---|---|")
        for dt in ("F32", "F16", "I8"):
            a, b = rss.get((dt, 1)), rss.get((dt, 8))
            if not a:
                continue
            eight = fmt_mb(b["max_rss_bytes"]) if b else "—"
            wall = f"{b['wall_s']:.2f} s" if b else "—"
            p(f"| {dt.lower().replace('i8', 'int8')} | {fmt_mb(a['blob_bytes'])} | {fmt_mb(a['max_rss_bytes'])} | "
              f"{eight} | {(a['max_rss_bytes'] - a['blob_bytes']) / MB:+.1f} MB | {wall} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
