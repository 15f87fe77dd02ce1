//! The NNGP/NTK layer recursion for one pair `(x, y)`, generic over the scalar type (`f64` for values,
//! `Dual<N>` for exact input derivatives by forward mode).
//!
//! Notation (neural-tangents conventions): `Sxx, Syy, Sxy` are the pre-activation covariances, `Theta` the
//! NTK.  Inputs enter as `S0 = <x, y> / d`, `Theta0 = 0`.  A dense layer maps `S <- w^2 S + b^2` and
//! `Theta <- S_new + w^2 Theta` ("ntk") or `Theta <- n_in S_old + w^2 Theta + 1` ("standard").
//! Activation duals (`s = sqrt(Sxx Syy - Sxy^2)`, `theta = atan2(s, Sxy)`):
//! - ABReLU(a, b): `Sdot = (a^2+b^2)/2 - (a-b)^2/(2 pi) theta`, `S' = (a-b)^2/(2 pi) s + Sdot Sxy`,
//!   `S'xx = (a^2+b^2)/2 Sxx`, `Theta' = Sdot Theta`;
//! - Erf(a, b, c): with `S <- b^2 S`, `r = sqrt((1+2Sxx)(1+2Syy) - 4Sxy^2)`:
//!   `S' = a^2 (2/pi) atan2(2Sxy, r) + c^2`, `Theta' = a^2 b^2 (4/pi) Theta / r`;
//! - Rbf(gamma): `S' = exp(-gamma (Sxx + Syy - 2Sxy))`, `S'xx = 1`, `Theta' = 2 gamma S' Theta`.
//!
//! Two formulations of the ABReLU pair map:
//! - [`act_pair`] (the fast path) computes `s^2 = Sxx Syy - Sxy^2` directly, exactly as neural-tangents
//!   does; it loses digits when the two inputs are nearly aligned (`sin^2 theta` small) and reports
//!   `sin^2 theta` so that such pairs can be recomputed;
//! - [`pair_stable`] carries `s^2` and the feature-space distance `E = Sxx + Syy - 2 Sxy` through the
//!   layers with cancellation-free updates, starting from `s1^2 = w^4 |x^y|^2 / d^2 + w^2 b^2 |x-y|^2 / d`
//!   and `E1 = w^2 |x - y|^2 / d`.  Per ABReLU layer, with `P = sqrt(Sxx Syy)`:
//!   `E' = c E - 2F (s - theta Sxy)`, `s'^2 = (cP - S'xy)(cP + S'xy)` where
//!   `cP - S'xy = c (P - Sxy) - F (s - theta Sxy)`, `P - Sxy = s^2 / (P + Sxy)` for `Sxy > 0`, and
//!   `s - theta Sxy = P (sin theta - theta cos theta)` by its Taylor series for `theta < 0.5`; each dense
//!   layer maps `s^2 <- w^4 s^2 + w^2 b^2 E`, `E <- w^2 E`.

use std::f64::consts::{FRAC_PI_2, PI};

use crate::arch::{Activation, Arch, Kind};
use crate::num::Num;

/// `(a^2 + b^2) / 2` and `(a - b)^2 / (2 pi)` of ABReLU(a, b).
#[inline(always)]
pub fn abrelu_consts(a: f64, b: f64) -> (f64, f64) {
    (0.5 * (a * a + b * b), (a - b) * (a - b) / (2.0 * PI))
}

/// Diagonal dual map `Sxx -> S'xx` of one activation.
#[inline(always)]
pub fn act_diag<T: Num>(act: &Activation, s: T) -> T {
    match *act {
        Activation::AbRelu { a, b } => s * abrelu_consts(a, b).0,
        Activation::Erf { a, b, c } => {
            let t = s * (b * b);
            T::atan2_fill(t, (t + 0.25).sqrt_safe(), 0.0) * (a * a * 2.0 / PI) + c * c
        }
        Activation::Rbf { .. } => T::cst(1.0),
    }
}

/// `Sxx` at the input of each activation (`out[l]`, `l = 0..depth`) for a point with `p = |x|^2 / d`.
#[inline(always)]
pub fn diag_chain<T: Num>(arch: &Arch, p: T, out: &mut [T]) {
    let w2 = arch.w_std * arch.w_std;
    let b2 = arch.b_std * arch.b_std;
    let mut s = p * w2 + b2;
    for (l, slot) in out.iter_mut().enumerate().take(arch.depth) {
        *slot = s;
        if l + 1 < arch.depth {
            s = act_diag(&arch.act, s) * w2 + b2;
        }
    }
}

