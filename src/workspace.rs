//! The workspace: one caller-owned `[f32]` buffer carved into the fixed slots of a [`Plan`].
//!
//! No allocation happens anywhere in the engine: the host CLI hands it a `Vec<f32>`, the
//! firmware a `static` array sized by [`crate::plan::workspace_floats`]. The buffer is checked
//! against the plan once, in [`Workspace::new`]; afterwards carving cannot fail.

use crate::kernels::QuantScratch;
use crate::plan::{Plan, MAX_BEAM, MAX_STEPS};

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

/// Encoder scratch (shares memory with the decoder state).
pub struct EncoderScratch<'b> {
    /// Projected input `P [R, d]`.
    pub p: &'b mut [f32],
    pub q: &'b mut [f32],
    pub k: &'b mut [f32],
    pub v: &'b mut [f32],
    /// Concatenated head outputs `[R, d]`.
    pub att: &'b mut [f32],
    /// Attention sub-layer output `A [R, d]`.
    pub a: &'b mut [f32],
    /// FFN hidden `[R, d_ff]`.
    pub hidden: &'b mut [f32],
    /// One row of attention scores `[R + m]`.
    pub scores: &'b mut [f32],
}

/// Decoder caches and per-step scratch.
pub struct DecoderState<'b> {
    /// Cross-attention keys of each decoder layer and encoder level `[N, 3, R, d]`.
    pub cross_k: &'b mut [f32],
    /// Cross-attention values `[N, 3, R, d]`.
    pub cross_v: &'b mut [f32],
    /// Self-attention keys `[N, L, B, d]`: step `t`, slot `b`.
    pub self_k: &'b mut [f32],
    /// Self-attention values `[N, L, B, d]`.
    pub self_v: &'b mut [f32],
    /// 1.0 where the token fed at step `t` in slot `b` was `<pad>` (a masked key) `[L, B]`.
    pub key_pad: &'b mut [f32],
    pub s: DecoderScratch<'b>,
}

/// Per-step decoder activations for `n ≤ B` rows.
pub struct DecoderScratch<'b> {
    /// Layer input `[B, d]`.
    pub x: &'b mut [f32],
    pub q: &'b mut [f32],
    pub k: &'b mut [f32],
    pub v: &'b mut [f32],
    pub att: &'b mut [f32],
    /// Masked self-attention output `S [B, d]`.
    pub s: &'b mut [f32],
    /// Cross-attention query `Linear_q(S)`, shared by the three levels `[B, d]`.
    pub cq: &'b mut [f32],
    /// Gated mix `G [B, d]`.
    pub g: &'b mut [f32],
    /// FFN output `[B, d]`.
    pub f: &'b mut [f32],
    /// One gate `α_i [B, d]`.
    pub alpha: &'b mut [f32],
    /// Cross-attention head outputs of the 3 levels `[3, B, d]`.
    pub att3: &'b mut [f32],
    /// `C_1..C_3 [3, B, d]`.
    pub c3: &'b mut [f32],
    /// `[S; C_i]` `[B, 2d]`.
    pub cat: &'b mut [f32],
    /// FFN hidden `[B, d_ff]`.
    pub hidden: &'b mut [f32],
    /// Log-probabilities `[B, V]`.
    pub logits: &'b mut [f32],
    /// One row of attention scores `[max(L, R)]`.
    pub scores: &'b mut [f32],
}

/// Cuts consecutive slots off the front of a buffer.
struct Carver<'b>(&'b mut [f32]);

impl<'b> Carver<'b> {
    fn take(&mut self, n: usize) -> &'b mut [f32] {
        let buf = core::mem::take(&mut self.0);
        let n = n.min(buf.len());
        let (head, tail) = buf.split_at_mut(n);
        self.0 = tail;
        head
    }
}

