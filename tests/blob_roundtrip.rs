//! Pack every fixture at every dtype, read it back, compare with the checkpoint.
#![cfg(feature = "std")]

mod blob_util;

use blob_util::*;
use half::f16;
use m2::blob::{
    AlignedBuf, BlobWriter, Class, DType, MappedBlob, TensorData, TensorKind, WeightData, ALIGN,
};
use m2::{Blob, Config};
use safetensors::SafeTensors;

fn check_fixture(name: &str, dtype: DType) {
    let st_bytes = checkpoint(name);
    let st = SafeTensors::deserialize(&st_bytes).unwrap();
    let buf = packed(name, dtype);
    let blob = Blob::parse(&buf).unwrap_or_else(|e| panic!("{name} {dtype}: {e}"));
    let cfg = *blob.config();
    assert_eq!(blob.len(), buf.len());
    assert_eq!(blob.tensor_count(), TensorKind::required_count(&cfg));
    blob.verify_checksum().unwrap();

    let sqrt_dk = (cfg.d_k as f32).sqrt();
    let sqrt_m = (cfg.m as f32).sqrt();
    let mut checked = 0;
    for (kind, layer) in TensorKind::required(&cfg) {
        let key = kind.key(layer).to_string();
        let (want, shape) = tensor_f32(&st, &key);
        let info = blob.tensor(kind, layer as usize).unwrap();
        assert_eq!(info.offset % ALIGN as u64, 0, "{key}");
        assert_eq!(info.scales_offset % ALIGN as u64, 0, "{key}");
        let (rows, cols) = kind.shape(&cfg);
        assert_eq!(want.len(), rows as usize * cols as usize, "{key} {shape:?}");
        let m = blob.matrix(kind, layer as usize);
        assert_eq!((m.rows, m.cols), (rows as usize, cols as usize), "{key}");
        match kind.class() {
            Class::Weight => {
                assert_eq!(m.dtype(), dtype, "{key}");
                match m.data {
                    WeightData::F32(w) => assert_eq!(w, &want[..], "{key}"),
                    WeightData::F16(w) => {
                        for (i, (g, x)) in w.iter().zip(&want).enumerate() {
                            assert_eq!(g.to_bits(), f16::from_f32(*x).to_bits(), "{key}[{i}]");
                        }
                    }
                    WeightData::I8 { q, scales, .. } => {
                        assert_eq!(scales.len(), m.rows);
                        for r in 0..m.rows {
                            let row = &want[r * m.cols..(r + 1) * m.cols];
                            let absmax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
                            assert_eq!(scales[r], absmax / 127.0, "{key} row {r}");
                            for c in 0..m.cols {
                                let qv = q[r * m.cols + c];
                                assert!((-127..=127).contains(&qv), "{key}");
                                let err = (qv as f32 * scales[r] - row[c]).abs();
                                assert!(
                                    err <= scales[r] * 0.5 * (1.0 + 1e-5),
                                    "{key}[{r},{c}]: error {err} > half step {}",
                                    scales[r] * 0.5
                                );
                            }
                        }
                    }
                }
                // row_to_f32 agrees with the view
                let mut row = vec![0f32; m.cols];
                m.row_to_f32(m.rows - 1, &mut row);
                let last = &want[(m.rows - 1) * m.cols..];
                for (g, x) in row.iter().zip(last) {
                    assert!((g - x).abs() <= x.abs() * 1e-2 + 0.02, "{key} row_to_f32");
                }
            }
            Class::Vector | Class::Table => {
                let v = blob.vector(kind, layer as usize);
                let factor = match kind {
                    TensorKind::EncMemK => sqrt_dk,
                    TensorKind::EncMemV => sqrt_m,
                    _ => 1.0,
                };
                assert_eq!(v.len(), want.len());
                for (i, (g, x)) in v.iter().zip(&want).enumerate() {
                    let expect = if factor == 1.0 { *x } else { *x * factor };
                    assert_eq!(g.to_bits(), expect.to_bits(), "{key}[{i}]");
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, blob.tensor_count());

    // vocabulary byte-exact
    let vocab = vocab(name);
    assert_eq!(blob.token_count(), vocab.len());
    for (id, tok) in vocab.iter().enumerate() {
        assert_eq!(blob.token(id as u32).unwrap(), &tok[..], "token {id}");
    }
    assert_eq!(blob.token(vocab.len() as u32), None);
    assert_eq!(
        blob.max_token_len(),
        vocab.iter().map(Vec::len).max().unwrap()
    );
    assert_eq!(blob.tokens().count(), vocab.len());
}

#[test]
fn roundtrip_all_fixtures_all_dtypes() {
    for name in FIXTURES {
        for dtype in DTYPES {
            check_fixture(name, dtype);
        }
    }
}

#[test]
fn configs_match_fixtures() {
    let b = packed("tiny-s0", DType::F32);
    assert_eq!(*Blob::parse(&b).unwrap().config(), Config::TINY);
    let b = packed("tiny-s2-masked", DType::F32);
    let c = *Blob::parse(&b).unwrap().config();
    assert_eq!((c.unk, c.pad, c.bos, c.eos), (0, 1, 2, 3));
    let b = packed("small-s3", DType::I8);
    let c = *Blob::parse(&b).unwrap().config();
    let want = Config {
        d_model: 64,
        d_k: 8,
        d_v: 8,
        d_ff: 256,
        ..Config::COCO
    };
    assert_eq!(c, want);
}

#[test]
fn coco_whitespace_tokens_survive() {
    let b = packed("small-s3", DType::I8);
    let blob = Blob::parse(&b).unwrap();
    let coco =
        m2::pack::read_vocab_json(&std::fs::read(fixture_dir("coco-vocab.json")).unwrap()).unwrap();
    assert_eq!(coco.len(), 10201);
    for (id, tok) in [
        (86, " "),
        (2109, "  "),
        (3087, "\n"),
        (5208, "   "),
        (5337, "\n "),
        (8708, "    "),
    ] {
        assert_eq!(blob.token(id).unwrap(), tok.as_bytes(), "id {id}");
        assert_eq!(coco[id as usize], tok.as_bytes());
    }
    for (id, tok) in coco.iter().enumerate() {
        assert_eq!(blob.token(id as u32).unwrap(), &tok[..]);
    }
    assert_eq!(blob.max_token_len(), 17);
    let total: usize = blob.tokens().map(<[u8]>::len).sum();
    assert_eq!(total, 66_989);
}

#[test]
fn blob_sizes_shrink_with_dtype() {
    let f32b = packed("small-s3", DType::F32).len();
    let f16b = packed("small-s3", DType::F16).len();
    let i8b = packed("small-s3", DType::I8).len();
    assert!(f32b > f16b && f16b > i8b, "{f32b} {f16b} {i8b}");
}

#[test]
fn mixed_dtype_blob_parses() {
    // Build a blob by hand where weights alternate f32 / f16 / int8.
    let cfg = Config::TINY;
    let mut w = BlobWriter::new(cfg);
    for (i, (kind, layer)) in TensorKind::required(&cfg).enumerate() {
        let (r, c) = kind.shape(&cfg);
        let n = r as usize * c as usize;
        let vals: Vec<f32> = (0..n).map(|j| ((j * 7 + i) % 13) as f32 - 6.0).collect();
        let dtype = if kind.class() == Class::Weight {
            [DType::F32, DType::F16, DType::I8][i % 3]
        } else {
            DType::F32
        };
        w.add(kind, layer, TensorData::from_f32(&vals, c as usize, dtype));
    }
    w.vocab(
        (0..cfg.vocab)
            .map(|i| format!("t{i}").into_bytes())
            .collect(),
    );
    let bytes = w.finish().unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let blob = Blob::parse(&buf).unwrap();
    let mut seen = [false; 3];
    for t in blob.tensors() {
        seen[t.dtype as usize] = true;
        let m = blob.matrix(t.kind, t.layer as usize);
        assert_eq!(m.dtype(), t.dtype);
        assert_eq!(m.rows * m.cols, (t.rows * t.cols) as usize);
    }
    assert_eq!(seen, [true; 3]);
    assert_eq!(blob.token(7).unwrap(), b"t7");
    // a non-f32 tensor has no vector view; an absent tensor gives empty views
    let i8_weight = blob.tensors().find(|t| t.dtype == DType::I8).unwrap();
    assert!(blob
        .vector(i8_weight.kind, i8_weight.layer as usize)
        .is_empty());
    assert!(blob.vector(TensorKind::SelfQB, 99).is_empty());
    assert_eq!(blob.matrix(TensorKind::SelfQW, 99).rows, 0);
    assert!(blob.tensor(TensorKind::EncInW, 1).is_none());
}

#[test]
fn writer_rejects_bad_input() {
    use m2::blob::WriteError;
    let cfg = Config::TINY;
    let full = || {
        let mut w = BlobWriter::new(cfg);
        for (kind, layer) in TensorKind::required(&cfg) {
            let (r, c) = kind.shape(&cfg);
            w.add(kind, layer, TensorData::F32(vec![0.5; (r * c) as usize]));
        }
        w.vocab(vec![b"x".to_vec(); cfg.vocab as usize]);
        w
    };
    full().finish().unwrap();
    let mut w = full();
    w.add(TensorKind::EncInB, 0, TensorData::F32(vec![0.0; 64]));
    assert!(matches!(w.finish(), Err(WriteError::Duplicate { .. })));
    let mut w = full();
    w.add(TensorKind::SelfQW, 3, TensorData::F32(vec![0.0; 64 * 64]));
    assert!(matches!(w.finish(), Err(WriteError::Unexpected { .. })));
    let mut w = BlobWriter::new(cfg);
    w.add(TensorKind::EncInB, 0, TensorData::F32(vec![0.0; 3]));
    assert!(matches!(w.finish(), Err(WriteError::Length { .. })));
    let mut w = BlobWriter::new(cfg);
    w.add(TensorKind::EncInB, 0, TensorData::F16(vec![f16::ZERO; 64]));
    assert!(matches!(w.finish(), Err(WriteError::DType { .. })));
    let w = BlobWriter::new(cfg);
    assert!(matches!(
        w.finish(),
        Err(WriteError::Missing {
            kind: TensorKind::EncInW,
            layer: 0
        })
    ));
    let mut w = full();
    w.vocab(vec![]);
    assert!(matches!(
        w.finish(),
        Err(WriteError::VocabSize {
            found: 0,
            expected: 50
        })
    ));
}

#[test]
fn quantize_edge_cases() {
    let (q, s) = m2::blob::quantize_rows_i8(&[0.0, 0.0, 1.0, -2.0, 0.5, 2.0], 2);
    assert_eq!(s, vec![0.0, 2.0 / 127.0, 2.0 / 127.0]);
    assert_eq!(q, vec![0, 0, 64, -127, 32, 127]);
}

#[test]
fn mapped_and_aligned_loading() {
    let bytes = packed("tiny-s2-masked", DType::F16);
    let dir = std::env::temp_dir().join(format!("m2-blob-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.m2");
    std::fs::write(&path, &*bytes).unwrap();
    let mapped = MappedBlob::open(&path).unwrap();
    assert_eq!(mapped.bytes(), &*bytes);
    assert_eq!(mapped.blob().unwrap().config().pad, 1);
    let loaded = m2::blob::load_file(&path).unwrap();
    assert_eq!(
        loaded.blob().unwrap().checksum(),
        Blob::parse(&bytes).unwrap().checksum()
    );
    let buf = AlignedBuf::read_file(&path).unwrap();
    assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
    assert_eq!(&*buf, &*bytes);
    buf.blob().unwrap();
    // a flipped weight bit is caught by the mapped reader's streamed checksum too
    let mut flipped = bytes.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let err = MappedBlob::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            m2::blob::LoadError::Blob(_, m2::blob::BlobError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    // a broken file gives a typed error naming the path
    std::fs::write(&path, b"not a blob").unwrap();
    let err = MappedBlob::open(&path).unwrap_err().to_string();
    assert!(err.contains("tiny.m2") && err.contains("shorter"), "{err}");
    let err = MappedBlob::open(dir.join("absent.m2")).unwrap_err();
    assert!(matches!(err, m2::blob::LoadError::Io(..)));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn skip_checksum_and_declared_len() {
    let b = tiny();
    assert_eq!(Blob::declared_len(&b[..200]).unwrap(), b.len() as u64);
    let mut v = AlignedBuf::from_bytes(&b);
    let n = v.len();
    v[n - 1] ^= 0x40; // inside the last tensor's data: only the checksum notices
    assert!(matches!(
        Blob::parse(&v),
        Err(m2::BlobError::ChecksumMismatch { .. })
    ));
    let blob = Blob::parse_skip_checksum(&v).unwrap();
    assert!(matches!(
        blob.verify_checksum(),
        Err(m2::BlobError::ChecksumMismatch { .. })
    ));
}

/// `int8a16` (format version 3): the same int8 bytes and scales as `int8`, a different dtype
/// code; the writer gives version 3 only to a blob that has such a tensor, and a blob that
/// claims an older version with one is refused.
#[test]
fn int8a16_is_version_3_with_int8_bytes() {
    let (a, b) = (
        packed("tiny-s0", DType::I8),
        packed("tiny-s0", DType::I8A16),
    );
    assert_eq!(a.len(), b.len());
    assert_eq!(get_u32(&a, m2::blob::hdr::VERSION), 2);
    assert_eq!(get_u32(&b, m2::blob::hdr::VERSION), 3);
    let (ba, bb) = (Blob::parse(&a).unwrap(), Blob::parse(&b).unwrap());
    assert_eq!((ba.act_bytes(), bb.act_bytes()), (1, 2));
    for (ta, tb) in ba.tensors().zip(bb.tensors()) {
        let (ma, mb) = (
            ba.matrix(ta.kind, ta.layer as usize),
            bb.matrix(tb.kind, tb.layer as usize),
        );
        match (ma.data, mb.data) {
            (
                WeightData::I8 {
                    q: qa,
                    scales: sa,
                    act16: false,
                },
                WeightData::I8 {
                    q: qb,
                    scales: sb,
                    act16: true,
                },
            ) => {
                assert_eq!(tb.dtype, DType::I8A16);
                assert_eq!((qa, sa), (qb, sb));
            }
            (WeightData::F32(x), WeightData::F32(y)) => assert_eq!(x, y),
            _ => panic!("{:?}: {:?} vs {:?}", ta.kind, ta.dtype, tb.dtype),
        }
    }
    // one int8a16 tensor in a version-2 header: that version has no dtype 3
    let err = edited(&b, |v| put_u32(v, m2::blob::hdr::VERSION, 2)).unwrap_err();
    assert!(
        matches!(err, m2::BlobError::UnknownDType { code: 3, .. }),
        "{err:?}"
    );
    // the workspace of an int8a16 model plans two bytes per quantised activation
    let (ma, mb) = (
        m2::model::M2::new(&ba, m2::kernels::Kernels::SCALAR),
        m2::model::M2::new(&bb, m2::kernels::Kernels::SCALAR),
    );
    let (pa, pb) = (ma.plan(5, 10), mb.plan(5, 10));
    assert_eq!(pb.quant_bytes(), 2 * pa.quant_bytes());
    // a workspace planned for int8 activations is refused by the int8a16 model, not overrun
    let mut mem = vec![0f32; pa.total_floats()];
    let mut ws = m2::workspace::Workspace::new(&mut mem, pa).unwrap();
    let feats = vec![0.5f32; bb.config().d_in as usize * 2];
    let got = m2::search::beam_search(
        &mb,
        &feats,
        &mut ws,
        &m2::search::SearchOptions {
            beam: 5,
            max_len: 10,
        },
        |_| {},
    );
    assert!(
        matches!(got, Err(m2::model::EngineError::PlanMismatch { .. })),
        "{got:?}"
    );
}
