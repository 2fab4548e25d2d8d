//! The workspace: one caller-owned `[f32]` buffer carved into the fixed slots of a [`Plan`].
//!
//! No allocation happens anywhere in the engine: the host CLI hands it a `Vec<f32>`, the
//! firmware a `static` array sized by [`crate::plan::workspace_floats`]. The buffer is checked
//! against the plan once, in [`Workspace::new`]; afterwards carving cannot fail.

use crate::kernels::QuantScratch;
use crate::plan::{DecoderSlots, EncoderSlots, Plan, MAX_BEAM, MAX_STEPS, SLOT_ALIGN};

/// Why a workspace cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WorkspaceError {
    /// The buffer is smaller than the plan needs.
    TooSmall {
        needed_bytes: usize,
        given_bytes: usize,
    },
    /// The plan's beam exceeds [`MAX_BEAM`].
    BeamTooLarge { beam: usize, max: usize },
    /// The plan's caption length exceeds [`MAX_STEPS`].
    TooLong { max_len: usize, max: usize },
    /// The plan's size does not fit this target's address space
    /// ([`Plan::checked_total_bytes`]): a config or region count that no buffer can hold.
    PlanTooLarge { regions: usize },
}

impl core::fmt::Display for WorkspaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WorkspaceError::TooSmall {
                needed_bytes,
                given_bytes,
            } => write!(
                f,
                "workspace too small: the plan needs {needed_bytes} bytes, {given_bytes} given"
            ),
            WorkspaceError::BeamTooLarge { beam, max } => {
                write!(f, "beam size {beam} exceeds the engine's maximum of {max}")
            }
            WorkspaceError::TooLong { max_len, max } => {
                write!(
                    f,
                    "caption length {max_len} exceeds the engine's maximum of {max}"
                )
            }
            WorkspaceError::PlanTooLarge { regions } => write!(
                f,
                "the memory plan for {regions} regions does not fit in this machine's address \
                 space"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WorkspaceError {}

/// A buffer checked against a plan.
pub struct Workspace<'w> {
    buf: &'w mut [f32],
    plan: Plan,
    /// Distinct encoder rows of the last image (see [`Persistent`]).
    rows: usize,
    /// How far the current image has got (see [`Workspace::is_encoded`]).
    stage: Stage,
    /// Decoder steps `0..steps` have run for the current image, in order (a step reads the
    /// cache of every step before it: see [`crate::model::M2::step`]).
    steps: usize,
}

/// What the workspace holds for the current image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Nothing usable: fresh, or the encoder's slots were handed out since.
    Empty,
    /// The encoder's output ([`Persistent::enc_out`], `key_bias`, `rows`).
    Encoded,
    /// The encoder's output and the decoder's cross-attention keys and values.
    CrossKv,
}

/// Slots that live for the whole caption.
///
/// The encoder computes `rows ≤ R` distinct rows: the image's regions up to its last non-zero
/// one, then — if it has zero-padding rows (given as trailing zero rows, or implied by passing
/// fewer than R) — one row standing for all `c` of them. Padding rows are identical inputs, so
/// they stay identical through every layer (attention has no positions); as keys, `c` equal
/// keys weigh `c·exp(s) = exp(s + ln c)` in a softmax, which is what `key_bias` adds.
pub struct Persistent<'b> {
    /// Encoder outputs of the three levels `[3, rows, d]` (level stride `rows·d`).
    pub enc_out: &'b mut [f32],
    /// Additive attention bias of each encoder row as a key `[rows]`: 0 for a region, `ln c`
    /// for the row standing for `c` padding rows, −∞ where the reference masks the region
    /// (docs/SPEC.md §5.2).
    pub key_bias: &'b mut [f32],
    /// Distinct encoder rows (set by the encoder).
    pub rows: &'b mut usize,
    /// int8 activation scratch.
    pub qs: QuantScratch<'b>,
}

/// The encoder's scratch slots (shares memory with the decoder state; see
/// [`EncoderSlots`]).
pub type EncoderScratch<'b> = EncoderSlots<&'b mut [f32]>;

/// The decoder's caches and per-step scratch slots (see [`DecoderSlots`]).
pub type DecoderState<'b> = DecoderSlots<&'b mut [f32]>;

