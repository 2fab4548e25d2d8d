//! aarch64 kernels: NEON (baseline on aarch64) and NEON + SDOT (`dotprod`, Cortex-A76 / Pi 5).
//!
//! int8: tiles of 4 weight rows × up to 4 activation rows, 16 bytes per step.
//! * [`gemm_i8`] (Cortex-A72 / Pi 4): `smull` + `smlal2` give i16 sums of two products — at most
//!   `2 · 128 · 127 = 32512`, exact since quantised activations lie in `[-127, 127]` — and
//!   `sadalp` widens them into the i32 accumulators.
//! * [`gemm_i8_dot`] (Cortex-A76 / Pi 5): one `sdot` per 16 bytes. `vdotq_s32` is not stable
//!   (rust-lang/rust#117224), so SDOT is emitted with inline `asm!` in a `dotprod` function.
//!
//! Accumulators and dequantisation are exactly scalar's. f32 / f16: 4 × 4 tiles of `fmla`;
//! f16 weights are widened with `fcvtl` (arithmetic in f32).

use super::{dequant, Out};
use core::arch::aarch64::*;
use half::f16;

/// Weight rows per tile.
const WR: usize = 4;
/// Activation rows per tile.
const XR: usize = 4;

/// `acc += Σ` of each 4-byte group of `a · b` (SDOT).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` only reads and writes the named vector registers; dotprod is enabled.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `y = dequant(xq[n, k] · wq[m, k]ᵀ)` with widening multiplies (no SDOT needed).
///
/// # Safety
/// `xq` holds `n * k`, `xs` `n`, `wq` `m * k`, `ws` `m` elements; `out` addresses `n` rows of
/// `m` columns that only this call writes.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_i8(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    m: usize,
    out: Out,
) {
    // SAFETY: forwarded.
    unsafe { gemm_i8_generic::<false>(xq, xs, n, k, wq, ws, m, out) }
}

/// `y = dequant(xq[n, k] · wq[m, k]ᵀ)` with SDOT.
///
/// # Safety
/// As for [`gemm_i8`], and the CPU has `dotprod`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemm_i8_dot(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    m: usize,
    out: Out,
) {
    // SAFETY: forwarded; dotprod is available (caller).
    unsafe { gemm_i8_generic::<true>(xq, xs, n, k, wq, ws, m, out) }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemm_i8_generic<const DOT: bool>(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    m: usize,
    out: Out,
) {
    let mut r = 0;
    // SAFETY (all calls): rows r..r+R < m; forwarded.
    while r + WR <= m {
        unsafe { rows_i8::<DOT, WR>(xq, xs, n, k, wq, ws, r, out) };
        r += WR;
    }
    match m - r {
        3 => unsafe { rows_i8::<DOT, 3>(xq, xs, n, k, wq, ws, r, out) },
        2 => unsafe { rows_i8::<DOT, 2>(xq, xs, n, k, wq, ws, r, out) },
        1 => unsafe { rows_i8::<DOT, 1>(xq, xs, n, k, wq, ws, r, out) },
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rows_i8<const DOT: bool, const R: usize>(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    r: usize,
    out: Out,
) {
    let mut i = 0;
    while i < n {
        // SAFETY: rows i..i+N < n and r..r+R < m; forwarded.
        unsafe {
            match n - i {
                1 => tile_i8::<DOT, R, 1>(xq, xs, k, wq, ws, r, i, out),
                2 => tile_i8::<DOT, R, 2>(xq, xs, k, wq, ws, r, i, out),
                3 => tile_i8::<DOT, R, 3>(xq, xs, k, wq, ws, r, i, out),
                _ => tile_i8::<DOT, R, XR>(xq, xs, k, wq, ws, r, i, out),
            }
        }
        i += XR;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_i8<const DOT: bool, const R: usize, const N: usize>(
    xq: &[i8],
    xs: &[f32],
    k: usize,
    wq: &[i8],
    ws: &[f32],
    r: usize,
    i: usize,
    out: Out,
) {
    // SAFETY: inlined only into the `#[target_feature]` entry points below (the dotprod one is
    // called after detection); pointer accesses as stated below.
    unsafe {
        let k16 = k & !15;
        // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers), each `k`
        // bytes; every load reads 16 bytes at an offset c + 16 <= k16 <= k. `sdot` is only reached
        // with DOT, i.e. from `gemm_i8_dot`, whose caller checked dotprod.
        let wp: [*const i8; R] = core::array::from_fn(|j| wq.as_ptr().add((r + j) * k));
        let xp: [*const i8; N] = core::array::from_fn(|t| xq.as_ptr().add((i + t) * k));
        let mut acc = [[vdupq_n_s32(0); N]; R];
        let mut c = 0;
        while c < k16 {
            let w: [int8x16_t; R] = core::array::from_fn(|j| vld1q_s8(wp[j].add(c)));
            let x: [int8x16_t; N] = core::array::from_fn(|t| vld1q_s8(xp[t].add(c)));
            for j in 0..R {
                for t in 0..N {
                    acc[j][t] = if DOT {
                        sdot(acc[j][t], x[t], w[j])
                    } else {
                        let p = vmull_s8(vget_low_s8(x[t]), vget_low_s8(w[j]));
                        vpadalq_s16(acc[j][t], vmlal_high_s8(p, x[t], w[j]))
                    };
                }
            }
            c += 16;
        }
        for j in 0..R {
            for t in 0..N {
                let mut s = vaddvq_s32(acc[j][t]);
                for c in k16..k {
                    // SAFETY: c < k.
                    s += *xp[t].add(c) as i32 * *wp[j].add(c) as i32;
                }
                // SAFETY: i + t < n, r + j < m (callers); xs, ws hold n and m elements.
                {
                    let v = dequant(s, *xs.get_unchecked(i + t), *ws.get_unchecked(r + j));
                    out.set(i + t, r + j, v);
                }
            }
        }
    }
}

/// A weight source for the float tiles: 4 lanes at an element offset.
trait Load4 {
    type T;
    unsafe fn load4(p: *const Self::T) -> float32x4_t;
    fn get(v: &Self::T) -> f32;
}
struct F32W;
struct F16W;
impl Load4 for F32W {
    type T = f32;
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable elements.
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    fn get(v: &f32) -> f32 {
        *v
    }
}
impl Load4 for F16W {
    type T = f16;
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable elements (f16 is a u16 bit pattern).
        unsafe { vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p as *const u16))) }
    }
    #[inline(always)]
    fn get(v: &f16) -> f32 {
        v.to_f32()
    }
}

/// `y = x[n, k] · w[m, k]ᵀ` in f32.
///
/// # Safety
/// `x` holds `n * k`, `w` `m * k` elements; `out` addresses `n` rows of `m` columns that only
/// this call writes.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_f32(x: &[f32], n: usize, k: usize, w: &[f32], m: usize, out: Out) {
    // SAFETY: forwarded.
    unsafe { gemm_float::<F32W>(x, n, k, w, m, out) }
}

