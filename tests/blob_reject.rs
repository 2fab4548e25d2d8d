//! Typed rejection of malformed blobs: truncation, magic, version, bit flips, and — with the
//! checksum re-signed so the deeper checks are reached — every structural contradiction.
#![cfg(feature = "std")]

mod blob_util;

use blob_util::*;
use m2::blob::{entry, hdr, AlignedBuf, DType, Part, Section, TensorKind, ENTRY_LEN, HEADER_LEN};
use m2::config::ConfigError;
use m2::{Blob, BlobError};

fn parse(b: &[u8]) -> Result<(), BlobError> {
    let buf = AlignedBuf::from_bytes(b);
    Blob::parse(&buf).map(|_| ())
}

/// Every interesting boundary of a valid blob: header fields, table entries, sections, tensors.
fn boundaries(b: &[u8]) -> Vec<usize> {
    let blob = Blob::parse(b).unwrap();
    let mut v: Vec<usize> = vec![
        0, 1, 7, 8, 12, 16, 24, 28, 32, 36, 64, 99, 100, 104, 112, 116, 120, 128, 136, 144, 152,
        159, 160,
    ];
    let t = table_off(b);
    for i in 0..=blob.tensor_count() {
        v.push(t + i * ENTRY_LEN);
        v.push(t + i * ENTRY_LEN + 17);
    }
    for off in [hdr::VOCAB_INDEX_OFF, hdr::VOCAB_BYTES_OFF, hdr::DATA_OFF] {
        let o = get_u64(b, off) as usize;
        v.extend([o.saturating_sub(1), o, o + 1]);
    }
    for ti in blob.tensors() {
        v.extend([
            ti.offset as usize,
            ti.offset as usize + 1,
            (ti.offset + ti.len) as usize - 1,
        ]);
    }
    v.retain(|&x| x < b.len());
    v.sort();
    v.dedup();
    v
}

fn check_truncation(b: &[u8], len: usize, resigned: bool) {
    let err = parse(&b[..len]).unwrap_err();
    if len < HEADER_LEN {
        assert!(
            matches!(err, BlobError::TooShort { .. }),
            "len {len}: {err}"
        );
    } else {
        assert_eq!(
            err,
            BlobError::LengthMismatch {
                header: b.len() as u64,
                actual: len
            },
            "len {len}"
        );
    }
    // the same truncation with a consistent length field and a fresh checksum must still be
    // rejected (a section or tensor now points past the end)
    if resigned && len >= HEADER_LEN {
        let mut v = b[..len].to_vec();
        put_u64(&mut v, hdr::TOTAL_LEN, len as u64);
        resign(&mut v);
        assert!(parse(&v).is_err(), "re-signed truncation to {len} accepted");
    }
}

#[test]
fn truncated_at_every_length_micro() {
    let b = micro(true);
    assert!(b.len() < 64 * 1024, "{}", b.len());
    for len in 0..b.len() {
        check_truncation(&b, len, true);
    }
}

#[test]
fn truncated_at_every_boundary() {
    for b in [tiny(), packed("tiny-s2-masked", DType::I8)] {
        let bounds = boundaries(&b);
        for (i, &len) in bounds.iter().enumerate() {
            // re-signing hashes the whole prefix: do it for a third of the boundaries
            check_truncation(&b, len, i % 3 == 0);
        }
        for len in (0..b.len()).step_by(b.len() / 200 + 1) {
            check_truncation(&b, len, false);
        }
        check_truncation(&b, b.len() - 1, true);
    }
}

#[test]
fn trailing_bytes() {
    let mut v = tiny().to_vec();
    v.push(0);
    let n = v.len();
    assert_eq!(
        parse(&v).unwrap_err(),
        BlobError::LengthMismatch {
            header: n as u64 - 1,
            actual: n
        }
    );
}

