//! The matrix products of the passes: `C = alpha A B + beta C` ([`gemm`]: the register-blocked kernel
//! when `B` is row-major and `k` short, else `matrixmultiply`), `C = c A B` for a short inner dimension
//! `k` ([`small_k_product`], summed in order over `k`), and [`gemm_rate`], the GFLOP/s of [`gemm`] over
//! the forward pass's chunks (a benchmark).

use rayon::prelude::*;

use super::buffers::Ptr;
use super::CHUNK;
use crate::mlp::kernel::Operands;
use crate::mlp::real::Real;
use crate::pool;

/// Inner dimensions up to this are multiplied by [`small_k_product`] instead of a GEMM call (the first
/// layer of a network on low-dimensional data: a GEMM's packing would cost more than its arithmetic).
pub(super) const SMALL_K: usize = 8;

/// `C = c (A B)` for row-major `A` (m x k) and `B` (k x n) and a small `k`: row by row, summing over `k`
/// in order, vectorised along the `n` columns.
///
/// # Safety
/// The pointers address matrices of the shapes given; `out` does not alias the inputs.
pub(super) unsafe fn small_k_product<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    c: T,
    a: *const T,
    b: *const T,
    out: *mut T,
) {
    let b = std::slice::from_raw_parts(b, k * n);
    for r in 0..m {
        let ar = std::slice::from_raw_parts(a.add(r * k), k);
        let row = std::slice::from_raw_parts_mut(out.add(r * n), n);
        for (o, &b0) in row.iter_mut().zip(&b[..n]) {
            *o = ar[0] * b0;
        }
        for (q, &aq) in ar.iter().enumerate().skip(1) {
            for (o, &bq) in row.iter_mut().zip(&b[q * n..(q + 1) * n]) {
                *o += aq * bq;
            }
        }
        for o in row.iter_mut() {
            *o = c * *o;
        }
    }
}

/// A matrix operand of [`gemm`]: a pointer and (row, column) strides in elements.
#[derive(Clone, Copy)]
pub(super) struct View<T> {
    p: *const T,
    rs: isize,
    cs: isize,
}

/// A row-major matrix with `cols` columns.
#[inline(always)]
pub(super) fn rm<T>(p: *const T, cols: usize) -> View<T> {
    View {
        p,
        rs: cols as isize,
        cs: 1,
    }
}

/// The transpose of a row-major matrix with `cols` columns.
#[inline(always)]
pub(super) fn tr<T>(p: *const T, cols: usize) -> View<T> {
    View {
        p,
        rs: 1,
        cs: cols as isize,
    }
}

/// Inner dimensions up to this go to the register-blocked kernel (the row-chunk products); longer ones
/// (the weight updates, summing over all samples) to `matrixmultiply`, whose packing then pays off.
const NN_MAX_K: usize = 1 << 20;

/// `C = alpha A B + beta C` (`beta` 0 or 1), `A` (m x k) and `B` (k x n) as views, `C` row-major (m x n)
/// with `ldc` columns between rows: the register-blocked kernel when `B` is row-major and `k` short,
/// else `matrixmultiply`.
///
/// # Safety
/// As [`Real::gemm`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: View<T>,
    b: View<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    if b.cs == 1 && k <= NN_MAX_K && a.rs >= 0 && a.cs >= 0 && b.rs >= 0 {
        let o = Operands {
            a: a.p,
            rsa: a.rs as usize,
            csa: a.cs as usize,
            b: b.p,
            ldb: b.rs as usize,
            c,
            ldc,
        };
        T::gemm_nn(m, k, n, alpha, beta == T::ONE, o);
    } else {
        T::gemm(
            m,
            k,
            n,
            alpha,
            a.p,
            a.rs,
            a.cs,
            b.p,
            b.rs,
            b.cs,
            beta,
            c,
            ldc as isize,
            1,
        );
    }
}

/// GFLOP/s of this engine's GEMM on `C (m x n) = A (m x k) B (k x n)`, split into the forward pass's
/// chunks of [`CHUNK`] rows over the pool, repeated for at least `seconds` (a benchmark's floor).
pub fn gemm_rate<T: Real>(m: usize, k: usize, n: usize, seconds: f64) -> f64 {
    let a: Vec<T> = (0..m * k)
        .map(|i| T::of(((i * 7919) % 1000) as f64 / 1000.0 - 0.5))
        .collect();
    let b: Vec<T> = (0..k * n)
        .map(|i| T::of(((i * 104729) % 1000) as f64 / 1000.0 - 0.5))
        .collect();
    let mut c = vec![T::ZERO; m * n];
    let cp = Ptr(c.as_mut_ptr());
    let once = || {
        pool::install(|| {
            (0..m.div_ceil(CHUNK)).into_par_iter().for_each(|q| {
                let (r0, rows) = (q * CHUNK, CHUNK.min(m - q * CHUNK));
                // SAFETY: task q writes rows r0..r0+rows of c only.
                unsafe {
                    gemm(
                        rows,
                        k,
                        n,
                        T::ONE,
                        rm(a.as_ptr().add(r0 * k), k),
                        rm(b.as_ptr(), n),
                        T::ZERO,
                        cp.at(r0 * n),
                        n,
                    );
                }
            });
        });
    };
    once();
    let start = std::time::Instant::now();
    let mut reps = 0usize;
    while reps == 0 || start.elapsed().as_secs_f64() < seconds {
        once();
        reps += 1;
    }
    2.0 * (m * k * n) as f64 * reps as f64 / start.elapsed().as_secs_f64() / 1e9
}
