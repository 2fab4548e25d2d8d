//! `m2-pack`: turn a reference M² checkpoint (safetensors) and its vocabulary (JSON) into an
//! M2 blob, or inspect a blob.
//!
//! ```text
//! m2-pack CHECKPOINT.safetensors --vocab VOCAB.json --dtype f32|f16|int8|int8a16 -o OUT.m2
//!         [--heads 8] [--regions 50] [--pad ID] [--unk ID] [--bos ID] [--eos ID]
//!         [--enc-pad-value 0] [--readout-dtype f32|f16|int8]
//!         [--calibrate FEATURES.npy [--calibrate-images N] [--damping 0.1] [--threads N]]
//! m2-pack inspect OUT.m2 [--beam 5] [--regions R]
//! ```
//! Every error is one line on stderr, `error: …`, with a non-zero exit status.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use m2::blob::{AlignedBuf, DType};
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{pack_with_progress, read_vocab_json, PackOptions};
use m2::Blob;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "m2-pack",
    version,
    about = "Pack a reference M² checkpoint (safetensors) and vocabulary (JSON) into an M2 blob, or inspect a blob",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pack: PackArgs,
}

#[derive(Args, Debug)]
struct PackArgs {
    /// The reference state_dict as safetensors (see tools/python/pth_to_safetensors.py)
    #[arg(required = true, value_name = "CHECKPOINT.safetensors")]
    checkpoint: Option<PathBuf>,
    /// Vocabulary: JSON list of token strings, index = id (see tools/python/vocab_pkl_to_json.py)
    #[arg(long, required = true, value_name = "VOCAB.json")]
    vocab: Option<PathBuf>,
    /// Storage type of every Linear weight, word_emb and decoder.fc (the rest stays f32)
    #[arg(long, required = true, value_enum)]
    dtype: Option<DtypeArg>,
    /// Storage type of the vocabulary read-out decoder.fc alone (default: --dtype). The layer
    /// most sensitive to rounding in many checkpoints: e.g. --dtype int8 --readout-dtype f32
    #[arg(long, value_enum, value_name = "DTYPE")]
    readout_dtype: Option<DtypeArg>,
    /// Round the int8 weights with GPTQ against the inputs they see on these images (region
    /// features, .npy [K, R, d_in] as `m2 caption` takes them) instead of to nearest: same
    /// format and speed, lower error. A few hundred images of the training set are plenty
    #[arg(long, value_name = "FEATURES.npy")]
    calibrate: Option<PathBuf>,
    /// Use only the first N images of --calibrate
    #[arg(long, value_name = "N", requires = "calibrate")]
    calibrate_images: Option<usize>,
    /// GPTQ damping, as a fraction of the mean input energy (larger: closer to round-to-nearest)
    #[arg(
        long,
        default_value_t = Calibration::DAMPING,
        value_name = "F",
        requires = "calibrate",
        allow_negative_numbers = true
    )]
    damping: f64,
    /// Worker threads for --calibrate (default: all cores; the blob is the same for any count)
    #[arg(long, value_name = "N", requires = "calibrate")]
    threads: Option<usize>,
    /// Output blob
    #[arg(short, long, required = true, value_name = "OUT.m2")]
    output: Option<PathBuf>,
    /// Attention heads (shapes cannot tell; d_k = d_v = d_model / heads)
    #[arg(long, default_value_t = 8)]
    heads: u32,
    /// Regions per image (the reference pads or truncates every image to this many)
    #[arg(long, default_value_t = 50)]
    regions: u32,
    /// <pad> id (default: looked up in the vocabulary)
    #[arg(long, value_name = "ID")]
    pad: Option<u32>,
    /// <unk> id (default: looked up in the vocabulary)
    #[arg(long, value_name = "ID")]
    unk: Option<u32>,
    /// <bos> id (default: looked up in the vocabulary)
    #[arg(long, value_name = "ID")]
    bos: Option<u32>,
    /// <eos> id (default: looked up in the vocabulary)
    #[arg(long, value_name = "ID")]
    eos: Option<u32>,
    /// The encoder's padding value (a region is masked iff its projected row sums to this)
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        value_name = "X"
    )]
    enc_pad_value: f32,
    /// No progress bar and no summary
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a blob's config, tensors, checksum status and memory plan
    Inspect {
        /// The blob
        #[arg(value_name = "BLOB.m2")]
        blob: PathBuf,
        /// Beam size for the RAM plan
        #[arg(long, default_value_t = 5)]
        beam: usize,
        /// Regions per image for the RAM plan (default: the blob's max_regions)
        #[arg(long)]
        regions: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    #[value(alias = "i8")]
    Int8,
    /// int8 weights (as int8) whose linears quantise their inputs to int16, not int8: for
    /// checkpoints trained quantisation-aware (weights on the int8 grid). Format version 3.
    Int8a16,
}