#[test]
fn bad_magic_version_header_len() {
    let b = tiny();
    for i in 0..8 {
        let mut v = b.to_vec();
        v[i] ^= 0x20;
        assert!(
            matches!(parse(&v), Err(BlobError::BadMagic { .. })),
            "magic byte {i}"
        );
    }
    let err = parse(b"GGUF\0\0\0\0 and then more bytes, more than a header's worth ......................................................................................................................").unwrap_err();
    assert!(matches!(err, BlobError::BadMagic { .. }));
    assert!(err.to_string().contains("not an M2 blob"));
    for ver in [0u32, 4, 0x0100_0000] {
        let mut v = b.to_vec();
        put_u32(&mut v, hdr::VERSION, ver);
        assert_eq!(
            parse(&v).unwrap_err(),
            BlobError::UnsupportedVersion {
                found: ver,
                supported: 3
            }
        );
    }
    // version 3 is only for a blob with a tensor that needs it (int8a16), even re-signed
    assert_eq!(
        edited(&b, |v| put_u32(v, hdr::VERSION, 3)).unwrap_err(),
        BlobError::VersionNotNeeded {
            found: 3,
            expected: 2
        }
    );
    let mut v = b.to_vec();
    put_u32(&mut v, hdr::HEADER_LEN, 161);
    assert_eq!(
        parse(&v).unwrap_err(),
        BlobError::BadHeaderLen {
            found: 161,
            expected: 160
        }
    );
}

#[test]
fn bit_flips_never_accepted() {
    let micro = AlignedBuf::from_bytes(&micro(true));
    for (b, samples) in [
        (micro, usize::MAX),
        (tiny(), 400),
        (packed("tiny-s0", DType::I8), 400),
        (packed("small-s3", DType::F16), 150),
    ] {
        let len = b.len();
        let mut positions: Vec<usize> = (0..HEADER_LEN + 3 * ENTRY_LEN).collect();
        positions.extend((0..len).step_by((len / samples.min(len)).max(1)));
        if samples < len {
            positions.extend(boundaries(&b).into_iter().step_by(3));
        }
        positions.push(len - 1);
        let mut v = b; // flipped in place: the buffer stays aligned, nothing is copied
        for (n, &p) in positions.iter().enumerate() {
            let bit = 1u8 << (n % 8);
            v[p] ^= bit;
            let err = Blob::parse(&v)
                .map(|_| ())
                .expect_err("flipped bit accepted");
            // the checksum field and the weights: the full CRC catches it; header, table and
            // vocabulary: the structure CRC (or the bounds check of a flipped data_off, which
            // the structure CRC needs to know its range); total_len: the length check
            let data_off = get_u64(&v, hdr::DATA_OFF) as usize;
            if (hdr::CHECKSUM..hdr::CHECKSUM + 4).contains(&p) || p >= data_off {
                assert!(
                    matches!(err, BlobError::ChecksumMismatch { .. }),
                    "pos {p}: {err}"
                );
            } else if p >= hdr::CHECKSUM + 4 {
                let data_off_field = (hdr::DATA_OFF..hdr::DATA_OFF + 8).contains(&p);
                assert!(
                    matches!(err, BlobError::StructureChecksumMismatch { .. })
                        || data_off_field
                            && matches!(
                                err,
                                BlobError::SectionOutOfBounds {
                                    section: Section::Data,
                                    ..
                                }
                            ),
                    "pos {p}: {err}"
                );
            } else if p >= hdr::TOTAL_LEN {
                assert!(
                    matches!(err, BlobError::LengthMismatch { .. }),
                    "pos {p}: {err}"
                );
            }
            v[p] ^= bit;
        }
        Blob::parse(&v).unwrap();
    }
}

