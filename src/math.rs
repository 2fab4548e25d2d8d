//! Element-wise and row-wise f32 math shared by every block: LayerNorm, softmax, log-softmax,
//! sigmoid, ReLU. All of it uses `libm` or [`expf`] (the engine's `e^x`, within 1 ulp, without
//! branches so that loops over it vectorise), so results do not depend on the target's libc
//! and are the same bits on every path; nothing here is a coarse approximation (micromath
//! never appears on a path that must match the reference).

/// LayerNorm epsilon of every LayerNorm in M² (PyTorch default).
pub const LN_EPS: f32 = 1e-5;

/// `x ← γ ⊙ (x − μ)/√(σ² + ε) + β` over one row of `d = gamma.len()` values (only the first
/// `d` of a longer `x`; a shorter `x` is left as it is); μ, σ² the mean and biased variance,
/// each summed by [`lane_sum`] (docs/SPEC.md §13.1).
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32]) {
    debug_assert_eq!(
        x.len(),
        gamma.len(),
        "layer_norm: one row of gamma.len() values"
    );
    layer_norm_group::<1>(x, gamma, beta);
}

/// How many interleaved partial sums [`lane_sum`] keeps: one 512-bit vector of f32, two of
/// 256 bits, four NEON registers, or 16 of a Cortex-M FPU's 32 registers.
pub const LANES: usize = 16;

/// The engine's row sum for LayerNorm: `LANES` partial sums, lane `j` adding the elements
/// `x[e]` with `e ≡ j (mod 16)` in order (plain f32 adds), then folded in halves — lane `j`
/// plus lane `j + 8`, then `+ 4`, `+ 2`, `+ 1`. Its bits do not depend on the vector width:
/// the lanes are independent chains, so a SIMD path keeps them in registers and a scalar one
/// in 16 variables, and every path gets the same result. 16 short chains instead of one long
/// one: a 512-wide row is 32 dependent adds per lane, not 512 (or Kahan's 2,048).
#[inline(always)]
pub fn lane_sum(x: &[f32]) -> f32 {
    lane_sums::<1>(x, x.len(), |_, v| v)[0]
}

/// `L` lanes folded in halves by `op`: lane `l` ← `op(lane l, lane l + L/2)`, then `L/4`, …, 1
/// ([`lane_sum`]'s 16 partial sums with `+`, [`max_of`]'s running maxima with a maximum).
#[inline(always)]
fn fold_halves<const L: usize>(mut a: [f32; L], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut w = L / 2;
    while w > 0 {
        for l in 0..w {
            a[l] = op(a[l], a[l + w]);
        }
        w /= 2;
    }
    a[0]
}

/// The engine's `e^x` (docs/SPEC.md §13.1): within 1 ulp of the correctly rounded `e^x` for
/// every `f32` (`tests::expf_is_within_one_ulp`, and its exhaustive `--ignored` twin), NaN for
/// NaN, `+∞` from 88.7228 (the round-to-nearest overflow threshold), 0 at or below −103.97208,
/// subnormal results rounded once; written without branches or a divide so that a loop of
/// calls vectorises, and without FMA, so its bits are the same on every path (SSE2, AVX2,
/// AVX-512, NEON, a Cortex-M FPU).
///
/// `k = round(x / ln 2)`, `r = x − k·ln 2` in two parts (libm's split: `k·LN2_HI` is exact),
/// `e^r ≈ 1 + r + r²·P(r)` with Cephes' degree-5 `P` on `|r| ≤ ln 2 / 2`, then `· 2^k` as two
/// exact power-of-two multiplies (`2^⌊k/2⌋ · 2^(k − ⌊k/2⌋)`, both normal): the product rounds
/// once, to a subnormal or to `∞` where the result is one. Hand-written because `libm::expf`
/// branches (a scalar loop per element) and its rational step needs a divide; the engine's
/// softmaxes, log-softmax and gates take ~90 k exps per COCO decode step.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 6.9314575195e-1, 9 low bits zero
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 1.4286067653e-6
    const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b); // 1.4426950216

    // Cephes `expf.c`: e^r = 1 + r + r²·(P0 + r·(P1 + …)) on [−ln 2 / 2, ln 2 / 2]
    const P: [f32; 6] = [
        0.5, // Cephes' 5.0000001201e-1: 0.5 in f32
        1.666_666_5e-1,
        4.166_579_6e-2,
        8.333_452e-3,
        1.398_2e-3,
        1.987_569_2e-4,
    ];
    // NaN → −104 here (and back to NaN at the end); beyond ±(104, 89) the result is 0 or ∞
    // either way, and k stays in [−150, 128].
    #[allow(clippy::manual_clamp)] // clamp would keep a NaN
    let xc = x.max(-104.0).min(89.0);
    let half = if xc < 0.0 { -0.5 } else { 0.5 };
    // SAFETY: |INV_LN2 · xc ± 0.5| < 151, finite: in i32 range.
    let k: i32 = unsafe { (INV_LN2 * xc + half).to_int_unchecked() };
    let kf = k as f32;
    let r = (xc - kf * LN2_HI) - kf * LN2_LO;
    let p = ((((P[5] * r + P[4]) * r + P[3]) * r + P[2]) * r + P[1]) * r + P[0];
    let y = p * (r * r) + r + 1.0;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let k1 = k >> 1; // k in [−150, 128]: k1 and k − k1 in [−75, 64]
    let e = y * pow2(k1) * pow2(k - k1);
    // NaN: `x + x` (the same NaN, quieted), not `x` itself. With `x`, an in-place loop
    // `*v = expf(*v)` stores only where `v` is not NaN, which LLVM vectorises as a masked
    // store (`vmaskmovps`, microcoded on AMD cores; README, tenth round).
    if x.is_nan() {
        x + x
    } else {
        e
    }
}

