//! Beam search exactly as the reference's `BeamSearch` (docs/SPEC.md §8):
//!
//! * step 0 expands the single `<bos>` parent into the `B` best words;
//! * at step t ≥ 1 every beam b proposes `c[b, w] = s_b + logp_b[w]`; a *finished* beam (one
//!   that has emitted `<eos>`) proposes only `c[b, 0] = s_b` (its frozen score, "extended" by
//!   word 0) and `−999` for every other word — so finished beams compete with live ones and
//!   can be pushed out for good;
//! * candidates are ranked over the beam-major flattening `b·V + w`, highest first, ties to the
//!   lower index (the reference's sort is unstable; exact ties are practically absent in f32);
//! * exactly `max_len` steps, no length normalisation; the answer is the best of the `B` beams.

use crate::model::{EngineError, M2};
use crate::plan::{MAX_BEAM, MAX_STEPS};
use crate::workspace::Workspace;

/// The reference's sentinel for a finished beam's non-zero extensions.
pub const FINISHED_SENTINEL: f32 = -999.0;

/// Beam size and caption length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchOptions {
    pub beam: usize,
    pub max_len: usize,
}

impl Default for SearchOptions {
    /// The reference's test.py: beam 5, 20 steps.
    fn default() -> Self {
        SearchOptions {
            beam: 5,
            max_len: 20,
        }
    }
}

/// One final hypothesis.
#[derive(Clone, Debug, PartialEq)]
pub struct Beam {
    /// `max_len` word ids (after `<eos>`, the filler word 0).
    pub tokens: heapless::Vec<u32, MAX_STEPS>,
    /// Log-probability of each chosen word; 0 once the beam had finished.
    pub logprobs: heapless::Vec<f32, MAX_STEPS>,
    /// Sum of log-probabilities (the ranking score).
    pub score: f32,
}

/// All beams, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct BeamOutput {
    pub beams: heapless::Vec<Beam, MAX_BEAM>,
}

impl BeamOutput {
    /// The answer (the highest-scoring beam).
    pub fn best(&self) -> Option<&Beam> {
        self.beams.first()
    }
}

/// What the streaming callback sees after each step.
#[derive(Clone, Copy, Debug)]
pub struct StepEvent<'e> {
    /// 0-based step just completed.
    pub step: usize,
    /// The currently best beam's words so far (`step + 1` ids).
    pub best_tokens: &'e [u32],
    /// Its score.
    pub best_score: f32,
}

/// Top-k of a stream of `(value, index)` candidates seen in increasing index order; ties keep
/// the earlier (lower) index ahead. NaN never enters. (Public for `m2 bench`, which times a
/// step's selection alone.)
#[derive(Clone, Debug)]
pub struct TopK {
    val: [f32; MAX_BEAM],
    idx: [usize; MAX_BEAM],
    len: usize,
    k: usize,
}

/// Candidates [`TopK::push_row`] tests against the current k-th value at a time.
const ROW_BLOCK: usize = 16;

impl TopK {
    /// An empty list of the best `k` (at most [`MAX_BEAM`]).
    pub fn new(k: usize) -> Self {
        let k = k.min(MAX_BEAM);
        TopK {
            val: [f32::NEG_INFINITY; MAX_BEAM],
            idx: [0; MAX_BEAM],
            len: 0,
            k,
        }
    }

    /// The kept `(value, index)` pairs, best first.
    pub fn entries(&self) -> impl Iterator<Item = (f32, usize)> + '_ {
        self.val[..self.len]
            .iter()
            .copied()
            .zip(self.idx[..self.len].iter().copied())
    }

    /// [`TopK::push`] of `base + row[w]` with index `first + w` for every `w` in order, with
    /// the same result: once the list is full, a block of candidates none of which beats the
    /// k-th value is skipped after one vectorisable comparison (`push` would reject each).
    #[inline]
    pub fn push_row(&mut self, base: f32, row: &[f32], first: usize) {
        let mut w = 0;
        while w < row.len() && self.len < self.k {
            self.push(base + row[w], first + w);
            w += 1;
        }
        if self.k == 0 {
            return;
        }
        for block in row[w..].chunks(ROW_BLOCK) {
            let last = self.val[self.k - 1];
            if block.iter().fold(false, |any, &l| any | (base + l > last)) {
                for (t, &l) in block.iter().enumerate() {
                    self.push(base + l, first + w + t);
                }
            }
            w += block.len();
        }
    }

    /// Offers candidate `v` with index `i` (indices in increasing order).
    #[inline]
    pub fn push(&mut self, v: f32, i: usize) {
        // `v > last` is false for NaN too, so NaN never enters a full list
        if self.len == self.k
            && v.partial_cmp(&self.val[self.k - 1]) != Some(core::cmp::Ordering::Greater)
        {
            return;
        }
        if self.len < self.k && v.is_nan() {
            return;
        }
        // position after every entry ≥ v (equal values seen earlier stay ahead)
        let mut p = if self.len < self.k {
            self.len
        } else {
            self.k - 1
        };
        while p > 0 && self.val[p - 1] < v {
            self.val[p] = self.val[p - 1];
            self.idx[p] = self.idx[p - 1];
            p -= 1;
        }
        self.val[p] = v;
        self.idx[p] = i;
        if self.len < self.k {
            self.len += 1;
        }
    }
}

