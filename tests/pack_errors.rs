//! `m2::pack` on modified checkpoints: every problem is a typed error naming the key.
#![cfg(feature = "std")]

mod blob_util;

use blob_util::*;
use m2::blob::{AlignedBuf, DType, TensorKind, WeightData};
use m2::pack::{pack, read_vocab_json, PackError, PackOptions};
use m2::Blob;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

fn entries(name: &str) -> Vec<Entry> {
    let bytes = checkpoint(name);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn serialize(e: &[Entry]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = e
        .iter()
        .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, &None).unwrap()
}

fn pack_modified(edit: impl FnOnce(&mut Vec<Entry>)) -> Result<Vec<u8>, PackError> {
    let mut e = entries("tiny-s0");
    edit(&mut e);
    pack(
        &serialize(&e),
        &vocab("tiny-s0"),
        &options("tiny-s0", DType::F32),
    )
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn unmodified_reserialisation_packs() {
    let a = pack_modified(|_| {}).unwrap();
    let b = pack(
        &checkpoint("tiny-s0"),
        &vocab("tiny-s0"),
        &options("tiny-s0", DType::F32),
    )
    .unwrap();
    assert_eq!(
        a, b,
        "packing is deterministic and independent of safetensors key order"
    );
}

#[test]
fn missing_key_is_named() {
    for key in [
        "decoder.layers.1.fc_alpha2.bias",
        "encoder.layers.2.mhatt.attention.m_v",
        "decoder.fc.weight",
        "encoder.layers.0.pwff.layer_norm.weight",
    ] {
        let err = pack_modified(|e| e.retain(|x| x.0 != key)).unwrap_err();
        assert_eq!(err, PackError::MissingKey(key.to_string()));
        assert!(err.to_string().contains(key));
    }
    // a shape-defining key
    let err = pack_modified(|e| e.retain(|x| x.0 != "encoder.fc.weight")).unwrap_err();
    assert_eq!(err, PackError::MissingKey("encoder.fc.weight".into()));
    // state buffers are optional
    pack_modified(|e| e.retain(|x| !x.0.contains("running"))).unwrap();
}

#[test]
fn unexpected_key_is_named() {
    for key in [
        "decoder.fc.bias",
        "encoder.layers.0.mhatt.attention.fc_x.weight",
        "decoder.layers.7.fc_alpha4.weight",
        "something_else",
        "encoder.layers.x.pwff.fc1.weight",
    ] {
        let err =
            pack_modified(|e| e.push((key.into(), Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]))))
                .unwrap_err();
        assert_eq!(err, PackError::UnexpectedKey(key.to_string()), "{key}");
        assert!(err.to_string().contains(key));
    }
    // a fourth decoder layer's state buffer without its weights: layer 3 is now expected
    let err = pack_modified(|e| {
        e.push((
            "decoder.layers.3.self_att.running_keys".into(),
            Dtype::F32,
            vec![0, 64],
            vec![],
        ))
    })
    .unwrap_err();
    assert_eq!(
        err,
        PackError::MissingKey("decoder.layers.3.self_att.attention.fc_q.weight".into())
    );
}

#[test]
fn misshaped_key_is_named() {
    let key = "decoder.layers.2.pwff.fc2.weight";
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == key).unwrap();
        t.2 = vec![128, 64];
    })
    .unwrap_err();
    assert_eq!(
        err,
        PackError::Shape {
            key: key.into(),
            expected: "[64, 128]".into(),
            found: vec![128, 64]
        }
    );
    assert!(err.to_string().contains(key) && err.to_string().contains("[64, 128]"));
    let key = "encoder.layers.1.mhatt.attention.m_k";
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == key).unwrap();
        t.2 = vec![8, 64];
    })
    .unwrap_err();
    assert_eq!(
        err,
        PackError::Shape {
            key: key.into(),
            expected: "[1, 8, 64]".into(),
            found: vec![8, 64]
        }
    );
    let key = "decoder.layers.0.enc_att.layer_norm.bias";
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == key).unwrap();
        t.2 = vec![1, 64];
    })
    .unwrap_err();
    assert_eq!(
        err,
        PackError::Shape {
            key: key.into(),
            expected: "[64]".into(),
            found: vec![1, 64]
        }
    );
    // decoder.fc with a different vocabulary size than word_emb
    let key = "decoder.fc.weight";
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == key).unwrap();
        t.2 = vec![25, 128];
    })
    .unwrap_err();
    assert!(matches!(err, PackError::Shape { ref key, .. } if key == "decoder.fc.weight"));
    // the shape-defining key with the wrong rank
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == "encoder.fc.weight").unwrap();
        t.2 = vec![64 * 64];
    })
    .unwrap_err();
    assert!(
        matches!(err, PackError::Shape { ref key, .. } if key == "encoder.fc.weight"),
        "{err}"
    );
}