/// Most rows the `_rows` functions below run in lockstep: a row's sums are sequential chains,
/// and on an out-of-order core with vector registers several rows' chains interleave instead of
/// waiting on one another. A microcontroller (in-order, no vector unit, 32 single-precision
/// registers) gains nothing and would spill the rows' sums to the stack: one row at a time
/// there. Either way the bits are the same.
const LOCKSTEP_ROWS: usize = if cfg!(target_os = "none") { 1 } else { 8 };

/// Lanes of [`max_of`] on a long row: 64 (four 512-bit or eight 256-bit chains, so the vector
/// unit is not waiting on one maximum's latency before the next), 8 on a microcontroller (its
/// 32 FPU registers). Rows shorter than [`LONG_ROW`] (attention's, a few dozen keys) take 8,
/// where a 64-lane fold would cost more than the chain it saves.
const MAX_LANES: usize = if cfg!(target_os = "none") { 8 } else { 64 };

/// The row length from which [`max_of`] takes [`MAX_LANES`] lanes (the vocabulary's rows, not
/// attention's).
const LONG_ROW: usize = 256;

/// The largest value of `x`, NaNs ignored (−∞ for an empty or all-NaN row): `L` running maxima
/// (element `e` into lane `e mod L`, and a row's last `L` values once more when its length is
/// not a multiple of `L`; `L` = 8, or 64 from 256 values on except on a microcontroller),
/// folded in halves, so it vectorises. The value does not depend on the lanes; only the sign of
/// a zero maximum can (it is the first zero its lane met). The softmaxes give the same bits
/// either way: `x − (±0)` is the same value, `e^(±0) = 1`, and `±0 + ln Σ e^(x − max)` is `+0`
/// or the logarithm, as `Σ ≥ 1` (`tests::signed_zero_maxima_give_the_same_softmax`).
#[inline(always)]
pub fn max_of(x: &[f32]) -> f32 {
    if x.len() >= LONG_ROW {
        max_in_lanes::<MAX_LANES>(x)
    } else {
        max_in_lanes::<8>(x)
    }
}

/// [`max_of`] in `L` lanes.
#[inline(always)]
fn max_in_lanes<const L: usize>(x: &[f32]) -> f32 {
    // `v > m` is false for a NaN `v`, and `m` is never NaN: one `maxps` per vector on x86
    #[inline(always)]
    fn larger(m: f32, v: f32) -> f32 {
        if v > m {
            v
        } else {
            m
        }
    }
    let mut m = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    // each block's maxima into a fresh array: with `m[l] = larger(m[l], v)` LLVM keeps only
    // the stores where `v` is larger, as masked stores into a stack copy of `m` (microcoded on
    // AMD; README, tenth round)
    for ch in chunks {
        let mut next = m;
        for l in 0..L {
            next[l] = larger(m[l], ch[l]);
        }
        m = next;
    }
    // the tail as one more full block: the last L values when the row has them (some seen
    // twice, which leaves a maximum as it is), else padded with −∞ (never larger). Every index
    // into `m` is a constant, so the maxima stay in registers (indexed at run time they would
    // live in memory, each step a masked store and a reload).
    if !tail.is_empty() {
        let mut pad = [f32::NEG_INFINITY; L];
        let last: &[f32] = match x.len().checked_sub(L) {
            Some(start) => &x[start..],
            None => {
                pad[..tail.len()].copy_from_slice(tail);
                &pad
            }
        };
        for l in 0..L {
            m[l] = larger(m[l], last[l]);
        }
    }
    fold_halves(m, larger)
}

