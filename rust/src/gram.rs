//! Blocked, rayon-parallel drivers: the kernel matrix `K[i, j] = k(x_i, y_j)`, the kernel-gradient
//! contraction `G[i, :] = sum_j w_j d/dx k(x_i, y_j)` and the product `K v`.
//!
//! Layout of the work.  Per-point quantities (`|x|^2 / d`, the diagonal covariances at every layer and
//! their derivatives) are computed once.  A task owns a tile of rows; for each row it walks the columns in
//! blocks of [`B`] pairs, and runs the recursion one layer at a time over the block with structure-of-arrays
//! state, so the compiler vectorises across pairs (the arctangent is a branch-free polynomial).  The inner
//! products `<x_i, y_j>` come from a GEMM for large `d`.  Neither the `N x M` matrix (gradient, matvec)
//! nor an `N x M x d` tensor is ever stored.
//!
//! Gradients.  `k` depends on `x` through `p = |x|^2/d` and `r = <x, y>/d` only, so
//! `d/dx k = dk/dp 2x/d + dk/dr y/d`; both partials come from forward mode (`Dual<2>`), and
//! `G[i] = (2/d) (sum_j w_j dk/dp) x_i + (1/d) sum_j (w_j dk/dr) y_j`, the second sum a GEMM.
//!
//! Pairs near a cusp.  Where the fast recursion reports a negative margin (ReLU family: `sin^2 theta <
//! TAU` at some layer, nearly coincident or nearly antipodal, or [`obtuse_margin`] in a depth-1 network;
//! erf: large norms at a small angle at the first layer, see [`erf_margin`]), the pair is recomputed by
//! [`pair_stable`] from cancellation-free invariants (`|x - y|^2`, `|x + y|^2`, `|x ^ y|^2`), with its
//! gradient assembled from their exact derivatives.  docs/kernel_accuracy.md has the method and the
//! measured errors.
//!
//! Determinism.  Every output entry is computed by one task, and every sum runs in a fixed order that
//! does not depend on the tiling of rows or on the number of threads.

use std::f64::consts::{FRAC_PI_2, PI};

use rayon::prelude::*;

use crate::arch::{Activation, Arch, Kind};
use crate::ensure;
use crate::error::NtkError;
use crate::num::{Dual, Num};
use crate::pool;
use crate::recursion::{
    abrelu_consts, abrelu_pair, dense_after, diag_chain, erf_margin, erf_pair, input_layer,
    obtuse_margin, pair_stable, rbf_pair, rbf_pair_dist, Invariants, ERF_KAPPA,
};

pub use crate::recursion::TAU;

mod self_pairs;

/// Columns per vectorised block.
const B: usize = 64;
/// Columns per GEMM tile.
const TJ: usize = 256;
/// Rows per task (gradient, matvec, rectangular Gram).
const TI: usize = 32;
/// Square tile of the symmetric Gram matrix.
const TS: usize = 64;
/// Up to this input dimension, inner products are computed directly (no GEMM).
const SMALL_D: usize = 16;

/// A row-major `(n, d)` array of points.
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub data: &'a [f64],
    pub n: usize,
    pub d: usize,
}

impl<'a> Points<'a> {
    /// Check that `data` holds `n * d` values.
    pub fn new(data: &'a [f64], n: usize, d: usize) -> Result<Self, NtkError> {
        ensure!(
            data.len() == n * d,
            Shape,
            "array of {} values cannot be ({n}, {d})",
            data.len()
        );
        Ok(Points { data, n, d })
    }
    #[inline(always)]
    fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// Per-point quantities: `diag[l * n + i]` is `Sxx` at the input of activation `l`, `ddiag` its
/// derivative with respect to `p = |x|^2 / d`.
struct Side<'a> {
    pts: Points<'a>,
    diag: Vec<f64>,
    /// `1 / diag` (0 where diag is 0)
    inv_diag: Vec<f64>,
    ddiag: Vec<f64>,
    /// `y` transposed, `(d, n)`, for the direct inner products at small `d`.
    transposed: Vec<f64>,
}

impl<'a> Side<'a> {
    fn new(arch: &Arch, pts: Points<'a>, transpose: bool) -> Self {
        let (n, d, depth) = (pts.n, pts.d, arch.depth);
        let mut diag = vec![0.0; depth * n];
        let mut ddiag = vec![0.0; depth * n];
        let mut chain = vec![Dual::<1>::cst(0.0); depth];
        for i in 0..n {
            let p = sq_norm(pts.row(i)) / d as f64;
            diag_chain(arch, Dual::var(p, 0), &mut chain);
            for (l, c) in chain.iter().enumerate() {
                diag[l * n + i] = c.v;
                ddiag[l * n + i] = c.d[0];
            }
        }
        let transposed = if transpose && d <= SMALL_D {
            let mut t = vec![0.0; d * n];
            for i in 0..n {
                for k in 0..d {
                    t[k * n + i] = pts.data[i * d + k];
                }
            }
            t
        } else {
            Vec::new()
        };
        let inv_diag = diag
            .iter()
            .map(|&v| if v > 0.0 { 1.0 / v } else { 0.0 })
            .collect();
        Side {
            pts,
            diag,
            inv_diag,
            ddiag,
            transposed,
        }
    }
}

/// `sum_k x_k^2` in index order (the same order as the direct inner products, so that `r_ii == p_i`).
#[inline(always)]
fn sq_norm(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in x {
        s += v * v;
    }
    s
}

#[inline(always)]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for (a, b) in x.iter().zip(y) {
        s += a * b;
    }
    s
}

/// Everything a task needs.
struct Ctx<'a> {
    arch: Arch,
    kind: Kind,
    xs: Side<'a>,
    ys: Side<'a>,
    d: usize,
}

impl<'a> Ctx<'a> {
    fn new(arch: &Arch, kind: Kind, x: Points<'a>, y: Points<'a>) -> Result<Self, NtkError> {
        ensure!(
            x.d == y.d,
            Shape,
            "y has {} features but x has {}",
            y.d,
            x.d
        );
        ensure!(x.d >= 1, Shape, "inputs need at least one feature");
        let xs = Side::new(arch, x, false);
        let ys = Side::new(arch, y, true);
        Ok(Ctx {
            arch: *arch,
            kind,
            xs,
            ys,
            d: x.d,
        })
    }
}

/// Raw output pointer shared by tasks that write disjoint entries.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f64);
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

