//! M² image captioning on a Cortex-M, from flash, with defmt logs.
//!
//! (Over 600 lines on purpose: the whole device program in one file, in boot order, as in
//! knurling's app-template; the board specifics live in `board/`.)
//!
//! Boot → the board's clocks, caches and counter (`board`) → verify the embedded model blob
//! (`m2::Blob::parse`: magic, version, CRC-32, every offset and shape) → for every bundled
//! frame: copy it into a RAM frame buffer as a camera's DMA would leave it, find its regions
//! (`m2::frame`), encode them, beam-search a caption over a `static` workspace (no heap
//! anywhere), timing each phase → compare each caption with the one the host engine produced at
//! build time → the verdict: a semihosting exit code under QEMU or with a debugger attached,
//! else the log (and UART0 on the Pico) and sleep.
#![no_std]
#![no_main]

mod board;

use core::fmt::Write as _;
use core::mem::MaybeUninit;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use panic_probe as _;

#[cfg(feature = "rtt")]
use defmt_rtt as _;
#[cfg(all(feature = "qemu", not(feature = "rtt")))]
use defmt_semihosting as _;

use board::Board;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::plan::{Plan, MAX_STEPS};
use m2::search::{SearchOptions, StepEvent};
use m2::workspace::Workspace;

/// What build.rs decided: board tag, model source and config, beam, workspace size, the
/// bundled images and their expected captions.
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
    /// One bundled frame in `frames.bin`.
    #[allow(dead_code)]
    pub struct FrameSpec {
        pub name: &'static str,
        pub width: usize,
        pub height: usize,
        pub offset: usize,
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

/// Every activation, cache and logit of the engine: sized at build time by `m2::plan`. In
/// `.workspace` (AXI-SRAM on the STM32H743; NOLOAD: zeroed by `run` before use).
#[link_section = ".workspace"]
static mut WORKSPACE: MaybeUninit<[f32; WORKSPACE_FLOATS]> = MaybeUninit::uninit();

/// Longest caption text the firmware prints (longer ones are cut in the log and fail the check).
const TEXT_CAP: usize = 512;

#[entry]
fn main() -> ! {
    defmt::info!("m2 firmware: {=str}", TARGET_TAG);
    stack::paint();
    let mut board = Board::init();
    let (ok, verdict) = run(&mut board);
    let (peak, size) = (stack::peak(), stack::size());
    defmt::info!(
        "stack: {=usize} bytes used at most (of {=usize})",
        peak,
        size
    );
    let mut line = heapless::String::<80>::new();
    let _ = write!(line, "stack peak {peak} B of {size} B");
    board.console(&line);
    // The verdict, last in the log and on the console.
    if ok {
        defmt::info!("{=str}", verdict.as_str());
    } else {
        defmt::error!("{=str}", verdict.as_str());
    }
    board.console(&verdict);
    board.finish(ok)
}

/// The last line of a run: `PASS: n/N captions equal the host's; …` or `FAIL: …`.
type Verdict = heapless::String<200>;

/// Per-image phase costs, in the board's counter unit.
#[derive(Default)]
struct Phases {
    /// Region extraction from the frame (0 for feature images).
    regions: u64,
    encoder: u64,
    cross_kv: u64,
    steps: heapless::Vec<u64, MAX_STEPS>,
}

impl Phases {
    fn decoder(&self) -> u64 {
        self.steps.iter().sum()
    }
    fn total(&self) -> u64 {
        self.regions + self.encoder + self.cross_kv + self.decoder()
    }
}

/// A stopwatch over the board's counter that leaves out the time spent logging: `lap` at the
/// end of a phase returns its cost, `resume` after the logging starts the next phase.
struct Lap<'b> {
    board: &'b Board,
    start: u64,
}

impl<'b> Lap<'b> {
    fn new(board: &'b Board) -> Self {
        Lap {
            board,
            start: board.now(),
        }
    }
    fn lap(&self) -> u64 {
        self.board.now() - self.start
    }
    fn resume(&mut self) {
        self.start = self.board.now();
    }
}

