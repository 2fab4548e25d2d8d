//! Engine code outside the GEMMs — attention, softmax, log-softmax, LayerNorm, gates — compiled
//! for the selected path's vector unit, and the f32 dot product it is built on ([`dot_f32`]).
//!
//! [`Kernels::vectorised`] runs a closure inside a `#[target_feature]` function, so the code
//! inlined into it (the model's `#[inline(always)]` bodies) is vectorised with AVX2 (AVX-512 on
//! the [`super::Isa::Avx512`] path) instead of the x86_64 baseline's SSE2. Same Rust, same
//! operations in the same order (Rust never fuses a multiply and an add on its own, nor
//! reorders float sums), so the results are bit for bit those of the baseline build at any
//! vector width.

use super::Kernels;

impl Kernels {
    /// Run `f` with this path's vector instructions enabled for the code inlined into it.
    #[inline(always)]
    pub fn vectorised<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` and `Isa::AvxVnni` are only selected when the CPU has AVX2, FMA
            // and F16C (`Isa::is_available`, checked by every constructor of `Kernels` with that
            // isa). The AVX-VNNI path's non-GEMM code is the AVX2 path's.
            super::Isa::Avx2 | super::Isa::AvxVnni => unsafe { avx2(f) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx512` is only selected when the CPU has AVX2, FMA, F16C and
            // AVX-512 F/BW (`Isa::is_available`, as above).
            super::Isa::Avx512 => unsafe { avx512(f) },
            _ => f(),
        }
    }
}

// The model's row functions, each compiled once per vector context ([`Kernels::vectorised`]'s
// copies: the baseline, AVX2 and AVX-512 ones on x86_64) and not inlined into their callers:
// inlined at every call site, their eight lockstep group sizes times the call sites times three
// contexts had grown the x86_64 binary by a fifth. A call per block of rows costs nothing next
// to the rows' work.
impl Kernels {
    /// [`crate::math::softmax_rows`] with this path's vector unit: softmax over each row of `n`
    /// values of `x`, bit for bit on every path.
    #[inline(never)]
    pub fn softmax_rows(&self, x: &mut [f32], n: usize) {
        self.vectorised(
            #[inline(always)]
            || crate::math::softmax_rows(x, n),
        )
    }

    /// [`crate::math::log_softmax_rows`] with this path's vector unit, on this thread: the rows
    /// of [`Kernels::log_softmax_rows`] (`parts.rs`), which spreads them over the threads.
    #[inline(never)]
    pub(super) fn log_softmax_rows_here(&self, x: &mut [f32], n: usize) {
        self.vectorised(
            #[inline(always)]
            || crate::math::log_softmax_rows(x, n),
        )
    }

    /// [`crate::math::layer_norm_rows`] with this path's vector unit: LayerNorm over each row of
    /// `gamma.len()` values of `x`, bit for bit on every path.
    #[inline(never)]
    pub fn layer_norm_rows(&self, x: &mut [f32], gamma: &[f32], beta: &[f32]) {
        // a row at a time with 256- and 512-bit vectors (see `layer_norm_rows_in_lockstep`)
        let lockstep = match self.isa {
            #[cfg(target_arch = "x86_64")]
            super::Isa::Avx2 | super::Isa::AvxVnni | super::Isa::Avx512 => 1,
            _ => 8,
        };
        self.vectorised(
            #[inline(always)]
            || crate::math::layer_norm_rows_in_lockstep(x, gamma, beta, lockstep),
        )
    }
}

impl Kernels {
    /// [`dot_f32`]`(q, keys[k])` for eight keys, bit for bit (the attention scores of one query
    /// against a block of keys): on the SIMD paths the keys' lane sums advance together and
    /// their eight final reductions are one transpose instead of eight horizontal sums
    /// (`avx2::dot8_f32`, `neon::dot8_f32`; tests/kernels_props.rs checks them against this).
    ///
    /// Only the first `live` results are needed: the paths without a vector unit compute those
    /// alone (the others are 0), the SIMD ones all eight at the cost of one.
    #[inline(always)]
    pub fn dot8(&self, q: &[f32], keys: &[&[f32]; 8], live: usize) -> [f32; 8] {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 is available (`Isa::is_available`, checked by every constructor of
            // `Kernels` with these isas); every key holds `q.len()` values (`keys_fit`).
            super::Isa::Avx2 | super::Isa::AvxVnni | super::Isa::Avx512 if keys_fit(q, keys) => unsafe {
                super::avx2::dot8_f32(q, keys)
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is baseline on aarch64; every key holds `q.len()` values (`keys_fit`).
            super::Isa::Neon | super::Isa::NeonDot if keys_fit(q, keys) => unsafe {
                super::neon::dot8_f32(q, keys)
            },
            _ => core::array::from_fn(|k| if k < live { dot_f32(q, keys[k]) } else { 0.0 }),
        }
    }
}

/// A head's keys transposed for [`Kernels::dot_columns`]: row `c` holds element `c` of every
/// key, `n` key columns, and rows start `stride ≥ n` values apart (the decoder's cross-attention
/// keys: [`crate::plan::key_stride`], docs/SPEC.md §7.2). The columns past `n` may be read by a
/// block of columns but never reach an output; the last row may end after its `n` columns.
#[derive(Clone, Copy, Debug)]
pub struct KeyColumns<'a> {
    /// The rows.
    pub kt: &'a [f32],
    /// Keys: the columns of each row that count.
    pub n: usize,
    /// Values from the start of one row to the next.
    pub stride: usize,
}

