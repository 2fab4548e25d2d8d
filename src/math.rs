//! Element-wise and row-wise f32 math shared by every block: LayerNorm, softmax, log-softmax,
//! sigmoid, ReLU. All of it uses `libm`, so results do not depend on the target's libc, and
//! none of it is approximate (micromath never appears on a path that must match the reference).

/// LayerNorm epsilon of every LayerNorm in M² (PyTorch default).
pub const LN_EPS: f32 = 1e-5;

/// `x ← γ ⊙ (x − μ)/√(σ² + ε) + β` over one row; μ, σ² the mean and biased variance.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32]) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut var = 0.0f32;
    for v in x.iter() {
        let c = v - mean;
        var += c * c;
    }
    var /= n;
    let inv = 1.0 / libm::sqrtf(var + LN_EPS);
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Compensated (Kahan) sum: accurate row sums on targets without a double-precision FPU.
pub fn sum(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    let mut c = 0.0f32;
    for v in x {
        let y = v - c;
        let t = s + y;
        c = (t - s) - y;
        s = t;
    }
    s
}

/// In-place softmax over one row. `-inf` entries get weight 0. A row that is entirely `-inf`
/// (impossible in M², spec §3.6) gives zeros instead of NaN.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut total = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        total += *v;
    }
    let inv = 1.0 / total;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// In-place log-softmax over one row: `x − max − ln Σ exp(x − max)`.
pub fn log_softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let mut s = 0.0f32;
    let mut c = 0.0f32;
    for v in x.iter() {
        let y = libm::expf(v - max) - c;
        let t = s + y;
        c = (t - s) - y;
        s = t;
    }
    let lse = max + libm::logf(s);
    for v in x.iter_mut() {
        *v -= lse;
    }
}

/// Logistic sigmoid `1 / (1 + e^{−x})`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// In-place ReLU.
#[inline]
pub fn relu(x: &mut [f32]) {
    for v in x {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_matches_definition() {
        let mut x = [1.0f32, 2.0, 3.0, 6.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4]);
        // mean 3, biased var 3.5
        let inv = 1.0 / (3.5f32 + LN_EPS).sqrt();
        for (v, e) in x.iter().zip([-2.0f32, -1.0, 0.0, 3.0]) {
            assert!((v - e * inv).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_masks_neg_inf_and_sums_to_one() {
        let mut x = [0.5f32, f32::NEG_INFINITY, -1.0, 2.0];
        softmax(&mut x);
        assert_eq!(x[1], 0.0);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut all = [f32::NEG_INFINITY; 3];
        softmax(&mut all);
        assert_eq!(all, [0.0; 3]);
    }

    #[test]
    fn log_softmax_of_equal_logits_is_minus_ln_v() {
        let mut x = [0.0f32; 10201];
        log_softmax(&mut x);
        let e = -(10201f32).ln();
        assert!(x.iter().all(|v| (v - e).abs() < 1e-5));
    }

    #[test]
    fn kahan_sum_is_accurate_where_naive_f32_drifts() {
        let x = [0.1f32; 100_000];
        let exact = x.iter().map(|&v| v as f64).sum::<f64>();
        let naive = x.iter().sum::<f32>() as f64;
        let kahan = sum(&x) as f64;
        assert!(
            (kahan - exact).abs() <= exact * 1e-7,
            "kahan {kahan} vs {exact}"
        );
        assert!((naive - exact).abs() > (kahan - exact).abs() * 10.0);
    }
}
