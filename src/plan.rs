//! The memory plan: how many bytes of RAM the engine needs, as a `const fn` of the model's
//! config, the beam size, the region count and the longest caption.
//!
//! Everything the engine writes — activations, the per-beam self-attention K/V caches, the
//! per-image cross-attention K/V of the three encoder levels, logits, the int8 activation
//! scratch — lives in one `[f32]` buffer carved into fixed slots
//! ([`crate::workspace::Workspace`]). The slots are declared once, below, each with its length:
//! the plan sums those lengths and the workspace carves the buffer from the same table, in the
//! same order, so the two cannot disagree. The same function is printed by `m2-pack inspect`
//! and `m2 info`, and sizes the firmware's `static` workspace at build time.
//!
//! Layout (all lengths in f32 elements; `d` = d_model, `R` = regions, `B` = beam,
//! `L` = max caption length, `h` = heads, `N` = decoder layers, `F` = d_ff, `m` = memory slots,
//! `V` = vocab):
//! ```text
//! persistent   enc_out [3, R, d] · key_bias [R] · quant, scales   (int8 scratch, see quant_bytes)
//! phase area   = max(encoder scratch, decoder state)
//!   encoder    p, q, k, v, att, a [R, d] · hidden [max(R·F, R + m)]
//!   decoder    cross_k [N, 3, R', d] (R' = key_stride(R) ≥ R) · cross_v [N, 3, R, d]
//!              self_k, self_v [N, L, B, d] · key_pad [L, B]
//!              x, q, att, s, cq, g, alpha [B, d] · att3, c3 [3B, d] · cat [B, 2d]
//!              hidden [max(B·F, 3R)] · logits [max(B·V, R·d)] · scores [h, L]
//! ```
//! Each slot starts on a 64-byte boundary ([`SLOT_ALIGN`]; up to 60 bytes of padding after it).
//! The encoder's scratch is dead once `enc_out` is complete, so it shares memory with the
//! decoder's caches: for COCO at beam 5 and 20 words this keeps the workspace under 4 MB.
//! The attention scores of several query rows at once go into the FFN's `hidden` slot, dead
//! until the FFN runs (hence its floor: one row of `R + m` encoder keys, or `R` cross keys for
//! each of the three levels, which may run at once).

use crate::config::Config;

/// Every slot starts on a multiple of this many f32 elements (64 bytes: a cache line of x86_64
/// and of the Pi's Cortex-A cores, an AVX-512 vector) from the workspace's first slot, which
/// [`crate::workspace::Workspace::new`] puts on a 64-byte boundary. Misaligned slots cost
/// split loads: on the Intel VM of README's AVX-512 section (measured), slots off the line
/// made the encoder ~10 % slower (f32 up to 18 %) and a warm cross-attention ~9 %; a whole
/// decode step moved within noise. The padding costs at most 60 bytes a
/// slot (about 2 KB in all) everywhere, MCUs included, so a plan is the same on every target.
pub const SLOT_ALIGN: usize = 16;

/// The decoder's cross-attention keys, laid out per head and transposed (`[h, d_k, ·]`,
/// [`crate::model::attention::to_heads`]), start each row of `R` key columns a multiple of
/// this many f32 (32 bytes) after the last when that costs at most an eighth more key memory
/// ([`key_stride`]): with 50 regions (COCO) rows 200 bytes apart put half of AVX2's 32-byte
/// column loads across two cache lines; 56 floats apart none (and half of AVX-512's instead of
/// 7 in 8). Measured in README's eleventh round. The rule is the same on every target, like
/// [`SLOT_ALIGN`], so a plan is too: at COCO size `cross_k` grows by 6 of 56 columns (+110 KB
/// on ≈ 4 MB); a model with a few regions (the bundled demo's 4, a microcontroller's) keeps
/// its rows unpadded.
pub const KEY_COLUMN_ALIGN: usize = 8;

/// Values between the starts of consecutive rows of `n_keys` transposed key columns:
/// `n_keys` rounded up to a multiple of [`KEY_COLUMN_ALIGN`] when that adds at most
/// `n_keys / 8` columns (50 → 56, 100 → 104, 36 → 40; 33, 4 and any multiple of 8 stay), else
/// `n_keys`. Never more for fewer keys: an image's rows fit the slot planned for its regions.
pub const fn key_stride(n_keys: usize) -> usize {
    key_stride_of!(n_keys, usize)
}

