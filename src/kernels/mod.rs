//! Linear-layer kernels, one file per ISA, one dispatch point.
//!
//! `scalar` is the portable ground truth; every SIMD path is tested against it.
//! The engine calls only [`Kernels::linear`] (and [`dot_f32`] for attention scores).
//!
//! int8 path: activations are quantised dynamically per row (per token) to int8 with one f32
//! scale (`absmax / 127`), multiplied with the per-output-channel int8 weights accumulating in
//! i32, and dequantised with `x_scale * w_scale[row]`. f16 path: f16 weights, f32 arithmetic.
//!
//! Every path computes the same integer accumulators and dequantises them with the same f32
//! expression as [`scalar::gemm_i8`], so int8 outputs are bit-identical across ISAs; the f32 and
//! f16 paths differ from scalar only in summation order.
//!
//! | path | int8 inner step | tile (weight rows × activation rows) |
//! |---|---|---|
//! | [`Isa::Avx2`] | `vpsignb` + `vpmaddubsw` + `vpmaddwd`, 32 bytes | 2 × 4 |
//! | [`Isa::AvxVnni`] | `vpdpbusd` on `w + 128`, minus `128·Σx`, 32 bytes | 3 × 4, 2 × 5 |
//! | [`Isa::Neon`] | `smull` + `smlal2` + `sadalp`, 16 bytes | 4 × 4 |
//! | [`Isa::NeonDot`] | `sdot`, 16 bytes | 4 × 4 |
//! | [`Isa::Dsp`] | `sxtb16` + `smlad`, 4 bytes | 2 × 2 |
//!
//! [`Isa::AvxVnni`] has its own int8 GEMM only; its f32 / f16 GEMMs and its quantiser are the
//! AVX2 path's.
//!
//! Selection: [`Kernels::detect`] picks the best path the CPU supports (at run time on std
//! targets, at compile time on no_std), [`Kernels::from_env`] honours `M2_KERNEL`, so
//! `M2_KERNEL=avx2` still runs the plain AVX2 path on a VNNI machine.

#[cfg(feature = "std")]
mod pool;
pub mod scalar;
mod simd;
#[cfg(feature = "std")]
pub mod trace;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx_vnni;
pub mod dsp;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use crate::blob::{Matrix, WeightData};
use half::f16;

/// An instruction-set path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Isa {
    /// Portable Rust, the ground truth.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// x86_64 AVX2 + FMA + F16C + AVX-VNNI (`vpdpbusd`, VEX-encoded; Alder Lake, Zen 5): the
    /// AVX2 path with a VNNI int8 GEMM.
    AvxVnni,
    /// aarch64 NEON (widening multiplies; Raspberry Pi 4 / Cortex-A72).
    Neon,
    /// aarch64 NEON with SDOT (Raspberry Pi 5 / Cortex-A76).
    NeonDot,
    /// Cortex-M4/M7 DSP extension (SMLAD). Selected at compile time on `thumbv7em-none-eabihf`.
    Dsp,
}

impl Isa {
    /// Every path, best last.
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Dsp,
        Isa::Neon,
        Isa::NeonDot,
        Isa::Avx2,
        Isa::AvxVnni,
    ];

    /// The name `M2_KERNEL` uses.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "dotprod",
            Isa::Dsp => "dsp",
        }
    }

    /// Parses a name as `M2_KERNEL` spells it (case-insensitive, surrounding blanks ignored).
    pub fn from_name(s: &str) -> Option<Isa> {
        let s = s.trim();
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
    }

    /// Whether this build can run the path on this CPU (run-time detection on std targets).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => avx2_available(),
            Isa::AvxVnni => avx2_available() && avx_vnni_available(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::NeonDot => dotprod_available(),
            Isa::Dsp => cfg!(all(
                target_arch = "arm",
                target_os = "none",
                target_abi = "eabihf"
            )),
        }
    }
}

