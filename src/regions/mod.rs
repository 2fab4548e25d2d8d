//! The region extractor of the digit-scene demo: pixels → regions → region features.
//!
//! (About 600 lines: the extractor's definition below is its specification, kept next to the
//! one implementation it describes; the host PNG path is in `png.rs`.)
//!
//! This is the **one definition** of the demo's "detector". The training pipeline
//! (`tools/python/demo/regions.py`) is a twin of this file and `tests/regions_parity.rs` proves
//! that both give bit-identical features on every bundled scene.
//!
//! no_std, no allocation: the caller provides a scratch buffer of one `u16` per pixel and the
//! output buffers; at most [`MAX_COMPONENTS`] connected components are tracked on the stack.
//!
//! The functions here take a contiguous canvas (`pixels.len() == w * h`); [`crate::frame`]
//! runs the same extractor (one implementation: every pixel is read through a strided,
//! optionally inverting view) over a camera frame whose rows are `stride` bytes apart.
//!
//! # Definition
//! Input: an 8-bit grayscale canvas, `w × h`, row-major, **bright ink on a dark background**
//! (use [`invert_if_light_background`] first for dark-on-light drawings, or read the frame
//! inverted with [`crate::frame::Polarity`]).
//!
//! 1. A pixel is *on* iff `value >= threshold`.
//! 2. Two on pixels are connected iff their Chebyshev distance is at most `radius`
//!    (radius 1 = ordinary 8-connectivity; radius 2 also bridges one-pixel gaps inside a stroke).
//!    Components are the connected components of that graph.
//! 3. Components with fewer than `min_pixels` on pixels are dropped (specks).
//! 4. Remaining components are ordered by their first on pixel in raster order (row-major,
//!    top row first, then leftmost) and the first `max_regions` are kept.
//! 5. Box of a component = the smallest rectangle `[x0, x1) × [y0, y1)` holding its on pixels.
//! 6. Features of one region, [`D_IN`] = `GRID² + GEOM` f32 values:
//!    * `GRID × GRID` pixel cells (row-major): cell `(i, j)` (row `i`, column `j`) averages the raw
//!      canvas values (all pixels, on or not) over rows `[y0 + a(i, bh), y0 + b(i, bh))` and columns
//!      `[x0 + a(j, bw), x0 + b(j, bw))`, where `a(k, n) = k·n / GRID`,
//!      `b(k, n) = max(a(k, n) + 1, (k+1)·n / GRID)` (integer division), so every cell covers at
//!      least one pixel. Value = `(Σ pixels as f32) / ((count · 255) as f32)` — both integers are
//!      exact in f32, so the single IEEE division makes the value bit-reproducible.
//!    * geometry: `x0/W, y0/H, x1/W, y1/H, bw/W, bh/H, (bw·bh)/(W·H), n_on/(bw·bh)`, each a single
//!      f32 division of two exact integers.
//! 7. The feature matrix is `[max_regions, D_IN]`; rows past the number of regions are zero
//!    (the encoder's padding; docs/SPEC.md §12.1).

/// Side of the resampled pixel grid of a region.
pub const GRID: usize = 8;
/// Number of box-geometry values per region.
pub const GEOM: usize = 8;
/// Region feature size (`d_in` of the demo model).
pub const D_IN: usize = GRID * GRID + GEOM;
/// Largest number of connected components (before the `min_pixels` filter) one canvas may hold.
pub const MAX_COMPONENTS: usize = 64;
/// Largest canvas, in pixels (labels are `u16`, one value is reserved for "off").
pub const MAX_PIXELS: usize = u16::MAX as usize;
/// Largest canvas side.
pub const MAX_SIDE: usize = 4096;

const OFF: u16 = u16::MAX;

/// Parameters of the extractor. [`Params::DEMO`] is the one the demo model was trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// A pixel is on iff `value >= threshold` (must be ≥ 1).
    pub threshold: u8,
    /// Connectivity radius (Chebyshev distance), 1..=4.
    pub radius: u8,
    /// Components with fewer on pixels are ignored.
    pub min_pixels: u32,
}

impl Params {
    /// The demo's parameters (48×48 canvases of digits at 8 and 16 pixels).
    pub const DEMO: Params = Params {
        threshold: 48,
        radius: 1,
        min_pixels: 4,
    };
}

impl Default for Params {
    fn default() -> Self {
        Params::DEMO
    }
}

