//! Every available kernel path against the scalar ground truth: property tests on random shapes
//! (odd lengths included), extreme values, threads, and the Cortex-M DSP packing scheme
//! (emulated on the host; the instructions themselves run on 32-bit Arm: this suite under
//! qemu-arm, and the firmware's on-target tests).
#![cfg(feature = "std")]

use half::f16;
use m2::blob::{Matrix, WeightData};
use m2::kernels::{dsp, scalar, Isa, Kernels, QRows, QuantScratch};
use proptest::prelude::*;

/// Lengths that hit every tail of every tile width (4, 8, 16, 32, 64) and a few long ones.
const KS: &[usize] = &[
    0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 191, 512, 1000, 4099,
];

/// The non-scalar paths this machine runs (scalar is the reference).
fn simd_paths() -> Vec<Kernels> {
    Kernels::available()
        .filter(|i| *i != Isa::Scalar)
        .map(|i| Kernels::with_isa(i).unwrap())
        .collect()
}

/// `y = x · Wᵀ + b` through `kern.linear`, returning y and the quantised activations (the
/// scratch's bytes: int16 activations as little-endian pairs, in the scalar path's order: the
/// dsp path stores each group of four as `[x0, x2, x1, x3]`, put back here by the same swap).
fn run(
    kern: &Kernels,
    x: &[f32],
    n: usize,
    w: &Matrix<'_>,
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<i8>, Vec<f32>) {
    let mut y = vec![f32::NAN; n * w.rows];
    // i16 storage: room and alignment for int16 activations
    let mut q = vec![0i16; n * w.cols];
    let mut s = vec![0f32; n];
    let mut qs = QuantScratch {
        q: bytemuck::cast_slice_mut(&mut q),
        scales: &mut s,
    };
    kern.linear(x, n, w, bias, &mut y, &mut qs);
    if kern.isa() == Isa::Dsp && matches!(w.data, WeightData::I8 { act16: true, .. }) {
        dsp::interleave16(&mut q, n, w.cols);
    }
    (y, bytemuck::cast_slice(&q).to_vec(), s)
}

/// The first `len` int16 activations of a [`run`]'s scratch bytes.
fn as_i16(bytes: &[i8], len: usize) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .take(len)
        .map(|b| i16::from_le_bytes([b[0] as u8, b[1] as u8]))
        .collect()
}

/// Per-row int8 weights and scales from f32 values, as the packer does.
fn quantise_weights(w: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; m * k];
    let mut s = vec![0f32; m];
    scalar::quantize_rows(w, m, k, &mut q, &mut s);
    (q, s)
}

/// Int8 rows with their scales.
fn qrows<'a>(q: &'a [i8], scales: &'a [f32]) -> QRows<'a> {
    QRows { q, scales }
}

/// An int8 weight matrix `[m, k]`, with int16 activations if `act16`.
fn int8_matrix<'a>(m: usize, k: usize, q: &'a [i8], scales: &'a [f32], act16: bool) -> Matrix<'a> {
    Matrix {
        rows: m,
        cols: k,
        data: WeightData::I8 { q, scales, act16 },
    }
}

/// Float outputs agree with scalar within a relative bound on Σ|x·w| (summation order differs).
#[allow(clippy::too_many_arguments)]
fn assert_close(
    got: &[f32],
    want: &[f32],
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    m: usize,
    what: &str,
) {
    for i in 0..n {
        for r in 0..m {
            let mag: f32 = (0..k).map(|c| (x[i * k + c] * w[r * k + c]).abs()).sum();
            let (g, e) = (got[i * m + r], want[i * m + r]);
            let tol = 2e-5 * mag + 1e-30;
            assert!(
                (g - e).abs() <= tol,
                "{what}: y[{i},{r}] = {g}, scalar {e} (tol {tol}, n {n} k {k} m {m})"
            );
        }
    }
}