/// First dense layer on `r = <x, y> / d`: returns `(Sxy, Theta)`.
#[inline(always)]
pub fn input_layer<T: Num>(arch: &Arch, r: T, d: f64) -> (T, T) {
    let sxy = r * (arch.w_std * arch.w_std) + arch.b_std * arch.b_std;
    let th = if arch.standard { r * d + 1.0 } else { sxy };
    (sxy, th)
}

/// Dense layer after activation `l`: `(S', Theta') -> (Sxy, Theta)`.
#[inline(always)]
pub fn dense_after<T: Num>(arch: &Arch, l: usize, s_act: T, th_act: T) -> (T, T) {
    let w2 = arch.w_std * arch.w_std;
    let sxy = s_act * w2 + arch.bias_var_after(l);
    let th = if arch.standard {
        s_act * arch.width + th_act * w2 + 1.0
    } else {
        sxy + th_act * w2
    };
    (sxy, th)
}

/// Threshold on `sin^2 theta` below which a ReLU-family pair is recomputed by [`pair_stable`] (the fast
/// recursion's relative error in `s` is about `1e-16 / sin^2 theta`).
pub const TAU: f64 = 1e-4;

/// ABReLU pair map (fast form).  Returns `(S'xy, Theta', margin)` with `margin = s^2 - TAU Sxx Syy`,
/// negative when `sin^2 theta < TAU` (the pair needs the stable recursion); `margin = 1` when the map
/// has no cusp (`a == b`).  A zero variance gives `s^2 = 0 = TAU Sxx Syy`, not flagged: the fast form is
/// exact there.  `isy = 1/Syy` (0 if `Syy = 0`); the derivative of `theta` uses
/// `s^2 + Sxy^2 = Sxx Syy`.
#[inline(always)]
pub fn abrelu_pair<T: Num>(
    cc: f64,
    f: f64,
    sx: T,
    sy: f64,
    isy: f64,
    sxy: T,
    th: T,
) -> (T, T, f64) {
    let prod = sx * sy;
    let s2 = prod - sxy * sxy;
    let s = s2.sqrt_safe();
    let sxv = sx.val();
    let isx = if sxv > 0.0 { 1.0 / sxv } else { 0.0 };
    let theta = T::atan2_known_r2(s, sxy, FRAC_PI_2, isx, isy);
    let sdot = theta * (-f) + cc;
    let out = s * f + sdot * sxy;
    let margin = if f != 0.0 {
        s2.val() - TAU * prod.val()
    } else {
        1.0
    };
    (out, th * sdot, margin)
}

/// Erf pair map.
#[inline(always)]
pub fn erf_pair<T: Num>(a: f64, b: f64, c: f64, sx: T, sy: f64, sxy: T, th: T) -> (T, T) {
    let b2 = b * b;
    let (sx, sy, sxy) = (sx * b2, sy * b2, sxy * b2);
    // (1 + 2Sxx)(1 + 2Syy) - 4Sxy^2 = 1 + 2(Sxx + Syy) + 4 s^2: no cancellation of the large terms, and
    // never below 1 (neural-tangents' form loses digits, even its sign, for large inputs)
    let s2 = sx * sy - sxy * sxy;
    let s2 = T::pick(s2.val() > 0.0, s2, T::cst(0.0));
    let q = (sx + sy) * 2.0 + 1.0 + s2 * 4.0;
    let r = q.sqrt_safe();
    let out = T::atan2_fill(sxy * 2.0, r, 0.0) * (a * a * 2.0 / PI) + c * c;
    let th = th * (b2 * a * a * 4.0 / PI) / r;
    (out, th)
}

/// Rbf pair map.
#[inline(always)]
pub fn rbf_pair<T: Num>(gamma: f64, sx: T, sy: f64, sxy: T, th: T) -> (T, T) {
    rbf_pair_dist(gamma, sx + sy - sxy * 2.0, th)
}

/// Rbf pair map from the feature-space distance `D = Sxx + Syy - 2 Sxy`: `exp(-gamma D)`.  At the first
/// layer the drivers pass `D` with its value replaced by `w^2 |x - y|^2 / d` computed directly (the
/// difference of covariances loses `eps (Sxx + Syy) / D` relative, amplified by later layers).
#[inline(always)]
pub fn rbf_pair_dist<T: Num>(gamma: f64, dist: T, th: T) -> (T, T) {
    let out = (dist * (-gamma)).exp();
    (out, th * out * (2.0 * gamma))
}

/// One activation's pair map, dispatched on the activation (fast form).
#[inline(always)]
pub fn act_pair<T: Num>(act: &Activation, sx: T, sy: f64, sxy: T, th: T) -> (T, T, f64) {
    match *act {
        Activation::AbRelu { a, b } => {
            let (cc, f) = abrelu_consts(a, b);
            abrelu_pair(
                cc,
                f,
                sx,
                sy,
                if sy > 0.0 { 1.0 / sy } else { 0.0 },
                sxy,
                th,
            )
        }
        Activation::Erf { a, b, c } => {
            let (o, t) = erf_pair(a, b, c, sx, sy, sxy, th);
            (o, t, 1.0)
        }
        Activation::Rbf { gamma } => {
            let (o, t) = rbf_pair(gamma, sx, sy, sxy, th);
            (o, t, 1.0)
        }
    }
}

