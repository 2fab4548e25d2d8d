//! Portable scalar kernels: the ground truth every SIMD path is tested against.

use super::operand::{act16_max, dequant, FloatGemm, Gemm, Int16Gemm, Int8Gemm, QRows};
use super::tiles::{for_each_tile, Tiles};
use half::f16;

/// Σ `a[i]·b[i]` over the common length.
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
/// `q = round(x / scale)` clamped to [-127, 127]. An all-zero row gets scale 0 and q = 0; a
/// row with a NaN or infinite value gets q = 0 and scale NaN, so that every output it feeds
/// is NaN and the engine's non-finite checks report it (a finite, wrong caption otherwise).
pub fn quantize_rows(x: &[f32], n: usize, k: usize, q: &mut [i8], scales: &mut [f32]) {
    quantize_rows_to(x, n, k, q, scales, 127.0, |v| v as i8)
}

/// Quantise each row of `x[n, k]` symmetrically to int16 ([`crate::blob::DType::I8A16`]'s
/// activations): as [`quantize_rows`] with `A = act16_max(k)` in place of 127 (32767 up to
/// k = 512).
pub fn quantize_rows16(x: &[f32], n: usize, k: usize, q: &mut [i16], scales: &mut [f32]) {
    quantize_rows_to(x, n, k, q, scales, act16_max(k) as f32, |v| v as i16)
}

/// The row quantiser of both widths: `scale = absmax / a`, `q = clamp(roundf(x · a / absmax),
/// −a, a)` (`a` exactly representable, `to` exact on that range).
#[inline(always)]
fn quantize_rows_to<Q: Copy + Default>(
    x: &[f32],
    n: usize,
    k: usize,
    q: &mut [Q],
    scales: &mut [f32],
    a: f32,
    to: impl Fn(f32) -> Q,
) {
    for i in 0..n {
        let xr = &x[i * k..(i + 1) * k];
        let amax = abs_max(xr);
        let qr = &mut q[i * k..(i + 1) * k];
        if degenerate_row(amax, qr, &mut scales[i]) {
            continue;
        }
        let inv = a / amax;
        for (o, v) in qr.iter_mut().zip(xr) {
            *o = to(quantize_value(*v, inv, a));
        }
        scales[i] = amax / a;
    }
}

/// For a row whose absolute maximum `amax` is 0 or not finite, writes its quantised values as
/// 0 and its scale as 0 (all-zero) or NaN (non-finite) and returns `true`; otherwise `false`.
/// Every quantiser's rows start here.
#[inline(always)]
pub(super) fn degenerate_row<Q: Copy + Default>(amax: f32, qr: &mut [Q], scale: &mut f32) -> bool {
    if amax == 0.0 || !amax.is_finite() {
        *scale = if amax == 0.0 { 0.0 } else { f32::NAN };
        qr.fill(Q::default());
        return true;
    }
    false
}

/// One value's `clamp(roundf(v · inv), −a, a)`: what every quantiser computes per value (the
/// vector paths for their tails).
#[inline(always)]
pub(super) fn quantize_value(v: f32, inv: f32, a: f32) -> f32 {
    libm::roundf(v * inv).clamp(-a, a)
}

/// A row's largest `|x|`, taken on the bits (`bits & 0x7fff_ffff`, whose integer order is the
/// float order of non-negative values): a NaN anywhere gives a NaN, where `f32::max` would
/// ignore it and the row would quantise to finite values.
#[inline(always)]
pub fn abs_max(xr: &[f32]) -> f32 {
    f32::from_bits(
        xr.iter()
            .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff)),
    )
}

/// Σ `a[i]·b[i]` in i32 (int8 or int16 activations `a`, int8 weights `b`).
#[inline]
pub fn dot_q<X: Copy + Into<i32>>(a: &[X], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (x, y) in a.iter().zip(b) {
        acc += (*x).into() * *y as i32;
    }
    acc
}

/// Σ `a[i]·b[i]` in i32.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    dot_q(a, b)
}

/// `y[n, m] = (x.q[n, k] · w.q[m, k]ᵀ) * x.scales[n] * w.scales[m]`, int8 or int16 `x`.
pub fn gemm_i8<X: Copy + Into<i32>>(
    x: QRows<'_, X>,
    n: usize,
    k: usize,
    w: QRows<'_>,
    m: usize,
    y: &mut [f32],
) {
    for r in 0..m {
        let wr = &w.q[r * k..(r + 1) * k];
        for i in 0..n {
            let acc = dot_q(&x.q[i * k..(i + 1) * k], wr);
            y[i * m + r] = dequant(acc, x.scales[i], w.scales[r]);
        }
    }
}

// ---- the scalar path of `Kernels::linear` ---------------------------------------------------

/// [`gemm_f32`] writing through the [`Gemm`]'s `out`, bit for bit.
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
pub(crate) unsafe fn linear_f32(g: FloatGemm<'_, f32>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 4, 2>(&FloatTiles(g), g.m, g.n) }
}

/// [`gemm_f16`] writing through the [`Gemm`]'s `out`, bit for bit.
///
/// # Safety
/// As for [`linear_f32`].
pub(crate) unsafe fn linear_f16(g: FloatGemm<'_, f16>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 4, 2>(&FloatTiles(g), g.m, g.n) }
}

/// [`gemm_i8`] writing through the [`Gemm`]'s `out`, bit for bit: one output at a time.
///
/// # Safety
/// As for [`linear_f32`].
pub(crate) unsafe fn linear_i8(g: Int8Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 1, 1>(&I8Tiles(g), g.m, g.n) }
}

/// [`gemm_i8`] with int16 activations, writing through the [`Gemm`]'s `out`, bit for bit.
///
/// # Safety
/// As for [`linear_f32`].
pub(crate) unsafe fn linear_i8a16(g: Int16Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 1, 1>(&I8Tiles(g), g.m, g.n) }
}

/// f32 / f16 tiles: [`dot_tile`], every output summed in [`dot_f32`]'s order.
struct FloatTiles<'a, W>(FloatGemm<'a, W>);

impl<W: Copy + Into<f32>> Tiles for FloatTiles<'_, W> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        let xr: [&[f32]; N] = core::array::from_fn(|a| &x[(i + a) * k..(i + a + 1) * k]);
        let wr: [&[W]; R] = core::array::from_fn(|j| &w[(r + j) * k..(r + j + 1) * k]);
        let acc = dot_tile(xr, wr, k, W::into);
        for (a, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: i + a < n, r + j < m (the caller).
                unsafe { out.set(i + a, r + j, v) };
            }
        }
    }
}

/// int8-weight tiles: [`dot_q`] and the dequantisation of [`gemm_i8`].
struct I8Tiles<'a, X>(Gemm<QRows<'a, X>, QRows<'a>>);

impl<X: Copy + Into<i32>> Tiles for I8Tiles<'_, X> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        for j in r..r + R {
            for a in i..i + N {
                let acc = dot_q(&x.q[a * k..(a + 1) * k], &w.q[j * k..(j + 1) * k]);
                // SAFETY: a < n, j < m (the caller).
                unsafe { out.set(a, j, dequant(acc, x.scales[a], w.scales[j])) };
            }
        }
    }
}
