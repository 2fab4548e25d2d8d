//! Multi-head scaled dot-product attention (paper §3.1, docs/SPEC.md §4), post-norm:
//!
//! ```text
//! q = Q_in·W_qᵀ + b_q     k = KV_in·W_kᵀ + b_k     v = KV_in·W_vᵀ + b_v      (heads: feature = head·d_k + j)
//! memory variant (encoder only):  k ← [k ; √d_k·M_k]   v ← [v ; √m·M_v]        (M_k, M_v pre-scaled in the blob)
//! a_h = softmax( q_h·k_hᵀ / √d_k + bias )     bias: −∞ masked key, ln c a key standing for c equal ones, else 0
//! out = LN( Q_in + concat_h(a_h·v_h)·W_oᵀ + b_o )
//! ```
//! The projections are batched over rows by the caller (they are plain [`Linear`]s); this file
//! holds the per-query attention over an arbitrary key source, so the encoder (keys + memory
//! slots), the decoder's self-attention (keys gathered along a beam's ancestry from the cache)
//! and its cross-attention (keys computed once per image) share one implementation.

use super::{LayerNorm, Linear};
use crate::blob::{Blob, TensorKind as K};
use crate::kernels::{Kernels, KeyColumns, PAR_MIN_F32_MACS};
use crate::plan::key_stride;

/// The weights of one multi-head attention block: four projections and the block's LayerNorm.
#[derive(Clone, Copy, Debug)]
pub struct MultiHeadAttention<'a> {
    pub fc_q: Linear<'a>,
    pub fc_k: Linear<'a>,
    pub fc_v: Linear<'a>,
    pub fc_o: Linear<'a>,
    pub layer_norm: LayerNorm<'a>,
    pub heads: usize,
    pub d_k: usize,
}

/// Which tensors form a block: `[qW, qB, kW, kB, vW, vB, oW, oB, lnG, lnB]`.
pub type BlockKinds = [K; 10];

pub const ENCODER_SELF: BlockKinds = [
    K::EncQW,
    K::EncQB,
    K::EncKW,
    K::EncKB,
    K::EncVW,
    K::EncVB,
    K::EncOW,
    K::EncOB,
    K::EncAttLnG,
    K::EncAttLnB,
];
pub const DECODER_SELF: BlockKinds = [
    K::SelfQW,
    K::SelfQB,
    K::SelfKW,
    K::SelfKB,
    K::SelfVW,
    K::SelfVB,
    K::SelfOW,
    K::SelfOB,
    K::SelfLnG,
    K::SelfLnB,
];
pub const DECODER_CROSS: BlockKinds = [
    K::CrossQW,
    K::CrossQB,
    K::CrossKW,
    K::CrossKB,
    K::CrossVW,
    K::CrossVB,
    K::CrossOW,
    K::CrossOB,
    K::CrossLnG,
    K::CrossLnB,
];

impl<'a> MultiHeadAttention<'a> {
    pub fn load(blob: &Blob<'a>, kinds: &BlockKinds, layer: usize) -> Self {
        let cfg = blob.config();
        let lin = |i: usize| Linear::load(blob, kinds[i], Some(kinds[i + 1]), layer);
        MultiHeadAttention {
            fc_q: lin(0),
            fc_k: lin(2),
            fc_v: lin(4),
            fc_o: lin(6),
            layer_norm: LayerNorm::load(blob, kinds[8], kinds[9], layer),
            heads: cfg.h as usize,
            d_k: cfg.d_k as usize,
        }
    }
}

/// The memory-augmented self-attention of an encoder layer: a [`MultiHeadAttention`] whose
/// keys and values are extended by `m` learned slots.
#[derive(Clone, Copy, Debug)]
pub struct MemoryAugmentedAttention<'a> {
    pub mha: MultiHeadAttention<'a>,
    /// `√d_k · M_k`, `[m, d]`.
    pub mem_k: &'a [f32],
    /// `√m · M_v`, `[m, d]`.
    pub mem_v: &'a [f32],
}

