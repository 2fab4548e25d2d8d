//! `m2 bench`: how fast this machine captions, the way `llama-bench` measures llama.cpp.
//!
//! With no `--model` it builds a COCO-size M² in memory (d 512, 8 heads, 3 + 3 layers, m 40,
//! vocab 10,201, 50 regions: [`Config::COCO`]) from a fixed seed, so every machine measures the
//! same work, and packs it through the library to each `--dtype`. For every dtype × kernel
//! path × thread count it times whole captions (beam 5, 20 steps, encoder included) in this
//! process — no process start or page-in inside a timed region — and splits a decoder step
//! into its linear layers (timed alone through `Kernels::linear`, the same calls a step makes)
//! and the rest (attention, softmax, LayerNorm, gates, the vocabulary's log-softmax, top-k).
//! Figures are wall-clock medians on this machine: measured, never predicted.

use anyhow::{bail, Context, Result};
use clap::Args;
use m2::blob::{AlignedBuf, BlobWriter, DType, MappedBlob, TensorData, TensorKind};
use m2::kernels::{Isa, Kernels, QuantScratch};
use m2::model::M2;
use m2::search::{beam_search_encoded, SearchOptions};
use m2::workspace::Workspace;
use m2::{Blob, Config};
use serde_json::{json, Value};
use std::hint::black_box;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Measure this blob instead of the built-in COCO-size model (its dtype is the blob's).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Weight dtypes of the built-in model, comma-separated (f32, f16, int8, int8a16).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,int8")]
    pub dtype: Vec<String>,
    /// Thread counts, comma-separated (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Kernel paths, comma-separated, or `all` for every path this CPU has
    /// (default: `M2_KERNEL`'s, or the best one; names as for `M2_KERNEL`).
    #[arg(long, value_delimiter = ',')]
    pub kernel: Vec<String>,
    /// Timed captions per configuration.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub n: usize,
    /// Untimed captions first, per configuration.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Beam size.
    #[arg(long, default_value_t = 5)]
    pub beam: usize,
    /// Decoding steps.
    #[arg(long, default_value_t = 20)]
    pub max_len: usize,
    /// Print one JSON object ({"machine", "model", "rows"}) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Seed of the built-in model's weights and features.
const SEED: u64 = 20_200_614;
/// Images the built-in benchmark cycles through.
const IMAGES: usize = 4;

/// Most timed (and most warm-up) captions per configuration: each keeps its time.
const MAX_RUNS: usize = 100_000;

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.n == 0 || a.n > MAX_RUNS {
        bail!("-n must be between 1 and {MAX_RUNS}");
    }
    if a.warmup > MAX_RUNS {
        bail!("--warmup must be at most {MAX_RUNS}");
    }
    if a.beam == 0 || a.beam > m2::plan::MAX_BEAM {
        bail!("--beam must be between 1 and {}", m2::plan::MAX_BEAM);
    }
    if a.max_len == 0 || a.max_len > m2::plan::MAX_STEPS {
        bail!("--max-len must be between 1 and {}", m2::plan::MAX_STEPS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = if a.threads.is_empty() {
        vec![1, cores]
    } else {
        a.threads.clone()
    };
    threads.dedup();
    if threads.contains(&0) {
        bail!("--threads: 0 is not a thread count");
    }
    let isas = kernel_paths(&a.kernel)?;
    let opts = SearchOptions {
        beam: a.beam,
        max_len: a.max_len,
    };
    let progress = Progress::new(!a.quiet && std::io::stderr().is_terminal());
    let machine = machine();

    // The models: a given blob, or the built-in one at each dtype (built one at a time).
    let mut rows = Vec::new();
    let model_info;
    if let Some(path) = &a.model {
        let mapped = MappedBlob::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let blob = mapped
            .blob()
            .map_err(|e| anyhow::anyhow!("model blob: {e}"))?;
        let cfg = *blob.config();
        let feats = features(&cfg, SEED + 1, IMAGES);
        model_info = json!({"source": path.display().to_string(), "config": config_json(&cfg),
                            "blob_bytes": blob.len()});
        for &isa in &isas {
            for &t in &threads {
                rows.push(measure(&blob, isa, t, &feats, &opts, a, &progress)?);
            }
        }
    } else {
        let cfg = Config::COCO;
        progress.say("building the COCO-size model (fixed seed)");
        let weights = synthetic_weights(&cfg, SEED);
        let feats = features(&cfg, SEED + 1, IMAGES);
        let mut sizes = serde_json::Map::new();
        for name in &a.dtype {
            let dtype = parse_dtype(name)?;
            progress.say(&format!("packing {name}"));
            let bytes = pack(&cfg, &weights, dtype)?;
            sizes.insert(dtype.name().into(), json!(bytes.len()));
            let blob = bytes
                .blob()
                .map_err(|e| anyhow::anyhow!("built-in model: {e}"))?;
            for &isa in &isas {
                for &t in &threads {
                    rows.push(measure(&blob, isa, t, &feats, &opts, a, &progress)?);
                }
            }
        }
        model_info = json!({"source": format!("built-in COCO-size model, random weights, seed {SEED}"),
                            "config": config_json(&cfg), "blob_bytes": sizes,
                            "images": IMAGES, "regions": cfg.max_regions});
    }
    progress.clear();
    let settings = json!({"beam": a.beam, "max_len": a.max_len, "n": a.n, "warmup": a.warmup});
    if a.json {
        let v =
            json!({"machine": machine, "model": model_info, "settings": settings, "rows": rows});
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&machine, &model_info, &settings, &rows)?;
    }
    Ok(())
}

/// The kernel paths to measure: by default `M2_KERNEL`'s (as every other subcommand) or else
/// the best; `all`, or the named ones (each must be available here).
fn kernel_paths(names: &[String]) -> Result<Vec<Isa>> {
    if names.is_empty() {
        let k = Kernels::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(vec![k.isa()]);
    }
    if names.iter().any(|n| n == "all") {
        return Ok(Kernels::available().collect());
    }
    names
        .iter()
        .map(|n| {
            let isa = Isa::from_name(n).with_context(|| {
                format!("--kernel: {n:?} is not a kernel path (scalar, avx2, avxvnni, avx512, neon, dotprod, dsp, all)")
            })?;
            if !isa.is_available() {
                bail!("--kernel: this CPU has no {n} path");
            }
            Ok(isa)
        })
        .collect()
}

fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "int8" | "i8" => DType::I8,
        "int8a16" => DType::I8A16,
        _ => bail!("--dtype: {name:?} is not one of f32, f16, int8, int8a16"),
    })
}

