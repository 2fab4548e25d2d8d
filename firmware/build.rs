//! Build script: picks the board and its memory map, embeds the model blob, bakes in the
//! bundled images and the captions the host engine gives them.
//!
//! (Over 600 lines: one script by Cargo's design — board selection, the memory map, the blob,
//! the frames and their expected captions are one chain of decisions, each feeding the next.)
//!
//! Everything the firmware knows about its model is decided here, on the host, with the same
//! `m2` library the firmware links (built with `std`):
//! 1. the board (`m2_board` cfg: `qemu`, `stm32h743` or `pico`) and its `memory.x`; a tag naming
//!    the QEMU machine or the probe-rs chip is baked into the ELF for the runner (`run.sh`);
//! 2. the blob is copied (`$M2_BLOB`, else the bundled demo model) or packed (the `tiny-s0`
//!    fixture at int8) into `OUT_DIR/model.m2`, and parsed;
//! 3. the workspace size comes from `m2::plan::workspace_floats` for the blob's config, the beam
//!    size and the region count — the firmware recomputes it in a `const` and asserts equality;
//! 4. the images: for a model trained on `m2::regions` features (the demo), the bundled scene
//!    PNGs are decoded here into raw 8-bit grayscale **frames** (`OUT_DIR/frames.bin`) that the
//!    device turns into regions itself; for any other model, region feature vectors
//!    (`OUT_DIR/features.bin`, f32 little-endian);
//! 5. the host engine captions them — frames through the CLI's own `--image` path (PNG →
//!    `regions::features_from_png` → beam search), so the device's frame → regions → caption
//!    path is checked against an independent host path — and the expected ids and text are
//!    written into `OUT_DIR/generated.rs`.

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
/// How many bundled images at most (a 48×48 frame costs 2 304 bytes of flash; a feature image
/// `max_regions × d_in × 4`).
const DEFAULT_IMAGES: usize = 6;
/// Row pitch of the RAM frame buffer the device copies each frame into, as a camera's DMA
/// would leave it: rows padded to a multiple of 32 bytes (one Cortex-M7 cache line), so the
/// region extractor runs on a strided frame exactly as it would on a DCMI buffer.
const FRAME_ROW_ALIGN: usize = 32;
/// Stack the firmware needs besides its statics (measured peak ~27 KiB; every memory map
/// asserts 48 KiB at link time), used to choose the largest beam that fits a small part.
const STACK_RESERVE: usize = 52 << 10;

