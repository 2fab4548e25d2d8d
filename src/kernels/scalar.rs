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
    quantize_rows_to(x, n, k, q, scales, 127, |v| v as i8)
}

/// Quantise each row of `x[n, k]` symmetrically to int16 ([`crate::blob::DType::I8A16`]'s
/// activations): as [`quantize_rows`] with `A = act16_max(k)` in place of 127 (32767 up to
/// k = 512).
pub fn quantize_rows16(x: &[f32], n: usize, k: usize, q: &mut [i16], scales: &mut [f32]) {
    quantize_rows_to(x, n, k, q, scales, act16_max(k), |v| v as i16)
}

/// The row quantiser of both widths: `scale = absmax / a`, `q = clamp(roundf(x · a / absmax),
/// −a, a)` (`a` exactly representable as f32, `to` exact on `[−a, a]`).
#[inline(always)]
fn quantize_rows_to<Q: Copy + Default>(
    x: &[f32],
    n: usize,
    k: usize,
    q: &mut [Q],
    scales: &mut [f32],
    a: i32,
    to: impl Fn(i32) -> Q,
) {
    quantize_rows_by((x, n, k), q, scales, (a, to), abs_max, |_, _, _| 0);
}

/// Every quantiser's rows (scalar, AVX2, AVX-512, NEON): per row of `x [n, k]`, `absmax`
/// ([`abs_max`]'s value, computed as the path likes), the [`degenerate_row`] case, then
/// `vector(row, q_row, inv)` quantises a prefix of the row as the path's lanes do (returning
/// its length; `0` on the scalar path) and [`quantize_value`] the rest, through `to` into the
/// storage type; `scale = absmax / a`.
#[inline(always)]
pub(super) fn quantize_rows_by<Q: Copy + Default>(
    (x, n, k): (&[f32], usize, usize),
    q: &mut [Q],
    scales: &mut [f32],
    (a, to): (i32, impl Fn(i32) -> Q),
    absmax: impl Fn(&[f32]) -> f32,
    mut vector: impl FnMut(&[f32], &mut [Q], f32) -> usize,
) {
    let af = a as f32;
    for i in 0..n {
        let xr = &x[i * k..(i + 1) * k];
        let qr = &mut q[i * k..(i + 1) * k];
        let amax = absmax(xr);
        if degenerate_row(amax, qr, &mut scales[i]) {
            continue;
        }
        let inv = af / amax;
        let done = vector(xr, qr, inv).min(k);
        for (o, v) in qr[done..].iter_mut().zip(&xr[done..]) {
            *o = to(quantize_value(*v, inv, a));
        }
        scales[i] = amax / af;
    }
}

/// For a row whose absolute maximum `amax` is 0 or not finite, writes its quantised values as
/// 0 and its scale as 0 (all-zero) or NaN (non-finite) and returns `true`; otherwise `false`.
/// Every quantiser's rows start here.
#[inline(always)]
fn degenerate_row<Q: Copy + Default>(amax: f32, qr: &mut [Q], scale: &mut f32) -> bool {
    if amax == 0.0 || !amax.is_finite() {
        *scale = if amax == 0.0 { 0.0 } else { f32::NAN };
        qr.fill(Q::default());
        return true;
    }
    false
}

/// One value's `clamp(roundf(v · inv), −a, a)` (`0 < a < 2³¹`; NaN → 0): what every
/// quantiser computes per value (the vector paths for their tails), as
/// `sign(t) · min(roundf(|t|), a)` with [`round_magnitude`] — the same integer, since `roundf`
/// rounds halves away from zero, symmetrically. Hand-written rather than `libm::roundf` (a call
/// per value, and on armv7 and Cortex-M no vector or rounding instruction takes its place): a
/// multiply, an absolute value, an add, a convert, then integer steps.
#[inline(always)]
pub(super) fn quantize_value(v: f32, inv: f32, a: i32) -> i32 {
    let t = v * inv;
    let m = round_magnitude(t).min(a);
    if t.is_sign_negative() {
        -m
    } else {
        m
    }
}

