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
/// # Safety
/// As for [`Tiles::tile`]: `m` and `n` are within the operands `t` holds.
#[inline(always)]
pub(crate) unsafe fn for_each_tile<T: Tiles, const R: usize, const N: usize>(
    t: &T,
    m: usize,
    n: usize,
) {
    const { assert!(1 <= R && R <= 4 && 1 <= N && N <= 8) };
    let mut r = 0;
    while r + R <= m {
        // SAFETY: rows r..r+R <= m; forwarded.
        unsafe { block::<T, R, N>(t, r, n) };
        r += R;
    }
    // SAFETY (all arms): rows r..m, fewer than R; forwarded. The guards are constants.
    unsafe {
        match m - r {
            1 if R > 1 => block::<T, 1, N>(t, r, n),
            2 if R > 2 => block::<T, 2, N>(t, r, n),
            3 if R > 3 => block::<T, 3, N>(t, r, n),
            _ => {}
        }
    }
}

/// Weight rows `r..r + R` against every activation row, `N` at a time.
///
/// # Safety
/// As for [`for_each_tile`], with `r + R <= m`.
#[inline(always)]
unsafe fn block<T: Tiles, const R: usize, const N: usize>(t: &T, r: usize, n: usize) {
    let mut i = 0;
    while i + N <= n {
        // SAFETY: rows i..i+N <= n; forwarded.
        unsafe { t.tile::<R, N>(r, i) };
        i += N;
    }
    // SAFETY (all arms): rows i..n, fewer than N; forwarded. The guards are constants.
    unsafe {
        match n - i {
            1 if N > 1 => t.tile::<R, 1>(r, i),
            2 if N > 2 => t.tile::<R, 2>(r, i),
            3 if N > 3 => t.tile::<R, 3>(r, i),
            4 if N > 4 => t.tile::<R, 4>(r, i),
            5 if N > 5 => t.tile::<R, 5>(r, i),
            6 if N > 6 => t.tile::<R, 6>(r, i),
            7 if N > 7 => t.tile::<R, 7>(r, i),
            _ => {}
        }
    }
}
