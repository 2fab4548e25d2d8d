//! Greedy decoding as the reference's `CaptioningModel.test`: feed `<bos>`, then the arg-max
//! word (lowest id on ties) for exactly `max_len` steps — it keeps going after `<eos>`; the
//! caption text stops at the first `<eos>`. Log-probs are zeroed from the `<eos>` step on.

use crate::model::{EngineError, M2};
use crate::plan::MAX_STEPS;
use crate::workspace::Workspace;

/// Greedy result.
#[derive(Clone, Debug, PartialEq)]
pub struct GreedyOutput {
    pub tokens: heapless::Vec<u32, MAX_STEPS>,
    /// The chosen word's log-prob, 0 from the first `<eos>` on.
    pub logprobs: heapless::Vec<f32, MAX_STEPS>,
}

/// Caption one image greedily.
pub fn greedy(
    model: &M2,
    features: &[f32],
    ws: &mut Workspace,
    max_len: usize,
    mut on_step: impl FnMut(usize, &[u32]),
) -> Result<GreedyOutput, EngineError> {
    model.check_plan(ws.plan(), 1, max_len)?;
    model.encode(features, ws)?;
    let cfg = *model.config();
    let ancestry = [[0u8; MAX_STEPS]; 1];
    let mut out = GreedyOutput {
        tokens: heapless::Vec::new(),
        logprobs: heapless::Vec::new(),
    };
    let mut alive = true;
    let mut token = cfg.bos;
    for t in 0..max_len {
        let lp = model.step(ws, t, &[token], &ancestry)?; //                               [1, V]
        let mut best = 0;
        for (w, &l) in lp.iter().enumerate() {
            if l > lp[best] {
                best = w;
            }
        }
        token = best as u32;
        alive &= token != cfg.eos;
        let _ = out.tokens.push(token);
        let _ = out.logprobs.push(if alive { lp[best] } else { 0.0 });
        on_step(t, &out.tokens);
    }
    Ok(out)
}
