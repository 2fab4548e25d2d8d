//! Kernel throughput per ISA path, against the memory floor, in one run (< 2 min):
//!
//! ```text
//! cargo bench --bench kernels              # everything
//! cargo bench --bench kernels -- --quick   # shorter timing budget
//! ```
//!
//! 1. memcpy bandwidth (64 MiB, larger than the L3), the floor's denominator;
//! 2. per-kernel GMAC/s for the COCO decode shapes (n = 5 beams) and encoder shapes (n = 50
//!    regions), f32 / f16 / int8, every available path, weights hot in cache, each with its
//!    time over the floor `weight bytes / memcpy bandwidth`;
//! 3. one whole decode step's linears (3 decoder layers + vocabulary, 21 MB of int8 weights,
//!    all distinct buffers so nothing stays in L2) per path and dtype, against the floor, next to
//!    a naive auto-vectorised int8 GEMM (the scalar loop compiled for the baseline target and for
//!    AVX2) as the in-run baseline.
//!
//! Figures only; nothing here asserts timing.

use half::f16;
use m2::blob::{Matrix, WeightData};
#[cfg(target_arch = "x86_64")]
use m2::kernels::Isa;
use m2::kernels::{scalar, Kernels, QuantScratch};
use std::hint::black_box;
use std::time::{Duration, Instant};

const D: usize = 512;
const D_FF: usize = 2048;
const D_IN: usize = 2048;
const VOCAB: usize = 10201;
const BEAM: usize = 5;
const REGIONS: usize = 50;
const DEC_LAYERS: usize = 3;

/// Median seconds per call of `f`, over at least `min_iters` calls and `budget` of wall time.
fn time(budget: Duration, min_iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < min_iters || (start.elapsed() < budget && v.len() < 100_000) {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A deterministic pseudo-random stream in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.next() * scale).collect()
    }
}

/// One weight matrix in all three storage types.
struct Weights {
    m: usize,
    k: usize,
    f32: Vec<f32>,
    f16: Vec<f16>,
    q: Vec<i8>,
    s: Vec<f32>,
}