fn run(board: &mut Board) -> (bool, Verdict) {
    // Read the addresses through volatile loads so the compiler cannot fold the checks into the
    // bytes it embedded: what counts is what actually got loaded into (PS)RAM or flash.
    // SAFETY: a volatile read of a `'static` reference to an immutable static.
    let bytes: &'static [u8] = unsafe { &*core::ptr::read_volatile(&(&raw const MODEL.0)) };
    defmt::info!(
        "model blob: {=usize} bytes at {=usize:#x} from {=str}",
        bytes.len(),
        bytes.as_ptr() as usize,
        MODEL_SOURCE
    );
    // The full CRC-32 over every byte by default; `fast-boot` hashes only the structure
    // (header, table, vocabulary: docs/FORMAT.md §8) and trusts the weights, which build.rs
    // verified when it baked the blob in — for blobs whose full hash costs seconds.
    let parsed = if cfg!(feature = "fast-boot") {
        m2::Blob::parse_skip_checksum(bytes)
    } else {
        m2::Blob::parse(bytes)
    };
    let blob = match parsed {
        Ok(b) => b,
        Err(e) => {
            defmt::error!("model blob rejected: {}", e);
            return fail("model blob rejected");
        }
    };
    let c = *blob.config();
    defmt::info!(
        "blob ok ({=str}): d_in={=u32} d={=u32} h={=u32} d_ff={=u32} dec={=u32} m={=u32} vocab={=u32} regions={=u32}",
        if cfg!(feature = "fast-boot") { "structure checksum verified, weights trusted" } else { "checksum verified" },
        c.d_in, c.d_model, c.h, c.d_ff, c.n_dec, c.m, c.vocab, c.max_regions
    );
    if c != MODEL_CONFIG {
        defmt::error!("blob config differs from the one the workspace was sized for");
        return fail("blob config differs from the build's");
    }

    // SAFETY: the only reference ever made to WORKSPACE (`run` is called once); it is zeroed
    // through the raw pointer before the slice over it is made.
    let buf: &'static mut [f32] = unsafe {
        let p = (&raw mut WORKSPACE).cast::<f32>();
        core::ptr::write_bytes(p, 0, WORKSPACE_FLOATS);
        core::slice::from_raw_parts_mut(p, WORKSPACE_FLOATS)
    };
    let plan = Plan::new(&c, BEAM, REGIONS, MAX_LEN).with_act_bytes(ACT_BYTES);
    defmt::info!(
        "workspace: {=usize} bytes at {=usize:#x} (static, beam {=usize}, {=usize} regions, {=usize} steps)",
        plan.total_bytes(),
        buf.as_ptr() as usize,
        BEAM,
        REGIONS,
        MAX_LEN
    );
    let mut ws = match Workspace::new(buf, plan) {
        Ok(ws) => ws,
        Err(e) => {
            defmt::error!("workspace: {}", e);
            return fail("workspace does not fit the plan");
        }
    };
    defmt::info!(
        "{=usize} bundled images from {=str}",
        N_IMAGES,
        IMAGES_SOURCE
    );
    let model = M2::new(&blob, kernels());
    defmt::info!("kernels: {}", model.kernels().isa());
    let opts = SearchOptions {
        beam: BEAM,
        max_len: MAX_LEN,
    };
    let mut input = images::Input::new();

    let word = |id| blob.token(id);
    let mut text = [0u8; TEXT_CAP];
    let mut passed = 0usize;
    let mut sum = 0u64;
    for (i, exp) in EXPECTED.iter().enumerate() {
        let mut ph = Phases::default();
        let result = input.caption(i, &model, &mut ws, &opts, board, &mut ph, |ev, cost| {
            let mut t = [0u8; TEXT_CAP];
            let s = caption(ev.best_tokens, word, &mut t);
            defmt::info!(
                "image {=usize} step {=usize} ({=f32}, {=u64} {=str}): {=str}",
                i,
                ev.step,
                ev.best_score,
                cost,
                Board::UNIT,
                s
            );
        });
        let best = match result {
            Ok(b) => b,
            Err(()) => continue,
        };
        let got = caption(&best.tokens, word, &mut text);
        let same = best.tokens.as_slice() == exp.ids && got == exp.text;
        log_phases(board, i, &ph);
        sum += ph.total();
        let mut line = heapless::String::<640>::new();
        if same {
            passed += 1;
            defmt::info!(
                "image {=usize}: \"{=str}\" (score {=f32}, host {=f32}) == host",
                i,
                got,
                best.score,
                exp.score
            );
            let _ = write!(
                line,
                "image {i}: \"{got}\" == host; {} {}",
                ph.total(),
                Board::UNIT
            );
        } else {
            defmt::error!(
                "image {=usize}: \"{=str}\" (score {=f32}) but the host said \"{=str}\" (score {=f32})",
                i, got, best.score, exp.text, exp.score
            );
            let _ = write!(
                line,
                "image {i}: \"{got}\" but the host said \"{}\"",
                exp.text
            );
        }
        board.console(&line);
    }

    let mean = sum / N_IMAGES.max(1) as u64;
    let mut line = Verdict::new();
    let verdict = if passed == N_IMAGES { "PASS" } else { "FAIL" };
    let _ = write!(
        line,
        "{verdict}: {passed}/{N_IMAGES} captions equal the host's; {mean} {} per caption",
        Board::UNIT
    );
    match board.core_hz() {
        Some(hz) => {
            let _ = write!(
                line,
                " ({:.3} s at {} MHz)",
                mean as f32 / hz as f32,
                hz / 1_000_000
            );
        }
        None => {
            let _ = write!(line, " (QEMU -icount: instructions, not cycles)");
        }
    }
    (passed == N_IMAGES, line)
}

