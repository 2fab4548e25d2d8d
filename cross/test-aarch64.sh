#!/usr/bin/env bash
# The root package's whole test suite (lib, bin, integration and doc tests) cross-built for
# aarch64-unknown-linux-gnu and run under qemu-user twice: as a Raspberry Pi 4 (cortex-a72: NEON,
# no dotprod) and as a Raspberry Pi 5 (cortex-a76: NEON + SDOT). M2_EXPECT_ISA makes the kernel
# tests check that detection picks `neon` and `dotprod` respectively.
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
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
    || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
    echo "cross/test-aarch64.sh: installing gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

[ "$#" -gt 0 ] || set -- --release
CARGO=(cargo test -p m2 --target "$TARGET" --config cross/aarch64-qemu.toml "$@")

# Tests that exec the `m2` binary (CARGO_BIN_EXE_m2) cannot run here: without binfmt_misc the
# host kernel cannot start an aarch64 ELF that a test spawns. A test file that prefixes its
# commands with $M2_TEST_RUNNER (when set) is kept.
export M2_TEST_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
SELECT=(--lib --bins)
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    if grep -q CARGO_BIN_EXE "$f" && ! grep -q M2_TEST_RUNNER "$f"; then
        echo "cross/test-aarch64.sh: skipping tests/$name.rs (spawns the m2 binary)" >&2
    else
        SELECT+=(--test "$name")
    fi
done

# tests/demo_fidelity.rs (300 scenes x 4 packings, ~700 s under qemu) runs on the Pi 5 model
# only: its captions follow from the kernels, and every NEON/SDOT kernel is property-tested bit
# for bit against the scalar ground truth on both CPU models (tests/kernels_props.rs), so the
# Pi 4 run would repeat the same sums.
SELECT_A72=()
for t in "${SELECT[@]}"; do [ "$t" = demo_fidelity ] && unset 'SELECT_A72[-1]' || SELECT_A72+=("$t"); done

"${CARGO[@]}" "${SELECT[@]}" --no-run
for cpu in cortex-a72:neon cortex-a76:dotprod; do
    echo "=== aarch64 under qemu: QEMU_CPU=${cpu%%:*} (expect kernel path ${cpu##*:})"
    if [ "${cpu%%:*}" = cortex-a72 ]; then sel=("${SELECT_A72[@]}"); else sel=("${SELECT[@]}"); fi
    QEMU_CPU="${cpu%%:*}" M2_EXPECT_ISA="${cpu##*:}" "${CARGO[@]}" "${sel[@]}"
    QEMU_CPU="${cpu%%:*}" M2_EXPECT_ISA="${cpu##*:}" "${CARGO[@]}" --doc
done
echo "=== aarch64: both CPU models passed"