/// Per-beam bookkeeping: words, per-word log-probs, finished flag, cache-slot ancestry.
#[derive(Clone, Copy)]
struct Hyps {
    tokens: [[u32; MAX_STEPS]; MAX_BEAM],
    logprobs: [[f32; MAX_STEPS]; MAX_BEAM],
    finished: [bool; MAX_BEAM],
    score: [f32; MAX_BEAM],
    /// `ancestry[b][s]`: the cache slot that holds beam b's step-s keys and values.
    ancestry: [[u8; MAX_STEPS]; MAX_BEAM],
}

impl Hyps {
    const EMPTY: Hyps = Hyps {
        tokens: [[0; MAX_STEPS]; MAX_BEAM],
        logprobs: [[0.0; MAX_STEPS]; MAX_BEAM],
        finished: [false; MAX_BEAM],
        score: [0.0; MAX_BEAM],
        ancestry: [[0; MAX_STEPS]; MAX_BEAM],
    };
}

/// Caption one image with the reference's beam search: [`M2::encode`] the `features`
/// (`[n, d_in]`, see there), then [`beam_search_encoded`]. `on_step` is called after every step
/// with the best partial caption (for a UI, or defmt logs on a microcontroller).
pub fn beam_search(
    model: &M2,
    features: &[f32],
    ws: &mut Workspace,
    opts: &SearchOptions,
    on_step: impl FnMut(&StepEvent),
) -> Result<BeamOutput, EngineError> {
    check_search(model, ws, opts)?;
    model.encode(features, ws)?;
    beam_search_encoded(model, ws, opts, on_step)
}

/// The options and plan checks of a beam search, before anything runs.
pub(crate) fn check_search(
    model: &M2,
    ws: &Workspace,
    opts: &SearchOptions,
) -> Result<(), EngineError> {
    model.check_plan(ws.plan(), opts.beam, opts.max_len)?;
    let v = model.config().vocab as usize;
    if opts.beam > v {
        return Err(EngineError::BeamTooWide {
            beam: opts.beam,
            vocab: v,
        });
    }
    Ok(())
}