fn check_all(x: &[f32], n: usize, k: usize, wf: &[f32], m: usize, bias: Option<&[f32]>) {
    let w16: Vec<f16> = wf.iter().map(|v| f16::from_f32(*v)).collect();
    let w16f: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
    let (wq, ws) = quantise_weights(wf, m, k);
    let mats = [
        Matrix {
            rows: m,
            cols: k,
            data: WeightData::F32(wf),
        },
        Matrix {
            rows: m,
            cols: k,
            data: WeightData::F16(&w16),
        },
        int8_matrix(m, k, &wq, &ws, false),
        int8_matrix(m, k, &wq, &ws, true),
    ];
    let refs: Vec<_> = mats
        .iter()
        .map(|w| run(&Kernels::SCALAR, x, n, w, bias))
        .collect();
    // The scalar path through `linear` is scalar.rs itself.
    let mut yq = vec![0f32; n * m];
    let (ref q, ref s) = (refs[2].1.clone(), refs[2].2.clone());
    scalar::gemm_i8(qrows(q, s), n, k, qrows(&wq, &ws), m, &mut yq);
    if let Some(b) = bias {
        yq.chunks_exact_mut(m.max(1))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(o, bv)| *o += bv));
    }
    assert_eq!(
        bits(&yq),
        bits(&refs[2].0),
        "scalar linear != scalar::gemm_i8"
    );
    // int16 activations: the same, and within the bound that keeps every i32 sum exact
    let x16 = as_i16(&refs[3].1, n * k);
    let a = m2::kernels::act16_max(k);
    assert!(
        x16.iter().all(|v| (*v as i32).abs() <= a),
        "int16 activation beyond {a}"
    );
    let q16 = QRows {
        q: &x16[..],
        scales: &refs[3].2,
    };
    scalar::gemm_i8(q16, n, k, qrows(&wq, &ws), m, &mut yq);
    if let Some(b) = bias {
        yq.chunks_exact_mut(m.max(1))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(o, bv)| *o += bv));
    }
    assert_eq!(
        bits(&yq),
        bits(&refs[3].0),
        "scalar int8a16 linear != scalar::gemm_i8"
    );

    for kern in simd_paths()
        .into_iter()
        .chain([Kernels::SCALAR.with_threads(2)])
    {
        let isa = kern.isa();
        let got: Vec<_> = mats.iter().map(|w| run(&kern, x, n, w, bias)).collect();
        assert_close(&got[0].0, &refs[0].0, x, n, k, wf, m, &format!("{isa} f32"));
        assert_close(
            &got[1].0,
            &refs[1].0,
            x,
            n,
            k,
            &w16f,
            m,
            &format!("{isa} f16"),
        );
        assert_eq!(got[2].1, refs[2].1, "{isa}: quantised activations differ");
        assert_eq!(
            bits(&got[2].2),
            bits(&refs[2].2),
            "{isa}: activation scales differ"
        );
        assert_eq!(
            bits(&got[2].0),
            bits(&refs[2].0),
            "{isa} int8: outputs differ (n {n} k {k} m {m})"
        );
        assert_eq!(got[3].1, refs[3].1, "{isa}: int16 activations differ");
        assert_eq!(
            bits(&got[3].0),
            bits(&refs[3].0),
            "{isa} int8a16: outputs differ (n {n} k {k} m {m})"
        );
    }
    // The DSP packing scheme, emulated.
    let mut yd = vec![f32::NAN; n * m];
    dsp::emulated_gemm_i8(
        qrows(&refs[2].1, &refs[2].2),
        n,
        k,
        qrows(&wq, &ws),
        m,
        &mut yd,
    );
    let mut ys = vec![f32::NAN; n * m];
    scalar::gemm_i8(
        qrows(&refs[2].1, &refs[2].2),
        n,
        k,
        qrows(&wq, &ws),
        m,
        &mut ys,
    );
    assert_eq!(
        bits(&yd),
        bits(&ys),
        "dsp (emulated) int8 differs (n {n} k {k} m {m})"
    );
    let mut yd16 = vec![f32::NAN; n * m];
    let mut x16d = x16.clone();
    dsp::interleave16(&mut x16d, n, k);
    let q16d = QRows {
        q: &x16d[..],
        scales: &refs[3].2,
    };
    dsp::emulated_gemm_i8a16(q16d, n, k, qrows(&wq, &ws), m, &mut yd16);
    scalar::gemm_i8(q16, n, k, qrows(&wq, &ws), m, &mut ys);
    assert_eq!(
        bits(&yd16),
        bits(&ys),
        "dsp (emulated) int8a16 differs (n {n} k {k} m {m})"
    );
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (1usize..=9, prop::sample::select(KS), 0usize..=13)
}

fn data(len: usize, scale: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, len)
        .prop_map(move |v| v.into_iter().map(|a| a * scale).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn all_paths_match_scalar(
        ((n, k, m), x, w, b, with_bias) in shape().prop_flat_map(|(n, k, m)| (
            Just((n, k, m)),
            data(n * k, 3.0),
            data(m * k, 0.5),
            data(m, 1.0),
            any::<bool>(),
        ))
    ) {
        check_all(&x, n, k, &w, m, with_bias.then_some(&b[..]));
    }

    /// The scalar path runs its f32 / f16 GEMMs in interleaved tiles; every output must still
    /// be the plain sequential dot product, [`scalar::gemm_f32`] / [`scalar::gemm_f16`], bit
    /// for bit (`threads_match_single` carries it over to any thread count).
    #[test]
    fn scalar_tiles_are_the_sequential_sums(
        ((n, k, m), x, w) in shape().prop_flat_map(|(n, k, m)| (
            Just((n, k, m)),
            data(n * k, 3.0),
            data(m * k, 0.5),
        ))
    ) {
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let (mut want32, mut want16) = (vec![0f32; n * m], vec![0f32; n * m]);
        scalar::gemm_f32(&x, n, k, &w, m, &mut want32);
        scalar::gemm_f16(&x, n, k, &w16, m, &mut want16);
        let m32 = Matrix { rows: m, cols: k, data: WeightData::F32(&w) };
        let m16 = Matrix { rows: m, cols: k, data: WeightData::F16(&w16) };
        prop_assert_eq!(bits(&run(&Kernels::SCALAR, &x, n, &m32, None).0), bits(&want32));
        prop_assert_eq!(bits(&run(&Kernels::SCALAR, &x, n, &m16, None).0), bits(&want16));
    }

    #[test]
    fn magnitudes(n in 1usize..=6, k in prop::sample::select(KS), m in 1usize..=6, e in -30i32..30) {
        let s = 10f32.powi(e);
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 257) as f32 - 128.0) * s).collect();
        let w: Vec<f32> = (0..m * k).map(|i| ((i * 104729 % 251) as f32 - 125.0) / 125.0).collect();
        check_all(&x, n, k, &w, m, None);
    }
}

