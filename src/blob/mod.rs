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
mod parse;
#[cfg(feature = "std")]
mod write;

pub use error::{BlobError, Part, Section};
pub use format::*;
pub use parse::*;
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
}

/// Which weight a tensor is. Per-layer kinds carry the layer index separately.
/// Linear weights are `[out, in]` row-major (PyTorch layout), biases/LayerNorm/memory/positional f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
pub enum TensorKind {
    // ---- encoder input projection -------------------------------------------------------
    /// `encoder.fc.weight` [d, d_in]
    EncInW = 1,
    /// `encoder.fc.bias` [d]
    EncInB = 2,
    /// `encoder.layer_norm.weight` [d]
    EncInLnG = 3,
    /// `encoder.layer_norm.bias` [d]
    EncInLnB = 4,
    // ---- encoder layer l: memory-augmented self-attention + FFN -------------------------
    /// `encoder.layers.l.mhatt.attention.m_k` [m, d], stored pre-multiplied by √d_k (f32)
    EncMemK = 10,
    /// `encoder.layers.l.mhatt.attention.m_v` [m, d], stored pre-multiplied by √m (f32)
    EncMemV = 11,
    /// `encoder.layers.l.mhatt.attention.fc_q.weight` [d, d] (and so on for k, v, o)
    EncQW = 12,
    EncQB = 13,
    EncKW = 14,
    EncKB = 15,
    EncVW = 16,
    EncVB = 17,
    EncOW = 18,
    EncOB = 19,
    /// `encoder.layers.l.mhatt.layer_norm.{weight,bias}` [d]
    EncAttLnG = 20,
    EncAttLnB = 21,
    /// `encoder.layers.l.pwff.fc1.weight` [d_ff, d], `.bias` [d_ff]
    EncFf1W = 22,
    EncFf1B = 23,
    /// `encoder.layers.l.pwff.fc2.weight` [d, d_ff], `.bias` [d]
    EncFf2W = 24,
    EncFf2B = 25,
    /// `encoder.layers.l.pwff.layer_norm.{weight,bias}` [d]
    EncFfLnG = 26,
    EncFfLnB = 27,
    // ---- decoder ----------------------------------------------------------------------
    /// `decoder.word_emb.weight` [V, d] (a matrix: may be int8 per row)
    WordEmb = 40,
    /// `decoder.pos_emb.weight` [pos_rows, d] (f32; random in practice, docs/SPEC.md Q1)
    PosEmb = 41,
    /// `decoder.fc.weight` [V, d] (no bias)
    VocabW = 42,
    // ---- decoder layer l ----------------------------------------------------------------
    /// `decoder.layers.l.self_att.attention.fc_{q,k,v,o}.{weight,bias}`
    SelfQW = 50,
    SelfQB = 51,
    SelfKW = 52,
    SelfKB = 53,
    SelfVW = 54,
    SelfVB = 55,
    SelfOW = 56,
    SelfOB = 57,
    /// `decoder.layers.l.self_att.layer_norm.{weight,bias}`
    SelfLnG = 58,
    SelfLnB = 59,
    /// `decoder.layers.l.enc_att.attention.fc_{q,k,v,o}.{weight,bias}`
    CrossQW = 60,
    CrossQB = 61,
    CrossKW = 62,
    CrossKB = 63,
    CrossVW = 64,
    CrossVB = 65,
    CrossOW = 66,
    CrossOB = 67,
    /// `decoder.layers.l.enc_att.layer_norm.{weight,bias}`
    CrossLnG = 68,
    CrossLnB = 69,
    /// `decoder.layers.l.fc_alpha{1,2,3}.weight` [d, 2d], `.bias` [d]
    Alpha1W = 70,
    Alpha1B = 71,
    Alpha2W = 72,
    Alpha2B = 73,
    Alpha3W = 74,
    Alpha3B = 75,
    /// `decoder.layers.l.pwff.fc1/fc2/layer_norm`
    DecFf1W = 76,
    DecFf1B = 77,
    DecFf2W = 78,
    DecFf2B = 79,
    DecFfLnG = 80,
    DecFfLnB = 81,
}

/// The values of a weight matrix, in the dtype the blob stores.
#[derive(Clone, Copy, Debug)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// `q[rows*cols]` and one scale per row: `w[r][c] = q[r*cols + c] as f32 * scales[r]`.
    I8 {
        q: &'a [i8],
        scales: &'a [f32],
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
            WeightData::I8 { .. } => DType::I8,
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
            WeightData::I8 { q, scales } => {
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
            WeightData::I8 { q, scales } => q.len() + scales.len() * 4,
        }
    }
}
