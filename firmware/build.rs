//! Build script: picks the memory map, embeds the model blob, bakes in the bundled images and
//! the captions the host engine gives them.
//!
//! Everything the firmware knows about its model is decided here, on the host, with the same
//! `m2` library the firmware links (built with `std`):
//! 1. the blob is copied (`$M2_BLOB`, else the bundled demo model) or packed (the `tiny-s0`
//!    fixture at int8) into `OUT_DIR/model.m2`, and parsed;
//! 2. the workspace size comes from `m2::plan::workspace_floats` for the blob's config, the beam
//!    size and the region count — the firmware recomputes it in a `const` and asserts equality;
//! 3. a few images' features go to `OUT_DIR/features.bin` (f32 little-endian);
//! 4. the host engine captions them with the same beam search, and the expected ids and text
//!    are written into `OUT_DIR/generated.rs`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;

/// Beam size of the expectations and of the firmware (the reference's test.py uses 5).
const DEFAULT_BEAM: usize = 5;
/// How many bundled images at most (each costs `max_regions × d_in × 4` bytes of flash).
const DEFAULT_IMAGES: usize = 6;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for v in ["M2_BLOB", "M2_FEATURES", "M2_BEAM", "M2_IMAGES", "M2_DTYPE"] {
        println!("cargo:rerun-if-env-changed={v}");
    }

    let (map, tag) = memory_map();
    fs::copy(
        manifest.join("memory").join(format!("{map}.x")),
        out.join("memory.x"),
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory");
    let tag_rs = format!("/// Memory map this ELF was linked for; qemu-run.sh reads the tag back from the ELF.\npub const TARGET_TAG: &str = {tag:?};\n");
    fs::write(out.join("target_tag.rs"), tag_rs).unwrap();

    // 1. the blob
    let (source, features_path) = model_blob(&root, &out);
    let bytes = fs::read(out.join("model.m2")).unwrap();
    let blob = m2::Blob::parse(&bytes)
        .unwrap_or_else(|e| panic!("the model blob from {source} is invalid: {e}"));
    let cfg = *blob.config();

    // 2. the memory plan
    // RP2040: 264 KiB of RAM must hold the workspace and the stack (the memory map asserts
    // 48 KiB for it), so the default beam is the largest of 5..1 that fits.
    let default_beam = if map == "rp2040" {
        let fits = |b| {
            m2::plan::workspace_bytes(&cfg, b, cfg.max_regions as usize) + (52 << 10) <= 264 << 10
        };
        (1..=DEFAULT_BEAM).rev().find(|&b| fits(b)).unwrap_or(1)
    } else {
        DEFAULT_BEAM
    };
    let beam = env_usize("M2_BEAM", default_beam);
    let regions = cfg.max_regions as usize;
    let max_len = cfg.max_len().min(m2::plan::DEFAULT_MAX_LEN);
    let ws_floats = m2::plan::workspace_floats(&cfg, beam, regions);

    // 3. the images
    let (features_path, images, n_rows) =
        choose_features(&root, features_path, cfg.d_in as usize, regions);
    println!("cargo:rerun-if-changed={}", features_path.display());
    let images: Vec<Vec<f32>> = images
        .into_iter()
        .take(env_usize("M2_IMAGES", DEFAULT_IMAGES))
        .collect();
    let mut feat_bytes = Vec::new();
    for img in &images {
        for v in img {
            feat_bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    fs::write(out.join("features.bin"), &feat_bytes).unwrap();

    // 4. the expected captions, from the host engine with the same plan and beam search
    let model = M2::new(&blob, Kernels::SCALAR);
    let mut buf = vec![0f32; ws_floats];
    let plan = m2::plan::Plan::new(&cfg, beam, regions, max_len);
    let mut ws = Workspace::new(&mut buf, plan).expect("workspace from the plan");
    let opts = SearchOptions { beam, max_len };
    let mut expected = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let out = beam_search(&model, img, &mut ws, &opts, |_| {})
            .unwrap_or_else(|e| panic!("host engine failed on image {i}: {e}"));
        let best = out.best().expect("a beam");
        let ids: Vec<u32> = best.tokens.iter().copied().collect();
        let text = caption_text(&blob, &ids);
        expected.push((ids, text, best.score));
    }
    if expected.len() > 1 && expected.iter().all(|e| e.0 == expected[0].0) {
        println!(
            "cargo:warning=the host engine gives all {} bundled images the same caption ({:?}): \
             the image has no influence, which points at an engine bug",
            expected.len(),
            expected[0].1
        );
    }
    if env::var_os("CARGO_FEATURE_WRONG_EXPECTED").is_some() {
        // Corrupt the last image's expected caption (first word id and text): the firmware must
        // notice and exit 1.
        let n = expected.len();
        let e = &mut expected[n - 1];
        e.0[0] = (e.0[0] + 1) % cfg.vocab;
        e.1 = format!("{} (deliberately wrong)", e.1);
    }

    // generated.rs
    let mut g = String::new();
    let w = &mut g;
    writeln!(w, "// Generated by build.rs from {source}: do not edit.").unwrap();
    writeln!(
        w,
        "include!(concat!(env!(\"OUT_DIR\"), \"/target_tag.rs\"));"
    )
    .unwrap();
    writeln!(w, "/// Where the blob came from.").unwrap();
    writeln!(w, "pub const MODEL_SOURCE: &str = {source:?};").unwrap();
    writeln!(w, "/// Length of the embedded blob in bytes.").unwrap();
    writeln!(w, "pub const MODEL_LEN: usize = {};", bytes.len()).unwrap();
    writeln!(
        w,
        "/// The blob's config (checked against the parsed blob at boot)."
    )
    .unwrap();
    writeln!(
        w,
        "pub const MODEL_CONFIG: m2::Config = {};",
        config_literal(&cfg)
    )
    .unwrap();
    writeln!(w, "pub const BEAM: usize = {beam};").unwrap();
    writeln!(w, "pub const MAX_LEN: usize = {max_len};").unwrap();
    writeln!(w, "pub const REGIONS: usize = {regions};").unwrap();
    writeln!(
        w,
        "/// Workspace length in f32, from the same `const fn` the host used."
    )
    .unwrap();
    writeln!(
        w,
        "pub const WORKSPACE_FLOATS: usize = m2::plan::workspace_floats(&MODEL_CONFIG, BEAM, REGIONS);"
    )
    .unwrap();
    writeln!(
        w,
        "const _: () = assert!(WORKSPACE_FLOATS == {ws_floats}, \"host and target plans differ\");"
    )
    .unwrap();
    writeln!(w, "/// Where the images came from.").unwrap();
    writeln!(
        w,
        "pub const FEATURES_SOURCE: &str = {:?};",
        features_path
            .strip_prefix(&root)
            .unwrap_or(&features_path)
            .display()
            .to_string()
    )
    .unwrap();
    writeln!(
        w,
        "/// Features of every bundled image: `[N_IMAGES, {n_rows}, d_in]` f32."
    )
    .unwrap();
    writeln!(w, "pub const N_IMAGES: usize = {};", images.len()).unwrap();
    writeln!(
        w,
        "pub const IMAGE_FLOATS: usize = {};",
        n_rows * cfg.d_in as usize
    )
    .unwrap();
    writeln!(w, "pub const FEATURES_LEN: usize = {};", feat_bytes.len()).unwrap();
    writeln!(
        w,
        "/// The host engine's caption of each image (scalar kernels, beam {beam})."
    )
    .unwrap();
    writeln!(w, "pub static EXPECTED: [Expected; N_IMAGES] = [").unwrap();
    for (ids, text, score) in &expected {
        writeln!(
            w,
            "    Expected {{ ids: &{ids:?}, text: {text:?}, score: {score:?} }},"
        )
        .unwrap();
    }
    writeln!(w, "];").unwrap();
    fs::write(out.join("generated.rs"), g).unwrap();
}

fn env_usize(name: &str, default: usize) -> usize {
    match env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s} is not a number")),
        Err(_) => default,
    }
}

