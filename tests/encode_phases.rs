//! The encode phases apart: `encode_regions` + `cross_kv` + `beam_search_encoded` is
//! `beam_search`, bit for bit, and decoding without an encoded image is a typed error.

mod common;

use common::beam_bits as bits;
use common::*;
use m2::blob::DType;
use m2::kernels::Kernels;
use m2::model::{EngineError, M2};
use m2::search::{beam_search, beam_search_encoded, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

#[test]
fn split_phases_give_the_beams_of_beam_search_bit_for_bit() {
    let name = "tiny-s2-masked";
    let buf = packed(name, DType::F32);
    let blob = Blob::parse(&buf).unwrap();
    let feats = npy_f32(name, "features.npy");
    let (images, r, d_in) = (feats.shape[0], feats.shape[1], feats.shape[2]);
    for kernels in [Kernels::SCALAR, Kernels::detect()] {
        let model = M2::new(&blob, kernels);
        let opts = SearchOptions {
            beam: 3,
            max_len: 8,
        };
        let mut mem = WorkspaceBuf::new(&model, opts.beam, opts.max_len);
        let mut ws = mem.workspace();
        for k in 0..images {
            let img = &feats.data[k * r * d_in..(k + 1) * r * d_in];
            let mut steps_a = Vec::new();
            let a = beam_search(&model, img, &mut ws, &opts, |e| {
                steps_a.push((e.best_tokens.to_vec(), e.best_score.to_bits()))
            })
            .unwrap();

            model.encode(img, &mut ws).unwrap();
            let mut steps_b = Vec::new();
            let b = beam_search_encoded(&model, &mut ws, &opts, |e| {
                steps_b.push((e.best_tokens.to_vec(), e.best_score.to_bits()))
            })
            .unwrap();
            assert_eq!(
                bits(&a),
                bits(&b),
                "image {k}: encode + beam_search_encoded"
            );
            assert_eq!(steps_a, steps_b, "image {k}: step events");
            assert_eq!(steps_a.len(), opts.max_len);

            model.encode_regions(img, &mut ws).unwrap();
            assert!(ws.is_encoded() && !ws.has_cross_kv());
            model.cross_kv(&mut ws).unwrap();
            assert!(ws.has_cross_kv());
            let c = beam_search_encoded(&model, &mut ws, &opts, |_| {}).unwrap();
            assert_eq!(bits(&a), bits(&c), "image {k}: encode_regions + cross_kv");
            // the encoded image stays: searching again gives the same beams
            let again = beam_search_encoded(&model, &mut ws, &opts, |_| {}).unwrap();
            assert_eq!(bits(&a), bits(&again), "image {k}: second search");
        }
    }
}

#[test]
fn decoding_without_an_encoded_image_is_an_error() {
    let name = "tiny-s0";
    let buf = packed(name, DType::F32);
    let blob = Blob::parse(&buf).unwrap();
    let model = M2::new(&blob, Kernels::SCALAR);
    let feats = npy_f32(name, "features.npy");
    let img = &feats.data[..feats.shape[1] * feats.shape[2]];
    let opts = SearchOptions {
        beam: 2,
        max_len: 4,
    };
    let mut mem = WorkspaceBuf::new(&model, opts.beam, opts.max_len);
    let mut ws = mem.workspace();
    let search = |ws: &mut Workspace| beam_search_encoded(&model, ws, &opts, |_| {});

    // fresh workspace
    assert!(!ws.is_encoded());
    assert_eq!(model.cross_kv(&mut ws), Err(EngineError::NotEncoded));
    assert_eq!(search(&mut ws), Err(EngineError::NotEncoded));
    // the encoder alone is not enough to decode
    model.encode_regions(img, &mut ws).unwrap();
    assert_eq!(search(&mut ws), Err(EngineError::NotEncoded));
    model.cross_kv(&mut ws).unwrap();
    assert!(search(&mut ws).is_ok());

    // a failed encode forgets the previous image
    let mut bad = img.to_vec();
    bad[3] = f32::NAN;
    assert!(matches!(
        model.encode_regions(&bad, &mut ws),
        Err(EngineError::NonFinite { .. })
    ));
    assert!(!ws.is_encoded());
    assert_eq!(model.cross_kv(&mut ws), Err(EngineError::NotEncoded));
    assert_eq!(search(&mut ws), Err(EngineError::NotEncoded));
    // handing out the encoder slots invalidates too (they overlap the cross K/V)
    model.encode(img, &mut ws).unwrap();
    let _ = ws.encoder_parts();
    assert_eq!(search(&mut ws), Err(EngineError::NotEncoded));
    assert!(!EngineError::NotEncoded.to_string().is_empty());
}