/// [`KeyColumns`] checked for `rows` rows ([`KeyColumns::checked`]): what the SIMD
/// `dot_columns` kernels take.
#[derive(Clone, Copy)]
pub(crate) struct Cols<'a> {
    /// Exactly the values read: `rows − 1` rows of `stride` and a last of `width`.
    pub kt: &'a [f32],
    pub n: usize,
    pub stride: usize,
    /// The values of each row a block may read: `stride` when the last row is whole, else `n`
    /// (read by the SIMD kernels only).
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub width: usize,
}

impl<'a> KeyColumns<'a> {
    /// The columns for a query of `rows` elements, or `None` when `n > stride`, `kt` is
    /// shorter than `(rows − 1)·stride + n` or the size overflows.
    #[inline(always)]
    fn checked(self, rows: usize) -> Option<Cols<'a>> {
        let KeyColumns { kt, n, stride } = self;
        if n > stride {
            return None;
        }
        let cols = |kt, width| {
            Some(Cols {
                kt,
                n,
                stride,
                width,
            })
        };
        if let Some(kt) = rows.checked_mul(stride).and_then(|whole| kt.get(..whole)) {
            return cols(kt, stride);
        }
        let cut = rows.checked_sub(1)?.checked_mul(stride)?.checked_add(n)?;
        cols(kt.get(..cut)?, n)
    }
}

impl Kernels {
    /// `out[j] =` [`dot_f32`]`(q, column j of keys)` for every `j < keys.n`, bit for bit: the
    /// attention scores of one query against a head's keys laid out transposed once per image
    /// ([`KeyColumns`]; the decoder's cross-attention).
    ///
    /// Each column keeps [`dot_f32`]'s eight partial sums (element `c` into sum `c mod 8`, in
    /// order, `acc + q·k` without FMA), its tree and its sequential tail. On the SIMD paths a
    /// block of columns advances side by side, one vector per partial sum, so no sum needs a
    /// horizontal reduction: 16 columns per zmm on [`super::Isa::Avx512`]
    /// (`avx512::dot_columns_f32`), 8 on the AVX2 and NEON paths (`avx2::`, `neon::`). A last
    /// block past `n` reads the row's padding columns while they last, else it is the row's
    /// last full block (a few columns computed twice, the same bits); lanes past `n` are
    /// dropped (`simd::column_blocks`). Rows narrower than a block, and the scalar and DSP
    /// paths: a column at a time. Keys that do not fit `q` ([`KeyColumns`]' bounds) or an `out`
    /// shorter than `n` are a caller bug: `out` is left as it is, never a panic.
    #[inline(always)]
    pub fn dot_columns(&self, q: &[f32], keys: KeyColumns, out: &mut [f32]) {
        let (Some(k), Some(out)) = (keys.checked(q.len()), out.get_mut(..keys.n)) else {
            return;
        };
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 F is available (`Isa::is_available`, checked by every constructor
            // of `Kernels` with this isa); `k` holds `q.len()` rows `k.stride` apart of
            // `k.width ≥ 16` values, `k.n ≤ k.width` (`KeyColumns::checked`); `out` `k.n`.
            super::Isa::Avx512 if k.width >= 16 => unsafe {
                super::avx512::dot_columns_f32(q, k, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 is available (as above); `k` holds `q.len()` rows `k.stride` apart of
            // `k.width ≥ 8` values, `k.n ≤ k.width`; `out` `k.n`.
            super::Isa::Avx2 | super::Isa::AvxVnni | super::Isa::Avx512 if k.width >= 8 => unsafe {
                super::avx2::dot_columns_f32(q, k, out)
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is baseline on aarch64; `k` holds `q.len()` rows `k.stride` apart of
            // `k.width ≥ 8` values, `k.n ≤ k.width`; `out` `k.n`.
            super::Isa::Neon | super::Isa::NeonDot if k.width >= 8 => unsafe {
                super::neon::dot_columns_f32(q, k, out)
            },
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = dot_column(q, k.kt, k.stride, j);
                }
            }
        }
    }
}

impl Kernels {
    /// [`Kernels::dot_columns`] for two queries of the same length over the same keys, each
    /// result bit for bit `dot_columns`' (`tests/kernels_props.rs`): on [`super::Isa::Avx512`]
    /// with rows of at least 16 readable values, one pass that loads each key vector once for
    /// both rows (`avx512::dot_columns_rows_f32`); otherwise two `dot_columns` calls.
    /// Mismatched queries, keys that do not fit them, or a short `out[0]` or `out[1]` are a
    /// caller bug: both outputs are left as they are, on every path, never a panic.
    #[inline(always)]
    pub fn dot_columns2(&self, q: [&[f32]; 2], keys: KeyColumns, out: [&mut [f32]; 2]) {
        self.dot_columns_rows(q, keys, out)
    }

