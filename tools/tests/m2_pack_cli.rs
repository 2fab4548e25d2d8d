//! The `m2-pack` binary end to end: packing the fixtures, `inspect`, and its error behaviour.

use m2::blob::AlignedBuf;
use m2::Blob;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_m2-pack");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2-pack-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run m2-pack")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with exactly one line on stderr starting `error: `.
fn assert_one_line_error(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1, stdout {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = stderr(o);
    assert!(e.starts_with("error: "), "stderr: {e:?}");
    assert_eq!(
        e.trim_end().lines().count(),
        1,
        "stderr not one line: {e:?}"
    );
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    e
}

fn pack_args<'a>(fixture: &'a str, dtype: &'a str, out: &'a str) -> Vec<String> {
    let dir = fixtures().join(fixture);
    let mut v = vec![
        dir.join("model.safetensors").display().to_string(),
        "--vocab".into(),
        dir.join("vocab.json").display().to_string(),
        "--dtype".into(),
        dtype.into(),
        "-o".into(),
        out.into(),
    ];
    if fixture.starts_with("tiny") {
        v.extend(["--heads", "4", "--regions", "10"].map(String::from));
    } else {
        v.extend(["--heads", "8", "--regions", "50"].map(String::from));
    }
    v
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind {name}");
    }
}

