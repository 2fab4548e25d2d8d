//! x86_64 kernels: AVX2 + FMA + F16C. Only called after run-time detection ([`super::Isa::Avx2`]).
//!
//! int8 (`gemm_i8`): a tile of 2 weight rows × up to 4 activation rows, 32 bytes per step; 5 to
//! 8 activation rows (a decode step's beams) run as 1 weight row × all of them, so the weights
//! are still streamed once.
//! Without VNNI the 8-bit product is `vpmaddubsw`, which wants one unsigned operand, so each
//! step takes `|w|` (unsigned) and `x` with `w`'s sign (`vpsignb`). A pair sum is then at most
//! `2 · 128 · 127 = 32512 < 2¹⁵` — exact, even for a `-128` weight, since quantised activations
//! lie in `[-127, 127]` — and `vpmaddwd` by ones widens it to i32. The accumulators are exactly
//! scalar's, and so is the dequantisation. Weights are streamed once; the activation rows
//! (`n · k` bytes) stay in L1.
//!
//! int8 weights × int16 activations (`gemm_i8a16`; with `vpdpwssd` in [`super::avx_vnni`]): the
//! same tiles, 16 values per step: the weights widened with `vpmovsxbw`, then `vpmaddwd` (pair
//! sums ≤ 2 · 128 · 32767 < 2³¹).
//!
//! f32 / f16 (`gemm_f32`, `gemm_f16`): 2 weight rows × up to 4 activation rows, 8 lanes, FMA;
//! f16 weights are widened with `vcvtph2ps`.

use super::operand::{FloatGemm, Gemm, Int16Gemm, Int8Gemm};
use super::simd::{store_lanes, Cols};
use super::tiles::{finish_int_tile, for_each_tile, Tiles};
use core::arch::x86_64::*;
use core::marker::PhantomData;
use half::f16;

/// Activation rows per 2-weight-row int8 tile.
const XR: usize = 4;
/// Up to this many activation rows, an int8 product with more than [`XR`] rows runs as one
/// single-weight-row tile over all of them (one pass over the weights).
const XR1_MAX: usize = 8;
/// Activation rows per float tile (2 × 6 accumulators + 2 weight vectors fit in 16 registers,
/// and a decode step's 5 beams form one tile).
const XF: usize = 6;
/// How far ahead (bytes) [`prefetch_weights`] fetches a weight row.
const PREFETCH: usize = 16384;
/// How far ahead (bytes) the int8 × int8 tile ([`I8Tiles`]) fetches its weight rows, into L1.
const PREFETCH_I8: usize = 4096;

/// Fetches the weight bytes [`PREFETCH`] ahead of `p` into L2 (`prefetcht1`): a tile's weights
/// are streamed once, and a decode step's (21 MB of int8 at COCO size) come from L3 or DRAM.
///
/// Measured on AMD Zen 4 (`cargo bench --bench kernels`, one decode step's 34 linears, five
/// interleaved runs, 2026-12-02): against `prefetcht0` 4 KB ahead, int8 AVX-512 1.95 → 0.82 ms,
/// f32 8.3 → 3.9 ms, f16 4.3 → 2.9 ms at one thread; 8 and 32 KB and `prefetcht2` were close
/// behind, 2 KB was slower. The AVX2 int8 tile is bound by its multiplies there, and every
/// change measured 5–10 % slower: it keeps `prefetcht0`, [`PREFETCH_I8`] ahead. A prefetch
/// never faults, so running past the end of a matrix is harmless.
#[inline(always)]
pub(super) fn prefetch_weights<T>(p: *const T) {
    // SAFETY: a prefetch is a hint that reads nothing architecturally and never faults, whatever
    // the address (SSE, part of the x86_64 baseline).
    unsafe { _mm_prefetch::<_MM_HINT_T1>((p as *const i8).wrapping_add(PREFETCH)) }
}

/// Sums of four i32x8 vectors, as the lanes `[Σa, Σb, Σc, Σd]`.
#[inline(always)]
pub(super) unsafe fn hsum4_epi32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    // SAFETY: inlined only into the `#[target_feature]` entry points, which run after detection.
    unsafe {
        let ab = _mm256_hadd_epi32(a, b);
        let cd = _mm256_hadd_epi32(c, d);
        let abcd = _mm256_hadd_epi32(ab, cd);
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256::<1>(abcd),
        )
    }
}

