//! The tensor kinds of an M² blob: **one row per kind** in [`tensor_kinds!`]'s table below —
//! its on-disk code, what its layer index counts ([`Scope`]), how it is stored ([`Class`]), its
//! shape in terms of the config ([`Dim`]) and its key in the reference checkpoint. The enum, the
//! canonical (writer) order, the parser's shape checks, `m2-pack`'s key mapping and `inspect`
//! all read this table.

use super::DType;
use crate::config::Config;

/// What the layer index of a [`TensorKind`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A single tensor of the model; its layer index is 0.
    Global,
    /// One per encoder layer (`0..n_enc`).
    EncoderLayer,
    /// One per decoder layer (`0..n_dec`).
    DecoderLayer,
}

impl Scope {
    /// Number of layers under `cfg` (1 for global tensors).
    pub const fn layers(self, cfg: &Config) -> u32 {
        match self {
            Scope::Global => 1,
            Scope::EncoderLayer => cfg.n_enc,
            Scope::DecoderLayer => cfg.n_dec,
        }
    }

    /// What comes before the layer index in a per-layer checkpoint key (empty for global).
    pub const fn key_prefix(self) -> &'static str {
        match self {
            Scope::Global => "",
            Scope::EncoderLayer => "encoder.layers.",
            Scope::DecoderLayer => "decoder.layers.",
        }
    }
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

/// One dimension of a tensor's shape, in terms of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// 1 (the rows of a vector).
    One,
    /// `d_model`.
    DModel,
    /// `2 · d_model` (the meshed gates read `[x, cross]`).
    TwoDModel,
    /// `d_in`.
    DIn,
    /// `d_ff`.
    DFf,
    /// `m`, the memory slots.
    M,
    /// `vocab`.
    Vocab,
    /// `pos_rows`.
    PosRows,
}

impl Dim {
    /// The size under `cfg` (saturating: `cfg` may not have been validated yet).
    pub const fn of(self, cfg: &Config) -> u32 {
        match self {
            Dim::One => 1,
            Dim::DModel => cfg.d_model,
            Dim::TwoDModel => cfg.d_model.saturating_mul(2),
            Dim::DIn => cfg.d_in,
            Dim::DFf => cfg.d_ff,
            Dim::M => cfg.m,
            Dim::Vocab => cfg.vocab,
            Dim::PosRows => cfg.pos_rows,
        }
    }

    /// The name used in shapes, e.g. `d_model` (the config field it reads).
    pub const fn name(self) -> &'static str {
        match self {
            Dim::One => "1",
            Dim::DModel => "d_model",
            Dim::TwoDModel => "2·d_model",
            Dim::DIn => "d_in",
            Dim::DFf => "d_ff",
            Dim::M => "m",
            Dim::Vocab => "vocab",
            Dim::PosRows => "pos_rows",
        }
    }
}

/// Everything the format says about one [`TensorKind`]: a row of [`KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind (its discriminant is the on-disk code).
    pub kind: TensorKind,
    /// What its layer index counts.
    pub scope: Scope,
    /// How it is stored.
    pub class: Class,
    /// Blob shape `[rows, cols]` (vectors: `[One, cols]`).
    pub shape: [Dim; 2],
    /// Checkpoint key: the whole key of a global kind; for a per-layer kind what follows
    /// `scope.key_prefix()` and the layer index.
    pub key: &'static str,
}

/// Declares [`TensorKind`] and [`KINDS`] from one table: `Name = code, scope, class,
/// [rows, cols], "checkpoint key";` per kind, in canonical (writer) order.
macro_rules! tensor_kinds {
    ($( $(#[$note:meta])* $name:ident = $code:literal, $scope:ident, $class:ident,
        [$r:ident, $c:ident], $key:literal; )*) => {
        /// Which weight a tensor is. Per-layer kinds carry the layer index separately. Linear
        /// weights are `[out, in]` row-major (PyTorch layout); biases, LayerNorm, memory slots
        /// and the positional table are f32. Each variant's facts are its row of [`KINDS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u16)]
        pub enum TensorKind {
            $(
                #[doc = concat!("`", $key, "` (", stringify!($scope), ") `[", stringify!($r),
                    ", ", stringify!($c), "]`, ", stringify!($class), ".")]
                $(#[$note])*
                $name = $code,
            )*
        }

        /// Every kind's row, in canonical (writer) order: encoder input, encoder layer,
        /// decoder globals, decoder layer.
        pub const KINDS: &[KindInfo] = &[$(
            KindInfo {
                kind: TensorKind::$name,
                scope: Scope::$scope,
                class: Class::$class,
                shape: [Dim::$r, Dim::$c],
                key: $key,
            },
        )*];
    };
}

