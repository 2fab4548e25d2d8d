#!/usr/bin/env bash
# COCO-size end-to-end benchmark of m2 (issue 6, "Benchmarks"). See bench/README.md.
#
#   bash bench/coco.sh                 # everything, ~5 min on a 2-core x86_64
#   N=32 WARMUP=3 bash bench/coco.sh   # more timed captions per configuration (default 16, 2)
#
# Generates the checkpoint/vocab/features under bench/out/ if missing, packs f32/f16/int8 blobs
# with m2-pack, then in ONE run measures: memcpy bandwidth and one core's peak MAC rates, ms per
# caption (beam 5, 20 steps, encoder included) per dtype at 1 thread and at all cores (in-process
# timing by examples/bench_caption.rs: no process start or page-in inside the timed region), the
# in-run baseline (PyTorch f32 at 2 threads if $TORCH_PYTHON — default python3 — imports torch,
# else the scalar engine, f32), the CLI's peak RSS (/usr/bin/time -v), and the workspace bytes
# (`m2 info`). Prints the Markdown report and keeps it in bench/out/report-<time>.md (raw figures:
# bench/out/results-<time>.jsonl).
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
cargo build --release -q --example bench_caption

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

# ---- machine -------------------------------------------------------------------------------
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
say "load average before the run: $LOAD"
MEMCPY=$("$BIN/examples/bench_caption" memcpy --mb 256)
PEAK=$("$BIN/examples/bench_caption" peak)
python3 - "$MEMCPY" "$PEAK" "$CPU" "$ALL" "$LOAD" >>"$RES" <<'EOF'
import json, sys
m = json.loads(sys.argv[1]); m.update(json.loads(sys.argv[2]))
m.update(kind="machine", cpu=sys.argv[3], nproc=int(sys.argv[4]), load=sys.argv[5])
print(json.dumps(m))
EOF

# ---- workspace bytes as the CLI reports them -----------------------------------------------
for dt in f32 f16 int8; do
    blob=$OUT/coco-$dt.m2
    "$BIN/m2" info --model "$blob" --beam 5 >"$OUT/info-$dt.txt"
    "$BIN/m2-pack" inspect "$blob" >"$OUT/inspect-$dt.txt"
    python3 - "$OUT/info-$dt.txt" "$dt" >>"$RES" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"workspace[^\n]*?([\d,_]+)\s*bytes", text, re.I)
if not m:
    sys.exit("cannot find the workspace bytes in m2 info's output:\n" + text)
dt = {"f32": "F32", "f16": "F16", "int8": "I8"}[sys.argv[2]]
print(json.dumps({"kind": "info", "dtype": dt, "workspace_bytes": int(re.sub(r"[,_]", "", m.group(1)))}))
EOF
done

# ---- ms per caption --------------------------------------------------------------------------
# int8 runs on the detected path and, where that is AVX-VNNI, also on plain AVX2 (the issue's
# machine class: AVX2 without VNNI), in the same run.
INT8_KERNELS=default
if grep -qw avx_vnni /proc/cpuinfo 2>/dev/null; then INT8_KERNELS="default avx2"; fi
for dt in int8 f16 f32; do
    kernels=default
    [ "$dt" = int8 ] && kernels=$INT8_KERNELS
    for kern in $kernels; do
        KENV=(env -u M2_KERNEL)
        [ "$kern" != default ] && KENV=(env M2_KERNEL="$kern")
        for t in $(printf '%s\n' 1 "$ALL" | sort -un); do
            say "caption latency: $dt, kernels $kern, $t thread(s), $WARMUP warm-up + $N timed captions"
            "${KENV[@]}" "$BIN/examples/bench_caption" caption --model "$OUT/coco-$dt.m2" --features "$OUT/features.npy" \
                --n "$N" --warmup "$WARMUP" --threads "$t" --beam 5 --max-len 20 |
                python3 -c 'import json,sys; r=json.load(sys.stdin); r["kind"]="caption"; print(json.dumps(r))' >>"$RES"
            "${KENV[@]}" "$BIN/examples/bench_caption" linears --model "$OUT/coco-$dt.m2" --threads "$t" --reps 50 |
                python3 -c 'import json,sys; r=json.load(sys.stdin); r["kind"]="linears"; print(json.dumps(r))' >>"$RES"
        done
    done
done

# ---- baseline, same run ----------------------------------------------------------------------
TORCH_PYTHON=${TORCH_PYTHON:-python3}
if "$TORCH_PYTHON" -c "import torch, numpy, safetensors" 2>/dev/null; then
    say "baseline: PyTorch f32, 2 threads, $BASE_N captions ($TORCH_PYTHON)"
    "$TORCH_PYTHON" bench/torch_ref.py --checkpoint "$CKPT" --features "$OUT/features.npy" --threads 2 \
        --n "$BASE_N" --warmup 1 --vocab "$OUT/coco-vocab.json" >>"$RES"
else
    say "baseline: PyTorch not importable -> the scalar engine (M2_KERNEL=scalar), f32, $ALL threads, $BASE_N captions"
    M2_KERNEL=scalar "$BIN/examples/bench_caption" caption --model "$OUT/coco-f32.m2" --features "$OUT/features.npy" \
        --n "$BASE_N" --warmup 1 --threads "$ALL" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); r["kind"]="baseline"; r["what"]="m2 scalar kernels (M2_KERNEL=scalar), f32, %d threads" % r["threads"]; print(json.dumps(r))' >>"$RES"
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
