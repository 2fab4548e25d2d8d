//! The quantisation bars on a trained model (the bundled digit-scene demo): the maximum
//! teacher-forced log-prob error of f16 and int8 blobs against f32 on the PyTorch model's own
//! beam-5 captions, all 300 test scenes. Two figures: the error of each caption word's
//! log-prob (the caption likelihood; what beam scores add up — the bar is asserted on this),
//! and the error over the whole vocabulary at every position (reported; it is dominated by
//! words with log-prob < −20 that no search ever picks). Plus best-caption agreement.
//! Run with `--nocapture` for the figures.

mod common;

use common::*;
use m2::blob::DType;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::pack::calibrate::Calibration;
use m2::search::{beam_search, SearchOptions};
use m2::Blob;

#[test]
// minutes in a debug build (six blobs, one of them GPTQ-calibrated, over the test scenes): it
// runs in release, where it takes seconds — `cargo test --release --test demo_fidelity`, as
// .ci/run does
#[cfg_attr(
    debug_assertions,
    ignore = "release only: cargo test --release --test demo_fidelity"
)]
fn f16_and_int8_fidelity_on_the_trained_demo_model() {
    let Array { shape, data: feats } = npy::<f32>(&asset("test_features.npy"));
    let caps = npy::<i64>(&asset("torch_bs_tokens.npy")).data;
    let (kk, r, d_in) = (shape[0], shape[1], shape[2]);

    let b32 = demo_packed(DType::F32, None, None);
    let blob32 = Blob::parse(&b32).unwrap();
    let cfg = *blob32.config();
    let (v, t_len) = (cfg.vocab as usize, 21usize.min(cfg.max_len()));
    let reference = M2::new(&blob32, Kernels::SCALAR);
    // GPTQ calibration on the bundled calibration images: the first 256 *training* scenes
    // (tools/python/demo/make_calibration.py), so every test scene here is held out — exactly
    // how the bundled demo-int8.m2 is packed
    let Array {
        shape: cal_shape,
        data: cal_feats,
    } = npy::<f32>(&asset("calib_features.npy"));
    assert_eq!(cal_shape[2], d_in);
    let cal = Calibration {
        features: &cal_feats,
        images: cal_shape[0],
        regions: cal_shape[1],
        damping: Calibration::DAMPING,
        threads: 2,
    };
    // f16 and calibrated int8: the bars (2e-2, 0.15); int8a16 (the bundled blob): 2e-2
    // and 97 % identical captions (#17). Round-to-nearest int8 on the checkpoint before
    // quantisation-aware training missed 0.15 (0.18; README): 0.3 guards it against regressions
    // such as an unquantised or mis-scaled layer, which show up as errors of several nats.
    for (dtype, readout, calibrated, bar, floor) in [
        (DType::F16, None, false, 2e-2f32, 99usize),
        (DType::I8, None, false, 0.3, 88),
        (DType::I8, Some(DType::F16), false, 0.3, 88),
        (DType::I8, Some(DType::F32), false, 0.3, 88),
        (DType::I8, None, true, 0.15, 85),
        // the bundled blob: int8 weights (on their grid: the checkpoint is quantisation-aware
        // trained), int16 activations
        (DType::I8A16, None, true, 2e-2, 97),
    ] {
        // the int8a16 row is the bundled blob itself: tests/demo_bundle.rs proves it is this
        // checkpoint's `--calibrate` pack (and its round-to-nearest pack), so no second GPTQ run
        // (minutes under qemu)
        let bq = match dtype {
            DType::I8A16 => demo_blob(),
            _ => demo_packed(dtype, readout, calibrated.then_some(&cal)),
        };
        let label = format!(
            "{dtype}{}{}",
            readout.map_or(String::new(), |r| format!(" + {r} read-out")),
            match (calibrated, dtype) {
                (true, DType::I8A16) =>
                    ", GPTQ-calibrated on 256 training scenes (the bundled blob)",
                (true, _) => ", GPTQ-calibrated on 256 training scenes",
                _ => "",
            }
        );
        let blobq = Blob::parse(&bq).unwrap();
        let model = M2::new(&blobq, Kernels::detect());
        let (mut a, mut b) = (
            WorkspaceBuf::new(&model, 5, t_len),
            WorkspaceBuf::new(&model, 5, t_len),
        );
        let (mut wa, mut wb) = (a.workspace(), b.workspace());
        let (mut oa, mut ob) = (vec![0f32; t_len * v], vec![0f32; t_len * v]);
        let (mut worst, mut worst_word, mut same, mut n) = (0f32, 0f32, 0usize, 0usize);
        for k in 0..kk {
            let x = &feats[k * r * d_in..(k + 1) * r * d_in];
            // <bos> + the PyTorch caption (20 ids, eos then filler 0 = <unk>), cut to the table
            let mut toks = vec![cfg.bos];
            toks.extend(caps[k * 20..(k + 1) * 20].iter().map(|&t| t as u32));
            toks.truncate(t_len);
            model.score(x, &toks, &mut wa, &mut oa).unwrap();
            reference.score(x, &toks, &mut wb, &mut ob).unwrap();
            // rows 0..=p, where toks[p + 1] is <eos>: the positions a beam search scores (the
            // next word after <eos> is the tensor's filler, never a caption word)
            let rows = toks
                .iter()
                .skip(1)
                .position(|&t| t == cfg.eos)
                .map_or(t_len, |p| p + 1);
            for (p, q) in oa[..rows * v].iter().zip(&ob[..rows * v]) {
                worst = worst.max((p - q).abs());
            }
            // row t predicts toks[t + 1]: the caption's words, <eos> included
            for t in 0..rows.min(t_len - 1) {
                let w = t * v + toks[t + 1] as usize;
                worst_word = worst_word.max((oa[w] - ob[w]).abs());
            }
            let opts = SearchOptions {
                beam: 5,
                max_len: 20,
            };
            let qa = beam_search(&model, x, &mut wa, &opts, |_| {}).unwrap();
            let ra = beam_search(&reference, x, &mut wb, &opts, |_| {}).unwrap();
            same += (qa.best().unwrap().tokens == ra.best().unwrap().tokens) as usize;
            n += 1;
        }
        eprintln!(
            "demo {label}: max teacher-forced log-prob error: caption words {worst_word:.3e} (bar {bar}), whole vocabulary {worst:.3e}; identical best captions {same}/{n} ({:.1}%)",
            100.0 * same as f32 / n as f32
        );
        assert!(
            worst_word <= bar,
            "demo {label}: caption-word log-prob error {worst_word} > {bar}"
        );
        assert!(
            same * 100 >= n * floor,
            "demo {label}: {same}/{n} identical captions, floor {floor}%"
        );
    }
}
