//! The meshed decoder (paper §3.2, docs/SPEC.md §6), run incrementally: one step feeds one
//! token per beam (`n` rows) and appends each row's projected keys/values to the cache.
//!
//! ```text
//! x      = word_emb[w] + pos_emb[pos]                               [n, d]   (no √d scaling)
//! per layer:
//!   S    = LN( x + SelfAtt(x, cache) ) ⊙ q_ok                       [n, d]   causal + pad-masked keys
//!   C_i  = LN( S + CrossAtt(S, Enc_i) ) ⊙ q_ok,   i = 1..3          [n, d]   one shared module, 3 levels
//!   α_i  = σ( [S; C_i]·W_αiᵀ + b_αi )                               [n, d]   S first, C_i second
//!   G    = (α_1⊙C_1 + α_2⊙C_2 + α_3⊙C_3) / √3 ⊙ q_ok                [n, d]
//!   x    = LN( G + FFN(G) ) ⊙ q_ok                                  [n, d]   residual is G, not S
//! logp   = log_softmax( x·W_vocabᵀ )                                [n, V]   no bias
//! ```
//! The cross-attention keys and values of the three encoder levels depend only on the image,
//! so [`MeshedDecoder::precompute_cross`] computes them once per image and decoder layer; the
//! reference recomputes them for every beam at every step (docs/SPEC.md §7.2).

use super::attention::{
    attend, attend_levels, to_heads, HeadKv, MultiHeadAttention, DECODER_CROSS, DECODER_SELF,
};
use super::feed_forward::{FfKinds, PositionWiseFeedForward};
use super::Linear;
use crate::blob::{Blob, Matrix, TensorKind as K};
use crate::config::MAX_DEC_LAYERS;
use crate::kernels::Kernels;
use crate::plan::{key_stride, Plan, MAX_STEPS};
use crate::workspace::{DecoderState, Persistent};

const DEC_FF: FfKinds = [
    K::DecFf1W,
    K::DecFf1B,
    K::DecFf2W,
    K::DecFf2B,
    K::DecFfLnG,
    K::DecFfLnB,
];

/// One meshed decoder layer.
#[derive(Clone, Copy, Debug)]
pub struct MeshedDecoderLayer<'a> {
    pub self_att: MultiHeadAttention<'a>,
    /// The single cross-attention module, applied to each encoder level.
    pub enc_att: MultiHeadAttention<'a>,
    /// `fc_alpha1..3`: `[d, 2d]` gates.
    pub fc_alpha: [Linear<'a>; 3],
    pub pwff: PositionWiseFeedForward<'a>,
}

/// The decoder: embeddings, layers, vocabulary projection.
#[derive(Clone, Debug)]
pub struct MeshedDecoder<'a> {
    pub word_emb: Matrix<'a>,
    /// Learned (in practice random, docs/SPEC.md Q1) positional table `[pos_rows, d]`.
    pub pos_emb: &'a [f32],
    pub layers: heapless::Vec<MeshedDecoderLayer<'a>, MAX_DEC_LAYERS>,
    /// `decoder.fc`, no bias `[V, d]`.
    pub fc: Linear<'a>,
}

/// One row of a decoder step.
#[derive(Clone, Copy, Debug)]
pub struct StepRow {
    /// Token fed at this step.
    pub token: u32,
    /// Position (1-based; 0 for a pad token in teacher forcing).
    pub pos: usize,
    /// `q_ok`: 0.0 when the token is `<pad>`, else 1.0.
    pub q_ok: f32,
}

impl<'a> MeshedDecoder<'a> {
    pub fn load(blob: &Blob<'a>) -> Self {
        let n = blob.config().n_dec as usize;
        let mut layers = heapless::Vec::new();
        for l in 0..n.min(MAX_DEC_LAYERS) {
            let alpha = |w, b| Linear::load(blob, w, Some(b), l);
            let _ = layers.push(MeshedDecoderLayer {
                self_att: MultiHeadAttention::load(blob, &DECODER_SELF, l),
                enc_att: MultiHeadAttention::load(blob, &DECODER_CROSS, l),
                fc_alpha: [
                    alpha(K::Alpha1W, K::Alpha1B),
                    alpha(K::Alpha2W, K::Alpha2B),
                    alpha(K::Alpha3W, K::Alpha3B),
                ],
                pwff: PositionWiseFeedForward::load(blob, &DEC_FF, l),
            });
        }
        MeshedDecoder {
            word_emb: blob.matrix(K::WordEmb, 0),
            pos_emb: blob.vector(K::PosEmb, 0),
            layers,
            fc: Linear {
                w: blob.matrix(K::VocabW, 0),
                b: None,
            },
        }
    }

