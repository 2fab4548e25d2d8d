//! A validated blob viewed in place: [`Blob`]'s accessors and the typed views of its bytes.
//!
//! `validate.rs` builds a [`Blob`] only after checking every offset, length, alignment and
//! shape, so nothing here can fail on a parsed blob; the checks that remain (an absent tensor,
//! a slice of the wrong length) only guard against caller bugs and return empty views. The
//! byte→`f32`/`f16`/`i8` views are `bytemuck`'s checked casts: no `unsafe` in the reader.

use super::format::{self, entry, ENTRY_LEN};
use super::{BlobError, DType, Matrix, TensorKind, WeightData};
use crate::config::Config;
use half::f16;
use half::slice::HalfBitsSliceExt;

/// One tensor-table entry, decoded and (after [`Blob::parse`]) validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Which weight.
    pub kind: TensorKind,
    /// Layer index (0 for global kinds).
    pub layer: u16,
    /// Storage dtype.
    pub dtype: DType,
    /// Rows (1 for vectors).
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Absolute byte offset of the values.
    pub offset: u64,
    /// Byte length of the values (`rows × cols × dtype.size()`).
    pub len: u64,
    /// Absolute byte offset of the f32 row scales (int8; else 0).
    pub scales_offset: u64,
    /// Byte length of the scales (int8: `rows × 4`; else 0).
    pub scales_len: u64,
}

impl TensorInfo {
    /// Bytes this tensor occupies (values plus scales, without alignment padding).
    pub fn bytes(&self) -> u64 {
        self.len.saturating_add(self.scales_len)
    }
}

/// A table entry as stored, before interpretation.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawEntry {
    pub(super) kind: u16,
    pub(super) layer: u16,
    pub(super) dtype: u8,
    pub(super) reserved: [u8; 3],
    pub(super) rows: u32,
    pub(super) cols: u32,
    pub(super) off: u64,
    pub(super) len: u64,
    pub(super) soff: u64,
    pub(super) slen: u64,
}

/// A validated blob viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) config: Config,
    pub(super) checksum: u32,
    pub(super) n_tensors: usize,
    pub(super) table_off: usize,
    pub(super) n_tokens: usize,
    pub(super) vocab_index_off: usize,
    pub(super) vocab_bytes_off: usize,
    pub(super) vocab_bytes_len: usize,
    pub(super) max_token_len: usize,
}

