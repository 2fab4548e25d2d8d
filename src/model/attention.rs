//! Multi-head scaled dot-product attention (paper §3.1, spec §3.1), post-norm:
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
use crate::kernels::dot_f32;

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
/// `bias(j)` is −∞ for a masked key (its score is not computed), `ln c` for a key that stands
/// for `c` identical keys (`c·exp(s) = exp(s + ln c)`), 0 otherwise. `key(j)` and `value(j)`
/// return full `d`-wide rows; `scores` holds at least `n_keys` values.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn attend<'k>(
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
    attend_rows(q, 1, heads, d_k, n_keys, key, value, bias, scores, out);
}

/// [`attend`] for `n_q` query rows `q [n_q, d]` over the same keys, into `out [n_q, d]`, with
/// the same arithmetic for every score and output (bit for bit), in another order: head by
/// head, up to [`GROUP`] rows at a time, each key and value row is read once for all rows of
/// the group (rows of `d` floats put one head's keys 4·d bytes apart, which the L1 cannot hold
/// for many keys at once: a pass per query would stream them again).
///
/// `scratch` holds at least `n_keys` values; with `g · n_keys` it takes `g` rows at a time.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn attend_rows<'k>(
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
    let scale = libm::sqrtf(d_k as f32);
    let group = (scratch.len() / n_keys.max(1)).clamp(1, GROUP);
    let mut i0 = 0;
    while i0 < n_q {
        let g = group.min(n_q - i0);
        for h in 0..heads {
            let hs = h * d_k..(h + 1) * d_k;
            let sc = &mut scratch[..g * n_keys];
            for j in 0..n_keys {
                let b = bias(j);
                if b == f32::NEG_INFINITY {
                    for r in 0..g {
                        sc[r * n_keys + j] = f32::NEG_INFINITY;
                    }
                    continue;
                }
                let kj = &key(j)[hs.clone()];
                for r in 0..g {
                    let qh = &q[(i0 + r) * d + hs.start..(i0 + r) * d + hs.end];
                    let s = dot_f32(qh, kj) / scale;
                    sc[r * n_keys + j] = if b == 0.0 { s } else { s + b };
                }
            }
            for r in 0..g {
                crate::math::softmax(&mut sc[r * n_keys..(r + 1) * n_keys]);
                out[(i0 + r) * d + hs.start..(i0 + r) * d + hs.end].fill(0.0);
            }
            for j in 0..n_keys {
                let vj = &value(j)[hs.clone()];
                for r in 0..g {
                    let a = sc[r * n_keys + j];
                    if a == 0.0 {
                        continue;
                    }
                    let oh = &mut out[(i0 + r) * d + hs.start..(i0 + r) * d + hs.end];
                    for (o, v) in oh.iter_mut().zip(vj) {
                        *o += a * v;
                    }
                }
            }
        }
        i0 += g;
    }
}

/// Most query rows [`attend_rows`] takes at a time (their head slices share the L1 with one
/// key or value row).
pub const GROUP: usize = 8;