/// Deterministic activations `x[n, k]` and weights `w[m, k]` for the fixed-shape tests.
fn patterned(n: usize, k: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
    let x = (0..n * k)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 7.0)
        .collect();
    let w = (0..m * k)
        .map(|i| ((i * 17 % 89) as f32 - 44.0) / 50.0)
        .collect();
    (x, w)
}

/// The model's shapes (narrowed in `m`): decode steps (1 and 5 beams, the vocabulary's odd row
/// count), cross-attention output (15 rows), encoder (50 / 51 rows), cross K/V (150 rows), and
/// more than the AVX-VNNI kernel's block of 256 rows.
#[test]
fn decode_shapes() {
    for (n, k, m) in [
        (5, 512, 37),
        (5, 2048, 9),
        (1, 64, 64),
        (9, 33, 17),
        (6, 95, 5),
        (7, 64, 3),
        (8, 1000, 4),
        (1, 512, 13),
        (5, 512, 1001),
        (15, 512, 23),
        (50, 2048, 11),
        (51, 512, 29),
        (150, 512, 7),
        (300, 96, 5),
    ] {
        let (x, w) = patterned(n, k, m);
        check_all(&x, n, k, &w, m, Some(&vec![0.25; m]));
    }
}

/// int16 activations at their bound `act16_max(k)` against int8 weights at ±127 and −128:
/// the largest sums any path accumulates stay exact in i32 and every path gives scalar's bits.
#[test]
fn int8a16_extremes_exact() {
    for &k in &[1usize, 16, 17, 255, 256, 511, 512, 513, 2048, 4099, 65536] {
        for wv in [-128i8, -127, 127] {
            for xv in [-1.0f32, 1.0] {
                let (n, m) = (5, 2);
                let x = vec![xv; n * k];
                let (wq, ws) = (vec![wv; m * k], vec![1.0f32; m]);
                let mat = int8_matrix(m, k, &wq, &ws, true);
                let reference = run(&Kernels::SCALAR, &x, n, &mat, None);
                let a = m2::kernels::act16_max(k) as i64;
                assert!(as_i16(&reference.1, n * k)
                    .iter()
                    .all(|q| *q as f32 == xv * a as f32));
                let exact = k as i64 * a * wv as i64 * xv as i64;
                assert!(exact.abs() <= i32::MAX as i64, "k {k}: {exact} overflows");
                let want = exact as i32 as f32 * (1.0 / a as f32);
                assert!(reference
                    .0
                    .iter()
                    .all(|y| (y - want).abs() <= want.abs() * 1e-6));
                for kern in simd_paths() {
                    let got = run(&kern, &x, n, &mat, None);
                    assert_eq!(
                        bits(&got.0),
                        bits(&reference.0),
                        "{} k {k} w {wv}",
                        kern.isa()
                    );
                }
            }
        }
    }
}

/// Raw int8 weights and activations at the extremes: every product ±127·127 or ±128·127
/// (the maddubs / smlal pair sums at their largest), exact accumulation checked directly.
#[test]
fn int8_extremes_exact() {
    for &k in &[1usize, 16, 31, 32, 33, 63, 64, 65, 127, 1000, 4099] {
        for wv in [-128i8, -127, 127, 0] {
            for xv in [-127i8, 127, 0] {
                let (n, m) = (5, 3);
                let xq = vec![xv; n * k];
                let xs = vec![1.0f32; n];
                let mut wq = vec![wv; m * k];
                wq[k - 1] = if wv == 0 { 5 } else { -wv.max(-127) }; // one odd byte in row 0
                let ws = vec![1.0f32; m];
                let mut want = vec![0f32; n * m];
                scalar::gemm_i8(qrows(&xq, &xs), n, k, qrows(&wq, &ws), m, &mut want);
                // through linear: x rows whose quantisation is exactly xv
                let x: Vec<f32> = xq.iter().map(|v| *v as f32).collect();
                let mat = int8_matrix(m, k, &wq, &ws, false);
                let reference = run(&Kernels::SCALAR, &x, n, &mat, None);
                if xv != 0 {
                    assert_eq!(&reference.1[..n * k], &xq[..]);
                    assert_eq!(
                        bits(&reference.0),
                        bits(&want),
                        "scalar linear, w {wv} x {xv} k {k}"
                    );
                }
                for kern in simd_paths() {
                    let got = run(&kern, &x, n, &mat, None);
                    assert_eq!(
                        bits(&got.0),
                        bits(&reference.0),
                        "{} w {wv} x {xv} k {k}",
                        kern.isa()
                    );
                }
                let mut yd = vec![0f32; n * m];
                dsp::emulated_gemm_i8(qrows(&xq, &xs), n, k, qrows(&wq, &ws), m, &mut yd);
                assert_eq!(bits(&yd), bits(&want), "dsp emulated, w {wv} x {xv} k {k}");
            }
        }
    }
}

