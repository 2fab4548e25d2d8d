//! `m2 caption` on dataset files (issue 16): every feature format captions the same images to
//! the same captions as the `.npy` path; ids select and order; text/json/jsonl output; a run
//! killed mid-way resumes without losing or repeating an image; malformed records are one
//! error line naming the file and the image.
#![cfg(feature = "cli")]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;

/// The first `n` demo test scenes: `[n, 4, 72]` f32, and each image's rows without the
/// all-zero padding rows (what a bottom-up-attention file holds).
fn scenes(n: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let a = npy_f32_path(&asset("test_features.npy"));
    let (r, d) = (a.shape[1], a.shape[2]);
    let all = a.data[..n * r * d].to_vec();
    let per = (0..n)
        .map(|k| {
            let rows: Vec<&[f32]> = all[k * r * d..(k + 1) * r * d]
                .chunks(d)
                .filter(|row| row.iter().any(|&v| v != 0.0))
                .collect();
            rows.concat()
        })
        .collect();
    (all, per)
}

fn npy_f32_path(p: &std::path::Path) -> m2::input::Array<f32> {
    m2::input::read_npy(p).unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const D: usize = 72;
/// Image ids of the id-carrying formats (COCO-like).
fn coco_id(k: usize) -> u64 {
    391_000 + 7 * k as u64
}

fn demo() -> String {
    asset("demo-int8.m2").to_string_lossy().into_owned()
}

/// `m2 caption --format jsonl` → image_id → (caption, tokens).
fn jsonl(args: &[&str]) -> BTreeMap<String, (String, Value)> {
    let model = demo_path();
    let mut a = vec!["caption", "-m", &model, "--format", "jsonl", "-q"];
    a.extend_from_slice(args);
    let o = m2(&a);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    parse_jsonl(&String::from_utf8(o.stdout).unwrap())
}

fn demo_path() -> String {
    demo()
}

fn parse_jsonl(s: &str) -> BTreeMap<String, (String, Value)> {
    let mut m = BTreeMap::new();
    for line in s.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let prev = m.insert(
            v["image_id"].to_string(),
            (
                v["caption"].as_str().unwrap().to_string(),
                v["tokens"].clone(),
            ),
        );
        assert!(prev.is_none(), "image {} twice", v["image_id"]);
    }
    m
}

/// bottom-up-attention.pytorch's `np.savez_compressed(x=, bbox=, num_bbox=, image_w=, image_h=)`.
fn write_npz(path: &str, x: &[f32]) {
    let n = x.len() / D;
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let members: [(&str, Vec<u8>); 5] = [
        ("x.npy", npy_bytes("<f4", &[n, D], &f32_bytes(x))),
        (
            "bbox.npy",
            npy_bytes("<f4", &[n, 4], &f32_bytes(&vec![1.0; n * 4])),
        ),
        (
            "num_bbox.npy",
            npy_bytes("<i8", &[0usize; 0], &(n as i64).to_le_bytes()),
        ),
        (
            "image_w.npy",
            npy_bytes("<i8", &[0usize; 0], &640i64.to_le_bytes()),
        ),
        (
            "image_h.npy",
            npy_bytes("<i8", &[0usize; 0], &480i64.to_le_bytes()),
        ),
    ];
    for (name, bytes) in members {
        z.start_file(name, opts).unwrap();
        z.write_all(&bytes).unwrap();
    }
    z.finish().unwrap();
}

/// The original bottom-up-attention `.tsv` line of one image.
fn tsv_line(id: u64, x: &[f32]) -> String {
    let n = x.len() / D;
    let b64 = |v: &[f32]| base64::engine::general_purpose::STANDARD.encode(f32_bytes(v));
    format!(
        "{id}\t640\t480\t{n}\t{}\t{}\n",
        b64(&vec![0.5; n * 4]),
        b64(x)
    )
}

/// Captions keyed by image position (the npy path's ids are 0..K).
fn by_position(
    m: &BTreeMap<String, (String, Value)>,
    id: impl Fn(usize) -> String,
    n: usize,
) -> Vec<(String, Value)> {
    (0..n).map(|k| m[&id(k)].clone()).collect()
}