    /// Cross-attention keys and values of every layer for the three encoder levels, computed
    /// once per image: `K[l, i] = Enc_i·W_kᵀ + b_k` `[rows, d]` (and likewise `V`), stored per
    /// head for [`attend_cross`](super::attention::attend_cross): block `(l, i)` of `cross_k`
    /// is `[h, d_k, key_stride(rows)]` (each head's keys transposed, rows padded to
    /// [`crate::plan::key_stride`]), of `cross_v` `[h, rows, d_k]`. `st.logits` (dead until
    /// the first step) holds one level while it is laid out.
    pub fn precompute_cross(
        &self,
        k: &Kernels,
        keep: &mut Persistent,
        st: &mut DecoderState,
        plan: &Plan,
    ) {
        let r = *keep.rows;
        let n = 3 * r; // the three levels are contiguous: one [3·rows, d] batch
        let (size, level) = (n * plan.d, r * plan.d);
        let level_k = key_stride(r) * plan.d; // a level's keys laid out per head
        for (l, layer) in self.layers.iter().enumerate() {
            let enc = &keep.enc_out[..size];
            let att = &layer.enc_att;
            for (fc, dst, laid, transposed) in [
                (&att.fc_k, &mut *st.cross_k, level_k, true),
                (&att.fc_v, &mut *st.cross_v, level, false),
            ] {
                let dst = &mut dst[l * 3 * laid..(l + 1) * 3 * laid];
                fc.forward(k, enc, n, dst, &mut keep.qs); //                              [3·rows, d]
                for lvl in (0..3).rev() {
                    // the last level first: level i's layout (from i·laid) covers only rows of
                    // levels ≥ i (from i·level), whose rows were copied out before
                    let rows = &mut st.logits[..level];
                    rows.copy_from_slice(&dst[lvl * level..(lvl + 1) * level]);
                    let block = &mut dst[lvl * laid..(lvl + 1) * laid];
                    to_heads(rows, r, att.heads, att.d_k, transposed, block);
                }
            }
        }
    }

