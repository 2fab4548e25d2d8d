//! x86_64 int8 GEMM with AVX-512 VNNI (`vpdpbusd` on zmm, 64 bytes per step). Only called
//! after run-time detection ([`super::Isa::Avx512`]); the float GEMMs of that path are
//! [`super::avx2`]'s.
//!
//! The arithmetic is [`super::avx_vnni`]'s, twice as wide: the unsigned operand of `vpdpbusd`
//! is the weight offset by 128 (`w ^ 0x80 = w + 128 ∈ [0, 255]`, exact for every int8), the
//! signed one the quantised activation as it is, and
//!
//! ```text
//! Σ (w + 128)·x = Σ w·x + 128·Σ x
//! ```
//!
//! so `128·Σ x`, a property of the activation row, is computed once per call (one `vpdpbusd`
//! of each activation row against `0x80` bytes) and subtracted from every accumulator of that
//! row. The last `k % 64` bytes are one more step with masked loads (`vmovdqu8` with a zeroing
//! mask; the masked-off bytes are neither read nor faulted on, and load as 0, so they add
//! `(0 + 128)·0 = 0` to both the products and the correction): there is no scalar tail. The
//! sums wrap modulo 2³² exactly as the integer sums they stand for, so the accumulators are
//! exactly scalar's, and with the same dequantisation (`cvtdq2ps`, then `× xs`, then `× ws`,
//! scalar's order) the outputs are bit-identical to [`super::scalar::gemm_i8`]'s. Nothing
//! relies on activations avoiding `-128`.
//!
//! Tiles (weight rows × activation rows): 32 zmm registers hold up to 24 accumulators next to
//! the weight vectors, so every row count up to 8 is one tile and the weights are streamed once
//! — 4 × 1 to 4 × 6 (a decode step's 5 beams: 4 × 5), 3 × 7, 3 × 8. More rows run as 4 × 6
//! tiles (and a narrower last one) over blocks of 256 rows (`BLOCK`); the leftover weight rows
//! (fewer than a tile's) form one shorter tile (`super::tiles`); the blocks and their
//! corrections are [`super::avx_vnni`]'s `by_blocks`. The epilogue reduces four accumulators at
//! a time with 512-bit unpacks and adds (`hsum4_epi32_512`) and dequantises four outputs per
//! instruction.
//!
//! The path's activation quantiser is here too (`quantize_rows`, `quantize_rows16`):
//! [`super::avx2`]'s at 16 lanes, byte for byte [`super::scalar`]'s.

use super::avx2::prefetch_weights;
use super::avx_vnni::{by_blocks, Block};
use super::operand::{Gemm, Int8Gemm};
use super::simd::{store_lanes, Cols};
use super::tiles::{for_each_tile, Tiles};
use core::arch::x86_64::*;

/// Weight rows per tile when there are more than 8 activation rows.
const WR: usize = 4;
/// Activation rows per tile when there are more than 8.
const XR: usize = 6;

/// The zeroing mask of the last, partial 64-byte step of a row of `k` bytes: its low
/// `k % 64` bits (0 when `k` is a multiple of 64: no partial step).
#[inline(always)]
fn tail_mask(k: usize) -> __mmask64 {
    match k % 64 {
        0 => 0,
        t => (1u64 << t) - 1,
    }
}

