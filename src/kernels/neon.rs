//! aarch64 kernels: NEON (baseline on aarch64) and NEON + SDOT (`dotprod`, Cortex-A76 / Pi 5).
//!
//! int8: tiles of 4 weight rows × up to 4 activation rows, 16 bytes per step.
//! * [`gemm_i8`] (Cortex-A72 / Pi 4): `smull` + `smlal2` give i16 sums of two products — at most
//!   `2 · 128 · 127 = 32512`, exact since quantised activations lie in `[-127, 127]` — and
//!   `sadalp` widens them into the i32 accumulators.
//! * [`gemm_i8_dot`] (Cortex-A76 / Pi 5): one `sdot` per 16 bytes. `vdotq_s32` is not stable
//!   (rust-lang/rust#117224), so SDOT is emitted with inline `asm!` in a `dotprod` function.
//!
//! * [`gemm_i8a16`] (int16 activations, both cores): weights widened with `sxtl`, then
//!   `smlal` + `smlal2`, 8 values per step.
//!
//! Accumulators and dequantisation are exactly scalar's. f32 / f16: 4 × 4 tiles of `fmla`;
//! f16 weights are widened with `fcvtl` (arithmetic in f32).

use super::operand::{FloatGemm, Gemm, Int16Gemm, Int8Gemm};
use super::simd::{store_lanes, Cols};
use super::tiles::{finish_int_tile, for_each_tile, Tiles};
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

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)` with widening multiplies (no SDOT needed).
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_i8(g: Int8Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, WR, XR>(&I8Tiles::<false>(g), g.m, g.n) }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)` with SDOT.
///
/// # Safety
/// As for [`gemm_i8`], and the CPU has `dotprod`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemm_i8_dot(g: Int8Gemm<'_>) {
    // SAFETY: forwarded; dotprod is available (caller).
    unsafe { for_each_tile::<_, WR, XR>(&I8Tiles::<true>(g), g.m, g.n) }
}

/// The int8 tile, 16 bytes per step: `sdot` if `DOT`, else `smull` + `smlal2` + `sadalp`.
struct I8Tiles<'a, const DOT: bool>(Int8Gemm<'a>);

impl<const DOT: bool> Tiles for I8Tiles<'_, DOT> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        let (xq, xs, wq, ws) = (x.q, x.scales, w.q, w.scales);
        // SAFETY: inlined only into `gemm_i8` / `gemm_i8_dot` (`#[target_feature]`; the dotprod one
        // is called after detection); pointer accesses as stated below.
        unsafe {
            let k16 = k & !15;
            // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers),
            // each `k` bytes; every load reads 16 bytes at an offset c + 16 <= k16 <= k. `sdot`
            // is only reached with DOT, i.e. from `gemm_i8_dot`, whose caller checked dotprod.
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
            let sums = lane_sums(acc);
            finish_int_tile(sums, xp, wp, (r, i), k16, k, (xs, ws), out);
        }
    }
}

/// Each accumulator's four lanes summed (plain loops: a closure would not inherit the
/// caller's target features).
#[inline(always)]
unsafe fn lane_sums<const R: usize, const N: usize>(acc: [[int32x4_t; N]; R]) -> [[i32; N]; R] {
    let mut sums = [[0i32; N]; R];
    for j in 0..R {
        for t in 0..N {
            // SAFETY: register-only; inlined into the NEON entry points.
            sums[j][t] = unsafe { vaddvq_s32(acc[j][t]) };
        }
    }
    sums
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)` with int16 activations (`smlal`, no SDOT needed).
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_i8a16(g: Int16Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, WR, XR>(&I8A16Tiles(g), g.m, g.n) }
}

/// The int8 × int16 tile, 8 values per step.
struct I8A16Tiles<'a>(Int16Gemm<'a>);

impl Tiles for I8A16Tiles<'_> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        // SAFETY: inlined only into `gemm_i8a16` (`#[target_feature]`). Rows r..r+R of `w.q`
        // and i..i+N of `x.q` exist (callers), each `k` values; every load reads 8 values at an
        // offset c + 8 <= k8 <= k.
        unsafe {
            let k8 = k & !7;
            let wp: [*const i8; R] = core::array::from_fn(|j| w.q.as_ptr().add((r + j) * k));
            let xp: [*const i16; N] = core::array::from_fn(|t| x.q.as_ptr().add((i + t) * k));
            let mut acc = [[vdupq_n_s32(0); N]; R];
            let mut c = 0;
            while c < k8 {
                let w16: [int16x8_t; R] = core::array::from_fn(|j| vmovl_s8(vld1_s8(wp[j].add(c))));
                let xv: [int16x8_t; N] = core::array::from_fn(|t| vld1q_s16(xp[t].add(c)));
                for j in 0..R {
                    for t in 0..N {
                        let lo = vmlal_s16(acc[j][t], vget_low_s16(xv[t]), vget_low_s16(w16[j]));
                        acc[j][t] = vmlal_high_s16(lo, xv[t], w16[j]);
                    }
                }
                c += 8;
            }
            let sums = lane_sums(acc);
            finish_int_tile(sums, xp, wp, (r, i), k8, k, (x.scales, w.scales), out);
        }
    }
}

