// throwaway: time the pieces of the decoder's attention at COCO size
use m2::kernels::Kernels;
use m2::model::attention::{attend, attend_cross, GROUP};
use std::time::Instant;
fn main() {
    let k = Kernels::from_env().unwrap();
    let (d, heads, d_k, r, n, layers) = (512usize, 8usize, 64usize, 50usize, 5usize, 3usize);
    let mut s = 1u32;
    let mut fill = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    };
    let q = fill(n * d);
    let xk = fill(layers * 3 * r * d);
    let xv = fill(layers * 3 * r * d);
    let ck = fill(10 * n * d);
    let cv = fill(10 * n * d);
    let bias = vec![0f32; r];
    let mut scratch = vec![0f32; GROUP * r];
    let mut att = vec![0f32; 3 * n * d];
    let reps = 2000;
    let t = |name: &str, f: &mut dyn FnMut()| {
        for _ in 0..50 {
            f();
        }
        let t0 = Instant::now();
        for _ in 0..reps {
            f();
        }
        println!(
            "{name:>12}: {:.1} us",
            t0.elapsed().as_secs_f64() * 1e6 / reps as f64
        );
    };
    println!("{:?}", k.isa());
    t("cross", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                for l in 0..layers {
                    for lvl in 0..3 {
                        let b = (l * 3 + lvl) * r * d..(l * 3 + lvl + 1) * r * d;
                        attend_cross(
                            &k,
                            &q,
                            n,
                            heads,
                            d_k,
                            r,
                            &xk[b.clone()],
                            &xv[b],
                            &bias,
                            &mut scratch,
                            &mut att[lvl * n * d..(lvl + 1) * n * d],
                        );
                    }
                }
                std::hint::black_box(&att);
            },
        )
    });
    t("scores", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                for l in 0..layers {
                    for lvl in 0..3 {
                        let b = (l * 3 + lvl) * r * d;
                        for h in 0..heads {
                            for i in 0..n {
                                k.dot_columns(
                                    &q[i * d + h * d_k..][..d_k],
                                    &xk[b + h * d_k * r..][..d_k * r],
                                    r,
                                    &mut scratch[i * r..],
                                );
                            }
                        }
                    }
                }
                std::hint::black_box(&scratch);
            },
        )
    });
    t("softmax", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                for _ in 0..layers * 3 * heads {
                    m2::math::softmax_rows(&mut scratch[..n * r], r);
                }
                std::hint::black_box(&scratch);
            },
        )
    });
    let mut logits = fill(5 * 10201);
    t("lsm", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                m2::math::log_softmax_rows(&mut logits, 10201);
                std::hint::black_box(&logits);
            },
        )
    });
    let (gamma, beta) = (fill(d), fill(d));
    let mut x = fill(15 * d);
    t("norm15", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                for _ in 0..3 {
                    m2::math::layer_norm_rows(&mut x[..5 * d], &gamma, &beta);
                    m2::math::layer_norm_rows(&mut x, &gamma, &beta);
                    m2::math::layer_norm_rows(&mut x[..5 * d], &gamma, &beta);
                }
                std::hint::black_box(&x);
            },
        )
    });
    t("self", &mut || {
        k.vectorised(
            #[inline(always)]
            || {
                for _l in 0..layers {
                    for i in 0..n {
                        attend(
                            &k,
                            &q[i * d..(i + 1) * d],
                            heads,
                            d_k,
                            10,
                            |j| &ck[(j * n + i) * d..][..d],
                            |j| &cv[(j * n + i) * d..][..d],
                            |_| 0.0,
                            &mut scratch,
                            &mut att[i * d..(i + 1) * d],
                        );
                    }
                }
                std::hint::black_box(&att);
            },
        )
    });
}
