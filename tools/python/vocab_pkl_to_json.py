#!/usr/bin/env python3
"""Convert the reference M² vocabulary pickle (vocab.pkl) to a JSON list of tokens for m2-pack.

    python3 tools/python/vocab_pkl_to_json.py vocab.pkl vocab.json
    python3 tools/python/vocab_pkl_to_json.py --self-test

The pickle holds a torchtext-style ``Vocab`` object (``torchtext.vocab.Vocab`` or the
reference repository's copy, ``data.vocab.Vocab``) with ``itos`` (list, index = id), ``stoi``
(a defaultdict whose factory is a torchtext function) and ``freqs`` (a Counter). Neither
torchtext nor the reference code is needed: a restricted unpickler maps every class outside a
small allow-list of plain containers to an inert stub that only records its state, then
``itos`` is read from that state. Nothing from the file is ever called, so this is also safe
on an untrusted file. Plain Python 3, no third-party packages.

The output is ``json.dump(itos)``: index = id, every token exact (COCO has whitespace tokens
such as " " and "\\n"; they survive as JSON escapes).
"""

import argparse
import collections
import io
import json
import os
import pickle
import sys

# Classes and functions the unpickler may really construct: plain containers only.
ALLOWED = {
    ("collections", "Counter"),
    ("collections", "defaultdict"),
    ("collections", "OrderedDict"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "tuple"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("__builtin__", "object"),
}


class Stub:
    """Stands in for any class the pickle names (torchtext's Vocab, its factory functions...).

    Accepts any constructor arguments and any state, and records them; has no behaviour."""

    def __init__(self, *args, **kwargs):
        self._stub_args = args
        self._stub_kwargs = kwargs

    def __call__(self, *args, **kwargs):  # a stubbed function used as a defaultdict factory
        return None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            # (__dict__, __slots__ state)
            for part in state:
                if isinstance(part, dict):
                    self.__dict__.update(part)
        elif isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._stub_state = state

    def __repr__(self):
        return f"<stub {type(self).__module__}.{type(self).__qualname__}>"


class StubUnpickler(pickle.Unpickler):
    """Unpickler that never imports or calls anything outside ``ALLOWED``."""

    def __init__(self, file):
        super().__init__(file)
        self.stubbed = set()

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        self.stubbed.add(f"{module}.{name}")
        return type(name, (Stub,), {"__module__": module, "__qualname__": name})


def load_itos(data):
    """Token list of a pickled torchtext-style vocabulary (bytes of the pickle)."""
    up = StubUnpickler(io.BytesIO(data))
    obj = up.load()
    if isinstance(obj, list):
        itos = obj
    elif isinstance(obj, dict):
        itos = obj.get("itos")
    else:
        itos = getattr(obj, "itos", None)
        state = getattr(obj, "_stub_state", None)
        if itos is None and isinstance(state, dict):
            itos = state.get("itos")
    if itos is None:
        kind = type(obj).__module__ + "." + type(obj).__qualname__
        raise ValueError(f"the pickle holds a {kind} without an 'itos' list")
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ValueError("'itos' is not a list of strings")
    return itos


def convert(pkl_path, json_path):
    with open(pkl_path, "rb") as f:
        itos = load_itos(f.read())
    tmp = json_path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        json.dump(itos, f, ensure_ascii=True)
        f.write("\n")
    os.replace(tmp, json_path)
    return itos


# ---- self-test: fabricate pickles shaped like the reference's, without torchtext -------------


def _fabricate(module_name, protocol):
    """Pickle an object whose class path is ``module_name.Vocab``, like torchtext's."""
    import types

    parts = module_name.split(".")
    saved = {k: sys.modules.get(k) for k in [".".join(parts[: i + 1]) for i in range(len(parts))]}
    try:
        for i in range(len(parts)):
            name = ".".join(parts[: i + 1])
            sys.modules[name] = types.ModuleType(name)
        mod = sys.modules[module_name]

        def _default_unk_index():
            return 0

        _default_unk_index.__module__ = module_name
        _default_unk_index.__qualname__ = "_default_unk_index"
        mod._default_unk_index = _default_unk_index

        class Vocab:
            def __init__(self, itos, freqs):
                self.freqs = collections.Counter(freqs)
                self.itos = list(itos)
                self.stoi = collections.defaultdict(_default_unk_index)
                self.stoi.update({t: i for i, t in enumerate(self.itos)})
                self.vectors = None

        Vocab.__module__ = module_name
        Vocab.__qualname__ = "Vocab"
        mod.Vocab = Vocab
        itos = ["<unk>", "<pad>", "<bos>", "<eos>", "a", "on", " ", "  ", "\n", "\n ", "t.v", "&", "caf\u00e9"]
        freqs = {t: 100 - i for i, t in enumerate(itos[4:])}
        return pickle.dumps(Vocab(itos, freqs), protocol=protocol), itos
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def self_test():
    import tempfile

    assert "torchtext" not in sys.modules
    n = 0
    for module in ["torchtext.vocab", "data.vocab"]:
        for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
            data, itos = _fabricate(module, protocol)
            assert module.encode() in data or protocol >= 4, (module, protocol)
            got = load_itos(data)
            assert got == itos, (module, protocol, got)
            n += 1
    assert "torchtext" not in sys.modules, "the converter must not import torchtext"
    # end to end through files, whitespace tokens exact
    data, itos = _fabricate("torchtext.vocab", 2)
    with tempfile.TemporaryDirectory() as d:
        pkl, js = os.path.join(d, "vocab.pkl"), os.path.join(d, "vocab.json")
        with open(pkl, "wb") as f:
            f.write(data)
        convert(pkl, js)
        with open(js, encoding="ascii") as f:
            back = json.load(f)
    assert back == itos and back[6] == " " and back[8] == "\n" and back[9] == "\n ", back
    # a pickle that would run code if unpickled normally is inert here
    evil = b"cos\nsystem\n(S'echo pwned >&2'\ntR."
    try:
        load_itos(evil)
        raise AssertionError("evil pickle accepted")
    except ValueError:
        pass
    # a bare list and a plain dict with itos are accepted too
    assert load_itos(pickle.dumps(["a", "b"])) == ["a", "b"]
    assert load_itos(pickle.dumps({"itos": ["x"]})) == ["x"]
    print(f"self-test ok ({n} fabricated vocab pickles, protocols 0-{pickle.HIGHEST_PROTOCOL})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pkl", nargs="?", help="the reference's vocab.pkl")
    ap.add_argument("out", nargs="?", help="output JSON (list of tokens, index = id)")
    ap.add_argument("--self-test", action="store_true", help="run the built-in self-test")
    args = ap.parse_args(argv)
    if args.self_test:
        self_test()
        return
    if not args.pkl or not args.out:
        ap.error("PKL and OUT are required (or --self-test)")
    if os.path.exists(args.out) and os.path.exists(args.pkl) and os.path.samefile(args.pkl, args.out):
        print("error: refusing to overwrite the input file", file=sys.stderr)
        sys.exit(1)
    try:
        itos = convert(args.pkl, args.out)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
        print(f"error: {args.pkl}: {e}", file=sys.stderr)
        sys.exit(1)
    specials = {t: itos.index(t) for t in ("<unk>", "<pad>", "<bos>", "<eos>") if t in itos}
    print(f"wrote {args.out}: {len(itos)} tokens, specials {specials}")


if __name__ == "__main__":
    main()