impl<'a> MemoryAugmentedAttention<'a> {
    pub fn load(blob: &Blob<'a>, layer: usize) -> Self {
        MemoryAugmentedAttention {
            mha: MultiHeadAttention::load(blob, &ENCODER_SELF, layer),
            mem_k: blob.vector(K::EncMemK, layer),
            mem_v: blob.vector(K::EncMemV, layer),
        }
    }
}

/// Attention of one query row over `n_keys` keys, all heads:
/// `out[h·d_k..] = softmax_j(q_h·key(j)_h / √d_k + bias(j)) · value(j)_h`.
///
/// `bias(j)` is −∞ for a masked key (its score is −∞ whatever its dot), `ln c` for a key that
/// stands for `c` identical keys (`c·exp(s) = exp(s + ln c)`), 0 otherwise. `key(j)` and
/// `value(j)` return full `d`-wide rows for every `j < n_keys`, masked keys included; `scores`
/// holds at least `n_keys` values. The scores are [`Kernels::dot8`]'s, eight keys at a time:
/// the bits of [`crate::kernels::dot_f32`] on every path.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn attend<'k>(
    k: &Kernels,
    q: &[f32],
    heads: usize,
    d_k: usize,
    n_keys: usize,
    key: impl Fn(usize) -> &'k [f32],
    value: impl Fn(usize) -> &'k [f32],
    bias: impl Fn(usize) -> f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_rows(k, q, 1, heads, d_k, n_keys, key, value, bias, scores, out);
}

/// [`attend`] for `n_q` query rows `q [n_q, d]` over the same keys, into `out [n_q, d]`, with
/// the same arithmetic for every score and output (bit for bit), in another order: up to
/// [`GROUP`] rows at a time, head by head, each key and value row is read once for all rows of
/// the group (rows of `d` floats put one head's keys 4·d bytes apart, which the L1 cannot hold
/// for many keys at once: a pass per query would stream them again); the scores of every
/// head of the group are then one softmax call.
///
/// `scratch` holds at least `n_keys` values; with `heads · g · n_keys` it takes every head of
/// `g` rows at a time (`blocking`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn attend_rows<'k>(
    k: &Kernels,
    q: &[f32],
    n_q: usize,
    heads: usize,
    d_k: usize,
    n_keys: usize,
    key: impl Fn(usize) -> &'k [f32],
    value: impl Fn(usize) -> &'k [f32],
    bias: impl Fn(usize) -> f32,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let d = heads * d_k;
    let sc_of = Scale::of(d_k);
    let (hc, group) = blocking(scratch.len(), heads, n_keys);
    let mut i0 = 0;
    while i0 < n_q {
        let g = group.min(n_q - i0);
        let mut h0 = 0;
        while h0 < heads {
            let hn = hc.min(heads - h0);
            // score row (h − h0)·g + r: head h of query i0 + r
            let sc = &mut scratch[..hn * g * n_keys];
            for h in h0..h0 + hn {
                let hs = h * d_k..(h + 1) * d_k;
                let q_at = |r: usize| &q[(i0 + r) * d + hs.start..(i0 + r) * d + hs.end];
                // keys eight at a time (a short last block padded with its first key, whose
                // extra scores are dropped), each block read once for the g rows
                let mut j0 = 0;
                while j0 < n_keys {
                    let m = (n_keys - j0).min(8);
                    // (a loop, not `array::from_fn`, whose closure calls are not inlined here)
                    let (mut keys, mut b) = ([&[][..]; 8], [0.0f32; 8]);
                    for t in 0..8 {
                        let j = j0 + if t < m { t } else { 0 };
                        keys[t] = &key(j)[hs.clone()];
                        b[t] = bias(j);
                    }
                    for r in 0..g {
                        let mut s = k.dot8(q_at(r), &keys, m);
                        sc_of.scores(&mut s, &b);
                        let at = ((h - h0) * g + r) * n_keys + j0;
                        sc[at..at + m].copy_from_slice(&s[..m]);
                    }
                    j0 += m;
                }
            }
            k.softmax_rows(sc, n_keys);
            // out_r = Σ_j a_rj · v_j, row by row with the row's head slice in registers
            for h in h0..h0 + hn {
                let hs = h * d_k..(h + 1) * d_k;
                for r in 0..g {
                    let oh = &mut out[(i0 + r) * d + hs.start..(i0 + r) * d + hs.end];
                    let a_r = &sc[((h - h0) * g + r) * n_keys..][..n_keys];
                    weighted_sum(oh, a_r, |j| &value(j)[hs.clone()]);
                }
            }
            h0 += hn;
        }
        i0 += g;
    }
}

