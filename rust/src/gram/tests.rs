//! Unit tests of the drivers against the scalar recursion, finite differences and each other.

use super::blocks::dot;
use super::*;
use crate::num::assert_central_differences;
use crate::recursion::{diag_chain, pair_fast};

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

/// Runs `check(arch, x, y)` for each architecture of [`archs`] and each `d` in `ds`, on `n` and `m`
/// points drawn from the seeds `seed` and `seed + 1`.
fn for_each_case(
    ds: &[usize],
    (n, m): (usize, usize),
    seed: u64,
    mut check: impl FnMut(&Arch, Points, Points),
) {
    for &d in ds {
        let (xs, ys) = (points(n, d, seed), points(m, d, seed + 1));
        for arch in archs() {
            check(
                &arch,
                Points::new(&xs, n, d).unwrap(),
                Points::new(&ys, m, d).unwrap(),
            );
        }
    }
}

#[test]
fn gram_matches_pairwise_reference() {
    for_each_case(&[2, 40], (70, 300), 1, |arch, x, y| {
        let k = gram(arch, Kind::Ntk, x, Some(y)).unwrap();
        let ks = gram(arch, Kind::Ntk, x, None).unwrap();
        // K(x, y), then the symmetric K(x, x)
        for (other, kk, sym) in [(y, &k, false), (x, &ks, true)] {
            let cols = other.n;
            for i in 0..x.n {
                for j in 0..cols {
                    if sym {
                        assert_eq!(kk[i * cols + j], kk[j * cols + i]);
                    }
                    let e = reference(arch, Kind::Ntk, x.row(i), other.row(j));
                    assert!(
                        (kk[i * cols + j] - e).abs() <= 1e-12 * e.abs().max(1e-300),
                        "sym {sym} {arch:?} {i} {j} d={} got {} want {e}",
                        x.d,
                        kk[i * cols + j]
                    );
                }
            }
        }
    });
}

#[test]
fn grad_and_matvec_match_finite_differences_of_gram() {
    let m = 290;
    let w: Vec<f64> = points(m, 1, 5);
    for_each_case(&[3, 20], (40, m), 3, |arch, x, y| {
        let d = x.d;
        let g = kernel_grad(arch, Kind::Ntk, x, y, &w).unwrap();
        let kv = kernel_matvec(arch, Kind::Ntk, x, y, &w).unwrap();
        let k = gram(arch, Kind::Ntk, x, Some(y)).unwrap();
        for i in 0..x.n {
            let e: f64 = (0..m).map(|j| k[i * m + j] * w[j]).sum();
            assert!(
                (kv[i] - e).abs()
                    <= 1e-11 * (0..m).map(|j| (k[i * m + j] * w[j]).abs()).sum::<f64>()
            );
        }
        for i in [0usize, 17, 39] {
            let what = format!("{arch:?} d={d} i={i}");
            assert_central_differences(&g[i * d..(i + 1) * d], 1e-5, &what, |c, delta| {
                let mut xi = x.row(i).to_vec();
                xi[c] += delta;
                (0..m)
                    .map(|j| w[j] * reference(arch, Kind::Ntk, &xi, y.row(j)))
                    .sum::<f64>()
            });
        }
    });
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
    assert_central_differences(&g, 1e-7, "y = x", |c, delta| {
        let mut xi = xs.clone();
        xi[c] += delta;
        0.5 * reference(&arch, Kind::Ntk, &xi, &xi)
    });
}

