//! The soft-min of log-domain Sinkhorn iterations (the hot loop of the Sinkhorn divergence metric):
//!
//! `out_i = -eps * log sum_j exp(f_j - C_ij / eps)`,
//!
//! stabilised by the row maximum `top_i = max_j (f_j - C_ij / eps)` and with the exponent floored at
//! `EXP_FLOOR` (as the numpy reference does).  Two passes over a row (maximum, then the sum of
//! exponentials), eight fixed lanes for both, so a row's result does not depend on the thread count or
//! on which SIMD clone ran.  The exponential is a branch-free polynomial that vectorises.

use crate::ensure;
use crate::error::NtkError;
use crate::pool;
use rayon::prelude::*;

/// Exponents below this are raised to it before `exp` (`exp(-700) ~ 1e-304`, still a normal float).
pub const EXP_FLOOR: f64 = -700.0;

const LANES: usize = 8;

/// Monomial coefficients of the degree-11 Chebyshev fit of `exp` on `[-ln2/2, ln2/2]`.
const C: [f64; 12] = [
    1.0,
    1.0,
    0.5000000000000019,
    0.1666666666666668,
    0.0416666666664881,
    0.008333333333319601,
    0.0013888888952314775,
    0.00019841269890047113,
    2.4801485482328494e-05,
    2.755724091857897e-06,
    2.763263963904103e-07,
    2.5110037605963777e-08,
];
const ROWS_PER_TASK: usize = 16;

/// `exp(x)` for `x` in `[EXP_FLOOR, 0]`, within 2 ulp, without branches or table lookups.
///
/// `x = n ln2 + r` with `n = round(x / ln2)` (by the 1.5 * 2^52 shifter) and `|r| <= ln2 / 2`
/// (Cody-Waite split of ln2, exact for |n| < 2^20); `exp(r)` by the degree-11 Chebyshev fit `C` on
/// `[-ln2/2, ln2/2]` (approximation error 3e-18, from `mpmath.chebyfit` at 40 digits) evaluated by
/// Estrin's scheme; `2^n` assembled in the exponent bits.
#[inline(always)]
pub fn exp_nonpos(x: f64) -> f64 {
    const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    let t = x * std::f64::consts::LOG2_E + SHIFTER;
    let n = t - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Estrin's scheme (depth 4 instead of Horner's 11): the lanes' chains are short enough to pipeline
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = 1.0 + r * C[1];
    let p23 = C[2] + r * C[3];
    let p45 = C[4] + r * C[5];
    let p67 = C[6] + r * C[7];
    let p89 = C[8] + r * C[9];
    let p1011 = C[10] + r * C[11];
    let q0 = p01 + r2 * p23;
    let q1 = p45 + r2 * p67;
    let q2 = p89 + r2 * p1011;
    let p = (q0 + r4 * q1) + r8 * q2;
    // the low bits of t hold n (two's complement in the mantissa): (n + 1023) << 52 is 2^n
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    p * scale
}

#[inline(always)]
fn softmin_rows_impl(cost: &[f64], m: usize, f: &[f64], eps: f64, out: &mut [f64]) {
    let scale = -1.0 / eps;
    let mut w = vec![0.0; m];
    let full = m - m % LANES;
    for (i, o) in out.iter_mut().enumerate() {
        let c = &cost[i * m..(i + 1) * m];
        // pass 1: w_j = f_j - C_ij / eps and its maximum (eight lanes)
        let mut top = [f64::NEG_INFINITY; LANES];
        for ((wb, cb), fb) in w[..full]
            .chunks_exact_mut(LANES)
            .zip(c.chunks_exact(LANES))
            .zip(f.chunks_exact(LANES))
        {
            for k in 0..LANES {
                let v = fb[k] + scale * cb[k];
                wb[k] = v;
                top[k] = if v > top[k] { v } else { top[k] };
            }
        }
        for j in full..m {
            let v = f[j] + scale * c[j];
            w[j] = v;
            let k = j - full;
            top[k] = if v > top[k] { v } else { top[k] };
        }
        let mut mx = top[0];
        for &t in &top[1..] {
            mx = if t > mx { t } else { mx };
        }
        // pass 2: sum_j exp(max(w_j - top, EXP_FLOOR)) (eight lanes, summed in a fixed order)
        let mut sum = [0.0; LANES];
        for wb in w[..full].chunks_exact(LANES) {
            for k in 0..LANES {
                sum[k] += exp_nonpos((wb[k] - mx).max(EXP_FLOOR));
            }
        }
        for j in full..m {
            sum[j - full] += exp_nonpos((w[j] - mx).max(EXP_FLOOR));
        }
        let mut s = 0.0;
        for &v in &sum {
            s += v;
        }
        *o = -eps * (s.ln() + mx);
    }
}

simd_dispatch!(softmin_rows, softmin_rows_impl, (cost: &[f64], m: usize, f: &[f64], eps: f64, out: &mut [f64]));

/// `out_i = -eps log sum_j exp(f_j - C_ij / eps)` for the row-major `n x m` matrix `cost`.
pub fn softmin(
    cost: &[f64],
    n: usize,
    m: usize,
    f: &[f64],
    eps: f64,
) -> Result<Vec<f64>, NtkError> {
    ensure!(
        cost.len() == n * m,
        Shape,
        "cost has {} entries, expected {} x {}",
        cost.len(),
        n,
        m
    );
    ensure!(
        f.len() == m,
        Shape,
        "f has length {} but cost has {} columns",
        f.len(),
        m
    );
    ensure!(
        eps > 0.0 && eps.is_finite(),
        Value,
        "eps must be positive and finite, got {}",
        eps
    );
    ensure!(m > 0, Shape, "cost has no columns");
    let mut out = vec![0.0; n];
    pool::install(|| {
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(a, o)| {
                let i0 = a * ROWS_PER_TASK;
                softmin_rows(&cost[i0 * m..(i0 + o.len()) * m], m, f, eps, o);
            });
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_within_two_ulp() {
        let mut x = EXP_FLOOR;
        let mut worst: f64 = 0.0;
        while x <= 0.0 {
            let (a, b) = (exp_nonpos(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 4.5e-16, "worst relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
    }

    #[test]
    fn softmin_matches_a_direct_log_sum_exp() {
        let (n, m) = (5, 21);
        let cost: Vec<f64> = (0..n * m).map(|k| ((k * 37 % 101) as f64) / 7.0).collect();
        let f: Vec<f64> = (0..m).map(|j| (j as f64 * 0.3).sin()).collect();
        for eps in [1e-3, 0.5, 40.0] {
            let out = softmin(&cost, n, m, &f, eps).unwrap();
            for i in 0..n {
                let w: Vec<f64> = (0..m).map(|j| f[j] - cost[i * m + j] / eps).collect();
                let mx = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = w.iter().map(|v| (v - mx).max(EXP_FLOOR).exp()).sum();
                let want = -eps * (s.ln() + mx);
                assert!(
                    (out[i] - want).abs() <= 1e-14 * want.abs().max(eps),
                    "{} vs {want}",
                    out[i]
                );
            }
        }
        assert!(softmin(&cost, n, m, &f, 0.0).is_err());
        assert!(softmin(&cost, n, m, &f[1..], 1.0).is_err());
    }
}
