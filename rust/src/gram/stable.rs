//! Stable fallbacks: one pair at a time, from cancellation-free invariants of the two inputs
//! (`|x - y|^2`, `|x + y|^2`, `|x ^ y|^2`) through [`pair_stable`], the value and the gradient with the
//! invariants' exact derivatives.  Used for the pairs whose margin from the block evaluators is negative.

use crate::arch::{Arch, Kind};
use crate::num::{Dual, Num};
use crate::recursion::{pair_stable, Invariants};

use super::blocks::{dot, sq_norm};

/// Whether `x` and `y` are exactly parallel or antiparallel (`x = lambda y`, or `y = 0`): with the pivot
/// `k = argmax |y_k|`, whether `x_i y_k == x_k y_i` for every `i`, the products compared exactly as
/// double-double values (`p + e` with `e = fma(a, b, -p)`; exact unless the error term underflows, i.e.
/// for entries below ~1e-290 times the row's largest).  Where this holds `|x ^ y|^2` is exactly 0 and the
/// cusp convention applies (`ds = 0`), as in the exact reference.
pub(super) fn collinear(x: &[f64], y: &[f64]) -> bool {
    let mut k = 0;
    for (i, v) in y.iter().enumerate() {
        if v.abs() > y[k].abs() {
            k = i;
        }
    }
    if y[k] == 0.0 {
        return true;
    }
    let (xk, yk) = (x[k], y[k]);
    x.iter().zip(y).all(|(&xi, &yi)| {
        let (p1, p2) = (xi * yk, xk * yi);
        p1 == p2 && xi.mul_add(yk, -p1) == xk.mul_add(yi, -p2)
    })
}

/// Cancellation-free invariants of `(x, y)` and the vectors their gradients need: `u = x - y`,
/// `s = x + y` and `v = x - (<x, y>/|y|^2) y`, the component of `x` orthogonal to `y`.
/// Returns `([p, q, r, e, ep, g], |y|^2)` (see [`Invariants`]).
///
/// `v` is formed from `x` with fused multiply-adds, `v_k = fma(-t, y_k, x_k)`: each component is then
/// rounded once, and the error of `t = <x, y>/|y|^2` only moves `v` along `y`, which a second pass
/// removes.  So `v`, and `g = |y|^2 |v|^2`, are accurate to a few ulps whatever the angle, for nearly
/// coincident, nearly parallel and nearly antiparallel pairs alike (where `v` is tiny against `x`).
/// `u` and `s` are exact where `x` and `y` (or `x` and `-y`) agree to within a factor 2 componentwise
/// (Sterbenz), and accurate to an ulp per component anyway, so `|x - y|^2` and `|x + y|^2` are.
pub(super) fn pair_invariants(
    x: &[f64],
    y: &[f64],
    u: &mut [f64],
    s: &mut [f64],
    v: &mut [f64],
) -> ([f64; 6], f64) {
    let d = x.len() as f64;
    if x == y {
        // exact duplicates (the diagonal of a symmetric Gram matrix): the values the general path gives,
        // bit for bit (`x + x` and `4 |x|^2` are exact), in two passes over the coordinates instead of
        // about a dozen
        let xx = sq_norm(x);
        for k in 0..x.len() {
            u[k] = 0.0;
            s[k] = 2.0 * x[k];
            v[k] = 0.0;
        }
        let p = xx / d;
        return ([p, p, p, 0.0, 4.0 * xx / d, 0.0], xx);
    }
    for k in 0..x.len() {
        u[k] = x[k] - y[k];
        s[k] = x[k] + y[k];
    }
    let xx = sq_norm(x);
    let yy = sq_norm(y);
    let xy = dot(x, y);
    let uu = sq_norm(u);
    let ss = sq_norm(s);
    let g = if yy > 0.0 {
        let t = xy / yy;
        for k in 0..x.len() {
            v[k] = (-t).mul_add(y[k], x[k]);
        }
        let t2 = dot(v, y) / yy;
        for k in 0..x.len() {
            v[k] = (-t2).mul_add(y[k], v[k]);
        }
        let vv = sq_norm(v);
        // for exactly collinear inputs v is rounding noise, |v| ~ eps^2 |x|: only then can the exact
        // test say anything
        let maybe = vv <= (16.0 * f64::EPSILON) * (16.0 * f64::EPSILON) * xx;
        if maybe && collinear(x, y) {
            v.fill(0.0);
            0.0
        } else {
            vv * yy
        }
    } else {
        v.fill(0.0);
        0.0
    };
    ([xx / d, yy / d, xy / d, uu / d, ss / d, g / (d * d)], yy)
}