pub(super) fn le_u16(b: &[u8], off: usize) -> u16 {
    match off.checked_add(2).and_then(|e| b.get(off..e)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(super) fn le_u32(b: &[u8], off: usize) -> u32 {
    match off.checked_add(4).and_then(|e| b.get(off..e)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(super) fn le_u64(b: &[u8], off: usize) -> u64 {
    match off.checked_add(8).and_then(|e| b.get(off..e)) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

pub(super) fn read_entry(b: &[u8], table_off: usize, i: usize) -> RawEntry {
    let base = i.saturating_mul(ENTRY_LEN).saturating_add(table_off);
    let at = |o: usize| base.saturating_add(o);
    let byte = |o: usize| b.get(at(o)).copied().unwrap_or(0);
    RawEntry {
        kind: le_u16(b, at(entry::KIND)),
        layer: le_u16(b, at(entry::LAYER)),
        dtype: byte(entry::DTYPE),
        reserved: [
            byte(entry::RESERVED),
            byte(entry::RESERVED + 1),
            byte(entry::RESERVED + 2),
        ],
        rows: le_u32(b, at(entry::ROWS)),
        cols: le_u32(b, at(entry::COLS)),
        off: le_u64(b, at(entry::DATA_OFF)),
        len: le_u64(b, at(entry::DATA_LEN)),
        soff: le_u64(b, at(entry::SCALES_OFF)),
        slen: le_u64(b, at(entry::SCALES_LEN)),
    }
}

impl<'a> Blob<'a> {
    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The whole blob.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the blob in bytes (its flash footprint).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false for a parsed blob (it has at least a header); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The checksum stored in the header.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// The blob's format version (1 or 2, see [`format::VERSION`]).
    pub fn version(&self) -> u32 {
        le_u32(self.bytes, format::hdr::VERSION)
    }

    /// Recompute the CRC-32 and compare it with the stored one (useful after
    /// [`Blob::parse_skip_checksum`]).
    pub fn verify_checksum(&self) -> Result<(), BlobError> {
        let computed = format::checksum(self.bytes);
        if computed == self.checksum {
            Ok(())
        } else {
            Err(BlobError::ChecksumMismatch {
                stored: self.checksum,
                computed,
            })
        }
    }

    /// Number of tensors in the table.
    pub fn tensor_count(&self) -> usize {
        self.n_tensors
    }

    /// Table entry `i` (in file order).
    pub fn tensor_at(&self, i: usize) -> Option<TensorInfo> {
        if i >= self.n_tensors {
            return None;
        }
        let e = read_entry(self.bytes, self.table_off, i);
        Some(TensorInfo {
            kind: TensorKind::from_code(e.kind)?,
            layer: e.layer,
            dtype: DType::from_code(e.dtype)?,
            rows: e.rows,
            cols: e.cols,
            offset: e.off,
            len: e.len,
            scales_offset: e.soff,
            scales_len: e.slen,
        })
    }

    /// Bytes per quantised activation a linear of this blob needs: 2 if any tensor is
    /// [`DType::I8A16`], else 1 — what [`crate::plan::Plan::with_act_bytes`] takes.
    pub fn act_bytes(&self) -> usize {
        match self.tensors().any(|t| t.dtype == DType::I8A16) {
            true => 2,
            false => 1,
        }
    }

    /// Every table entry, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo> + 'a {
        let b = *self;
        (0..self.n_tensors).filter_map(move |i| b.tensor_at(i))
    }

    pub(super) fn find(&self, kind: TensorKind, layer: u16) -> Option<usize> {
        let hit = |i: usize| {
            let e = read_entry(self.bytes, self.table_off, i);
            e.kind == kind.code() && e.layer == layer
        };
        if let Some(i) = kind.canonical_index(layer, &self.config) {
            if i < self.n_tensors && hit(i) {
                return Some(i);
            }
        }
        (0..self.n_tensors).find(|&i| hit(i))
    }

    /// The table entry of `(kind, layer)`.
    pub fn tensor(&self, kind: TensorKind, layer: usize) -> Option<TensorInfo> {
        let layer = u16::try_from(layer).ok()?;
        self.find(kind, layer).and_then(|i| self.tensor_at(i))
    }

    fn range(&self, off: u64, len: u64) -> &'a [u8] {
        let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
            return &[];
        };
        off.checked_add(len)
            .and_then(|end| self.bytes.get(off..end))
            .unwrap_or(&[])
    }

    /// A weight matrix (`layer` is 0 for non-layer tensors). Works for every kind (f32 tables
    /// and vectors come back as `WeightData::F32`). After a successful parse every required
    /// tensor exists; an absent one (a caller bug) yields an empty 0×0 matrix, never a panic.
    pub fn matrix(&self, kind: TensorKind, layer: usize) -> Matrix<'a> {
        const EMPTY: Matrix<'static> = Matrix {
            rows: 0,
            cols: 0,
            data: WeightData::F32(&[]),
        };
        let Some(t) = self.tensor(kind, layer) else {
            return EMPTY;
        };
        let n = (t.rows as usize).saturating_mul(t.cols as usize);
        let raw = self.range(t.offset, t.len);
        let data = match t.dtype {
            DType::F32 => WeightData::F32(cast_f32(raw)),
            DType::F16 => WeightData::F16(cast_f16(raw)),
            DType::I8 | DType::I8A16 => WeightData::I8 {
                q: cast_i8(raw),
                scales: cast_f32(self.range(t.scales_offset, t.scales_len)),
                act16: t.dtype == DType::I8A16,
            },
        };
        let ok = match data {
            WeightData::F32(w) => w.len() == n,
            WeightData::F16(w) => w.len() == n,
            WeightData::I8 { q, scales, .. } => q.len() == n && scales.len() == t.rows as usize,
        };
        if !ok {
            return EMPTY;
        }
        Matrix {
            rows: t.rows as usize,
            cols: t.cols as usize,
            data,
        }
    }

    /// An f32 vector or f32 table (biases, LayerNorm, memory slots, positional table), flat
    /// row-major. Empty if the tensor is absent or not stored as f32 (caller bug).
    pub fn vector(&self, kind: TensorKind, layer: usize) -> &'a [f32] {
        match self.tensor(kind, layer) {
            Some(t) if t.dtype == DType::F32 => cast_f32(self.range(t.offset, t.len)),
            _ => &[],
        }
    }

    /// The bytes of token `id`, exactly as packed (may be whitespace or empty).
    pub fn token(&self, id: u32) -> Option<&'a [u8]> {
        let id = id as usize;
        if id >= self.n_tokens {
            return None;
        }
        let at = |i: usize| self.vocab_index_off.saturating_add(i.saturating_mul(4));
        let start = le_u32(self.bytes, at(id)) as usize;
        let end = le_u32(self.bytes, at(id + 1)) as usize;
        if start > end || end > self.vocab_bytes_len {
            return None;
        }
        let base = self.vocab_bytes_off;
        self.bytes
            .get(base.checked_add(start)?..base.checked_add(end)?)
    }

    /// Number of tokens (equals `config().vocab`).
    pub fn token_count(&self) -> usize {
        self.n_tokens
    }

    /// Every token's bytes, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let b = *self;
        (0..self.n_tokens as u32).map(move |id| b.token(id).unwrap_or(&[]))
    }

    /// Length in bytes of the longest token (for sizing caption buffers).
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }
}

/// View bytes as f32s; empty if `b` is not 4-byte aligned or not a whole number of f32s. The
/// blob is little-endian and parsing refuses big-endian hosts, so the values are the stored ones.
fn cast_f32(b: &[u8]) -> &[f32] {
    bytemuck::try_cast_slice(b).unwrap_or(&[])
}

/// View bytes as f16s; empty if `b` is not 2-byte aligned or of odd length.
fn cast_f16(b: &[u8]) -> &[f16] {
    let bits: &[u16] = bytemuck::try_cast_slice(b).unwrap_or(&[]);
    bits.reinterpret_cast()
}

/// View bytes as i8s.
fn cast_i8(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}
