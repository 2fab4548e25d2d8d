//! Hostile input, by class (issue 14). Library-level checks here; each class also has a CLI
//! case asserting one `error:` line and exit 1 with no input changed.
#![cfg(feature = "std")]

mod blob_util;

use blob_util::*;
use m2::blob::{AlignedBuf, TensorKind};
use m2::kernels::{Kernels, KeyColumns};
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
    // usize::MAX / 2 regions (2^63 on 64-bit, 2^31 on 32-bit targets): the usize product
    // wraps; the workspace refuses the plan with no buffer.
    let plan = Plan::new(&cfg, 2, usize::MAX / 2, 3);
    assert_eq!(plan.checked_total_bytes(), None);
    let err = Workspace::new(&mut [], plan).err().unwrap();
    assert_eq!(
        err,
        WorkspaceError::PlanTooLarge {
            regions: usize::MAX / 2
        }
    );
    assert!(err.to_string().contains("address space"), "{err}");
}

// ---- the CLI: one `error:` line, exit 1, no input changed ---------------------------------------

mod common;

use common::{m2, m2_command, stderr_line, write_npy, Tmp};

/// A bundled scene's path, `name` under `assets/demo/scenes/`.
fn scene(name: &str) -> String {
    common::asset(&format!("scenes/{name}"))
        .to_string_lossy()
        .into_owned()
}

fn demo() -> String {
    common::asset("demo-int8.m2").to_string_lossy().into_owned()
}

/// Run `m2 args`, assert one error line containing `needle`, and that `inputs` are unchanged.
fn refused<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], needle: &str, inputs: &[&str]) {
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let o = m2(args);
    let line = stderr_line(&o);
    assert!(line.contains(needle), "{args:?}: {line}");
    assert!(o.stdout.is_empty(), "{args:?}: printed before failing");
    for (p, b) in inputs.iter().zip(before) {
        assert_eq!(std::fs::read(p).unwrap(), b, "{p} changed");
    }
}

#[test]
fn class1_cli_sizes_that_would_wrap_are_errors() {
    let t = Tmp::new("hostile1");
    let model = demo();
    // usize::MAX / 2 regions parses on every target and overflows the plan on every target.
    let regions = (usize::MAX / 2).to_string();
    refused(
        &["info", "-m", &model, "--regions", &regions],
        "overflows",
        &[&model],
    );
    refused(
        &["info", "-m", &model, "--beam", "1000000000000"],
        "--beam",
        &[&model],
    );
    // A shape whose product wraps in 64 bits, holding 640 values.
    let npy = t.path("wrap.npy");
    write_npy(&npy, "<f4", &[(1u64 << 58) + 1, 4, 72], &[0u8; 2560]);
    refused(
        &["caption", "-m", &model, "--features", &npy],
        "declares more data than the file",
        &[&model, &npy],
    );
}

#[test]
fn class2_cli_memory_is_bounded_before_allocation() {
    let t = Tmp::new("hostile2");
    let model = demo();
    let scene = scene("scene_00.png");
    refused(
        &[
            "caption",
            "-m",
            &model,
            "--image",
            &scene,
            "--max-workspace",
            "0",
        ],
        "--max-workspace",
        &[&model],
    );
    // A PNG header declaring 30000 x 30000 16-bit RGBA pixels (a few dozen bytes).
    let png = t.path("huge.png");
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = 30000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&30000u32.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[]);
    chunk(b"IEND", &[]);
    std::fs::write(&png, &bytes).unwrap();
    refused(
        &["caption", "-m", &model, "--image", &png],
        "pixel limit",
        &[&png],
    );
}

#[test]
fn class3_cli_features_that_overflow_name_the_image() {
    let t = Tmp::new("hostile3");
    let model = demo();
    let npy = t.path("big.npy");
    let mut data = Vec::new();
    for i in 0..2 * 4 * 72 {
        let v: f32 = if i % 2 == 0 { 3e38 } else { -3e38 };
        data.extend_from_slice(&v.to_le_bytes());
    }
    write_npy(&npy, "<f4", &[2, 4, 72], &data);
    for greedy in [false, true] {
        let mut args = vec!["caption", "-m", &model, "--features", &npy];
        if greedy {
            args.push("--greedy");
        }
        refused(&args, "image 0", &[&npy]);
    }
}