/// One board (memory map, cfg, the runner's tag).
struct Board {
    /// `m2_board` cfg value, and the `memory/*.x` stem's board.
    cfg: &'static str,
    /// File stem in `memory/`.
    map: &'static str,
    /// Baked into the ELF; `run.sh` reads it back to pick QEMU or probe-rs.
    tag: &'static str,
    /// The Rust target this board needs.
    target: &'static str,
    /// RAM for the workspace, frame buffer and the region extractor's scratch (bytes), when it
    /// is small enough to constrain the beam.
    ram_budget: Option<usize>,
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for v in ["M2_BLOB", "M2_FEATURES", "M2_BEAM", "M2_IMAGES", "M2_DTYPE"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo::rustc-check-cfg=cfg(m2_board, values(\"qemu\", \"stm32h743\", \"pico\"))");
    println!("cargo::rustc-check-cfg=cfg(m2_frames)");

    // 1. the board
    let board = board();
    println!("cargo:rustc-cfg=m2_board=\"{}\"", board.cfg);
    fs::copy(
        manifest.join("memory").join(format!("{}.x", board.map)),
        out.join("memory.x"),
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory");
    let tag_rs = format!(
        "/// What this ELF was built for; `run.sh` reads the tag back from the ELF to pick QEMU or probe-rs.\n\
         pub const TARGET_TAG: &str = {:?};\n",
        board.tag
    );
    fs::write(out.join("target_tag.rs"), tag_rs).unwrap();

    // 2. the blob
    let (source, features_path) = model_blob(&root, &out);
    let bytes = fs::read(out.join("model.m2")).unwrap();
    let blob = m2::Blob::parse(&bytes)
        .unwrap_or_else(|e| panic!("the model blob from {source} is invalid: {e}"));
    let cfg = *blob.config();
    let act_bytes = blob.act_bytes();
    let regions = cfg.max_regions as usize;
    let max_len = cfg.max_len().min(m2::plan::DEFAULT_MAX_LEN);

    // 4. (before the plan: frames need RAM too) the images
    let n_images = env_usize("M2_IMAGES", DEFAULT_IMAGES);
    if n_images == 0 {
        panic!("M2_IMAGES=0: the firmware would pass without captioning anything (at least 1)");
    }
    let scenes = root.join("assets/demo/scenes");
    let use_frames = features_path.is_none()
        && cfg.d_in as usize == m2::regions::D_IN
        && scenes.join("index.json").exists();
    let images = if use_frames {
        println!("cargo:rustc-cfg=m2_frames");
        println!("cargo:rerun-if-changed={}", scenes.display());
        Images::Frames(load_frames(&scenes, n_images, regions))
    } else {
        let (p, imgs, rows) = choose_features(&root, features_path, cfg.d_in as usize, regions);
        println!("cargo:rerun-if-changed={}", p.display());
        let imgs: Vec<Vec<f32>> = imgs.into_iter().take(n_images).collect();
        Images::Features {
            path: p,
            images: imgs,
            rows,
            d_in: cfg.d_in as usize,
        }
    };

    // 3. the memory plan. On a small part (the Pico's 264 KiB) the default beam is the largest
    // of 5..1 whose workspace, frame buffer and extractor scratch leave the stack its reserve.
    let frame_ram = images.frame_ram(regions);
    let default_beam = match board.ram_budget {
        Some(ram) => {
            let fits = |b| {
                m2::plan::workspace_bytes(&cfg, act_bytes, b, regions) + frame_ram + STACK_RESERVE
                    <= ram
            };
            let b = (1..=DEFAULT_BEAM).rev().find(|&b| fits(b)).unwrap_or(1);
            if env::var_os("M2_BEAM").is_none() {
                let used = m2::plan::workspace_bytes(&cfg, act_bytes, b, regions) + frame_ram;
                println!(
                    "cargo:warning={}: beam {b}, the largest ≤ {DEFAULT_BEAM} that fits: workspace + frame path {used} B of the {ram} B RAM leave {} B for the stack and statics (reserve {STACK_RESERVE} B; M2_BEAM overrides)",
                    board.cfg,
                    ram - used,
                );
            }
            b
        }
        None => DEFAULT_BEAM,
    };
    let beam = env_usize("M2_BEAM", default_beam);
    if beam == 0 || beam > m2::plan::MAX_BEAM {
        panic!(
            "M2_BEAM={beam}: the engine takes a beam of 1 to {}",
            m2::plan::MAX_BEAM
        );
    }
    if let (Some(ram), Some(_)) = (board.ram_budget, env::var_os("M2_BEAM")) {
        let used = m2::plan::workspace_bytes(&cfg, act_bytes, beam, regions) + frame_ram;
        if used + STACK_RESERVE > ram {
            panic!(
                "M2_BEAM={beam}: workspace + frame path {used} B leave less than the stack's {STACK_RESERVE} B reserve of the {} {ram} B RAM (the largest beam that fits is the default, M2_BEAM unset)",
                board.cfg
            );
        }
    }
    let ws_floats = m2::plan::workspace_floats(&cfg, act_bytes, beam, regions);

    // 5. the expected captions, from the host engine with the same plan and beam search
    let model = M2::new(&blob, Kernels::SCALAR);
    let mut buf = vec![0f32; ws_floats];
    let plan = m2::plan::Plan::new(&cfg, beam, regions, max_len).with_act_bytes(act_bytes);
    let mut ws = Workspace::new(&mut buf, plan).expect("workspace from the plan");
    let opts = SearchOptions { beam, max_len };
    let mut expected = Vec::new();
    for (i, feats) in images.host_features(regions).iter().enumerate() {
        let out = beam_search(&model, feats, &mut ws, &opts, |_| {})
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
    writeln!(
        w,
        "/// Bytes per quantised activation (`m2::Blob::act_bytes` of the blob)."
    )
    .unwrap();
    writeln!(w, "pub const ACT_BYTES: usize = {act_bytes};").unwrap();
    writeln!(w, "pub const MAX_LEN: usize = {max_len};").unwrap();
    writeln!(w, "pub const REGIONS: usize = {regions};").unwrap();
    writeln!(
        w,
        "/// Workspace length in f32, from the same `const fn` the host used."
    )
    .unwrap();
    writeln!(
        w,
        "pub const WORKSPACE_FLOATS: usize = m2::plan::workspace_floats(&MODEL_CONFIG, ACT_BYTES, BEAM, REGIONS);"
    )
    .unwrap();
    writeln!(
        w,
        "const _: () = assert!(WORKSPACE_FLOATS == {ws_floats}, \"host and target plans differ\");"
    )
    .unwrap();
    writeln!(w, "pub const N_IMAGES: usize = {};", expected.len()).unwrap();
    images.write(w, &out, &root);
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

/// The bundled images, as the device gets them.
enum Images {
    /// Decoded scene PNGs: (file name, the PNG's bytes, the decoded grayscale frame).
    Frames(Vec<(String, Vec<u8>, m2::regions::Gray)>),
    /// Region feature vectors, `rows × d_in` per image.
    Features {
        path: PathBuf,
        images: Vec<Vec<f32>>,
        rows: usize,
        d_in: usize,
    },
}

impl Images {
    /// Row pitch of the RAM frame buffer for a frame `w` pixels wide.
    fn stride(w: usize) -> usize {
        w.div_ceil(FRAME_ROW_ALIGN) * FRAME_ROW_ALIGN
    }

    /// (RAM frame buffer bytes, extractor label entries): the largest over the frames.
    fn frame_sizes(&self) -> (usize, usize) {
        match self {
            Images::Frames(f) => f.iter().fold((0, 0), |(b, l), (_, _, g)| {
                (
                    b.max(Self::stride(g.width) * g.height),
                    l.max(g.width * g.height),
                )
            }),
            Images::Features { .. } => (0, 0),
        }
    }

    /// RAM the frame path needs besides the workspace: frame buffer, labels (u16), regions
    /// (12 B each) and the feature matrix (f32).
    fn frame_ram(&self, regions: usize) -> usize {
        match self {
            Images::Frames(_) => {
                let (buf, labels) = self.frame_sizes();
                buf + 2 * labels + 12 * regions + 4 * regions * m2::regions::D_IN
            }
            Images::Features { .. } => 0,
        }
    }

    /// What the host engine captions: for frames, the CLI's `--image` path on the PNG bytes.
    fn host_features(&self, regions: usize) -> Vec<Vec<f32>> {
        match self {
            Images::Frames(f) => f
                .iter()
                .map(|(name, png, _)| {
                    m2::regions::features_from_png(png, regions)
                        .unwrap_or_else(|e| panic!("scene {name}: {e}"))
                        .1
                })
                .collect(),
            Images::Features { images, .. } => images.clone(),
        }
    }

    /// The images' data files in `out` and their description in `generated.rs`.
    fn write(&self, w: &mut String, out: &Path, root: &Path) {
        match self {
            Images::Frames(frames) => {
                let mut bytes = Vec::new();
                writeln!(
                    w,
                    "/// Bundled frames: 8-bit grayscale, rows back to back, in `frames.bin`."
                )
                .unwrap();
                writeln!(w, "pub static FRAMES: [FrameSpec; N_IMAGES] = [").unwrap();
                for (name, _, g) in frames {
                    writeln!(
                        w,
                        "    FrameSpec {{ name: {name:?}, width: {}, height: {}, offset: {} }},",
                        g.width,
                        g.height,
                        bytes.len()
                    )
                    .unwrap();
                    bytes.extend_from_slice(&g.pixels);
                }
                writeln!(w, "];").unwrap();
                let (buf, labels) = self.frame_sizes();
                writeln!(w, "pub const FRAMES_LEN: usize = {};", bytes.len()).unwrap();
                writeln!(
                    w,
                    "/// RAM frame buffer (the largest frame at its DMA row pitch) and extractor labels."
                )
                .unwrap();
                writeln!(w, "pub const FRAME_BUF_LEN: usize = {buf};").unwrap();
                writeln!(w, "pub const FRAME_ROW_ALIGN: usize = {FRAME_ROW_ALIGN};").unwrap();
                writeln!(w, "pub const LABELS_LEN: usize = {labels};").unwrap();
                writeln!(
                    w,
                    "pub const IMAGES_SOURCE: &str = \"assets/demo/scenes (PNG, decoded by build.rs)\";"
                )
                .unwrap();
                fs::write(out.join("frames.bin"), &bytes).unwrap();
            }
            Images::Features {
                path,
                images,
                rows,
                d_in,
            } => {
                let mut bytes = Vec::new();
                for v in images.iter().flatten() {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                writeln!(
                    w,
                    "/// Features of every bundled image: `[N_IMAGES, {rows}, d_in]` f32."
                )
                .unwrap();
                writeln!(w, "pub const IMAGE_FLOATS: usize = {};", rows * d_in).unwrap();
                writeln!(w, "pub const FEATURES_LEN: usize = {};", bytes.len()).unwrap();
                writeln!(
                    w,
                    "pub const IMAGES_SOURCE: &str = {:?};",
                    path.strip_prefix(root)
                        .unwrap_or(path)
                        .display()
                        .to_string()
                )
                .unwrap();
                fs::write(out.join("features.bin"), &bytes).unwrap();
            }
        }
    }
}

/// The first `n` scenes of `dir/index.json`, decoded to grayscale with the CLI's decoder.
fn load_frames(dir: &Path, n: usize, regions: usize) -> Vec<(String, Vec<u8>, m2::regions::Gray)> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let list = index.as_array().expect("index.json: a list of scenes");
    list.iter()
        .take(n)
        .map(|e| {
            let name = e["png"].as_str().expect("index.json: png").to_string();
            let png = fs::read(dir.join(&name)).unwrap_or_else(|err| panic!("{name}: {err}"));
            let g = m2::regions::from_png(&png).unwrap_or_else(|err| panic!("{name}: {err}"));
            if g.width * g.height > m2::regions::MAX_PIXELS {
                panic!(
                    "{name}: {}×{} is larger than the extractor takes",
                    g.width, g.height
                );
            }
            // the device must find regions in it, as the host does
            m2::regions::features_from_png(&png, regions)
                .unwrap_or_else(|err| panic!("scene {name}: {err}"));
            (name, png, g)
        })
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    match env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s} is not a number")),
        Err(_) => default,
    }
}

/// The board the features chose (at most one of `an500`, `stm32h743`, `pico`; none = QEMU
/// mps2-an386), checked against the Rust target.
fn board() -> Board {
    let f = |name: &str| env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase())).is_some();
    let chosen: Vec<_> = ["an500", "stm32h743", "pico"]
        .into_iter()
        .filter(|n| f(n))
        .collect();
    if chosen.len() > 1 {
        panic!("choose at most one board feature, got {chosen:?}");
    }
    let board = match chosen.first() {
        None => Board {
            cfg: "qemu",
            map: "mps2-an386",
            tag: "qemu-machine=mps2-an386 cpu=cortex-m4;",
            target: "thumbv7em-none-eabihf",
            ram_budget: None,
        },
        Some(&"an500") => Board {
            cfg: "qemu",
            map: "mps2-an500",
            tag: "qemu-machine=mps2-an500 cpu=cortex-m7;",
            target: "thumbv7em-none-eabihf",
            ram_budget: None,
        },
        Some(&"stm32h743") => Board {
            cfg: "stm32h743",
            map: "stm32h743",
            tag: "board=stm32h743 probe-rs-chip=STM32H743ZITx;",
            target: "thumbv7em-none-eabihf",
            ram_budget: None,
        },
        Some(_) => Board {
            cfg: "pico",
            map: "rp2040",
            tag: "board=pico probe-rs-chip=RP2040;",
            target: "thumbv6m-none-eabi",
            ram_budget: Some(264 << 10),
        },
    };
    let target = env::var("TARGET").unwrap();
    // The ARMv6-M build also runs on the QEMU M4 machine (v6-M is a subset of v7E-M).
    let ok =
        target == board.target || (board.map == "mps2-an386" && target == "thumbv6m-none-eabi");
    if !ok {
        panic!(
            "the {} build needs --target {} (building for {target}){}",
            board.cfg,
            board.target,
            if board.cfg == "pico" {
                "; the Pico is a Cortex-M0+: `cargo pico` (an alias for `cargo run --release --target thumbv6m-none-eabi --features pico`)"
            } else {
                ""
            }
        );
    }
    board
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
    if env::var_os("M2_DTYPE").is_some() && (env::var_os("M2_BLOB").is_some() || demo.exists()) {
        // M2_DTYPE only chooses how build.rs packs the tiny-s0 fixture (no blob given, no
        // bundled demo model): elsewhere it would be silently ignored
        panic!("M2_DTYPE applies only when build.rs packs the tiny-s0 fixture (no M2_BLOB, no assets/demo/demo-int8.m2); pack the blob with m2-pack --dtype and pass it as M2_BLOB");
    }
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
    if npy.order() == npyz::Order::Fortran {
        return Err(format!(
            "{}: Fortran-ordered (column-major); save it in C order",
            path.display()
        ));
    }
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
    if k == 0 || r == 0 {
        return Err(format!(
            "{}: no images or no regions (shape {shape:?})",
            path.display()
        ));
    }
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

/// A `Config` as a Rust expression, field by field from `Config::fields` (the `enc_pad_value`
/// by its bits, so it round-trips exactly).
fn config_literal(c: &m2::Config) -> String {
    let fields: Vec<String> = c
        .fields()
        .map(|(name, value)| match value {
            m2::config::FieldValue::U32(v) => format!("{name}: {v}"),
            m2::config::FieldValue::F32(v) => format!("{name}: f32::from_bits({:#x})", v.to_bits()),
        })
        .collect();
    format!("m2::Config {{ {} }}", fields.join(", "))
}
