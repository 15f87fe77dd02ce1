//! Block evaluators: the per-point quantities of each side, the inner products `<x_i, y_j>` of a tile
//! (directly for small `d`, by GEMM otherwise) and the recursion run one layer at a time over a block of
//! up to [`B`] pairs with structure-of-arrays state, values ([`eval_block`]) or values and hand-written
//! tangents ([`eval_block_grad`]).  Each pair also gets a margin: negative where the fast recursion is not
//! accurate enough and the pair must be recomputed by [`super::stable`].

use std::f64::consts::{FRAC_PI_2, PI};

use crate::arch::{Activation, Arch, Kind};
use crate::atan::atan2_half_dx;
use crate::ensure;
use crate::error::NtkError;
use crate::num::{Dual, Num};
use crate::recursion::{
    abrelu_consts, abrelu_pair, dense_after, diag_chain, erf_margin, erf_pair, input_layer,
    obtuse_margin, rbf_pair, rbf_pair_dist, ERF_KAPPA, S2, TAU,
};

use super::{Points, B, SMALL_D};

/// Per-point quantities: `diag[l * n + i]` is `Sxx` at the input of activation `l`, `ddiag` its
/// derivative with respect to `p = |x|^2 / d`.
pub(super) struct Side<'a> {
    pub(super) pts: Points<'a>,
    pub(super) diag: Vec<f64>,
    /// `1 / diag` (0 where diag is 0)
    pub(super) inv_diag: Vec<f64>,
    /// `1 / sqrt(diag)` (0 where diag is 0), for `1 / sqrt(Sxx Syy)` without leaving float64's range
    pub(super) inv_sqrt_diag: Vec<f64>,
    pub(super) ddiag: Vec<f64>,
    /// `y` transposed, `(d, n)`, for the direct inner products at small `d`.
    pub(super) transposed: Vec<f64>,
}

impl<'a> Side<'a> {
    pub(super) fn new(arch: &Arch, pts: Points<'a>, transpose: bool) -> Self {
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
        let inv_sqrt_diag = diag
            .iter()
            .map(|&v| if v > 0.0 { 1.0 / v.sqrt() } else { 0.0 })
            .collect();
        Side {
            pts,
            diag,
            inv_diag,
            inv_sqrt_diag,
            ddiag,
            transposed,
        }
    }
}

/// `sum_k x_k^2` in index order (the same order as the direct inner products, so that `r_ii == p_i`).
#[inline(always)]
pub(super) fn sq_norm(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in x {
        s += v * v;
    }
    s
}

#[inline(always)]
pub(super) fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for (a, b) in x.iter().zip(y) {
        s += a * b;
    }
    s
}

