//! Errors of the blob reader.

use super::{DType, TensorKind};
use crate::config::ConfigError;

/// Which byte range of a tensor an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Part {
    /// The tensor's values.
    Data,
    /// The int8 tensor's f32 row scales.
    Scales,
}

impl core::fmt::Display for Part {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Part::Data => "data",
            Part::Scales => "scales",
        })
    }
}

/// A file section named by the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Section {
    /// The fixed 160-byte header.
    Header,
    /// The tensor table.
    Table,
    /// The vocabulary index (`n_tokens + 1` u32 offsets).
    VocabIndex,
    /// The vocabulary bytes.
    VocabBytes,
    /// The data area holding every tensor.
    Data,
}

impl core::fmt::Display for Section {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Table => "tensor table",
            Section::VocabIndex => "vocabulary index",
            Section::VocabBytes => "vocabulary bytes",
            Section::Data => "data area",
        })
    }
}

/// Why a byte string is not a valid M2 blob. Every variant carries the numbers involved;
/// `Display` gives a one-line explanation. Offsets are absolute byte offsets in the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BlobError {
    /// The reader only supports little-endian hosts (tensors are viewed in place).
    BigEndianHost,
    /// The blob's first byte is not at an address aligned to `required` bytes.
    BaseMisaligned { addr: usize, required: usize },
    /// Fewer bytes than the fixed header.
    TooShort { len: usize, need: usize },
    /// The first 8 bytes are not the magic.
    BadMagic { found: [u8; 8] },
    /// A format version this reader does not know.
    UnsupportedVersion { found: u32, supported: u32 },
    /// The header-length field is not the v1 header length.
    BadHeaderLen { found: u32, expected: u32 },
    /// The header's total length disagrees with the number of bytes given (truncated or
    /// trailing bytes).
    LengthMismatch { header: u64, actual: usize },
    /// The stored checksum does not match the bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The stored structure checksum (header, tensor table, vocabulary) does not match.
    StructureChecksumMismatch { stored: u32, computed: u32 },
    /// [`Blob::parse_skip_checksum`](super::Blob::parse_skip_checksum) on a version-1 blob,
    /// whose structure nothing but the full checksum protects.
    NoStructureChecksum { version: u32 },
    /// A version-3 blob without a tensor that needs version 3: a blob carries the oldest
    /// version that can hold its tensors (so no corruption of the version word goes unseen).
    VersionNotNeeded { found: u32, expected: u32 },
    /// A reserved header or table field is not zero.
    Reserved { offset: usize, value: u32 },
    /// The config violates a relation (see [`ConfigError`]).
    Config(ConfigError),
    /// The encoder padding value is not a finite number.
    EncPadValue { bits: u32 },
    /// The tensor count is not what the config requires.
    TensorCount { found: u32, expected: u32 },
    /// The vocabulary token count is not `config.vocab`.
    VocabCount { found: u32, expected: u32 },
    /// A section lies (partly) outside the blob or its length overflows.
    SectionOutOfBounds {
        section: Section,
        offset: u64,
        len: u64,
        total: u64,
    },
    /// A section starts before the end of the previous one (order: header, table, vocabulary
    /// index, vocabulary bytes, data).
    SectionOverlap {
        section: Section,
        offset: u64,
        previous_end: u64,
    },
    /// A section that must be aligned is not.
    SectionMisaligned {
        section: Section,
        offset: u64,
        align: u32,
    },
    /// A table entry has an unknown tensor-kind code.
    UnknownKind { entry: u32, code: u16 },
    /// A table entry's layer index is outside the config's layer count.
    BadLayer {
        entry: u32,
        kind: TensorKind,
        layer: u16,
        layers: u32,
    },
    /// A table entry has an unknown dtype code.
    UnknownDType {
        kind: TensorKind,
        layer: u16,
        code: u8,
    },
    /// The dtype is not allowed for this kind (biases, LayerNorm, memory slots and the
    /// positional table must be f32).
    DTypeNotAllowed {
        kind: TensorKind,
        layer: u16,
        dtype: DType,
    },
    /// The shape differs from the one the config implies.
    ShapeMismatch {
        kind: TensorKind,
        layer: u16,
        expected: (u32, u32),
        found: (u32, u32),
    },
    /// A byte length differs from `rows × cols × size` (data) or `rows × 4` (scales).
    ByteLength {
        kind: TensorKind,
        layer: u16,
        part: Part,
        expected: u64,
        found: u64,
    },
    /// A byte range is not inside the data area.
    TensorOutOfBounds {
        kind: TensorKind,
        layer: u16,
        part: Part,
        offset: u64,
        len: u64,
        area_start: u64,
        area_end: u64,
    },
    /// A byte range does not start at a multiple of 32.
    TensorMisaligned {
        kind: TensorKind,
        layer: u16,
        part: Part,
        offset: u64,
    },
    /// A non-int8 tensor has a scale range.
    UnexpectedScales {
        kind: TensorKind,
        layer: u16,
        offset: u64,
        len: u64,
    },
    /// The same `(kind, layer)` appears twice.
    Duplicate {
        kind: TensorKind,
        layer: u16,
        first: u32,
        second: u32,
    },
    /// Two byte ranges overlap.
    Overlap {
        a: (TensorKind, u16, Part),
        b: (TensorKind, u16, Part),
        a_range: (u64, u64),
        b_range: (u64, u64),
    },
    /// A tensor the config requires is absent.
    Missing { kind: TensorKind, layer: u16 },
    /// The vocabulary index does not start at 0, is not non-decreasing, or does not end at the
    /// vocabulary byte length. `id` is the first token whose `[start, end)` is bad.
    VocabOffsets {
        id: u32,
        start: u32,
        end: u32,
        bytes_len: u64,
    },
}

