//! Feature datasets (std): the region features of many images, from the files the reference
//! world keeps them in, read **one image at a time** so memory stays bounded by one image
//! whatever the file's size.
//!
//! | path | layout | image ids |
//! |---|---|---|
//! | `F.npy` | `[K, R, d_in]` or `[R, d_in]`, f32 or f16, C order | `0 .. K` |
//! | `F.npz`, or a directory of them | bottom-up-attention.pytorch: one image per file, `x` `[N, d_in]` (plus `bbox`, `num_bbox`, `image_w`, `image_h`, not needed) | the file name (`391895.npz` → 391895) |
//! | `F.tsv` | the original bottom-up-attention: `image_id, image_w, image_h, num_boxes, boxes, features`, tab-separated, base64 f32 | the first column |
//! | `F.hdf5` / `F.h5` (feature `hdf5`) | the reference's `coco_detections.hdf5`: a dataset `<image_id>_features` `[N, d_in]` per image | from the dataset names |
//!
//! [`open`] tells them apart by extension; [`read_image`] gives image `k`'s rows, checked
//! (width `d_in`, at least one row, every value finite) with an error naming the file and the
//! image. `.npy` and `.tsv` are read with positioned reads (`pread`), not a mapping: the pages
//! of a 2 GB file never count against the process, and a file truncated while it is read is an
//! error rather than a `SIGBUS`.

use crate::input::InputError;
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) mod npy;
/// The most bytes one image's record may take in any dataset format (an `.npz` member `x`, a
/// `.tsv` line, an HDF5 dataset): 1,000 regions × 2048 f32 are 8 MB (11 MB in base64), so this
/// refuses only what no extractor writes, before reading it.
const MAX_RECORD: u64 = 256 << 20;

/// Most images one feature source may hold (2²⁴ = 16,777,216; COCO has 123,287): a run keeps
/// each image's id and state (~100 bytes) in memory, so this bounds that to ~1.7 GB.
pub const MAX_IMAGES: usize = 1 << 24;

mod npz;
mod tsv;

#[cfg(feature = "hdf5")]
mod hdf5;

/// An image's id: a number where the format has one (COCO ids), else the name it has.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageId {
    Num(u64),
    Str(String),
}

impl ImageId {
    /// A number if `s` is one (`"391895"` → `Num(391895)`), else the string.
    pub fn parse(s: &str) -> ImageId {
        match s.parse::<u64>() {
            Ok(n) if !s.starts_with('+') && (s == "0" || !s.starts_with('0')) => ImageId::Num(n),
            _ => ImageId::Str(s.to_string()),
        }
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageId::Num(n) => write!(f, "{n}"),
            ImageId::Str(s) => f.write_str(s),
        }
    }
}

/// Images of region features, readable one at a time from any thread.
pub trait Source: Send + Sync {
    /// The file (or directory) the images come from.
    fn path(&self) -> &Path;
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image `k`'s id (`k < len()`).
    fn id(&self, k: usize) -> ImageId;
    /// Image `k`'s regions `[n, width]` into `out` (replacing its contents), `n` at most
    /// `max_rows` (the first ones, as the reference's loader truncates); returns the number of
    /// regions the file holds for the image and their width. Not checked: [`read_image`] checks.
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError>;
}

/// What [`Source::read_raw`] found.
#[derive(Clone, Copy, Debug)]
pub struct Raw {
    /// Regions the file holds for the image (before truncation to `max_rows`).
    pub regions: usize,
    /// Values per region.
    pub width: usize,
}

/// Image `k` of `src`, checked: `d_in` values per region, at least one region, all finite.
/// Returns the number of regions the file holds (more than `max_rows` were truncated).
pub fn read_image(
    src: &dyn Source,
    k: usize,
    d_in: usize,
    max_rows: usize,
    out: &mut Vec<f32>,
) -> Result<usize, InputError> {
    let record = |why: String| InputError::Record {
        path: src.path().into(),
        image: src.id(k).to_string(),
        why,
    };
    let raw = src.read_raw(k, max_rows, out)?;
    if raw.width != d_in {
        return Err(record(format!(
            "features have {} values per region, the model's d_in is {d_in}",
            raw.width
        )));
    }
    if raw.regions == 0 || out.is_empty() {
        return Err(record("no regions".into()));
    }
    if out.len() != raw.regions.min(max_rows) * d_in {
        return Err(record(format!(
            "{} values for {} regions of {d_in}",
            out.len(),
            raw.regions.min(max_rows)
        )));
    }
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(record(format!(
            "a NaN or infinite value at region {}, index {}",
            i / d_in,
            i % d_in
        )));
    }
    Ok(raw.regions)
}