/// A weight element type of the float tiles: f32, or f16 widened with `fcvtl`.
trait Load4: Copy + Into<f32> {
    /// Four elements from `p`, as f32 lanes.
    ///
    /// # Safety
    /// Four elements are readable at `p`.
    unsafe fn load4(p: *const Self) -> float32x4_t;
}

impl Load4 for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        // SAFETY: forwarded to the caller.
        unsafe { vld1q_f32(p) }
    }
}

impl Load4 for f16 {
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> float32x4_t {
        // SAFETY: forwarded to the caller (f16 is a u16 bit pattern).
        unsafe { vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p as *const u16))) }
    }
}

/// `y = x[n, k] · w[m, k]ᵀ` in f32.
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_f32(g: FloatGemm<'_, f32>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, WR, XR>(&FloatTiles(g), g.m, g.n) }
}

/// `y = x[n, k] · w[m, k]ᵀ` with f16 weights, f32 arithmetic.
///
/// # Safety
/// As for [`gemm_f32`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_f16(g: FloatGemm<'_, f16>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, WR, XR>(&FloatTiles(g), g.m, g.n) }
}

/// The float tile: `fmla`, 4 lanes per step.
struct FloatTiles<'a, W>(FloatGemm<'a, W>);

impl<W: Load4> Tiles for FloatTiles<'_, W> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        // SAFETY: inlined only into `gemm_f32` / `gemm_f16` (`#[target_feature]`); pointer
        // accesses as stated below.
        unsafe {
            let k4 = k & !3;
            // SAFETY (whole function): rows r..r+R of `w` and i..i+N of `x` exist (callers),
            // each `k` elements; every load reads 4 elements at an offset c + 4 <= k4 <= k.
            let wp: [*const W; R] = core::array::from_fn(|j| w.as_ptr().add((r + j) * k));
            let xp: [*const f32; N] = core::array::from_fn(|t| x.as_ptr().add((i + t) * k));
            let mut acc = [[vdupq_n_f32(0.0); N]; R];
            let mut c = 0;
            while c < k4 {
                let wv: [float32x4_t; R] = core::array::from_fn(|j| W::load4(wp[j].add(c)));
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
                        s += *xp[t].add(c) * (*wp[j].add(c)).into();
                    }
                    // SAFETY: i + t < n, r + j < m (callers).
                    out.set(i + t, r + j, s);
                }
            }
        }
    }
}