#[test]
fn packs_every_fixture_at_every_dtype() {
    let dir = scratch("all");
    for fixture in ["tiny-s0", "tiny-s2-masked", "small-s3"] {
        for dtype in ["f32", "f16", "int8"] {
            let out = dir.join(format!("{fixture}-{dtype}.m2"));
            let args = pack_args(fixture, dtype, out.to_str().unwrap());
            let o = Command::new(BIN).args(&args).output().unwrap();
            assert!(o.status.success(), "{fixture} {dtype}: {}", stderr(&o));
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(stdout.starts_with("wrote "), "{stdout}");
            let buf = AlignedBuf::read_file(&out).unwrap();
            let blob = Blob::parse(&buf).unwrap();
            let want = match dtype {
                "f32" => m2::blob::DType::F32,
                "f16" => m2::blob::DType::F16,
                _ => m2::blob::DType::I8,
            };
            assert_eq!(blob.matrix(m2::blob::TensorKind::VocabW, 0).dtype(), want);
            // identical to packing in-process
            let st = std::fs::read(fixtures().join(fixture).join("model.safetensors")).unwrap();
            let vocab = m2::pack::read_vocab_json(
                &std::fs::read(fixtures().join(fixture).join("vocab.json")).unwrap(),
            )
            .unwrap();
            let (heads, regions) = if fixture.starts_with("tiny") {
                (4, 10)
            } else {
                (8, 50)
            };
            let opts = m2::pack::PackOptions {
                dtype: want,
                heads,
                max_regions: regions,
                ..Default::default()
            };
            assert_eq!(&*buf, &m2::pack::pack(&st, &vocab, &opts).unwrap()[..]);
        }
    }
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn readout_dtype_changes_only_the_readout() {
    use m2::blob::{DType, TensorKind};
    let dir = scratch("readout");
    let out = dir.join("tiny-int8-f32-readout.m2");
    let mut args = pack_args("tiny-s0", "int8", out.to_str().unwrap());
    args.extend(["--readout-dtype".into(), "f32".into()]);
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let buf = AlignedBuf::read_file(&out).unwrap();
    let blob = Blob::parse(&buf).unwrap();
    for t in blob.tensors() {
        let m = blob.matrix(t.kind, t.layer as usize);
        match t.kind {
            TensorKind::VocabW => assert_eq!(m.dtype(), DType::F32),
            TensorKind::WordEmb | TensorKind::EncInW | TensorKind::DecFf2W => {
                assert_eq!(m.dtype(), DType::I8, "{:?}", t.kind)
            }
            _ => {}
        }
    }
    // a bad value is a one-line error
    let mut bad = pack_args("tiny-s0", "int8", out.to_str().unwrap());
    bad.extend(["--readout-dtype".into(), "f8".into()]);
    let args: Vec<&str> = bad.iter().map(String::as_str).collect();
    let e = assert_one_line_error(&run(&args));
    assert!(e.contains("f8"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn calibrate_rounds_only_the_int8_linears() {
    use m2::blob::{DType, TensorKind, WeightData};
    let dir = scratch("calibrate");
    let (rtn, gptq) = (dir.join("rtn.m2"), dir.join("gptq.m2"));
    let feats = fixtures().join("tiny-s0/features.npy");
    let o = Command::new(BIN)
        .args(pack_args("tiny-s0", "int8", rtn.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut args = pack_args("tiny-s0", "int8", gptq.to_str().unwrap());
    args.extend(["--calibrate".into(), feats.to_str().unwrap().into()]);
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("GPTQ-calibrated"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let (a, b) = (
        AlignedBuf::read_file(&rtn).unwrap(),
        AlignedBuf::read_file(&gptq).unwrap(),
    );
    let (a, b) = (Blob::parse(&a).unwrap(), Blob::parse(&b).unwrap());
    assert_eq!(a.config(), b.config());
    let mut changed = 0;
    for (ta, tb) in a.tensors().zip(b.tensors()) {
        assert_eq!((ta.kind, ta.layer, ta.dtype), (tb.kind, tb.layer, tb.dtype));
        let (ma, mb) = (
            a.matrix(ta.kind, ta.layer as usize),
            b.matrix(tb.kind, tb.layer as usize),
        );
        match (ma.data, mb.data) {
            (
                WeightData::I8 {
                    q: qa, scales: sa, ..
                },
                WeightData::I8 {
                    q: qb, scales: sb, ..
                },
            ) => {
                // same per-row scales; the values move by at most a few steps
                assert_eq!(sa, sb, "{:?}", ta.kind);
                if ta.kind == TensorKind::WordEmb {
                    assert_eq!(qa, qb, "word_emb stays round-to-nearest");
                } else if qa != qb {
                    changed += 1;
                }
            }
            (WeightData::F32(x), WeightData::F32(y)) => assert_eq!(x, y, "{:?}", ta.kind),
            _ => panic!("{:?}: dtypes differ", ta.kind),
        }
        assert_eq!(ma.dtype() == DType::I8, mb.dtype() == DType::I8);
    }
    assert!(changed >= 50, "only {changed} int8 weights changed");
    // limiting the images changes the result; the same images give the same bytes, whatever
    // the thread count (and the CPU: calibration runs the scalar kernels)
    let again = dir.join("gptq-again.m2");
    let mut args2 = pack_args("tiny-s0", "int8", again.to_str().unwrap());
    args2.extend(["--calibrate".into(), feats.to_str().unwrap().into()]);
    args2.extend(["--threads".into(), "3".into()]);
    let o = Command::new(BIN).args(&args2).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&gptq).unwrap(),
        std::fs::read(&again).unwrap()
    );
    args2.extend(["--calibrate-images".into(), "2".into()]);
    let o = Command::new(BIN).args(&args2).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        std::fs::read(&gptq).unwrap(),
        std::fs::read(&again).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn calibrate_errors_are_one_line() {
    let dir = scratch("calibrate-errors");
    let out = dir.join("x.m2");
    let out_s = out.to_str().unwrap();
    let feats = fixtures().join("tiny-s0/features.npy");
    let feats_s = feats.to_str().unwrap();
    let wrong_d = fixtures().join("small-s3/features.npy"); // d_in 2048, tiny-s0 wants 64
    let cases: [(&str, Vec<&str>, &str); 6] = [
        ("f16", vec!["--calibrate", feats_s], "int8"),
        (
            "int8",
            vec!["--calibrate", wrong_d.to_str().unwrap()],
            "d_in",
        ),
        (
            "int8",
            vec!["--calibrate", "/nonexistent/f.npy"],
            "/nonexistent/f.npy",
        ),
        (
            "int8",
            vec!["--calibrate", feats_s, "--calibrate-images", "0"],
            "at least 1",
        ),
        (
            "int8",
            vec!["--calibrate", feats_s, "--damping", "-1"],
            "damping",
        ),
        (
            "int8",
            vec!["--calibrate", feats_s, "--threads", "0"],
            "--threads must be at least 1",
        ),
    ];
    for (dtype, extra, want) in cases {
        let mut args = pack_args("tiny-s0", dtype, out_s);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = assert_one_line_error(&run(&args));
        assert!(e.contains(want), "{dtype} {extra:?}: {e}");
        assert!(!out.exists(), "nothing written on error");
    }
    // --damping needs --calibrate
    let mut args = pack_args("tiny-s0", "int8", out_s);
    args.extend(["--damping".into(), "0.2".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(!run(&args).status.success());
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inspect_prints_config_tensors_and_plan() {
    let dir = scratch("inspect");
    let out = dir.join("small.m2");
    let o = Command::new(BIN)
        .args(pack_args("small-s3", "int8", out.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let buf = AlignedBuf::read_file(&out).unwrap();
    let blob = Blob::parse(&buf).unwrap();
    let cfg = *blob.config();

    let o = run(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(ok)"), "{text}");
    assert!(text.contains("d_in 2048  d_model 64  h 8  d_k 8"), "{text}");
    assert!(text.contains("vocabulary 10201 tokens"), "{text}");
    assert!(text.contains("decoder.word_emb.weight"), "{text}");
    assert!(
        text.contains("encoder.layers.2.mhatt.attention.m_v"),
        "{text}"
    );
    assert!(text.contains("memory plan (beam 5, 50 regions)"), "{text}");
    let ws = m2::plan::workspace_bytes(&cfg, 1, 5, 50);
    let flash_line = text.lines().find(|l| l.contains("flash (blob)")).unwrap();
    assert!(
        flash_line.contains(&format!(" {} bytes", blob.len())),
        "{flash_line}"
    );
    let ram_line = text
        .lines()
        .find(|l| l.contains("RAM (workspace)"))
        .unwrap();
    assert!(ram_line.contains(&format!(" {ws} bytes")), "{ram_line}");

    let o = run(&[
        "inspect",
        out.to_str().unwrap(),
        "--beam",
        "2",
        "--regions",
        "36",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let ws = m2::plan::workspace_bytes(&cfg, 1, 2, 36);
    assert!(text.contains("memory plan (beam 2, 36 regions)"), "{text}");
    assert!(text.contains(&format!(" {ws} bytes")), "{text}");

    // a corrupted blob: one error line naming the checksum, non-zero exit
    let mut bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&out, &bytes).unwrap();
    let e = assert_one_line_error(&run(&["inspect", out.to_str().unwrap()]));
    assert!(e.contains("checksum"), "{e}");
    // not a blob at all
    let ck = fixtures().join("tiny-s0/model.safetensors");
    let e = assert_one_line_error(&run(&["inspect", ck.to_str().unwrap()]));
    assert!(e.contains("not an M2 blob"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn refuses_to_overwrite_its_input() {
    let dir = scratch("overwrite");
    let ck = dir.join("model.safetensors");
    let voc = dir.join("vocab.json");
    std::fs::copy(fixtures().join("tiny-s0/model.safetensors"), &ck).unwrap();
    std::fs::copy(fixtures().join("tiny-s0/vocab.json"), &voc).unwrap();
    let before = std::fs::read(&ck).unwrap();
    let spelled_differently = dir.join(".").join("model.safetensors");
    for target in [&ck, &spelled_differently, &voc] {
        let o = run(&[
            ck.to_str().unwrap(),
            "--vocab",
            voc.to_str().unwrap(),
            "--dtype",
            "f16",
            "--heads",
            "4",
            "-o",
            target.to_str().unwrap(),
        ]);
        let e = assert_one_line_error(&o);
        assert!(e.contains("refusing to overwrite"), "{e}");
    }
    assert_eq!(std::fs::read(&ck).unwrap(), before);
    // an existing, unrelated output file is replaced
    let out = dir.join("out.m2");
    std::fs::write(&out, b"old").unwrap();
    let o = run(&[
        ck.to_str().unwrap(),
        "--vocab",
        voc.to_str().unwrap(),
        "--dtype",
        "f16",
        "--heads",
        "4",
        "--regions",
        "10",
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    Blob::parse(&AlignedBuf::read_file(&out).unwrap()).unwrap();
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_are_one_line() {
    let dir = scratch("errors");
    let out = dir.join("o.m2");
    let out_s = out.to_str().unwrap();
    let tiny = fixtures().join("tiny-s0");
    let ck = tiny.join("model.safetensors");
    let voc = tiny.join("vocab.json");
    let (ck, voc) = (ck.to_str().unwrap(), voc.to_str().unwrap());

    // missing checkpoint
    let e = assert_one_line_error(&run(&[
        "/nonexistent/m.safetensors",
        "--vocab",
        voc,
        "--dtype",
        "f32",
        "-o",
        out_s,
    ]));
    assert!(e.contains("/nonexistent/m.safetensors"), "{e}");
    // missing vocabulary
    let e = assert_one_line_error(&run(&[
        ck,
        "--vocab",
        "/nonexistent/v.json",
        "--dtype",
        "f32",
        "-o",
        out_s,
    ]));
    assert!(e.contains("v.json"), "{e}");
    // an endless stream as the vocabulary: a bounded read, then an error
    let e = assert_one_line_error(&run(&[
        ck,
        "--vocab",
        "/dev/zero",
        "--dtype",
        "f32",
        "-o",
        out_s,
    ]));
    assert!(e.contains("larger than"), "{e}");
    // not safetensors
    let e = assert_one_line_error(&run(&[voc, "--vocab", voc, "--dtype", "f32", "-o", out_s]));
    assert!(e.contains("not a safetensors file"), "{e}");
    // vocabulary size mismatch
    let coco = fixtures().join("coco-vocab.json");
    let e = assert_one_line_error(&run(&[
        ck,
        "--vocab",
        coco.to_str().unwrap(),
        "--dtype",
        "f32",
        "--heads",
        "4",
        "-o",
        out_s,
    ]));
    assert!(e.contains("10201") && e.contains("50 rows"), "{e}");
    // vocabulary not JSON
    let e = assert_one_line_error(&run(&[
        ck, "--vocab", ck, "--dtype", "f32", "--heads", "4", "-o", out_s,
    ]));
    assert!(e.contains("JSON"), "{e}");
    // heads that do not divide d_model
    let e = assert_one_line_error(&run(&[
        ck, "--vocab", voc, "--dtype", "f32", "--heads", "5", "-o", out_s,
    ]));
    assert!(e.contains("--heads 5"), "{e}");
    // output directory missing
    let e = assert_one_line_error(&run(&[
        ck,
        "--vocab",
        voc,
        "--dtype",
        "f32",
        "--heads",
        "4",
        "-o",
        "/nonexistent/dir/o.m2",
    ]));
    assert!(e.contains("/nonexistent/dir"), "{e}");
    // argument errors (clap) are folded into one line too
    let e = assert_one_line_error(&run(&[ck, "--vocab", voc, "-o", out_s]));
    assert!(e.contains("--dtype"), "{e}");
    let e = assert_one_line_error(&run(&[ck, "--vocab", voc, "--dtype", "f64", "-o", out_s]));
    assert!(e.contains("f64"), "{e}");
    assert_one_line_error(&run(&[]));
    assert_one_line_error(&run(&["inspect"]));
    let e = assert_one_line_error(&run(&["inspect", "/nonexistent.m2"]));
    assert!(e.contains("/nonexistent.m2"), "{e}");
    assert!(!out.exists());
    no_temp_files(&dir);
    // --help is not an error
    let o = run(&["--help"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("inspect"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Hostile input, class 4 (issue 14): the calibration features are an input too — an output
/// naming them (directly, through a symlink or a hard link) is refused and they stay intact.
#[test]
fn calibration_input_is_never_overwritten() {
    let dir = scratch("calib-clobber");
    let cal = dir.join("cal.npy");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/demo/calib_features.npy"),
        &cal,
    )
    .unwrap();
    let before = std::fs::read(&cal).unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&cal, &link).unwrap();
    let hard = dir.join("hard.npy");
    std::fs::hard_link(&cal, &hard).unwrap();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/demo");
    for target in [&cal, &link, &hard] {
        let o = run(&[
            demo.join("checkpoint.safetensors").to_str().unwrap(),
            "--vocab",
            demo.join("vocab.json").to_str().unwrap(),
            "--dtype",
            "int8",
            "--heads",
            "4",
            "--regions",
            "4",
            "--calibrate",
            cal.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ]);
        let e = assert_one_line_error(&o);
        assert!(e.contains("refusing to overwrite"), "{e}");
    }
    assert_eq!(std::fs::read(&cal).unwrap(), before);
}

/// Hostile input, class 5: usage errors exit 1 in one line; `inspect` to a full disk is an
/// error (not a panic); `inspect` of a file that is no blob stops at the header.
#[test]
fn usage_and_output_errors_are_one_line() {
    for args in [
        &["--bogus"][..],
        &["inspect"],
        &["inspect", "x", "--beam", "abc"],
    ] {
        assert_one_line_error(&run(args));
    }
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/demo/demo-int8.m2");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(BIN)
        .args(["inspect", demo.to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    assert!(assert_one_line_error(&o).contains("No space left"));
    let dir = scratch("inspect-not-blob");
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let e = assert_one_line_error(&run(&["inspect", junk.to_str().unwrap()]));
    assert!(e.contains("magic"), "{e}");
    let e = assert_one_line_error(&run(&["inspect", demo.to_str().unwrap(), "--beam", "0"]));
    assert!(e.contains("--beam"), "{e}");
}