tensor_kinds! {
    // ---- encoder input projection -------------------------------------------------------------
    EncInW =    1,  Global,       Weight, [DModel, DIn],      "encoder.fc.weight";
    EncInB =    2,  Global,       Vector, [One,    DModel],   "encoder.fc.bias";
    EncInLnG =  3,  Global,       Vector, [One,    DModel],   "encoder.layer_norm.weight";
    EncInLnB =  4,  Global,       Vector, [One,    DModel],   "encoder.layer_norm.bias";
    // ---- encoder layer l: memory-augmented self-attention + FFN -------------------------------
    /// Stored pre-multiplied by √d_k.
    EncMemK =   10, EncoderLayer, Table,  [M,      DModel],   ".mhatt.attention.m_k";
    /// Stored pre-multiplied by √m.
    EncMemV =   11, EncoderLayer, Table,  [M,      DModel],   ".mhatt.attention.m_v";
    EncQW =     12, EncoderLayer, Weight, [DModel, DModel],   ".mhatt.attention.fc_q.weight";
    EncQB =     13, EncoderLayer, Vector, [One,    DModel],   ".mhatt.attention.fc_q.bias";
    EncKW =     14, EncoderLayer, Weight, [DModel, DModel],   ".mhatt.attention.fc_k.weight";
    EncKB =     15, EncoderLayer, Vector, [One,    DModel],   ".mhatt.attention.fc_k.bias";
    EncVW =     16, EncoderLayer, Weight, [DModel, DModel],   ".mhatt.attention.fc_v.weight";
    EncVB =     17, EncoderLayer, Vector, [One,    DModel],   ".mhatt.attention.fc_v.bias";
    EncOW =     18, EncoderLayer, Weight, [DModel, DModel],   ".mhatt.attention.fc_o.weight";
    EncOB =     19, EncoderLayer, Vector, [One,    DModel],   ".mhatt.attention.fc_o.bias";
    EncAttLnG = 20, EncoderLayer, Vector, [One,    DModel],   ".mhatt.layer_norm.weight";
    EncAttLnB = 21, EncoderLayer, Vector, [One,    DModel],   ".mhatt.layer_norm.bias";
    EncFf1W =   22, EncoderLayer, Weight, [DFf,    DModel],   ".pwff.fc1.weight";
    EncFf1B =   23, EncoderLayer, Vector, [One,    DFf],      ".pwff.fc1.bias";
    EncFf2W =   24, EncoderLayer, Weight, [DModel, DFf],      ".pwff.fc2.weight";
    EncFf2B =   25, EncoderLayer, Vector, [One,    DModel],   ".pwff.fc2.bias";
    EncFfLnG =  26, EncoderLayer, Vector, [One,    DModel],   ".pwff.layer_norm.weight";
    EncFfLnB =  27, EncoderLayer, Vector, [One,    DModel],   ".pwff.layer_norm.bias";
    // ---- decoder ------------------------------------------------------------------------------
    /// A matrix: may be int8 per row.
    WordEmb =   40, Global,       Weight, [Vocab,  DModel],   "decoder.word_emb.weight";
    /// Random in practice (docs/SPEC.md Q1).
    PosEmb =    41, Global,       Table,  [PosRows, DModel],   "decoder.pos_emb.weight";
    /// The vocabulary read-out (no bias).
    VocabW =    42, Global,       Weight, [Vocab,  DModel],   "decoder.fc.weight";
    // ---- decoder layer l: masked self-attention, cross-attention, meshed gates α1..α3, FFN ----
    SelfQW =    50, DecoderLayer, Weight, [DModel, DModel],   ".self_att.attention.fc_q.weight";
    SelfQB =    51, DecoderLayer, Vector, [One,    DModel],   ".self_att.attention.fc_q.bias";
    SelfKW =    52, DecoderLayer, Weight, [DModel, DModel],   ".self_att.attention.fc_k.weight";
    SelfKB =    53, DecoderLayer, Vector, [One,    DModel],   ".self_att.attention.fc_k.bias";
    SelfVW =    54, DecoderLayer, Weight, [DModel, DModel],   ".self_att.attention.fc_v.weight";
    SelfVB =    55, DecoderLayer, Vector, [One,    DModel],   ".self_att.attention.fc_v.bias";
    SelfOW =    56, DecoderLayer, Weight, [DModel, DModel],   ".self_att.attention.fc_o.weight";
    SelfOB =    57, DecoderLayer, Vector, [One,    DModel],   ".self_att.attention.fc_o.bias";
    SelfLnG =   58, DecoderLayer, Vector, [One,    DModel],   ".self_att.layer_norm.weight";
    SelfLnB =   59, DecoderLayer, Vector, [One,    DModel],   ".self_att.layer_norm.bias";
    CrossQW =   60, DecoderLayer, Weight, [DModel, DModel],   ".enc_att.attention.fc_q.weight";
    CrossQB =   61, DecoderLayer, Vector, [One,    DModel],   ".enc_att.attention.fc_q.bias";
    CrossKW =   62, DecoderLayer, Weight, [DModel, DModel],   ".enc_att.attention.fc_k.weight";
    CrossKB =   63, DecoderLayer, Vector, [One,    DModel],   ".enc_att.attention.fc_k.bias";
    CrossVW =   64, DecoderLayer, Weight, [DModel, DModel],   ".enc_att.attention.fc_v.weight";
    CrossVB =   65, DecoderLayer, Vector, [One,    DModel],   ".enc_att.attention.fc_v.bias";
    CrossOW =   66, DecoderLayer, Weight, [DModel, DModel],   ".enc_att.attention.fc_o.weight";
    CrossOB =   67, DecoderLayer, Vector, [One,    DModel],   ".enc_att.attention.fc_o.bias";
    CrossLnG =  68, DecoderLayer, Vector, [One,    DModel],   ".enc_att.layer_norm.weight";
    CrossLnB =  69, DecoderLayer, Vector, [One,    DModel],   ".enc_att.layer_norm.bias";
    Alpha1W =   70, DecoderLayer, Weight, [DModel, TwoDModel], ".fc_alpha1.weight";
    Alpha1B =   71, DecoderLayer, Vector, [One,    DModel],   ".fc_alpha1.bias";
    Alpha2W =   72, DecoderLayer, Weight, [DModel, TwoDModel], ".fc_alpha2.weight";
    Alpha2B =   73, DecoderLayer, Vector, [One,    DModel],   ".fc_alpha2.bias";
    Alpha3W =   74, DecoderLayer, Weight, [DModel, TwoDModel], ".fc_alpha3.weight";
    Alpha3B =   75, DecoderLayer, Vector, [One,    DModel],   ".fc_alpha3.bias";
    DecFf1W =   76, DecoderLayer, Weight, [DFf,    DModel],   ".pwff.fc1.weight";
    DecFf1B =   77, DecoderLayer, Vector, [One,    DFf],      ".pwff.fc1.bias";
    DecFf2W =   78, DecoderLayer, Weight, [DModel, DFf],      ".pwff.fc2.weight";
    DecFf2B =   79, DecoderLayer, Vector, [One,    DModel],   ".pwff.fc2.bias";
    DecFfLnG =  80, DecoderLayer, Vector, [One,    DModel],   ".pwff.layer_norm.weight";
    DecFfLnB =  81, DecoderLayer, Vector, [One,    DModel],   ".pwff.layer_norm.bias";
}

