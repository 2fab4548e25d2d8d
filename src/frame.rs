//! Camera frames in, captions out: the digit-scene demo's extractor ([`crate::regions`]) over
//! an 8-bit grayscale frame as a camera's DMA leaves it in RAM (rows `stride` bytes apart, e.g.
//! an STM32 DCMI buffer), and [`caption_frame`], the whole pipeline on one frame.
//!
//! no_std, no allocation, no writes into the caller's frame: dark-on-bright frames are inverted
//! as they are read ([`Polarity`]), large frames are shrunk into a caller buffer
//! ([`downscale_into`], sized with [`fit_factor`] and [`downscaled_len`]).
//!
//! A board's loop, with every buffer `static` and sized by `const fn`s:
//! ```ignore
//! let frame = Frame::new(&dma, 160, 120, 160)?;
//! let scratch = FrameScratch { labels: &mut labels, regions: &mut regions, features: &mut feats };
//! let out = caption_frame(&model, &frame, Polarity::Auto, &Params::DEMO, scratch, &mut ws,
//!                         &opts, |ev| log(ev))?;
//! ```

use crate::model::{EngineError, M2};
use crate::regions::{self, Canvas, Params, Region, RegionError, D_IN};
use crate::search::beam::check_search;
use crate::search::{beam_search_encoded, BeamOutput, SearchOptions, StepEvent};
use crate::workspace::Workspace;

/// An 8-bit grayscale frame: `height` rows of `width` pixels, row `y` starting at byte
/// `y * stride` of `pixels` (the bytes between rows are never read).
///
/// [`Frame::new`] checks the shape only; the extractor's size limits
/// ([`regions::MAX_SIDE`], [`regions::MAX_PIXELS`]) are checked where it runs, so a frame too
/// large to extract can still be shrunk with [`downscale_into`].
#[derive(Clone, Copy, Debug)]
pub struct Frame<'p> {
    pixels: &'p [u8],
    width: usize,
    height: usize,
    stride: usize,
}

impl<'p> Frame<'p> {
    /// View `pixels` as a `width × height` frame with rows `stride` bytes apart. Errors (never
    /// panics, whatever the numbers): a zero side ([`RegionError::ZeroSize`]),
    /// `stride < width` ([`RegionError::StrideTooSmall`]), or a buffer shorter than
    /// `(height − 1) · stride + width` bytes ([`RegionError::BufferTooShort`], also when that
    /// size overflows).
    pub fn new(
        pixels: &'p [u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Frame<'p>, RegionError> {
        if width == 0 || height == 0 {
            return Err(RegionError::ZeroSize {
                w: width,
                h: height,
            });
        }
        if stride < width {
            return Err(RegionError::StrideTooSmall { width, stride });
        }
        let needed = (height - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(width))
            .unwrap_or(usize::MAX);
        if pixels.len() < needed {
            return Err(RegionError::BufferTooShort {
                needed,
                got: pixels.len(),
            });
        }
        Ok(Frame {
            pixels,
            width,
            height,
            stride,
        })
    }

    /// Pixels per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes from the start of one row to the start of the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The whole buffer the frame was made over.
    pub fn pixels(&self) -> &'p [u8] {
        self.pixels
    }

    /// Row `y` (`width` pixels), or `None` past the last row.
    pub fn row(&self, y: usize) -> Option<&'p [u8]> {
        if y >= self.height {
            return None;
        }
        let start = y * self.stride; // ≤ (height − 1) · stride, checked in `new`
        self.pixels.get(start..start + self.width)
    }

    /// Whether the extractor takes this frame as it is ([`fit_factor`] is 1).
    pub fn fits(&self) -> bool {
        regions::fits(self.width, self.height)
    }

    /// The extractor's view of the frame (size limits checked), inverted on read if asked.
    fn canvas(&self, invert: bool) -> Result<Canvas<'p>, RegionError> {
        Canvas::strided(self.pixels, self.width, self.height, self.stride, invert)
    }
}

/// Which way round ink and background are. The extractor wants bright ink on a dark background;
/// the other polarity is inverted as pixels are read (`v → 255 − v`), never in the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polarity {
    /// Bright strokes on a dark background (the demo scenes): read as is.
    BrightOnDark,
    /// Dark strokes on a bright background (ink on paper): read inverted.
    DarkOnBright,
    /// Decide per frame with [`regions::invert_if_light_background`]'s rule: the mean of the
    /// border pixels ≥ 128 means dark-on-bright. What the CLI's `--image` does.
    #[default]
    Auto,
}

