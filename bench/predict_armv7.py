#!/usr/bin/env python3
"""Predicted ms per COCO int8 caption on 32-bit Raspberry Pi OS (armv7) on a Pi 4, from llvm-mca
on the int8 tile loops as compiled: the `dsp` path (`sxtb16` + `smlad`, src/kernels/dsp.rs,
the one 32-bit Arm Linux detects) against the scalar path (`M2_KERNEL=scalar`, one `smlabb` per
multiply-add).

    python3 bench/predict_armv7.py M2.s --rest rest-armv7.json [--mca llvm-mca-19]

M2.s is rustc's `--emit asm` of the library for armv7-unknown-linux-gnueabihf with one codegen
unit (bench/predict-arm.sh builds it); --rest is bench/rest_profile.py --json of the armv7
binary on a COCO-size int8 blob (`--arch armv7 --mcpu cortex-a72`). Board figures, the model's
multiply-adds per tile shape and the rest's thread factor are bench/predict_arm.py's (one place
for each). Prints Markdown.

Loops are recognised by what they do, not by label: an int8 dsp tile of R weight rows × N
activation rows unpacks R + N words (2·(R + N) `sxtb16`) and issues 2·R·N `smlad` per 4 bytes
(int16 activations are stored pre-paired and unpack only the weights: 2·R `sxtb16`, not
counted here: the COCO blob has int8 activations); a scalar int8 step loads two bytes
(`ldrsb`) and issues one `smlabb`. Where rustc emitted a loop more than once (inlined into
several callers) the median copy's cycles are used.
"""
import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict

import mca_loops
import predict_arm as P

# 32-bit branches: b, b<cond>
mca_loops.BRANCH = re.compile(r"^\s*(b|b(?:eq|ne|lt|le|gt|ge|lo|hs|hi|ls|mi|pl|cc|cs|vs|vc))\s+(.*)$")
FUNC = re.compile(r"^(_ZN[\w$.]+):$")


def functions(lines):
    """(name, body lines) of every function in an ARM asm file (label to `.fnend`)."""
    i = 0
    while i < len(lines):
        m = FUNC.match(lines[i])
        if m:
            j = i
            while j < len(lines) and lines[j].strip() != ".fnend":
                j += 1
            yield m.group(1), lines[i:j]
            i = j
        i += 1


def ops(ins):
    return [l.split()[0] for l in ins if l.split() and not l.split()[0].startswith("@")]


def classify(ins):
    """('dsp', R, N) / ('scalar', 1, 1) for an int8 tile loop, else None."""
    o = ops(ins)
    s, m = o.count("sxtb16"), o.count("smlad")
    if m:
        if s % 2 or m % 2:
            return None
        total, prod = s // 2, m // 2  # R + N, R · N
        for r in range(1, total):
            if r * (total - r) == prod:
                return ("dsp", max(r, total - r), min(r, total - r))
        return None  # int16 activations (2·R sxtb16 only)
    if o.count("smlabb") == 1 and o.count("ldrsb") == 2 and len(o) <= 12:
        return ("scalar", 1, 1)
    return None


