//! `m2 caption`: images from any feature dataset ([`m2::dataset`]) or PNG scenes, captioned
//! in input order, streamed as they are done, resumable after a crash.
//!
//! Threads: with more than one image, each worker thread captions its own images with its own
//! workspace (single-threaded kernels), and the main thread writes the results in input order;
//! with one image, the kernels split each layer across the threads instead. The captions are
//! the same bits either way (every kernel's result is independent of its thread count).

use super::{escape_controls, kernels, open_model, progress, workspace_memory, CaptionArgs};
use anyhow::{bail, Context, Result};
use m2::dataset::{self, ImageId, Raw, Source};
use m2::input::InputError;
use m2::model::M2;
use m2::search::batch::{decode_in_order, Batch};
use m2::search::SearchOptions;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Format {
    /// One caption per line.
    Text,
    /// The COCO results array `[{"image_id", "caption"}]`, written when every image is done.
    Json,
    /// One JSON object per line, streamed: image_id, caption, score, tokens, ms.
    Jsonl,
}

/// One captioned image.
struct Done {
    tokens: Vec<u32>,
    score: f32,
    ms: f64,
}

pub fn run(a: &CaptionArgs) -> Result<()> {
    let format = if a.json { Format::Json } else { a.format };
    let mapped = open_model(&a.common.model, a.common.no_mmap)?;
    let blob = mapped
        .blob()
        .map_err(|e| anyhow::anyhow!("model blob: {e}"))?;
    let cfg = *blob.config();
    if a.beam == 0 {
        bail!("--beam must be at least 1");
    }
    if a.max_len == 0 || a.max_len > cfg.max_len() {
        bail!(
            "--max-len must be between 1 and {} (this model's positional table, capped at the engine's {})",
            cfg.max_len(),
            m2::plan::MAX_STEPS
        );
    }
    let beam = if a.greedy { 1 } else { a.beam };
    if beam > m2::plan::MAX_BEAM || beam > cfg.vocab as usize {
        bail!(
            "--beam {beam} exceeds the maximum of {}",
            m2::plan::MAX_BEAM.min(cfg.vocab as usize)
        );
    }
    if a.resume && a.output.is_none() {
        bail!("--resume needs -o FILE (the results of the run to continue)");
    }
    if let Some(out) = &a.output {
        // refused now, not after the last image (json writes `out` at the end)
        if out.is_dir() {
            bail!("-o {}: is a directory", out.display());
        }
        let mut inputs: Vec<&Path> = vec![&a.common.model];
        inputs.extend(a.features.as_deref());
        inputs.extend(a.image.iter().map(PathBuf::as_path));
        inputs.extend(a.ids.as_deref());
        inputs.extend(a.image_ids.as_deref());
        for input in inputs {
            if m2::output::same_file(out, input)
                || m2::output::same_file(&journal_path(out, format), input)
            {
                bail!(
                    "refusing to overwrite the input {} with the output",
                    input.display()
                );
            }
        }
    }

    let (d_in, max_rows) = (cfg.d_in as usize, cfg.max_regions as usize);
    let select = match &a.image_ids {
        Some(p) => Some(read_image_ids(p, a.split.as_deref())?),
        None => None,
    };
    let src: Box<dyn Source> = match &a.features {
        Some(p) => dataset::open(p, d_in, select.as_deref())?,
        None => {
            let f = super::features_from_images(&a.image, &cfg, a.common.quiet)?;
            Box::new(Images {
                paths: a.image.clone(),
                f,
            })
        }
    };
    let n = src.len();
    let labels: Vec<Value> = match &a.ids {
        Some(p) => super::read_ids(p, n)?,
        None => (0..n).map(|k| id_json(&src.id(k))).collect(),
    };
    if format == Format::Json || (format == Format::Jsonl && a.resume) {
        // the json array and a resumed jsonl are keyed by image id
        let mut seen = std::collections::HashSet::new();
        if let Some(l) = labels.iter().find(|l| !seen.insert(l.to_string())) {
            bail!("image id {l} appears twice in this run's input (json results and --resume are keyed by id)");
        }
    }

    // What is already done (--resume), and where the results go.
    let mut sink = Sink::open(a.output.as_deref(), format, a.resume)?;
    let done_before = sink.done(&labels)?;
    let todo: Vec<usize> = (0..n).filter(|&k| !done_before[k]).collect();
    if a.resume && !a.common.quiet {
        eprintln!(
            "resuming: {} of {n} images already in {}, {} to go",
            n - todo.len(),
            sink.journal
                .as_ref()
                .map_or(String::new(), |j| j.path.display().to_string()),
            todo.len()
        );
    }

    // Workers: one per thread over the images, or one whose kernels use every thread.
    let threads = kernels(a.common.threads)?.threads();
    let workers = if todo.len() > 1 {
        threads.min(todo.len())
    } else {
        1
    };
    let kernel_threads = if workers > 1 { 1 } else { threads };
    let model_plan = M2::new(&blob, kernels(Some(kernel_threads))?).plan(beam, a.max_len);
    // Every worker has its own workspace; together they stay under the workspace cap
    // (--max-workspace, default a quarter of RAM): fewer workers if the plan is large.
    let cap = a
        .common
        .max_workspace
        .map_or_else(super::default_workspace_cap, |m| m.saturating_mul(1 << 20));
    let fit = model_plan
        .checked_total_bytes()
        .map_or(1, |b| (cap / (b as u64).max(1)).max(1));
    let workers = workers.min(usize::try_from(fit).unwrap_or(usize::MAX));
    let mut mems = Vec::with_capacity(workers);
    for w in 0..workers {
        match workspace_memory(&model_plan, Some(cap >> 20)) {
            Ok(m) => mems.push(m),
            Err(e) if w > 0 => {
                if !a.common.quiet {
                    eprintln!("warning: {e}; captioning with {w} worker threads");
                }
                break;
            }
            Err(e) => return Err(e),
        }
    }

    let pb = progress(todo.len(), a.common.quiet);
    let warned = AtomicBool::new(false);
    let src = &*src;
    let batch = Batch {
        kernels: kernels(Some(kernel_threads))?,
        plan: model_plan,
        search: SearchOptions {
            beam,
            max_len: a.max_len,
        },
        greedy: a.greedy,
    };
    let quiet = a.common.quiet;
    let read = |pos: usize, buf: &mut Vec<f32>| -> Result<()> {
        let k = todo[pos];
        let regions = dataset::read_image(src, k, d_in, max_rows, buf)?;
        if regions > max_rows && !quiet && !warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: {}: image {} has {regions} regions; the model takes {max_rows} — using the first {max_rows} of each image, as the reference's loader does",
                src.path().display(),
                src.id(k)
            );
        }
        Ok(())
    };
    let engine_error = |pos: Option<usize>, e: m2::model::EngineError| match pos {
        Some(pos) => anyhow::Error::new(e).context(format!(
            "{}: image {}",
            src.path().display(),
            src.id(todo[pos])
        )),
        None => anyhow::anyhow!("{e}"),
    };
    // Results in input order, each written (and flushed) as soon as its turn comes.
    let result = decode_in_order(
        &blob,
        &batch,
        &mut mems,
        todo.len(),
        read,
        engine_error,
        |pos, d| {
            let k = todo[pos];
            let text = m2::text::caption_string(&d.caption.tokens, |id| blob.token(id), a.raw)
                .map_err(|e| anyhow::anyhow!("image {}: {e}", src.id(k)))?;
            let done = Done {
                tokens: d.caption.tokens.to_vec(),
                score: d.caption.score,
                ms: d.elapsed.as_secs_f64() * 1e3,
            };
            pb.suspend(|| sink.emit(&labels[k], &text, &done))?;
            pb.inc(1);
            Ok(())
        },
    );
    pb.finish_and_clear();
    result?;
    sink.finish(&labels)
}

