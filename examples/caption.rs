//! Caption images with an M2 blob: `m2` used as a library, the program to start from.
//!
//! ```text
//! cargo run --release --example caption -- MODEL.m2 FEATURES.npy   # [K, R, d_in] or [R, d_in], f32/f16
//! cargo run --release --example caption -- MODEL.m2 SCENE.png …    # scenes for the demo's extractor
//! cargo run --release --example caption                            # the bundled demo model and scenes
//! ```
//! One line per image: its name, a tab, its caption (beam 5, 20 words, as the reference's
//! test.py). In your own `Cargo.toml`:
//! `m2 = { version = "0.1", default-features = false, features = ["std"] }`.

use m2::blob::MappedBlob;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use std::error::Error;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (model_path, inputs): (PathBuf, Vec<PathBuf>) = match args.next() {
        Some(model) => (model, args.collect()),
        None => {
            let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
            let scenes = (0..8).map(|i| demo.join(format!("scenes/scene_0{i}.png")));
            (demo.join("demo-int8.m2"), scenes.collect())
        }
    };

    // The weights: memory-mapped, validated once (checksum included), then read in place.
    let mapped = MappedBlob::open(&model_path)?;
    let blob = mapped.blob()?;
    let cfg = *blob.config();
    // The best kernels this CPU has (M2_KERNEL=scalar|avx2|… forces one); all cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = M2::new(&blob, Kernels::from_env()?.with_threads(threads));

    // One workspace for every image: all activations and caches, sized by the memory plan.
    let opts = SearchOptions::default();
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan)?;

    for input in &inputs {
        for (name, features) in images(input, &cfg)? {
            let out = beam_search(&model, &features, &mut ws, &opts, |_| {})?;
            let best = out.best().ok_or("no caption")?;
            let text = m2::text::caption_string(&best.tokens, |id| blob.token(id), false)?;
            println!("{name}\t{text}");
        }
    }
    Ok(())
}

/// Each image of `path` as its name and region features `[R, d_in]` (R ≤ the model's
/// `max_regions`; the engine zero-pads fewer, as the reference does).
fn images(path: &Path, cfg: &m2::Config) -> Result<Vec<(String, Vec<f32>)>, Box<dyn Error>> {
    let max_regions = cfg.max_regions as usize;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        // bright digits on a dark background (or the reverse), for a model trained on
        // `m2::regions` features such as the demo's
        if cfg.d_in as usize != m2::regions::D_IN {
            return Err(format!(
                "{}: this model does not take m2::regions features",
                path.display()
            )
            .into());
        }
        let (_regions, features) =
            m2::regions::features_from_png(&std::fs::read(path)?, max_regions)?;
        return Ok(vec![(path.display().to_string(), features)]);
    }
    let f = m2::input::read_features(path, cfg.d_in as usize)?;
    // more regions than the model takes: the first ones, as the reference's loader does
    let rows = f.regions.min(max_regions);
    Ok((0..f.images)
        .map(|k| {
            (
                format!("{}[{k}]", path.display()),
                f.image(k)[..rows * f.d_in].to_vec(),
            )
        })
        .collect())
}