/// Zero rows, infinities and NaNs quantise exactly as scalar does, on every path.
#[test]
fn quantiser_special_values() {
    let k = 77;
    let mut rows: Vec<Vec<f32>> = vec![
        vec![0.0; k],
        vec![-0.0; k],
        (0..k)
            .map(|i| if i == 40 { f32::INFINITY } else { 1.0 })
            .collect(),
        (0..k)
            .map(|i| {
                if i % 9 == 0 {
                    f32::NAN
                } else {
                    i as f32 - 30.0
                }
            })
            .collect(),
        (0..k).map(|i| (i as f32 - 38.0) * 1e-40).collect(), // subnormal: 127/amax overflows
        (0..k).map(|i| (i as f32 - 38.0) * 3e37).collect(),
        (0..k).map(|i| (i as f32 - 38.0) + 0.5).collect(), // ties at every scale step
    ];
    rows.push(
        (0..k)
            .map(|i| ((i % 5) as f32 - 2.0) * 127.0 / 2.0)
            .collect(),
    ); // exact .5 ties
       // rows whose absolute maximum is the quantiser's bound a (127, and int16's act16_max(k)),
       // so `x · a / absmax` is `x` itself: values just below and at a half, where a rounding
       // that adds ½ (not the float below it) or rounds ties to even first goes wrong
    for a in [127.0, m2::kernels::act16_max(k) as f32] {
        let near = [
            a,
            0.49999997,
            -0.49999997,
            0.5,
            -0.5,
            1.5,
            -2.5,
            0.49999994,
            2.4999998,
            -a,
        ];
        rows.push((0..k).map(|i| near[i % near.len()]).collect());
    }
    let n = rows.len();
    let x: Vec<f32> = rows.concat();
    let w: Vec<f32> = (0..3 * k).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect();
    let (wq, ws) = quantise_weights(&w, 3, k);
    for act16 in [false, true] {
        quantiser_special_rows(&rows, &x, n, k, &wq, &ws, act16);
    }
}

fn quantiser_special_rows(
    rows: &[Vec<f32>],
    x: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    act16: bool,
) {
    let mat = int8_matrix(3, k, wq, ws, act16);
    let want = run(&Kernels::SCALAR, x, n, &mat, None);
    // a row holding an ∞ or a NaN (rows 2, 3, and 5 past f32's range) feeds only NaN outputs:
    // int8 must not turn it into finite values (the engine's non-finite checks then report it)
    for (r, (row, input)) in want.0.chunks_exact(3).zip(rows).enumerate() {
        let bad = input.iter().any(|v| !v.is_finite());
        assert_eq!(row.iter().all(|v| v.is_nan()), bad, "row {r}: {row:?}");
        assert!(bad || row.iter().all(|v| v.is_finite()), "row {r}: {row:?}");
    }
    // the rows just below a half quantise exactly (the scalar path itself against roundf)
    for (r, input) in rows.iter().enumerate().skip(rows.len() - 2) {
        let a = if act16 {
            m2::kernels::act16_max(k) as f32
        } else {
            127.0
        };
        let q = as_i16_or_i8(&want.1, act16, r * k, k);
        let amax = input.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (v, got) in input.iter().zip(q) {
            assert_eq!(
                got as f32,
                libm::roundf(v * (a / amax)),
                "act16 {act16}: {v}"
            );
        }
    }
    for kern in simd_paths() {
        let got = run(&kern, x, n, &mat, None);
        assert_eq!(
            got.1,
            want.1,
            "{} act16 {act16}: quantised bytes",
            kern.isa()
        );
        assert_eq!(bits(&got.2), bits(&want.2), "{}: scales", kern.isa());
        assert_eq!(bits(&got.0), bits(&want.0), "{}: outputs", kern.isa());
    }
}

