//! int8 fidelity against f32, one row per quantisation variant (README "int8 that keeps f32's
//! captions"): identical best captions, how many of the differing ones are near-ties, the
//! largest caption-word log-prob error, blob bytes. Writes each variant's captions as JSON for
//! BLEU-4 / CIDEr (`tools/python/demo/score_variants.py` adds them and prints the table).
//!
//! ```text
//! cargo run --release --example int8_fidelity -- [--checkpoint C.safetensors --vocab V.json \
//!     --features TEST.npy --calibrate CAL.npy --heads 4 --regions 4] [--out-dir DIR] [VARIANT...]
//! ```
//! Defaults: the bundled demo (`assets/demo/`), every variant, `/tmp/m2-int8-fidelity`.
//!
//! Variants (the reference is always the f32 engine on the same checkpoint):
//! * `f16`, `int8`, `int8-gptq`, `int8a16`, `int8a16-gptq`: blobs as `m2-pack` writes them
//!   (`-gptq`: `--calibrate` on the calibration images);
//! * `int8-readout-f32`: `--readout-dtype f32`;
//! * `keep-f32-each`: one Linear at a time kept f32 in an int8 blob (the best one is printed);
//! * `wN` / `gN` (weights only, f32 activations and the f32 engine: the checkpoint's weights
//!   rounded symmetric per row to N bits, or to int8 in groups of N along the input);
//! * `snap`: the weights put on their own per-row int8 grid (what quantisation-aware training
//!   exports), then int8 and int8a16 against the f32 engine *of the snapped checkpoint*.
//!
//! Near-tie: a differing caption where the f32 beam search's best-vs-second score margin is below
//! the variant's teacher-forced score error on f32's best caption (the rounding alone could have
//! swapped them).

use m2::blob::{AlignedBuf, Class, DType, TensorKind};
use m2::input::Features;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{infer_config, pack, read_vocab_json, state_dict_key, PackOptions};
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::PathBuf;

type Error = Box<dyn std::error::Error>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One engine run over every test image: best tokens, and f32-side margins.
struct Captions {
    tokens: Vec<Vec<u32>>,
    /// best − second beam score (∞ with one beam)
    margins: Vec<f32>,
}

fn caption_all(bytes: &[u8], feats: &Features) -> Result<Captions, Error> {
    let buf = AlignedBuf::from_bytes(bytes);
    let blob = Blob::parse(&buf)?;
    let model = M2::new(&blob, Kernels::detect());
    let opts = SearchOptions {
        beam: 5,
        max_len: 20.min(blob.config().max_len()),
    };
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan)?;
    let mut out = Captions {
        tokens: vec![],
        margins: vec![],
    };
    for i in 0..feats.images {
        let res = beam_search(&model, feats.image(i), &mut ws, &opts, |_| {})?;
        let best = res.best().ok_or("no beam")?;
        out.tokens.push(best.tokens.iter().copied().collect());
        out.margins.push(
            res.beams
                .get(1)
                .map_or(f32::INFINITY, |s| best.score - s.score),
        );
    }
    Ok(out)
}