/// A region: a box `[x0, x1) × [y0, y1)` and the number of on pixels of its component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub x0: u16,
    pub y0: u16,
    pub x1: u16,
    pub y1: u16,
    /// On pixels of the component.
    pub pixels: u32,
}

impl Region {
    /// Box width (0 if `x1 < x0`).
    pub fn width(&self) -> usize {
        self.x1.saturating_sub(self.x0) as usize
    }
    /// Box height (0 if `y1 < y0`).
    pub fn height(&self) -> usize {
        self.y1.saturating_sub(self.y0) as usize
    }
}

/// Why a canvas could not be turned into regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegionError {
    /// Width or height is zero.
    ZeroSize { w: usize, h: usize },
    /// The canvas has more than [`MAX_PIXELS`] pixels or a side above [`MAX_SIDE`].
    CanvasTooBig { w: usize, h: usize },
    /// `pixels.len()` is not `w * h`.
    PixelCount { expected: usize, got: usize },
    /// The scratch buffer has fewer than `w * h` entries.
    ScratchTooSmall { needed: usize, got: usize },
    /// An output buffer is too small.
    OutputTooSmall { needed: usize, got: usize },
    /// More than [`MAX_COMPONENTS`] connected components (a noisy or non-scene image).
    TooManyComponents,
    /// `threshold` is 0 (every pixel would be on) or `radius` is outside 1..=4.
    BadParams,
    /// A frame's `stride` (bytes from one row to the next) is less than its width.
    StrideTooSmall { width: usize, stride: usize },
    /// A frame's buffer is shorter than `(height − 1) · stride + width` bytes (`needed` is
    /// `usize::MAX` when that size overflows).
    BufferTooShort { needed: usize, got: usize },
    /// A downscale factor of 0.
    ZeroFactor,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::ZeroSize { w, h } => write!(f, "canvas is empty ({w}x{h})"),
            RegionError::CanvasTooBig { w, h } => write!(
                f,
                "canvas {w}x{h} is too big (at most {MAX_PIXELS} pixels and {MAX_SIDE} per side)"
            ),
            RegionError::PixelCount { expected, got } => {
                write!(f, "expected {expected} pixels, got {got}")
            }
            RegionError::ScratchTooSmall { needed, got } => {
                write!(f, "scratch buffer needs {needed} entries, has {got}")
            }
            RegionError::OutputTooSmall { needed, got } => {
                write!(f, "output buffer needs {needed} entries, has {got}")
            }
            RegionError::TooManyComponents => {
                write!(
                    f,
                    "more than {MAX_COMPONENTS} connected components: not a digit scene"
                )
            }
            RegionError::BadParams => write!(f, "bad extractor parameters"),
            RegionError::StrideTooSmall { width, stride } => {
                write!(f, "frame stride {stride} is less than its width {width}")
            }
            RegionError::BufferTooShort { needed, got } => write!(
                f,
                "frame buffer holds {got} bytes, (height-1)*stride + width = {needed} needed"
            ),
            RegionError::ZeroFactor => write!(f, "downscale factor is 0"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RegionError {}

/// The extractor's size limits: both sides ≥ 1, at most [`MAX_SIDE`] each and [`MAX_PIXELS`]
/// in all.
pub(crate) fn check_size(w: usize, h: usize) -> Result<usize, RegionError> {
    if w == 0 || h == 0 {
        return Err(RegionError::ZeroSize { w, h });
    }
    if !fits(w, h) {
        return Err(RegionError::CanvasTooBig { w, h });
    }
    Ok(w * h)
}

/// Whether a `w × h` canvas is within [`MAX_SIDE`] and [`MAX_PIXELS`] (no overflow: the sides
/// are checked first).
pub(crate) const fn fits(w: usize, h: usize) -> bool {
    w <= MAX_SIDE && h <= MAX_SIDE && w * h <= MAX_PIXELS
}

fn check_canvas(pixels: &[u8], w: usize, h: usize) -> Result<Canvas<'_>, RegionError> {
    let n = check_size(w, h)?;
    if pixels.len() != n {
        return Err(RegionError::PixelCount {
            expected: n,
            got: pixels.len(),
        });
    }
    Ok(Canvas {
        px: pixels,
        w,
        h,
        stride: w,
        flip: 0,
    })
}