/// Depth-1 ReLU-like networks at `d <= EXACT_S2_MAX_D` take `s^2` from the coordinates in the blocks
/// (no obtuse margin): nearly antiparallel pairs at `eps = pi - theta` from 1e-3 to 0.3 (where the
/// kernel vanishes like `eps^3` or `eps`) agree with the stable path, values and gradients, and
/// `k(x, y) = k(y, x)` bit for bit.
#[test]
fn depth1_small_d_blocks_match_the_stable_path() {
    let mut seed = 21;
    for d in 1..=blocks::EXACT_S2_MAX_D {
        for (a, bias) in [(0.0, 0.0), (0.0, 0.7), (0.01, 0.0), (0.01, 0.7)] {
            let act = Activation::AbRelu { a, b: 1.0 };
            for standard in [false, true] {
                let arch = Arch::new(1, act, 1.1, bias, standard, 16.0).unwrap();
                let n = 24;
                let (mut xs, mut ys) = (vec![], vec![]);
                for k in 0..n {
                    let eps = 1e-3 * 300f64.powf(k as f64 / (n - 1) as f64);
                    let x: Vec<f64> = (0..d).map(|_| lcg(&mut seed) * 2.0).collect();
                    let nx = sq_norm(&x).sqrt();
                    // u: a unit vector orthogonal to x (none in d = 1)
                    let mut u: Vec<f64> = (0..d).map(|_| lcg(&mut seed)).collect();
                    let t = dot(&u, &x) / (nx * nx);
                    u.iter_mut().zip(&x).for_each(|(v, xk)| *v -= t * xk);
                    let nu = sq_norm(&u).sqrt();
                    let c = 1.0 + lcg(&mut seed).abs();
                    let (ce, se) = if d == 1 {
                        (1.0, 0.0)
                    } else {
                        (eps.cos(), eps.sin())
                    };
                    for k in 0..d {
                        let uk = if d == 1 { 0.0 } else { u[k] / nu };
                        ys.push(-c * (ce * x[k] - se * nx * uk));
                    }
                    xs.extend(x);
                }
                let x = Points::new(&xs, n, d).unwrap();
                let y = Points::new(&ys, n, d).unwrap();
                let mut scratch = vec![0.0; scratch_len(d)];
                for kind in [Kind::Ntk, Kind::Nngp] {
                    let kxy = gram(&arch, kind, x, Some(y)).unwrap();
                    let kyx = gram(&arch, kind, y, Some(x)).unwrap();
                    for i in 0..n {
                        let (xi, yi) = (x.row(i), y.row(i));
                        // symmetric bit for bit where the blocks keep the pair (the stable path's
                        // invariants are not: eps < 0.01 is flagged by TAU)
                        if d > 1 && i > n / 2 {
                            assert_eq!(kxy[i * n + i], kyx[i * n + i], "{arch:?} d={d}");
                        }
                        let s = stable_value(&arch, kind, xi, yi, &mut scratch);
                        let nat = (stable_value(&arch, kind, xi, xi, &mut scratch)
                            * stable_value(&arch, kind, yi, yi, &mut scratch))
                        .abs()
                        .sqrt();
                        let got = kxy[i * n + i];
                        assert!(
                            (got - s).abs() <= 3e-14 * s.abs() + 1e-16 * nat,
                            "{arch:?} {kind:?} d={d} pair {i}: {got} vs {s}"
                        );
                        let mut w = vec![0.0; n];
                        w[i] = 1.0;
                        let xr = Points::new(&xs[i * d..(i + 1) * d], 1, d).unwrap();
                        let g = kernel_grad(&arch, kind, xr, y, &w).unwrap();
                        let mut gs = vec![0.0; d];
                        stable_grad_add(&arch, kind, xi, yi, 1.0, &mut gs, &mut scratch);
                        let err = g.iter().zip(&gs).map(|(p, q)| (p - q).powi(2)).sum::<f64>();
                        let size = sq_norm(&gs).sqrt() + 1e-16 * nat / sq_norm(xi).sqrt();
                        assert!(
                            err.sqrt() <= 1e-13 * size,
                            "{arch:?} {kind:?} d={d} pair {i}: {g:?} vs {gs:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The two forms of the determinant give the same bits (the exact product errors by FMA, or by
/// Dekker's product without one), nearly collinear inputs included.
#[test]
fn det2_without_fma_gives_the_same_bits() {
    let mut seed = 5;
    for k in 0..20_000 {
        let scale = 2f64.powi((k % 60) - 30);
        let (x0, x1) = (lcg(&mut seed) * scale, lcg(&mut seed) * scale);
        let c = lcg(&mut seed) * 3.0;
        let delta = 10f64.powi(-(k % 17));
        let (y0, y1) = (
            c * x0 + delta * lcg(&mut seed),
            c * x1 + delta * lcg(&mut seed),
        );
        let (a, b) = (
            blocks::det2_for_tests::<true>(x0, x1, y0, y1),
            blocks::det2_for_tests::<false>(x0, x1, y0, y1),
        );
        assert_eq!(a.to_bits(), b.to_bits(), "{x0} {x1} {y0} {y1}");
        assert_eq!(a, -blocks::det2_for_tests::<true>(y0, y1, x0, x1));
    }
}
