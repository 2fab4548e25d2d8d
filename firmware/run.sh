#!/usr/bin/env bash
# Cargo runner for every firmware build (`cargo run` calls it with the ELF): it reads the tag
# build.rs baked into the ELF and runs the firmware where it was built to run.
#
#   qemu-machine=M cpu=C;             QEMU (qemu-system-arm, -icount shift=0, semihosting),
#                                     defmt decoded by defmt-print
#   board=stm32h743 probe-rs-chip=X;  a real board: probe-rs run --chip X ELF (flash, reset,
#                                     RTT defmt log, the firmware's semihosting exit code)
#   board=pico probe-rs-chip=RP2040;  writes ELF.uf2 (BOOTSEL drag-and-drop), then runs the Pico
#                                     build in the rp2040js emulator (pico/run.mjs); with
#                                     M2_PICO=probe on a real Pico through a debug probe
#                                     (probe-rs run --chip RP2040), M2_PICO=uf2: the UF2 only
#
# Exit status: the firmware's verdict (0 all captions equal the host's, 1 otherwise), 124 on
# timeout (QEMU_TIMEOUT seconds, default 600), 2 when the ELF has no tag or a tool is missing.
# QEMU_MACHINE="-machine ... -cpu ..." overrides the tag's QEMU machine.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ELF="$1"; shift

tag=$(grep -aoEm1 '(qemu-machine|board)=[a-z0-9-]+ [a-z-]+=[A-Za-z0-9+-]+;' "$ELF" || true)
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "run.sh: error: $1 not found on PATH ($2)" >&2
  exit 2
}

case "$tag" in
  qemu-machine=*)
    if [[ -z "${QEMU_MACHINE:-}" ]]; then
      m=${tag#qemu-machine=}; c=${tag##*cpu=}
      QEMU_MACHINE="-machine ${m%% *} -cpu ${c%;}"
    fi
    need qemu-system-arm "apt-get install qemu-system-arm"
    echo "run.sh: qemu-system-arm $QEMU_MACHINE -icount shift=0" >&2
    # -icount shift=0: virtual time advances 1 ns per instruction, so the firmware's timer
    # counts instructions (see src/board/qemu.rs).
    QEMU=(timeout "${QEMU_TIMEOUT:-600}" qemu-system-arm $QEMU_MACHINE -icount shift=0 -nographic
          -monitor none -serial none -semihosting-config enable=on,target=native -kernel "$ELF" "$@")
    if command -v defmt-print >/dev/null 2>&1; then
      "${QEMU[@]}" | defmt-print -e "$ELF" --log-format '{L} {s} {({ff}:{l:1})%dimmed}'
      exit "${PIPESTATUS[0]}"   # the firmware's exit code, not defmt-print's
    fi
    echo "run.sh: defmt-print not found; raw defmt frames in $ELF.defmt (decode: defmt-print -e $ELF < $ELF.defmt)" >&2
    "${QEMU[@]}" > "$ELF.defmt"
    exit $?
    ;;
  board=stm32h743\ *)
    chip=${tag##*probe-rs-chip=}; chip=${chip%;}
    need probe-rs "cargo install probe-rs-tools --locked; see firmware/README.md"
    echo "run.sh: probe-rs run --chip $chip $ELF" >&2
    exec probe-rs run --chip "$chip" "$ELF" "$@"
    ;;
  board=pico\ *)
    chip=${tag##*probe-rs-chip=}; chip=${chip%;}
    need node "Node.js 20 or later runs the UF2 writer and the emulator"
    node "$here/pico/uf2.mjs" write "$ELF" "$ELF.uf2" || exit 2
    node "$here/pico/uf2.mjs" check "$ELF.uf2" "$ELF" >&2 || exit 2
    echo "run.sh: $ELF.uf2 written: hold BOOTSEL, plug the Pico in, copy the file to the RPI-RP2 drive" >&2
    case "${M2_PICO:-emulator}" in
      uf2) exit 0 ;;
      probe)
        need probe-rs "cargo install probe-rs-tools --locked; see firmware/README.md"
        echo "run.sh: probe-rs run --chip $chip $ELF" >&2
        exec probe-rs run --chip "$chip" "$ELF" "$@" ;;
      emulator)
        if [[ ! -d "$here/pico/node_modules/rp2040js" ]]; then
          need npm "npm installs the pinned rp2040js"
          (cd "$here/pico" && npm ci --silent --no-audit --no-fund) >&2 || exit 2
        fi
        echo "run.sh: rp2040js (Raspberry Pi Pico emulator): node pico/run.mjs $ELF" >&2
        exec timeout "${QEMU_TIMEOUT:-600}" node "$here/pico/run.mjs" "$ELF" "$@" ;;
      *) echo "run.sh: error: M2_PICO=${M2_PICO} (want emulator, probe or uf2)" >&2; exit 2 ;;
    esac
    ;;
  *)
    echo "run.sh: error: $ELF carries no m2-firmware board tag (${tag:-none}); nothing to run" >&2
    exit 2
    ;;
esac
