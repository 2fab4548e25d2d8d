//! The board under the engine: clocks, caches, a cycle (or instruction) counter, a console
//! for plain text, and how a run ends. One module per board, chosen by build.rs through the
//! `m2_board` cfg; each has the same items:
//!
//! * `Board::init() -> Board` — clocks and caches as the board is meant to run, the counter on;
//! * `Board::now(&self) -> u64` — the counter, in [`Board::UNIT`];
//! * `Board::UNIT` — `"cycles"` on hardware, `"instructions"` under QEMU (`-icount`);
//! * `Board::core_hz(&self) -> Option<u32>` — the core clock, to turn cycles into time;
//! * `Board::console(&mut self, line: &str)` — a plain-text line for someone without a debug
//!   probe (UART0 on the Pico; the other boards have only the defmt log);
//! * `Board::finish(self, ok: bool) -> !` — the end of the run (see [`end`]).

#[cfg(m2_board = "pico")]
mod pico;
#[cfg(m2_board = "qemu")]
mod qemu;
#[cfg(m2_board = "stm32h743")]
mod stm32h743;

#[cfg(m2_board = "pico")]
pub use pico::Board;
#[cfg(m2_board = "qemu")]
pub use qemu::Board;
#[cfg(m2_board = "stm32h743")]
pub use stm32h743::Board;

/// Whether a debugger will answer a semihosting call: QEMU always does (`run.sh` enables
/// semihosting; feature `board-exit` makes the QEMU build ask DHCSR like a board, to test the
/// no-debugger path); the STM32H743 reads DHCSR.C_DEBUGEN; the Cortex-M0+ cannot read its debug
/// registers from software, so the Pico assumes no debugger.
pub fn debugger_attached() -> bool {
    if cfg!(m2_board = "pico") {
        false
    } else if cfg!(all(m2_board = "qemu", not(feature = "board-exit"))) {
        true
    } else {
        cortex_m::peripheral::DCB::is_debugger_attached()
    }
}

/// How a run ends on real hardware. With a debugger attached (probe-rs: DHCSR.C_DEBUGEN set)
/// the result goes back to the host as a semihosting exit code, so `probe-rs run` — and CI on
/// a board — sees 0 or 1. Without one, a semihosting call would trap with nobody to answer it
/// (a HardFault, and the core locks up), so the verdict stays in the log and the core sleeps.
pub fn end(ok: bool, debugger: bool) -> ! {
    if debugger {
        exit_semihosting(ok)
    }
    defmt::info!("no debugger attached: the verdict above stays in the log; sleeping (wfi)");
    sleep()
}

/// Exit through semihosting `SYS_EXIT` (QEMU, or a probe that services semihosting).
pub fn exit_semihosting(ok: bool) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    sleep()
}

/// Sleep for good, interrupts masked so nothing wakes the core into work.
pub fn sleep() -> ! {
    cortex_m::interrupt::disable();
    loop {
        cortex_m::asm::wfi();
    }
}

/// A 32-bit hardware counter widened to 64 bits: `read` must be called at least once per
/// wrap-around (every 8.9 s at 480 MHz for the DWT cycle counter; the firmware reads it at
/// every phase and every decoder step).
#[allow(dead_code)]
pub struct Widen32 {
    last: core::cell::Cell<u32>,
    high: core::cell::Cell<u64>,
}

#[allow(dead_code)]
impl Widen32 {
    pub const fn new(start: u32) -> Self {
        Widen32 {
            last: core::cell::Cell::new(start),
            high: core::cell::Cell::new(0),
        }
    }
    /// The 64-bit count for the 32-bit `raw` value of an up-counter.
    pub fn read(&self, raw: u32) -> u64 {
        if raw < self.last.get() {
            self.high.set(self.high.get() + (1 << 32));
        }
        self.last.set(raw);
        self.high.get() | raw as u64
    }
}
