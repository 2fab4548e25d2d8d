//! The tile loop the kernels share: weight rows in blocks of `R`, and within each block the
//! activation rows in tiles of `N`; the last block and the last tile of each block are
//! narrower when `R` or `N` does not divide the count. Each ISA supplies only its tile body
//! ([`Tiles::tile`]); [`for_each_tile`] turns a run-time remainder into the tile's const
//! shape, so every call is monomorphised and inlined into the ISA's `#[target_feature]` entry
//! point: no dynamic dispatch in the loop.
//!
//! | path | `R × N` |
//! |---|---|
//! | scalar f32 / f16, int8 | 4 × 2, 1 × 1 |
//! | AVX2 f32 / f16, int8 | 2 × 6, 2 × 4 (1 × `n` for 5 to 8 rows) |
//! | AVX-VNNI int8, 1 to 6 rows per block | 4 × 1, 4 × 2, 3 × 3, 3 × 4, 2 × 5, 2 × 6 |
//! | AVX-VNNI int8, more | 3 × 4 |
//! | AVX-512 int8, 1 to 8 rows per block | 4 × 1 … 4 × 6, 3 × 7, 3 × 8 |
//! | AVX-512 int8, more | 4 × 6 |
//! | NEON / SDOT f32 / f16, int8 | 4 × 4 |
//! | Cortex-M DSP int8 | 2 × 2 |

/// A kernel's tile body over operands it holds (a [`super::operand::Gemm`] or a block of one).
pub(crate) trait Tiles {
    /// Computes and writes one `R × N` tile: weight rows (output channels) `r..r + R` against
    /// activation rows `i..i + N`, over the whole inner dimension.
    ///
    /// # Safety
    /// `r + R` and `i + N` are at most the `m` and `n` given to [`for_each_tile`]; the operands
    /// keep the kernel contract ([`super::operand`]); the instructions the body uses are
    /// enabled in the function it is inlined into.
    unsafe fn tile<const R: usize, const N: usize>(&self, r: usize, i: usize);
}

/// Runs every tile of `m` weight rows × `n` activation rows, at most `R × N` each (`R <= 4`,
/// `N <= 8`), weight blocks outermost, in ascending order.
///
/// The activation remainder `n % N` is turned into a const once, outside the loops, so that
/// each weight block runs straight-line tiles with no dispatch per block.
///
/// # Safety
/// As for [`Tiles::tile`]: `m` and `n` are within the operands `t` holds.
#[inline(always)]
pub(crate) unsafe fn for_each_tile<T: Tiles, const R: usize, const N: usize>(
    t: &T,
    m: usize,
    n: usize,
) {
    const { assert!(1 <= R && R <= 4 && 1 <= N && N <= 8) };
    // SAFETY (all arms): forwarded; `n % N` is the arm's remainder. The guards are constants.
    unsafe {
        match n % N {
            1 if N > 1 => blocks::<T, R, N, 1>(t, m, n),
            2 if N > 2 => blocks::<T, R, N, 2>(t, m, n),
            3 if N > 3 => blocks::<T, R, N, 3>(t, m, n),
            4 if N > 4 => blocks::<T, R, N, 4>(t, m, n),
            5 if N > 5 => blocks::<T, R, N, 5>(t, m, n),
            6 if N > 6 => blocks::<T, R, N, 6>(t, m, n),
            7 if N > 7 => blocks::<T, R, N, 7>(t, m, n),
            _ => blocks::<T, R, N, 0>(t, m, n),
        }
    }
}

/// [`for_each_tile`] with `n % N == NR`.
///
/// # Safety
/// As for [`for_each_tile`].
#[inline(always)]
unsafe fn blocks<T: Tiles, const R: usize, const N: usize, const NR: usize>(
    t: &T,
    m: usize,
    n: usize,
) {
    let mut r = 0;
    while r + R <= m {
        // SAFETY: rows r..r+R <= m; forwarded.
        unsafe { block::<T, R, N, NR>(t, r, n) };
        r += R;
    }
    // SAFETY (all arms): rows r..m, fewer than R; forwarded. The guards are constants.
    unsafe {
        match m - r {
            1 if R > 1 => block::<T, 1, N, NR>(t, r, n),
            2 if R > 2 => block::<T, 2, N, NR>(t, r, n),
            3 if R > 3 => block::<T, 3, N, NR>(t, r, n),
            _ => {}
        }
    }
}

/// Weight rows `r..r + R` against every activation row: `N` at a time, then the last `NR`.
///
/// # Safety
/// As for [`for_each_tile`], with `r + R <= m` and `n % N == NR`.
#[inline(always)]
unsafe fn block<T: Tiles, const R: usize, const N: usize, const NR: usize>(
    t: &T,
    r: usize,
    n: usize,
) {
    let full = n - NR;
    let mut i = 0;
    while i < full {
        // SAFETY: rows i..i+N <= full <= n; forwarded.
        unsafe { t.tile::<R, N>(r, i) };
        i += N;
    }
    if NR > 0 {
        // SAFETY: rows full..n; forwarded.
        unsafe { t.tile::<R, NR>(r, full) };
    }
}

/// The end of an int8-weight tile, shared by the SIMD paths: adds the columns `from..k` that
/// the vector loop left to each lane-summed accumulator `sums[j][t]` (weight row `r + j`,
/// activation row `i + t`) and writes the dequantised outputs, as scalar's `dot_q` and
/// `dequant` would.
///
/// # Safety
/// The rows `xp` and `wp` point at hold `k` values; `i + N <= n`, `r + R <= m`; the scales hold
/// `n` and `m` values; `out` addresses `y`, which nobody else writes meanwhile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn finish_int_tile<X: Copy + Into<i32>, const R: usize, const N: usize>(
    sums: [[i32; N]; R],
    xp: [*const X; N],
    wp: [*const i8; R],
    (r, i): (usize, usize),
    from: usize,
    k: usize,
    (xs, ws): (&[f32], &[f32]),
    out: super::operand::Out,
) {
    for j in 0..R {
        for t in 0..N {
            let mut s = sums[j][t];
            for c in from..k {
                // SAFETY: c < k (the caller's rows hold k values).
                unsafe { s += (*xp[t].add(c)).into() * *wp[j].add(c) as i32 };
            }
            // SAFETY: i + t < n, r + j < m (the caller); xs, ws hold n and m elements.
            unsafe {
                let v =
                    super::operand::dequant(s, *xs.get_unchecked(i + t), *ws.get_unchecked(r + j));
                out.set(i + t, r + j, v);
            }
        }
    }
}