/// Number of tensor kinds.
const N_KINDS: usize = KINDS.len();

/// Largest on-disk code.
const MAX_CODE: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < N_KINDS {
        if KINDS[i].kind as usize > max {
            max = KINDS[i].kind as usize;
        }
        i += 1;
    }
    max
};

/// `ROW_OF_CODE[code]` is 1 + the kind's row in [`KINDS`], 0 for an unused code.
const ROW_OF_CODE: [u8; MAX_CODE + 1] = {
    let mut out = [0u8; MAX_CODE + 1];
    let mut i = 0;
    while i < N_KINDS {
        let code = KINDS[i].kind as usize;
        assert!(
            code != 0 && out[code] == 0,
            "tensor kind codes are nonzero and distinct"
        );
        out[code] = (i + 1) as u8;
        i += 1;
    }
    out
};

/// A run of consecutive [`KINDS`] rows with the same scope. A blob holds each run layer by
/// layer: all its kinds for layer 0, then for layer 1, and so on.
#[derive(Clone, Copy)]
struct Group {
    scope: Scope,
    start: usize,
    end: usize,
}

impl Group {
    const fn len(&self) -> usize {
        self.end - self.start
    }
    /// Tensors of this run under `cfg` (saturating: `cfg` may be unvalidated).
    const fn count(&self, cfg: &Config) -> usize {
        self.len().saturating_mul(self.scope.layers(cfg) as usize)
    }
}

