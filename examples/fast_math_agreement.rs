//! How far the `fast-math` feature (micromath's `exp`, `ln`, `sqrt`, see `m2::math::fast`)
//! moves the captions: the demo's 300 test scenes through the int8 demo model (beam 5,
//! max_len 20, scalar kernels), once per build, compared caption for caption.
//!
//! The feature is chosen at compile time, so each build writes its captions and the second
//! compares them with the first:
//!
//! ```text
//! cargo run --release --example fast_math_agreement -- --out target/exact.json
//! cargo run --release --example fast_math_agreement --features fast-math -- \
//!     --out target/fast.json --compare target/exact.json
//! ```
//! Options: `--model M.m2` (default `assets/demo/demo-int8.m2`), `--features F.npy` (default
//! `assets/demo/test_features.npy`, `[K, R, d_in]` f32). Beam 5, max_len 20.
//!
//! The file: `{"fast_math", "tokens": [[..]], "scores": [..]}` (each image's best beam; scores
//! as f32 bit patterns, so a comparison of two exact builds is bit for bit). The comparison
//! prints the number of images whose best captions (token ids) are identical, the largest
//! |score difference| among those, and the images that differ.

use m2::blob::AlignedBuf;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One build's captions: (token ids, score) per image.
type Captions = Vec<(Vec<u32>, f32)>;

fn read(path: &str) -> Res<(bool, Captions)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let tokens = v["tokens"].as_array().ok_or("tokens")?;
    let scores = v["scores"].as_array().ok_or("scores")?;
    let caps = tokens
        .iter()
        .zip(scores)
        .map(|(t, s)| {
            let ids = t
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (ids, f32::from_bits(s.as_u64().unwrap() as u32))
        })
        .collect();
    Ok((v["fast_math"].as_bool().ok_or("fast_math")?, caps))
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fast = cfg!(feature = "fast-math");
    let model_path = arg(&args, "--model").unwrap_or("assets/demo/demo-int8.m2".into());
    let feat_path = arg(&args, "--features").unwrap_or("assets/demo/test_features.npy".into());
    let bytes = AlignedBuf::from_bytes(&std::fs::read(&model_path)?);
    let blob = Blob::parse(&bytes).map_err(|e| format!("{model_path}: {e}"))?;
    let model = M2::new(&blob, Kernels::SCALAR);
    let cfg = *blob.config();

    let fbytes = std::fs::read(&feat_path)?;
    let npy = npyz::NpyFile::new(&fbytes[..])?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let feats: Vec<f32> = npy.into_vec::<f32>()?;
    let [k, r, d_in] = shape[..] else {
        return Err(format!("{feat_path}: shape {shape:?}, want [K, R, d_in]").into());
    };
    assert_eq!(d_in, cfg.d_in as usize, "feature size");

    // The reference's test settings, as the firmware and the demo's evaluation use them.
    let opts = SearchOptions {
        beam: 5,
        max_len: 20,
    };
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| format!("{e:?}"))?;

    let mut caps: Captions = Vec::with_capacity(k);
    for i in 0..k {
        let x = &feats[i * r * d_in..(i + 1) * r * d_in];
        let out = beam_search(&model, x, &mut ws, &opts, |_| {}).map_err(|e| format!("{e}"))?;
        let best = out.best().ok_or("no beam")?;
        caps.push((best.tokens.iter().copied().collect(), best.score));
    }
    eprintln!(
        "{k} images, {} math, beam 5, max_len 20, scalar kernels",
        if fast { "fast (micromath)" } else { "exact" }
    );
    if let Some(p) = arg(&args, "--out") {
        let tokens: Vec<Value> = caps.iter().map(|(t, _)| json!(t)).collect();
        let scores: Vec<Value> = caps.iter().map(|(_, s)| json!(s.to_bits())).collect();
        let v = json!({ "fast_math": fast, "tokens": tokens, "scores": scores });
        std::fs::write(&p, serde_json::to_string(&v)?)?;
        eprintln!("wrote {p}");
    }

    if let Some(p) = arg(&args, "--compare") {
        let (other_fast, other) = read(&p)?;
        if other.len() != caps.len() {
            return Err(format!("{p}: {} images, this run {}", other.len(), caps.len()).into());
        }
        let (mut same, mut max_diff, mut bit_same) = (0usize, 0f32, 0usize);
        let mut differ = Vec::new();
        for (i, ((t, s), (t2, s2))) in caps.iter().zip(&other).enumerate() {
            if t == t2 {
                same += 1;
                max_diff = max_diff.max((s - s2).abs());
                bit_same += (s.to_bits() == s2.to_bits()) as usize;
            } else {
                differ.push(i);
            }
        }
        let word = |f: bool| if f { "fast-math" } else { "exact" };
        println!(
            "{same}/{} best captions identical ({} vs {p} [{}]); max |score diff| on those {max_diff:e} ({bit_same} scores bit-identical)",
            caps.len(),
            word(fast),
            word(other_fast)
        );
        if !differ.is_empty() {
            let vocab = |id: u32| blob.token(id);
            for i in differ {
                let text = |t: &[u32]| {
                    m2::text::caption_string(t, vocab, false).unwrap_or_else(|e| format!("{e:?}"))
                };
                println!(
                    "  image {i}: \"{}\" ({:.4}) vs \"{}\" ({:.4})",
                    text(&caps[i].0),
                    caps[i].1,
                    text(&other[i].0),
                    other[i].1
                );
            }
        }
    }
    Ok(())
}
