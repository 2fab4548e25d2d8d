//! Checkpoint → blob conversion (std only): the library behind `m2-pack`.
//!
//! Input is the reference implementation's `state_dict` saved as safetensors (docs/SPEC.md
//! §3.1; see `tools/python/pth_to_safetensors.py`) and its vocabulary as a JSON list of strings
//! (`tools/python/vocab_pkl_to_json.py`). Every hyper-parameter except the head count and the
//! region count is inferred from tensor shapes.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use m2::pack::{pack, read_vocab_json, PackOptions};
//! let st = std::fs::read("tests/fixtures/tiny-s0/model.safetensors")?;
//! let vocab = read_vocab_json(&std::fs::read("tests/fixtures/tiny-s0/vocab.json")?)?;
//! let opts = PackOptions { heads: 4, max_regions: 10, ..PackOptions::default() };
//! let blob_bytes: Vec<u8> = pack(&st, &vocab, &opts)?;
//! let buf = m2::blob::AlignedBuf::from_bytes(&blob_bytes);
//! let blob = m2::Blob::parse(&buf)?;
//! # let _ = blob; Ok(()) }
//! ```

pub mod calibrate;

use crate::blob::{BlobWriter, Class, DType, Scope, TensorData, TensorKind, WriteError};
use crate::config::{Config, ConfigError};
use safetensors::{Dtype as StDtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Settings of a pack run that the checkpoint cannot tell.
#[derive(Clone, Debug, PartialEq)]
pub struct PackOptions {
    /// dtype of every Linear weight, `word_emb` and `decoder.fc` (everything else is f32).
    pub dtype: DType,
    /// dtype of the vocabulary read-out `decoder.fc` alone, if not `dtype`. The read-out is
    /// often the layer most sensitive to weight rounding (its logits are large sums with
    /// cancellation): an int8 or f16 blob with an f32 read-out trades 4–8 bytes per V·d
    /// weight for accuracy.
    pub readout_dtype: Option<DType>,
    /// Weight tensors stored at another dtype than `dtype` (mixed precision, e.g. the layers
    /// `m2-pack --budget` keeps f16 in an int8 blob): `(kind, layer, dtype)`; last one wins,
    /// and it wins over `readout_dtype`.
    pub tensor_dtypes: Vec<(TensorKind, u16, DType)>,
    /// Attention heads h (d_k = d_v = d_model / h). COCO: 8.
    pub heads: u32,
    /// Regions per image (the reference pads/truncates to this). COCO: 50.
    pub max_regions: u32,
    /// Override the `<pad>` id found in the vocabulary.
    pub pad: Option<u32>,
    /// Override the `<unk>` id.
    pub unk: Option<u32>,
    /// Override the `<bos>` id.
    pub bos: Option<u32>,
    /// Override the `<eos>` id.
    pub eos: Option<u32>,
    /// The encoder's padding value (docs/SPEC.md §5.2; 0 for COCO).
    pub enc_pad_value: f32,
}

impl PackOptions {
    /// The dtype a weight tensor is stored at: its `tensor_dtypes` entry, else the read-out's
    /// `readout_dtype`, else `dtype`.
    pub fn weight_dtype(&self, kind: TensorKind, layer: u16) -> DType {
        let kept = self.tensor_dtypes.iter().rev();
        match kept.into_iter().find(|(k, l, _)| (*k, *l) == (kind, layer)) {
            Some(&(_, _, d)) => d,
            None => match (kind, self.readout_dtype) {
                (TensorKind::VocabW, Some(d)) => d,
                _ => self.dtype,
            },
        }
    }
}

impl Default for PackOptions {
    /// f32, 8 heads, 50 regions, special ids from the vocabulary, enc_pad_value 0.
    fn default() -> Self {
        PackOptions {
            dtype: DType::F32,
            readout_dtype: None,
            tensor_dtypes: Vec::new(),
            heads: 8,
            max_regions: 50,
            pad: None,
            unk: None,
            bos: None,
            eos: None,
            enc_pad_value: 0.0,
        }
    }
}

/// Why a checkpoint could not be packed. `Display` is one line naming the key and numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum PackError {
    /// The input is not a safetensors file.
    NotSafetensors(String),
    /// A key the reference state_dict has is absent.
    MissingKey(String),
    /// A key that is not part of the reference state_dict.
    UnexpectedKey(String),
    /// A tensor has the wrong shape.
    Shape {
        key: String,
        expected: String,
        found: Vec<usize>,
    },
    /// A tensor's dtype cannot be converted to f32 (only F32, F16, BF16, F64 can).
    UnsupportedDType { key: String, dtype: String },
    /// A NaN or infinite value in a checkpoint tensor.
    NonFinite {
        key: String,
        index: usize,
        value: f32,
    },
    /// A value too large for f16 when packing at f16.
    F16Overflow {
        key: String,
        index: usize,
        value: f32,
    },
    /// A memory slot that overflows f32 once pre-scaled by `factor` (√d_k for `m_k`, √m for
    /// `m_v`; docs/FORMAT.md).
    ScaleOverflow {
        key: String,
        index: usize,
        value: f32,
        factor: f32,
    },
    /// `heads` is zero or does not divide d_model.
    Heads { d_model: u32, heads: u32 },
    /// The vocabulary has a different size from `decoder.word_emb.weight`.
    VocabSize { tokens: usize, word_emb_rows: usize },
    /// The vocabulary JSON is not a list of strings.
    VocabJson(String),
    /// A special token is not in the vocabulary and was not given explicitly.
    MissingSpecial {
        name: &'static str,
        token: &'static str,
    },
    /// The inferred config is invalid.
    Config(ConfigError),
    /// The encoder padding value is NaN or infinite.
    EncPadValue(f32),
    /// The blob writer refused (should not happen after the checks above).
    Write(WriteError),
    /// `--calibrate` with no int8 weight to calibrate (the pack dtype).
    CalibrationDType(DType),
    /// Calibration features whose size is not `images × regions × d_in`, or no image.
    CalibrationFeatures {
        values: usize,
        images: usize,
        regions: usize,
        d_in: usize,
    },
    /// A calibration damping that is not a positive finite number.
    CalibrationDamping(f64),
    /// The f32 engine refused a calibration image.
    CalibrationEngine {
        image: usize,
        error: crate::model::EngineError,
    },
    /// A bug in m2 itself (a blob it just wrote does not read back).
    Internal(String),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::NotSafetensors(e) => write!(f, "input is not a safetensors file ({e})"),
            PackError::MissingKey(k) => write!(f, "checkpoint is missing key {k}"),
            PackError::UnexpectedKey(k) => {
                write!(f, "checkpoint has unexpected key {k} (not in the M² reference state_dict)")
            }
            PackError::Shape { key, expected, found } => {
                write!(f, "checkpoint key {key} has shape {found:?}, expected {expected}")
            }
            PackError::UnsupportedDType { key, dtype } => write!(
                f,
                "checkpoint key {key} has dtype {dtype}; only F32, F16, BF16 and F64 are supported"
            ),
            PackError::NonFinite { key, index, value } => {
                write!(f, "checkpoint key {key} has a non-finite value {value} at flat index {index}")
            }
            PackError::F16Overflow { key, index, value } => write!(
                f,
                "checkpoint key {key}: value {value} at flat index {index} overflows f16; pack at f32 or int8"
            ),
            PackError::ScaleOverflow {
                key,
                index,
                value,
                factor,
            } => write!(
                f,
                "checkpoint key {key}: value {value} at flat index {index} overflows f32 once pre-scaled by {factor} (the blob stores √d_k·m_k and √m·m_v)"
            ),
            PackError::Heads { d_model, heads } => {
                write!(f, "--heads {heads} does not divide d_model {d_model}")
            }
            PackError::VocabSize { tokens, word_emb_rows } => write!(
                f,
                "vocabulary has {tokens} tokens but {} has {word_emb_rows} rows",
                TensorKind::WordEmb.key(0)
            ),
            PackError::VocabJson(e) => write!(f, "vocabulary is not a JSON list of strings: {e}"),
            PackError::MissingSpecial { name, token } => write!(
                f,
                "vocabulary has no {token} token; pass --{name} ID"
            ),
            PackError::Config(e) => write!(f, "invalid model config: {e}"),
            PackError::EncPadValue(v) => write!(f, "--enc-pad-value {v} is not a finite number"),
            PackError::Write(e) => write!(f, "{e}"),
            PackError::CalibrationDType(d) => write!(
                f,
                "calibration rounds int8 weights; this pack is {d} (use --dtype int8 or --readout-dtype int8)"
            ),
            PackError::CalibrationFeatures {
                values,
                images,
                regions,
                d_in,
            } => write!(
                f,
                "calibration features: {values} values are not {images} images × {regions} regions × d_in {d_in} (need at least one image and region)"
            ),
            PackError::CalibrationDamping(v) => {
                write!(f, "calibration damping {v} is not a positive number")
            }
            PackError::CalibrationEngine { image, error } => {
                write!(f, "calibration image {image}: {error}")
            }
            PackError::Internal(e) => write!(f, "internal error (please report): {e}"),
        }
    }
}

