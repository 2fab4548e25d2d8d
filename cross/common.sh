# Shared by cross/test-aarch64.sh and cross/test-armv7.sh (sourced, not run).
#
# cross_setup TARGET GCC SYSROOT LOADER PACKAGES...: installs the cross gcc, its libc and
# qemu-user when missing (needs root and apt-get, as in CI) and the rustup target.
# cross_select: fills SELECT with --lib --bins and every tests/*.rs that can run under
# qemu-user. Tests that exec the `m2` binary (CARGO_BIN_EXE_m2) cannot run there: without
# binfmt_misc the host kernel cannot start a foreign ELF that a test spawns. A test file that
# prefixes its commands with $M2_TEST_RUNNER (set by the caller) is kept.

# Host-only tests, skipped under qemu: the structural-flip sweeps parse a blob ~65,000 times,
# each hashing its structure; CRC-32 under qemu's TCG is hundreds of times slower than native
# (one sweep ran past 18 minutes). They exercise the parser's logic and crc32fast, not this
# crate's per-ISA code, so the x86_64 run (cargo test --workspace) is where they belong.
# The bundled demo blob's reproduction (demo_bundle: a GPTQ-calibrated pack of the demo
# checkpoint, byte for byte; ~2.5 min per CPU model under qemu) tests the packer, which the host
# suite runs; the bundled blob's captions on this target's kernels (the rest of demo_bundle)
# still run here.
CROSS_SKIP=(--skip skip_checksum_still_catches_every_structural_flip
            --skip class6_without_the_checksum_every_structural_flip_is_refused
            --skip bundled_int8_blob_parses_and_its_checksum_is_valid)

cross_setup() {
    local target=$1 gcc=$2 loader=$3
    shift 3
    if ! command -v "${QEMU_BIN}" >/dev/null || ! command -v "$gcc" >/dev/null || [ ! -e "$loader" ]; then
        echo "cross: installing $* qemu-user" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" qemu-user >/dev/null
    fi
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
}

cross_select() {
    SELECT=(--lib --bins)
    local f name
    for f in tests/*.rs; do
        name=$(basename "$f" .rs)
        if grep -q CARGO_BIN_EXE "$f" && ! grep -q M2_TEST_RUNNER "$f"; then
            echo "cross: skipping tests/$name.rs (spawns the m2 binary)" >&2
        else
            SELECT+=(--test "$name")
        fi
    done
}

# cross_drop_fidelity: removes tests/demo_fidelity.rs from SELECT unless M2_CROSS_FIDELITY is
# set. It checks the int8 / f16 captions of 300 scenes six ways (~15 min under qemu), numbers
# the target's kernels give bit for bit where it matters (int8: tests/kernels_props.rs; the
# bundled blob's captions: tests/demo_bundle.rs, both run here) and the host suite checks.
cross_drop_fidelity() {
    if [ -z "${M2_CROSS_FIDELITY:-}" ]; then
        local sel=() t
        for t in "${SELECT[@]}"; do [ "$t" = demo_fidelity ] && unset 'sel[-1]' || sel+=("$t"); done
        SELECT=("${sel[@]}")
    fi
}