impl core::fmt::Display for Isa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx2_available() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}
#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx2_available() -> bool {
    cfg!(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))
}
#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx_vnni_available() -> bool {
    std::is_x86_feature_detected!("avxvnni")
}
#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx_vnni_available() -> bool {
    cfg!(target_feature = "avxvnni")
}
#[cfg(not(target_arch = "x86_64"))]
fn avx_vnni_available() -> bool {
    false
}

#[cfg(all(target_arch = "aarch64", feature = "std"))]
fn dotprod_available() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}
#[cfg(all(target_arch = "aarch64", not(feature = "std")))]
fn dotprod_available() -> bool {
    cfg!(target_feature = "dotprod")
}
#[cfg(not(target_arch = "aarch64"))]
fn dotprod_available() -> bool {
    false
}

/// Why `M2_KERNEL` could not be honoured. The caller should print it and carry on with
/// [`Kernels::detect`] (which is what [`KernelError::fallback`] returns).
#[cfg(feature = "std")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The value names no path.
    Unknown(std::string::String),
    /// The path exists but this build or CPU cannot run it.
    Unavailable(Isa),
}

#[cfg(feature = "std")]
impl KernelError {
    /// The kernels to use instead: the best available path.
    pub fn fallback(&self) -> Kernels {
        Kernels::detect()
    }
}

