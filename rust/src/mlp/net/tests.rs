//! Tests of the passes on a small erf network with one or two halves: the input gradient and the
//! update (`-lr` times the parameter gradient, with and without the penalty) against central
//! differences, the same bits for one and three threads, the fused loop against the two-phase steps,
//! and the rejected arguments.

use super::*;
use crate::mlp::loss::Loss;
use crate::pool;

/// A small erf network (smooth, so central differences are accurate) with two halves.
fn setup(halves: usize) -> (Net<f64>, Vec<Vec<f64>>, Vec<f64>, usize) {
    let dims = vec![3, 7, 5, 1];
    let scales = [
        (0.9, 0.3),
        (1.1 / 7f64.sqrt(), 0.2),
        (1.2 / 5f64.sqrt(), 0.4),
    ];
    let signs: Vec<f64> = [0.7, -0.6][..halves].to_vec();
    let net = Net::<f64>::new(
        Act::Erf {
            a: 1.1,
            b: 0.8,
            c: 0.1,
        },
        dims,
        &scales,
        &signs,
    )
    .unwrap();
    let params: Vec<Vec<f64>> = (0..halves)
        .map(|h| {
            (0..net.n_params())
                .map(|i| (((i * 37 + h * 11) % 23) as f64 / 11.0 - 1.0) * 0.9)
                .collect()
        })
        .collect();
    let n = 70; // two chunks, the second partial
    let x: Vec<f64> = (0..n * 3)
        .map(|i| ((i * 17) % 29) as f64 / 9.0 - 1.5)
        .collect();
    (net, params, x, n)
}

fn refs(p: &[Vec<f64>]) -> Vec<&[f64]> {
    p.iter().map(|v| v.as_slice()).collect()
}

#[test]
fn input_gradient_matches_central_differences() {
    let (net, params, x, n) = setup(2);
    let (f, g) = net.value_and_grad(&refs(&params), &x, n, true).unwrap();
    let h = 1e-6;
    for i in [0, 33, 69] {
        for k in 0..3 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i * 3 + k] += h;
            xm[i * 3 + k] -= h;
            let fp = net.value_and_grad(&refs(&params), &xp, n, false).unwrap().0[i];
            let fm = net.value_and_grad(&refs(&params), &xm, n, false).unwrap().0[i];
            let fd = (fp - fm) / (2.0 * h);
            assert!(
                (fd - g[i * 3 + k]).abs() <= 1e-8 * (1.0 + fd.abs()),
                "{fd} vs {}",
                g[i * 3 + k]
            );
        }
    }
    assert!(f.iter().all(|v| v.is_finite()));
}

/// The update of a linear loss sum_i ct_i f(x_i) with step lr is -lr times its parameter gradient, checked
/// entry by entry against central differences of that loss, with and without the penalty.
#[test]
fn update_is_minus_lr_times_the_gradient() {
    for penalty in [0.0, 0.35] {
        let (net, params, x, n) = setup(2);
        let ct: Vec<f64> = (0..n).map(|i| ((i * 13) % 7) as f64 / 7.0 - 0.4).collect();
        let objective = |p: &[Vec<f64>]| -> f64 {
            let (f, g) = net.value_and_grad(&refs(p), &x, n, true).unwrap();
            let lin: f64 = f.iter().zip(&ct).map(|(a, b)| a * b).sum();
            let sq: f64 = g.iter().map(|v| v * v).sum::<f64>() / n as f64;
            lin + penalty * sq
        };
        let mut ws = Workspace::default();
        let mut updated = params.clone();
        net.forward(&refs(&params), &x, n, &mut ws).unwrap();
        let lr = 1e-3;
        {
            let mut mr: Vec<&mut [f64]> = updated.iter_mut().map(|v| v.as_mut_slice()).collect();
            net.backward_update(&mut mr, &x, &ct, lr, penalty, &mut ws)
                .unwrap();
        }
        let h = 1e-6;
        for half in 0..2 {
            for idx in (0..net.n_params()).step_by(5) {
                let (mut pp, mut pm) = (params.clone(), params.clone());
                pp[half][idx] += h;
                pm[half][idx] -= h;
                let grad = (objective(&pp) - objective(&pm)) / (2.0 * h);
                let step = updated[half][idx] - params[half][idx];
                assert!(
                    (step + lr * grad).abs() <= 1e-9 * (1.0 + grad.abs()) * lr * 1e3,
                    "penalty {penalty} half {half} param {idx}: step {step} vs {}",
                    -lr * grad
                );
            }
        }
    }
}