/// Keys and values laid out per head once per image ([`to_heads`]), the decoder's
/// cross-attention's: `n_keys` keys of `heads · d_k` values and their `bias [n_keys]`.
#[derive(Clone, Copy, Debug)]
pub struct HeadKv<'a> {
    /// Attention heads.
    pub heads: usize,
    /// Values per head.
    pub d_k: usize,
    /// Each head's keys transposed, `[heads, d_k, key_stride(n_keys)]`: rows of `n_keys`
    /// columns [`crate::plan::key_stride`] apart, the columns past `n_keys` never used (for
    /// [`attend_levels`], three levels of those one after the other).
    pub kt: &'a [f32],
    /// Each head's values, `[heads, n_keys, d_k]` (likewise).
    pub v: &'a [f32],
    /// Each key's additive score bias `[n_keys]` (see [`attend`]).
    pub bias: &'a [f32],
    /// Keys (encoder rows).
    pub n_keys: usize,
}

/// [`attend_rows`] over keys and values laid out per head once per image (the decoder's
/// cross-attention, [`HeadKv`]). The same arithmetic, bit for bit:
/// each score is [`crate::kernels::dot_f32`]'s (as [`Kernels::dot_columns`] computes it, a
/// block of keys per vector), then the same scaling, softmax and weighted sum. Each head's
/// keys and values are one contiguous block, read once for up to [`GROUP`] rows.
#[inline(always)]
pub fn attend_cross(k: &Kernels, q: &[f32], kv: HeadKv, scratch: &mut [f32], out: &mut [f32]) {
    let HeadKv {
        heads,
        d_k,
        kt,
        v,
        bias,
        n_keys,
    } = kv;
    let d = heads * d_k;
    let n_q = q.len().checked_div(d).unwrap_or(0);
    let ks = key_stride(n_keys); // values between a head's rows of key columns
    let (hk, hv) = (d_k * ks, d_k * n_keys); // one head's keys, values
    let bias = &bias[..n_keys];
    let sc_of = Scale::of(d_k);
    // two rows' sums (2 × d_k floats) in registers with as many again to spare (AVX-512);
    // on 16 ymm or NEON's 32 × 4 they would spill
    let pairs = k.isa().register_floats() >= 4 * d_k;
    let (hc, group) = blocking(scratch.len(), heads, n_keys);
    let mut i0 = 0;
    while i0 < n_q {
        let g = group.min(n_q - i0);
        let mut h0 = 0;
        while h0 < heads {
            let hn = hc.min(heads - h0);
            // score row (h − h0)·g + r: head h of query i0 + r
            let sc = &mut scratch[..hn * g * n_keys];
            for h in h0..h0 + hn {
                let kt = &kt[h * hk..(h + 1) * hk];
                let keys = KeyColumns {
                    kt,
                    n: n_keys,
                    stride: ks,
                };
                let q_at = |r: usize| &q[(i0 + r) * d + h * d_k..(i0 + r) * d + (h + 1) * d_k];
                // two or three rows a pass (on AVX-512 each key load then serves them all)
                let mut r = 0;
                if g >= 3 && g % 2 == 1 {
                    let s = &mut sc[((h - h0) * g + r) * n_keys..][..3 * n_keys];
                    let (s0, s12) = s.split_at_mut(n_keys);
                    let (s1, s2) = s12.split_at_mut(n_keys);
                    let q3 = [q_at(r), q_at(r + 1), q_at(r + 2)];
                    k.dot_columns3(q3, keys, [&mut *s0, &mut *s1, &mut *s2]);
                    for s in [s0, s1, s2] {
                        sc_of.scores(s, bias);
                    }
                    r += 3;
                }
                while r + 2 <= g {
                    let s = &mut sc[((h - h0) * g + r) * n_keys..][..2 * n_keys];
                    let (s0, s1) = s.split_at_mut(n_keys);
                    k.dot_columns2([q_at(r), q_at(r + 1)], keys, [&mut *s0, &mut *s1]);
                    sc_of.scores(s0, bias);
                    sc_of.scores(s1, bias);
                    r += 2;
                }
                if r < g {
                    let s = &mut sc[((h - h0) * g + r) * n_keys..][..n_keys];
                    k.dot_columns(q_at(r), keys, s);
                    sc_of.scores(s, bias);
                }
            }
            k.softmax_rows(sc, n_keys);
            for h in h0..h0 + hn {
                let v_h = &v[h * hv..(h + 1) * hv];
                let v_at = |j: usize| &v_h[j * d_k..(j + 1) * d_k];
                let a_at = |r: usize| &sc[((h - h0) * g + r) * n_keys..][..n_keys];
                let mut r = 0;
                // two rows a pass where the registers hold both rows' sums (`pairs`)
                while pairs && r + 2 <= g {
                    let (o0, o1) = out[(i0 + r) * d..(i0 + r + 2) * d].split_at_mut(d);
                    let hs = h * d_k..(h + 1) * d_k;
                    weighted_sum2(
                        [&mut o0[hs.clone()], &mut o1[hs]],
                        [a_at(r), a_at(r + 1)],
                        v_at,
                    );
                    r += 2;
                }
                while r < g {
                    let oh = &mut out[(i0 + r) * d + h * d_k..(i0 + r) * d + (h + 1) * d_k];
                    weighted_sum(oh, a_at(r), v_at);
                    r += 1;
                }
            }
            h0 += hn;
        }
        i0 += g;
    }
}

