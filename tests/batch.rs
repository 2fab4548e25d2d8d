//! `m2::search::batch::decode_in_order` on the demo blob: the same captions as `decode` one by
//! one for any number of workers, results in input order, and the first error returned after
//! every image before it was emitted (and none after it).

mod common;

use common::{asset, demo_blob, npy, Array};
use m2::kernels::Kernels;
use m2::model::{EngineError, M2};
use m2::search::batch::{decode_in_order, Batch};
use m2::search::{decode, Caption, SearchOptions};
use m2::workspace::Workspace;

fn setup() -> (m2::blob::AlignedBuf, Vec<f32>, usize) {
    let Array { shape, data } = npy::<f32>(&asset("test_features.npy"));
    (demo_blob(), data, shape[1] * shape[2])
}

#[test]
fn any_worker_count_gives_the_one_by_one_captions_in_order() {
    let (buf, feats, per) = setup();
    let blob = buf.blob().unwrap();
    let n = 40;
    let search = SearchOptions::default();
    let model = M2::new(&blob, Kernels::detect());
    let plan = model.plan(search.beam, search.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).unwrap();
    let want: Vec<Caption> = (0..n)
        .map(|k| {
            decode(
                &model,
                &feats[k * per..(k + 1) * per],
                &mut ws,
                &search,
                false,
            )
            .unwrap()
        })
        .collect();
    for workers in [1, 3] {
        let batch = Batch {
            kernels: Kernels::detect(),
            plan,
            search,
            greedy: false,
        };
        let mut mems = vec![vec![0f32; plan.total_floats()]; workers];
        let mut got = Vec::new();
        decode_in_order(
            &blob,
            &batch,
            &mut mems,
            n,
            |k, b| {
                b.clear();
                b.extend_from_slice(&feats[k * per..(k + 1) * per]);
                Ok::<usize, String>(k)
            },
            |k, e| format!("{k:?}: {e}"),
            |k, d| {
                assert_eq!((k, d.read), (got.len(), got.len()));
                got.push(d.caption);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, want, "{workers} workers");
    }
}

#[test]
fn the_first_error_comes_after_every_image_before_it() {
    let (buf, feats, per) = setup();
    let blob = buf.blob().unwrap();
    let search = SearchOptions::default();
    let plan = M2::new(&blob, Kernels::detect()).plan(search.beam, search.max_len);
    let batch = Batch {
        kernels: Kernels::detect(),
        plan,
        search,
        greedy: true,
    };
    let mut mems = vec![vec![0f32; plan.total_floats()]; 3];
    let mut emitted = Vec::new();
    let err = decode_in_order(
        &blob,
        &batch,
        &mut mems,
        30,
        |k, b| {
            b.clear();
            b.extend_from_slice(&feats[k * per..(k + 1) * per]);
            if k == 17 {
                b[5] = f32::NAN; // the engine refuses it
            }
            Ok(())
        },
        |k, e| (k, e),
        |k, _| {
            emitted.push(k);
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        (
            Some(17),
            EngineError::NonFinite {
                region: 0,
                index: 5
            }
        )
    );
    assert_eq!(emitted, (0..17).collect::<Vec<_>>());

    // a workspace smaller than the plan: an error before any image, naming none
    let mut small = vec![vec![0f32; 16]; 2];
    let r = decode_in_order(
        &blob,
        &batch,
        &mut small,
        3,
        |_, _| Ok(()),
        |k, e| (k, e),
        |_, _| Ok(()),
    );
    assert!(matches!(r, Err((None, EngineError::Workspace(_)))), "{r:?}");
}