/// The linker memory map (file stem in `memory/`) and the tag baked into the firmware.
fn memory_map() -> (&'static str, &'static str) {
    let f = |name: &str| env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase())).is_some();
    let chosen: Vec<_> = ["an500", "stm32h743", "rp2040"]
        .into_iter()
        .filter(|n| f(n))
        .collect();
    if chosen.len() > 1 {
        panic!("choose at most one memory-map feature, got {chosen:?}");
    }
    let target = env::var("TARGET").unwrap();
    let (map, tag) = match chosen.first() {
        None => ("mps2-an386", "qemu-machine=mps2-an386 cpu=cortex-m4;"),
        Some(&"an500") => ("mps2-an500", "qemu-machine=mps2-an500 cpu=cortex-m7;"),
        Some(&"stm32h743") => ("stm32h743", "board=stm32h743 probe-rs-chip=STM32H743ZITx;"),
        Some(_) => ("rp2040", "board=rp2040 probe-rs-chip=RP2040;"),
    };
    let want = if map == "rp2040" {
        "thumbv6m-none-eabi"
    } else {
        "thumbv7em-none-eabihf"
    };
    if map != "mps2-an386" && target != want {
        panic!("memory map {map} needs --target {want} (building for {target})");
    }
    (map, tag)
}

