//! Blocked, rayon-parallel drivers: the kernel matrix `K[i, j] = k(x_i, y_j)`, the kernel-gradient
//! contraction `G[i, :] = sum_j w_j d/dx k(x_i, y_j)` and the product `K v`.
//!
//! The module is in three parts: [`blocks`] evaluates the recursion over a block of pairs, [`stable`]
//! recomputes one pair from cancellation-free invariants, and this file drives them over tiles of rows in
//! parallel ([`gram`], [`kernel_grad`], [`kernel_value_and_grad`], [`kernel_matvec`]; [`self_pairs`]
//! serves the gradient of an expansion at its own centres).
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
//! TAU` at some layer, nearly coincident or nearly antipodal, or [`crate::recursion::obtuse_margin`] in a depth-1 network;
//! erf: large norms at a small angle at the first layer, see [`crate::recursion::erf_margin`]), the pair is recomputed by
//! [`crate::recursion::pair_stable`] from cancellation-free invariants (`|x - y|^2`, `|x + y|^2`, `|x ^ y|^2`), with its
//! gradient assembled from their exact derivatives.  Depth-1 ReLU-family networks at `d <= 3` need no
//! obtuse margin: their blocks take `s^2` from the coordinates (`blocks::first_s2_block`), and the
//! plain gradient pass gets the part of each pair's gradient through `s` per pair (`Lanes::x`).
//! docs/kernel_accuracy.md has the method and the measured errors.
//!
//! Determinism.  Every output entry is computed by one task, and every sum runs in a fixed order that
//! does not depend on the tiling of rows or on the number of threads.

use rayon::prelude::*;

use crate::arch::{Activation, Arch, Kind};
use crate::ensure;
use crate::error::NtkError;
use crate::num::{Dual, Num};
use crate::pool;

use blocks::{eval_block, eval_block_grad, exact_s2, gemm_inner, inner_block, sq_norm, Ctx, Lanes};
use stable::{scratch_len, stable_grad_add, stable_value};

pub use crate::recursion::TAU;

mod blocks;
mod self_pairs;
mod stable;

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

/// Raw output pointer shared by tasks that write disjoint entries.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f64);
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

// ---------------------------------------------------------------------------------------------------
// Gram matrix

/// Walks the pairs `(i, j)`, `i0 <= i < i1`, `j0 <= j < j1`, row by row in blocks of at most [`B`]
/// columns (inside column tiles of [`TJ`], whose inner products come from a GEMM for large `d`), and
/// hands each block to `emit(i, b0, vals)` with `vals[k] = k(x_i, y_{b0 + k})`: the blocked recursion,
/// and the stable path for the pairs it flags (negative margin).
#[inline(always)]
fn for_each_value_block(
    ctx: &Ctx,
    i0: usize,
    i1: usize,
    j0: usize,
    j1: usize,
    mut emit: impl FnMut(usize, usize, &[f64]),
) {
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
    let mut margins = [0.0; B];
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
                eval_block::<f64>(ctx, i, &sx, b0, &r[..len], &mut vals, &mut margins);
                for j in 0..len {
                    if margins[j] < 0.0 {
                        vals[j] = stable_value(
                            &ctx.arch,
                            ctx.kind,
                            ctx.xs.pts.row(i),
                            ctx.ys.pts.row(b0 + j),
                            &mut scratch,
                        );
                    }
                }
                emit(i, b0, &vals[..len]);
                b0 += len;
            }
        }
        c0 += cl;
    }
}

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
    for_each_value_block(ctx, i0, i1, j0, j1, |i, b0, vals| {
        // SAFETY: tiles write disjoint entries (see `gram`).
        unsafe {
            for j in 0..vals.len() {
                *out.0.add(i * m + b0 + j) = vals[j];
                if mirror {
                    *out.0.add((b0 + j) * m + i) = vals[j];
                }
            }
        }
    });
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

/// The coefficient `(2/d) sum_j w_j dk/dp` of `x_i` in its gradient, from the sum `s` of `w_j dk/dp`
/// carried times the seed `sig_p` of [`row_scales`] (divided out here; 0 where `x_i = 0`).
#[inline(always)]
fn x_coef(s: f64, sig_p: f64, dd: f64) -> f64 {
    if sig_p > 0.0 {
        s * 2.0 / (dd * sig_p)
    } else {
        0.0
    }
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
    let mut margins = [0.0; B];
    // hand-written tangents for the ABReLU family and erf; rbf keeps the generic dual numbers
    let by_hand = !matches!(ctx.arch.act, Activation::Rbf { .. });
    // depth 1, small d: the part of the gradient through s comes per pair (Lanes::x), summed in lanes
    let exact = by_hand && exact_s2(ctx);
    let mut xacc = if exact {
        vec![0.0; ni * d * B]
    } else {
        Vec::new()
    };
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
                        i,
                        &sx,
                        b0,
                        &r[..len],
                        sig_r,
                        &[],
                        &mut lanes4,
                        &mut margins,
                    );
                    for j in 0..len {
                        vals[j] = Dual::new(lanes4.v[j], [lanes4.p[j], lanes4.r[j]]);
                    }
                } else {
                    for j in 0..len {
                        rd[j] = Dual::new(r[j], [0.0, sig_r]);
                    }
                    eval_block::<Dual<2>>(ctx, i, &sx, b0, &rd[..len], &mut vals, &mut margins);
                }
                let wb = &w[b0..b0 + len];
                let bslot = &mut brow[b0 - c0..b0 - c0 + len];
                for j in 0..len {
                    let keep = margins[j] >= 0.0;
                    let kp = if keep { vals[j].d[0] } else { 0.0 };
                    let kr = if keep { vals[j].d[1] } else { 0.0 };
                    lanes[j] += wb[j] * kp;
                    bslot[j] = wb[j] * kr;
                }
                if exact {
                    for k in 0..d {
                        let xl = &mut xacc[(a * d + k) * B..(a * d + k + 1) * B];
                        let src = &lanes4.x[k];
                        for j in 0..len {
                            let kx = if margins[j] >= 0.0 { src[j] } else { 0.0 };
                            xl[j] += wb[j] * kx;
                        }
                    }
                }
                if want_val {
                    let vl = &mut vacc[a * B..(a + 1) * B];
                    for j in 0..len {
                        // flagged pairs get their value from the stable path below
                        let v = if margins[j] >= 0.0 { vals[j].v } else { 0.0 };
                        vl[j] += wb[j] * v;
                    }
                }
                for j in 0..len {
                    if margins[j] < 0.0 {
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
        let coef = x_coef(s, sig_p, dd);
        let cy = 1.0 / (dd * sig_r);
        for c in 0..d {
            g[a * d + c] = coef * xi[c] + gy[a * d + c] * cy;
        }
        if exact {
            for c in 0..d {
                let mut t = 0.0;
                for &v in &xacc[(a * d + c) * B..(a * d + c + 1) * B] {
                    t += v;
                }
                g[a * d + c] += t;
            }
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
pub fn kernel_value_and_grad(
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
    let ni = i1 - i0;
    let mut acc = vec![0.0; ni * B];
    for_each_value_block(ctx, i0, i1, 0, ctx.ys.pts.n, |i, b0, vals| {
        let a = i - i0;
        let lanes = &mut acc[a * B..(a + 1) * B];
        let vb = &v[b0..b0 + vals.len()];
        for j in 0..vals.len() {
            lanes[j] += vals[j] * vb[j];
        }
    });
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
mod tests;