#[test]
fn dtypes_of_the_checkpoint() {
    // F16 / BF16 / F64 checkpoint tensors are converted
    let key = "decoder.layers.0.self_att.attention.fc_q.bias";
    let st_bytes = checkpoint("tiny-s0");
    let st = SafeTensors::deserialize(&st_bytes).unwrap();
    let (orig, _) = tensor_f32(&st, key);
    for dt in [Dtype::F16, Dtype::BF16, Dtype::F64] {
        let blob = pack_modified(|e| {
            let t = e.iter_mut().find(|x| x.0 == key).unwrap();
            t.1 = dt;
            t.3 = match dt {
                Dtype::F16 => orig
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => orig
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => orig
                    .iter()
                    .flat_map(|v| (*v as f64).to_le_bytes())
                    .collect(),
            };
        })
        .unwrap();
        let buf = AlignedBuf::from_bytes(&blob);
        let b = Blob::parse(&buf).unwrap();
        let got = b.vector(TensorKind::SelfQB, 0);
        for (g, o) in got.iter().zip(&orig) {
            let tol = if dt == Dtype::F64 {
                0.0
            } else {
                o.abs() * 1e-2
            };
            assert!((g - o).abs() <= tol, "{dt:?}: {g} vs {o}");
        }
    }
    // integer tensors are refused
    let err = pack_modified(|e| {
        let t = e.iter_mut().find(|x| x.0 == key).unwrap();
        t.1 = Dtype::I32;
    })
    .unwrap_err();
    assert_eq!(
        err,
        PackError::UnsupportedDType {
            key: key.into(),
            dtype: "I32".into()
        }
    );
}

#[test]
fn non_finite_and_f16_overflow() {
    let key = "encoder.layers.1.pwff.fc1.weight";
    let set = |value: f32| {
        move |e: &mut Vec<Entry>| {
            let t = e.iter_mut().find(|x| x.0 == key).unwrap();
            t.3[40..44].copy_from_slice(&value.to_le_bytes());
        }
    };
    let err = pack_modified(set(f32::NAN)).unwrap_err();
    assert!(
        matches!(err, PackError::NonFinite { ref key, index: 10, .. } if key == "encoder.layers.1.pwff.fc1.weight")
    );
    let mut e = entries("tiny-s0");
    set(1e6)(&mut e);
    let st = serialize(&e);
    let err = pack(&st, &vocab("tiny-s0"), &options("tiny-s0", DType::F16)).unwrap_err();
    assert_eq!(
        err,
        PackError::F16Overflow {
            key: key.into(),
            index: 10,
            value: 1e6
        }
    );
    // int8 and f32 are fine with large values
    let blob = pack(&st, &vocab("tiny-s0"), &options("tiny-s0", DType::I8)).unwrap();
    let buf = AlignedBuf::from_bytes(&blob);
    let b = Blob::parse(&buf).unwrap();
    match b.matrix(TensorKind::EncFf1W, 1).data {
        WeightData::I8 { q, scales, .. } => {
            assert_eq!(q[10], 127);
            assert_eq!(scales[0], 1e6 / 127.0);
        }
        _ => panic!("not int8"),
    }
}

/// A memory slot that is finite in the checkpoint but overflows once pre-scaled (√d_k·m_k,
/// √m·m_v) is refused by name: the blob would hold ∞ and every caption would fail, blaming
/// the features.
#[test]
fn memory_slots_that_overflow_when_pre_scaled() {
    for key in [
        "encoder.layers.0.mhatt.attention.m_k",
        "encoder.layers.2.mhatt.attention.m_v",
    ] {
        let err = pack_modified(|e| {
            let t = e.iter_mut().find(|x| x.0 == key).unwrap();
            t.3[8..12].copy_from_slice(&3e38f32.to_le_bytes());
        })
        .unwrap_err();
        assert!(
            matches!(err, PackError::ScaleOverflow { key: ref k, index: 2, value, .. } if k == key && value == 3e38),
            "{err:?}"
        );
        assert!(err.to_string().contains("pre-scaled"), "{err}");
    }
}

#[test]
fn not_safetensors() {
    let v = vocab("tiny-s0");
    let o = options("tiny-s0", DType::F32);
    for junk in [
        &b""[..],
        b"hello world",
        &[0xff; 64],
        b"\x08\0\0\0\0\0\0\0{\"a\":1}",
    ] {
        let err = pack(junk, &v, &o).unwrap_err();
        assert!(matches!(err, PackError::NotSafetensors(_)), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("input is not a safetensors file"));
    }
    // an M2 blob is not a checkpoint either
    let blob = tiny();
    assert!(matches!(
        pack(&blob, &v, &o),
        Err(PackError::NotSafetensors(_))
    ));
}