/// Issue 14, class 6: without the full checksum (`parse_skip_checksum`, the microcontroller
/// path) every single-bit flip of a byte that is not weight data is still refused — header,
/// tensor table, vocabulary index and bytes, padding — except the four bytes of the skipped
/// checksum itself; a flip in the weights is accepted (that is what the full checksum is for).
#[test]
fn skip_checksum_still_catches_every_structural_flip() {
    // every byte of the tiny blob; the larger small-s3 blob (a vocabulary of thousands of
    // bytes) every byte of its header and tensor table and a sample of the rest, so that the
    // test stays quick under qemu (the demo blob's every bit is flipped in tests/hostile.rs)
    for (b, sample) in [(tiny(), 1), (packed("small-s3", DType::I8), 13)] {
        let data_off = get_u64(&b, hdr::DATA_OFF) as usize;
        let table_end = get_u64(&b, hdr::TABLE_OFF) as usize
            + Blob::parse(&b).unwrap().tensor_count() * ENTRY_LEN;
        let mut v = b;
        let mut refused = 0;
        let positions: Vec<usize> = (0..data_off)
            .filter(|&p| p < table_end || p % sample == 0)
            .collect();
        for &p in &positions {
            for bit in 0..8 {
                v[p] ^= 1 << bit;
                let r = Blob::parse_skip_checksum(&v).map(|_| ());
                if (hdr::CHECKSUM..hdr::CHECKSUM + 4).contains(&p) {
                    assert_eq!(r, Ok(()), "pos {p} bit {bit}: the skipped checksum");
                } else {
                    assert!(
                        r.is_err(),
                        "pos {p} bit {bit} accepted without the checksum"
                    );
                    refused += 1;
                }
                v[p] ^= 1 << bit;
            }
        }
        assert_eq!(refused, 8 * (positions.len() - 4));
        // a weight byte: accepted here, caught by the full checksum
        v[data_off] ^= 1;
        assert!(Blob::parse_skip_checksum(&v).is_ok());
        assert!(matches!(
            Blob::parse(&v),
            Err(BlobError::ChecksumMismatch { .. })
        ));
    }
}

/// A version-1 blob (the structure checksum's word reserved as zero) still loads with its full
/// checksum, and is refused without it: nothing would protect its structure.
#[test]
fn version_1_blobs_load_only_with_the_full_checksum() {
    let mut v = tiny();
    put_u32(&mut v, hdr::VERSION, 1);
    put_u32(&mut v, hdr::STRUCTURE_CRC, 0);
    m2::blob::sign(&mut v);
    let blob = Blob::parse(&v).unwrap();
    assert_eq!(blob.version(), 1);
    assert_eq!(
        Blob::parse_skip_checksum(&v).map(|_| ()),
        Err(BlobError::NoStructureChecksum { version: 1 })
    );
    assert_eq!(Blob::parse(&tiny()).unwrap().version(), 2);
}

