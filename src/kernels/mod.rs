//! Linear-layer kernels, one file per ISA, one dispatch point (this file).
//!
//! `scalar` is the portable ground truth; every SIMD path is tested against it.
//! The engine calls only [`Kernels::linear`] (and [`dot_f32`] for attention scores).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Isa`] detection and selection, the [`Kernels`] API, dispatch to a path |
//! | `operand.rs` | what a kernel is handed (one `Gemm`: operands, shapes, output); its contract |
//! | `tiles.rs` | the tile loop the paths share; each path supplies its tile body |
//! | `scalar.rs` | the ground truth, and the scalar path's tiles |
//! | `avx2.rs`, `avx_vnni.rs`, `avx512.rs`, `neon.rs`, `dsp.rs` | the SIMD paths |
//! | `simd.rs` | [`dot_f32`], and non-GEMM code compiled for the path's vector unit |
//! | `pool.rs`, `parts.rs`, `trace.rs` | worker threads; a step's parts on them; watching linears for calibration (std) |
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
//! | [`Isa::Avx512`] | `vpdpbusd` (zmm) on `w + 128`, minus `128·Σx`, 64 bytes, masked tail | 4 × 6, 4 × 5 |
//! | [`Isa::Neon`] | `smull` + `smlal2` + `sadalp`, 16 bytes | 4 × 4 |
//! | [`Isa::NeonDot`] | `sdot`, 16 bytes | 4 × 4 |
//! | [`Isa::Dsp`] (Cortex-M4/M7, 32-bit Arm Linux) | `sxtb16` + `smlad`, 4 bytes | 2 × 2 |
//!
//! [`Isa::AvxVnni`] and [`Isa::Avx512`] have their own int8 GEMMs only; their f32 / f16 GEMMs
//! and their quantiser are the AVX2 path's.
//!
//! Selection: [`Kernels::detect`] picks the best path the CPU supports (at run time on std
//! targets, at compile time on no_std), [`Kernels::from_env`] honours `M2_KERNEL`, so
//! `M2_KERNEL=avx2` still runs the plain AVX2 path on a VNNI machine, and `M2_KERNEL=avxvnni`
//! the 256-bit VNNI path on an AVX-512 one.

mod operand;
mod parts;
#[cfg(feature = "std")]
mod pool;
pub mod scalar;
mod simd;
mod tiles;
#[cfg(feature = "std")]
pub mod trace;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod avx_vnni;
pub mod dsp;
#[cfg(target_arch = "aarch64")]
pub mod neon;

pub use operand::{act16_max, QRows};
pub use parts::{PAR_MIN_EXPS, PAR_MIN_F32_MACS};
pub use simd::{dot_f32, sqrtf, KeyColumns};

use crate::blob::{Matrix, WeightData};
use operand::{Job, Out, Part, Weights};

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
    /// x86_64 AVX2 + FMA + F16C + AVX-512 F/BW/VNNI (`vpdpbusd` on zmm; Sapphire Rapids and
    /// later, Zen 4, Zen 5): the AVX2 path with a 512-bit VNNI int8 GEMM.
    Avx512,
    /// aarch64 NEON (widening multiplies; Raspberry Pi 4 / Cortex-A72).
    Neon,
    /// aarch64 NEON with SDOT (Raspberry Pi 5 / Cortex-A76).
    NeonDot,
    /// 32-bit Arm `sxtb16` + `smlad` (two 16-bit multiply-adds per instruction): the Cortex-M4/M7
    /// DSP extension, and every ARMv6/ARMv7-A core (32-bit Raspberry Pi OS). Selected at compile
    /// time (`build.rs`'s `dsp`: `thumbv7em-none-eabihf`, `armv7-unknown-linux-gnueabihf`,
    /// `arm-unknown-linux-gnueabihf`).
    Dsp,
}

impl Isa {
    /// Every path, best last.
    pub const ALL: [Isa; 7] = [
        Isa::Scalar,
        Isa::Dsp,
        Isa::Neon,
        Isa::NeonDot,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512,
    ];

