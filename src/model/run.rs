//! The model's API over a [`Workspace`]: [`M2::encode`] (the encoder, [`M2::encode_regions`],
//! then the decoder's cross-attention keys and values, [`M2::cross_kv`] — callable apart to
//! time the phases), one incremental decoder step ([`M2::step`]) and teacher-forced scoring
//! ([`M2::score`]). The searches in [`crate::search`] only keep beams on top of [`M2::step`].

use super::decoder::StepRow;
use super::{EngineError, M2};
use crate::plan::MAX_STEPS;
use crate::workspace::Workspace;

/// Log-probabilities per block of [`any_nan_or_inf`].
const CHECK_BLOCK: usize = 256;

/// Whether any value is NaN or +∞ (−∞ is not: a word of probability 0). One pass, in blocks
/// folded without an early exit (so they vectorise; `any` alone compiles to a branch per value:
/// 0.23 M cycles a COCO decode step on the Pi 4's core, `bench/rest_profile.py`) and one branch
/// per block.
fn any_nan_or_inf(x: &[f32]) -> bool {
    x.chunks(CHECK_BLOCK).any(|b| {
        b.iter()
            .fold(false, |bad, &l| bad | l.is_nan() | (l == f32::INFINITY))
    })
}

/// How a decoder step places its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Positions {
    /// The reference's stateful (beam search, greedy) mode: position `t + 1` for every token
    /// at step `t`, `<pad>` included.
    Incremental,
    /// The reference's full-sequence forward pass (scoring): `<pad>` tokens at position 0.
    TeacherForced,
}