impl From<DtypeArg> for DType {
    fn from(d: DtypeArg) -> DType {
        match d {
            DtypeArg::F32 => DType::F32,
            DtypeArg::F16 => DType::F16,
            DtypeArg::Int8 => DType::I8,
            DtypeArg::Int8a16 => DType::I8A16,
        }
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        eprintln!("error: internal error: {msg}");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message, up to its usage block, folded into one line
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("error: {msg} (see m2-pack --help)");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Inspect {
            blob,
            beam,
            regions,
        }) => inspect(&blob, beam, regions),
        None => run_pack(&cli.pack),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn required<'a, T>(v: &'a Option<T>, what: &str) -> Result<&'a T> {
    v.as_ref().ok_or_else(|| anyhow!("missing {what}"))
}

/// `path` made absolute and free of symlinks; for a file that does not exist yet, its
/// canonical parent directory joined with the file name.
fn canonical_target(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .with_context(|| format!("output directory {}", parent.display()))?;
    Ok(parent.join(name))
}

fn run_pack(a: &PackArgs) -> Result<ExitCode> {
    let ckpt = required(&a.checkpoint, "CHECKPOINT")?;
    let vocab_path = required(&a.vocab, "--vocab")?;
    let dtype: DType = (*required(&a.dtype, "--dtype")?).into();
    let out = required(&a.output, "-o OUT.m2")?;

    let ckpt_c = ckpt
        .canonicalize()
        .with_context(|| format!("cannot open checkpoint {}", ckpt.display()))?;
    let vocab_c = vocab_path
        .canonicalize()
        .with_context(|| format!("cannot open vocabulary {}", vocab_path.display()))?;
    let out_c = canonical_target(out)?;
    // Every input, through symlinks and hard links: the checkpoint, the vocabulary and the
    // calibration features.
    let inputs = [Some(&ckpt_c), Some(&vocab_c), a.calibrate.as_ref()];
    if let Some(input) = inputs
        .into_iter()
        .flatten()
        .find(|i| out_c == **i || m2::output::same_file(&out_c, i))
    {
        bail!(
            "refusing to overwrite the input file {} with the output {}",
            input.display(),
            out.display()
        );
    }

    // a checkpoint ten times COCO's (~150 MB at f32); a vocabulary of words
    let st = m2::input::read_capped(&ckpt_c, 2 << 30)
        .with_context(|| format!("cannot read checkpoint {}", ckpt.display()))?;
    let vocab_bytes = m2::input::read_capped(&vocab_c, 256 << 20)
        .with_context(|| format!("cannot read vocabulary {}", vocab_path.display()))?;
    let vocab = read_vocab_json(&vocab_bytes).with_context(|| vocab_path.display().to_string())?;
    let opts = PackOptions {
        dtype,
        readout_dtype: a.readout_dtype.map(Into::into),
        tensor_dtypes: Vec::new(),
        heads: a.heads,
        max_regions: a.regions,
        pad: a.pad,
        unk: a.unk,
        bos: a.bos,
        eos: a.eos,
        enc_pad_value: a.enc_pad_value,
    };

    // progress bar only for large checkpoints (and only on a terminal: indicatif hides it
    // otherwise)
    let bar = if !a.quiet && st.len() > 16 << 20 {
        let b = indicatif::ProgressBar::new(st.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "packing {bar:40} {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let blob = match &a.calibrate {
        None => pack_with_progress(&st, &vocab, &opts, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        }),
        Some(path) => {
            // d_in from the checkpoint's encoder.fc.weight, to check the features against
            let d_in = m2::pack::infer_config_of(&st, &vocab, &opts)
                .with_context(|| ckpt.display().to_string())?
                .d_in as usize;
            let mut f = m2::input::read_features(path, d_in)?;
            if let Some(n) = a.calibrate_images {
                if n == 0 {
                    bail!("--calibrate-images must be at least 1");
                }
                f.images = f.images.min(n);
                f.data.truncate(f.images * f.regions * f.d_in);
            }
            let cal = Calibration {
                features: &f.data,
                images: f.images,
                regions: f.regions,
                damping: a.damping,
                threads: match a.threads {
                    Some(0) => bail!("--threads must be at least 1"),
                    Some(n) => n,
                    None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                },
            };
            let quiet = a.quiet;
            let (mut last, mut started) = ("", std::time::Instant::now());
            pack_calibrated(&st, &vocab, &opts, &cal, &mut |stage, done, total| {
                if quiet {
                    return;
                }
                if stage != last {
                    eprintln!("{stage}: {total} …");
                    (last, started) = (stage, std::time::Instant::now());
                }
                if done == total {
                    let s = started.elapsed().as_secs_f64();
                    eprintln!("{stage}: {total} done in {s:.1} s");
                }
            })
        }
    }
    .with_context(|| ckpt.display().to_string());
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let blob = blob?;

    m2::output::write_atomic(&out_c, |f| f.write_all(&blob))
        .with_context(|| format!("cannot write {}", out.display()))?;
    if !a.quiet {
        let buf = AlignedBuf::from_bytes(&blob);
        let b = Blob::parse_skip_checksum(&buf)?;
        let c = b.config();
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "wrote {}: {} bytes, {} tensors (weights {}{}), d_model {} h {} layers {}+{} vocab {}, checksum {:#010x}",
            out.display(),
            blob.len(),
            b.tensor_count(),
            dtype,
            if a.calibrate.is_some() { ", GPTQ-calibrated" } else { "" },
            c.d_model,
            c.h,
            c.n_enc,
            c.n_dec,
            c.vocab,
            b.checksum()
        )?;
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(path: &Path, beam: usize, regions: Option<usize>) -> Result<ExitCode> {
    if beam == 0 || beam > m2::plan::MAX_BEAM {
        bail!("--beam must be between 1 and {}", m2::plan::MAX_BEAM);
    }
    if regions == Some(0) {
        bail!("--regions must be at least 1");
    }
    // Mapped, not read: a 3 GB file costs nothing until the checksum pass pages it through;
    // the header (magic, version, declared length) is checked first.
    let mapped =
        m2::blob::MappedBlob::open_header_checked(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let buf = mapped.bytes();
    // A full parse first, so that a corrupted file reports the checksum rather than whatever
    // structural damage the corruption caused; a blob whose only fault is its checksum is
    // still printed (marked MISMATCH) before the error.
    let (blob, checksum) = match Blob::parse(buf) {
        Ok(b) => (b, Ok(())),
        Err(e @ m2::BlobError::ChecksumMismatch { .. }) => match Blob::parse_skip_checksum(buf) {
            Ok(b) => (b, Err(e)),
            Err(e) => bail!("{}: {e}", path.display()),
        },
        Err(e) => bail!("{}: {e}", path.display()),
    };
    let c = *blob.config();
    let mut o = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(o, "file      {} ({} bytes)", path.display(), blob.len());
    let _ = writeln!(
        o,
        "format    M2 blob v{}, checksum {:#010x} {}",
        blob.version(),
        blob.checksum(),
        if checksum.is_ok() {
            "(ok)"
        } else {
            "(MISMATCH)"
        }
    );
    let _ = writeln!(o, "config");
    let _ = writeln!(o, "{}", c.field_lines());
    let _ = writeln!(o, "  max caption {} words", c.max_len());
    let vocab_bytes: usize = blob.tokens().map(<[u8]>::len).sum();
    let _ = writeln!(
        o,
        "vocabulary {} tokens, {} bytes, longest {} bytes",
        blob.token_count(),
        vocab_bytes,
        blob.max_token_len()
    );
    let _ = writeln!(o, "tensors ({})", blob.tensor_count());
    let _ = writeln!(
        o,
        "  {:<48} {:<5} {:>14} {:>10}",
        "name", "dtype", "shape", "bytes"
    );
    let mut per_dtype = [(0usize, 0u64); 4];
    for t in blob.tensors() {
        let shape = format!("[{}, {}]", t.rows, t.cols);
        let _ = writeln!(
            o,
            "  {:<48} {:<5} {:>14} {:>10}",
            t.kind.key(t.layer).to_string(),
            t.dtype.name(),
            shape,
            t.bytes()
        );
        let e = &mut per_dtype[t.dtype as usize];
        e.0 += 1;
        e.1 += t.bytes();
    }
    for (d, (n, bytes)) in [DType::F32, DType::F16, DType::I8, DType::I8A16]
        .iter()
        .zip(per_dtype)
    {
        if n > 0 {
            let _ = writeln!(o, "  {d}: {n} tensors, {bytes} bytes");
        }
    }
    let regions = regions.unwrap_or(c.max_regions as usize).max(1);
    let Some(ws) = m2::plan::Plan::new(&c, beam, regions, m2::plan::default_max_len(&c))
        .with_act_bytes(blob.act_bytes())
        .checked_total_bytes()
    else {
        bail!("the memory plan for {regions} regions at beam {beam} overflows this machine's address space");
    };
    let _ = writeln!(o, "memory plan (beam {beam}, {regions} regions)");
    let _ = writeln!(
        o,
        "  flash (blob)        {:>12} bytes  {}",
        blob.len(),
        human(blob.len())
    );
    let _ = writeln!(o, "  RAM (workspace)     {:>12} bytes  {}", ws, human(ws));
    {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, o.as_bytes())?;
        std::io::Write::flush(&mut out)?;
    }
    match checksum {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

fn human(n: usize) -> String {
    if n >= 1 << 20 {
        format!("({:.2} MiB)", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("({:.1} KiB)", n as f64 / 1024.0)
    }
}