/// A run that could not start.
fn fail(why: &str) -> (bool, Verdict) {
    let mut line = Verdict::new();
    let _ = write!(line, "FAIL: {why}");
    (false, line)
}

/// One image's phase costs in the log, and in milliseconds where the clock is known.
fn log_phases(board: &Board, i: usize, ph: &Phases) {
    let n = ph.steps.len().max(1) as u64;
    defmt::info!(
        "image {=usize} {=str}: regions {=u64}, encoder {=u64}, cross K/V {=u64}, decoder {=usize} steps {=u64} (mean {=u64}, max {=u64}), caption {=u64}",
        i,
        Board::UNIT,
        ph.regions,
        ph.encoder,
        ph.cross_kv,
        ph.steps.len(),
        ph.decoder(),
        ph.decoder() / n,
        ph.steps.iter().copied().max().unwrap_or(0),
        ph.total()
    );
    if let Some(hz) = board.core_hz() {
        let ms = |c: u64| c as f32 * 1e3 / hz as f32;
        defmt::info!(
            "image {=usize} ms at {=u32} MHz: regions {=f32}, encoder {=f32}, cross K/V {=f32}, decoder {=f32}, caption {=f32}",
            i,
            hz / 1_000_000,
            ms(ph.regions),
            ms(ph.encoder),
            ms(ph.cross_kv),
            ms(ph.decoder()),
            ms(ph.total())
        );
    }
}

/// The bundled frames: copied one at a time into a RAM frame buffer at a DMA row pitch, then
/// regions → encoder → beam search with `m2::frame::caption_frame`.
#[cfg(m2_frames)]
mod images {
    use super::*;
    use m2::frame::{caption_frame, Event, Frame, FrameScratch, Polarity};
    use m2::regions::{Params, Region, D_IN};
    use m2::search::Beam;

