//! Decoding on top of the model's API ([`M2::encode`], [`M2::step`]): the reference's beam
//! search ([`beam`]) and greedy decoding ([`mod@greedy`]). Both only keep hypotheses over the
//! log-probabilities [`M2::step`] returns; teacher-forced scoring is [`M2::score`].
//!
//! [`M2::encode`]: crate::model::M2::encode
//! [`M2::step`]: crate::model::M2::step
//! [`M2::score`]: crate::model::M2::score

#[cfg(feature = "std")]
pub mod batch;
pub mod beam;
pub mod decode;
pub mod greedy;

pub use beam::{beam_search, beam_search_encoded, Beam, BeamOutput, SearchOptions, StepEvent};
pub use decode::{decode, Caption};
pub use greedy::{greedy, GreedyOutput};
