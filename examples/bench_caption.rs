//! Caption latency of a blob, measured inside one process (no process start, no page-in in the
//! timed region), plus the two machine figures the floors need. Used by `bench/coco.sh`.
//!
//! ```text
//! cargo run --release --example bench_caption -- caption --model M.m2 --features F.npy \
//!     [--n 8] [--warmup 2] [--threads 1] [--beam 5] [--max-len 20]
//! cargo run --release --example bench_caption -- memcpy [--mb 256]
//! cargo run --release --example bench_caption -- peak
//! cargo run --release --example bench_caption -- linears --model M.m2 [--threads 1] [--reps 50]
//! ```
//! `M2_KERNEL=scalar|avx2|avxvnni` forces a kernel path, as for the CLI.
//!
//! Every subcommand prints one JSON object on stdout:
//! * `caption`: ms per caption (min, median, mean over `n` captions after `warmup`, cycling
//!   over the images of `F.npy`; each image's rows are passed as the CLI passes them, i.e. all
//!   `max_regions` rows including zero padding), the encoder's share (`encode_ms`, measured
//!   separately), the weight bytes a caption reads (encoder + cross K/V once, the decoder's
//!   per-step weights once per step, from the blob's tensor table), the multiply-adds of a
//!   caption, the workspace bytes of the plan, the best caption, and the process's peak RSS.
//! * `memcpy`: copy bandwidth (bytes copied per second, best of several runs) for a buffer
//!   larger than the L3 (`dram_gbs`) and for one that fits in it (`l3_gbs`), and the read-only
//!   streaming bandwidth of the same sizes (`read_gbs`, `l3_read_gbs`; a copy moves every byte
//!   twice, a weight stream once).
//! * `linears`: one decode step's linear layers alone (3 decoder layers + vocabulary, 5 rows,
//!   the cross-attention output projection over 15 rows), straight from the blob through
//!   `Kernels::linear`: median ms per step — the kernels' share of a decode step.
//! * `peak`: one core's register-resident multiply-add rate for the AVX2 instruction sequences
//!   the kernels use: f32 FMA (`f32_gmacs`, independent FMAs on registers) and the int8 kernel's
//!   2 × 4 tile loop over L1-resident rows (`i8_gmacs`: `vpabsb`, then `vpsignb + vpmaddubsw +
//!   vpmaddwd + vpaddd` per 32 MACs) — the compute ceilings of the f32/f16 and int8 paths.