#[cfg(feature = "std")]
impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let best = Kernels::detect().isa;
        match self {
            KernelError::Unknown(v) => write!(
                f,
                "M2_KERNEL={v:?} is not a kernel path (expected one of scalar, avx2, avxvnni, neon, dotprod, dsp); using {best}"
            ),
            KernelError::Unavailable(isa) => {
                write!(f, "M2_KERNEL={isa}: this CPU or build cannot run it; using {best}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KernelError {}

/// Scratch the int8 path needs to quantise activations: `q[n * in]` and `scales[n]`.
/// Its size is part of the memory plan ([`crate::plan`]). No kernel needs more.
pub struct QuantScratch<'s> {
    pub q: &'s mut [i8],
    pub scales: &'s mut [f32],
}

/// The kernel set the engine uses: an ISA and (on std targets) a thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    /// Private: only constructors that checked [`Isa::is_available`] make a `Kernels`, which
    /// is what makes the `unsafe` dispatch to `#[target_feature]` code sound.
    isa: Isa,
    /// Worker threads for large linears (std only; ignored on no_std).
    threads: usize,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::SCALAR
    }
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

/// Minimum multiply-adds per worker before `linear` spreads a layer over threads: handing a
/// part to a spinning pool worker costs about a microsecond; a COCO decode-step linear of
/// 5 × 512 × 512 (1.3 M multiply-adds) takes ~7 µs at int8 on one core.
#[cfg(feature = "std")]
pub const PAR_MIN_MACS: usize = 256 << 10;

impl Kernels {
    /// The instruction-set path.
    pub const fn isa(&self) -> Isa {
        self.isa
    }

    /// Worker threads for large linears (std only; ignored on no_std).
    pub const fn threads(&self) -> usize {
        self.threads
    }

    /// The portable scalar kernels, single-threaded.
    pub const SCALAR: Kernels = Kernels {
        isa: Isa::Scalar,
        threads: 1,
    };

    /// The best path this CPU supports, single-threaded.
    pub fn detect() -> Kernels {
        let isa = Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar);
        Kernels { isa, threads: 1 }
    }

    /// `isa` single-threaded, if this build and CPU can run it.
    pub fn with_isa(isa: Isa) -> Option<Kernels> {
        isa.is_available().then_some(Kernels { isa, threads: 1 })
    }

    /// The paths this build and CPU can run (scalar first, best last).
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available())
    }

    /// The same path with `threads` workers (at least 1; only used on std targets).
    pub fn with_threads(self, threads: usize) -> Kernels {
        Kernels {
            threads: threads.max(1),
            ..self
        }
    }

    /// [`Kernels::detect`], unless `M2_KERNEL` names a path: then that one, or an error saying
    /// why not (its [`KernelError::fallback`] is the detected path).
    #[cfg(feature = "std")]
    pub fn from_env() -> Result<Kernels, KernelError> {
        match std::env::var("M2_KERNEL") {
            Err(std::env::VarError::NotPresent) => Ok(Kernels::detect()),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(KernelError::Unknown(v.to_string_lossy().into_owned()))
            }
            Ok(v) if v.trim().is_empty() => Ok(Kernels::detect()),
            Ok(v) => Kernels::from_name(&v),
        }
    }

    /// The path named `name` (as `M2_KERNEL` spells it), if known and available.
    #[cfg(feature = "std")]
    pub fn from_name(name: &str) -> Result<Kernels, KernelError> {
        let isa = Isa::from_name(name).ok_or_else(|| KernelError::Unknown(name.into()))?;
        Kernels::with_isa(isa).ok_or(KernelError::Unavailable(isa))
    }

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
        let Some(mk) = m.checked_mul(k) else { return };
        let (Some(nk), Some(nm)) = (n.checked_mul(k), n.checked_mul(m)) else {
            return;
        };
        if x.len() < nk || y.len() < nm || bias.is_some_and(|b| b.len() < m) {
            return;
        }
        let weights_ok = match w.data {
            WeightData::F32(wd) => wd.len() >= mk,
            WeightData::F16(wd) => wd.len() >= mk,
            WeightData::I8 { q, scales } => {
                q.len() >= mk && scales.len() >= m && qs.q.len() >= nk && qs.scales.len() >= n
            }
        };
        if !weights_ok {
            return;
        }
        // The checks above are the only ones: every kernel below relies on them.
        let (x, y) = (&x[..nk], &mut y[..nm]);
        #[cfg(feature = "std")]
        trace::observe(w, x, n);
        let isa = if self.isa.is_available() {
            self.isa
        } else {
            Isa::Scalar
        };
        let data = match w.data {
            WeightData::F32(wd) => Data::F32(&wd[..mk]),
            WeightData::F16(wd) => Data::F16(&wd[..mk]),
            WeightData::I8 { q, scales } => {
                let (xq, xs) = (&mut qs.q[..nk], &mut qs.scales[..n]);
                quantize(isa, x, n, k, xq, xs);
                Data::I8 {
                    xq,
                    xs,
                    wq: &q[..mk],
                    ws: &scales[..m],
                }
            }
        };
        let out = Out {
            ptr: y.as_mut_ptr(),
            ld: m,
        };
        let job = Job { isa, x, n, k, data };
        // SAFETY: x, the weights and the quantised activations hold n*k, m*k and n*k elements,
        // and `out` addresses `y`, which holds n*m (checked above). `run` writes every output
        // channel in 0..m exactly once.
        unsafe { self.run(&job, m, out) };
        if let (Some(b), true) = (bias, m > 0) {
            for row in y.chunks_exact_mut(m) {
                for (o, bv) in row.iter_mut().zip(b) {
                    *o += *bv;
                }
            }
        }
    }

    /// Splits the output channels `0..m` over workers when that pays.
    ///
    /// # Safety
    /// As for [`Job::run_range`] with the range `0..m`.
    unsafe fn run(&self, job: &Job<'_>, m: usize, out: Out) {
        #[cfg(feature = "std")]
        {
            let macs = job.n * job.k * m;
            let t = self.threads.min(macs / PAR_MIN_MACS).min(m / 16);
            if t > 1 {
                // Chunks are multiples of 16 channels so that every tile stays whole.
                let chunk = m.div_ceil(t).div_ceil(16) * 16;
                pool::run(m.div_ceil(chunk), &|part| {
                    let (r0, r1) = (part * chunk, ((part + 1) * chunk).min(m));
                    // SAFETY: each part runs once (pool::run), parts' ranges are disjoint and
                    // inside 0..m; the rest is forwarded from the caller.
                    unsafe { job.run_range(r0, r1, out) }
                });
                return;
            }
        }
        // SAFETY: forwarded to the caller.
        unsafe { job.run_range(0, m, out) }
    }
}