// ---- the built-in model ------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014). Hand-rolled on purpose: the built-in model must be the
/// same bits on every machine and in every future build, so that figures compare; a crate's
/// generator may change its stream between versions. `libm` for the transcendental functions,
/// for the same reason (the platform's `ln`/`cos` may differ in the last bit).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.uniform()) as f32
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform(); // (0, 1]
        let v = self.uniform();
        libm::sqrt(-2.0 * libm::log(u)) * libm::cos(2.0 * core::f64::consts::PI * v)
    }
}

/// Weights shaped like a trained model's (as `bench/gen_coco.py` describes): Xavier-uniform
/// matrices, LayerNorm gains 1 ± 0.1, biases U(±0.05), memory slots N(0, 1) (the blob stores
/// them pre-scaled by √d_k and √m), and a read-out with a Zipf-like prior, logit std ≈ 2 and
/// `<eos>` unlikely, so that every caption decodes `beam` live beams for all its steps.
fn synthetic_weights(cfg: &Config, seed: u64) -> Vec<(TensorKind, u16, Vec<f32>)> {
    use TensorKind as K;
    let mut rng = Rng(seed);
    TensorKind::required(cfg)
        .map(|(kind, layer)| {
            let (r, c) = kind.shape(cfg);
            let (r, c) = (r as usize, c as usize);
            let n = r * c;
            let v: Vec<f32> = match kind {
                K::EncInLnG
                | K::EncAttLnG
                | K::EncFfLnG
                | K::SelfLnG
                | K::CrossLnG
                | K::DecFfLnG => (0..n).map(|_| 1.0 + rng.range(-0.1, 0.1)).collect(),
                K::EncMemK | K::EncMemV => (0..n).map(|_| rng.normal() as f32).collect(),
                K::VocabW => {
                    let scale = 2.0 / (c as f64).sqrt();
                    (0..n)
                        .map(|i| {
                            let rank = (i / c) as f64;
                            let gain = if i / c == cfg.eos as usize {
                                0.2
                            } else {
                                1.0 + 1.5 / libm::log(rank + 3.0)
                            };
                            (rng.normal() * scale * gain) as f32
                        })
                        .collect()
                }
                _ => match kind.class() {
                    m2::blob::Class::Vector => (0..n).map(|_| rng.range(-0.05, 0.05)).collect(),
                    _ => {
                        let bound = (6.0 / (r + c) as f64).sqrt();
                        (0..n).map(|_| rng.range(-bound, bound)).collect()
                    }
                },
            };
            (kind, layer, v)
        })
        .collect()
}