impl Polarity {
    /// Whether `frame` is read inverted under this polarity.
    pub fn inverts(self, frame: &Frame) -> bool {
        match self {
            Polarity::BrightOnDark => false,
            Polarity::DarkOnBright => true,
            Polarity::Auto => {
                regions::light_background(frame.pixels, frame.width, frame.height, frame.stride)
            }
        }
    }
}

/// `u16` entries of the labels scratch the extractor needs for a `width × height` frame
/// (saturates at `usize::MAX`; frames the extractor takes need at most
/// [`regions::MAX_PIXELS`]).
pub const fn labels_len(width: usize, height: usize) -> usize {
    width.saturating_mul(height)
}

/// The extractor over a frame: exactly [`regions::extract`] (regions in `regions`, their
/// features as a zero-padded `[regions.len(), D_IN]` matrix in `features`, the number of regions
/// found returned) on the frame's pixels as `polarity` reads them. `labels` needs
/// [`labels_len`] entries; its content on return is unspecified.
pub fn frame_features(
    frame: &Frame,
    polarity: Polarity,
    params: &Params,
    labels: &mut [u16],
    regions: &mut [Region],
    features: &mut [f32],
) -> Result<usize, RegionError> {
    let need = regions::features_len(regions.len(), features.len())?;
    let canvas = frame.canvas(polarity.inverts(frame))?;
    regions::extract_in(&canvas, params, labels, regions, &mut features[..need])
}

/// The smallest integer factor `f` for which a `width × height` frame shrunk by `f` (each side
/// rounded up) is within [`regions::MAX_SIDE`] and [`regions::MAX_PIXELS`]; 1 if it already is.
/// Total over all inputs (a binary search: at most ~64 steps, no overflow).
pub const fn fit_factor(width: usize, height: usize) -> usize {
    if regions::fits(width, height) {
        return 1;
    }
    // Not fitting means a side > 255; shrunk by `hi` both sides are ≤ 255 and 255² fits.
    // Shrinking more never makes it fit less, so search the boundary in (lo, hi].
    let side = if width > height { width } else { height };
    let (mut lo, mut hi) = (1, side.div_ceil(255));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if regions::fits(width.div_ceil(mid), height.div_ceil(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Bytes [`downscale_into`] writes for a `width × height` frame shrunk by `factor`
/// (`⌈width / factor⌉ · ⌈height / factor⌉`; 0 for a factor of 0, saturating).
pub const fn downscaled_len(width: usize, height: usize, factor: usize) -> usize {
    if factor == 0 {
        return 0;
    }
    width
        .div_ceil(factor)
        .saturating_mul(height.div_ceil(factor))
}

/// Shrink `frame` by the integer `factor` into `out` (the box filter the CLI uses for large
/// images): the result is `⌈width / factor⌉ × ⌈height / factor⌉`, contiguous (stride = width),
/// each pixel the rounded mean of its `factor × factor` block of the frame, blocks clipped at
/// the right and bottom edges. `out` needs [`downscaled_len`] bytes. A factor of 1 copies.
pub fn downscale_into<'o>(
    frame: &Frame,
    factor: usize,
    out: &'o mut [u8],
) -> Result<Frame<'o>, RegionError> {
    if factor == 0 {
        return Err(RegionError::ZeroFactor);
    }
    let (w, h) = (frame.width, frame.height);
    let (ow, oh) = (w.div_ceil(factor), h.div_ceil(factor));
    let needed = ow * oh; // ≤ width · height ≤ the frame's buffer length
    if out.len() < needed {
        return Err(RegionError::OutputTooSmall {
            needed,
            got: out.len(),
        });
    }
    for (y, out_row) in out[..needed].chunks_exact_mut(ow).enumerate() {
        let (y0, y1) = (y * factor, ((y + 1) * factor).min(h));
        for (x, o) in out_row.iter_mut().enumerate() {
            let (x0, x1) = (x * factor, ((x + 1) * factor).min(w));
            let mut s = 0u64;
            for yy in y0..y1 {
                if let Some(row) = frame.row(yy) {
                    s += row[x0..x1].iter().map(|&v| v as u64).sum::<u64>();
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            *o = ((s + n / 2) / n) as u8;
        }
    }
    Frame::new(&out[..needed], ow, oh, ow)
}

/// Caller-owned buffers of [`caption_frame`]'s extractor.
pub struct FrameScratch<'s> {
    /// Labels scratch: [`labels_len`] of the frame.
    pub labels: &'s mut [u16],
    /// Regions found: at least the model's `max_regions` entries (the first `max_regions` are
    /// used; fewer is an error, as it would keep fewer regions than the CLI).
    pub regions: &'s mut [Region],
    /// Features: at least `max_regions * D_IN` values.
    pub features: &'s mut [f32],
}

/// A phase of [`caption_frame`] has just ended.
#[derive(Clone, Copy, Debug)]
pub enum Event<'e> {
    /// The extractor found this many regions (0 is followed by [`FrameError::NoRegion`]).
    Regions(usize),
    /// The encoder ran.
    Encoded,
    /// The decoder's cross-attention keys and values are computed.
    CrossKv,
    /// A beam-search step ended (`max_len` of them).
    Step(&'e StepEvent<'e>),
}

/// Why a frame could not be captioned.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The frame or the scratch buffers do not suit the extractor.
    Regions(RegionError),
    /// The extractor found no region (no bright strokes on a dark background, as read).
    NoRegion,
    /// The engine refused the features, workspace or options.
    Engine(EngineError),
}