/// `R[a, b] = <x_{i0+a}, y_{c0+b}>` for a tile, by GEMM (large `d`).
fn gemm_inner(ctx: &Ctx, i0: usize, ni: usize, c0: usize, cl: usize, r: &mut [f64]) {
    let d = ctx.d;
    let x = &ctx.xs.pts.data[i0 * d..];
    let y = &ctx.ys.pts.data[c0 * d..];
    debug_assert!(r.len() >= ni * cl);
    // SAFETY: the slices hold ni*d, cl*d and ni*cl values with the strides given.
    unsafe {
        matrixmultiply::dgemm(
            ni,
            d,
            cl,
            1.0,
            x.as_ptr(),
            d as isize,
            1,
            y.as_ptr(),
            1,
            d as isize,
            0.0,
            r.as_mut_ptr(),
            cl as isize,
            1,
        );
    }
}

/// `r[j] = <x_i, y_{j0 + j}> / d`, directly (small `d`) or from a GEMM tile row.
#[inline(always)]
fn inner_block(
    ctx: &Ctx,
    i: usize,
    j0: usize,
    len: usize,
    gemm_row: Option<&[f64]>,
    r: &mut [f64],
) {
    let d = ctx.d;
    let dd = d as f64;
    let r = &mut r[..len];
    match gemm_row {
        Some(row) => {
            let row = &row[..len];
            for j in 0..len {
                r[j] = row[j] / dd;
            }
        }
        None => {
            let m = ctx.ys.pts.n;
            let xi = ctx.xs.pts.row(i);
            r.fill(0.0);
            for (k, &xk) in xi.iter().enumerate() {
                let col = &ctx.ys.transposed[k * m + j0..k * m + j0 + len];
                for j in 0..len {
                    r[j] += xk * col[j];
                }
            }
            for v in r.iter_mut() {
                *v /= dd;
            }
        }
    }
}

/// `out[j] = |x_i - y_{j0+j}|^2 / d`, summed in index order.
#[inline(always)]
fn dist_block(ctx: &Ctx, i: usize, j0: usize, len: usize, out: &mut [f64]) {
    let xi = ctx.xs.pts.row(i);
    let dd = ctx.d as f64;
    for j in 0..len {
        let yj = ctx.ys.pts.row(j0 + j);
        let mut s = 0.0;
        for (a, b) in xi.iter().zip(yj) {
            let t = a - b;
            s += t * t;
        }
        out[j] = s / dd;
    }
}

/// The recursion over a block of `len <= B` pairs `(x_i, y_{j0..j0+len})`, one layer at a time.
/// `sx[l]` is row i's diagonal chain; writes `out[j]` (the kernel) and `margin[j]`, negative when the
/// pair needs the stable recursion (see [`abrelu_pair`]).
#[inline(always)]
fn eval_block<T: Num>(
    ctx: &Ctx,
    i: usize,
    sx: &[T],
    j0: usize,
    r: &[T],
    out: &mut [T],
    sin2: &mut [f64],
) {
    let arch = &ctx.arch;
    let len = r.len();
    let m = ctx.ys.pts.n;
    let dd = ctx.d as f64;
    let mut sxy_buf = [T::cst(0.0); B];
    let mut th_buf = [T::cst(0.0); B];
    let sxy = &mut sxy_buf[..len];
    let th = &mut th_buf[..len];
    let sin2 = &mut sin2[..len];
    for j in 0..len {
        let (a, b) = input_layer(arch, r[j], dd);
        sxy[j] = a;
        th[j] = b;
        sin2[j] = 1.0;
    }
    if let Activation::Erf { b, .. } = arch.act {
        // large norms at a small angle: the first layer's margin (see erf_margin; it can be negative
        // only where both scaled variances exceed 2 ERF_KAPPA)
        let x = sx[0].val();
        if x * b * b > 2.0 * ERF_KAPPA {
            let ys = &ctx.ys.diag[j0..j0 + len];
            for j in 0..len {
                sin2[j] = erf_margin(b, x, ys[j], sxy[j].val());
            }
        }
    }
    for l in 0..arch.depth {
        let sxl = sx[l];
        let ys = &ctx.ys.diag[l * m + j0..l * m + j0 + len];
        match arch.act {
            Activation::AbRelu { a, b } => {
                let (cc, f) = abrelu_consts(a, b);
                let iys = &ctx.ys.inv_diag[l * m + j0..l * m + j0 + len];
                // one copy of the loop per value of `depth1`, a constant in each (a test of it inside
                // the loop kept the compiler from vectorising the loop)
                macro_rules! lanes {
                    ($depth1:literal) => {
                        for j in 0..len {
                            let (o, t, s2) = abrelu_pair(
                                cc,
                                f,
                                a * b,
                                sxl,
                                ys[j],
                                iys[j],
                                sxy[j],
                                th[j],
                                $depth1,
                            );
                            sin2[j] = if s2 < sin2[j] { s2 } else { sin2[j] };
                            let (u, v) = dense_after(arch, l, o, t);
                            sxy[j] = u;
                            th[j] = v;
                        }
                    };
                }
                if arch.depth == 1 {
                    lanes!(true)
                } else {
                    lanes!(false)
                }
            }
            Activation::Erf { a, b, c } => {
                for j in 0..len {
                    let (o, t, _) = erf_pair(a, b, c, sxl, ys[j], sxy[j], th[j]);
                    let (u, v) = dense_after(arch, l, o, t);
                    sxy[j] = u;
                    th[j] = v;
                }
            }
            Activation::Rbf { gamma } if l == 0 => {
                // first layer: the distance's value from |x - y|^2 directly (see rbf_pair_dist)
                let mut dist = [0.0; B];
                dist_block(ctx, i, j0, len, &mut dist);
                let w2 = arch.w_std * arch.w_std;
                for j in 0..len {
                    let base = sxl + ys[j] - sxy[j] * 2.0;
                    let exact = base + (w2 * dist[j] - base.val());
                    let (o, t) = rbf_pair_dist(gamma, exact, th[j]);
                    let (u, v) = dense_after(arch, l, o, t);
                    sxy[j] = u;
                    th[j] = v;
                }
            }
            Activation::Rbf { gamma } => {
                for j in 0..len {
                    let (o, t) = rbf_pair(gamma, sxl, ys[j], sxy[j], th[j]);
                    let (u, v) = dense_after(arch, l, o, t);
                    sxy[j] = u;
                    th[j] = v;
                }
            }
        }
    }
    let src = if ctx.kind == Kind::Ntk { &*th } else { &*sxy };
    out[..len].copy_from_slice(src);
}

