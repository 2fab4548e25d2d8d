//! The M² network: [`attention`] (scaled dot-product attention, with memory slots in the
//! encoder), [`encoder`] (memory-augmented encoder, three levels), [`decoder`] (meshed decoder
//! with sigmoid gates over the three levels), built over weights viewed in place in a [`Blob`].
//!
//! Shapes in comments use `R` regions, `d` model width, `B` beams (rows of a decoder step),
//! `V` vocabulary, `F` the FFN width.

pub mod attention;
pub mod decoder;
pub mod encoder;
pub mod feed_forward;
mod run;

use crate::blob::{Blob, Matrix, TensorKind};
use crate::config::Config;
use crate::kernels::{Kernels, QuantScratch};
use crate::plan::{Plan, MAX_BEAM, MAX_STEPS};
use crate::workspace::WorkspaceError;

pub use decoder::MeshedDecoder;
pub use encoder::MemoryAugmentedEncoder;

/// `y = x·Wᵀ + b` with weights in place in the blob.
#[derive(Clone, Copy, Debug)]
pub struct Linear<'a> {
    pub w: Matrix<'a>,
    pub b: Option<&'a [f32]>,
}

impl<'a> Linear<'a> {
    /// The linear `w` (+ `b`) of layer `layer`.
    pub fn load(blob: &Blob<'a>, w: TensorKind, b: Option<TensorKind>, layer: usize) -> Self {
        Linear {
            w: blob.matrix(w, layer),
            b: b.map(|b| blob.vector(b, layer)),
        }
    }

    /// `y[n, out] = x[n, in]·Wᵀ + b`.
    #[inline]
    pub fn forward(&self, k: &Kernels, x: &[f32], n: usize, y: &mut [f32], qs: &mut QuantScratch) {
        k.linear(x, n, &self.w, self.b, y, qs);
    }
}

/// `LN(x) = γ ⊙ (x − μ)/√(σ² + 1e-5) + β` over the last axis.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

impl<'a> LayerNorm<'a> {
    pub fn load(blob: &Blob<'a>, g: TensorKind, b: TensorKind, layer: usize) -> Self {
        LayerNorm {
            gamma: blob.vector(g, layer),
            beta: blob.vector(b, layer),
        }
    }

    /// Normalise each of the `x.len() / d` rows in place.
    #[inline(always)]
    pub fn forward_rows(&self, k: &Kernels, x: &mut [f32]) {
        k.layer_norm_rows(x, self.gamma, self.beta);
    }
}

/// Everything that can go wrong when running the engine on user input.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EngineError {
    /// The workspace does not fit the plan.
    Workspace(WorkspaceError),
    /// The workspace was planned for a model of another shape (width, FFN, memory slots,
    /// vocabulary or decoder depth).
    ModelMismatch,
    /// The workspace was planned for too few regions, beams or steps.
    PlanMismatch {
        what: &'static str,
        needed: usize,
        planned: usize,
    },
    /// The feature slice is not a whole number of `d_in`-sized rows.
    FeatureShape { len: usize, d_in: usize },
    /// More regions than the blob's `max_regions` (callers truncate, as the reference's loader).
    TooManyRegions { given: usize, max: usize },
    /// No regions at all.
    NoRegions,
    /// A NaN or infinite feature value.
    NonFinite { region: usize, index: usize },
    /// A token id outside the vocabulary.
    TokenOutOfRange {
        position: usize,
        id: u32,
        vocab: u32,
    },
    /// A sequence longer than the positional table or the plan allows.
    TooLong { len: usize, max: usize },
    /// An empty token sequence, or a beam of 0.
    Empty,
    /// An output buffer is too small.
    OutputTooSmall { needed: usize, given: usize },
    /// The workspace holds no encoded image: [`M2::cross_kv`] was called before
    /// [`M2::encode_regions`], or a decode before [`M2::encode`] (or `encode_regions` +
    /// `cross_kv`), or the image was invalidated since (a failed encode, the encoder slots taken).
    NotEncoded,
    /// A beam wider than the vocabulary (step 0 could not fill it).
    BeamTooWide { beam: usize, vocab: usize },
    /// The decoder's log-probabilities at `step` hold NaN (from the weights or an overflow),
    /// or too few finite values to fill the beam.
    NonFiniteLogits { step: usize },
    /// The encoder's output at `level` (0..3) holds NaN or infinity although the features
    /// were finite: values so large that the encoder overflows f32, or non-finite weights.
    EncoderOverflow { level: usize },
    /// A decoder step's cache ancestry is missing for `row` (fewer ancestry rows than tokens
    /// fed) or names a cache slot outside the plan's beam.
    BadAncestry { row: usize },
    /// Decoder step `step` asked for before steps `0..step` ran for this image (only `next`
    /// of them have): it would read the cache of another image or another run.
    StepOutOfOrder { step: usize, next: usize },
}

