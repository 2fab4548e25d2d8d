//! int8 calibration (std only): GPTQ rounding of the int8 Linear weights against the inputs
//! they see on calibration images — `m2-pack --calibrate FEATURES.npy`.
//!
//! Round-to-nearest puts each weight on its row's int8 grid independently. GPTQ (Frantar et al.
//! 2022, "Optimal Brain Quantization" applied column by column) rounds the columns of a row one
//! at a time and pushes each one's rounding error onto the columns not yet rounded, weighted by
//! how the layer's inputs correlate, so the *outputs* `x·wᵀ` move less than with independent
//! rounding. With `H = Σ xᵀx` over the layer's calibration inputs, damped by `λ = damping ×
//! mean(diag H)`, and `U` the upper Cholesky factor of `H⁻¹`:
//!
//! ```text
//! for each row w (scale s = max|w| / 127, as round-to-nearest):
//!     for i in 0..k:   q_i = clamp(round(w_i / s), −127, 127)
//!                      e   = (w_i − q_i·s) / U[i][i]
//!                      w_j −= e · U[i][j]          for j > i
//! ```
//!
//! The blob format is unchanged — per-row symmetric int8, the same scales — so a calibrated blob
//! runs on every kernel path, target and the firmware as any int8 blob does. Calibration inputs
//! come from the f32 engine itself: each image is captioned (beam 5), then its caption is
//! teacher-forced with [`crate::kernels::trace::observe_linears`] collecting every Linear's
//! input rows (encoder rows, the cross-attention K/V rows of the three levels, one decoder row
//! per caption position). `decoder.word_emb` (a lookup, no inputs) stays round-to-nearest.

use super::{pack, PackError, PackOptions};
use crate::blob::{AlignedBuf, BlobWriter, DType, TensorData, TensorKind, WeightData};
use crate::kernels::trace::{observe_linears, weight_address};
use crate::kernels::Kernels;
use crate::model::M2;
use crate::search::{beam_search, SearchOptions};
use crate::workspace::Workspace;
use crate::Blob;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::vec::Vec;

/// Calibration images and settings.
#[derive(Clone, Copy, Debug)]
pub struct Calibration<'f> {
    /// Region features `[images, regions, d_in]`, as `m2 caption` takes them (zero rows pad).
    pub features: &'f [f32],
    pub images: usize,
    pub regions: usize,
    /// Hessian damping as a fraction of its mean diagonal (GPTQ's `percdamp`). 0.1 is a good
    /// default for int8; larger is closer to round-to-nearest.
    pub damping: f64,
    /// Worker threads (0 counts as 1). The blob is the same bytes for any count.
    pub threads: usize,
}

impl Calibration<'_> {
    /// The default damping.
    pub const DAMPING: f64 = 0.1;
}

