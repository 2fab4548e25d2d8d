//! Position-wise feed-forward block (docs/SPEC.md §5.3, §6.6), post-norm:
//! `out = LN( x + W_2·ReLU(W_1·x + b_1) + b_2 )`.

use super::{LayerNorm, Linear};
use crate::blob::{Blob, TensorKind};
use crate::kernels::{Kernels, QuantScratch};

/// The FFN of one encoder or decoder layer.
#[derive(Clone, Copy, Debug)]
pub struct PositionWiseFeedForward<'a> {
    pub fc1: Linear<'a>,
    pub fc2: Linear<'a>,
    pub layer_norm: LayerNorm<'a>,
}

/// `[fc1W, fc1B, fc2W, fc2B, lnG, lnB]`.
pub type FfKinds = [TensorKind; 6];

impl<'a> PositionWiseFeedForward<'a> {
    pub fn load(blob: &Blob<'a>, kinds: &FfKinds, layer: usize) -> Self {
        PositionWiseFeedForward {
            fc1: Linear::load(blob, kinds[0], Some(kinds[1]), layer),
            fc2: Linear::load(blob, kinds[2], Some(kinds[3]), layer),
            layer_norm: LayerNorm::load(blob, kinds[4], kinds[5], layer),
        }
    }

    /// `out[n, d] = LN(x + FFN(x))`; `hidden` holds `[n, F]`.
    #[inline(always)]
    pub fn forward(
        &self,
        k: &Kernels,
        x: &[f32],
        n: usize,
        hidden: &mut [f32],
        out: &mut [f32],
        qs: &mut QuantScratch,
    ) {
        let d = self.layer_norm.gamma.len();
        let f = self.fc1.w.rows;
        let hidden = &mut hidden[..n * f];
        let out = &mut out[..n * d];
        self.fc1.forward(k, x, n, hidden, qs); //          [n, F]
        crate::math::relu(hidden);
        self.fc2.forward(k, hidden, n, out, qs); //        [n, d]
        for (o, xi) in out.iter_mut().zip(&x[..n * d]) {
            *o += xi; //                                   residual on the block input
        }
        self.layer_norm.forward_rows(k, out);
    }
}
