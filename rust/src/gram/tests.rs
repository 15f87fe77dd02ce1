//! Unit tests of the drivers against the scalar recursion, finite differences and each other.

use super::blocks::dot;
use super::*;
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
