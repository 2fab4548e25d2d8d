//! Hyper-parameters of an M² model, as stored in a blob header.
//!
//! Each field is declared once, in the `config_fields!` list below (name, type, doc, and what
//! it holds: [`FieldKind`]). From that list come the [`Config`] struct, [`Config::FIELDS`]
//! (names in header order) and the header words ([`Config::to_words`] /
//! [`Config::from_words`]); the blob parser and writer, [`Config::validate`], `m2 info`,
//! `m2-pack inspect` and `firmware/build.rs` all read those.

/// What a config field holds, and so how [`Config::validate`] checks it and how it is stored
/// and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A size: in `1..=MAX_DIM`.
    Size,
    /// A special token id: below `vocab`.
    TokenId,
    /// An f32, stored as its IEEE bits.
    F32,
}

/// One field of [`Config`]: a row of [`Config::FIELDS`]. Its position there is its index in
/// [`Config::to_words`] and so its place in the blob header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as in the struct, `docs/FORMAT.md` and diagnostics.
    pub name: &'static str,
    /// What it holds.
    pub kind: FieldKind,
}

/// Number of config fields (17).
pub const N_FIELDS: usize = Config::FIELDS.len();

/// A field's value as [`Config::to_words`] stores it, converted back for printing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue {
    /// A size or a token id.
    U32(u32),
    /// An f32 field.
    F32(f32),
}

impl core::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FieldValue::U32(v) => write!(f, "{v}"),
            FieldValue::F32(v) => write!(f, "{v}"),
        }
    }
}

/// The stored `u32` of a field's value (an f32 by its bits).
macro_rules! word {
    (F32, $v:expr) => {
        $v.to_bits()
    };
    ($kind:ident, $v:expr) => {
        $v
    };
}

/// A field's value from its stored `u32`.
macro_rules! from_word {
    (F32, $w:expr) => {
        f32::from_bits($w)
    };
    ($kind:ident, $w:expr) => {
        $w
    };
}

/// Declares [`Config`], [`Config::FIELDS`], [`Config::to_words`] and [`Config::from_words`]
/// from one list: `name: type, kind;` per field, in header order.
macro_rules! config_fields {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty, $kind:ident; )*) => {
        /// Everything about a model's shape that the engine needs. All fields are stored in the
        /// blob header (see `docs/FORMAT.md`); relations between them are checked by
        /// [`Config::validate`].
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct Config {
            $( $(#[$doc])* pub $name: $ty, )*
        }

        impl Config {
            /// Every field, in header order.
            pub const FIELDS: [Field; 0 $(+ { let _ = stringify!($name); 1 })*] = [
                $( Field { name: stringify!($name), kind: FieldKind::$kind }, )*
            ];

            /// The fields as stored, in [`Config::FIELDS`] order (f32 fields by their bits).
            pub const fn to_words(&self) -> [u32; N_FIELDS] {
                [$( word!($kind, self.$name), )*]
            }

            /// The config whose [`Config::to_words`] is `w` (no validation).
            pub const fn from_words(w: [u32; N_FIELDS]) -> Config {
                let mut i = 0;
                $(
                    let $name = from_word!($kind, w[i]);
                    i += 1;
                )*
                let _ = i;
                Config { $($name,)* }
            }
        }
    };
}

config_fields! {
    /// Region feature size (2048 for COCO bottom-up features).
    d_in: u32, Size;
    /// Model width d.
    d_model: u32, Size;
    /// Attention heads h.
    h: u32, Size;
    /// Per-head key size d_k.
    d_k: u32, Size;
    /// Per-head value size d_v.
    d_v: u32, Size;
    /// Feed-forward inner size.
    d_ff: u32, Size;
    /// Encoder layers (must be 3: the meshed decoder has exactly three gates).
    n_enc: u32, Size;
    /// Decoder layers.
    n_dec: u32, Size;
    /// Memory slots m per encoder layer.
    m: u32, Size;
    /// Vocabulary size V.
    vocab: u32, Size;
    /// Rows of the learned positional table (max_len + 1; 55 for COCO).
    pos_rows: u32, Size;
    /// Every image is zero-padded or truncated to this many regions (50 for COCO).
    max_regions: u32, Size;
    /// `<pad>` id (decoder padding_idx).
    pad: u32, TokenId;
    /// `<unk>` id.
    unk: u32, TokenId;
    /// `<bos>` id.
    bos: u32, TokenId;
    /// `<eos>` id.
    eos: u32, TokenId;
    /// The encoder's "padding_idx": a region is masked iff the row sum of its projected,
    /// layer-normed features equals this value exactly (docs/SPEC.md §5.2; 0 for COCO).
    enc_pad_value: f32, F32;
}

impl Config {
    /// Every field's name and value, in header order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, FieldValue)> {
        let words = self.to_words();
        Config::FIELDS.into_iter().zip(words).map(|(f, w)| {
            let v = match f.kind {
                FieldKind::F32 => FieldValue::F32(f32::from_bits(w)),
                _ => FieldValue::U32(w),
            };
            (f.name, v)
        })
    }

    /// Every field as `name value`, six to a line, each line indented by two spaces (no final
    /// newline): how `m2 info` and `m2-pack inspect` print a config.
    pub fn field_lines(&self) -> FieldLines<'_> {
        FieldLines(self)
    }
}

