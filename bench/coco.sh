#!/usr/bin/env bash
# COCO-size end-to-end benchmark of m2 (issue 6, "Benchmarks"). See bench/README.md.
#
#   bash bench/coco.sh                 # everything, ~5 min on a 2-core x86_64
#   N=32 WARMUP=3 bash bench/coco.sh   # more timed captions per configuration (default 16, 2)
#
# Generates the checkpoint/vocab/features under bench/out/ if missing, packs f32/f16/int8 blobs
# with m2-pack, then in ONE run measures: `m2 bench --model` on each blob (every kernel path this
# CPU has, 1 thread and all cores: ms per caption with beam 5 and 20 steps, encoder, decoder step
# split into linear layers and the rest, GMAC/s, weight GB/s, memory read bandwidth), the in-run
# baseline (PyTorch f32 at 2 threads if $TORCH_PYTHON — default python3 — imports torch, else the
# scalar engine, f32), and the CLI's peak RSS (/usr/bin/time -v). Prints the Markdown report and
# keeps it in bench/out/report-<time>.md (raw figures: bench/out/results-<time>.jsonl).
# `m2 bench` alone (no model: a built-in COCO-size one) is what a Pi user runs.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bench/out
N=${N:-16}
WARMUP=${WARMUP:-2}
BASE_N=${BASE_N:-3}
ALL=$(nproc)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/results-$STAMP.jsonl
: >"$RES"
say() { echo "[coco.sh] $*" >&2; }

# ---- tools ---------------------------------------------------------------------------------
if ! python3 -c "import numpy, safetensors" 2>/dev/null; then
    say "installing bench/requirements.txt"
    python3 -m pip install -q -r bench/requirements.txt
fi
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time"
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
say "building (release)"
cargo build --release -q -p m2-tools --bin m2-pack
cargo build --release -q --bin m2

# ---- data ----------------------------------------------------------------------------------
CKPT=$OUT/coco-bench.safetensors
if [ ! -f "$CKPT" ] || [ ! -f "$OUT/features.npy" ]; then
    say "generating the COCO-size checkpoint and features"
    python3 bench/gen_coco.py --out "$OUT"
fi
for dt in f32 f16 int8; do
    blob=$OUT/coco-$dt.m2
    if [ ! -f "$blob" ] || [ "$CKPT" -nt "$blob" ]; then
        say "packing $dt"
        "$BIN/m2-pack" "$CKPT" --vocab "$OUT/coco-vocab.json" --dtype $dt -o "$blob" --heads 8 --regions 50 >/dev/null
    fi
done

# ---- the engine: m2 bench on each blob (every kernel path, 1 thread and all cores) -------------
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before the run: $LOAD"
for dt in int8 f16 f32; do
    say "m2 bench: $dt, every kernel path, threads 1,$ALL, $WARMUP warm-up + $N timed captions"
    "$BIN/m2" bench --model "$OUT/coco-$dt.m2" --kernel all --threads "1,$ALL" -n "$N" \
        --warmup "$WARMUP" --json -q |
        python3 -c 'import json,sys; v=json.load(sys.stdin); v["kind"]="bench"; print(json.dumps(v))' >>"$RES"
done

# ---- baseline, same run ----------------------------------------------------------------------
TORCH_PYTHON=${TORCH_PYTHON:-python3}
if "$TORCH_PYTHON" -c "import torch, numpy, safetensors" 2>/dev/null; then
    say "baseline: PyTorch f32, 2 threads, $BASE_N captions ($TORCH_PYTHON)"
    "$TORCH_PYTHON" bench/torch_ref.py --checkpoint "$CKPT" --features "$OUT/features.npy" --threads 2 \
        --n "$BASE_N" --warmup 1 --vocab "$OUT/coco-vocab.json" >>"$RES"
else
    say "baseline: PyTorch not importable -> the scalar engine (M2_KERNEL=scalar), f32, $ALL threads, $BASE_N captions"
    "$BIN/m2" bench --model "$OUT/coco-f32.m2" --kernel scalar --threads "$ALL" -n "$BASE_N" --warmup 1 --json -q |
        python3 -c 'import json,sys; v=json.load(sys.stdin); r=v["rows"][0]; r.update(kind="baseline", median_ms=r["ms_per_caption"], min_ms=r["ms_min"], n=v["settings"]["n"], what="m2 scalar kernels, f32, %d threads" % r["threads"]); print(json.dumps(r))' >>"$RES"
fi

# ---- peak RSS of the CLI ---------------------------------------------------------------------
for dt in f32 f16 int8; do
    blob=$OUT/coco-$dt.m2
    for feats in features-1 features; do
        say "peak RSS: m2 caption, $dt, $feats.npy"
        /usr/bin/time -v "$BIN/m2" caption --model "$blob" --features "$OUT/$feats.npy" -q \
            >/dev/null 2>"$OUT/time-$dt-$feats.txt"
        python3 - "$OUT/time-$dt-$feats.txt" "$dt" "$feats" "$(stat -c %s "$blob")" >>"$RES" <<'EOF'
import json, re, sys
t = open(sys.argv[1]).read()
kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
dt = {"f32": "F32", "f16": "F16", "int8": "I8"}[sys.argv[2]]
print(json.dumps({"kind": "rss", "dtype": dt, "images": 1 if sys.argv[3] == "features-1" else 8,
                  "max_rss_bytes": kb * 1024, "wall_s": wall, "blob_bytes": int(sys.argv[4])}))
EOF
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average after the run: $LOAD_AFTER"
REPORT=$OUT/report-$STAMP.md
{
    echo "<!-- bash bench/coco.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), N=$N WARMUP=$WARMUP, load average before $LOAD, after $LOAD_AFTER, git $(git rev-parse --short HEAD 2>/dev/null || echo '?') -->"
    python3 bench/report.py "$RES"
} >"$REPORT"
cat "$REPORT"
say "report: $REPORT  (raw: $RES)"
