//! The blob writer (std only) and std helpers to hold a blob in suitably aligned memory.

use super::format::{self, entry, hdr, ALIGN, ENTRY_LEN, HEADER_LEN, MAGIC};
use super::{Blob, BlobError, DType, TensorKind};
use crate::config::{Config, ConfigError};
use half::f16;
use half::slice::HalfFloatSliceExt;
use std::fmt;
use std::path::Path;
use std::vec::Vec;

/// The values of one tensor handed to [`BlobWriter::add`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// f32 values, row-major.
    F32(Vec<f32>),
    /// f16 values, row-major.
    F16(Vec<f16>),
    /// int8 values, row-major, and one f32 scale per row; `act16`: stored as
    /// [`DType::I8A16`] (int16 activations) rather than [`DType::I8`].
    I8 {
        q: Vec<i8>,
        scales: Vec<f32>,
        act16: bool,
    },
}

impl TensorData {
    /// Convert f32 values to `dtype`: f16 rounds to nearest even; int8 quantises each row of
    /// `cols` values symmetrically (see [`quantize_rows_i8`]).
    pub fn from_f32(values: &[f32], cols: usize, dtype: DType) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(values.to_vec()),
            DType::F16 => TensorData::F16(values.iter().map(|&v| f16::from_f32(v)).collect()),
            DType::I8 | DType::I8A16 => {
                let (q, scales) = quantize_rows_i8(values, cols);
                let act16 = dtype == DType::I8A16;
                TensorData::I8 { q, scales, act16 }
            }
        }
    }

    /// The storage dtype.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I8 { act16: false, .. } => DType::I8,
            TensorData::I8 { act16: true, .. } => DType::I8A16,
        }
    }

    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I8 { q, .. } => q.len(),
        }
    }
}

/// Symmetric per-row int8 quantisation: for each row of `cols` values, `scale = max|w| / 127`,
/// `q = round(w / scale)` clamped to [−127, 127]; an all-zero row gets scale 0 and q = 0.
/// `|w − q·scale| ≤ scale / 2` for every finite w. `values.len()` must be a multiple of `cols`
/// (a trailing partial row is quantised on its own).
pub fn quantize_rows_i8(values: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = cols.max(1);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / cols + 1);
    for row in values.chunks(cols) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = absmax / 127.0;
        scales.push(scale);
        if scale == 0.0 || !scale.is_finite() {
            q.extend(row.iter().map(|_| 0i8));
        } else {
            q.extend(
                row.iter()
                    .map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
    }
    (q, scales)
}

