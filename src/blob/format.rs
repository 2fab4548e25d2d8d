//! Byte layout constants of the M2 blob (format version 3; versions 1 and 2 are still read): header and
//! table-entry offsets, the config's header bytes, the two checksums, the dtype codes. Which tensors a valid blob holds,
//! and with which shapes, is `kinds.rs`'s table.
//!
//! Both the reader ([`super::Blob::parse`]) and the writer (`BlobWriter`, std only) use these
//! definitions; `docs/FORMAT.md` is their prose form.

use super::DType;
use crate::config::{Config, N_FIELDS};

/// The 8 magic bytes at offset 0: `0x7F 'M' '2' 'B' 'L' 'O' 'B' '\n'`.
pub const MAGIC: [u8; 8] = *b"\x7fM2BLOB\n";
/// The newest format version the reader understands. Version 3 adds the dtype
/// [`DType::I8A16`]; the writer writes 3 only for a blob that has such a tensor, else 2
/// ([`version_for`]), so that a blob without one still loads in version-2 readers.
pub const VERSION: u32 = 3;

/// The oldest format version that can hold a tensor of `dtype`.
pub const fn min_version(dtype: DType) -> u32 {
    match dtype {
        DType::I8A16 => 3,
        _ => 1,
    }
}

/// The version the writer gives a blob whose tensors have these dtypes: the newest
/// [`min_version`] among them, and 2 at least (the structure checksum). A reader requires a
/// version-3 blob to have a tensor that needs it ([`super::BlobError::VersionNotNeeded`]).
pub fn version_for(dtypes: impl IntoIterator<Item = DType>) -> u32 {
    dtypes.into_iter().map(min_version).fold(2, u32::max)
}
/// The oldest format version the reader still accepts. Version 1 differs only in the header
/// word at [`hdr::STRUCTURE_CRC`], which it reserves as zero: a version-1 blob has no structure
/// checksum, so [`Blob::parse_skip_checksum`](super::Blob::parse_skip_checksum) refuses it.
pub const OLDEST_VERSION: u32 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 160;
/// Size of one tensor-table entry in bytes.
pub const ENTRY_LEN: usize = 48;
/// Alignment (in bytes, relative to the start of the blob) of the data area, of every tensor's
/// data and of every int8 scale array.
pub const ALIGN: usize = 32;
/// The blob's first byte must sit at an address that is a multiple of this (so that the
/// 32-byte-aligned tensors are at least 4-byte aligned in memory and can be viewed as `&[f32]`).
pub const MIN_BASE_ALIGN: usize = 4;
/// The checksum covers bytes `CHECKSUM_START..total_len`.
pub const CHECKSUM_START: usize = hdr::CHECKSUM + 4;

/// Byte offsets of the header fields (all little-endian).
pub mod hdr {
    /// `[u8; 8]` magic, [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// `u32` format version: 2 ([`super::VERSION`]); 1 is still read.
    pub const VERSION: usize = 8;
    /// `u32` header length, 160.
    pub const HEADER_LEN: usize = 12;
    /// `u64` total length of the blob in bytes.
    pub const TOTAL_LEN: usize = 16;
    /// `u32` CRC-32 (ISO-HDLC, as zlib/PNG) of bytes `28..total_len`.
    pub const CHECKSUM: usize = 24;
    /// `u32` flags, must be 0.
    pub const FLAGS: usize = 28;
    /// 17 `u32` config fields, in [`Config::FIELDS`](crate::config::Config::FIELDS) order
    /// (`enc_pad_value` as f32 bits).
    pub const CONFIG: usize = 32;
    /// `u32` number of tensor-table entries.
    pub const N_TENSORS: usize = 100;
    /// `u64` offset of the tensor table.
    pub const TABLE_OFF: usize = 104;
    /// `u32` number of vocabulary tokens.
    pub const N_TOKENS: usize = 112;
    /// `u32` structure checksum (version 2): CRC-32 of bytes `28..data_off` with these four
    /// bytes read as zero — the header, tensor table and vocabulary, everything but the
    /// weights ([`super::structure_checksum`]). Version 1: reserved, must be 0.
    pub const STRUCTURE_CRC: usize = 116;
    /// `u64` offset of the vocabulary index (`n_tokens + 1` `u32` offsets).
    pub const VOCAB_INDEX_OFF: usize = 120;
    /// `u64` offset of the vocabulary bytes.
    pub const VOCAB_BYTES_OFF: usize = 128;
    /// `u64` length of the vocabulary bytes.
    pub const VOCAB_BYTES_LEN: usize = 136;
    /// `u64` offset of the data area (multiple of 32).
    pub const DATA_OFF: usize = 144;
    /// `u64` length of the data area.
    pub const DATA_LEN: usize = 152;
}

/// Byte offsets inside one 48-byte tensor-table entry (all little-endian).
pub mod entry {
    /// `u16` [`crate::blob::TensorKind`] code.
    pub const KIND: usize = 0;
    /// `u16` layer index (0 for tensors that belong to no layer).
    pub const LAYER: usize = 2;
    /// `u8` [`crate::blob::DType`] code.
    pub const DTYPE: usize = 4;
    /// 3 reserved bytes, must be 0.
    pub const RESERVED: usize = 5;
    /// `u32` rows (1 for vectors).
    pub const ROWS: usize = 8;
    /// `u32` columns.
    pub const COLS: usize = 12;
    /// `u64` absolute offset of the data.
    pub const DATA_OFF: usize = 16;
    /// `u64` length of the data in bytes.
    pub const DATA_LEN: usize = 24;
    /// `u64` absolute offset of the f32 row scales (int8 only, else 0).
    pub const SCALES_OFF: usize = 32;
    /// `u64` length of the scales in bytes (int8: rows × 4, else 0).
    pub const SCALES_LEN: usize = 40;
}

