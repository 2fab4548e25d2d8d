//! x86_64 int8 GEMM with AVX-VNNI (`vpdpbusd`, 256-bit VEX form). Only called after run-time
//! detection ([`super::Isa::AvxVnni`]); the float GEMMs and the activation quantiser of that
//! path are [`super::avx2`]'s.
//!
//! `vpdpbusd` adds four `u8 × s8` products into each i32 lane in one instruction (no
//! intermediate saturation), where AVX2 needs `vpsignb + vpmaddubsw + vpmaddwd + vpaddd`. The
//! unsigned operand is the weight, offset by 128: `w ^ 0x80 = w + 128 ∈ [0, 255]` (exact for
//! every int8 including `-128`), the signed one the quantised activation, used as it is. Then
//!
//! ```text
//! Σ (w + 128)·x = Σ w·x + 128·Σ x
//! ```
//!
//! and the correction `128·Σ x` belongs to the activation row, not to the weight row: it is
//! computed once per call (one `vpdpbusd` of each activation row against a vector of `0x80`
//! bytes) and subtracted from every accumulator of that row. Per 32-byte step a tile of
//! `R` weight rows × `N` activation rows costs `R` `vpxor` and `R · N` `vpdpbusd`, nothing else.
//! Measured alternatives, same tiles, 5 and 50 activation rows: the sign trick (`vpabsb` per
//! weight vector and a `vpsignb` per product, as in AVX2) 1.4–1.9× slower; offsetting the
//! activations instead (a `vpxor` per activation vector and a correction per weight row, one
//! more `vpdpbusd` per weight vector) 1.2–1.8× slower. The sums wrap modulo 2³² exactly as the
//! integer sums they stand for, so the accumulators (plus the last `k % 32` products, summed in
//! scalar) are exactly scalar's, and with the same dequantisation the outputs are bit-identical
//! to [`super::scalar::gemm_i8`]'s. Nothing relies on activations avoiding `-128`.
//!
//! Tiles (weight rows × activation rows): up to 6 activation rows form one tile, so the weights
//! are streamed once — 4 × 1, 4 × 2, 3 × 3, 3 × 4, 2 × 5 (a decode step's beams), 2 × 6: 8 to 12
//! independent accumulators where the 16 registers allow (`vpdpbusd` has a latency of 4 cycles
//! and a throughput of 2 per cycle on Zen 5; an 8 × 1 tile spills). More rows run as 3 × 4
//! tiles (and a narrower last one) over blocks of 256 rows (`BLOCK`); the leftover weight rows
//! (fewer than a tile's) form one shorter tile (`super::tiles`). The epilogue reduces four accumulators at a time and dequantises four outputs
//! per instruction (`cvtdq2ps`, then `× xs`, then `× ws`: scalar's order, so the same bits).

use super::avx2::{hsum4_epi32, prefetch_weights};
use super::operand::{Gemm, Int8Gemm};
use super::tiles::{for_each_tile, Tiles};
use core::arch::x86_64::*;
use core::marker::PhantomData;

/// Weight rows per tile when there are more than 6 activation rows.
const WR: usize = 3;
/// Activation rows per tile when there are more than 6.
const XR: usize = 4;
/// Activation rows whose corrections are computed together (a stack array); more rows run as
/// several blocks, each streaming the weights once.
pub(super) const BLOCK: usize = 256;
/// Stack arrays indexed by block row are this much longer, so that the epilogue can read four
/// lanes from any row of the block.
pub(super) const PAD: usize = 3;

