//! # m2 — the Meshed-Memory Transformer on edge hardware
//!
//! A `#![no_std]`, allocation-free inference engine for M² (Cornia et al., "Meshed-Memory
//! Transformer for Image Captioning", CVPR 2020), reproducing the reference implementation
//! (`aimagelab/meshed-memory-transformer`) caption for caption.
//!
//! Weights stay where they are — in a flat, checksummed blob in flash, in an mmap, or in a
//! `static` — and every activation and cache lives in one caller-owned `[f32]` workspace whose
//! size is known before the first call ([`plan`]). The engine never allocates.
//!
//! ## Caption an image
//!
//! The bundled demo model (a trained M² on scenes of handwritten digits, int8 weights, 516 KB) captions
//! one of its scenes. The workspace is an array on the stack; a microcontroller would use a
//! `static` of [`plan::workspace_floats`] elements and [`kernels::Kernels::SCALAR`] (or the DSP
//! path its target has) instead of [`Kernels::detect`](kernels::Kernels::detect).
//!
//! ```
//! use m2::kernels::Kernels;
//! use m2::model::M2;
//! use m2::search::{beam_search, SearchOptions};
//! use m2::workspace::Workspace;
//! use m2::Blob;
//!
//! // A blob must be 32-byte aligned, and is read in place.
//! #[repr(C, align(32))]
//! struct Aligned<T: ?Sized>(T);
//! static DEMO: &Aligned<[u8]> = &Aligned(*include_bytes!("../assets/demo/demo-int8.m2"));
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let blob = Blob::parse(&DEMO.0)?; // validated once (checksum included); views cannot fail after
//! let model = M2::new(&blob, Kernels::detect());
//!
//! // Region features [R, d_in]: here from a PNG through the demo's region extractor (std);
//! // for a COCO model, bottom-up-attention features [R, 2048] (see `m2::input`).
//! let png = include_bytes!("../assets/demo/scenes/scene_01.png");
//! let (_regions, features) = m2::regions::features_from_png(png, blob.config().max_regions as usize)?;
//!
//! let opts = SearchOptions { beam: 5, max_len: 20 };
//! let plan = model.plan(opts.beam, opts.max_len); // about 200 KB for this model
//! let mut mem = [0f32; 64 * 1024];
//! let mut ws = Workspace::new(&mut mem, plan)?;
//!
//! let out = beam_search(&model, &features, &mut ws, &opts, |_step| {})?;
//! let mut text = [0u8; 256];
//! let n = m2::text::caption(&out.best().unwrap().tokens, |id| blob.token(id), false, &mut text)?;
//! assert_eq!(
//!     core::str::from_utf8(&text[..n])?,
//!     "there are three digits a four an eight and a seven"
//! );
//! # Ok(()) }
//! ```
//!
//! `examples/caption.rs` is the same as a program: a blob from a file (memory-mapped), features
//! from a `.npy` file or a PNG.
//!
//! ## Cargo features
//!
//! | feature | what it adds | needs |
//! |---|---|---|
//! | (none) | the whole engine: blob, model, searches, text, region extractor, camera frames | `core` only |
//! | `std` | [`blob::MappedBlob`] (mmap), [`input`] (`.npy` readers), [`output`] (atomic writes), PNG scenes, worker threads, `std::error::Error` on every error | `std` |
//! | `pack` | [`pack`]: reference checkpoints (safetensors) → blobs, GPTQ int8 calibration | `std` |
//! | `cli` | the `m2` command's dependencies (the binary requires it) | `std` |
//! | `defmt` | `defmt::Format` on the error types, for logging on a microcontroller | — |
//!
//! The defaults are `cli` and `pack` (the command, and the converter the tests use). A library
//! user picks what it needs:
//!
//! ```toml
//! m2 = { version = "0.1", default-features = false, features = ["std"] }   # a host program
//! m2 = { version = "0.1", default-features = false }                      # a microcontroller
//! ```
//!
//! ## Modules
//!
//! * [`blob`] — the on-disk weight format, read in place (flash or mmap).
//! * [`config`] — hyper-parameters and presets.
//! * [`plan`] — the memory plan: workspace bytes from config, beam and regions (`const fn`).
//! * [`workspace`] — the fixed slots every activation and cache lives in.
//! * [`kernels`] — linear-layer kernels per ISA (scalar ground truth, AVX2, NEON, Cortex-M DSP).
//! * [`model`] — attention (with memory slots), encoder, meshed decoder; `M2::encode`,
//!   `M2::step`, `M2::score`.
//! * [`search`] — the reference's beam search, and greedy decoding.
//! * [`regions`] — the digit-scene demo's region extractor (pixels → region features).
//! * [`frame`] — camera frames (strided 8-bit grayscale) → regions → caption, in one call.
//! * [`text`] — ids → caption text.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

pub mod blob;
pub mod config;
pub mod frame;
pub mod kernels;
pub mod math;
pub mod model;
pub mod plan;
pub mod regions;
pub mod search;
pub mod text;
pub mod workspace;

#[cfg(feature = "std")]
pub mod dataset;
#[cfg(feature = "std")]
pub mod input;
#[cfg(feature = "std")]
pub mod output;
#[cfg(feature = "pack")]
pub mod pack;

pub use blob::{Blob, BlobError};
pub use config::Config;