impl From<ConfigError> for BlobError {
    fn from(e: ConfigError) -> Self {
        BlobError::Config(e)
    }
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use BlobError::*;
        match *self {
            BigEndianHost => write!(f, "M2 blobs are little-endian and this host is big-endian"),
            BaseMisaligned { addr, required } => write!(
                f,
                "blob buffer at address {addr:#x} is not {required}-byte aligned \
                 (load it with blob::AlignedBuf or memory-map it)"
            ),
            TooShort { len, need } => write!(
                f,
                "not an M2 blob: {len} bytes, shorter than the {need}-byte header"
            ),
            BadMagic { found } => write!(f, "not an M2 blob: bad magic {found:02x?}"),
            UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported M2 blob format version {found} (this reader supports versions {} to {supported})",
                super::format::OLDEST_VERSION
            ),
            BadHeaderLen { found, expected } => {
                write!(f, "header length field is {found}, expected {expected}")
            }
            LengthMismatch { header, actual } => {
                if (actual as u64) < header {
                    write!(f, "blob truncated: header says {header} bytes, got {actual}")
                } else {
                    write!(f, "blob has trailing bytes: header says {header} bytes, got {actual}")
                }
            }
            ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (corrupted blob)"
            ),
            StructureChecksumMismatch { stored, computed } => write!(
                f,
                "structure checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (corrupted header, tensor table or vocabulary)"
            ),
            NoStructureChecksum { version } => write!(
                f,
                "format version {version} blob has no structure checksum, so it cannot be loaded without the full checksum pass: verify it (Blob::parse) or re-pack it with m2-pack"
            ),
            VersionNotNeeded { found, expected } => write!(
                f,
                "format version {found} but no tensor needs more than version {expected} (a blob carries the oldest version that holds it; corrupted header?)"
            ),
            Reserved { offset, value } => {
                write!(f, "reserved field at offset {offset} is {value:#x}, must be 0")
            }
            Config(e) => write!(f, "invalid config: {e}"),
            EncPadValue { bits } => write!(
                f,
                "invalid config: enc_pad_value {} (bits {bits:#010x}) is not finite",
                f32::from_bits(bits)
            ),
            TensorCount { found, expected } => write!(
                f,
                "tensor table has {found} entries, the config requires {expected}"
            ),
            VocabCount { found, expected } => write!(
                f,
                "vocabulary has {found} tokens, config.vocab is {expected}"
            ),
            SectionOutOfBounds { section, offset, len, total } => write!(
                f,
                "{section} at offset {offset} with length {len} does not fit in the {total}-byte blob"
            ),
            SectionOverlap { section, offset, previous_end } => write!(
                f,
                "{section} starts at offset {offset}, before the previous section ends at {previous_end}"
            ),
            SectionMisaligned { section, offset, align } => {
                write!(f, "{section} at offset {offset} is not {align}-byte aligned")
            }
            UnknownKind { entry, code } => {
                write!(f, "tensor table entry {entry} has unknown tensor kind code {code}")
            }
            BadLayer { entry, kind, layer, layers } => write!(
                f,
                "tensor table entry {entry}: {kind:?} has layer {layer}, the config has {layers} such layer(s)"
            ),
            UnknownDType { kind, layer, code } => {
                write!(f, "{}: unknown dtype code {code}", kind.key(layer))
            }
            DTypeNotAllowed { kind, layer, dtype } => {
                write!(f, "{}: stored as {dtype}, must be f32", kind.key(layer))
            }
            ShapeMismatch { kind, layer, expected, found } => write!(
                f,
                "{}: shape [{}, {}], the config implies [{}, {}]",
                kind.key(layer),
                found.0,
                found.1,
                expected.0,
                expected.1
            ),
            ByteLength { kind, layer, part, expected, found } => write!(
                f,
                "{}: {part} length {found} bytes, expected {expected}",
                kind.key(layer)
            ),
            TensorOutOfBounds { kind, layer, part, offset, len, area_start, area_end } => write!(
                f,
                "{}: {part} at offset {offset} with length {len} is outside the data area {area_start}..{area_end}",
                kind.key(layer)
            ),
            TensorMisaligned { kind, layer, part, offset } => write!(
                f,
                "{}: {part} at offset {offset} is not {}-byte aligned",
                kind.key(layer),
                super::ALIGN
            ),
            UnexpectedScales { kind, layer, offset, len } => write!(
                f,
                "{}: not int8 but has scales at offset {offset} length {len} (must be 0, 0)",
                kind.key(layer)
            ),
            Duplicate { kind, layer, first, second } => write!(
                f,
                "{} appears twice in the tensor table (entries {first} and {second})",
                kind.key(layer)
            ),
            Overlap { a, b, a_range, b_range } => write!(
                f,
                "{} {} {}..{} overlaps {} {} {}..{}",
                a.0.key(a.1),
                a.2,
                a_range.0,
                a_range.1,
                b.0.key(b.1),
                b.2,
                b_range.0,
                b_range.1
            ),
            Missing { kind, layer } => {
                write!(f, "required tensor {} is missing", kind.key(layer))
            }
            VocabOffsets { id, start, end, bytes_len } => write!(
                f,
                "vocabulary index: token {id} spans {start}..{end}, outside 0..{bytes_len} or decreasing"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BlobError {}
