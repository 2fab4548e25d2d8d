//! STM32H743 (NUCLEO-H743ZI2 and any H743/H753 board with the same memory): the rated clock,
//! caches on, the DWT cycle counter.
//!
//! Clocks go through `stm32h7xx-hal`'s PWR and RCC (voltage scaling, PLL1, bus prescalers and
//! flash wait states computed and checked by the HAL) rather than register pokes. The HAL is
//! built for the revision-V register set (feature `stm32h743v`, which has VOS0); the revision
//! is read at boot from DBGMCU_IDC.REV_ID:
//! * revision V (0x2003): VOS0 (overdrive), 480 MHz;
//! * revision Y (0x1003) and anything else: VOS1, 400 MHz (revision Y is not rated for 480).
//!
//! The PLL runs from the internal HSI (64 MHz), so the same image runs on any board whatever
//! its crystal (the NUCLEO's ST-LINK 8 MHz MCO, OpenMV's 12 MHz...); HSI is factory-trimmed to
//! ±1 % at 25 °C, which bounds the error of the millisecond figures.

use stm32h7xx_hal::{pac, prelude::*, rcc};

/// DBGMCU_IDC.REV_ID of revision V (RM0433 §60.5.8).
const REV_V: u16 = 0x2003;
/// DBGMCU_IDC.REV_ID of revision Y.
const REV_Y: u16 = 0x1003;

pub struct Board {
    hz: u32,
    widen: super::Widen32,
}

impl Board {
    pub const UNIT: &'static str = "cycles";

    pub fn init() -> Board {
        let mut cp = cortex_m::Peripherals::take().unwrap();
        let dp = pac::Peripherals::take().unwrap();
        let rev = dp.DBGMCU.idc.read().rev_id().bits();
        let pwr = dp.PWR.constrain();
        let (pwrcfg, mhz) = if rev == REV_V {
            (pwr.vos0(&dp.SYSCFG).freeze(), 480)
        } else {
            (pwr.freeze(), 400)
        };
        // PLL1 in its wide VCO range ("Iterative": VCOH up to 960 MHz on revision V): the HAL's
        // default ("Normal") uses the medium range, 150–420 MHz, whose assert rejects 480 MHz.
        let ccdr = dp
            .RCC
            .constrain()
            .pll1_strategy(rcc::PllConfigStrategy::Iterative)
            .sys_ck(mhz.MHz())
            .freeze(pwrcfg, &dp.SYSCFG);
        let hz = ccdr.clocks.sys_ck().raw();
        defmt::info!(
            "STM32H743 revision {=str} (REV_ID {=u16:#x}): sys_ck {=u32} Hz, hclk {=u32} Hz, VOS{=u8}",
            match rev {
                REV_V => "V",
                REV_Y => "Y",
                _ => "unknown",
            },
            rev,
            hz,
            ccdr.clocks.hclk().raw(),
            if mhz == 480 { 0 } else { 1 }
        );
        // The weights stream from flash: instruction and data caches on (off at reset).
        cp.SCB.enable_icache();
        cp.SCB.enable_dcache(&mut cp.CPUID);
        // The cycle counter: trace enabled, the Cortex-M7 DWT unlocked (its lock access register
        // ignores writes until unlocked), counting from 0.
        cp.DCB.enable_trace();
        cortex_m::peripheral::DWT::unlock();
        cp.DWT.set_cycle_count(0);
        cp.DWT.enable_cycle_counter();
        defmt::info!("I-cache and D-cache on; DWT cycle counter running");
        Board {
            hz,
            widen: super::Widen32::new(0),
        }
    }

    /// Core clock cycles since `init`.
    pub fn now(&self) -> u64 {
        self.widen.read(cortex_m::peripheral::DWT::cycle_count())
    }

    pub fn core_hz(&self) -> Option<u32> {
        Some(self.hz)
    }

    pub fn console(&mut self, _line: &str) {}

    pub fn finish(self, ok: bool) -> ! {
        super::end(ok, super::debugger_attached())
    }
}