    /// The frames, 8-bit grayscale, in flash.
    static FRAMES_FLASH: [u8; FRAMES_LEN] =
        *include_bytes!(concat!(env!("OUT_DIR"), "/frames.bin"));
    /// The RAM frame buffer a camera's DMA would fill (rows `FRAME_ROW_ALIGN`-byte aligned).
    #[link_section = ".workspace"]
    static mut FRAME_BUF: MaybeUninit<Aligned<[u8; FRAME_BUF_LEN]>> = MaybeUninit::uninit();
    /// The region extractor's scratch: one label per pixel, the boxes, the feature matrix.
    #[link_section = ".workspace"]
    static mut LABELS: MaybeUninit<[u16; LABELS_LEN]> = MaybeUninit::uninit();
    #[link_section = ".workspace"]
    static mut BOXES: MaybeUninit<[Region; REGIONS]> = MaybeUninit::uninit();
    #[link_section = ".workspace"]
    static mut FEATURES: MaybeUninit<[f32; REGIONS * D_IN]> = MaybeUninit::uninit();

    pub struct Input {
        frame: &'static mut [u8],
        labels: &'static mut [u16],
        boxes: &'static mut [Region],
        features: &'static mut [f32],
    }

    impl Input {
        pub fn new() -> Self {
            // SAFETY: `new` is called once; each static is initialised through its raw pointer
            // (zeros, or default regions) before the one reference to it is made.
            unsafe {
                let f = (&raw mut FRAME_BUF).cast::<u8>();
                core::ptr::write_bytes(f, 0, FRAME_BUF_LEN);
                let l = (&raw mut LABELS).cast::<u16>();
                core::ptr::write_bytes(l, 0, LABELS_LEN);
                let b = (&raw mut BOXES).cast::<Region>();
                for k in 0..REGIONS {
                    b.add(k).write(Region::default());
                }
                let x = (&raw mut FEATURES).cast::<f32>();
                core::ptr::write_bytes(x, 0, REGIONS * D_IN);
                defmt::info!(
                    "frame buffer {=usize} B at {=usize:#x}, extractor labels {=usize} B, boxes {=usize} B, features {=usize} B",
                    FRAME_BUF_LEN,
                    f as usize,
                    LABELS_LEN * 2,
                    REGIONS * core::mem::size_of::<Region>(),
                    REGIONS * D_IN * 4
                );
                Input {
                    frame: core::slice::from_raw_parts_mut(f, FRAME_BUF_LEN),
                    labels: core::slice::from_raw_parts_mut(l, LABELS_LEN),
                    boxes: core::slice::from_raw_parts_mut(b, REGIONS),
                    features: core::slice::from_raw_parts_mut(x, REGIONS * D_IN),
                }
            }
        }

        /// Caption bundled frame `i`, filling `ph`; `on_step(event, cost)` logs each step.
        #[allow(clippy::too_many_arguments)]
        pub fn caption(
            &mut self,
            i: usize,
            model: &M2,
            ws: &mut Workspace,
            opts: &SearchOptions,
            board: &Board,
            ph: &mut Phases,
            mut on_step: impl FnMut(&StepEvent, u64),
        ) -> Result<Beam, ()> {
            let spec = &FRAMES[i];
            let (w, h) = (spec.width, spec.height);
            let stride = w.div_ceil(FRAME_ROW_ALIGN) * FRAME_ROW_ALIGN;
            // The stand-in for the camera: the frame's rows land in the RAM buffer at the DMA
            // row pitch (not timed: a camera's DMA runs beside the core).
            // SAFETY: a volatile read of the flash copy, so it is read from flash at run time.
            let src: &[u8] = unsafe { &*core::ptr::read_volatile(&(&raw const FRAMES_FLASH)) };
            for y in 0..h {
                let row = &src[spec.offset + y * w..spec.offset + (y + 1) * w];
                self.frame[y * stride..y * stride + w].copy_from_slice(row);
            }
            let frame = match Frame::new(&self.frame[..], w, h, stride) {
                Ok(f) => f,
                Err(e) => {
                    defmt::error!("image {=usize} ({=str}): {}", i, spec.name, e);
                    return Err(());
                }
            };
            defmt::info!(
                "image {=usize}: frame {=str}, {=usize}x{=usize} gray, row pitch {=usize} B",
                i,
                spec.name,
                w,
                h,
                stride
            );
            let scratch = FrameScratch {
                labels: &mut self.labels[..],
                regions: &mut self.boxes[..],
                features: &mut self.features[..],
            };
            let mut lap = Lap::new(board);
            let out = caption_frame(
                model,
                &frame,
                Polarity::Auto,
                &Params::DEMO,
                scratch,
                ws,
                opts,
                |ev| {
                    let cost = lap.lap();
                    match ev {
                        Event::Regions(n) => {
                            ph.regions = cost;
                            defmt::info!("image {=usize}: {=usize} regions", i, n);
                        }
                        Event::Encoded => ph.encoder = cost,
                        Event::CrossKv => ph.cross_kv = cost,
                        Event::Step(s) => {
                            let _ = ph.steps.push(cost);
                            on_step(s, cost);
                        }
                    }
                    lap.resume();
                },
            );
            match out {
                Ok(o) => match o.best() {
                    Some(b) => Ok(b.clone()),
                    None => {
                        defmt::error!("image {=usize}: no beam", i);
                        Err(())
                    }
                },
                Err(e) => {
                    defmt::error!("image {=usize}: {}", i, e);
                    Err(())
                }
            }
        }
    }
}

