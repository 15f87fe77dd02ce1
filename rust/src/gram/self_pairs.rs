//! The gradient of a kernel expansion at its own centres, one evaluation per unordered pair.
//!
//! A discriminator `f = sum_j w_j k(., z_j)` trained on `z = [x; y_rest]` is differentiated at the fake
//! points `x` every flow step: `G[i] = sum_j w_j d/dx k(x, z_j)|_{x = x_i}`.  Its `x`-`x` block holds every
//! unordered pair twice.  One evaluation of the pair `(x_i, x_j)` with three tangents (along
//! `p = |x_i|^2/d`, `q = |x_j|^2/d` and `r = <x_i, x_j>/d`, see `eval_block_grad::<true>`) gives both
//! gradients, since `k(x, y) = k(y, x)`:
//!
//! `d/dx_i k = dk/dp (2 x_i/d) + dk/dr (x_j/d)`,  `d/dx_j k = dk/dq (2 x_j/d) + dk/dr (x_i/d)`.
//!
//! That is 3/4 of the pair evaluations of the plain row-by-row pass on the fake-fake block at a few
//! more operations per pair.  The rest `y_rest` goes through the plain pass.
//!
//! Determinism.  Square tiles `(a, b)`, `a <= b`, of [`TS`] points are evaluated in parallel; each task
//! returns its rows' and its columns' contributions, and row tile `c` adds, in this order, the plain
//! pass over `y_rest`, its row parts `(c, b)` for `b = c, c+1, ...`, then its column parts `(a, c)` for
//! `a = 0, ..., c`: the same bits for any thread count.  A diagonal tile evaluates the pairs `j >= i`
//! (the pair `(i, i)` for row `i` only).
//!
//! Near-coincident pairs take the stable recursion ([`stable_grad_add`]) for both points, as in the
//! plain pass.  Used (see [`eligible`]) for the ABReLU family and erf at `d <= SMALL_D`, inputs of norm
//! within `[1e-100, 1e100]` (the tangent seeds of one point then never overflow against the other's), and
//! while the tiles' buffers stay under [`BUFFER_CAP`] bytes; otherwise the plain pass runs.

use rayon::prelude::*;

use super::{
    grad_driver, inner_block, row_scales, scratch_len, sq_norm, stable_grad_add, stable_value,
    x_coef, Ctx, Lanes, Points, B, SMALL_D, TS,
};
use crate::arch::{Activation, Arch, Kind};
use crate::error::NtkError;
use crate::num::{Dual, Num};
use crate::pool;

/// Largest total size of the tiles' partial results held at once.
const BUFFER_CAP: usize = 256 << 20;

const _: () = assert!(TS <= B, "a tile's columns must fit one block of lanes");

/// Whether `y` starts with the rows of `x` (bit for bit) and the symmetric pass applies.
pub(super) fn eligible(arch: &Arch, x: &Points, y: &Points) -> bool {
    let (n, d) = (x.n, x.d);
    if matches!(arch.act, Activation::Rbf { .. }) || d > SMALL_D || n == 0 || y.n < n || y.d != d {
        return false;
    }
    let nt = n.div_ceil(TS);
    let bytes = nt * (nt + 1) / 2 * 2 * TS * (d + 1) * std::mem::size_of::<f64>();
    if bytes > BUFFER_CAP || x.data != &y.data[..n * d] {
        return false;
    }
    (0..n).all(|i| {
        let nx = sq_norm(x.row(i)).sqrt();
        (1e-100..=1e100).contains(&nx)
    })
}

/// One tile's contributions: gradients `(.., d)` and values of its rows and of its columns.
struct TilePart {
    rows: Vec<f64>,
    rows_v: Vec<f64>,
    cols: Vec<f64>,
    cols_v: Vec<f64>,
}