/// `y = dequant(x.q[n, k] · w.q[m, k]ᵀ)`; see the module doc.
///
/// # Safety
/// AVX2 and AVX-VNNI are available; `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn gemm_i8(g: Int8Gemm<'_>) {
    let m = g.m;
    let b80 = _mm256_set1_epi8(-128);
    let z = _mm256_setzero_si256();
    let corr = |row: &[i8]| {
        let mut a = z;
        let mut c = 0;
        while c + 32 <= row.len() {
            // SAFETY: c + 32 <= row.len().
            let xv = unsafe { _mm256_loadu_si256(row.as_ptr().add(c) as *const __m256i) };
            a = _mm256_dpbusd_avx_epi32(a, b80, xv);
            c += 32;
        }
        // SAFETY: AVX2 is enabled here.
        _mm_cvtsi128_si32(unsafe { hsum4_epi32(a, z, z, z) })
    };
    by_blocks::<Vnni256>(g, corr, |blk, nb| {
        // SAFETY: `by_blocks` passes the block's row count: block rows 0..nb exist; the
        // operands are `g`'s, forwarded.
        unsafe {
            match nb {
                1 => for_each_tile::<_, 4, 1>(blk, m, nb),
                2 => for_each_tile::<_, 4, 2>(blk, m, nb),
                3 => for_each_tile::<_, 3, 3>(blk, m, nb),
                4 => for_each_tile::<_, 3, 4>(blk, m, nb),
                5 => for_each_tile::<_, 2, 5>(blk, m, nb),
                6 => for_each_tile::<_, 2, 6>(blk, m, nb),
                _ => for_each_tile::<_, WR, XR>(blk, m, nb),
            }
        }
    });
}

/// One block of activation rows `i0..i0+nb`, with `corr[t]` the activation row's correction
/// `128 · Σ xq[i0 + t, c]` (over the bytes its kernel's vector steps cover) and
/// `scale[t] = xs[i0 + t]`. `K` names the kernel whose tiles run over it ([`Vnni256`] here,
/// `super::avx512`'s for the 512-bit form).
pub(super) struct Block<'a, K> {
    pub g: Int8Gemm<'a>,
    pub corr: &'a [i32; BLOCK + PAD],
    pub scale: &'a [f32; BLOCK + PAD],
    pub i0: usize,
    pub kernel: PhantomData<K>,
}