/// See [`Config::field_lines`].
#[derive(Clone, Copy, Debug)]
pub struct FieldLines<'a>(&'a Config);

impl core::fmt::Display for FieldLines<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, value)) in self.0.fields().enumerate() {
            let sep = match i {
                0 => "  ",
                _ if i % 6 == 0 => "\n  ",
                _ => "  ",
            };
            write!(f, "{sep}{name} {value}")?;
        }
        Ok(())
    }
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
    /// `pos_rows` below 2: row 0 is `<pad>`'s, so no word would have a position.
    NoPositions(u32),
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
            ConfigError::NoPositions(n) => write!(
                f,
                "config field pos_rows={n}: at least 2 (row 0 is <pad>'s; a caption's words start at position 1)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// Upper bound on any single dimension; keeps all products far from overflow on 32-bit targets.
pub const MAX_DIM: u32 = 1 << 20;

/// Most decoder layers the engine supports (the decoder keeps its layers in a fixed array).
pub const MAX_DEC_LAYERS: usize = 12;

/// Largest `max_regions` a blob may declare. Regions are detector boxes or grid cells
/// (bottom-up attention gives 10–100, a 12×12 grid 144); nothing in the weights bounds them, so
/// without this a small blob could plan a multi-gigabyte workspace (the encoder's attention is
/// `R × (R + m)` per head).
pub const MAX_REGIONS: u32 = 1024;

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
        let words = self.to_words();
        let mut i = 0;
        while i < N_FIELDS {
            let (field, v) = (Config::FIELDS[i], words[i]);
            if matches!(field.kind, FieldKind::Size) {
                if v == 0 {
                    return Err(ConfigError::Zero(field.name));
                }
                if v > MAX_DIM {
                    return Err(ConfigError::TooLarge(field.name, v));
                }
            }
            i += 1;
        }
        // In u64: h·d_k of two sizes up to 2^20 would wrap u32 (h 4240 × d_k 1 012 964 = 64
        // mod 2^32) and pass a check it fails.
        let (h, dm) = (self.h as u64, self.d_model as u64);
        if h * self.d_k as u64 != dm || h * self.d_v as u64 != dm {
            return Err(ConfigError::HeadSplit {
                h: self.h,
                d_k: self.d_k,
                d_v: self.d_v,
                d_model: self.d_model,
            });
        }
        if self.max_regions > MAX_REGIONS {
            return Err(ConfigError::TooLarge("max_regions", self.max_regions));
        }
        if self.n_enc != 3 {
            return Err(ConfigError::EncoderLayers(self.n_enc));
        }
        if self.n_dec as usize > MAX_DEC_LAYERS {
            return Err(ConfigError::TooLarge("n_dec", self.n_dec));
        }
        if self.pos_rows < 2 {
            return Err(ConfigError::NoPositions(self.pos_rows));
        }
        let mut j = 0;
        while j < N_FIELDS {
            let (field, id) = (Config::FIELDS[j], words[j]);
            if matches!(field.kind, FieldKind::TokenId) && id >= self.vocab {
                return Err(ConfigError::SpecialId {
                    which: field.name,
                    id,
                    vocab: self.vocab,
                });
            }
            j += 1;
        }
        Ok(())
    }

    /// Longest decodable sequence (positions 1..=max_len): `pos_rows − 1`, the positional
    /// table's rows after `<pad>`'s, up to the engine's [`crate::plan::MAX_STEPS`] (its fixed
    /// arrays). Every caption, score and plan length is checked against this.
    pub const fn max_len(&self) -> usize {
        let rows = self.pos_rows as usize - 1;
        if rows < crate::plan::MAX_STEPS {
            rows
        } else {
            crate::plan::MAX_STEPS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    /// Every length check goes through `max_len`: the positional table's rows after `<pad>`'s,
    /// never more than the engine's arrays hold (a 100-row table used to pass 99 on to the
    /// plan, which then reported an overflow that was not one).
    #[test]
    fn max_len_is_the_table_capped_by_the_engine() {
        let mut c = Config::COCO;
        assert_eq!(c.max_len(), 54);
        c.pos_rows = 65;
        assert_eq!(c.max_len(), 64);
        c.pos_rows = 100;
        assert_eq!(c.max_len(), crate::plan::MAX_STEPS);
        c.pos_rows = 2;
        assert_eq!(c.max_len(), 1);
        c.pos_rows = 1;
        assert_eq!(c.validate(), Err(ConfigError::NoPositions(1)));
    }

    #[test]
    fn head_split_is_checked_without_wrapping_and_regions_are_bounded() {
        let mut c = Config::COCO;
        c.h = 4240;
        c.d_k = 1_012_964;
        c.d_v = 1_012_964;
        c.d_model = 64; // 4240 × 1 012 964 ≡ 64 (mod 2^32)
        assert!(matches!(c.validate(), Err(ConfigError::HeadSplit { .. })));
        let mut c = Config::COCO;
        c.max_regions = MAX_REGIONS + 1;
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLarge("max_regions", MAX_REGIONS + 1))
        );
        c.max_regions = MAX_REGIONS;
        assert_eq!(c.validate(), Ok(()));
    }
    use std::format;

    /// `FIELDS` follows the struct's declaration order, and `from_words` undoes `to_words`
    /// field by field (distinct values catch a swapped pair).
    #[test]
    fn fields_are_the_struct_s_in_order() {
        let mut w = [0u32; N_FIELDS];
        for (i, x) in w.iter_mut().enumerate() {
            *x = 100 + i as u32;
        }
        let c = Config::from_words(w);
        assert_eq!(c.to_words(), w);
        let debug = format!("{c:?}");
        let mut at = 0;
        for f in Config::FIELDS {
            let pos = debug[at..].find(&format!(" {}: ", f.name));
            at += pos.unwrap_or_else(|| panic!("{} out of order in {debug}", f.name)) + 1;
        }
        assert_eq!(c.enc_pad_value.to_bits(), 116);
        assert_eq!(c.d_in, 100);
        assert_eq!(c.eos, 115);
    }

    /// `docs/FORMAT.md` §4 lists the same fields at the same header offsets.
    #[test]
    fn format_md_lists_the_fields() {
        let doc = include_str!("../docs/FORMAT.md");
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with("4. Config"))
            .unwrap();
        let rows: std::vec::Vec<(usize, usize, &str)> = section
            .lines()
            .filter_map(|l| {
                let cells: std::vec::Vec<&str> = l.split('|').map(str::trim).collect();
                let (i, off) = (cells.get(1)?.parse().ok()?, cells.get(2)?.parse().ok()?);
                Some((i, off, *cells.get(3)?))
            })
            .collect();
        assert_eq!(rows.len(), N_FIELDS);
        for (i, (f, (n, off, name))) in Config::FIELDS.iter().zip(rows).enumerate() {
            assert_eq!((n, off, name), (i, 32 + 4 * i, f.name));
        }
    }
}
