//! # m2 — the Meshed-Memory Transformer on edge hardware
//!
//! A `#![no_std]`, allocation-free inference engine for M² (Cornia et al., "Meshed-Memory
//! Transformer for Image Captioning", CVPR 2020), reproducing the reference implementation
//! (`aimagelab/meshed-memory-transformer`) caption for caption.
//!
//! * [`blob`] — the on-disk weight format, read in place (flash or mmap).
//! * [`config`] — hyper-parameters and presets.
//! * [`plan`] — the memory plan: workspace bytes from config, beam and regions (`const fn`).
//! * [`kernels`] — linear-layer kernels per ISA (scalar ground truth, AVX2, NEON, Cortex-M DSP).
//! * [`model`] — attention (with memory slots), encoder, meshed decoder.
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
pub mod input;
#[cfg(feature = "std")]
pub mod output;
#[cfg(feature = "pack")]
pub mod pack;

pub use blob::{Blob, BlobError};
pub use config::Config;
