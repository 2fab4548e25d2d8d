#!/usr/bin/env bash
# Firmware checks, called by .ci/run. Installs what it needs (pinned), then:
#   1. QEMU mps2-an386 (Cortex-M4F) and mps2-an500 (Cortex-M7), DSP and scalar kernels: every
#      bundled frame captioned on the device equals the host's caption (exit 0), instructions
#      per caption logged (-icount)
#   2. a wrong expected caption exits 1; the no-debugger ending sleeps instead of locking up
#   3. on-target kernel tests (DSP int8 == scalar), M4 and M7; the ARMv6-M build on the M4
#   4. the STM32H743 board build (flip-link, HAL clocks) and the runner's dispatch to probe-rs,
#      checked with a stand-in `probe-rs` that records its arguments; the same ELF run to its
#      verdict in h7sim (Unicorn Cortex-M7 + an STM32H743 register model: the clock tree checked)
#   5. the Pico build: UF2 written and validated, the runner's probe-rs dispatch, and the
#      firmware run in the rp2040js emulator (captions equal the host's, cycles per caption);
#      a wrong expected caption exits 1 there too
set -euo pipefail
cd "$(dirname "$0")/../firmware"
FW=$PWD
SECONDS=0

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-arm
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi
# defmt-print decodes the log; flip-link is the linker of every firmware build.
command -v defmt-print >/dev/null 2>&1 || cargo install defmt-print --locked --version 1.2.0
command -v flip-link >/dev/null 2>&1 || cargo install flip-link --locked --version 0.1.12
(cd pico && npm ci --no-audit --no-fund --silent && npm test --silent)   # UF2 + emulator runner tests

LOG=$(mktemp)
STUB=$(mktemp -d)
trap 'rm -rf "$LOG" "$STUB"' EXIT
# expect CODE DESCRIPTION PATTERN -- CMD...: CMD must exit with CODE and its output must contain
# PATTERN (so an exit 1 from a crash is not taken for the deliberate caption mismatch).
expect() {
  local want=$1 what=$2 pattern=$3; shift 4
  local rc
  set +e
  "$@" 2>&1 | tee "$LOG" | grep -v ' step [0-9]* ('   # the per-step lines stay in $LOG only
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne $want ]]; then
    echo "firmware.sh: FAIL $what: exit $rc, want $want" >&2
    exit 1
  fi
  if [[ -n "$pattern" ]] && ! grep -q -- "$pattern" "$LOG"; then
    echo "firmware.sh: FAIL $what: exit $rc but the log lacks \"$pattern\"" >&2
    exit 1
  fi
  echo "firmware.sh: ok   $what (exit $rc) [${SECONDS}s]" >&2
}
# per_caption: the figure of the last PASS line in $LOG
per_caption() { grep -o 'PASS: [0-9/]* captions[^;]*; [0-9]* [a-z]* per caption' "$LOG" | tail -1 | sed 's/.*; //'; }

