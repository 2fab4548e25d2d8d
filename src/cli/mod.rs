//! The host CLI `m2`: `caption`, `score`, `info`, `bench` (and, with no arguments, the bundled demo).

/// `println!` that returns the write error (a closed pipe, `m2 … | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{}\n", format_args!($($t)*)))?
    };
}

pub mod bench;
pub mod caption;
pub mod demo;

use m2::input;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use m2::blob::{DType, MappedBlob};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::workspace::Workspace;
use m2::Blob;
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "m2",
    version,
    about = "Meshed-Memory Transformer image captioning on edge hardware"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Caption images from region features (one caption per line, in input order).
    Caption(CaptionArgs),
    /// Teacher-forced log-probabilities of given token sequences, written as [K, T, V] .npy.
    Score(ScoreArgs),
    /// Show a blob's config, tensors, checksum and memory plan.
    Info(InfoArgs),
    /// Measure caption speed on this machine: ms per caption, encoder, decoder step, GMAC/s,
    /// peak RSS, per dtype × kernel path × thread count (a built-in COCO-size model, or --model).
    Bench(bench::BenchArgs),
}

#[derive(Args)]
pub struct Common {
    /// The model blob (made by `m2-pack`); memory-mapped.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Worker threads for large layers (default: all cores).
    /// `M2_KERNEL=scalar|avx2|avxvnni|avx512|neon|dotprod` forces a kernel path.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar or warnings.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Largest workspace to allocate, in MiB (default: a quarter of physical RAM).
    #[arg(long, value_name = "MIB")]
    pub max_workspace: Option<u64>,
    /// Read the blob into memory instead of mapping it (for files on removable media or
    /// shares, which may change or vanish while mapped).
    #[arg(long)]
    pub no_mmap: bool,
}

#[derive(Args)]
pub struct CaptionArgs {
    #[command(flatten)]
    pub common: Common,
    /// Region features: .npy [K, R, d_in] or [R, d_in] (f32/f16, read image by image), a
    /// bottom-up-attention .npz or a directory of them, a bottom-up-attention .tsv, or the
    /// reference's coco_detections.hdf5 (feature `hdf5`). Images with fewer than the model's
    /// max_regions rows are zero-padded, more are truncated (as the reference).
    #[arg(
        long,
        short = 'f',
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    pub features: Option<PathBuf>,
    /// PNG scene(s) of bright digits on a dark background (dark-on-light is inverted): regions
    /// are found by `m2::regions` (the demo model's extractor, d_in 72). Repeatable.
    #[arg(long, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Caption only these images, in this order: a JSON list of ids, a COCO annotations file
    /// ({"images": [{"id": …}]}) or a Karpathy dataset_coco.json (the images of --split).
    #[arg(long, value_name = "FILE")]
    pub image_ids: Option<PathBuf>,
    /// The split of a Karpathy dataset_coco.json given to --image-ids.
    #[arg(long, default_value = None, value_name = "NAME", requires = "image_ids")]
    pub split: Option<String>,
    /// Beam size.
    #[arg(long, default_value_t = 5)]
    pub beam: usize,
    /// Decoding steps (the reference's test.py uses 20).
    #[arg(long, default_value_t = 20)]
    pub max_len: usize,
    /// Greedy decoding instead of beam search.
    #[arg(long, conflicts_with = "beam")]
    pub greedy: bool,
    /// Print the raw caption (no collapsing of repeated words, no strip).
    #[arg(long)]
    pub raw: bool,
    /// Output: `text` (a caption per line; control characters and backslashes escaped),
    /// `jsonl` (a JSON object per image, streamed: image_id, caption, score, tokens, ms) or
    /// `json` (the COCO results array [{"image_id", "caption"}], written when every image is
    /// done).
    #[arg(long, value_enum, default_value = "text")]
    pub format: caption::Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Write the results to FILE instead of standard output (text and jsonl line by line,
    /// flushed; json atomically at the end, with its progress in FILE.partial.jsonl).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Continue the run whose results are in -o FILE: skip the images already there (a cut-off
    /// last line is redone).
    #[arg(long)]
    pub resume: bool,
    /// Image ids for the output: a JSON list of K numbers or strings (default: the format's
    /// ids; 0..K for .npy).
    #[arg(long)]
    pub ids: Option<PathBuf>,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub common: Common,
    /// Region features: .npy [K, R, d_in] or [R, d_in], f32 or f16 (the other formats
    /// `caption` reads are not taken here).
    #[arg(long, short = 'f')]
    pub features: PathBuf,
    /// Token ids .npy [K, T] (integers; <bos> first, <pad> after the caption).
    #[arg(long, short = 't')]
    pub tokens: PathBuf,
    /// Output .npy [K, T, V] float32 (written atomically; never one of the inputs).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct InfoArgs {
    /// The model blob.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Beam size for the memory plan.
    #[arg(long, default_value_t = 5)]
    pub beam: usize,
    /// Regions per image for the memory plan (default: the blob's max_regions).
    #[arg(long)]
    pub regions: Option<usize>,
    /// Read the blob into memory instead of mapping it.
    #[arg(long)]
    pub no_mmap: bool,
}

/// The kernels the user asked for: `M2_KERNEL` (or the best path) and `--threads`.
pub fn kernels(threads: Option<usize>) -> Result<Kernels> {
    let k = Kernels::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(k.with_threads(n))
}

/// The model blob, memory-mapped, or read into memory with `--no-mmap` (for a file that may
/// change or vanish while m2 runs: see [`MappedBlob`]).
pub fn open_model(path: &Path, no_mmap: bool) -> Result<MappedBlob> {
    let m = if no_mmap {
        MappedBlob::read(path)
    } else {
        MappedBlob::open(path)
    };
    m.map_err(|e| anyhow::anyhow!("{e}"))
}

fn blob_of(m: &MappedBlob) -> Result<Blob<'_>> {
    m.blob().map_err(|e| anyhow::anyhow!("model blob: {e}"))
}