/// The weights (and, for int8, the quantised activations) of one `linear` call.
#[derive(Clone, Copy)]
enum Data<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    I8 {
        xq: &'a [i8],
        xs: &'a [f32],
        wq: &'a [i8],
        ws: &'a [f32],
    },
}

/// One `linear` call, validated: `x` is `[n, k]`, the weights `[m, k]`.
#[derive(Clone, Copy)]
struct Job<'a> {
    isa: Isa,
    x: &'a [f32],
    n: usize,
    k: usize,
    data: Data<'a>,
}

impl Job<'_> {
    /// Output channels `r0..r1` into `out` (channel `r` at column `r`).
    ///
    /// # Safety
    /// `r0 <= r1 <= m`, the slices hold what `Kernels::linear` checked, `out` addresses an
    /// `[n, m]` buffer and nobody else writes columns `r0..r1` meanwhile. `isa` is available.
    unsafe fn run_range(&self, r0: usize, r1: usize, out: Out) {
        let (n, k, mr) = (self.n, self.k, r1 - r0);
        let x = self.x;
        // SAFETY: shifting by r0 < m columns stays inside y; the kernel writes columns 0..mr.
        let out = Out {
            ptr: unsafe { out.ptr.add(r0) },
            ld: out.ld,
        };
        match self.data {
            Data::F32(w) => {
                let w = &w[r0 * k..r1 * k];
                match self.isa {
                    // SAFETY: AVX2/FMA/F16C detected (isa is available), shapes as documented.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::gemm_f32(x, n, k, w, mr, out) },
                    // SAFETY: NEON is baseline on aarch64; shapes as documented.
                    #[cfg(target_arch = "aarch64")]
                    Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_f32(x, n, k, w, mr, out) },
                    // SAFETY: shapes as documented.
                    _ => unsafe { scalar_f32(x, n, k, w, mr, out) },
                }
            }
            Data::F16(w) => {
                let w = &w[r0 * k..r1 * k];
                match self.isa {
                    // SAFETY: as above.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::gemm_f16(x, n, k, w, mr, out) },
                    // SAFETY: as above.
                    #[cfg(target_arch = "aarch64")]
                    Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_f16(x, n, k, w, mr, out) },
                    // SAFETY: as above.
                    _ => unsafe { scalar_f16(x, n, k, w, mr, out) },
                }
            }
            Data::I8 { xq, xs, wq, ws } => {
                let (wq, ws) = (&wq[r0 * k..r1 * k], &ws[r0..r1]);
                match self.isa {
                    // SAFETY: as above.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { avx2::gemm_i8(xq, xs, n, k, wq, ws, mr, out) },
                    // SAFETY: AVX2 and AVX-VNNI detected (isa is available); shapes as documented.
                    #[cfg(target_arch = "x86_64")]
                    Isa::AvxVnni => unsafe { avx_vnni::gemm_i8(xq, xs, n, k, wq, ws, mr, out) },
                    // SAFETY: as above.
                    #[cfg(target_arch = "aarch64")]
                    Isa::Neon => unsafe { neon::gemm_i8(xq, xs, n, k, wq, ws, mr, out) },
                    // SAFETY: dotprod detected (isa is available); shapes as documented.
                    #[cfg(target_arch = "aarch64")]
                    Isa::NeonDot => unsafe { neon::gemm_i8_dot(xq, xs, n, k, wq, ws, mr, out) },
                    // SAFETY: SMLAD exists on bare-metal Arm eabihf targets (thumbv7em); shapes as documented.
                    #[cfg(all(target_arch = "arm", target_os = "none", target_abi = "eabihf"))]
                    Isa::Dsp => unsafe {
                        dsp::gemm_i8::<dsp::Smlad>(xq, xs, n, k, wq, ws, mr, out)
                    },
                    // SAFETY: shapes as documented.
                    _ => unsafe { scalar_i8(xq, xs, n, k, wq, ws, mr, out) },
                }
            }
        }
    }
}

