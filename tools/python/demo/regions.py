"""Python twin of `src/regions/mod.rs` (the demo's region extractor).

The Rust file holds the definition; this twin must give bit-identical features.
`tests/regions_parity.rs` checks it on every bundled scene (Rust features from
`assets/demo/test_scenes.npy` == `assets/demo/test_features.npy`, which this file wrote).
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

GRID = 8
GEOM = 8
D_IN = GRID * GRID + GEOM
MAX_COMPONENTS = 64
MAX_PIXELS = 65535
MAX_SIDE = 4096

# Params::DEMO
THRESHOLD = 48
RADIUS = 1
MIN_PIXELS = 4


class RegionError(ValueError):
    pass


def _components(on: np.ndarray, radius: int) -> tuple[np.ndarray, int]:
    """Connected components under Chebyshev distance <= radius."""
    if radius == 1:
        return ndi.label(on, structure=np.ones((3, 3), dtype=bool))
    # generic (slow) union-find, same definition
    h, w = on.shape
    parent = -np.ones(h * w, dtype=np.int64)
    flat = on.ravel()

    def find(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for p in range(h * w):
        if not flat[p]:
            continue
        parent[p] = p
        x, y = p % w, p // w
        for ny in range(max(0, y - radius), y + 1):
            xhi = x if ny == y else min(w, x + radius + 1)
            for nx in range(max(0, x - radius), xhi):
                q = ny * w + nx
                if parent[q] < 0:
                    continue
                a, b = find(p), find(q)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.zeros(h * w, dtype=np.int64)
    roots = {}
    for p in range(h * w):
        if parent[p] >= 0:
            r = find(p)
            if r not in roots:
                roots[r] = len(roots) + 1
            labels[p] = roots[r]
    return labels.reshape(h, w), len(roots)


def find_regions(canvas: np.ndarray, max_regions: int, threshold=THRESHOLD, radius=RADIUS,
                 min_pixels=MIN_PIXELS):
    """Regions of a u8 canvas [H, W]: list of (x0, y0, x1, y1, n_on), in raster order of each
    component's first on pixel."""
    canvas = np.asarray(canvas)
    if canvas.dtype != np.uint8 or canvas.ndim != 2:
        raise RegionError("canvas must be a 2-D uint8 array")
    h, w = canvas.shape
    if w == 0 or h == 0:
        raise RegionError("zero size")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise RegionError("canvas too big")
    on = canvas >= threshold
    labels, n = _components(on, radius)
    if n > MAX_COMPONENTS:
        raise RegionError("too many components")
    flat = labels.ravel()
    comps = []
    for k in range(1, n + 1):
        idx = np.flatnonzero(flat == k)
        ys, xs = idx // w, idx % w
        comps.append((int(idx[0]), int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                      int(ys.max()) + 1, int(idx.size)))
    comps.sort()  # by first raster pixel
    out = [c[1:] for c in comps if c[5] >= min_pixels]
    return out[:max_regions]


def _lo(k, n):
    return k * n // GRID


def _hi(k, n):
    return max(_lo(k, n) + 1, (k + 1) * n // GRID)


def region_features(canvas: np.ndarray, region) -> np.ndarray:
    h, w = canvas.shape
    x0, y0, x1, y1, n_on = region
    bw, bh = x1 - x0, y1 - y0
    f = np.zeros(D_IN, dtype=np.float32)
    c = canvas.astype(np.int64)
    for i in range(GRID):
        ry0, ry1 = y0 + _lo(i, bh), y0 + _hi(i, bh)
        for j in range(GRID):
            rx0, rx1 = x0 + _lo(j, bw), x0 + _hi(j, bw)
            s = int(c[ry0:ry1, rx0:rx1].sum())
            cnt = (ry1 - ry0) * (rx1 - rx0)
            f[i * GRID + j] = np.float32(s) / np.float32(cnt * 255)
    g = GRID * GRID
    W, H = np.float32(w), np.float32(h)
    f[g + 0] = np.float32(x0) / W
    f[g + 1] = np.float32(y0) / H
    f[g + 2] = np.float32(x1) / W
    f[g + 3] = np.float32(y1) / H
    f[g + 4] = np.float32(bw) / W
    f[g + 5] = np.float32(bh) / H
    f[g + 6] = np.float32(bw * bh) / np.float32(w * h)
    f[g + 7] = np.float32(n_on) / np.float32(bw * bh)
    return f


def extract(canvas: np.ndarray, max_regions: int, **kw):
    """(features [max_regions, D_IN] f32 zero-padded, regions list)."""
    regs = find_regions(canvas, max_regions, **kw)
    feats = np.zeros((max_regions, D_IN), dtype=np.float32)
    for r, reg in enumerate(regs):
        feats[r] = region_features(canvas, reg)
    return feats, regs