/// [`max_of`] of each of the `G` rows of `n` values of `x`. (A loop: `array::from_fn`'s
/// closure is not always inlined, and `max_of` outside the caller's vectorised code runs with
/// the baseline's instructions.)
#[inline(always)]
fn row_maxima<const G: usize>(x: &[f32], n: usize) -> [f32; G] {
    let mut max = [f32::NEG_INFINITY; G];
    for (m, row) in max.iter_mut().zip(x.chunks_exact(n.max(1))) {
        *m = max_of(row);
    }
    max
}

/// [`layer_norm`] on each of the `x.len() / d` rows of `x` (`d = gamma.len()`), bit for bit,
/// up to eight rows in lockstep: every row's sums are its own [`lane_sum`] chains, but the
/// rows' chains are independent and interleave instead of waiting on one another's additions.
#[inline(always)]
pub fn layer_norm_rows(x: &mut [f32], gamma: &[f32], beta: &[f32]) {
    layer_norm_rows_in_lockstep(x, gamma, beta, LOCKSTEP_ROWS);
}

/// [`layer_norm_rows`] with at most `lockstep` rows at a time (1 to 8; 1 on a microcontroller
/// whatever the caller asks): the same bits for any `lockstep`. The x86_64 AVX2 and AVX-512
/// paths take 1 ([`crate::kernels::Kernels::layer_norm_rows`]): there a row's 16 lanes are one
/// or two registers, and LLVM does not unroll the rows' loop for those targets, so the
/// lockstep rows' sums would live in memory (measured 2× slower).
#[inline(always)]
pub fn layer_norm_rows_in_lockstep(x: &mut [f32], gamma: &[f32], beta: &[f32], lockstep: usize) {
    let d = gamma.len();
    if d == 0 {
        return;
    }
    let rows = x.len() / d;
    let mut r = 0;
    while r < rows {
        let g = (rows - r).min(lockstep.clamp(1, LOCKSTEP_ROWS));
        let block = &mut x[r * d..(r + g) * d];
        match g {
            1 => layer_norm_group::<1>(block, gamma, beta),
            2 => layer_norm_group::<2>(block, gamma, beta),
            3 => layer_norm_group::<3>(block, gamma, beta),
            4 => layer_norm_group::<4>(block, gamma, beta),
            5 => layer_norm_group::<5>(block, gamma, beta),
            6 => layer_norm_group::<6>(block, gamma, beta),
            7 => layer_norm_group::<7>(block, gamma, beta),
            _ => layer_norm_group::<8>(block, gamma, beta),
        }
        r += g;
    }
}

/// [`layer_norm`] on `G` rows of `gamma.len()` values at once (see [`layer_norm_rows`]): per
/// row `μ = lane_sum(x) / d`, `σ² = lane_sum((x − μ)²) / d`, then
/// `(x − μ) · (1 / √(σ² + ε)) · γ + β`.
#[inline(always)]
fn layer_norm_group<const G: usize>(x: &mut [f32], gamma: &[f32], beta: &[f32]) {
    let d = gamma.len();
    let Some(x) = x.get_mut(..G * d) else {
        return;
    };
    let n = d as f32;
    let s = lane_sums::<G>(x, d, |_, v| v);
    let mut mean = s;
    for m in mean.iter_mut() {
        *m /= n;
    }
    let var = lane_sums::<G>(x, d, |t, v| {
        let c = v - mean[t];
        c * c
    });
    for t in 0..G {
        let inv = 1.0 / crate::kernels::sqrtf(var[t] / n + LN_EPS);
        let row = &mut x[t * d..(t + 1) * d];
        for ((v, gm), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean[t]) * inv * gm + b;
        }
    }
}