/// Open the features at `path` (format by extension, a directory of `.npz` files), for a model
/// with `d_in` values per region. `select`: read only these images, in this order (an id
/// absent from the file is an error naming it).
pub fn open(
    path: &Path,
    d_in: usize,
    select: Option<&[ImageId]>,
) -> Result<Box<dyn Source>, InputError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let src: Box<dyn Source> = if path.is_dir() {
        Box::new(npz::Npz::dir(path)?)
    } else {
        match ext.as_deref() {
            Some("npy") => Box::new(npy::Npy::open(path, d_in)?),
            Some("npz") => Box::new(npz::Npz::file(path)?),
            Some("tsv") => Box::new(tsv::Tsv::open(path)?),
            Some("hdf5" | "h5") => open_hdf5(path)?,
            _ => {
                return Err(InputError::Format {
                    path: path.into(),
                    why: "unknown feature format (expected .npy, .npz or a directory of them, .tsv, .hdf5)"
                        .into(),
                })
            }
        }
    };
    if src.is_empty() {
        return Err(InputError::Format {
            path: path.into(),
            why: "no images".into(),
        });
    }
    // a sparse .npy can declare a billion images in a few bytes on disk: the run's per-image
    // bookkeeping (ids, done/todo, the id index) is refused here, before any of it is built
    if src.len() > MAX_IMAGES {
        return Err(InputError::Format {
            path: path.into(),
            why: format!(
                "{} images: more than one run takes ({MAX_IMAGES}; each image's id and state are \
                 kept in memory): split the input",
                src.len()
            ),
        });
    }
    match select {
        None => Ok(src),
        Some(ids) => Ok(Box::new(Selected::new(src, ids)?)),
    }
}

#[cfg(feature = "hdf5")]
fn open_hdf5(path: &Path) -> Result<Box<dyn Source>, InputError> {
    Ok(Box::new(hdf5::Hdf5::open(path)?))
}

#[cfg(not(feature = "hdf5"))]
fn open_hdf5(path: &Path) -> Result<Box<dyn Source>, InputError> {
    Err(InputError::Format {
        path: path.into(),
        why: "HDF5 needs m2 built with the `hdf5` feature (cargo install --features hdf5; it links the system libhdf5)"
            .into(),
    })
}

/// A subset of a source's images, in a given order.
struct Selected {
    inner: Box<dyn Source>,
    index: Vec<usize>,
}

impl Selected {
    fn new(inner: Box<dyn Source>, ids: &[ImageId]) -> Result<Selected, InputError> {
        let mut by_id = std::collections::HashMap::with_capacity(inner.len());
        for k in 0..inner.len() {
            by_id.entry(inner.id(k)).or_insert(k);
        }
        let index = ids
            .iter()
            .map(|id| {
                by_id.get(id).copied().ok_or_else(|| InputError::Format {
                    path: inner.path().into(),
                    why: format!("image {id} (from the id list) is not in the file"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selected { inner, index })
    }
}

impl Source for Selected {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn len(&self) -> usize {
        self.index.len()
    }
    fn id(&self, k: usize) -> ImageId {
        self.inner.id(self.index[k])
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        self.inner.read_raw(self.index[k], max_rows, out)
    }
}

/// Little-endian f32 or f16 bytes → f32 values.
fn decode_floats(bytes: &[u8], f16: bool, out: &mut Vec<f32>) {
    out.clear();
    if f16 {
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        );
    } else {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
}

fn open_file(path: &Path) -> Result<std::fs::File, InputError> {
    crate::input::open_regular(path)
}

fn io_record(path: &Path, image: &ImageId, e: std::io::Error) -> InputError {
    InputError::Record {
        path: PathBuf::from(path),
        image: image.to_string(),
        why: format!("cannot read it ({e})"),
    }
}