/// [`attend_cross`] of `q [n_q, d]` with the three encoder levels of a decoder layer, whose
/// keys and values are `kv.kt` `[3, heads, d_k·key_stride(n_keys)]` and `kv.v`
/// `[3, heads, d_k·n_keys]` (three [`to_heads`] blocks each),
/// into `out [3, n_q, d]`. The levels are independent, so each is one part of
/// [`Kernels::for_each_mut`] (on the pool's workers when the kernels have threads), with a
/// third of `scratch` (at least `n_keys` each) for its scores: the same bits however the parts
/// run.
pub fn attend_levels(k: &Kernels, q: &[f32], kv: HeadKv, scratch: &mut [f32], out: &mut [f32]) {
    let d = kv.heads * kv.d_k;
    let nd = q.len() / d.max(1) * d;
    let (level_k, level_v) = (d * key_stride(kv.n_keys), d * kv.n_keys);
    let third = scratch.len() / 3;
    let (out0, out12) = out[..3 * nd].split_at_mut(nd);
    let (out1, out2) = out12.split_at_mut(nd);
    let (sc0, sc12) = scratch[..3 * third].split_at_mut(third);
    let (sc1, sc2) = sc12.split_at_mut(third);
    let mut levels = [(out0, sc0), (out1, sc1), (out2, sc2)];
    let macs = 2 * nd * kv.n_keys; // scores and weighted sums
    k.for_each_mut(&mut levels, macs, PAR_MIN_F32_MACS, &|lvl, (out, sc)| {
        let kv_lvl = HeadKv {
            kt: &kv.kt[lvl * level_k..(lvl + 1) * level_k],
            v: &kv.v[lvl * level_v..(lvl + 1) * level_v],
            ..kv
        };
        k.vectorised(
            #[inline(always)]
            || attend_cross(k, &q[..nd], kv_lvl, sc, out),
        )
    });
}

