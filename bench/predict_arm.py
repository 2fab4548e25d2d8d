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
     "llc_bytes": 1 << 20, "int8": "gemm_i8", "qemu_cpu": "cortex-a72"},
    {"board": "Pi 5", "soc": "BCM2712", "core": "Cortex-A76", "mcpu": "neoverse-n1",
     "ghz": 2.4, "peak_gbs": 4.267 * 4, "gbs": 5.56 / 12.8 * 4.267 * 4,
     "gbs_src": "assumed (Pi 4's sustained/peak ratio)", "llc_bytes": 2 << 20,
     "int8": "gemm_i8_dot", "qemu_cpu": "cortex-a76"},
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
# top-k; and the linears' glue: activation quantisation, the dispatch) is modelled from the code
# that runs: bench/rest_profile.py runs the aarch64 `m2 caption` under qemu-user on a COCO-size
# int8 blob (QEMU_CPU = the board's core, so the board's kernel path), counts every executed
# block outside the GEMM kernels, and times each block with llvm-mca on the board's core: cycles
# per decode step and once per image (the encoder's and the cross keys/values' non-linear part).
# `--rest BOARD=FILE` gives its --json output per board. The same f32 code runs for every dtype;
# only int8's linears quantise their inputs, so the glue counts for int8 alone.
# Left out there: caches (every load hits L1), mispredictions, memcpy/memset (the C library).
#
# The cross-attention's keys and values (3 layers × 3 levels × 2 × R × d f32: 1.84 MB at COCO
# size) are read once per step; on a Pi they come from DRAM (the step's 21 MB of int8 weights
# pass through the 1 MB L2 / 2 MB L3 in between). Streaming them takes less than computing with
# them (printed below), so the stream is taken as hidden behind that compute.
#
# With threads, two parts of the rest run on the pool's workers (src/kernels/parts.rs): a decoder
# layer's three cross-attention levels, one part each, when a level's 2·beam·R·d multiply-adds
# reach PAR_MIN_F32_MACS; and the log-softmax's rows, in shares of ⌈beam / threads⌉ rows, when a
# share's values reach PAR_MIN_EXPS. Their shares of the step's rest are the profile's
# (`attend_levels::{{closure}}`, `log_softmax_rows_here`). The pool's hand-offs (~1 µs each on
# x86_64, four a step) are left out.
PAR_MIN_F32_MACS, PAR_MIN_EXPS = 32 << 10, 16 << 10
CROSS_FN, LSM_FN = "attend_levels::{{closure}}", "log_softmax_rows_here"
# Demo: not profiled (its parts are too small to hand out to threads); its rest is x86_64's
# measured time outside the decode step's linears, `m2 bench --model assets/demo/demo-int8.m2
# --kernel avx2 --threads 1 -n 30`, median of 5 runs, on the 2.1 GHz Xeon VM, 2026-12-01
# (step_other_ms 0.0169; the runs spread 0.014–0.034), scaled by clock and a guessed 2× (A72) /
# 1.3× (A76) per clock for NEON's 4 lanes against AVX2's 8.
DEMO_REST = (20 * 0.0169, 2.1, {"Pi 4": 2.0, "Pi 5": 1.3})


# The profile's functions, grouped into the parts a reader knows (first match wins).
PARTS = {
    "cross-attention (scores, weighted sums)": ("attend_levels",),
    "attention softmax (self and cross)": (">::softmax_rows",),
    "log-softmax over the vocabulary": ("log_softmax_rows",),
    "decoder step body (self-attention, gates, LayerNorm calls, residuals)":
        ("MeshedDecoder::step", "dot8_f32", "attend_rows"),
    "LayerNorm rows": ("layer_norm_rows",),
    "beam search (top-k, bookkeeping)": ("TopK", "run_step", "beam_search", "decode"),
    "int8 activation quantisation and linear dispatch": ("quantize", "roundf", "Kernels::linear",
                                                         "operand", "tiles", "pool"),
}
PARTS["other"] = ()


def part_of(function):
    for part, keys in PARTS.items():
        if any(k in function for k in keys):
            return part
    return "other"


def kv_bytes(c):
    """The cross-attention keys and values one decode step reads (f32)."""
    return c["n_dec"] * c["n_enc"] * 2 * c["max_regions"] * c["d_model"] * 4