impl<'w> Workspace<'w> {
    /// Check `buf` against `plan` ([`Plan::total_floats`] floats at least); the slots start
    /// at its first 64-byte boundary ([`SLOT_ALIGN`]).
    pub fn new(buf: &'w mut [f32], plan: Plan) -> Result<Workspace<'w>, WorkspaceError> {
        if plan.beam > MAX_BEAM {
            return Err(WorkspaceError::BeamTooLarge {
                beam: plan.beam,
                max: MAX_BEAM,
            });
        }
        if plan.max_len > MAX_STEPS {
            return Err(WorkspaceError::TooLong {
                max_len: plan.max_len,
                max: MAX_STEPS,
            });
        }
        let Some(needed_bytes) = plan.checked_total_bytes() else {
            return Err(WorkspaceError::PlanTooLarge {
                regions: plan.regions,
            });
        };
        if buf.len() < needed_bytes / 4 {
            return Err(WorkspaceError::TooSmall {
                needed_bytes,
                given_bytes: buf.len().saturating_mul(4),
            });
        }
        // the slots start at the buffer's first 64-byte boundary (`SLOT_ALIGN`; an f32 slice
        // starts on a 4-byte one, so at most 15 floats in, the room `total_floats` leaves)
        let line = 4 * SLOT_ALIGN;
        let skip = (line - buf.as_ptr() as usize % line) % line / 4;
        let buf = &mut buf[skip..];
        Ok(Workspace {
            buf,
            plan,
            rows: 0,
            stage: Stage::Empty,
            steps: 0,
        })
    }

    /// The plan this workspace was checked against.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The persistent slots, and the phase area after them.
    fn persistent<'b>(
        buf: &'b mut [f32],
        p: &Plan,
        rows: &'b mut usize,
    ) -> (Persistent<'b>, &'b mut [f32]) {
        debug_assert!(
            buf.len() >= p.slots_floats(),
            "workspace shorter than its plan"
        );
        let (s, phase) = p.persistent().carve(buf);
        let keep = Persistent {
            enc_out: s.enc_out,
            key_bias: s.key_bias,
            rows,
            qs: QuantScratch {
                q: bytemuck::cast_slice_mut::<f32, i8>(s.quant),
                scales: s.scales,
            },
        };
        (keep, phase)
    }

    /// Whether the workspace holds the encoder's output for the current image: set by
    /// [`M2::encode_regions`](crate::model::M2::encode_regions) (and `encode`) when the encoder
    /// has run; cleared when an encode starts (so a failed encode leaves no stale image behind)
    /// and whenever [`Workspace::encoder_parts`] is taken.
    pub fn is_encoded(&self) -> bool {
        self.stage >= Stage::Encoded
    }

    /// Whether the decoder's cross-attention keys and values of the current image are ready
    /// (set by [`M2::cross_kv`](crate::model::M2::cross_kv) and `encode`, cleared as
    /// [`Workspace::is_encoded`] is). Decoding does not clear it: one encoded image can be
    /// searched again, e.g. with other options.
    pub fn has_cross_kv(&self) -> bool {
        self.stage >= Stage::CrossKv
    }

    /// Forget the current image (the next decode needs a new encode).
    pub fn invalidate(&mut self) {
        self.stage = Stage::Empty;
    }

    /// Record that the encoder has just written its output for the current image.
    pub(crate) fn mark_encoded(&mut self) {
        self.stage = Stage::Encoded;
        self.steps = 0;
    }

    /// Decoder steps `0..n` have run for the current image (0 after every encode).
    pub fn steps_done(&self) -> usize {
        self.steps
    }

    pub(crate) fn mark_step(&mut self, t: usize) {
        self.steps = t.saturating_add(1);
    }

    /// Record that the cross-attention keys and values of the encoded image are written.
    pub(crate) fn mark_cross_kv(&mut self) {
        if self.stage >= Stage::Encoded {
            self.stage = Stage::CrossKv;
            self.steps = 0;
        }
    }

    /// The slots the encoder uses. Taking them invalidates the current image
    /// ([`Workspace::is_encoded`] turns false): the encoder scratch shares memory with the
    /// decoder's cross-attention keys and values, and the encoder output is handed out mutably.
    pub fn encoder_parts(&mut self) -> (Persistent<'_>, EncoderScratch<'_>) {
        self.stage = Stage::Empty;
        let p = self.plan;
        let (keep, phase) = Self::persistent(&mut *self.buf, &p, &mut self.rows);
        let (s, _) = p.encoder().carve(phase);
        (keep, s)
    }