/// The one way the extractor reads pixels: `w × h` of them, row `y` at `px[y * stride..]`,
/// each XOR-ed with `flip` (0, or 0xFF for `v → 255 − v`). Built only over a buffer that holds
/// `(h − 1) · stride + w` bytes and a size [`check_size`] accepted, so reads stay in bounds.
#[derive(Clone, Copy)]
pub(crate) struct Canvas<'p> {
    px: &'p [u8],
    w: usize,
    h: usize,
    stride: usize,
    flip: u8,
}

impl<'p> Canvas<'p> {
    /// A strided view within the extractor's limits; the caller (a checked
    /// [`Frame`](crate::frame::Frame)) guarantees the buffer length.
    pub(crate) fn strided(
        px: &'p [u8],
        w: usize,
        h: usize,
        stride: usize,
        invert: bool,
    ) -> Result<Canvas<'p>, RegionError> {
        check_size(w, h)?;
        Ok(Canvas {
            px,
            w,
            h,
            stride,
            flip: if invert { 0xFF } else { 0 },
        })
    }

    /// Pixel `(x, y)` as the extractor sees it (inverted if asked).
    #[inline]
    fn at(&self, x: usize, y: usize) -> u8 {
        self.px
            .get(y * self.stride + x)
            .map_or(0, |v| v ^ self.flip)
    }
}

/// The light-background rule of [`invert_if_light_background`] over raw pixels (`w × h`, rows
/// `stride` apart, no inversion): the mean of the border pixels (first and last row, first and
/// last column) is ≥ 128. Rows the buffer does not hold count as empty.
pub(crate) fn light_background(px: &[u8], w: usize, h: usize, stride: usize) -> bool {
    let (mut sum, mut cnt) = (0u64, 0u64);
    for y in 0..h {
        let row = y
            .checked_mul(stride)
            .and_then(|o| px.get(o..o.checked_add(w)?))
            .unwrap_or(&[]);
        if y == 0 || y + 1 == h {
            sum += row.iter().map(|&v| v as u64).sum::<u64>();
            cnt += row.len() as u64;
        } else if let (Some(&a), Some(&b)) = (row.first(), row.last()) {
            let both = row.len() > 1;
            sum += a as u64 + if both { b as u64 } else { 0 };
            cnt += if both { 2 } else { 1 };
        }
    }
    sum >= 128 * cnt
}

fn find(parent: &mut [u16], mut p: usize) -> usize {
    while parent[p] as usize != p {
        let gp = parent[parent[p] as usize];
        parent[p] = gp; // path halving
        p = gp as usize;
    }
    p
}

#[derive(Clone, Copy, Default)]
struct Acc {
    root: u16,
    x0: u16,
    y0: u16,
    x1: u16,
    y1: u16,
    n: u32,
}

/// Find the regions of a canvas (steps 1–5). Writes up to `out.len()` regions (the caller's
/// `max_regions`) and returns how many. `scratch` needs `w * h` entries; its content on return
/// is unspecified.
pub fn find_regions(
    pixels: &[u8],
    w: usize,
    h: usize,
    params: &Params,
    scratch: &mut [u16],
    out: &mut [Region],
) -> Result<usize, RegionError> {
    find_in(&check_canvas(pixels, w, h)?, params, scratch, out)
}