/// The runs of [`KINDS`]: encoder input, encoder layer, decoder globals, decoder layer.
const GROUPS: [Group; 4] = {
    let mut out = [Group {
        scope: Scope::Global,
        start: 0,
        end: 0,
    }; 4];
    let mut g = 0;
    let mut i = 0;
    while i < N_KINDS {
        if i > 0 && KINDS[i].scope as u8 != KINDS[i - 1].scope as u8 {
            g += 1;
            out[g].start = i;
        }
        out[g].scope = KINDS[i].scope;
        out[g].end = i + 1;
        i += 1;
    }
    assert!(g == 3, "KINDS is four runs of equal scope");
    out
};

impl TensorKind {
    /// Every kind, in canonical order.
    pub const ALL: [TensorKind; N_KINDS] = {
        let mut out = [TensorKind::EncInW; N_KINDS];
        let mut i = 0;
        while i < N_KINDS {
            out[i] = KINDS[i].kind;
            i += 1;
        }
        out
    };

    /// The on-disk code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// This kind's row of [`KINDS`].
    const fn row(self) -> usize {
        ROW_OF_CODE[self as usize] as usize - 1
    }

    /// Everything the format says about this kind.
    pub const fn info(self) -> &'static KindInfo {
        &KINDS[self.row()]
    }

    /// The kind with this on-disk code.
    pub const fn from_code(code: u16) -> Option<TensorKind> {
        let code = code as usize;
        if code > MAX_CODE || ROW_OF_CODE[code] == 0 {
            return None;
        }
        Some(KINDS[ROW_OF_CODE[code] as usize - 1].kind)
    }

    /// What the layer index of this kind counts.
    pub const fn scope(self) -> Scope {
        self.info().scope
    }

    /// How this kind is stored.
    pub const fn class(self) -> Class {
        self.info().class
    }

    /// Whether a tensor of this kind may be stored in `dtype` (weights: any; the rest: f32).
    pub const fn allows(self, dtype: DType) -> bool {
        matches!(self.class(), Class::Weight) || matches!(dtype, DType::F32)
    }

    /// Number of layers this kind has under `cfg` (1 for global kinds).
    pub const fn layers(self, cfg: &Config) -> u32 {
        self.scope().layers(cfg)
    }

    /// The blob shape `(rows, cols)` of this kind under `cfg` (vectors: `rows = 1`).
    pub const fn shape(self, cfg: &Config) -> (u32, u32) {
        let [r, c] = self.info().shape;
        (r.of(cfg), c.of(cfg))
    }

    /// The rank of this kind in the reference checkpoint: memory slots 3 (`[1, m, d]`),
    /// vectors 1, weights and tables 2.
    pub const fn checkpoint_rank(self) -> usize {
        match (self, self.class()) {
            (TensorKind::EncMemK | TensorKind::EncMemV, _) => 3,
            (_, Class::Vector) => 1,
            _ => 2,
        }
    }

    /// The shape of this kind in the reference checkpoint (PyTorch state_dict), padded with
    /// zeros, and its rank (see [`TensorKind::checkpoint_rank`]).
    pub fn checkpoint_shape(self, cfg: &Config) -> ([usize; 3], usize) {
        let (r, c) = self.shape(cfg);
        let (r, c) = (r as usize, c as usize);
        let rank = self.checkpoint_rank();
        let dims = match rank {
            3 => [1, r, c],
            1 => [c, 0, 0],
            _ => [r, c, 0],
        };
        (dims, rank)
    }

    /// [`TensorKind::checkpoint_shape`] by name, e.g. `[1, m, d_model]`.
    pub fn checkpoint_shape_names(self) -> Names {
        Names(self)
    }

    /// The state_dict key of this kind at `layer`, as a `Display` value (no allocation).
    pub const fn key(self, layer: u16) -> Key {
        Key { kind: self, layer }
    }

    /// `(prefix, suffix)` of the state_dict key: global kinds have the whole key in `prefix`
    /// and an empty suffix; per-layer keys are `prefix + layer + suffix`.
    pub const fn key_parts(self) -> (&'static str, &'static str) {
        let info = self.info();
        match info.scope {
            Scope::Global => (info.key, ""),
            s => (s.key_prefix(), info.key),
        }
    }

    /// Number of `(kind, layer)` tensors a valid blob with `cfg` holds.
    pub const fn required_count(cfg: &Config) -> usize {
        let mut n = 0usize;
        let mut g = 0;
        while g < GROUPS.len() {
            n = n.saturating_add(GROUPS[g].count(cfg));
            g += 1;
        }
        n
    }

    /// Every `(kind, layer)` a valid blob with `cfg` holds, in canonical (writer) order:
    /// encoder input, encoder layers 0.., decoder globals, decoder layers 0...
    pub fn required(cfg: &Config) -> Required {
        Required { cfg: *cfg, next: 0 }
    }

    /// Position of `(kind, layer)` in [`TensorKind::required`], or `None` if the config has no
    /// such tensor (layer out of range, or a global kind with a layer other than 0).
    pub fn canonical_index(self, layer: u16, cfg: &Config) -> Option<usize> {
        if layer as u32 >= self.layers(cfg) {
            return None;
        }
        let row = self.row();
        let mut base = 0usize;
        for g in &GROUPS {
            if (g.start..g.end).contains(&row) {
                return Some(base + layer as usize * g.len() + (row - g.start));
            }
            base = base.saturating_add(g.count(cfg));
        }
        None
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
        let mut i = self.next;
        for g in &GROUPS {
            if i < g.count(&self.cfg) {
                self.next += 1;
                return Some((KINDS[g.start + i % g.len()].kind, (i / g.len()) as u16));
            }
            i -= g.count(&self.cfg);
        }
        None
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

/// A kind's checkpoint shape by dimension name (see [`TensorKind::checkpoint_shape_names`]).
#[derive(Clone, Copy, Debug)]
pub struct Names(TensorKind);

impl core::fmt::Display for Names {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [r, c] = self.0.info().shape;
        match self.0.checkpoint_rank() {
            3 => write!(f, "[1, {}, {}]", r.name(), c.name()),
            1 => write!(f, "[{}]", c.name()),
            _ => write!(f, "[{}, {}]", r.name(), c.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn kind_codes_are_unique_and_round_trip() {
        for (i, a) in TensorKind::ALL.iter().enumerate() {
            assert_eq!(TensorKind::from_code(a.code()), Some(*a));
            assert_eq!(a.info().kind, *a);
            for b in &TensorKind::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
        assert_eq!(TensorKind::from_code(0), None);
        assert_eq!(TensorKind::from_code(5), None);
        assert_eq!(TensorKind::from_code(999), None);
    }

    #[test]
    fn keys_have_their_scope_s_form() {
        for k in KINDS {
            let global = k.scope == Scope::Global;
            assert_eq!(global, !k.key.starts_with('.'), "{:?}", k.kind);
            assert!(!k.key.starts_with("encoder.layers") && !k.key.starts_with("decoder.layers"));
        }
        assert_eq!(
            TensorKind::EncMemK.key(2).to_string(),
            "encoder.layers.2.mhatt.attention.m_k"
        );
        assert_eq!(
            TensorKind::EncMemK.checkpoint_shape_names().to_string(),
            "[1, m, d_model]"
        );
        assert_eq!(
            TensorKind::EncInB.checkpoint_shape_names().to_string(),
            "[d_model]"
        );
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
}
