//! Quantised blobs against the reference (f32) on every fixture: teacher-forced log-prob error
//! (bars: f16 ≤ 2e-2, int8 ≤ 0.15), share of identical best captions, final-score error.
//! Token identity is asserted only where the fixture's recorded beam margin (gap between the
//! 5th and 6th candidate, at every step) exceeds what the measured log-prob error could move.
//! Run with `--nocapture` to see the table that README.md quotes.
//!
//! The fixtures' random weights with a least-squares read-out are extremely sensitive: rounding
//! the weights to f16 alone moves log-probs by up to ~9e-2 (rel. weight error 2^-11), so the
//! issue's bars (f16 ≤ 2e-2, int8 ≤ 0.15) are not reachable on them by any engine using the
//! blob's f16 / per-row int8 weights. What is asserted here instead:
//! * f32: ≤ 1e-4 and every reference caption;
//! * f16: the f16 engine equals the f32 engine run on the f16-rounded weights (≤ 1e-4), i.e.
//!   the f16 path adds no error beyond the weight format itself;
//! * f16 and int8: token identity wherever the recorded beam margin exceeds what the measured
//!   error could move, and the bars on the trained demo model (tests/demo_*.rs).

mod common;

use common::*;
use m2::blob::{BlobWriter, DType, TensorData, TensorKind};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

/// An f32 blob holding exactly the (dequantised) weights of `blob`.
fn dequantised(blob: &Blob) -> m2::blob::AlignedBuf {
    let mut w = BlobWriter::new(*blob.config());
    for t in blob.tensors() {
        let m = blob.matrix(t.kind, t.layer as usize);
        let (rows, cols) = (t.rows as usize, t.cols as usize);
        let values = match t.dtype {
            DType::F32 if rows * cols == blob.vector(t.kind, t.layer as usize).len() => {
                blob.vector(t.kind, t.layer as usize).to_vec()
            }
            _ => {
                let mut v = vec![0f32; rows * cols];
                for r in 0..rows {
                    m.row_to_f32(r, &mut v[r * cols..(r + 1) * cols]);
                }
                v
            }
        };
        w.add(
            t.kind,
            t.layer,
            TensorData::from_f32(&values, cols, DType::F32),
        );
    }
    w.vocab(blob.tokens().map(|t| t.to_vec()).collect());
    m2::blob::AlignedBuf::from_bytes(&w.finish().unwrap())
}

/// A fixture's teacher-forcing case: its images, the reference's input tokens and log-probs.
struct TfCase {
    feats: Array<f32>,
    tokens: Array<i64>,
    want: Array<f32>,
    valid: Vec<usize>,
    /// images, teacher-forced positions, vocabulary
    kk: usize,
    t_len: usize,
    v: usize,
}

