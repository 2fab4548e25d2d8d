//! QEMU mps2-an386 (Cortex-M4F) and mps2-an500 (Cortex-M7).
//!
//! QEMU has no cycle counter (the DWT reads 0). `run.sh` starts it with `-icount shift=0`:
//! virtual time then advances exactly 1 ns per executed instruction, and the CMSDK APB timer 0
//! (0x4000_0000, clocked at the board's 25 MHz) counts one tick per 40 instructions. So the
//! counter here is **instructions** (ticks × 40), a stable cost figure — not a cycle count:
//! QEMU models no pipeline, no wait states and no caches. A calibration loop of known length
//! checks the ratio at boot and says so when QEMU runs without `-icount`.

use core::ptr::{read_volatile, write_volatile};

/// CMSDK APB timer 0 (QEMU `hw/arm/mps2.c`, ARM DDI 0479C §4.4).
const TIMER0: usize = 0x4000_0000;
const CTRL: usize = TIMER0;
const VALUE: usize = TIMER0 + 0x4;
const RELOAD: usize = TIMER0 + 0x8;
/// The MPS2 FPGA images' system clock, which drives the APB timers (QEMU: 25 MHz).
const TIMER_HZ: u64 = 25_000_000;
/// Nanoseconds of virtual time per instruction with `-icount shift=0`.
const NS_PER_INSN: u64 = 1;
/// Instructions per timer tick.
const INSN_PER_TICK: u64 = 1_000_000_000 / TIMER_HZ / NS_PER_INSN;

pub struct Board {
    widen: super::Widen32,
}

impl Board {
    pub const UNIT: &'static str = "instructions";

    pub fn init() -> Board {
        #[cfg(feature = "an500")]
        {
            // Cortex-M7: the weights stream from PSRAM; turn the caches on (off at reset).
            let mut p = cortex_m::Peripherals::take().unwrap();
            p.SCB.enable_icache();
            p.SCB.enable_dcache(&mut p.CPUID);
            defmt::info!("Cortex-M7 I-cache and D-cache enabled");
        }
        // SAFETY: TIMER0's registers on the MPS2 memory map; nothing else uses the timer.
        unsafe {
            write_volatile(CTRL as *mut u32, 0);
            write_volatile(RELOAD as *mut u32, u32::MAX);
            write_volatile(VALUE as *mut u32, u32::MAX);
            write_volatile(CTRL as *mut u32, 1); // enable, no interrupt
        }
        let b = Board {
            widen: super::Widen32::new(0),
        };
        b.calibrate();
        b
    }

    fn ticks(&self) -> u64 {
        // SAFETY: a read of TIMER0's VALUE register (a down-counter from u32::MAX).
        let v = unsafe { read_volatile(VALUE as *const u32) };
        self.widen.read(u32::MAX - v)
    }

    /// Instructions executed since `init` (with `-icount shift=0`).
    pub fn now(&self) -> u64 {
        self.ticks() * INSN_PER_TICK
    }

    pub fn core_hz(&self) -> Option<u32> {
        None
    }

    pub fn console(&mut self, _line: &str) {}

    pub fn finish(self, ok: bool) -> ! {
        super::end(ok, super::debugger_attached())
    }

    /// Run a loop of exactly 3·N instructions (`subs`, `nop`, `bne`) and compare the count.
    fn calibrate(&self) {
        const N: u32 = 1_000_000;
        let t0 = self.now();
        // SAFETY: a register-only countdown loop; touches no memory.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs {n}, {n}, #1",
                "nop",
                "bne 2b",
                n = inout(reg) N => _,
                options(nomem, nostack),
            );
        }
        let got = self.now() - t0;
        let want = 3 * N as u64;
        // tolerance: two ticks of quantisation plus the reads around the loop
        if got.abs_diff(want) <= 2 * INSN_PER_TICK + 64 {
            defmt::info!(
                "counter: QEMU -icount instructions (calibration loop of {=u64} instructions counted as {=u64})",
                want,
                got
            );
        } else {
            defmt::warn!(
                "counter: a {=u64}-instruction loop counted as {=u64}: QEMU is not running with -icount shift=0, the figures below follow host time",
                want,
                got
            );
        }
    }
}
