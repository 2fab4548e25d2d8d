//! Engine code outside the GEMMs — attention, softmax, log-softmax, LayerNorm, gates — compiled
//! for the selected path's vector unit, and the f32 dot product it is built on ([`dot_f32`]).
//!
//! [`Kernels::vectorised`] runs a closure inside a `#[target_feature]` function, so the code
//! inlined into it (the model's `#[inline(always)]` bodies) is vectorised with AVX2 instead of
//! the x86_64 baseline's SSE2. Same Rust, same operations in the same order (Rust never fuses a
//! multiply and an add on its own, nor reorders float sums), so the results are bit for bit
//! those of the baseline build.

use super::Kernels;

impl Kernels {
    /// Run `f` with this path's vector instructions enabled for the code inlined into it.
    #[inline(always)]
    pub fn vectorised<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2`, `Isa::AvxVnni` and `Isa::Avx512` are only selected when the
            // CPU has AVX2, FMA and F16C (`Isa::is_available`, checked by every constructor of
            // `Kernels` with that isa). The VNNI paths' non-GEMM code is the AVX2 path's.
            super::Isa::Avx2 | super::Isa::AvxVnni | super::Isa::Avx512 => unsafe { avx2(f) },
            _ => f(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
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