#[test]
fn class4_cli_outputs_never_overwrite_inputs_and_captions_stream() {
    let t = Tmp::new("hostile4");
    let model = demo();
    // m2 score -o onto an input through a symlink
    let link = t.path("link.m2");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let feats = t.path("f.npy");
    write_npy(&feats, "<f4", &[1, 1, 72], &[0u8; 288]);
    let toks = t.path("t.npy");
    let tok: Vec<u8> = [2i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&toks, "<i8", &[1, 2], &tok);
    refused(
        &[
            "score",
            "-m",
            &model,
            "--features",
            &feats,
            "--tokens",
            &toks,
            "-o",
            &link,
        ],
        "refusing to overwrite",
        &[&model, &feats, &toks],
    );
    // Captions stream: the first image's caption is printed even though image 1 fails.
    let mixed = t.path("mixed.npy");
    let mut data = Vec::new();
    for img in 0..2 {
        for r in 0..4 * 72 {
            let v: f32 = if img == 0 { (r % 7) as f32 / 7.0 } else { 3e38 };
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_npy(&mixed, "<f4", &[2, 4, 72], &data);
    let o = m2(&["caption", "-m", &model, "--features", &mixed]);
    let line = stderr_line(&o);
    assert!(line.contains("image 1"), "{line}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "image 0's caption"
    );
    // --no-mmap reads the blob and captions the same
    let scene = scene("scene_01.png");
    let a = m2(&["caption", "-m", &model, "--image", &scene]);
    let b = m2(&["caption", "-m", &model, "--image", &scene, "--no-mmap"]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn class5_usage_errors_are_one_line_and_exit_1() {
    let model = demo();
    let scene = scene("scene_00.png");
    for args in [
        vec!["caption", "-m", &model, "--image", &scene, "--beam", "abc"],
        vec!["caption", "-m", &model, "--bogus"],
        vec![
            "caption",
            "-m",
            &model,
            "--image",
            &scene,
            "--features",
            "x.npy",
        ],
        vec!["frobnicate"],
    ] {
        let o = m2(&args);
        stderr_line(&o);
    }
    for args in [["--help"], ["--version"]] {
        let o = m2(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
    }
    // A full disk and a closed stdout are errors, not silent success.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = m2_command()
        .args(["caption", "-m", &model, "--image", &scene])
        .stdout(full)
        .output()
        .unwrap();
    assert!(stderr_line(&o).contains("No space left"));
    // (not under an emulator, $M2_TEST_RUNNER: qemu-user opens files of its own, which may
    // take the closed descriptor before the program runs)
    if std::env::var_os("M2_TEST_RUNNER").is_none() {
        let bin = m2_command().get_program().to_string_lossy().into_owned();
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{bin}' caption -m '{model}' --image '{scene}' >&-"
            ))
            .output()
            .unwrap();
        assert!(stderr_line(&o).contains("standard output is closed"));
    }
}

/// The third audit's findings (2026-12-01): endless streams as inputs, a pipe or device as the
/// output, an earlier json run's results, a resumed file's foreign lines, bench's run count.
#[test]
fn class2_class4_streams_special_outputs_and_results_files() {
    use std::os::unix::fs::FileTypeExt;
    let t = Tmp::new("hostile7");
    let model = demo();
    let scene = scene("scene_00.png");
    let feats = t.path("f.npy");
    write_npy(&feats, "<f4", &[3, 4, 72], &[0u8; 3 * 4 * 72 * 4]);
    let caption = |more: &[&str]| -> Vec<String> {
        let mut v = vec!["caption", "-m", &model, "--features", &feats, "-q"];
        v.extend_from_slice(more);
        v.into_iter().map(String::from).collect()
    };
    // endless streams: a bounded read, then one error line (not memory exhausted, not a hang)
    refused(
        &["caption", "-m", &model, "--image", "/dev/zero"],
        "larger than",
        &[&model],
    );
    refused(
        &["caption", "-m", "/dev/zero", "--no-mmap", "--image", &scene],
        "bad magic",
        &[],
    );
    // a pipe as a mapped blob is refused before it is opened (the open waited for a writer,
    // then the mapping failed anyway); a writer is waiting here, so the old way fails, not hangs
    let pipe_blob = t.path("blob.fifo");
    let mk = std::process::Command::new("mkfifo")
        .arg(&pipe_blob)
        .status();
    assert!(mk.is_ok_and(|s| s.success()), "mkfifo");
    let writer = {
        let p = pipe_blob.clone();
        std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(p)))
    };
    for cmd in ["info", "bench"] {
        refused(&[cmd, "-m", &pipe_blob], "not a regular file", &[]);
    }
    drop(std::fs::File::open(&pipe_blob)); // lets the waiting writer go
    writer.join().unwrap();
    // a large regular file that is not a blob: --no-mmap checks the header before reading the
    // rest (it read all 4 GiB first, and held it twice); a blob whose header declares another
    // length is refused the same way
    let big = t.path("big.m2");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    refused(
        &["caption", "-m", &big, "--no-mmap", "--image", &scene],
        "bad magic",
        &[],
    );
    let mut longer = std::fs::read(&model).unwrap();
    let says = format!("header says {} bytes", longer.len());
    longer.extend_from_slice(&[0u8; 64]);
    std::fs::write(&big, &longer).unwrap();
    refused(
        &["caption", "-m", &big, "--no-mmap", "--image", &scene],
        &says,
        &[],
    );
    std::fs::remove_file(&big).unwrap();
    // features are read in place: a device or a pipe (which blocks its opener until a writer
    // comes) is refused, named, also inside a directory of .npz files
    let tsv = t.path("zero.tsv");
    std::os::unix::fs::symlink("/dev/zero", &tsv).unwrap();
    let dir = t.path("npz");
    std::fs::create_dir(&dir).unwrap();
    let pipe = format!("{dir}/1.npz");
    let mk = std::process::Command::new("mkfifo").arg(&pipe).status();
    assert!(mk.is_ok_and(|s| s.success()), "mkfifo");
    for features in [&tsv, &dir] {
        refused(
            &["caption", "-m", &model, "--features", features],
            "not a regular file",
            &[],
        );
    }
    // a pipe as -o is written in place and stays a pipe (renaming over it would replace it)
    let fifo = t.path("out.fifo");
    let mk = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(mk.is_ok_and(|s| s.success()), "mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = m2(&caption(&["--format", "json", "-o", &fifo]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(got.as_array().map(Vec::len), Some(3));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // an earlier json run's results are not overwritten
    let json = t.path("r.json");
    let args = caption(&["--format", "json", "-o", &json]);
    let o = m2(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    refused(&args, "exists", &[&json]);
    // a complete line that is not a result is never dropped by --resume
    let jsonl = t.path("r.jsonl");
    std::fs::write(&jsonl, "{\"image_id\":0,\"caption\":\"x\"}\nmy note\n").unwrap();
    refused(
        &caption(&["--format", "jsonl", "-o", &jsonl, "--resume"]),
        "line 2 is not an m2 result",
        &[&jsonl],
    );
    // nor a JSON line with an image id but no caption string (it resumed as a null caption)
    for line in [
        "{\"image_id\":1}",
        "{\"image_id\":1,\"caption\":12345}",
        "{\"image_id\":1,\"caption\":null}",
    ] {
        std::fs::write(
            &jsonl,
            format!("{{\"image_id\":0,\"caption\":\"x\"}}\n{line}\n"),
        )
        .unwrap();
        refused(
            &caption(&["--format", "jsonl", "-o", &jsonl, "--resume"]),
            "line 2 is not an m2 result",
            &[&jsonl],
        );
    }
    // nor an unfinished last line that is not the start of a result
    std::fs::write(&jsonl, "{\"image_id\":0,\"caption\":\"x\"}\nmy note").unwrap();
    refused(
        &caption(&["--format", "jsonl", "-o", &jsonl, "--resume"]),
        "unfinished last line is not an m2 result",
        &[&jsonl],
    );
    // nor a result for an image this run does not have
    std::fs::write(&jsonl, "{\"image_id\":77,\"caption\":\"x\"}\n").unwrap();
    refused(
        &caption(&["--format", "jsonl", "-o", &jsonl, "--resume"]),
        "line 1 is the result of image 77",
        &[&jsonl],
    );
    // nor is a text file with more lines than there are images resumed into
    let txt = t.path("r.txt");
    std::fs::write(&txt, "a\nb\nc\nd\ne\n").unwrap();
    refused(
        &caption(&["-o", &txt, "--resume"]),
        "5 lines for 3 images",
        &[&txt],
    );
    // a directory as -o is refused before any image is captioned (json wrote it at the end)
    let dir = t.path("outdir");
    std::fs::create_dir(&dir).unwrap();
    for format in ["json", "jsonl", "text"] {
        refused(
            &caption(&["--format", format, "-o", &dir]),
            "is a directory",
            &[],
        );
        assert!(!std::path::Path::new(&format!("{dir}.partial.jsonl")).exists());
    }
    // a run that fails before its first result leaves no empty results file behind
    for (format, created) in [("text", "new.txt"), ("json", "new.json.partial.jsonl")] {
        let out = t.path(created.split(".partial").next().unwrap());
        refused(
            &caption(&["--format", format, "-o", &out, "--max-workspace", "0"]),
            "workspace",
            &[],
        );
        assert!(
            !std::path::Path::new(&t.path(created)).exists(),
            "{created} left"
        );
    }
    // contradictory flags are refused, not resolved silently
    for (flags, needle) in [
        (&["--greedy", "--beam", "3"][..], "cannot be used with"),
        (&["--json", "--format", "jsonl"][..], "cannot be used with"),
        (&["--split", "test"][..], "--image-ids"),
    ] {
        refused(&caption(flags), needle, &[&feats]);
    }
    // an image id twice: json and jsonl results are keyed by id (json lost one, --resume
    // looped)
    let dup = t.path("dup.json");
    std::fs::write(&dup, "[7, 7, 8]").unwrap();
    refused(
        &caption(&["--ids", &dup, "--format", "json"]),
        "image id 7 appears twice",
        &[&dup],
    );
    // an --ids file far longer than one id per image could be (3 images here) is refused by
    // its length, before it is parsed (100 MB of ids took 1.7 GB as parsed JSON)
    let long = t.path("long.json");
    std::fs::write(&long, format!("[{}]", vec!["1234567"; 20_000].join(","))).unwrap();
    refused(
        &caption(&["--ids", &long]),
        "larger than 16384 bytes",
        &[&long],
    );
    // --split with a file that has no splits
    let list = t.path("list.json");
    std::fs::write(&list, "[0, 1]").unwrap();
    refused(
        &caption(&["--image-ids", &list, "--split", "val"]),
        "--split selects from a Karpathy",
        &[&list],
    );
    // bench's run count is bounded before anything is allocated
    refused(&["bench", "-m", &model, "-n", "100001"], "-n must be", &[]);
}

#[test]
fn class5_an_image_with_more_regions_than_the_model_takes_warns() {
    let t = Tmp::new("hostile5");
    let model = demo(); // max_regions 4
                        // Five separate bright 5x7 strokes on black: five regions.
    let (w, h) = (60usize, 20usize);
    let mut px = vec![0u8; w * h];
    for k in 0..5 {
        for y in 6..13 {
            for x in 3 + 12 * k..8 + 12 * k {
                px[y * w + x] = 255;
            }
        }
    }
    let path = t.path("five.png");
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut enc = png::Encoder::new(f, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
    }
    let o = m2(&["caption", "-m", &model, "--image", &path]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains("5 regions"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    let q = m2(&["caption", "-m", &model, "--image", &path, "-q"]);
    assert!(q.stderr.is_empty() && q.stdout == o.stdout);
}

// ---- class 6: the microcontroller path, without the full checksum -----------------------------

/// What the firmware trusts: `Blob::parse_skip_checksum` skips only the CRC over the weights.
/// The structure checksum (format v2) still covers every other byte, so the flips the attacker
/// found accepted — vocabulary bytes, `max_regions`, the pad id — and every other single-bit
/// flip before the data area of the bundled demo blob are refused.
#[test]
fn class6_without_the_checksum_every_structural_flip_is_refused() {
    use m2::blob::hdr;
    use m2::BlobError;
    let mut v = common::demo_blob();
    let blob = Blob::parse(&v).unwrap();
    let data_off = get_u64(&v, hdr::DATA_OFF) as usize;
    let vocab_bytes = get_u64(&v, hdr::VOCAB_BYTES_OFF) as usize;
    assert!(
        blob.version() >= 2,
        "the bundled blob carries a structure checksum"
    );
    // the named cases: max_regions (config field 11), pad (12), a vocabulary byte
    for at in [hdr::CONFIG + 4 * 11, hdr::CONFIG + 4 * 12, vocab_bytes + 1] {
        v[at] ^= 1;
        assert!(
            matches!(
                Blob::parse_skip_checksum(&v),
                Err(BlobError::StructureChecksumMismatch { .. })
            ),
            "byte {at}"
        );
        v[at] ^= 1;
    }
    for p in (0..data_off).filter(|p| !(hdr::CHECKSUM..hdr::CHECKSUM + 4).contains(p)) {
        for bit in 0..8 {
            v[p] ^= 1 << bit;
            assert!(
                Blob::parse_skip_checksum(&v).is_err(),
                "byte {p} bit {bit} accepted without the checksum"
            );
            v[p] ^= 1 << bit;
        }
    }
    Blob::parse(&v).unwrap();
}

/// What the ≥ 30-minute fuzz runs with overflow checks found (their inputs are in
/// fuzz/corpus): a `.npy` shape with a zero dimension whose other dimensions overflow when a
/// reader multiplies them in its own order, and a PNG palette that is not whole RGB triples
/// (png 0.17 panicked expanding it). Both are one error line now, wherever they are read.
#[test]
fn class1_class5_fuzz_findings_are_one_error_line() {
    let t = Tmp::new("hostile-fuzz");
    let model = demo();
    let npy = t.path("zero-dim.npy");
    std::fs::write(
        &npy,
        include_bytes!("../fuzz/corpus/npy/regression-zero-dim-stride-overflow.npy"),
    )
    .unwrap();
    refused(
        &["caption", "-m", &model, "-f", &npy],
        "zero-dim.npy",
        &[&npy],
    );
    let toks = t.path("t.npy");
    std::fs::copy(&npy, &toks).unwrap();
    let feats = t.path("f.npy");
    write_npy(&feats, "<f4", &[1, 1, 72], &[0u8; 288]);
    let out = t.path("o.npy");
    refused(
        &["score", "-m", &model, "-f", &feats, "-t", &toks, "-o", &out],
        "declares more data than the file",
        &[&toks, &feats],
    );
    let png = t.path("plte.png");
    std::fs::write(
        &png,
        include_bytes!("../fuzz/corpus/png_regions/regression-plte-7-bytes.png"),
    )
    .unwrap();
    refused(
        &["caption", "-m", &model, "--image", &png],
        "palette",
        &[&png],
    );
}

/// The library audit's findings (2026-12-01), through the public API: each misuse is a typed
/// error or a no-op, never a panic or a hang; a step run before the steps it reads is refused.
#[test]
fn class1_class3_library_misuse_is_a_typed_error() {
    use m2::blob::{Matrix, WeightData};
    use m2::kernels::QuantScratch;
    use m2::plan::MAX_STEPS;
    let blob = micro(false);
    with_model(&blob, |model, ws| {
        let bos = model.config().bos;
        model.encode(&features(0.5), ws).expect("encode");
        // a step index that would overflow `t + 1`
        let err = model.step(ws, usize::MAX, &[bos], &[[0u8; MAX_STEPS]]);
        assert!(matches!(err, Err(EngineError::TooLong { .. })), "{err:?}");
        // steps out of order: step 2 before 0 and 1 would read a stale cache
        let err = model.step(ws, 2, &[bos], &[[0u8; MAX_STEPS]]);
        assert_eq!(
            err.unwrap_err(),
            EngineError::StepOutOfOrder { step: 2, next: 0 }
        );
        model
            .step(ws, 0, &[bos], &[[0u8; MAX_STEPS]])
            .expect("step 0");
        model
            .step(ws, 1, &[bos], &[[0u8; MAX_STEPS]])
            .expect("step 1");
        assert_eq!(ws.steps_done(), 2);
        // the next image starts from step 0 again
        model.encode(&features(0.25), ws).expect("encode");
        let err = model.step(ws, 1, &[bos], &[[0u8; MAX_STEPS]]);
        assert!(
            matches!(err, Err(EngineError::StepOutOfOrder { .. })),
            "{err:?}"
        );
        // the encoder's output has levels 0..3 only
        assert!(!ws.encoder_output(2).is_empty());
        assert!(ws.encoder_output(3).is_empty() && ws.encoder_output(usize::MAX).is_empty());
        assert!(ws.encoder_row(usize::MAX, 0).is_empty());
    });
    // a plan with another head count is another model's
    with_model(&blob, |model, _| {
        let mut plan = model.plan(2, 3);
        plan.h += 1;
        let mut mem = vec![0f32; plan.total_floats()];
        let mut ws = Workspace::new(&mut mem, plan).unwrap();
        let err = model.encode(&features(0.5), &mut ws);
        assert_eq!(err.unwrap_err(), EngineError::ModelMismatch);
    });
    // no workspace for the workers: an error, not a success that emitted nothing
    let buf = AlignedBuf::from_bytes(&blob);
    let parsed = Blob::parse(&buf).unwrap();
    let model = M2::new(&parsed, Kernels::SCALAR);
    let batch = m2::search::batch::Batch {
        kernels: Kernels::SCALAR,
        plan: model.plan(2, 3),
        search: SearchOptions {
            beam: 2,
            max_len: 3,
        },
        greedy: false,
    };
    let r = m2::search::batch::decode_in_order(
        &parsed,
        &batch,
        &mut Vec::<Vec<f32>>::new(),
        3,
        |_, _| Ok::<(), String>(()),
        |_, e| e.to_string(),
        |_, _| Ok(()),
    );
    assert!(r.is_err(), "decoded with no workspace");
    // kernels: no rows is nothing to do (however many output channels a matrix claims); short
    // slices leave the output as it is
    let w = Matrix {
        rows: usize::MAX,
        cols: 0,
        data: WeightData::F32(&[]),
    };
    let mut qs = QuantScratch {
        q: &mut [],
        scales: &mut [],
    };
    Kernels::detect().linear(&[], 0, &w, None, &mut [], &mut qs);
    let mut out = [7.0f32; 8];
    fn keys(kt: &[f32], n: usize, stride: usize) -> KeyColumns<'_> {
        KeyColumns { kt, n, stride }
    }
    Kernels::detect().dot_columns(&[1.0; 4], keys(&[1.0; 8], 8, 8), &mut out);
    assert_eq!(out, [7.0; 8]);
    // rows narrower than their columns (`stride < n`), or a `kt` one value short of its last
    // row's columns: the output is left as it is, on every path
    for kern in Kernels::available().filter_map(Kernels::with_isa) {
        for (n, stride, len) in [
            (16usize, 8usize, 64usize),
            (20, 24, 3 * 24 + 19),
            (5, 8, 28),
        ] {
            let mut out = vec![7.0f32; n];
            kern.dot_columns(&[1.0; 4], keys(&vec![1.0; len], n, stride), &mut out);
            assert!(
                out.iter().all(|&v| v == 7.0),
                "{} n {n} stride {stride}",
                kern.isa()
            );
        }
    }
    // the two-row form: unequal queries, a short `kt` or one short output leave both outputs
    // as they are, on every path and on both sides of its 16-column block
    for kern in Kernels::available().filter_map(Kernels::with_isa) {
        for n in [8usize, 32] {
            let kt = vec![1.0f32; 4 * n];
            let q = [1.0f32; 4];
            let cases: [(&[f32], &[f32], usize, usize); 4] = [
                (&q, &q[..3], n, n), // queries of different lengths
                (&q, &q, n, n),      // kt one value short (below)
                (&q, &q, n - 1, n),  // out[0] short
                (&q, &q, n, n - 1),  // out[1] short
            ];
            for (c, (q0, q1, l0, l1)) in cases.into_iter().enumerate() {
                let kt = if c == 1 { &kt[..4 * n - 1] } else { &kt[..] };
                let (mut o0, mut o1) = (vec![7.0f32; l0], vec![7.0f32; l1]);
                kern.dot_columns2([q0, q1], keys(kt, n, n), [&mut o0, &mut o1]);
                assert!(
                    o0.iter().chain(&o1).all(|&v| v == 7.0),
                    "{} n {n} case {c}",
                    kern.isa()
                );
                // the same with a third, well-formed row
                let (mut o2, q2) = (vec![7.0f32; n], [1.0f32; 4]);
                kern.dot_columns3(
                    [q0, q1, &q2[..q0.len()]],
                    keys(kt, n, n),
                    [&mut o0, &mut o1, &mut o2],
                );
                assert!(
                    o0.iter().chain(&o1).chain(&o2).all(|&v| v == 7.0),
                    "{} n {n} case {c}, three rows",
                    kern.isa()
                );
            }
        }
    }
    // the extractor finds at most MAX_COMPONENTS regions: a larger ask allocates no more
    let png = std::fs::read(common::asset("scenes/scene_01.png")).unwrap();
    let (found, f) = m2::regions::features_from_png(&png, usize::MAX).unwrap();
    assert_eq!(f.len(), found.len() * m2::regions::D_IN);
}
