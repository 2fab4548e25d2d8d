#!/usr/bin/env python3
"""Finds the innermost loops of the aarch64 GEMM kernels in rustc's `--emit asm` output.

    python3 bench/mca_loops.py m2-<hash>.s OUTDIR

For each kernel entry point (`m2::kernels::neon::{gemm_i8, gemm_i8_dot, gemm_f32, gemm_f16}`)
it takes the function's lines (from its label to `.cfi_endproc`), finds every innermost loop
(a label that a later conditional or unconditional branch jumps back to, with no other loop
inside), keeps those that multiply (`sdot`, `smull`/`smlal`, `fmla`), counts the multiply-adds
per iteration from the instructions, and writes each loop body, normalised for llvm-mca (no
directives, no comments, local labels kept), to OUTDIR/<kernel>-<label>.s. Prints one JSON line
per loop: kernel, label, file, MACs per iteration, the loads, the multiply instructions.
Nothing is hand-copied: the loops are what rustc emitted.
"""
import json
import os
import re
import sys

KERNELS = {
    "gemm_i8": "_ZN2m27kernels4neon7gemm_i8",
    "gemm_i8_dot": "_ZN2m27kernels4neon11gemm_i8_dot",
    "gemm_f32": "_ZN2m27kernels4neon8gemm_f32",
    "gemm_f16": "_ZN2m27kernels4neon8gemm_f16",
}

LABEL = re.compile(r"^(\.?L[\w$.]+|[\w$.]+):")
BRANCH = re.compile(r"^\s*(b|b\.\w+|cbz|cbnz|tbz|tbnz)\s+(.*)$")


def macs_of(ins):
    """Multiply-adds one instruction does (0 for everything else)."""
    op, _, args = ins.strip().partition("\t")
    op = op.strip()
    args = args.replace(" ", "")
    if op == "sdot":  # sdot vD.4s, vN.16b, vM.16b: 4 lanes × 4 products
        return 16 if ".4s" in args else 8
    if op in ("smull", "smull2", "smlal", "smlal2", "umull", "umull2", "umlal", "umlal2"):
        # smull vD.8h, vN.8b, vM.8b: 8 products (the .16b forms use the high halves: also 8)
        if ".8h" in args:
            return 8
        if ".4s" in args:
            return 4
        return 2
    if op in ("fmla", "fmls"):
        if ".4s" in args:
            return 4
        if ".2d" in args or ".2s" in args:
            return 2
        if ".8h" in args:
            return 8
        return 1
    return 0


def function_lines(lines, prefix):
    start = next(i for i, l in enumerate(lines) if l.startswith(prefix) and l.rstrip().endswith(":"))
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == ".cfi_endproc")
    return lines[start:end]


def innermost_loops(body):
    """(label, first line, branch line) of every innermost loop in a function body."""
    labels = {}
    for i, l in enumerate(body):
        m = LABEL.match(l)
        if m:
            labels[m.group(1)] = i
    loops = []
    for i, l in enumerate(body):
        m = BRANCH.match(l)
        if not m:
            continue
        target = m.group(2).split(",")[-1].strip()
        if target in labels and labels[target] <= i:
            loops.append((target, labels[target], i))
    inner = [
        lp for lp in loops
        if not any(o is not lp and lp[1] <= o[1] and o[2] <= lp[2] and (o[1], o[2]) != (lp[1], lp[2])
                   for o in loops)
    ]
    return inner


def clean(body, a, b):
    """The loop's lines as llvm-mca reads them: instructions and the loop's own labels."""
    out = []
    for l in body[a:b + 1]:
        s = l.split("//")[0].rstrip()
        if not s.strip():
            continue
        if s.strip().startswith(".") and not LABEL.match(s.strip()):  # directives (.p2align, …)
            continue
        out.append(s)
    return out


def main():
    src, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    lines = open(src).read().splitlines()
    for name, prefix in KERNELS.items():
        body = function_lines(lines, prefix)
        for label, a, b in innermost_loops(body):
            loop = clean(body, a, b)
            ins = [l for l in loop if not LABEL.match(l)]
            macs = sum(macs_of(l) for l in ins)
            if macs == 0:
                continue
            ops = {}
            for l in ins:
                op = l.strip().split("\t")[0].split()[0]
                if macs_of(l) or op in ("sadalp", "fcvtl", "fcvtl2") or op.startswith("ld"):
                    key = op + (" q" if re.search(r"\bq\d+\b|\.16b|\.4s|\.8h", l) else "")
                    ops[key] = ops.get(key, 0) + 1
            fname = os.path.join(outdir, f"{name}-{label.lstrip('.')}.s")
            with open(fname, "w") as f:
                f.write("\n".join(loop) + "\n")
            print(json.dumps({"kernel": name, "label": label, "file": fname, "macs": macs,
                              "instructions": len(ins), "ops": ops}))


if __name__ == "__main__":
    main()