fn id_json(id: &ImageId) -> Value {
    match id {
        ImageId::Num(n) => json!(n),
        ImageId::Str(s) => json!(s),
    }
}

/// Image ids to caption, in order: a JSON list of ids, a COCO annotations file
/// (`{"images": [{"id": …}]}`), or a Karpathy split file (`dataset_coco.json`:
/// `{"images": [{"cocoid": …, "split": …}]}`, the images of `split`, default `test`).
fn read_image_ids(path: &Path, split: Option<&str>) -> Result<Vec<ImageId>> {
    // Karpathy's dataset_coco.json is ~150 MB
    let bytes = m2::input::read_capped(path, 1 << 30)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let to_id = |x: &Value| -> Option<ImageId> {
        match x {
            Value::Number(n) => n.as_u64().map(ImageId::Num),
            Value::String(s) => Some(ImageId::parse(s)),
            _ => None,
        }
    };
    let ids: Option<Vec<ImageId>> = match &v {
        Value::Array(_) if split.is_some() => bail!(
            "{}: --split selects from a Karpathy dataset_coco.json; this is a list of ids",
            path.display()
        ),
        Value::Array(list) => list.iter().map(to_id).collect(),
        Value::Object(o) => match o.get("images").and_then(Value::as_array) {
            Some(images) if images.iter().any(|i| i.get("cocoid").is_some()) => {
                let want = split.unwrap_or("test");
                images
                    .iter()
                    .filter(|i| i.get("split").and_then(Value::as_str) == Some(want))
                    .map(|i| i.get("cocoid").and_then(to_id))
                    .collect()
            }
            Some(_) if split.is_some() => bail!(
                "{}: --split selects from a Karpathy dataset_coco.json; this is a COCO annotations file",
                path.display()
            ),
            Some(images) => images.iter().map(|i| i.get("id").and_then(to_id)).collect(),
            None => None,
        },
        _ => None,
    };
    let Some(ids) = ids else {
        bail!(
            "{}: expected a JSON list of image ids, a COCO annotations file or a Karpathy dataset_coco.json",
            path.display()
        );
    };
    if ids.is_empty() {
        bail!(
            "{}: no image ids{}",
            path.display(),
            split.map_or(String::new(), |s| format!(" in split {s:?}"))
        );
    }
    Ok(ids)
}

