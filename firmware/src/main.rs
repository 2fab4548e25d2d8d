//! M² image captioning on a Cortex-M, from flash, with defmt logs.
//!
//! Boot → verify the embedded model blob (`m2::Blob::parse`: magic, version, CRC-32, every
//! offset and shape) → caption every bundled image with the reference's beam search over a
//! `static` workspace (no heap anywhere) → compare each caption with the one the host engine
//! produced at build time → exit through semihosting: 0 when all are equal, 1 otherwise.
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use panic_probe as _;

#[cfg(feature = "rtt")]
use defmt_rtt as _;
#[cfg(all(feature = "qemu", not(feature = "rtt")))]
use defmt_semihosting as _;

use m2::kernels::Kernels;
use m2::model::M2;
use m2::plan::Plan;
use m2::search::{beam_search, SearchOptions, StepEvent};
use m2::workspace::Workspace;

/// What build.rs decided: model source and config, beam, workspace size, expected captions.
mod generated {
    /// One bundled image's expected result, from the host engine.
    pub struct Expected {
        /// Best beam's word ids (`MAX_LEN` of them).
        pub ids: &'static [u32],
        /// Its caption (evaluation form).
        pub text: &'static str,
        /// Its score on the host (logged for comparison, not checked: only the words are).
        pub score: f32,
    }
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use generated::*;

/// 32-byte alignment (the blob's own tensor alignment), so weights can be viewed in place.
#[repr(C, align(32))]
struct Aligned<T: ?Sized>(T);

/// The model blob, in `.model`: PSRAM on QEMU, internal flash on a board (see `memory/`).
#[link_section = ".model"]
#[used]
static MODEL: Aligned<[u8; MODEL_LEN]> =
    Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.m2")));

/// Features of the bundled images, `[N_IMAGES, REGIONS, d_in]` f32 little-endian, in flash.
static FEATURES: Aligned<[u8; FEATURES_LEN]> =
    Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/features.bin")));

/// Every activation, cache and logit of the engine: sized at build time by `m2::plan`.
static mut WORKSPACE: [f32; WORKSPACE_FLOATS] = [0.0; WORKSPACE_FLOATS];

/// Longest caption text the firmware prints (longer ones are cut in the log and fail the check).
const TEXT_CAP: usize = 512;

#[entry]
fn main() -> ! {
    defmt::info!("m2 firmware: {=str}", TARGET_TAG);
    stack::paint();
    #[cfg(any(feature = "an500", feature = "stm32h743"))]
    {
        // Cortex-M7: the weights stream from flash/PSRAM, so turn the caches on (off at reset).
        let mut p = cortex_m::Peripherals::take().unwrap();
        p.SCB.enable_icache();
        p.SCB.enable_dcache(&mut p.CPUID);
        defmt::info!("Cortex-M7 I-cache and D-cache enabled");
    }
    let ok = run();
    defmt::info!(
        "stack: {=usize} bytes used at most (of {=usize})",
        stack::peak(),
        stack::size()
    );
    if ok {
        defmt::info!(
            "PASS: all {=usize} captions equal the host engine's",
            N_IMAGES
        );
    } else {
        defmt::error!("FAIL");
    }
    exit(ok)
}

fn run() -> bool {
    // Read the addresses through volatile loads so the compiler cannot fold the checks into the
    // bytes it embedded: what counts is what actually got loaded into (PS)RAM or flash.
    let bytes: &'static [u8] = unsafe { &*core::ptr::read_volatile(&(&raw const MODEL.0)) };
    let features: &'static [u8] = unsafe { &*core::ptr::read_volatile(&(&raw const FEATURES.0)) };
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
    let c = *blob.config();
    defmt::info!(
        "blob ok (checksum verified): d_in={=u32} d={=u32} h={=u32} d_ff={=u32} dec={=u32} m={=u32} vocab={=u32} regions={=u32}",
        c.d_in, c.d_model, c.h, c.d_ff, c.n_dec, c.m, c.vocab, c.max_regions
    );
    if c != MODEL_CONFIG {
        defmt::error!("blob config differs from the one the workspace was sized for");
        return false;
    }

    // SAFETY: the only reference ever made to WORKSPACE; `run` is called once.
    let buf: &'static mut [f32] = unsafe {
        core::slice::from_raw_parts_mut((&raw mut WORKSPACE).cast::<f32>(), WORKSPACE_FLOATS)
    };
    let plan = Plan::new(&c, BEAM, REGIONS, MAX_LEN);
    defmt::info!(
        "workspace: {=usize} bytes (static, beam {=usize}, {=usize} regions, {=usize} steps)",
        plan.total_bytes(),
        BEAM,
        REGIONS,
        MAX_LEN
    );
    let mut ws = match Workspace::new(buf, plan) {
        Ok(ws) => ws,
        Err(e) => {
            defmt::error!("workspace: {}", defmt::Debug2Format(&e));
            return false;
        }
    };
    defmt::info!(
        "{=usize} bundled images from {=str}",
        N_IMAGES,
        FEATURES_SOURCE
    );
    let model = M2::new(&blob, kernels());
    defmt::info!("kernels: {}", defmt::Debug2Format(&model.kernels.isa()));
    let opts = SearchOptions {
        beam: BEAM,
        max_len: MAX_LEN,
    };

