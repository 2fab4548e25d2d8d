#!/usr/bin/env python3
"""Predicts the cycles of a decode step's non-linear part ("the rest") on a given core from the
code that actually runs: a basic-block profile under qemu-user times llvm-mca's throughput of
each block.

    python3 bench/rest_profile.py --binary M2 --arch aarch64|armv7|x86_64 --model COCO.m2 \
        --features F.npy --mcpu cortex-a72,neoverse-n1 [--env QEMU_CPU=cortex-a72] \
        [--steps 4,12] [--json]

1. Runs `M2 caption --threads 1 --max-len N` under qemu-user twice (N = the two --steps), with
   `-d exec,nochain -dfilter RANGES`: qemu logs every translated block it executes whose address
   is in the binary's text outside the linear layers' kernels (--linear, a regex over the
   demangled symbols: their blocks would be billions of lines). The two runs' block counts,
   subtracted and divided by the steps between them, are one decode step's (the encoder, the
   cross keys/values and the setup cancel out). What the shorter run has beyond its steps, in
   the engine's functions (--engine), is the figure once per image. A run whose caption is
   shorter than its N steps (every beam ended) is refused.
2. Each executed block is cut out of the binary (objdump, from its address to its first branch,
   inclusive — where qemu ends a block) and timed by llvm-mca on each --mcpu: its steady-state
   cycles per pass (all blocks in one llvm-mca run, one region each). aarch64 stores that
   update their base register are fed to it as a store and an `add` (`split_writeback`).
3. Cycles per step = Σ over blocks of executions × cycles per pass, per function (the symbol
   the block is in) and in total; the functions of the linear layers' glue (--glue: activation
   quantisation, the dispatch) are reported apart, as `m2 bench` counts them in `linear`.

What it leaves out (say so wherever its figures go): caches and memory (every load hits L1 —
a step's cold cross-attention keys and values are not in it), branch mispredictions, the
front end across blocks, and the C library (memcpy, memset: outside the binary). Blocks that
run once per call are timed as if in a loop (their latency is hidden). It is a model of the
instruction stream the core must execute, not a measurement.
"""
import argparse
import bisect
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

ARCH = {
    "aarch64": {
        "qemu": ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
        "tools": "aarch64-linux-gnu-",
        "triple": "aarch64",
        "branch": re.compile(r"^(b|b\.\w+|bl|blr|br|ret|cbz|cbnz|tbz|tbnz)$"),
        "span": 4 * 600,
    },
    "armv7": {  # 32-bit Raspberry Pi OS (A32 code)
        "qemu": ["qemu-arm", "-L", "/usr/arm-linux-gnueabihf"],
        "tools": "arm-linux-gnueabihf-",
        "triple": "armv7",
        "branch": re.compile(r"^(b|bl|blx|bx)(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)?"
                             r"(\.w|\.n)?$|^(cbz|cbnz|pop|ldm\w*)$"),
        "span": 4 * 600,
    },
    "x86_64": {
        "qemu": ["qemu-x86_64", "-cpu", "max"],
        "tools": "",
        "triple": "x86_64",
        "branch": re.compile(r"^(j\w+|call\w*|ret\w*|loop\w*)$"),
        "span": 4096,
    },
}
LINEAR = (r"m2::kernels::(neon|avx2|avx512|avx_vnni|scalar|dsp)::"
          r"(gemm|linear|tile|I8Tiles|F32Tiles|F16Tiles|for_each_tile|Tiles)")
# Per image, only the engine's functions count (not the process's start, the blob's checksum,
# the feature file's parsing or the output).
ENGINE = r"^(<?m2::(model|kernels|search|math)|libm::)"
GLUE = r"quantize|roundf|Kernels::linear|kernels::tiles|kernels::operand|kernels::pool"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def symbols(tools, binary):
    """(start, end, demangled name) of every function in the binary, sorted by start."""
    out = run([tools + "nm", "-S", "-C", "--defined-only", binary]).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16), int(parts[1], 16)
            if size:
                syms.append((start, start + size, parts[3]))
    syms.sort()
    return syms


def load_bias(tools, binary):
    """The executable segment's link address (qemu-user's load base is added at run time)."""
    out = run([tools + "readelf", "-lW", binary]).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) > 7 and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[2], 16)
    raise SystemExit("error: no executable LOAD segment in " + binary)