/// [`lane_sum`] of `f(t, x)` over each of the `G` rows of `d` values of `x`, the rows' lanes
/// side by side (independent chains that interleave).
#[inline(always)]
fn lane_sums<const G: usize>(x: &[f32], d: usize, f: impl Fn(usize, f32) -> f32) -> [f32; G] {
    let mut acc = [[0.0f32; LANES]; G];
    let full = d / LANES * LANES;
    for e0 in (0..full).step_by(LANES) {
        for (t, acc) in acc.iter_mut().enumerate() {
            let ch = &x[t * d + e0..t * d + e0 + LANES];
            for l in 0..LANES {
                acc[l] += f(t, ch[l]);
            }
        }
    }
    for (t, acc) in acc.iter_mut().enumerate() {
        for (a, &v) in acc.iter_mut().zip(&x[t * d + full..(t + 1) * d]) {
            *a += f(t, v);
        }
    }
    let mut out = [0.0f32; G];
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = fold_halves(acc, |a, b| a + b);
    }
    out
}

/// Compensated (Kahan) sum: accurate row sums on targets without a double-precision FPU.
pub fn sum(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    let mut c = 0.0f32;
    for v in x {
        let y = v - c;
        let t = s + y;
        c = (t - s) - y;
        s = t;
    }
    s
}

/// In-place softmax over one row. `-inf` entries get weight 0. A row that is entirely `-inf`
/// (impossible in M², docs/SPEC.md §4.3) gives zeros instead of NaN.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = max_of(x);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    for v in x.iter_mut() {
        *v = expf(*v - max);
    }
    let mut total = 0.0f32;
    for v in x.iter() {
        total += *v;
    }
    let inv = 1.0 / total;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `$group::<G>(block, n)` on consecutive blocks of `G ≤ $max` rows of `n` values of `$x`
/// (`$max` at a time, then the rest; nothing when `n` is 0).
macro_rules! in_lockstep {
    ($x:expr, $n:expr, $group:ident, $max:literal, [$($g:literal),*]) => {{
        let (x, n): (&mut [f32], usize) = ($x, $n);
        if n > 0 {
            let rows = x.len() / n;
            let mut r = 0;
            while r < rows {
                let g = (rows - r).min($max).min(LOCKSTEP_ROWS);
                let block = &mut x[r * n..(r + g) * n];
                match g {
                    $($g => $group::<$g>(block, n),)*
                    _ => $group::<$max>(block, n),
                }
                r += g;
            }
        }
    }};
}

/// [`softmax`] on each of the `x.len() / n` rows of `n` values, bit for bit, up to eight rows
/// in lockstep: every row's sum is the same sequential chain, but the rows' chains are
/// independent and interleave instead of waiting on one another's additions.
#[inline(always)]
pub fn softmax_rows(x: &mut [f32], n: usize) {
    in_lockstep!(x, n, softmax_group, 8, [1, 2, 3, 4, 5, 6, 7]);
}