    /// The name `M2_KERNEL` uses.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "dotprod",
            Isa::Dsp => "dsp",
        }
    }

    /// How many f32 values the vector registers hold in this path's non-GEMM code (the
    /// [`Kernels::vectorised`] context): 32 zmm × 16 on AVX-512, 16 ymm × 8 on AVX2 (and
    /// AVX-VNNI, whose non-GEMM code is AVX2's), 32 × 4 on NEON, the FPU's 32 single-precision
    /// registers on a Cortex-M, and for the scalar path 16 × 4 (x86_64 SSE2; no more is
    /// assumed on other targets). Model code sizes
    /// its register-held sums by it (`model::attention`'s two-row weighted sums).
    pub const fn register_floats(self) -> usize {
        match self {
            Isa::Avx512 => 32 * 16,
            Isa::Avx2 | Isa::AvxVnni => 16 * 8,
            Isa::Neon | Isa::NeonDot => 32 * 4,
            Isa::Dsp => 32,
            Isa::Scalar => 16 * 4,
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
            Isa::Avx512 => avx2_available() && avx512_available(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::NeonDot => dotprod_available(),
            Isa::Dsp => cfg!(dsp),
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

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx512_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}
#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx512_available() -> bool {
    cfg!(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vnni"
    ))
}
#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
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

/// Why `M2_KERNEL` could not be honoured. The CLI and the Python module refuse to run (one
/// `error:` line, exit 1; `ValueError`); a caller that would rather carry on uses
/// [`KernelError::fallback`], the best path this machine has.
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
                "M2_KERNEL={v:?} is not a kernel path (expected one of scalar, avx2, avxvnni, avx512, neon, dotprod, dsp; the best here is {best})"
            ),
            KernelError::Unavailable(isa) => {
                write!(f, "M2_KERNEL={isa}: this CPU or build cannot run it (the best here is {best})")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KernelError {}

/// Scratch the int8 path needs to quantise activations: `q[n * in]` bytes (twice that, 2-byte
/// aligned, for int16 activations) and `scales[n]`. Its size is part of the memory plan
/// ([`crate::plan`]). No kernel needs more.
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
    /// Worker threads for large linears and a decode step's independent parts (std only;
    /// ignored on no_std).
    threads: usize,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::SCALAR
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

    /// Worker threads for large linears and a decode step's independent parts (std only;
    /// ignored on no_std).
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
    /// shorter ones are a caller bug (the engine sizes them from the plan, and the blob's shapes
    /// are checked at load): a debug build panics, a release build returns leaving `y` as it was.
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
        let fits = fits(x, n, w, bias, y, qs);
        debug_assert!(
            fits,
            "Kernels::linear: slices too short: x {} (n {n}), W [{m}, {k}], y {}, bias {:?}, \
             scratch {} / {}",
            x.len(),
            y.len(),
            bias.map(<[f32]>::len),
            qs.q.len(),
            qs.scales.len(),
        );
        if !fits || n == 0 {
            // (no rows: nothing to compute — the tile loops would still walk every output
            // channel, 2⁶⁴ of them for a `Matrix` that claims so with no columns)
            return;
        }
        // `fits` is the only check: every kernel relies on it.
        let (nk, nm, mk) = (n * k, n * m, m * k);
        let (x, y) = (&x[..nk], &mut y[..nm]);
        #[cfg(feature = "std")]
        trace::observe(w, x, n);
        let isa = if self.isa.is_available() {
            self.isa
        } else {
            Isa::Scalar
        };
        let weights = match w.data {
            WeightData::F32(wd) => Weights::F32(&wd[..mk]),
            WeightData::F16(wd) => Weights::F16(&wd[..mk]),
            WeightData::I8 { q, scales, act16 } => {
                let w = QRows {
                    q: &q[..mk],
                    scales: &scales[..m],
                };
                let xs = &mut qs.scales[..n];
                if act16 {
                    // `fits` checked the length and the 2-byte alignment
                    let Ok(xq) = bytemuck::try_cast_slice_mut::<i8, i16>(&mut qs.q[..2 * nk])
                    else {
                        return;
                    };
                    quantize16(isa, x, n, k, xq, xs);
                    Weights::I8A16 {
                        x: QRows { q: xq, scales: xs },
                        w,
                    }
                } else {
                    let xq = &mut qs.q[..nk];
                    quantize(isa, x, n, k, xq, xs);
                    Weights::I8 {
                        x: QRows { q: xq, scales: xs },
                        w,
                    }
                }
            }
        };
        let out = Out {
            ptr: y.as_mut_ptr(),
            ld: m,
        };
        let job = Job {
            x,
            n,
            k,
            m,
            weights,
            out,
        };
        // SAFETY: `job` keeps the kernel contract (its slices are cut to the checked lengths,
        // `out` addresses `y`, borrowed mutably here); `isa` is available.
        unsafe { self.run(isa, &job) };
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
    /// `job` keeps the kernel contract and nobody else writes its `y` meanwhile; `isa` is
    /// available.
    unsafe fn run(&self, isa: Isa, job: &Job<'_>) {
        #[cfg(feature = "std")]
        {
            let m = job.m;
            let macs = job.n * job.k * m;
            let t = self.threads.min(macs / PAR_MIN_MACS).min(m / 16);
            if t > 1 {
                // Chunks are multiples of 16 channels so that every tile stays whole.
                let chunk = m.div_ceil(t).div_ceil(16) * 16;
                pool::run(m.div_ceil(chunk), &|part| {
                    let (r0, r1) = (part * chunk, ((part + 1) * chunk).min(m));
                    // SAFETY: each part runs once (pool::run), parts' channel ranges are
                    // disjoint and inside 0..m; the rest is forwarded from the caller.
                    unsafe { kernel(isa, job.part(r0, r1)) }
                });
                return;
            }
        }
        // SAFETY: forwarded to the caller.
        unsafe { kernel(isa, job.part(0, job.m)) }
    }
}