/// Scratch length [`stable_value`] and [`stable_grad_add`] need for inputs of dimension `d`.
#[inline(always)]
pub(super) fn scratch_len(d: usize) -> usize {
    3 * d
}

/// Kernel value of one pair by the stable recursion.
pub(super) fn stable_value(
    arch: &Arch,
    kind: Kind,
    x: &[f64],
    y: &[f64],
    scratch: &mut [f64],
) -> f64 {
    let dn = x.len();
    let (u, rest) = scratch.split_at_mut(dn);
    let (s, v) = rest.split_at_mut(dn);
    let ([p, q, r, e, ep, g], _) = pair_invariants(x, y, u, s, &mut v[..dn]);
    pair_stable(arch, kind, Invariants { p, q, r, e, ep, g }, dn as f64)
}

/// `grad += w * d/dx k(x, y)` by the stable recursion, with exact invariant derivatives:
/// `dp = 2x/d`, `dr = y/d`, `de = 2(x - y)/d`, `dep = 2(x + y)/d`, `dg = 2 |y|^2 v / d^2`.
pub(super) fn stable_grad_add(
    arch: &Arch,
    kind: Kind,
    x: &[f64],
    y: &[f64],
    w: f64,
    grad: &mut [f64],
    scratch: &mut [f64],
) {
    let dn = x.len();
    let d = dn as f64;
    let (u, rest) = scratch.split_at_mut(dn);
    let (s, v) = rest.split_at_mut(dn);
    let v = &mut v[..dn];
    let ([p, q, r, e, ep, g], yy) = pair_invariants(x, y, u, s, v);
    // each invariant's tangent is seeded with the norm of its x-derivative (so no partial overflows for
    // tiny inputs), then multiplied back by the unit direction of that derivative
    let norm = |a: &[f64]| {
        let big = a.iter().fold(0.0f64, |m, t| m.max(t.abs()));
        if big == 0.0 {
            0.0
        } else {
            big * a.iter().map(|t| (t / big) * (t / big)).sum::<f64>().sqrt()
        }
    };
    let (nx, ny, nu, ns, nv) = (norm(x), norm(y), norm(u), norm(s), norm(v));
    let sig = [
        2.0 * nx / d,
        ny / d,
        2.0 * nu / d,
        2.0 * ns / d,
        2.0 * yy * nv / (d * d),
    ];
    let dir = [nx, ny, nu, ns, nv];
    let mut seeded = [Dual::<5>::cst(0.0); 5];
    for (k, (&val, &sk)) in [p, r, e, ep, g].iter().zip(&sig).enumerate() {
        let mut t = [0.0; 5];
        t[k] = sk;
        seeded[k] = Dual::new(val, t);
    }
    let inv = Invariants {
        p: seeded[0],
        q,
        r: seeded[1],
        e: seeded[2],
        ep: seeded[3],
        g: seeded[4],
    };
    let k = pair_stable(arch, kind, inv, d);
    let mut c = [0.0; 5];
    for t in 0..5 {
        c[t] = if dir[t] > 0.0 {
            w * k.d[t] / dir[t]
        } else {
            0.0
        };
    }
    for j in 0..dn {
        grad[j] += c[0] * x[j] + c[1] * y[j] + c[2] * u[j] + c[3] * s[j] + c[4] * v[j];
    }
}
