//! The workspace: one caller-owned `[f32]` buffer carved into the fixed slots of a [`Plan`].
//!
//! No allocation happens anywhere in the engine: the host CLI hands it a `Vec<f32>`, the
//! firmware a `static` array sized by [`crate::plan::workspace_floats`]. The buffer is checked
//! against the plan once, in [`Workspace::new`]; afterwards carving cannot fail.

use crate::kernels::QuantScratch;
use crate::plan::{Plan, MAX_BEAM, MAX_STEPS};

/// Why a workspace cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Slots that live for the whole caption.
pub struct Persistent<'b> {
    /// Encoder outputs of the three levels `[3, R, d]`.
    pub enc_out: &'b mut [f32],
    /// Region mask `[R]`: 1.0 where the reference masks the region (spec §3.2), else 0.0.
    pub mask: &'b mut [f32],
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
        Ok(Workspace { buf, plan })
    }

    /// The plan this workspace was checked against.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn persistent<'b>(c: &mut Carver<'b>, p: &Plan) -> Persistent<'b> {
        let enc_out = c.take(p.enc_out_len());
        let mask = c.take(p.mask_len());
        let q = bytemuck::cast_slice_mut::<f32, i8>(c.take(p.quant_bytes().div_ceil(4)));
        let scales = c.take(p.quant_rows());
        Persistent {
            enc_out,
            mask,
            qs: QuantScratch { q, scales },
        }
    }

    /// The slots the encoder uses.
    pub fn encoder_parts(&mut self) -> (Persistent<'_>, EncoderScratch<'_>) {
        let p = self.plan;
        let mut c = Carver(&mut *self.buf);
        let keep = Self::persistent(&mut c, &p);
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

    /// The slots the decoder uses (the encoder scratch is gone once these are taken).
    pub fn decoder_parts(&mut self) -> (Persistent<'_>, DecoderState<'_>) {
        let p = self.plan;
        let mut c = Carver(&mut *self.buf);
        let keep = Self::persistent(&mut c, &p);
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

    /// Encoder output of `level` (0..3) `[R, d]`, valid after encoding.
    pub fn encoder_output(&self, level: usize) -> &[f32] {
        let n = self.plan.regions * self.plan.d;
        self.buf.get(level * n..(level + 1) * n).unwrap_or(&[])
    }

    /// The region mask `[R]` (1.0 = masked), valid after encoding.
    pub fn region_mask(&self) -> &[f32] {
        let o = self.plan.enc_out_len();
        self.buf.get(o..o + self.plan.regions).unwrap_or(&[])
    }
}