/// `images` feature arrays `[max_regions, d_in]`, every row a region: non-negative like ReLU'd
/// CNN features, about a third non-zero, some channels "hot".
fn features(cfg: &Config, seed: u64, images: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let d_in = cfg.d_in as usize;
    let hot: Vec<f64> = (0..d_in).map(|_| libm::exp(0.6 * rng.normal())).collect();
    (0..images)
        .map(|_| {
            (0..cfg.max_regions as usize * d_in)
                .map(|i| ((rng.normal() - 0.4) * hot[i % d_in]).max(0.0) as f32)
                .collect()
        })
        .collect()
}

/// Pack the built-in weights at `dtype` (the pack policy of `m2-pack --dtype`: every Linear
/// weight and embedding in `dtype`, the rest f32; int8 rounded to nearest, per row).
fn pack(cfg: &Config, weights: &[(TensorKind, u16, Vec<f32>)], dtype: DType) -> Result<AlignedBuf> {
    let mut w = BlobWriter::new(*cfg);
    for (kind, layer, v) in weights {
        let (_, c) = kind.shape(cfg);
        let dt = match kind.class() {
            m2::blob::Class::Weight => dtype,
            _ => DType::F32,
        };
        w.add(*kind, *layer, TensorData::from_f32(v, c as usize, dt));
    }
    let mut vocab: Vec<Vec<u8>> = (0..cfg.vocab)
        .map(|i| format!("w{i}").into_bytes())
        .collect();
    for (id, name) in [
        (cfg.pad, "<pad>"),
        (cfg.unk, "<unk>"),
        (cfg.bos, "<bos>"),
        (cfg.eos, "<eos>"),
    ] {
        vocab[id as usize] = name.as_bytes().to_vec();
    }
    w.vocab(vocab);
    let bytes = w
        .finish()
        .map_err(|e| anyhow::anyhow!("packing the built-in model: {e}"))?;
    Ok(AlignedBuf::from_bytes(&bytes))
}