/// Sums of four i32x16 vectors, as the lanes `[Σa, Σb, Σc, Σd]` (integer sums: the order does
/// not change them).
///
/// With 512-bit unpacks and adds only, not [`super::avx2::hsum4_epi32`]'s `vphaddd`, which
/// has no EVEX form: an accumulator that reached a VEX-only instruction would be confined to
/// zmm0–15 for its whole life, and the 20- and 24-accumulator tiles would spill.
#[inline(always)]
unsafe fn hsum4_epi32_512(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m128i {
    // SAFETY: inlined only into `tile` (`#[target_feature]` with AVX-512 F), which runs after
    // detection; no memory is accessed.
    unsafe {
        // Per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3], and the same for c, d.
        let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
        // Per 128-bit lane: [Σa, Σb, Σc, Σd] of that lane.
        let v = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
        let h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }
}

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)`; see the module doc.
///
/// # Safety
/// AVX2, AVX-512 F/BW and AVX-512 VNNI are available; `g` keeps the kernel contract
/// ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn gemm_i8(g: Int8Gemm<'_>) {
    let m = g.m;
    let b80 = _mm512_set1_epi8(-128);
    // 128 · Σ x over the whole row: its full 64-byte steps, then the masked rest.
    let corr = |row: &[i8]| {
        let (k, xp) = (row.len(), row.as_ptr());
        let k64 = k & !63;
        let mut a = _mm512_setzero_si512();
        let mut c = 0;
        while c < k64 {
            // SAFETY: c + 64 <= k64 <= row.len().
            let xv = unsafe { _mm512_loadu_si512(xp.add(c) as *const __m512i) };
            a = _mm512_dpbusd_epi32(a, b80, xv);
            c += 64;
        }
        let mask = tail_mask(k);
        if mask != 0 {
            // SAFETY: the mask selects bytes k64..k of the row, all inside it; masked-off
            // bytes are not accessed.
            let xv = unsafe { _mm512_maskz_loadu_epi8(mask, xp.add(k64)) };
            a = _mm512_dpbusd_epi32(a, b80, xv);
        }
        _mm512_reduce_add_epi32(a)
    };
    by_blocks::<Vnni512>(g, corr, |blk, nb| {
        // SAFETY: `by_blocks` passes the block's row count: block rows 0..nb exist; the
        // operands are `g`'s, forwarded.
        unsafe {
            match nb {
                1 => for_each_tile::<_, 4, 1>(blk, m, nb),
                2 => for_each_tile::<_, 4, 2>(blk, m, nb),
                3 => for_each_tile::<_, 4, 3>(blk, m, nb),
                4 => for_each_tile::<_, 4, 4>(blk, m, nb),
                5 => for_each_tile::<_, 4, 5>(blk, m, nb),
                6 => for_each_tile::<_, 4, 6>(blk, m, nb),
                7 => for_each_tile::<_, 3, 7>(blk, m, nb),
                8 => for_each_tile::<_, 3, 8>(blk, m, nb),
                _ => for_each_tile::<_, WR, XR>(blk, m, nb),
            }
        }
    });
}

/// This kernel's [`Block`]s (activation rows with their corrections over all of `k`).
enum Vnni512 {}

impl Tiles for Block<'_, Vnni512> {
    /// One `R × N` tile: [`tile`].
    ///
    /// # Safety
    /// As for [`tile`]; inlined only into [`gemm_i8`], which runs after detection.
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, t: usize) {
        // SAFETY: forwarded; the CPU features were detected before `gemm_i8` was called.
        unsafe { tile::<R, N>(self, r, t) }
    }
}

/// One `R × N` tile: weight rows `r..r+R`, block rows `t..t+N`, over all of `k`.
///
/// A function of its own (`#[inline(never)]`): [`gemm_i8`] instantiates about thirty tile
/// shapes through [`for_each_tile`], and each stays a compact loop. Of the 32 zmm registers,
/// the 4 × 6 tile keeps 24 accumulators, 4 weight vectors, one activation vector and the `0x80`
/// constant live in the loop, and no accumulator is spilled (checked in the disassembly; see
/// `hsum4_epi32_512` for what made them spill).
///
/// # Safety
/// Weight rows `r..r+R` and block rows `t..t+N` of `blk` exist (`N <= 8`: [`for_each_tile`]);
/// AVX2 and AVX-512 F/BW/VNNI are available.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
#[inline(never)]
unsafe fn tile<const R: usize, const N: usize>(blk: &Block<'_, Vnni512>, r: usize, t: usize) {
    let Gemm { x, w, k, out, .. } = blk.g;
    let i = blk.i0 + t;
    // SAFETY: pointer accesses as stated below.
    unsafe {
        let k64 = k & !63;
        let mask = tail_mask(k);
        // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers),
        // each `k` bytes; every full load reads 64 bytes at an offset c + 64 <= k64 <= k,
        // and the masked loads read only bytes k64..k of a row.
        let wp: [*const i8; R] = core::array::from_fn(|j| w.q.as_ptr().add((r + j) * k));
        let xp: [*const i8; N] = core::array::from_fn(|u| x.q.as_ptr().add((i + u) * k));
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [[_mm512_setzero_si512(); N]; R];
        let mut c = 0;
        while c < k64 {
            // Weights are streamed once: fetch the ones a few tiles ahead (a prefetch never
            // faults, so running past the end of the matrix is harmless).
            for p in wp {
                prefetch_weights(p.wrapping_add(c));
            }
            // w + 128 as u8.
            let wu: [__m512i; R] = core::array::from_fn(|j| {
                _mm512_xor_si512(_mm512_loadu_si512(wp[j].add(c) as *const __m512i), flip)
            });
            for u in 0..N {
                let xv = _mm512_loadu_si512(xp[u].add(c) as *const __m512i);
                for j in 0..R {
                    acc[j][u] = _mm512_dpbusd_epi32(acc[j][u], wu[j], xv);
                }
            }
            c += 64;
        }
        if mask != 0 {
            // The partial step: masked-off bytes load as 0 (w + 128 = 128 there, times an
            // activation of 0).
            let wu: [__m512i; R] = core::array::from_fn(|j| {
                _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, wp[j].add(k64)), flip)
            });
            for u in 0..N {
                let xv = _mm512_maskz_loadu_epi8(mask, xp[u].add(k64));
                for j in 0..R {
                    acc[j][u] = _mm512_dpbusd_epi32(acc[j][u], wu[j], xv);
                }
            }
        }
        // Epilogue, four activation rows at a time: Σ lanes − correction, then
        // `acc as f32 * xs * ws` — the scalar dequantisation, lane by lane.
        let z = _mm512_setzero_si512();
        for (j, accj) in acc.iter().enumerate() {
            let mut a = [z; 8];
            a[..N].copy_from_slice(accj);
            let wsv = _mm_set1_ps(*w.scales.get_unchecked(r + j));
            for g in 0..N.div_ceil(4) {
                let u0 = 4 * g;
                let mut s = hsum4_epi32_512(a[u0], a[u0 + 1], a[u0 + 2], a[u0 + 3]);
                // t + u0 < nb <= BLOCK: four lanes are inside the padded arrays.
                let b = t + u0;
                s = _mm_sub_epi32(s, _mm_loadu_si128(blk.corr.as_ptr().add(b).cast()));
                let xsv = _mm_loadu_ps(blk.scale.as_ptr().add(b));
                let y = _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(s), xsv), wsv);
                let mut o = [0f32; 4];
                _mm_storeu_ps(o.as_mut_ptr(), y);
                for (v, ov) in o.iter().enumerate().take(N - u0) {
                    // SAFETY: i + u0 + v < n, r + j < m (callers).
                    out.set(i + u0 + v, r + j, *ov);
                }
            }
        }
    }
}