/// A pack-and-calibrate stage, for progress reports: (stage, done, total).
pub type Progress<'p> = &'p mut dyn FnMut(&'static str, usize, usize);

/// `Σ xᵀx` of one layer's input rows (upper triangle, f64).
struct Gram {
    k: usize,
    h: Vec<f64>,
    rows: u64,
}

impl Gram {
    fn new(k: usize) -> Gram {
        Gram {
            k,
            h: vec![0.0; k * k],
            rows: 0,
        }
    }

    fn add(&mut self, x: &[f32], n: usize) {
        let k = self.k;
        for row in x.chunks_exact(k).take(n) {
            for (i, &xi) in row.iter().enumerate() {
                if xi == 0.0 {
                    continue; // ReLU outputs and padding: half the rows' entries
                }
                let xi = xi as f64;
                let h = &mut self.h[i * k + i..(i + 1) * k];
                for (hj, &xj) in h.iter_mut().zip(&row[i..]) {
                    *hj += xi * xj as f64;
                }
            }
            self.rows += 1;
        }
    }

    /// The full symmetric matrix.
    fn into_full(mut self) -> Vec<f64> {
        let k = self.k;
        for i in 0..k {
            for j in 0..i {
                self.h[i * k + j] = self.h[j * k + i];
            }
        }
        self.h
    }
}

/// `Σ a_i b_i` in four interleaved sums (so the loop pipelines and vectorises).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            s[l] += x[l] * y[l];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// In-place lower Cholesky factor of the SPD matrix `a [k, k]` (upper triangle zeroed);
/// `false` if `a` is not positive definite.
fn cholesky(a: &mut [f64], k: usize) -> bool {
    let mut row_j = vec![0f64; k];
    for j in 0..k {
        row_j[..j].copy_from_slice(&a[j * k..j * k + j]);
        let d = a[j * k + j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let s = a[i * k + j] - dot(&a[i * k..i * k + j], &row_j[..j]);
            a[i * k + j] = s / d;
        }
        a[j * k + j + 1..(j + 1) * k].fill(0.0);
    }
    true
}

/// `U` (upper triangular) with `H⁻¹ = Uᵀ U`, or `None` if `h [k, k]` is not positive definite.
///
/// With `J` the order reversal, the lower Cholesky factor `L'` of `J H J` gives `H = R Rᵀ` for
/// the upper triangular `R = J L' J`; then `H⁻¹ = R⁻ᵀ R⁻¹`, so `U = R⁻¹`.
fn upper_factor_of_inverse(h: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut a = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            a[i * k + j] = h[(k - 1 - i) * k + (k - 1 - j)];
        }
    }
    if !cholesky(&mut a, k) {
        return None;
    }
    let r = |i: usize, j: usize| a[(k - 1 - i) * k + (k - 1 - j)];
    // U = R⁻¹ row by row from the bottom: U[i][i] = 1 / R[i][i],
    // U[i][i+1..] = −(1 / R[i][i]) Σ_{p>i} R[i][p] U[p][i+1..]   (rows of U, contiguous)
    let mut u = vec![0f64; k * k];
    let mut acc = vec![0f64; k];
    for i in (0..k).rev() {
        let rii = r(i, i);
        acc[i + 1..].fill(0.0);
        for p in i + 1..k {
            let c = r(i, p);
            if c != 0.0 {
                for (x, &up) in acc[p..].iter_mut().zip(&u[p * k + p..(p + 1) * k]) {
                    *x += c * up;
                }
            }
        }
        u[i * k + i] = 1.0 / rii;
        for (dst, &x) in u[i * k + i + 1..(i + 1) * k].iter_mut().zip(&acc[i + 1..]) {
            *dst = -x / rii;
        }
    }
    Some(u)
}

/// GPTQ-rounded int8 of `w [rows, cols]` (row-major) given `h = Σ xᵀx [cols, cols]` of its
/// inputs: the per-row scales of round-to-nearest (`max|w| / 127`; an all-zero row gets 0),
/// int8 values in [−127, 127]. Columns no input ever touched (`h[i][i] = 0`) get no error
/// feedback. If `H` stays singular under 10⁴× the damping, round-to-nearest is returned.
pub fn gptq_rows(w: &[f32], cols: usize, mut h: Vec<f64>, damping: f64) -> (Vec<i8>, Vec<f32>) {
    let k = cols;
    let (mut q, scales) = crate::blob::quantize_rows_i8(w, k);
    if k == 0 || h.len() != k * k || !w.len().is_multiple_of(k) {
        return (q, scales);
    }
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = 1.0;
        }
    }
    let base = if mean_diag > 0.0 { mean_diag } else { 1.0 };
    let mut u = None;
    let mut lambda = damping.max(1e-6) * base;
    for _ in 0..5 {
        let mut damped = h.clone();
        for i in 0..k {
            damped[i * k + i] += lambda;
        }
        u = upper_factor_of_inverse(&damped, k);
        if u.is_some() {
            break;
        }
        lambda *= 10.0;
    }
    let Some(u) = u else { return (q, scales) };
    let mut row = vec![0f64; k];
    for (r, (&s, qr)) in scales.iter().zip(q.chunks_exact_mut(k)).enumerate() {
        if s == 0.0 || !s.is_finite() {
            continue;
        }
        for (dst, &v) in row.iter_mut().zip(&w[r * k..(r + 1) * k]) {
            *dst = v as f64;
        }
        for i in 0..k {
            // the rounding itself in f32, as round-to-nearest does it
            let qi = ((row[i] as f32) / s).round().clamp(-127.0, 127.0);
            qr[i] = qi as i8;
            let e = (row[i] - qi as f64 * s as f64) / u[i * k + i];
            for (wj, &uij) in row[i + 1..].iter_mut().zip(&u[i * k + i + 1..(i + 1) * k]) {
                *wj -= e * uij;
            }
        }
    }
    (q, scales)
}