/// Put the model blob at `OUT_DIR/model.m2`: `$M2_BLOB` if set, else the bundled demo model,
/// else the `tiny-s0` fixture packed at int8 (`$M2_DTYPE`) right here. Returns a description of
/// the source and the features file that goes with it (`$M2_FEATURES` overrides it; for a demo
/// or `$M2_BLOB` model, the first `assets/demo/**/*feature*.npy` whose last dimension is d_in,
/// test files first).
fn model_blob(root: &Path, out: &Path) -> (String, Option<PathBuf>) {
    let dst = out.join("model.m2");
    let demo = root.join("assets/demo/demo-int8.m2");
    let fixture = root.join("tests/fixtures/tiny-s0");
    println!("cargo:rerun-if-changed={}", demo.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("assets/demo").display()
    );
    let (source, features) = if let Some(p) = env::var_os("M2_BLOB") {
        let p = absolute(PathBuf::from(p));
        println!("cargo:rerun-if-changed={}", p.display());
        fs::copy(&p, &dst).unwrap_or_else(|e| panic!("M2_BLOB={}: {e}", p.display()));
        (p.display().to_string(), None)
    } else if demo.exists() {
        fs::copy(&demo, &dst).unwrap();
        ("assets/demo/demo-int8.m2".to_string(), None)
    } else {
        pack_fixture(&fixture, &dst);
        let dtype = env::var("M2_DTYPE").unwrap_or_else(|_| "int8".into());
        (
            format!("tests/fixtures/tiny-s0 (packed at {dtype} by build.rs)"),
            Some(fixture.join("features.npy")),
        )
    };
    let features = match env::var_os("M2_FEATURES") {
        Some(p) => Some(absolute(PathBuf::from(p))),
        None => features,
    };
    if let Some(f) = &features {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    (source, features)
}

/// Every `*.npy` under `dir` whose name contains "feature", sorted (candidates for the images).
fn feature_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            feature_files(&p, found);
        } else if p.extension().is_some_and(|e| e == "npy")
            && p.file_name().unwrap().to_string_lossy().contains("feature")
        {
            found.push(p);
        }
    }
}

/// The features to bundle: the given file, else the first candidate under `assets/demo` whose
/// last dimension is the model's `d_in`, else the `tiny-s0` fixture's (if it fits).
fn choose_features(
    root: &Path,
    given: Option<PathBuf>,
    d_in: usize,
    regions: usize,
) -> (PathBuf, Vec<Vec<f32>>, usize) {
    if let Some(p) = given {
        let (imgs, rows) = load_features(&p, d_in, regions).unwrap_or_else(|e| panic!("{e}"));
        return (p, imgs, rows);
    }
    let mut candidates = Vec::new();
    feature_files(&root.join("assets/demo"), &mut candidates);
    // test scenes before anything else (e.g. calib_features.npy, the int8 calibration images)
    candidates.sort_by_key(|p| !p.file_name().unwrap().to_string_lossy().contains("test"));
    candidates.push(root.join("tests/fixtures/tiny-s0/features.npy"));
    let mut why = Vec::new();
    for p in candidates {
        match load_features(&p, d_in, regions) {
            Ok((imgs, rows)) => return (p, imgs, rows),
            Err(e) => why.push(e),
        }
    }
    panic!("no bundled features fit the model (set M2_FEATURES=FILE.npy): {why:?}");
}