def mca(mca_bin, mcpu, path, iterations=500):
    out = subprocess.run([mca_bin, "-mtriple=armv7-unknown-linux-gnueabihf", f"-mcpu={mcpu}",
                          f"-iterations={iterations}", path], capture_output=True, text=True,
                         check=True).stdout
    return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / iterations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("asm")
    ap.add_argument("--mca", default="llvm-mca-19")
    ap.add_argument("--rest", required=True, help="bench/rest_profile.py --json, armv7, cortex-a72")
    ap.add_argument("--workdir", default="/tmp")
    a = ap.parse_args()
    board = P.BOARDS[0]  # the Pi 4 (Cortex-A72); 32-bit Pi OS also runs on Pi 2/3 (A7, A53)
    prof = json.load(open(a.rest))["cores"][board["mcpu"]]
    lines = open(a.asm).read().splitlines()

    found = defaultdict(list)  # (path, R, N) -> [(cycles, MACs, instructions)]
    for name, body in functions(lines):
        for label, s, e in mca_loops.innermost_loops(body):
            loop = mca_loops.clean(body, s, e)
            ins = [l.strip() for l in loop if not mca_loops.LABEL.match(l)]
            ins = [l for l in ins if not l.startswith("@")]
            kind = classify(ins)
            if kind is None:
                continue
            path, r, n = kind
            macs = 4 * r * n if path == "dsp" else 1
            f = f"{a.workdir}/armv7-{path}-{r}x{n}-{len(found[kind])}.s"
            open(f, "w").write("\n".join(l for l in loop if not l.strip().startswith("@")) + "\n")
            found[kind].append((mca(a.mca, board["mcpu"], f), macs, len(ins)))
    for need in (("dsp", 2, 2), ("dsp", 2, 1), ("scalar", 1, 1)):
        if not found[need]:
            raise SystemExit(f"error: no {need[0]} {need[1]} × {need[2]} int8 loop in {a.asm}")

    def median(kind):
        """(cycles, MACs, instructions) of the median copy of a loop."""
        rows = sorted(found[kind])
        return rows[len(rows) // 2]

    def cpm(kind):
        c, macs, _ = median(kind)
        return c / macs

    print(f"32-bit Pi OS (armv7), Pi 4: `llvm-mca -mtriple=armv7 -mcpu={board['mcpu']}` on the "
          "int8 loops rustc emitted (LLVM schedules the A72 with its Cortex-A57 model).\n")
    print("| path | tile R × N | instructions / iteration | MACs / iteration | cycles / iteration "
          "| cycles / MAC | copies in the asm |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted(found, key=lambda k: (k[0] != "dsp", -k[1] * k[2])):
        c, macs, n_ins = median(kind)
        print(f"| `{kind[0]}` | {kind[1]} × {kind[2]} | {n_ins} | {macs} | {c:.2f} | "
              f"{c / macs:.3f} | {len(found[kind])} |")
    print()

    lin = P.linear_macs(P.COCO)

    def gemm_cycles(path):
        cycles = 0.0
        for n, macs in lin.items():
            if path == "scalar":
                cycles += macs * cpm(("scalar", 1, 1))
                continue
            full = n // 2 * 2  # the dsp tiles take activation rows two at a time
            cycles += macs * (full / n) * cpm(("dsp", 2, 2))
            cycles += macs * ((n - full) / n) * cpm(("dsp", 2, 1))
        return cycles

    memory = P.COCO_BYTES["int8"] / (board["gbs"] * 1e9) * 1e3
    print("| COCO size, int8, Pi 4 (Cortex-A72 1.5 GHz), 32-bit Pi OS | threads | GEMM compute ms "
          "| weight stream ms | rest ms | **predicted ms / caption** | bound |")
    print("|---|---|---|---|---|---|---|")
    for path in ("dsp", "scalar"):
        for threads in (1, 4):
            compute = gemm_cycles(path) / (board["ghz"] * 1e9) / threads * 1e3
            rest = P.rest_ms(prof, P.COCO, threads, board["ghz"], glue=True)
            total = max(compute, memory) + rest
            label = ("`dsp` (detected; `sxtb16` + `smlad`)" if path == "dsp"
                     else "`scalar` (`M2_KERNEL=scalar`; before the dsp path)")
            print(f"| {label} | {threads} | {compute:.0f} | {memory:.1f} | {rest:.0f} | "
                  f"**{total:.0f}** | {'memory' if memory > compute else 'compute'} |")
    print()
    print(f"Multiply-adds through the linears per caption: {sum(lin.values()) / 1e9:.2f} G; "
          f"weights {P.COCO_BYTES['int8'] / 1e6:.0f} MB per caption at "
          f"{board['gbs']} GB/s ({board['gbs_src']}).")


if __name__ == "__main__":
    sys.exit(main())