/// Lays `rows [n, heads·d_k]` (keys or values, a row per key) out per head for
/// [`attend_cross`] into `out`: `transposed` gives `[heads, d_k, key_stride(n)]` (keys, each
/// row's columns past `n` zero), otherwise `[heads, n, d_k]` (values).
pub fn to_heads(
    rows: &[f32],
    n: usize,
    heads: usize,
    d_k: usize,
    transposed: bool,
    out: &mut [f32],
) {
    let d = heads * d_k;
    if d == 0 {
        return;
    }
    let ks = key_stride(n);
    if transposed && ks > n {
        // the padding columns: finite, so no lane of a block computes with stale bits
        for row in out[..heads * d_k * ks].chunks_exact_mut(ks) {
            row[n..].fill(0.0);
        }
    }
    for (j, row) in rows[..n * d].chunks_exact(d).enumerate() {
        for h in 0..heads {
            let src = &row[h * d_k..(h + 1) * d_k];
            if transposed {
                let base = h * d_k * ks;
                for (c, &x) in src.iter().enumerate() {
                    out[base + c * ks + j] = x;
                }
            } else {
                let base = h * d_k * n;
                out[base + j * d_k..base + (j + 1) * d_k].copy_from_slice(src);
            }
        }
    }
}

/// The `1/√d_k` of the scores: `x / scale`, or `x · inv` bit for bit when `scale` is a power of
/// two (d_k = 64: 8), both the one rounding of the same real number — a multiply instead of a
/// divide.
struct Scale {
    scale: f32,
    inv: Option<f32>,
}

impl Scale {
    #[inline(always)]
    fn of(d_k: usize) -> Scale {
        let scale = crate::kernels::sqrtf(d_k as f32);
        let inv = (scale.is_normal() && scale.to_bits() & 0x007f_ffff == 0).then(|| 1.0 / scale);
        Scale { scale, inv }
    }

    /// `s[j] ← score(s[j] / √d_k, bias[j])` for a row of dots (the multiply hoisted out of the
    /// loop when it is exact, so the loop vectorises).
    #[inline(always)]
    fn scores(&self, s: &mut [f32], bias: &[f32]) {
        match self.inv {
            Some(inv) => {
                for (s, &b) in s.iter_mut().zip(bias) {
                    *s = score(*s * inv, b);
                }
            }
            None => {
                for (s, &b) in s.iter_mut().zip(bias) {
                    *s = score(*s / self.scale, b);
                }
            }
        }
    }
}

/// `s + bias` for a scaled dot `s = q·k / √d_k` ([`attend`]): −∞ for a masked key, whose dot
/// is not used.
#[inline(always)]
fn score(s: f32, bias: f32) -> f32 {
    // selects, not branches: eight scores vectorise
    let s = if bias == 0.0 { s } else { s + bias };
    if bias == f32::NEG_INFINITY {
        bias
    } else {
        s
    }
}

/// `out = Σ_j a_j · v(j)` (out overwritten; keys with `a_j = 0` skipped), summed over `j` in
/// order; `out` of 64 (COCO's d_k) is held in registers across the keys.
#[inline(always)]
fn weighted_sum<'v>(out: &mut [f32], a: &[f32], v: impl Fn(usize) -> &'v [f32]) {
    if out.len() == 64 {
        let mut acc = [0.0f32; 64];
        for (j, &aj) in a.iter().enumerate() {
            if aj == 0.0 {
                continue;
            }
            let vj = &v(j)[..64];
            for c in 0..64 {
                acc[c] += aj * vj[c];
            }
        }
        out.copy_from_slice(&acc);
    } else {
        out.fill(0.0);
        for (j, &aj) in a.iter().enumerate() {
            if aj == 0.0 {
                continue;
            }
            for (o, x) in out.iter_mut().zip(v(j)) {
                *o += aj * x;
            }
        }
    }
}