/// [`find_regions`] over a view.
fn find_in(
    c: &Canvas,
    params: &Params,
    scratch: &mut [u16],
    out: &mut [Region],
) -> Result<usize, RegionError> {
    let (w, h) = (c.w, c.h);
    let n = w * h;
    if params.threshold == 0 || params.radius == 0 || params.radius > 4 {
        return Err(RegionError::BadParams);
    }
    if scratch.len() < n {
        return Err(RegionError::ScratchTooSmall {
            needed: n,
            got: scratch.len(),
        });
    }
    let parent = &mut scratch[..n];
    let r = params.radius as usize;

    // Union-find over on pixels; the root of a component is its smallest (first raster) index.
    for (y, x) in (0..h).flat_map(|y| (0..w).map(move |x| (y, x))) {
        let p = y * w + x;
        if c.at(x, y) < params.threshold {
            parent[p] = OFF;
            continue;
        }
        parent[p] = p as u16;
        // Earlier neighbours within the radius: rows y-r..y-1 (all dx), and row y with dx < 0.
        let ylo = y.saturating_sub(r);
        for ny in ylo..=y {
            let xlo = x.saturating_sub(r);
            let xhi = if ny == y { x } else { (x + r + 1).min(w) };
            for nx in xlo..xhi {
                let q = ny * w + nx;
                if parent[q] == OFF {
                    continue;
                }
                let rp = find(parent, p);
                let rq = find(parent, q);
                if rp != rq {
                    let (lo, hi) = if rp < rq { (rp, rq) } else { (rq, rp) };
                    parent[hi] = lo as u16;
                }
            }
        }
    }

    // Accumulate boxes per root, in root (raster) order.
    let mut acc = [Acc::default(); MAX_COMPONENTS];
    let mut count = 0usize;
    for p in 0..n {
        if parent[p] == OFF {
            continue;
        }
        let root = find(parent, p);
        let (x, y) = ((p % w) as u16, (p / w) as u16);
        let slot = if root == p {
            if count == MAX_COMPONENTS {
                return Err(RegionError::TooManyComponents);
            }
            acc[count] = Acc {
                root: root as u16,
                x0: x,
                y0: y,
                x1: x + 1,
                y1: y + 1,
                n: 0,
            };
            count += 1;
            count - 1
        } else {
            // Roots come first in raster order, so the component's slot exists already.
            match acc[..count].iter().position(|a| a.root as usize == root) {
                Some(s) => s,
                None => continue, // unreachable: a root precedes its members
            }
        };
        let a = &mut acc[slot];
        a.x0 = a.x0.min(x);
        a.y0 = a.y0.min(y);
        a.x1 = a.x1.max(x + 1);
        a.y1 = a.y1.max(y + 1);
        a.n += 1;
    }

    let mut k = 0usize;
    for a in &acc[..count] {
        if a.n < params.min_pixels {
            continue;
        }
        if k == out.len() {
            break;
        }
        out[k] = Region {
            x0: a.x0,
            y0: a.y0,
            x1: a.x1,
            y1: a.y1,
            pixels: a.n,
        };
        k += 1;
    }
    Ok(k)
}

#[inline]
fn cell_lo(k: usize, n: usize) -> usize {
    k * n / GRID
}

#[inline]
fn cell_hi(k: usize, n: usize) -> usize {
    let a = cell_lo(k, n) + 1;
    let b = (k + 1) * n / GRID;
    if a > b {
        a
    } else {
        b
    }
}

/// The [`D_IN`] features of one region (step 6) into `out[..D_IN]`. The canvas must have been
/// checked already (as [`find_regions`] does); `region` must lie inside it.
pub fn region_features(
    pixels: &[u8],
    w: usize,
    h: usize,
    region: &Region,
    out: &mut [f32],
) -> Result<(), RegionError> {
    features_in(&check_canvas(pixels, w, h)?, region, out)
}

/// [`region_features`] over a view.
fn features_in(c: &Canvas, region: &Region, out: &mut [f32]) -> Result<(), RegionError> {
    let (w, h) = (c.w, c.h);
    if out.len() < D_IN {
        return Err(RegionError::OutputTooSmall {
            needed: D_IN,
            got: out.len(),
        });
    }
    let (x0, y0) = (region.x0 as usize, region.y0 as usize);
    let (bw, bh) = (region.width(), region.height());
    if bw == 0 || bh == 0 || x0 + bw > w || y0 + bh > h {
        return Err(RegionError::OutputTooSmall {
            needed: x0 + bw,
            got: w,
        });
    }
    for i in 0..GRID {
        let (ry0, ry1) = (y0 + cell_lo(i, bh), y0 + cell_hi(i, bh));
        for j in 0..GRID {
            let (rx0, rx1) = (x0 + cell_lo(j, bw), x0 + cell_hi(j, bw));
            let mut sum = 0u32;
            for yy in ry0..ry1 {
                for xx in rx0..rx1 {
                    sum += c.at(xx, yy) as u32;
                }
            }
            let cnt = ((ry1 - ry0) * (rx1 - rx0)) as u32;
            out[i * GRID + j] = sum as f32 / (cnt * 255) as f32;
        }
    }
    let (wf, hf) = (w as f32, h as f32);
    let g = &mut out[GRID * GRID..D_IN];
    g[0] = region.x0 as f32 / wf;
    g[1] = region.y0 as f32 / hf;
    g[2] = region.x1 as f32 / wf;
    g[3] = region.y1 as f32 / hf;
    g[4] = bw as f32 / wf;
    g[5] = bh as f32 / hf;
    g[6] = (bw * bh) as f32 / (w * h) as f32;
    g[7] = region.pixels as f32 / (bw * bh) as f32;
    Ok(())
}