/// Sums of four i32x8 vectors, as `[Σa, Σb, Σc, Σd]`.
#[inline(always)]
unsafe fn hsum4_i32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [i32; 4] {
    // SAFETY: inlined only into the `#[target_feature]` entry points below, which run after
    // detection; pointer accesses as stated below.
    unsafe {
        let s = hsum4_epi32(a, b, c, d);
        let mut o = [0i32; 4];
        // SAFETY: `o` is 16 writable bytes.
        _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, s);
        o
    }
}

/// Sums of four f32x8 vectors, as `[Σa, Σb, Σc, Σd]`.
#[inline(always)]
unsafe fn hsum4_f32(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
    // SAFETY: inlined only into the `#[target_feature]` entry points below, which run after
    // detection; pointer accesses as stated below.
    unsafe {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        let s = _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        );
        let mut o = [0f32; 4];
        // SAFETY: `o` is 16 writable bytes.
        _mm_storeu_ps(o.as_mut_ptr(), s);
        o
    }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)`; see the module doc.
///
/// # Safety
/// AVX2 is available; `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_i8(g: Int8Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { int_tiles(&I8Tiles(g), g.m, g.n) }
}

/// The int8 tile: `R` weight rows × `N` activation rows, 32 bytes per step.
struct I8Tiles<'a>(Int8Gemm<'a>);

impl Tiles for I8Tiles<'_> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        let (xq, xs, wq, ws) = (x.q, x.scales, w.q, w.scales);
        // SAFETY: inlined only into `gemm_i8` (`#[target_feature]`), which runs after
        // detection; pointer accesses as stated below.
        unsafe {
            let k32 = k & !31;
            // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers), each
            // `k` bytes, and every load below reads 32 bytes at an offset c + 32 <= k32 <= k.
            let wp: [*const i8; R] = core::array::from_fn(|j| wq.as_ptr().add((r + j) * k));
            let xp: [*const i8; N] = core::array::from_fn(|t| xq.as_ptr().add((i + t) * k));
            let ones = _mm256_set1_epi16(1);
            let mut acc = [[_mm256_setzero_si256(); N]; R];
            let mut c = 0;
            while c < k32 {
                // Weights are streamed once: fetch the ones a few tiles ahead (a prefetch never
                // faults, so running past the end of the matrix is harmless).
                for p in wp {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(c + PREFETCH_I8));
                }
                let w: [__m256i; R] =
                    core::array::from_fn(|j| _mm256_loadu_si256(wp[j].add(c) as *const __m256i));
                let aw: [__m256i; R] = core::array::from_fn(|j| _mm256_abs_epi8(w[j]));
                for t in 0..N {
                    let xv = _mm256_loadu_si256(xp[t].add(c) as *const __m256i);
                    for j in 0..R {
                        let p = _mm256_maddubs_epi16(aw[j], _mm256_sign_epi8(xv, w[j]));
                        acc[j][t] = _mm256_add_epi32(acc[j][t], _mm256_madd_epi16(p, ones));
                    }
                }
                c += 32;
            }
            finish_int_tile(lane_sums(acc), xp, wp, (r, i), k32, k, (xs, ws), out);
        }
    }
}

/// Each accumulator's eight lanes summed: `sums[j][t]` of weight row `j`, activation row `t`.
/// (Plain loops, no closures: a closure would not inherit the caller's target features.)
#[inline(always)]
unsafe fn lane_sums<const R: usize, const N: usize>(acc: [[__m256i; N]; R]) -> [[i32; N]; R] {
    let mut sums = [[0i32; N]; R];
    // SAFETY: inlined only into the AVX2 `#[target_feature]` entry points (register-only).
    unsafe {
        let z = _mm256_setzero_si256();
        for j in 0..R {
            let mut a = [z; 8];
            a[..N].copy_from_slice(&acc[j]);
            let (lo, hi) = (
                hsum4_i32(a[0], a[1], a[2], a[3]),
                hsum4_i32(a[4], a[5], a[6], a[7]),
            );
            let s = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
            sums[j].copy_from_slice(&s[..N]);
        }
    }
    sums
}