impl<'a> M2<'a> {
    /// Run the encoder on one image's `features [n, d_in]` (1 ≤ n ≤ max_regions; zero-padded
    /// to max_regions as the reference's loader does) and precompute the decoder's
    /// cross-attention keys and values: [`M2::encode_regions`], then [`M2::cross_kv`].
    /// Afterwards [`Workspace::encoder_row`] and [`Workspace::region_masked`] give the
    /// encoder's results, and the workspace is ready for [`M2::step`] and
    /// [`crate::search::beam_search_encoded`].
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
        // Finite inputs can still overflow (|x| near f32::MAX, or NaN/inf weights): the
        // decoder must not run on NaN memory (every image would get the same caption).
        if let Some(level) = (0..3).find(|&l| ws.encoder_output(l).iter().any(|v| !v.is_finite())) {
            return Err(EngineError::EncoderOverflow { level });
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

    /// One incremental decoder step (the reference's stateful mode) on the image encoded in
    /// `ws` by [`M2::encode`]; returns the log-probabilities `[n, V]` of the next word, row `i`
    /// for `fed[i]`.
    ///
    /// * `step`: the 0-based step `t`; the caller runs steps 0, 1, … in order (step `t`
    ///   attends to the keys steps `0..t` left in the cache): a step past the next is
    ///   [`EngineError::StepOutOfOrder`]; an earlier one may be run again (a new search).
    /// * `fed [n]`, 1 ≤ n ≤ the plan's beam: the token fed by each row at this step (`<bos>` at
    ///   step 0), at position `t + 1`; a `<pad>` is masked as a key for later steps and its
    ///   outputs are zeroed. Row `i` writes its keys and values into cache slot `i` of step `t`.
    /// * `ancestry [n][MAX_STEPS]`: `ancestry[i][s]` (s < t) is the cache slot that holds the
    ///   keys and values row `i`'s history wrote at step `s` (all zeros for a single row).
    ///
    /// Errors with [`EngineError::NotEncoded`] before an encode, [`EngineError::Empty`] for no
    /// rows, [`EngineError::PlanMismatch`] / [`EngineError::TooLong`] beyond the plan,
    /// [`EngineError::TokenOutOfRange`] (`position` is the row),
    /// [`EngineError::BadAncestry`], and [`EngineError::NonFiniteLogits`] when a log-prob is NaN.
    pub fn step<'w>(
        &self,
        ws: &'w mut Workspace<'_>,
        step: usize,
        fed: &[u32],
        ancestry: &[[u8; MAX_STEPS]],
    ) -> Result<&'w [f32], EngineError> {
        self.run_step(ws, step, fed, ancestry, Positions::Incremental)
    }

    /// [`M2::step`] with the token positions of `positions`. The only place that builds the
    /// decoder's rows and writes its key padding mask `key_pad [L, B]`.
    fn run_step<'w>(
        &self,
        ws: &'w mut Workspace<'_>,
        t: usize,
        fed: &[u32],
        ancestry: &[[u8; MAX_STEPS]],
        positions: Positions,
    ) -> Result<&'w [f32], EngineError> {
        let n = fed.len();
        self.check_plan(ws.plan(), n, t.saturating_add(1))?;
        if !ws.has_cross_kv() {
            return Err(EngineError::NotEncoded);
        }
        if t > ws.steps_done() {
            return Err(EngineError::StepOutOfOrder {
                step: t,
                next: ws.steps_done(),
            });
        }
        let plan = *ws.plan();
        if let Some((row, &id)) = fed.iter().enumerate().find(|(_, &id)| id >= self.cfg.vocab) {
            return Err(EngineError::TokenOutOfRange {
                position: row,
                id,
                vocab: self.cfg.vocab,
            });
        }
        if ancestry.len() != n {
            return Err(EngineError::BadAncestry {
                row: ancestry.len().min(n),
            });
        }
        if let Some(row) = ancestry
            .iter()
            .position(|a| a[..t].iter().any(|&slot| slot as usize >= plan.beam))
        {
            return Err(EngineError::BadAncestry { row });
        }
        ws.mark_step(t);
        let pad = self.cfg.pad;
        let mut rows = [StepRow {
            token: 0,
            pos: 0,
            q_ok: 0.0,
        }; crate::plan::MAX_BEAM];
        let (mut keep, mut st) = ws.decoder_parts();
        for (i, (&token, row)) in fed.iter().zip(&mut rows).enumerate() {
            let is_pad = token == pad;
            *row = StepRow {
                token,
                pos: match positions {
                    Positions::TeacherForced if is_pad => 0,
                    _ => t + 1,
                },
                q_ok: if is_pad { 0.0 } else { 1.0 },
            };
            st.key_pad[t * plan.beam + i] = if is_pad { 1.0 } else { 0.0 };
        }
        self.decoder.step(
            &self.kernels,
            &rows[..n],
            t,
            ancestry,
            &mut keep,
            &mut st,
            &plan,
        );
        let logits: &'w mut [f32] = st.logits;
        let lp = &logits[..n * self.cfg.vocab as usize];
        // NaN (or +inf) log-probs come from NaN/inf weights or an overflow in the step; −inf
        // is a word of probability 0 and stays a value.
        if any_nan_or_inf(lp) {
            return Err(EngineError::NonFiniteLogits { step: t });
        }
        Ok(lp)
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
        let ancestry = [[0u8; MAX_STEPS]; 1];
        for (t, &token) in tokens.iter().enumerate() {
            let lp = self.run_step(ws, t, &[token], &ancestry, Positions::TeacherForced)?;
            out[t * v..(t + 1) * v].copy_from_slice(lp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::any_nan_or_inf;

    /// A NaN or +∞ anywhere in a beam × vocabulary block is found, in every block position and
    /// tail; −∞, −0.0, subnormals and f32::MAX are values.
    #[test]
    fn nan_and_plus_infinity_anywhere_are_found() {
        let mut x = [0.0f32; 5 * 10201];
        for (i, v) in x.iter_mut().enumerate() {
            *v = match i % 7 {
                0 => f32::NEG_INFINITY,
                1 => -0.0,
                2 => f32::MIN_POSITIVE / 4.0,
                3 => f32::MAX,
                4 => f32::MIN,
                _ => -(i as f32),
            };
        }
        assert!(!any_nan_or_inf(&x));
        assert!(!any_nan_or_inf(&[]));
        for at in [0, 1, 255, 256, 257, 10_000, x.len() - 1] {
            for bad in [f32::NAN, -f32::NAN, f32::INFINITY] {
                let keep = x[at];
                x[at] = bad;
                assert!(any_nan_or_inf(&x), "{bad} at {at}");
                assert!(any_nan_or_inf(&x[at..at + 1]), "{bad} alone");
                x[at] = keep;
            }
        }
    }
}
