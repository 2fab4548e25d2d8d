//! The memory plan: how many bytes of RAM the engine needs, as a `const fn` of the model's
//! config, the beam size, the region count and the longest caption.
//!
//! Everything the engine writes — activations, the per-beam self-attention K/V caches, the
//! per-image cross-attention K/V of the three encoder levels, logits, the int8 activation
//! scratch — lives in one `[f32]` buffer carved into fixed slots by this plan
//! ([`crate::workspace::Workspace`]). The same function is printed by `m2-pack inspect` and
//! `m2 info`, and sizes the firmware's `static` workspace at build time.
//!
//! Layout (all lengths in f32 elements; `d` = d_model, `R` = regions, `B` = beam,
//! `L` = max caption length, `N` = decoder layers, `F` = d_ff, `V` = vocab):
//! ```text
//! persistent   enc_out [3, R, d] · key_bias [R] · int8 scratch   (R rows at most: see Persistent)
//! phase area   = max(encoder scratch, decoder state)
//!   encoder    p, q, k, v, att, a [R, d] · hidden [R, F] · scores [R + m]
//!   decoder    cross_k, cross_v [N, 3, R, d] · self_k, self_v [N, L, B, d] · key_pad [L, B]
//!              x, q, k, v, att, s, cq, g, f, alpha [B, d] · att3, c3 [3B, d] · cat [B, 2d]
//!              hidden [B, F] · logits [B, V] · scores [max(L, R)]
//! ```
//! The encoder's scratch is dead once `enc_out` is complete, so it shares memory with the
//! decoder's caches: for COCO at beam 5 and 20 words this keeps the workspace under 4 MB.

use crate::config::Config;

/// Beam search length of the reference's test.py; the default caption length of a plan.
pub const DEFAULT_MAX_LEN: usize = 20;

/// Largest beam the engine supports. Beam bookkeeping lives in fixed arrays on the stack
/// (words, log-probs and cache ancestry of every beam, twice, plus the result: about 15 KB).
pub const MAX_BEAM: usize = 8;

/// Longest caption the engine supports (positions 1..=MAX_STEPS).
pub const MAX_STEPS: usize = 64;

/// Sizes and offsets of every workspace slot, in f32 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub d: usize,
    pub d_in: usize,
    pub d_ff: usize,
    pub m: usize,
    pub vocab: usize,
    pub n_dec: usize,
    pub regions: usize,
    pub beam: usize,
    pub max_len: usize,
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl Plan {
    /// The plan for `cfg` at `beam` beams, `regions` regions per image and captions of up to
    /// `max_len` words. Arguments of 0 are treated as 1.
    pub const fn new(cfg: &Config, beam: usize, regions: usize, max_len: usize) -> Plan {
        Plan {
            d: cfg.d_model as usize,
            d_in: cfg.d_in as usize,
            d_ff: cfg.d_ff as usize,
            m: cfg.m as usize,
            vocab: cfg.vocab as usize,
            n_dec: cfg.n_dec as usize,
            regions: max(regions, 1),
            beam: max(beam, 1),
            max_len: max(max_len, 1),
        }
    }

    /// Largest `n × in` product of any linear layer: the int8 activation scratch in bytes.
    pub const fn quant_bytes(&self) -> usize {
        let (r, b, d) = (self.regions, self.beam, self.d);
        // encoder linears over R rows; cross-attention K/V over the 3 levels at once (3R rows)
        let enc = max(r * max(self.d_in, max(d, self.d_ff)), 3 * r * d);
        let dec = max(3 * b * d, b * max(2 * d, self.d_ff));
        max(enc, dec)
    }

    /// Rows of the int8 per-row scale array.
    pub const fn quant_rows(&self) -> usize {
        3 * max(self.regions, self.beam)
    }

    // ---- persistent slots ---------------------------------------------------------------
    pub const fn enc_out_len(&self) -> usize {
        3 * self.regions * self.d
    }
    pub const fn mask_len(&self) -> usize {
        self.regions
    }
    pub const fn quant_len(&self) -> usize {
        self.quant_bytes().div_ceil(4) + self.quant_rows()
    }

    // ---- phase area -------------------------------------------------------------------
    /// Encoder scratch: six `[R, d]` buffers, the FFN hidden `[R, F]`, one score row.
    pub const fn encoder_scratch_len(&self) -> usize {
        6 * self.regions * self.d + self.regions * self.d_ff + self.regions + self.m
    }
    pub const fn cross_kv_len(&self) -> usize {
        self.n_dec * 3 * self.regions * self.d
    }
    pub const fn self_kv_len(&self) -> usize {
        self.n_dec * self.max_len * self.beam * self.d
    }
    pub const fn key_pad_len(&self) -> usize {
        self.max_len * self.beam
    }
    /// Decoder per-step scratch.
    pub const fn decoder_scratch_len(&self) -> usize {
        let (b, d) = (self.beam, self.d);
        10 * b * d
            + 2 * 3 * b * d
            + b * 2 * d
            + b * self.d_ff
            + b * self.vocab
            + max(self.max_len, self.regions)
    }
    pub const fn decoder_state_len(&self) -> usize {
        2 * self.cross_kv_len()
            + 2 * self.self_kv_len()
            + self.key_pad_len()
            + self.decoder_scratch_len()
    }
    pub const fn phase_len(&self) -> usize {
        max(self.encoder_scratch_len(), self.decoder_state_len())
    }

    /// Total workspace length in f32 elements.
    pub const fn total_floats(&self) -> usize {
        self.enc_out_len() + self.mask_len() + self.quant_len() + self.phase_len()
    }

    /// Total workspace size in bytes.
    pub const fn total_bytes(&self) -> usize {
        4 * self.total_floats()
    }
}

/// RAM bytes of the workspace for `cfg` at `beam` beams and `regions` regions, for captions of
/// up to [`DEFAULT_MAX_LEN`] words (capped by the positional table). This is the figure
/// `m2-pack inspect` and `m2 info` print.
pub const fn workspace_bytes(cfg: &Config, beam: usize, regions: usize) -> usize {
    Plan::new(cfg, beam, regions, default_max_len(cfg)).total_bytes()
}

/// The caption length [`workspace_bytes`] plans for: [`DEFAULT_MAX_LEN`], capped by the
/// model's positional table.
pub const fn default_max_len(cfg: &Config) -> usize {
    if cfg.max_len() < DEFAULT_MAX_LEN {
        cfg.max_len()
    } else {
        DEFAULT_MAX_LEN
    }
}

/// Same as [`workspace_bytes`] in f32 elements (the length of a `static [f32; N]`).
pub const fn workspace_floats(cfg: &Config, beam: usize, regions: usize) -> usize {
    workspace_bytes(cfg, beam, regions) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_workspace_at_beam_5_is_under_4_mib() {
        let b = workspace_bytes(&Config::COCO, 5, 50);
        assert!(b <= 4 << 20, "COCO workspace {b} bytes");
        // Beam 1 needs less than beam 5; more regions need more.
        assert!(workspace_bytes(&Config::COCO, 1, 50) < b);
        assert!(workspace_bytes(&Config::COCO, 5, 100) > b);
    }

    #[test]
    fn usable_in_const_context() {
        const N: usize = workspace_floats(&Config::TINY, 5, 10);
        static WS: [f32; N] = [0.0; N];
        assert_eq!(WS.len() * 4, workspace_bytes(&Config::TINY, 5, 10));
    }
}
