//! A whole caption on any blob that parses: the input is `[sel u8][n_features u16 LE][f32 LE
//! features…][blob bytes]`, the blob re-signed so it passes the checksum. Beam search and
//! greedy decoding must return a caption or an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2::blob::AlignedBuf;
use m2::Blob;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let sel = data[0];
    let n = u16::from_le_bytes([data[1], data[2]]) as usize;
    let rest = &data[3..];
    let fbytes = (n * 4).min(rest.len() & !3);
    let features: Vec<f32> = rest[..fbytes]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut blob = rest[fbytes..].to_vec();
    m2::blob::sign(&mut blob);
    let buf = AlignedBuf::from_bytes(&blob);
    if let Ok(b) = Blob::parse(&buf) {
        common::caption(&b, &features, sel);
    }
});