/// `len` quantised activations from `start` in a [`run`]'s scratch bytes, as i32.
fn as_i16_or_i8(bytes: &[i8], act16: bool, start: usize, len: usize) -> Vec<i32> {
    if act16 {
        as_i16(bytes, start + len)[start..]
            .iter()
            .map(|&v| v as i32)
            .collect()
    } else {
        bytes[start..start + len]
            .iter()
            .map(|&v| v as i32)
            .collect()
    }
}

/// Large layers split over threads give the same bits as one thread, on every path.
#[test]
fn threads_match_single() {
    let (n, k, m) = (5, 2048, 1001);
    let (x, w) = patterned(n, k, m);
    let (wq, ws) = quantise_weights(&w, m, k);
    let w16: Vec<f16> = w.iter().map(|v| f16::from_f32(*v)).collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 / 100.0).collect();
    for kern in Kernels::available().map(|i| Kernels::with_isa(i).unwrap()) {
        for data in [
            WeightData::F32(&w),
            WeightData::F16(&w16),
            WeightData::I8 {
                q: &wq,
                scales: &ws,
                act16: false,
            },
            WeightData::I8 {
                q: &wq,
                scales: &ws,
                act16: true,
            },
        ] {
            let mat = Matrix {
                rows: m,
                cols: k,
                data,
            };
            let one = run(&kern, &x, n, &mat, Some(&b));
            for t in [2, 3, 8] {
                let many = run(&kern.with_threads(t), &x, n, &mat, Some(&b));
                assert_eq!(
                    bits(&many.0),
                    bits(&one.0),
                    "{} threads {t} {:?}",
                    kern.isa(),
                    mat.dtype()
                );
            }
        }
    }
}

/// Short slices are a caller bug: a debug build panics (`debug_assert!`), a release build
/// returns without touching `y`.
#[test]
fn short_slices_are_caught() {
    let (n, k, m) = (3, 20, 4);
    let w = vec![0.5f32; m * k];
    let wq = vec![1i8; m * k];
    let ws = vec![1.0f32; m];
    for kern in Kernels::available().map(|i| Kernels::with_isa(i).unwrap()) {
        for (data, short_w) in [
            (WeightData::F32(&w[..m * k - 1]), true),
            (
                WeightData::I8 {
                    q: &wq,
                    scales: &ws[..m - 1],
                    act16: false,
                },
                true,
            ),
            (WeightData::F32(&w), false),
        ] {
            let mat = Matrix {
                rows: m,
                cols: k,
                data,
            };
            let x = vec![1.0f32; if short_w { n * k } else { n * k - 1 }];
            let got = std::panic::catch_unwind(|| run(&kern, &x, n, &mat, None));
            if cfg!(debug_assertions) {
                assert!(got.is_err(), "{}: no panic on short slices", kern.isa());
            } else {
                let (y, _, _) = got.unwrap();
                assert!(y.iter().all(|v| v.is_nan()), "{}: y written", kern.isa());
            }
        }
    }
}

#[test]
fn names_and_selection() {
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        assert_eq!(
            Isa::from_name(&format!(" {} ", isa.name().to_uppercase())),
            Some(isa)
        );
    }
    assert_eq!(Isa::from_name("sse9"), None);
    assert!(Kernels::available().any(|i| i == Isa::Scalar));
    assert!(Kernels::available().any(|i| i == Kernels::detect().isa()));
    assert_eq!(Kernels::from_name("scalar").unwrap(), Kernels::SCALAR);
    let e = Kernels::from_name("sse9").unwrap_err();
    assert!(e.to_string().contains("sse9"), "{e}");
    assert_eq!(e.fallback(), Kernels::detect());
    for isa in Isa::ALL {
        match Kernels::from_name(isa.name()) {
            Ok(k) => assert!(isa.is_available() && k.isa() == isa),
            Err(e) => assert!(
                !isa.is_available() && e.to_string().contains(isa.name()),
                "{e}"
            ),
        }
    }
    // What this machine must offer.
    #[cfg(target_arch = "aarch64")]
    {
        assert!(Isa::Neon.is_available());
        assert_eq!(
            Isa::NeonDot.is_available(),
            std::arch::is_aarch64_feature_detected!("dotprod")
        );
        println!("aarch64: detected {}", Kernels::detect().isa());
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // AVX-512 VNNI is preferred when present, then AVX-VNNI; the others stay selectable
        // (`M2_KERNEL=avx2`, `M2_KERNEL=avxvnni`).
        let vnni = std::is_x86_feature_detected!("avxvnni");
        let avx512 = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni");
        assert_eq!(Isa::AvxVnni.is_available(), vnni);
        assert_eq!(Isa::Avx512.is_available(), avx512);
        let want = if avx512 {
            Isa::Avx512
        } else if vnni {
            Isa::AvxVnni
        } else {
            Isa::Avx2
        };
        assert_eq!(Kernels::detect().isa(), want);
        assert_eq!(Kernels::from_name("avx2").unwrap().isa(), Isa::Avx2);
        if vnni {
            assert_eq!(Kernels::from_name("avxvnni").unwrap().isa(), Isa::AvxVnni);
        }
        println!("x86_64: detected {}", Kernels::detect().isa());
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert!(
        !Isa::Avx512.is_available() && !Isa::AvxVnni.is_available() && !Isa::Avx2.is_available()
    );
    // 32-bit Arm Linux (the hard-float targets this suite is built for: 32-bit Raspberry Pi OS)
    // has ARMv6's `sxtb16` / `smlad`, so the DSP int8 path, and detection picks it; no other
    // host does.
    assert_eq!(Isa::Dsp.is_available(), cfg!(target_arch = "arm"));
    #[cfg(target_arch = "arm")]
    {
        assert_eq!(Kernels::detect().isa(), Isa::Dsp);
        println!("arm: detected {}", Kernels::detect().isa());
    }
    // cross/test-aarch64.sh says which path each emulated CPU must get.
    if let Ok(want) = std::env::var("M2_EXPECT_ISA") {
        assert_eq!(
            Kernels::detect().isa(),
            Isa::from_name(&want).unwrap(),
            "M2_EXPECT_ISA={want}"
        );
    }
}

