#!/usr/bin/env bash
# Firmware checks (issue 4), called by .ci/run. Installs what it needs, then:
#   1. cargo run --release                       QEMU mps2-an386 (Cortex-M4): must exit 0
#   2. cargo run --release --features an500      QEMU mps2-an500 (Cortex-M7): must exit 0
#   3. cargo run --release --features wrong-expected: must exit 1 (the check is real)
#   4. cargo test --release                      on-target DSP-vs-scalar kernel tests, M4 and M7
#   5. the thumbv6m-none-eabi build (ARMv6-M code, scalar kernels) runs on mps2-an386 too: exit 0
#   6. the real-board profile (STM32H743, defmt-rtt) builds
#   7. the Cortex-M0+ profile (thumbv6m-none-eabi, RP2040 map, scalar kernels) builds
set -euo pipefail
cd "$(dirname "$0")/../firmware"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-arm
fi
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi
# defmt-print decodes the log; without it qemu-run.sh keeps the raw frames and we judge by exit code.
command -v defmt-print >/dev/null 2>&1 || cargo install defmt-print --locked --version 1.2.0 \
  || echo "firmware.sh: defmt-print unavailable, judging by exit codes only" >&2

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# expect CODE DESCRIPTION PATTERN -- CMD...: CMD must exit with CODE and, when the defmt log can
# be decoded, its output must contain PATTERN (so an exit 1 from a crash is not taken for the
# deliberate caption mismatch).
expect() {
  local want=$1 what=$2 pattern=$3; shift 4
  local rc
  set +e
  "$@" 2>&1 | tee "$LOG"
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne $want ]]; then
    echo "firmware.sh: FAIL $what: exit $rc, want $want" >&2
    exit 1
  fi
  if [[ -n "$pattern" ]] && command -v defmt-print >/dev/null 2>&1 && ! grep -q -- "$pattern" "$LOG"; then
    echo "firmware.sh: FAIL $what: exit $rc but the log lacks \"$pattern\"" >&2
    exit 1
  fi
  echo "firmware.sh: ok   $what (exit $rc)" >&2
}

expect 0 "QEMU mps2-an386 (Cortex-M4)" "PASS: all" -- cargo run --release
expect 0 "QEMU mps2-an500 (Cortex-M7)" "PASS: all" -- cargo run --release --features an500
expect 1 "wrong expected caption is caught" "(deliberately wrong)" -- cargo run --release --features wrong-expected
expect 0 "on-target kernel tests, M4" "all tests passed" -- cargo test --release
expect 0 "on-target kernel tests, M7" "all tests passed" -- cargo test --release --features an500
expect 0 "thumbv6m (Cortex-M0+ code, scalar kernels) on the mps2-an386 machine" "PASS: all" -- \
  cargo run --release --target thumbv6m-none-eabi
expect 0 "STM32H743 board profile builds" "" -- \
  cargo build --release --no-default-features --features rtt,stm32h743
expect 0 "Cortex-M0+ (thumbv6m, RP2040 map) builds" "" -- \
  cargo build --release --target thumbv6m-none-eabi --no-default-features --features rtt,rp2040
echo "firmware.sh: all firmware checks passed" >&2