/// Everything a task needs.
pub(super) struct Ctx<'a> {
    pub(super) arch: Arch,
    pub(super) kind: Kind,
    pub(super) xs: Side<'a>,
    pub(super) ys: Side<'a>,
    pub(super) d: usize,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        arch: &Arch,
        kind: Kind,
        x: Points<'a>,
        y: Points<'a>,
    ) -> Result<Self, NtkError> {
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

/// `R[a, b] = <x_{i0+a}, y_{c0+b}>` for a tile, by GEMM (large `d`).
pub(super) fn gemm_inner(ctx: &Ctx, i0: usize, ni: usize, c0: usize, cl: usize, r: &mut [f64]) {
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
pub(super) fn inner_block(
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
pub(super) fn dist_block(ctx: &Ctx, i: usize, j0: usize, len: usize, out: &mut [f64]) {
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

/// Up to this input dimension, a depth-1 ReLU-family network takes `s^2` at its activation from the
/// coordinates ([`first_s2_block`]) instead of flagging its nearly antiparallel pairs by
/// [`obtuse_margin`] (the `d (d - 1) / 2` determinants cost more than the few pairs flagged in higher
/// dimensions, where random pairs are rarely nearly antiparallel).
pub(super) const EXACT_S2_MAX_D: usize = 3;

/// Whether the blocks of `ctx` take the first activation's `s^2` from [`first_s2_block`].
#[inline(always)]
pub(super) fn exact_s2(ctx: &Ctx) -> bool {
    let cusp = match ctx.arch.act {
        Activation::AbRelu { a, b } => a != b,
        _ => false,
    };
    cusp && ctx.arch.depth == 1 && ctx.d <= EXACT_S2_MAX_D
}

/// `x0 y1 - x1 y0` to about an ulp: `(p1 - p2) + (e1 - e2)` with the products `p` and their exact
/// rounding errors `e`; 0 exactly where `x0 y1 = x1 y0` exactly, and exactly antisymmetric in `(x, y)`,
/// so that `k(x, y) = k(y, x)` bit for bit.  `FMA`: the errors by fused multiply-adds (the AVX-512
/// clone, whose instruction set has them); otherwise by Dekker's product of Veltkamp halves, the same
/// exact error without an FMA instruction (the AVX2 and generic clones, where `mul_add` would be a call
/// to libm): the same bits either way, for products and errors within float64's normal range.
#[inline(always)]
fn det2<const FMA: bool>(x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    let p1 = x0 * y1;
    let p2 = x1 * y0;
    let (e1, e2) = if FMA {
        (x0.mul_add(y1, -p1), x1.mul_add(y0, -p2))
    } else {
        (two_prod_err(x0, y1, p1), two_prod_err(x1, y0, p2))
    };
    (p1 - p2) + (e1 - e2)
}

#[cfg(test)]
pub(super) fn det2_for_tests<const FMA: bool>(x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    det2::<FMA>(x0, x1, y0, y1)
}

/// Veltkamp's split of `a` into two halves of 26 bits: `a = hi + lo` exactly.
#[inline(always)]
fn split(a: f64) -> (f64, f64) {
    let t = 134_217_729.0 * a; // 2^27 + 1
    let hi = t - (t - a);
    (hi, a - hi)
}

/// `a b - p` exactly for `p = fl(a b)` (Dekker), without an FMA instruction.
#[inline(always)]
fn two_prod_err(a: f64, b: f64, p: f64) -> f64 {
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    ((ah * bh - p) + ah * bl + al * bh) + al * bl
}

/// Whether [`first_s2_block`] may use fused multiply-adds: the tile loops run the AVX-512 clone.
#[inline(always)]
pub(super) fn fma_path() -> bool {
    crate::simd::level() == crate::simd::Level::Avx512
}

/// `s^2 = Sxx Syy - Sxy^2` at the first activation of the pairs `(x_i, y_{j0..j0+len})`, without
/// cancellation: `w^4 |x ^ y|^2 / d^2 + w^2 b^2 |x - y|^2 / d`, with `|x ^ y|^2 = sum_{k<l}
/// (x_k y_l - x_l y_k)^2` from [`det2`] and `x - y` formed componentwise (both a few ulps at any angle,
/// like the stable path's invariants); `d <= EXACT_S2_MAX_D` (`d = 1`: `|x ^ y| = 0`).  Exactly 0 for
/// exactly parallel or antiparallel inputs without bias, and for `x = y`.
///
/// With `GRAD`, also `half[k][j] = (1/2) d(s^2)/dx_k = w^4/d^2 sum_l (x_k y_l - x_l y_k) y_l +
/// w^2 b^2 (x_k - y_k) / d`, from the same determinants (no cancellation either: `|x|^2 y - <x, y> x`
/// formed from the coordinates would cancel for nearly parallel or antiparallel pairs).
#[inline(always)]
pub(super) fn first_s2_block<const GRAD: bool, const FMA: bool>(
    ctx: &Ctx,
    i: usize,
    j0: usize,
    len: usize,
    out: &mut [f64],
    half: &mut [[f64; B]],
) {
    let (d, m) = (ctx.d, ctx.ys.pts.n);
    let dd = d as f64;
    let w2 = ctx.arch.w_std * ctx.arch.w_std;
    let b2 = ctx.arch.b_std * ctx.arch.b_std;
    let (cg, ce) = (w2 * w2 / (dd * dd), w2 * b2 / dd);
    let len = len.min(B);
    let xi = ctx.xs.pts.row(i);
    let col = |k: usize| &ctx.ys.transposed[k * m + j0..k * m + j0 + len];
    let out = &mut out[..len];
    // one pass per lane; |x - y|^2 summed in index order, only with a bias (a loop-invariant test)
    let bias = b2 > 0.0;
    match d {
        2 => {
            let (y0, y1) = (col(0), col(1));
            for j in 0..len {
                let (u0, u1) = (xi[0] - y0[j], xi[1] - y1[j]);
                let e = if bias { u0 * u0 + u1 * u1 } else { 0.0 };
                let t = det2::<FMA>(xi[0], xi[1], y0[j], y1[j]);
                out[j] = cg * (t * t) + ce * e;
                if GRAD {
                    let ct = cg * t;
                    half[0][j] = ce * u0 + ct * y1[j];
                    half[1][j] = ce * u1 - ct * y0[j];
                }
            }
        }
        3 => {
            let (y0, y1, y2) = (col(0), col(1), col(2));
            for j in 0..len {
                let (u0, u1, u2) = (xi[0] - y0[j], xi[1] - y1[j], xi[2] - y2[j]);
                let e = if bias {
                    u0 * u0 + u1 * u1 + u2 * u2
                } else {
                    0.0
                };
                let t01 = det2::<FMA>(xi[0], xi[1], y0[j], y1[j]);
                let t02 = det2::<FMA>(xi[0], xi[2], y0[j], y2[j]);
                let t12 = det2::<FMA>(xi[1], xi[2], y1[j], y2[j]);
                out[j] = cg * ((t01 * t01 + t02 * t02) + t12 * t12) + ce * e;
                if GRAD {
                    let (c01, c02, c12) = (cg * t01, cg * t02, cg * t12);
                    half[0][j] = ce * u0 + (c01 * y1[j] + c02 * y2[j]);
                    half[1][j] = ce * u1 + (c12 * y2[j] - c01 * y0[j]);
                    half[2][j] = ce * u2 - (c02 * y0[j] + c12 * y1[j]);
                }
            }
        }
        _ => {
            let y0 = col(0);
            for j in 0..len {
                let u0 = xi[0] - y0[j];
                out[j] = ce * (u0 * u0);
                if GRAD {
                    half[0][j] = ce * u0;
                }
            }
        }
    }
}

/// The recursion over a block of `len <= B` pairs `(x_i, y_{j0..j0+len})`, one layer at a time.
/// `sx[l]` is row i's diagonal chain; writes `out[j]` (the kernel) and `margin[j]`, negative when the
/// pair needs the stable recursion (see [`abrelu_pair`]).
#[inline(always)]
pub(super) fn eval_block<T: Num>(
    ctx: &Ctx,
    i: usize,
    sx: &[T],
    j0: usize,
    r: &[T],
    out: &mut [T],
    margins: &mut [f64],
) {
    let arch = &ctx.arch;
    let len = r.len();
    let m = ctx.ys.pts.n;
    let dd = ctx.d as f64;
    let exact = exact_s2(ctx);
    let mut sxy_buf = [T::cst(0.0); B];
    let mut th_buf = [T::cst(0.0); B];
    let sxy = &mut sxy_buf[..len];
    let th = &mut th_buf[..len];
    let margins = &mut margins[..len];
    for j in 0..len {
        let (a, b) = input_layer(arch, r[j], dd);
        sxy[j] = a;
        th[j] = b;
        margins[j] = 1.0;
    }
    if let Activation::Erf { b, .. } = arch.act {
        // large norms at a small angle: the first layer's margin (see erf_margin; it can be negative
        // only where both scaled variances exceed 2 ERF_KAPPA)
        let x = sx[0].val();
        if x * b * b > 2.0 * ERF_KAPPA {
            let ys = &ctx.ys.diag[j0..j0 + len];
            for j in 0..len {
                margins[j] = erf_margin(b, x, ys[j], sxy[j].val());
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
                // one copy of the loop per source of `s^2` (`S2`: the difference, with or without the
                // depth-1 margin, or the value from the coordinates), a constant in each (a test of it
                // inside the loop kept the compiler from vectorising the loop); `$s2` is `S2` of lane `$j`
                macro_rules! lanes {
                    ($j:ident => $s2:expr) => {
                        for $j in 0..len {
                            let (o, t, s2) = abrelu_pair(
                                cc,
                                f,
                                a * b,
                                sxl,
                                ys[$j],
                                iys[$j],
                                sxy[$j],
                                th[$j],
                                $s2,
                            );
                            margins[$j] = if s2 < margins[$j] { s2 } else { margins[$j] };
                            let (u, v) = dense_after(arch, l, o, t);
                            sxy[$j] = u;
                            th[$j] = v;
                        }
                    };
                }
                if exact {
                    // depth 1, small d: s^2 from the coordinates, no obtuse margin
                    let mut s2x = [0.0; B];
                    if fma_path() {
                        first_s2_block::<false, true>(ctx, i, j0, len, &mut s2x, &mut []);
                    } else {
                        first_s2_block::<false, false>(ctx, i, j0, len, &mut s2x, &mut []);
                    }
                    lanes!(j => S2::Given(s2x[j]))
                } else if arch.depth == 1 {
                    lanes!(j => S2::Difference { depth1: true })
                } else {
                    lanes!(j => S2::Difference { depth1: false })
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
pub(super) fn dense_tangents<const N: usize>(
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
pub(super) struct Lanes {
    pub(super) v: [f64; B],
    pub(super) p: [f64; B],
    pub(super) r: [f64; B],
    pub(super) q: [f64; B],
    /// Where [`eval_block_grad`] takes `s^2` from the coordinates ([`exact_s2`]): the gradient's part
    /// through `s`, `x[k][j] = dk/ds ds/dx_k` (`k < d`), and `p` is 0.
    pub(super) x: [[f64; B]; EXACT_S2_MAX_D],
    /// Working space of [`eval_block_grad`] (kept here so that no block zeroes it again).
    scratch: Scratch,
}

/// Per-lane `s^2`, `(1/2) d(s^2)/dx` and `1/s` of [`first_s2_block`] in [`eval_block_grad`].
struct Scratch {
    s2: [f64; B],
    half: [[f64; B]; EXACT_S2_MAX_D],
    is: [f64; B],
}

impl Lanes {
    pub(super) fn new() -> Self {
        Lanes {
            v: [0.0; B],
            p: [0.0; B],
            r: [0.0; B],
            q: [0.0; B],
            x: [[0.0; B]; EXACT_S2_MAX_D],
            scratch: Scratch {
                s2: [0.0; B],
                half: [[0.0; B]; EXACT_S2_MAX_D],
                is: [0.0; B],
            },
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
///
/// Depth 1 at small `d` ([`exact_s2`], `Q = false`): `s^2` comes from the coordinates
/// ([`first_s2_block`]) and the tangents are along `r` and `s` instead of `p` and `r` (`k` depends on
/// `x` only through `S` and `s` there: `S' = base S + f h(s, |S|)`, `Sdot = base + slope angle(s, |S|)`).
/// In the `(p, r)` basis a kernel that vanishes at `theta = pi` (ReLU NNGP, `~eps^3`, gradient `~eps^2`)
/// has partials `dk/dp 2x/d` and `dk/dr y/d` of size `~eps` that cancel along `x`, so the gradient
/// lost `~eps_mach / eps` relative (2e-14 at `eps = 0.01`); in `(r, s)` no such cancellation:
/// with `P = sqrt(XY)` (`P^2 = s^2 + S^2`), `dS'/ds = f s^2 / P^2`, `dS'/dS = base + f dh/dS`
/// ([`crate::atan::atan2_half_dx`], relatively accurate where it vanishes), `dSdot/ds = slope |S| / P^2`,
/// `dSdot/dS = f s / P^2`, and the gradient's part through `s` is `dk/ds (1/2) d(s^2)/dx / s`, per pair
/// in [`Lanes::x`] (the cusp convention: 0 where `s = 0`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn eval_block_grad<const Q: bool>(
    ctx: &Ctx,
    i: usize,
    sx: &[Dual<2>],
    j0: usize,
    r: &[f64],
    sig_r: f64,
    sig_q: &[f64],
    out: &mut Lanes,
    margins: &mut [f64],
) {
    let arch = &ctx.arch;
    let len = r.len().min(B);
    let m = ctx.ys.pts.n;
    let dd = ctx.d as f64;
    let w2 = arch.w_std * arch.w_std;
    // value, p-, r- and q-tangent of S and Theta, per lane (separate arrays, so the lanes vectorise)
    let (mut s0, mut s1, mut s2v, mut s3) = ([0.0; B], [0.0; B], [0.0; B], [0.0; B]);
    let (mut t0, mut t1, mut t2v, mut t3) = ([0.0; B], [0.0; B], [0.0; B], [0.0; B]);
    let margins = &mut margins[..len];
    let dsr0 = w2 * sig_r;
    let dtr0 = if arch.standard { dd * sig_r } else { dsr0 };
    // depth 1, small d, one point's gradient: s^2 from the coordinates, tangents along r and s
    let exact = !Q && exact_s2(ctx);
    let Scratch {
        s2: s2x,
        half,
        is: isx,
    } = &mut out.scratch;
    for j in 0..len {
        let (u, v) = input_layer(arch, r[j], dd);
        (s0[j], s1[j], s2v[j]) = (u, 0.0, dsr0);
        (t0[j], t1[j], t2v[j]) = (v, 0.0, dtr0);
        margins[j] = 1.0;
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
                let rx = sx[l].v;
                let rx = if rx > 0.0 { 1.0 / rx.sqrt() } else { 0.0 };
                let irys = &ctx.ys.inv_sqrt_diag[l * m + j0..l * m + j0 + len];
                if exact {
                    // depth 1, small d: s^2 from the coordinates (see eval_block), and tangents along
                    // r and s (see the function's docs)
                    if fma_path() {
                        first_s2_block::<true, true>(ctx, i, j0, len, s2x, half);
                    } else {
                        first_s2_block::<true, false>(ctx, i, j0, len, s2x, half);
                    }
                    for j in 0..len {
                        let (s_in, sr, t_in, tr) = (s0[j], s2v[j], t0[j], t2v[j]);
                        let prod = x * ys[j];
                        let s2 = s2x[j];
                        let s = s2.sqrt_safe();
                        let obtuse = s_in < 0.0;
                        let ax = s_in.abs();
                        // 1 / P with P^2 = s^2 + S^2 = Sxx Syy (no division: 1/sqrt(Sxx) and
                        // 1/sqrt(Syy) are known; P^2 itself may underflow at norms near 1e-100), and
                        // 1 / s (0 where s = 0: the cusp convention)
                        let ip = rx * irys[j];
                        isx[j] = if s2 > 0.0 { 1.0 / s } else { 0.0 };
                        // the small angle, its defect h = s - angle |S| and dh/d|S| at fixed s
                        let (small, h, h_a) = atan2_half_dx(s, ax, ip);
                        // s = S = 0 (a zero row): the angle is pi/2 with a zero derivative, the
                        // convention of the other paths and of neural-tangents, so dh/d|S| = -pi/2
                        let both_zero = (s2 == 0.0) & (ax == 0.0);
                        let small = if both_zero { FRAC_PI_2 } else { small };
                        let h_a = if both_zero { -FRAC_PI_2 } else { h_a };
                        let (base, slope) = if obtuse { (a * b, f) } else { (cc, -f) };
                        let sdot = small * slope + base;
                        let out = base * s_in + f * h;
                        let margin = s2 - TAU * prod;
                        margins[j] = if margin < margins[j] {
                            margin
                        } else {
                            margins[j]
                        };
                        let dout_ds = base + (if obtuse { -f } else { f }) * h_a;
                        let (sp, ap) = (s * ip, ax * ip);
                        let o = [out, f * (sp * sp), dout_ds * sr];
                        let t = [
                            t_in * sdot,
                            t_in * (slope * (ap * ip)),
                            sdot * tr + t_in * (f * (sp * ip)) * sr,
                        ];
                        let ([u0, u1, u2], [v0, v1, v2]) = dense_tangents(arch, bias, w2, o, t);
                        (s0[j], s1[j], s2v[j], t0[j], t1[j], t2v[j]) = (u0, u1, u2, v0, v1, v2);
                    }
                    continue;
                }
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
                            margins[j] = if margin < margins[j] {
                                margin
                            } else {
                                margins[j]
                            };
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
                    margins[j] = if m < margins[j] { m } else { margins[j] };
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
    out.r[..len].copy_from_slice(&a2[..len]);
    if exact {
        // the s-tangent times ds/dx = (1/2) d(s^2)/dx / s
        out.p[..len].fill(0.0);
        for k in 0..ctx.d {
            for j in 0..len {
                out.x[k][j] = a1[j] * (half[k][j] * isx[j]);
            }
        }
    } else {
        out.p[..len].copy_from_slice(&a1[..len]);
    }
    if Q {
        out.q[..len].copy_from_slice(&a3[..len]);
    }
}