// ---- measuring ---------------------------------------------------------------------------------

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One row: `n` timed captions of `blob` on `isa` with `threads` threads.
fn measure(
    blob: &Blob,
    isa: Isa,
    threads: usize,
    feats: &[Vec<f32>],
    opts: &SearchOptions,
    a: &BenchArgs,
    progress: &Progress,
) -> Result<Value> {
    let cfg = *blob.config();
    if opts.max_len > cfg.max_len() {
        bail!(
            "--max-len {} is more than this model's {} words",
            opts.max_len,
            cfg.max_len()
        );
    }
    let dtype = blob.matrix(TensorKind::VocabW, 0).dtype();
    let label = format!(
        "{dtype} · {isa} · {threads} thread{}",
        if threads == 1 { "" } else { "s" }
    );
    let kernels = Kernels::with_isa(isa)
        .with_context(|| format!("no {isa} kernels on this CPU"))?
        .with_threads(threads);
    let model = M2::new(blob, kernels);
    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    let image = |k: usize| feats[k % feats.len()].as_slice();

    let mut steps_per_caption = Vec::new();
    // (encoder ms, decoder ms per step) of each timed caption: both from the caption's own
    // run, so the split always adds up to it (the encoder timed in separate runs could exceed a
    // noisy caption's median and give a negative step time)
    let mut split = Vec::new();
    let mut caption = |k: usize| -> Result<f64> {
        let mut steps = 0usize;
        let t = Instant::now();
        model
            .encode(image(k), &mut ws)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let enc = ms_since(t);
        let out = beam_search_encoded(&model, &mut ws, opts, |_| steps += 1)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ms = ms_since(t);
        black_box(&out);
        steps_per_caption.push(steps);
        split.push((enc, (ms - enc) / steps.max(1) as f64));
        Ok(ms)
    };
    for k in 0..a.warmup {
        progress.show(&format!("{label}: warm-up {}/{}", k + 1, a.warmup));
        caption(k)?;
    }
    let mut ms = Vec::with_capacity(a.n);
    for k in 0..a.n {
        progress.show(&format!("{label}: caption {}/{}", k + 1, a.n));
        ms.push(caption(a.warmup + k)?);
    }
    let steps = steps_per_caption.last().copied().unwrap_or(0);
    // the timed captions' encoders (with the cross-attention K/V precompute) and steps
    let timed = &split[split.len() - a.n..];
    let mut enc: Vec<f64> = timed.iter().map(|&(e, _)| e).collect();
    let mut per_step: Vec<f64> = timed.iter().map(|&(_, s)| s).collect();
    progress.show(&format!("{label}: linear layers of a step"));
    let linear_ms = step_linears_ms(blob, kernels, opts.beam, 20);
    progress.show(&format!("{label}: the rest of a step, part by part"));
    let parts = step_parts_ms(&cfg, kernels, opts.beam, steps, 50)?;

    let (min, max) = ms
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let med = median(&mut ms);
    let enc_ms = median(&mut enc);
    let step_ms = if steps > 0 {
        median(&mut per_step)
    } else {
        f64::NAN
    };
    let (per_image, per_step) = weight_bytes(blob);
    let bytes = per_image + steps as u64 * per_step;
    let macs = caption_macs(&cfg, opts.beam, steps);
    Ok(json!({
        "dtype": dtype.name(),
        "kernel": isa.name(),
        "threads": threads,
        "ms_per_caption": med,
        "ms_min": min,
        "ms_max": max,
        "encoder_ms": enc_ms,
        "steps": steps,
        "ms_per_step": step_ms,
        "step_linear_ms": linear_ms,
        "step_other_ms": step_ms - linear_ms,
        "step_attention_ms": parts.attention,
        "step_norm_gates_ms": parts.norm_gates,
        "step_log_softmax_ms": parts.log_softmax,
        "step_top_k_ms": parts.top_k,
        "gmac_per_s": macs as f64 / (med * 1e6),
        "weight_gb_per_s": bytes as f64 / (med * 1e6),
        "macs_per_caption": macs,
        "weight_bytes_per_caption": bytes,
        "workspace_bytes": plan.total_bytes(),
        "peak_rss_bytes": peak_rss(),
    }))
}

/// Median ms of one decoder step's linear layers alone (every decoder layer's projections,
/// gates and feed-forward on `beam` rows, the cross-attention output projection on its three
/// levels, and the vocabulary projection), straight from the blob through `Kernels::linear`.
fn step_linears_ms(blob: &Blob, kernels: Kernels, beam: usize, reps: usize) -> f64 {
    use TensorKind as K;
    let cfg = blob.config();
    let mut jobs = Vec::new();
    for l in 0..cfg.n_dec as usize {
        for (w, b, n) in [
            (K::SelfQW, K::SelfQB, beam),
            (K::SelfKW, K::SelfKB, beam),
            (K::SelfVW, K::SelfVB, beam),
            (K::SelfOW, K::SelfOB, beam),
            (K::CrossQW, K::CrossQB, beam),
            (K::CrossOW, K::CrossOB, 3 * beam),
            (K::Alpha1W, K::Alpha1B, beam),
            (K::Alpha2W, K::Alpha2B, beam),
            (K::Alpha3W, K::Alpha3B, beam),
            (K::DecFf1W, K::DecFf1B, beam),
            (K::DecFf2W, K::DecFf2B, beam),
        ] {
            jobs.push((blob.matrix(w, l), Some(blob.vector(b, l)), n));
        }
    }
    jobs.push((blob.matrix(K::VocabW, 0), None, beam));
    let kmax = jobs.iter().map(|(m, _, n)| m.cols * n).max().unwrap_or(0);
    let ymax = jobs.iter().map(|(m, _, n)| m.rows * n).max().unwrap_or(0);
    let x: Vec<f32> = (0..kmax)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let mut y = vec![0f32; ymax];
    // i16 storage: room and alignment for int16 activations too
    let (mut q, mut sc) = (vec![0i16; kmax], vec![0f32; 3 * beam]);
    let mut run = || {
        for (m, b, n) in &jobs {
            let mut qs = QuantScratch {
                q: bytemuck::cast_slice_mut(&mut q),
                scales: &mut sc,
            };
            kernels.linear(&x[..m.cols * n], *n, m, *b, &mut y[..m.rows * n], &mut qs);
        }
        black_box(&y);
    };
    median_ms(reps, &mut run)
}

