#!/usr/bin/env bash
# The root package's test suite (lib, bin, integration and doc tests) cross-built for
# aarch64-unknown-linux-gnu and run under qemu-user: all of it as a Raspberry Pi 5 (cortex-a76:
# NEON + SDOT), the kernel-dependent part again as a Raspberry Pi 4 (cortex-a72: NEON, no
# dotprod; see below). M2_EXPECT_ISA makes the kernel tests check that detection picks
# `dotprod` and `neon` respectively.
#
#   cross/test-aarch64.sh                 # = cross/test-aarch64.sh --release
#   cross/test-aarch64.sh --profile dev   # arguments replace --release and go to `cargo test`
#
# Release by default: qemu runs debug builds very slowly (blob_fuzz alone takes ~6 min per CPU
# model); the host suite covers debug assertions.
#
# Installs the cross toolchain and qemu-user when missing (needs root and apt-get, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
QEMU_BIN=qemu-aarch64
. cross/common.sh
cross_setup "$TARGET" aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross

[ "$#" -gt 0 ] || set -- --release
CARGO=(cargo test -p m2 --target "$TARGET" --config cross/aarch64-qemu.toml "$@")

export M2_TEST_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cross_select
cross_drop_fidelity   # (M2_CROSS_FIDELITY=1 keeps it: ~15 min under qemu)

# The whole suite runs on the Pi 5 model (SDOT). The Pi 4 model (NEON without SDOT) runs what
# depends on the kernel path: the kernels' property tests (every NEON kernel bit for bit against
# the scalar ground truth), parity with the reference (including the int8 engine's bits on every
# path) and the bundled demo's captions. The rest (parser, CLI, regions, and tests/fidelity.rs's
# error tables, ~4 min under qemu) computes the same bits once the kernels do, so a second run
# would repeat the same sums.
SELECT_A72=(--lib)
for t in kernels_props kernels_env parity demo_bundle encode_phases; do
    [ -f "tests/$t.rs" ] && SELECT_A72+=(--test "$t")
done

"${CARGO[@]}" "${SELECT[@]}" --no-run
# run_model CPU:ISA: the tests for that CPU model, then the doc tests
run_model() {
    local cpu=$1 sel
    echo "=== aarch64 under qemu: QEMU_CPU=${cpu%%:*} (expect kernel path ${cpu##*:})"
    if [ "${cpu%%:*}" = cortex-a72 ]; then sel=("${SELECT_A72[@]}"); else sel=("${SELECT[@]}"); fi
    QEMU_CPU="${cpu%%:*}" M2_EXPECT_ISA="${cpu##*:}" "${CARGO[@]}" "${sel[@]}" -- "${CROSS_SKIP[@]}" &&
    QEMU_CPU="${cpu%%:*}" M2_EXPECT_ISA="${cpu##*:}" "${CARGO[@]}" --doc
}
# Both models at once: under qemu most test binaries keep one core busy, and CI's machine has
# two. The Pi 4 model's output is held in a log and printed when both have finished.
a72_log=$(mktemp)
trap 'rm -f "$a72_log"' EXIT
run_model cortex-a72:neon >"$a72_log" 2>&1 &
a72=$!
a76_ok=0
run_model cortex-a76:dotprod || a76_ok=$?
a72_ok=0
wait "$a72" || a72_ok=$?
cat "$a72_log"
[ "$a72_ok" -eq 0 ] || { echo "=== aarch64: the cortex-a72 (Pi 4) run failed" >&2; exit 1; }
[ "$a76_ok" -eq 0 ] || { echo "=== aarch64: the cortex-a76 (Pi 5) run failed" >&2; exit 1; }
echo "=== aarch64: both CPU models passed"
