#!/usr/bin/env bash
# Cargo runner: boot the firmware ELF in qemu-system-arm and decode its defmt output.
# Exit status = the firmware's semihosting exit code (0 all captions matched, 1 otherwise),
# 124 on timeout (QEMU_TIMEOUT seconds, default 300).
#
# The QEMU machine is the one the ELF was built for: build.rs bakes a tag
# "qemu-machine=<machine> cpu=<cpu>;" into the firmware (its boot log prints it too), and this
# script reads it back from the ELF. QEMU_MACHINE="-machine ... -cpu ..." overrides it.
set -uo pipefail
ELF="$1"; shift

if [[ -z "${QEMU_MACHINE:-}" ]]; then
  tag=$(grep -aoEm1 '(qemu-machine|board)=[a-z0-9-]+ [a-z-]+=[A-Za-z0-9+-]+;' "$ELF" || true)
  case "$tag" in
    qemu-machine=*) m=${tag#qemu-machine=}; c=${tag##*cpu=}
                    QEMU_MACHINE="-machine ${m%% *} -cpu ${c%;}" ;;
    *) echo "qemu-run.sh: $ELF was not built for a QEMU memory map (${tag:-no tag}); nothing to run" >&2
       exit 2 ;;
  esac
fi
echo "qemu-run.sh: qemu-system-arm $QEMU_MACHINE" >&2

QEMU=(timeout "${QEMU_TIMEOUT:-300}" qemu-system-arm $QEMU_MACHINE -nographic -monitor none -serial none
      -semihosting-config enable=on,target=native -kernel "$ELF" "$@")
if command -v defmt-print >/dev/null 2>&1; then
  "${QEMU[@]}" | defmt-print -e "$ELF" --log-format '{L} {s} {({ff}:{l:1})%dimmed}'
  exit "${PIPESTATUS[0]}"   # the firmware's exit code, not defmt-print's
else
  echo "qemu-run.sh: defmt-print not found; raw defmt frames in $ELF.defmt (decode: defmt-print -e $ELF < $ELF.defmt)" >&2
  "${QEMU[@]}" > "$ELF.defmt"
  exit $?
fi
