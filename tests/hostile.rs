//! Hostile input, by class (issue 14). Library-level checks here; each class also has a CLI
//! case asserting one `error:` line and exit 1 with no input changed.
#![cfg(feature = "std")]

mod blob_util;

use blob_util::*;
use m2::blob::{AlignedBuf, TensorKind};
use m2::kernels::Kernels;
use m2::model::{EngineError, M2};
use m2::search::{beam_search, greedy, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

/// Run `f` on a model over `blob` with a beam-2 workspace (scalar kernels).
fn with_model<R>(blob: &[u8], f: impl FnOnce(&M2, &mut Workspace) -> R) -> R {
    let buf = AlignedBuf::from_bytes(blob);
    let blob = Blob::parse(&buf).expect("test blob parses");
    let model = M2::new(&blob, Kernels::with_isa(m2::kernels::Isa::Scalar).unwrap());
    let plan = model.plan(2, 3);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).unwrap();
    f(&model, &mut ws)
}

fn features(v: f32) -> Vec<f32> {
    let cfg = micro_config();
    (0..(cfg.max_regions * cfg.d_in) as usize)
        .map(|i| if i % 2 == 0 { v } else { -v })
        .collect()
}

// ---- class 3: silent wrong results ------------------------------------------------------------

#[test]
fn class3_features_that_overflow_the_encoder_are_an_error() {
    let opts = SearchOptions {
        beam: 2,
        max_len: 3,
    };
    with_model(&micro(false), |model, ws| {
        // finite, ordinary features caption
        beam_search(model, &features(0.5), ws, &opts, |_| {}).expect("ordinary features");
        // ±3e38 is finite but overflows the first linear layer
        let err = beam_search(model, &features(3e38), ws, &opts, |_| {}).unwrap_err();
        assert!(
            matches!(err, EngineError::EncoderOverflow { .. }),
            "{err:?}"
        );
        let err = greedy(model, &features(3e38), ws, 3, |_, _| {}).unwrap_err();
        assert!(
            matches!(err, EngineError::EncoderOverflow { .. }),
            "{err:?}"
        );
        assert!(!ws.is_encoded(), "a failed encode leaves no image behind");
        assert!(err.to_string().contains("too large"), "{err}");
    });
}

#[test]
fn class3_nan_readout_weights_are_an_error_in_beam_greedy_and_score() {
    let blob = micro_with(false, |kind, _, v| {
        if kind == TensorKind::VocabW {
            v[1] = f32::NAN;
        }
    });
    let opts = SearchOptions {
        beam: 2,
        max_len: 3,
    };
    with_model(&blob, |model, ws| {
        let x = features(0.5);
        let err = beam_search(model, &x, ws, &opts, |_| {}).unwrap_err();
        assert_eq!(err, EngineError::NonFiniteLogits { step: 0 });
        let err = greedy(model, &x, ws, 3, |_, _| {}).unwrap_err();
        assert_eq!(err, EngineError::NonFiniteLogits { step: 0 });
        let cfg = micro_config();
        let mut out = vec![0f32; 2 * cfg.vocab as usize];
        let err = model.score(&x, &[cfg.bos, 4], ws, &mut out).unwrap_err();
        assert_eq!(err, EngineError::NonFiniteLogits { step: 0 });
        assert!(err.to_string().contains("NaN"), "{err}");
    });
}

// ---- class 1: sizes multiplied without checks -------------------------------------------------

#[test]
fn class1_a_plan_that_would_wrap_is_refused_before_allocation() {
    use m2::plan::Plan;
    use m2::workspace::WorkspaceError;
    let cfg = micro_config();
    // 2^62 regions: the usize product wraps; the workspace refuses the plan with no buffer.
    let plan = Plan::new(&cfg, 2, 1 << 62, 3);
    assert_eq!(plan.checked_total_bytes(), None);
    let err = Workspace::new(&mut [], plan).err().unwrap();
    assert_eq!(err, WorkspaceError::PlanTooLarge { regions: 1 << 62 });
    assert!(err.to_string().contains("address space"), "{err}");
}