/// PNG scenes (`--image`) as a source.
struct Images {
    paths: Vec<PathBuf>,
    f: m2::input::Features,
}

impl Source for Images {
    fn path(&self) -> &Path {
        self.paths.first().map_or(Path::new("-"), PathBuf::as_path)
    }
    fn len(&self) -> usize {
        self.f.images
    }
    fn id(&self, k: usize) -> ImageId {
        ImageId::Num(k as u64)
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        let rows = self.f.regions.min(max_rows);
        out.clear();
        out.extend_from_slice(&self.f.image(k)[..rows * self.f.d_in]);
        Ok(Raw {
            regions: self.f.regions,
            width: self.f.d_in,
        })
    }
}

// ---- output ------------------------------------------------------------------------------------

/// Where a resumable run keeps what it has done: the jsonl output itself, the text output
/// (one line per image, in input order), or, for the JSON array, a `.partial.jsonl` beside it.
fn journal_path(out: &Path, format: Format) -> PathBuf {
    match format {
        Format::Json => {
            let mut s = out.as_os_str().to_owned();
            s.push(".partial.jsonl");
            PathBuf::from(s)
        }
        _ => out.to_path_buf(),
    }
}

struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// Its complete lines when the run started.
    lines: Vec<String>,
    /// This run created the file (nothing was at its path).
    created: bool,
}

