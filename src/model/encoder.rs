//! The memory-augmented encoder (paper §3.1, spec §3.2).
//!
//! ```text
//! P    = LN_in( ReLU( X·W_inᵀ + b_in ) )                       X [R, d_in] → P [R, d]
//! mask = ( Σ_j P[r, j] == padding_value )                       quirk Q3: on P, not on X
//! E_0  = P
//! A    = MemoryAugmentedAttention(E_l, E_l, mask)               [R, d]
//! E_l+1 = LN_ff( A + FFN(A) )                                   [R, d]
//! Enc  = [E_1, E_2, E_3]                                        [3, R, d]
//! ```
//! Images with fewer than `R = max_regions` regions are zero-padded, exactly like the
//! reference's loader: a zero row projects to `b_in`, so padded rows are filled with the bias
//! instead of multiplying zeros.

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

    /// Encode `features [n, d_in]` (n ≤ R, zero-padded to R) into `keep.enc_out [3, R, d]`
    /// and `keep.mask [R]`. Shapes are checked by the caller.
    pub fn forward(
        &self,
        k: &Kernels,
        features: &[f32],
        n: usize,
        regions: usize,
        keep: &mut Persistent,
        s: &mut EncoderScratch,
    ) {
        let d = self.layer_norm.gamma.len();
        let r = regions;
        let rd = r * d;

        // P = LN(ReLU(X·W_inᵀ + b_in)), padded rows = LN(ReLU(b_in))            [R, d]
        let p = &mut s.p[..rd];
        self.fc.forward(k, features, n, p, &mut keep.qs);
        if let Some(b) = self.fc.b {
            for row in p[n * d..].chunks_exact_mut(d) {
                row.copy_from_slice(b);
            }
        }
        crate::math::relu(p);
        self.layer_norm.forward_rows(p);

        // Region mask on the row sums of P (quirk Q3).
        for (m, row) in keep.mask[..r].iter_mut().zip(p.chunks_exact(d)) {
            *m = if crate::math::sum(row) == self.padding_value {
                1.0
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

            att.fc_q.forward(k, input, r, s.q, &mut keep.qs); //                 [R, d]
            att.fc_k.forward(k, input, r, s.k, &mut keep.qs); //                 [R, d]
            att.fc_v.forward(k, input, r, s.v, &mut keep.qs); //                 [R, d]
            let (keys, vals, mask) = (&s.k[..rd], &s.v[..rd], &keep.mask[..r]);
            let (mk, mv) = (layer.mhatt.mem_k, layer.mhatt.mem_v);
            // keys: R projected regions, then m memory slots (never masked)
            attend_rows(
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
                |j| j < r && mask[j] != 0.0,
                s.hidden, // dead until the FFN: room for the scores of several rows
                &mut s.att[..rd],
            );
            // A = LN(E_l + att·W_oᵀ + b_o)                                        [R, d]
            att.fc_o.forward(k, s.att, r, s.a, &mut keep.qs);
            for (a, x) in s.a[..rd].iter_mut().zip(input) {
                *a += x;
            }
            att.layer_norm.forward_rows(&mut s.a[..rd]);
            // E_l+1 = LN(A + FFN(A))                                               [R, d]
            layer
                .pwff
                .forward(k, s.a, r, s.hidden, &mut rest[..rd], &mut keep.qs);
        }
    }
}