/// Median ms of `reps` calls of `f`, after one untimed call.
fn median_ms(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            ms_since(t)
        })
        .collect();
    median(&mut ms)
}

/// Median ms of each part of a decoder step outside its linear layers, timed alone on
/// synthetic rows of the model's shapes with the engine's own functions, on `beam` rows.
struct StepParts {
    /// Self-attention over the keys of the middle step, and cross-attention to the three
    /// encoder levels' `max_regions` keys, every decoder layer (`attend`, and `attend_levels`,
    /// whose levels go over the threads).
    attention: f64,
    /// The five post-norm LayerNorms of each layer with their residual adds and `q_ok` masks,
    /// and the three sigmoid gates' weighted sum.
    norm_gates: f64,
    /// The vocabulary's log-softmax, every row.
    log_softmax: f64,
    /// The beam search's top-`beam` selection over `beam × vocab` candidates.
    top_k: f64,
}

fn step_parts_ms(
    cfg: &Config,
    kernels: Kernels,
    beam: usize,
    steps: usize,
    reps: usize,
) -> Result<StepParts> {
    use m2::model::attention::{attend, attend_levels, HeadKv};
    let (d, heads, d_k) = (cfg.d_model as usize, cfg.h as usize, cfg.d_k as usize);
    let (layers, v, r) = (
        cfg.n_dec as usize,
        cfg.vocab as usize,
        cfg.max_regions as usize,
    );
    let n = beam;
    let keys_self = steps.div_ceil(2).max(1);
    let mut rng = Rng(SEED + 2);
    let mut fill =
        |len: usize, s: f32| -> Vec<f32> { (0..len).map(|_| rng.range(-1.0, 1.0) * s).collect() };
    let q = fill(n * d, 1.0);
    let (ck, cv) = (fill(keys_self * n * d, 1.0), fill(keys_self * n * d, 1.0));
    // keys transposed in rows `key_stride(r)` apart (random padding columns: never used)
    let (k_len, kv_len) = (layers * 3 * m2::plan::key_stride(r) * d, layers * 3 * r * d);
    let (xk, xv) = (fill(k_len, 1.0), fill(kv_len, 1.0));
    let no_bias = vec![0f32; r];
    let (gamma, beta) = (fill(d, 1.0), fill(d, 0.1));
    let (alpha, c3) = (fill(3 * n * d, 2.0), fill(3 * n * d, 1.0));
    let mut logits = fill(n * v, 8.0);
    let mut x = fill(3 * n * d, 1.0);
    let (mut att, mut g) = (vec![0f32; 3 * n * d], vec![0f32; n * d]);
    // the decoder's own slots of a workspace, aligned as the engine's are: the cross-attention
    // keys and values, a row's self-attention scores (every head) and the cross-attention's
    // (the FFN's `hidden`, dead until the FFN)
    let plan = m2::plan::Plan::new(cfg, beam, r, steps);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, st) = ws.decoder_parts();
    st.cross_k[..k_len].copy_from_slice(&xk);
    st.cross_v[..kv_len].copy_from_slice(&xv);
    let (xk, xv) = (&st.cross_k[..k_len], &st.cross_v[..kv_len]);
    let (self_sc, cross_sc) = (st.scores, st.hidden);
    let time = |f: &mut dyn FnMut()| median_ms(reps, f);
    let attention = time(&mut || {
        kernels.vectorised(
            #[inline(always)]
            || {
                for l in 0..layers {
                    for i in 0..n {
                        attend(
                            &kernels,
                            &q[i * d..(i + 1) * d],
                            heads,
                            d_k,
                            keys_self,
                            |j| &ck[(j * n + i) * d..][..d],
                            |j| &cv[(j * n + i) * d..][..d],
                            |_| 0.0,
                            self_sc,
                            &mut att[i * d..(i + 1) * d],
                        );
                    }
                    // laid out per head as the decoder keeps them (`to_heads`)
                    let (layer_k, layer_v) = (k_len / layers, kv_len / layers);
                    let kv = HeadKv {
                        heads,
                        d_k,
                        kt: &xk[l * layer_k..(l + 1) * layer_k],
                        v: &xv[l * layer_v..(l + 1) * layer_v],
                        bias: &no_bias,
                        n_keys: r,
                    };
                    attend_levels(&kernels, &q, kv, cross_sc, &mut att);
                }
            },
        );
        black_box(&att);
    });
    let norm_gates = time(&mut || {
        kernels.vectorised(
            #[inline(always)]
            || {
                for _ in 0..layers {
                    // self, cross (3 levels as one batch), FFN: residual add, LayerNorm, q_ok mask
                    for rows in [n, 3 * n, n] {
                        let x = &mut x[..rows * d];
                        for (xv, a) in x.iter_mut().zip(&att) {
                            *xv = *xv * 0.5 + a;
                        }
                        kernels.layer_norm_rows(x, &gamma, &beta);
                        for xv in x.iter_mut() {
                            *xv *= 1.0;
                        }
                    }
                    g.fill(0.0);
                    for lvl in 0..3 {
                        let (a, c) = (&alpha[lvl * n * d..][..n * d], &c3[lvl * n * d..][..n * d]);
                        for ((gv, a), cv) in g.iter_mut().zip(a).zip(c) {
                            *gv += cv * m2::math::sigmoid(*a);
                        }
                    }
                }
            },
        );
        black_box((&x, &g));
    });
    let log_softmax = time(&mut || {
        // in place, again and again: the log-softmax of a log-softmax is itself (to rounding)
        kernels.log_softmax_rows(&mut logits, v);
        black_box(&logits);
    });
    let top_k = time(&mut || {
        let mut top = m2::search::beam::TopK::new(beam);
        for (b, row) in logits.chunks_exact(v).enumerate() {
            top.push_row(-(b as f32), row, b * v);
        }
        black_box(&top);
    });
    Ok(StepParts {
        attention,
        norm_gates,
        log_softmax,
        top_k,
    })
}