/// Whether the slices hold what `linear` needs: `x [n, k]`, the weights `[m, k]` (and `m`
/// scales), `y [n, m]`, `bias [m]`, and for int8 the scratch `[n, k]` and `n` scales.
fn fits(
    x: &[f32],
    n: usize,
    w: &Matrix<'_>,
    bias: Option<&[f32]>,
    y: &[f32],
    qs: &QuantScratch<'_>,
) -> bool {
    let (k, m) = (w.cols, w.rows);
    let (Some(mk), Some(nk), Some(nm)) = (m.checked_mul(k), n.checked_mul(k), n.checked_mul(m))
    else {
        return false;
    };
    x.len() >= nk
        && y.len() >= nm
        && bias.is_none_or(|b| b.len() >= m)
        && match w.data {
            WeightData::F32(wd) => wd.len() >= mk,
            WeightData::F16(wd) => wd.len() >= mk,
            WeightData::I8 { q, scales, act16 } => {
                // int16 activations take two bytes each, 2-byte aligned
                let (width, aligned) = match act16 {
                    false => (1, true),
                    true => (2, qs.q.as_ptr().align_offset(2) == 0),
                };
                q.len() >= mk
                    && scales.len() >= m
                    && nk.checked_mul(width).is_some_and(|b| qs.q.len() >= b)
                    && aligned
                    && qs.scales.len() >= n
            }
        }
}

