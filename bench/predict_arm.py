#!/usr/bin/env python3
"""Predicted Raspberry Pi 4 / Pi 5 ms per caption from llvm-mca on the compiled kernel loops.

    python3 bench/predict_arm.py LOOPS.jsonl [--mca llvm-mca-19] [--bench-json coco.json]

LOOPS.jsonl is what `bench/mca_loops.py` printed (one line per innermost multiply loop of
`m2::kernels::neon::{gemm_i8, gemm_i8_dot, gemm_f32, gemm_f16}` in rustc's asm). Run by
`bench/predict-arm.sh`, which also builds the asm. Prints Markdown: cycles per multiply-add per
kernel, tile shape and core, then the predicted table. Every constant below says where it
comes from; "assumed" marks the ones that are not measurements.
"""
import argparse
import json
import math
import re
import subprocess
import sys
from collections import defaultdict

# ---- the boards ---------------------------------------------------------------------------------
# Clocks and DRAM: Raspberry Pi documentation, "Processors" (BCM2711: 4× Cortex-A72 at 1.5 GHz,
# 1.8 GHz on boards since 2020; BCM2712: 4× Cortex-A76 at 2.4 GHz, 512 KB L2 per core, 2 MB L3),
# https://www.raspberrypi.com/documentation/computers/processors.html, and the product briefs
# (Pi 4: LPDDR4-3200; Pi 5: LPDDR4X-4267). Both buses are 32 bits wide: peak = MT/s × 4 bytes.
# Sustained bandwidth: Pi 4 — STREAM (gcc -O3, no OpenMP: one core) best rate 5,562 MB/s (Scale),
# https://www.sci-pi.org.uk/bench/stream.html. Pi 5 — no published single-core STREAM figure was
# found in the sources searched; assumed: the Pi 4's sustained/peak ratio (5.56 / 12.8 = 43 %)
# applied to the Pi 5's peak (17.1 GB/s) = 7.4 GB/s. Four threads: the same figure (assumed —
# one A72 core already draws most of what the Pi 4's controller gives).
BOARDS = [
    {"board": "Pi 4", "soc": "BCM2711", "core": "Cortex-A72", "mcpu": "cortex-a72",
     "ghz": 1.5, "peak_gbs": 3.2 * 4, "gbs": 5.56, "gbs_src": "measured (STREAM, sci-pi.org.uk)",
     "llc_bytes": 1 << 20, "int8": "gemm_i8", "rest_factor": 2.0},
    {"board": "Pi 5", "soc": "BCM2712", "core": "Cortex-A76", "mcpu": "neoverse-n1",
     "ghz": 2.4, "peak_gbs": 4.267 * 4, "gbs": 5.56 / 12.8 * 4.267 * 4,
     "gbs_src": "assumed (Pi 4's sustained/peak ratio)", "llc_bytes": 2 << 20,
     "int8": "gemm_i8_dot", "rest_factor": 1.3},
]

# ---- the models ---------------------------------------------------------------------------------
# Configs as `m2 bench --json` prints them ("model"."config"). Weight bytes per caption (encoder
# + cross K/V weights once, every other decoder weight and the vocabulary projection per step,
# × 20 steps) and multiply-adds per caption: `m2 bench --json` (src/cli/bench.rs, weight_bytes
# and caption_macs; the subcommand was not yet committed at ed1bb25), run on x86_64; the same
# numbers on every machine (the blob's tensor table). --bench-json takes the bytes from a run.
COCO = {"d_ff": 2048, "d_in": 2048, "d_model": 512, "m": 40, "max_regions": 50, "n_dec": 3,
        "n_enc": 3, "vocab": 10201}
COCO_BYTES = {"int8": 436743120, "f16": 865226752, "f32": 1727406080}
COCO_MACS = 2983835648
DEMO = {"d_ff": 256, "d_in": 72, "d_model": 64, "m": 16, "max_regions": 4, "n_dec": 3,
        "n_enc": 3, "vocab": 62}
DEMO_BYTES = {"int8": 5743968}
DEMO_MACS = 28111104
BEAM, STEPS = 5, 20

