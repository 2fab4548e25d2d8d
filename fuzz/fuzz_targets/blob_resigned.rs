//! The blob parser past the checksum: the input is re-signed (checksum recomputed, and the
//! declared length set to the real one when the first byte is odd) so mutations reach the
//! structural checks — what a blob written by a buggy or hostile packer looks like.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2::blob::{hdr, HEADER_LEN};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut v = data.to_vec();
    if v.len() >= HEADER_LEN && v[0] & 1 == 1 {
        let n = v.len() as u64;
        v[hdr::TOTAL_LEN..hdr::TOTAL_LEN + 8].copy_from_slice(&n.to_le_bytes());
    }
    m2::blob::sign(&mut v);
    common::parse_all_ways(&v);
});
