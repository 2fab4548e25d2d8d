//! The blob validator: [`Blob::parse`] and its variants, the only way to make a [`Blob`].
//!
//! No allocation, no panics: every read goes through `get` (the `le_*` readers return 0 past
//! the end), and every arithmetic on file-supplied numbers is checked. After `Ok`, every
//! required tensor is present with its config shape, so the accessors in `view.rs` cannot fail.

use super::format::{
    self, entry, hdr, ALIGN, ENTRY_LEN, HEADER_LEN, MAGIC, MIN_BASE_ALIGN, OLDEST_VERSION, VERSION,
};
use super::view::{le_u32, le_u64, read_entry, RawEntry};
use super::{Blob, BlobError, DType, Part, Section, TensorKind};
use crate::config::Config;

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

    /// Like [`Blob::parse`] but without the checksum pass over the weights. Every structural
    /// check still runs, and the structure checksum (header, tensor table, vocabulary: every
    /// byte before the data area) is verified, so a flipped dimension, offset, token id or
    /// vocabulary byte is still caught; only corruption of weight values goes undetected.
    /// Meant for microcontrollers where hashing a 40 MB flash image at every boot costs
    /// seconds; call [`Blob::verify_checksum`] once (e.g. after flashing) instead. A version-1
    /// blob has no structure checksum and is refused (`NoStructureChecksum`): parse it with
    /// [`Blob::parse`], or re-pack it.
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
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
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
        // The structure checksum first: it is cheap (header, table and vocabulary only) and,
        // unlike the full checksum, never skipped.
        let version = le_u32(bytes, hdr::VERSION);
        if version >= 2 {
            let stored = le_u32(bytes, hdr::STRUCTURE_CRC);
            let data_off = le_u64(bytes, hdr::DATA_OFF);
            let computed =
                format::structure_checksum(bytes).ok_or(BlobError::SectionOutOfBounds {
                    section: Section::Data,
                    offset: data_off,
                    len: le_u64(bytes, hdr::DATA_LEN),
                    total,
                })?;
            if computed != stored {
                return Err(BlobError::StructureChecksumMismatch { stored, computed });
            }
        } else if matches!(crc, Crc::Skip) {
            return Err(BlobError::NoStructureChecksum { version });
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
        // version 1 reserves the structure checksum's word as zero
        let reserved: &[usize] = if version >= 2 {
            &[hdr::FLAGS]
        } else {
            &[hdr::FLAGS, hdr::STRUCTURE_CRC]
        };
        for &off in reserved {
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
        let mut needed = 2;
        for i in 0..n_tensors {
            let e = read_entry(bytes, table_off, i);
            Self::check_entry(i, &e, &config, area, table_off, version)?;
            if let Some(d) = DType::from_code(e.dtype) {
                needed = needed.max(crate::blob::format::min_version(d));
            }
        }
        // version 3 only when a tensor needs it (1 and 2 differ in the checksums alone)
        if version >= 3 && version != needed {
            return Err(BlobError::VersionNotNeeded {
                found: version,
                expected: needed,
            });
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
        version: u32,
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
        // a dtype newer than the blob's version is unknown to that version
        let dtype = DType::from_code(e.dtype)
            .filter(|d| crate::blob::format::min_version(*d) <= version)
            .ok_or(BlobError::UnknownDType {
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
        if matches!(dtype, DType::I8 | DType::I8A16) {
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
}
