//! M² image captioning on a Cortex-M, from flash, with defmt logs.
//!
//! Boot → verify the embedded model blob (`m2::Blob::parse`: magic, version, CRC, every offset)
//! → caption every bundled image with the engine over a `static` workspace → compare with the
//! captions the host engine produced at build time → exit through semihosting (0 = all equal).
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use panic_probe as _;

#[cfg(all(feature = "qemu", not(feature = "rtt")))]
use defmt_semihosting as _;
#[cfg(feature = "rtt")]
use defmt_rtt as _;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use generated::*;

/// Blob storage: 32-byte aligned (the blob's own tensor alignment), in `.model`, which the
/// memory map puts in PSRAM on QEMU and in internal flash on a board.
#[repr(C, align(32))]
struct Aligned<T: ?Sized>(T);

#[link_section = ".model"]
#[used]
static MODEL: Aligned<[u8; MODEL_LEN]> = Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.m2")));

#[entry]
fn main() -> ! {
    defmt::info!("m2 firmware: {=str}", TARGET_TAG);
    let ok = run();
    if ok {
        defmt::info!("PASS");
    } else {
        defmt::error!("FAIL");
    }
    exit(ok)
}

fn run() -> bool {
    // Read through a volatile pointer so the compiler cannot constant-fold the checks against the
    // bytes it embedded: the point is to check what actually got loaded into (PS)RAM or flash.
    let bytes: &'static [u8] = unsafe { &*core::ptr::read_volatile(&(&raw const MODEL.0)) };
    defmt::info!(
        "model blob: {=usize} bytes at {=usize:#x} from {=str}",
        bytes.len(),
        bytes.as_ptr() as usize,
        MODEL_SOURCE
    );
    let blob = match m2::Blob::parse(bytes) {
        Ok(b) => b,
        Err(e) => {
            defmt::error!("model blob rejected: {}", defmt::Debug2Format(&e));
            return false;
        }
    };
    let c = blob.config();
    defmt::info!(
        "config: d_in={=u32} d={=u32} h={=u32} d_ff={=u32} enc={=u32} dec={=u32} m={=u32} vocab={=u32} regions={=u32}",
        c.d_in, c.d_model, c.h, c.d_ff, c.n_enc, c.n_dec, c.m, c.vocab, c.max_regions
    );
    true
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::bkpt();
    }
}

/// A fault (panic-probe ends in `udf`, which lands here too): fail the run.
#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc={=u32:#x}", ef.pc());
    exit(false)
}
