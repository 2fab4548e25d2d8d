//! Shared helpers of the integration tests: fixtures, packing, npy reading.
#![allow(dead_code)]

use m2::blob::{AlignedBuf, DType};
use m2::pack::{pack, read_vocab_json, PackOptions};
use std::path::{Path, PathBuf};

pub const FIXTURES: [&str; 3] = ["tiny-s0", "tiny-s2-masked", "small-s3"];

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn expected(name: &str) -> serde_json::Value {
    let bytes = std::fs::read(fixture_dir(name).join("expected.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An array read from a fixture's `.npy` file: shape and values converted to f64.
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

pub fn npy_f32(name: &str, file: &str) -> Array<f32> {
    let bytes = std::fs::read(fixture_dir(name).join(file)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    Array {
        shape,
        data: npy.into_vec::<f32>().unwrap(),
    }
}

pub fn npy_i64(name: &str, file: &str) -> Array<i64> {
    let bytes = std::fs::read(fixture_dir(name).join(file)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    Array {
        shape,
        data: npy.into_vec::<i64>().unwrap(),
    }
}

pub fn npy_bool(name: &str, file: &str) -> Array<bool> {
    let bytes = std::fs::read(fixture_dir(name).join(file)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    Array {
        shape,
        data: npy.into_vec::<bool>().unwrap(),
    }
}

/// Pack a fixture's checkpoint at `dtype` into an aligned in-memory blob.
pub fn packed(name: &str, dtype: DType) -> AlignedBuf {
    packed_with(name, dtype, None)
}

/// [`packed`] with the vocabulary read-out stored at `readout` (if given).
pub fn packed_with(name: &str, dtype: DType, readout: Option<DType>) -> AlignedBuf {
    packed_calibrated(name, dtype, readout, false)
}

/// [`packed_with`], int8 GPTQ-calibrated on the fixture's own images if `calibrate`.
pub fn packed_calibrated(
    name: &str,
    dtype: DType,
    readout: Option<DType>,
    calibrate: bool,
) -> AlignedBuf {
    let dir = fixture_dir(name);
    let exp = expected(name);
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vocab = read_vocab_json(&std::fs::read(dir.join("vocab.json")).unwrap()).unwrap();
    let opts = PackOptions {
        dtype,
        readout_dtype: readout,
        heads: exp["hyper"]["h"].as_u64().unwrap() as u32,
        max_regions: exp["regions"].as_u64().unwrap() as u32,
        ..PackOptions::default()
    };
    let bytes = if calibrate {
        let feats = npy_f32(name, "features.npy");
        let cal = m2::pack::calibrate::Calibration {
            features: &feats.data,
            images: feats.shape[0],
            regions: feats.shape[1],
            damping: m2::pack::calibrate::Calibration::DAMPING,
            threads: 2,
        };
        m2::pack::calibrate::pack_calibrated(&st, &vocab, &opts, &cal, &mut |_, _, _| {}).unwrap()
    } else {
        pack(&st, &vocab, &opts).unwrap()
    };
    AlignedBuf::from_bytes(&bytes)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// A beam search's beams as bits: tokens, per-word log-probs and score of each beam, best
/// first (for bit-for-bit comparisons).
pub fn beam_bits(out: &m2::search::BeamOutput) -> Vec<(Vec<u32>, Vec<u32>, u32)> {
    out.beams
        .iter()
        .map(|b| {
            (
                b.tokens.to_vec(),
                b.logprobs.iter().map(|v| v.to_bits()).collect(),
                b.score.to_bits(),
            )
        })
        .collect()
}