/// Runs an int8-weight GEMM's tiles: 2 weight rows × 4 activation rows, or for 5 to 8
/// activation rows (a decode step's beams) one weight row against all of them, a single pass
/// over the weights (n accumulators + the weight and activation vectors fit in 16 registers;
/// a 2 × n tile would not).
///
/// # Safety
/// Inlined only into an AVX2 `#[target_feature]` entry point; `t`'s operands keep the kernel
/// contract for `m` weight rows and `n` activation rows.
#[inline(always)]
pub(super) unsafe fn int_tiles<T: Tiles>(t: &T, m: usize, n: usize) {
    // SAFETY (both): forwarded.
    if (XR + 1..=XR1_MAX).contains(&n) {
        unsafe { for_each_tile::<_, 1, XR1_MAX>(t, m, n) }
    } else {
        unsafe { for_each_tile::<_, 2, XR>(t, m, n) }
    }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)` with int16 activations; see the module doc.
///
/// # Safety
/// AVX2 is available; `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_i8a16(g: Int16Gemm<'_>) {
    // SAFETY: forwarded.
    unsafe { int_tiles(&I8A16Tiles::<MaddAdd>(g, PhantomData), g.m, g.n) }
}

/// How an int8 × int16 tile adds eight lanes of pair products `Σ x·w` to its accumulator.
pub(super) trait PairMac {
    /// `acc + [x₂ᵢ·w₂ᵢ + x₂ᵢ₊₁·w₂ᵢ₊₁]` over the sixteen i16 lanes of `x` and `w`.
    ///
    /// # Safety
    /// The instructions the implementation uses are enabled where it is inlined.
    unsafe fn mac(acc: __m256i, x: __m256i, w: __m256i) -> __m256i;
}

/// AVX2: `vpmaddwd` then `vpaddd`.
pub(super) struct MaddAdd;

impl PairMac for MaddAdd {
    #[inline(always)]
    unsafe fn mac(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: register-only; inlined into an AVX2 entry point (the trait's contract).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(x, w)) }
    }
}

/// The int8 × int16 tile: `R` weight rows × `N` activation rows, 16 values per step, products
/// added by `M` (shared with [`super::avx_vnni::gemm_i8a16`]).
pub(super) struct I8A16Tiles<'a, M>(pub Int16Gemm<'a>, pub PhantomData<M>);

impl<M: PairMac> Tiles for I8A16Tiles<'_, M> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        // SAFETY: inlined only into `gemm_i8a16` (`#[target_feature]`), which runs after
        // detection. Rows r..r+R of `w.q` and i..i+N of `x.q` exist (callers), each `k` values;
        // every load reads 16 values at an offset c + 16 <= k16 <= k.
        unsafe {
            let k16 = k & !15;
            let wp: [*const i8; R] = core::array::from_fn(|j| w.q.as_ptr().add((r + j) * k));
            let xp: [*const i16; N] = core::array::from_fn(|t| x.q.as_ptr().add((i + t) * k));
            let mut acc = [[_mm256_setzero_si256(); N]; R];
            let mut c = 0;
            while c < k16 {
                for p in wp {
                    prefetch_weights(p.wrapping_add(c));
                }
                let w16: [__m256i; R] = core::array::from_fn(|j| {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(wp[j].add(c) as *const __m128i))
                });
                for t in 0..N {
                    let xv = _mm256_loadu_si256(xp[t].add(c) as *const __m256i);
                    for j in 0..R {
                        acc[j][t] = M::mac(acc[j][t], xv, w16[j]);
                    }
                }
                c += 16;
            }
            let sums = lane_sums(acc);
            finish_int_tile(sums, xp, wp, (r, i), k16, k, (x.scales, w.scales), out);
        }
    }
}

/// A weight element type of the float tiles: f32, or f16 widened with F16C.
trait Load8: Copy + Into<f32> {
    /// Eight elements from `p`, as f32 lanes.
    ///
    /// # Safety
    /// Eight elements are readable at `p`; AVX2 and F16C are enabled in the caller.
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Load8 for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        // SAFETY: forwarded to the caller.
        unsafe { _mm256_loadu_ps(p) }
    }
}

impl Load8 for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        // SAFETY: forwarded to the caller (16 bytes of f16 bit patterns).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
}