/// Kernel of one pair by the fast recursion, from `r = <x, y>/d` and the per-point diagonal chains.
/// Returns `(k, needs_stable)`: whether some ReLU-family layer had `sin^2 theta < TAU`.
pub fn pair_fast<T: Num>(arch: &Arch, kind: Kind, r: T, sx: &[T], sy: &[f64], d: f64) -> (T, bool) {
    let (mut sxy, mut th) = input_layer(arch, r, d);
    let mut flagged = false;
    for l in 0..arch.depth {
        let (o, t, margin) = act_pair(&arch.act, sx[l], sy[l], sxy, th);
        flagged |= margin < 0.0;
        let (a, b) = dense_after(arch, l, o, t);
        sxy = a;
        th = b;
    }
    (if kind == Kind::Ntk { th } else { sxy }, flagged)
}

/// Scalar invariants of a pair, with `q` (a function of `y` only) kept as a constant.
#[derive(Clone, Copy, Debug)]
pub struct Invariants<T> {
    /// `|x|^2 / d`
    pub p: T,
    /// `|y|^2 / d`
    pub q: f64,
    /// `<x, y> / d`
    pub r: T,
    /// `|x - y|^2 / d`
    pub e: T,
    /// `|x ^ y|^2 / d^2 = (|x|^2 |y|^2 - <x, y>^2) / d^2`, computed without cancellation
    pub g: T,
}

/// `sin(t) - t cos(t)` divided by nothing: Taylor series `sum_k (-1)^(k+1) 2k t^(2k+1) / (2k+1)!`,
/// accurate to 1 ulp for `|t| < 0.5`.
#[inline(always)]
fn sin_minus_tcos_series<T: Num>(t: T) -> T {
    const C: [f64; 8] = [
        1.0 / 3.0,
        -1.0 / 30.0,
        1.0 / 840.0,
        -1.0 / 45_360.0,
        1.0 / 3_991_680.0,
        -1.0 / 518_918_400.0,
        1.0 / 93_405_312_000.0,
        -1.0 / 22_230_464_256_000.0,
    ];
    let z = t * t;
    let mut acc = T::cst(C[7]);
    for &c in C[..7].iter().rev() {
        acc = acc * z + c;
    }
    acc * z * t
}