    /// [`Kernels::dot_columns2`] for three queries (one pass on [`super::Isa::Avx512`]: 24 zmm
    /// of partial sums), each result bit for bit `dot_columns`'.
    #[inline(always)]
    pub fn dot_columns3(&self, q: [&[f32]; 3], keys: KeyColumns, out: [&mut [f32]; 3]) {
        self.dot_columns_rows(q, keys, out)
    }

    #[inline(always)]
    fn dot_columns_rows<const R: usize>(
        &self,
        q: [&[f32]; R],
        keys: KeyColumns,
        out: [&mut [f32]; R],
    ) {
        let len = q[0].len();
        let Some(k) = keys.checked(len) else {
            return;
        };
        if q.iter().any(|x| x.len() != len) || out.iter().any(|o| o.len() < k.n) {
            return;
        }
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 F is available (`Isa::is_available`, checked by every constructor
            // of `Kernels` with this isa); every query has `len` values, `k` holds `len` rows
            // `k.stride` apart of `k.width ≥ 16` values, `k.n ≤ k.width`; every output `k.n`.
            super::Isa::Avx512 if k.width >= 16 => unsafe {
                super::avx512::dot_columns_rows_f32(q, k, out)
            },
            _ => {
                for (q, o) in q.into_iter().zip(out) {
                    self.dot_columns(q, keys, o);
                }
            }
        }
    }
}

/// The blocks of `w` columns [`Kernels::dot_columns`]' SIMD paths compute for `n ≤ len`
/// columns in rows of `len ≥ w` readable values: `(start, lanes)`, the block of columns `start..start + w`
/// whose `lanes` go to `out[start + lanes.start..start + lanes.end]`. Blocks at 0, w, 2w, …;
/// one that would run past `len` starts at `len − w` instead and keeps only its new columns.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) fn column_blocks(
    n: usize,
    len: usize,
    w: usize,
) -> impl Iterator<Item = (usize, core::ops::Range<usize>)> {
    (0..n).step_by(w).map(move |j0| {
        let start = j0.min(len - w);
        (start, j0 - start..n.min(j0 + w) - start)
    })
}

/// Writes a block's live `lanes` of `W` columns to `out[j + lanes]`: `store` writes the block's
/// `W` results into the array it is given, `out[j..j + W]` itself when every lane is live
/// (and fits), else a stack copy whose live lanes are then copied. One place for the last
/// block's partial store of every SIMD `dot_columns` kernel ([`column_blocks`]).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) fn store_lanes<const W: usize>(
    out: &mut [f32],
    j: usize,
    lanes: core::ops::Range<usize>,
    store: impl FnOnce(&mut [f32; W]),
) {
    if lanes == (0..W) {
        if let Some(block) = out.get_mut(j..).and_then(|o| o.first_chunk_mut::<W>()) {
            return store(block);
        }
    }
    let mut t = [0f32; W];
    store(&mut t);
    if let (Some(dst), Some(src)) = (out.get_mut(j + lanes.start..j + lanes.end), t.get(lanes)) {
        dst.copy_from_slice(src);
    }
}