/// Weight bytes read once per image (encoder, cross-attention K/V) and once per decoder step
/// (every other decoder-layer tensor and the vocabulary projection). Embedding lookups read a
/// few rows only and are not counted.
fn weight_bytes(blob: &Blob) -> (u64, u64) {
    use TensorKind as K;
    let (mut per_image, mut per_step) = (0u64, 0u64);
    for t in blob.tensors() {
        let code = t.kind.code();
        let cross_kv = matches!(t.kind, K::CrossKW | K::CrossKB | K::CrossVW | K::CrossVB);
        if code < 40 || cross_kv {
            per_image += t.bytes();
        } else if code >= 50 || t.kind == K::VocabW {
            per_step += t.bytes();
        }
    }
    (per_image, per_step)
}

/// Multiply-adds of one caption: linears and attention (scores + weighted sums), the encoder
/// over all `max_regions` rows, step 0 with one row, later steps with `beam` rows.
fn caption_macs(cfg: &Config, beam: usize, steps: usize) -> u64 {
    let (d, din, f, m, v, r) = (
        cfg.d_model as u64,
        cfg.d_in as u64,
        cfg.d_ff as u64,
        cfg.m as u64,
        cfg.vocab as u64,
        cfg.max_regions as u64,
    );
    let n_enc = cfg.n_enc as u64;
    let n_dec = cfg.n_dec as u64;
    let enc = r * din * d + n_enc * (4 * r * d * d + 2 * r * d * f + 2 * r * (r + m) * d);
    let cross_kv = n_dec * n_enc * 2 * r * d * d;
    let mut dec = 0;
    for t in 0..steps as u64 {
        let n = if t == 0 { 1 } else { beam as u64 };
        let layer = 4 * n * d * d          // self q, k, v, o
            + 2 * n * (t + 1) * d          // self attention
            + n * d * d                    // cross q (shared by the levels)
            + n_enc * 2 * n * r * d        // cross attention, one per encoder level
            + n_enc * n * d * d            // cross o, per level
            + n_enc * n * 2 * d * d        // gates
            + 2 * n * d * f; //               FFN
        dec += n_dec * layer + n * d * v;
    }
    enc + cross_kv + dec
}

/// Peak resident set size of this process so far (Linux `VmHWM`), in bytes; 0 where unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