#[test]
fn every_format_gives_the_npy_captions() {
    let n = 24;
    let tmp = Tmp::new("ds-formats");
    let (all, per) = scenes(n);
    let npy = tmp.path("f.npy");
    write_npy(&npy, "<f4", &[n, 4, D], &f32_bytes(&all));
    let want = by_position(&jsonl(&["-f", &npy]), |k| k.to_string(), n);
    assert!(want.iter().any(|(c, _)| !c.is_empty()));

    // a directory of per-image .npz files (ids from the file names), and one .npz
    let dir = tmp.path("npz");
    std::fs::create_dir(&dir).unwrap();
    for (k, x) in per.iter().enumerate() {
        write_npz(&format!("{dir}/{}.npz", coco_id(k)), x);
    }
    let got = jsonl(&["-f", &dir]);
    assert_eq!(
        by_position(&got, |k| coco_id(k).to_string(), n),
        want,
        "npz directory"
    );
    let one = format!("{dir}/{}.npz", coco_id(3));
    assert_eq!(
        jsonl(&["-f", &one])[&coco_id(3).to_string()],
        want[3],
        "one npz"
    );

    // the bottom-up-attention tsv (lines in another order than the ids)
    let tsv = tmp.path("f.tsv");
    let mut text = String::new();
    for k in (0..n).rev() {
        text.push_str(&tsv_line(coco_id(k), &per[k]));
    }
    std::fs::write(&tsv, text).unwrap();
    assert_eq!(
        by_position(&jsonl(&["-f", &tsv]), |k| coco_id(k).to_string(), n),
        want,
        "tsv"
    );

    #[cfg(feature = "hdf5")]
    {
        let h5 = tmp.path("coco_detections.hdf5");
        let f = hdf5::File::create(&h5).unwrap();
        for (k, x) in per.iter().enumerate() {
            f.new_dataset::<f32>()
                .shape((x.len() / D, D))
                .create(format!("{}_features", coco_id(k)).as_str())
                .unwrap()
                .write_raw(x)
                .unwrap();
        }
        drop(f);
        assert_eq!(
            by_position(&jsonl(&["-f", &h5]), |k| coco_id(k).to_string(), n),
            want,
            "hdf5"
        );
    }

    // f16 .npy: the same as the f32 file of the f16-rounded values
    let half: Vec<f32> = all
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    let h16: Vec<u8> = all
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let (p16, p32) = (tmp.path("h.npy"), tmp.path("h32.npy"));
    write_npy(&p16, "<f2", &[n, 4, D], &h16);
    write_npy(&p32, "<f4", &[n, 4, D], &f32_bytes(&half));
    assert_eq!(jsonl(&["-f", &p16]), jsonl(&["-f", &p32]), "f16 npy");
}