/// [`key_stride`]'s body, for [`Plan`] in `usize` and [`Wide`] in `u128`.
macro_rules! key_stride_of {
    ($n:expr, $t:ty) => {{
        let (n, a) = ($n, KEY_COLUMN_ALIGN as $t);
        match n.div_ceil(a).checked_mul(a) {
            Some(padded) if padded - n <= n / 8 => padded,
            _ => n,
        }
    }};
}
use key_stride_of;

/// `len` rounded up to a multiple of [`SLOT_ALIGN`] (a slot's footprint in the workspace).
const fn padded(len: usize) -> usize {
    len.div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// Beam search length of the reference's test.py; the default caption length of a plan.
pub const DEFAULT_MAX_LEN: usize = 20;

/// Largest beam the engine supports. Beam bookkeeping lives in fixed arrays on the stack
/// (words, log-probs and cache ancestry of every beam, twice, plus the result: about 15 KB).
pub const MAX_BEAM: usize = 8;

/// Longest caption the engine supports (positions 1..=MAX_STEPS).
pub const MAX_STEPS: usize = 64;

/// What a workspace is planned for: the model's shape and the run's size. The slot tables
/// ([`Plan::persistent`], [`Plan::encoder`], [`Plan::decoder`]) give every slot's length and
/// offset in f32 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub d: usize,
    pub d_in: usize,
    pub d_ff: usize,
    /// Attention heads.
    pub h: usize,
    pub m: usize,
    pub vocab: usize,
    pub n_dec: usize,
    pub regions: usize,
    pub beam: usize,
    pub max_len: usize,
    /// Bytes per quantised activation: 1, or 2 when the blob has an int8 weight with int16
    /// activations ([`crate::blob::DType::I8A16`]; [`Plan::with_act_bytes`]).
    pub act_bytes: usize,
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl Plan {
    /// The plan for `cfg` at `beam` beams, `regions` regions per image and captions of up to
    /// `max_len` words. Arguments of 0 are treated as 1.
    pub const fn new(cfg: &Config, beam: usize, regions: usize, max_len: usize) -> Plan {
        Plan {
            d: cfg.d_model as usize,
            d_in: cfg.d_in as usize,
            d_ff: cfg.d_ff as usize,
            h: cfg.h as usize,
            m: cfg.m as usize,
            vocab: cfg.vocab as usize,
            n_dec: cfg.n_dec as usize,
            regions: max(regions, 1),
            beam: max(beam, 1),
            max_len: max(max_len, 1),
            act_bytes: 1,
        }
    }

    /// The same plan with `bytes` (1 or 2; anything else counts as 2) per quantised
    /// activation: 2 for a blob with a [`crate::blob::DType::I8A16`] tensor
    /// ([`crate::Blob::act_bytes`]).
    pub const fn with_act_bytes(self, bytes: usize) -> Plan {
        Plan {
            act_bytes: if bytes == 1 { 1 } else { 2 },
            ..self
        }
    }

    /// Largest `n × in` product of any linear layer times [`Plan::act_bytes`]: the quantised
    /// activation scratch in bytes.
    pub const fn quant_bytes(&self) -> usize {
        quant_bytes!(self, usize)
    }

    /// Rows of the int8 per-row scale array.
    pub const fn quant_rows(&self) -> usize {
        quant_rows!(self)
    }

    /// Values between rows of transposed cross-attention keys: [`key_stride`] of the regions.
    pub const fn key_stride(&self) -> usize {
        key_stride(self.regions)
    }

    /// Slots that live for the whole caption.
    pub const fn persistent(&self) -> PersistentSlots<usize> {
        PersistentSlots::new(self)
    }

    /// The encoder's scratch, after the persistent slots.
    pub const fn encoder(&self) -> EncoderSlots<usize> {
        EncoderSlots::new(self)
    }

    /// The decoder's caches and per-step scratch, after the persistent slots.
    pub const fn decoder(&self) -> DecoderSlots<usize> {
        DecoderSlots::new(self)
    }

    /// The phase area: the encoder scratch and the decoder state share it.
    pub const fn phase_len(&self) -> usize {
        max(self.encoder().total(), self.decoder().total())
    }

    /// The slots' length in f32 elements, from the first slot's start (a 64-byte boundary).
    pub const fn slots_floats(&self) -> usize {
        self.persistent().total() + self.phase_len()
    }

    /// Total workspace length in f32 elements: the slots and [`SLOT_ALIGN`]` − 1` floats of
    /// room to start them on a 64-byte boundary wherever the buffer starts.
    pub const fn total_floats(&self) -> usize {
        self.slots_floats() + SLOT_ALIGN - 1
    }

    /// Total workspace size in bytes.
    pub const fn total_bytes(&self) -> usize {
        4 * self.total_floats()
    }

    /// [`Plan::total_bytes`] if every slot length, offset and sum of this plan fits in `usize`
    /// on this target, else `None`. Plans built from untrusted sizes (a blob's config, a
    /// command line's `--regions`) go through this before anything is allocated or carved:
    /// the `usize` arithmetic of [`Plan::total_floats`] would wrap silently in release builds.
    /// Also `None` beyond [`MAX_BEAM`], [`MAX_STEPS`] or 2³² regions, which bounds every
    /// slot in `u128`: the largest, `N·3·R·d`, stays below 2¹⁰⁰.
    pub const fn checked_total_bytes(&self) -> Option<usize> {
        if self.beam > MAX_BEAM || self.max_len > MAX_STEPS || self.regions as u64 > u32::MAX as u64
        {
            return None;
        }
        let w = Wide::of(self);
        let enc = EncoderSlots::wide_total(&w);
        let dec = DecoderSlots::wide_total(&w);
        let phase = if enc > dec { enc } else { dec };
        let bytes = 4 * (PersistentSlots::wide_total(&w) + phase + SLOT_ALIGN as u128 - 1);
        if bytes <= usize::MAX as u128 {
            Some(bytes as usize)
        } else {
            None
        }
    }
}

/// The int8 scratch's size (one body for [`Plan`] in `usize` and [`Wide`] in `u128`).
macro_rules! quant_bytes {
    ($p:expr, $t:ty) => {{
        const fn max(a: $t, b: $t) -> $t {
            if a > b {
                a
            } else {
                b
            }
        }
        let (r, b, d) = ($p.regions, $p.beam, $p.d);
        // encoder linears over R rows; cross-attention K/V over the 3 levels at once (3R rows)
        let enc = max(r * max($p.d_in, max(d, $p.d_ff)), 3 * r * d);
        let dec = max(3 * b * d, b * max(2 * d, $p.d_ff));
        max(enc, dec) * $p.act_bytes
    }};
}
use quant_bytes;

/// Rows of the int8 per-row scale array (one body for [`Plan`] and [`Wide`]).
macro_rules! quant_rows {
    ($p:expr) => {
        3 * if $p.regions > $p.beam {
            $p.regions
        } else {
            $p.beam
        }
    };
}
use quant_rows;

/// A plan's dimensions in `u128`, where [`Plan::checked_total_bytes`] evaluates the slot tables
/// (the config's fields are `u32`; beam, caption length and regions are bounded first), so it
/// knows whether the `usize` sums are exact on this target.
#[derive(Clone, Copy, Debug)]
pub struct Wide {
    pub d: u128,
    pub d_in: u128,
    pub d_ff: u128,
    pub h: u128,
    pub m: u128,
    pub vocab: u128,
    pub n_dec: u128,
    pub regions: u128,
    pub beam: u128,
    pub max_len: u128,
    pub act_bytes: u128,
}

impl Wide {
    const fn of(p: &Plan) -> Wide {
        Wide {
            d: p.d as u128,
            d_in: p.d_in as u128,
            d_ff: p.d_ff as u128,
            h: p.h as u128,
            m: p.m as u128,
            vocab: p.vocab as u128,
            n_dec: p.n_dec as u128,
            regions: p.regions as u128,
            beam: p.beam as u128,
            max_len: p.max_len as u128,
            act_bytes: p.act_bytes as u128,
        }
    }

    const fn quant_bytes(&self) -> u128 {
        quant_bytes!(self, u128)
    }

    const fn quant_rows(&self) -> u128 {
        quant_rows!(self)
    }

    const fn key_stride(&self) -> u128 {
        key_stride_of!(self.regions, u128)
    }
}

/// Declares one group of consecutive workspace slots, each slot's name and length (in f32
/// elements, a `const` expression of the plan `$p` and the `let`s) written once. Generates
/// `$name<T>` with one `T` per slot — `usize` lengths (`$name::new(&plan)`) or offsets, and
/// the carved `&mut [f32]` slices — its `total`, `offsets` and `carve`. Each slot takes its
/// length rounded up to [`SLOT_ALIGN`] floats, so every slot of a group that starts on a
/// 64-byte boundary does too; its slice is its length.
macro_rules! slots {
    (
        $(#[$doc:meta])*
        $name:ident($p:ident $(, $v:ident = $e:expr)*) {
            $($(#[$fdoc:meta])* $field:ident: $len:expr,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name<T> {
            $($(#[$fdoc])* pub $field: T,)*
        }

        impl $name<usize> {
            /// The slot lengths of `plan`, in f32 elements.
            pub const fn new($p: &Plan) -> Self {
                $(let $v = $e;)*
                $name { $($field: $len,)* }
            }

            /// The summed length of the same slots in `u128` (exact for any plan).
            #[allow(clippy::identity_op)]
            pub const fn wide_total($p: &Wide) -> u128 {
                #[allow(dead_code)]
                const fn max(a: u128, b: u128) -> u128 {
                    if a > b {
                        a
                    } else {
                        b
                    }
                }
                $(let $v = $e;)*
                let a = SLOT_ALIGN as u128;
                0 $(+ ($len).div_ceil(a) * a)*
            }

            /// The slots' summed footprint in f32 elements (each length rounded up to
            /// [`SLOT_ALIGN`]).
            pub const fn total(&self) -> usize {
                0 $(+ padded(self.$field))*
            }

            /// Where each slot starts when the group starts at `start`.
            #[allow(unused_assignments)]
            pub const fn offsets(&self, start: usize) -> Self {
                let mut at = start;
                $name {
                    $($field: {
                        let o = at;
                        at += padded(self.$field);
                        o
                    },)*
                }
            }

            /// Cut the slots off the front of `buf` in declaration order, each followed by its
            /// padding; returns them and the rest of `buf`. `buf` holds at least
            /// [`Self::total`] floats (checked in debug builds; the workspace checks its
            /// buffer against the plan once, when built).
            pub fn carve<'b>(&self, buf: &'b mut [f32]) -> ($name<&'b mut [f32]>, &'b mut [f32]) {
                $(let ($field, buf) = take(buf, self.$field);)*
                ($name { $($field,)* }, buf)
            }
        }
    };
}

/// The first `n` floats of `buf`, and the rest after `n`'s padding to [`SLOT_ALIGN`].
fn take(buf: &mut [f32], n: usize) -> (&mut [f32], &mut [f32]) {
    debug_assert!(
        padded(n) <= buf.len(),
        "workspace slot of {n} floats, {} left: buffer and plan disagree",
        buf.len()
    );
    let (slot, rest) = buf.split_at_mut(n.min(buf.len()));
    let pad = (padded(n) - n).min(rest.len());
    (slot, &mut rest[pad..])
}

slots! {
    /// Slots that live for the whole caption, at the start of the workspace.
    PersistentSlots(p, r = p.regions) {
        /// Encoder outputs of the three levels `[3, R, d]`.
        enc_out: 3 * r * p.d,
        /// Additive attention bias of each encoder row as a key `[R]`.
        key_bias: r,
        /// Quantised activations ([`Plan::quant_bytes`] bytes).
        quant: p.quant_bytes().div_ceil(4),
        /// int8 per-row scales `[3·max(R, B)]`.
        scales: p.quant_rows(),
    }
}

slots! {
    /// The encoder's scratch `[R, ·]` (shares memory with the decoder's slots).
    EncoderSlots(p, rd = p.regions * p.d) {
        /// Projected input `P [R, d]`.
        p: rd,
        /// Queries `[R, d]`.
        q: rd,
        /// Keys `[R, d]`.
        k: rd,
        /// Values `[R, d]`.
        v: rd,
        /// Concatenated head outputs `[R, d]`.
        att: rd,
        /// Attention sub-layer output `A [R, d]`.
        a: rd,
        /// FFN hidden `[R, F]`; before the FFN, attention scores (a row of `R + m` keys at least).
        hidden: max(p.regions * p.d_ff, p.regions + p.m),
    }
}

slots! {
    /// The decoder's caches, then its per-step activations for `n ≤ B` rows.
    DecoderSlots(p, b = p.beam, d = p.d, rk = p.key_stride()) {
        /// Cross-attention keys of each decoder layer and encoder level `[N, 3, R', d]`, each
        /// `[R', d]` block laid out per head, transposed: `[h, d_k, R']`, rows of
        /// `R' =` [`key_stride`]`(R)` values.
        cross_k: p.n_dec * 3 * rk * d,
        /// Cross-attention values `[N, 3, R, d]`, each block per head: `[h, R, d_k]`.
        cross_v: p.n_dec * 3 * p.regions * d,
        /// Self-attention keys `[N, L, B, d]`: step `t`, slot `b`.
        self_k: p.n_dec * p.max_len * b * d,
        /// Self-attention values `[N, L, B, d]`.
        self_v: p.n_dec * p.max_len * b * d,
        /// 1.0 where the token fed at step `t` in slot `b` was `<pad>` (a masked key) `[L, B]`.
        key_pad: p.max_len * b,
        /// Layer input `[B, d]`; from the FFN on, the layer's output (the input is dead once
        /// the self-attention's AddNorm has read it).
        x: b * d,
        /// Self-attention queries `[B, d]` (its keys and values go straight to the cache).
        q: b * d,
        /// Self-attention head outputs `[B, d]`.
        att: b * d,
        /// Masked self-attention output `S [B, d]`.
        s: b * d,
        /// Cross-attention query `Linear_q(S)`, shared by the three levels `[B, d]`.
        cq: b * d,
        /// Gated mix `G [B, d]`.
        g: b * d,
        /// One gate `α_i [B, d]`.
        alpha: b * d,
        /// Cross-attention head outputs of the 3 levels `[3, B, d]`.
        att3: 3 * b * d,
        /// `C_1..C_3 [3, B, d]`.
        c3: 3 * b * d,
        /// `[S; C_i]` `[B, 2d]`.
        cat: b * 2 * d,
        /// FFN hidden `[B, F]`; before the FFN, cross-attention scores: a third for each
        /// encoder level (a row of `R` keys at least).
        hidden: max(b * p.d_ff, 3 * p.regions),
        /// Log-probabilities `[B, V]`; before the first step, where
        /// [`MeshedDecoder::precompute_cross`](crate::model::decoder::MeshedDecoder::precompute_cross)
        /// lays one level's keys or values out per head (`[R, d]` at least).
        logits: max(b * p.vocab, p.regions * d),
        /// One row's self-attention scores, every head `[h, L]`.
        scores: p.h * p.max_len,
    }
}

/// RAM bytes of the workspace for `cfg` (with `act_bytes` per quantised activation:
/// [`crate::Blob::act_bytes`]) at `beam` beams and `regions` regions, for captions of up to
/// [`DEFAULT_MAX_LEN`] words (capped by the positional table). This is the figure
/// `m2-pack inspect` and `m2 info` print.
pub const fn workspace_bytes(cfg: &Config, act_bytes: usize, beam: usize, regions: usize) -> usize {
    Plan::new(cfg, beam, regions, default_max_len(cfg))
        .with_act_bytes(act_bytes)
        .total_bytes()
}

/// The caption length [`workspace_bytes`] plans for: [`DEFAULT_MAX_LEN`], capped by the
/// model's positional table.
pub const fn default_max_len(cfg: &Config) -> usize {
    if cfg.max_len() < DEFAULT_MAX_LEN {
        cfg.max_len()
    } else {
        DEFAULT_MAX_LEN
    }
}

/// Same as [`workspace_bytes`] in f32 elements (the length of a `static [f32; N]`).
pub const fn workspace_floats(
    cfg: &Config,
    act_bytes: usize,
    beam: usize,
    regions: usize,
) -> usize {
    workspace_bytes(cfg, act_bytes, beam, regions) / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;

    #[test]
    fn coco_workspace_at_beam_5_is_at_most_4_mb() {
        let b = workspace_bytes(&Config::COCO, 1, 5, 50);
        assert!(b <= 4_000_000, "COCO workspace {b} bytes");
        // Beam 1 needs less than beam 5; more regions need more.
        assert!(workspace_bytes(&Config::COCO, 1, 1, 50) < b);
        assert!(workspace_bytes(&Config::COCO, 1, 5, 100) > b);
    }

    #[test]
    fn checked_totals_agree_and_refuse_what_would_wrap() {
        for (cfg, beam, regions) in [(Config::COCO, 5, 50), (Config::TINY, 3, 10)] {
            let p = Plan::new(&cfg, beam, regions, DEFAULT_MAX_LEN);
            assert_eq!(p.checked_total_bytes(), Some(p.total_bytes()));
        }
        // usize::MAX / 2 regions, a beam or a caption length past the engine's arrays: refused,
        // not wrapped (on 32- and 64-bit targets alike).
        let huge = Plan::new(&Config::COCO, 5, usize::MAX / 2, DEFAULT_MAX_LEN);
        assert_eq!(huge.checked_total_bytes(), None);
        assert_eq!(
            Plan::new(&Config::COCO, MAX_BEAM + 1, 50, 20).checked_total_bytes(),
            None
        );
        assert_eq!(
            Plan::new(&Config::COCO, 5, 50, MAX_STEPS + 1).checked_total_bytes(),
            None
        );
        // Within the bounds but past usize on 64-bit: u32::MAX everywhere.
        let mut big = Config::COCO;
        big.d_model = u32::MAX;
        big.vocab = u32::MAX;
        big.n_dec = u32::MAX;
        let p = Plan::new(&big, MAX_BEAM, u32::MAX as usize, MAX_STEPS);
        assert_eq!(p.checked_total_bytes(), None);
    }

    #[test]
    fn key_rows_are_padded_to_whole_blocks_of_eight_when_cheap() {
        // padded while that adds at most an eighth of the keys
        let cases = [
            (0, 0),
            (1, 1),
            (4, 4),
            (7, 7),
            (8, 8),
            (9, 9),
            (16, 16),
            (33, 33),
        ];
        let padded = [(36, 40), (50, 56), (63, 64), (100, 104), (1001, 1008)];
        for (n, want) in cases.into_iter().chain(padded) {
            assert_eq!(key_stride(n), want, "{n} keys");
            let plan = Plan::new(&Config::TINY, 1, n, 1); // (0 regions count as 1)
            assert_eq!(
                Wide::of(&plan).key_stride(),
                key_stride(plan.regions) as u128
            );
        }
        // an image's rows (at most the plan's regions) never need more than the plan's slot
        for regions in 0..300 {
            for rows in 0..=regions {
                assert!(
                    key_stride(rows) <= key_stride(regions),
                    "{rows} of {regions}"
                );
            }
        }
        // never past usize: unpadded where the rounding would wrap
        assert_eq!(key_stride(usize::MAX - 7), usize::MAX - 7);
        for n in [usize::MAX - 6, usize::MAX - 3, usize::MAX] {
            assert_eq!(key_stride(n), n, "{n} keys");
        }
        // the keys' slot holds every layer's three levels at that stride; the values' do not pad
        for (cfg, regions) in [(Config::COCO, 50), (Config::TINY, 10), (Config::TINY, 36)] {
            let p = Plan::new(&cfg, 2, regions, 20);
            let (d, n) = (cfg.d_model as usize, cfg.n_dec as usize);
            assert_eq!(p.decoder().cross_k, n * 3 * key_stride(regions) * d);
            assert_eq!(p.decoder().cross_v, n * 3 * regions * d);
            assert_eq!(p.checked_total_bytes(), Some(p.total_bytes()));
        }
    }

    #[test]
    fn usable_in_const_context() {
        const N: usize = workspace_floats(&Config::TINY, 1, 5, 10);
        static WS: [f32; N] = [0.0; N];
        assert_eq!(WS.len() * 4, workspace_bytes(&Config::TINY, 1, 5, 10));
    }

    #[test]
    fn slots_tile_the_workspace() {
        for (cfg, beam, regions) in [(Config::COCO, 5, 50), (Config::TINY, 3, 10)] {
            let p = Plan::new(&cfg, beam, regions, DEFAULT_MAX_LEN);
            let mut buf = vec![0f32; p.slots_floats()];
            let (keep, rest) = p.persistent().carve(&mut buf);
            assert_eq!(keep.scales.len(), p.quant_rows());
            assert_eq!(rest.len(), p.phase_len());
            let (dec, left) = p.decoder().carve(rest);
            assert_eq!(dec.scores.len(), p.h * p.max_len);
            assert_eq!(left.len(), p.phase_len() - p.decoder().total());
            let keep = p.persistent();
            assert_eq!(keep.offsets(0).key_bias, padded(keep.enc_out));
            assert_eq!(keep.offsets(0).scales + padded(keep.scales), keep.total());
            assert_eq!(p.total_floats(), p.slots_floats() + SLOT_ALIGN - 1);
            let dec = p.decoder().offsets(100 * SLOT_ALIGN);
            assert_eq!(dec.cross_v % SLOT_ALIGN, 0);
            assert_eq!(dec.scores % SLOT_ALIGN, 0);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "buffer and plan disagree")]
    fn carving_a_short_buffer_fails() {
        let p = Plan::new(&Config::TINY, 2, 10, 20);
        let mut buf = vec![0f32; p.decoder().total() - 1];
        let _ = p.decoder().carve(&mut buf);
    }
}