impl std::error::Error for PackError {}

impl From<ConfigError> for PackError {
    fn from(e: ConfigError) -> Self {
        PackError::Config(e)
    }
}

impl From<WriteError> for PackError {
    fn from(e: WriteError) -> Self {
        PackError::Write(e)
    }
}

/// Reference state buffers that carry no weights and are skipped (docs/SPEC.md §3.1).
pub const IGNORED_GLOBAL_KEYS: [&str; 2] =
    ["decoder.running_mask_self_attention", "decoder.running_seq"];
/// Per-decoder-layer state buffers that are skipped: `decoder.layers.i` + suffix.
pub const IGNORED_LAYER_SUFFIXES: [&str; 2] =
    [".self_att.running_keys", ".self_att.running_values"];

/// Parse a vocabulary JSON (a list of strings, index = id) into token bytes (UTF-8).
pub fn read_vocab_json(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PackError> {
    let list: Vec<String> =
        serde_json::from_slice(bytes).map_err(|e| PackError::VocabJson(e.to_string()))?;
    Ok(list.into_iter().map(String::into_bytes).collect())
}

/// The state_dict key of `(kind, layer)`, e.g. `encoder.layers.0.mhatt.attention.m_k`.
pub fn state_dict_key(kind: TensorKind, layer: u16) -> String {
    kind.key(layer).to_string()
}

fn fmt_shape(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// If `key` is `<prefix><digits><suffix>` with a known per-layer suffix of `scope`, the index.
fn layer_index(key: &str, scope: Scope) -> Option<u32> {
    if scope == Scope::Global {
        return None;
    }
    let rest = key.strip_prefix(scope.key_prefix())?;
    let dot = rest.find('.')?;
    let (digits, suffix) = rest.split_at(dot);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
        return None;
    }
    let known = TensorKind::ALL
        .iter()
        .any(|k| k.scope() == scope && k.key_parts().1 == suffix)
        || (scope == Scope::DecoderLayer && IGNORED_LAYER_SUFFIXES.contains(&suffix));
    if known {
        digits.parse().ok()
    } else {
        None
    }
}

fn shape_of<'a>(st: &'a SafeTensors<'a>, key: &str) -> Result<Vec<usize>, PackError> {
    st.tensor(key)
        .map(|t| t.shape().to_vec())
        .map_err(|_| PackError::MissingKey(key.to_string()))
}