#[test]
fn dot_f32_matches_scalar() {
    for &k in KS {
        let a: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k + 3).map(|i| (i as f32 * 0.11).cos()).collect();
        let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        let (g, e) = (m2::kernels::dot_f32(&a, &b), scalar::dot_f32(&a, &b));
        assert!((g - e).abs() <= 1e-5 * mag + 1e-30, "k {k}: {g} vs {e}");
    }
}

/// The `isa` path, or `None` (with a note, once per path) on a CPU or build without it.
fn path(isa: Isa) -> Option<Kernels> {
    static NOTED: std::sync::Mutex<Vec<Isa>> = std::sync::Mutex::new(Vec::new());
    let k = Kernels::with_isa(isa);
    if k.is_none() {
        let mut noted = NOTED.lock().unwrap();
        if !noted.contains(&isa) {
            noted.push(isa);
            println!("note: {isa} is not available on this CPU/build: its checks are skipped");
        }
    }
    k
}

/// `kern`'s int8 `linear` against scalar's, bit for bit (outputs, quantised activations, scales).
fn int8_matches_scalar(kern: &Kernels, x: &[f32], n: usize, k: usize, wf: &[f32], m: usize) {
    let (wq, ws) = quantise_weights(wf, m, k);
    let mat = int8_matrix(m, k, &wq, &ws, false);
    let bias: Vec<f32> = (0..m).map(|r| r as f32 / 8.0).collect();
    let want = run(&Kernels::SCALAR, x, n, &mat, Some(&bias));
    let got = run(kern, x, n, &mat, Some(&bias));
    assert_eq!(got.1, want.1, "{}: quantised activations", kern.isa());
    assert_eq!(bits(&got.2), bits(&want.2), "{}: scales", kern.isa());
    assert_eq!(
        bits(&got.0),
        bits(&want.0),
        "{} int8: outputs differ (n {n} k {k} m {m})",
        kern.isa()
    );
}

/// Activation row counts for the VNNI tiles (AVX-VNNI and AVX-512): every single-tile count
/// (1..=9), several 3 × 4 / 4 × 6 tiles with every remainder, the encoder (50, 51), cross K/V
/// (150) and more than one block of 256 rows.
fn vnni_rows() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..=9,
        2 => 10usize..=17,
        1 => prop::sample::select(vec![15usize, 50, 51, 150, 255, 256, 257, 261]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The VNNI int8 GEMMs (AVX-VNNI, AVX-512) are bit-identical to scalar on random shapes,
    /// odd lengths included (k tails below 32, masked k tails below 64, weight-row counts off
    /// every tile height, every activation-row tile: AVX-VNNI 4 × 1 to 2 × 6 and 3 × 4,
    /// AVX-512 4 × 1 to 3 × 8 and 4 × 6, with every remainder).
    #[test]
    fn vnni_int8_matches_scalar(
        ((n, k, m), x, w) in (vnni_rows(), prop::sample::select(KS), 0usize..=13)
            .prop_flat_map(|(n, k, m)| {
                let k = if n > 64 { k.min(191) } else { k };
                (Just((n, k, m)), data(n * k, 3.0), data(m * k, 0.5))
            })
    ) {
        for kern in [Isa::AvxVnni, Isa::Avx512].into_iter().filter_map(path) {
            int8_matches_scalar(&kern, &x, n, k, &w, m);
            int8_matches_scalar(&kern.with_threads(2), &x, n, k, &w, m);
        }
    }
}

