"""Digit scenes from scikit-learn's handwritten digits, with captions in words.

Deterministic given the seed. The source digits (1,797 real 8x8 scans) are split into
train/val/test (70/15/15, stratified) *before* any scene is composed, so test scenes hold only
digits the model never saw.

A scene: a 48x48 u8 canvas (bright ink on black) with 1-4 digits, each "small" (the 8x8 scan)
or "large" (the scan upscaled 2x, nearest neighbour), placed so that any two digit cells are at
least GAP pixels apart. The region extractor (regions.py, twin of src/regions/mod.rs) must find
exactly one region per digit; otherwise the scene is redrawn.
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from regions import extract

CANVAS = 48
GAP = 3
MAX_REGIONS = 4
SIZES = {"small": 8, "large": 16}
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PLURALS = ["zeros", "ones", "twos", "threes", "fours", "fives", "sixes", "sevens", "eights",
           "nines"]
COUNTS = {1: "one", 2: "two", 3: "three", 4: "four"}
N_REFS = 5


def split_digits(seed: int = 0):
    """{'train'|'val'|'test': (images [N,8,8] u8 0..255, labels [N])}."""
    d = load_digits()
    px = ((d.images.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.30, stratify=y, random_state=seed)
    va, te = train_test_split(rest, test_size=0.50, stratify=y[rest], random_state=seed)
    return {k: (px[v], y[v], v) for k, v in (("train", tr), ("val", va), ("test", te))}


def _art(word: str) -> str:
    # "an eight", "a one" (only "eight" starts with a vowel sound here)
    return "an" if word.startswith("eight") else "a"


def _np(d, with_size=True):
    """'a small seven', 'an eight', 'a large eight'."""
    w = f"{d['size']} {d['name']}" if with_size else d["name"]
    return f"{_art(w)} {w}"


def _join(parts):
    if len(parts) == 1:
        return parts[0]
    return " ".join(parts[:-1]) + " and " + parts[-1]


def _location(d):
    cx, cy = d["cx"] / CANVAS, d["cy"] / CANVAS
    col = "left" if cx < 0.36 else ("right" if cx > 0.64 else None)
    row = "top" if cy < 0.36 else ("bottom" if cy > 0.64 else None)
    if row and col:
        return f"in the {row} {col} corner"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the middle"


def _relation(a, b):
    """Relation of a to b: ('left'|'right'|'above'|'below')."""
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    if abs(dx) >= abs(dy):
        return "left" if dx > 0 else "right"
    return "above" if dy > 0 else "below"


def _rel_phrase(rel):
    return {"left": "to the left of", "right": "to the right of", "above": "above",
            "below": "below"}[rel]


def _identity_groups(ds):
    """'two fives and a one' (groups ordered by first appearance left to right)."""
    order = sorted(ds, key=lambda d: d["cx"])
    seen = []
    for d in order:
        if d["label"] not in seen:
            seen.append(d["label"])
    parts = []
    for lab in seen:
        c = sum(1 for d in ds if d["label"] == lab)
        parts.append(f"{_art(NAMES[lab])} {NAMES[lab]}" if c == 1 else f"{COUNTS[c]} {PLURALS[lab]}")
    return _join(parts)


def captions_for(ds, rng: np.random.Generator):
    """N_REFS distinct reference captions (at least 3) for digits ds (each a dict with name,
    label, size, cx, cy, x0, y0, x1, y1)."""
    n = len(ds)
    pool = []
    if n == 1:
        d = ds[0]
        pool += [
            _np(d),
            f"a single {d['size']} handwritten {d['name']}",
            f"one {d['size']} {d['name']} {_location(d)}",
            f"the digit {d['name']} written {d['size']}",
            f"{_np(d)} {_location(d)}",
            f"a handwritten {d['name']} {_location(d)}",
            f"there is only one digit {_np(d, False)}",
        ]
    elif n == 2:
        a, b = ds
        rel = _relation(a, b)
        if rel in ("right", "below"):
            a, b = b, a
            rel = {"right": "left", "below": "above"}[rel]
        inv = {"left": "right", "above": "below"}[rel]
        pool += [
            f"{_np(a)} {_rel_phrase(rel)} {_np(b)}",
            f"{_np(b)} {_rel_phrase(inv)} {_np(a)}",
            f"{_np(a, False)} {_rel_phrase(rel)} {_np(b, False)}",
            f"two digits {_np(a)} and {_np(b)}",
            f"there are two digits {_np(a, False)} and {_np(b, False)}",
        ]
        if rel == "left":
            pool.append(f"{_np(a)} next to {_np(b)}")
        if a["label"] == b["label"]:
            pl = PLURALS[a["label"]]
            pool.append(f"two {pl} side by side" if rel == "left" else f"two {pl} one above the other")
            pool.append(f"a pair of {pl}")
            if a["size"] == b["size"]:
                pool.append(f"two {a['size']} {pl}")
            else:
                pool.append(f"two {pl} of different sizes")
        else:
            pool.append(f"the numbers {a['name']} and {b['name']}")
            if a["size"] == b["size"]:
                pool.append(f"two {a['size']} digits {_np(a, False)} and {_np(b, False)}")
    else:
        cnt = COUNTS[n]
        lr = sorted(ds, key=lambda d: d["cx"])
        pool += [
            f"{cnt} digits {_join([_np(d) for d in lr])}",
            f"{_join([_np(d, False) for d in lr])} from left to right",
            f"{cnt} handwritten digits {_identity_groups(ds)}",
            _identity_groups(ds),
            f"there are {cnt} digits {_join([_np(d, False) for d in lr])}",
        ]
        nl = sum(d["size"] == "large" for d in ds)
        ns = n - nl
        if nl == 0 or ns == 0:
            pool.append(f"{cnt} {'large' if nl else 'small'} digits")
        else:
            wl = "one large digit" if nl == 1 else f"{COUNTS[nl]} large digits"
            ws = "one small digit" if ns == 1 else f"{COUNTS[ns]} small digits"
            pool.append(f"{wl} and {ws}")
        # one digit clearly above / below / left / right of all the others
        for x in ds:
            others = [o for o in ds if o is not x]
            others_lr = sorted(others, key=lambda d: d["cx"])
            if all(x["y1"] <= o["y0"] for o in others):
                pool.append(f"{_np(x, False)} above {_join([_np(o, False) for o in others_lr])}")
            elif all(x["y0"] >= o["y1"] for o in others):
                pool.append(f"{_np(x, False)} below {_join([_np(o, False) for o in others_lr])}")
        ys = [d["cy"] for d in ds]
        if max(ys) - min(ys) <= 8:
            pool.append(f"a row of {cnt} digits")
    # distinct, random choice of N_REFS
    uniq = list(dict.fromkeys(pool))
    rng.shuffle(uniq)
    refs = uniq[:N_REFS]
    assert len(refs) >= 3, (ds, pool)
    return refs


def _place(sizes, rng):
    """Top-left corners for cells of the given sizes, pairwise >= GAP apart, or None."""
    boxes = []
    for s in sizes:
        for _ in range(200):
            x, y = int(rng.integers(0, CANVAS - s + 1)), int(rng.integers(0, CANVAS - s + 1))
            ok = all(x + s + GAP <= bx or bx + bs + GAP <= x or y + s + GAP <= by or by + bs + GAP <= y
                     for bx, by, bs in boxes)
            if ok:
                boxes.append((x, y, s))
                break
        else:
            return None
    return boxes


def make_scene(pool, rng):
    """One scene from a digit pool (images, labels, ids): (canvas, digits, features, regions)."""
    imgs, labels, ids = pool
    while True:
        n = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.3, 0.3, 0.2]))
        sizes = [("large" if rng.random() < 0.5 else "small") for _ in range(n)]
        # big ones first: easier to place
        order = sorted(range(n), key=lambda i: -SIZES[sizes[i]])
        sizes = [sizes[i] for i in order]
        boxes = _place([SIZES[s] for s in sizes], rng)
        if boxes is None:
            continue
        pick = rng.integers(0, len(labels), size=n)
        canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        digits = []
        for (x, y, s), sz, k in zip(boxes, sizes, pick):
            img = imgs[k]
            if s == 16:
                img = np.kron(img, np.ones((2, 2), dtype=np.uint8))
            canvas[y:y + s, x:x + s] = img
            digits.append({"label": int(labels[k]), "name": NAMES[int(labels[k])], "size": sz,
                           "cell": (x, y, s), "src": int(ids[k])})
        feats, regs = extract(canvas, MAX_REGIONS)
        if len(regs) != n:
            continue
        # match each region to the digit cell that contains it
        ok = True
        for d in digits:
            x, y, s = d["cell"]
            inside = [r for r in regs if r[0] >= x and r[1] >= y and r[2] <= x + s and r[3] <= y + s]
            if len(inside) != 1:
                ok = False
                break
            x0, y0, x1, y1, _ = inside[0]
            d.update(x0=x0, y0=y0, x1=x1, y1=y1, cx=(x0 + x1) / 2, cy=(y0 + y1) / 2)
        if not ok:
            continue
        return canvas, digits, feats, regs


def make_split(pool, n_scenes, seed):
    rng = np.random.default_rng(seed)
    canv, feats, caps, meta = [], [], [], []
    for _ in range(n_scenes):
        c, ds, f, _regs = make_scene(pool, rng)
        canv.append(c)
        feats.append(f)
        caps.append(captions_for(ds, rng))
        meta.append([{k: d[k] for k in ("label", "size", "x0", "y0", "x1", "y1", "src")} for d in ds])
    return np.stack(canv), np.stack(feats), caps, meta


def build_vocab(captions):
    """COCO order: <unk>, <pad>, <bos>, <eos>, then words by descending frequency, ties
    alphabetical."""
    from collections import Counter
    c = Counter(w for refs in captions for cap in refs for w in cap.split())
    words = sorted(c, key=lambda w: (-c[w], w))
    return ["<unk>", "<pad>", "<bos>", "<eos>"] + words
