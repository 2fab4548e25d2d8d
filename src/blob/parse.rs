//! The blob reader: validation ([`Blob::parse`]) and in-place typed views.
//!
//! No allocation, no panics: every read goes through `get`, every arithmetic on file-supplied
//! numbers is checked, and the only `unsafe` is the three byte→typed-slice casts at the bottom,
//! each guarded by a length and alignment check.

use super::format::{
    self, entry, hdr, ALIGN, ENTRY_LEN, HEADER_LEN, MAGIC, MIN_BASE_ALIGN, VERSION,
};
use super::{BlobError, DType, Matrix, Part, Section, TensorKind, WeightData};
use crate::config::Config;
use half::f16;

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
struct RawEntry {
    kind: u16,
    layer: u16,
    dtype: u8,
    reserved: [u8; 3],
    rows: u32,
    cols: u32,
    off: u64,
    len: u64,
    soff: u64,
    slen: u64,
}

/// A validated blob viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    bytes: &'a [u8],
    config: Config,
    checksum: u32,
    n_tensors: usize,
    table_off: usize,
    n_tokens: usize,
    vocab_index_off: usize,
    vocab_bytes_off: usize,
    vocab_bytes_len: usize,
    max_token_len: usize,
}

fn le_u16(b: &[u8], off: usize) -> u16 {
    match off.checked_add(2).and_then(|e| b.get(off..e)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    match off.checked_add(4).and_then(|e| b.get(off..e)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    match off.checked_add(8).and_then(|e| b.get(off..e)) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

fn read_entry(b: &[u8], table_off: usize, i: usize) -> RawEntry {
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

/// `[off, off+len)` intersects `[off2, off2+len2)`; lengths are already bounded by the file.
fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 > 0 && b.1 > 0 && a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// Checks `offset..offset+len` lies inside `total`; returns the end.
fn section(section: Section, offset: u64, len: u64, total: u64) -> Result<u64, BlobError> {
    match offset.checked_add(len) {
        Some(end) if end <= total => Ok(end),
        _ => Err(BlobError::SectionOutOfBounds {
            section,
            offset,
            len,
            total,
        }),
    }
}

/// How [`Blob::parse_inner`] treats the checksum.
#[derive(Clone, Copy)]
enum Crc {
    Compute,
    Given(u32),
    Skip,
}

impl<'a> Blob<'a> {
    /// Validate `bytes` completely (including the CRC-32 over the whole blob) and view them as a
    /// blob. No allocation; never panics, whatever the bytes.
    ///
    /// `bytes` must start at an address aligned to [`MIN_BASE_ALIGN`] (4) bytes — `mmap`, an
    /// [`AlignedBuf`](super::AlignedBuf), or an `#[repr(align(32))]` static all are.
    pub fn parse(bytes: &'a [u8]) -> Result<Blob<'a>, BlobError> {
        Self::parse_inner(bytes, Crc::Compute)
    }

    /// [`Blob::parse`] with the CRC-32 the caller computed over these same bytes
    /// ([`format::checksum_chunked`](super::format::checksum_chunked), e.g. while streaming or
    /// releasing the pages of a mapping); it is compared with the header's as `parse` would.
    pub fn parse_with_checksum(bytes: &'a [u8], computed: u32) -> Result<Blob<'a>, BlobError> {
        Self::parse_inner(bytes, Crc::Given(computed))
    }

    /// Like [`Blob::parse`] but without the checksum pass. Every structural check still runs,
    /// so the views stay in bounds; only silent corruption of weight values goes undetected.
    /// Meant for microcontrollers where hashing a 40 MB flash image at every boot costs
    /// seconds; call [`Blob::verify_checksum`] once (e.g. after flashing) instead.
    pub fn parse_skip_checksum(bytes: &'a [u8]) -> Result<Blob<'a>, BlobError> {
        Self::parse_inner(bytes, Crc::Skip)
    }

    /// The total length a blob header declares, from its first [`HEADER_LEN`] bytes only
    /// (checks magic, version and header length). Lets firmware that stores a blob in a larger
    /// flash partition slice it to its real length before [`Blob::parse`].
    pub fn declared_len(prefix: &[u8]) -> Result<u64, BlobError> {
        Self::check_preamble(prefix)?;
        Ok(le_u64(prefix, hdr::TOTAL_LEN))
    }

    fn check_preamble(bytes: &[u8]) -> Result<(), BlobError> {
        if bytes.len() < HEADER_LEN {
            return Err(BlobError::TooShort {
                len: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let mut magic = [0u8; 8];
        if let Some(m) = bytes.get(hdr::MAGIC..hdr::MAGIC + 8) {
            magic.copy_from_slice(m);
        }
        if magic != MAGIC {
            return Err(BlobError::BadMagic { found: magic });
        }
        let version = le_u32(bytes, hdr::VERSION);
        if version != VERSION {
            return Err(BlobError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let header_len = le_u32(bytes, hdr::HEADER_LEN);
        if header_len as usize != HEADER_LEN {
            return Err(BlobError::BadHeaderLen {
                found: header_len,
                expected: HEADER_LEN as u32,
            });
        }
        Ok(())
    }

    fn parse_inner(bytes: &'a [u8], crc: Crc) -> Result<Blob<'a>, BlobError> {
        if cfg!(target_endian = "big") {
            return Err(BlobError::BigEndianHost);
        }
        Self::check_preamble(bytes)?;
        let total = le_u64(bytes, hdr::TOTAL_LEN);
        if total != bytes.len() as u64 {
            return Err(BlobError::LengthMismatch {
                header: total,
                actual: bytes.len(),
            });
        }
        let addr = bytes.as_ptr() as usize;
        if !addr.is_multiple_of(MIN_BASE_ALIGN) {
            return Err(BlobError::BaseMisaligned {
                addr,
                required: MIN_BASE_ALIGN,
            });
        }
        let stored = le_u32(bytes, hdr::CHECKSUM);
        let computed = match crc {
            Crc::Compute => Some(format::checksum(bytes)),
            Crc::Given(c) => Some(c),
            Crc::Skip => None,
        };
        if let Some(computed) = computed {
            if computed != stored {
                return Err(BlobError::ChecksumMismatch { stored, computed });
            }
        }
        for off in [hdr::FLAGS, hdr::RESERVED] {
            let value = le_u32(bytes, off);
            if value != 0 {
                return Err(BlobError::Reserved { offset: off, value });
            }
        }

        // ---- config ------------------------------------------------------------------
        let mut cb = [0u8; format::CONFIG_LEN];
        if let Some(s) = bytes.get(hdr::CONFIG..hdr::CONFIG + format::CONFIG_LEN) {
            cb.copy_from_slice(s);
        }
        let config = format::config_from_bytes(&cb);
        config.validate()?;
        if !config.enc_pad_value.is_finite() {
            return Err(BlobError::EncPadValue {
                bits: config.enc_pad_value.to_bits(),
            });
        }

        // ---- sections ------------------------------------------------------------------
        let n_tensors = le_u32(bytes, hdr::N_TENSORS);
        let required = TensorKind::required_count(&config);
        if n_tensors as usize > required {
            return Err(BlobError::TensorCount {
                found: n_tensors,
                expected: required as u32,
            });
        }
        let n_tokens = le_u32(bytes, hdr::N_TOKENS);
        if n_tokens != config.vocab {
            return Err(BlobError::VocabCount {
                found: n_tokens,
                expected: config.vocab,
            });
        }
        let table_off = le_u64(bytes, hdr::TABLE_OFF);
        let vi_off = le_u64(bytes, hdr::VOCAB_INDEX_OFF);
        let vb_off = le_u64(bytes, hdr::VOCAB_BYTES_OFF);
        let vb_len = le_u64(bytes, hdr::VOCAB_BYTES_LEN);
        let data_off = le_u64(bytes, hdr::DATA_OFF);
        let data_len = le_u64(bytes, hdr::DATA_LEN);

        let sections = [
            (
                Section::Table,
                table_off,
                n_tensors as u64 * ENTRY_LEN as u64,
            ),
            (Section::VocabIndex, vi_off, (n_tokens as u64 + 1) * 4),
            (Section::VocabBytes, vb_off, vb_len),
            (Section::Data, data_off, data_len),
        ];
        let mut previous_end = HEADER_LEN as u64;
        for (s, off, len) in sections {
            let end = section(s, off, len, total)?;
            if off < previous_end {
                return Err(BlobError::SectionOverlap {
                    section: s,
                    offset: off,
                    previous_end,
                });
            }
            previous_end = end;
        }
        if !data_off.is_multiple_of(ALIGN as u64) {
            return Err(BlobError::SectionMisaligned {
                section: Section::Data,
                offset: data_off,
                align: ALIGN as u32,
            });
        }
        if vb_len > u32::MAX as u64 {
            return Err(BlobError::SectionOutOfBounds {
                section: Section::VocabBytes,
                offset: vb_off,
                len: vb_len,
                total: u32::MAX as u64,
            });
        }
        // All section ends are <= total == bytes.len(), so they fit in usize.
        let table_off = table_off as usize;
        let n_tensors = n_tensors as usize;
        let area = (data_off, data_off + data_len);

        // ---- tensor entries ------------------------------------------------------------
        for i in 0..n_tensors {
            let e = read_entry(bytes, table_off, i);
            Self::check_entry(i, &e, &config, area, table_off)?;
        }
        // duplicates and overlaps
        for i in 0..n_tensors {
            let a = read_entry(bytes, table_off, i);
            let (ka, pa) = (TensorKind::from_code(a.kind), a.layer);
            let ranges_a = [(a.off, a.len, Part::Data), (a.soff, a.slen, Part::Scales)];
            if overlaps((a.off, a.len), (a.soff, a.slen)) {
                if let Some(k) = ka {
                    return Err(BlobError::Overlap {
                        a: (k, pa, Part::Data),
                        b: (k, pa, Part::Scales),
                        a_range: (a.off, a.off + a.len),
                        b_range: (a.soff, a.soff + a.slen),
                    });
                }
            }
            for j in i + 1..n_tensors {
                let b = read_entry(bytes, table_off, j);
                let kb = TensorKind::from_code(b.kind);
                let (Some(ka), Some(kb)) = (ka, kb) else {
                    continue;
                };
                if ka == kb && a.layer == b.layer {
                    return Err(BlobError::Duplicate {
                        kind: ka,
                        layer: a.layer,
                        first: i as u32,
                        second: j as u32,
                    });
                }
                let ranges_b = [(b.off, b.len, Part::Data), (b.soff, b.slen, Part::Scales)];
                for ra in ranges_a {
                    for rb in ranges_b {
                        if overlaps((ra.0, ra.1), (rb.0, rb.1)) {
                            return Err(BlobError::Overlap {
                                a: (ka, a.layer, ra.2),
                                b: (kb, b.layer, rb.2),
                                a_range: (ra.0, ra.0 + ra.1),
                                b_range: (rb.0, rb.0 + rb.1),
                            });
                        }
                    }
                }
            }
        }

        let mut blob = Blob {
            bytes,
            config,
            checksum: stored,
            n_tensors,
            table_off,
            n_tokens: n_tokens as usize,
            vocab_index_off: vi_off as usize,
            vocab_bytes_off: vb_off as usize,
            vocab_bytes_len: vb_len as usize,
            max_token_len: 0,
        };
        // missing (entries are valid and distinct, so n_tensors < required means some are absent)
        if n_tensors < required {
            for (kind, layer) in TensorKind::required(&config) {
                if blob.find(kind, layer).is_none() {
                    return Err(BlobError::Missing { kind, layer });
                }
            }
            return Err(BlobError::TensorCount {
                found: n_tensors as u32,
                expected: required as u32,
            });
        }

        // ---- vocabulary index ------------------------------------------------------------
        let mut prev = 0u32;
        let mut max_len = 0usize;
        for id in 0..=n_tokens as usize {
            let o = le_u32(
                bytes,
                blob.vocab_index_off.saturating_add(id.saturating_mul(4)),
            );
            let bad = if id == 0 {
                o != 0
            } else {
                o < prev || o as u64 > vb_len || (id == n_tokens as usize && o as u64 != vb_len)
            };
            if bad {
                let tid = id.saturating_sub(1) as u32;
                return Err(BlobError::VocabOffsets {
                    id: tid,
                    start: if id == 0 { o } else { prev },
                    end: o,
                    bytes_len: vb_len,
                });
            }
            if id > 0 {
                max_len = max_len.max((o - prev) as usize);
            }
            prev = o;
        }
        blob.max_token_len = max_len;
        Ok(blob)
    }

    fn check_entry(
        i: usize,
        e: &RawEntry,
        cfg: &Config,
        area: (u64, u64),
        table_off: usize,
    ) -> Result<(), BlobError> {
        let kind = TensorKind::from_code(e.kind).ok_or(BlobError::UnknownKind {
            entry: i as u32,
            code: e.kind,
        })?;
        let layer = e.layer;
        let layers = kind.layers(cfg);
        if layer as u32 >= layers {
            return Err(BlobError::BadLayer {
                entry: i as u32,
                kind,
                layer,
                layers,
            });
        }
        let dtype = DType::from_code(e.dtype).ok_or(BlobError::UnknownDType {
            kind,
            layer,
            code: e.dtype,
        })?;
        if !kind.allows(dtype) {
            return Err(BlobError::DTypeNotAllowed { kind, layer, dtype });
        }
        for (k, r) in e.reserved.iter().enumerate() {
            if *r != 0 {
                return Err(BlobError::Reserved {
                    offset: table_off + i * ENTRY_LEN + entry::RESERVED + k,
                    value: *r as u32,
                });
            }
        }
        let expected = kind.shape(cfg);
        if (e.rows, e.cols) != expected {
            return Err(BlobError::ShapeMismatch {
                kind,
                layer,
                expected,
                found: (e.rows, e.cols),
            });
        }
        let want = e.rows as u64 * e.cols as u64 * dtype.size() as u64;
        let check_range = |part: Part, off: u64, len: u64, want: u64| {
            if len != want {
                return Err(BlobError::ByteLength {
                    kind,
                    layer,
                    part,
                    expected: want,
                    found: len,
                });
            }
            let inside = off >= area.0 && off.checked_add(len).is_some_and(|end| end <= area.1);
            if !inside {
                return Err(BlobError::TensorOutOfBounds {
                    kind,
                    layer,
                    part,
                    offset: off,
                    len,
                    area_start: area.0,
                    area_end: area.1,
                });
            }
            if !off.is_multiple_of(ALIGN as u64) {
                return Err(BlobError::TensorMisaligned {
                    kind,
                    layer,
                    part,
                    offset: off,
                });
            }
            Ok(())
        };
        check_range(Part::Data, e.off, e.len, want)?;
        if dtype == DType::I8 {
            check_range(Part::Scales, e.soff, e.slen, e.rows as u64 * 4)?;
        } else if e.soff != 0 || e.slen != 0 {
            return Err(BlobError::UnexpectedScales {
                kind,
                layer,
                offset: e.soff,
                len: e.slen,
            });
        }
        Ok(())
    }

    // ---- accessors -------------------------------------------------------------------------

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

    /// Every table entry, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo> + 'a {
        let b = *self;
        (0..self.n_tensors).filter_map(move |i| b.tensor_at(i))
    }

    fn find(&self, kind: TensorKind, layer: u16) -> Option<usize> {
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
            DType::I8 => WeightData::I8 {
                q: cast_i8(raw),
                scales: cast_f32(self.range(t.scales_offset, t.scales_len)),
            },
        };
        let ok = match data {
            WeightData::F32(w) => w.len() == n,
            WeightData::F16(w) => w.len() == n,
            WeightData::I8 { q, scales } => q.len() == n && scales.len() == t.rows as usize,
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

// ---- the only unsafe code of the blob reader --------------------------------------------------

/// View bytes as f32s; empty if `b` is not 4-byte aligned.
fn cast_f32(b: &[u8]) -> &[f32] {
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<f32>()) {
        return &[];
    }
    // SAFETY: the pointer is non-null and aligned for f32 (checked above); `b.len() / 4` f32s
    // span at most `b.len()` bytes, all inside the borrowed slice, which outlives the result and
    // is not mutated while borrowed; every bit pattern is a valid f32; the blob is little-endian
    // and parsing refuses big-endian hosts, so the values are the stored ones.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
}

/// View bytes as f16s; empty if `b` is not 2-byte aligned.
fn cast_f16(b: &[u8]) -> &[f16] {
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<f16>()) {
        return &[];
    }
    // SAFETY: as for `cast_f32`: aligned (checked), in bounds (`len / 2` elements of 2 bytes),
    // borrowed immutably for the result's lifetime; `half::f16` is `repr(transparent)` over u16,
    // so every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<f16>(), b.len() / 2) }
}

/// View bytes as i8s.
fn cast_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment (1) and every bit pattern is a valid
    // i8; same length, same borrow.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}