/// Every path's `dot8` (Kernels::SCALAR included) against `dot_f32` per live key, bit for bit:
/// every tail length, keys longer than the query, extreme and special values.
fn dot8_matches_dot_f32(q: &[f32], keys: &[Vec<f32>]) {
    let keys: [&[f32]; 8] = std::array::from_fn(|k| &keys[k][..]);
    let want: Vec<f32> = keys.iter().map(|k| m2::kernels::dot_f32(q, k)).collect();
    for kern in Kernels::available().filter_map(Kernels::with_isa) {
        for live in [8, 1, 5] {
            let got = kern.dot8(q, &keys, live);
            let same = got[..live]
                .iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
            assert!(
                same,
                "{}: len {}, live {live}: {got:?} vs {want:?}",
                kern.isa(),
                q.len()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dot8_is_dot_f32_bit_for_bit(
        (q, keys, _) in (prop::sample::select(KS), 0usize..4, -20i32..20).prop_flat_map(|(k, extra, e)| {
            let s = 10f32.powi(e);
            (data(k, s), prop::collection::vec(data(k + extra, 1.0), 8), Just(()))
        })
    ) {
        dot8_matches_dot_f32(&q, &keys);
    }
}

#[test]
fn dot8_special_values_and_short_keys() {
    let q: Vec<f32> = (0..67).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
    let mut keys: Vec<Vec<f32>> = (0..8)
        .map(|k| {
            (0..67)
                .map(|i| ((i * 31 + k * 7) as f32 * 0.11).cos())
                .collect()
        })
        .collect();
    keys[1][5] = f32::INFINITY;
    keys[2][64] = f32::NAN;
    keys[3][9] = f32::MAX;
    keys[4][0] = f32::from_bits(1); // subnormal
    keys[5][63] = -f32::INFINITY;
    dot8_matches_dot_f32(&q, &keys);
    // a key shorter than the query: every path falls back to dot_f32's min(len)
    keys[6].truncate(20);
    dot8_matches_dot_f32(&q, &keys);
}

/// Every path's `dot_columns` against `dot_f32` per column, bit for bit: keys transposed
/// (`d_k` rows of `n`), the column counts around every block width (short last blocks that
/// overlap the previous one), every tail length of `d_k`, special values; rows `n` apart, as
/// the engine pads them (`key_stride`) and wider still, with the padding columns NaN (never
/// in an output) and the last row whole or cut after its `n` columns.
fn dot_columns_match_dot_f32(q: &[f32], keys: &[Vec<f32>]) {
    let (dk, n) = (q.len(), keys.len());
    for stride in [n, m2::plan::key_stride(n), n + 17] {
        for cut in [false, true] {
            let mut kt = vec![f32::NAN; dk * stride];
            for (j, key) in keys.iter().enumerate() {
                for c in 0..dk {
                    kt[c * stride + j] = key[c];
                }
            }
            kt.truncate(if cut {
                dk * stride - (stride - n)
            } else {
                dk * stride
            });
            dot_columns_at_stride(q, keys, &kt, stride);
        }
    }
}

/// [`dot_columns_match_dot_f32`] for one layout of the keys: `kt`, rows `stride` apart.
fn dot_columns_at_stride(q: &[f32], keys: &[Vec<f32>], kt: &[f32], stride: usize) {
    let (dk, n) = (q.len(), keys.len());
    let keys_t = m2::kernels::KeyColumns { kt, n, stride };
    let want: Vec<f32> = keys.iter().map(|k| m2::kernels::dot_f32(q, k)).collect();
    // `got[..n]` is `want`'s bits (NaNs as one) and nothing was written past `n`
    let check = |what: &str, isa: Isa, got: &[f32], want: &[f32]| {
        let same = got[..n]
            .iter()
            .zip(want)
            .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
        assert!(
            same,
            "{isa}{what}: d_k {dk}, n {n}, stride {stride}, kt {}: {got:?} vs {want:?}",
            kt.len()
        );
        assert!(got[n..].iter().all(|v| v.is_nan()), "{what} wrote past n");
    };
    for kern in Kernels::available().filter_map(Kernels::with_isa) {
        let mut got = vec![f32::NAN; n + 3];
        kern.dot_columns(q, keys_t, &mut got);
        check("", kern.isa(), &got, &want);
        // two queries in one pass (`dot_columns2`): each row `dot_columns`' bits
        let q1: Vec<f32> = q.iter().rev().map(|x| x * -0.75).collect();
        let want1: Vec<f32> = keys.iter().map(|k| m2::kernels::dot_f32(&q1, k)).collect();
        let (mut g0, mut g1) = (vec![f32::NAN; n + 3], vec![f32::NAN; n + 3]);
        kern.dot_columns2([q, &q1], keys_t, [&mut g0, &mut g1]);
        for (got, want) in [(&g0, &want), (&g1, &want1)] {
            check(" pair", kern.isa(), got, want);
        }
        // three queries in one pass (`dot_columns3`): each row `dot_columns`' bits
        let q2: Vec<f32> = q.iter().map(|x| x * 1.5 - 0.25).collect();
        let want2: Vec<f32> = keys.iter().map(|k| m2::kernels::dot_f32(&q2, k)).collect();
        let mut g = [
            vec![f32::NAN; n + 3],
            vec![f32::NAN; n + 3],
            vec![f32::NAN; n + 3],
        ];
        let [g0, g1, g2] = &mut g;
        kern.dot_columns3([q, &q1, &q2], keys_t, [g0, g1, g2]);
        for (got, want) in g.iter().zip([&want, &want1, &want2]) {
            check(" triple", kern.isa(), got, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dot_columns_is_dot_f32_bit_for_bit(
        (q, keys) in (1usize..80, 1usize..60, -20i32..20).prop_flat_map(|(dk, n, e)| {
            let s = 10f32.powi(e);
            (data(dk, s), prop::collection::vec(data(dk, 1.0), n))
        })
    ) {
        dot_columns_match_dot_f32(&q, &keys);
    }
}

#[test]
fn dot_columns_special_values_and_every_width() {
    let q: Vec<f32> = (0..67).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
    for n in [1usize, 7, 8, 9, 15, 16, 17, 24, 33, 50] {
        let mut keys: Vec<Vec<f32>> = (0..n)
            .map(|k| {
                (0..67)
                    .map(|i| ((i * 31 + k * 7) as f32 * 0.11).cos())
                    .collect()
            })
            .collect();
        keys[0][5] = f32::INFINITY;
        keys[n - 1][64] = f32::NAN;
        keys[n / 2][9] = f32::MAX;
        keys[n / 3][0] = f32::from_bits(1); // subnormal
        dot_columns_match_dot_f32(&q, &keys);
        dot_columns_match_dot_f32(&q[..64], &keys); // no tail (COCO's d_k)
    }
}

/// The bits of `v`, every NaN as one (a NaN's sign and payload are the instruction's, not the
/// arithmetic's: x86's packed and scalar forms differ).
fn nan_bits(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| {
            if x.is_nan() {
                f32::NAN.to_bits()
            } else {
                x.to_bits()
            }
        })
        .collect()
}

/// `Kernels::{softmax,log_softmax,layer_norm}_rows` against `m2::math`'s, bit for bit, on every
/// path: the per-path copies (`#[target_feature]` on the x86_64 SIMD paths) must compute the
/// same sums in the same order as the baseline code. `rows` rows of `n` values (every lockstep
/// group size up to 8 and past it), some `−∞` (masked keys), whole `−∞` rows, a NaN.
fn row_functions_match_math(x: &[f32], n: usize) {
    let gamma: Vec<f32> = (0..n).map(|i| 1.0 + (i as f32 * 0.3).sin()).collect();
    let beta: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos()).collect();
    same_bits_on_every_path(
        x,
        "softmax",
        |v| m2::math::softmax_rows(v, n),
        |k, v| k.softmax_rows(v, n),
    );
    same_bits_on_every_path(
        x,
        "log-softmax",
        |v| m2::math::log_softmax_rows(v, n),
        |k, v| k.log_softmax_rows(v, n),
    );
    same_bits_on_every_path(
        x,
        "LayerNorm",
        |v| m2::math::layer_norm_rows(v, &gamma, &beta),
        |k, v| k.layer_norm_rows(v, &gamma, &beta),
    );
}

/// `path(kernels, x)` on every available kernel path gives `math(x)`'s bits (NaNs as one).
fn same_bits_on_every_path(
    x: &[f32],
    what: &str,
    math: impl Fn(&mut [f32]),
    path: impl Fn(&Kernels, &mut [f32]),
) {
    let mut want = x.to_vec();
    math(&mut want);
    for kern in Kernels::available().filter_map(Kernels::with_isa) {
        let mut got = x.to_vec();
        path(&kern, &mut got);
        assert_eq!(
            nan_bits(&got),
            nan_bits(&want),
            "{} {what}, {} values",
            kern.isa(),
            x.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn row_functions_are_math_bit_for_bit(
        (x, n) in (0usize..12, 1usize..70, -8i32..8).prop_flat_map(|(rows, n, e)| {
            (data(rows * n, 10f32.powi(e)), Just(n))
        }),
        masked in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut x = x;
        for m in &masked {
            if !x.is_empty() {
                let i = m.index(x.len());
                x[i] = f32::NEG_INFINITY;
            }
        }
        row_functions_match_math(&x, n);
    }
}

#[test]
fn row_functions_special_rows() {
    // COCO's widths (50 keys, 512 features, a 10,201-word vocabulary) and a whole −∞ row
    for (rows, n) in [(9usize, 50usize), (3, 512), (5, 10_201), (1, 1), (8, 3)] {
        let mut x: Vec<f32> = (0..rows * n)
            .map(|i| (i as f32 * 0.013).sin() * 9.0)
            .collect();
        x[..n].fill(f32::NEG_INFINITY);
        row_functions_match_math(&x, n);
        let at = n.min(x.len() - 1);
        x[at] = f32::NAN;
        row_functions_match_math(&x, n);
    }
    row_functions_match_math(&[], 4);
}