/// The whole extractor: regions of the canvas and their features as a zero-padded
/// `[max_regions, D_IN]` matrix in `features` (`max_regions = regions.len()`, and `features`
/// needs `max_regions * D_IN` entries). Returns the number of regions found (≤ `max_regions`).
pub fn extract(
    pixels: &[u8],
    w: usize,
    h: usize,
    params: &Params,
    scratch: &mut [u16],
    regions: &mut [Region],
    features: &mut [f32],
) -> Result<usize, RegionError> {
    let need = features_len(regions.len(), features.len())?;
    let c = check_canvas(pixels, w, h)?;
    extract_in(&c, params, scratch, regions, &mut features[..need])
}

/// `max_regions * D_IN`, the feature values [`extract`] writes, if `got` holds them.
pub(crate) fn features_len(max_regions: usize, got: usize) -> Result<usize, RegionError> {
    match max_regions.checked_mul(D_IN) {
        Some(need) if need <= got => Ok(need),
        need => Err(RegionError::OutputTooSmall {
            needed: need.unwrap_or(usize::MAX),
            got,
        }),
    }
}

/// [`extract`] over a view; `features` holds exactly `regions.len() * D_IN` values.
pub(crate) fn extract_in(
    c: &Canvas,
    params: &Params,
    scratch: &mut [u16],
    regions: &mut [Region],
    features: &mut [f32],
) -> Result<usize, RegionError> {
    let k = find_in(c, params, scratch, regions)?;
    for v in features.iter_mut() {
        *v = 0.0;
    }
    for (r, row) in regions[..k].iter().zip(features.chunks_exact_mut(D_IN)) {
        features_in(c, r, row)?;
    }
    Ok(k)
}

/// If the canvas looks like dark ink on a light background (mean of its border pixels ≥ 128),
/// invert it in place (`v → 255 − v`) and return true. The demo scenes are light-on-dark.
pub fn invert_if_light_background(pixels: &mut [u8], w: usize, h: usize) -> bool {
    let light = w > 0
        && h > 0
        && w.checked_mul(h) == Some(pixels.len())
        && light_background(pixels, w, h, w);
    if light {
        for v in pixels.iter_mut() {
            *v = 255 - *v;
        }
    }
    light
}

#[cfg(feature = "std")]
mod png;
#[cfg(feature = "std")]
pub use png::{
    downscale_to_fit, features_from_gray, features_from_png, from_png, Gray, MAX_PNG_PIXELS,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blobs_in_raster_order() {
        let (w, h) = (12, 6);
        let mut px = [0u8; 72];
        for y in 1..4 {
            for x in 7..10 {
                px[y * w + x] = 200;
            }
        }
        for y in 2..5 {
            for x in 1..3 {
                px[y * w + x] = 255;
            }
        }
        let mut scratch = [0u16; 72];
        let mut regs = [Region::default(); 4];
        let k = find_regions(&px, w, h, &Params::DEMO, &mut scratch, &mut regs).unwrap();
        assert_eq!(k, 2);
        assert_eq!(
            regs[0],
            Region {
                x0: 7,
                y0: 1,
                x1: 10,
                y1: 4,
                pixels: 9
            }
        );
        assert_eq!(
            regs[1],
            Region {
                x0: 1,
                y0: 2,
                x1: 3,
                y1: 5,
                pixels: 6
            }
        );
    }

    #[test]
    fn errors() {
        let mut s = [0u16; 4];
        let mut r = [Region::default(); 1];
        assert_eq!(
            find_regions(&[], 0, 3, &Params::DEMO, &mut s, &mut r),
            Err(RegionError::ZeroSize { w: 0, h: 3 })
        );
        assert_eq!(
            find_regions(&[0; 3], 2, 2, &Params::DEMO, &mut s, &mut r),
            Err(RegionError::PixelCount {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            find_regions(&[0; 9], 3, 3, &Params::DEMO, &mut s, &mut r),
            Err(RegionError::ScratchTooSmall { needed: 9, got: 4 })
        );
        assert!(matches!(
            find_regions(&[0; 4], 1, 70000, &Params::DEMO, &mut s, &mut r),
            Err(RegionError::CanvasTooBig { .. })
        ));
    }
}