# "The rest" of a caption (attention, softmax, LayerNorm, gates, log-softmax over the vocabulary,
# top-k) is not modelled: it is x86_64's measured time outside the decode step's linears,
# 20 × (ms_per_step − step_linear_ms), scaled by clock and by a guessed per-clock factor
# (`rest_factor` above: AVX2's 8 lanes against NEON's 4, narrower cores) — the weakest term.
# COCO: bench/README.md "Current (commit 64da7b8)", int8 AVX2 / f16 / f32, 1 thread, on a Zen 5
# VM whose clock the VM does not report (assumed 3.5 GHz), times REST_SINCE_64DA7B8 below.
# Demo: `m2 bench --model assets/demo/demo-int8.m2 --kernel avx2 --threads 1 -n 30`, median of
# 5 runs, on the 2.1 GHz Xeon VM, 2026-12-01 (step_other_ms 0.0169; the runs spread 0.014–0.034).
#
# The rest has shrunk since 64da7b8 (LayerNorm's lanes, the divide-free exp, grouped attention,
# the row maxima's 64 lanes, aligned slots; README "The rest of a decode step"): "other" per
# step, AVX-VNNI, 1 thread, 64da7b8's own harness (`examples/bench_caption caption` and
# `linears`, its blob packed by its own m2-pack from `bench/gen_coco.py`'s checkpoint) against
# `m2 bench --model` (the same checkpoint packed at 294f70e), four interleaved runs, medians, on
# the Intel VM (Sapphire Rapids class), 2026-12-03: 0.68 → 0.356 ms. (2026-12-01 on the 2.1 GHz
# Xeon VM: 0.90 → 0.58.) The non-GEMM code is the same f32 code on every dtype, so the one ratio
# scales all three.
REST_SINCE_64DA7B8 = 0.356 / 0.68
REST_X86 = {  # (ms per caption, GHz)
    ("coco", "int8"): (20 * (1.64 - 1.23) * REST_SINCE_64DA7B8, 3.5),
    ("coco", "f16"): (20 * (2.76 - 2.33) * REST_SINCE_64DA7B8, 3.5),
    ("coco", "f32"): (20 * (4.37 - 3.98) * REST_SINCE_64DA7B8, 3.5),
    ("demo", "int8"): (20 * 0.0169, 2.1),
}

# The split of that rest per part, by the shares `m2 bench`'s part timers measure on x86_64 (its
# `att`, `norm`, `lsm` and `top-k` columns): COCO int8, AVX2, 1 thread, ms per decode step,
# medians of 7 interleaved runs on the 2.1 GHz Xeon VM, 2026-12-01 04:25 UTC (`m2 bench --model
# bench/out/coco-int8.m2 --threads 1 -n 6 --kernel avx2`). Assumed: NEON keeps AVX2's
# proportions (each part is f32 vector work of the same shape).
PARTS_X86 = {
    "attention (self + cross, 3 layers)": 0.225,
    "LayerNorms, residuals, gates": 0.058,
    "log-softmax over 10,201 words": 0.090,
    "top-k": 0.012,
}

# With threads, two parts of the rest run on the pool's workers (src/kernels/parts.rs): a decoder
# layer's three cross-attention levels, one part each, when a level's 2·beam·R·d multiply-adds
# reach PAR_MIN_F32_MACS; and the log-softmax's rows, in shares of ⌈beam / threads⌉ rows, when a
# share's values reach PAR_MIN_EXPS. The cross-attention's share of the attention part is the
# in-step share measured on the Intel VM (README "Sixth round": 147–150 of 174–178 µs, AVX-512,
# 1 thread; assumed the same on NEON). The pool's hand-offs (~1 µs each on x86_64, four a step)
# are left out.
PAR_MIN_F32_MACS, PAR_MIN_EXPS = 32 << 10, 16 << 10
CROSS_OF_ATTENTION = 0.85