/// Kernel of one pair by the cancellation-free recursion (ReLU family); see the module docs.
/// For other activations it falls back to the fast recursion (they have no cusp).
pub fn pair_stable<T: Num>(arch: &Arch, kind: Kind, inv: Invariants<T>, d: f64) -> T {
    let (cc, f) = match arch.act {
        Activation::AbRelu { a, b } => abrelu_consts(a, b),
        _ => {
            // smooth activations: the direct recursion is accurate.
            let mut sx = vec![T::cst(0.0); arch.depth];
            let mut sy = vec![0.0; arch.depth];
            diag_chain(arch, inv.p, &mut sx);
            diag_chain(arch, inv.q, &mut sy);
            return pair_fast(arch, kind, inv.r, &sx, &sy, d).0;
        }
    };
    let w2 = arch.w_std * arch.w_std;
    let b2 = arch.b_std * arch.b_std;
    let mut sxx = inv.p * w2 + b2;
    let mut syy = inv.q * w2 + b2;
    let (mut sxy, mut th) = input_layer(arch, inv.r, d);
    let mut s2 = inv.g * (w2 * w2) + inv.e * (w2 * b2);
    let mut e = inv.e * w2;
    for l in 0..arch.depth {
        let pp = (sxx * syy).sqrt_safe();
        let s = s2.sqrt_safe();
        let theta = T::atan2_fill(s, sxy, FRAC_PI_2);
        let sdot = theta * (-f) + cc;
        let out = s * f + sdot * sxy;
        // s - theta Sxy = P (sin theta - theta cos theta) >= 0
        let gp = T::pick(
            theta.val() < 0.5,
            pp * sin_minus_tcos_series(theta),
            s - theta * sxy,
        );
        let e_act = e * cc - gp * (2.0 * f);
        let p_minus = T::pick(sxy.val() > 0.0, s2 / (pp + sxy), pp - sxy);
        let s2_act = (p_minus * cc - gp * f) * (pp * cc + out);
        let th_act = th * sdot;
        let b2l = arch.bias_var_after(l);
        let (a, b) = dense_after(arch, l, out, th_act);
        sxy = a;
        th = b;
        sxx = sxx * (cc * w2) + b2l;
        syy = syy * (cc * w2) + b2l;
        s2 = s2_act * (w2 * w2) + e_act * (w2 * b2l);
        e = e_act * w2;
    }
    if kind == Kind::Ntk {
        th
    } else {
        sxy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::num::Dual;

    fn relu_nngp_closed_form(x: &[f64], y: &[f64]) -> f64 {
        // depth 1, w = 1, b = 0, NNGP: w^2 * (|x||y|/d)(sin t + (pi - t) cos t)/(2 pi)
        let d = x.len() as f64;
        let nx = x.iter().map(|v| v * v).sum::<f64>() / d;
        let ny = y.iter().map(|v| v * v).sum::<f64>() / d;
        let r = x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / d;
        let p = (nx * ny).sqrt();
        let t = (r / p).clamp(-1.0, 1.0).acos();
        p * (t.sin() + (PI - t) * t.cos()) / (2.0 * PI)
    }

    fn invariants(x: &[f64], y: &[f64]) -> Invariants<f64> {
        let d = x.len() as f64;
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        let u: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
        let (xx, yy, xy, uu) = (dot(x, x), dot(y, y), dot(x, y), dot(&u, &u));
        let g = xx * yy - xy * xy;
        Invariants {
            p: xx / d,
            q: yy / d,
            r: xy / d,
            e: uu / d,
            g: g / (d * d),
        }
    }

    fn fast(arch: &Arch, kind: Kind, x: &[f64], y: &[f64]) -> f64 {
        let inv = invariants(x, y);
        let mut sx = vec![0.0; arch.depth];
        let mut sy = vec![0.0; arch.depth];
        diag_chain(arch, inv.p, &mut sx);
        diag_chain(arch, inv.q, &mut sy);
        pair_fast(arch, kind, inv.r, &sx, &sy, x.len() as f64).0
    }

    #[test]
    fn relu_depth1_nngp_is_arccos_kernel() {
        let arch = Arch::relu(1, 1.0, 0.0);
        let (x, y) = ([0.3, -1.2, 0.7], [1.1, 0.4, -0.2]);
        let k = fast(&arch, Kind::Nngp, &x, &y);
        assert!((k - relu_nngp_closed_form(&x, &y)).abs() < 1e-15, "{k}");
    }

    #[test]
    fn stable_equals_fast_away_from_coincidence() {
        for &(depth, w, b) in &[(1, 1.0, 0.0), (3, 1.0, 1.0), (6, 1.7, 3.0), (2, 0.5, 0.0)] {
            let arch = Arch::relu(depth, w, b);
            let (x, y) = ([0.3, -1.2, 0.7, 2.0], [1.1, 0.4, -0.2, -0.5]);
            for kind in [Kind::Ntk, Kind::Nngp] {
                let a = fast(&arch, kind, &x, &y);
                let s = pair_stable(&arch, kind, invariants(&x, &y), 4.0);
                assert!(
                    (a - s).abs() <= 1e-13 * a.abs(),
                    "{depth} {w} {b}: {a} vs {s}"
                );
            }
        }
    }

    #[test]
    fn stable_gradient_matches_finite_differences() {
        let arch = Arch::relu(3, 1.2, 0.8);
        let (x, y) = ([0.3, -1.2, 0.7], [1.1, 0.4, -0.2]);
        // forward mode in the 4 invariants, then chain with their x-derivatives
        let inv = invariants(&x, &y);
        let dual = Invariants {
            p: Dual::<4>::var(inv.p, 0),
            q: inv.q,
            r: Dual::var(inv.r, 1),
            e: Dual::var(inv.e, 2),
            g: Dual::var(inv.g, 3),
        };
        let k = pair_stable(&arch, Kind::Ntk, dual, 3.0);
        let d = 3.0;
        let yy: f64 = y.iter().map(|v| v * v).sum();
        let xy: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        for c in 0..3 {
            let u = x[c] - y[c];
            let dg = 2.0 * (yy * x[c] - xy * y[c]) / (d * d);
            let grad =
                k.d[0] * 2.0 * x[c] / d + k.d[1] * y[c] / d + k.d[2] * 2.0 * u / d + k.d[3] * dg;
            let h = 1e-6;
            let mut xp = x;
            let mut xm = x;
            xp[c] += h;
            xm[c] -= h;
            let fd =
                (fast(&arch, Kind::Ntk, &xp, &y) - fast(&arch, Kind::Ntk, &xm, &y)) / (2.0 * h);
            assert!(
                (grad - fd).abs() < 1e-7 * fd.abs().max(1.0),
                "{c}: {grad} vs {fd}"
            );
        }
    }
}