/// `y = x[n, k] · w[m, k]ᵀ` in f32 with FMA.
///
/// # Safety
/// AVX2 and FMA are available; `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_f32(g: FloatGemm<'_, f32>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 2, XF>(&FloatTiles(g), g.m, g.n) }
}

/// `y = x[n, k] · w[m, k]ᵀ` with f16 weights widened to f32, FMA.
///
/// # Safety
/// As for [`gemm_f32`], with F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_f16(g: FloatGemm<'_, f16>) {
    // SAFETY: forwarded.
    unsafe { for_each_tile::<_, 2, XF>(&FloatTiles(g), g.m, g.n) }
}

/// The float tile: `R` weight rows × `N` activation rows, 8 lanes per step.
struct FloatTiles<'a, W>(FloatGemm<'a, W>);

impl<W: Load8> Tiles for FloatTiles<'_, W> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize) {
        let Gemm { x, w, k, out, .. } = self.0;
        // SAFETY: inlined only into `gemm_f32` / `gemm_f16` (`#[target_feature]`), which run
        // after detection; pointer accesses as stated below.
        unsafe {
            let k8 = k & !7;
            // SAFETY (whole function): rows r..r+R of `w` and i..i+N of `x` exist (callers),
            // each `k` elements, and every load reads 8 elements at an offset c + 8 <= k8 <= k.
            let wp: [*const W; R] = core::array::from_fn(|j| w.as_ptr().add((r + j) * k));
            let xp: [*const f32; N] = core::array::from_fn(|t| x.as_ptr().add((i + t) * k));
            let mut acc = [[_mm256_setzero_ps(); N]; R];
            let mut c = 0;
            while c < k8 {
                for p in wp {
                    prefetch_weights(p.wrapping_add(c));
                }
                let wv: [__m256; R] = core::array::from_fn(|j| W::load8(wp[j].add(c)));
                for t in 0..N {
                    let xv = _mm256_loadu_ps(xp[t].add(c));
                    for j in 0..R {
                        acc[j][t] = _mm256_fmadd_ps(xv, wv[j], acc[j][t]);
                    }
                }
                c += 8;
            }
            let z = _mm256_setzero_ps();
            for j in 0..R {
                let mut a = [z; 8];
                a[..N].copy_from_slice(&acc[j]);
                let (lo, hi) = (
                    hsum4_f32(a[0], a[1], a[2], a[3]),
                    hsum4_f32(a[4], a[5], a[6], a[7]),
                );
                let mut s = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
                for (t, st) in s.iter_mut().enumerate().take(N) {
                    for c in k8..k {
                        // SAFETY: c < k.
                        *st += *xp[t].add(c) * (*wp[j].add(c)).into();
                    }
                    // SAFETY: i + t < n, r + j < m (callers).
                    out.set(i + t, r + j, *st);
                }
            }
        }
    }
}

/// The absolute maximum of a row as [`super::scalar::abs_max`] computes it: the largest
/// `bits & 0x7fff_ffff` (a NaN or ∞ comes out non-finite); an integer maximum, so
/// order-independent and exactly scalar's.
#[inline(always)]
unsafe fn row_absmax(xr: &[f32]) -> f32 {
    // SAFETY: inlined only into the `#[target_feature]` quantisers; loads as stated below.
    unsafe {
        let (mask, xp, k) = (_mm256_set1_epi32(0x7fff_ffff), xr.as_ptr(), xr.len());
        let mut vmax = _mm256_setzero_si256();
        let mut c = 0;
        while c + 8 <= k {
            // SAFETY: c + 8 <= k = xr.len().
            let x = _mm256_castps_si256(_mm256_loadu_ps(xp.add(c)));
            vmax = _mm256_max_epi32(_mm256_and_si256(x, mask), vmax);
            c += 8;
        }
        let mut lanes = [0u32; 8];
        // SAFETY: `lanes` is 32 writable bytes.
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), vmax);
        let m = lanes.iter().fold(0u32, |a, &v| a.max(v));
        f32::from_bits(m.max(super::scalar::abs_max(&xr[c..]).to_bits()))
    }
}

