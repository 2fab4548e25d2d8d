#!/usr/bin/env bash
# The root package's test suite (lib, bin, integration and doc tests) cross-built for 32-bit
# Raspberry Pi OS (armv7-unknown-linux-gnueabihf, cortex-a7 code: VFP, no NEON; the int8
# linears on the `dsp` path's `sxtb16` + `smlad`, the rest scalar) and run under qemu-arm as a
# Cortex-A7 (the Pi 2's core; QEMU_CPU=cortex-a15 models the same ISA). Kernel detection must
# pick `dsp` (M2_EXPECT_ISA), and tests/kernels_props.rs checks it against scalar bit for bit.
#
#   cross/test-armv7.sh                 # = cross/test-armv7.sh --release
#   cross/test-armv7.sh --profile dev   # arguments replace --release and go to `cargo test`
#
# tests/demo_fidelity.rs is left out (M2_CROSS_FIDELITY=1 runs it too): it checks the
# int8/f16 captions, whose kernels give the same bits on every target: the scalar f32/f16 code
# is the same source (no fast-math: the compiler may not reorder float sums), and the dsp int8
# path the same integers and dequantisation, which tests/kernels_props.rs checks here.
#
# Installs the cross toolchain and qemu-user when missing (needs root and apt-get, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=armv7-unknown-linux-gnueabihf
QEMU_BIN=qemu-arm
. cross/common.sh
cross_setup "$TARGET" arm-linux-gnueabihf-gcc /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 \
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross

[ "$#" -gt 0 ] || set -- --release
CARGO=(cargo test -p m2 --target "$TARGET" --config cross/armv7-qemu.toml "$@")

export M2_TEST_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
cross_select
cross_drop_fidelity

echo "=== armv7 (32-bit Raspberry Pi OS) under qemu-arm: QEMU_CPU=cortex-a7 (expect kernel path dsp)"
# The SIGKILL-and-resume test captions 600 images three times (~4 of the suite's minutes under
# qemu-arm); it runs natively and on the aarch64 model, and the 32-bit file paths it uses are
# covered here by the other dataset tests.
QEMU_CPU=cortex-a7 M2_EXPECT_ISA=dsp "${CARGO[@]}" "${SELECT[@]}" -- "${CROSS_SKIP[@]}" \
    --skip a_killed_run_resumes_without_losing_or_repeating_an_image
QEMU_CPU=cortex-a7 M2_EXPECT_ISA=dsp "${CARGO[@]}" --doc
echo "=== armv7: passed"