/// Infer the model config from a checkpoint's shapes and the options (plus the vocabulary's
/// special tokens). Checks the vocabulary size against `decoder.word_emb.weight`.
pub fn infer_config(
    st: &SafeTensors<'_>,
    vocab: &[Vec<u8>],
    opts: &PackOptions,
) -> Result<Config, PackError> {
    let to_u32 = |name: &'static str, v: usize| {
        u32::try_from(v).map_err(|_| PackError::Config(ConfigError::TooLarge(name, u32::MAX)))
    };

    // the shape-defining tensors (layer 0), by rank and by name for the error message
    let dims = |kind: TensorKind| {
        let key = state_dict_key(kind, 0);
        let s = shape_of(st, &key)?;
        let rank = kind.checkpoint_rank();
        if s.len() == rank && s.iter().all(|&d| d > 0) {
            Ok(s)
        } else {
            Err(PackError::Shape {
                key,
                expected: kind.checkpoint_shape_names().to_string(),
                found: s,
            })
        }
    };
    let s = dims(TensorKind::EncInW)?;
    let (d_model, d_in) = (s[0], s[1]);
    let d_ff = dims(TensorKind::EncFf1W)?[0];
    let m = dims(TensorKind::EncMemK)?[1];
    let v = dims(TensorKind::WordEmb)?[0];
    let pos_rows = dims(TensorKind::PosEmb)?[0];

    let mut n_enc = 0u32;
    let mut n_dec = 0u32;
    for name in st.names() {
        if let Some(i) = layer_index(name, Scope::EncoderLayer) {
            n_enc = n_enc.max(i.saturating_add(1));
        }
        if let Some(i) = layer_index(name, Scope::DecoderLayer) {
            n_dec = n_dec.max(i.saturating_add(1));
        }
    }
    if n_dec == 0 {
        return Err(PackError::MissingKey(state_dict_key(TensorKind::SelfQW, 0)));
    }

    let d_model = to_u32("d_model", d_model)?;
    let heads = opts.heads;
    if heads == 0 || d_model % heads != 0 {
        return Err(PackError::Heads { d_model, heads });
    }
    if vocab.len() != v {
        return Err(PackError::VocabSize {
            tokens: vocab.len(),
            word_emb_rows: v,
        });
    }
    let special = |name: &'static str, token: &'static str, given: Option<u32>| match given {
        Some(id) => Ok(id),
        None => vocab
            .iter()
            .position(|t| t.as_slice() == token.as_bytes())
            .map(|i| i as u32)
            .ok_or(PackError::MissingSpecial { name, token }),
    };
    let cfg = Config {
        d_in: to_u32("d_in", d_in)?,
        d_model,
        h: heads,
        d_k: d_model / heads,
        d_v: d_model / heads,
        d_ff: to_u32("d_ff", d_ff)?,
        n_enc,
        n_dec,
        m: to_u32("m", m)?,
        vocab: to_u32("vocab", v)?,
        pos_rows: to_u32("pos_rows", pos_rows)?,
        max_regions: opts.max_regions,
        pad: special("pad", "<pad>", opts.pad)?,
        unk: special("unk", "<unk>", opts.unk)?,
        bos: special("bos", "<bos>", opts.bos)?,
        eos: special("eos", "<eos>", opts.eos)?,
        enc_pad_value: opts.enc_pad_value,
    };
    cfg.validate()?;
    if !cfg.enc_pad_value.is_finite() {
        return Err(PackError::EncPadValue(cfg.enc_pad_value));
    }
    Ok(cfg)
}

