//! Byte layout constants of the M2 blob (format version 1) and the one place that says which
//! tensors a valid blob holds for a given [`Config`] and with which shapes.
//!
//! Both the reader ([`super::Blob::parse`]) and the writer (`BlobWriter`, std only) use these
//! definitions; `docs/FORMAT.md` is their prose form.

use super::{DType, TensorKind};
use crate::config::Config;

/// The 8 magic bytes at offset 0: `0x7F 'M' '2' 'B' 'L' 'O' 'B' '\n'`.
pub const MAGIC: [u8; 8] = *b"\x7fM2BLOB\n";
/// The only format version this reader understands.
pub const VERSION: u32 = 1;
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
    /// `u32` format version, 1.
    pub const VERSION: usize = 8;
    /// `u32` header length, 160.
    pub const HEADER_LEN: usize = 12;
    /// `u64` total length of the blob in bytes.
    pub const TOTAL_LEN: usize = 16;
    /// `u32` CRC-32 (ISO-HDLC, as zlib/PNG) of bytes `28..total_len`.
    pub const CHECKSUM: usize = 24;
    /// `u32` flags, must be 0.
    pub const FLAGS: usize = 28;
    /// 17 `u32` config fields, in [`super::CONFIG_FIELDS`] order (the last is `enc_pad_value`
    /// as f32 bits).
    pub const CONFIG: usize = 32;
    /// `u32` number of tensor-table entries.
    pub const N_TENSORS: usize = 100;
    /// `u64` offset of the tensor table.
    pub const TABLE_OFF: usize = 104;
    /// `u32` number of vocabulary tokens.
    pub const N_TOKENS: usize = 112;
    /// `u32` reserved, must be 0.
    pub const RESERVED: usize = 116;
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

/// Names of the config fields in header order (for diagnostics and documentation).
pub const CONFIG_FIELDS: [&str; 17] = [
    "d_in",
    "d_model",
    "h",
    "d_k",
    "d_v",
    "d_ff",
    "n_enc",
    "n_dec",
    "m",
    "vocab",
    "pos_rows",
    "max_regions",
    "pad",
    "unk",
    "bos",
    "eos",
    "enc_pad_value",
];

/// Serialise a config into its 68 header bytes.
pub fn config_to_bytes(c: &Config) -> [u8; 68] {
    let v: [u32; 17] = [
        c.d_in,
        c.d_model,
        c.h,
        c.d_k,
        c.d_v,
        c.d_ff,
        c.n_enc,
        c.n_dec,
        c.m,
        c.vocab,
        c.pos_rows,
        c.max_regions,
        c.pad,
        c.unk,
        c.bos,
        c.eos,
        c.enc_pad_value.to_bits(),
    ];
    let mut out = [0u8; 68];
    for (chunk, x) in out.chunks_exact_mut(4).zip(v.iter()) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// Read a config from its 68 header bytes (no validation).
pub fn config_from_bytes(b: &[u8; 68]) -> Config {
    let mut v = [0u32; 17];
    for (x, chunk) in v.iter_mut().zip(b.chunks_exact(4)) {
        *x = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Config {
        d_in: v[0],
        d_model: v[1],
        h: v[2],
        d_k: v[3],
        d_v: v[4],
        d_ff: v[5],
        n_enc: v[6],
        n_dec: v[7],
        m: v[8],
        vocab: v[9],
        pos_rows: v[10],
        max_regions: v[11],
        pad: v[12],
        unk: v[13],
        bos: v[14],
        eos: v[15],
        enc_pad_value: f32::from_bits(v[16]),
    }
}

/// CRC-32 of `bytes[CHECKSUM_START..]` — the value a valid blob stores at [`hdr::CHECKSUM`].
/// Returns 0 for inputs shorter than [`CHECKSUM_START`].
pub fn checksum(bytes: &[u8]) -> u32 {
    match bytes.get(CHECKSUM_START..) {
        Some(rest) => crc32fast::hash(rest),
        None => 0,
    }
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
            DType::I8 => 1,
        }
    }
    /// Lower-case name: `f32`, `f16`, `int8`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "int8",
        }
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which part of the model a [`TensorKind`] belongs to, i.e. what its layer index counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A single tensor of the model; its layer index is 0.
    Global,
    /// One per encoder layer (`0..n_enc`).
    EncoderLayer,
    /// One per decoder layer (`0..n_dec`).
    DecoderLayer,
}