/// Values and tangents of one pair after a dense layer: `S = w^2 o + b^2` and the NTK update, for the
/// value (entry 0) and the tangents (which carry no bias).
#[inline(always)]
fn dense_tangents<const N: usize>(
    arch: &Arch,
    bias: f64,
    w2: f64,
    o: [f64; N],
    t: [f64; N],
) -> ([f64; N], [f64; N]) {
    let mut sv = [0.0; N];
    let mut tv = [0.0; N];
    for k in 0..N {
        sv[k] = o[k] * w2 + if k == 0 { bias } else { 0.0 };
        tv[k] = if arch.standard {
            o[k] * arch.width + t[k] * w2 + if k == 0 { 1.0 } else { 0.0 }
        } else {
            sv[k] + t[k] * w2
        };
    }
    (sv, tv)
}

/// Lanes of one block of pairs: the kernel `v` and its partial derivatives along `p = |x|^2/d`,
/// `r = <x, y>/d` and (symmetric blocks only) `q = |y|^2/d`, each times its tangent's seed.
struct Lanes {
    v: [f64; B],
    p: [f64; B],
    r: [f64; B],
    q: [f64; B],
}

impl Lanes {
    fn new() -> Self {
        Lanes {
            v: [0.0; B],
            p: [0.0; B],
            r: [0.0; B],
            q: [0.0; B],
        }
    }
}

