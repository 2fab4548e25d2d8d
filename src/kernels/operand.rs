//! What a kernel is handed: one [`Gemm`] — activations, weights, shapes and the output — in
//! place of a long argument list, cut from a validated [`Job`] (one `linear` call).
//!
//! The kernel contract, stated once: a kernel that takes a `Gemm { x, w, n, k, m, out }`
//! computes `y[n, m] = x[n, k] · w[m, k]ᵀ` and writes each output `(i, r)` exactly once,
//! through `out.set(i, r, ·)`. It may rely on `x` holding `n·k` values (and `n` scales), `w`
//! holding `m·k` (and `m` scales), and `out` addressing `n` rows of at least `m` columns that
//! nobody else writes meanwhile — which [`Kernels::linear`](super::Kernels::linear) checks
//! before it builds a `Job`, and [`Job::part`] keeps for every part.

use half::f16;

/// Rows of integer values (int8, or int16 for [`crate::blob::DType::I8A16`]'s activations)
/// with one f32 scale per row (value = `q · scale`): the quantised activations `[n, k]` of a
/// `linear`, or an int8 weight matrix `[m, k]`.
#[derive(Clone, Copy, Debug)]
pub struct QRows<'a, Q = i8> {
    /// The values, row after row.
    pub q: &'a [Q],
    /// One scale per row.
    pub scales: &'a [f32],
}

/// Output of a kernel: `y[i * ld + r]` for activation row `i`, output channel `r` of the
/// kernel's range. A raw pointer so that threads can own disjoint column ranges of one `y`.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub ptr: *mut f32,
    pub ld: usize,
}

// SAFETY: an `Out` is only handed to workers that write disjoint output-channel ranges of a
// `y` borrowed mutably for the whole scope (see `Kernels::linear`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// # Safety
    /// `i * ld + r` must lie inside the `y` this `Out` was made from, and no other thread may
    /// write that element.
    #[inline(always)]
    pub unsafe fn set(self, i: usize, r: usize, v: f32) {
        // SAFETY: forwarded to the caller.
        unsafe { *self.ptr.add(i * self.ld + r) = v }
    }
}

/// The operands of one kernel call: `y[n, m] = x[n, k] · w[m, k]ᵀ` through `out` (the module
/// doc states what a kernel may rely on).
#[derive(Clone, Copy)]
pub(crate) struct Gemm<X, W> {
    /// Activations `[n, k]`.
    pub x: X,
    /// Weights `[m, k]`.
    pub w: W,
    pub n: usize,
    pub k: usize,
    pub m: usize,
    /// `y[n, m]`.
    pub out: Out,
}

/// f32 activations, f32 or f16 weights.
pub(crate) type FloatGemm<'a, W> = Gemm<&'a [f32], &'a [W]>;
/// Quantised activations, int8 weights.
pub(crate) type Int8Gemm<'a> = Gemm<QRows<'a>, QRows<'a>>;
/// int16 activations, int8 weights ([`crate::blob::DType::I8A16`]).
pub(crate) type Int16Gemm<'a> = Gemm<QRows<'a, i16>, QRows<'a>>;

/// The largest magnitude of an int16 activation in a product with `k` inputs: 32767, or less
/// when `k` is so large that `128 · A · k` would overflow an i32. Every int8 × int16 sum then
/// stays exact in i32 on every path (an int8 weight is at least −128), in any order — which is
/// what makes the paths agree bit for bit. COCO: k ≤ 2048 gives A = 8191 (13 bits).
pub const fn act16_max(k: usize) -> i32 {
    let k = if k == 0 { 1 } else { k };
    let a = i32::MAX as usize / (128 * k);
    if a > i16::MAX as usize {
        i16::MAX as i32
    } else if a == 0 {
        1
    } else {
        a as i32
    }
}

/// The int8 dequantisation every path uses, so their outputs agree bit for bit.
#[inline(always)]
pub(crate) fn dequant(acc: i32, xs: f32, ws: f32) -> f32 {
    acc as f32 * xs * ws
}

/// The weights of one `linear` call (and, for int8, its quantised activations).
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    I8 { x: QRows<'a>, w: QRows<'a> },
    I8A16 { x: QRows<'a, i16>, w: QRows<'a> },
}

/// One `linear` call, validated: `x` is `[n, k]`, the weights `[m, k]`, `out` addresses `y`
/// `[n, m]`, every slice exactly as long as that.
#[derive(Clone, Copy)]
pub(crate) struct Job<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub weights: Weights<'a>,
    pub out: Out,
}

/// A kernel call: one [`Gemm`] of the dtype's kind.
pub(crate) enum Part<'a> {
    F32(FloatGemm<'a, f32>),
    F16(FloatGemm<'a, f16>),
    I8(Int8Gemm<'a>),
    I8A16(Int16Gemm<'a>),
}

impl<'a> Job<'a> {
    /// The kernel call for output channels `r0..r1`: weight rows `r0..r1`, written to columns
    /// `r0..r1` of `y` (column `r` as the part's channel `r - r0`). Panics unless
    /// `r0 <= r1 <= m`, so a part always keeps the kernel contract.
    pub fn part(&self, r0: usize, r1: usize) -> Part<'a> {
        let (n, k) = (self.n, self.k);
        assert!(
            r0 <= r1 && r1 <= self.m,
            "part {r0}..{r1} of {} channels",
            self.m
        );
        let out = Out {
            // Inside y: r0 <= m = ld.
            ptr: self.out.ptr.wrapping_add(r0),
            ld: self.out.ld,
        };
        let m = r1 - r0;
        let rows = r0 * k..r1 * k;
        match self.weights {
            Weights::F32(w) => Part::F32(Gemm {
                x: self.x,
                w: &w[rows],
                n,
                k,
                m,
                out,
            }),
            Weights::F16(w) => Part::F16(Gemm {
                x: self.x,
                w: &w[rows],
                n,
                k,
                m,
                out,
            }),
            Weights::I8 { x, w } => Part::I8(Gemm {
                x,
                w: QRows {
                    q: &w.q[rows],
                    scales: &w.scales[r0..r1],
                },
                n,
                k,
                m,
                out,
            }),
            Weights::I8A16 { x, w } => Part::I8A16(Gemm {
                x,
                w: QRows {
                    q: &w.q[rows],
                    scales: &w.scales[r0..r1],
                },
                n,
                k,
                m,
                out,
            }),
        }
    }
}
