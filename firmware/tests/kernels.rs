//! On-target kernel tests, run under QEMU by `cargo test --release` (defmt-test):
//! the Cortex-M DSP int8 path (real SXTB16/SMLAD instructions, which the host test suite can only
//! emulate) must equal the scalar ground truth bit for bit through the public `Kernels::linear`.
#![no_std]
#![no_main]

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use panic_probe as _;

#[cfg(feature = "rtt")]
use defmt_rtt as _;
#[cfg(all(feature = "qemu", not(feature = "rtt")))]
use defmt_semihosting as _;

include!(concat!(env!("OUT_DIR"), "/target_tag.rs"));

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc={=u32:#x}", ef.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

use m2::blob::{Matrix, WeightData};
use m2::kernels::{Isa, Kernels, QuantScratch};

const MAX_N: usize = 32;
const MAX_K: usize = 300;
const MAX_M: usize = 64;

/// xorshift32: deterministic test data without a heap or an RNG crate.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
    }
}

/// The quantised-activation scratch: two bytes a value (int16 activations), 2-byte aligned.
#[repr(align(4))]
struct Scratch([i8; 2 * MAX_N * MAX_K]);

/// `y = x·Wᵀ + b` for an int8 `[m, k]` weight on `n` rows, with `isa`; int16 activations if
/// `act16` (`DType::I8A16`).
fn linear(isa: Isa, act16: bool, n: usize, k: usize, m: usize, seed: u32, y: &mut [f32]) {
    let mut rng = Rng(seed);
    let mut x = [0f32; MAX_N * MAX_K];
    let mut wq = [0i8; MAX_M * MAX_K];
    let mut ws = [0f32; MAX_M];
    let mut b = [0f32; MAX_M];
    x.iter_mut().for_each(|v| *v = rng.f32());
    // the full range, -127 and 127 included (the blob's int8 range)
    wq.iter_mut()
        .for_each(|v| *v = ((rng.next() % 255) as i32 - 127) as i8);
    ws.iter_mut().for_each(|v| *v = rng.f32().abs() / 64.0);
    b.iter_mut().for_each(|v| *v = rng.f32());
    let w = Matrix {
        rows: m,
        cols: k,
        data: WeightData::I8 {
            q: &wq[..m * k],
            scales: &ws[..m],
            act16,
        },
    };
    let (mut q, mut s) = (Scratch([0i8; 2 * MAX_N * MAX_K]), [0f32; MAX_N]);
    let mut qs = QuantScratch {
        q: &mut q.0,
        scales: &mut s,
    };
    let kern = Kernels::with_isa(isa).expect("isa available on this target");
    kern.linear(&x[..n * k], n, &w, Some(&b[..m]), &mut y[..n * m], &mut qs);
}

/// The DSP path against scalar, bit for bit, on shapes that exercise every tail of the
/// 2x2-row, 4-value tiles.
fn dsp_equals_scalar(act16: bool) {
    let shapes = [
        (1, 1, 1),
        (1, 4, 2),
        (2, 3, 3),
        (3, 5, 7),
        (5, 64, 64),
        (4, 128, 33),
        (30, 64, 40),
        (7, 257, 9),
        (32, 300, 40),
        (1, 300, 1),
    ];
    for (i, &(n, k, m)) in shapes.iter().enumerate() {
        let mut a = [0f32; MAX_N * MAX_M];
        let mut b = [0f32; MAX_N * MAX_M];
        linear(Isa::Scalar, act16, n, k, m, 0x9e37_79b9 ^ i as u32, &mut a);
        linear(Isa::Dsp, act16, n, k, m, 0x9e37_79b9 ^ i as u32, &mut b);
        for j in 0..n * m {
            if a[j].to_bits() != b[j].to_bits() {
                defmt::panic!(
                    "act16={=bool} n={=usize} k={=usize} m={=usize} y[{=usize}]: scalar {=f32} dsp {=f32}",
                    act16,
                    n,
                    k,
                    m,
                    j,
                    a[j],
                    b[j]
                );
            }
        }
        defmt::info!(
            "act16={=bool} n={=usize} k={=usize} m={=usize}: {=usize} outputs equal",
            act16,
            n,
            k,
            m,
            n * m
        );
    }
}

#[defmt_test::tests]
mod tests {
    use super::dsp_equals_scalar;
    use m2::kernels::{Isa, Kernels};

    #[init]
    fn init() {
        defmt::info!("{=str}", super::TARGET_TAG);
    }

    #[test]
    fn dsp_is_available() {
        defmt::assert!(Isa::Dsp.is_available());
        defmt::assert!(Kernels::detect().isa() == Isa::Dsp);
    }

    #[test]
    fn dsp_int8_linear_equals_scalar_bit_for_bit() {
        dsp_equals_scalar(false);
    }

    #[test]
    fn dsp_int8a16_linear_equals_scalar_bit_for_bit() {
        dsp_equals_scalar(true);
    }
}