    let word = |id| blob.token(id);
    let mut text = [0u8; TEXT_CAP];
    let mut all_ok = true;
    for (i, exp) in EXPECTED.iter().enumerate() {
        let f = &features[i * IMAGE_FLOATS * 4..(i + 1) * IMAGE_FLOATS * 4];
        // SAFETY: FEATURES is 32-byte aligned and IMAGE_FLOATS * 4 bytes per image; any bit
        // pattern is a valid f32 (the engine rejects non-finite values itself).
        let f: &[f32] = unsafe { core::slice::from_raw_parts(f.as_ptr().cast(), IMAGE_FLOATS) };
        let on_step = |ev: &StepEvent| {
            let mut t = [0u8; TEXT_CAP];
            let s = caption(ev.best_tokens, word, &mut t);
            defmt::info!(
                "image {=usize} step {=usize} ({=f32}): {=str}",
                i,
                ev.step,
                ev.best_score,
                s
            );
        };
        let out = match beam_search(&model, f, &mut ws, &opts, on_step) {
            Ok(o) => o,
            Err(e) => {
                defmt::error!(
                    "image {=usize}: engine error {}",
                    i,
                    defmt::Debug2Format(&e)
                );
                all_ok = false;
                continue;
            }
        };
        let Some(best) = out.best() else {
            defmt::error!("image {=usize}: no beam", i);
            all_ok = false;
            continue;
        };
        let got = caption(&best.tokens, word, &mut text);
        let same = best.tokens.as_slice() == exp.ids && got == exp.text;
        if same {
            defmt::info!(
                "image {=usize}: \"{=str}\" (score {=f32}, host {=f32}) == host",
                i,
                got,
                best.score,
                exp.score
            );
        } else {
            defmt::error!(
                "image {=usize}: \"{=str}\" (score {=f32}) but the host said \"{=str}\" (score {=f32})",
                i, got, best.score, exp.text, exp.score
            );
            all_ok = false;
        }
    }
    all_ok
}

/// The best kernels for this core: the DSP (SXTB16 + SMLAD) int8 path on Cortex-M4/M7
/// (thumbv7em-none-eabihf), scalar elsewhere; feature `scalar-kernels` forces scalar.
fn kernels() -> Kernels {
    if cfg!(feature = "scalar-kernels") {
        Kernels::SCALAR
    } else {
        Kernels::detect()
    }
}

/// Caption text of `ids` (evaluation form) as a `&str` in `buf`; "<caption too long>" or
/// "<not utf-8>" when it cannot be shown.
fn caption<'b, 'v>(
    ids: &[u32],
    word: impl Fn(u32) -> Option<&'v [u8]>,
    buf: &'b mut [u8],
) -> &'b str {
    match m2::text::caption(ids, word, false, buf) {
        Ok(n) => core::str::from_utf8(&buf[..n]).unwrap_or("<not utf-8>"),
        Err(_) => "<caption too long or unknown id>",
    }
}

/// Stack high-water mark: fill the free stack with a pattern at boot, find the deepest word
/// that changed at the end. A measurement, not an estimate (interrupts, if any, included).
mod stack {
    const PATTERN: u32 = 0x5A5A_A5A5;
    extern "C" {
        static _stack_start: u32; // top of the stack (cortex-m-rt)
        static _stack_end: u32; // lowest address the stack may reach (cortex-m-rt)
    }
    fn bounds() -> (usize, usize) {
        // Only the symbols' addresses are taken (no read): safe.
        (
            &raw const _stack_end as usize,
            &raw const _stack_start as usize,
        )
    }
    pub fn size() -> usize {
        let (lo, hi) = bounds();
        hi - lo
    }
    /// Paint from the stack's lower limit up to 256 bytes below the current stack pointer.
    pub fn paint() {
        let (lo, _) = bounds();
        let sp = cortex_m::register::msp::read() as usize - 256;
        let mut p = (lo + 3) & !3;
        while p < sp {
            // SAFETY: [lo, sp) is unused stack memory: below every live frame.
            unsafe { core::ptr::write_volatile(p as *mut u32, PATTERN) };
            p += 4;
        }
    }
    /// Bytes between the top of the stack and the deepest overwritten word.
    pub fn peak() -> usize {
        let (lo, hi) = bounds();
        let mut p = (lo + 3) & !3;
        // SAFETY: reads of the stack region painted by `paint`.
        while p < hi && unsafe { core::ptr::read_volatile(p as *const u32) } == PATTERN {
            p += 4;
        }
        hi - p
    }
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
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