/// `y = x[n, k] · w[m, k]ᵀ` with f16 weights, f32 arithmetic.
///
/// # Safety
/// As for [`gemm_f32`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_f16(x: &[f32], n: usize, k: usize, w: &[f16], m: usize, out: Out) {
    // SAFETY: forwarded.
    unsafe { gemm_float::<F16W>(x, n, k, w, m, out) }
}

#[inline(always)]
unsafe fn gemm_float<L: Load4>(x: &[f32], n: usize, k: usize, w: &[L::T], m: usize, out: Out) {
    let mut r = 0;
    // SAFETY (all calls): rows r..r+R < m; forwarded.
    while r + WR <= m {
        unsafe { rows_float::<L, WR>(x, n, k, w, r, out) };
        r += WR;
    }
    match m - r {
        3 => unsafe { rows_float::<L, 3>(x, n, k, w, r, out) },
        2 => unsafe { rows_float::<L, 2>(x, n, k, w, r, out) },
        1 => unsafe { rows_float::<L, 1>(x, n, k, w, r, out) },
        _ => {}
    }
}

#[inline(always)]
unsafe fn rows_float<L: Load4, const R: usize>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[L::T],
    r: usize,
    out: Out,
) {
    let mut i = 0;
    while i < n {
        // SAFETY: rows i..i+N < n and r..r+R < m; forwarded.
        unsafe {
            match n - i {
                1 => tile_float::<L, R, 1>(x, k, w, r, i, out),
                2 => tile_float::<L, R, 2>(x, k, w, r, i, out),
                3 => tile_float::<L, R, 3>(x, k, w, r, i, out),
                _ => tile_float::<L, R, XR>(x, k, w, r, i, out),
            }
        }
        i += XR;
    }
}

#[inline(always)]
unsafe fn tile_float<L: Load4, const R: usize, const N: usize>(
    x: &[f32],
    k: usize,
    w: &[L::T],
    r: usize,
    i: usize,
    out: Out,
) {
    // SAFETY: inlined only into the `#[target_feature]` entry points below (the dotprod one is
    // called after detection); pointer accesses as stated below.
    unsafe {
        let k4 = k & !3;
        // SAFETY (whole function): rows r..r+R of `w` and i..i+N of `x` exist (callers), each `k`
        // elements; every load reads 4 elements at an offset c + 4 <= k4 <= k.
        let wp: [*const L::T; R] = core::array::from_fn(|j| w.as_ptr().add((r + j) * k));
        let xp: [*const f32; N] = core::array::from_fn(|t| x.as_ptr().add((i + t) * k));
        let mut acc = [[vdupq_n_f32(0.0); N]; R];
        let mut c = 0;
        while c < k4 {
            let wv: [float32x4_t; R] = core::array::from_fn(|j| L::load4(wp[j].add(c)));
            for t in 0..N {
                let xv = vld1q_f32(xp[t].add(c));
                for j in 0..R {
                    acc[j][t] = vfmaq_f32(acc[j][t], xv, wv[j]);
                }
            }
            c += 4;
        }
        for j in 0..R {
            for t in 0..N {
                let mut s = vaddvq_f32(acc[j][t]);
                for c in k4..k {
                    // SAFETY: c < k.
                    s += *xp[t].add(c) * L::get(&*wp[j].add(c));
                }
                // SAFETY: i + t < n, r + j < m (callers).
                out.set(i + t, r + j, s);
            }
        }
    }
}
