//! `m2` with no arguments: caption the bundled digit scenes (assets/demo/), end to end from
//! their PNGs (region extractor → encoder → beam search), beside their ground truth.

use anyhow::Result;
use m2::blob::AlignedBuf;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use std::time::Instant;

const BLOB: &[u8] = include_bytes!("../../assets/demo/demo-int8.m2");
const INDEX: &str = include_str!("../../assets/demo/scenes/index.json");
const PNGS: [&[u8]; 8] = [
    include_bytes!("../../assets/demo/scenes/scene_00.png"),
    include_bytes!("../../assets/demo/scenes/scene_01.png"),
    include_bytes!("../../assets/demo/scenes/scene_02.png"),
    include_bytes!("../../assets/demo/scenes/scene_03.png"),
    include_bytes!("../../assets/demo/scenes/scene_04.png"),
    include_bytes!("../../assets/demo/scenes/scene_05.png"),
    include_bytes!("../../assets/demo/scenes/scene_06.png"),
    include_bytes!("../../assets/demo/scenes/scene_07.png"),
];

pub fn run(kernels: Kernels) -> Result<()> {
    let buf = AlignedBuf::from_bytes(BLOB);
    let blob = Blob::parse(&buf).map_err(|e| anyhow::anyhow!("bundled demo blob: {e}"))?;
    let cfg = *blob.config();
    let model = M2::new(&blob, kernels);
    let opts = SearchOptions {
        beam: 5,
        max_len: 20,
    };
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan)?;
    let index: serde_json::Value = serde_json::from_str(INDEX)?;
    outln!(
        "m2 demo: a Meshed-Memory Transformer (d_model {}, {} heads, {}+{} layers, vocab {}, int8 weights) trained on\n\
         scenes of real handwritten digits (scikit-learn's scans; these test digits were never seen in training).\n",
        cfg.d_model, cfg.h, cfg.n_enc, cfg.n_dec, cfg.vocab
    );
    let mut total_ms = 0.0;
    for (i, png) in PNGS.iter().enumerate() {
        let (regions, feats) = m2::regions::features_from_png(png, cfg.max_regions as usize)
            .map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        let out = beam_search(&model, &feats, &mut ws, &opts, |_| {})?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        total_ms += ms;
        let tokens = out.best().map(|b| b.tokens.to_vec()).unwrap_or_default();
        let caption = m2::text::caption_string(&tokens, |id| blob.token(id), false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let e = &index[i];
        outln!(
            "assets/demo/scenes/{}  ({} regions, {ms:.1} ms)",
            e["png"].as_str().unwrap_or("?"),
            regions.len()
        );
        outln!("  m2:           {caption}");
        outln!("  ground truth: {}", e["refs"][0].as_str().unwrap_or(""));
    }
    outln!(
        "\n{:.1} ms per scene (beam 5, 20 steps, {kernels:?})",
        total_ms / PNGS.len() as f64
    );
    outln!(
        "memory plan: weights {} bytes (int8 weights with int16 activations, read in place) + workspace {} bytes (beam 5, {} regions, 20 steps)",
        BLOB.len(),
        plan.total_bytes(),
        cfg.max_regions
    );
    outln!("\nmore: m2 caption --model assets/demo/demo-int8.m2 --image assets/demo/scenes/scene_03.png   (m2 --help)");
    Ok(())
}