/// Quantises `x[n, k]` per row exactly as [`scalar::quantize_rows`] does.
fn quantize(isa: Isa, x: &[f32], n: usize, k: usize, q: &mut [i8], s: &mut [f32]) {
    match isa {
        // SAFETY: AVX2 detected (isa is available); x and q hold n*k, s holds n.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::quantize_rows(x, n, k, q, s) },
        _ => scalar::quantize_rows(x, n, k, q, s),
    }
}

/// [`scalar::gemm_f32`] writing through an [`Out`], bit for bit.
///
/// # Safety
/// `out` addresses `n` rows of at least `m` columns that only this call writes.
unsafe fn scalar_f32(x: &[f32], n: usize, k: usize, w: &[f32], m: usize, out: Out) {
    // SAFETY: forwarded.
    unsafe { scalar_tiles(x, n, k, w, m, out, |v| v) }
}

/// [`scalar::gemm_f16`] writing through an [`Out`], bit for bit.
///
/// # Safety
/// As for [`scalar_f32`].
unsafe fn scalar_f16(x: &[f32], n: usize, k: usize, w: &[f16], m: usize, out: Out) {
    // SAFETY: forwarded.
    unsafe { scalar_tiles(x, n, k, w, m, out, f16::to_f32) }
}

/// The scalar f32 / f16 GEMM in tiles of 4 weight rows × 2 activation rows
/// ([`scalar::dot_tile`]: every output summed in [`scalar::dot_f32`]'s order), then the rest.
///
/// # Safety
/// As for [`scalar_f32`]; `x` and `w` hold at least `n·k` and `m·k` elements.
unsafe fn scalar_tiles<W: Copy>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[W],
    m: usize,
    out: Out,
    f: impl Fn(W) -> f32 + Copy,
) {
    const R: usize = 4;
    const N: usize = 2;
    let xrow = |i: usize| &x[i * k..(i + 1) * k];
    let wrow = |r: usize| &w[r * k..(r + 1) * k];
    let mut r = 0;
    while r + R <= m {
        let wr: [&[W]; R] = core::array::from_fn(|j| wrow(r + j));
        let mut i = 0;
        while i + N <= n {
            let xr: [&[f32]; N] = core::array::from_fn(|a| xrow(i + a));
            let acc = scalar::dot_tile(xr, wr, k, f);
            for (a, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    // SAFETY: i + a < n, r + j < m.
                    unsafe { out.set(i + a, r + j, v) };
                }
            }
            i += N;
        }
        for i in i..n {
            let [row] = scalar::dot_tile([xrow(i)], wr, k, f);
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: i < n, r + j < m.
                unsafe { out.set(i, r + j, v) };
            }
        }
        r += R;
    }
    for r in r..m {
        for i in 0..n {
            let [[v]] = scalar::dot_tile([xrow(i)], [wrow(r)], k, f);
            // SAFETY: i < n, r < m.
            unsafe { out.set(i, r, v) };
        }
    }
}

/// [`scalar::gemm_i8`] writing through an [`Out`].
///
/// # Safety
/// As for [`scalar_f32`].
#[allow(clippy::too_many_arguments)]
unsafe fn scalar_i8(
    xq: &[i8],
    xs: &[f32],
    n: usize,
    k: usize,
    wq: &[i8],
    ws: &[f32],
    m: usize,
    out: Out,
) {
    for r in 0..m {
        for i in 0..n {
            let acc = scalar::dot_i8(&xq[i * k..(i + 1) * k], &wq[r * k..(r + 1) * k]);
            // SAFETY: i < n, r < m.
            unsafe { out.set(i, r, acc as f32 * xs[i] * ws[r]) };
        }
    }
}

/// The int8 dequantisation every path uses, so their outputs agree bit for bit.
#[inline(always)]
pub(crate) fn dequant(acc: i32, xs: f32, ws: f32) -> f32 {
    acc as f32 * xs * ws
}

/// f32 dot product (attention scores and weighted sums). Eight partial sums, which the
/// compiler vectorises; differs from [`scalar::dot_f32`] only in summation order.
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