/// [`dot_f32`] of `q` with column `j` of `kt` (`q.len()` rows `stride` apart): its eight
/// partial sums, tree and tail.
#[inline(always)]
fn dot_column(q: &[f32], kt: &[f32], stride: usize, j: usize) -> f32 {
    let full = q.len() / 8 * 8;
    let mut acc = [0.0f32; 8];
    for (c0, x) in (0..full).step_by(8).zip(q.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * kt[(c0 + l) * stride + j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (c, &x) in q.iter().enumerate().skip(full) {
        s += x * kt[c * stride + j];
    }
    s
}

/// Whether every key holds `q.len()` values (what the SIMD `dot8`s read).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn keys_fit(q: &[f32], keys: &[&[f32]; 8]) -> bool {
    keys.iter().all(|k| k.len() >= q.len())
}

/// The tail of [`Kernels::dot8`]'s eight dot products past `full`, added as [`dot_f32`] adds
/// its own (keys hold `q.len()` values).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) fn add_tails(q: &[f32], keys: &[&[f32]; 8], full: usize, out: &mut [f32; 8]) {
    for c in full..q.len() {
        for k in 0..8 {
            out[k] += q[c] * keys[k][c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// [`avx2`] with 512-bit registers: the same code, sixteen lanes where it vectorises.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `√x`, correctly rounded (IEEE 754): the bits of `libm::sqrtf`, which the engine used
/// before. On x86_64 the SSE intrinsic, which inside the AVX2 and AVX-512 paths' code compiles
/// to the VEX `vsqrtss`: libm's x86 `sqrtf` is inline assembly in the legacy SSE encoding, and
/// a legacy SSE instruction after 256- or 512-bit ones pays a transition penalty on Intel
/// cores, on every call (LayerNorm's per row).
#[inline(always)]
pub fn sqrtf(x: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
        // SAFETY: SSE is part of the x86_64 baseline; the intrinsics read and write registers.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        libm::sqrtf(x)
    }
}

/// f32 dot product (attention scores and weighted sums). Eight partial sums, which the
/// compiler vectorises; differs from [`super::scalar::dot_f32`] only in summation order.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    /// The column blocks of every SIMD width (8: AVX2, NEON; 16: AVX-512, which this test
    /// checks on hosts without it too): each block lies within the row's readable values, and
    /// their live lanes write every output column exactly once.
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn column_blocks_cover_every_column_once_within_the_row() {
        for w in [8usize, 16] {
            for n in 0..80usize {
                for len in [n, n.next_multiple_of(8), n.next_multiple_of(16), n + 5] {
                    if len < w {
                        continue; // (the kernels take rows narrower than a block a column at a time)
                    }
                    let mut written = [0u32; 80]; // (no alloc: these tests also run without std)
                    let written = &mut written[..n];
                    for (start, lanes) in super::column_blocks(n, len, w) {
                        assert!(start + w <= len, "w {w} n {n} len {len}: block at {start}");
                        assert!(lanes.start < lanes.end && lanes.end <= w);
                        for k in &mut written[start + lanes.start..start + lanes.end] {
                            *k += 1;
                        }
                    }
                    assert!(written.iter().all(|&k| k == 1), "w {w} n {n} len {len}");
                }
            }
        }
    }

    /// [`super::store_lanes`] writes exactly the block's live lanes, from the block's own
    /// positions, whether they are all live (the store into `out`) or not (the stack copy), and
    /// nothing when `out` is too short for them.
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn store_lanes_writes_the_live_lanes_only() {
        let block = |b: &mut [f32; 8]| {
            for (i, v) in b.iter_mut().enumerate() {
                *v = 100.0 + i as f32;
            }
        };
        for j in 0..6usize {
            for start in 0..8usize {
                for end in start + 1..=8 {
                    let mut out = [-1.0f32; 16];
                    super::store_lanes(&mut out, j, start..end, block);
                    for (i, &v) in out.iter().enumerate() {
                        let lane = i.wrapping_sub(j);
                        let want = if (start..end).contains(&lane) {
                            100.0 + lane as f32
                        } else {
                            -1.0
                        };
                        assert_eq!(v, want, "j {j} lanes {start}..{end} at {i}");
                    }
                }
            }
        }
        // too short: all-live lanes past the end, and a partial block past the end
        let mut out = [-1.0f32; 10];
        super::store_lanes(&mut out, 4, 0..8, block);
        super::store_lanes(&mut out, 4, 3..8, block);
        assert!(out.iter().all(|&v| v == -1.0));
    }

    /// [`super::sqrtf`] is `libm::sqrtf` bit for bit (both correctly rounded): every 251st
    /// bit pattern (17 M values: all exponents, signs, subnormals, NaNs) and the specials.
    #[test]
    fn sqrtf_is_libm_sqrtf() {
        let same = |x: f32| {
            let (a, b) = (super::sqrtf(x), libm::sqrtf(x));
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        };
        for x in [
            0.0f32,
            -0.0,
            1.0,
            4.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ] {
            assert!(same(x), "{x}");
        }
        for bits in (0..=u32::MAX).step_by(251) {
            let x = f32::from_bits(bits);
            assert!(same(x), "{bits:#010x}");
        }
    }
}