/// [`super::Kernels::dot_columns`] sixteen columns per block: `out[j] = super::dot_f32(q,
/// column j of kt)`, bit for bit, as [`super::avx2::dot_columns_f32`] computes it, one zmm per
/// partial sum.
///
/// # Safety
/// AVX-512 F is available; `k.kt` holds `q.len()` rows `k.stride` apart of at least
/// `k.width ≥ 16` values each; `k.n ≤ k.width`; `out` holds at least `k.n` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(crate) unsafe fn dot_columns_f32(q: &[f32], k: Cols<'_>, out: &mut [f32]) {
    let (full, stride) = (q.len() & !7, k.stride);
    for (j, lanes) in super::simd::column_blocks(k.n, k.width, 16) {
        // SAFETY: j + 16 <= width, so every load `kt[c·stride + j..][..16]` (c < q.len()) is in
        // bounds (caller); `c + l < q.len()`.
        let s = unsafe {
            let p = k.kt.as_ptr().add(j);
            let mut a = [_mm512_setzero_ps(); 8];
            let mut c = 0;
            while c < full {
                for (l, a) in a.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*q.get_unchecked(c + l));
                    let k = _mm512_loadu_ps(p.add((c + l) * stride));
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(x, k));
                }
                c += 8;
            }
            let mut s = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[1], a[5])),
                _mm512_add_ps(_mm512_add_ps(a[2], a[6]), _mm512_add_ps(a[3], a[7])),
            );
            for (c, &x) in q.iter().enumerate().skip(full) {
                let k = _mm512_loadu_ps(p.add(c * stride));
                s = _mm512_add_ps(s, _mm512_mul_ps(_mm512_set1_ps(x), k));
            }
            s
        };
        // SAFETY: the store writes the 16 floats of the array it is given (AVX-512 F).
        store_lanes(out, j, lanes, |b: &mut [f32; 16]| unsafe {
            _mm512_storeu_ps(b.as_mut_ptr(), s)
        });
    }
}

