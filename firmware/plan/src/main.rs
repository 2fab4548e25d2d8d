//! Prints the memory figures of `firmware/README.md`: blob bytes (flash) and workspace bytes
//! (RAM, from `m2::plan::workspace_bytes`, the function the firmware's static is sized with)
//! for the COCO-size model at int8/f16/f32 and for a blob given on the command line.
//!
//! The COCO blob is written by the real `BlobWriter` with zero weights and the real COCO
//! vocabulary (`tests/fixtures/coco-vocab.json`), so its size is exact.
//!
//! `cargo run --release --manifest-path firmware/plan/Cargo.toml [-- BLOB.m2 ...]`

use m2::blob::{BlobWriter, DType, TensorData, TensorKind};
use m2::Config;

const BEAM: usize = 5;

fn blob_len(cfg: &Config, vocab: Vec<Vec<u8>>, dtype: DType) -> usize {
    let mut w = BlobWriter::new(*cfg);
    for (kind, layer) in TensorKind::required(cfg) {
        let (r, c) = kind.shape(cfg);
        let d = if kind.allows(dtype) {
            dtype
        } else {
            DType::F32
        };
        let zeros = vec![0.0; r as usize * c as usize];
        w.add(
            kind,
            layer as u16,
            TensorData::from_f32(&zeros, c as usize, d),
        );
    }
    w.vocab(vocab);
    w.finish().expect("a valid COCO-size blob").len()
}

fn row(what: &str, cfg: &Config, blob: usize) {
    let regions = cfg.max_regions as usize;
    let ws = m2::plan::workspace_bytes(cfg, 1, BEAM, regions);
    println!("| {what} | {blob} | {ws} | beam {BEAM}, {regions} regions |");
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let vocab =
        std::fs::read(format!("{root}/tests/fixtures/coco-vocab.json")).expect("coco-vocab.json");
    let vocab = m2::pack::read_vocab_json(&vocab).expect("a vocabulary");
    println!("| model | blob bytes (flash) | workspace bytes (RAM) | plan |");
    println!("|---|---|---|---|");
    for arg in std::env::args().skip(1) {
        let bytes = std::fs::read(&arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
        let blob = m2::Blob::parse(&bytes).unwrap_or_else(|e| panic!("{arg}: {e}"));
        row(&arg, blob.config(), bytes.len());
    }
    for (dtype, name) in [
        (DType::I8, "int8"),
        (DType::F16, "f16"),
        (DType::F32, "f32"),
    ] {
        row(
            &format!("COCO-size ({name})"),
            &Config::COCO,
            blob_len(&Config::COCO, vocab.clone(), dtype),
        );
    }
}