// ---- the machine -------------------------------------------------------------------------------

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    // x86: "model name"; a Raspberry Pi: the board from the device tree, the core from "CPU part"
    let board = std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|s| s.trim_end_matches('\0').trim().to_string());
    let core = field("CPU part").map(|p| match p.as_str() {
        "0xd03" => "Cortex-A53".to_string(),
        "0xd08" => "Cortex-A72".to_string(),
        "0xd0b" => "Cortex-A76".to_string(),
        "0xd05" => "Cortex-A55".to_string(),
        "0xc07" => "Cortex-A7".to_string(),
        other => format!("ARM part {other}"),
    });
    let cpu = field("model name")
        .filter(|s| !s.starts_with("ARMv"))
        .or(core)
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut caches = Vec::new();
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| {
            std::fs::read_to_string(format!("{dir}/{f}"))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        caches.push(format!("L{level} {} {size}", kind.to_lowercase()));
    }
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    json!({
        "cpu": cpu,
        "read_gb_per_s": read_bandwidth(mem.map_or(1 << 30, |kb| kb * 1024)),
        "board": board,
        "arch": std::env::consts::ARCH,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "kernel_paths": Kernels::available().map(|i| i.name()).collect::<Vec<_>>(),
        "best_kernel": Kernels::detect().isa().name(),
        "caches": caches,
        "memory_bytes": mem.map(|kb| kb * 1024),
        "m2_version": env!("CARGO_PKG_VERSION"),
    })
}

/// One core's streaming read bandwidth from memory, GB/s (best of 5 passes over a buffer of
/// 256 MiB, or an eighth of `ram` if less: past every cache of a Pi or a desktop part) — the
/// rate at which a memory-bound decoder step can read its weights.
fn read_bandwidth(ram: u64) -> f64 {
    let words = (256usize << 20).min((ram / 8) as usize) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        // eight independent sums (two AVX2 / four NEON registers): bound by loads, not adds
        let mut acc = [0u64; 8];
        for c in black_box(&buf).chunks_exact(8) {
            for j in 0..8 {
                acc[j] = acc[j].wrapping_add(c[j]);
            }
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (words * 8) as f64 / best / 1e9
}

fn config_json(c: &Config) -> Value {
    json!({"d_in": c.d_in, "d_model": c.d_model, "h": c.h, "d_ff": c.d_ff, "n_enc": c.n_enc,
           "n_dec": c.n_dec, "m": c.m, "vocab": c.vocab, "max_regions": c.max_regions})
}

// ---- output ------------------------------------------------------------------------------------

/// A one-line status on a terminal's stderr, rewritten in place; nothing on a pipe.
struct Progress {
    on: bool,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress { on }
    }
    fn show(&self, s: &str) {
        if self.on {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{s}");
            let _ = e.flush();
        }
    }
    fn say(&self, s: &str) {
        self.show(&format!("{s} …"));
    }
    fn clear(&self) {
        self.show("");
    }
}