/// [`dot_columns_f32`] for `R` queries over the same keys (2 or 3: 8·R zmm of partial sums),
/// bit for bit each: every key load serves all `R` (64-byte loads at key rows 56 floats apart
/// straddle two cache lines every other row; one load for `R` rows divides those by `R`).
///
/// # Safety
/// AVX-512 F is available; every `q[r]` has `q[0].len()` values; `k.kt` holds `q[0].len()`
/// rows `k.stride` apart of at least `k.width ≥ 16` values each; `k.n ≤ k.width`; every
/// `out[r]` holds at least `k.n` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
// (`l` indexes a row's partial sums and the query element together: a range, not an iterator)
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn dot_columns_rows_f32<const R: usize>(
    q: [&[f32]; R],
    k: Cols<'_>,
    mut out: [&mut [f32]; R],
) {
    let (len, stride) = (q[0].len(), k.stride);
    let full = len & !7;
    let tree = |a: &[__m512; 8]| {
        _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[1], a[5])),
            _mm512_add_ps(_mm512_add_ps(a[2], a[6]), _mm512_add_ps(a[3], a[7])),
        )
    };
    for (j, lanes) in super::simd::column_blocks(k.n, k.width, 16) {
        // SAFETY: j + 16 <= width, so every load `kt[c·stride + j..][..16]` (c < len) is in
        // bounds (caller); `c + l < len == q[r].len()`.
        let s = unsafe {
            let p = k.kt.as_ptr().add(j);
            let mut a = [[_mm512_setzero_ps(); 8]; R];
            let mut c = 0;
            while c < full {
                for l in 0..8 {
                    let k = _mm512_loadu_ps(p.add((c + l) * stride));
                    for r in 0..R {
                        let x = _mm512_set1_ps(*q[r].get_unchecked(c + l));
                        a[r][l] = _mm512_add_ps(a[r][l], _mm512_mul_ps(x, k));
                    }
                }
                c += 8;
            }
            let mut s = [_mm512_setzero_ps(); R];
            for r in 0..R {
                s[r] = tree(&a[r]);
            }
            for c in full..len {
                let k = _mm512_loadu_ps(p.add(c * stride));
                for r in 0..R {
                    let x = _mm512_set1_ps(*q[r].get_unchecked(c));
                    s[r] = _mm512_add_ps(s[r], _mm512_mul_ps(x, k));
                }
            }
            s
        };
        for (o, s) in out.iter_mut().zip(s) {
            // SAFETY: the store writes the 16 floats of the array it is given (AVX-512 F).
            store_lanes(o, j, lanes.clone(), |b: &mut [f32; 16]| unsafe {
                _mm512_storeu_ps(b.as_mut_ptr(), s)
            });
        }
    }
}

/// A row's absolute maximum as [`super::scalar::abs_max`] computes it (the largest
/// `bits & 0x7fff_ffff`, an integer maximum, so order-independent), 16 values a step; the
/// tail is the scalar's.
#[inline(always)]
unsafe fn row_absmax(xr: &[f32]) -> f32 {
    // SAFETY: inlined only into the `#[target_feature]` quantisers below (AVX-512 F); every
    // load reads 16 values at `c` with `c + 16 <= xr.len()`.
    unsafe {
        let (mask, p, k) = (_mm512_set1_epi32(0x7fff_ffff), xr.as_ptr(), xr.len());
        let mut m = _mm512_setzero_si512();
        let mut c = 0;
        while c + 16 <= k {
            let bits = _mm512_castps_si512(_mm512_loadu_ps(p.add(c)));
            m = _mm512_max_epi32(m, _mm512_and_si512(bits, mask));
            c += 16;
        }
        let tail = super::scalar::abs_max(&xr[c..]).to_bits();
        f32::from_bits((_mm512_reduce_max_epi32(m) as u32).max(tail))
    }
}

