//! PNG bytes → grayscale → (shrink) → regions → features, as `m2 caption --image` runs it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((regions, feats)) = m2::regions::features_from_png(data, 10) {
        assert!(!regions.is_empty() && regions.len() <= 10);
        assert_eq!(feats.len(), regions.len() * m2::regions::D_IN);
        assert!(feats.iter().all(|v| v.is_finite()));
    }
});
