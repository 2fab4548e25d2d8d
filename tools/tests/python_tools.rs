//! The Python converters: the vocabulary converter's self-test (fabricated torchtext-style
//! pickles, no torchtext) and a syntax check of the checkpoint converter. Skipped, with a note,
//! when `python3` is not installed.

use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success());
    if ok.unwrap_or(false) {
        Some("python3")
    } else {
        eprintln!("python3 not found: skipping the Python converter checks");
        None
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

#[test]
fn vocab_pkl_to_json_self_test() {
    let Some(py) = python() else { return };
    let o = Command::new(py)
        .arg(script("vocab_pkl_to_json.py"))
        .arg("--self-test")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("self-test ok"), "{out}");
}

#[test]
fn pth_to_safetensors_compiles() {
    let Some(py) = python() else { return };
    let code = "import ast, sys; ast.parse(open(sys.argv[1]).read())";
    let o = Command::new(py)
        .args(["-c", code])
        .arg(script("pth_to_safetensors.py"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
