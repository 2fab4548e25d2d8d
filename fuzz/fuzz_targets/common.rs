//! Shared by the fuzz targets: walk everything an accepted blob exposes, and run a whole
//! caption on it within a memory budget.
#![allow(dead_code)]

use m2::blob::{AlignedBuf, TensorKind};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, greedy, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

/// Largest workspace a caption target allocates (f32 elements: 64 MB). Larger plans are the
/// CLI's `--max-workspace` business, not the engine's: the target skips them.
pub const MAX_WORKSPACE_FLOATS: usize = 16 << 20;

/// Touch every accessor of an accepted blob: each tensor's last row, every vector, every token.
/// Any out-of-bounds read panics here (and is a finding).
pub fn exercise(blob: &Blob<'_>) {
    let cfg = *blob.config();
    let mut acc = 0f32;
    for (kind, layer) in TensorKind::required(&cfg) {
        let m = blob.matrix(kind, layer as usize);
        assert_eq!((m.rows as u32, m.cols as u32), kind.shape(&cfg));
        let mut row = vec![0f32; m.cols];
        if m.rows > 0 {
            m.row_to_f32(m.rows - 1, &mut row);
        }
        acc += row.first().copied().unwrap_or(0.0);
        let _ = blob.vector(kind, layer as usize);
    }
    for t in blob.tokens() {
        acc += t.len() as f32;
    }
    assert!(blob.max_token_len() <= blob.len());
    let _ = blob.verify_checksum();
    std::hint::black_box(acc);
}

/// Parse `bytes` both ways (checksum and no checksum) and exercise what is accepted.
pub fn parse_all_ways(bytes: &[u8]) {
    let buf = AlignedBuf::from_bytes(bytes);
    if let Ok(blob) = Blob::parse(&buf) {
        exercise(&blob);
    }
    if let Ok(blob) = Blob::parse_skip_checksum(&buf) {
        exercise(&blob);
    }
    let _ = Blob::declared_len(&buf);
}

/// Beam search (beam `1 + sel % 3`) and greedy decoding of `features` on an accepted blob,
/// scalar kernels, short captions. Errors are fine; a panic is a finding.
pub fn caption(blob: &Blob<'_>, features: &[f32], sel: u8) {
    let cfg = *blob.config();
    let model = M2::new(blob, Kernels::with_isa(m2::kernels::Isa::Scalar).unwrap());
    let beam = 1 + (sel as usize % 3);
    let max_len = 1 + (sel as usize / 3 % 4);
    if max_len > cfg.max_len() || beam > cfg.vocab as usize {
        return;
    }
    let plan = model.plan(beam, max_len);
    let n = plan.total_floats();
    if n > MAX_WORKSPACE_FLOATS {
        return;
    }
    let rows = (features.len() / (cfg.d_in as usize).max(1)).min(cfg.max_regions as usize);
    let x = &features[..rows * cfg.d_in as usize];
    let mut mem = vec![0f32; n];
    let Ok(mut ws) = Workspace::new(&mut mem, plan) else {
        return;
    };
    let opts = SearchOptions { beam, max_len };
    if let Ok(out) = beam_search(&model, x, &mut ws, &opts, |_| {}) {
        if let Some(b) = out.best() {
            let _ = m2::text::caption_string(&b.tokens, |id| blob.token(id), sel & 1 == 0);
        }
    }
    let _ = greedy(&model, x, &mut ws, max_len, |_, _| {});
}