fn print_table(machine: &Value, model: &Value, settings: &Value, rows: &[Value]) -> Result<()> {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    outln!(
        "machine: {}{}, {} cores, {}, memory read {:.1} GB/s (one core), kernel paths {} ({})",
        s(&machine["cpu"]),
        machine["board"]
            .as_str()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default(),
        machine["cores"],
        machine["caches"]
            .as_array()
            .map(|c| c.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        machine["read_gb_per_s"].as_f64().unwrap_or(f64::NAN),
        machine["kernel_paths"]
            .as_array()
            .map(|c| c.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        s(&machine["arch"]),
    );
    outln!(
        "model:   {}; beam {}, {} steps, {} timed captions after {} warm-up (medians, wall clock)",
        s(&model["source"]),
        settings["beam"],
        settings["max_len"],
        settings["n"],
        settings["warmup"]
    );
    outln!(
        "{:<5} {:<8} {:>3} | {:>9} {:>9} {:>9} | {:>8} | {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6} {:>6} | {:>7} {:>7} | {:>8}",
        "dtype",
        "kernel",
        "thr",
        "ms/capt",
        "min",
        "max",
        "encoder",
        "ms/step",
        "linear",
        "other",
        "att",
        "norm",
        "lsm",
        "top-k",
        "GMAC/s",
        "GB/s",
        "peak RSS"
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        outln!(
            "{:<5} {:<8} {:>3} | {:>9.1} {:>9.1} {:>9.1} | {:>8.1} | {:>8.2} {:>8.2} {:>8.2} | {:>6.3} {:>6.3} {:>6.3} {:>6.3} | {:>7.1} {:>7.2} | {:>5} MB",
            s(&r["dtype"]),
            s(&r["kernel"]),
            r["threads"],
            f("ms_per_caption"),
            f("ms_min"),
            f("ms_max"),
            f("encoder_ms"),
            f("ms_per_step"),
            f("step_linear_ms"),
            f("step_other_ms"),
            f("step_attention_ms"),
            f("step_norm_gates_ms"),
            f("step_log_softmax_ms"),
            f("step_top_k_ms"),
            f("gmac_per_s"),
            f("weight_gb_per_s"),
            r["peak_rss_bytes"].as_u64().unwrap_or(0) >> 20
        );
    }
    outln!("(encoder and ms/step from the same captions: each caption's (total − its encoder) / steps, median; linear = the step's linear layers timed alone; other = the rest: attention, softmax, LayerNorm, gates, log-softmax, top-k; of which, each timed alone: att = self- and cross-attention, norm = LayerNorms, residuals and gates, lsm = the vocabulary's log-softmax, top-k = the beam's selection. Share: m2 bench --json)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_model_is_the_same_bits_every_time_and_packs_at_every_dtype() {
        let cfg = Config::TINY;
        let a = synthetic_weights(&cfg, SEED);
        let b = synthetic_weights(&cfg, SEED);
        assert!(a.iter().zip(&b).all(|(x, y)| x
            .2
            .iter()
            .map(|v| v.to_bits())
            .eq(y.2.iter().map(|v| v.to_bits()))));
        assert_eq!(a.len(), TensorKind::required_count(&cfg));
        // the generator's stream is fixed forever (figures from different builds compare)
        // (seed 0's first output is SplitMix64's published reference value)
        assert_eq!(Rng(0).next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(Rng(SEED).next(), 0xa56b_dab8_3798_234e);
        for dt in [DType::F32, DType::F16, DType::I8, DType::I8A16] {
            let buf = pack(&cfg, &a, dt).unwrap();
            let blob = buf.blob().unwrap();
            assert_eq!(blob.matrix(TensorKind::VocabW, 0).dtype(), dt);
        }
        let f = features(&cfg, SEED, 2);
        assert_eq!(f[0].len(), (cfg.max_regions * cfg.d_in) as usize);
        let nonzero = f[0].iter().filter(|&&v| v > 0.0).count() as f64 / f[0].len() as f64;
        assert!(
            f[0].iter().all(|&v| v >= 0.0) && (0.2..0.5).contains(&nonzero),
            "{nonzero}"
        );
    }

    /// The decode step's parts that run on the pool's workers (the cross-attention's levels,
    /// the log-softmax's rows) leave the captions and every log-probability bit as one thread
    /// does, on every kernel path: a model just large enough that they do go to the workers
    /// (a level's 2·5·50·128 multiply-adds ≥ `PAR_MIN_F32_MACS`, shares of two or three rows
    /// of 9 000 words ≥ `PAR_MIN_EXPS`).
    #[test]
    fn threads_give_the_one_thread_captions_bit_for_bit() {
        let cfg = Config {
            d_model: 128,
            h: 2,
            d_k: 64,
            d_v: 64,
            d_ff: 256,
            n_dec: 2,
            vocab: 9000,
            max_regions: 50,
            ..Config::TINY
        };
        const _: () = assert!(2 * 5 * 50 * 128 >= m2::kernels::PAR_MIN_F32_MACS);
        const _: () = assert!(2 * 9000 >= m2::kernels::PAR_MIN_EXPS);
        let buf = pack(&cfg, &synthetic_weights(&cfg, SEED), DType::I8).unwrap();
        let blob = buf.blob().unwrap();
        let feats = features(&cfg, SEED, 2);
        let opts = SearchOptions {
            beam: 5,
            max_len: 4,
        };
        for isa in Kernels::available() {
            let run = |threads: usize, image: &[f32]| {
                let model = M2::new(&blob, Kernels::with_isa(isa).unwrap().with_threads(threads));
                let plan = model.plan(opts.beam, opts.max_len);
                let mut mem = vec![0f32; plan.total_floats()];
                let mut ws = Workspace::new(&mut mem, plan).unwrap();
                let out = m2::search::beam_search(&model, image, &mut ws, &opts, |_| {}).unwrap();
                out.beams
                    .iter()
                    .map(|b| {
                        let lp: Vec<u32> = b.logprobs.iter().map(|v| v.to_bits()).collect();
                        (b.tokens.to_vec(), lp, b.score.to_bits())
                    })
                    .collect::<Vec<_>>()
            };
            for image in &feats {
                let one = run(1, image);
                for threads in [2, 3, 4] {
                    assert_eq!(run(threads, image), one, "{isa} {threads} threads");
                }
            }
        }
    }
}