impl TfCase {
    fn load(name: &str) -> TfCase {
        let want = npy_f32(name, "tf_logprobs.npy");
        let feats = npy_f32(name, "features.npy");
        TfCase {
            kk: feats.shape[0],
            t_len: want.shape[1],
            v: want.shape[2],
            valid: expected(name)["valid_regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
            tokens: npy_i64(name, "tf_tokens.npy"),
            feats,
            want,
        }
    }

    /// Image `k`'s valid regions `[valid, d_in]`.
    fn image(&self, k: usize) -> &[f32] {
        let (r, d_in) = (self.feats.shape[1], self.feats.shape[2]);
        &self.feats.data[k * r * d_in..(k * r + self.valid[k]) * d_in]
    }

    /// Image `k`'s teacher-forcing input ids `[t_len]`.
    fn tokens(&self, k: usize) -> Vec<u32> {
        let t = self.t_len;
        self.tokens.data[k * t..(k + 1) * t]
            .iter()
            .map(|&t| t as u32)
            .collect()
    }

    /// The reference's log-probs for image `k`, `[t_len, v]`.
    fn want(&self, k: usize) -> &[f32] {
        let n = self.t_len * self.v;
        &self.want.data[k * n..(k + 1) * n]
    }
}

/// The blobs checked on every fixture: the three dtypes, then f16 and int8 with an f32 read-out
/// (`--readout-dtype f32`), then int8 GPTQ-calibrated on the fixture's own images
/// (`--calibrate`). One test per fixture and variant (below), so the harness runs them side by
/// side.
const VARIANTS: [(DType, Option<DType>, bool); 6] = [
    (DType::F32, None, false),
    (DType::F16, None, false),
    (DType::I8, None, false),
    (DType::F16, Some(DType::F32), false),
    (DType::I8, Some(DType::F32), false),
    (DType::I8, None, true),
];

/// One test per fixture (a module) and variant (a function, `VARIANTS[i]`).
macro_rules! fidelity_tests {
    ($($fixture:ident = $name:literal;)*) => {$(
        mod $fixture {
            #[test] fn f32() { super::fidelity($name, 0) }
            #[test] fn f16() { super::fidelity($name, 1) }
            #[test] fn int8() { super::fidelity($name, 2) }
            #[test] fn f16_f32_readout() { super::fidelity($name, 3) }
            #[test] fn int8_f32_readout() { super::fidelity($name, 4) }
            #[test] fn int8_gptq() { super::fidelity($name, 5) }
        }
    )*};
}
fidelity_tests! {
    tiny_s0 = "tiny-s0";
    tiny_s2_masked = "tiny-s2-masked";
    small_s3 = "small-s3";
}

/// `fidelity_tests!` above names every fixture of `FIXTURES` (a fixture added there must be added
/// here too).
#[test]
fn every_fixture_is_checked() {
    assert_eq!(FIXTURES, ["tiny-s0", "tiny-s2-masked", "small-s3"]);
}

/// Fixture `name` with blob variant `VARIANTS[variant]`, on the scalar and the detected kernels;
/// prints its rows of the table README.md quotes (one block, so parallel tests do not mix rows).
fn fidelity(name: &str, variant: usize) {
    let mut table = String::from("| fixture | dtype | kernels | max TF log-prob err | caption words | identical best captions | max best-score err (same tokens) |\n|---|---|---|---|---|---|---|\n");
    let exp = expected(name);
    let case = TfCase::load(name);
    let best = npy_i64(name, "bs_tokens.npy");
    let scores = npy_f32(name, "bs_all_scores.npy");
    let (kk, t_len, v) = (case.kk, case.t_len, case.v);
    // smallest recorded margin over all steps, per image
    let mut margin = vec![f32::INFINITY; kk];
    for step in exp["bs_trace"].as_array().unwrap() {
        for (k, m) in step["margin"].as_array().unwrap().iter().enumerate() {
            margin[k] = margin[k].min(m.as_f64().unwrap() as f32);
        }
    }
    let (dtype, readout, calibrated) = VARIANTS[variant];
    let buf = packed_calibrated(name, dtype, readout, calibrated);
    let label = match (readout, calibrated) {
        (Some(r), _) => format!("{dtype} + {r} read-out"),
        (None, true) => format!("{dtype} GPTQ"),
        (None, false) => format!("{dtype}"),
    };
    let blob = Blob::parse(&buf).unwrap();
    let eos_id = blob.config().eos;
    if dtype == DType::F16 && readout.is_none() {
        // the f16 path against f32 arithmetic on the same (rounded) weights
        let deq = dequantised(&blob);
        let blob32 = Blob::parse(&deq).unwrap();
        let (m16, m32) = (
            M2::new(&blob, Kernels::detect()),
            M2::new(&blob32, Kernels::SCALAR),
        );
        let plan = m16.plan(1, t_len);
        let (mut a, mut b) = (
            vec![0f32; plan.total_floats()],
            vec![0f32; plan.total_floats()],
        );
        let (mut wa, mut wb) = (
            Workspace::new(&mut a, plan).unwrap(),
            Workspace::new(&mut b, plan).unwrap(),
        );
        let (mut oa, mut ob) = (vec![0f32; t_len * v], vec![0f32; t_len * v]);
        for k in 0..kk {
            let (x, toks) = (case.image(k), case.tokens(k));
            m16.score(x, &toks, &mut wa, &mut oa).unwrap();
            m32.score(x, &toks, &mut wb, &mut ob).unwrap();
            let e = max_abs_diff(&oa, &ob);
            assert!(
                e <= 1e-4,
                "{name} image {k}: f16 engine vs f32 on f16 weights: {e}"
            );
        }
    }
    for kernels in [Kernels::SCALAR, Kernels::detect()] {
        let model = M2::new(&blob, kernels);
        let mut mem = WorkspaceBuf::new(&model, 5, t_len.max(20));
        let mut ws = mem.workspace();
        let mut out = vec![0f32; t_len * v];
        let (mut tf_err, mut word_err, mut same, mut score_err) = (0f32, 0f32, 0usize, 0f32);
        for k in 0..kk {
            let (x, toks) = (case.image(k), case.tokens(k));
            model.score(x, &toks, &mut ws, &mut out).unwrap();
            let want_k = case.want(k);
            let err = max_abs_diff(&out, want_k);
            tf_err = tf_err.max(err);
            // the caption's own words: row t predicts toks[t + 1], up to its <eos>
            let eos = toks.iter().skip(1).position(|&t| t == eos_id);
            for t in 0..eos.map_or(t_len - 1, |p| p + 1).min(t_len - 1) {
                let w = t * v + toks[t + 1] as usize;
                word_err = word_err.max((out[w] - want_k[w]).abs());
            }
            let res = beam_search(
                &model,
                x,
                &mut ws,
                &SearchOptions {
                    beam: 5,
                    max_len: 20,
                },
                |_| {},
            )
            .unwrap();
            let top = res.best().unwrap();
            let want: Vec<u32> = best.data[k * 20..(k + 1) * 20]
                .iter()
                .map(|&t| t as u32)
                .collect();
            let identical = top.tokens.as_slice() == want.as_slice();
            if identical {
                same += 1;
                score_err = score_err.max((top.score - scores.data[k * 5]).abs());
            }
            // 20 steps of candidate scores, each off by at most `err` per word
            if margin[k] > 2.0 * 20.0 * err {
                assert!(
                    identical,
                    "{name} {label} image {k}: margin {} > 40 × err {err}",
                    margin[k]
                );
            }
        }
        table += &format!(
            "| {name} | {label} | {:?} | {tf_err:.2e} | {word_err:.2e} | {same}/{kk} | {score_err:.2e} |\n",
            kernels.isa()
        );
        if dtype == DType::F32 {
            assert!(tf_err <= 1e-4, "{name} f32: teacher-forced error {tf_err}");
            assert_eq!(
                same, kk,
                "{name}: f32 must reproduce every reference caption"
            );
        }
    }
    eprint!("{table}");
}

/// An f32 blob of `blob`'s weights in which the matrices `f16_of` picks are rounded to f16.
fn with_f16(blob: &Blob, f16_of: &dyn Fn(TensorKind, u16) -> bool) -> m2::blob::AlignedBuf {
    let mut w = BlobWriter::new(*blob.config());
    for t in blob.tensors() {
        let m = blob.matrix(t.kind, t.layer as usize);
        let (rows, cols) = (t.rows as usize, t.cols as usize);
        let mut v = vec![0f32; rows * cols];
        for r in 0..rows {
            m.row_to_f32(r, &mut v[r * cols..(r + 1) * cols]);
        }
        let dtype = if f16_of(t.kind, t.layer) {
            DType::F16
        } else {
            DType::F32
        };
        w.add(t.kind, t.layer, TensorData::from_f32(&v, cols, dtype));
    }
    w.vocab(blob.tokens().map(|t| t.to_vec()).collect());
    m2::blob::AlignedBuf::from_bytes(&w.finish().unwrap())
}

/// Where the f16 error comes from: each matrix the f16 blob stores as f16 rounded alone (the
/// rest f32), then all of them but the N most sensitive. README "int8 and f16" quotes it.
/// `cargo test --release --test fidelity -- --ignored --nocapture`
#[test]
#[ignore = "a report (seconds in release, minutes in debug): run with --release -- --ignored --nocapture"]
fn f16_error_by_matrix() {
    for name in FIXTURES {
        let case = TfCase::load(name);
        let err_of = |buf: &m2::blob::AlignedBuf| -> f32 {
            let blob = Blob::parse(buf).unwrap();
            let model = M2::new(&blob, Kernels::detect());
            let mut mem = WorkspaceBuf::new(&model, 1, case.t_len);
            let mut ws = mem.workspace();
            let mut out = vec![0f32; case.t_len * case.v];
            let mut e = 0f32;
            for k in 0..case.kk {
                model
                    .score(case.image(k), &case.tokens(k), &mut ws, &mut out)
                    .unwrap();
                e = e.max(max_abs_diff(&out, case.want(k)));
            }
            e
        };
        let b32 = packed(name, DType::F32);
        let b32 = Blob::parse(&b32).unwrap();
        let b16 = packed(name, DType::F16);
        let b16 = Blob::parse(&b16).unwrap();
        let f16: Vec<(TensorKind, u16)> = b16
            .tensors()
            .filter(|t| t.dtype == DType::F16)
            .map(|t| (t.kind, t.layer))
            .collect();
        // rounding every one of them here is the f16 blob (f16 kernels == f32 on f16 weights)
        let all = err_of(&with_f16(&b32, &|k, l| f16.contains(&(k, l))));
        let packed_err = err_of(&packed(name, DType::F16));
        assert!(
            (all - packed_err).abs() <= 1e-4,
            "{name}: all-f16 rebuild {all} vs f16 blob {packed_err}"
        );
        let mut alone: Vec<(f32, (TensorKind, u16))> = f16
            .iter()
            .map(|&key| (err_of(&with_f16(&b32, &|k, l| (k, l) == key)), key))
            .collect();
        alone.sort_by(|a, b| b.0.total_cmp(&a.0));
        eprintln!("{name}: every f16 matrix rounded: {all:.2e}; one at a time, the largest:");
        for (e, (kind, layer)) in alone.iter().take(5) {
            eprintln!("    {kind:?}[{layer}] alone: {e:.2e}");
        }
        for n in [1, 3, 5] {
            let keep: Vec<_> = alone.iter().take(n).map(|a| a.1).collect();
            let e = err_of(&with_f16(&b32, &|k, l| {
                f16.contains(&(k, l)) && !keep.contains(&(k, l))
            }));
            eprintln!("    all but the {n} largest (kept f32): {e:.2e}");
        }
    }
}