/// How a [`TensorKind`] is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A Linear weight or an embedding matrix `[out, in]`: stored in the pack dtype
    /// (f32, f16 or int8 with per-row scales).
    Weight,
    /// A bias or LayerNorm vector: always f32, rows = 1.
    Vector,
    /// An f32 table (memory slots, positional table): always f32, `[rows, d]`.
    Table,
}

/// Encoder-input kinds, in canonical order.
const ENC_GLOBAL: [TensorKind; 4] = {
    use TensorKind::*;
    [EncInW, EncInB, EncInLnG, EncInLnB]
};

/// Per-encoder-layer kinds, in canonical order.
const ENC_LAYER: [TensorKind; 18] = {
    use TensorKind::*;
    [
        EncMemK, EncMemV, EncQW, EncQB, EncKW, EncKB, EncVW, EncVB, EncOW, EncOB, EncAttLnG,
        EncAttLnB, EncFf1W, EncFf1B, EncFf2W, EncFf2B, EncFfLnG, EncFfLnB,
    ]
};

/// Decoder-global kinds, in canonical order.
const DEC_GLOBAL: [TensorKind; 3] = {
    use TensorKind::*;
    [WordEmb, PosEmb, VocabW]
};

/// Per-decoder-layer kinds, in canonical order.
const DEC_LAYER: [TensorKind; 32] = {
    use TensorKind::*;
    [
        SelfQW, SelfQB, SelfKW, SelfKB, SelfVW, SelfVB, SelfOW, SelfOB, SelfLnG, SelfLnB, CrossQW,
        CrossQB, CrossKW, CrossKB, CrossVW, CrossVB, CrossOW, CrossOB, CrossLnG, CrossLnB, Alpha1W,
        Alpha1B, Alpha2W, Alpha2B, Alpha3W, Alpha3B, DecFf1W, DecFf1B, DecFf2W, DecFf2B, DecFfLnG,
        DecFfLnB,
    ]
};

impl TensorKind {
    /// Every kind, in canonical order.
    pub const ALL: [TensorKind; 57] = {
        let mut out = [TensorKind::EncInW; 57];
        let mut i = 0;
        let mut j = 0;
        while j < ENC_GLOBAL.len() {
            out[i] = ENC_GLOBAL[j];
            i += 1;
            j += 1;
        }
        j = 0;
        while j < ENC_LAYER.len() {
            out[i] = ENC_LAYER[j];
            i += 1;
            j += 1;
        }
        j = 0;
        while j < DEC_GLOBAL.len() {
            out[i] = DEC_GLOBAL[j];
            i += 1;
            j += 1;
        }
        j = 0;
        while j < DEC_LAYER.len() {
            out[i] = DEC_LAYER[j];
            i += 1;
            j += 1;
        }
        out
    };