/// `roundf(|t|)` as i32: `|t| + (0.5 − 2⁻²⁵)` truncated — one f32 add, exact for every finite
/// `|t| < 2³¹` (checked on all of them: `tests::round_magnitude_is_roundf`; a tie `k + ½` sums
/// to `k + 1 − 2⁻²⁵`, which rounds to `k + 1`, anything below a tie stays below `k + 1`);
/// beyond that, and for ∞, the saturating cast gives `i32::MAX`; NaN gives 0.
#[inline(always)]
pub(super) fn round_magnitude(t: f32) -> i32 {
    // 0x3eff_ffff = 0.5 − 2⁻²⁵, the largest float below one half
    (t.abs() + f32::from_bits(0x3eff_ffff)) as i32
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `round_magnitude(t)` against `libm::roundf(|t|)` for one float: equal for finite
    /// `|t| < 2³¹`, saturated beyond (and at ±∞), 0 for NaN.
    fn check(t: f32) {
        let got = round_magnitude(t);
        if t.is_nan() {
            assert_eq!(got, 0, "NaN ({:#x})", t.to_bits());
        } else if t.abs() < 2_147_483_648.0 {
            assert_eq!(
                got as f32,
                libm::roundf(t.abs()),
                "t = {t:e} ({:#x})",
                t.to_bits()
            );
        } else {
            assert_eq!(got, i32::MAX, "t = {t:e}");
        }
    }

    #[test]
    fn round_magnitude_is_roundf() {
        // every tie k ± ½ up to the int16 activations' 32767 and its neighbours, a few ulps
        // either side (where a wrong offset would first show), and the ends of the ranges where
        // the float spacing is ½ and 1
        for k in 0..40_000u32 {
            let tie = k as f32 + 0.5;
            for s in [1.0f32, -1.0] {
                let b = (s * tie).to_bits();
                for d in 0..6 {
                    check(f32::from_bits(b + d));
                    check(f32::from_bits(b - d));
                }
                check(s * k as f32);
            }
        }
        for e in [22, 23, 24, 30, 31] {
            let p = (1u64 << e) as f32;
            for d in 0..8 {
                for s in [1.0f32, -1.0] {
                    check(s * f32::from_bits(p.to_bits() + d));
                    check(s * f32::from_bits(p.to_bits() - d));
                }
            }
        }
        for t in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ] {
            check(t);
        }
        // and a stride through every bit pattern (subnormals, NaN payloads, huge values)
        for b in (0..=u32::MAX).step_by(4_999) {
            check(f32::from_bits(b));
        }
    }

    /// Every f32 (~10 s in release): `cargo test --release -p m2 --lib -- --ignored
    /// round_magnitude_is_roundf_everywhere`.
    #[test]
    #[ignore]
    fn round_magnitude_is_roundf_everywhere() {
        for b in 0..=u32::MAX {
            check(f32::from_bits(b));
        }
    }

    #[test]
    fn quantize_value_clamps_and_zeroes_nan() {
        assert_eq!(quantize_value(1.0, 127.0, 127), 127);
        assert_eq!(quantize_value(-1.0, 127.5, 127), -127);
        assert_eq!(quantize_value(0.5, 1.0, 127), 1);
        assert_eq!(quantize_value(-0.5, 1.0, 127), -1);
        assert_eq!(quantize_value(0.49999997, 1.0, 127), 0);
        assert_eq!(quantize_value(f32::INFINITY, 1.0, 32767), 32767);
        assert_eq!(quantize_value(f32::NEG_INFINITY, 1.0, 32767), -32767);
        assert_eq!(quantize_value(f32::NAN, 1.0, 127), 0);
        assert_eq!(quantize_value(3e9, 1.0, 8191), 8191);
    }
}