#[test]
fn image_ids_select_and_order_the_images() {
    let n = 10;
    let tmp = Tmp::new("ds-ids");
    let (_, per) = scenes(n);
    let tsv = tmp.path("f.tsv");
    let text: String = (0..n).map(|k| tsv_line(coco_id(k), &per[k])).collect();
    std::fs::write(&tsv, text).unwrap();
    let ids = |o: &std::process::Output| -> Vec<u64> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["image_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let run = |file: &str, extra: &[&str]| {
        let model = demo_path();
        let mut a = vec![
            "caption",
            "-m",
            &model,
            "-f",
            &tsv,
            "--format",
            "jsonl",
            "-q",
            "--image-ids",
            file,
        ];
        a.extend_from_slice(extra);
        let o = m2(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ids(&o)
    };
    let list = tmp.path("ids.json");
    std::fs::write(
        &list,
        format!("[{}, {}, \"{}\"]", coco_id(7), coco_id(2), coco_id(5)),
    )
    .unwrap();
    assert_eq!(run(&list, &[]), vec![coco_id(7), coco_id(2), coco_id(5)]);
    let coco = tmp.path("captions_val2014.json");
    std::fs::write(&coco, format!(r#"{{"images": [{{"id": {}, "file_name": "a.jpg"}}, {{"id": {}}}], "annotations": []}}"#, coco_id(4), coco_id(1))).unwrap();
    assert_eq!(run(&coco, &[]), vec![coco_id(4), coco_id(1)]);
    let karpathy = tmp.path("dataset_coco.json");
    std::fs::write(&karpathy, format!(
        r#"{{"images": [{{"cocoid": {}, "split": "test"}}, {{"cocoid": {}, "split": "val"}}, {{"cocoid": {}, "split": "test"}}], "dataset": "coco"}}"#,
        coco_id(9), coco_id(8), coco_id(0))).unwrap();
    assert_eq!(run(&karpathy, &[]), vec![coco_id(9), coco_id(0)]);
    assert_eq!(run(&karpathy, &["--split", "val"]), vec![coco_id(8)]);
    // an id the file does not hold: one error line naming it
    std::fs::write(&list, "[12345678]").unwrap();
    let o = m2(&[
        "caption",
        "-m",
        &demo_path(),
        "-f",
        &tsv,
        "--image-ids",
        &list,
    ]);
    assert!(stderr_line(&o).contains("12345678"));
}

#[test]
fn outputs_text_json_and_jsonl_agree_and_threads_change_nothing() {
    let n = 100;
    let tmp = Tmp::new("ds-outputs");
    let npy = tmp.path("f.npy");
    write_npy(&npy, "<f4", &[n, 4, D], &f32_bytes(&scenes(n).0));
    let one = jsonl(&["-f", &npy, "--threads", "1"]);
    assert_eq!(one.len(), n);
    assert_eq!(jsonl(&["-f", &npy, "--threads", "2"]), one, "threads");
    let o = m2(&["caption", "-m", &demo_path(), "-f", &npy, "-q"]);
    let text: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let o = m2(&[
        "caption",
        "-m",
        &demo_path(),
        "-f",
        &npy,
        "-q",
        "--format",
        "json",
    ]);
    let json: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    for k in 0..n {
        let (c, tokens) = &one[&k.to_string()];
        assert_eq!(&text[k], c);
        assert_eq!(json[k]["image_id"], k);
        assert_eq!(json[k]["caption"], c.as_str());
        assert!(tokens.as_array().unwrap().len() <= 21);
    }
    // --json is --format json
    let o2 = m2(&["caption", "-m", &demo_path(), "-f", &npy, "-q", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&o2.stdout).unwrap(),
        json
    );
}

/// 600 images (the 300 test scenes, twice) so that a run takes long enough to kill.
fn big_npy(tmp: &Tmp) -> (String, usize) {
    let (all, _) = scenes(300);
    let twice: Vec<f32> = (0..2).flat_map(|_| all.iter().copied()).collect();
    let p = tmp.path("big.npy");
    write_npy(&p, "<f4", &[600, 4, D], &f32_bytes(&twice));
    (p, 600)
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_an_image() {
    let tmp = Tmp::new("ds-resume");
    let (npy, n) = big_npy(&tmp);
    let full = jsonl(&["-f", &npy]);
    let out = tmp.path("out.jsonl");
    let args = [
        "caption",
        "-m",
        &demo(),
        "-f",
        &npy,
        "-q",
        "--threads",
        "1",
        "--format",
        "jsonl",
        "-o",
        &out,
    ];
    let mut child = m2_command().args(args).spawn().unwrap();
    // kill it (SIGKILL: no chance to clean up) once some results are on disk
    let t = std::time::Instant::now();
    while std::fs::read(&out).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) < 10 {
        assert!(t.elapsed().as_secs() < 300, "no progress");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = std::fs::read(&out)
        .unwrap()
        .iter()
        .filter(|&&c| c == b'\n')
        .count();
    assert!(
        done_before >= 10 && done_before < n,
        "killed after {done_before} of {n} images"
    );
    // and a power cut mid-line: half a line at the end
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"{\"image_id\": 12, \"capt")
        .unwrap();
    let again = m2(&[&args[..], &["--resume"]].concat());
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let m = parse_jsonl(&std::fs::read_to_string(&out).unwrap()); // (each id once)
    assert_eq!(m.len(), n);
    for k in 0..n {
        assert_eq!(m[&k.to_string()].0, full[&k.to_string()].0, "image {k}");
    }
    // an existing results file is never overwritten without --resume
    let kept = std::fs::read(&out).unwrap();
    assert!(stderr_line(&m2(&args)).contains("--resume"));
    assert_eq!(std::fs::read(&out).unwrap(), kept);
}

/// Text and the JSON array resume too: text by its complete lines (input order), the array
/// from its `.partial.jsonl` journal, each with a cut-off last line.
#[test]
fn text_and_json_outputs_resume_from_a_cut_journal() {
    let tmp = Tmp::new("ds-resume2");
    let n = 100;
    let npy = tmp.path("f.npy");
    write_npy(&npy, "<f4", &[n, 4, D], &f32_bytes(&scenes(n).0));
    let full = jsonl(&["-f", &npy]);
    let want: Vec<String> = (0..n).map(|k| full[&k.to_string()].0.clone()).collect();
    // text: 40 lines done, the 41st cut
    let out = tmp.path("out.txt");
    let mut text: String = want[..40].iter().map(|c| format!("{c}\n")).collect();
    text.push_str(&want[40][..want[40].len() / 2]);
    std::fs::write(&out, text).unwrap();
    let o = m2(&[
        "caption",
        "-m",
        &demo(),
        "-f",
        &npy,
        "-q",
        "-o",
        &out,
        "--resume",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
    // json: the journal holds 25 results and half of one more
    let out = tmp.path("out.json");
    let mut journal: String = (0..25)
        .map(|k| {
            format!(
                "{{\"image_id\": {k}, \"caption\": {}}}\n",
                Value::from(want[k].as_str())
            )
        })
        .collect();
    journal.push_str("{\"image_id\": 25, \"cap");
    std::fs::write(format!("{out}.partial.jsonl"), journal).unwrap();
    let model = demo();
    let args = [
        "caption", "-m", &model, "-f", &npy, "-q", "--format", "json", "-o", &out,
    ];
    assert!(
        stderr_line(&m2(&args)).contains("--resume"),
        "a journal is never overwritten"
    );
    let o = m2(&[&args[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::metadata(format!("{out}.partial.jsonl")).is_err(),
        "journal removed when done"
    );
    let v: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v.len(), n);
    for (k, e) in v.iter().enumerate() {
        assert_eq!(e["image_id"], k);
        assert_eq!(e["caption"], want[k].as_str());
    }
}

#[test]
fn malformed_records_are_one_error_line_naming_the_file_and_the_image() {
    let tmp = Tmp::new("ds-bad");
    let (_, per) = scenes(3);
    let run = |f: &str| stderr_line(&m2(&["caption", "-m", &demo(), "-f", f, "-q"]));
    // tsv: bad base64 in image 2's features
    let tsv = tmp.path("bad.tsv");
    let mut text = tsv_line(1, &per[0]);
    text.push_str(&tsv_line(2, &per[1]).replace('A', "*"));
    std::fs::write(&tsv, text).unwrap();
    let e = run(&tsv);
    assert!(e.contains("bad.tsv") && e.contains("image 2"), "{e}");
    // tsv: features of the wrong width
    let wide: Vec<f32> = vec![0.5; 3 * 80];
    std::fs::write(&tsv, tsv_line(5, &wide)).unwrap();
    let e = run(&tsv);
    assert!(
        e.contains("image 5") && e.contains("80 values per region"),
        "{e}"
    );
    // tsv: NaN
    let mut nan = per[0].clone();
    nan[3] = f32::NAN;
    std::fs::write(&tsv, tsv_line(6, &nan)).unwrap();
    assert!(run(&tsv).contains("image 6"));
    // tsv: a num_boxes whose 4·n wraps (to 0 and to 4; 2³⁰ on 32 bits): one error, no panic
    for huge in [
        "4611686018427387904",
        "4611686018427387905",
        "18446744073709551615",
        "1073741824",
    ] {
        let line = tsv_line(8, &per[0]);
        let mut cols: Vec<&str> = line.split('\t').collect();
        cols[3] = huge;
        std::fs::write(&tsv, cols.join("\t")).unwrap();
        let e = run(&tsv);
        assert!(
            e.contains("image 8") && e.contains("bad.tsv"),
            "{huge}: {e}"
        );
    }
    // a sparse .npy declaring more images than a run takes (4.8 GB on disk, nothing written):
    // refused before the per-image bookkeeping is built (it was an abort: 32 GB of ids)
    let sparse = tmp.path("sparse.npy");
    let images = m2::dataset::MAX_IMAGES + 1;
    std::fs::write(&sparse, npy_bytes("<f4", &[images, 1, D], &[])).unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&sparse)
        .unwrap();
    let len = f.metadata().unwrap().len() + images as u64 * D as u64 * 4;
    f.set_len(len).unwrap();
    drop(f);
    let e = run(&sparse);
    assert!(
        e.contains("sparse.npy") && e.contains("16777217 images"),
        "{e}"
    );
    std::fs::remove_file(&sparse).unwrap();
    // npz without x, and one that is not a zip
    let dir = tmp.path("npz");
    std::fs::create_dir(&dir).unwrap();
    write_npz(&format!("{dir}/1.npz"), &per[0]);
    let mut z = zip::ZipWriter::new(std::fs::File::create(format!("{dir}/77.npz")).unwrap());
    z.start_file("bbox.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(&npy_bytes("<f4", &[1, 4], &[0; 16])).unwrap();
    z.finish().unwrap();
    let e = run(&dir);
    assert!(
        e.contains("77.npz") && e.contains("image 77") && e.contains("`x`"),
        "{e}"
    );
    std::fs::write(format!("{dir}/77.npz"), b"not a zip").unwrap();
    assert!(run(&dir).contains("image 77"));
    // an npy whose width is not the model's; an unknown extension
    let npy = tmp.path("w.npy");
    write_npy(&npy, "<f4", &[1, 2, 5], &[0; 40]);
    let kept = std::fs::read(&npy).unwrap();
    assert!(run(&npy).contains("d_in"));
    let other = tmp.path("f.csv");
    std::fs::write(&other, "1,2\n").unwrap();
    assert!(run(&other).contains("unknown feature format"));
    // the output may not be an input
    let o = m2(&["caption", "-m", &demo(), "-f", &npy, "-o", &npy]);
    assert!(stderr_line(&o).contains("refusing"));
    assert_eq!(std::fs::read(&npy).unwrap(), kept);
}

#[cfg(feature = "hdf5")]
#[test]
fn malformed_hdf5_datasets_name_the_file_and_the_image() {
    let tmp = Tmp::new("ds-bad-h5");
    let h5 = tmp.path("coco_detections.hdf5");
    let run = || stderr_line(&m2(&["caption", "-m", &demo(), "-f", &h5, "-q"]));
    let f = hdf5::File::create(&h5).unwrap();
    f.new_dataset::<f32>()
        .shape((2, 3, D))
        .create("41_features")
        .unwrap();
    drop(f);
    let e = run();
    assert!(e.contains("image 41") && e.contains("shape"), "{e}");
    let f = hdf5::File::create(&h5).unwrap();
    f.new_dataset::<i32>()
        .shape((2, D))
        .create("42_features")
        .unwrap();
    drop(f);
    let e = run();
    assert!(
        e.contains("image 42") && e.contains("floating point"),
        "{e}"
    );
    std::fs::write(&h5, b"not hdf5").unwrap();
    assert!(run().contains("HDF5"));
}

/// `--image-ids` files that cannot be used: one error line naming the file, nothing written.
#[test]
fn bad_image_id_files_are_one_error_line() {
    let tmp = Tmp::new("ds-bad-ids");
    let npy = asset("test_features.npy").to_string_lossy().into_owned();
    let ids = tmp.path("ids.json");
    let out = tmp.path("out.jsonl");
    for (text, needle) in [
        ("not json", "not valid JSON"),
        ("{\"x\": 1}", "expected a JSON list"),
        ("[1.5]", "expected a JSON list"),
        (
            "{\"images\": [{\"cocoid\": 1, \"split\": \"val\"}]}",
            "no image ids",
        ),
    ] {
        std::fs::write(&ids, text).unwrap();
        let o = m2(&[
            "caption",
            "-m",
            &demo(),
            "-f",
            &npy,
            "--image-ids",
            &ids,
            "-o",
            &out,
        ]);
        assert!(stderr_line(&o).contains(needle), "{text}");
        assert!(std::fs::metadata(&out).is_err(), "nothing written");
    }
}