def guest_base(a, binary, env):
    """Where qemu-user maps the binary's executable segment, less its link address."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        subprocess.run(a["qemu"] + ["-d", "page", "-D", log.name, binary, "--version"],
                       check=True, capture_output=True, env=env)
        text = open(log.name).read()
    # the binary's text is the largest executable mapping (not the loader's, the C library's
    # or 32-bit Arm's kernel helper page at 0xffff0000)
    maps = [(int(e, 16) - int(b, 16), int(b, 16)) for b, e in
            re.findall(r"^([0-9a-f]+)-([0-9a-f]+) [0-9a-f]+ r-x", text, re.M)]
    if not maps:
        raise SystemExit("error: qemu -d page printed no executable mapping")
    return max(maps)[1] - (load_bias(a["tools"], binary) & ~0xfff)


def block_counts(a, binary, env, base, ranges, args, steps):
    """{link address: executions} over one `caption --max-len steps` run."""
    dfilter = ",".join(f"0x{base + s:x}..0x{base + e - 1:x}" for s, e in ranges)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "exec.log")
        cmd = a["qemu"] + ["-d", "exec,nochain", "-dfilter", dfilter, "-D", log, binary,
                           "caption", "-m", args.model, "-f", args.features, "--threads", "1",
                           "-q", "--format", "jsonl", "--max-len", str(steps),
                           "--beam", str(args.beam)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        tokens = json.loads(out.splitlines()[0])["tokens"]
        if len(tokens) < steps:
            raise SystemExit(f"error: the caption ended after {len(tokens)} of {steps} steps; "
                             "choose smaller --steps or other features")
        counts = collections.Counter()
        pat = re.compile(r"\[[0-9a-f]+/([0-9a-f]+)/")
        with open(log) as f:
            for line in f:
                m = pat.search(line)
                if m:
                    counts[int(m.group(1), 16) - base] += 1
    return counts


def blocks(a, binary, addrs):
    """{address: [instruction text]} from each address to its first branch, inclusive."""
    out = {}
    for addr in addrs:
        dis = run([a["tools"] + "objdump", "-d", "--no-show-raw-insn",
                   f"--start-address=0x{addr:x}", f"--stop-address=0x{addr + a['span']:x}",
                   binary]).stdout
        ins = []
        for line in dis.splitlines():
            m = re.match(r"^\s*[0-9a-f]+:\s+(.*)$", line)
            if not m:
                continue
            # comments: `//` in aarch64 objdump and `;` in 32-bit Arm's (where `#` marks an
            # immediate), `#` in AT&T
            text = m.group(1).split({"aarch64": "//", "armv7": ";"}.get(a["triple"], "#"))[0]
            text = re.sub(r"<[^>]*>", "", text).strip()
            if not text or text.startswith("(bad)"):
                continue
            op = text.split()[0]
            if a["triple"] == "armv7" and op in ("pop", "ldm", "ldmia", "ldmfd") \
                    and "pc" not in text:
                ins.append(text)  # only a pop into pc ends a block
                continue
            if a["branch"].match(op):
                ins.append(op)  # the branch itself, without its target
                break
            ins.append(text)
        out[addr] = ins
    return out


def fix_branch(a, ins):
    """A block's closing branch, aimed at the block's own start (llvm-mca needs a target)."""
    last = ins[-1]
    if a["branch"].match(last):
        if a["triple"] == "armv7":
            if last.startswith(("bx", "blx", "pop", "ldm")) or last in ("bl",):
                return ins[:-1]
            if last in ("cbz", "cbnz"):
                return ins[:-1] + [f"{last} r0, 0b"]
            return ins[:-1] + [f"{last} 0b"]
        if a["triple"] == "x86_64":
            return ins[:-1] + ([f"{last} 0b"] if last.startswith(("j", "loop")) else [])
        if last in ("ret", "br", "blr"):
            return ins[:-1]
        if last in ("cbz", "cbnz"):
            return ins[:-1] + [f"{last} x0, 0b"]
        if last in ("tbz", "tbnz"):
            return ins[:-1] + [f"{last} x0, #0, 0b"]
        return ins[:-1] + [f"{last} 0b"]
    return ins


POST_STORE = re.compile(r"^(st\w+)\s+(.*),\s*\[(x\d+|sp)\],\s*(#-?\w+)$")
PRE_STORE = re.compile(r"^(st\w+)\s+(.*),\s*\[(x\d+|sp),\s*(#-?\w+)\]!$")


def split_writeback(ins):
    """aarch64 stores that update their base register, as a store and an `add`: llvm-mca holds
    the whole store (its base's new value too) until the stored data is ready, which chains a
    loop's iterations through the pointer (`str q0, [x8], #16` then `ldr q1, [x8]`); a core's
    address generation does not wait for the data."""
    out = []
    for text in ins:
        m = POST_STORE.match(text) or PRE_STORE.match(text)
        if not m:
            out.append(text)
            continue
        op, data, base, imm = m.groups()
        bump = f"add {base}, {base}, {imm}" if not imm.startswith("#-") \
            else f"sub {base}, {base}, #{imm[2:]}"
        if m.re is POST_STORE:
            out += [f"{op} {data}, [{base}]", bump]
        else:
            out += [bump, f"{op} {data}, [{base}]"]
    return out


def mca(a, mcpu, blks, exe):
    """{address: steady-state cycles per pass} for every block, on `mcpu`."""
    src = []
    for addr, ins in blks.items():
        src.append(f"# LLVM-MCA-BEGIN b{addr:x}")
        src.append("0:")
        ins = fix_branch(a, ins)
        src.extend(split_writeback(ins) if a["triple"] == "aarch64" else ins)
        src.append(f"# LLVM-MCA-END b{addr:x}")
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        if a["triple"] == "x86_64":
            f.write(".att_syntax\n")
        f.write("\n".join(src) + "\n")
        path = f.name
    res = subprocess.run([exe, f"-mtriple={a['triple']}", f"-mcpu={mcpu}", "-iterations=100",
                          "-skip-unsupported-instructions=any", "-json", path],
                         capture_output=True, text=True)
    os.unlink(path)
    if res.returncode != 0:
        raise SystemExit(f"error: llvm-mca -mcpu={mcpu}: {res.stderr.strip()[:400]}")
    doc = json.loads(res.stdout)
    cyc = {}
    for region in doc["CodeRegions"]:
        name = region["Name"]
        summary = region["SummaryView"]
        cyc[int(name[1:], 16)] = summary["TotalCycles"] / summary["Iterations"]
    return cyc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--arch", choices=ARCH, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--mcpu", required=True, help="llvm-mca cores, comma-separated")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the guest")
    p.add_argument("--steps", default="4,12")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--linear", default=LINEAR)
    p.add_argument("--glue", default=GLUE)
    p.add_argument("--engine", default=ENGINE, help="functions counted once per image")
    p.add_argument("--mca", default="llvm-mca-19")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    a = ARCH[args.arch]
    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    lo, hi = (int(s) for s in args.steps.split(","))

    syms = symbols(a["tools"], args.binary)
    linear = re.compile(args.linear)
    ranges, prev = [], None
    for s, e, name in syms:
        if linear.search(name):
            continue
        if prev and s <= prev[1]:
            prev[1] = max(prev[1], e)
        else:
            prev = [s, e]
            ranges.append(prev)
    base = guest_base(a, args.binary, env)
    c_lo = block_counts(a, args.binary, env, base, ranges, args, lo)
    c_hi = block_counts(a, args.binary, env, base, ranges, args, hi)
    per_step = {pc: (c_hi[pc] - c_lo.get(pc, 0)) / (hi - lo) for pc in c_hi}
    per_step = {pc: n for pc, n in per_step.items() if n > 0}
    # once per image: the encoder, the cross keys/values, the setup (the lo run less lo steps)
    once = {pc: n - lo * per_step.get(pc, 0.0) for pc, n in c_lo.items()}
    once = {pc: n for pc, n in once.items() if n > 0}
    blks = blocks(a, args.binary, sorted(set(per_step) | set(once)))

    starts = [s for s, _, _ in syms]

    def func(pc):
        i = bisect.bisect_right(starts, pc) - 1
        if i >= 0 and syms[i][0] <= pc < syms[i][1]:
            return re.sub(r"::h[0-9a-f]{16}$", "", syms[i][2])
        return "?"

    glue, engine = re.compile(args.glue), re.compile(args.engine)
    report = {"binary": os.path.basename(args.binary), "arch": args.arch, "steps": [lo, hi],
              "cores": {}}
    insns = sum(n * len(blks[pc]) for pc, n in per_step.items())
    for mcpu in args.mcpu.split(","):
        cyc = mca(a, mcpu, blks, args.mca)
        by_func = collections.Counter()
        ins_func = collections.Counter()
        for pc, n in per_step.items():
            by_func[func(pc)] += n * cyc.get(pc, 0.0)
            ins_func[func(pc)] += n * len(blks[pc])
        rest = {f: c for f, c in by_func.items() if not glue.search(f)}
        once_rest = once_glue = 0.0
        once_func = collections.Counter()
        for pc, n in once.items():
            if not engine.search(func(pc)):
                continue
            once_func[func(pc)] += n * cyc.get(pc, 0.0)
            if glue.search(func(pc)):
                once_glue += n * cyc.get(pc, 0.0)
            else:
                once_rest += n * cyc.get(pc, 0.0)
        report["cores"][mcpu] = {
            "rest_cycles_per_step": sum(rest.values()),
            "glue_cycles_per_step": sum(c for f, c in by_func.items() if glue.search(f)),
            "rest_cycles_per_image": once_rest,
            "glue_cycles_per_image": once_glue,
            "functions": [{"function": f, "cycles": c, "instructions": ins_func[f]}
                          for f, c in by_func.most_common()],
            "functions_per_image": [{"function": f, "cycles": c}
                                    for f, c in once_func.most_common()],
        }
    report["instructions_per_step"] = insns
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['binary']} ({args.arch}), one decode step (runs of {lo} and {hi} steps): "
          f"{insns:,.0f} instructions outside the linear kernels")
    for mcpu, r in report["cores"].items():
        print(f"\n-mcpu={mcpu}: the rest {r['rest_cycles_per_step']:,.0f} cycles per step "
              f"(+ linear glue {r['glue_cycles_per_step']:,.0f}); once per image "
              f"{r['rest_cycles_per_image']:,.0f} (+ glue {r['glue_cycles_per_image']:,.0f})")
        for f in r["functions"][:args.top]:
            print(f"  {f['cycles']:>12,.0f} cyc {f['instructions']:>12,.0f} ins  "
                  f"{f['function'][:110]}")


if __name__ == "__main__":
    sys.exit(main())