/// `out[k] = super::dot_f32(q, keys[k])` for eight keys, bit for bit: each key's eight lane
/// sums (two registers: lanes `0..4`, `4..8`) advance over the chunks in order (`acc + q·k`,
/// `fadd` of an `fmul`, no FMA); `a[l] + a[l + 4]` is one `fadd`, and `faddp` twice gives
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))` for four keys at once; then the tail as
/// `dot_f32` adds it.
///
/// # Safety
/// Every `keys[k]` holds at least `q.len()` values (NEON is baseline on aarch64).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot8_f32(q: &[f32], keys: &[&[f32]; 8]) -> [f32; 8] {
    let full = q.len() & !7;
    let kp: [*const f32; 8] = core::array::from_fn(|k| keys[k].as_ptr());
    let mut acc = [[vdupq_n_f32(0.0); 2]; 8];
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 <= full <= q.len() <= keys[k].len() (caller).
        unsafe {
            let qv = [
                vld1q_f32(q.as_ptr().add(c)),
                vld1q_f32(q.as_ptr().add(c + 4)),
            ];
            for k in 0..8 {
                for h in 0..2 {
                    let kv = vld1q_f32(kp[k].add(c + 4 * h));
                    acc[k][h] = vaddq_f32(acc[k][h], vmulq_f32(qv[h], kv));
                }
            }
        }
        c += 8;
    }
    let b: [float32x4_t; 8] = core::array::from_fn(|k| vaddq_f32(acc[k][0], acc[k][1]));
    let four = |k: usize| vpaddq_f32(vpaddq_f32(b[k], b[k + 1]), vpaddq_f32(b[k + 2], b[k + 3]));
    let mut out = [0f32; 8];
    // SAFETY: `out` is 32 writable bytes.
    unsafe {
        vst1q_f32(out.as_mut_ptr(), four(0));
        vst1q_f32(out.as_mut_ptr().add(4), four(4));
    }
    super::simd::add_tails(q, keys, full, &mut out);
    out
}

/// [`super::Kernels::dot_columns`] eight columns per block: `out[j] = super::dot_f32(q,
/// column j of kt)`, bit for bit. Two q registers per partial sum (`fadd` of an `fmul`, no
/// FMA), then `dot_f32`'s tree and tail lane-wise; blocks as [`super::simd::column_blocks`]
/// places them.
///
/// # Safety
/// `k.kt` holds `q.len()` rows `k.stride` apart of at least `k.width ≥ 8` values each;
/// `k.n ≤ k.width`; `out` holds at least `k.n` values (NEON is baseline on aarch64).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_columns_f32(q: &[f32], k: Cols<'_>, out: &mut [f32]) {
    let (full, stride) = (q.len() & !7, k.stride);
    for (j, lanes) in super::simd::column_blocks(k.n, k.width, 8) {
        // SAFETY: j + 8 <= width, so every load `kt[c·stride + j..][..8]` (c < q.len()) is in
        // bounds (caller); `c + l < q.len()`.
        let s = unsafe {
            let p = k.kt.as_ptr().add(j);
            let mut a = [[vdupq_n_f32(0.0); 2]; 8];
            let mut c = 0;
            while c < full {
                for (l, a) in a.iter_mut().enumerate() {
                    let x = vdupq_n_f32(*q.get_unchecked(c + l));
                    let row = p.add((c + l) * stride);
                    a[0] = vaddq_f32(a[0], vmulq_f32(x, vld1q_f32(row)));
                    a[1] = vaddq_f32(a[1], vmulq_f32(x, vld1q_f32(row.add(4))));
                }
                c += 8;
            }
            let tree = |h: usize| {
                vaddq_f32(
                    vaddq_f32(vaddq_f32(a[0][h], a[4][h]), vaddq_f32(a[1][h], a[5][h])),
                    vaddq_f32(vaddq_f32(a[2][h], a[6][h]), vaddq_f32(a[3][h], a[7][h])),
                )
            };
            let mut s = [tree(0), tree(1)];
            for (c, &x) in q.iter().enumerate().skip(full) {
                let (x, row) = (vdupq_n_f32(x), p.add(c * stride));
                s[0] = vaddq_f32(s[0], vmulq_f32(x, vld1q_f32(row)));
                s[1] = vaddq_f32(s[1], vmulq_f32(x, vld1q_f32(row.add(4))));
            }
            s
        };
        // SAFETY: the stores write the 8 floats of the array they are given.
        store_lanes(out, j, lanes, |b: &mut [f32; 8]| unsafe {
            vst1q_f32(b.as_mut_ptr(), s[0]);
            vst1q_f32(b.as_mut_ptr().add(4), s[1]);
        });
    }
}

/// A row's absolute maximum taken on the bits, as [`super::scalar::abs_max`] (`bits &
/// 0x7fff_ffff`, whose integer order is the float order; a NaN anywhere gives a NaN): four
/// lanes of `umax`, then the lanes and the tail. Integer maxima, so the order does not matter.
#[inline(always)]
unsafe fn row_absmax(xr: &[f32]) -> f32 {
    let (k, xp) = (xr.len(), xr.as_ptr());
    // SAFETY: NEON is baseline on aarch64; every load reads xr[c..c + 4] with c + 4 <= k.
    unsafe {
        let mask = vdupq_n_u32(0x7fff_ffff);
        let mut vmax = vdupq_n_u32(0);
        let mut c = 0;
        while c + 4 <= k {
            vmax = vmaxq_u32(
                vmax,
                vandq_u32(vreinterpretq_u32_f32(vld1q_f32(xp.add(c))), mask),
            );
            c += 4;
        }
        let m = vmaxvq_u32(vmax);
        f32::from_bits(m.max(super::scalar::abs_max(&xr[c..]).to_bits()))
    }
}