echo "== 1. QEMU: frames captioned on the device, instructions per caption"
declare -A FIG
# (the M7 scalar run also boots with `fast-boot`: structure checksum only)
for cfg in "m4 dsp|" "m4 scalar|scalar-kernels" "m7 dsp|an500" "m7 scalar|an500,scalar-kernels,fast-boot"; do
  name=${cfg%%|*}; feats=${cfg#*|}
  expect 0 "QEMU $name" "PASS: 6/6 captions equal the host's" -- \
    cargo run --release ${feats:+--features $feats}
  FIG[$name]=$(per_caption)
done

echo "== 2. the check is real; the no-debugger ending"
expect 1 "wrong expected caption is caught" "(deliberately wrong)" -- \
  cargo run --release --features wrong-expected
# Without a debugger (QEMU's DHCSR reads 0) the firmware logs its verdict and sleeps: QEMU
# must still be running when the timeout ends it (124), the log must say why.
QEMU_TIMEOUT=30 M2_IMAGES=1 expect 124 "no debugger: verdict logged, then wfi (no lock-up)" \
  "no debugger attached: the verdict above stays in the log; sleeping" -- \
  cargo run --release --features board-exit

echo "== 3. on-target kernel tests; ARMv6-M code on the M4 machine"
expect 0 "on-target kernel tests, M4" "all tests passed" -- cargo test --release
expect 0 "on-target kernel tests, M7" "all tests passed" -- cargo test --release --features an500
expect 0 "thumbv6m (Cortex-M0+ code, scalar kernels) on the mps2-an386 machine" \
  "PASS: 6/6 captions equal the host's" -- cargo run --release --target thumbv6m-none-eabi

echo "== 4. STM32H743 board: build, runner dispatch with a stand-in probe-rs"
cat > "$STUB/probe-rs" <<'EOF'
#!/usr/bin/env bash
# stand-in for probe-rs: records its arguments, exits 0
printf '%s\n' "$@" > "$PROBE_RS_ARGS"
EOF
chmod +x "$STUB/probe-rs"
export PROBE_RS_ARGS="$STUB/args"
H7_ELF=$FW/target/thumbv7em-none-eabihf/release/m2-firmware
rm -f "$PROBE_RS_ARGS"
PATH="$STUB:$PATH" expect 0 "cargo run --release --features stm32h743 → probe-rs" \
  "probe-rs run --chip STM32H743ZITx" -- cargo run --release --features stm32h743
# probe_rs_called_with CHIP ELF: the stand-in got exactly `run --chip CHIP <ELF>` (cargo passes the
# ELF's path relative to the crate: compare resolved paths)
probe_rs_called_with() {
  local got; mapfile -t got < "$PROBE_RS_ARGS"
  if [[ ${#got[@]} -ne 4 || ${got[0]} != run || ${got[1]} != --chip || ${got[2]} != "$1" \
        || "$(realpath "${got[3]}")" != "$(realpath "$2")" ]]; then
    echo "firmware.sh: FAIL probe-rs got: ${got[*]}; want: run --chip $1 $2" >&2; exit 1
  fi
}
probe_rs_called_with STM32H743ZITx "$H7_ELF"
grep -aq 'board=stm32h743 probe-rs-chip=STM32H743ZITx;' "$H7_ELF" \
  || { echo "firmware.sh: FAIL the ELF given to probe-rs is not the H743 build" >&2; exit 1; }
S=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin
if [[ -x $S/llvm-nm ]]; then
  # flip-link: the stack starts at the bottom of the DTCM, the statics sit above it
  # (no `llvm-nm | grep -q`: grep's early exit would SIGPIPE llvm-nm and fail the pipe under pipefail)
  grep -q '^20000000 A _stack_end' <<< "$($S/llvm-nm "$H7_ELF")" \
    || { echo "firmware.sh: FAIL the H743 build was not linked by flip-link (stack not at the DTCM's bottom)" >&2; exit 1; }
fi
echo "firmware.sh: ok   probe-rs got: $(tr '\n' ' ' < "$PROBE_RS_ARGS")" >&2
# The same ELF on an emulated Cortex-M7 with an STM32H743 register model (firmware/h7sim): the
# HAL's clock tree checked against RM0433 (480 MHz at VOS0 on revision V, 400 MHz at VOS1 on Y),
# caches and DWT on, six captions equal the host's, semihosting exit / no-debugger sleep.
H7VENV=${TMPDIR:-/tmp}/m2-h7sim-venv
[[ -x $H7VENV/bin/python ]] || python3 -m venv "$H7VENV"
"$H7VENV/bin/pip" install -q -r h7sim/requirements.txt
"$H7VENV/bin/python" -m unittest discover -s h7sim -p 'test_*.py'
expect 0 "H743 ELF in h7sim, revision V (480 MHz)" "PASS: 6/6 captions equal the host's" -- \
  "$H7VENV/bin/python" h7sim/h7sim.py "$H7_ELF"
expect 0 "H743 ELF in h7sim, revision Y (400 MHz)" "PASS: 6/6 captions equal the host's" -- \
  "$H7VENV/bin/python" h7sim/h7sim.py "$H7_ELF" --rev Y
expect 0 "H743 ELF in h7sim, no debugger: verdict logged, then wfi" "no debugger attached" -- \
  "$H7VENV/bin/python" h7sim/h7sim.py "$H7_ELF" --no-debugger
# an ELF without a tag is refused
expect 2 "runner refuses an untagged ELF" "carries no m2-firmware board tag" -- ./run.sh /bin/true

echo "== 5. Raspberry Pi Pico: UF2, probe-rs dispatch, the rp2040js emulator"
PICO_ELF=$FW/target/thumbv6m-none-eabi/release/m2-firmware
rm -f "$PROBE_RS_ARGS" "$PICO_ELF.uf2"
PATH="$STUB:$PATH" M2_PICO=probe expect 0 "cargo pico with M2_PICO=probe → probe-rs" \
  "probe-rs run --chip RP2040" -- cargo pico
probe_rs_called_with RP2040 "$PICO_ELF"
node pico/uf2.mjs check "$PICO_ELF.uf2" "$PICO_ELF"
expect 0 "Pico (RP2040) in rp2040js: captions equal the host's" "PASS: 6/6 captions equal the host's" -- \
  cargo pico
FIG[pico]=$(per_caption)
M2_IMAGES=1 expect 1 "Pico: a wrong expected caption is caught" "(deliberately wrong)" -- \
  cargo pico --features wrong-expected

echo
echo "firmware.sh: per caption (bundled frames, beam 5, 20 steps):"
for k in "m4 dsp" "m4 scalar" "m7 dsp" "m7 scalar"; do echo "  QEMU $k: ${FIG[$k]:-?} (-icount)"; done
echo "  Pico (rp2040js, 125 MHz): ${FIG[pico]:-?} (emulated)"
echo "firmware.sh: all firmware checks passed in ${SECONDS}s" >&2
