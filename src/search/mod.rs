//! Decoding: the reference's beam search ([`beam`]), greedy decoding ([`greedy`]), and
//! teacher-forced scoring ([`score`]). All three share [`M2::encode`] and the incremental
//! decoder step.

pub mod beam;
pub mod greedy;

pub use beam::{beam_search, Beam, BeamOutput, SearchOptions, StepEvent};
pub use greedy::{greedy, GreedyOutput};

use crate::model::decoder::StepRow;
use crate::model::{EngineError, M2};
use crate::plan::MAX_STEPS;
use crate::workspace::Workspace;

impl<'a> M2<'a> {
    /// Run the encoder on one image's `features [n, d_in]` (1 ≤ n ≤ max_regions; zero-padded
    /// to max_regions as the reference's loader does) and precompute the decoder's
    /// cross-attention keys and values. Afterwards [`Workspace::encoder_row`] and
    /// [`Workspace::region_masked`] give the encoder's results.
    pub fn encode(&self, features: &[f32], ws: &mut Workspace) -> Result<(), EngineError> {
        self.check_plan(ws.plan(), 1, 1)?;
        let d_in = self.cfg.d_in as usize;
        let max = self.cfg.max_regions as usize;
        if !features.len().is_multiple_of(d_in) {
            return Err(EngineError::FeatureShape {
                len: features.len(),
                d_in,
            });
        }
        let n = features.len() / d_in;
        if n == 0 {
            return Err(EngineError::NoRegions);
        }
        if n > max {
            return Err(EngineError::TooManyRegions { given: n, max });
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite {
                region: i / d_in,
                index: i % d_in,
            });
        }
        let plan = *ws.plan();
        {
            let (mut keep, mut s) = ws.encoder_parts();
            self.encoder
                .forward(&self.kernels, features, n, max, &mut keep, &mut s);
        }
        let (mut keep, mut st) = ws.decoder_parts();
        self.decoder
            .precompute_cross(&self.kernels, &mut keep, &mut st, &plan);
        Ok(())
    }

    /// Teacher-forced log-probabilities of `tokens` (`<bos>` first, `<pad>` after the caption)
    /// given one image: `out[t, w] = log p(w | tokens[..=t], image)`, `[T, V]`. Pad positions
    /// behave as in the reference's full-sequence forward pass (position 0, masked as keys,
    /// outputs zeroed so every word scores −ln V).
    pub fn score(
        &self,
        features: &[f32],
        tokens: &[u32],
        ws: &mut Workspace,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let t_len = tokens.len();
        if t_len == 0 {
            return Err(EngineError::Empty);
        }
        self.check_plan(ws.plan(), 1, t_len)?;
        let v = self.cfg.vocab as usize;
        if let Some((p, &id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &id)| id >= self.cfg.vocab)
        {
            return Err(EngineError::TokenOutOfRange {
                position: p,
                id,
                vocab: self.cfg.vocab,
            });
        }
        if out.len() < t_len * v {
            return Err(EngineError::OutputTooSmall {
                needed: t_len * v,
                given: out.len(),
            });
        }
        self.encode(features, ws)?;
        let plan = *ws.plan();
        let (mut keep, mut st) = ws.decoder_parts();
        let ancestry = [[0u8; MAX_STEPS]; 1];
        for (t, &token) in tokens.iter().enumerate() {
            let is_pad = token == self.cfg.pad;
            let row = StepRow {
                token,
                pos: if is_pad { 0 } else { t + 1 },
                q_ok: if is_pad { 0.0 } else { 1.0 },
            };
            st.key_pad[t * plan.beam] = if is_pad { 1.0 } else { 0.0 };
            self.decoder.step(
                &self.kernels,
                &[row],
                t,
                &ancestry,
                &mut keep,
                &mut st,
                &plan,
            );
            out[t * v..(t + 1) * v].copy_from_slice(&st.s.logits[..v]);
        }
        Ok(())
    }
}

/// The row fed at incremental step `t` (the reference's stateful mode: position `t + 1` for
/// every token, pad or not; `q_ok` still zero for `<pad>`).
pub(crate) fn incremental_row(token: u32, t: usize, pad: u32) -> StepRow {
    StepRow {
        token,
        pos: t + 1,
        q_ok: if token == pad { 0.0 } else { 1.0 },
    }
}
