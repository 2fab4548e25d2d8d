//! The bundled demo model (`assets/demo/`): the int8 blob is valid and is the checkpoint's
//! `m2-pack --calibrate assets/demo/calib_features.npy` pack byte for byte (on any CPU), the f32
//! engine gives the PyTorch model's beam-5 captions on every bundled test scene (stored as data
//! by `tools/python/demo/make_assets.py`), and int8 agrees with them at least as often as
//! `assets/demo/RESULTS.md` states.

mod common;

use common::*;
use m2::blob::DType;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::pack::calibrate::Calibration;
use m2::search::{beam_search, SearchOptions};
use m2::Blob;

/// int8 caption agreement with PyTorch stated in assets/demo/RESULTS.md (a floor, as a fraction).
const INT8_CAPTION_AGREEMENT_FLOOR: f64 = 0.97;

fn json(f: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(asset(f)).unwrap()).unwrap()
}

/// `m2-pack … --dtype int8a16 --calibrate assets/demo/calib_features.npy` (the bundled blob).
fn packed_calibrated() -> m2::blob::AlignedBuf {
    let feats = npy::<f32>(&asset("calib_features.npy"));
    assert_eq!(feats.shape[2], m2::regions::D_IN);
    let cal = Calibration {
        features: &feats.data,
        images: feats.shape[0],
        regions: feats.shape[1],
        damping: Calibration::DAMPING,
        threads: 2,
    };
    demo_packed(DType::I8A16, None, Some(&cal))
}

/// Scenes checked: all 300 in a release build (`cargo test --release`), every third one in a
/// debug build so that plain `cargo test` stays fast (the unoptimised engine is ~30x slower).
const STRIDE: usize = if cfg!(debug_assertions) { 3 } else { 1 };

/// (scene index, best tokens, caption) for the checked bundled scenes.
fn caption_all(blob: &Blob) -> Vec<(usize, Vec<u32>, String)> {
    let model = M2::new(blob, Kernels::detect());
    let Array { shape, data: feats } = npy::<f32>(&asset("test_features.npy"));
    let (k, r, d) = (shape[0], shape[1], shape[2]);
    let opts = SearchOptions::default();
    let mut mem = WorkspaceBuf::new(&model, opts.beam, opts.max_len);
    let mut ws = mem.workspace();
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
// a minute and a half in a debug build (a GPTQ-calibrated pack of the demo checkpoint), seconds
// in release: `cargo test --release --test demo_bundle`, as .ci/run does
#[cfg_attr(
    debug_assertions,
    ignore = "release only: cargo test --release --test demo_bundle"
)]
fn bundled_int8_blob_parses_and_its_checksum_is_valid() {
    let buf = demo_blob();
    let blob = Blob::parse(&buf).expect("bundled blob must parse (checksum included)");
    blob.verify_checksum().unwrap();
    let cfg = blob.config();
    let vocab = json("vocab.json");
    assert_eq!(cfg.vocab as usize, vocab.as_array().unwrap().len());
    assert_eq!(cfg.d_in as usize, m2::regions::D_IN);
    assert_eq!(cfg.max_regions, 4);
    assert_eq!(cfg.h as u64, json("config.json")["h"].as_u64().unwrap());
    assert_eq!(
        blob.matrix(m2::blob::TensorKind::VocabW, 0).dtype(),
        DType::I8A16
    );
    // byte-identical to a fresh calibrated pack of the bundled checkpoint (calibration runs
    // the scalar kernels: the same bytes on every CPU, so this holds under qemu-aarch64 too)
    assert!(
        buf[..] == packed_calibrated()[..],
        "demo-int8.m2 is not the checkpoint's `--calibrate calib_features.npy` int8a16 pack"
    );
    // the checkpoint is quantisation-aware trained: every int8 weight lies on its grid, so
    // GPTQ has nothing to push around and round-to-nearest gives the same bytes
    assert!(buf[..] == demo_packed(DType::I8A16, None, None)[..]);
}

/// The checkpoint's int8-stored weights are exactly their int8 values: `q · scale` in f32 is
/// the f32 blob's weight, bit for bit, in every int8 tensor (what `train.py --qat-from`
/// exports), so the int8 engine's weights *are* the f32 engine's.
#[test]
fn bundled_checkpoint_weights_lie_on_the_int8_grid() {
    let (b8, b32) = (demo_blob(), demo_packed(DType::F32, None, None));
    let (q, f) = (Blob::parse(&b8).unwrap(), Blob::parse(&b32).unwrap());
    let mut tensors = 0;
    for t in q.tensors().filter(|t| t.dtype == DType::I8A16) {
        let (mq, mf) = (
            q.matrix(t.kind, t.layer as usize),
            f.matrix(t.kind, t.layer as usize),
        );
        let (mut a, mut b) = (vec![0f32; mq.cols], vec![0f32; mq.cols]);
        for r in 0..mq.rows {
            mq.row_to_f32(r, &mut a);
            mf.row_to_f32(r, &mut b);
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?}[{}] row {r} is off the int8 grid",
                t.kind,
                t.layer
            );
        }
        tensors += 1;
    }
    assert_eq!(tensors, 60);
}

#[test]
fn engine_f32_gives_the_pytorch_captions_on_every_bundled_scene() {
    let buf = demo_packed(DType::F32, None, None);
    let blob = Blob::parse(&buf).unwrap();
    let got = caption_all(&blob);
    let Array {
        shape: ts,
        data: want_tokens,
    } = npy::<i64>(&asset("torch_bs_tokens.npy"));
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
    let buf = demo_blob();
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