#[test]
fn same_bits_for_one_and_three_threads() {
    let (net, params, x, n) = setup(2);
    let ct: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let run = |threads: usize| {
        pool::set_num_threads(threads);
        let mut p = params.clone();
        let mut ws = Workspace::default();
        for _ in 0..3 {
            net.forward(&refs(&p), &x, n, &mut ws).unwrap();
            let mut mr: Vec<&mut [f64]> = p.iter_mut().map(|v| v.as_mut_slice()).collect();
            net.backward_update(&mut mr, &x, &ct, 0.05, 0.2, &mut ws)
                .unwrap();
        }
        let (f, g) = net.value_and_grad(&refs(&p), &x, n, true).unwrap();
        (p, f, g)
    };
    let a = run(1);
    let b = run(3);
    pool::set_num_threads(2);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
}

/// The fused loop equals forward / cotangent / backward_update step by step, bit for bit.
#[test]
fn train_equals_the_two_phase_steps() {
    for loss in [Loss::Ipm, Loss::Lsgan, Loss::Vanilla, Loss::Hinge] {
        for penalty in [0.0, 0.25] {
            let (net, params, x, n) = setup(2);
            let n_fake = 31;
            let (mut a, mut b) = (params.clone(), params.clone());
            let mut ws = Workspace::default();
            {
                let mut mr: Vec<&mut [f64]> = a.iter_mut().map(|v| v.as_mut_slice()).collect();
                net.train(&mut mr, &x, n_fake, loss, 4, 0.05, penalty, &mut ws)
                    .unwrap();
            }
            for _ in 0..4 {
                let f = net.forward(&refs(&b), &x, n, &mut ws).unwrap();
                let ct: Vec<f64> = f
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let w = if i < n_fake {
                            1.0 / n_fake as f64
                        } else {
                            1.0 / (n - n_fake) as f64
                        };
                        loss.deriv(v, i < n_fake) * w
                    })
                    .collect();
                let mut mr: Vec<&mut [f64]> = b.iter_mut().map(|v| v.as_mut_slice()).collect();
                net.backward_update(&mut mr, &x, &ct, 0.05, penalty, &mut ws)
                    .unwrap();
            }
            assert_eq!(a, b, "{loss:?} penalty {penalty}");
            assert_ne!(a, params);
        }
    }
}

#[test]
fn train_stops_on_a_non_finite_cotangent() {
    let (net, params, x, _) = setup(1);
    let mut p = params.clone();
    let mut ws = Workspace::default();
    let mut mr: Vec<&mut [f64]> = p.iter_mut().map(|v| v.as_mut_slice()).collect();
    let err = net
        .train(&mut mr, &x, 10, Loss::Lsgan, 50, 1e200, 0.0, &mut ws)
        .unwrap_err();
    assert!(matches!(err, NtkError::NonFinite(_)), "{err}");
}

#[test]
fn rejects_bad_shapes() {
    let (net, params, x, n) = setup(1);
    let mut ws = Workspace::default();
    assert!(net
        .forward(&refs(&params), &x[..x.len() - 1], n, &mut ws)
        .is_err());
    assert!(net.forward(&[&params[0][1..]], &x, n, &mut ws).is_err());
    let mut p = params.clone();
    let mut mr: Vec<&mut [f64]> = p.iter_mut().map(|v| v.as_mut_slice()).collect();
    let ct = vec![0.0; n];
    assert!(net
        .backward_update(&mut mr, &x, &ct, 0.1, 0.0, &mut ws)
        .is_err()); // no forward yet
    assert!(Net::<f64>::new(Act::Gelu, vec![2, 3, 2], &[(1.0, 0.0), (1.0, 0.0)], &[1.0]).is_err());
}