    /// The slots the decoder uses (the encoder scratch is gone once these are taken). The
    /// engine's decoder only reads the encoder output and the cross-attention keys and values,
    /// so taking these keeps [`Workspace::is_encoded`]; a caller who writes into those slots
    /// itself should call [`Workspace::invalidate`].
    pub fn decoder_parts(&mut self) -> (Persistent<'_>, DecoderState<'_>) {
        let p = self.plan;
        let (keep, phase) = Self::persistent(&mut *self.buf, &p, &mut self.rows);
        (keep, p.decoder().carve(phase).0)
    }

    /// Distinct rows the encoder computed for the last image (see [`Persistent`]).
    pub fn encoder_rows(&self) -> usize {
        self.rows
    }

    /// The encoder's distinct rows of `level` (0..3) `[rows, d]`, valid after encoding; empty
    /// for any other level.
    pub fn encoder_output(&self, level: usize) -> &[f32] {
        if level >= 3 {
            return &[];
        }
        let n = self.rows * self.plan.d;
        let o = self.plan.persistent().offsets(0).enc_out + level * n;
        self.buf.get(o..o + n).unwrap_or(&[])
    }

    /// Row `i < R` of encoder level `level` as the reference lays it out (`[R, d]` with the
    /// image zero-padded to R regions); padding rows all read the one row that stands for them.
    pub fn encoder_row(&self, level: usize, i: usize) -> &[f32] {
        let out = self.encoder_output(level);
        let d = self.plan.d;
        let j = i.min(self.rows.saturating_sub(1));
        out.get(j * d..(j + 1) * d).unwrap_or(&[])
    }

    /// Whether the reference's rule (docs/SPEC.md §5.2) masks region `i < R`, valid after
    /// encoding.
    pub fn region_masked(&self, i: usize) -> bool {
        let o = self.plan.persistent().offsets(0).key_bias;
        let j = i.min(self.rows.saturating_sub(1));
        self.buf.get(o + j).is_some_and(|&b| b == f32::NEG_INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    extern crate std;
    use std::vec;

    fn line_aligned(s: &[f32]) -> bool {
        (s.as_ptr() as usize).is_multiple_of(4 * SLOT_ALIGN)
    }

    /// Wherever the caller's buffer starts, every slot of both phases starts on a 64-byte
    /// boundary and has its plan's length; one float less than the plan is refused.
    #[test]
    fn slots_start_on_cache_lines_wherever_the_buffer_starts() {
        for (cfg, beam, regions) in [(Config::COCO, 5, 50), (Config::TINY, 3, 7)] {
            let plan = Plan::new(&cfg, beam, regions, 20);
            let n = plan.total_floats();
            let mut mem = vec![0f32; n + SLOT_ALIGN];
            for start in 0..SLOT_ALIGN {
                let short = &mut mem[start..start + n - 1];
                assert!(matches!(
                    Workspace::new(short, plan),
                    Err(WorkspaceError::TooSmall { .. })
                ));
                let mut ws = Workspace::new(&mut mem[start..start + n], plan).unwrap();
                let (keep, enc) = ws.encoder_parts();
                assert!(line_aligned(keep.enc_out) && line_aligned(keep.key_bias));
                assert_eq!(keep.key_bias.len(), regions);
                for s in [enc.p, enc.q, enc.k, enc.v, enc.att, enc.a, enc.hidden] {
                    assert!(line_aligned(s), "{cfg:?} start {start}");
                }
                let (_, dec) = ws.decoder_parts();
                let lens = plan.decoder();
                for (s, len) in [
                    (&dec.cross_k, lens.cross_k),
                    (&dec.cross_v, lens.cross_v),
                    (&dec.self_k, lens.self_k),
                    (&dec.key_pad, lens.key_pad),
                    (&dec.x, lens.x),
                    (&dec.att3, lens.att3),
                    (&dec.hidden, lens.hidden),
                    (&dec.logits, lens.logits),
                    (&dec.scores, lens.scores),
                ] {
                    assert!(line_aligned(s), "{cfg:?} start {start}");
                    assert_eq!(s.len(), len);
                }
            }
        }
    }
}