/// [`weighted_sum`] of two rows of weights over the same values, each output bit for bit
/// `weighted_sum`'s (its own sums, in the same order, its own zero weights skipped): each value
/// row is read once for both. Rows of 64 (COCO's d_k) keep both sums in registers; other
/// widths are two `weighted_sum` calls.
#[inline(always)]
fn weighted_sum2<'v>(out: [&mut [f32]; 2], a: [&[f32]; 2], v: impl Fn(usize) -> &'v [f32]) {
    let [o0, o1] = out;
    let [a0, a1] = a;
    if o0.len() != 64 || o1.len() != 64 {
        weighted_sum(o0, a0, &v);
        weighted_sum(o1, a1, &v);
        return;
    }
    let (mut s0, mut s1) = ([0.0f32; 64], [0.0f32; 64]);
    for (j, (&x0, &x1)) in a0.iter().zip(a1).enumerate() {
        let vj = &v(j)[..64];
        if x0 != 0.0 && x1 != 0.0 {
            for c in 0..64 {
                s0[c] += x0 * vj[c];
                s1[c] += x1 * vj[c];
            }
        } else {
            for (x, s) in [(x0, &mut s0), (x1, &mut s1)] {
                if x != 0.0 {
                    for c in 0..64 {
                        s[c] += x * vj[c];
                    }
                }
            }
        }
    }
    o0.copy_from_slice(&s0);
    o1.copy_from_slice(&s1);
}

/// Most query rows [`attend_rows`] takes at a time (their head slices share the L1 with one
/// key or value row).
pub const GROUP: usize = 8;

