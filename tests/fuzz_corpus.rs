//! Writes the seed corpus of the cargo-fuzz targets (`fuzz/corpus/<target>/`): micro blobs,
//! a caption input built on one, small `.npy` files and PNGs of several colour types. Ignored
//! by default (it writes into the source tree); the corpus it wrote is checked in:
//!
//!   M2_WRITE_FUZZ_CORPUS=1 cargo test --test fuzz_corpus -- --ignored
//!
//! Without the variable it only checks that every seed still parses/decodes (so a format change
//! that orphans the corpus fails here).
#![cfg(feature = "std")]

mod blob_util;
mod common;

use blob_util::*;
use common::npy_bytes;
use m2::blob::AlignedBuf;
use m2::Blob;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn png(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == png::ColorType::Indexed {
            enc.set_palette(vec![0, 0, 0, 255, 255, 255]);
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
    }
    out
}

/// Every seed, by target.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let (plain, mixed) = (micro(false), micro(true));
    let mut caption = vec![7u8];
    let cfg = micro_config();
    let n = (cfg.max_regions * cfg.d_in) as u16;
    caption.extend_from_slice(&n.to_le_bytes());
    for i in 0..n {
        caption.extend_from_slice(&((i % 5) as f32 * 0.5 - 1.0).to_le_bytes());
    }
    caption.extend_from_slice(&mixed);

    let f32s: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = (0..3 * 72)
        .flat_map(|i| half::f16::from_f32(i as f32 / 64.0).to_le_bytes())
        .collect();

    // A 12x10 scene: one bright 3x3 blob and one 2x4 blob on black.
    let (w, h) = (12usize, 10usize);
    let mut gray = vec![0u8; w * h];
    for (x0, y0, bw, bh) in [(1, 1, 3, 3), (7, 4, 2, 4)] {
        for y in y0..y0 + bh {
            for x in x0..x0 + bw {
                gray[y * w + x] = 230;
            }
        }
    }
    let rgba16: Vec<u8> = gray
        .iter()
        .flat_map(|&g| [g, g, g, g, g, g, 255, 255])
        .collect();
    let ga: Vec<u8> = gray.iter().flat_map(|&g| [g, 255]).collect();
    let packed1: Vec<u8> = gray
        .chunks(w)
        .flat_map(|row| {
            row.chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |b, (i, &g)| b | (((g > 0) as u8) << (7 - i)))
                })
                .collect::<Vec<u8>>()
        })
        .collect();
    use png::{BitDepth as D, ColorType as C};
    let scene = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/scenes/scene_00.png"),
    )
    .unwrap();
    vec![
        ("blob_parse", "micro-f32.m2", plain.clone()),
        ("blob_parse", "micro-mixed.m2", mixed.clone()),
        ("blob_resigned", "micro-f32.m2", plain),
        ("blob_resigned", "micro-mixed.m2", mixed),
        ("caption", "micro-mixed-3x8.bin", caption),
        ("npy", "f32-2x3x2.npy", npy_bytes("<f4", &[2, 3, 2], &f32s)),
        ("npy", "f16-3x72.npy", npy_bytes("<f2", &[3, 72], &f16s)),
        (
            "png_regions",
            "gray8.png",
            png(12, 10, C::Grayscale, D::Eight, &gray),
        ),
        (
            "png_regions",
            "rgba16.png",
            png(12, 10, C::Rgba, D::Sixteen, &rgba16),
        ),
        (
            "png_regions",
            "gray-alpha.png",
            png(12, 10, C::GrayscaleAlpha, D::Eight, &ga),
        ),
        (
            "png_regions",
            "indexed1.png",
            png(12, 10, C::Indexed, D::One, &packed1),
        ),
        ("png_regions", "scene_00.png", scene),
    ]
}

#[test]
fn every_seed_is_accepted_by_its_reader() {
    for (target, name, bytes) in seeds() {
        match target {
            "blob_parse" | "blob_resigned" => {
                let buf = AlignedBuf::from_bytes(&bytes);
                Blob::parse(&buf).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "caption" => {}
            "npy" => {
                let p = std::env::temp_dir().join(format!("m2-seed-{}-{name}", std::process::id()));
                std::fs::write(&p, &bytes).unwrap();
                let d_in = if name.starts_with("f16") { 72 } else { 2 };
                let r = m2::input::read_features(&p, d_in);
                std::fs::remove_file(&p).unwrap();
                r.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "png_regions" => {
                m2::regions::features_from_png(&bytes, 10)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ => unreachable!(),
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run with M2_WRITE_FUZZ_CORPUS=1 … -- --ignored"]
fn write_seed_corpus() {
    if std::env::var_os("M2_WRITE_FUZZ_CORPUS").is_none() {
        return;
    }
    for (target, name, bytes) in seeds() {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