/// `clamp(roundf(x · inv), −a, a)` of four lanes as i32: FCVTAS (`vcvtaq_s32_f32`) rounds to
/// nearest with ties away from zero — `roundf` — and saturates (±∞ and beyond i32 → the i32
/// limits, clamped to ±a like the scalar's clamp of the float), and a NaN converts to 0, as the
/// scalar's `NaN as i8` does.
#[inline(always)]
unsafe fn round4(x: float32x4_t, inv: float32x4_t, a: int32x4_t) -> int32x4_t {
    // SAFETY: NEON is baseline on aarch64 (registers only).
    unsafe {
        let r = vcvtaq_s32_f32(vmulq_f32(x, inv));
        vminq_s32(vmaxq_s32(r, vnegq_s32(a)), a)
    }
}

/// The row quantiser of both widths with NEON through [`super::scalar::quantize_rows_by`]
/// (`scale = absmax / a`, `q = clamp(roundf(x · a / absmax), −a, a)`), 16 values a step
/// through `store` (four i32x4 of already clamped values → the row at `c`); the tail is the
/// scalar's.
///
/// # Safety
/// `x` holds `n · k` values and `q` `n · k`, `scales` `n` (NEON is baseline on aarch64);
/// `store` is handed the 16 values of `q` at `c` and writes only those.
#[inline(always)]
unsafe fn quantize_rows_to<Q: Copy + Default>(
    xnk: (&[f32], usize, usize),
    q: &mut [Q],
    scales: &mut [f32],
    (a, to): (i32, impl Fn(i32) -> Q),
    store: impl Fn(&mut [Q], [int32x4_t; 4]),
) {
    // SAFETY: NEON is baseline on aarch64.
    let absmax = |xr: &[f32]| unsafe { row_absmax(xr) };
    let vector = |xr: &[f32], qr: &mut [Q], inv: f32| {
        let k16 = xr.len().min(qr.len()) & !15;
        // SAFETY: c + 16 <= k16 <= xr.len(): the four loads read xr[c..c + 16], the store
        // writes qr[c..c + 16] (a checked slice).
        unsafe {
            let (vinv, va) = (vdupq_n_f32(inv), vdupq_n_s32(a));
            let mut c = 0;
            while c < k16 {
                let p = xr.as_ptr().add(c);
                let r = [0, 4, 8, 12].map(|o| round4(vld1q_f32(p.add(o)), vinv, va));
                store(&mut qr[c..c + 16], r);
                c += 16;
            }
        }
        k16
    };
    super::scalar::quantize_rows_by(xnk, q, scales, (a, to), absmax, vector);
}

/// [`super::scalar::quantize_rows`] with NEON, byte for byte the same (tests/kernels_props.rs
/// compares every path's quantised activations, ties and special values included).
///
/// # Safety
/// `x` and `q` hold `n · k` elements, `scales` `n` (NEON is baseline on aarch64).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn quantize_rows(x: &[f32], n: usize, k: usize, q: &mut [i8], s: &mut [f32]) {
    let store = |out: &mut [i8], r: [int32x4_t; 4]| {
        let Some(out) = out.get_mut(..16) else {
            return;
        };
        // SAFETY: values already in [−127, 127], so the saturating narrows are exact; `out`
        // holds 16 bytes (checked above).
        unsafe {
            let lo = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
            let hi = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
            vst1q_s8(
                out.as_mut_ptr(),
                vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)),
            );
        }
    };
    // SAFETY: forwarded (caller).
    unsafe { quantize_rows_to((x, n, k), q, s, (127, |v| v as i8), store) }
}

/// [`super::scalar::quantize_rows16`] with NEON, value for value the same.
///
/// # Safety
/// As for [`quantize_rows`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn quantize_rows16(x: &[f32], n: usize, k: usize, q: &mut [i16], s: &mut [f32]) {
    let a = super::operand::act16_max(k);
    let store = |out: &mut [i16], r: [int32x4_t; 4]| {
        let Some(out) = out.get_mut(..16) else {
            return;
        };
        // SAFETY: values already in [−a, a] ⊂ i16, so the saturating narrows are exact; `out`
        // holds 16 values (checked above).
        unsafe {
            vst1q_s16(
                out.as_mut_ptr(),
                vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1])),
            );
            vst1q_s16(
                out.as_mut_ptr().add(8),
                vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3])),
            );
        }
    };
    // SAFETY: forwarded (caller).
    unsafe { quantize_rows_to((x, n, k), q, s, (a, |v| v as i16), store) }
}
