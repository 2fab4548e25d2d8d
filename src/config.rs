//! Hyper-parameters of an M² model, as stored in a blob header.

/// Everything about a model's shape that the engine needs. All fields are stored in the blob
/// header (see `docs/FORMAT.md`); relations between them are checked by [`Config::validate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Region feature size (2048 for COCO bottom-up features).
    pub d_in: u32,
    /// Model width d.
    pub d_model: u32,
    /// Attention heads h.
    pub h: u32,
    /// Per-head key size d_k.
    pub d_k: u32,
    /// Per-head value size d_v.
    pub d_v: u32,
    /// Feed-forward inner size.
    pub d_ff: u32,
    /// Encoder layers (must be 3: the meshed decoder has exactly three gates).
    pub n_enc: u32,
    /// Decoder layers.
    pub n_dec: u32,
    /// Memory slots m per encoder layer.
    pub m: u32,
    /// Vocabulary size V.
    pub vocab: u32,
    /// Rows of the learned positional table (max_len + 1; 55 for COCO).
    pub pos_rows: u32,
    /// Every image is zero-padded or truncated to this many regions (50 for COCO).
    pub max_regions: u32,
    /// `<pad>` id (decoder padding_idx).
    pub pad: u32,
    /// `<unk>` id.
    pub unk: u32,
    /// `<bos>` id.
    pub bos: u32,
    /// `<eos>` id.
    pub eos: u32,
    /// The encoder's "padding_idx": a region is masked iff the row sum of its projected,
    /// layer-normed features equals this value exactly (docs/SPEC.md §5.2; 0 for COCO).
    pub enc_pad_value: f32,
}

/// A contradiction inside a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// A size that must be positive is zero.
    Zero(&'static str),
    /// `h * d_k` or `h * d_v` is not `d_model`.
    HeadSplit {
        h: u32,
        d_k: u32,
        d_v: u32,
        d_model: u32,
    },
    /// The meshed decoder needs exactly three encoder levels.
    EncoderLayers(u32),
    /// A special token id is outside the vocabulary.
    SpecialId {
        which: &'static str,
        id: u32,
        vocab: u32,
    },
    /// A size is larger than the engine supports (keeps every product inside u32/usize).
    TooLarge(&'static str, u32),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Zero(w) => write!(f, "config field {w} is zero"),
            ConfigError::HeadSplit {
                h,
                d_k,
                d_v,
                d_model,
            } => write!(
                f,
                "heads do not split d_model: h={h} d_k={d_k} d_v={d_v} but d_model={d_model}"
            ),
            ConfigError::EncoderLayers(n) => {
                write!(
                    f,
                    "the meshed decoder needs exactly 3 encoder layers, config has {n}"
                )
            }
            ConfigError::SpecialId { which, id, vocab } => {
                write!(
                    f,
                    "special id {which}={id} is outside the vocabulary of {vocab}"
                )
            }
            ConfigError::TooLarge(w, v) => write!(f, "config field {w}={v} is too large"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// Upper bound on any single dimension; keeps all products far from overflow on 32-bit targets.
pub const MAX_DIM: u32 = 1 << 20;

/// Most decoder layers the engine supports (the decoder keeps its layers in a fixed array).
pub const MAX_DEC_LAYERS: usize = 12;

impl Config {
    /// The released COCO model (docs/SPEC.md §2.1).
    pub const COCO: Config = Config {
        d_in: 2048,
        d_model: 512,
        h: 8,
        d_k: 64,
        d_v: 64,
        d_ff: 2048,
        n_enc: 3,
        n_dec: 3,
        m: 40,
        vocab: 10201,
        pos_rows: 55,
        max_regions: 50,
        pad: 1,
        unk: 0,
        bos: 2,
        eos: 3,
        enc_pad_value: 0.0,
    };

    /// The `tiny-*` reference fixtures.
    pub const TINY: Config = Config {
        d_in: 64,
        d_model: 64,
        h: 4,
        d_k: 16,
        d_v: 16,
        d_ff: 128,
        n_enc: 3,
        n_dec: 3,
        m: 8,
        vocab: 50,
        pos_rows: 21,
        max_regions: 10,
        pad: 0,
        unk: 1,
        bos: 2,
        eos: 3,
        enc_pad_value: 0.0,
    };

    /// Check every relation the engine relies on.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        let fields: [(&'static str, u32); 12] = [
            ("d_in", self.d_in),
            ("d_model", self.d_model),
            ("h", self.h),
            ("d_k", self.d_k),
            ("d_v", self.d_v),
            ("d_ff", self.d_ff),
            ("n_enc", self.n_enc),
            ("n_dec", self.n_dec),
            ("m", self.m),
            ("vocab", self.vocab),
            ("pos_rows", self.pos_rows),
            ("max_regions", self.max_regions),
        ];
        let mut i = 0;
        while i < fields.len() {
            if fields[i].1 == 0 {
                return Err(ConfigError::Zero(fields[i].0));
            }
            if fields[i].1 > MAX_DIM {
                return Err(ConfigError::TooLarge(fields[i].0, fields[i].1));
            }
            i += 1;
        }
        if self.h * self.d_k != self.d_model || self.h * self.d_v != self.d_model {
            return Err(ConfigError::HeadSplit {
                h: self.h,
                d_k: self.d_k,
                d_v: self.d_v,
                d_model: self.d_model,
            });
        }
        if self.n_enc != 3 {
            return Err(ConfigError::EncoderLayers(self.n_enc));
        }
        if self.n_dec as usize > MAX_DEC_LAYERS {
            return Err(ConfigError::TooLarge("n_dec", self.n_dec));
        }
        let specials: [(&'static str, u32); 4] = [
            ("pad", self.pad),
            ("unk", self.unk),
            ("bos", self.bos),
            ("eos", self.eos),
        ];
        let mut j = 0;
        while j < specials.len() {
            if specials[j].1 >= self.vocab {
                return Err(ConfigError::SpecialId {
                    which: specials[j].0,
                    id: specials[j].1,
                    vocab: self.vocab,
                });
            }
            j += 1;
        }
        Ok(())
    }

    /// Longest decodable sequence (positions 1..=max_len): `pos_rows - 1`.
    pub const fn max_len(&self) -> usize {
        self.pos_rows as usize - 1
    }
}
