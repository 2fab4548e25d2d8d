//! Decoding: the reference's beam search ([`beam`]), greedy decoding ([`greedy`]), and
//! teacher-forced scoring ([`M2::score`]). All three share [`M2::encode`] — the encoder
//! ([`M2::encode_regions`]) then the cross-attention K/V ([`M2::cross_kv`]), callable apart to
//! time the phases — and the incremental decoder step.

pub mod beam;
pub mod greedy;

pub use beam::{beam_search, beam_search_encoded, Beam, BeamOutput, SearchOptions, StepEvent};
pub use greedy::{greedy, GreedyOutput};

use crate::model::decoder::StepRow;
use crate::model::{EngineError, M2};
use crate::plan::MAX_STEPS;
use crate::workspace::Workspace;

impl<'a> M2<'a> {
    /// Run the encoder on one image's `features [n, d_in]` (1 ≤ n ≤ max_regions; zero-padded
    /// to max_regions as the reference's loader does) and precompute the decoder's
    /// cross-attention keys and values: [`M2::encode_regions`], then [`M2::cross_kv`].
    /// Afterwards [`Workspace::encoder_row`] and [`Workspace::region_masked`] give the
    /// encoder's results, and the workspace is ready for [`beam_search_encoded`].
    pub fn encode(&self, features: &[f32], ws: &mut Workspace) -> Result<(), EngineError> {
        self.encode_regions(features, ws)?;
        self.cross_kv(ws)
    }

    /// The encoder alone: check `features [n, d_in]` (a whole number of rows,
    /// 1 ≤ n ≤ max_regions, all finite) and the workspace plan, then run the encoder and leave
    /// its output in the workspace ([`Workspace::is_encoded`]). The image held before is
    /// forgotten as soon as this starts, also when it fails. Follow with [`M2::cross_kv`]
    /// before decoding.
    pub fn encode_regions(&self, features: &[f32], ws: &mut Workspace) -> Result<(), EngineError> {
        ws.invalidate();
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
        {
            let (mut keep, mut s) = ws.encoder_parts();
            self.encoder
                .forward(&self.kernels, features, n, max, &mut keep, &mut s);
        }
        ws.mark_encoded();
        Ok(())
    }

    /// The decoder's per-image precompute: the cross-attention keys and values of every
    /// decoder layer over the three encoder levels, from the encoder output in the workspace.
    /// Errors with [`EngineError::NotEncoded`] unless [`M2::encode_regions`] has run on this
    /// workspace since it was last invalidated.
    pub fn cross_kv(&self, ws: &mut Workspace) -> Result<(), EngineError> {
        if !ws.is_encoded() {
            return Err(EngineError::NotEncoded);
        }
        self.check_plan(ws.plan(), 1, 1)?;
        let plan = *ws.plan();
        {
            let (mut keep, mut st) = ws.decoder_parts();
            self.decoder
                .precompute_cross(&self.kernels, &mut keep, &mut st, &plan);
        }
        ws.mark_cross_kv();
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
