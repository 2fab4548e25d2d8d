//! The M2 blob: a flat, little-endian, checksummed weight file read **in place**.
//!
//! The byte layout is specified in `docs/FORMAT.md`. This module is the only reader: it validates
//! every offset, length, alignment, shape and config relation in [`Blob::parse`] and afterwards
//! hands out typed views (`&[f32]`, `&[f16]`, `&[i8]`) straight into the caller's bytes.
//!
//! CONTRACT (the engine relies on it; the implementation may add items but must keep these):
//! * `Blob::parse(&'a [u8]) -> Result<Blob<'a>, BlobError>` — no_std, no alloc, never panics.
//!   After `Ok`, every tensor the model needs (see [`TensorKind::required`]) is present with the
//!   shape implied by the config, so the accessors below cannot fail.
//! * `Blob::config()`, `Blob::matrix(kind, layer) -> Matrix<'a>`,
//!   `Blob::vector(kind, layer) -> &'a [f32]`, `Blob::token(id) -> Option<&'a [u8]>`.

mod error;
mod format;
mod kinds;
mod validate;
mod view;
#[cfg(feature = "std")]
mod write;

pub use error::{BlobError, Part, Section};
pub use format::*;
pub use kinds::*;
pub use view::{Blob, TensorInfo};
#[cfg(feature = "std")]
pub use write::*;

use half::f16;

/// Storage type of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DType {
    /// IEEE binary32.
    F32 = 0,
    /// IEEE binary16 (computed in f32).
    F16 = 1,
    /// Symmetric int8, one f32 scale per row (output channel), zero point 0, values in [-127, 127].
    I8 = 2,
    /// The int8 weights of [`DType::I8`] (same bytes, same scales), multiplied with activations
    /// quantised to int16 instead of int8 ([`crate::kernels`]): the activations' rounding error
    /// shrinks ~256×, for blobs whose weights already sit on the int8 grid (quantisation-aware
    /// training). Format version 3.
    I8A16 = 3,
}

/// The values of a weight matrix, in the dtype the blob stores.
#[derive(Clone, Copy, Debug)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// `q[rows*cols]` and one scale per row: `w[r][c] = q[r*cols + c] as f32 * scales[r]`;
    /// `act16`: a linear quantises its input to int16, not int8 ([`DType::I8A16`]).
    I8 {
        q: &'a [i8],
        scales: &'a [f32],
        act16: bool,
    },
}

/// A `[rows, cols]` = `[out, in]` weight matrix viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub rows: usize,
    pub cols: usize,
    pub data: WeightData<'a>,
}

impl<'a> Matrix<'a> {
    /// The storage dtype.
    pub fn dtype(&self) -> DType {
        match self.data {
            WeightData::F32(_) => DType::F32,
            WeightData::F16(_) => DType::F16,
            WeightData::I8 { act16: false, .. } => DType::I8,
            WeightData::I8 { act16: true, .. } => DType::I8A16,
        }
    }

    /// Dequantise row `r` into `out[..cols]` (used for embedding lookups). Does nothing if `r`
    /// is out of range or `out` is too short (callers check ids first).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        if r >= self.rows || out.len() < self.cols {
            return;
        }
        let c = self.cols;
        let out = &mut out[..c];
        match self.data {
            WeightData::F32(w) => out.copy_from_slice(&w[r * c..(r + 1) * c]),
            WeightData::F16(w) => {
                for (o, v) in out.iter_mut().zip(&w[r * c..(r + 1) * c]) {
                    *o = v.to_f32();
                }
            }
            WeightData::I8 { q, scales, .. } => {
                let s = scales[r];
                for (o, v) in out.iter_mut().zip(&q[r * c..(r + 1) * c]) {
                    *o = *v as f32 * s;
                }
            }
        }
    }

    /// Bytes this matrix occupies in the blob (weights plus scales).
    pub fn bytes(&self) -> usize {
        match self.data {
            WeightData::F32(w) => w.len() * 4,
            WeightData::F16(w) => w.len() * 2,
            WeightData::I8 { q, scales, .. } => q.len() + scales.len() * 4,
        }
    }
}