/// [`pack`] at `opts` (whose dtype, or read-out dtype, must be int8), with every int8 Linear
/// weight GPTQ-rounded on `cal`'s images instead of rounded to nearest. Everything else —
/// checks, f16/f32 tensors, `word_emb` — is what [`pack`] writes.
pub fn pack_calibrated(
    st_bytes: &[u8],
    vocab: &[Vec<u8>],
    opts: &PackOptions,
    cal: &Calibration<'_>,
    progress: Progress<'_>,
) -> Result<Vec<u8>, PackError> {
    let int8 = |d: DType| matches!(d, DType::I8 | DType::I8A16);
    let any_int8 = int8(opts.dtype)
        || opts.readout_dtype.is_some_and(int8)
        || opts.tensor_dtypes.iter().any(|t| int8(t.2));
    if !any_int8 {
        return Err(PackError::CalibrationDType(opts.dtype));
    }
    let target = AlignedBuf::from_bytes(&pack(st_bytes, vocab, opts)?);
    let f32_opts = PackOptions {
        dtype: DType::F32,
        readout_dtype: None,
        tensor_dtypes: Vec::new(),
        ..opts.clone()
    };
    let reference = AlignedBuf::from_bytes(&pack(st_bytes, vocab, &f32_opts)?);
    let internal = |e: crate::BlobError| PackError::Internal(format!("re-reading the blob: {e}"));
    let tb = Blob::parse(&target).map_err(internal)?;
    let rb = Blob::parse(&reference).map_err(internal)?;
    let cfg = *rb.config();
    let d_in = cfg.d_in as usize;
    let per_image = cal.regions.checked_mul(d_in);
    if cal.images == 0
        || cal.regions == 0
        || per_image.and_then(|p| p.checked_mul(cal.images)) != Some(cal.features.len())
    {
        return Err(PackError::CalibrationFeatures {
            values: cal.features.len(),
            images: cal.images,
            regions: cal.regions,
            d_in,
        });
    }
    if !cal.damping.is_finite() || cal.damping <= 0.0 {
        return Err(PackError::CalibrationDamping(cal.damping));
    }

    // the int8 Linear weights, by their address in the f32 blob
    let mut slots: Vec<(TensorKind, u16, usize, usize)> = Vec::new(); // kind, layer, rows, cols
    let mut by_address = HashMap::new();
    for t in tb.tensors() {
        if matches!(t.dtype, DType::I8 | DType::I8A16) && t.kind != TensorKind::WordEmb {
            let m = rb.matrix(t.kind, t.layer as usize);
            by_address.insert(weight_address(&m), slots.len());
            slots.push((t.kind, t.layer, t.rows as usize, t.cols as usize));
        }
    }
    let grams = Rc::new(RefCell::new(
        slots.iter().map(|s| Gram::new(s.3)).collect::<Vec<_>>(),
    ));

    // captions from the f32 engine, then their teacher-forced pass under the observer. The
    // scalar path is the ground truth and sums in the same order on every CPU, so the same
    // checkpoint and images give the same blob bytes on any host (SIMD paths would not).
    let model = M2::new(&rb, Kernels::SCALAR.with_threads(cal.threads));
    let max_len = cfg.max_len().clamp(1, 20);
    let plan = model.plan(5, max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| PackError::CalibrationEngine {
        image: 0,
        error: crate::model::EngineError::Workspace(e),
    })?;
    let mut out = vec![0f32; max_len * cfg.vocab as usize];
    let regions = cal.regions.min(cfg.max_regions as usize);
    let mut observer: crate::kernels::trace::LinearObserver = {
        let grams = Rc::clone(&grams);
        Box::new(move |addr, x, n| {
            if let Some(&i) = by_address.get(&addr) {
                grams.borrow_mut()[i].add(x, n);
            }
        })
    };
    for k in 0..cal.images {
        progress("calibrating on images", k, cal.images);
        let image = &cal.features[k * cal.regions * d_in..][..regions * d_in];
        let engine = |error| PackError::CalibrationEngine { image: k, error };
        let opts = SearchOptions { beam: 5, max_len };
        let res = beam_search(&model, image, &mut ws, &opts, |_| {}).map_err(engine)?;
        let mut tokens = vec![cfg.bos];
        if let Some(best) = res.best() {
            tokens.extend(best.tokens.iter().copied());
        }
        tokens.truncate(max_len);
        let (r, back) =
            observe_linears(observer, || model.score(image, &tokens, &mut ws, &mut out));
        observer = back;
        r.map_err(engine)?;
    }
    progress("calibrating on images", cal.images, cal.images);
    drop(observer);
    let grams = Rc::try_unwrap(grams)
        .map_err(|_| PackError::Internal("calibration statistics still shared".into()))?
        .into_inner();

    // GPTQ per weight (matrices shared out over the threads; each one's rounding does not
    // depend on which thread does it), then the blob: the target's tensors with the int8
    // Linears replaced
    let mut jobs = Vec::with_capacity(slots.len());
    for ((kind, layer, rows, cols), gram) in slots.into_iter().zip(grams) {
        let w: Vec<f32> = match rb.matrix(kind, layer as usize).data {
            WeightData::F32(d) if d.len() >= rows * cols => d[..rows * cols].to_vec(),
            _ => return Err(PackError::Internal(format!("{kind:?} is not f32"))),
        };
        if gram.rows > 0 {
            // (never run cannot happen for a complete model: it would keep round-to-nearest)
            jobs.push(((kind, layer), w, cols, gram));
        }
    }
    let n = jobs.len();
    let jobs = std::sync::Mutex::new(jobs);
    let (send, receive) = std::sync::mpsc::channel();
    let mut calibrated: HashMap<(TensorKind, u16), TensorData> = HashMap::new();
    std::thread::scope(|scope| {
        for _ in 0..cal.threads.clamp(1, n.max(1)) {
            let (jobs, send) = (&jobs, send.clone());
            scope.spawn(move || loop {
                let job = jobs.lock().map(|mut j| j.pop()).unwrap_or(None);
                let Some((key, w, cols, gram)) = job else {
                    break;
                };
                let (q, scales) = gptq_rows(&w, cols, gram.into_full(), cal.damping);
                let act16 = false; // set from the target's dtype when the blob is written
                if send
                    .send((key, TensorData::I8 { q, scales, act16 }))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(send);
        progress("rounding weights (GPTQ)", 0, n);
        for (key, data) in receive {
            calibrated.insert(key, data);
            progress("rounding weights (GPTQ)", calibrated.len(), n);
        }
    });
    if calibrated.len() != n {
        return Err(PackError::Internal("a GPTQ worker stopped early".into()));
    }
    let mut writer = BlobWriter::new(*tb.config());
    for t in tb.tensors() {
        let len = t.rows as usize * t.cols as usize;
        let act16 = t.dtype == DType::I8A16;
        let data = match calibrated.remove(&(t.kind, t.layer)) {
            Some(TensorData::I8 { q, scales, .. }) => TensorData::I8 { q, scales, act16 },
            Some(d) => d,
            None => match tb.matrix(t.kind, t.layer as usize).data {
                WeightData::F32(d) if d.len() >= len => TensorData::F32(d[..len].to_vec()),
                WeightData::F16(d) if d.len() >= len => TensorData::F16(d[..len].to_vec()),
                WeightData::I8 { q, scales, .. } if q.len() >= len => TensorData::I8 {
                    q: q[..len].to_vec(),
                    scales: scales[..t.rows as usize].to_vec(),
                    act16,
                },
                _ => return Err(PackError::Internal(format!("{:?} is short", t.kind))),
            },
        };
        writer.add(t.kind, t.layer, data);
    }
    writer.vocab(tb.tokens().map(|t| t.to_vec()).collect());
    Ok(writer.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn f(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn gram(x: &[f32], k: usize) -> Vec<f64> {
        let mut g = Gram::new(k);
        g.add(x, x.len() / k);
        g.into_full()
    }

    fn output_error(x: &[f32], w: &[f32], q: &[i8], s: &[f32], k: usize) -> f64 {
        let mut e = 0.0;
        for xr in x.chunks_exact(k) {
            for ((wr, qr), &sr) in w.chunks_exact(k).zip(q.chunks_exact(k)).zip(s) {
                let (mut a, mut b) = (0f64, 0f64);
                for i in 0..k {
                    a += xr[i] as f64 * wr[i] as f64;
                    b += xr[i] as f64 * qr[i] as f64 * sr as f64;
                }
                e += (a - b) * (a - b);
            }
        }
        e
    }

    #[test]
    fn uncorrelated_inputs_give_round_to_nearest() {
        let (rows, k) = (7, 16);
        let mut rng = Rng(7);
        let w: Vec<f32> = (0..rows * k).map(|_| rng.f()).collect();
        let mut h = vec![0f64; k * k];
        for i in 0..k {
            h[i * k + i] = 3.0;
        }
        let (q, s) = gptq_rows(&w, k, h, 0.1);
        assert_eq!((q, s), crate::blob::quantize_rows_i8(&w, k));
    }

    #[test]
    fn correlated_inputs_lower_the_output_error() {
        let (rows, k, n) = (24, 48, 400);
        let mut rng = Rng(11);
        let w: Vec<f32> = (0..rows * k).map(|_| rng.f() * 0.2).collect();
        // inputs with a strong shared component: neighbouring columns correlate
        let mut x = vec![0f32; n * k];
        for r in 0..n {
            let common = rng.f() * 3.0;
            for i in 0..k {
                x[r * k + i] = common * (1.0 + 0.1 * (i % 5) as f32) + 0.3 * rng.f();
            }
        }
        let (rq, rs) = crate::blob::quantize_rows_i8(&w, k);
        let (gq, gs) = gptq_rows(&w, k, gram(&x, k), 0.01);
        assert_eq!(gs, rs, "the scales are round-to-nearest's");
        assert!(gq.iter().all(|&v| v >= -127));
        let (e_rtn, e_gptq) = (
            output_error(&x, &w, &rq, &rs, k),
            output_error(&x, &w, &gq, &gs, k),
        );
        assert!(
            e_gptq < 0.5 * e_rtn,
            "GPTQ output error {e_gptq} vs round-to-nearest {e_rtn}"
        );
    }

    #[test]
    fn degenerate_inputs_are_handled() {
        let k = 8;
        let w: Vec<f32> = (0..2 * k).map(|i| i as f32 - 5.0).collect();
        // all-zero Gram: every column untouched → round-to-nearest
        assert_eq!(
            gptq_rows(&w, k, vec![0.0; k * k], 0.1),
            crate::blob::quantize_rows_i8(&w, k)
        );
        // rank-one Gram (one input row repeated) still factorises with damping
        let x: Vec<f32> = (0..k).map(|i| (i + 1) as f32).collect();
        let (q, s) = gptq_rows(&w, k, gram(&x, k), 0.1);
        assert_eq!(s, crate::blob::quantize_rows_i8(&w, k).1);
        assert_eq!(q.len(), 2 * k);
        // an all-zero weight row keeps scale 0 and zeros
        let z = vec![0f32; k];
        assert_eq!(
            gptq_rows(&z, k, gram(&x, k), 0.1),
            (vec![0i8; k], vec![0.0])
        );
    }

    #[test]
    fn cholesky_inverse_factor() {
        let k = 5;
        let mut rng = Rng(3);
        let a: Vec<f64> = (0..k * k).map(|_| rng.f() as f64).collect();
        // H = A Aᵀ + I
        let mut h = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] = (0..k).map(|p| a[i * k + p] * a[j * k + p]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = upper_factor_of_inverse(&h, k).unwrap();
        // Uᵀ U H = I
        for i in 0..k {
            for j in 0..k {
                let mut s = 0.0;
                for p in 0..k {
                    let utu: f64 = (0..k).map(|r| u[r * k + i] * u[r * k + p]).sum();
                    s += utu * h[p * k + j];
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-9, "({i},{j}) = {s}");
            }
        }
    }
}
