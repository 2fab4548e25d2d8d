#!/usr/bin/env bash
# Predicted Raspberry Pi 4 / Pi 5 ms per caption (issue 15): llvm-mca on the kernels' compiled
# inner loops, × multiply-adds per caption, against each board's clock and memory bandwidth.
#
#   bash bench/predict-arm.sh            # prints the Markdown tables (README "predicted")
#   CARGO_TARGET_DIR=/tmp/t bash bench/predict-arm.sh
#
# Needs: rustup with the aarch64-unknown-linux-gnu target (installed here if missing; only the
# library is compiled, nothing is linked, so no cross gcc), python3, and llvm-mca 19 — Debian 12
# (bookworm) main's `llvm-19` package, 1:19.1.7-3~deb12u1, installed with apt-get if missing
# (root, or sudo). llvm-mca 14 (bookworm's default `llvm`) has no model for the A76 class at all
# (cortex-a76 and neoverse-n1 both fall back to the Cortex-A57 model there); 19 has Neoverse N1.
# Override with MCA=/path/to/llvm-mca. Not run in CI. Takes ~5 min (one aarch64 release build).
#
# Steps: (1) `cargo rustc --release --lib --target aarch64-unknown-linux-gnu -- --emit asm
# -C codegen-units=1` (the default target CPU, as the cross build in cross/README.md ships;
# one codegen unit so the asm is one file); (2) bench/mca_loops.py cuts the innermost multiply
# loops out of m2::kernels::neon::{gemm_i8, gemm_i8_dot, gemm_f32, gemm_f16} by label;
# (3) bench/predict_arm.py runs llvm-mca per loop and core and prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

MCA="${MCA:-}"
if [ -z "$MCA" ]; then
    for m in llvm-mca-19 /usr/lib/llvm-19/bin/llvm-mca; do
        command -v "$m" >/dev/null 2>&1 && { MCA="$m"; break; }
    done
fi
if [ -z "$MCA" ]; then
    echo "predict-arm: installing llvm-19 (Debian bookworm) for llvm-mca 19" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y llvm-19 >&2
    MCA=/usr/lib/llvm-19/bin/llvm-mca
fi
"$MCA" --version | grep -q "LLVM version 19" || echo "predict-arm: warning: $MCA is not llvm-mca 19; figures may differ" >&2

rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || rustup target add "$TARGET" >&2
cargo rustc --release --lib --target "$TARGET" -q -- --emit asm -C codegen-units=1 >&2
ASM=$(ls -t "$CARGO_TARGET_DIR/$TARGET"/release/deps/m2-*.s | head -1)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 bench/mca_loops.py "$ASM" "$WORK/loops" > "$WORK/loops.jsonl"
echo "<!-- bench/predict-arm.sh at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version) -->"
python3 bench/predict_arm.py "$WORK/loops.jsonl" --mca "$MCA" "$@"