/// Fixed-order sum in 4 interleaved partial sums (vectorises; the same bits on every run).
#[inline(always)]
fn sum4(v: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let mut chunks = v.chunks_exact(4);
    for c in &mut chunks {
        for k in 0..4 {
            acc[k] += c[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for &t in chunks.remainder() {
        s += t;
    }
    s
}

#[inline(always)]
fn self_tile_impl(
    ctx: &Ctx,
    a: usize,
    b: usize,
    w: &[f64],
    scales: &[(f64, f64)],
    out: &mut TilePart,
) {
    let (n, d, depth) = (ctx.xs.pts.n, ctx.d, ctx.arch.depth);
    let dd = d as f64;
    let (i0, i1) = (a * TS, ((a + 1) * TS).min(n));
    let (j0, j1) = (b * TS, ((b + 1) * TS).min(n));
    let nj = j1 - j0;
    let diag = a == b;
    let sig_q: Vec<f64> = (j0..j1).map(|j| scales[j].0).collect();
    let wb = &w[j0..j1];
    // column sums: w_i dk/dq (seeded), w_i k, and (w_i / sig_r(i)) dk/dr x_i[c] stored as [c * nj + j]
    let mut cs = [0.0; B];
    let mut cv = [0.0; B];
    let mut cg = vec![0.0; d * nj];
    let mut sx = vec![Dual::<2>::cst(0.0); depth];
    let mut r = [0.0; B];
    let mut lanes = Lanes::new();
    let mut margins = [0.0; B];
    let (mut tp, mut tv, mut tr) = ([0.0; B], [0.0; B], [0.0; B]);
    let mut flagged: Vec<(usize, usize)> = Vec::new();
    for i in i0..i1 {
        let (sig_p, sig_r) = scales[i];
        for (l, s) in sx.iter_mut().enumerate() {
            let idx = l * n + i;
            *s = Dual::new(ctx.xs.diag[idx], [ctx.xs.ddiag[idx] * sig_p, 0.0]);
        }
        // lanes k = 0..len are the columns j = off + k: all of them feed row i; on a diagonal tile the
        // pairs j > i only, the first lane (j = i) feeds row i alone
        let off = if diag { i - i0 } else { 0 };
        let len = nj - off;
        let first_col = if diag { 1 } else { 0 };
        inner_block(ctx, i, j0 + off, len, None, &mut r);
        super::eval_block_grad::<true>(
            ctx,
            i,
            &sx,
            j0 + off,
            &r[..len],
            sig_r,
            &sig_q[off..],
            &mut lanes,
            &mut margins,
        );
        let (wi, wir) = (w[i], w[i] / sig_r);
        let wl = &wb[off..];
        for k in 0..len {
            let fast = margins[k] >= 0.0;
            let on_col = fast && k >= first_col;
            tp[k] = if fast { wl[k] * lanes.p[k] } else { 0.0 };
            tv[k] = if fast { wl[k] * lanes.v[k] } else { 0.0 };
            tr[k] = if fast { wl[k] * lanes.r[k] } else { 0.0 };
            // this row's dk/dr weights for the columns, in the q lanes (no longer needed)
            lanes.q[k] = if on_col { lanes.q[k] } else { 0.0 };
            cs[off + k] += wi * lanes.q[k];
            cv[off + k] += if on_col { wi * lanes.v[k] } else { 0.0 };
            lanes.p[k] = if on_col { wir * lanes.r[k] } else { 0.0 };
        }
        let xi = ctx.xs.pts.row(i);
        for c in 0..d {
            let col = &mut cg[c * nj + off..(c + 1) * nj];
            for k in 0..len {
                col[k] += lanes.p[k] * xi[c];
            }
        }
        for k in 0..len {
            if margins[k] < 0.0 {
                flagged.push((i, j0 + off + k));
            }
        }
        // row i: sum_j w_j dk/dp (2 x_i / d) + sum_j w_j dk/dr x_j / d (seeds divided out)
        let ai = i - i0;
        let sp = sum4(&tp[..len]);
        out.rows_v[ai] = sum4(&tv[..len]);
        let coef = x_coef(sp, sig_p, dd);
        let cy = 1.0 / (dd * sig_r);
        for c in 0..d {
            let xt = &ctx.ys.transposed[c * n + j0 + off..c * n + j1];
            for k in 0..len {
                r[k] = tr[k] * xt[k];
            }
            out.rows[ai * d + c] = coef * xi[c] + sum4(&r[..len]) * cy;
        }
    }
    for j in 0..nj {
        let coef = x_coef(cs[j], scales[j0 + j].0, dd);
        let xj = ctx.xs.pts.row(j0 + j);
        for c in 0..d {
            out.cols[j * d + c] = coef * xj[c] + cg[c * nj + j] / dd;
        }
        out.cols_v[j] = cv[j];
    }
    let mut scratch = vec![0.0; scratch_len(d)];
    let (arch, kind) = (&ctx.arch, ctx.kind);
    // value and gradient of w k(a, b) at a, by the stable recursion, added to entry `at` of `values` and
    // row `at` of `grads`
    let mut stable_add =
        |a: &[f64], b: &[f64], w: f64, values: &mut [f64], grads: &mut [f64], at: usize| {
            values[at] += w * stable_value(arch, kind, a, b, &mut scratch);
            let row = &mut grads[at * d..(at + 1) * d];
            stable_grad_add(arch, kind, a, b, w, row, &mut scratch);
        };
    for &(i, j) in &flagged {
        let (xi, xj) = (ctx.xs.pts.row(i), ctx.xs.pts.row(j));
        stable_add(xi, xj, w[j], &mut out.rows_v, &mut out.rows, i - i0);
        if i != j {
            stable_add(xj, xi, w[i], &mut out.cols_v, &mut out.cols, j - j0);
        }
    }
}

simd_dispatch!(self_tile, self_tile_impl, (ctx: &Ctx, a: usize, b: usize, w: &[f64], scales: &[(f64, f64)], out: &mut TilePart));

/// `(values, G)` for `z = [x; rest]` with weights `w` (length `x.n + rest.n`), as the plain pass
/// computes them (see the module documentation); call only when [`eligible`].
pub(super) fn value_grad(
    arch: &Arch,
    kind: Kind,
    x: Points,
    rest: Points,
    w: &[f64],
) -> Result<(Vec<f64>, Vec<f64>), NtkError> {
    let (n, d) = (x.n, x.d);
    let dd = d as f64;
    let (mut v, mut g) = grad_driver(arch, kind, x, rest, &w[n..], true)?;
    let ctx = Ctx::new(arch, kind, x, x)?;
    let scales: Vec<(f64, f64)> = (0..n).map(|i| row_scales(x.row(i), dd)).collect();
    let wx = &w[..n];
    let nt = n.div_ceil(TS);
    let tasks: Vec<(usize, usize)> = (0..nt).flat_map(|a| (a..nt).map(move |b| (a, b))).collect();
    let parts: Vec<TilePart> = pool::install(|| {
        tasks
            .par_iter()
            .map(|&(a, b)| {
                let ni = ((a + 1) * TS).min(n) - a * TS;
                let nj = ((b + 1) * TS).min(n) - b * TS;
                let mut part = TilePart {
                    rows: vec![0.0; ni * d],
                    rows_v: vec![0.0; ni],
                    cols: vec![0.0; nj * d],
                    cols_v: vec![0.0; nj],
                };
                self_tile(&ctx, a, b, wx, &scales, &mut part);
                part
            })
            .collect()
    });
    // index of task (a, b), a <= b, in `tasks`
    let index = |a: usize, b: usize| a * nt - (a * a - a) / 2 + b - a;
    debug_assert!(tasks
        .iter()
        .enumerate()
        .all(|(k, &(a, b))| index(a, b) == k));
    pool::install(|| {
        g.par_chunks_mut(TS * d)
            .zip(v.par_chunks_mut(TS))
            .enumerate()
            .for_each(|(c, (gt, vt))| {
                let add = |gt: &mut [f64], vt: &mut [f64], pg: &[f64], pv: &[f64]| {
                    for (o, t) in gt.iter_mut().zip(pg) {
                        *o += t;
                    }
                    for (o, t) in vt.iter_mut().zip(pv) {
                        *o += t;
                    }
                };
                for b in c..nt {
                    let p = &parts[index(c, b)];
                    add(gt, vt, &p.rows, &p.rows_v);
                }
                for a in 0..=c {
                    let p = &parts[index(a, c)];
                    add(gt, vt, &p.cols, &p.cols_v);
                }
            });
    });
    Ok((v, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gram::kernel_value_and_grad;
    use crate::gram::tests::lcg;

    /// `n` fake points (with an exact duplicate and near-coincident pairs) and `m` others (one a copy
    /// of a fake point), and weights for all `n + m`.
    fn problem(n: usize, m: usize, d: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut s = seed;
        let mut x: Vec<f64> = (0..n * d).map(|_| lcg(&mut s) * 1.5).collect();
        let mut rest: Vec<f64> = (0..m * d).map(|_| lcg(&mut s) * 1.5 + 0.3).collect();
        for c in 0..d {
            x[77 * d + c] = x[5 * d + c];
            x[100 * d + c] = x[9 * d + c] * (1.0 + 1e-9);
            x[64 * d + c] = x[63 * d + c] + 1e-7;
            rest[2 * d + c] = x[3 * d + c];
        }
        let w: Vec<f64> = (0..n + m).map(|_| lcg(&mut s)).collect();
        (x, rest, w)
    }

    /// The Gram tests' architectures that take the symmetric pass (all but rbf), plus ReLU without bias,
    /// erf in the standard parameterization and the linear ABReLU (no cusp).
    fn archs() -> Vec<Arch> {
        let mut out: Vec<Arch> = crate::gram::tests::archs()
            .into_iter()
            .filter(|a| !matches!(a.act, Activation::Rbf { .. }))
            .collect();
        let erf = Activation::Erf {
            a: 0.5,
            b: 0.4,
            c: 0.5,
        };
        let linear = Activation::AbRelu { a: 1.0, b: 1.0 };
        out.push(Arch::relu(3, 1.0, 0.0));
        out.push(Arch::new(2, erf, 1.0, 0.0, true, 32.0).unwrap());
        out.push(Arch::new(2, linear, 1.0, 0.5, false, 64.0).unwrap());
        out
    }

    #[test]
    fn symmetric_pass_equals_the_plain_pass() {
        let (n, m) = (150, 40);
        for d in [1usize, 2, 5, 16] {
            let (x, rest, w) = problem(n, m, d, 10 + d as u64);
            // z = [x; rest] takes the symmetric pass, z2 = [rest; x] (weights permuted alike) the plain one
            let z: Vec<f64> = x.iter().chain(&rest).copied().collect();
            let z2: Vec<f64> = rest.iter().chain(&x).copied().collect();
            let w2: Vec<f64> = w[n..].iter().chain(&w[..n]).copied().collect();
            let xp = Points::new(&x, n, d).unwrap();
            let zp = Points::new(&z, n + m, d).unwrap();
            let z2p = Points::new(&z2, n + m, d).unwrap();
            for arch in archs() {
                assert!(eligible(&arch, &xp, &zp));
                assert!(!eligible(&arch, &xp, &z2p));
                for kind in [Kind::Ntk, Kind::Nngp] {
                    let (v, g) = kernel_value_and_grad(&arch, kind, xp, zp, &w).unwrap();
                    let (v2, g2) = kernel_value_and_grad(&arch, kind, xp, z2p, &w2).unwrap();
                    let gs = g2.iter().fold(0.0f64, |a, t| a.max(t.abs()));
                    let vs = v2.iter().fold(0.0f64, |a, t| a.max(t.abs()));
                    for k in 0..n * d {
                        assert!(
                            (g[k] - g2[k]).abs() <= 1e-12 * gs,
                            "{arch:?} {kind:?} d={d} entry {k}: {} vs {}",
                            g[k],
                            g2[k]
                        );
                    }
                    for i in 0..n {
                        assert!(
                            (v[i] - v2[i]).abs() <= 1e-13 * vs,
                            "{arch:?} d={d} value {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn symmetric_pass_bits_do_not_depend_on_threads() {
        let (n, m, d) = (200, 30, 2);
        let (x, rest, w) = problem(n, m, d, 3);
        let z: Vec<f64> = x.iter().chain(&rest).copied().collect();
        let xp = Points::new(&x, n, d).unwrap();
        let zp = Points::new(&z, n + m, d).unwrap();
        let arch = Arch::relu(3, 1.0, 1.0);
        pool::set_num_threads(1);
        let one = kernel_value_and_grad(&arch, Kind::Ntk, xp, zp, &w).unwrap();
        pool::set_num_threads(3);
        let three = kernel_value_and_grad(&arch, Kind::Ntk, xp, zp, &w).unwrap();
        assert_eq!(one, three);
    }

    #[test]
    fn ineligible_inputs_take_the_plain_pass() {
        let d = 2;
        let (x, rest, _) = problem(120, 5, d, 4);
        let z: Vec<f64> = x.iter().chain(&rest).copied().collect();
        let relu = Arch::relu(2, 1.0, 1.0);
        let rbf = Arch::new(1, Activation::Rbf { gamma: 0.5 }, 1.0, 0.0, false, 1.0).unwrap();
        let xp = Points::new(&x, 120, d).unwrap();
        let zp = Points::new(&z, 125, d).unwrap();
        assert!(eligible(&relu, &xp, &zp));
        assert!(!eligible(&rbf, &xp, &zp));
        let mut tiny = x.clone();
        tiny[0] = 1e-120;
        tiny[1] = 0.0;
        let zt: Vec<f64> = tiny.iter().chain(&rest).copied().collect();
        let tp = Points::new(&tiny, 120, d).unwrap();
        assert!(!eligible(&relu, &tp, &Points::new(&zt, 125, d).unwrap()));
        let mut nan = z.clone();
        nan[0] = f64::NAN;
        let mut xn = x.clone();
        xn[0] = f64::NAN;
        let xnp = Points::new(&xn, 120, d).unwrap();
        assert!(!eligible(&relu, &xnp, &Points::new(&nan, 125, d).unwrap()));
    }
}