/// [`eval_block`] with forward tangents written out by hand, for the ABReLU family and erf (about half
/// the arithmetic of the generic dual numbers; the same values, derivatives equal to rounding).
///
/// Tangent `p` is along `p = |x|^2/d` (`dX = X'_l sig_p`, `dS = 0` at the input), tangent `r` along
/// `r = <x, y>/d` (`dX = 0`, seed `sig_r`), and with `Q = true` tangent `q` along `q = |y|^2/d`
/// (`dY = Y'_l sig_q[j]`), the mirror image of `p`: one evaluation then gives the gradients with respect
/// to both points of a pair.  `X = Sxx` (row i), `Y = Syy`, `S = Sxy`, `Theta` the NTK.
///
/// - ABReLU, with `s = sqrt(XY - S^2)`, `theta = atan2(s, S)`, `Sdot = cc - f theta` (formed from the
///   smaller of `theta` and `pi - theta`, see [`abrelu_pair`]):
///   `dS' = Sdot dS + (f s / 2X) dX + (f s / 2Y) dY`, `dtheta = (S dX / 2X + S dY / 2Y - dS) / s` (both
///   from `s^2 + S^2 = XY`; where `s = 0` the cusp convention `ds = 0` gives `dtheta = 0`),
///   `dTheta' = Sdot dTheta - f Theta dtheta`.
/// - erf (inputs scaled by `b^2`), with `q = 1 + 2(X + Y) + 4 max(s^2, 0)`, `r = sqrt q`:
///   `S' = a^2 (2/pi) atan2(2S, r) + c^2`, `dr = dq / 2r`,
///   `d atan2 = (2 r dS - 2 S dr) / (q + 4 S^2)`, `Theta' = a^2 b^2 (4/pi) Theta / r`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn eval_block_grad<const Q: bool>(
    ctx: &Ctx,
    sx: &[Dual<2>],
    j0: usize,
    r: &[f64],
    sig_r: f64,
    sig_q: &[f64],
    out: &mut Lanes,
    sin2: &mut [f64],
) {
    let arch = &ctx.arch;
    let len = r.len();
    let m = ctx.ys.pts.n;
    let dd = ctx.d as f64;
    let w2 = arch.w_std * arch.w_std;
    // value, p-, r- and q-tangent of S and Theta, per lane (separate arrays, so the lanes vectorise)
    let (mut s0, mut s1, mut s2v, mut s3) = ([0.0; B], [0.0; B], [0.0; B], [0.0; B]);
    let (mut t0, mut t1, mut t2v, mut t3) = ([0.0; B], [0.0; B], [0.0; B], [0.0; B]);
    let sin2 = &mut sin2[..len];
    let dsr0 = w2 * sig_r;
    let dtr0 = if arch.standard { dd * sig_r } else { dsr0 };
    for j in 0..len {
        let (u, v) = input_layer(arch, r[j], dd);
        (s0[j], s1[j], s2v[j]) = (u, 0.0, dsr0);
        (t0[j], t1[j], t2v[j]) = (v, 0.0, dtr0);
        sin2[j] = 1.0;
    }
    for l in 0..arch.depth {
        let x = sx[l].v;
        let dx = sx[l].d[0];
        let ys = &ctx.ys.diag[l * m + j0..l * m + j0 + len];
        let iys = &ctx.ys.inv_diag[l * m + j0..l * m + j0 + len];
        let dys = &ctx.ys.ddiag[l * m + j0..l * m + j0 + len];
        let bias = arch.bias_var_after(l);
        match arch.act {
            Activation::AbRelu { a, b } => {
                let (cc, f) = abrelu_consts(a, b);
                let hx = if x > 0.0 { 0.5 / x } else { 0.0 };
                // one copy of the loop per value of `depth1` (see eval_block)
                macro_rules! lanes {
                    ($depth1:literal) => {
                        for j in 0..len {
                            let (s_in, sp, sr, t_in, tp, tr) =
                                (s0[j], s1[j], s2v[j], t0[j], t1[j], t2v[j]);
                            let prod = x * ys[j];
                            let s2 = prod - s_in * s_in;
                            let s = s2.sqrt_safe();
                            // the small angle and its defect, as in abrelu_pair
                            let obtuse = s_in < 0.0;
                            let ax = s_in.abs();
                            let (small, h) = f64::atan2_half_known_r2(s, ax, FRAC_PI_2, 0.0, 0.0);
                            let (base, slope) = if obtuse { (a * b, f) } else { (cc, -f) };
                            let sdot = small * slope + base;
                            let out = base * s_in + f * h;
                            let mut margin = if f != 0.0 { s2 - TAU * prod } else { 1.0 };
                            if $depth1 && f != 0.0 {
                                let m = obtuse_margin(f, s, s2, prod, s_in, out, sdot);
                                margin = if m < margin { m } else { margin };
                            }
                            sin2[j] = if margin < sin2[j] { margin } else { sin2[j] };
                            let is = if s2 > 0.0 { 1.0 / s } else { 0.0 };
                            let dth_p = (s_in * hx * dx - sp) * is;
                            let dth_r = -sr * is;
                            let o = [out, sdot * sp + f * s * hx * dx, sdot * sr];
                            let t = [
                                t_in * sdot,
                                sdot * tp - f * t_in * dth_p,
                                sdot * tr - f * t_in * dth_r,
                            ];
                            let ([u0, u1, u2], [v0, v1, v2]) = dense_tangents(arch, bias, w2, o, t);
                            (s0[j], s1[j], s2v[j], t0[j], t1[j], t2v[j]) = (u0, u1, u2, v0, v1, v2);
                            if Q {
                                let (sq, tq) = (s3[j], t3[j]);
                                // half of 1/Y, 0 where Y is 0 (as hx)
                                let hy = 0.5 * iys[j];
                                let dy = dys[j] * sig_q[j];
                                let dth_q = (s_in * hy * dy - sq) * is;
                                let ([_, u3], [_, v3]) = dense_tangents(
                                    arch,
                                    bias,
                                    w2,
                                    [0.0, sdot * sq + f * s * hy * dy],
                                    [0.0, sdot * tq - f * t_in * dth_q],
                                );
                                (s3[j], t3[j]) = (u3, v3);
                            }
                        }
                    };
                }
                if arch.depth == 1 {
                    lanes!(true)
                } else {
                    lanes!(false)
                }
            }
            Activation::Erf { a, b, c } => {
                let b2 = b * b;
                let (k_out, k_th) = (a * a * 2.0 / PI, b2 * a * a * 4.0 / PI);
                let (xb, dxb) = (x * b2, dx * b2);
                // the first layer's margin, where it can be negative (see erf_margin)
                let check = l == 0 && xb > 2.0 * ERF_KAPPA;
                for j in 0..len {
                    let (s_raw, sp_raw, sr_raw) = (s0[j], s1[j], s2v[j]);
                    let (t_in, tp, tr) = (t0[j], t1[j], t2v[j]);
                    let yb = ys[j] * b2;
                    let (s_in, sp, sr) = (s_raw * b2, sp_raw * b2, sr_raw * b2);
                    let s2 = xb * yb - s_in * s_in;
                    let live = s2 > 0.0;
                    let q = (xb + yb) * 2.0 + 1.0 + (if live { s2 } else { 0.0 }) * 4.0;
                    // large norms at a small angle (erf_margin, on the same numbers); a select,
                    // not a branch, so that the loop vectorises
                    let m = if check { ERF_KAPPA * q - xb * yb } else { 1.0 };
                    sin2[j] = if m < sin2[j] { m } else { sin2[j] };
                    let rr = q.sqrt_safe();
                    let (ir, iden) = (1.0 / rr, 1.0 / (q + 4.0 * s_in * s_in));
                    // the tangents of s^2 are kept where its value is clamped at 0: q is a polynomial
                    // in the covariances, smooth everywhere (no cusp), and where s^2 is rounding noise
                    // its tangent is still right to ~eps Syy relative to dq (dropping it cost up to
                    // ~sin(theta) Syy, 1e-11 relative on erf gradients at near-parallel pairs)
                    let ds2_p = yb * dxb - 2.0 * s_in * sp;
                    let ds2_r = -2.0 * s_in * sr;
                    let dr_p = 0.5 * (2.0 * dxb + 4.0 * ds2_p) * ir;
                    let dr_r = 0.5 * (4.0 * ds2_r) * ir;
                    let dth_p = (2.0 * rr * sp - 2.0 * s_in * dr_p) * iden;
                    let dth_r = (2.0 * rr * sr - 2.0 * s_in * dr_r) * iden;
                    let o = [
                        f64::atan2_fill(s_in * 2.0, rr, 0.0) * k_out + c * c,
                        k_out * dth_p,
                        k_out * dth_r,
                    ];
                    let t = [
                        t_in * k_th / rr,
                        k_th * (tp - t_in * dr_p * ir) * ir,
                        k_th * (tr - t_in * dr_r * ir) * ir,
                    ];
                    let ([u0, u1, u2], [v0, v1, v2]) = dense_tangents(arch, bias, w2, o, t);
                    (s0[j], s1[j], s2v[j], t0[j], t1[j], t2v[j]) = (u0, u1, u2, v0, v1, v2);
                    if Q {
                        let (sq, tq) = (s3[j] * b2, t3[j]);
                        let dyb = dys[j] * sig_q[j] * b2;
                        let ds2_q = xb * dyb - 2.0 * s_in * sq;
                        let dr_q = 0.5 * (2.0 * dyb + 4.0 * ds2_q) * ir;
                        let dth_q = (2.0 * rr * sq - 2.0 * s_in * dr_q) * iden;
                        let ([_, u3], [_, v3]) = dense_tangents(
                            arch,
                            bias,
                            w2,
                            [0.0, k_out * dth_q],
                            [0.0, k_th * (tq - t_in * dr_q * ir) * ir],
                        );
                        (s3[j], t3[j]) = (u3, v3);
                    }
                }
            }
            Activation::Rbf { .. } => unreachable!("eval_block_grad handles ABReLU and erf"),
        }
    }
    let (a0, a1, a2, a3) = if ctx.kind == Kind::Ntk {
        (&t0, &t1, &t2v, &t3)
    } else {
        (&s0, &s1, &s2v, &s3)
    };
    out.v[..len].copy_from_slice(&a0[..len]);
    out.p[..len].copy_from_slice(&a1[..len]);
    out.r[..len].copy_from_slice(&a2[..len]);
    if Q {
        out.q[..len].copy_from_slice(&a3[..len]);
    }
}

