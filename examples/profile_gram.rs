//! Single-thread timing of the tile loops (for optimising; the real benchmarks are in benches/).
use _core::{gram, kernel_grad, Arch, Kind, Points};
use std::time::Instant;

/// Process CPU seconds (user + system) from /proc/self/stat: the machine may be shared, so CPU time
/// says more than wall time about the loops themselves.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let n = 2000;
    let d = 2;
    let mut s: u64 = 1;
    let xs: Vec<f64> = (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect();
    let w: Vec<f64> = xs[..n].to_vec();
    _core::pool::set_num_threads(
        std::env::var("NT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    );
    let arch = Arch::relu(3, 1.0, 1.0);
    let x = Points::new(&xs, n, d).unwrap();
    time_pairs("gram full", n * n, || {
        gram(&arch, Kind::Ntk, x, Some(x)).unwrap()
    });
    time_pairs("grad", n * n, || {
        kernel_grad(&arch, Kind::Ntk, x, x, &w).unwrap()
    });
}

/// Runs `f` a few times and prints its mean wall and CPU time per run, and the pairs (of `pairs` per
/// run) per CPU second; an entry of the last result is printed too, so that the work is not optimised
/// away.
fn time_pairs(label: &str, pairs: usize, mut f: impl FnMut() -> Vec<f64>) {
    let reps = 5;
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut out = Vec::new();
    for _ in 0..reps {
        out = f();
    }
    let (dt, dc) = (
        t.elapsed().as_secs_f64() / reps as f64,
        (cpu_seconds() - c) / reps as f64,
    );
    println!(
        "{label}, 1 thread: wall {:.1} ms, cpu {:.1} ms -> {:.1} Mpairs/s per cpu-s ({})",
        dt * 1e3,
        dc * 1e3,
        pairs as f64 / dc / 1e6,
        out[7]
    );
}