impl Weights {
    fn new(rng: &mut Rng, m: usize, k: usize) -> Weights {
        let f32 = rng.vec(m * k, 0.05);
        let f16 = f32.iter().map(|v| f16::from_f32(*v)).collect();
        let (mut q, mut s) = (vec![0i8; m * k], vec![0f32; m]);
        scalar::quantize_rows(&f32, m, k, &mut q, &mut s);
        Weights {
            m,
            k,
            f32,
            f16,
            q,
            s,
        }
    }
    fn matrix(&self, dt: Dt) -> Matrix<'_> {
        let data = match dt {
            Dt::F32 => WeightData::F32(&self.f32),
            Dt::F16 => WeightData::F16(&self.f16),
            Dt::I8 => WeightData::I8 {
                q: &self.q,
                scales: &self.s,
                act16: false,
            },
        };
        Matrix {
            rows: self.m,
            cols: self.k,
            data,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dt {
    F32,
    F16,
    I8,
}
impl Dt {
    fn bytes(self) -> usize {
        match self {
            Dt::F32 => 4,
            Dt::F16 => 2,
            Dt::I8 => 1,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dt::F32 => "f32",
            Dt::F16 => "f16",
            Dt::I8 => "int8",
        }
    }
}

/// Activations and scratch for `n` rows of up to `k_max` inputs and `m_max` outputs.
struct Bufs {
    x: Vec<f32>,
    y: Vec<f32>,
    q: Vec<i8>,
    s: Vec<f32>,
}
impl Bufs {
    fn new(rng: &mut Rng, n: usize, k_max: usize, m_max: usize) -> Bufs {
        Bufs {
            x: rng.vec(n * k_max, 2.0),
            y: vec![0.0; n * m_max],
            q: vec![0; n * k_max],
            s: vec![0.0; n],
        }
    }
    fn linear(&mut self, kern: &Kernels, n: usize, w: &Matrix<'_>) {
        let mut qs = QuantScratch {
            q: &mut self.q,
            scales: &mut self.s,
        };
        kern.linear(black_box(&self.x), n, w, None, &mut self.y, &mut qs);
        black_box(&self.y);
    }
}

/// The naive int8 baseline: `scalar::gemm_i8`'s loop (per weight row, per activation row, an
/// i8·i8→i32 dot the compiler auto-vectorises), after the same per-row quantisation.
#[inline(always)]
fn naive_i8_body(x: &[f32], n: usize, w: &Weights, q: &mut [i8], s: &mut [f32], y: &mut [f32]) {
    let (k, m) = (w.k, w.m);
    scalar::quantize_rows(x, n, k, &mut q[..n * k], &mut s[..n]);
    for r in 0..m {
        let wr = &w.q[r * k..(r + 1) * k];
        for i in 0..n {
            let xr = &q[i * k..(i + 1) * k];
            let acc: i32 = xr.iter().zip(wr).map(|(a, b)| *a as i32 * *b as i32).sum();
            y[i * m + r] = acc as f32 * s[i] * w.s[r];
        }
    }
}

fn naive_i8(b: &mut Bufs, n: usize, w: &Weights) {
    naive_i8_body(&b.x, n, w, &mut b.q, &mut b.s, &mut b.y);
    black_box(&b.y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn naive_i8_avx2(b: &mut Bufs, n: usize, w: &Weights) {
    naive_i8_body(&b.x, n, w, &mut b.q, &mut b.s, &mut b.y);
    black_box(&b.y);
}

/// Bytes per second of a `copy_from_slice` of `len` bytes (buffers larger than the L3).
fn memcpy_bandwidth(len: usize, budget: Duration) -> f64 {
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut dst = vec![0u8; len];
    let t = time(budget, 5, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    len as f64 / t
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 60 } else { 250 });
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let paths: Vec<Kernels> = Kernels::available()
        .map(|i| Kernels::with_isa(i).unwrap())
        .collect();
    println!(
        "m2 kernel benchmark — paths available: {}",
        paths
            .iter()
            .map(|k| k.isa().name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "(detected: {}; threads available: {})\n",
        Kernels::detect().isa(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let bw = memcpy_bandwidth(64 << 20, budget * 4);
    println!(
        "memcpy bandwidth (64 MiB copy): {:.2} GB/s   [floor = weight bytes / this]\n",
        bw / 1e9
    );

    // ---- per-kernel throughput ------------------------------------------------------------
    let shapes: [(usize, usize, usize, &str); 8] = [
        (BEAM, D, D, "decode q/k/v/o"),
        (BEAM, D_FF, D, "decode ff1"),
        (BEAM, D, D_FF, "decode ff2"),
        (BEAM, VOCAB, D, "decode vocab"),
        (REGIONS, D, D_IN, "encoder input fc"),
        (REGIONS, D, D, "encoder q/k/v/o"),
        (REGIONS, D_FF, D, "encoder ff1"),
        (REGIONS, D, D_FF, "encoder ff2"),
    ];
    println!("## Per-kernel throughput (weights hot in cache; floor = weight bytes / memcpy bandwidth)\n");
    println!("| shape (n × out × in) | layer | dtype | path | µs | GMAC/s | time / floor |");
    println!("|---|---|---|---|---:|---:|---:|");
    let mut bufs = Bufs::new(&mut rng, REGIONS, D_IN.max(D_FF), VOCAB);
    for (n, m, k, what) in shapes {
        let w = Weights::new(&mut rng, m, k);
        let macs = (n * m * k) as f64;
        for dt in [Dt::F32, Dt::F16, Dt::I8] {
            let floor = (m * k * dt.bytes()) as f64 / bw;
            let mat = w.matrix(dt);
            let row = |label: &str, t: f64| {
                println!(
                    "| {n} × {m} × {k} | {what} | {} | {label} | {:.1} | {:.1} | {:.2} |",
                    dt.name(),
                    t * 1e6,
                    macs / t / 1e9,
                    t / floor
                );
            };
            if dt == Dt::I8 {
                let t = time(budget, 3, || naive_i8(&mut bufs, n, &w));
                row("naive (auto-vec)", t);
                #[cfg(target_arch = "x86_64")]
                if Isa::Avx2.is_available() {
                    // SAFETY: AVX2 and FMA were detected.
                    let t = time(budget, 3, || unsafe { naive_i8_avx2(&mut bufs, n, &w) });
                    row("naive (auto-vec AVX2)", t);
                }
            }
            for kern in &paths {
                let t = time(budget, 3, || bufs.linear(kern, n, &mat));
                row(kern.isa().name(), t);
            }
        }
    }

    // ---- one decode step --------------------------------------------------------------------
    let mut layers: Vec<(usize, usize)> = Vec::new();
    for _ in 0..DEC_LAYERS {
        layers.extend([(D, D); 6]); // self-attention q, k, v, o; cross-attention q, o
        layers.extend([(D, 2 * D); 3]); // fc_alpha 1..3
        layers.extend([(D_FF, D), (D, D_FF)]); // FFN
    }
    layers.push((VOCAB, D));
    let step: Vec<Weights> = layers
        .iter()
        .map(|&(m, k)| Weights::new(&mut rng, m, k))
        .collect();
    let step_macs: usize = BEAM * layers.iter().map(|(m, k)| m * k).sum::<usize>();
    let step_w: usize = layers.iter().map(|(m, k)| m * k).sum();
    println!(
        "\n## One decode step: {} linears, n = {BEAM} beams, {:.1} M weights ({:.1} MB int8 / {:.1} MB f16 / {:.1} MB f32), {:.0} M MACs\n",
        layers.len(),
        step_w as f64 / 1e6,
        step_w as f64 / 1e6,
        2.0 * step_w as f64 / 1e6,
        4.0 * step_w as f64 / 1e6,
        step_macs as f64 / 1e6
    );
    println!("| dtype | path | threads | ms / step | GMAC/s | time / floor | vs naive int8 |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let naive_t = time(budget * 2, 5, || {
        for w in &step {
            naive_i8(&mut bufs, BEAM, w);
        }
    });
    let i8_floor = step_w as f64 / bw;
    println!(
        "| int8 | naive (auto-vec) | 1 | {:.3} | {:.1} | {:.2} | 1.00× |",
        naive_t * 1e3,
        step_macs as f64 / naive_t / 1e9,
        naive_t / i8_floor
    );
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.is_available() {
        let t = time(budget * 2, 5, || {
            for w in &step {
                // SAFETY: AVX2 and FMA were detected.
                unsafe { naive_i8_avx2(&mut bufs, BEAM, w) };
            }
        });
        println!(
            "| int8 | naive (auto-vec AVX2) | 1 | {:.3} | {:.1} | {:.2} | {:.2}× |",
            t * 1e3,
            step_macs as f64 / t / 1e9,
            t / i8_floor,
            naive_t / t
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for dt in [Dt::I8, Dt::F16, Dt::F32] {
        let mats: Vec<Matrix<'_>> = step.iter().map(|w| w.matrix(dt)).collect();
        let floor = (step_w * dt.bytes()) as f64 / bw;
        for kern in &paths {
            let mut ts = vec![1];
            if threads > 1 && kern.isa() == Kernels::detect().isa() {
                ts.push(threads);
            }
            for t in ts {
                let kern = kern.with_threads(t);
                let secs = time(budget * 2, 5, || {
                    for w in &mats {
                        bufs.linear(&kern, BEAM, w);
                    }
                });
                println!(
                    "| {} | {} | {t} | {:.3} | {:.1} | {:.2} | {:.2}× |",
                    dt.name(),
                    kern.isa().name(),
                    secs * 1e3,
                    step_macs as f64 / secs / 1e9,
                    secs / floor,
                    naive_t / secs
                );
            }
        }
    }
    println!("\n(time / floor < 1 means the weights were served from cache faster than memcpy streams DRAM.)");
}
