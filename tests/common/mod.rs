//! Shared helpers of the integration tests: fixtures and the bundled demo, packing, `.npy`
//! reading, workspaces.
#![allow(dead_code)]

use m2::blob::{AlignedBuf, DType};
use m2::model::M2;
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{pack, read_vocab_json, PackOptions};
use m2::plan::Plan;
use m2::workspace::Workspace;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use m2::input::Array;

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

/// A whole `.npy` file (its dtype must be `T`).
pub fn npy<T: m2::input::Element>(path: &Path) -> Array<T> {
    m2::input::read_npy(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn npy_f32(name: &str, file: &str) -> Array<f32> {
    npy(&fixture_dir(name).join(file))
}

pub fn npy_i64(name: &str, file: &str) -> Array<i64> {
    npy(&fixture_dir(name).join(file))
}

pub fn npy_bool(name: &str, file: &str) -> Array<bool> {
    npy(&fixture_dir(name).join(file))
}

/// A file of the bundled demo, `assets/demo/{f}`.
pub fn asset(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo")
        .join(f)
}

/// The bundled demo blob `assets/demo/demo-int8.m2` (what `m2` and the firmware run).
pub fn demo_blob() -> AlignedBuf {
    AlignedBuf::read_file(asset("demo-int8.m2")).unwrap()
}

/// The demo checkpoint packed at `dtype` (the read-out at `readout`, if given), int8
/// GPTQ-calibrated on `calibration` if given: `m2-pack assets/demo/checkpoint.safetensors
/// --vocab assets/demo/vocab.json --heads 4 --regions 4 …`.
pub fn demo_packed(
    dtype: DType,
    readout: Option<DType>,
    calibration: Option<&Calibration>,
) -> AlignedBuf {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(asset("config.json")).unwrap()).unwrap();
    let st = std::fs::read(asset("checkpoint.safetensors")).unwrap();
    let vocab = read_vocab_json(&std::fs::read(asset("vocab.json")).unwrap()).unwrap();
    let opts = PackOptions {
        dtype,
        readout_dtype: readout,
        heads: config["h"].as_u64().unwrap() as u32,
        max_regions: 4,
        ..PackOptions::default()
    };
    AlignedBuf::from_bytes(&match calibration {
        Some(cal) => pack_calibrated(&st, &vocab, &opts, cal, &mut |_, _, _| {}).unwrap(),
        None => pack(&st, &vocab, &opts).unwrap(),
    })
}

/// A zeroed workspace buffer planned for `model` at `beam` beams and `max_len` steps:
/// `let mut mem = WorkspaceBuf::new(&model, 5, 20); let mut ws = mem.workspace();`
pub struct WorkspaceBuf {
    mem: Vec<f32>,
    plan: Plan,
}

impl WorkspaceBuf {
    pub fn new(model: &M2, beam: usize, max_len: usize) -> Self {
        let plan = model.plan(beam, max_len);
        WorkspaceBuf {
            mem: vec![0f32; plan.total_floats()],
            plan,
        }
    }

    pub fn workspace(&mut self) -> Workspace<'_> {
        Workspace::new(&mut self.mem, self.plan).unwrap()
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
        let cal = Calibration {
            features: &feats.data,
            images: feats.shape[0],
            regions: feats.shape[1],
            damping: Calibration::DAMPING,
            threads: 2,
        };
        pack_calibrated(&st, &vocab, &opts, &cal, &mut |_, _, _| {}).unwrap()
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

// ---- the `m2` binary (tests/cli.rs, tests/hostile.rs) ----------------------------------------

/// The `m2` binary, behind `$M2_TEST_RUNNER` when set (e.g. qemu-aarch64 in cross tests).
pub fn m2_command() -> Command {
    match std::env::var("M2_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(env!("CARGO_BIN_EXE_m2"));
            c
        }
        _ => Command::new(env!("CARGO_BIN_EXE_m2")),
    }
}

pub fn m2<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    m2_command()
        .args(args)
        .env_remove("M2_KERNEL")
        .output()
        .unwrap()
}

pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("m2-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one `error:` line of a failed run (exit 1, no panic).
pub fn stderr_line(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {s}");
    assert!(s.starts_with("error: "), "stderr: {s}");
    assert_eq!(s.trim_end().lines().count(), 1, "one line expected: {s}");
    assert!(!s.contains("panicked"), "{s}");
    s
}

/// Write a little-endian .npy by hand (any dtype descr).
pub fn write_npy<D: std::fmt::Display>(path: &str, descr: &str, shape: &[D], data: &[u8]) {
    std::fs::write(path, npy_bytes(descr, shape, data)).unwrap();
}

/// A little-endian .npy v1.0 file's bytes (any dtype descr), header padded to 64 bytes.
pub fn npy_bytes<D: std::fmt::Display>(descr: &str, shape: &[D], data: &[u8]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}
