//! One image's caption tokens, whichever search: the best beam of [`beam_search`] or the
//! [`greedy()`] caption, cut after the first `<eos>` (the searches' fixed arrays go on past it).
//! What `m2 caption` and the Python bindings both call per image.

use super::{beam_search, greedy, SearchOptions};
use crate::model::{EngineError, M2};
use crate::plan::MAX_STEPS;
use crate::workspace::Workspace;

/// A decoded caption: word ids up to and including `<eos>` (all `max_len` of them if it never
/// came), and the sum of their log-probabilities (the beam's ranking score).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Caption {
    pub tokens: heapless::Vec<u32, MAX_STEPS>,
    pub score: f32,
}

/// Caption one image (`features [n, d_in]`, 1 ≤ n ≤ max_regions) by beam search with
/// `opts`, or greedily (`opts.max_len` steps; `opts.beam` is then ignored and the workspace
/// needs a plan for beam 1 or more).
pub fn decode(
    model: &M2,
    features: &[f32],
    ws: &mut Workspace,
    opts: &SearchOptions,
    greedy_mode: bool,
) -> Result<Caption, EngineError> {
    let mut c = if greedy_mode {
        let out = greedy(model, features, ws, opts.max_len, |_, _| {})?;
        Caption {
            score: out.logprobs.iter().sum(),
            tokens: out.tokens,
        }
    } else {
        let out = beam_search(model, features, ws, opts, |_| {})?;
        out.best()
            .map(|b| Caption {
                tokens: b.tokens.clone(),
                score: b.score,
            })
            .unwrap_or_default()
    };
    let eos = model.config().eos;
    if let Some(i) = c.tokens.iter().position(|&t| t == eos) {
        c.tokens.truncate(i + 1);
    }
    Ok(c)
}