def shares(prof):
    """(cross-attention share, log-softmax share) of a profile's rest per step."""
    total = prof["rest_cycles_per_step"]
    f = {x["function"]: x["cycles"] for x in prof["functions"]}
    cross = sum(c for n, c in f.items() if CROSS_FN in n) / total
    lsm = sum(c for n, c in f.items() if LSM_FN in n) / total
    return cross, lsm


def rest_thread_factor(c, threads, prof):
    """The rest's time at `threads` threads over its time at one."""
    p_cross, p_lsm = shares(prof)
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


def rest_ms(prof, cfg, threads, ghz, glue):
    """A caption's rest in ms from a rest_profile.py core profile: once per image plus every
    step's (scaled for `threads`), with the int8 linears' glue (activation quantisation) if
    `glue`."""
    cycles = (prof["rest_cycles_per_image"] + glue * prof["glue_cycles_per_image"]
              + STEPS * (prof["rest_cycles_per_step"] * rest_thread_factor(cfg, threads, prof)
                         + glue * prof["glue_cycles_per_step"]))
    return cycles / (ghz * 1e9) * 1e3


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
    ap.add_argument("--rest", action="append", default=[], required=True,
                    help="BOARD=FILE: bench/rest_profile.py --json for that board's core "
                         "(e.g. 'Pi 4=a72.json')")
    a = ap.parse_args()
    rest = {}
    for kv in a.rest:
        board, _, path = kv.partition("=")
        rest[board] = json.load(open(path))
    for b in BOARDS:
        if b["board"] not in rest or b["mcpu"] not in rest[b["board"]]["cores"]:
            raise SystemExit(f"error: no --rest profile for {b['board']} on -mcpu={b['mcpu']}")
        b["rest"] = rest[b["board"]]["cores"][b["mcpu"]]
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
        if model == "demo":
            demo_ms, ghz, factor = DEMO_REST
            rest = demo_ms * ghz / b["ghz"] * factor[b["board"]]
        else:
            rest = rest_ms(b["rest"], cfg, threads, b["ghz"], glue=dtype == "int8")
        total = max(compute, memory) + rest
        att = macs_total - sum(lin.values())
        return compute, memory, rest, total, att

    print("| model | dtype | board | threads | GEMM compute ms | weight stream ms | rest ms "
          "| **predicted ms / caption** | bound |")
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
    print()
    print("| part of a COCO int8 decode step (beam 5), 1 thread | "
          + " | ".join(f"{b['board']} Mcycles | {b['board']} ms" for b in BOARDS) + " |")
    print("|---|" + "---|---|" * len(BOARDS))
    cells = {}
    for b in BOARDS:
        parts = defaultdict(float)
        for f in b["rest"]["functions"]:
            parts[part_of(f["function"])] += f["cycles"]
        cells[b["board"]] = parts
    for part in PARTS:
        print(f"| {part} | " + " | ".join(
            f"{cells[b['board']][part] / 1e6:.2f} | "
            f"{cells[b['board']][part] / b['ghz'] / 1e6:.2f}" for b in BOARDS) + " |")
    print("| **the step's rest, int8** | " + " | ".join(
        f"{sum(cells[b['board']].values()) / 1e6:.2f} | "
        f"**{sum(cells[b['board']].values()) / b['ghz'] / 1e6:.2f}**" for b in BOARDS) + " |")
    print()
    cross = "cross-attention (scores, weighted sums)"

    def once_ms(b):
        p = b["rest"]
        return (p["rest_cycles_per_image"] + p["glue_cycles_per_image"]) / b["ghz"] / 1e6

    print("Once per image (the encoder's and the cross keys/values' non-linear part, and their "
          "activation quantisation): "
          + "; ".join(f"{b['board']} {once_ms(b):.1f} ms" for b in BOARDS)
          + f". The cross keys/values a step reads ({kv_bytes(COCO) / 1e6:.2f} MB) stream from "
          "DRAM in " + "; ".join(
              f"{b['board']} {kv_bytes(COCO) / (b['gbs'] * 1e9) * 1e3:.2f} ms against "
              f"{cells[b['board']][cross] / b['ghz'] / 1e6:.2f} ms of cross-attention compute"
              for b in BOARDS) + " per step (taken as hidden).")
    print()
    print(f"Multiply-adds per caption: COCO {COCO_MACS / 1e9:.2f} G "
          f"({sum(linear_macs(COCO).values()) / 1e9:.2f} G in linears), demo "
          f"{DEMO_MACS / 1e6:.1f} M ({sum(linear_macs(DEMO).values()) / 1e6:.1f} M in linears).")


if __name__ == "__main__":
    sys.exit(main())