/// Bytes of the config in the header: one `u32` per [`Config::FIELDS`] entry.
pub const CONFIG_LEN: usize = 4 * N_FIELDS;

const _: () = assert!(hdr::CONFIG + CONFIG_LEN == hdr::N_TENSORS);

/// Serialise a config into its header bytes.
pub fn config_to_bytes(c: &Config) -> [u8; CONFIG_LEN] {
    let mut out = [0u8; CONFIG_LEN];
    for (chunk, x) in out.chunks_exact_mut(4).zip(c.to_words()) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// Read a config from its header bytes (no validation).
pub fn config_from_bytes(b: &[u8; CONFIG_LEN]) -> Config {
    let mut w = [0u32; N_FIELDS];
    for (x, chunk) in w.iter_mut().zip(b.chunks_exact(4)) {
        *x = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Config::from_words(w)
}

/// CRC-32 of `bytes[CHECKSUM_START..]` — the value a valid blob stores at [`hdr::CHECKSUM`].
/// Returns 0 for inputs shorter than [`CHECKSUM_START`].
pub fn checksum(bytes: &[u8]) -> u32 {
    match bytes.get(CHECKSUM_START..) {
        Some(rest) => crc32fast::hash(rest),
        None => 0,
    }
}

/// The structure checksum of a version-2 blob — the value it stores at [`hdr::STRUCTURE_CRC`]:
/// CRC-32 of bytes `CHECKSUM_START..data_off` (`data_off` read from the header) with the four
/// bytes of the field itself counted as zero. It covers every byte that is not weight data, so
/// a reader that skips the full [`checksum`] (a microcontroller at boot) still detects a
/// flipped dimension, offset, token id or vocabulary byte. `None` when `bytes` is shorter than
/// the header or `data_off` is not in `HEADER_LEN..=bytes.len()`.
pub fn structure_checksum(bytes: &[u8]) -> Option<u32> {
    let data_off = usize::try_from(u64::from_le_bytes(
        bytes
            .get(hdr::DATA_OFF..hdr::DATA_OFF + 8)?
            .try_into()
            .ok()?,
    ))
    .ok()?;
    if data_off < HEADER_LEN {
        return None;
    }
    let covered = bytes.get(CHECKSUM_START..data_off)?;
    let (before, rest) = covered.split_at(hdr::STRUCTURE_CRC - CHECKSUM_START);
    let mut h = crc32fast::Hasher::new();
    h.update(before);
    h.update(&[0; 4]);
    h.update(&rest[4..]);
    Some(h.finalize())
}

/// [`checksum`] computed piece by piece: `bytes` is walked in `chunk`-sized pieces from offset
/// 0 (the first piece hashed from `CHECKSUM_START`), and `done(start, end)` is called after
/// each piece has been hashed — a memory-mapped reader uses it to release the pages again.
pub fn checksum_chunked(bytes: &[u8], chunk: usize, mut done: impl FnMut(usize, usize)) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let chunk = chunk.max(1);
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes.len().min(start.saturating_add(chunk));
        if end > CHECKSUM_START {
            h.update(&bytes[start.max(CHECKSUM_START)..end]);
        }
        done(start, end);
        start = end;
    }
    if bytes.len() < CHECKSUM_START {
        return 0;
    }
    h.finalize()
}

impl DType {
    /// The dtype with this on-disk code.
    pub const fn from_code(code: u8) -> Option<DType> {
        match code {
            0 => Some(DType::F32),
            1 => Some(DType::F16),
            2 => Some(DType::I8),
            3 => Some(DType::I8A16),
            _ => None,
        }
    }
    /// The on-disk code.
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// Bytes per stored element (scales not included).
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::I8A16 => 1,
        }
    }
    /// Lower-case name: `f32`, `f16`, `int8`, `int8a16`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "int8",
            DType::I8A16 => "int8a16",
        }
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Round `x` up to a multiple of [`ALIGN`] (saturating).
pub const fn align_up(x: u64) -> u64 {
    let a = ALIGN as u64;
    match x.checked_add(a - 1) {
        Some(v) => v / a * a,
        None => u64::MAX / a * a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_round_trip() {
        let c = Config {
            enc_pad_value: -0.25,
            ..Config::COCO
        };
        assert_eq!(config_from_bytes(&config_to_bytes(&c)), c);
    }

    #[test]
    fn chunked_checksum_is_the_checksum() {
        let mut bytes = [0u8; 10_000];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 7 + i / 13) as u8;
        }
        for len in [
            0,
            CHECKSUM_START - 1,
            CHECKSUM_START,
            CHECKSUM_START + 1,
            4096,
            10_000,
        ] {
            for chunk in [1, 7, CHECKSUM_START, 4096, 1 << 20] {
                let mut covered = 0;
                let crc = checksum_chunked(&bytes[..len], chunk, |s, e| {
                    assert_eq!(s, covered);
                    covered = e;
                });
                assert_eq!(covered, len);
                assert_eq!(crc, checksum(&bytes[..len]), "len {len}, chunk {chunk}");
            }
        }
    }
}