/// Features for the model: rows past max_regions are dropped with a warning.
fn load_features(path: &Path, blob: &Blob, quiet: bool) -> Result<input::Features> {
    let cfg = blob.config();
    let f = input::read_features(path, cfg.d_in as usize)?;
    if f.regions > cfg.max_regions as usize && !quiet {
        eprintln!(
            "warning: {} has {} regions per image; the model takes {} — using the first {} of each \
             image, as the reference's loader does",
            path.display(),
            f.regions,
            cfg.max_regions,
            cfg.max_regions
        );
    }
    Ok(f)
}

fn progress(n: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet || n < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

fn escape_controls(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            // a backslash too, so that a token `\n` and a line feed print differently
            if c.is_control() || c == '\\' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Region features of PNG scenes through `m2::regions`, zero-padded to max_regions rows (the
/// engine's own padding, so captions are the same as with only the found rows).
fn features_from_images(
    paths: &[PathBuf],
    cfg: &m2::Config,
    quiet: bool,
) -> Result<input::Features> {
    let (d_in, r) = (cfg.d_in as usize, cfg.max_regions as usize);
    if d_in != m2::regions::D_IN {
        bail!(
            "--image needs a model trained on m2::regions features (d_in {}); this model has d_in {d_in}",
            m2::regions::D_IN
        );
    }
    let mut data = vec![0f32; paths.len() * r * d_in];
    for (k, p) in paths.iter().enumerate() {
        // a PNG of the 50-megapixel limit, stored uncompressed, is 200 MB
        let bytes = m2::input::read_capped(p, 256 << 20)
            .with_context(|| format!("cannot read {}", p.display()))?;
        // Asked for every region the extractor tracks, so that dropping some is said (as the
        // --features path says it); the regions kept, the first r in raster order, have the
        // same features either way.
        let (found, f) = m2::regions::features_from_png(&bytes, m2::regions::MAX_COMPONENTS.max(r))
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if found.len() > r && !quiet {
            eprintln!(
                "warning: {} has {} regions; the model takes {r} — using the first {r} (raster order)",
                p.display(),
                found.len()
            );
        }
        let n = found.len().min(r) * d_in;
        data[k * r * d_in..k * r * d_in + n].copy_from_slice(&f[..n]);
    }
    Ok(input::Features {
        images: paths.len(),
        regions: r,
        d_in,
        data,
    })
}

/// The workspace buffer of `plan`, refused (one line, nothing allocated) if its size does not
/// fit this machine or exceeds `--max-workspace` MiB (default: a quarter of physical RAM,
/// at least 64 MiB; a hostile blob's `max_regions` cannot make the process abort on
/// allocation).
fn workspace_memory(plan: &m2::plan::Plan, max_mib: Option<u64>) -> Result<Vec<f32>> {
    let Some(bytes) = plan.checked_total_bytes() else {
        bail!(
            "the memory plan for {} regions at beam {} overflows this machine's address space",
            plan.regions,
            plan.beam
        );
    };
    let cap = match max_mib {
        Some(m) => m.saturating_mul(1 << 20),
        None => default_workspace_cap(),
    };
    if bytes as u64 > cap {
        bail!(
            "the workspace needs {} MiB (model max_regions {}, beam {}), over the {} MiB limit; \
             raise it with --max-workspace MIB if this machine has the memory",
            (bytes as u64).div_ceil(1 << 20),
            plan.regions,
            plan.beam,
            cap >> 20
        );
    }
    let mut v = Vec::new();
    v.try_reserve_exact(bytes / 4)
        .map_err(|_| anyhow::anyhow!("cannot allocate the {bytes}-byte workspace"))?;
    v.resize(bytes / 4, 0f32);
    Ok(v)
}

/// A quarter of physical RAM (from /proc/meminfo), at least 64 MiB; 1 GiB where unknown.
fn default_workspace_cap() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    match total_kib {
        Some(k) => (k.saturating_mul(1024) / 4).max(64 << 20),
        None => 1 << 30,
    }
}

/// Read image ids for `--json`: a JSON list of `images` numbers or strings.
fn read_ids(path: &Path, images: usize) -> Result<Vec<serde_json::Value>> {
    // one id per image: a file longer than 4 KiB an id cannot be this run's list, and parsed
    // JSON takes ~15× its text in memory, so the cap follows the image count (at most 1 GiB)
    let cap = (images as u64)
        .saturating_add(1)
        .saturating_mul(4096)
        .min(1 << 30);
    let bytes = m2::input::read_capped(path, cap)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(list) = v.as_array() else {
        bail!("{}: ids must be a JSON list", path.display());
    };
    if list.len() != images {
        bail!("{}: {} ids for {images} images", path.display(), list.len());
    }
    if let Some(bad) = list.iter().find(|x| !(x.is_number() || x.is_string())) {
        bail!(
            "{}: id {bad} is neither a number nor a string",
            path.display()
        );
    }
    Ok(list.clone())
}

pub fn score(a: &ScoreArgs) -> Result<()> {
    for input in [&a.common.model, &a.features, &a.tokens] {
        if m2::output::same_file(&a.output, input) {
            bail!(
                "refusing to overwrite the input {} with the output",
                input.display()
            );
        }
    }
    let mapped = open_model(&a.common.model, a.common.no_mmap)?;
    let blob = blob_of(&mapped)?;
    let cfg = *blob.config();
    let model = M2::new(&blob, kernels(a.common.threads)?);
    let feats = load_features(&a.features, &blob, a.common.quiet)?;
    let (k_tok, t_len, tokens) = input::read_tokens(&a.tokens, cfg.vocab)?;
    if k_tok != feats.images {
        bail!(
            "{} has {k_tok} sequences but {} has {} images",
            a.tokens.display(),
            a.features.display(),
            feats.images
        );
    }
    if t_len > cfg.max_len() {
        bail!(
            "sequences of {t_len} tokens exceed this model's {} (its positional table, capped at the engine's {})",
            cfg.max_len(),
            m2::plan::MAX_STEPS
        );
    }
    let v = cfg.vocab as usize;
    let plan = model.plan(1, t_len);
    let mut mem = workspace_memory(&plan, a.common.max_workspace)?;
    let mut ws = Workspace::new(&mut mem, plan)?;
    let rows = feats.regions.min(cfg.max_regions as usize);
    let Some(n_out) = feats
        .images
        .checked_mul(t_len)
        .and_then(|n| n.checked_mul(v))
        .filter(|&n| n <= isize::MAX as usize / 4)
    else {
        bail!(
            "{} images x {t_len} tokens x {v} words of log-probs do not fit in memory",
            feats.images
        );
    };
    let mut logp = Vec::new();
    logp.try_reserve_exact(n_out)
        .map_err(|_| anyhow::anyhow!("cannot allocate {n_out} log-probs for the output"))?;
    logp.resize(n_out, 0f32);
    let pb = progress(feats.images, a.common.quiet);
    for k in 0..feats.images {
        let x = &feats.image(k)[..rows * feats.d_in];
        model
            .score(
                x,
                &tokens[k * t_len..(k + 1) * t_len],
                &mut ws,
                &mut logp[k * t_len * v..(k + 1) * t_len * v],
            )
            .with_context(|| format!("image {k}"))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    m2::output::write_atomic(&a.output, |f| {
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[feats.images as u64, t_len as u64, v as u64])
            .writer(std::io::BufWriter::new(f))
            .begin_nd()?;
        w.extend(logp.iter().copied())?;
        w.finish()
    })
    .with_context(|| format!("cannot write {}", a.output.display()))
}

pub fn info(a: &InfoArgs) -> Result<()> {
    let mapped = open_model(&a.model, a.no_mmap)?;
    let blob = blob_of(&mapped)?;
    let c = blob.config();
    let regions = a.regions.unwrap_or(c.max_regions as usize);
    if a.beam == 0 || a.beam > m2::plan::MAX_BEAM {
        bail!("--beam must be between 1 and {}", m2::plan::MAX_BEAM);
    }
    if regions == 0 {
        bail!("--regions must be at least 1");
    }
    let plan = m2::plan::Plan::new(c, a.beam, regions, m2::plan::default_max_len(c))
        .with_act_bytes(blob.act_bytes());
    let Some(ws_bytes) = plan.checked_total_bytes() else {
        bail!(
            "the memory plan for {regions} regions at beam {} overflows this machine's address \
             space",
            a.beam
        );
    };
    outln!("model {}", a.model.display());
    outln!("  checksum            {:#010x} (verified)", blob.checksum());
    outln!("{}", c.field_lines());
    outln!("  captions ≤ {} words", c.max_len());
    let mut by_dtype = [
        (DType::F32, 0usize, 0u64),
        (DType::F16, 0, 0),
        (DType::I8, 0, 0),
        (DType::I8A16, 0, 0),
    ];
    for t in blob.tensors() {
        if let Some(e) = by_dtype.iter_mut().find(|e| e.0 == t.dtype) {
            e.1 += 1;
            e.2 += t.bytes();
        }
    }
    for (dt, n, bytes) in by_dtype {
        if n > 0 {
            outln!("  {n:>4} tensors {:<4} {bytes:>12} bytes", dt.name());
        }
    }
    outln!(
        "memory plan (beam {}, {regions} regions, {} words):",
        a.beam,
        m2::plan::default_max_len(c)
    );
    outln!("  flash (blob)        {:>12} bytes", blob.len());
    outln!("  RAM workspace       {:>12} bytes", ws_bytes);
    Ok(())
}