/// Feature images (a model not trained on `m2::regions` features): encoder, cross K/V and
/// beam search on region vectors computed on the host.
#[cfg(not(m2_frames))]
mod images {
    use super::*;
    use m2::search::{beam_search_encoded, Beam};

    /// Features of the bundled images, `[N_IMAGES, rows, d_in]` f32 little-endian, in flash.
    static FEATURES: Aligned<[u8; FEATURES_LEN]> =
        Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/features.bin")));

    pub struct Input;

    impl Input {
        pub fn new() -> Self {
            Input
        }

        /// Caption bundled image `i`, filling `ph`; `on_step(event, cost)` logs each step.
        #[allow(clippy::too_many_arguments)]
        pub fn caption(
            &mut self,
            i: usize,
            model: &M2,
            ws: &mut Workspace,
            opts: &SearchOptions,
            board: &Board,
            ph: &mut Phases,
            mut on_step: impl FnMut(&StepEvent, u64),
        ) -> Result<Beam, ()> {
            // SAFETY: a volatile read of a `'static` reference to an immutable static.
            let all: &[u8] = unsafe { &*core::ptr::read_volatile(&(&raw const FEATURES.0)) };
            let f = &all[i * IMAGE_FLOATS * 4..(i + 1) * IMAGE_FLOATS * 4];
            // SAFETY: FEATURES is 32-byte aligned and IMAGE_FLOATS * 4 bytes per image; any bit
            // pattern is a valid f32 (the engine rejects non-finite values itself).
            let f: &[f32] = unsafe { core::slice::from_raw_parts(f.as_ptr().cast(), IMAGE_FLOATS) };
            let fail = |e: m2::model::EngineError| {
                defmt::error!("image {=usize}: engine error {}", i, e);
            };
            let mut lap = Lap::new(board);
            model.encode_regions(f, ws).map_err(fail)?;
            ph.encoder = lap.lap();
            lap.resume();
            model.cross_kv(ws).map_err(fail)?;
            ph.cross_kv = lap.lap();
            lap.resume();
            let out = beam_search_encoded(model, ws, opts, |s| {
                let cost = lap.lap();
                let _ = ph.steps.push(cost);
                on_step(s, cost);
                lap.resume();
            })
            .map_err(fail)?;
            out.best()
                .cloned()
                .ok_or_else(|| defmt::error!("image {=usize}: no beam", i))
        }
    }
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
/// With flip-link the stack sits at the bottom of RAM: `_stack_end` is the RAM origin and
/// `_stack_start` the top of the stack, just below the statics.
mod stack {
    const PATTERN: u32 = 0x5A5A_A5A5;
    extern "C" {
        static _stack_start: u32; // top of the stack (cortex-m-rt, or flip-link's --defsym)
        static _stack_end: u32; // lowest address the stack may reach
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

/// A fault (panic-probe ends in `udf`, which lands here too; with flip-link so does a stack
/// overflow): fail the run.
#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc={=u32:#x}", ef.pc());
    board::end(false, board::debugger_attached())
}