#[test]
fn vocabulary_problems() {
    let st = checkpoint("tiny-s0");
    let o = options("tiny-s0", DType::F32);
    let mut v = vocab("tiny-s0");
    v.pop();
    assert_eq!(
        pack(&st, &v, &o).unwrap_err(),
        PackError::VocabSize {
            tokens: 49,
            word_emb_rows: 50
        }
    );
    // the 10201-token COCO vocabulary with a 50-row model
    let coco = read_vocab_json(&std::fs::read(fixture_dir("coco-vocab.json")).unwrap()).unwrap();
    let err = pack(&st, &coco, &o).unwrap_err();
    assert_eq!(
        err,
        PackError::VocabSize {
            tokens: 10201,
            word_emb_rows: 50
        }
    );
    assert!(err.to_string().contains("10201") && err.to_string().contains("50"));
    // not a list of strings
    for bad in [&b"{\"a\": 1}"[..], b"[1, 2]", b"not json", b"[\"a\", null]"] {
        assert!(matches!(read_vocab_json(bad), Err(PackError::VocabJson(_))));
    }
    // special tokens: missing from the vocabulary unless given
    let mut v = vocab("tiny-s0");
    v[3] = b"</s>".to_vec();
    assert_eq!(
        pack(&st, &v, &o).unwrap_err(),
        PackError::MissingSpecial {
            name: "eos",
            token: "<eos>"
        }
    );
    let blob = pack(
        &st,
        &v,
        &PackOptions {
            eos: Some(3),
            ..o.clone()
        },
    )
    .unwrap();
    let buf = AlignedBuf::from_bytes(&blob);
    assert_eq!(Blob::parse(&buf).unwrap().config().eos, 3);
    assert_eq!(Blob::parse(&buf).unwrap().token(3).unwrap(), b"</s>");
    // overrides win over the vocabulary and are validated
    let blob = pack(
        &st,
        &vocab("tiny-s0"),
        &PackOptions {
            pad: Some(7),
            bos: Some(9),
            ..o.clone()
        },
    )
    .unwrap();
    let buf = AlignedBuf::from_bytes(&blob);
    let c = *Blob::parse(&buf).unwrap().config();
    assert_eq!((c.pad, c.unk, c.bos, c.eos), (7, 1, 9, 3));
    assert!(matches!(
        pack(&st, &vocab("tiny-s0"), &PackOptions { unk: Some(50), ..o }),
        Err(PackError::Config(_))
    ));
}

#[test]
fn option_problems() {
    let st = checkpoint("tiny-s0");
    let v = vocab("tiny-s0");
    for heads in [0, 3, 128] {
        let o = PackOptions {
            heads,
            ..options("tiny-s0", DType::F32)
        };
        assert_eq!(
            pack(&st, &v, &o).unwrap_err(),
            PackError::Heads { d_model: 64, heads }
        );
    }
    let o = PackOptions {
        max_regions: 0,
        ..options("tiny-s0", DType::F32)
    };
    assert!(matches!(pack(&st, &v, &o), Err(PackError::Config(_))));
    let o = PackOptions {
        enc_pad_value: f32::INFINITY,
        ..options("tiny-s0", DType::F32)
    };
    assert!(matches!(pack(&st, &v, &o), Err(PackError::EncPadValue(_))));
    // heads = 8 on the tiny model is a valid (if wrong) config: d_k = 8
    let o = PackOptions {
        heads: 8,
        ..options("tiny-s0", DType::F32)
    };
    let blob = pack(&st, &v, &o).unwrap();
    let buf = AlignedBuf::from_bytes(&blob);
    assert_eq!(Blob::parse(&buf).unwrap().config().d_k, 8);
    // enc_pad_value is stored
    let o = PackOptions {
        enc_pad_value: -1.5,
        ..options("tiny-s0", DType::F32)
    };
    let blob = pack(&st, &v, &o).unwrap();
    let buf = AlignedBuf::from_bytes(&blob);
    assert_eq!(Blob::parse(&buf).unwrap().config().enc_pad_value, -1.5);
}

#[test]
fn progress_reports_monotonic_bytes() {
    let st = checkpoint("tiny-s0");
    let mut calls = Vec::new();
    m2::pack::pack_with_progress(
        &st,
        &vocab("tiny-s0"),
        &options("tiny-s0", DType::I8),
        &mut |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(calls.len(), TensorKind::required_count(&m2::Config::TINY));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    let (done, total) = *calls.last().unwrap();
    assert_eq!(done, total);
}
