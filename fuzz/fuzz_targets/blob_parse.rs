//! The blob parser on raw bytes (checksum on and off): never panics; whatever it accepts is
//! safe to read through every accessor.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::parse_all_ways(data);
});