/// `clamp(roundf(v · inv), −a, a)` of eight lanes as i32 (NaN → 0), the integers of
/// [`super::scalar::quantize_value`] (its identity with the sign kept): `t + (0.5 − 2⁻²⁵
/// with t's sign)`, clamped to `±a` as a float (so an infinite `t` saturates to the right end:
/// `cvttps2dq` would give `i32::MIN` for both), then truncated.
#[inline(always)]
unsafe fn round8(v: __m256, inv: __m256, a: __m256) -> __m256i {
    // SAFETY: inlined only into the `#[target_feature]` quantisers (register-only).
    unsafe {
        let (sign, below_half) = (
            _mm256_set1_ps(-0.0),
            _mm256_castsi256_ps(_mm256_set1_epi32(0x3eff_ffff)),
        );
        let t = _mm256_mul_ps(v, inv);
        let r = _mm256_add_ps(t, _mm256_or_ps(_mm256_and_ps(t, sign), below_half));
        let rv = _mm256_min_ps(_mm256_max_ps(r, _mm256_xor_ps(a, sign)), a);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t);
        _mm256_cvttps_epi32(_mm256_andnot_ps(nan, rv))
    }
}

/// [`super::scalar::quantize_rows`], vectorised, byte for byte the same.
///
/// # Safety
/// AVX2 is available; `x` and `q` hold `n * k` elements, `scales` `n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_rows(
    x: &[f32],
    n: usize,
    k: usize,
    q: &mut [i8],
    scales: &mut [f32],
) {
    // SAFETY: AVX2 (this function's feature).
    let absmax = |xr: &[f32]| unsafe { row_absmax(xr) };
    let vector = |xr: &[f32], qr: &mut [i8], inv: f32| {
        let k32 = xr.len().min(qr.len()) & !31;
        let (xp, qp) = (xr.as_ptr(), qr.as_mut_ptr());
        // SAFETY: AVX2; c + 32 <= k32 <= len of both rows, for all four loads and the store.
        unsafe {
            let (vinv, a) = (_mm256_set1_ps(inv), _mm256_set1_ps(127.0));
            let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let mut c = 0;
            while c < k32 {
                let ab = _mm256_packs_epi32(
                    round8(_mm256_loadu_ps(xp.add(c)), vinv, a),
                    round8(_mm256_loadu_ps(xp.add(c + 8)), vinv, a),
                );
                let cd = _mm256_packs_epi32(
                    round8(_mm256_loadu_ps(xp.add(c + 16)), vinv, a),
                    round8(_mm256_loadu_ps(xp.add(c + 24)), vinv, a),
                );
                let v = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm);
                _mm256_storeu_si256(qp.add(c) as *mut __m256i, v);
                c += 32;
            }
        }
        k32
    };
    let to = |v: i32| v as i8;
    super::scalar::quantize_rows_by((x, n, k), q, scales, (127, to), absmax, vector);
}

/// [`super::scalar::quantize_rows16`], vectorised, value for value the same.
///
/// # Safety
/// AVX2 is available; `x` and `q` hold `n * k` elements, `scales` `n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_rows16(
    x: &[f32],
    n: usize,
    k: usize,
    q: &mut [i16],
    scales: &mut [f32],
) {
    let a16 = super::operand::act16_max(k);
    // SAFETY: AVX2 (this function's feature).
    let absmax = |xr: &[f32]| unsafe { row_absmax(xr) };
    let vector = |xr: &[f32], qr: &mut [i16], inv: f32| {
        let k16 = xr.len().min(qr.len()) & !15;
        let (xp, qp) = (xr.as_ptr(), qr.as_mut_ptr());
        // SAFETY: AVX2; c + 16 <= k16 <= len of both rows, for both loads and the store.
        unsafe {
            let (vinv, a) = (_mm256_set1_ps(inv), _mm256_set1_ps(a16 as f32));
            let mut c = 0;
            while c < k16 {
                let lo = round8(_mm256_loadu_ps(xp.add(c)), vinv, a);
                let hi = round8(_mm256_loadu_ps(xp.add(c + 8)), vinv, a);
                // packs interleaves the 128-bit halves: [lo0..3 hi0..3 lo4..7 hi4..7]
                let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(lo, hi));
                _mm256_storeu_si256(qp.add(c) as *mut __m256i, v);
                c += 16;
            }
        }
        k16
    };
    let to = |v: i32| v as i16;
    super::scalar::quantize_rows_by((x, n, k), q, scales, (a16, to), absmax, vector);
}

