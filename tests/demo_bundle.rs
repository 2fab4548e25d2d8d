//! The bundled demo model (`assets/demo/`): the int8 blob is valid and is the checkpoint's
//! `m2-pack --calibrate assets/demo/calib_features.npy` pack byte for byte (on any CPU), the f32
//! engine gives the PyTorch model's beam-5 captions on every bundled test scene (stored as data
//! by `tools/python/demo/make_assets.py`), and int8 agrees with them at least as often as
//! `assets/demo/RESULTS.md` states.

use m2::blob::{AlignedBuf, DType};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{pack, read_vocab_json, PackOptions};
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use std::path::{Path, PathBuf};

/// int8 caption agreement with PyTorch stated in assets/demo/RESULTS.md (a floor, as a fraction).
const INT8_CAPTION_AGREEMENT_FLOOR: f64 = 0.85;

fn asset(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo")
        .join(f)
}

fn npy<T: npyz::Deserialize>(f: &str) -> (Vec<usize>, Vec<T>) {
    let bytes = std::fs::read(asset(f)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    (shape, npy.into_vec::<T>().unwrap())
}

fn json(f: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(asset(f)).unwrap()).unwrap()
}

fn heads() -> u32 {
    json("config.json")["h"].as_u64().unwrap() as u32
}

fn pack_options(dtype: DType) -> PackOptions {
    PackOptions {
        dtype,
        heads: heads(),
        max_regions: 4,
        ..PackOptions::default()
    }
}

fn packed(dtype: DType) -> AlignedBuf {
    let st = std::fs::read(asset("checkpoint.safetensors")).unwrap();
    let vocab = read_vocab_json(&std::fs::read(asset("vocab.json")).unwrap()).unwrap();
    AlignedBuf::from_bytes(&pack(&st, &vocab, &pack_options(dtype)).unwrap())
}

/// `m2-pack … --dtype int8 --calibrate assets/demo/calib_features.npy` (the bundled blob).
fn packed_calibrated() -> Vec<u8> {
    let st = std::fs::read(asset("checkpoint.safetensors")).unwrap();
    let vocab = read_vocab_json(&std::fs::read(asset("vocab.json")).unwrap()).unwrap();
    let (shape, feats) = npy::<f32>("calib_features.npy");
    assert_eq!(shape[2], m2::regions::D_IN);
    let cal = Calibration {
        features: &feats,
        images: shape[0],
        regions: shape[1],
        damping: Calibration::DAMPING,
        threads: 2,
    };
    pack_calibrated(
        &st,
        &vocab,
        &pack_options(DType::I8),
        &cal,
        &mut |_, _, _| {},
    )
    .unwrap()
}

/// Scenes checked: all 300 in a release build (`cargo test --release`), every third one in a
/// debug build so that plain `cargo test` stays fast (the unoptimised engine is ~30x slower).
const STRIDE: usize = if cfg!(debug_assertions) { 3 } else { 1 };

/// (scene index, best tokens, caption) for the checked bundled scenes.
fn caption_all(blob: &Blob) -> Vec<(usize, Vec<u32>, String)> {
    let model = M2::new(blob, Kernels::detect());
    let (fs, feats) = npy::<f32>("test_features.npy");
    let (k, r, d) = (fs[0], fs[1], fs[2]);
    let opts = SearchOptions {
        beam: 5,
        max_len: 20,
    };
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).unwrap();
    (0..k)
        .step_by(STRIDE)
        .map(|i| {
            let out = beam_search(
                &model,
                &feats[i * r * d..(i + 1) * r * d],
                &mut ws,
                &opts,
                |_| {},
            )
            .unwrap();
            let best = out.best().unwrap();
            let text = m2::text::caption_string(&best.tokens, |id| blob.token(id), false).unwrap();
            (i, best.tokens.to_vec(), text)
        })
        .collect()
}

#[test]
fn bundled_int8_blob_parses_and_its_checksum_is_valid() {
    let buf = AlignedBuf::read_file(asset("demo-int8.m2")).unwrap();
    let blob = Blob::parse(&buf).expect("bundled blob must parse (checksum included)");
    blob.verify_checksum().unwrap();
    let cfg = blob.config();
    let vocab = json("vocab.json");
    assert_eq!(cfg.vocab as usize, vocab.as_array().unwrap().len());
    assert_eq!(cfg.d_in as usize, m2::regions::D_IN);
    assert_eq!(cfg.max_regions, 4);
    assert_eq!(cfg.h, heads());
    assert_eq!(
        blob.matrix(m2::blob::TensorKind::VocabW, 0).dtype(),
        DType::I8
    );
    // byte-identical to a fresh calibrated pack of the bundled checkpoint (calibration runs
    // the scalar kernels: the same bytes on every CPU, so this holds under qemu-aarch64 too)
    assert!(
        buf[..] == packed_calibrated()[..],
        "demo-int8.m2 is not the checkpoint's `--calibrate calib_features.npy` int8 pack"
    );
    // and differs from round-to-nearest only in the int8 values, not in layout or size
    assert_eq!(buf.len(), packed(DType::I8).len());
}

#[test]
fn engine_f32_gives_the_pytorch_captions_on_every_bundled_scene() {
    let buf = packed(DType::F32);
    let blob = Blob::parse(&buf).unwrap();
    let got = caption_all(&blob);
    let (ts, want_tokens) = npy::<i64>("torch_bs_tokens.npy");
    let want_caps = json("torch_captions.json");
    assert_eq!(got.len(), ts[0].div_ceil(STRIDE));
    let mut bad = Vec::new();
    for (i, toks, text) in &got {
        let i = *i;
        let want: Vec<u32> = want_tokens[i * ts[1]..(i + 1) * ts[1]]
            .iter()
            .map(|&t| t as u32)
            .collect();
        if toks != &want || text != want_caps[i].as_str().unwrap() {
            bad.push(i);
        }
    }
    assert!(
        bad.is_empty(),
        "engine f32 differs from PyTorch on scenes {bad:?}"
    );
}

#[test]
fn engine_int8_caption_agreement_is_at_least_the_stated_figure() {
    let buf = AlignedBuf::read_file(asset("demo-int8.m2")).unwrap();
    let blob = Blob::parse(&buf).unwrap();
    let got = caption_all(&blob);
    let want_caps = json("torch_captions.json");
    let same = got
        .iter()
        .filter(|(i, _, t)| t == want_caps[*i].as_str().unwrap())
        .count();
    let frac = same as f64 / got.len() as f64;
    eprintln!(
        "int8 caption agreement with PyTorch: {same}/{} = {frac:.4}",
        got.len()
    );
    assert!(
        frac >= INT8_CAPTION_AGREEMENT_FLOOR,
        "int8 agreement {frac} < {INT8_CAPTION_AGREEMENT_FLOOR}"
    );
}