/// A results file this run created and never wrote a line to (the run failed before its first
/// result: a bad image 0, a workspace refused) is removed, not left behind empty. Only an empty
/// regular file: a device or pipe given as `-o` was there before, and one line is a result.
impl Drop for Journal {
    fn drop(&mut self) {
        let empty =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file() && m.len() == 0);
        if self.created && empty {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Sink {
    format: Format,
    out: Option<PathBuf>,
    journal: Option<Journal>,
    /// The JSON array's entries, in input order (`Format::Json`).
    results: BTreeMap<usize, Value>,
    index_of: std::collections::HashMap<String, usize>,
}

impl Sink {
    fn open(out: Option<&Path>, format: Format, resume: bool) -> Result<Sink> {
        let journal = match out {
            None => None,
            Some(out) => {
                let path = journal_path(out, format);
                let exists = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
                // json: the results go to `out` at the end, the journal beside it meanwhile; a
                // non-empty `out` with no journal to continue is an earlier run's results
                let done = std::fs::metadata(out).is_ok_and(|m| m.is_file() && m.len() > 0);
                if format == Format::Json && done && !exists {
                    bail!(
                        "{} exists: remove it or choose another -o (a finished json run cannot be resumed)",
                        out.display()
                    );
                }
                if exists && !resume {
                    bail!(
                        "{} exists: add --resume to continue that run, or remove it",
                        path.display()
                    );
                }
                let created = std::fs::symlink_metadata(&path).is_err();
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let lines = if exists {
                    complete_lines(&path, &mut file, format)?
                } else {
                    Vec::new()
                };
                Some(Journal {
                    path,
                    file,
                    lines,
                    created,
                })
            }
        };
        Ok(Sink {
            format,
            out: out.map(Path::to_path_buf),
            journal,
            results: BTreeMap::new(),
            index_of: Default::default(),
        })
    }

    /// Which images the journal already holds (by position for text, by id otherwise). A text
    /// file with more lines than there are images is not this run's output: an error.
    fn done(&mut self, labels: &[Value]) -> Result<Vec<bool>> {
        let mut done = vec![false; labels.len()];
        self.index_of = labels
            .iter()
            .enumerate()
            .map(|(k, l)| (l.to_string(), k))
            .collect();
        let Some(j) = &self.journal else {
            return Ok(done);
        };
        if self.format == Format::Text {
            if j.lines.len() > labels.len() {
                bail!(
                    "{} has {} lines for {} images: not this run's output; not resuming into it",
                    j.path.display(),
                    j.lines.len(),
                    labels.len()
                );
            }
            for d in done.iter_mut().take(j.lines.len()) {
                *d = true;
            }
            return Ok(done);
        }
        for (n, line) in j.lines.iter().enumerate() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(&k) = self.index_of.get(&v["image_id"].to_string()) else {
                bail!(
                    "{}: line {} is the result of image {}, which this run's input does not have; not resuming into it",
                    j.path.display(),
                    n + 1,
                    v["image_id"]
                );
            };
            done[k] = true;
            if self.format == Format::Json {
                self.results.insert(
                    k,
                    json!({"image_id": v["image_id"], "caption": v["caption"]}),
                );
            }
        }
        Ok(done)
    }

    fn emit(&mut self, label: &Value, text: &str, d: &Done) -> std::io::Result<()> {
        let record = || {
            json!({"image_id": label, "caption": text, "score": d.score, "tokens": d.tokens,
                   "ms": (d.ms * 1000.0).round() / 1000.0})
        };
        let line = match self.format {
            Format::Text => escape_controls(text),
            Format::Jsonl => record().to_string(),
            Format::Json => {
                if let Some(&k) = self.index_of.get(&label.to_string()) {
                    self.results
                        .insert(k, json!({"image_id": label, "caption": text}));
                }
                if self.journal.is_none() {
                    return Ok(());
                }
                record().to_string()
            }
        };
        match &mut self.journal {
            Some(j) => {
                writeln!(j.file, "{line}")?;
                j.file.flush()
            }
            None => {
                let mut o = std::io::stdout().lock();
                writeln!(o, "{line}")?;
                o.flush()
            }
        }
    }

    /// The JSON array, atomically, once every image is done (its journal removed after).
    fn finish(self, labels: &[Value]) -> Result<()> {
        if self.format != Format::Json {
            if let Some(j) = &self.journal {
                j.file
                    .sync_all()
                    .with_context(|| format!("cannot write {}", j.path.display()))?;
            }
            return Ok(());
        }
        let list: Vec<&Value> = self.results.values().collect();
        if list.len() != labels.len() {
            bail!("{} of {} images captioned", list.len(), labels.len());
        }
        match &self.out {
            None => {
                let mut o = std::io::stdout().lock();
                serde_json::to_writer(&mut o, &list)?;
                writeln!(o)?;
                o.flush()?;
            }
            Some(out) => {
                m2::output::write_atomic(out, |f| {
                    serde_json::to_writer(&mut *f, &list)?;
                    writeln!(f)
                })
                .with_context(|| format!("cannot write {}", out.display()))?;
                if let Some(j) = &self.journal {
                    let _ = std::fs::remove_file(&j.path);
                }
            }
        }
        Ok(())
    }
}

/// The complete lines of a journal; a last line cut short (a crash or a power cut mid-write: no
/// line feed, or a complete line of NUL bytes, which a file system can leave after a power cut)
/// is removed from the file so the run redoes that image. For json and jsonl, any other line
/// that is not a result, and an unfinished tail that is not the start of one (`{`, or NUL
/// bytes), is an error: not this program's file, nothing in it is dropped. (A text file's
/// unfinished tail is a caption cut short: removed.)
fn complete_lines(path: &Path, file: &mut std::fs::File, format: Format) -> Result<Vec<String>> {
    let bytes = m2::input::read_capped(path, 1 << 30)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines: Vec<String> = bytes[..keep]
        .lines()
        .map(|l| l.map_err(anyhow::Error::from))
        .collect::<Result<_>>()
        .with_context(|| format!("{} is not a text file", path.display()))?;
    if format != Format::Text {
        // a result is an object with an image id and a caption string (what `Sink` writes)
        let bad = |l: &str| {
            !serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v.get("image_id").is_some() && v["caption"].is_string())
        };
        if lines
            .last()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b == 0))
        {
            let l = lines.pop().unwrap_or_default();
            keep -= l.len() + 1;
        }
        if let Some(i) = lines.iter().position(|l| bad(l)) {
            bail!(
                "{}: line {} is not an m2 result; not resuming into it",
                path.display(),
                i + 1
            );
        }
        let tail = &bytes[keep..];
        if !tail.is_empty() && tail[0] != b'{' && tail.iter().any(|&b| b != 0) {
            bail!(
                "{}: its unfinished last line is not an m2 result; not resuming into it",
                path.display()
            );
        }
    }
    if keep < bytes.len() {
        file.set_len(keep as u64).with_context(|| {
            format!("cannot cut the unfinished last line of {}", path.display())
        })?;
    }
    Ok(lines)
}