def rest_thread_factor(c, threads):
    """The rest's time at `threads` threads over its time at one."""
    total = sum(PARTS_X86.values())
    p_cross = PARTS_X86["attention (self + cross, 3 layers)"] / total * CROSS_OF_ATTENTION
    p_lsm = PARTS_X86["log-softmax over 10,201 words"] / total
    f = 1.0
    t = min(threads, 3)
    per = -(-3 // t)
    if t > 1 and 2 * BEAM * c["max_regions"] * c["d_model"] >= PAR_MIN_F32_MACS:
        f -= p_cross * (1 - per / 3)
    t = min(threads, BEAM)
    per = -(-BEAM // t)
    if t > 1 and per * c["vocab"] >= PAR_MIN_EXPS:
        f -= p_lsm * (1 - per / BEAM)
    return f


def linear_macs(c):
    """{activation rows n: multiply-adds through Kernels::linear} for one caption (as
    src/cli/bench.rs caption_macs, minus the attention terms)."""
    d, din, f, v, r = c["d_model"], c["d_in"], c["d_ff"], c["vocab"], c["max_regions"]
    ne, nd = c["n_enc"], c["n_dec"]
    out = defaultdict(int)
    out[r] += r * din * d + ne * (4 * r * d * d + 2 * r * d * f)  # encoder
    out[r] += nd * ne * 2 * r * d * d  # cross-attention K/V, once per image
    for t in range(STEPS):
        n = 1 if t == 0 else BEAM
        out[n] += nd * (4 * n * d * d + n * d * d + ne * n * d * d + ne * n * 2 * d * d
                        + 2 * n * d * f) + n * d * v
    return dict(out)


def tile_shares(n):
    """{(R, N): share of a linear's MACs} for n activation rows: 4 × 4 tiles, then 4 × (n % 4)."""
    full = n // 4 * 4
    s = {}
    if full:
        s[(4, 4)] = full / n
    if n % 4:
        s[(4, n % 4)] = (n % 4) / n
    return s


def count(ins, op, q=True):
    return sum(1 for l in ins if l.split()[0] == op and (not q or re.search(r"\.(16b|4s|8h)|\bq\d", l)))


def shape(kernel, path):
    """(R, N) of a tile loop, or None if the loop is not a tile (a k-remainder loop)."""
    ins = [l.strip() for l in open(path) if l.strip() and not l.strip().endswith(":")]
    if any(l.startswith("ldp") for l in ins):
        return None
    qloads = sum(1 for l in ins if l.startswith("ldr\tq") or l.startswith("ldr q"))
    if kernel == "gemm_f16":
        r, n = count(ins, "fcvtl"), qloads
        return (r, n) if r and n and count(ins, "fmla") == r * n else None
    prods = {"gemm_i8": count(ins, "sadalp"), "gemm_i8_dot": count(ins, "sdot"),
             "gemm_f32": count(ins, "fmla")}[kernel]
    if not prods:
        return None
    disc = qloads * qloads - 4 * prods  # R + N = loads, R · N = products
    if disc < 0 or math.isqrt(disc) ** 2 != disc:
        return None
    a, b = (qloads + math.isqrt(disc)) // 2, (qloads - math.isqrt(disc)) // 2
    return (a, b) if b >= 1 else None


def mca_cycles(mca, mcpu, path, iterations=500):
    out = subprocess.run([mca, "-mtriple=aarch64", f"-mcpu={mcpu}", "-mattr=+dotprod,+fullfp16",
                          f"-iterations={iterations}", path], capture_output=True, text=True,
                         check=True).stdout
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return total / iterations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loops")
    ap.add_argument("--mca", default="llvm-mca-19")
    ap.add_argument("--bench-json", help="`m2 bench --json` output: macs and bytes from it")
    a = ap.parse_args()
    if a.bench_json:
        j = json.load(open(a.bench_json))
        for row in j["rows"]:
            COCO_BYTES[row["dtype"]] = row["weight_bytes_per_caption"]

    loops = [json.loads(l) for l in open(a.loops)]
    # cpm[(kernel, mcpu)][(R, N) unordered for symmetric kernels] = [cycles per MAC, …]
    cpm = defaultdict(lambda: defaultdict(list))
    iters = defaultdict(lambda: defaultdict(list))
    for lp in loops:
        sh = shape(lp["kernel"], lp["file"])
        if sh is None:
            continue
        key = sh if lp["kernel"] == "gemm_f16" else tuple(sorted(sh, reverse=True))
        for b in BOARDS + [{"mcpu": "neoverse-n1"}]:
            c = mca_cycles(a.mca, b["mcpu"], lp["file"])
            cpm[(lp["kernel"], b["mcpu"])][key].append(c / lp["macs"])
            iters[(lp["kernel"], b["mcpu"])][key].append((c, lp["macs"], lp["instructions"]))

    def cyc(kernel, mcpu, rn):
        k = rn if kernel == "gemm_f16" else tuple(sorted(rn, reverse=True))
        v = sorted(cpm[(kernel, mcpu)][k])
        return v[len(v) // 2]

    ver = subprocess.run([a.mca, "--version"], capture_output=True, text=True).stdout
    ver = re.search(r"LLVM version ([\w.\-~+]+)", ver).group(1)
    print(f"llvm-mca {ver}; Pi 4 = `-mcpu=cortex-a72` (LLVM schedules it with its Cortex-A57 "
          "model), Pi 5 = `-mcpu=neoverse-n1` (LLVM's `cortex-a76` also falls back to the A57 "
          "model; Neoverse N1 is the A76's server sibling and has its own model).\n")
    print("| kernel | tile R × N | instructions / iteration | MACs / iteration | "
          "Pi 4 (A72) cycles / iteration | cycles / MAC | Pi 5 (N1 model) cycles / iteration | "
          "cycles / MAC | copies in the asm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kernel in ("gemm_i8", "gemm_i8_dot", "gemm_f32", "gemm_f16"):
        for rn in [(4, 4), (4, 2), (4, 1)]:
            k = rn if kernel == "gemm_f16" else tuple(sorted(rn, reverse=True))
            cells = []
            n_copies = 0
            for mcpu in ("cortex-a72", "neoverse-n1"):
                rows = iters[(kernel, mcpu)].get(k)
                if not rows:
                    cells += ["–", "–"]
                    continue
                rows = sorted(rows)
                c, macs, ins = rows[len(rows) // 2]
                n_copies = len(rows)
                cells += [f"{c:.2f}", f"{c / macs:.4f}"]
            if kernel == "gemm_i8_dot":
                cells[0] = cells[1] = "– (no SDOT)"
            print(f"| `{kernel}` | {rn[0]} × {rn[1]} | {ins} | {macs} | " + " | ".join(cells)
                  + f" | {n_copies} |")
    print()

    def predict(model, cfg, dtype, b, threads, macs_total, bytes_):
        kernel = b["int8"] if dtype == "int8" else f"gemm_{dtype}"
        lin = linear_macs(cfg)
        cycles = 0.0
        for n, macs in lin.items():
            for rn, share in tile_shares(n).items():
                cycles += macs * share * cyc(kernel, b["mcpu"], rn)
        compute = cycles / (b["ghz"] * 1e9) / threads * 1e3
        steps_bytes = bytes_
        resident = model == "demo" and steps_bytes / STEPS < b["llc_bytes"]
        memory = 0.0 if resident else bytes_ / (b["gbs"] * 1e9) * 1e3
        rest_ms, ghz = REST_X86[(model, dtype)]
        rest = rest_ms * ghz / b["ghz"] * b["rest_factor"] * rest_thread_factor(cfg, threads)
        total = max(compute, memory) + rest
        att = macs_total - sum(lin.values())
        return compute, memory, rest, total, att

    print("| model | dtype | board | threads | GEMM compute ms | weight stream ms | rest ms "
          "(x86-scaled) | **predicted ms / caption** | bound |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, cfg, bytes_d, macs_total in (("coco", COCO, COCO_BYTES, COCO_MACS),
                                            ("demo", DEMO, DEMO_BYTES, DEMO_MACS)):
        for dtype in ("int8", "f16", "f32"):
            if dtype not in bytes_d:
                continue
            for b in BOARDS:
                for threads in (1, 4):
                    c, m, r, t, att = predict(model, cfg, dtype, b, threads, macs_total,
                                              bytes_d[dtype])
                    bound = "memory" if m > c else "compute"
                    name = "COCO size" if model == "coco" else "demo"
                    mem = "cache-resident" if m == 0 else f"{m:.1f}"
                    total = f"{t:.0f}" if t >= 10 else f"{t:.1f}"
                    print(f"| {name} | {dtype} | {b['board']} ({b['core']} {b['ghz']} GHz) | "
                          f"{threads} | {c:.1f} | {mem} | {r:.1f} | **{total}** | {bound} |")
    print()
    print("Bandwidth: " + "; ".join(
        f"{b['board']} {b['gbs']:.2f} GB/s {b['gbs_src']}, peak {b['peak_gbs']:.1f} GB/s"
        for b in BOARDS) + ".")
    total_x86 = sum(PARTS_X86.values())
    rest_step = {b["board"]: REST_X86[("coco", "int8")][0] * REST_X86[("coco", "int8")][1]
                 / b["ghz"] * b["rest_factor"] / STEPS for b in BOARDS}
    print()
    print("| part of a COCO int8 decode step (beam 5) | x86_64 AVX2 ms (measured) | share | "
          + " | ".join(f"{b['board']} ms (predicted)" for b in BOARDS) + " |")
    print("|---|---|---|" + "---|" * len(BOARDS))
    for part, ms in PARTS_X86.items():
        share = ms / total_x86
        print(f"| {part} | {ms:.3f} | {share:.0%} | "
              + " | ".join(f"{rest_step[b['board']] * share:.2f}" for b in BOARDS) + " |")
    print(f"| rest of the step | {total_x86:.3f} | 100% | "
          + " | ".join(f"{rest_step[b['board']]:.2f}" for b in BOARDS) + " |")
    print()
    print(f"Multiply-adds per caption: COCO {COCO_MACS / 1e9:.2f} G "
          f"({sum(linear_macs(COCO).values()) / 1e9:.2f} G in linears), demo "
          f"{DEMO_MACS / 1e6:.1f} M ({sum(linear_macs(DEMO).values()) / 1e6:.1f} M in linears).")


if __name__ == "__main__":
    sys.exit(main())