/// The beam search of [`beam_search`] on the image already encoded in `ws` by [`M2::encode`]
/// (or [`M2::encode_regions`] then [`M2::cross_kv`]); errors with [`EngineError::NotEncoded`]
/// otherwise. The encoded image stays in `ws`: it can be searched again.
#[allow(clippy::needless_range_loop)]
pub fn beam_search_encoded(
    model: &M2,
    ws: &mut Workspace,
    opts: &SearchOptions,
    mut on_step: impl FnMut(&StepEvent),
) -> Result<BeamOutput, EngineError> {
    check_search(model, ws, opts)?;
    if !ws.has_cross_kv() {
        return Err(EngineError::NotEncoded);
    }
    let (bsz, steps) = (opts.beam, opts.max_len);
    let cfg = *model.config();
    let v = cfg.vocab as usize;

    let mut cur = Hyps::EMPTY;
    let mut next = Hyps::EMPTY;

    // ---- step 0: one parent (<bos>) -----------------------------------------------------
    let lp0 = model.step(ws, 0, &[cfg.bos], &cur.ancestry[..1])?; //                       [1, V]
    let mut top = TopK::new(bsz);
    for (w, &lp) in lp0.iter().enumerate() {
        top.push(lp, w);
    }
    if top.len < bsz {
        return Err(EngineError::NonFiniteLogits { step: 0 });
    }
    for k in 0..bsz {
        let w = top.idx[k];
        cur.tokens[k][0] = w as u32;
        cur.logprobs[k][0] = lp0[w];
        cur.score[k] = top.val[k];
        cur.finished[k] = w as u32 == cfg.eos;
        cur.ancestry[k][0] = 0;
    }
    on_step(&StepEvent {
        step: 0,
        best_tokens: &cur.tokens[0][..1],
        best_score: cur.score[0],
    });

    // ---- steps 1..max_len ------------------------------------------------------------------
    // Only unfinished beams are fed to the decoder: a finished beam's only candidate is its
    // frozen score, and nothing ever attends to its later keys. Row j of the step is the j-th
    // unfinished beam and writes cache slot j.
    let mut row_of = [usize::MAX; MAX_BEAM];
    let mut fed = [0u32; MAX_BEAM];
    let mut row_ancestry = [[0u8; MAX_STEPS]; MAX_BEAM];
    for t in 1..steps {
        let mut n = 0;
        for b in 0..bsz {
            row_of[b] = usize::MAX;
            if cur.finished[b] {
                continue;
            }
            fed[n] = cur.tokens[b][t - 1];
            row_ancestry[n] = cur.ancestry[b];
            row_of[b] = n;
            n += 1;
        }
        // row j's log-probs: lp[j·V..(j + 1)·V]                                       [n, V]
        let lp: &[f32] = if n > 0 {
            model.step(ws, t, &fed[..n], &row_ancestry[..n])?
        } else {
            &[]
        };

        let mut top = TopK::new(bsz);
        for b in 0..bsz {
            let s_b = cur.score[b];
            if cur.finished[b] {
                top.push(s_b, b * v);
                // equal sentinels enter in index order, each only above the k-th value: after
                // k of them the list holds k values ≥ the sentinel, so the rest never enter
                for w in 1..v.min(bsz + 1) {
                    top.push(FINISHED_SENTINEL, b * v + w);
                }
            } else {
                let j = row_of[b];
                top.push_row(s_b, &lp[j * v..(j + 1) * v], b * v);
            }
        }
        if top.len < bsz {
            return Err(EngineError::NonFiniteLogits { step: t });
        }
        for k in 0..bsz {
            let (p, w) = (top.idx[k] / v, top.idx[k] % v);
            let j = row_of[p];
            next.tokens[k][..t].copy_from_slice(&cur.tokens[p][..t]);
            next.logprobs[k][..t].copy_from_slice(&cur.logprobs[p][..t]);
            next.ancestry[k][..t].copy_from_slice(&cur.ancestry[p][..t]);
            next.tokens[k][t] = w as u32;
            next.score[k] = top.val[k];
            next.finished[k] = cur.finished[p] || w as u32 == cfg.eos;
            if cur.finished[p] {
                next.ancestry[k][t] = 0; // never read: finished beams are not decoded again
                next.logprobs[k][t] = 0.0;
            } else {
                next.ancestry[k][t] = j as u8; // the parent's step-t keys sit in slot j
                next.logprobs[k][t] = lp[j * v + w];
            }
        }
        core::mem::swap(&mut cur, &mut next);
        on_step(&StepEvent {
            step: t,
            best_tokens: &cur.tokens[0][..t + 1],
            best_score: cur.score[0],
        });
    }

    // ---- final ranking: by score, ties to the lower beam index -------------------------------
    let mut order = [0usize; MAX_BEAM];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    let order = &mut order[..bsz];
    // stable insertion sort, descending (core has no stable sort without alloc)
    for i in 1..bsz {
        let mut j = i;
        while j > 0 && cur.score[order[j - 1]] < cur.score[order[j]] {
            order.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut out = BeamOutput {
        beams: heapless::Vec::new(),
    };
    for &b in order.iter() {
        let mut beam = Beam {
            tokens: heapless::Vec::new(),
            logprobs: heapless::Vec::new(),
            score: cur.score[b],
        };
        let _ = beam.tokens.extend_from_slice(&cur.tokens[b][..steps]);
        let _ = beam.logprobs.extend_from_slice(&cur.logprobs[b][..steps]);
        let _ = out.beams.push(beam);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn list(t: &TopK) -> Vec<(u32, usize)> {
        t.entries().map(|(v, i)| (v.to_bits(), i)).collect()
    }

    /// Rows with many exact ties, NaN, ±∞ and −0.0: `push_row` keeps what `push` one by one
    /// keeps, bit for bit, for every k and row length, starting empty or part-full.
    #[test]
    fn push_row_is_push_one_by_one() {
        let mut s = 12345u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for len in (0..70).chain([1000, 10201]) {
            for case in 0..6 {
                let row: Vec<f32> = (0..len)
                    .map(|_| match next() % 40 {
                        0 if case > 2 => f32::NAN,
                        1 if case > 2 => f32::NEG_INFINITY,
                        2 if case > 3 => f32::INFINITY,
                        3 => -0.0,
                        r => -((next() % (8 + 200 * case)) as f32) * 0.25 - (r % 2) as f32,
                    })
                    .collect();
                for k in 1..=MAX_BEAM {
                    for (base, pre) in [(0.0f32, 0usize), (-3.5, 2), (-1e30, 7)] {
                        let (mut one, mut rowwise) = (TopK::new(k), TopK::new(k));
                        for p in 0..pre {
                            one.push(-(p as f32), p);
                            rowwise.push(-(p as f32), p);
                        }
                        for (w, &l) in row.iter().enumerate() {
                            one.push(base + l, 100 + w);
                        }
                        rowwise.push_row(base, &row, 100);
                        assert_eq!(list(&rowwise), list(&one), "len {len} case {case} k {k}");
                    }
                }
            }
        }
    }

    /// A finished beam's sentinels past the first k never enter the list.
    #[test]
    fn sentinels_past_k_never_enter() {
        for k in 1..=MAX_BEAM {
            for above in [-1e9f32, -999.0, -5.0] {
                let (mut all, mut first_k) = (TopK::new(k), TopK::new(k));
                for t in [&mut all, &mut first_k] {
                    t.push(above, 0);
                    t.push(-2000.0, 1);
                }
                for w in 2..500 {
                    all.push(FINISHED_SENTINEL, w);
                }
                for w in 2..(2 + k).min(500) {
                    first_k.push(FINISHED_SENTINEL, w);
                }
                assert_eq!(list(&all), list(&first_k), "k {k} above {above}");
            }
        }
    }
}