/// One kernel call on `isa`'s path.
///
/// # Safety
/// `part` keeps the kernel contract ([`operand`]); `isa` is available.
unsafe fn kernel(isa: Isa, part: Part<'_>) {
    match part {
        Part::F32(g) => match isa {
            // SAFETY: AVX2/FMA/F16C detected (isa is available); the contract is forwarded.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 => unsafe { avx2::gemm_f32(g) },
            // SAFETY: NEON is baseline on aarch64; the contract is forwarded.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_f32(g) },
            // SAFETY: the contract is forwarded.
            _ => unsafe { scalar::linear_f32(g) },
        },
        Part::F16(g) => match isa {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 => unsafe { avx2::gemm_f16(g) },
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_f16(g) },
            // SAFETY: as above.
            _ => unsafe { scalar::linear_f16(g) },
        },
        Part::I8(g) => match isa {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::gemm_i8(g) },
            // SAFETY: AVX2 and AVX-VNNI detected (isa is available); the contract is forwarded.
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => unsafe { avx_vnni::gemm_i8(g) },
            // SAFETY: AVX2 and AVX-512 F/BW/VNNI detected (isa is available); the contract is
            // forwarded.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::gemm_i8(g) },
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::gemm_i8(g) },
            // SAFETY: dotprod detected (isa is available); the contract is forwarded.
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => unsafe { neon::gemm_i8_dot(g) },
            // SAFETY: SMLAD exists on every `dsp` target (build.rs); the contract is forwarded.
            #[cfg(dsp)]
            Isa::Dsp => unsafe { dsp::gemm_i8::<dsp::Smlad>(g) },
            // SAFETY: the contract is forwarded.
            _ => unsafe { scalar::linear_i8(g) },
        },
        Part::I8A16(g) => match isa {
            // SAFETY: AVX2 and AVX-VNNI detected (AvxVnni is available, or checked here for
            // Avx512); the contract is forwarded.
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => unsafe { avx_vnni::gemm_i8a16(g) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if avx_vnni_available() => unsafe { avx_vnni::gemm_i8a16(g) },
            // SAFETY: AVX2 detected (isa is available; the VNNI paths include AVX2); the
            // contract is forwarded.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::gemm_i8a16(g) },
            // SAFETY: NEON is baseline on aarch64; the contract is forwarded.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_i8a16(g) },
            // SAFETY: as for the int8 DSP kernel.
            #[cfg(dsp)]
            Isa::Dsp => unsafe { dsp::gemm_i8a16::<dsp::Smlad>(g) },
            // SAFETY: the contract is forwarded.
            _ => unsafe { scalar::linear_i8a16(g) },
        },
    }
}

/// Quantises `x[n, k]` per row to int16 exactly as [`scalar::quantize_rows16`] does.
fn quantize16(isa: Isa, x: &[f32], n: usize, k: usize, q: &mut [i16], s: &mut [f32]) {
    match isa {
        // SAFETY: AVX-512 F detected (isa is available); x and q hold n*k, s holds n.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::quantize_rows16(x, n, k, q, s) },
        // SAFETY: AVX2 detected (isa is available); x and q hold n*k, s holds n.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::quantize_rows16(x, n, k, q, s) },
        // SAFETY: NEON is baseline on aarch64; x and q hold n*k, s holds n.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => unsafe { neon::quantize_rows16(x, n, k, q, s) },
        // the DSP kernel reads each group of four as [x0, x2, x1, x3]
        Isa::Dsp => {
            scalar::quantize_rows16(x, n, k, q, s);
            dsp::interleave16(q, n, k);
        }
        _ => scalar::quantize_rows16(x, n, k, q, s),
    }
}

/// Quantises `x[n, k]` per row exactly as [`scalar::quantize_rows`] does.
fn quantize(isa: Isa, x: &[f32], n: usize, k: usize, q: &mut [i8], s: &mut [f32]) {
    match isa {
        // SAFETY: AVX-512 F detected (isa is available); x and q hold n*k, s holds n.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::quantize_rows(x, n, k, q, s) },
        // SAFETY: AVX2 detected (isa is available); x and q hold n*k, s holds n.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::quantize_rows(x, n, k, q, s) },
        // SAFETY: NEON is baseline on aarch64; x and q hold n*k, s holds n.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => unsafe { neon::quantize_rows(x, n, k, q, s) },
        _ => scalar::quantize_rows(x, n, k, q, s),
    }
}
