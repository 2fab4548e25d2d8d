//! The memory-augmented encoder (paper §3.1, docs/SPEC.md §5).
//!
//! ```text
//! P    = LN_in( ReLU( X·W_inᵀ + b_in ) )                       X [R, d_in] → P [R, d]
//! mask = ( Σ_j P[r, j] == padding_value )                       docs/SPEC.md Q3: on P, not X
//! E_0  = P
//! A    = MemoryAugmentedAttention(E_l, E_l, mask)               [R, d]
//! E_l+1 = LN_ff( A + FFN(A) )                                   [R, d]
//! Enc  = [E_1, E_2, E_3]                                        [3, R, d]
//! ```
//! Images with fewer than `R = max_regions` regions are zero-padded, exactly like the
//! reference's loader. The `c` padding rows (trailing zero rows given, plus those implied by
//! passing fewer than R) are identical inputs, so they stay identical through every layer
//! (self-attention has no positions): one row is computed for all of them — a zero row
//! projects to `b_in` — and as a key it carries the bias `ln c` (`c` equal keys weigh
//! `c·exp(s) = exp(s + ln c)` in every softmax). An image with 10 regions encodes 11 rows,
//! not 50, with the reference's result.

use super::attention::{attend_rows, MemoryAugmentedAttention};
use super::feed_forward::PositionWiseFeedForward;
use super::{LayerNorm, Linear};
use crate::blob::{Blob, TensorKind as K};
use crate::kernels::Kernels;
use crate::workspace::{EncoderScratch, Persistent};

const ENC_FF: super::feed_forward::FfKinds = [
    K::EncFf1W,
    K::EncFf1B,
    K::EncFf2W,
    K::EncFf2B,
    K::EncFfLnG,
    K::EncFfLnB,
];

/// One encoder layer: memory-augmented self-attention, then the FFN.
#[derive(Clone, Copy, Debug)]
pub struct EncoderLayer<'a> {
    pub mhatt: MemoryAugmentedAttention<'a>,
    pub pwff: PositionWiseFeedForward<'a>,
}

/// The input projection and the three encoder layers.
#[derive(Clone, Copy, Debug)]
pub struct MemoryAugmentedEncoder<'a> {
    pub fc: Linear<'a>,
    pub layer_norm: LayerNorm<'a>,
    pub layers: [EncoderLayer<'a>; 3],
    /// The encoder's "padding_idx", compared with each row sum of `P`.
    pub padding_value: f32,
}

impl<'a> MemoryAugmentedEncoder<'a> {
    pub fn load(blob: &Blob<'a>) -> Self {
        let layer = |l| EncoderLayer {
            mhatt: MemoryAugmentedAttention::load(blob, l),
            pwff: PositionWiseFeedForward::load(blob, &ENC_FF, l),
        };
        MemoryAugmentedEncoder {
            fc: Linear::load(blob, K::EncInW, Some(K::EncInB), 0),
            layer_norm: LayerNorm::load(blob, K::EncInLnG, K::EncInLnB, 0),
            layers: [layer(0), layer(1), layer(2)],
            padding_value: blob.config().enc_pad_value,
        }
    }

    /// Encode `features [n, d_in]` (n ≤ R, zero-padded to R) into `keep.enc_out
    /// [3, rows, d]`, `keep.key_bias [rows]` and `keep.rows`. Shapes are checked by the caller.
    pub fn forward(
        &self,
        k: &Kernels,
        features: &[f32],
        n: usize,
        regions: usize,
        keep: &mut Persistent,
        s: &mut EncoderScratch,
    ) {
        k.vectorised(
            #[inline(always)]
            || {
                let d = self.layer_norm.gamma.len();
                let d_in = self.fc.w.cols;
                // regions up to the last non-zero row; the other `pad` of the R rows are padding
                let real = features[..n * d_in]
                    .chunks_exact(d_in)
                    .rposition(|row| row.iter().any(|&v| v != 0.0))
                    .map_or(0, |i| i + 1);
                let pad = regions - real;
                let r = real + usize::from(pad > 0); // distinct rows: the regions + one for the padding
                let rd = r * d;
                *keep.rows = r;

                // P = LN(ReLU(X·W_inᵀ + b_in)), the padding row = LN(ReLU(b_in))          [r, d]
                let p = &mut s.p[..rd];
                if real > 0 {
                    self.fc.forward(k, features, real, p, &mut keep.qs);
                }
                if pad > 0 {
                    let row = &mut p[real * d..];
                    match self.fc.b {
                        Some(b) => row.copy_from_slice(b),
                        None => row.fill(0.0),
                    }
                }
                crate::math::relu(p);
                self.layer_norm.forward_rows(k, p);

                // Key bias: −∞ where the reference masks a row (docs/SPEC.md Q3: row sum of P
                // equals the padding value), ln c for the row standing for c > 1 padding rows
                // (docs/SPEC.md §7.3), else 0.
                for (j, (b, row)) in keep.key_bias[..r]
                    .iter_mut()
                    .zip(p.chunks_exact(d))
                    .enumerate()
                {
                    *b = if crate::math::sum(row) == self.padding_value {
                        f32::NEG_INFINITY
                    } else if j == real && pad > 1 {
                        libm::logf(pad as f32)
                    } else {
                        0.0
                    };
                }

                for (l, layer) in self.layers.iter().enumerate() {
                    let (done, rest) = keep.enc_out.split_at_mut(l * rd);
                    let input: &[f32] = if l == 0 {
                        &s.p[..rd]
                    } else {
                        &done[(l - 1) * rd..]
                    };
                    let att = &layer.mhatt.mha;

                    att.fc_q.forward(k, input, r, s.q, &mut keep.qs); //                 [r, d]
                    att.fc_k.forward(k, input, r, s.k, &mut keep.qs); //                 [r, d]
                    att.fc_v.forward(k, input, r, s.v, &mut keep.qs); //                 [r, d]
                    let (keys, vals, bias) = (&s.k[..rd], &s.v[..rd], &keep.key_bias[..r]);
                    let (mk, mv) = (layer.mhatt.mem_k, layer.mhatt.mem_v);
                    // keys: r projected rows, then m memory slots (never masked)
                    attend_rows(
                        k,
                        &s.q[..rd],
                        r,
                        att.heads,
                        att.d_k,
                        r + mk.len() / d,
                        |j| {
                            if j < r {
                                &keys[j * d..(j + 1) * d]
                            } else {
                                &mk[(j - r) * d..(j - r + 1) * d]
                            }
                        },
                        |j| {
                            if j < r {
                                &vals[j * d..(j + 1) * d]
                            } else {
                                &mv[(j - r) * d..(j - r + 1) * d]
                            }
                        },
                        |j| if j < r { bias[j] } else { 0.0 },
                        s.hidden, // dead until the FFN: room for the scores of several rows
                        &mut s.att[..rd],
                    );
                    // A = LN(E_l + att·W_oᵀ + b_o)                                        [r, d]
                    att.fc_o.forward(k, s.att, r, s.a, &mut keep.qs);
                    for (a, x) in s.a[..rd].iter_mut().zip(input) {
                        *a += x;
                    }
                    att.layer_norm.forward_rows(k, &mut s.a[..rd]);
                    // E_l+1 = LN(A + FFN(A))                                               [r, d]
                    layer
                        .pwff
                        .forward(k, s.a, r, s.hidden, &mut rest[..rd], &mut keep.qs);
                }
            },
        )
    }
}
