//! The out-of-the-box demo — what `m2` with no arguments should print — and `--image scene.png`:
//!
//! ```text
//! cargo run --release --example demo                       # caption the bundled scenes
//! cargo run --release --example demo -- --image scene.png  # pixels -> regions -> caption
//! cargo run --release --example demo -- --image s.png --model other.m2
//! ```
//!
//! Everything it needs is compiled in (`include_bytes!`): the int8 demo blob and eight bundled
//! 48×48 scene PNGs with their reference captions. Each scene goes the whole way a user's
//! picture would: PNG → `m2::regions` (threshold, connected components, boxes, 72-d features)
//! → encoder → beam search (5 beams, 20 steps).

use m2::blob::AlignedBuf;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use std::time::Instant;

const BLOB: &[u8] = include_bytes!("../assets/demo/demo-int8.m2");
const INDEX: &str = include_str!("../assets/demo/scenes/index.json");
const PNGS: [&[u8]; 8] = [
    include_bytes!("../assets/demo/scenes/scene_00.png"),
    include_bytes!("../assets/demo/scenes/scene_01.png"),
    include_bytes!("../assets/demo/scenes/scene_02.png"),
    include_bytes!("../assets/demo/scenes/scene_03.png"),
    include_bytes!("../assets/demo/scenes/scene_04.png"),
    include_bytes!("../assets/demo/scenes/scene_05.png"),
    include_bytes!("../assets/demo/scenes/scene_06.png"),
    include_bytes!("../assets/demo/scenes/scene_07.png"),
];

struct Captioned {
    caption: String,
    regions: Vec<m2::regions::Region>,
    ms: f64,
}

fn caption_png(
    model: &M2,
    blob: &Blob,
    ws: &mut Workspace,
    png: &[u8],
) -> Result<Captioned, String> {
    let (regions, feats) = m2::regions::features_from_png(png, model.cfg.max_regions as usize)?;
    let t0 = Instant::now();
    let out = beam_search(
        model,
        &feats,
        ws,
        &SearchOptions {
            beam: 5,
            max_len: 20,
        },
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let best = out.best().ok_or("no beam")?;
    let caption = m2::text::caption_string(&best.tokens, |id| blob.token(id), false)
        .map_err(|e| format!("{e:?}"))?;
    Ok(Captioned {
        caption,
        regions,
        ms,
    })
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |n: &str| {
        args.iter()
            .position(|a| a == n)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let bytes = match get("--model") {
        Some(p) => std::fs::read(&p).map_err(|e| format!("{p}: {e}"))?,
        None => BLOB.to_vec(),
    };
    let buf = AlignedBuf::from_bytes(&bytes);
    let blob = Blob::parse(&buf).map_err(|e| format!("{e:?}"))?;
    let kernels = Kernels::detect();
    let model = M2::new(&blob, kernels);
    let plan = model.plan(5, 20);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| e.to_string())?;

    if let Some(path) = get("--image") {
        let png = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let c = caption_png(&model, &blob, &mut ws, &png)?;
        println!("{}", c.caption);
        eprintln!("{} region(s), {:.1} ms", c.regions.len(), c.ms);
        return Ok(());
    }

    let index: serde_json::Value = serde_json::from_str(INDEX).map_err(|e| e.to_string())?;
    let cfg = blob.config();
    println!(
        "m2 demo: a Meshed-Memory Transformer (d_model {}, {} heads, {}+{} layers, vocab {}) trained on\n\
         scenes of real handwritten digits (scikit-learn's scans; test digits never seen in training).\n",
        cfg.d_model, cfg.h, cfg.n_enc, cfg.n_dec, cfg.vocab
    );
    let mut total_ms = 0.0;
    for (i, png) in PNGS.iter().enumerate() {
        let c = caption_png(&model, &blob, &mut ws, png)?;
        total_ms += c.ms;
        let e = &index[i];
        println!(
            "scene {} ({} regions, {:.1} ms)",
            e["png"].as_str().unwrap_or("?"),
            c.regions.len(),
            c.ms
        );
        println!("  m2:           {}", c.caption);
        println!("  ground truth: {}", e["refs"][0].as_str().unwrap_or(""));
    }
    println!(
        "\n{:.1} ms per scene on average ({kernels:?}; beam 5, 20 steps)",
        total_ms / PNGS.len() as f64
    );
    println!(
        "memory plan: weights {} bytes (int8 blob, read in place) + workspace {} bytes (beam 5, {} regions, 20 steps)",
        bytes.len(),
        plan.total_bytes(),
        cfg.max_regions
    );
    Ok(())
}