/// `[a_k + a_{k+4}]`-style half sums of two keys' eight-lane accumulators: lanes `0..4` are
/// `a[l] + a[l + 4]` of `a`, lanes `4..8` those of `b`.
#[inline(always)]
unsafe fn fold_halves(a: __m256, b: __m256) -> __m256 {
    // SAFETY: inlined only into `dot8_f32` (`#[target_feature]`), which runs after detection.
    unsafe {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    }
}

/// `out[k] = super::dot_f32(q, keys[k])` for eight keys, bit for bit: each key's eight lane
/// sums advance over the chunks in order (`acc + q·k`, no FMA), and the eight reductions
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))` are done at once by a transpose
/// (`vperm2f128` halves, then two rounds of `vhaddps`), then the tail as `dot_f32` adds it.
///
/// # Safety
/// AVX2 is available; every `keys[k]` holds at least `q.len()` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot8_f32(q: &[f32], keys: &[&[f32]; 8]) -> [f32; 8] {
    let full = q.len() & !7;
    let kp: [*const f32; 8] = core::array::from_fn(|k| keys[k].as_ptr());
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 <= full <= q.len() <= keys[k].len() (caller).
        unsafe {
            let qv = _mm256_loadu_ps(q.as_ptr().add(c));
            for k in 0..8 {
                acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(qv, _mm256_loadu_ps(kp[k].add(c))));
            }
        }
        c += 8;
    }
    // SAFETY: register operations only (AVX2 available); `out` is 32 writable bytes.
    let mut out = unsafe {
        // keys k and k + 4 share a register: [b(k) | b(k + 4)], b = the four half sums
        let h1 = _mm256_hadd_ps(fold_halves(acc[0], acc[4]), fold_halves(acc[1], acc[5]));
        let h2 = _mm256_hadd_ps(fold_halves(acc[2], acc[6]), fold_halves(acc[3], acc[7]));
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_hadd_ps(h1, h2));
        out
    };
    super::simd::add_tails(q, keys, full, &mut out);
    out
}

/// [`super::Kernels::dot_columns`] eight columns per block: `out[j] = super::dot_f32(q,
/// column j of kt)`, bit for bit. One ymm per partial sum (`acc[c mod 8] + q[c]·kt[c, j..j+8]`,
/// no FMA), then `dot_f32`'s tree and tail lane-wise; blocks as
/// [`super::simd::column_blocks`] places them.
///
/// # Safety
/// AVX2 is available; `k.kt` holds `q.len()` rows `k.stride` apart of at least `k.width ≥ 8`
/// values each; `k.n ≤ k.width`; `out` holds at least `k.n` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_columns_f32(q: &[f32], k: Cols<'_>, out: &mut [f32]) {
    let (full, stride) = (q.len() & !7, k.stride);
    for (j, lanes) in super::simd::column_blocks(k.n, k.width, 8) {
        // SAFETY: j + 8 <= width, so every load `kt[c·stride + j..][..8]` (c < q.len()) is in
        // bounds (caller); `c + l < q.len()`.
        let s = unsafe {
            let p = k.kt.as_ptr().add(j);
            let mut a = [_mm256_setzero_ps(); 8];
            let mut c = 0;
            while c < full {
                for (l, a) in a.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*q.get_unchecked(c + l));
                    let k = _mm256_loadu_ps(p.add((c + l) * stride));
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(x, k));
                }
                c += 8;
            }
            let mut s = _mm256_add_ps(
                _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[1], a[5])),
                _mm256_add_ps(_mm256_add_ps(a[2], a[6]), _mm256_add_ps(a[3], a[7])),
            );
            for (c, &x) in q.iter().enumerate().skip(full) {
                let k = _mm256_loadu_ps(p.add(c * stride));
                s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_set1_ps(x), k));
            }
            s
        };
        // SAFETY: the store writes the 8 floats of the array it is given (AVX is available).
        store_lanes(out, j, lanes, |b: &mut [f32; 8]| unsafe {
            _mm256_storeu_ps(b.as_mut_ptr(), s)
        });
    }
}