/// [`softmax`] on `G` rows of `n` values at once (see [`softmax_rows`]).
#[inline(always)]
fn softmax_group<const G: usize>(x: &mut [f32], n: usize) {
    let x = &mut x[..G * n];
    let max = row_maxima::<G>(x, n);
    // x − max row by row, then e^x over the G rows as one run (one vector tail, not G): the
    // same `expf(x − max)`. A row whose max is −∞ is left as it is and zeroed below.
    for (row, &m) in x.chunks_exact_mut(n).zip(&max) {
        if m != f32::NEG_INFINITY {
            for v in row.iter_mut() {
                *v -= m;
            }
        }
    }
    for v in x.iter_mut() {
        *v = expf(*v);
    }
    let mut total = [0.0f32; G];
    for e in 0..n {
        for t in 0..G {
            total[t] += x[t * n + e];
        }
    }
    for ((row, &m), &tot) in x.chunks_exact_mut(n).zip(&max).zip(&total) {
        if m == f32::NEG_INFINITY {
            row.fill(0.0);
        } else {
            let inv = 1.0 / tot;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// In-place log-softmax over one row: `x − max − ln Σ exp(x − max)`.
#[inline(always)]
pub fn log_softmax(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    log_softmax_group::<1>(x, x.len());
}

/// [`log_softmax`] on each of the `x.len() / n` rows of `n` values, bit for bit, up to eight
/// rows in lockstep: every row's eight Kahan chains are its own, but the rows' chains are
/// independent and interleave instead of waiting on one another's additions.
#[inline(always)]
pub fn log_softmax_rows(x: &mut [f32], n: usize) {
    in_lockstep!(x, n, log_softmax_group, 8, [1, 2, 3, 4, 5, 6, 7]);
}

/// `s + v` by Kahan's compensated step (`c` the running compensation).
#[inline(always)]
fn kahan_add(s: &mut f32, c: &mut f32, v: f32) {
    let y = v - *c;
    let t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

/// [`log_softmax`] on `G` rows of `n` values at once (see [`log_softmax_rows`]).
#[inline(always)]
fn log_softmax_group<const G: usize>(x: &mut [f32], n: usize) {
    // Σ exp(x − max): exp in blocks (vectorised), summed by eight interleaved Kahan sums (lane
    // j takes elements ≡ j mod 8; independent chains, so they vectorise and do not wait on
    // one another), then the lanes' sums and compensations combined by a Kahan sum.
    const L: usize = 8;
    // exps per row and block: a multiple of the 8 lanes (so a block's local index ≡ its index
    // in the row mod 8); 16 floats (64 B of stack, one row at a time) on a microcontroller,
    // whose stack is small, 64 (2 KB for eight rows) elsewhere: fewer, longer vector loops
    const B: usize = if cfg!(target_os = "none") { 16 } else { 64 };
    let x = &mut x[..G * n];
    let max = row_maxima::<G>(x, n);
    let (mut s, mut c) = ([[0.0f32; L]; G], [[0.0f32; L]; G]);
    let mut e = [[0.0f32; B]; G];
    let mut b0 = 0;
    while b0 < n {
        let len = (n - b0).min(B);
        for t in 0..G {
            let row = &x[t * n + b0..t * n + b0 + len];
            for (ev, v) in e[t][..len].iter_mut().zip(row) {
                *ev = expf(v - max[t]);
            }
        }
        let full = len / L * L;
        for ch in (0..full).step_by(L) {
            for t in 0..G {
                for j in 0..L {
                    kahan_add(&mut s[t][j], &mut c[t][j], e[t][ch + j]);
                }
            }
        }
        // the last block's tail into lanes 0..len − full, the other lanes kept by a select
        // (constant indices into `s` and `c`, which stay in registers; see `max_in_lanes`)
        if full < len {
            for t in 0..G {
                for j in 0..L {
                    let (mut sj, mut cj) = (s[t][j], c[t][j]);
                    kahan_add(&mut sj, &mut cj, e[t][(full + j).min(B - 1)]);
                    if full + j < len {
                        (s[t][j], c[t][j]) = (sj, cj);
                    }
                }
            }
        }
        b0 += len;
    }
    for (t, row) in x.chunks_exact_mut(n).enumerate() {
        let mut parts = [0.0f32; 2 * L];
        for j in 0..L {
            parts[j] = s[t][j];
            parts[L + j] = -c[t][j];
        }
        let lse = max[t] + libm::logf(sum(&parts));
        for v in row.iter_mut() {
            *v -= lse;
        }
    }
}

/// Logistic sigmoid `1 / (1 + e^{−x})`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + expf(-x))
}

/// In-place ReLU.
#[inline(always)]
pub fn relu(x: &mut [f32]) {
    // A select rather than a conditional store: vectorises, and no branch on the sign of
    // every element (half of them mispredicted). Same values: −0.0 stays, a NaN stays NaN
    // (`v − 0`; quieted). The opaque zero keeps the second arm from being `*v` itself, which
    // LLVM turns back into "store only the zeros", a masked store (`vmaskmovps`, microcoded on
    // AMD; README, tenth round).
    let zero = core::hint::black_box(0.0f32);
    for v in x {
        *v = if *v < 0.0 { 0.0 } else { *v - zero };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn layer_norm_matches_definition() {
        let mut x = [1.0f32, 2.0, 3.0, 6.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4]);
        // mean 3, biased var 3.5
        let inv = 1.0 / (3.5f32 + LN_EPS).sqrt();
        for (v, e) in x.iter().zip([-2.0f32, -1.0, 0.0, 3.0]) {
            assert!((v - e * inv).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_masks_neg_inf_and_sums_to_one() {
        let mut x = [0.5f32, f32::NEG_INFINITY, -1.0, 2.0];
        softmax(&mut x);
        assert_eq!(x[1], 0.0);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut all = [f32::NEG_INFINITY; 3];
        softmax(&mut all);
        assert_eq!(all, [0.0; 3]);
    }

    #[test]
    fn relu_zeroes_negatives_and_keeps_the_rest() {
        let mut x = [
            -2.5,
            -0.0,
            0.0,
            3.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            -1e-45,
        ];
        relu(&mut x);
        let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let want = [0.0f32, -0.0, 0.0, 3.0, 0.0, f32::INFINITY];
        assert_eq!(bits[..6], want.map(f32::to_bits), "{x:?}");
        assert!(x[6].is_nan(), "relu(NaN) = {}", x[6]);
        assert_eq!(x[7].to_bits(), 0, "a negative subnormal becomes +0");
    }

    #[test]
    fn log_softmax_of_equal_logits_is_minus_ln_v() {
        let mut x = [0.0f32; 10201];
        log_softmax(&mut x);
        let e = -(10201f32).ln();
        assert!(x.iter().all(|v| (v - e).abs() < 1e-5));
    }

    /// Distance in units in the last place between `expf(x)` and the correctly rounded `e^x`
    /// (f64's `exp` rounded to f32; both non-negative, so their bit patterns are ordered).
    fn ulps(x: f32) -> u32 {
        let (got, want) = (expf(x), (x as f64).exp() as f32);
        if x.is_nan() {
            assert!(got.is_nan(), "expf(NaN) = {got}");
            return 0;
        }
        assert!(got >= 0.0, "expf({x:e}) = {got:e}");
        got.to_bits().abs_diff(want.to_bits())
    }

    /// The engine's `e^x` is within 1 ulp of the correctly rounded result on the whole range
    /// the engine uses densely, on both sides of the overflow, underflow and subnormal
    /// thresholds, on the specials, and on a stride over every bit pattern (all of them: the
    /// ignored test below).
    #[test]
    fn expf_is_within_one_ulp() {
        let mut worst = (0, 0.0f32);
        let mut check = |x: f32| {
            let u = ulps(x);
            if u > worst.0 {
                worst = (u, x);
            }
        };
        for x in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            1.0,
            -1.0,
        ] {
            check(x);
        }
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert_eq!(expf(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-0.0), 1.0);
        assert_eq!(expf(89.0), f32::INFINITY);
        assert_eq!(expf(-104.0).to_bits(), 0);
        // overflow (88.72), underflow (−103.97), the last normal result (−87.34), ln 2 / 2
        for t in [0x42b1_7218u32, 0x42cf_f1b5, 0x42ae_ac50, 0x3eb1_7218] {
            for b in t.saturating_sub(4096)..=t.saturating_add(4096) {
                check(f32::from_bits(b));
                check(f32::from_bits(b | 0x8000_0000));
            }
        }
        for i in -1_520_000..=1_520_000 {
            check(i as f32 * 1e-4); // [-152, 152], step 1e-4
        }
        let mut b = 0u64;
        while b < 1 << 32 {
            check(f32::from_bits(b as u32));
            b += 997;
        }
        assert!(worst.0 <= 1, "{} ulp at {:e}", worst.0, worst.1);
    }

    /// Every one of the 2³² inputs (`cargo test --release --lib -- --ignored expf`, ~3 min).
    #[test]
    #[ignore]
    fn expf_is_within_one_ulp_exhaustive() {
        let worst = (0..=u32::MAX)
            .map(|b| ulps(f32::from_bits(b)))
            .max()
            .unwrap_or(0);
        assert!(worst <= 1, "{worst} ulp");
    }

    #[test]
    fn softmax_and_sigmoid_use_the_engine_expf() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 30.0).collect();
        let mut y = x.clone();
        softmax(&mut y);
        let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f32> = x.iter().map(|v| expf(v - max)).collect();
        let mut total = 0.0f32;
        for v in &e {
            total += v;
        }
        let inv = 1.0 / total;
        for (a, b) in y.iter().zip(&e) {
            assert_eq!(a.to_bits(), (b * inv).to_bits());
        }
        for v in &x {
            assert_eq!(sigmoid(*v).to_bits(), (1.0 / (1.0 + expf(-v))).to_bits());
        }
    }

    #[test]
    fn max_of_is_the_fold() {
        let mut x: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1009) as f32 - 500.0)
            .collect();
        for n in [0usize, 1, 7, 8, 9, 17, 1003] {
            let f = x[..n].iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            assert_eq!(max_of(&x[..n]).to_bits(), f.to_bits());
        }
        x[3] = f32::NAN;
        x[1000] = 1e9;
        assert_eq!(max_of(&x), 1e9);
        assert_eq!(max_of(&[f32::NAN; 9]), f32::NEG_INFINITY);
    }

    /// `lane_sum` is its definition (16 sequential chains by index mod 16, folded in halves),
    /// and on a 512-wide row with a large common offset it stays within a few f32 ulps of the
    /// f64 sum.
    #[test]
    fn lane_sum_is_sixteen_chains_folded_in_halves() {
        for n in [0usize, 1, 15, 16, 17, 64, 100, 512, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| 1e3 + ((i * 7919 % 1013) as f32 - 500.0) * 0.013)
                .collect();
            let mut chains = [0.0f32; 16];
            for (i, v) in x.iter().enumerate() {
                chains[i % 16] += v;
            }
            let h8: Vec<f32> = (0..8).map(|l| chains[l] + chains[l + 8]).collect();
            let h4: Vec<f32> = (0..4).map(|l| h8[l] + h8[l + 4]).collect();
            let want = (h4[0] + h4[2]) + (h4[1] + h4[3]);
            assert_eq!(lane_sum(&x).to_bits(), want.to_bits(), "n {n}");
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            let err = (lane_sum(&x) as f64 - exact).abs();
            assert!(
                err <= exact.abs() * 4.0 * f32::EPSILON as f64,
                "n {n}: {err}"
            );
        }
    }

    /// One row of `layer_norm` is its written definition: μ and σ² by `lane_sum`, then
    /// `(x − μ) · (1 / √(σ² + ε)) · γ + β`, bit for bit; and it is within 1e-5 of the f64
    /// LayerNorm on rows with a large offset (where a single chain of f32 adds drifts).
    #[test]
    fn layer_norm_is_its_lane_sum_definition() {
        for d in [1usize, 7, 16, 64, 100, 512] {
            let gamma: Vec<f32> = (0..d)
                .map(|i| 1.0 + (i as f32 * 0.37).sin() * 0.1)
                .collect();
            let beta: Vec<f32> = (0..d).map(|i| (i as f32 * 0.11).cos() * 0.05).collect();
            let x: Vec<f32> = (0..d)
                .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.013 + 300.0)
                .collect();
            let n = d as f32;
            let mean = lane_sum(&x) / n;
            let c2: Vec<f32> = x.iter().map(|v| (v - mean) * (v - mean)).collect();
            let inv = 1.0 / libm::sqrtf(lane_sum(&c2) / n + LN_EPS);
            let want: Vec<f32> = x
                .iter()
                .zip(&gamma)
                .zip(&beta)
                .map(|((v, g), b)| (v - mean) * inv * g + b)
                .collect();
            let mut got = x.clone();
            layer_norm(&mut got, &gamma, &beta);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "d {d}");
            let m64 = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let v64 = x.iter().map(|&v| (v as f64 - m64).powi(2)).sum::<f64>() / d as f64;
            for (i, g) in got.iter().enumerate() {
                let e = (x[i] as f64 - m64) / (v64 + LN_EPS as f64).sqrt() * gamma[i] as f64
                    + beta[i] as f64;
                assert!((*g as f64 - e).abs() < 1e-5, "d {d} [{i}]: {g} vs {e}");
            }
        }
    }

    #[test]
    fn layer_norm_rows_is_layer_norm_bit_for_bit() {
        for d in [1usize, 7, 16, 17, 64, 100, 512] {
            let gamma: Vec<f32> = (0..d)
                .map(|i| 1.0 + (i as f32 * 0.37).sin() * 0.1)
                .collect();
            let beta: Vec<f32> = (0..d).map(|i| (i as f32 * 0.11).cos() * 0.05).collect();
            for rows in 0..=19 {
                let x: Vec<f32> = (0..rows * d)
                    .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.013 + (i % 3) as f32 * 1e3)
                    .collect();
                let mut want = x.clone();
                for row in want.chunks_exact_mut(d) {
                    layer_norm(row, &gamma, &beta);
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let mut got = x.clone();
                layer_norm_rows(&mut got, &gamma, &beta);
                assert_eq!(bits(&got), bits(&want), "d {d} rows {rows}");
                for lockstep in 0..=9 {
                    let mut got = x.clone();
                    layer_norm_rows_in_lockstep(&mut got, &gamma, &beta, lockstep);
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "d {d} rows {rows} lockstep {lockstep}"
                    );
                }
            }
        }
    }

    /// [`softmax`]'s arithmetic with the row's maximum given.
    fn softmax_with_max(x: &mut [f32], max: f32) {
        for v in x.iter_mut() {
            *v = expf(*v - max);
        }
        let inv = 1.0 / x.iter().fold(0.0f32, |t, v| t + v);
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    /// A row whose maximum is zero, met as −0 and +0 in any lanes: `max_of`'s sign of zero
    /// depends on where they sit, the softmaxes' bits do not (either sign gives the same
    /// outputs, and the row functions give them).
    #[test]
    fn signed_zero_maxima_give_the_same_softmax() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for n in [1usize, 2, 9, 50, 64, 65, 130, 200, 255, 256, 300, 1000] {
            for pattern in 0..12usize {
                // zeros of both signs at pattern-dependent places, the rest negative
                let row: Vec<f32> = (0..n)
                    .map(|i| match (i * 7 + pattern * 13) % (pattern + 3) {
                        0 => -0.0,
                        1 if pattern % 2 == 0 => 0.0,
                        _ => -((i % 17) as f32) * 0.75 - 0.25,
                    })
                    .collect();
                if !row.contains(&0.0) {
                    continue;
                }
                assert_eq!(max_of(&row), 0.0);
                type Rows = fn(&mut [f32], usize);
                type WithMax = fn(&mut [f32], f32);
                let fns: [(&str, Rows, WithMax); 2] = [
                    ("softmax", softmax_rows, softmax_with_max),
                    ("log-softmax", log_softmax_rows, log_softmax_with_max),
                ];
                for (name, rows_fn, with_max) in fns {
                    let (mut plus, mut minus) = (row.clone(), row.clone());
                    with_max(&mut plus, 0.0);
                    with_max(&mut minus, -0.0);
                    assert_eq!(bits(&plus), bits(&minus), "{name}, n {n} pattern {pattern}");
                    for rows in [1usize, 3, 8] {
                        let mut got: Vec<f32> = row.repeat(rows);
                        rows_fn(&mut got, n);
                        let want = plus.repeat(rows);
                        assert_eq!(bits(&got), bits(&want), "{name}, n {n} pattern {pattern}");
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_rows_is_softmax_bit_for_bit() {
        for n in [1usize, 2, 7, 8, 9, 50, 90] {
            for rows in 0..=19 {
                let mut x: Vec<f32> = (0..rows * n)
                    .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.05)
                    .collect();
                for (i, v) in x.iter_mut().enumerate() {
                    if i % 11 == 3 {
                        *v = f32::NEG_INFINITY; // masked keys
                    }
                }
                if rows > 2 {
                    x[2 * n..3 * n].fill(f32::NEG_INFINITY); // a fully masked row
                }
                let mut want = x.clone();
                for row in want.chunks_exact_mut(n) {
                    softmax(row);
                }
                softmax_rows(&mut x, n);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x), bits(&want), "n {n} rows {rows}");
            }
        }
    }

    /// The definition as it stood: one row, blocks of 64, eight Kahan lanes.
    fn log_softmax_one_row(x: &mut [f32]) {
        log_softmax_with_max(x, max_of(x));
    }

    /// [`log_softmax_one_row`] with the row's maximum given.
    fn log_softmax_with_max(x: &mut [f32], max: f32) {
        let (mut s, mut c) = ([0.0f32; 8], [0.0f32; 8]);
        for (i, v) in x.iter().enumerate() {
            let (j, e) = (i % 8, expf(v - max));
            let y = e - c[j];
            let t = s[j] + y;
            c[j] = (t - s[j]) - y;
            s[j] = t;
        }
        let mut parts = [0.0f32; 16];
        for j in 0..8 {
            parts[j] = s[j];
            parts[8 + j] = -c[j];
        }
        let lse = max + libm::logf(sum(&parts));
        for v in x.iter_mut() {
            *v -= lse;
        }
    }

    #[test]
    fn log_softmax_rows_is_the_one_row_definition_bit_for_bit() {
        for n in [1usize, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 10201] {
            for rows in 0..=9 {
                let x: Vec<f32> = (0..rows * n)
                    .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.037 + (i % 7) as f32)
                    .collect();
                let mut want = x.clone();
                for row in want.chunks_exact_mut(n) {
                    log_softmax_one_row(row);
                }
                let mut one = x.clone();
                for row in one.chunks_exact_mut(n) {
                    log_softmax(row);
                }
                let mut got = x.clone();
                log_softmax_rows(&mut got, n);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&want), "n {n} rows {rows}");
                assert_eq!(bits(&got), bits(&want), "n {n} rows {rows}");
            }
        }
    }

    #[test]
    fn kahan_sum_is_accurate_where_naive_f32_drifts() {
        let x = [0.1f32; 100_000];
        let exact = x.iter().map(|&v| v as f64).sum::<f64>();
        let naive = x.iter().sum::<f32>() as f64;
        let kahan = sum(&x) as f64;
        assert!(
            (kahan - exact).abs() <= exact * 1e-7,
            "kahan {kahan} vs {exact}"
        );
        assert!((naive - exact).abs() > (kahan - exact).abs() * 10.0);
    }
}
