//! Linear-layer kernels, one file per ISA, one dispatch point.
//!
//! `scalar` is the portable ground truth; every SIMD path is tested against it.
//! The engine calls only [`Kernels::linear`] (and [`dot_f32`] for attention scores).
//!
//! int8 path: activations are quantised dynamically per row (per token) to int8 with one f32
//! scale (`absmax / 127`), multiplied with the per-output-channel int8 weights accumulating in
//! i32, and dequantised with `x_scale * w_scale[row]`. f16 path: f16 weights, f32 arithmetic.

pub mod scalar;

use crate::blob::{Matrix, WeightData};

/// An instruction-set path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, the ground truth.
    Scalar,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// aarch64 NEON (widening multiplies; Raspberry Pi 4 / Cortex-A72).
    Neon,
    /// aarch64 NEON with SDOT (Raspberry Pi 5 / Cortex-A76).
    NeonDot,
    /// Cortex-M4/M7 DSP extension (SMLAD).
    Dsp,
}

/// Scratch the int8 path needs to quantise activations: `q[n * in]` and `scales[n]`.
/// Its size is part of the memory plan ([`crate::plan`]).
pub struct QuantScratch<'s> {
    pub q: &'s mut [i8],
    pub scales: &'s mut [f32],
}

/// The kernel set the engine uses: an ISA and (on std targets) a thread count.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    /// Worker threads for large linears (std only; 1 on no_std).
    pub threads: usize,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels { isa: Isa::Scalar, threads: 1 }
    }
}

impl Kernels {
    /// The portable scalar kernels, single-threaded.
    pub const SCALAR: Kernels = Kernels { isa: Isa::Scalar, threads: 1 };

    /// `y[n, out] = x[n, in] · Wᵀ (+ bias)`, with `W = [out, in]`. All `n` rows are processed
    /// together so that each weight byte is read once. Slices longer than needed are fine;
    /// shorter ones are a caller bug (the engine sizes them from the plan) and leave `y` untouched.
    pub fn linear(
        &self,
        x: &[f32],
        n: usize,
        w: &Matrix<'_>,
        bias: Option<&[f32]>,
        y: &mut [f32],
        qs: &mut QuantScratch<'_>,
    ) {
        let (k, m) = (w.cols, w.rows);
        if x.len() < n * k || y.len() < n * m || bias.is_some_and(|b| b.len() < m) {
            return;
        }
        let (x, y) = (&x[..n * k], &mut y[..n * m]);
        match w.data {
            WeightData::F32(wd) => scalar::gemm_f32(x, n, k, wd, m, y),
            WeightData::F16(wd) => scalar::gemm_f16(x, n, k, wd, m, y),
            WeightData::I8 { q, scales } => {
                if qs.q.len() < n * k || qs.scales.len() < n {
                    return;
                }
                scalar::quantize_rows(x, n, k, &mut qs.q[..n * k], &mut qs.scales[..n]);
                scalar::gemm_i8(&qs.q[..n * k], &qs.scales[..n], n, k, q, scales, m, y);
            }
        }
        if let Some(b) = bias {
            for row in y.chunks_exact_mut(m) {
                for (o, bv) in row.iter_mut().zip(b) {
                    *o += *bv;
                }
            }
        }
    }
}

/// f32 dot product (attention scores and weighted sums).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    scalar::dot_f32(a, b)
}