/// How [`attend_rows`] and [`attend_cross`] split a scratch of `len` floats: `(hc, g)`, the
/// scores of `hc` heads (all of them when a row of every head fits) for `g ≤ GROUP` query rows
/// at a time, `hc · g · n_keys ≤ len` whenever `len ≥ n_keys`. Every score row is computed
/// the same way whatever the split; more rows per [`crate::math::softmax_rows`] call put more
/// of them in lockstep and make its exps one longer vector run (eight heads of a 10-key
/// self-attention row: 80 exps, not eight runs of 10).
#[inline(always)]
fn blocking(len: usize, heads: usize, n_keys: usize) -> (usize, usize) {
    let n = n_keys.max(1);
    let hc = (len / n).clamp(1, heads.max(1));
    (hc, (len / (hc * n)).clamp(1, GROUP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{dot_f32, Kernels};
    extern crate std;
    use std::vec::Vec;

    /// A small deterministic generator (no dependencies in the no_std core's unit tests).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// Grouped rows (every group size, odd head widths, masked and multiplicity-weighted keys)
    /// give the bits of one query at a time, with and without the vector unit enabled.
    #[test]
    fn grouped_rows_and_vectorised_code_match_one_query_at_a_time() {
        for (heads, d_k) in [(8, 64), (4, 16), (2, 13), (1, 8)] {
            let d = heads * d_k;
            for n_q in 1..=9 {
                for n_keys in [1usize, 7, 51] {
                    let seed = (d * 100 + n_q * 10 + n_keys) as u32;
                    let q = values(n_q * d, seed);
                    let k = values(n_keys * d, seed + 1);
                    let v = values(n_keys * d, seed + 2);
                    let bias = |j: usize| match j % 5 {
                        3 => f32::NEG_INFINITY,
                        4 => 1.5f32.ln(),
                        _ => 0.0,
                    };
                    let key = |j: usize| &k[j * d..(j + 1) * d];
                    let value = |j: usize| &v[j * d..(j + 1) * d];
                    // the definition, one query and one head at a time
                    let mut want = std::vec![0f32; n_q * d];
                    let mut sc = std::vec![0f32; n_keys];
                    let scale = libm::sqrtf(d_k as f32);
                    for i in 0..n_q {
                        for h in 0..heads {
                            let hs = h * d_k..(h + 1) * d_k;
                            let qh = &q[i * d + hs.start..i * d + hs.end];
                            for (j, s) in sc.iter_mut().enumerate() {
                                let b = bias(j);
                                *s = if b == f32::NEG_INFINITY {
                                    b
                                } else {
                                    let s = dot_f32(qh, &key(j)[hs.clone()]) / scale;
                                    if b == 0.0 {
                                        s
                                    } else {
                                        s + b
                                    }
                                };
                            }
                            crate::math::softmax(&mut sc);
                            let oh = &mut want[i * d + hs.start..i * d + hs.end];
                            for (j, &a) in sc.iter().enumerate() {
                                if a != 0.0 {
                                    for (o, x) in oh.iter_mut().zip(&value(j)[hs.clone()]) {
                                        *o += a * x;
                                    }
                                }
                            }
                        }
                    }
                    // scratch for one head of one row up to every head of GROUP rows
                    let sizes = [1, 3, GROUP, heads * GROUP].into_iter();
                    let runs = sizes.flat_map(|m| {
                        Kernels::available()
                            .filter_map(Kernels::with_isa)
                            .map(move |k| (m, k))
                    });
                    for (m, kernels) in runs {
                        let mut scratch = std::vec![0f32; m * n_keys];
                        let mut got = std::vec![0f32; n_q * d];
                        kernels.vectorised(|| {
                            attend_rows(
                                &kernels,
                                &q,
                                n_q,
                                heads,
                                d_k,
                                n_keys,
                                key,
                                value,
                                bias,
                                &mut scratch,
                                &mut got,
                            )
                        });
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{heads}×{d_k}, {n_q} rows, {n_keys} keys, scratch {m}, {kernels:?}"
                        );
                    }
                }
            }
        }
    }

    /// One query block through [`attend_rows`] (keys and values as rows) and [`attend_cross`]
    /// (the same keys and values laid out per head): `(attend_rows', attend_cross')` outputs.
    fn rows_and_cross(
        kernels: &Kernels,
        q: &[f32],
        (heads, d_k, n_keys): (usize, usize, usize),
        (k, v, bias): (&[f32], &[f32], &[f32]),
        scratch_len: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = heads * d_k;
        let n_q = q.len() / d;
        // NaN where `to_heads` writes nothing: its padding columns must be zeroed
        let mut kt = std::vec![f32::NAN; key_stride(n_keys) * d];
        let mut vh = std::vec![0f32; n_keys * d];
        to_heads(k, n_keys, heads, d_k, true, &mut kt);
        assert!(
            kt.iter().all(|x| x.is_finite()),
            "{n_keys} keys: padding left unset"
        );
        to_heads(v, n_keys, heads, d_k, false, &mut vh);
        let mut scratch = std::vec![0f32; scratch_len];
        let (mut want, mut got) = (std::vec![0f32; n_q * d], std::vec![0f32; n_q * d]);
        kernels.vectorised(|| {
            attend_rows(
                kernels,
                q,
                n_q,
                heads,
                d_k,
                n_keys,
                |j| &k[j * d..(j + 1) * d],
                |j| &v[j * d..(j + 1) * d],
                |j| bias[j],
                &mut scratch,
                &mut want,
            );
            let kv = HeadKv {
                heads,
                d_k,
                kt: &kt,
                v: &vh,
                bias,
                n_keys,
            };
            attend_cross(kernels, q, kv, &mut scratch, &mut got);
        });
        (want, got)
    }

    /// Keys and values laid out per head ([`to_heads`]) give [`attend_rows`]'s bits on every
    /// kernel path: no keys, key counts around each block width (1, 4, 8, 16), odd head
    /// widths, masked and multiplicity-weighted keys, every group size.
    #[test]
    fn cross_layout_matches_attend_rows_bit_for_bit() {
        for (heads, d_k) in [(8, 64), (4, 16), (2, 13), (1, 8), (3, 5)] {
            let d = heads * d_k;
            for n_keys in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 50] {
                for n_q in [1usize, 5, 7, 9] {
                    let seed = (d * 1000 + n_keys * 10 + n_q) as u32;
                    let q = values(n_q * d, seed);
                    let k = values(n_keys * d, seed + 1);
                    let v = values(n_keys * d, seed + 2);
                    let bias: Vec<f32> = (0..n_keys)
                        .map(|j| match j % 7 {
                            3 => f32::NEG_INFINITY,
                            5 => 2.5f32.ln(),
                            _ => 0.0,
                        })
                        .collect();
                    for kernels in Kernels::available().filter_map(Kernels::with_isa) {
                        for group in [1usize, 3, GROUP] {
                            let (want, got) = rows_and_cross(
                                &kernels,
                                &q,
                                (heads, d_k, n_keys),
                                (&k, &v, &bias),
                                group * n_keys,
                            );
                            let same = got
                                .iter()
                                .zip(&want)
                                .all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(
                                same,
                                "{heads}×{d_k}, {n_keys} keys, {n_q} rows, group {group}, {kernels:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Rows whose weights vanish on different keys: each row skips its own zero weights (an
    /// infinite value behind a zero weight must not reach that row: 0·∞ is NaN), on every path,
    /// the two-row weighted sums of AVX-512 included.
    #[test]
    fn cross_rows_skip_their_own_zero_weights() {
        let (heads, d_k, n_keys, n_q) = (8, 64, 50, 5);
        let d = heads * d_k;
        let mut q = values(n_q * d, 11);
        // rows 1 and 2 sharpened a thousandfold: most of their weights underflow to exactly 0,
        // where rows 0 and 3 (their partners in two-row passes) have none
        for x in &mut q[d..3 * d] {
            *x *= 1000.0;
        }
        let mut k = values(n_keys * d, 12);
        let mut v = values(n_keys * d, 13);
        // key 7 points away from row 1 (weight 0 there, not in row 0) and carries an ∞
        for c in 0..d {
            k[7 * d + c] = -q[d + c].signum() * 2.0;
        }
        v[7 * d + 3] = f32::INFINITY;
        let bias = std::vec![0f32; n_keys];
        for kernels in Kernels::available().filter_map(Kernels::with_isa) {
            let scratch = GROUP * heads * n_keys;
            let (want, got) =
                rows_and_cross(&kernels, &q, (heads, d_k, n_keys), (&k, &v, &bias), scratch);
            // the ∞ reaches row 0 (head 0, element 3) and not row 1
            assert!(!got[3].is_finite(), "{kernels:?}: row 0 {}", got[3]);
            assert!(
                got[d..2 * d].iter().all(|x| x.is_finite()),
                "{kernels:?}: row 1"
            );
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{kernels:?}");
        }
    }

    /// A key standing for c equal keys with bias ln c attends like the c keys themselves.
    #[test]
    fn multiplicity_bias_equals_repeated_keys() {
        let (heads, d_k, c) = (2, 8, 7);
        let d = heads * d_k;
        let q = values(d, 1);
        let k = values(3 * d, 2);
        let v = values(3 * d, 3);
        // keys 0, 1 and c copies of key 2
        let mut sc = std::vec![0f32; 2 + c];
        let mut want = std::vec![0f32; d];
        attend(
            &Kernels::detect(),
            &q,
            heads,
            d_k,
            2 + c,
            |j| &k[j.min(2) * d..(j.min(2) + 1) * d],
            |j| &v[j.min(2) * d..(j.min(2) + 1) * d],
            |_| 0.0,
            &mut sc,
            &mut want,
        );
        let mut got = std::vec![0f32; d];
        attend(
            &Kernels::detect(),
            &q,
            heads,
            d_k,
            3,
            |j| &k[j * d..(j + 1) * d],
            |j| &v[j * d..(j + 1) * d],
            |j| if j == 2 { libm::logf(c as f32) } else { 0.0 },
            &mut sc,
            &mut got,
        );
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