#[test]
fn misaligned_base_address() {
    let b = tiny();
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&b);
    let buf = AlignedBuf::from_bytes(&shifted);
    let err = Blob::parse(&buf[1..]).unwrap_err();
    assert!(
        matches!(err, BlobError::BaseMisaligned { required: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("AlignedBuf"));
}

#[test]
fn reserved_fields() {
    let b = tiny();
    assert_eq!(
        edited(&b, |v| put_u32(v, hdr::FLAGS, 1)),
        Err(BlobError::Reserved {
            offset: hdr::FLAGS,
            value: 1
        })
    );
    // version 1 reserves the structure checksum's word
    assert_eq!(
        edited(&b, |v| {
            put_u32(v, hdr::VERSION, 1);
            put_u32(v, hdr::STRUCTURE_CRC, 9)
        }),
        Err(BlobError::Reserved {
            offset: hdr::STRUCTURE_CRC,
            value: 9
        })
    );
    let at = entry_field(&b, 3, entry::RESERVED + 1);
    assert_eq!(
        edited(&b, |v| v[at] = 5),
        Err(BlobError::Reserved {
            offset: at,
            value: 5
        })
    );
}

/// Overwrite config field `i` (in header order) with `value`.
fn cfg_field(i: usize, value: u32) -> impl FnOnce(&mut Vec<u8>) {
    move |v: &mut Vec<u8>| put_u32(v, hdr::CONFIG + 4 * i, value)
}

#[test]
fn config_contradictions() {
    let b = tiny();
    use BlobError::*;
    // h, d_k, d_v, d_model
    assert!(matches!(
        edited(&b, cfg_field(2, 3)),
        Err(Config(ConfigError::HeadSplit { .. }))
    ));
    assert!(matches!(
        edited(&b, cfg_field(1, 32)),
        Err(Config(ConfigError::HeadSplit { .. }))
    ));
    assert_eq!(
        edited(&b, cfg_field(6, 2)),
        Err(Config(ConfigError::EncoderLayers(2)))
    );
    assert_eq!(
        edited(&b, cfg_field(11, 0)),
        Err(Config(ConfigError::Zero("max_regions")))
    );
    // pos_rows 1: no position for a word (row 0 is <pad>'s)
    assert_eq!(
        edited(&b, cfg_field(10, 1)),
        Err(Config(ConfigError::NoPositions(1)))
    );
    assert!(matches!(
        edited(&b, cfg_field(15, 50)),
        Err(Config(ConfigError::SpecialId {
            which: "eos",
            id: 50,
            vocab: 50
        }))
    ));
    assert!(matches!(
        edited(&b, cfg_field(0, u32::MAX)),
        Err(Config(ConfigError::TooLarge(..)))
    ));
    let nan = f32::NAN.to_bits();
    assert_eq!(
        edited(&b, cfg_field(16, nan)),
        Err(EncPadValue { bits: nan })
    );
    // a config that is valid on its own but contradicts the stored shapes
    assert_eq!(
        edited(&b, cfg_field(5, 256)),
        Err(ShapeMismatch {
            kind: TensorKind::EncFf1W,
            layer: 0,
            expected: (256, 64),
            found: (128, 64)
        })
    );
    assert_eq!(
        edited(&b, cfg_field(0, 2048)),
        Err(ShapeMismatch {
            kind: TensorKind::EncInW,
            layer: 0,
            expected: (64, 2048),
            found: (64, 64)
        })
    );
    assert_eq!(
        edited(&b, cfg_field(8, 40)),
        Err(ShapeMismatch {
            kind: TensorKind::EncMemK,
            layer: 0,
            expected: (40, 64),
            found: (8, 64)
        })
    );
    assert_eq!(
        edited(&b, cfg_field(10, 55)),
        Err(ShapeMismatch {
            kind: TensorKind::PosEmb,
            layer: 0,
            expected: (55, 64),
            found: (21, 64)
        })
    );
    // vocab 49: token count disagrees
    assert_eq!(
        edited(&b, cfg_field(9, 49)),
        Err(VocabCount {
            found: 50,
            expected: 49
        })
    );
    // more decoder layers than stored: the table is too short -> first missing tensor named
    let err = edited(&b, cfg_field(7, 4)).unwrap_err();
    assert_eq!(
        err,
        Missing {
            kind: TensorKind::SelfQW,
            layer: 3
        }
    );
    assert!(
        err.to_string()
            .contains("decoder.layers.3.self_att.attention.fc_q.weight"),
        "{err}"
    );
    // fewer decoder layers: layer-2 entries are out of range
    assert!(matches!(
        edited(&b, cfg_field(7, 2)),
        Err(TensorCount { .. })
            | Err(BadLayer {
                layer: 2,
                layers: 2,
                ..
            })
    ));
    let err = edited(&b, cfg_field(5, 256)).unwrap_err().to_string();
    assert!(
        err.contains("encoder.layers.0.pwff.fc1.weight") && err.contains("256"),
        "{err}"
    );
}

#[test]
fn section_bounds() {
    let b = tiny();
    use BlobError::*;
    let len = b.len() as u64;
    assert!(matches!(
        edited(&b, |v| put_u64(v, hdr::TABLE_OFF, len)),
        Err(SectionOutOfBounds {
            section: Section::Table,
            ..
        })
    ));
    assert!(matches!(
        edited(&b, |v| put_u64(v, hdr::TABLE_OFF, u64::MAX - 10)),
        Err(SectionOutOfBounds {
            section: Section::Table,
            ..
        })
    ));
    assert_eq!(
        edited(&b, |v| put_u64(v, hdr::TABLE_OFF, 100)),
        Err(SectionOverlap {
            section: Section::Table,
            offset: 100,
            previous_end: 160
        })
    );
    assert!(matches!(
        edited(&b, |v| put_u64(v, hdr::VOCAB_BYTES_LEN, len)),
        Err(SectionOutOfBounds {
            section: Section::VocabBytes,
            ..
        })
    ));
    assert!(matches!(
        edited(&b, |v| put_u64(v, hdr::VOCAB_INDEX_OFF, 170)),
        Err(SectionOverlap {
            section: Section::VocabIndex,
            ..
        })
    ));
    let data_off = get_u64(&b, hdr::DATA_OFF);
    let data_len = get_u64(&b, hdr::DATA_LEN);
    assert!(matches!(
        edited(&b, |v| put_u64(v, hdr::DATA_LEN, data_len + 1)),
        Err(SectionOutOfBounds {
            section: Section::Data,
            ..
        })
    ));
    assert_eq!(
        edited(&b, |v| {
            put_u64(v, hdr::DATA_OFF, data_off + 4);
            put_u64(v, hdr::DATA_LEN, data_len - 4);
        }),
        Err(SectionMisaligned {
            section: Section::Data,
            offset: data_off + 4,
            align: 32
        })
    );
    // shrinking the data area leaves the first tensor outside it
    let err = edited(&b, |v| {
        put_u64(v, hdr::DATA_OFF, data_off + 32);
        put_u64(v, hdr::DATA_LEN, data_len - 32);
    })
    .unwrap_err();
    assert!(matches!(
        err,
        TensorOutOfBounds {
            kind: TensorKind::EncInW,
            part: Part::Data,
            ..
        }
    ));
    // tensor count
    let n = get_u32(&b, hdr::N_TENSORS);
    assert_eq!(
        edited(&b, |v| put_u32(v, hdr::N_TENSORS, n + 1)),
        Err(TensorCount {
            found: n + 1,
            expected: n
        })
    );
    assert_eq!(
        edited(&b, |v| put_u32(v, hdr::N_TENSORS, n - 1)),
        Err(Missing {
            kind: TensorKind::DecFfLnB,
            layer: 2
        })
    );
    assert_eq!(
        edited(&b, |v| put_u32(v, hdr::N_TOKENS, 51)),
        Err(VocabCount {
            found: 51,
            expected: 50
        })
    );
}

#[test]
fn table_entry_contradictions() {
    let b = tiny();
    use BlobError::*;
    use TensorKind::*;
    let e = |kind, layer| entry_index(&b, kind, layer);
    let f = |kind, layer, field| entry_field(&b, e(kind, layer), field);

    assert_eq!(
        edited(&b, |v| put_u16(v, f(EncQB, 1, entry::KIND), 999)),
        Err(UnknownKind {
            entry: e(EncQB, 1) as u32,
            code: 999
        })
    );
    assert_eq!(
        edited(&b, |v| put_u16(v, f(EncQB, 1, entry::LAYER), 3)),
        Err(BadLayer {
            entry: e(EncQB, 1) as u32,
            kind: EncQB,
            layer: 3,
            layers: 3
        })
    );
    assert!(matches!(
        edited(&b, |v| put_u16(v, f(WordEmb, 0, entry::LAYER), 1)),
        Err(BadLayer {
            kind: WordEmb,
            layer: 1,
            layers: 1,
            ..
        })
    ));
    assert_eq!(
        edited(&b, |v| v[f(SelfKW, 2, entry::DTYPE)] = 7),
        Err(UnknownDType {
            kind: SelfKW,
            layer: 2,
            code: 7
        })
    );
    assert_eq!(
        edited(&b, |v| v[f(EncAttLnG, 0, entry::DTYPE)] = DType::F16 as u8),
        Err(DTypeNotAllowed {
            kind: EncAttLnG,
            layer: 0,
            dtype: DType::F16
        })
    );
    assert_eq!(
        edited(&b, |v| v[f(EncMemK, 1, entry::DTYPE)] = DType::I8 as u8),
        Err(DTypeNotAllowed {
            kind: EncMemK,
            layer: 1,
            dtype: DType::I8
        })
    );
    assert_eq!(
        edited(&b, |v| v[f(SelfKW, 2, entry::DTYPE)] = DType::F16 as u8),
        Err(ByteLength {
            kind: SelfKW,
            layer: 2,
            part: Part::Data,
            expected: 8192,
            found: 16384
        })
    );
    assert_eq!(
        edited(&b, |v| put_u32(v, f(Alpha2W, 1, entry::COLS), 64)),
        Err(ShapeMismatch {
            kind: Alpha2W,
            layer: 1,
            expected: (64, 128),
            found: (64, 64)
        })
    );
    assert_eq!(
        edited(&b, |v| put_u32(v, f(EncInB, 0, entry::ROWS), 64)),
        Err(ShapeMismatch {
            kind: EncInB,
            layer: 0,
            expected: (1, 64),
            found: (64, 64)
        })
    );
    assert_eq!(
        edited(&b, |v| put_u64(
            v,
            f(VocabW, 0, entry::DATA_LEN),
            50 * 64 * 4 + 32
        )),
        Err(ByteLength {
            kind: VocabW,
            layer: 0,
            part: Part::Data,
            expected: 12800,
            found: 12832
        })
    );
    // offsets past the end / overflowing / misaligned
    let len = b.len() as u64;
    for off in [len, len - 32, u64::MAX - 7, 0, 64] {
        let err = edited(&b, |v| put_u64(v, f(DecFf2W, 1, entry::DATA_OFF), off)).unwrap_err();
        assert!(
            matches!(
                err,
                TensorOutOfBounds {
                    kind: DecFf2W,
                    layer: 1,
                    part: Part::Data,
                    ..
                }
            ),
            "{off}: {err}"
        );
    }
    let off = get_u64(&b, f(DecFf2W, 1, entry::DATA_OFF));
    assert_eq!(
        edited(&b, |v| put_u64(v, f(DecFf2W, 1, entry::DATA_OFF), off + 4)),
        Err(TensorMisaligned {
            kind: DecFf2W,
            layer: 1,
            part: Part::Data,
            offset: off + 4
        })
    );
    // overlap: point a bias at another bias's bytes
    let other = get_u64(&b, f(SelfQB, 0, entry::DATA_OFF));
    let err = edited(&b, |v| put_u64(v, f(SelfKB, 0, entry::DATA_OFF), other)).unwrap_err();
    assert!(matches!(err, Overlap { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("decoder.layers.0.self_att.attention.fc_q.bias"),
        "{msg}"
    );
    assert!(
        msg.contains("decoder.layers.0.self_att.attention.fc_k.bias"),
        "{msg}"
    );
    // partial overlap: a weight shifted by 32 bytes into its neighbour
    let w_off = get_u64(&b, f(EncQW, 0, entry::DATA_OFF));
    assert!(matches!(
        edited(&b, |v| put_u64(v, f(EncQW, 0, entry::DATA_OFF), w_off + 32)),
        Err(Overlap { .. })
    ));
    // duplicate: make the EncInLnG entry a second EncInB
    let (i, j) = (e(EncInB, 0), e(EncInLnG, 0));
    assert_eq!(
        edited(&b, |v| put_u16(
            v,
            f(EncInLnG, 0, entry::KIND),
            EncInB.code()
        )),
        Err(Duplicate {
            kind: EncInB,
            layer: 0,
            first: i as u32,
            second: j as u32
        })
    );
    // scales on a non-int8 tensor
    assert_eq!(
        edited(&b, |v| put_u64(v, f(EncOW, 2, entry::SCALES_OFF), 64)),
        Err(UnexpectedScales {
            kind: EncOW,
            layer: 2,
            offset: 64,
            len: 0
        })
    );
}

#[test]
fn int8_scale_contradictions() {
    let b = packed("tiny-s0", DType::I8);
    use BlobError::*;
    use TensorKind::*;
    let f = |kind, layer, field| entry_field(&b, entry_index(&b, kind, layer), field);
    assert_eq!(
        edited(&b, |v| put_u64(v, f(CrossVW, 1, entry::SCALES_LEN), 4)),
        Err(ByteLength {
            kind: CrossVW,
            layer: 1,
            part: Part::Scales,
            expected: 256,
            found: 4
        })
    );
    let soff = get_u64(&b, f(CrossVW, 1, entry::SCALES_OFF));
    assert_eq!(
        edited(&b, |v| put_u64(
            v,
            f(CrossVW, 1, entry::SCALES_OFF),
            soff + 8
        )),
        Err(TensorMisaligned {
            kind: CrossVW,
            layer: 1,
            part: Part::Scales,
            offset: soff + 8
        })
    );
    assert!(matches!(
        edited(&b, |v| put_u64(
            v,
            f(CrossVW, 1, entry::SCALES_OFF),
            b.len() as u64
        )),
        Err(TensorOutOfBounds {
            kind: CrossVW,
            part: Part::Scales,
            ..
        })
    ));
    // scales pointing into the tensor's own values
    let doff = get_u64(&b, f(CrossVW, 1, entry::DATA_OFF));
    let err = edited(&b, |v| put_u64(v, f(CrossVW, 1, entry::SCALES_OFF), doff)).unwrap_err();
    assert!(
        matches!(
            err,
            Overlap {
                a: (CrossVW, 1, Part::Data),
                b: (CrossVW, 1, Part::Scales),
                ..
            }
        ),
        "{err}"
    );
    // an int8 tensor relabelled f32 keeps its scales -> length error first
    assert!(matches!(
        edited(&b, |v| v[f(CrossVW, 1, entry::DTYPE)] = 0),
        Err(ByteLength {
            kind: CrossVW,
            part: Part::Data,
            ..
        })
    ));
}

#[test]
fn vocab_index_contradictions() {
    let b = tiny();
    use BlobError::*;
    let vi = get_u64(&b, hdr::VOCAB_INDEX_OFF) as usize;
    let vb_len = get_u64(&b, hdr::VOCAB_BYTES_LEN);
    assert!(matches!(
        edited(&b, |v| put_u32(v, vi, 1)),
        Err(VocabOffsets { id: 0, .. })
    ));
    // token 5 ends before it starts
    assert!(matches!(
        edited(&b, |v| put_u32(v, vi + 6 * 4, 0)),
        Err(VocabOffsets { id: 5, .. })
    ));
    // last offset not the byte length
    assert!(matches!(
        edited(&b, |v| put_u32(v, vi + 50 * 4, vb_len as u32 - 1)),
        Err(VocabOffsets { id: 49, .. })
    ));
    assert!(matches!(
        edited(&b, |v| put_u32(v, vi + 10 * 4, u32::MAX)),
        Err(VocabOffsets { id: 9, .. })
    ));
}

#[test]
fn errors_display_one_line() {
    let b = tiny();
    let errs = [
        parse(&b[..10]).unwrap_err(),
        parse(&b[..1000]).unwrap_err(),
        edited(&b, cfg_field(5, 256)).unwrap_err(),
        edited(&b, |v| put_u64(v, hdr::TABLE_OFF, u64::MAX)).unwrap_err(),
    ];
    for e in errs {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
    }
}