/// Relative paths in the environment are relative to the firmware crate (build.rs's cwd).
fn absolute(p: PathBuf) -> PathBuf {
    if p.is_relative() {
        env::current_dir().unwrap().join(p)
    } else {
        p
    }
}

/// Pack a reference fixture's checkpoint at int8 into `dst` with the library's packer.
fn pack_fixture(dir: &Path, dst: &Path) {
    let ckpt = dir.join("model.safetensors");
    let vocab = dir.join("vocab.json");
    println!("cargo:rerun-if-changed={}", ckpt.display());
    println!("cargo:rerun-if-changed={}", vocab.display());
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let opts = m2::pack::PackOptions {
        dtype: match env::var("M2_DTYPE").as_deref() {
            Err(_) | Ok("int8") => m2::blob::DType::I8,
            Ok("f16") => m2::blob::DType::F16,
            Ok("f32") => m2::blob::DType::F32,
            Ok(other) => panic!("M2_DTYPE={other}: want int8, f16 or f32"),
        },
        heads: meta["hyper"]["h"].as_u64().expect("expected.json: hyper.h") as u32,
        max_regions: meta["regions"].as_u64().expect("expected.json: regions") as u32,
        ..Default::default()
    };
    let vocab = m2::pack::read_vocab_json(&fs::read(&vocab).unwrap()).unwrap();
    let blob = m2::pack::pack(&fs::read(&ckpt).unwrap(), &vocab, &opts)
        .unwrap_or_else(|e| panic!("packing {}: {e}", ckpt.display()));
    fs::write(dst, blob).unwrap();
}

/// `[K, R, d_in]` or `[R, d_in]` f32 features → one `Vec` per image (rows beyond `max_regions`
/// dropped, as the engine would refuse them).
fn load_features(
    path: &Path,
    d_in: usize,
    max_regions: usize,
) -> Result<(Vec<Vec<f32>>, usize), String> {
    let bytes = fs::read(path).map_err(|e| format!("features {}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let (k, r, d) = match shape[..] {
        [k, r, d] => (k, r, d),
        [r, d] => (1, r, d),
        _ => {
            return Err(format!(
                "{}: features must be [K, R, d_in], got {shape:?}",
                path.display()
            ))
        }
    };
    if d != d_in {
        return Err(format!(
            "{}: last dimension {d}, the model's d_in is {d_in}",
            path.display()
        ));
    }
    let all: Vec<f32> = npy
        .into_vec()
        .map_err(|e| format!("{}: not f32: {e}", path.display()))?;
    let rows = r.min(max_regions);
    let images = (0..k)
        .map(|i| all[i * r * d..(i * r + rows) * d].to_vec())
        .collect();
    Ok((images, rows))
}

/// Caption text of the best beam, by the library's rule.
fn caption_text(blob: &m2::Blob, ids: &[u32]) -> String {
    m2::text::caption_string(ids, |id| blob.token(id), false)
        .unwrap_or_else(|e| panic!("caption text of {ids:?}: {e:?}"))
}

/// A `Config` as a Rust expression (the `enc_pad_value` by its bits, so it round-trips exactly).
fn config_literal(c: &m2::Config) -> String {
    format!(
        "m2::Config {{ d_in: {}, d_model: {}, h: {}, d_k: {}, d_v: {}, d_ff: {}, n_enc: {}, \
         n_dec: {}, m: {}, vocab: {}, pos_rows: {}, max_regions: {}, pad: {}, unk: {}, bos: {}, \
         eos: {}, enc_pad_value: f32::from_bits({:#x}) }}",
        c.d_in,
        c.d_model,
        c.h,
        c.d_k,
        c.d_v,
        c.d_ff,
        c.n_enc,
        c.n_dec,
        c.m,
        c.vocab,
        c.pos_rows,
        c.max_regions,
        c.pad,
        c.unk,
        c.bos,
        c.eos,
        c.enc_pad_value.to_bits()
    )
}