/// Why [`BlobWriter::finish`] refused to write a blob.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteError {
    /// The config is invalid.
    Config(ConfigError),
    /// A tensor was added twice.
    Duplicate { kind: TensorKind, layer: u16 },
    /// A tensor the config requires was not added.
    Missing { kind: TensorKind, layer: u16 },
    /// A `(kind, layer)` the config does not have.
    Unexpected { kind: TensorKind, layer: u16 },
    /// Wrong number of values (or scales) for the config's shape.
    Length {
        kind: TensorKind,
        layer: u16,
        expected: usize,
        found: usize,
    },
    /// The kind must be f32.
    DType {
        kind: TensorKind,
        layer: u16,
        dtype: DType,
    },
    /// The vocabulary size differs from `config.vocab`.
    VocabSize { found: usize, expected: u32 },
    /// The vocabulary is larger than 4 GiB.
    VocabTooLarge(usize),
    /// The written blob does not parse (a writer bug).
    SelfCheck(BlobError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Config(e) => write!(f, "invalid config: {e}"),
            WriteError::Duplicate { kind, layer } => {
                write!(f, "tensor {} added twice", kind.key(*layer))
            }
            WriteError::Missing { kind, layer } => {
                write!(f, "required tensor {} was not provided", kind.key(*layer))
            }
            WriteError::Unexpected { kind, layer } => {
                write!(f, "tensor {} is not part of this config", kind.key(*layer))
            }
            WriteError::Length {
                kind,
                layer,
                expected,
                found,
            } => write!(
                f,
                "tensor {}: {found} values, the config's shape needs {expected}",
                kind.key(*layer)
            ),
            WriteError::DType { kind, layer, dtype } => {
                write!(f, "tensor {} must be f32, got {dtype}", kind.key(*layer))
            }
            WriteError::VocabSize { found, expected } => {
                write!(
                    f,
                    "vocabulary has {found} tokens, config.vocab is {expected}"
                )
            }
            WriteError::VocabTooLarge(n) => write!(f, "vocabulary is {n} bytes, more than 4 GiB"),
            WriteError::SelfCheck(e) => write!(f, "internal error, written blob is invalid: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Builds a blob: set the config, add every required tensor (any order), set the vocabulary,
/// then [`finish`](BlobWriter::finish). Tensors are laid out in canonical order.
#[derive(Clone, Debug)]
pub struct BlobWriter {
    config: Config,
    tensors: Vec<(TensorKind, u16, TensorData)>,
    vocab: Vec<Vec<u8>>,
}

impl BlobWriter {
    /// A writer for a model with this config.
    pub fn new(config: Config) -> BlobWriter {
        BlobWriter {
            config,
            tensors: Vec::new(),
            vocab: Vec::new(),
        }
    }

    /// Add the tensor `(kind, layer)`. Shape and dtype are checked by [`finish`](Self::finish).
    pub fn add(&mut self, kind: TensorKind, layer: u16, data: TensorData) -> &mut Self {
        self.tensors.push((kind, layer, data));
        self
    }

    /// Set the vocabulary (token bytes, index = id).
    pub fn vocab(&mut self, tokens: Vec<Vec<u8>>) -> &mut Self {
        self.vocab = tokens;
        self
    }

    /// Lay out, sign, and self-check the blob.
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        let cfg = &self.config;
        cfg.validate().map_err(WriteError::Config)?;
        // check every tensor and put them in canonical order
        let required = TensorKind::required_count(cfg);
        let mut slots: Vec<Option<&TensorData>> = vec![None; required];
        for (kind, layer, data) in &self.tensors {
            let (kind, layer) = (*kind, *layer);
            let idx = kind
                .canonical_index(layer, cfg)
                .ok_or(WriteError::Unexpected { kind, layer })?;
            if !kind.allows(data.dtype()) {
                return Err(WriteError::DType {
                    kind,
                    layer,
                    dtype: data.dtype(),
                });
            }
            let (r, c) = kind.shape(cfg);
            let n = r as usize * c as usize;
            if data.len() != n {
                return Err(WriteError::Length {
                    kind,
                    layer,
                    expected: n,
                    found: data.len(),
                });
            }
            if let TensorData::I8 { scales, .. } = data {
                if scales.len() != r as usize {
                    return Err(WriteError::Length {
                        kind,
                        layer,
                        expected: r as usize,
                        found: scales.len(),
                    });
                }
            }
            if slots[idx].is_some() {
                return Err(WriteError::Duplicate { kind, layer });
            }
            slots[idx] = Some(data);
        }
        for ((kind, layer), slot) in TensorKind::required(cfg).zip(&slots) {
            if slot.is_none() {
                return Err(WriteError::Missing { kind, layer });
            }
        }
        if self.vocab.len() != cfg.vocab as usize {
            return Err(WriteError::VocabSize {
                found: self.vocab.len(),
                expected: cfg.vocab,
            });
        }
        let vocab_bytes: usize = self.vocab.iter().map(Vec::len).sum();
        if vocab_bytes > u32::MAX as usize {
            return Err(WriteError::VocabTooLarge(vocab_bytes));
        }

        // layout
        let table_off = HEADER_LEN;
        let vi_off = table_off + required * ENTRY_LEN;
        let vb_off = vi_off + (self.vocab.len() + 1) * 4;
        let data_off = format::align_up((vb_off + vocab_bytes) as u64) as usize;
        let mut pos = data_off;
        let mut place = |bytes: usize| {
            let at = pos;
            pos = format::align_up((pos + bytes) as u64) as usize;
            at
        };
        let mut layout = Vec::with_capacity(required);
        for data in slots.iter().flatten() {
            let n = data.len() * data.dtype().size();
            let off = place(n);
            let (soff, slen) = match data {
                TensorData::I8 { scales, .. } => (place(scales.len() * 4), scales.len() * 4),
                _ => (0, 0),
            };
            layout.push((off, n, soff, slen));
        }
        let total = pos;

        let mut out = vec![0u8; total];
        out[hdr::MAGIC..hdr::MAGIC + 8].copy_from_slice(&MAGIC);
        let version = format::version_for(slots.iter().flatten().map(|d| d.dtype()));
        put_u32(&mut out, hdr::VERSION, version);
        put_u32(&mut out, hdr::HEADER_LEN, HEADER_LEN as u32);
        put_u64(&mut out, hdr::TOTAL_LEN, total as u64);
        out[hdr::CONFIG..hdr::CONFIG + format::CONFIG_LEN]
            .copy_from_slice(&format::config_to_bytes(cfg));
        put_u32(&mut out, hdr::N_TENSORS, required as u32);
        put_u64(&mut out, hdr::TABLE_OFF, table_off as u64);
        put_u32(&mut out, hdr::N_TOKENS, self.vocab.len() as u32);
        put_u64(&mut out, hdr::VOCAB_INDEX_OFF, vi_off as u64);
        put_u64(&mut out, hdr::VOCAB_BYTES_OFF, vb_off as u64);
        put_u64(&mut out, hdr::VOCAB_BYTES_LEN, vocab_bytes as u64);
        put_u64(&mut out, hdr::DATA_OFF, data_off as u64);
        put_u64(&mut out, hdr::DATA_LEN, (total - data_off) as u64);

        for (i, (((kind, layer), data), &(off, n, soff, slen))) in TensorKind::required(cfg)
            .zip(slots.iter().flatten())
            .zip(&layout)
            .enumerate()
        {
            let e = table_off + i * ENTRY_LEN;
            let (r, c) = kind.shape(cfg);
            put_u16(&mut out, e + entry::KIND, kind.code());
            put_u16(&mut out, e + entry::LAYER, layer);
            out[e + entry::DTYPE] = data.dtype().code();
            put_u32(&mut out, e + entry::ROWS, r);
            put_u32(&mut out, e + entry::COLS, c);
            put_u64(&mut out, e + entry::DATA_OFF, off as u64);
            put_u64(&mut out, e + entry::DATA_LEN, n as u64);
            put_u64(&mut out, e + entry::SCALES_OFF, soff as u64);
            put_u64(&mut out, e + entry::SCALES_LEN, slen as u64);
            // native-order bytes are the little-endian ones: the self-check below refuses
            // big-endian hosts, as the reader does
            let dst = &mut out[off..off + n];
            match data {
                TensorData::F32(v) => dst.copy_from_slice(bytemuck::cast_slice(v)),
                TensorData::F16(v) => {
                    dst.copy_from_slice(bytemuck::cast_slice(v.reinterpret_cast()))
                }
                TensorData::I8 { q, scales, .. } => {
                    dst.copy_from_slice(bytemuck::cast_slice(q));
                    out[soff..soff + slen].copy_from_slice(bytemuck::cast_slice(scales));
                }
            }
        }

        let mut acc = 0usize;
        put_u32(&mut out, vi_off, 0);
        for (id, tok) in self.vocab.iter().enumerate() {
            out[vb_off + acc..vb_off + acc + tok.len()].copy_from_slice(tok);
            acc += tok.len();
            put_u32(&mut out, vi_off + (id + 1) * 4, acc as u32);
        }

        sign(&mut out);
        // self-check against the reader (structure only; the checksum was just computed)
        // (the allocator almost always returns a suitably aligned buffer; copy only if not)
        if (out.as_ptr() as usize).is_multiple_of(format::MIN_BASE_ALIGN) {
            Blob::parse_skip_checksum(&out).map_err(WriteError::SelfCheck)?;
        } else {
            let buf = AlignedBuf::from_bytes(&out);
            Blob::parse_skip_checksum(&buf).map_err(WriteError::SelfCheck)?;
        }
        Ok(out)
    }
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// (Re)compute and store the checksums of a blob in place (after editing header, table or
/// vocabulary bytes, e.g. in tests): the structure checksum when the header says version 2 or
/// later and its `data_off` is in range, then the full checksum. Does nothing if `bytes` is
/// shorter than the checksum field.
pub fn sign(bytes: &mut [u8]) {
    if bytes.len() < format::CHECKSUM_START {
        return;
    }
    // the structure checksum first: the full checksum covers its field
    if super::view::le_u32(bytes, hdr::VERSION) >= 2 {
        if let Some(s) = format::structure_checksum(bytes) {
            bytes[hdr::STRUCTURE_CRC..hdr::STRUCTURE_CRC + 4].copy_from_slice(&s.to_le_bytes());
        }
    }
    let c = format::checksum(bytes);
    bytes[hdr::CHECKSUM..hdr::CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
}

/// A heap byte buffer whose first byte is 32-byte aligned ([`ALIGN`]), so that
/// [`Blob::parse`] accepts it. Derefs to `[u8]`.
#[derive(Clone)]
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// Copy `bytes` into a fresh aligned buffer.
    pub fn from_bytes(bytes: &[u8]) -> AlignedBuf {
        let mut storage = vec![0u8; bytes.len() + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        storage[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedBuf {
            storage,
            start,
            len: bytes.len(),
        }
    }

    /// Read a whole file into an aligned buffer (straight into it: the file's size in memory
    /// once, not twice).
    pub fn read_file(path: impl AsRef<Path>) -> std::io::Result<AlignedBuf> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut buf = AlignedBuf::zeroed(file.metadata()?.len())?;
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// `len` zero bytes, aligned; a length or an allocation that does not fit is an error,
    /// not an abort.
    fn zeroed(len: u64) -> std::io::Result<AlignedBuf> {
        let too_large = || std::io::Error::new(std::io::ErrorKind::OutOfMemory, "file too large");
        let len = usize::try_from(len).map_err(|_| too_large())?;
        let total = len.checked_add(ALIGN).ok_or_else(too_large)?;
        let mut storage = Vec::new();
        storage.try_reserve_exact(total).map_err(|_| too_large())?;
        storage.resize(total, 0);
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        Ok(AlignedBuf {
            storage,
            start,
            len,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Mutable bytes (e.g. to corrupt a blob in a test).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Parse the buffer as a blob.
    pub fn blob(&self) -> Result<Blob<'_>, BlobError> {
        Blob::parse(self.as_slice())
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// A validated blob file: memory-mapped read-only (page-aligned, so [`Blob::parse`] accepts it;
/// no copy, pages come in on demand), or read into memory ([`MappedBlob::read`]).
///
/// **The mapping hazard.** A mapped file that another process truncates or rewrites while it is
/// mapped is read as it changes (a private mapping copies a page only when *this* process
/// writes it, which it never does) — past validation — and truncation turns reads into
/// `SIGBUS`. m2-pack replaces blobs atomically (a new file, then a rename), which leaves an
/// existing mapping on the old inode. For files something else may change or remove (removable
/// media, network shares, a blob being re-copied), read them instead: `m2 --no-mmap`.
#[derive(Debug)]
pub struct MappedBlob {
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Mapped(memmap2::Mmap),
    Read(AlignedBuf),
}

/// Why a blob file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// Opening or mapping the file failed.
    Io(std::path::PathBuf, std::io::Error),
    /// The file is not a valid blob.
    Blob(std::path::PathBuf, BlobError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            LoadError::Blob(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// Most bytes read from a blob that is not a regular file (a pipe, a device): four times the
/// COCO f32 blob (154 MB).
const MAX_STREAM_BLOB: u64 = 1 << 30;

/// `path`'s bytes for [`MappedBlob::read`]: a regular file whole; anything else (a pipe, a
/// device) up to the length its header declares and one byte more, at most
/// [`MAX_STREAM_BLOB`] (a longer stream is then a length mismatch, `/dev/zero` a bad magic,
/// and a forged header's huge length an error, instead of an endless read).
fn read_blob_file(path: &Path) -> Result<AlignedBuf, LoadError> {
    use std::io::Read;
    let io = |e| LoadError::Io(path.to_path_buf(), e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mut bytes = Vec::new();
    let head = super::format::HEADER_LEN as u64;
    (&mut file).take(head).read_to_end(&mut bytes).map_err(io)?;
    let declared = Blob::declared_len(&bytes).map_err(|e| LoadError::Blob(path.into(), e))?;
    if meta.is_file() {
        // the header is checked against the file's length before the rest is read (a large
        // file that is not a blob, or not this one, costs nothing), then the rest goes straight
        // into the aligned buffer behind the header already read
        check_length(path, declared, meta.len())?;
        let mut buf = AlignedBuf::zeroed(declared).map_err(io)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        file.read_exact(&mut buf[bytes.len()..]).map_err(io)?;
        return Ok(buf);
    }
    if declared > MAX_STREAM_BLOB {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            std::format!(
                "a blob read from a pipe or device is at most {MAX_STREAM_BLOB} bytes (its header declares {declared}); use a regular file"
            ),
        )));
    }
    let rest = declared.saturating_sub(head).saturating_add(1);
    file.take(rest).read_to_end(&mut bytes).map_err(io)?;
    Ok(AlignedBuf::from_bytes(&bytes))
}

/// Magic, version, header length and the declared length against the file's: checked before
/// the checksum pass, so a file that is not a blob (or a 20 GB file that is not this one) is
/// refused without reading it.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let declared = Blob::declared_len(bytes).map_err(|e| LoadError::Blob(path.into(), e))?;
    check_length(path, declared, bytes.len() as u64)
}

/// The header's declared length against the file's.
fn check_length(path: &Path, declared: u64, actual: u64) -> Result<(), LoadError> {
    if declared != actual {
        return Err(LoadError::Blob(
            path.into(),
            BlobError::LengthMismatch {
                header: declared,
                actual: usize::try_from(actual).unwrap_or(usize::MAX),
            },
        ));
    }
    Ok(())
}

/// `path` opened for mapping: a regular file (or a directory, whose mapping fails as usual). A
/// pipe or device is refused before it is opened: a pipe cannot be mapped, and opening one with
/// no writer would block first ([`MappedBlob::read`] reads a pipe).
fn open_for_map(path: &Path) -> Result<std::fs::File, LoadError> {
    let io = |e| LoadError::Io(path.to_path_buf(), e);
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a pipe or a device): only a regular file is mapped; read it \
             instead (m2 --no-mmap, Python mmap=False)",
        )));
    }
    std::fs::File::open(path).map_err(io)
}

impl MappedBlob {
    /// Map `path` and validate it as a blob (header first, then the checksum, then the
    /// structure).
    pub fn open(path: impl AsRef<Path>) -> Result<MappedBlob, LoadError> {
        let path = path.as_ref();
        let io = |e| LoadError::Io(path.to_path_buf(), e);
        let file = open_for_map(path)?;
        // SAFETY: a read-only private mapping (PROT_READ, MAP_PRIVATE) that this process never
        // writes. Reading it is sound as long as no other process truncates or rewrites the
        // file while it is mapped — the hazard documented on `MappedBlob`, which m2-pack's
        // atomic replace avoids and `MappedBlob::read` (`m2 --no-mmap`) removes.
        let map = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.map_err(io)?;
        check_header(path, &map)?;
        // The checksum pass reads every byte; each 4 MiB piece's pages are handed back once
        // hashed, so the pass never holds the blob resident, and afterwards only what the
        // engine reads comes back: all weights but most rows of `word_emb` (a caption reads
        // ≤ beam × steps of its V rows — 5 MB of the COCO int8 blob stay out).
        let crc = super::format::checksum_chunked(&map, 4 << 20, |start, end| {
            // SAFETY: a read-only, file-backed private mapping no page of which this process
            // has written: MADV_DONTNEED drops page-table entries only; the next read maps the
            // same file bytes again (from the page cache). A failure only leaves the pages
            // resident.
            #[cfg(unix)]
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        });
        Blob::parse_with_checksum(&map, crc).map_err(|e| LoadError::Blob(path.to_path_buf(), e))?;
        Ok(MappedBlob {
            bytes: Bytes::Mapped(map),
        })
    }

    /// Map `path` and check only its header (magic, version, header and declared length): for
    /// tools that run [`Blob::parse`] themselves to report on a damaged blob (`m2-pack
    /// inspect`). Nothing else is validated: parse [`MappedBlob::bytes`] before use.
    pub fn open_header_checked(path: impl AsRef<Path>) -> Result<MappedBlob, LoadError> {
        let path = path.as_ref();
        let io = |e| LoadError::Io(path.to_path_buf(), e);
        let file = open_for_map(path)?;
        // SAFETY: as in `MappedBlob::open`: read-only, private, never written by this process;
        // sound unless another process truncates or rewrites the file meanwhile.
        let map = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.map_err(io)?;
        check_header(path, &map)?;
        Ok(MappedBlob {
            bytes: Bytes::Mapped(map),
        })
    }

    /// Read `path` into memory (no mapping: the file may change or vanish afterwards without
    /// effect) and validate it as [`MappedBlob::open`] does. Costs the blob's size in RAM.
    pub fn read(path: impl AsRef<Path>) -> Result<MappedBlob, LoadError> {
        let path = path.as_ref();
        let buf = read_blob_file(path)?;
        check_header(path, &buf)?;
        Blob::parse(&buf).map_err(|e| LoadError::Blob(path.to_path_buf(), e))?;
        Ok(MappedBlob {
            bytes: Bytes::Read(buf),
        })
    }

    /// The blob's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Read(b) => b,
        }
    }

    /// The blob view. `open` validated these bytes; this re-runs only the structural checks
    /// (an error is possible only if the file was modified behind the mapping's back).
    pub fn blob(&self) -> Result<Blob<'_>, BlobError> {
        Blob::parse_skip_checksum(self.bytes())
    }
}

/// Load a blob file into memory (a memory map) and validate it: `load_file(p)?.blob()`.
pub fn load_file(path: impl AsRef<Path>) -> Result<MappedBlob, LoadError> {
    MappedBlob::open(path)
}
