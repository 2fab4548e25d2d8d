//! Portable scalar kernels: the ground truth every SIMD path is tested against.

use half::f16;

/// Σ a[i]·b[i] over the common length.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

/// Dot products of `N` activation rows with `R` weight rows at once (`w` widened to f32 by
/// `f`): `acc[i][j] = Σ_t x[i][t]·f(w[j][t])`, each summed for t = 0, 1, … from 0.0 exactly as
/// [`dot_f32`] sums — the same order, so the same bits. Only the `N·R` independent chains are
/// interleaved, so that no addition waits for the one before it in its own chain. Rows shorter
/// than `k` are a caller bug (slicing panics).
#[inline(always)]
pub fn dot_tile<W: Copy, const N: usize, const R: usize>(
    x: [&[f32]; N],
    w: [&[W]; R],
    k: usize,
    f: impl Fn(W) -> f32,
) -> [[f32; R]; N] {
    let x = x.map(|r| &r[..k]);
    let w = w.map(|r| &r[..k]);
    let mut acc = [[0.0f32; R]; N];
    for t in 0..k {
        for j in 0..R {
            let wv = f(w[j][t]);
            for i in 0..N {
                acc[i][j] += x[i][t] * wv;
            }
        }
    }
    acc
}

/// `y[n, m] = x[n, k] · w[m, k]ᵀ` in f32.
pub fn gemm_f32(x: &[f32], n: usize, k: usize, w: &[f32], m: usize, y: &mut [f32]) {
    for r in 0..m {
        let wr = &w[r * k..(r + 1) * k];
        for i in 0..n {
            y[i * m + r] = dot_f32(&x[i * k..(i + 1) * k], wr);
        }
    }
}

/// `y[n, m] = x[n, k] · w[m, k]ᵀ` with f16 weights, f32 arithmetic.
pub fn gemm_f16(x: &[f32], n: usize, k: usize, w: &[f16], m: usize, y: &mut [f32]) {
    for r in 0..m {
        let wr = &w[r * k..(r + 1) * k];
        for i in 0..n {
            let xr = &x[i * k..(i + 1) * k];
            let mut acc = 0.0f32;
            for (a, b) in xr.iter().zip(wr) {
                acc += a * b.to_f32();
            }
            y[i * m + r] = acc;
        }
    }
}

/// Quantise each row of `x[n, k]` symmetrically to int8: `scale = absmax / 127`,
/// `q = round(x / scale)` clamped to [-127, 127]. An all-zero row gets scale 0 and q = 0.
pub fn quantize_rows(x: &[f32], n: usize, k: usize, q: &mut [i8], scales: &mut [f32]) {
    for i in 0..n {
        let xr = &x[i * k..(i + 1) * k];
        let amax = xr.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let qr = &mut q[i * k..(i + 1) * k];
        if amax == 0.0 || !amax.is_finite() {
            scales[i] = 0.0;
            qr.fill(0);
            continue;
        }
        let s = amax / 127.0;
        let inv = 127.0 / amax;
        for (o, v) in qr.iter_mut().zip(xr) {
            *o = libm::roundf(v * inv).clamp(-127.0, 127.0) as i8;
        }
        scales[i] = s;
    }
}

/// Σ a[i]·b[i] in i32.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (x, y) in a.iter().zip(b) {
        acc += *x as i32 * *y as i32;
    }
    acc
}

/// `y[n, m] = (xq[n, k] · wq[m, k]ᵀ) * xs[n] * ws[m]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    m: usize,
    y: &mut [f32],
) {
    for r in 0..m {
        let wr = &wq[r * k..(r + 1) * k];
        for i in 0..n {
            let acc = dot_i8(&xq[i * k..(i + 1) * k], wr);
            y[i * m + r] = acc as f32 * xs[i] * ws[r];
        }
    }
}