    /// One decoder step at step `t` (0-based) for `rows.len()` rows; row `i` lives in cache slot
    /// `i`, and for earlier steps `s < t` its keys are in slot `ancestry[i][s]`. The caller has
    /// written `key_pad[t, i]` (the engine calls this through [`M2::step`](super::M2::step),
    /// the one place that builds the rows and writes `key_pad`). Leaves the log-probabilities
    /// in `st.logits [n, V]`.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub fn step(
        &self,
        k: &Kernels,
        rows: &[StepRow],
        t: usize,
        ancestry: &[[u8; MAX_STEPS]],
        keep: &mut Persistent,
        st: &mut DecoderState,
        plan: &Plan,
    ) {
        k.vectorised(
            #[inline(always)]
            || {
                let (n, d, bw, l_max, r) =
                    (rows.len(), plan.d, plan.beam, plan.max_len, *keep.rows);
                let nd = n * d;
                let s = &mut *st;

                // x = word_emb[w] + pos_emb[pos]                                          [n, d]
                for (i, row) in rows.iter().enumerate() {
                    let x = &mut s.x[i * d..(i + 1) * d];
                    self.word_emb.row_to_f32(row.token as usize, x);
                    let pe = self
                        .pos_emb
                        .get(row.pos * d..(row.pos + 1) * d)
                        .unwrap_or(&[]);
                    for (xv, p) in x.iter_mut().zip(pe) {
                        *xv += p;
                    }
                }

                for (l, layer) in self.layers.iter().enumerate() {
                    // ---- masked self-attention over this beam's history ---------------------------
                    let sa = &layer.self_att;
                    let at = |step: usize| ((l * l_max + step) * bw) * d;
                    sa.fc_q.forward(k, s.x, n, s.q, &mut keep.qs); //                              [n, d]
                    sa.fc_k
                        .forward(k, s.x, n, &mut s.self_k[at(t)..at(t) + nd], &mut keep.qs); // cache[l, t]
                    sa.fc_v
                        .forward(k, s.x, n, &mut s.self_v[at(t)..at(t) + nd], &mut keep.qs);
                    let (ck, cv, pad) = (&*s.self_k, &*s.self_v, &*s.key_pad);
                    for i in 0..n {
                        // row i's keys, values and masks along its ancestry, gathered once for
                        // all heads: step j's are in cache slot i (this step) or ancestry[i][j]
                        let (mut keys, mut vals) = ([&[][..]; MAX_STEPS], [&[][..]; MAX_STEPS]);
                        let mut bias = [0.0f32; MAX_STEPS];
                        for j in 0..=t {
                            let slot = if j == t { i } else { ancestry[i][j] as usize };
                            keys[j] = &ck[at(j) + slot * d..][..d];
                            vals[j] = &cv[at(j) + slot * d..][..d];
                            if pad[j * bw + slot] != 0.0 {
                                bias[j] = f32::NEG_INFINITY;
                            }
                        }
                        attend(
                            k,
                            &s.q[i * d..(i + 1) * d],
                            sa.heads,
                            sa.d_k,
                            t + 1,
                            |j| keys[j],
                            |j| vals[j],
                            |j| bias[j],
                            s.scores,
                            &mut s.att[i * d..(i + 1) * d],
                        );
                    }
                    // S = LN(x + att·W_oᵀ + b_o) ⊙ q_ok                                       [n, d]
                    sa.fc_o.forward(k, s.att, n, s.s, &mut keep.qs);
                    add_norm_mask(k, &mut s.s[..nd], &s.x[..nd], sa, rows);

                    // ---- cross-attention to the three encoder levels ------------------------------
                    let ca = &layer.enc_att;
                    ca.fc_q.forward(k, s.s, n, s.cq, &mut keep.qs); //  one query for all levels   [n, d]
                    let (layer_k, layer_v) = (3 * key_stride(r) * d, 3 * r * d);
                    let kv = HeadKv {
                        heads: ca.heads,
                        d_k: ca.d_k,
                        kt: &s.cross_k[l * layer_k..(l + 1) * layer_k],
                        v: &s.cross_v[l * layer_v..(l + 1) * layer_v],
                        bias: &keep.key_bias[..r],
                        n_keys: r,
                    };
                    // `hidden`, dead until the FFN: room for the scores of several rows
                    attend_levels(k, &s.cq[..nd], kv, s.hidden, s.att3);
                    // C_i = LN(S + att_i·W_oᵀ + b_o) ⊙ q_ok; the 3 levels as one [3n, d] batch
                    ca.fc_o.forward(k, s.att3, 3 * n, s.c3, &mut keep.qs);
                    add_norm_mask(k, &mut s.c3[..3 * nd], &s.s[..nd], ca, rows);

                    // ---- gates: G = Σ σ(W_αi·[S; C_i] + b) ⊙ C_i / √3 ⊙ q_ok ------------------------
                    let g = &mut s.g[..nd];
                    g.fill(0.0);
                    for i in 0..n {
                        // S, the first half of every level's [S; C_i]
                        s.cat[2 * i * d..(2 * i + 1) * d].copy_from_slice(&s.s[i * d..(i + 1) * d]);
                    }
                    for (lvl, fc_alpha) in layer.fc_alpha.iter().enumerate() {
                        let c = &s.c3[lvl * nd..(lvl + 1) * nd];
                        for i in 0..n {
                            s.cat[(2 * i + 1) * d..(2 * i + 2) * d]
                                .copy_from_slice(&c[i * d..(i + 1) * d]);
                        }
                        fc_alpha.forward(k, s.cat, n, s.alpha, &mut keep.qs); //                   [n, d]
                        for ((gv, a), cv) in g.iter_mut().zip(&s.alpha[..nd]).zip(c) {
                            *gv += cv * crate::math::sigmoid(*a);
                        }
                    }
                    let sqrt3 = crate::kernels::sqrtf(3.0);
                    for (i, row) in rows.iter().enumerate() {
                        for gv in &mut g[i * d..(i + 1) * d] {
                            *gv = *gv / sqrt3 * row.q_ok;
                        }
                    }

                    // ---- x = LN(G + FFN(G)) ⊙ q_ok (x, the layer's input, is dead since S) ----------
                    layer.pwff.forward(k, s.g, n, s.hidden, s.x, &mut keep.qs);
                    for (i, row) in rows.iter().enumerate() {
                        for xv in &mut s.x[i * d..(i + 1) * d] {
                            *xv *= row.q_ok;
                        }
                    }
                }

                // logp = log_softmax(x·W_vocabᵀ)                                               [n, V]
                let v = self.fc.w.rows;
                self.fc.forward(k, s.x, n, s.logits, &mut keep.qs);
                k.log_softmax_rows(&mut s.logits[..n * v], v);
            },
        )
    }
}

/// `out ← LN(residual + out) ⊙ q_ok` row by row (the post-norm AddNorm of an attention block)
/// on each `[n, d]` block of `out` (the cross-attention's three levels share the residual and
/// are normalised as one `[3n, d]` batch: same bits, more rows in lockstep).
#[inline(always)]
fn add_norm_mask(
    k: &Kernels,
    out: &mut [f32],
    residual: &[f32],
    att: &MultiHeadAttention,
    rows: &[StepRow],
) {
    let d = att.layer_norm.gamma.len();
    let nd = rows.len() * d;
    if nd == 0 {
        return;
    }
    let whole = out.len() / nd * nd;
    let out = &mut out[..whole];
    for block in out.chunks_exact_mut(nd) {
        for (ov, rv) in block.iter_mut().zip(residual) {
            *ov += rv;
        }
    }
    att.layer_norm.forward_rows(k, out);
    for block in out.chunks_exact_mut(nd) {
        for (i, row) in rows.iter().enumerate() {
            for ov in &mut block[i * d..(i + 1) * d] {
                *ov *= row.q_ok;
            }
        }
    }
}
