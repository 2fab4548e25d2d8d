//! Raspberry Pi Pico (RP2040, Cortex-M0+ at 125 MHz, no FPU, no DSP instructions).
//!
//! * Boot: the boot ROM checks the CRC of the 256-byte second stage (`BOOT2_FIRMWARE`, the
//!   `rp2040-boot2` crate's W25Q080 loader, in `.boot2` at 0x1000_0000), copies it to SRAM and
//!   runs it; it sets up the QSPI flash for execute-in-place and jumps to the vector table.
//! * Clocks: `rp2040-hal`'s `init_clocks_and_plls` — the 12 MHz crystal, PLL_SYS to 125 MHz
//!   (the RP2040's rated clock), PLL_USB to 48 MHz, peripherals from clk_sys.
//! * Console: UART0 on GP0 (TX, pin 1) / GP1 (RX, pin 2), 115 200 8N1 — what a Pico user sees on
//!   a USB-serial adapter (or a Debug Probe's UART); the defmt log goes over RTT for a probe.
//! * Counter: the M0+ has no DWT cycle counter, so SysTick counts core clock cycles (24 bits,
//!   the wrap interrupt extends it to 64 bits).
//! * End of a run: the Cortex-M0+ cannot read DHCSR from software ("Software cannot access the
//!   debug registers", Cortex-M0+ TRM), so it cannot tell whether a semihosting call would be
//!   answered; it never makes one. The verdict is the last UART line and the last defmt line,
//!   then the core sleeps (SysTick off).

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use rp2040_hal as hal;

use hal::clocks::{init_clocks_and_plls, Clock};
use hal::fugit::RateExtU32;
use hal::gpio::{bank0, FunctionUart, Pin, Pins, PullDown};
use hal::pac;
use hal::uart::{DataBits, Enabled, StopBits, UartConfig, UartPeripheral};

/// The second-stage bootloader for the Pico's W25Q080 flash (the boot ROM runs it).
#[link_section = ".boot2"]
#[used]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_HZ: u32 = 12_000_000;
/// SysTick's reload: the full 24 bits.
const SYST_RELOAD: u32 = 0x00FF_FFFF;

/// SysTick wrap-arounds since `init` (written only by the SysTick handler; the M0+ has no
/// atomic read-modify-write, and none is needed with a single writer).
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

type UartPins = (
    Pin<bank0::Gpio0, FunctionUart, PullDown>,
    Pin<bank0::Gpio1, FunctionUart, PullDown>,
);

pub struct Board {
    hz: u32,
    uart: Option<UartPeripheral<Enabled, pac::UART0, UartPins>>,
    syst: SYST,
}

impl Board {
    pub const UNIT: &'static str = "cycles";

    pub fn init() -> Board {
        let cp = cortex_m::Peripherals::take().unwrap();
        let mut dp = pac::Peripherals::take().unwrap();
        let mut watchdog = hal::Watchdog::new(dp.WATCHDOG);
        let clocks = match init_clocks_and_plls(
            XOSC_HZ,
            dp.XOSC,
            dp.CLOCKS,
            dp.PLL_SYS,
            dp.PLL_USB,
            &mut dp.RESETS,
            &mut watchdog,
        ) {
            Ok(c) => c,
            Err(_) => {
                defmt::error!("clock setup failed (crystal or PLL did not start)");
                super::sleep()
            }
        };
        let hz = clocks.system_clock.freq().to_Hz();
        let sio = hal::Sio::new(dp.SIO);
        let pins = Pins::new(dp.IO_BANK0, dp.PADS_BANK0, sio.gpio_bank0, &mut dp.RESETS);
        let uart_pins: UartPins = (pins.gpio0.into_function(), pins.gpio1.into_function());
        let uart = UartPeripheral::new(dp.UART0, uart_pins, &mut dp.RESETS)
            .enable(
                UartConfig::new(115_200.Hz(), DataBits::Eight, None, StopBits::One),
                clocks.peripheral_clock.freq(),
            )
            .ok();
        if uart.is_none() {
            defmt::warn!("UART0 could not be set to 115200 baud: no console");
        }
        let mut syst = cp.SYST;
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYST_RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        defmt::info!(
            "RP2040: clk_sys {=u32} Hz (XOSC 12 MHz, PLL_SYS); UART0 115200 8N1 on GP0/GP1; SysTick cycle counter",
            hz
        );
        let mut b = Board { hz, uart, syst };
        b.console("m2 firmware on a Raspberry Pi Pico (RP2040): captioning the bundled frames");
        b
    }

    /// Core clock cycles since `init`.
    pub fn now(&self) -> u64 {
        loop {
            let w = WRAPS.load(Ordering::Relaxed);
            let cvr = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == w {
                return ((w as u64) << 24) + (SYST_RELOAD - cvr) as u64;
            }
        }
    }

    pub fn core_hz(&self) -> Option<u32> {
        Some(self.hz)
    }

    /// One line of plain text on UART0 (CR LF, for terminal programs).
    pub fn console(&mut self, line: &str) {
        if let Some(u) = &self.uart {
            u.write_full_blocking(line.as_bytes());
            u.write_full_blocking(b"\r\n");
        }
    }

    pub fn finish(mut self, ok: bool) -> ! {
        self.syst.disable_interrupt();
        self.syst.disable_counter();
        super::end(ok, super::debugger_attached())
    }
}
