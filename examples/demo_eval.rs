//! Caption a `[K, R, d_in]` feature file with the engine and print JSON — the engine side of
//! the digit-scene demo's evaluation (`tools/python/demo/evaluate.py` computes BLEU-4/CIDEr).
//!
//! ```text
//! cargo run --release --example demo_eval -- \
//!     (--model demo-int8.m2 | --checkpoint ckpt.safetensors --vocab vocab.json --dtype int8 \
//!      --heads 4 --regions 4 [--calibrate calib_features.npy] [--write-blob out.m2]) \
//!     --features test_features.npy [--beam 5] [--max-len 20] [--out captions.json]
//! ```
//! Output JSON: `{"dtype", "blob_bytes", "captions": [..], "tokens": [[..]], "scores": [..],
//! "ms_per_image"}`.

use m2::blob::{AlignedBuf, DType};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{pack, read_vocab_json, PackOptions};
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bytes: Vec<u8> = if let Some(m) = arg(&args, "--model") {
        std::fs::read(m)?
    } else {
        let ck = arg(&args, "--checkpoint").ok_or("--model or --checkpoint required")?;
        let vocab = read_vocab_json(&std::fs::read(arg(&args, "--vocab").ok_or("--vocab")?)?)
            .map_err(|e| e.to_string())?;
        let dtype = match arg(&args, "--dtype").as_deref().unwrap_or("f32") {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "int8" | "i8" => DType::I8,
            "int8a16" => DType::I8A16,
            d => return Err(format!("unknown dtype {d}").into()),
        };
        let opts = PackOptions {
            dtype,
            heads: arg(&args, "--heads").unwrap_or("4".into()).parse()?,
            max_regions: arg(&args, "--regions").unwrap_or("4".into()).parse()?,
            ..PackOptions::default()
        };
        let st = std::fs::read(ck)?;
        let b = match arg(&args, "--calibrate") {
            // GPTQ int8 rounding on these images, as `m2-pack --calibrate` does
            Some(c) => {
                let f = m2::input::read_features(c.as_ref(), m2::regions::D_IN)?;
                let cal = Calibration {
                    features: &f.data,
                    images: f.images,
                    regions: f.regions,
                    damping: Calibration::DAMPING,
                    threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                };
                pack_calibrated(&st, &vocab, &opts, &cal, &mut |_, _, _| {})
            }
            None => pack(&st, &vocab, &opts),
        }
        .map_err(|e| e.to_string())?;
        if let Some(p) = arg(&args, "--write-blob") {
            std::fs::write(p, &b)?;
        }
        b
    };
    let buf = AlignedBuf::from_bytes(&bytes);
    let blob = Blob::parse(&buf).map_err(|e| format!("{e:?}"))?;
    let kernels = Kernels::detect();
    let model = M2::new(&blob, kernels);
    let cfg = *blob.config();

    let features = arg(&args, "--features").ok_or("--features required")?;
    let f = m2::input::read_features(features.as_ref(), cfg.d_in as usize)?;
    let (k, r, d_in, feats) = (f.images, f.regions, f.d_in, f.data);

    let opts = SearchOptions {
        beam: arg(&args, "--beam").unwrap_or("5".into()).parse()?,
        max_len: arg(&args, "--max-len").unwrap_or("20".into()).parse()?,
    };
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| format!("{e:?}"))?;

    let mut captions = Vec::new();
    let mut tokens = Vec::new();
    let mut scores = Vec::new();
    let t0 = Instant::now();
    for i in 0..k {
        let x = &feats[i * r * d_in..(i + 1) * r * d_in];
        let out = beam_search(&model, x, &mut ws, &opts, |_| {}).map_err(|e| format!("{e}"))?;
        let best = out.best().ok_or("no beam")?;
        let text = m2::text::caption_string(&best.tokens, |id| blob.token(id), false)
            .map_err(|e| format!("{e:?}"))?;
        captions.push(serde_json::Value::from(text));
        tokens.push(serde_json::Value::from(
            best.tokens.iter().copied().collect::<Vec<u32>>(),
        ));
        scores.push(serde_json::Value::from(best.score as f64));
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3 / k.max(1) as f64;
    let dtype = format!("{:?}", blob.matrix(m2::blob::TensorKind::VocabW, 0).dtype());
    let json = serde_json::json!({
        "dtype": dtype,
        "blob_bytes": bytes.len(),
        "captions": captions,
        "tokens": tokens,
        "scores": scores,
        "ms_per_image": ms,
        "kernels": format!("{kernels:?}"),
    });
    let s = serde_json::to_string(&json)?;
    match arg(&args, "--out") {
        Some(p) => std::fs::write(p, s)?,
        None => println!("{s}"),
    }
    eprintln!("{k} images, {ms:.2} ms/image, blob {} bytes", bytes.len());
    Ok(())
}