/// Whether `x` and `y` are exactly parallel or antiparallel (`x = lambda y`, or `y = 0`): with the pivot
/// `k = argmax |y_k|`, whether `x_i y_k == x_k y_i` for every `i`, the products compared exactly as
/// double-double values (`p + e` with `e = fma(a, b, -p)`; exact unless the error term underflows, i.e.
/// for entries below ~1e-290 times the row's largest).  Where this holds `|x ^ y|^2` is exactly 0 and the
/// cusp convention applies (`ds = 0`), as in the exact reference.
fn collinear(x: &[f64], y: &[f64]) -> bool {
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
fn pair_invariants(
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
fn scratch_len(d: usize) -> usize {
    3 * d
}

/// Kernel value of one pair by the stable recursion.
fn stable_value(arch: &Arch, kind: Kind, x: &[f64], y: &[f64], scratch: &mut [f64]) -> f64 {
    let dn = x.len();
    let (u, rest) = scratch.split_at_mut(dn);
    let (s, v) = rest.split_at_mut(dn);
    let ([p, q, r, e, ep, g], _) = pair_invariants(x, y, u, s, &mut v[..dn]);
    pair_stable(arch, kind, Invariants { p, q, r, e, ep, g }, dn as f64)
}

/// `grad += w * d/dx k(x, y)` by the stable recursion, with exact invariant derivatives:
/// `dp = 2x/d`, `dr = y/d`, `de = 2(x - y)/d`, `dep = 2(x + y)/d`, `dg = 2 |y|^2 v / d^2`.
fn stable_grad_add(
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

// ---------------------------------------------------------------------------------------------------
// Gram matrix

#[inline(always)]
fn gram_tile_impl(
    ctx: &Ctx,
    i0: usize,
    i1: usize,
    j0: usize,
    j1: usize,
    out: SyncPtr,
    mirror: bool,
) {
    let m = ctx.ys.pts.n;
    let depth = ctx.arch.depth;
    let large = ctx.d > SMALL_D;
    let mut rbuf = if large {
        vec![0.0; (i1 - i0) * TJ]
    } else {
        Vec::new()
    };
    let mut scratch = vec![0.0; scratch_len(ctx.d)];
    let mut sx = vec![0.0; depth];
    let mut r = [0.0; B];
    let mut vals = [0.0; B];
    let mut sin2 = [0.0; B];
    let mut c0 = j0;
    while c0 < j1 {
        let cl = TJ.min(j1 - c0);
        if large {
            gemm_inner(ctx, i0, i1 - i0, c0, cl, &mut rbuf);
        }
        for i in i0..i1 {
            for (l, s) in sx.iter_mut().enumerate() {
                *s = ctx.xs.diag[l * ctx.xs.pts.n + i];
            }
            let mut b0 = c0;
            while b0 < c0 + cl {
                let len = B.min(c0 + cl - b0);
                let grow = if large {
                    Some(&rbuf[(i - i0) * cl + (b0 - c0)..])
                } else {
                    None
                };
                inner_block(ctx, i, b0, len, grow, &mut r);
                eval_block::<f64>(ctx, i, &sx, b0, &r[..len], &mut vals, &mut sin2);
                for j in 0..len {
                    if sin2[j] < 0.0 {
                        vals[j] = stable_value(
                            &ctx.arch,
                            ctx.kind,
                            ctx.xs.pts.row(i),
                            ctx.ys.pts.row(b0 + j),
                            &mut scratch,
                        );
                    }
                }
                // SAFETY: tiles write disjoint entries (see `gram`).
                unsafe {
                    for j in 0..len {
                        *out.0.add(i * m + b0 + j) = vals[j];
                        if mirror {
                            *out.0.add((b0 + j) * m + i) = vals[j];
                        }
                    }
                }
                b0 += len;
            }
        }
        c0 += cl;
    }
}

simd_dispatch!(gram_tile, gram_tile_impl, (ctx: &Ctx, i0: usize, i1: usize, j0: usize, j1: usize, out: SyncPtr, mirror: bool));

/// The kernel matrix `K[i, j] = k(x_i, y_j)`, row-major `(n, m)`; `y = None` computes the symmetric
/// `K(x, x)` from its upper triangle of tiles and mirrors it (exactly symmetric).
pub fn gram(arch: &Arch, kind: Kind, x: Points, y: Option<Points>) -> Result<Vec<f64>, NtkError> {
    let sym = y.is_none();
    let y = y.unwrap_or(x);
    let ctx = Ctx::new(arch, kind, x, y)?;
    let (n, m) = (x.n, y.n);
    let mut out = vec![0.0; n * m];
    if n == 0 || m == 0 {
        return Ok(out);
    }
    let ptr = SyncPtr(out.as_mut_ptr());
    pool::install(|| {
        if sym {
            let nt = n.div_ceil(TS);
            let tiles: Vec<(usize, usize)> =
                (0..nt).flat_map(|a| (a..nt).map(move |b| (a, b))).collect();
            tiles.par_iter().for_each(|&(a, b)| {
                let (i0, i1) = (a * TS, ((a + 1) * TS).min(n));
                let (j0, j1) = (b * TS, ((b + 1) * TS).min(n));
                gram_tile(&ctx, i0, i1, j0, j1, ptr, a != b);
                if a == b {
                    // make the diagonal tile exactly symmetric: lower <- upper
                    let p = ptr;
                    for i in i0..i1 {
                        for j in (i + 1)..i1 {
                            // SAFETY: inside this task's own tile.
                            unsafe { *p.0.add(j * n + i) = *p.0.add(i * n + j) };
                        }
                    }
                }
            });
        } else {
            let nt = n.div_ceil(TI);
            (0..nt).into_par_iter().for_each(|a| {
                let (i0, i1) = (a * TI, ((a + 1) * TI).min(n));
                gram_tile(&ctx, i0, i1, 0, m, ptr, false);
            });
        }
    });
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------
// Kernel gradient contraction

/// Tangent seeds of a row: `dk/dp` is carried times `sig_p = 2|x|/d` (the size of `dp/dx = 2x/d`) and
/// `dk/dr` times `sig_r = |x|` (1 for `x = 0`).  Both partials grow like `1/|x|` for small inputs, so
/// unscaled tangents overflow (to inf, then NaN) for `|x|` near 1e-160 although the gradient is finite.
#[inline(always)]
fn row_scales(x: &[f64], dd: f64) -> (f64, f64) {
    let nx = sq_norm(x).sqrt();
    let big = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // |x| from the scaled norm when |x|^2 underflows
    let nx = if nx > 0.0 || big == 0.0 {
        nx
    } else {
        big * x.iter().map(|v| (v / big) * (v / big)).sum::<f64>().sqrt()
    };
    (2.0 * nx / dd, if nx > 0.0 { nx } else { 1.0 })
}

#[inline(always)]
fn grad_rows_impl(
    ctx: &Ctx,
    i0: usize,
    i1: usize,
    w: &[f64],
    g: &mut [f64],
    mut val: Option<&mut [f64]>,
) {
    let (m, d, depth) = (ctx.ys.pts.n, ctx.d, ctx.arch.depth);
    let dd = d as f64;
    let ni = i1 - i0;
    let large = d > SMALL_D;
    let mut rbuf = if large {
        vec![0.0; ni * TJ]
    } else {
        Vec::new()
    };
    let mut acc = vec![0.0; ni * B]; // lanes of sum_j w_j dk/dp
    let want_val = val.is_some();
    let mut vacc = if want_val {
        vec![0.0; ni * B]
    } else {
        Vec::new()
    }; // lanes of sum_j w_j k
    let mut bt = vec![0.0; ni * TJ]; // w_j dk/dr for the current column tile
    let mut gy = vec![0.0; ni * d]; // sum_j w_j dk/dr y_j
    let mut flagged: Vec<(usize, usize)> = Vec::new();
    let mut scales = vec![(0.0, 1.0); ni];
    let mut sx = vec![Dual::<2>::cst(0.0); depth];
    let mut r = [0.0; B];
    let mut rd = [Dual::<2>::cst(0.0); B];
    let mut vals = [Dual::<2>::cst(0.0); B];
    let mut lanes4 = Lanes::new();
    let mut sin2 = [0.0; B];
    // hand-written tangents for the ABReLU family and erf; rbf keeps the generic dual numbers
    let by_hand = !matches!(ctx.arch.act, Activation::Rbf { .. });
    let mut c0 = 0;
    while c0 < m {
        let cl = TJ.min(m - c0);
        if large {
            gemm_inner(ctx, i0, ni, c0, cl, &mut rbuf);
        }
        for i in i0..i1 {
            let a = i - i0;
            // tangents seeded along physically scaled directions (see `row_scales`)
            let (sig_p, sig_r) = row_scales(ctx.xs.pts.row(i), dd);
            scales[a] = (sig_p, sig_r);
            for (l, s) in sx.iter_mut().enumerate() {
                let idx = l * ctx.xs.pts.n + i;
                *s = Dual::new(ctx.xs.diag[idx], [ctx.xs.ddiag[idx] * sig_p, 0.0]);
            }
            let lanes = &mut acc[a * B..(a + 1) * B];
            let brow = &mut bt[a * TJ..(a + 1) * TJ];
            let mut b0 = c0;
            while b0 < c0 + cl {
                let len = B.min(c0 + cl - b0);
                let grow = if large {
                    Some(&rbuf[a * cl + (b0 - c0)..])
                } else {
                    None
                };
                inner_block(ctx, i, b0, len, grow, &mut r);
                if by_hand {
                    eval_block_grad::<false>(
                        ctx,
                        &sx,
                        b0,
                        &r[..len],
                        sig_r,
                        &[],
                        &mut lanes4,
                        &mut sin2,
                    );
                    for j in 0..len {
                        vals[j] = Dual::new(lanes4.v[j], [lanes4.p[j], lanes4.r[j]]);
                    }
                } else {
                    for j in 0..len {
                        rd[j] = Dual::new(r[j], [0.0, sig_r]);
                    }
                    eval_block::<Dual<2>>(ctx, i, &sx, b0, &rd[..len], &mut vals, &mut sin2);
                }
                let wb = &w[b0..b0 + len];
                let bslot = &mut brow[b0 - c0..b0 - c0 + len];
                for j in 0..len {
                    let keep = sin2[j] >= 0.0;
                    let kp = if keep { vals[j].d[0] } else { 0.0 };
                    let kr = if keep { vals[j].d[1] } else { 0.0 };
                    lanes[j] += wb[j] * kp;
                    bslot[j] = wb[j] * kr;
                }
                if want_val {
                    let vl = &mut vacc[a * B..(a + 1) * B];
                    for j in 0..len {
                        // flagged pairs get their value from the stable path below
                        let v = if sin2[j] >= 0.0 { vals[j].v } else { 0.0 };
                        vl[j] += wb[j] * v;
                    }
                }
                for j in 0..len {
                    if sin2[j] < 0.0 {
                        flagged.push((i, b0 + j));
                    }
                }
                b0 += len;
            }
        }
        // gy += bt (ni x cl) . y[c0..c0+cl] (cl x d)
        let y = &ctx.ys.pts.data[c0 * d..];
        // SAFETY: bt holds ni rows of stride TJ (cl <= TJ used), y holds cl rows of d, gy is ni x d.
        unsafe {
            matrixmultiply::dgemm(
                ni,
                cl,
                d,
                1.0,
                bt.as_ptr(),
                TJ as isize,
                1,
                y.as_ptr(),
                d as isize,
                1,
                1.0,
                gy.as_mut_ptr(),
                d as isize,
                1,
            );
        }
        c0 += cl;
    }
    for a in 0..ni {
        let mut s = 0.0;
        for &v in &acc[a * B..(a + 1) * B] {
            s += v;
        }
        let xi = ctx.xs.pts.row(i0 + a);
        let (sig_p, sig_r) = scales[a];
        // sum_j w_j dk/dp (2 x_i / d) with dk/dp carried as dk/dp * sig_p, sig_p = 2|x_i|/d
        let coef = if sig_p > 0.0 {
            s * 2.0 / (dd * sig_p)
        } else {
            0.0
        };
        let cy = 1.0 / (dd * sig_r);
        for c in 0..d {
            g[a * d + c] = coef * xi[c] + gy[a * d + c] * cy;
        }
    }
    if let Some(out) = val.as_deref_mut() {
        for a in 0..ni {
            let mut s = 0.0;
            for &t in &vacc[a * B..(a + 1) * B] {
                s += t;
            }
            out[a] = s;
        }
    }
    let mut scratch = vec![0.0; scratch_len(d)];
    for &(i, j) in &flagged {
        let a = i - i0;
        if let Some(out) = val.as_deref_mut() {
            out[a] += w[j]
                * stable_value(
                    &ctx.arch,
                    ctx.kind,
                    ctx.xs.pts.row(i),
                    ctx.ys.pts.row(j),
                    &mut scratch,
                );
        }
        stable_grad_add(
            &ctx.arch,
            ctx.kind,
            ctx.xs.pts.row(i),
            ctx.ys.pts.row(j),
            w[j],
            &mut g[a * d..(a + 1) * d],
            &mut scratch,
        );
    }
}

simd_dispatch!(grad_rows, grad_rows_impl, (ctx: &Ctx, i0: usize, i1: usize, w: &[f64], g: &mut [f64], val: Option<&mut [f64]>));

/// `G[i, :] = sum_j w_j d/dx k(x, y_j) |_{x = x_i}`, row-major `(n, d)`.
pub fn kernel_grad(
    arch: &Arch,
    kind: Kind,
    x: Points,
    y: Points,
    w: &[f64],
) -> Result<Vec<f64>, NtkError> {
    Ok(grad_driver(arch, kind, x, y, w, false)?.1)
}

/// `(K w, G)` in one pass: `values[i] = sum_j w_j k(x_i, y_j)` and `G` as in [`kernel_grad`] (the value
/// is the real part of the dual numbers the gradient already evaluates, so it costs almost nothing).
pub fn kernel_value_grad(
    arch: &Arch,
    kind: Kind,
    x: Points,
    y: Points,
    w: &[f64],
) -> Result<(Vec<f64>, Vec<f64>), NtkError> {
    grad_driver(arch, kind, x, y, w, true)
}

/// Row tiles of [`grad_rows`] in parallel; the values too when `with_values` (else an empty vector).
fn grad_driver(
    arch: &Arch,
    kind: Kind,
    x: Points,
    y: Points,
    w: &[f64],
    with_values: bool,
) -> Result<(Vec<f64>, Vec<f64>), NtkError> {
    ensure!(
        w.len() == y.n,
        Shape,
        "weights has length {} but y has {} rows",
        w.len(),
        y.n
    );
    if self_pairs::eligible(arch, &x, &y) {
        // y = [x; rest]: the x-x block one evaluation per unordered pair (see self_pairs)
        let rest = Points::new(&y.data[x.n * x.d..], y.n - x.n, x.d)?;
        let (v, g) = self_pairs::value_grad(arch, kind, x, rest, w)?;
        return Ok((if with_values { v } else { Vec::new() }, g));
    }
    let ctx = Ctx::new(arch, kind, x, y)?;
    let d = x.d;
    let mut g = vec![0.0; x.n * d];
    let mut v = vec![0.0; if with_values { x.n } else { 0 }];
    if x.n == 0 || y.n == 0 {
        return Ok((v, g));
    }
    pool::install(|| {
        let tiles = g.par_chunks_mut(TI * d).enumerate();
        if with_values {
            tiles.zip(v.par_chunks_mut(TI)).for_each(|((a, gt), vt)| {
                let i0 = a * TI;
                grad_rows(&ctx, i0, (i0 + TI).min(x.n), w, gt, Some(vt));
            });
        } else {
            tiles.for_each(|(a, gt)| {
                let i0 = a * TI;
                grad_rows(&ctx, i0, (i0 + TI).min(x.n), w, gt, None);
            });
        }
    });
    Ok((v, g))
}

// ---------------------------------------------------------------------------------------------------
// Matrix-vector product

#[inline(always)]
fn matvec_rows_impl(ctx: &Ctx, i0: usize, i1: usize, v: &[f64], out: &mut [f64]) {
    let (m, depth) = (ctx.ys.pts.n, ctx.arch.depth);
    let ni = i1 - i0;
    let large = ctx.d > SMALL_D;
    let mut rbuf = if large {
        vec![0.0; ni * TJ]
    } else {
        Vec::new()
    };
    let mut acc = vec![0.0; ni * B];
    let mut scratch = vec![0.0; scratch_len(ctx.d)];
    let mut sx = vec![0.0; depth];
    let mut r = [0.0; B];
    let mut vals = [0.0; B];
    let mut sin2 = [0.0; B];
    let mut c0 = 0;
    while c0 < m {
        let cl = TJ.min(m - c0);
        if large {
            gemm_inner(ctx, i0, ni, c0, cl, &mut rbuf);
        }
        for i in i0..i1 {
            let a = i - i0;
            for (l, s) in sx.iter_mut().enumerate() {
                *s = ctx.xs.diag[l * ctx.xs.pts.n + i];
            }
            let lanes = &mut acc[a * B..(a + 1) * B];
            let mut b0 = c0;
            while b0 < c0 + cl {
                let len = B.min(c0 + cl - b0);
                let grow = if large {
                    Some(&rbuf[a * cl + (b0 - c0)..])
                } else {
                    None
                };
                inner_block(ctx, i, b0, len, grow, &mut r);
                eval_block::<f64>(ctx, i, &sx, b0, &r[..len], &mut vals, &mut sin2);
                for j in 0..len {
                    if sin2[j] < 0.0 {
                        vals[j] = stable_value(
                            &ctx.arch,
                            ctx.kind,
                            ctx.xs.pts.row(i),
                            ctx.ys.pts.row(b0 + j),
                            &mut scratch,
                        );
                    }
                }
                let vb = &v[b0..b0 + len];
                for j in 0..len {
                    lanes[j] += vals[j] * vb[j];
                }
                b0 += len;
            }
        }
        c0 += cl;
    }
    for a in 0..ni {
        let mut s = 0.0;
        for &t in &acc[a * B..(a + 1) * B] {
            s += t;
        }
        out[a] = s;
    }
}

simd_dispatch!(matvec_rows, matvec_rows_impl, (ctx: &Ctx, i0: usize, i1: usize, v: &[f64], out: &mut [f64]));

/// `(K v)[i] = sum_j k(x_i, y_j) v_j` without storing `K`.
pub fn kernel_matvec(
    arch: &Arch,
    kind: Kind,
    x: Points,
    y: Points,
    v: &[f64],
) -> Result<Vec<f64>, NtkError> {
    ensure!(
        v.len() == y.n,
        Shape,
        "v has length {} but y has {} rows",
        v.len(),
        y.n
    );
    let ctx = Ctx::new(arch, kind, x, y)?;
    let mut out = vec![0.0; x.n];
    if x.n == 0 || y.n == 0 {
        return Ok(out);
    }
    pool::install(|| {
        out.par_chunks_mut(TI).enumerate().for_each(|(a, ot)| {
            let i0 = a * TI;
            let i1 = (i0 + TI).min(x.n);
            matvec_rows(&ctx, i0, i1, v, ot);
        });
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recursion::pair_fast;

    pub(super) fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn points(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n * d).map(|_| lcg(&mut s) * 1.5).collect()
    }

    fn reference(arch: &Arch, kind: Kind, x: &[f64], y: &[f64]) -> f64 {
        let d = x.len() as f64;
        let mut sx = vec![0.0; arch.depth];
        let mut sy = vec![0.0; arch.depth];
        diag_chain(arch, sq_norm(x) / d, &mut sx);
        diag_chain(arch, sq_norm(y) / d, &mut sy);
        let mut scratch = vec![0.0; scratch_len(x.len())];
        let (k, flagged) = pair_fast(arch, kind, dot(x, y) / d, &sx, &sy, d);
        if flagged {
            stable_value(arch, kind, x, y, &mut scratch)
        } else {
            k
        }
    }

    pub(super) fn archs() -> Vec<Arch> {
        vec![
            Arch::relu(3, 1.0, 1.0),
            Arch::new(
                2,
                Activation::Erf {
                    a: 0.5,
                    b: 0.4,
                    c: 0.5,
                },
                1.3,
                0.2,
                false,
                128.0,
            )
            .unwrap(),
            Arch::new(1, Activation::Rbf { gamma: 0.5 }, 1.0, 0.0, false, 128.0).unwrap(),
            Arch::new(
                2,
                Activation::AbRelu { a: 0.2, b: 1.0 },
                0.8,
                2.0,
                true,
                64.0,
            )
            .unwrap(),
        ]
    }

    #[test]
    fn gram_matches_pairwise_reference() {
        for d in [2usize, 40] {
            let (n, m) = (70, 300);
            let xs = points(n, d, 1);
            let ys = points(m, d, 2);
            for arch in archs() {
                let x = Points::new(&xs, n, d).unwrap();
                let y = Points::new(&ys, m, d).unwrap();
                let k = gram(&arch, Kind::Ntk, x, Some(y)).unwrap();
                let ks = gram(&arch, Kind::Ntk, x, None).unwrap();
                for i in 0..n {
                    for j in 0..m {
                        let e = reference(
                            &arch,
                            Kind::Ntk,
                            &xs[i * d..(i + 1) * d],
                            &ys[j * d..(j + 1) * d],
                        );
                        assert!(
                            (k[i * m + j] - e).abs() <= 1e-12 * e.abs().max(1e-300),
                            "{arch:?} {i} {j}"
                        );
                    }
                    for j in 0..n {
                        assert_eq!(ks[i * n + j], ks[j * n + i]);
                        let e = reference(
                            &arch,
                            Kind::Ntk,
                            &xs[i * d..(i + 1) * d],
                            &xs[j * d..(j + 1) * d],
                        );
                        assert!(
                            (ks[i * n + j] - e).abs() <= 1e-12 * e.abs(),
                            "sym {arch:?} {i} {j} d={d} got {} want {e}",
                            ks[i * n + j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn grad_and_matvec_match_finite_differences_of_gram() {
        for d in [3usize, 20] {
            let (n, m) = (40, 290);
            let xs = points(n, d, 3);
            let ys = points(m, d, 4);
            let w: Vec<f64> = points(m, 1, 5);
            for arch in archs() {
                let x = Points::new(&xs, n, d).unwrap();
                let y = Points::new(&ys, m, d).unwrap();
                let g = kernel_grad(&arch, Kind::Ntk, x, y, &w).unwrap();
                let kv = kernel_matvec(&arch, Kind::Ntk, x, y, &w).unwrap();
                let k = gram(&arch, Kind::Ntk, x, Some(y)).unwrap();
                for i in 0..n {
                    let e: f64 = (0..m).map(|j| k[i * m + j] * w[j]).sum();
                    assert!(
                        (kv[i] - e).abs()
                            <= 1e-11 * (0..m).map(|j| (k[i * m + j] * w[j]).abs()).sum::<f64>()
                    );
                }
                let h = 1e-6;
                for i in [0usize, 17, 39] {
                    for c in 0..d {
                        let f = |delta: f64| {
                            let mut xi = xs[i * d..(i + 1) * d].to_vec();
                            xi[c] += delta;
                            (0..m)
                                .map(|j| {
                                    w[j] * reference(&arch, Kind::Ntk, &xi, &ys[j * d..(j + 1) * d])
                                })
                                .sum::<f64>()
                        };
                        let fd = (f(h) - f(-h)) / (2.0 * h);
                        let got = g[i * d + c];
                        assert!(
                            (got - fd).abs() <= 1e-5 * fd.abs().max(1.0),
                            "{arch:?} d={d} i={i} c={c}: {got} vs {fd}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_bits() {
        let (n, m, d) = (150, 270, 30);
        let xs = points(n, d, 7);
        let ys = points(m, d, 8);
        let w = points(m, 1, 9);
        let arch = Arch::relu(3, 1.0, 1.0);
        let x = Points::new(&xs, n, d).unwrap();
        let y = Points::new(&ys, m, d).unwrap();
        pool::set_num_threads(1);
        let (k1, g1) = (
            gram(&arch, Kind::Ntk, x, None).unwrap(),
            kernel_grad(&arch, Kind::Ntk, x, y, &w).unwrap(),
        );
        pool::set_num_threads(3);
        let (k3, g3) = (
            gram(&arch, Kind::Ntk, x, None).unwrap(),
            kernel_grad(&arch, Kind::Ntk, x, y, &w).unwrap(),
        );
        assert_eq!(k1, k3);
        assert_eq!(g1, g3);
    }

    #[test]
    fn duplicates_follow_the_cusp_convention() {
        // d/dx k(x, y)|_{y = x} = 1/2 d/dx k(x, x)
        let d = 4;
        let xs = points(1, d, 11);
        let arch = Arch::relu(3, 1.0, 1.0);
        let x = Points::new(&xs, 1, d).unwrap();
        let g = kernel_grad(&arch, Kind::Ntk, x, x, &[1.0]).unwrap();
        let h = 1e-6;
        for c in 0..d {
            let f = |delta: f64| {
                let mut xi = xs.clone();
                xi[c] += delta;
                reference(&arch, Kind::Ntk, &xi, &xi)
            };
            let fd = 0.5 * (f(h) - f(-h)) / (2.0 * h);
            assert!(
                (g[c] - fd).abs() < 1e-7 * fd.abs().max(1.0),
                "{c}: {} vs {fd}",
                g[c]
            );
        }
    }
}
