//! Build-time configuration: one name for one target fact, so the code tests it in one
//! spelling (`#[cfg(dsp)]`) wherever it matters.
//!
//! `dsp`: the 32-bit Arm `sxtb16` / `smlad` instructions exist and `kernels::dsp` issues them.
//! ARMv6 and ARMv7-A have them unconditionally (every 32-bit Raspberry Pi OS build:
//! `armv7-unknown-linux-gnueabihf`, and `arm-unknown-linux-gnueabihf` for the ARMv6 boards), and
//! the hard-float Cortex-M4F/M7F target (`thumbv7em-none-eabihf`), whose DSP extension is the
//! only one stable `cfg` can see (soft-float `thumbv7em-none-eabi` and the M0+/M3 targets are
//! left out). The `eabihf` ABI is the line drawn: ARMv5TE Linux (`gnueabi`) has no `smlad`.

fn main() {
    cfg_aliases::cfg_aliases! {
        dsp: {
            all(
                target_arch = "arm",
                target_abi = "eabihf",
                any(target_os = "none", target_os = "linux")
            )
        },
    }
}
