//! Fuzz-style property test of the parser: random mutations of valid blobs, with and without a
//! re-signed checksum (so mutations also reach the structural checks). The parser must never
//! panic, and whatever it accepts must be safe to read through every accessor.
//!
//! Bounded for CI: 3000 cases per property by default; `PROPTEST_CASES=N` overrides.
#![cfg(feature = "std")]

mod blob_util;
/// `exercise`: the accessor walk the cargo-fuzz targets run (one definition for both).
#[path = "../fuzz/fuzz_targets/common.rs"]
mod fuzz_common;

use blob_util::*;
use m2::blob::{hdr, AlignedBuf, DType, HEADER_LEN};
use m2::Blob;
use proptest::prelude::*;
use std::sync::OnceLock;

/// Two micro blobs (all-f32 and mixed f32/f16/int8, a few KB, so every mutation lands near
/// structure) and the tiny-s0 fixture at int8.
fn bases() -> &'static [Vec<u8>; 3] {
    static B: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    B.get_or_init(|| {
        [
            micro(false),
            micro(true),
            packed("tiny-s0", DType::I8).to_vec(),
        ]
    })
}

/// Mostly micro blobs; the fixture blob (~400 KB, slow to hash in debug builds) 1 case in 16.
fn pick() -> impl Strategy<Value = usize> {
    prop_oneof![15 => 0usize..2, 1 => Just(2usize)]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte anywhere.
    Flip { pos: usize, mask: u8 },
    /// Overwrite a byte in the header or table (where structure lives).
    Meta { pos: usize, value: u8 },
    /// Overwrite a little-endian u32/u64 field in header or table with an "interesting" value.
    Field { pos: usize, wide: bool, value: u64 },
    /// Truncate to `len`.
    Truncate { len: usize },
    /// Insert bytes at `pos`.
    Insert { pos: usize, bytes: Vec<u8> },
    /// Remove `n` bytes at `pos`.
    Remove { pos: usize, n: usize },
}

fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(32),
        Just(160),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(u64::MAX - 31),
        0u64..70_000,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // positions are reduced modulo the blob length when applied
    let meta = 0usize..(HEADER_LEN + 160 * 48 + 2000);
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(pos, mask)| Mutation::Flip { pos, mask }),
        4 => (meta.clone(), any::<u8>()).prop_map(|(pos, value)| Mutation::Meta { pos, value }),
        4 => (meta, any::<bool>(), interesting())
            .prop_map(|(pos, wide, value)| Mutation::Field { pos, wide, value }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(pos, bytes)| Mutation::Insert { pos, bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(pos, n)| Mutation::Remove { pos, n }),
    ]
}

fn apply(v: &mut Vec<u8>, m: &Mutation) {
    let len = v.len().max(1);
    match m {
        Mutation::Flip { pos, mask } => {
            let p = pos % len;
            if let Some(b) = v.get_mut(p) {
                *b ^= mask;
            }
        }
        Mutation::Meta { pos, value } => {
            let p = pos % len;
            if let Some(b) = v.get_mut(p) {
                *b = *value;
            }
        }
        Mutation::Field { pos, wide, value } => {
            let p = (pos & !3) % len;
            let bytes = value.to_le_bytes();
            let n = if *wide { 8 } else { 4 };
            for (i, b) in bytes.iter().take(n).enumerate() {
                if let Some(x) = v.get_mut(p + i) {
                    *x = *b;
                }
            }
        }
        Mutation::Truncate { len: l } => v.truncate(l % len),
        Mutation::Insert { pos, bytes } => {
            let p = pos % (v.len() + 1);
            v.splice(p..p, bytes.iter().copied());
        }
        Mutation::Remove { pos, n } => {
            let p = pos % len;
            let end = (p + n).min(v.len());
            v.drain(p..end);
        }
    }
}

fn check(v: &[u8]) {
    let buf = AlignedBuf::from_bytes(v);
    if let Ok(blob) = Blob::parse(&buf) {
        fuzz_common::exercise(&blob);
    }
    if let Ok(blob) = Blob::parse_skip_checksum(&buf) {
        fuzz_common::exercise(&blob);
    }
    let _ = Blob::declared_len(&buf);
    // also at a misaligned base
    let mut shifted = vec![0u8; 1];
    shifted.extend_from_slice(v);
    let sb = AlignedBuf::from_bytes(&shifted);
    assert!(Blob::parse(&sb[1..]).is_err() || v.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_blobs_never_panic(which in pick(), muts in prop::collection::vec(mutation(), 1..4)) {
        let mut v = bases()[which].clone();
        for m in &muts {
            apply(&mut v, m);
        }
        check(&v);
    }

    #[test]
    fn resigned_mutations_never_panic(which in pick(), muts in prop::collection::vec(mutation(), 1..4), fix_len in any::<bool>()) {
        let mut v = bases()[which].clone();
        for m in &muts {
            apply(&mut v, m);
        }
        if fix_len && v.len() >= HEADER_LEN {
            let n = v.len() as u64;
            v[hdr::TOTAL_LEN..hdr::TOTAL_LEN + 8].copy_from_slice(&n.to_le_bytes());
        }
        resign(&mut v);
        check(&v);
    }
}