    /// The on-disk code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The kind with this on-disk code.
    pub fn from_code(code: u16) -> Option<TensorKind> {
        TensorKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// What the layer index of this kind counts.
    pub const fn scope(self) -> Scope {
        use TensorKind::*;
        match self {
            EncInW | EncInB | EncInLnG | EncInLnB | WordEmb | PosEmb | VocabW => Scope::Global,
            EncMemK | EncMemV | EncQW | EncQB | EncKW | EncKB | EncVW | EncVB | EncOW | EncOB
            | EncAttLnG | EncAttLnB | EncFf1W | EncFf1B | EncFf2W | EncFf2B | EncFfLnG
            | EncFfLnB => Scope::EncoderLayer,
            _ => Scope::DecoderLayer,
        }
    }

    /// How this kind is stored.
    pub const fn class(self) -> Class {
        use TensorKind::*;
        match self {
            EncInW | EncQW | EncKW | EncVW | EncOW | EncFf1W | EncFf2W | WordEmb | VocabW
            | SelfQW | SelfKW | SelfVW | SelfOW | CrossQW | CrossKW | CrossVW | CrossOW
            | Alpha1W | Alpha2W | Alpha3W | DecFf1W | DecFf2W => Class::Weight,
            EncMemK | EncMemV | PosEmb => Class::Table,
            _ => Class::Vector,
        }
    }

    /// Whether a tensor of this kind may be stored in `dtype` (weights: any; the rest: f32).
    pub const fn allows(self, dtype: DType) -> bool {
        matches!(self.class(), Class::Weight) || matches!(dtype, DType::F32)
    }

    /// Number of layers this kind has under `cfg` (1 for global kinds).
    pub const fn layers(self, cfg: &Config) -> u32 {
        match self.scope() {
            Scope::Global => 1,
            Scope::EncoderLayer => cfg.n_enc,
            Scope::DecoderLayer => cfg.n_dec,
        }
    }

    /// The blob shape `(rows, cols)` of this kind under `cfg` (vectors: `rows = 1`).
    pub const fn shape(self, cfg: &Config) -> (u32, u32) {
        use TensorKind::*;
        let d = cfg.d_model;
        match self {
            EncInW => (d, cfg.d_in),
            EncMemK | EncMemV => (cfg.m, d),
            EncFf1W | DecFf1W => (cfg.d_ff, d),
            EncFf1B | DecFf1B => (1, cfg.d_ff),
            EncFf2W | DecFf2W => (d, cfg.d_ff),
            WordEmb | VocabW => (cfg.vocab, d),
            PosEmb => (cfg.pos_rows, d),
            Alpha1W | Alpha2W | Alpha3W => (d, d.saturating_mul(2)),
            EncQW | EncKW | EncVW | EncOW | SelfQW | SelfKW | SelfVW | SelfOW | CrossQW
            | CrossKW | CrossVW | CrossOW => (d, d),
            _ => (1, d),
        }
    }

    /// The shape of this kind in the reference checkpoint (PyTorch state_dict): weights and
    /// tables `[rows, cols]`, vectors `[cols]`, memory slots `[1, m, d]`.
    pub fn checkpoint_shape(self, cfg: &Config) -> ([usize; 3], usize) {
        let (r, c) = self.shape(cfg);
        let (r, c) = (r as usize, c as usize);
        match (self, self.class()) {
            (TensorKind::EncMemK | TensorKind::EncMemV, _) => ([1, r, c], 3),
            (_, Class::Vector) => ([c, 0, 0], 1),
            _ => ([r, c, 0], 2),
        }
    }

    /// The state_dict key of this kind at `layer`, as a `Display` value (no allocation).
    pub const fn key(self, layer: u16) -> Key {
        Key { kind: self, layer }
    }

    /// `(prefix, suffix)` of the state_dict key: global kinds have the whole key in `prefix`
    /// and an empty suffix; per-layer keys are `prefix + layer + suffix`.
    pub const fn key_parts(self) -> (&'static str, &'static str) {
        use TensorKind::*;
        const E: &str = "encoder.layers.";
        const D: &str = "decoder.layers.";
        match self {
            EncInW => ("encoder.fc.weight", ""),
            EncInB => ("encoder.fc.bias", ""),
            EncInLnG => ("encoder.layer_norm.weight", ""),
            EncInLnB => ("encoder.layer_norm.bias", ""),
            EncMemK => (E, ".mhatt.attention.m_k"),
            EncMemV => (E, ".mhatt.attention.m_v"),
            EncQW => (E, ".mhatt.attention.fc_q.weight"),
            EncQB => (E, ".mhatt.attention.fc_q.bias"),
            EncKW => (E, ".mhatt.attention.fc_k.weight"),
            EncKB => (E, ".mhatt.attention.fc_k.bias"),
            EncVW => (E, ".mhatt.attention.fc_v.weight"),
            EncVB => (E, ".mhatt.attention.fc_v.bias"),
            EncOW => (E, ".mhatt.attention.fc_o.weight"),
            EncOB => (E, ".mhatt.attention.fc_o.bias"),
            EncAttLnG => (E, ".mhatt.layer_norm.weight"),
            EncAttLnB => (E, ".mhatt.layer_norm.bias"),
            EncFf1W => (E, ".pwff.fc1.weight"),
            EncFf1B => (E, ".pwff.fc1.bias"),
            EncFf2W => (E, ".pwff.fc2.weight"),
            EncFf2B => (E, ".pwff.fc2.bias"),
            EncFfLnG => (E, ".pwff.layer_norm.weight"),
            EncFfLnB => (E, ".pwff.layer_norm.bias"),
            WordEmb => ("decoder.word_emb.weight", ""),
            PosEmb => ("decoder.pos_emb.weight", ""),
            VocabW => ("decoder.fc.weight", ""),
            SelfQW => (D, ".self_att.attention.fc_q.weight"),
            SelfQB => (D, ".self_att.attention.fc_q.bias"),
            SelfKW => (D, ".self_att.attention.fc_k.weight"),
            SelfKB => (D, ".self_att.attention.fc_k.bias"),
            SelfVW => (D, ".self_att.attention.fc_v.weight"),
            SelfVB => (D, ".self_att.attention.fc_v.bias"),
            SelfOW => (D, ".self_att.attention.fc_o.weight"),
            SelfOB => (D, ".self_att.attention.fc_o.bias"),
            SelfLnG => (D, ".self_att.layer_norm.weight"),
            SelfLnB => (D, ".self_att.layer_norm.bias"),
            CrossQW => (D, ".enc_att.attention.fc_q.weight"),
            CrossQB => (D, ".enc_att.attention.fc_q.bias"),
            CrossKW => (D, ".enc_att.attention.fc_k.weight"),
            CrossKB => (D, ".enc_att.attention.fc_k.bias"),
            CrossVW => (D, ".enc_att.attention.fc_v.weight"),
            CrossVB => (D, ".enc_att.attention.fc_v.bias"),
            CrossOW => (D, ".enc_att.attention.fc_o.weight"),
            CrossOB => (D, ".enc_att.attention.fc_o.bias"),
            CrossLnG => (D, ".enc_att.layer_norm.weight"),
            CrossLnB => (D, ".enc_att.layer_norm.bias"),
            Alpha1W => (D, ".fc_alpha1.weight"),
            Alpha1B => (D, ".fc_alpha1.bias"),
            Alpha2W => (D, ".fc_alpha2.weight"),
            Alpha2B => (D, ".fc_alpha2.bias"),
            Alpha3W => (D, ".fc_alpha3.weight"),
            Alpha3B => (D, ".fc_alpha3.bias"),
            DecFf1W => (D, ".pwff.fc1.weight"),
            DecFf1B => (D, ".pwff.fc1.bias"),
            DecFf2W => (D, ".pwff.fc2.weight"),
            DecFf2B => (D, ".pwff.fc2.bias"),
            DecFfLnG => (D, ".pwff.layer_norm.weight"),
            DecFfLnB => (D, ".pwff.layer_norm.bias"),
        }
    }

    /// Number of `(kind, layer)` tensors a valid blob with `cfg` holds.
    pub const fn required_count(cfg: &Config) -> usize {
        // saturating: callers may pass a config that has not been validated yet
        (ENC_GLOBAL.len() + DEC_GLOBAL.len())
            .saturating_add(ENC_LAYER.len().saturating_mul(cfg.n_enc as usize))
            .saturating_add(DEC_LAYER.len().saturating_mul(cfg.n_dec as usize))
    }

    /// Every `(kind, layer)` a valid blob with `cfg` holds, in canonical (writer) order:
    /// encoder input, encoder layers 0.., decoder globals, decoder layers 0...
    pub fn required(cfg: &Config) -> Required {
        Required { cfg: *cfg, next: 0 }
    }

    /// Position of `(kind, layer)` in [`TensorKind::required`], or `None` if the config has no
    /// such tensor (layer out of range, or a global kind with a layer other than 0).
    pub fn canonical_index(self, layer: u16, cfg: &Config) -> Option<usize> {
        let l = layer as usize;
        if layer as u32 >= self.layers(cfg) {
            return None;
        }
        let pos = |list: &[TensorKind]| list.iter().position(|k| *k == self);
        let n_enc = cfg.n_enc as usize;
        let enc_end = ENC_GLOBAL
            .len()
            .saturating_add(ENC_LAYER.len().saturating_mul(n_enc));
        match self.scope() {
            Scope::Global => match pos(&ENC_GLOBAL) {
                Some(i) => Some(i),
                None => pos(&DEC_GLOBAL).map(|i| enc_end + i),
            },
            Scope::EncoderLayer => {
                pos(&ENC_LAYER).map(|i| ENC_GLOBAL.len() + l * ENC_LAYER.len() + i)
            }
            Scope::DecoderLayer => {
                pos(&DEC_LAYER).map(|i| enc_end + DEC_GLOBAL.len() + l * DEC_LAYER.len() + i)
            }
        }
    }
}

/// Iterator over the `(kind, layer)` pairs of a config, see [`TensorKind::required`].
#[derive(Clone, Debug)]
pub struct Required {
    cfg: Config,
    next: usize,
}

impl Iterator for Required {
    type Item = (TensorKind, u16);
    fn next(&mut self) -> Option<(TensorKind, u16)> {
        let i = self.next;
        let n_enc = self.cfg.n_enc as usize;
        let n_dec = self.cfg.n_dec as usize;
        let a = ENC_GLOBAL.len();
        let b = a.saturating_add(ENC_LAYER.len().saturating_mul(n_enc));
        let c = b.saturating_add(DEC_GLOBAL.len());
        let d = c.saturating_add(DEC_LAYER.len().saturating_mul(n_dec));
        let item = if i < a {
            (ENC_GLOBAL[i], 0)
        } else if i < b {
            let j = i - a;
            (ENC_LAYER[j % ENC_LAYER.len()], (j / ENC_LAYER.len()) as u16)
        } else if i < c {
            (DEC_GLOBAL[i - b], 0)
        } else if i < d {
            let j = i - c;
            (DEC_LAYER[j % DEC_LAYER.len()], (j / DEC_LAYER.len()) as u16)
        } else {
            return None;
        };
        self.next += 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = TensorKind::required_count(&self.cfg).saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Required {}

/// A state_dict key, displayed without allocation (see [`TensorKind::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The tensor kind.
    pub kind: TensorKind,
    /// The layer index (ignored for global kinds).
    pub layer: u16,
}

impl core::fmt::Display for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (prefix, suffix) = self.kind.key_parts();
        match self.kind.scope() {
            Scope::Global => f.write_str(prefix),
            _ => write!(f, "{prefix}{}{suffix}", self.layer),
        }
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
    fn kind_codes_are_unique_and_round_trip() {
        for (i, a) in TensorKind::ALL.iter().enumerate() {
            assert_eq!(TensorKind::from_code(a.code()), Some(*a));
            for b in &TensorKind::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
        assert_eq!(TensorKind::from_code(0), None);
        assert_eq!(TensorKind::from_code(999), None);
    }

    #[test]
    fn canonical_index_matches_required_order() {
        for cfg in [
            Config::COCO,
            Config::TINY,
            Config {
                n_dec: 1,
                ..Config::TINY
            },
        ] {
            let mut n = 0;
            for (i, (kind, layer)) in TensorKind::required(&cfg).enumerate() {
                assert_eq!(kind.canonical_index(layer, &cfg), Some(i));
                assert!(u32::from(layer) < kind.layers(&cfg));
                n += 1;
            }
            assert_eq!(n, TensorKind::required_count(&cfg));
            assert_eq!(
                TensorKind::SelfQW.canonical_index(cfg.n_dec as u16, &cfg),
                None
            );
            assert_eq!(TensorKind::WordEmb.canonical_index(1, &cfg), None);
        }
        assert_eq!(TensorKind::required_count(&Config::COCO), 157);
    }

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