impl From<RegionError> for FrameError {
    fn from(e: RegionError) -> Self {
        FrameError::Regions(e)
    }
}

impl From<EngineError> for FrameError {
    fn from(e: EngineError) -> Self {
        FrameError::Engine(e)
    }
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Regions(e) => write!(f, "region extraction: {e}"),
            FrameError::NoRegion => write!(
                f,
                "no region found in the frame (no bright strokes on a dark background)"
            ),
            FrameError::Engine(e) => write!(f, "engine: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Regions(e) => Some(e),
            FrameError::NoRegion => None,
            FrameError::Engine(e) => Some(e),
        }
    }
}

/// Caption one camera frame: [`frame_features`] (regions and their features, `polarity` and
/// `params` as there), then — with the regions found only, as the CLI's `--image` passes them,
/// the engine padding to `max_regions` — [`M2::encode_regions`], [`M2::cross_kv`] and
/// [`beam_search_encoded`]. `on_event` is called as each phase ends: [`Event::Regions`],
/// [`Event::Encoded`], [`Event::CrossKv`], then [`Event::Step`] after each of the `max_len`
/// decoder steps. The model must take the extractor's features (`d_in` = [`D_IN`]); that, the
/// search options, the workspace plan and the size of `scratch.regions` are checked before
/// anything runs.
#[allow(clippy::too_many_arguments)]
pub fn caption_frame(
    model: &M2,
    frame: &Frame,
    polarity: Polarity,
    params: &Params,
    scratch: FrameScratch<'_>,
    ws: &mut Workspace,
    opts: &SearchOptions,
    mut on_event: impl FnMut(Event),
) -> Result<BeamOutput, FrameError> {
    let d_in = model.config().d_in as usize;
    if d_in != D_IN {
        return Err(EngineError::FeatureShape { len: D_IN, d_in }.into());
    }
    check_search(model, ws, opts)?;
    let max = model.config().max_regions as usize;
    if scratch.regions.len() < max {
        return Err(RegionError::OutputTooSmall {
            needed: max,
            got: scratch.regions.len(),
        }
        .into());
    }
    let n = frame_features(
        frame,
        polarity,
        params,
        scratch.labels,
        &mut scratch.regions[..max],
        scratch.features,
    )?;
    on_event(Event::Regions(n));
    if n == 0 {
        return Err(FrameError::NoRegion);
    }
    model.encode_regions(&scratch.features[..n * D_IN], ws)?;
    on_event(Event::Encoded);
    model.cross_kv(ws)?;
    on_event(Event::CrossKv);
    Ok(beam_search_encoded(model, ws, opts, |ev| {
        on_event(Event::Step(ev))
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_shape_errors_never_panic() {
        let px = [0u8; 16];
        assert_eq!(
            Frame::new(&px, 0, 4, 4).unwrap_err(),
            RegionError::ZeroSize { w: 0, h: 4 }
        );
        assert_eq!(
            Frame::new(&px, 5, 2, 4).unwrap_err(),
            RegionError::StrideTooSmall {
                width: 5,
                stride: 4
            }
        );
        assert_eq!(
            Frame::new(&px, 4, 4, 5).unwrap_err(),
            RegionError::BufferTooShort {
                needed: 19,
                got: 16
            }
        );
        assert_eq!(
            Frame::new(&px, usize::MAX, 2, usize::MAX).unwrap_err(),
            RegionError::BufferTooShort {
                needed: usize::MAX,
                got: 16
            }
        );
        assert!(Frame::new(&px, usize::MAX, 1, usize::MAX).is_err());
        assert!(Frame::new(&px, 1, usize::MAX, 1).is_err());
        // the last row needs only `width` bytes, not a whole stride
        let f = Frame::new(&px[..11], 3, 3, 4).unwrap();
        assert_eq!(f.row(2), Some(&px[8..11]));
        assert_eq!(f.row(3), None);
    }

    #[test]
    fn fit_factor_is_the_smallest_that_fits() {
        assert_eq!(fit_factor(48, 48), 1);
        assert_eq!(fit_factor(255, 257), 1);
        assert_eq!(fit_factor(384, 384), 2);
        assert_eq!(fit_factor(320, 240), 2);
        assert_eq!(fit_factor(640, 480), 3);
        assert_eq!(fit_factor(MAX_SIDE_PLUS, 1), 2);
        for (w, h) in [
            (700, 90),
            (700, 100),
            (4097, 16),
            (5000, 5000),
            (1 << 20, 3),
            (usize::MAX, usize::MAX),
        ] {
            let f = fit_factor(w, h);
            assert!(regions::fits(w.div_ceil(f), h.div_ceil(f)), "{w}x{h}: {f}");
            let smaller = f - 1;
            assert!(
                smaller == 0 || !regions::fits(w.div_ceil(smaller), h.div_ceil(smaller)),
                "{w}x{h}: {f}"
            );
        }
        const _: () = assert!(fit_factor(1920, 1080) == 6);
    }

    const MAX_SIDE_PLUS: usize = regions::MAX_SIDE + 1;

    #[test]
    fn downscale_rounds_block_means_clipped_at_the_edges() {
        // 5x3 with stride 6 (padding 99 never read), factor 2 -> 3x2
        let px = [
            0, 1, 2, 3, 4, 99, //
            10, 11, 12, 13, 14, 99, //
            200, 201, 202, 203, 255,
        ];
        let f = Frame::new(&px, 5, 3, 6).unwrap();
        let mut out = [0u8; 6];
        assert_eq!(downscaled_len(5, 3, 2), 6);
        let d = downscale_into(&f, 2, &mut out).unwrap();
        assert_eq!((d.width(), d.height(), d.stride()), (3, 2, 3));
        // (0+1+10+11+2)/4 = 6, (2+3+12+13+2)/4 = 8, (4+14+1)/2 = 9,
        // (200+201+1)/2 = 201, (202+203+1)/2 = 203, 255
        assert_eq!(d.pixels(), &[6, 8, 9, 201, 203, 255]);
        assert_eq!(
            downscale_into(&f, 0, &mut out).unwrap_err(),
            RegionError::ZeroFactor
        );
        assert_eq!(
            downscale_into(&f, 1, &mut out).unwrap_err(),
            RegionError::OutputTooSmall { needed: 15, got: 6 }
        );
    }

    #[test]
    fn auto_polarity_is_the_border_rule() {
        let mut px = [250u8; 20];
        px[6] = 0; // inside, not border
        let f = Frame::new(&px, 3, 4, 5).unwrap();
        assert!(Polarity::Auto.inverts(&f));
        assert!(!Polarity::BrightOnDark.inverts(&f));
        assert!(Polarity::DarkOnBright.inverts(&f));
        let dark = [3u8; 9];
        assert!(!Polarity::Auto.inverts(&Frame::new(&dark, 3, 3, 3).unwrap()));
        assert_eq!(labels_len(48, 48), 2304);
        assert_eq!(labels_len(usize::MAX, 2), usize::MAX);
    }
}