/// Teacher-forced log-probs of `caps`' words (up to and including `<eos>`) under `bytes`.
fn word_logprobs(
    bytes: &[u8],
    feats: &Features,
    caps: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>, Error> {
    let buf = AlignedBuf::from_bytes(bytes);
    let blob = Blob::parse(&buf)?;
    let cfg = *blob.config();
    let model = M2::new(&blob, Kernels::detect());
    let t_len = 21usize.min(cfg.max_len());
    let v = cfg.vocab as usize;
    let plan = model.plan(1, t_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan)?;
    let mut lp = vec![0f32; t_len * v];
    let mut all = Vec::with_capacity(caps.len());
    for (i, c) in caps.iter().enumerate() {
        let mut toks = vec![cfg.bos];
        toks.extend(c.iter().copied());
        toks.truncate(t_len);
        model.score(feats.image(i), &toks, &mut ws, &mut lp)?;
        let rows = toks
            .iter()
            .skip(1)
            .position(|&t| t == cfg.eos)
            .map_or(t_len - 1, |p| p + 1)
            .min(t_len - 1);
        all.push(
            (0..rows)
                .map(|t| lp[t * v + toks[t + 1] as usize])
                .collect(),
        );
    }
    Ok(all)
}

/// The f32 side of a comparison: its blob, captions and caption-word log-probs.
struct Reference {
    blob: Vec<u8>,
    caps: Captions,
    lps: Vec<Vec<f32>>,
}

impl Reference {
    fn new(blob: Vec<u8>, feats: &Features) -> Result<Reference, Error> {
        let caps = caption_all(&blob, feats)?;
        let lps = word_logprobs(&blob, feats, &caps.tokens)?;
        Ok(Reference { blob, caps, lps })
    }
}

/// One variant's figures against `r`.
struct Row {
    same: usize,
    near_ties: usize,
    max_word_err: f32,
    bytes: usize,
    tokens: Vec<Vec<u32>>,
}

fn compare(r: &Reference, bytes: &[u8], feats: &Features) -> Result<Row, Error> {
    let caps = caption_all(bytes, feats)?;
    let lps = word_logprobs(bytes, feats, &r.caps.tokens)?;
    let (mut same, mut near, mut worst) = (0, 0, 0f32);
    for (i, (a, b)) in lps.iter().zip(&r.lps).enumerate() {
        let score_err: f32 = a.iter().zip(b).map(|(x, y)| x - y).sum::<f32>().abs();
        worst = a
            .iter()
            .zip(b)
            .fold(worst, |m, (x, y)| m.max((x - y).abs()));
        if caps.tokens[i] == r.caps.tokens[i] {
            same += 1;
        } else if r.caps.margins[i] < score_err {
            near += 1;
        }
    }
    Ok(Row {
        same,
        near_ties: near,
        max_word_err: worst,
        bytes: bytes.len(),
        tokens: caps.tokens,
    })
}

/// The checkpoint with every int8-stored Linear weight (not the `word_emb` table) passed
/// through `f(values, cols)`, re-serialised.
fn transform(
    st_bytes: &[u8],
    vocab: &[Vec<u8>],
    opts: &PackOptions,
    f: &dyn Fn(&mut [f32], usize),
) -> Result<Vec<u8>, Error> {
    let st = SafeTensors::deserialize(st_bytes)?;
    let cfg = infer_config(&st, vocab, opts)?;
    let linears: HashMap<String, usize> = TensorKind::required(&cfg)
        .filter(|(k, _)| k.class() == Class::Weight && *k != TensorKind::WordEmb)
        .map(|(k, l)| (state_dict_key(k, l), k.shape(&cfg).1 as usize))
        .collect();
    let mut owned = Vec::new();
    for (name, t) in st.tensors() {
        let mut bytes = t.data().to_vec();
        if let (Some(&cols), safetensors::Dtype::F32) = (linears.get(&name), t.dtype()) {
            let mut v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            f(&mut v, cols);
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        owned.push((name, t.dtype(), t.shape().to_vec(), bytes));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, &None)?)
}

/// Symmetric round-to-nearest (half away from zero) with `qmax` levels each side, one scale per
/// group of `group` values along each row of `cols` (group = cols: per row, as `m2-pack`).
fn fake_quant(v: &mut [f32], cols: usize, group: usize, qmax: f32) {
    for row in v.chunks_mut(cols) {
        for g in row.chunks_mut(group.max(1)) {
            let s = g.iter().fold(0f32, |m, x| m.max(x.abs())) / qmax;
            if s > 0.0 {
                g.iter_mut()
                    .for_each(|x| *x = (*x / s).round().clamp(-qmax, qmax) * s);
            }
        }
    }
}

struct Lab {
    st: Vec<u8>,
    vocab: Vec<Vec<u8>>,
    base: PackOptions,
    feats: Features,
    cal: Features,
    out_dir: PathBuf,
}

impl Lab {
    fn pack(
        &self,
        st: &[u8],
        dtype: DType,
        gptq: bool,
        f: impl Fn(&mut PackOptions),
    ) -> Result<Vec<u8>, Error> {
        let mut o = PackOptions {
            dtype,
            ..self.base.clone()
        };
        f(&mut o);
        Ok(if gptq {
            let cal = Calibration {
                features: &self.cal.data,
                images: self.cal.images,
                regions: self.cal.regions,
                damping: Calibration::DAMPING,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            pack_calibrated(st, &self.vocab, &o, &cal, &mut |_, _, _| {})?
        } else {
            pack(st, &self.vocab, &o)?
        })
    }

    fn row(&self, name: &str, what: &str, r: &Reference, bytes: &[u8]) -> Result<Row, Error> {
        let row = compare(r, bytes, &self.feats)?;
        let n = self.feats.images;
        println!(
            "| {name} | {what} | {}/{n} ({:.1}%) | {} | {} | {:.2e} | {} |",
            row.same,
            100.0 * row.same as f64 / n as f64,
            n - row.same,
            row.near_ties,
            row.max_word_err,
            row.bytes
        );
        let buf = AlignedBuf::from_bytes(bytes);
        let blob = Blob::parse(&buf)?;
        let captions = row
            .tokens
            .iter()
            .map(|t| m2::text::caption_string(t, |id| blob.token(id), false))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{e:?}"))?;
        let json = serde_json::json!({ "variant": name, "what": what, "same": row.same,
            "near_ties": row.near_ties, "max_word_err": row.max_word_err, "bytes": row.bytes,
            "tokens": row.tokens, "captions": captions });
        std::fs::write(self.out_dir.join(format!("{name}.json")), json.to_string())?;
        Ok(row)
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo = |f: &str| format!("{}/assets/demo/{f}", env!("CARGO_MANIFEST_DIR"));
    let path = |name: &str, default: &str| arg(&args, name).unwrap_or_else(|| demo(default));
    let st = std::fs::read(path("--checkpoint", "checkpoint.safetensors"))?;
    let vocab = read_vocab_json(&std::fs::read(path("--vocab", "vocab.json"))?)?;
    let base = PackOptions {
        heads: arg(&args, "--heads").map_or(Ok(4), |h| h.parse())?,
        max_regions: arg(&args, "--regions").map_or(Ok(4), |h| h.parse())?,
        ..PackOptions::default()
    };
    let cfg = infer_config(&SafeTensors::deserialize(&st)?, &vocab, &base)?;
    let d_in = cfg.d_in as usize;
    let feats = m2::input::read_features(path("--features", "test_features.npy").as_ref(), d_in)?;
    let cal = m2::input::read_features(path("--calibrate", "calib_features.npy").as_ref(), d_in)?;
    let out_dir = PathBuf::from(arg(&args, "--out-dir").unwrap_or("/tmp/m2-int8-fidelity".into()));
    std::fs::create_dir_all(&out_dir)?;
    let lab = Lab {
        st,
        vocab,
        base,
        feats,
        cal,
        out_dir,
    };
    let all = [
        "f16",
        "int8",
        "int8-gptq",
        "int8-readout-f32",
        "keep-f32-each",
        "w8",
        "g32",
        "g16",
        "g8",
        "w9",
        "w10",
        "w12",
        "int8a16",
        "int8a16-gptq",
        "snap",
    ];
    // positional arguments: the ones that are neither a `--flag` nor a flag's value
    let chosen: Vec<&str> = (0..args.len())
        .filter(|&i| !args[i].starts_with("--") && (i == 0 || !args[i - 1].starts_with("--")))
        .map(|i| args[i].as_str())
        .collect();
    let variants = if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen
    };

    println!("| variant | what | identical captions | differing | of them near-ties | max caption-word log-prob error | blob bytes |");
    println!("|---|---|---|---|---|---|---|");
    let r = Reference::new(lab.pack(&lab.st, DType::F32, false, |_| {})?, &lab.feats)?;
    lab.row("f32", "the reference", &r, &r.blob)?;
    for v in variants {
        let st = &lab.st;
        match v {
            "f16" => lab.row(
                v,
                "f16 weights",
                &r,
                &lab.pack(st, DType::F16, false, |_| {})?,
            )?,
            "int8" => lab.row(
                v,
                "int8, round-to-nearest",
                &r,
                &lab.pack(st, DType::I8, false, |_| {})?,
            )?,
            "int8-gptq" => lab.row(
                v,
                "int8, GPTQ `--calibrate`",
                &r,
                &lab.pack(st, DType::I8, true, |_| {})?,
            )?,
            "int8-readout-f32" => lab.row(
                v,
                "int8, `--readout-dtype f32`",
                &r,
                &lab.pack(st, DType::I8, false, |o| o.readout_dtype = Some(DType::F32))?,
            )?,
            "int8a16" => lab.row(
                v,
                "int8 weights, int16 activations, round-to-nearest",
                &r,
                &lab.pack(st, DType::I8A16, false, |_| {})?,
            )?,
            "int8a16-gptq" => lab.row(
                v,
                "int8 weights, int16 activations, GPTQ",
                &r,
                &lab.pack(st, DType::I8A16, true, |_| {})?,
            )?,
            "keep-f32-each" => {
                let mut best: Option<(usize, String)> = None;
                let weights: Vec<_> = TensorKind::required(&cfg)
                    .filter(|(k, _)| k.class() == Class::Weight)
                    .collect();
                for (k, l) in &weights {
                    let b = lab.pack(st, DType::I8, false, |o| {
                        o.tensor_dtypes = vec![(*k, *l, DType::F32)]
                    })?;
                    let row = compare(&r, &b, &lab.feats)?;
                    if best.as_ref().is_none_or(|(s, _)| row.same > *s) {
                        best = Some((row.same, state_dict_key(*k, *l)));
                    }
                }
                let (same, key) = best.ok_or("no weights")?;
                println!(
                    "| keep-f32-each | one Linear kept f32 in int8, each of {} tried | best: {same}/{} ({key}) | | | | |",
                    weights.len(),
                    lab.feats.images
                );
                continue;
            }
            "snap" => {
                let snapped = transform(st, &lab.vocab, &lab.base, &|w, cols| {
                    fake_quant(w, cols, cols, 127.0)
                })?;
                let rs =
                    Reference::new(lab.pack(&snapped, DType::F32, false, |_| {})?, &lab.feats)?;
                lab.row(
                    "snap-int8",
                    "weights on their int8 grid; int8 vs f32 of the same weights",
                    &rs,
                    &lab.pack(&snapped, DType::I8, false, |_| {})?,
                )?;
                lab.row(
                    "snap-int8a16",
                    "weights on their int8 grid; int8a16 vs f32 of the same weights",
                    &rs,
                    &lab.pack(&snapped, DType::I8A16, false, |_| {})?,
                )?;
                continue;
            }
            w if w.starts_with('w') || w.starts_with('g') => {
                let n: usize = w[1..].parse()?;
                type Rounding = Box<dyn Fn(&mut [f32], usize)>;
                let (what, f): (String, Rounding) = if w.starts_with('w') {
                    let q = ((1u32 << (n - 1)) - 1) as f32;
                    (
                        format!("weights only: {n}-bit per row, f32 activations"),
                        Box::new(move |v, c| fake_quant(v, c, c, q)),
                    )
                } else {
                    (
                        format!("weights only: int8 per group of {n}, f32 activations"),
                        Box::new(move |v, c| fake_quant(v, c, n, 127.0)),
                    )
                };
                let t = transform(st, &lab.vocab, &lab.base, &*f)?;
                lab.row(w, &what, &r, &lab.pack(&t, DType::F32, false, |_| {})?)?
            }
            other => return Err(format!("unknown variant {other}").into()),
        };
    }
    Ok(())
}