/// Runs `tiles(block, nb)` over the activation rows of `g` in blocks of at most [`BLOCK`] rows,
/// each with its corrections `corr(xq row)` and scales; the VNNI kernels share it.
#[inline(always)]
pub(super) fn by_blocks<K>(
    g: Int8Gemm<'_>,
    corr: impl Fn(&[i8]) -> i32,
    tiles: impl Fn(&Block<'_, K>, usize),
) {
    let Gemm { x, n, k, .. } = g;
    let mut i0 = 0;
    while i0 < n {
        let nb = (n - i0).min(BLOCK);
        let mut c = [0i32; BLOCK + PAD];
        let mut scale = [0f32; BLOCK + PAD];
        scale[..nb].copy_from_slice(&x.scales[i0..i0 + nb]);
        for (t, ct) in c.iter_mut().enumerate().take(nb) {
            let row = (i0 + t) * k;
            *ct = corr(&x.q[row..row + k]);
        }
        let blk = Block {
            g,
            corr: &c,
            scale: &scale,
            i0,
            kernel: PhantomData,
        };
        tiles(&blk, nb);
        i0 += nb;
    }
}

/// The 256-bit AVX-VNNI kernel's [`Block`]s.
pub(super) enum Vnni256 {}

impl Tiles for Block<'_, Vnni256> {
    /// One `R × N` tile: weight rows `r..r+R`, block rows `t..t+N`, over all of `k`.
    ///
    /// # Safety
    /// Weight rows `r..r+R` and block rows `t..t+N` exist (`N <= 8`: [`for_each_tile`]), and
    /// AVX2 + AVX-VNNI are enabled in the caller (it is inlined into [`gemm_i8`]).
    #[inline(always)]
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, t: usize) {
        let Gemm { x, w, k, out, .. } = self.g;
        let i = self.i0 + t;
        // SAFETY: inlined only into `gemm_i8`, which runs after detection; pointer accesses as
        // stated below.
        unsafe {
            let k32 = k & !31;
            // SAFETY (whole function): rows r..r+R of `wq` and i..i+N of `xq` exist (callers),
            // each `k` bytes, and every load below reads 32 bytes at an offset c + 32 <= k32.
            let wp: [*const i8; R] = core::array::from_fn(|j| w.q.as_ptr().add((r + j) * k));
            let xp: [*const i8; N] = core::array::from_fn(|u| x.q.as_ptr().add((i + u) * k));
            let flip = _mm256_set1_epi8(-128);
            let mut acc = [[_mm256_setzero_si256(); N]; R];
            let mut c = 0;
            while c < k32 {
                // Weights are streamed once: fetch the ones a few tiles ahead (a prefetch never
                // faults, so running past the end of the matrix is harmless).
                for p in wp {
                    prefetch_weights(p.wrapping_add(c));
                }
                // w + 128 as u8.
                let wu: [__m256i; R] = core::array::from_fn(|j| {
                    _mm256_xor_si256(_mm256_loadu_si256(wp[j].add(c) as *const __m256i), flip)
                });
                for u in 0..N {
                    let xv = _mm256_loadu_si256(xp[u].add(c) as *const __m256i);
                    for j in 0..R {
                        acc[j][u] = _mm256_dpbusd_avx_epi32(acc[j][u], wu[j], xv);
                    }
                }
                c += 32;
            }
            // Epilogue, four activation rows at a time: Σ lanes − correction (+ the scalar
            // tail), then `acc as f32 * xs * ws` — the scalar dequantisation, lane by lane.
            let z = _mm256_setzero_si256();
            for j in 0..R {
                let mut a = [z; 8];
                a[..N].copy_from_slice(&acc[j]);
                let wsv = _mm_set1_ps(*w.scales.get_unchecked(r + j));
                for g in 0..N.div_ceil(4) {
                    let u0 = 4 * g;
                    let mut s = hsum4_epi32(a[u0], a[u0 + 1], a[u0 + 2], a[u0 + 3]);
                    // t + u0 < nb <= BLOCK: four lanes are inside the padded arrays.
                    let b = t + u0;
                    s = _mm_sub_epi32(s, _mm_loadu_si128(self.corr.as_ptr().add(b).cast()));
                    if k32 < k {
                        let mut tail = [0i32; 4];
                        for (v, tv) in tail.iter_mut().enumerate().take(N - u0) {
                            for c in k32..k {
                                // SAFETY: c < k, row u0 + v < N.
                                *tv += *xp[u0 + v].add(c) as i32 * *wp[j].add(c) as i32;
                            }
                        }
                        s = _mm_add_epi32(s, _mm_loadu_si128(tail.as_ptr().cast()));
                    }
                    let xsv = _mm_loadu_ps(self.scale.as_ptr().add(b));
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
}

/// AVX-VNNI's `vpdpwssd`: the pair products added in one instruction.
struct Dpwssd;

impl super::avx2::PairMac for Dpwssd {
    #[inline(always)]
    unsafe fn mac(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: register-only; inlined into `gemm_i8a16` (AVX-VNNI enabled).
        unsafe { _mm256_dpwssd_avx_epi32(acc, x, w) }
    }
}

/// [`super::avx2::gemm_i8a16`]'s tiles with `vpdpwssd` in place of `vpmaddwd` + `vpaddd`: the
/// same exact i32 sums (no saturation: each pair is at most 2 · 128 · 32767), so the same bits.
///
/// # Safety
/// AVX2 and AVX-VNNI are available; `g` keeps the kernel contract ([`super::operand`]).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn gemm_i8a16(g: super::operand::Int16Gemm<'_>) {
    let tiles = super::avx2::I8A16Tiles::<Dpwssd>(g, PhantomData);
    // SAFETY: forwarded.
    unsafe { super::avx2::int_tiles(&tiles, g.m, g.n) }
}