/// Decode a safetensors tensor to f32 (F32 as is; F16, BF16, F64 converted).
fn to_f32(key: &str, t: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, PackError> {
    let d = t.data();
    let out: Vec<f32> = match t.dtype() {
        StDtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StDtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StDtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StDtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(PackError::UnsupportedDType {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    if let Some((index, &value)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(PackError::NonFinite {
            key: key.to_string(),
            index,
            value,
        });
    }
    Ok(out)
}

fn safetensors_of(st_bytes: &[u8]) -> Result<SafeTensors<'_>, PackError> {
    SafeTensors::deserialize(st_bytes).map_err(|e| PackError::NotSafetensors(e.to_string()))
}

/// [`infer_config`] of a checkpoint's bytes (safetensors): the config [`pack`] would write,
/// e.g. to check calibration features against its `d_in` before packing.
pub fn infer_config_of(
    st_bytes: &[u8],
    vocab: &[Vec<u8>],
    opts: &PackOptions,
) -> Result<Config, PackError> {
    infer_config(&safetensors_of(st_bytes)?, vocab, opts)
}

/// Pack a safetensors checkpoint (bytes) and a vocabulary (token bytes, index = id) into a
/// blob at `opts.dtype`. See [`pack_with_progress`].
pub fn pack(st_bytes: &[u8], vocab: &[Vec<u8>], opts: &PackOptions) -> Result<Vec<u8>, PackError> {
    pack_with_progress(st_bytes, vocab, opts, &mut |_, _| {})
}

/// [`pack`], calling `progress(done_bytes, total_bytes)` (checkpoint bytes) after each tensor.
///
/// Checks, in this order: the input is safetensors; the shape-defining keys exist
/// (`encoder.fc.weight`, `encoder.layers.0.pwff.fc1.weight`,
/// `encoder.layers.0.mhatt.attention.m_k`, `decoder.word_emb.weight`, `decoder.pos_emb.weight`);
/// heads divide d_model; the vocabulary size equals the word-embedding rows; the config is
/// valid; every reference key is present (first missing one named); no other key except the
/// reference's state buffers exists (first unexpected one, sorted, named); every tensor has the
/// shape the config implies, a float dtype, and finite values.
pub fn pack_with_progress(
    st_bytes: &[u8],
    vocab: &[Vec<u8>],
    opts: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<u8>, PackError> {
    let st = safetensors_of(st_bytes)?;
    let cfg = infer_config(&st, vocab, opts)?;

    let required: Vec<(TensorKind, u16, String)> = TensorKind::required(&cfg)
        .map(|(k, l)| (k, l, state_dict_key(k, l)))
        .collect();
    let mut known: HashMap<&str, ()> = required
        .iter()
        .map(|(_, _, key)| (key.as_str(), ()))
        .collect();
    let ignored_layer: Vec<String> = (0..cfg.n_dec)
        .flat_map(|i| {
            IGNORED_LAYER_SUFFIXES
                .iter()
                .map(move |s| format!("{}{i}{s}", Scope::DecoderLayer.key_prefix()))
        })
        .collect();
    for k in IGNORED_GLOBAL_KEYS
        .iter()
        .copied()
        .chain(ignored_layer.iter().map(String::as_str))
    {
        known.insert(k, ());
    }
    let present: BTreeSet<&str> = st.names().into_iter().map(String::as_str).collect();
    for (_, _, key) in &required {
        if !present.contains(key.as_str()) {
            return Err(PackError::MissingKey(key.clone()));
        }
    }
    if let Some(extra) = present.iter().find(|k| !known.contains_key(**k)) {
        return Err(PackError::UnexpectedKey(extra.to_string()));
    }

    let total: u64 = required
        .iter()
        .filter_map(|(_, _, key)| st.tensor(key).ok())
        .map(|t| t.data().len() as u64)
        .sum();
    let mut done = 0u64;
    let sqrt_dk = (cfg.d_k as f32).sqrt();
    let sqrt_m = (cfg.m as f32).sqrt();
    let mut w = BlobWriter::new(cfg);
    for (kind, layer, key) in &required {
        let t = st
            .tensor(key)
            .map_err(|_| PackError::MissingKey(key.clone()))?;
        let (want, rank) = kind.checkpoint_shape(&cfg);
        if t.shape() != &want[..rank] {
            return Err(PackError::Shape {
                key: key.clone(),
                expected: fmt_shape(&want[..rank]),
                found: t.shape().to_vec(),
            });
        }
        let mut values = to_f32(key, &t)?;
        let data = match kind.class() {
            Class::Weight => {
                let cols = kind.shape(&cfg).1 as usize;
                let dtype = opts.weight_dtype(*kind, *layer);
                if dtype == DType::F16 {
                    if let Some((index, &value)) = values
                        .iter()
                        .enumerate()
                        .find(|(_, v)| half::f16::from_f32(**v).is_infinite())
                    {
                        return Err(PackError::F16Overflow {
                            key: key.clone(),
                            index,
                            value,
                        });
                    }
                }
                TensorData::from_f32(&values, cols, dtype)
            }
            Class::Vector | Class::Table => {
                let factor = match kind {
                    TensorKind::EncMemK => Some(sqrt_dk),
                    TensorKind::EncMemV => Some(sqrt_m),
                    _ => None,
                };
                if let Some(f) = factor {
                    if let Some((index, &value)) = values
                        .iter()
                        .enumerate()
                        .find(|(_, v)| !(**v * f).is_finite())
                    {
                        return Err(PackError::ScaleOverflow {
                            key: key.clone(),
                            index,
                            value,
                            factor: f,
                        });
                    }
                    values.iter_mut().for_each(|v| *v *= f);
                }
                TensorData::F32(values)
            }
        };
        w.add(*kind, *layer, data);
        done += t.data().len() as u64;
        progress(done, total);
    }
    w.vocab(vocab.to_vec());
    Ok(w.finish()?)
}
