#!/usr/bin/env bash
# Fuzz smoke run for CI: builds every cargo-fuzz target (libFuzzer + AddressSanitizer, pinned
# nightly) and runs each for M2_FUZZ_SECONDS (default 30) from the checked-in seed corpus
# (fuzz/corpus/<target>, copied: the checked-in seeds are never rewritten). A crash fails CI
# and leaves its reproducer in fuzz/artifacts/<target>/. The long run is by hand: fuzz/README.md.
#
# A debug build (M2_FUZZ_PROFILE, default -D): it builds in about 1 min where the optimised one
# (-O) took 7 min in CI, and it runs with overflow checks and debug assertions on, as the long
# runs do (-O -a). It executes fewer inputs in the time (caption ~2 k against ~80 k in 20 s,
# png_regions ~18 k against ~250 k): every seed is replayed, the mutations are a smoke test.
# Targets run two at a time (M2_FUZZ_JOBS); a failure is reported after the others finish.
set -euo pipefail
cd "$(dirname "$0")/.."
NIGHTLY=nightly-2026-05-20
CARGO_FUZZ_VERSION=0.13.2
SECS=${M2_FUZZ_SECONDS:-30}
PROFILE=${M2_FUZZ_PROFILE:--D}

rustup toolchain install "$NIGHTLY" --profile minimal >/dev/null 2>&1 || rustup toolchain install "$NIGHTLY" --profile minimal
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=$(cargo +"$NIGHTLY" fuzz list)
cargo +"$NIGHTLY" fuzz build "$PROFILE"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# smoke TARGET: one target's run from a copy of its seeds, its log in $work/TARGET.log
smoke() {
    local t=$1
    mkdir -p "$work/$t"
    cp fuzz/corpus/"$t"/* "$work/$t/"
    # -rss_limit_mb: a target that allocates past 2 GB is a finding (memory must be bounded);
    # -timeout: one input running past 30 s is a finding (a hang).
    cargo +"$NIGHTLY" fuzz run "$PROFILE" "$t" "$work/$t" -- -max_total_time="$SECS" \
        -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 >"$work/$t.log" 2>&1
}
# Two targets at a time: each libFuzzer run uses one core, and CI's machine has two.
declare -A pid_of
failed=()
finish() {   # finish TARGET: wait for its run, report it
    local t=$1
    if wait "${pid_of[$t]}"; then
        echo "--- fuzz smoke: $t (${SECS}s)"
        grep -E 'DONE +cov:|^stat::(number_of_executed_units|peak_rss_mb)' "$work/$t.log" | tail -n 3 || true
    else
        tail -n 40 "$work/$t.log" >&2
        echo "fuzz smoke: $t failed; reproducer in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    fi
}
running=()
for t in $targets; do
    smoke "$t" & pid_of[$t]=$!
    running+=("$t")
    if [ "${#running[@]}" -ge "${M2_FUZZ_JOBS:-2}" ]; then
        finish "${running[0]}"
        running=("${running[@]:1}")
    fi
done
for t in "${running[@]}"; do finish "$t"; done
[ "${#failed[@]}" -eq 0 ] || { echo "fuzz smoke: failed: ${failed[*]}" >&2; exit 1; }
echo "fuzz smoke: every target ran ${SECS}s with no crash"