impl From<WorkspaceError> for EngineError {
    fn from(e: WorkspaceError) -> Self {
        EngineError::Workspace(e)
    }
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EngineError::Workspace(e) => write!(f, "{e}"),
            EngineError::ModelMismatch => {
                write!(f, "the workspace was planned for a model of another shape")
            }
            EngineError::PlanMismatch {
                what,
                needed,
                planned,
            } => {
                write!(
                    f,
                    "workspace plan mismatch: {what} needs {needed}, the plan has {planned}"
                )
            }
            EngineError::FeatureShape { len, d_in } => {
                write!(
                    f,
                    "{len} feature values are not a whole number of rows of d_in={d_in}"
                )
            }
            EngineError::TooManyRegions { given, max } => {
                write!(f, "{given} regions given, the model takes at most {max}")
            }
            EngineError::NoRegions => write!(f, "no regions given"),
            EngineError::NonFinite { region, index } => {
                write!(f, "feature value [{region}, {index}] is NaN or infinite")
            }
            EngineError::TokenOutOfRange {
                position,
                id,
                vocab,
            } => {
                write!(
                    f,
                    "token id {id} at position {position} is outside the vocabulary of {vocab}"
                )
            }
            EngineError::TooLong { len, max } => {
                write!(
                    f,
                    "sequence of {len} tokens is longer than the maximum of {max}"
                )
            }
            EngineError::Empty => write!(f, "empty token sequence or beam size 0"),
            EngineError::OutputTooSmall { needed, given } => {
                write!(f, "output buffer holds {given} values, {needed} needed")
            }
            EngineError::NotEncoded => write!(
                f,
                "the workspace holds no encoded image: run encode (or encode_regions, then \
                 cross_kv) first"
            ),
            EngineError::BeamTooWide { beam, vocab } => {
                write!(
                    f,
                    "beam size {beam} exceeds the vocabulary of {vocab} words"
                )
            }
            EngineError::NonFiniteLogits { step } => write!(
                f,
                "the decoder's log-probabilities at step {step} are NaN or infinite"
            ),
            EngineError::EncoderOverflow { level } => write!(
                f,
                "the encoder's output (level {level}) is NaN or infinite: feature values too \
                 large for f32 arithmetic, or non-finite weights"
            ),
            EngineError::BadAncestry { row } => write!(
                f,
                "decoder row {row} has no cache ancestry or names a slot outside the plan"
            ),
            EngineError::StepOutOfOrder { step, next } => write!(
                f,
                "decoder step {step} before steps 0..{step} ran for this image (the next is {next})"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EngineError {}

/// The whole M² model over a validated blob: encoder, decoder and the kernels they run on.
pub struct M2<'a> {
    cfg: Config,
    encoder: MemoryAugmentedEncoder<'a>,
    decoder: MeshedDecoder<'a>,
    kernels: Kernels,
    /// [`Blob::act_bytes`]: what the quantised-activation scratch needs per value.
    act_bytes: usize,
}

impl<'a> M2<'a> {
    /// Build the model over `blob` (no copy: every weight stays where it is).
    pub fn new(blob: &Blob<'a>, kernels: Kernels) -> Self {
        M2 {
            cfg: *blob.config(),
            encoder: MemoryAugmentedEncoder::load(blob),
            decoder: MeshedDecoder::load(blob),
            kernels,
            act_bytes: blob.act_bytes(),
        }
    }

    /// The blob's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The kernels the model runs on (e.g. `kernels().isa()`).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// The plan for `beam` beams and captions of up to `max_len` words at this model's
    /// `max_regions`.
    pub fn plan(&self, beam: usize, max_len: usize) -> Plan {
        Plan::new(&self.cfg, beam, self.cfg.max_regions as usize, max_len)
            .with_act_bytes(self.act_bytes)
    }

    /// Check a workspace plan can run `beam` rows for `steps` steps of this model.
    pub(crate) fn check_plan(
        &self,
        plan: &Plan,
        beam: usize,
        steps: usize,
    ) -> Result<(), EngineError> {
        let want = self.plan(beam, steps);
        let same_model = plan.d == want.d
            && plan.d_in == want.d_in
            && plan.d_ff == want.d_ff
            && plan.m == want.m
            && plan.h == want.h
            && plan.vocab == want.vocab
            && plan.n_dec == want.n_dec;
        if !same_model {
            return Err(EngineError::ModelMismatch);
        }
        if plan.regions < want.regions {
            return Err(EngineError::PlanMismatch {
                what: "regions",
                needed: want.regions,
                planned: plan.regions,
            });
        }
        if beam == 0 || steps == 0 {
            return Err(EngineError::Empty);
        }
        if plan.beam < beam || beam > MAX_BEAM {
            return Err(EngineError::PlanMismatch {
                what: "beam",
                needed: beam,
                planned: plan.beam,
            });
        }
        let max = self.cfg.max_len().min(MAX_STEPS);
        if steps > max {
            return Err(EngineError::TooLong { len: steps, max });
        }
        if plan.max_len < steps {
            return Err(EngineError::PlanMismatch {
                what: "caption length",
                needed: steps,
                planned: plan.max_len,
            });
        }
        if plan.act_bytes < want.act_bytes {
            return Err(EngineError::PlanMismatch {
                what: "bytes per quantised activation",
                needed: want.act_bytes,
                planned: plan.act_bytes,
            });
        }
        Ok(())
    }
}