impl<'w> Workspace<'w> {
    /// Check `buf` against `plan`.
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
        if buf.len() < plan.total_floats() {
            return Err(WorkspaceError::TooSmall {
                needed_bytes: plan.total_bytes(),
                given_bytes: buf.len() * 4,
            });
        }
        Ok(Workspace {
            buf,
            plan,
            rows: 0,
            stage: Stage::Empty,
        })
    }

    /// The plan this workspace was checked against.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn persistent<'b>(c: &mut Carver<'b>, p: &Plan, rows: &'b mut usize) -> Persistent<'b> {
        let enc_out = c.take(p.enc_out_len());
        let key_bias = c.take(p.mask_len());
        let q = bytemuck::cast_slice_mut::<f32, i8>(c.take(p.quant_bytes().div_ceil(4)));
        let scales = c.take(p.quant_rows());
        Persistent {
            enc_out,
            key_bias,
            rows,
            qs: QuantScratch { q, scales },
        }
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
    }

    /// Record that the cross-attention keys and values of the encoded image are written.
    pub(crate) fn mark_cross_kv(&mut self) {
        if self.stage >= Stage::Encoded {
            self.stage = Stage::CrossKv;
        }
    }

    /// The slots the encoder uses. Taking them invalidates the current image
    /// ([`Workspace::is_encoded`] turns false): the encoder scratch shares memory with the
    /// decoder's cross-attention keys and values, and the encoder output is handed out mutably.
    pub fn encoder_parts(&mut self) -> (Persistent<'_>, EncoderScratch<'_>) {
        self.stage = Stage::Empty;
        let p = self.plan;
        let mut c = Carver(&mut *self.buf);
        let keep = Self::persistent(&mut c, &p, &mut self.rows);
        let (rd, r) = (p.regions * p.d, p.regions);
        let s = EncoderScratch {
            p: c.take(rd),
            q: c.take(rd),
            k: c.take(rd),
            v: c.take(rd),
            att: c.take(rd),
            a: c.take(rd),
            hidden: c.take(r * p.d_ff),
            scores: c.take(r + p.m),
        };
        (keep, s)
    }

    /// The slots the decoder uses (the encoder scratch is gone once these are taken). The
    /// engine's decoder only reads the encoder output and the cross-attention keys and values,
    /// so taking these keeps [`Workspace::is_encoded`]; a caller who writes into those slots
    /// itself should call [`Workspace::invalidate`].
    pub fn decoder_parts(&mut self) -> (Persistent<'_>, DecoderState<'_>) {
        let p = self.plan;
        let mut c = Carver(&mut *self.buf);
        let keep = Self::persistent(&mut c, &p, &mut self.rows);
        let (b, d) = (p.beam, p.d);
        let cross_k = c.take(p.cross_kv_len());
        let cross_v = c.take(p.cross_kv_len());
        let self_k = c.take(p.self_kv_len());
        let self_v = c.take(p.self_kv_len());
        let key_pad = c.take(p.key_pad_len());
        let s = DecoderScratch {
            x: c.take(b * d),
            q: c.take(b * d),
            k: c.take(b * d),
            v: c.take(b * d),
            att: c.take(b * d),
            s: c.take(b * d),
            cq: c.take(b * d),
            g: c.take(b * d),
            f: c.take(b * d),
            alpha: c.take(b * d),
            att3: c.take(3 * b * d),
            c3: c.take(3 * b * d),
            cat: c.take(2 * b * d),
            hidden: c.take(b * p.d_ff),
            logits: c.take(b * p.vocab),
            scores: c.take(p.max_len.max(p.regions)),
        };
        (
            keep,
            DecoderState {
                cross_k,
                cross_v,
                self_k,
                self_v,
                key_pad,
                s,
            },
        )
    }

    /// Distinct rows the encoder computed for the last image (see [`Persistent`]).
    pub fn encoder_rows(&self) -> usize {
        self.rows
    }

    /// The encoder's distinct rows of `level` (0..3) `[rows, d]`, valid after encoding.
    pub fn encoder_output(&self, level: usize) -> &[f32] {
        let n = self.rows * self.plan.d;
        self.buf.get(level * n..(level + 1) * n).unwrap_or(&[])
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
        let o = self.plan.enc_out_len();
        let j = i.min(self.rows.saturating_sub(1));
        self.buf.get(o + j).is_some_and(|&b| b == f32::NEG_INFINITY)
    }
}
