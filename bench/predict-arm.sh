#!/usr/bin/env bash
# Predicted Raspberry Pi 4 / Pi 5 ms per caption (issue 15): llvm-mca on the kernels' compiled
# inner loops, × multiply-adds per caption, against each board's clock and memory bandwidth.
#
#   bash bench/predict-arm.sh            # prints the Markdown tables (README "predicted")
#   CARGO_TARGET_DIR=/tmp/t bash bench/predict-arm.sh
#
# Needs: rustup with the aarch64-unknown-linux-gnu target, the aarch64 cross gcc and qemu-user
# (cross/README.md; installed here if missing, as cross/test-aarch64.sh does), python3 with
# bench/requirements.txt (pip-installed if missing), and llvm-mca 19 — Debian 12 (bookworm)
# main's `llvm-19` package, 1:19.1.7-3~deb12u1, installed with apt-get if missing (root, or
# sudo). llvm-mca 14 (bookworm's default `llvm`) has no model for the A76 class at all
# (cortex-a76 and neoverse-n1 both fall back to the Cortex-A57 model there); 19 has Neoverse N1.
# Override with MCA=/path/to/llvm-mca. Not run in CI. Takes ~8 min (two aarch64 release builds,
# the COCO-size checkpoint once, and four short captions under qemu-user).
#
# Steps: (1) `cargo rustc --release --lib --target aarch64-unknown-linux-gnu -- --emit asm
# -C codegen-units=1` (the default target CPU, as the cross build in cross/README.md ships;
# one codegen unit so the asm is one file); (2) bench/mca_loops.py cuts the innermost multiply
# loops out of m2::kernels::neon::{gemm_i8, gemm_i8_dot, gemm_f32, gemm_f16} by label;
# (3) the rest of a caption: bench/gen_coco.py's COCO-size checkpoint (into $OUT, default
# bench/out, once) packed to int8, the aarch64 `m2` built and run under qemu-user per board
# core, and bench/rest_profile.py times every block it executes outside the GEMM kernels with
# llvm-mca; (4) bench/predict_arm.py runs llvm-mca per loop and core and prints the tables;
# (5) the same for 32-bit Pi OS on a Pi 4 (bench/predict_armv7.py: the armv7 build's dsp and
# scalar int8 tile loops and its rest under qemu-arm; ~8 min more, M2_PREDICT_ARMV7=0 skips it).
set -euo pipefail
REST=()
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

QEMU_BIN=qemu-aarch64
. cross/common.sh
cross_setup "$TARGET" aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross >&2
cargo rustc --release --lib --target "$TARGET" -q -- --emit asm -C codegen-units=1 >&2
ASM=$(ls -t "$CARGO_TARGET_DIR/$TARGET"/release/deps/m2-*.s | head -1)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 bench/mca_loops.py "$ASM" "$WORK/loops" > "$WORK/loops.jsonl"

# (3) the rest, from the blocks the aarch64 binary executes
OUT=${OUT:-bench/out}
python3 -c "import numpy, safetensors" 2>/dev/null || python3 -m pip install -q -r bench/requirements.txt >&2
[ -f "$OUT/coco-bench.safetensors" ] && [ -f "$OUT/features-1.npy" ] || python3 bench/gen_coco.py --out "$OUT" >&2
cargo build --release -q -p m2-tools --bin m2-pack >&2
BLOB=$WORK/coco-int8.m2
"$CARGO_TARGET_DIR/release/m2-pack" "$OUT/coco-bench.safetensors" --vocab "$OUT/coco-vocab.json" \
    --dtype int8 -o "$BLOB" --heads 8 --regions 50 >/dev/null
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    cargo build --release -q --target "$TARGET" --bin m2 >&2
for board in "Pi 4:cortex-a72:cortex-a72" "Pi 5:cortex-a76:neoverse-n1"; do
    IFS=: read -r name cpu mcpu <<<"$board"
    python3 bench/rest_profile.py --binary "$CARGO_TARGET_DIR/$TARGET/release/m2" --arch aarch64 \
        --model "$BLOB" --features "$OUT/features-1.npy" --env "QEMU_CPU=$cpu" --mcpu "$mcpu" \
        --mca "$MCA" --json >"$WORK/rest-$cpu.json"
    REST+=(--rest "$name=$WORK/rest-$cpu.json")
done

echo "<!-- bench/predict-arm.sh at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version) -->"
python3 bench/predict_arm.py "$WORK/loops.jsonl" --mca "$MCA" "${REST[@]}" "$@"

# (5) 32-bit Pi OS (armv7) on a Pi 4: the dsp and scalar int8 tile loops of the armv7 library's
# asm, the armv7 binary's rest under qemu-arm, bench/predict_armv7.py. M2_PREDICT_ARMV7=0 skips.
if [ "${M2_PREDICT_ARMV7:-1}" != 0 ]; then
    T7=armv7-unknown-linux-gnueabihf
    QEMU_BIN=qemu-arm
    cross_setup "$T7" arm-linux-gnueabihf-gcc /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 \
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross >&2
    cargo rustc --release --lib --target "$T7" --config cross/armv7-qemu.toml -q -- --emit asm \
        -C codegen-units=1 >&2
    ASM7=$(ls -t "$CARGO_TARGET_DIR/$T7"/release/deps/m2-*.s | head -1)
    cargo build --release -q --target "$T7" --config cross/armv7-qemu.toml --bin m2 >&2
    python3 bench/rest_profile.py --binary "$CARGO_TARGET_DIR/$T7/release/m2" --arch armv7 \
        --model "$BLOB" --features "$OUT/features-1.npy" --env QEMU_CPU=cortex-a15 \
        --mcpu cortex-a72 --mca "$MCA" --json >"$WORK/rest-armv7.json"
    echo
    python3 bench/predict_armv7.py "$ASM7" --mca "$MCA" --rest "$WORK/rest-armv7.json" \
        --workdir "$WORK"
fi
