//! The `m2` binary end to end: captions equal the reference's, JSON output, scoring, info, and
//! a one-line error with a non-zero exit for every kind of bad input.

mod common;

use common::*;
use m2::blob::DType;
use std::path::Path;

fn write_blob(tmp: &Tmp, name: &str, dtype: DType) -> String {
    let p = tmp.path(&format!("{name}.m2"));
    std::fs::write(&p, &*packed(name, dtype)).unwrap();
    p
}

fn features(name: &str) -> String {
    fixture_dir(name)
        .join("features.npy")
        .to_string_lossy()
        .into_owned()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn caption_prints_the_reference_captions_on_every_fixture() {
    let tmp = Tmp::new("caption");
    for name in FIXTURES {
        let blob = write_blob(&tmp, name, DType::F32);
        let o = m2(&[
            "caption",
            "--model",
            &blob,
            "--features",
            &features(name),
            "-q",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let exp = expected(name);
        let want: Vec<String> = exp["bs_captions_eval"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn json_output_uses_given_ids_and_greedy_works() {
    let tmp = Tmp::new("json");
    let blob = write_blob(&tmp, "tiny-s0", DType::F32);
    let ids = tmp.path("ids.json");
    std::fs::write(&ids, "[11, 22, 33, 44, 55, 66]").unwrap();
    let o = m2(&[
        "caption",
        "-m",
        &blob,
        "-f",
        &features("tiny-s0"),
        "--json",
        "--ids",
        &ids,
        "-q",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let exp = expected("tiny-s0");
    for (k, item) in v.as_array().unwrap().iter().enumerate() {
        assert_eq!(item["image_id"], (k as u64 + 1) * 11);
        assert_eq!(item["caption"], exp["bs_captions_eval"][k]);
    }
    let o = m2(&[
        "caption",
        "-m",
        &blob,
        "-f",
        &features("tiny-s0"),
        "--greedy",
        "--raw",
        "-q",
    ]);
    assert!(o.status.success());
    let got: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<String> = exp["greedy_captions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn score_writes_reference_logprobs() {
    let tmp = Tmp::new("score");
    for name in ["tiny-s2-masked", "small-s3"] {
        let blob = write_blob(&tmp, name, DType::F32);
        let out = tmp.path(&format!("{name}-logp.npy"));
        let tokens = fixture_dir(name)
            .join("tf_tokens.npy")
            .to_string_lossy()
            .into_owned();
        let feats = features(name);
        let score = |tokens: &str, out: &str| {
            m2(&[
                "score", "-m", &blob, "-f", &feats, "-t", tokens, "-o", out, "-q",
            ])
        };
        let o = score(&tokens, &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = npy::<f32>(out.as_ref());
        let want = npy_f32(name, "tf_logprobs.npy");
        assert_eq!(got.shape, want.shape);
        assert!(max_abs_diff(&got.data, &want.data) < 1e-4);
        // the same ids as uint64 give the same log-probs
        let ids = npy::<i64>(tokens.as_ref());
        let (u64_ids, out64) = (
            tmp.path(&format!("{name}-u64.npy")),
            tmp.path("u64-logp.npy"),
        );
        let bytes: Vec<u8> = ids
            .data
            .iter()
            .flat_map(|&v| (v as u64).to_le_bytes())
            .collect();
        write_npy(&u64_ids, "<u8", &ids.shape, &bytes);
        let o = score(&u64_ids, &out64);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(npy::<f32>(out64.as_ref()).data, got.data);
        // never over an input
        let o = score(&tokens, &tokens);
        assert!(stderr_line(&o).contains("refusing to overwrite"));
    }
}

#[test]
fn info_prints_config_and_plan() {
    let tmp = Tmp::new("info");
    let blob = write_blob(&tmp, "small-s3", DType::I8);
    let o = m2(&["info", "-m", &blob]);
    assert!(o.status.success());
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(s.contains("vocab 10201"), "{s}");
    assert!(s.contains("RAM workspace"), "{s}");
    assert!(s.contains("int8"), "{s}");
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let tmp = Tmp::new("bad");
    let blob = write_blob(&tmp, "tiny-s0", DType::F32);
    let feats = features("tiny-s0");

    // missing files
    stderr_line(&m2(&["caption", "-m", &tmp.path("nope.m2"), "-f", &feats]));
    stderr_line(&m2(&["caption", "-m", &blob, "-f", &tmp.path("nope.npy")]));
    // a blob that fails validation
    let bad = tmp.path("bad.m2");
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&bad, &bytes).unwrap();
    stderr_line(&m2(&["caption", "-m", &bad, "-f", &feats]));
    std::fs::write(&bad, b"not a blob").unwrap();
    stderr_line(&m2(&["info", "-m", &bad]));
    // wrong d_in
    let p = tmp.path("dim.npy");
    write_npy(&p, "<f4", &[2, 3, 5], &f32_bytes(&[0.5; 30]));
    assert!(stderr_line(&m2(&["caption", "-m", &blob, "-f", &p])).contains("d_in"));
    // NaN: names the image
    let p = tmp.path("nan.npy");
    let mut v = vec![0.25f32; 2 * 3 * 64];
    v[3 * 64 + 7] = f32::NAN;
    write_npy(&p, "<f4", &[2, 3, 64], &f32_bytes(&v));
    assert!(stderr_line(&m2(&["caption", "-m", &blob, "-f", &p])).contains("image 1"));
    // integer features
    let p = tmp.path("int.npy");
    write_npy(&p, "<i4", &[3, 64], &[0u8; 3 * 64 * 4]);
    assert!(stderr_line(&m2(&["caption", "-m", &blob, "-f", &p])).contains("float"));
    // empty
    let p = tmp.path("empty.npy");
    write_npy(&p, "<f4", &[0, 64], &[]);
    assert!(stderr_line(&m2(&["caption", "-m", &blob, "-f", &p])).contains("empty"));
    // not npy
    let p = tmp.path("junk.npy");
    std::fs::write(&p, b"hello").unwrap();
    stderr_line(&m2(&["caption", "-m", &blob, "-f", &p]));
    // token ids out of range, and float tokens
    let p = tmp.path("tok.npy");
    let toks: Vec<u8> = [2i64, 5, 999]
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect();
    write_npy(&p, "<i8", &[1, 3], &toks);
    let one = tmp.path("one.npy");
    write_npy(&one, "<f4", &[3, 64], &f32_bytes(&[0.5; 192]));
    let out = tmp.path("o.npy");
    assert!(stderr_line(&m2(&[
        "score", "-m", &blob, "-f", &one, "-t", &p, "-o", &out
    ]))
    .contains("999"));
    write_npy(&p, "<f4", &[1, 3], &f32_bytes(&[2.0, 5.0, 3.0]));
    assert!(stderr_line(&m2(&[
        "score", "-m", &blob, "-f", &one, "-t", &p, "-o", &out
    ]))
    .contains("integer"));
    assert!(!Path::new(&out).exists());
    // bad arguments
    stderr_line(&m2(&["caption", "-m", &blob, "-f", &feats, "--beam", "0"]));
    stderr_line(&m2(&[
        "caption",
        "-m",
        &blob,
        "-f",
        &feats,
        "--max-len",
        "500",
    ]));
    let o = m2_command()
        .args(["caption", "-m", &blob, "-f", &feats])
        .env("M2_KERNEL", "sparc")
        .output()
        .unwrap();
    stderr_line(&o);
}

#[test]
fn extra_regions_are_truncated_with_a_warning() {
    let tmp = Tmp::new("trunc");
    let blob = write_blob(&tmp, "tiny-s0", DType::F32);
    // 12 regions: the first 10 are image 0 of the fixture, 2 more junk rows
    let f = npy_f32("tiny-s0", "features.npy");
    let mut v = f.data[..10 * 64].to_vec();
    v.extend(std::iter::repeat_n(3.0f32, 2 * 64));
    let p = tmp.path("long.npy");
    write_npy(&p, "<f4", &[12, 64], &f32_bytes(&v));
    let o = m2(&["caption", "-m", &blob, "-f", &p]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning"));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim_end(),
        expected("tiny-s0")["bs_captions_eval"][0]
    );
}

#[test]
fn no_arguments_runs_the_bundled_demo() {
    let o = m2::<&str>(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8(o.stdout).unwrap();
    assert_eq!(s.matches("  m2:           ").count(), 8, "{s}");
    assert!(s.contains("ground truth:"), "{s}");
    assert!(s.contains("memory plan"), "{s}");
}

#[test]
fn image_option_runs_the_region_extractor_end_to_end() {
    // PNG → m2::regions → f32 engine must give the PyTorch model's caption of every bundled scene
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let tmp = Tmp::new("img");
    let vocab =
        m2::pack::read_vocab_json(&std::fs::read(root.join("vocab.json")).unwrap()).unwrap();
    let opts = m2::pack::PackOptions {
        heads: 4,
        max_regions: 4,
        ..Default::default()
    };
    let bytes = m2::pack::pack(
        &std::fs::read(root.join("checkpoint.safetensors")).unwrap(),
        &vocab,
        &opts,
    )
    .unwrap();
    let blob = tmp.path("demo-f32.m2");
    std::fs::write(&blob, bytes).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("scenes/index.json")).unwrap()).unwrap();
    let scenes = index.as_array().unwrap();
    let pngs: Vec<String> = scenes
        .iter()
        .map(|e| {
            root.join("scenes")
                .join(e["png"].as_str().unwrap())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut args = vec!["caption", "-m", &blob, "--image"];
    args.extend(pngs.iter().map(String::as_str));
    let o = m2(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<String> = scenes
        .iter()
        .map(|e| e["torch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    // a model with another d_in refuses --image with one line; a missing PNG is one line too
    let other = write_blob(&tmp, "tiny-s0", DType::F32);
    assert!(stderr_line(&m2(&["caption", "-m", &other, "--image", &pngs[0]])).contains("d_in"));
    stderr_line(&m2(&[
        "caption",
        "-m",
        &blob,
        "--image",
        &tmp.path("missing.png"),
    ]));
}

/// `m2 bench --model`: one JSON object with the machine and a row per kernel path × thread
/// count carrying the fields, each figure consistent with the others.
#[test]
fn bench_reports_every_configuration_as_json() {
    let blob = asset("demo-int8.m2").to_string_lossy().into_owned();
    let o = m2(&[
        "bench",
        "--model",
        &blob,
        "-n",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1,2",
        "--kernel",
        "all",
        "--json",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths = v["machine"]["kernel_paths"].as_array().unwrap();
    assert!(paths.iter().any(|p| p == "scalar"));
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * paths.len());
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
        assert_eq!(r["dtype"], "int8a16");
        assert!(
            f("ms_min") <= f("ms_per_caption") && f("ms_per_caption") <= f("ms_max"),
            "{r}"
        );
        // (the encoder is timed on its own, apart from the captions: comparing the two would
        // be a timing test, flaky on a loaded machine)
        assert!(f("encoder_ms") > 0.0, "{r}");
        assert!(f("steps") >= 1.0 && f("steps") <= 20.0, "{r}");
        assert!(f("ms_per_step") > 0.0 && f("step_linear_ms") > 0.0, "{r}");
        assert!(f("gmac_per_s") > 0.0 && f("peak_rss_bytes") > 0.0, "{r}");
        assert!([1.0, 2.0].contains(&f("threads")), "{r}");
    }
}

#[test]
fn bench_usage_errors_are_one_line() {
    for (args, needle) in [
        (&["bench", "--dtype", "f64"][..], "f64"),
        (&["bench", "--kernel", "nonesuch"][..], "nonesuch"),
        (&["bench", "--threads", "0"][..], "thread"),
        (&["bench", "-n", "0"][..], "-n"),
        (&["bench", "--beam", "9"][..], "--beam"),
        (&["bench", "--model", "/nonexistent.m2"][..], "nonexistent"),
    ] {
        let o = m2(args);
        assert!(
            stderr_line(&o).contains(needle),
            "{args:?}: {}",
            stderr_line(&o)
        );
    }
}