/// `clamp(roundf(v · inv), −a, a)` of 16 lanes as i32 (NaN → 0), the integers of
/// [`super::scalar::quantize_value`] (`avx2::round8`'s steps at twice the width;
/// the NaN lanes are zeroed by the conversion's mask).
#[inline(always)]
unsafe fn round16(v: __m512, inv: __m512, a: __m512) -> __m512i {
    // SAFETY: inlined only into the `#[target_feature]` quantisers (register-only).
    unsafe {
        let t = _mm512_mul_ps(v, inv);
        let sign = _mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32(i32::MIN));
        let below_half = _mm512_or_si512(sign, _mm512_set1_epi32(0x3eff_ffff));
        let r = _mm512_add_ps(t, _mm512_castsi512_ps(below_half));
        let neg_a = _mm512_sub_ps(_mm512_setzero_ps(), a);
        let rv = _mm512_min_ps(_mm512_max_ps(r, neg_a), a);
        _mm512_maskz_cvttps_epi32(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(t, t), rv)
    }
}

/// The quantiser of both widths (`a` = 127 or `act16_max(k)`) through
/// [`super::scalar::quantize_rows_by`], 16 values a step; `store` narrows 16 lanes (each in
/// `[−a, a]`) into `q[c..c + 16]`.
#[inline(always)]
unsafe fn quantize_rows_to<Q: Copy + Default>(
    xnk: (&[f32], usize, usize),
    q: &mut [Q],
    scales: &mut [f32],
    (a, to): (i32, impl Fn(i32) -> Q),
    store: impl Fn(&mut [Q], __m512i),
) {
    // SAFETY: AVX-512 F is enabled where this is inlined.
    let absmax = |xr: &[f32]| unsafe { row_absmax(xr) };
    let vector = |xr: &[f32], qr: &mut [Q], inv: f32| {
        let k16 = xr.len().min(qr.len()) & !15;
        // SAFETY: AVX-512 F (as above); c + 16 <= k16 <= xr.len(), so the load reads
        // xr[c..c + 16], and `store` gets the checked slice qr[c..c + 16].
        unsafe {
            let (vinv, va) = (_mm512_set1_ps(inv), _mm512_set1_ps(a as f32));
            let mut c = 0;
            while c < k16 {
                let r = round16(_mm512_loadu_ps(xr.as_ptr().add(c)), vinv, va);
                store(&mut qr[c..c + 16], r);
                c += 16;
            }
        }
        k16
    };
    super::scalar::quantize_rows_by(xnk, q, scales, (a, to), absmax, vector);
}

/// [`super::scalar::quantize_rows`] with 16 lanes, byte for byte the same.
///
/// # Safety
/// AVX-512 F is available; `x` and `q` hold `n * k` elements, `scales` `n`.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(crate) unsafe fn quantize_rows(x: &[f32], n: usize, k: usize, q: &mut [i8], s: &mut [f32]) {
    let store = |out: &mut [i8], r: __m512i| {
        let Some(out) = out.get_mut(..16) else {
            return;
        };
        // SAFETY: AVX-512 F (this function's feature); values already in [−127, 127], so the
        // saturating narrow is exact; `out` holds 16 bytes (checked above).
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtsepi32_epi8(r)) }
    };
    // SAFETY: forwarded (AVX-512 F; the sizes are the caller's).
    unsafe { quantize_rows_to((x, n, k), q, s, (127, |v| v as i8), store) }
}

/// [`super::scalar::quantize_rows16`] with 16 lanes, value for value the same.
///
/// # Safety
/// AVX-512 F is available; `x` and `q` hold `n * k` elements, `scales` `n`.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(crate) unsafe fn quantize_rows16(x: &[f32], n: usize, k: usize, q: &mut [i16], s: &mut [f32]) {
    let a = super::operand::act16_max(k);
    let store = |out: &mut [i16], r: __m512i| {
        let Some(out) = out.get_mut(..16) else {
            return;
        };
        // SAFETY: AVX-512 F; values already in [−a, a] ⊂ i16, so the saturating narrow is
        // exact; `out` holds 16 values (checked above).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm512_cvtsepi32_epi16(r)) }
    };
    // SAFETY: forwarded (AVX-512 F; the sizes are the caller's).
    unsafe { quantize_rows_to((x, n, k), q, s, (a, |v| v as i16), store) }
}
