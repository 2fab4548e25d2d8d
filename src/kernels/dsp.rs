//! 32-bit Arm int8 kernel: `sxtb16` + `smlad`, 4 bytes per step. The Cortex-M4/M7 DSP
//! extension, and ARMv6/ARMv7-A's own instructions: every core a 32-bit Raspberry Pi OS runs
//! on, where stable Rust has no NEON (its 32-bit intrinsics and `target_feature` are
//! unstable) and this is the int8 path (two multiply-adds per `smlad`, against one per `mla`
//! in the scalar loop).
//!
//! A 32-bit word of four int8 `[b0 b1 b2 b3]` is split into two words of two sign-extended i16:
//! `sxtb16 w` = `[b0, b2]`, `sxtb16 w, ror #8` = `[b1, b3]`; `smlad acc, x, w` then adds both
//! 16×16 products to an i32 accumulator. Tiles are 2 weight rows × 2 activation rows
//! (12 of the 13 free core registers). f32 / f16 use the scalar kernels (the M4F FPU runs them).
//!
//! int16 activations (`gemm_i8a16`): the weights split as above; the quantiser has stored
//! each group of four activations as `[x0, x2, x1, x3]` ([`interleave16`]), so two plain word
//! loads give the `[x0, x2]` and `[x1, x3]` halves the two `smlad` take: no repacking in the
//! loop, one instruction fewer per step than int8 activations need.
//!
//! The packing scheme is generic over [`Mac`]: `Smlad` issues the instructions (only where
//! `build.rs`'s `dsp` cfg holds: `thumbv7em-none-eabihf`, the only Cortex-M target whose DSP
//! support is visible to stable `cfg`, and 32-bit Arm Linux with hard float), and [`Emulated`]
//! is the same arithmetic in portable Rust so that the host test suite checks the scheme
//! against scalar ([`emulated_gemm_i8`]). The instructions themselves run on target: the
//! firmware's on-target tests under QEMU (Cortex-M4/M7), and the armv7 suite under qemu-arm
//! (`cross/test-armv7.sh`, where `tests/kernels_props.rs` checks this path against scalar).

use super::operand::{Gemm, Int16Gemm, Int8Gemm, Out, QRows};
use super::tiles::{finish_int_tile, for_each_tile, Tiles};
use core::marker::PhantomData;

/// The two DSP primitives the kernel is built from.
pub trait Mac {
    /// `sxtb16 v` (`ror = false`) or `sxtb16 v, ror #8` (`ror = true`): bytes 0 and 2 (or 1
    /// and 3) of `v`, sign-extended to two i16 halves.
    fn sxtb16<const ROR: bool>(v: u32) -> u32;
    /// `smlad`: `acc + lo(a)·lo(b) + hi(a)·hi(b)` over signed 16-bit halves (wrapping).
    fn smlad(a: u32, b: u32, acc: i32) -> i32;
}

/// Portable emulation of [`Mac`], bit-exact with the instructions.
pub struct Emulated;

impl Mac for Emulated {
    #[inline(always)]
    fn sxtb16<const ROR: bool>(v: u32) -> u32 {
        let v = if ROR { v.rotate_right(8) } else { v };
        let lo = v as u8 as i8 as i16 as u16 as u32;
        let hi = (v >> 16) as u8 as i8 as i16 as u16 as u32;
        lo | (hi << 16)
    }
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let p0 = (a as u16 as i16 as i32) * (b as u16 as i16 as i32);
        let p1 = ((a >> 16) as u16 as i16 as i32) * ((b >> 16) as u16 as i16 as i32);
        acc.wrapping_add(p0).wrapping_add(p1)
    }
}

/// The real instructions (`#[cfg(dsp)]` targets).
#[cfg(dsp)]
pub struct Smlad;

#[cfg(dsp)]
impl Mac for Smlad {
    #[inline(always)]
    fn sxtb16<const ROR: bool>(v: u32) -> u32 {
        let r: u32;
        // SAFETY: a register-only instruction present on every `dsp` target (ARMv6+, v7E-M).
        unsafe {
            if ROR {
                core::arch::asm!("sxtb16 {r}, {v}, ror #8", r = lateout(reg) r, v = in(reg) v,
                    options(pure, nomem, nostack, preserves_flags));
            } else {
                core::arch::asm!("sxtb16 {r}, {v}", r = lateout(reg) r, v = in(reg) v,
                    options(pure, nomem, nostack, preserves_flags));
            }
        }
        r
    }
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: a register-only instruction present on every `dsp` target (it may set the Q
        // flag, which nothing reads).
        unsafe {
            core::arch::asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, acc = in(reg) acc, options(pure, nomem, nostack));
        }
        r
    }
}

/// The operands of an emulated product into `y[n, m]`, or `None` if a slice is too short.
fn emulated_operands<'a, X>(
    x: QRows<'a, X>,
    n: usize,
    k: usize,
    w: QRows<'a>,
    m: usize,
    y: &mut [f32],
) -> Option<Gemm<QRows<'a, X>, QRows<'a>>> {
    let short = |q: usize, s: usize, rows: usize| q < rows * k || s < rows;
    if short(x.q.len(), x.scales.len(), n) || short(w.q.len(), w.scales.len(), m) || y.len() < n * m
    {
        return None;
    }
    let out = Out {
        ptr: y.as_mut_ptr(),
        ld: m,
    };
    Some(Gemm { x, w, n, k, m, out })
}

/// [`super::scalar::gemm_i8`] through the DSP packing scheme of [`Emulated`], into `y[n, m]`.
/// Returns without writing if a slice is too short.
pub fn emulated_gemm_i8(x: QRows<'_>, n: usize, k: usize, w: QRows<'_>, m: usize, y: &mut [f32]) {
    if let Some(g) = emulated_operands(x, n, k, w, m, y) {
        // SAFETY: lengths checked; `out` addresses y, borrowed mutably here.
        unsafe { gemm_i8::<Emulated>(g) }
    }
}