use m2::blob::{MappedBlob, TensorKind};
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, SearchOptions};
use m2::workspace::Workspace;
use std::hint::black_box;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: usize) -> Res<usize> {
    Ok(match arg(args, name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name}: not a number: {v}"))?,
        None => default,
    })
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("caption") => caption(&args[1..]),
        Some("memcpy") => memcpy(&args[1..]),
        Some("peak") => peak(),
        Some("linears") => linears(&args[1..]),
        _ => Err(
            "usage: bench_caption (caption --model M --features F | memcpy | peak) [options]"
                .into(),
        ),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident set size of this process so far (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Weight bytes read once per image (encoder, cross-attention K/V) and once per decoder step
/// (every other decoder-layer tensor and the vocabulary projection). Embedding lookups read a
/// few rows only and are not counted.
fn weight_bytes(blob: &m2::Blob) -> (u64, u64) {
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

/// Multiply-adds of one caption: linears and attention (scores + weighted sums), encoder over
/// all `R` rows (as the CLI passes them), step 0 with one row, later steps with `beam` rows.
fn caption_macs(cfg: &m2::Config, beam: usize, steps: usize) -> u64 {
    let (d, din, f, m, v, r) = (
        cfg.d_model as u64,
        cfg.d_in as u64,
        cfg.d_ff as u64,
        cfg.m as u64,
        cfg.vocab as u64,
        cfg.max_regions as u64,
    );
    let n_dec = cfg.n_dec as u64;
    let enc = r * din * d + 3 * (4 * r * d * d + 2 * r * d * f + 2 * r * (r + m) * d);
    let cross_kv = n_dec * 2 * 3 * r * d * d;
    let mut dec = 0;
    for t in 0..steps as u64 {
        let n = if t == 0 { 1 } else { beam as u64 };
        let layer = 4 * n * d * d          // self q, k, v, o
            + 2 * n * (t + 1) * d          // self attention
            + n * d * d                    // cross q (shared by the 3 levels)
            + 3 * 2 * n * r * d            // cross attention, 3 levels
            + 3 * n * d * d                // cross o, 3 levels
            + 3 * n * 2 * d * d            // gates
            + 2 * n * d * f; //               FFN
        dec += n_dec * layer + n * d * v;
    }
    enc + cross_kv + dec
}

fn caption(args: &[String]) -> Res<()> {
    let model_path = arg(args, "--model").ok_or("--model required")?;
    let feat_path = arg(args, "--features").ok_or("--features required")?;
    let n = num(args, "--n", 8)?.max(1);
    let warmup = num(args, "--warmup", 2)?;
    let threads = num(args, "--threads", 1)?.max(1);
    let opts = SearchOptions {
        beam: num(args, "--beam", 5)?,
        max_len: num(args, "--max-len", 20)?,
    };

    let mapped = MappedBlob::open(&model_path)?;
    let blob = mapped.blob()?;
    let cfg = *blob.config();
    let kernels = Kernels::from_env()
        .map_err(|e| e.to_string())?
        .with_threads(threads);
    let model = M2::new(&blob, kernels);
    let dtype = blob.matrix(TensorKind::VocabW, 0).dtype();

    let f = m2::input::read_features(feat_path.as_ref(), cfg.d_in as usize)?;
    let (images, rows, d_in, feats) = (f.images, f.regions, f.d_in, f.data);
    let rows_used = rows.min(cfg.max_regions as usize);
    let image = |k: usize| &feats[(k % images) * rows * d_in..][..rows_used * d_in];

    let plan = model.plan(opts.beam, opts.max_len);
    let mut mem = vec![0f32; plan.total_floats()];
    let mut ws = Workspace::new(&mut mem, plan)?;

    let mut best = String::new();
    for k in 0..warmup {
        let out = beam_search(&model, image(k), &mut ws, &opts, |_| {})?;
        if k == 0 {
            let toks = &out.best().ok_or("no beam")?.tokens;
            best = m2::text::caption_string(toks, |id| blob.token(id), false)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    let mut ms = Vec::with_capacity(n);
    for k in 0..n {
        let t = Instant::now();
        let out = beam_search(&model, image(k), &mut ws, &opts, |_| {})?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        black_box(&out);
        if warmup == 0 && k == 0 {
            let toks = &out.best().ok_or("no beam")?.tokens;
            best = m2::text::caption_string(toks, |id| blob.token(id), false)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    // the encoder alone (with the cross-attention K/V precompute), same images
    let mut enc = Vec::with_capacity(n.min(4));
    for k in 0..n.min(4) {
        let t = Instant::now();
        model.encode(image(k), &mut ws)?;
        enc.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("per caption (ms): {ms:.1?}");
        // per-step times of one more caption of each image (the callback runs after each step)
        for k in 0..images.min(n) {
            let mut last = Instant::now();
            let mut steps = Vec::new();
            beam_search(&model, image(k), &mut ws, &opts, |_| {
                steps.push(last.elapsed().as_secs_f64() * 1e3);
                last = Instant::now();
            })?;
            eprintln!("image {k} per step (ms; step 0 includes the encoder): {steps:.2?}");
        }
    }
    // images whose every row is a region (no zero padding): the engine's worst case, since the
    // padding rows of the others are encoded once
    let regions = |k: usize| {
        image(k)
            .chunks_exact(d_in)
            .rposition(|r| r.iter().any(|&v| v != 0.0))
            .map_or(0, |i| i + 1)
    };
    let mut full: Vec<f64> = (0..n)
        .filter(|&k| regions(k % images) == rows_used)
        .map(|k| ms[k])
        .collect();
    let med_full = if full.is_empty() {
        f64::NAN
    } else {
        median(&mut full)
    };
    let region_counts: Vec<String> = (0..images).map(|k| regions(k).to_string()).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let min = ms.iter().cloned().fold(f64::INFINITY, f64::min);
    let med = median(&mut ms);
    let enc_ms = median(&mut enc);
    let (per_image, per_step) = weight_bytes(&blob);
    let bytes = per_image + opts.max_len as u64 * per_step;
    let macs = caption_macs(&cfg, opts.beam, opts.max_len);
    println!(
        "{{\"model\": {}, \"dtype\": \"{:?}\", \"isa\": \"{}\", \"threads\": {}, \"beam\": {}, \"max_len\": {}, \
         \"n\": {}, \"warmup\": {}, \"min_ms\": {:.3}, \"median_ms\": {:.3}, \"mean_ms\": {:.3}, \"encode_ms\": {:.3}, \
         \"median_ms_full\": {:.3}, \"full_captions\": {}, \"regions\": [{}], \
         \"blob_bytes\": {}, \"weight_bytes_per_image\": {}, \"weight_bytes_per_step\": {}, \
         \"weight_bytes_per_caption\": {}, \"macs_per_caption\": {}, \"workspace_bytes\": {}, \
         \"peak_rss_bytes\": {}, \"caption\": {}}}",
        json_str(&model_path),
        dtype,
        kernels.isa(),
        threads,
        opts.beam,
        opts.max_len,
        n,
        warmup,
        min,
        med,
        mean,
        enc_ms,
        med_full,
        full.len(),
        region_counts.join(", "),
        blob.len(),
        per_image,
        per_step,
        bytes,
        macs,
        plan.total_bytes(),
        peak_rss(),
        json_str(&best)
    );
    Ok(())
}

fn linears(args: &[String]) -> Res<()> {
    use TensorKind as K;
    let model_path = arg(args, "--model").ok_or("--model required")?;
    let threads = num(args, "--threads", 1)?.max(1);
    let reps = num(args, "--reps", 50)?.max(1);
    let mapped = MappedBlob::open(&model_path)?;
    let blob = mapped.blob()?;
    let cfg = *blob.config();
    let kernels = Kernels::from_env()
        .map_err(|e| e.to_string())?
        .with_threads(threads);
    let (d, f, v) = (cfg.d_model as usize, cfg.d_ff as usize, cfg.vocab as usize);
    let beam = 5;
    // (matrix, bias, rows of activations)
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
    let x: Vec<f32> = (0..kmax)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let mut y = vec![0f32; beam * v.max(f).max(3 * d)];
    let (mut q, mut sc) = (vec![0i8; kmax], vec![0f32; 3 * beam]);
    let mut run = || {
        for (m, b, n) in &jobs {
            let mut qs = m2::kernels::QuantScratch {
                q: &mut q,
                scales: &mut sc,
            };
            kernels.linear(&x, *n, m, *b, &mut y, &mut qs);
        }
        black_box(&y);
    };
    run();
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        run();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let min = ms.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "{{\"model\": {}, \"isa\": \"{}\", \"threads\": {}, \"linears\": {}, \"median_ms\": {:.3}, \"min_ms\": {:.3}}}",
        json_str(&model_path),
        kernels.isa(),
        threads,
        jobs.len(),
        median(&mut ms),
        min
    );
    Ok(())
}

/// Best-of-`reps` copy bandwidth of `bytes`-sized buffers, in GB/s (bytes copied per second).
fn copy_gbs(bytes: usize, reps: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src); // fault the pages in
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}

/// Best-of-`reps` read-only streaming bandwidth of a `bytes`-sized buffer, in GB/s (a
/// vectorised wrapping sum: what streaming weights through a kernel costs at best).
fn read_gbs(bytes: usize, reps: usize) -> f64 {
    let src: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut acc = [0u64; 8];
        for c in black_box(&src).chunks_exact(8) {
            for j in 0..8 {
                acc[j] = acc[j].wrapping_add(c[j]);
            }
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}

fn memcpy(args: &[String]) -> Res<()> {
    let mb = num(args, "--mb", 256)?.max(1);
    let dram = copy_gbs(mb << 20, 8);
    let read = read_gbs(mb << 20, 8);
    // 2 × 8 MiB: fits the 32 MiB L3 (source and destination together), not the L2
    let l3 = copy_gbs(8 << 20, 40);
    let l3_read = read_gbs(16 << 20, 20);
    println!(
        "{{\"dram_mb\": {mb}, \"dram_gbs\": {dram:.3}, \"read_gbs\": {read:.3}, \"l3_mb\": 8, \"l3_gbs\": {l3:.3}, \"l3_read_gbs\": {l3_read:.3}}}"
    );
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod peak_x86 {
    use core::arch::x86_64::*;

    /// `iters` × 12 independent 8-lane FMAs: 96 MACs per iteration.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_fma(iters: usize, seed: f32) -> f32 {
        let x = _mm256_set1_ps(seed);
        let w = _mm256_set1_ps(0.999_9);
        let mut a = [_mm256_set1_ps(seed); 12];
        for _ in 0..iters {
            for acc in a.iter_mut() {
                *acc = _mm256_fmadd_ps(x, w, *acc);
            }
        }
        let mut s = _mm256_setzero_ps();
        for acc in a {
            s = _mm256_add_ps(s, acc);
        }
        let mut o = [0f32; 8];
        // SAFETY: `o` is 32 writable bytes.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), s) };
        o.iter().sum()
    }

    /// The AVX-VNNI kernel's int8 inner loop (its decode tile, 2 weight rows × 5 activation
    /// rows: `vpxor` per weight vector to offset it to unsigned, then one `vpdpbusd` per pair,
    /// 32 MACs each) over L1-resident rows of `k` bytes, `reps` times: 320 MACs per column.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn i8_vnni_tile(w: &[i8], x: &[i8], k: usize, reps: usize) -> i32 {
        let bias = _mm256_set1_epi8(-128);
        let mut acc = [[_mm256_setzero_si256(); 5]; 2];
        let wp = [w.as_ptr(), w[k..].as_ptr()];
        let xp: [*const i8; 5] = core::array::from_fn(|t| x[t * k..].as_ptr());
        for _ in 0..reps {
            let mut c = 0;
            while c + 32 <= k {
                // SAFETY: rows of `k` bytes, c + 32 <= k.
                unsafe {
                    let wu: [__m256i; 2] = core::array::from_fn(|j| {
                        _mm256_xor_si256(_mm256_loadu_si256(wp[j].add(c) as *const __m256i), bias)
                    });
                    for t in 0..5 {
                        let xv = _mm256_loadu_si256(xp[t].add(c) as *const __m256i);
                        for j in 0..2 {
                            acc[j][t] = _mm256_dpbusd_avx_epi32(acc[j][t], wu[j], xv);
                        }
                    }
                }
                c += 32;
            }
        }
        fold(acc)
    }

    /// Folds a tile's accumulators into one number, so the loop's work cannot be optimised away.
    #[target_feature(enable = "avx2")]
    fn fold<const T: usize>(acc: [[__m256i; T]; 2]) -> i32 {
        let mut s = _mm256_setzero_si256();
        for row in acc {
            for a in row {
                s = _mm256_add_epi32(s, a);
            }
        }
        _mm256_extract_epi32::<0>(s) + _mm256_extract_epi32::<5>(s)
    }

    /// The AVX2 kernel's int8 inner loop (a 2 weight rows × 4 activation rows tile: `vpabsb`
    /// per weight vector, then `vpsignb + vpmaddubsw + vpmaddwd + vpaddd` per pair, 32 MACs
    /// each) over L1-resident rows of `k` bytes, `reps` times: 256 MACs per 32-byte column.
    #[target_feature(enable = "avx2")]
    pub unsafe fn i8_tile(w: &[i8], x: &[i8], k: usize, reps: usize) -> i32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 4]; 2];
        let wp = [w.as_ptr(), w[k..].as_ptr()];
        let xp: [*const i8; 4] = core::array::from_fn(|t| x[t * k..].as_ptr());
        for _ in 0..reps {
            let mut c = 0;
            while c + 32 <= k {
                // SAFETY: rows of `k` bytes, c + 32 <= k.
                unsafe {
                    let wv: [__m256i; 2] =
                        core::array::from_fn(
                            |j| _mm256_loadu_si256(wp[j].add(c) as *const __m256i),
                        );
                    let aw: [__m256i; 2] = core::array::from_fn(|j| _mm256_abs_epi8(wv[j]));
                    for t in 0..4 {
                        let xv = _mm256_loadu_si256(xp[t].add(c) as *const __m256i);
                        for j in 0..2 {
                            let p = _mm256_maddubs_epi16(aw[j], _mm256_sign_epi8(xv, wv[j]));
                            acc[j][t] = _mm256_add_epi32(acc[j][t], _mm256_madd_epi16(p, ones));
                        }
                    }
                }
                c += 32;
            }
        }
        fold(acc)
    }
}

fn peak() -> Res<()> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            println!("{{\"f32_gmacs\": null, \"i8_gmacs\": null, \"i8_vnni_gmacs\": null}}");
            return Ok(());
        }
        // Many short runs (a few ms each), best kept: on a shared machine one of them gets a
        // whole time slice.
        let iters = 1_000_000;
        const K8: usize = 512;
        const I8_REPS: usize = 20_000;
        let w8: Vec<i8> = (0..2 * K8).map(|i| (i * 37 % 255) as u8 as i8).collect();
        let x8: Vec<i8> = (0..5 * K8).map(|i| (i * 91 % 253) as u8 as i8).collect();
        let vnni = std::is_x86_feature_detected!("avxvnni");
        let mut f = f64::INFINITY;
        let mut q = f64::INFINITY;
        let mut qv = f64::INFINITY;
        for _ in 0..40 {
            let t = Instant::now();
            // SAFETY: AVX2 and FMA detected above.
            black_box(unsafe { peak_x86::f32_fma(iters, black_box(1.0)) });
            f = f.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            // SAFETY: AVX2 detected above; w holds 2 rows, x 4 rows of K8 bytes.
            black_box(unsafe { peak_x86::i8_tile(black_box(&w8), black_box(&x8), K8, I8_REPS) });
            q = q.min(t.elapsed().as_secs_f64());
            if vnni {
                let t = Instant::now();
                // SAFETY: AVX2 and AVX-VNNI detected; w holds 2 rows, x 5 rows of K8 bytes.
                black_box(unsafe {
                    peak_x86::i8_vnni_tile(black_box(&w8), black_box(&x8), K8, I8_REPS)
                });
                qv = qv.min(t.elapsed().as_secs_f64());
            }
        }
        let f32_gmacs = (iters * 96) as f64 / f / 1e9;
        let i8_gmacs = (I8_REPS * K8 / 32 * 256) as f64 / q / 1e9;
        let vnni_gmacs = if vnni {
            format!("{:.2}", (I8_REPS * K8 / 32 * 320) as f64 / qv / 1e9)
        } else {
            "null".into()
        };
        println!(
            "{{\"f32_gmacs\": {f32_gmacs:.2}, \"i8_gmacs\": {i8_gmacs:.2}, \"i8_vnni_gmacs\": {vnni_gmacs}}}"
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("{{\"f32_gmacs\": null, \"i8_gmacs\": null, \"i8_vnni_gmacs\": null}}");
    Ok(())
}
