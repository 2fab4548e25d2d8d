#!/usr/bin/env python3
"""Convert the reference M² checkpoint (a torch.save dict) to safetensors for m2-pack.

    python3 tools/python/pth_to_safetensors.py meshed_memory_transformer.pth model.safetensors

Takes ``torch.load(PTH, map_location="cpu")["state_dict"]`` (or the file itself if it already is
a plain state_dict), makes every tensor contiguous and unshared, and writes all of them —
nothing dropped, state buffers included (m2-pack ignores those) — with
``safetensors.torch.save_file``. Needs ``pip install torch safetensors``; the Rust side never
needs pickle or torch.

The released checkpoint also stores optimizer and RNG state (numpy objects), which
``torch.load(weights_only=True)`` refuses. Loading those requires full unpickling, which can run
arbitrary code: pass ``--trust-pickle`` only for a file from a source you trust (the official
release).
"""

import argparse
import os
import sys


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def load_checkpoint(torch, path, trust_pickle):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:
        # torch < 1.13 has no weights_only
        if not trust_pickle:
            fail(
                f"this torch ({torch.__version__}) cannot load {path} safely; "
                "re-run with --trust-pickle if you trust the file's source"
            )
        return torch.load(path, map_location="cpu")
    except Exception as e:  # weights-only unpickler refused a non-tensor object
        if not trust_pickle:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            fail(
                f"{path} holds non-tensor objects that weights_only loading refuses ({first}); "
                "re-run with --trust-pickle if you trust the file's source"
            )
        return torch.load(path, map_location="cpu", weights_only=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pth", help="reference checkpoint, e.g. meshed_memory_transformer.pth")
    ap.add_argument("out", help="output .safetensors file")
    ap.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow full unpickling (needed for the released checkpoint's optimizer/RNG state)",
    )
    args = ap.parse_args(argv)

    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as e:
        fail(f"{e.name or e} is not installed: pip install torch safetensors")

    if not os.path.isfile(args.pth):
        fail(f"no such file: {args.pth}")
    if os.path.exists(args.out) and os.path.samefile(args.pth, args.out):
        fail("refusing to overwrite the input file")

    ckpt = load_checkpoint(torch, args.pth, args.trust_pickle)
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        sd = ckpt
    else:
        keys = list(ckpt.keys())[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        fail(f"{args.pth} has no 'state_dict' (top level: {keys})")

    tensors = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            fail(f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
        # contiguous and unshared: save_file refuses tensors that share storage
        tensors[k] = v.detach().cpu().contiguous().clone()

    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata={"source": os.path.basename(args.pth), "format": "pt"})
    os.replace(tmp, args.out)
    n = sum(t.numel() for t in tensors.values() if t.is_floating_point())
    print(f"wrote {args.out}: {len(tensors)} tensors, {n:,} floating-point values")


if __name__ == "__main__":
    main()