/// Reorders each row's groups of four int16 activations `[x0, x1, x2, x3]` (all but the last
/// `k % 4` values) to `[x0, x2, x1, x3]`: the layout `gemm_i8a16` reads, written by the DSP
/// path's quantiser. Rows beyond `q`'s length are left alone.
pub fn interleave16(q: &mut [i16], n: usize, k: usize) {
    for row in q.chunks_exact_mut(k.max(1)).take(n) {
        for g in row.chunks_exact_mut(4) {
            g.swap(1, 2);
        }
    }
}

/// [`super::scalar::gemm_i8`] with int16 activations through `gemm_i8a16`'s scheme on
/// [`Emulated`], into `y[n, m]`; `x` as [`interleave16`] leaves it. Returns without writing if
/// a slice is too short.
pub fn emulated_gemm_i8a16(
    x: QRows<'_, i16>,
    n: usize,
    k: usize,
    w: QRows<'_>,
    m: usize,
    y: &mut [f32],
) {
    if let Some(g) = emulated_operands(x, n, k, w, m, y) {
        // SAFETY: lengths checked; `out` addresses y, borrowed mutably here.
        unsafe { gemm_i8a16::<Emulated>(g) }
    }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)`, int16 activations, with `M`'s instructions.
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
pub(crate) unsafe fn gemm_i8a16<M: Mac>(g: Int16Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 2, 2>(&I8A16Tiles::<M>(g, PhantomData), g.m, g.n) }
}

/// The 2 × 2 int8 × int16 tile, 4 values per step.
struct I8A16Tiles<'a, M>(Int16Gemm<'a>, PhantomData<M>);

impl<M: Mac> Tiles for I8A16Tiles<'_, M> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        let k4 = k & !3;
        // SAFETY (whole function): rows r..r+R of `w.q` and i..i+N of `x.q` exist (callers),
        // each `k` values; every word read covers values c..c+4 <= k4 <= k (unaligned reads are
        // fine on v7-M and ARMv6+ Linux).
        let wp: [*const i8; R] = core::array::from_fn(|j| unsafe { w.q.as_ptr().add((r + j) * k) });
        let xp: [*const i16; N] =
            core::array::from_fn(|t| unsafe { x.q.as_ptr().add((i + t) * k) });
        let mut acc = [[0i32; N]; R];
        let mut c = 0;
        while c < k4 {
            let w: [u32; R] =
                core::array::from_fn(|j| unsafe { (wp[j].add(c) as *const u32).read_unaligned() });
            let (w02, w13): ([u32; R], [u32; R]) = (
                core::array::from_fn(|j| M::sxtb16::<false>(w[j])),
                core::array::from_fn(|j| M::sxtb16::<true>(w[j])),
            );
            for t in 0..N {
                // the group is stored [x0, x2, x1, x3] (interleave16)
                let (x02, x13) = unsafe {
                    let p = xp[t].add(c) as *const u32;
                    (p.read_unaligned(), p.add(1).read_unaligned())
                };
                for j in 0..R {
                    acc[j][t] = M::smlad(x13, w13[j], M::smlad(x02, w02[j], acc[j][t]));
                }
            }
            c += 4;
        }
        // SAFETY: forwarded from the callers.
        unsafe { finish_int_tile(acc, xp, wp, (r, i), k4, k, (x.scales, w.scales), out) }
    }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)` with `M`'s instructions.
///
/// # Safety
/// `g` keeps the kernel contract ([`super::operand`]).
pub(crate) unsafe fn gemm_i8<M: Mac>(g: Int8Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 2, 2>(&I8Tiles::<M>(g, PhantomData), g.m, g.n) }
}

/// The 2 × 2 tile, 4 bytes per step.
struct I8Tiles<'a, M>(Int8Gemm<'a>, PhantomData<M>);

impl<M: Mac> Tiles for I8Tiles<'_, M> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        let (xq, xs, wq, ws) = (x.q, x.scales, w.q, w.scales);
        let k4 = k & !3;
        // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers), each `k`
        // bytes; every word read covers c..c+4 <= k4 <= k (unaligned reads are fine on v7-M and ARMv6+ Linux).
        let wp: [*const i8; R] = core::array::from_fn(|j| unsafe { wq.as_ptr().add((r + j) * k) });
        let xp: [*const i8; N] = core::array::from_fn(|t| unsafe { xq.as_ptr().add((i + t) * k) });
        let mut acc = [[0i32; N]; R];
        let mut c = 0;
        while c < k4 {
            let w: [u32; R] =
                core::array::from_fn(|j| unsafe { (wp[j].add(c) as *const u32).read_unaligned() });
            let x: [u32; N] =
                core::array::from_fn(|t| unsafe { (xp[t].add(c) as *const u32).read_unaligned() });
            let (w02, w13): ([u32; R], [u32; R]) = (
                core::array::from_fn(|j| M::sxtb16::<false>(w[j])),
                core::array::from_fn(|j| M::sxtb16::<true>(w[j])),
            );
            for t in 0..N {
                let (x02, x13) = (M::sxtb16::<false>(x[t]), M::sxtb16::<true>(x[t]));
                for j in 0..R {
                    acc[j][t] = M::smlad(x13, w13[j], M::smlad(x02, w02[j], acc[j][t]));
                }
            }
            c += 4;
        }
        // SAFETY: forwarded from the callers.
        unsafe { finish_int_tile(acc, xp, wp, (r, i), k4, k, (xs, ws), out) }
    }
}
