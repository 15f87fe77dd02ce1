//! The network and its passes: forward (keeping the activations), backprop and the in-place
//! gradient-descent update, with the gradient penalty's double backprop, and input gradients.
//!
//! A network `f = sum_h s_h f_h` is one or two plain halves (the antisymmetric discriminator
//! `(f_1 - f_2)/sqrt 2` has two), each `z_l = c_l h_l W_l + beta_l b_l` (l = 0..L), `h_{l+1} =
//! phi(z_l)`, `f_h = z_L`, with one output.  Each half's parameters are one flat buffer
//! `[W_0, b_0, W_1, b_1, ..., W_L, b_L]` (row-major `W_l` of shape `dims[l] x dims[l+1]`).
//!
//! Parallel layout (the same numbers for every thread count): the forward and backward passes are
//! row-local, so they run over fixed chunks of [`CHUNK`] rows, one task per chunk; the weight update
//! `W_l += alpha h_l^T D_l` runs over fixed blocks of [`WBLOCK`] rows of `W_l`, each computed by one
//! GEMM over all `n` samples.  Each number is computed by one task in a fixed order.

use rayon::prelude::*;

use super::act::{Act, Phi};
use super::kernel::Operands;
use super::loss::Loss;
use super::real::Real;
use crate::ensure;
use crate::error::NtkError;
use crate::pool;

/// Rows per forward/backward task.
pub const CHUNK: usize = 64;
/// Rows of a weight matrix per update task.
pub const WBLOCK: usize = 64;

/// Inner dimensions up to this are multiplied by [`small_k_product`] instead of a GEMM call (the first
/// layer of a network on low-dimensional data: a GEMM's packing would cost more than its arithmetic).
const SMALL_K: usize = 8;

/// `C = c (A B)` for row-major `A` (m x k) and `B` (k x n) and a small `k`: row by row, summing over `k`
/// in order, vectorised along the `n` columns.
///
/// # Safety
/// The pointers address matrices of the shapes given; `out` does not alias the inputs.
unsafe fn small_k_product<T: Real>(
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
struct View<T> {
    p: *const T,
    rs: isize,
    cs: isize,
}

/// A row-major matrix with `cols` columns.
#[inline(always)]
fn rm<T>(p: *const T, cols: usize) -> View<T> {
    View {
        p,
        rs: cols as isize,
        cs: 1,
    }
}

/// The transpose of a row-major matrix with `cols` columns.
#[inline(always)]
fn tr<T>(p: *const T, cols: usize) -> View<T> {
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
unsafe fn gemm<T: Real>(
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

/// A raw pointer that tasks writing disjoint entries may share.
struct Ptr<T>(*mut T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}

impl<T> Ptr<T> {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the raw field).
    #[inline(always)]
    fn get(self) -> *mut T {
        self.0
    }

    #[inline(always)]
    fn at(self, offset: usize) -> *mut T {
        // SAFETY (callers): the offset stays inside the buffer the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

/// The architecture of the halves, their signs and the activation, in the working type.
pub struct Net<T: Real> {
    /// Layer widths `[d, n_1, ..., n_L, 1]`.
    dims: Vec<usize>,
    /// `c_l` and `beta_l` of each dense layer.
    c: Vec<T>,
    beta: Vec<T>,
    /// `-lr c_l` and `lr beta_l` are formed in f64 from these (as numpy does).
    c64: Vec<f64>,
    beta64: Vec<f64>,
    phi: Phi<T>,
    /// `s_h` of each half.
    signs: Vec<T>,
    w_off: Vec<usize>,
    b_off: Vec<usize>,
    n_params: usize,
    /// Offsets of `W_l^T` (l < L) in a half's buffer of transposed weights, and its length.
    wt_off: Vec<usize>,
    wt_len: usize,
    /// `phi'(z)` is a function of `h = phi(z)` (`a min(z, 0) + b max(z, 0)` with `a >= 0 < b`: `z > 0` iff
    /// `h > 0`), so the pre-activations are not kept: the work space holds `h` only (a third less memory
    /// traffic per step).
    h_for_z: bool,
}

/// The activations of the last [`Net::forward`] and the backprop factors of the last update, per half.
#[derive(Default)]
pub struct Workspace<T> {
    n: usize,
    bufs: PassBufs<Aligned<T>>,
}

/// The buffers of a pass, row-major: owned in a [`Workspace`], or pointers into it (`Bufs`).
#[derive(Default)]
struct PassBufs<B> {
    /// `z_l`, l < L (n x dims[l+1]), index `half * L + l`.
    z: Vec<B>,
    /// `h_{l+1}`, l < L (n x dims[l+1]), index `half * L + l`.
    h: Vec<B>,
    /// `f_h` (n), index `half`.
    out: Vec<B>,
    /// `f` (n), and the cotangent `dL/df` (n).
    f: B,
    ct: B,
    /// `D_l`, l = 0..=L (n x dims[l+1]), index `half * (L + 1) + l`.
    d: Vec<B>,
    /// Penalty: input-backprop deltas `delta_l` (n x dims[l+1]), index `half * (L + 1) + l`.
    de: Vec<B>,
    /// Penalty: adjoints `u_l` (n x dims[l]), index `half * (L + 1) + l`.
    u: Vec<B>,
    /// Each half's `W_l^T` (l < L), the row-major right operands of backprop.
    wt: Vec<B>,
}

/// Pointers into a [`Workspace`] for one pass.
type Bufs<T> = PassBufs<Ptr<T>>;

impl<B> PassBufs<B> {
    /// Every buffer through `f`, in the same places.
    fn map<C>(&mut self, mut f: impl FnMut(&mut B) -> C) -> PassBufs<C> {
        fn each<B, C>(v: &mut [B], f: &mut impl FnMut(&mut B) -> C) -> Vec<C> {
            v.iter_mut().map(f).collect()
        }
        PassBufs {
            z: each(&mut self.z, &mut f),
            h: each(&mut self.h, &mut f),
            out: each(&mut self.out, &mut f),
            f: f(&mut self.f),
            ct: f(&mut self.ct),
            d: each(&mut self.d, &mut f),
            de: each(&mut self.de, &mut f),
            u: each(&mut self.u, &mut f),
            wt: each(&mut self.wt, &mut f),
        }
    }
}

/// A buffer whose first value sits on a 64-byte (cache line) boundary: the kernels' row loads then never
/// straddle two lines when a row is a whole number of lines (widths divisible by 8 in f64).
#[derive(Default)]
pub struct Aligned<T> {
    raw: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Real> Aligned<T> {
    /// `len` zeros (kept as they are when the length does not change).
    fn resize(&mut self, len: usize) {
        if self.len == len && !self.raw.is_empty() {
            return;
        }
        let size = std::mem::size_of::<T>();
        self.raw = vec![T::ZERO; len + 64 / size];
        let addr = self.raw.as_ptr() as usize;
        self.off = ((64 - addr % 64) % 64) / size;
        self.len = len;
    }

    fn zeros(len: usize) -> Self {
        let mut a = Aligned {
            raw: Vec::new(),
            off: 0,
            len: 0,
        };
        a.resize(len);
        a
    }

    fn as_slice(&self) -> &[T] {
        &self.raw[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.raw[self.off..self.off + self.len]
    }

    fn as_mut_ptr(&mut self) -> *mut T {
        self.as_mut_slice().as_mut_ptr()
    }
}

fn resize1<T: Real>(buf: &mut Aligned<T>, size: usize) {
    buf.resize(size);
}

fn resize<T: Real>(bufs: &mut Vec<Aligned<T>>, sizes: &[usize]) {
    bufs.resize_with(sizes.len(), Aligned::default);
    for (b, &s) in bufs.iter_mut().zip(sizes) {
        b.resize(s);
    }
}

/// Per-chunk pointers into the row-major buffers of one pass: entry `i` points at row `r0` of buffer `i`.
fn rows_of<T>(ps: &[Ptr<T>], cols: impl Fn(usize) -> usize, r0: usize) -> Vec<*mut T> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| p.at(r0 * cols(i)))
        .collect()
}

impl<T: Real> Net<T> {
    /// A network with layer widths `dims = [d, n_1, .., n_L, 1]`, layer scales `(c_l, beta_l)` and one
    /// half per sign.
    pub fn new(
        act: Act,
        dims: Vec<usize>,
        scales: &[(f64, f64)],
        signs: &[f64],
    ) -> Result<Self, NtkError> {
        ensure!(
            dims.len() >= 3,
            Shape,
            "dims must list d, the hidden widths and the output, got {dims:?}"
        );
        ensure!(
            dims.iter().all(|&n| n >= 1),
            Shape,
            "every width must be >= 1, got {dims:?}"
        );
        ensure!(
            *dims.last().unwrap() == 1,
            Shape,
            "a discriminator has one output, got dims {dims:?}"
        );
        let layers = dims.len() - 1;
        ensure!(
            scales.len() == layers,
            Shape,
            "need one (c, beta) per dense layer ({layers}), got {}",
            scales.len()
        );
        ensure!(
            scales.iter().all(|&(c, b)| c.is_finite() && b.is_finite()),
            Value,
            "layer scales must be finite"
        );
        ensure!(
            !signs.is_empty() && signs.len() <= 2 && signs.iter().all(|s| s.is_finite()),
            Value,
            "need one or two finite half signs, got {signs:?}"
        );
        let (mut w_off, mut b_off, mut off) = (Vec::new(), Vec::new(), 0);
        for l in 0..layers {
            w_off.push(off);
            off += dims[l] * dims[l + 1];
            b_off.push(off);
            off += dims[l + 1];
        }
        let (mut wt_off, mut wt_len) = (Vec::new(), 0);
        for l in 0..layers - 1 {
            wt_off.push(wt_len);
            wt_len += dims[l] * dims[l + 1];
        }
        let h_for_z = matches!(act, Act::AbRelu { a, b } if a >= 0.0 && b > 0.0);
        Ok(Net {
            h_for_z,
            wt_off,
            wt_len,
            c: scales.iter().map(|s| T::of(s.0)).collect(),
            beta: scales.iter().map(|s| T::of(s.1)).collect(),
            c64: scales.iter().map(|s| s.0).collect(),
            beta64: scales.iter().map(|s| s.1).collect(),
            phi: act.coeffs(),
            signs: signs.iter().map(|&s| T::of(s)).collect(),
            dims,
            w_off,
            b_off,
            n_params: off,
        })
    }

    /// Scalars per half.
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Number of halves.
    pub fn halves(&self) -> usize {
        self.signs.len()
    }

    /// Input dimension `d`.
    pub fn d(&self) -> usize {
        self.dims[0]
    }

    /// Number of hidden layers `L`.
    fn hidden(&self) -> usize {
        self.dims.len() - 2
    }

    fn check(&self, params: &[&[T]], x: &[T], n: usize) -> Result<(), NtkError> {
        ensure!(
            params.len() == self.halves(),
            Shape,
            "need {} parameter buffers (one per half), got {}",
            self.halves(),
            params.len()
        );
        for p in params {
            ensure!(
                p.len() == self.n_params,
                Shape,
                "a parameter buffer has {} values, the network {}",
                p.len(),
                self.n_params
            );
        }
        ensure!(
            x.len() == n * self.d(),
            Shape,
            "x has {} values, expected n * d = {}",
            x.len(),
            n * self.d()
        );
        Ok(())
    }

    // -- passes over one chunk of rows (pointers already at the chunk's first row) --------------------

    /// `z_l`, `h_{l+1}` and the output of one half for `rows` rows of `x`.
    ///
    /// # Safety
    /// `x` holds `rows x d`, `z[l]`, `h[l]` hold `rows x dims[l+1]` (l < L), `out` holds `rows`.
    unsafe fn forward_rows(
        &self,
        p: &[T],
        x: *const T,
        rows: usize,
        z: &[*mut T],
        h: &[*mut T],
        out: *mut T,
    ) {
        let hidden = self.hidden();
        let mut scaled_bias = Vec::with_capacity(*self.dims.iter().max().unwrap());
        let bb = &mut scaled_bias;
        let mut inp = x;
        for l in 0..=hidden {
            let (cin, cout) = (self.dims[l], self.dims[l + 1]);
            let dst = if l < hidden { z[l] } else { out };
            let w = p.as_ptr().add(self.w_off[l]);
            if cin <= SMALL_K {
                small_k_product(rows, cin, cout, self.c[l], inp, w, dst);
            } else {
                gemm(
                    rows,
                    cin,
                    cout,
                    self.c[l],
                    rm(inp, cin),
                    rm(w, cout),
                    T::ZERO,
                    dst,
                    cout,
                );
            }
            let beta = self.beta[l];
            let b = &p[self.b_off[l]..self.b_off[l] + cout];
            if l < hidden {
                if beta != T::ZERO {
                    bb.clear();
                    bb.extend(b.iter().map(|&bj| beta * bj));
                }
                let bias: &[T] = if beta != T::ZERO { bb } else { &[] };
                if std::ptr::eq(dst, h[l]) {
                    // z_l is not kept (see `h_for_z`): bias and activation in place
                    self.phi.bias_map_f_inplace(
                        bias,
                        std::slice::from_raw_parts_mut(dst, rows * cout),
                        cout,
                    );
                } else {
                    let (zs, hs) = (
                        std::slice::from_raw_parts_mut(dst, rows * cout),
                        std::slice::from_raw_parts_mut(h[l], rows * cout),
                    );
                    if bias.is_empty() {
                        self.phi.map_f(zs, hs);
                    } else {
                        self.phi.bias_map_f(bias, zs, hs);
                    }
                }
                inp = h[l];
            } else if beta != T::ZERO {
                let dst = std::slice::from_raw_parts_mut(dst, rows * cout);
                for row in dst.chunks_exact_mut(cout) {
                    for (v, &bj) in row.iter_mut().zip(b) {
                        *v += beta * bj;
                    }
                }
            }
        }
    }

    /// The row-major right operand `W_l^T` (cout x cin) of backprop through layer `l`: the half's
    /// transposed copy `wt` (see [`Net::transpose`]), or `W_l` itself for a one-output layer.
    ///
    /// # Safety
    /// `wt` holds the half's transposed weights.
    unsafe fn w_transposed(&self, p: &[T], wt: *const T, l: usize) -> View<T> {
        let cin = self.dims[l];
        if self.dims[l + 1] == 1 {
            rm(p.as_ptr().add(self.w_off[l]), cin)
        } else {
            rm(wt.add(self.wt_off[l]), cin)
        }
    }

    /// `wt = [W_0^T, ..., W_{L-1}^T]` of the half `p` (rows `r0..r0 + nr` of `W_l` only, with `layer`).
    ///
    /// # Safety
    /// `p` holds a half's `n_params` values (only the rows read need be settled), `wt` holds `wt_len`.
    unsafe fn transpose(&self, p: *const T, wt: *mut T, layer: Option<(usize, usize, usize)>) {
        let layers: Vec<(usize, usize, usize)> = match layer {
            Some(one) => vec![one],
            None => (0..self.hidden()).map(|l| (l, 0, self.dims[l])).collect(),
        };
        for (l, r0, nr) in layers {
            if l >= self.hidden() {
                continue;
            }
            let (cin, cout) = (self.dims[l], self.dims[l + 1]);
            let w = p.add(self.w_off[l]);
            let t = wt.add(self.wt_off[l]);
            for i in r0..r0 + nr {
                for j in 0..cout {
                    *t.add(j * cin + i) = *w.add(i * cout + j);
                }
            }
        }
    }

    /// Backprop of one half from `D_L = top` (rows): `D_{l-1} = c_l (D_l W_l^T) * phi'(z_{l-1})
    /// [+ src_{l-1}]`, written to `dl[l]` (rows x dims[l+1]); with `grad`, also `dh[l] = c_l D_l W_l^T`
    /// (l >= 1, rows x dims[l]) and the input gradient `c_0 D_0 W_0^T` into `grad` (rows x d).
    ///
    /// # Safety
    /// Buffers of the shapes above; `src[l]` (if given) rows x dims[l+1].
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward_rows(
        &self,
        p: &[T],
        wt: *const T,
        top: impl Fn(usize) -> T,
        rows: usize,
        z: &[*const T],
        dl: &[*mut T],
        dh: Option<&[*mut T]>,
        src: Option<&[*const T]>,
        grad: Option<*mut T>,
    ) {
        let hidden = self.hidden();
        let last = std::slice::from_raw_parts_mut(dl[hidden], rows);
        for (r, v) in last.iter_mut().enumerate() {
            *v = top(r);
        }
        for l in (1..=hidden).rev() {
            let (cin, cout) = (self.dims[l], self.dims[l + 1]);
            let wtl = self.w_transposed(p, wt, l);
            let below = dl[l - 1];
            // c_l D_l W_l^T, then (optionally kept as dh_l) times phi'(z_{l-1})
            let dst = dh.map_or(below, |dh| dh[l]);
            gemm(
                rows,
                cout,
                cin,
                self.c[l],
                rm(dl[l], cout),
                wtl,
                T::ZERO,
                dst,
                cin,
            );
            if let Some(dh) = dh {
                let dhs = std::slice::from_raw_parts(dh[l], rows * cin);
                let out = std::slice::from_raw_parts_mut(below, rows * cin);
                out.copy_from_slice(dhs);
            }
            let zs = std::slice::from_raw_parts(z[l - 1], rows * cin);
            let out = std::slice::from_raw_parts_mut(below, rows * cin);
            self.phi.mul_df(zs, out);
            if let Some(src) = src {
                if !src[l - 1].is_null() {
                    let s = std::slice::from_raw_parts(src[l - 1], rows * cin);
                    for (v, &sv) in out.iter_mut().zip(s) {
                        *v += sv;
                    }
                }
            }
        }
        if let Some(g) = grad {
            let (d, c1) = (self.dims[0], self.dims[1]);
            gemm(
                rows,
                c1,
                d,
                self.c[0],
                rm(dl[0], c1),
                self.w_transposed(p, wt, 0),
                T::ZERO,
                g,
                d,
            );
        }
    }

    /// The adjoint of the input-gradient backprop for `u_0 = gbar`: `dbar_l = c_l u_l W_l`,
    /// `u_{l+1} = dbar_l * phi'(z_l)` into `u[l]` (rows x dims[l]), and the sources
    /// `s_l = dbar_l * dh_{l+1} * phi''(z_l)` into `src[l]` when the activation is curved.
    ///
    /// # Safety
    /// `u[0]` holds gbar (rows x d); buffers of the shapes above; `dbar` rows x max width.
    #[allow(clippy::too_many_arguments)]
    unsafe fn adjoint_rows(
        &self,
        p: &[T],
        rows: usize,
        z: &[*const T],
        dh: &[*mut T],
        u: &[*mut T],
        src: &[*mut T],
        dbar: *mut T,
    ) {
        let hidden = self.hidden();
        for l in 0..hidden {
            let (cin, cout) = (self.dims[l], self.dims[l + 1]);
            let w = p.as_ptr().add(self.w_off[l]);
            gemm(
                rows,
                cin,
                cout,
                self.c[l],
                rm(u[l], cin),
                rm(w, cout),
                T::ZERO,
                dbar,
                cout,
            );
            let db = std::slice::from_raw_parts(dbar, rows * cout);
            let zs = std::slice::from_raw_parts(z[l], rows * cout);
            if self.phi.curved() {
                let dhs = std::slice::from_raw_parts(dh[l + 1], rows * cout);
                let s = std::slice::from_raw_parts_mut(src[l], rows * cout);
                for i in 0..rows * cout {
                    s[i] = db[i] * dhs[i] * self.phi.d2f(zs[i]);
                }
            }
            let un = std::slice::from_raw_parts_mut(u[l + 1], rows * cout);
            for i in 0..rows * cout {
                un[i] = db[i] * self.phi.df(zs[i]);
            }
        }
    }

    // -- whole passes ---------------------------------------------------------------------------------

    /// Size the work space for `n` points (the penalty's buffers too when `penalty`) and take pointers
    /// into it.
    fn buffers(&self, ws: &mut Workspace<T>, n: usize, backward: bool, penalty: bool) -> Bufs<T> {
        let (hidden, halves) = (self.hidden(), self.halves());
        let nl = hidden + 1;
        let zsizes: Vec<usize> = (0..halves * hidden)
            .map(|i| n * self.dims[i % hidden + 1])
            .collect();
        resize(&mut ws.bufs.z, if self.h_for_z { &[] } else { &zsizes });
        resize(&mut ws.bufs.h, &zsizes);
        resize(&mut ws.bufs.out, &vec![n; halves]);
        resize1(&mut ws.bufs.f, n);
        if backward {
            resize(&mut ws.bufs.wt, &vec![self.wt_len; halves]);
            let dsizes: Vec<usize> = (0..halves * nl)
                .map(|i| n * self.dims[i % nl + 1])
                .collect();
            resize(&mut ws.bufs.d, &dsizes);
            resize1(&mut ws.bufs.ct, n);
            if penalty {
                resize(&mut ws.bufs.de, &dsizes);
                let usizes: Vec<usize> = (0..halves * nl).map(|i| n * self.dims[i % nl]).collect();
                resize(&mut ws.bufs.u, &usizes);
            }
        }
        let mut b = ws.bufs.map(|a| Ptr(a.as_mut_ptr()));
        if self.h_for_z {
            b.z = b.h.clone(); // `z` is read from `h` (see `Net::h_for_z`)
        }
        b
    }

    /// Forward pass of chunk `k` of every half: `z_l`, `h_{l+1}`, `f_h` and `f = sum_h s_h f_h` into `b`.
    ///
    /// # Safety
    /// `b` from [`Net::buffers`] for `n` points; chunk `k` is written by this call only.
    unsafe fn forward_chunk(&self, params: &[&[T]], x: &[T], n: usize, k: usize, b: &Bufs<T>) {
        let (hidden, d) = (self.hidden(), self.d());
        let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
        let cols = |i: usize| self.dims[i % hidden + 1];
        let (z, h) = (rows_of(&b.z, cols, r0), rows_of(&b.h, cols, r0));
        for (hf, p) in params.iter().enumerate() {
            let s = hf * hidden..(hf + 1) * hidden;
            self.forward_rows(
                p,
                x.as_ptr().add(r0 * d),
                rows,
                &z[s.clone()],
                &h[s],
                b.out[hf].at(r0),
            );
        }
        for r in 0..rows {
            let mut acc = T::ZERO;
            for (hf, &sign) in self.signs.iter().enumerate() {
                acc += sign * *b.out[hf].at(r0 + r);
            }
            *b.f.at(r0 + r) = acc;
        }
    }

    /// Backprop of chunk `k` of every half from the cotangent in `b.ct`: `D_l`, and with the penalty
    /// (`two_w = 2 lambda / n > 0`) the input-backprop deltas `delta_l` and adjoints `u_l`, into `b`.
    ///
    /// # Safety
    /// As [`Net::forward_chunk`], after it (the chunk's `z_l` are read).
    unsafe fn backward_chunk(
        &self,
        params: &[&[T]],
        n: usize,
        k: usize,
        two_w: Option<T>,
        b: &Bufs<T>,
    ) {
        let (hidden, halves, d) = (self.hidden(), self.halves(), self.d());
        let nl = hidden + 1;
        let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
        let zcols = |i: usize| self.dims[i % hidden + 1];
        let dcols = |i: usize| self.dims[i % nl + 1];
        let ucols = |i: usize| self.dims[i % nl];
        let z: Vec<*const T> = rows_of(&b.z, zcols, r0)
            .into_iter()
            .map(|p| p as *const T)
            .collect();
        let dl = rows_of(&b.d, dcols, r0);
        let ct = std::slice::from_raw_parts(b.ct.at(r0), rows);
        // D_l of half `hf` from its cotangent `s_h ct`, with the penalty's second-order sources `src`
        let backward_d = |hf: usize, src: Option<&[*const T]>| {
            let s = self.signs[hf];
            self.backward_rows(
                params[hf],
                b.wt[hf].get(),
                |r| s * ct[r],
                rows,
                &z[hf * hidden..(hf + 1) * hidden],
                &dl[hf * nl..(hf + 1) * nl],
                None,
                src,
                None,
            );
        };
        let Some(two_w) = two_w else {
            for hf in 0..halves {
                backward_d(hf, None);
            }
            return;
        };
        let de = rows_of(&b.de, dcols, r0);
        let u = rows_of(&b.u, ucols, r0);
        // input backprop of every half, keeping delta_l and dh_l; g = sum_h g_h
        let mut dh_buf: Vec<Vec<T>> = (0..halves * nl)
            .map(|i| vec![T::ZERO; rows * ucols(i)])
            .collect();
        let mut g = vec![T::ZERO; rows * d];
        let mut gh = vec![T::ZERO; rows * d];
        for (hf, p) in params.iter().enumerate() {
            let s = self.signs[hf];
            let dh: Vec<*mut T> = dh_buf[hf * nl..(hf + 1) * nl]
                .iter_mut()
                .map(|v| v.as_mut_ptr())
                .collect();
            let (zh, deh) = (
                &z[hf * hidden..(hf + 1) * hidden],
                &de[hf * nl..(hf + 1) * nl],
            );
            self.backward_rows(
                p,
                b.wt[hf].get(),
                |_| s,
                rows,
                zh,
                deh,
                Some(&dh),
                None,
                Some(gh.as_mut_ptr()),
            );
            if hf == 0 {
                g.copy_from_slice(&gh);
            } else {
                for (a, &v) in g.iter_mut().zip(&gh) {
                    *a += v;
                }
            }
        }
        let gbar: Vec<T> = g.iter().map(|&v| two_w * v).collect();
        let maxw = *self.dims.iter().max().unwrap();
        let mut dbar = vec![T::ZERO; rows * maxw];
        let mut src_buf: Vec<Vec<T>> = if self.phi.curved() {
            (0..hidden)
                .map(|l| vec![T::ZERO; rows * self.dims[l + 1]])
                .collect()
        } else {
            Vec::new()
        };
        for (hf, p) in params.iter().enumerate() {
            let uh = &u[hf * nl..(hf + 1) * nl];
            std::slice::from_raw_parts_mut(uh[0], rows * d).copy_from_slice(&gbar);
            let dh: Vec<*mut T> = dh_buf[hf * nl..(hf + 1) * nl]
                .iter_mut()
                .map(|v| v.as_mut_ptr())
                .collect();
            let src: Vec<*mut T> = src_buf.iter_mut().map(|v| v.as_mut_ptr()).collect();
            let zh = &z[hf * hidden..(hf + 1) * hidden];
            self.adjoint_rows(p, rows, zh, &dh, uh, &src, dbar.as_mut_ptr());
            let src_c: Vec<*const T> = if self.phi.curved() {
                src.iter().map(|&q| q as *const T).collect()
            } else {
                vec![std::ptr::null(); hidden]
            };
            backward_d(hf, Some(&src_c));
        }
    }

    /// The weight update from the factors in `b`: one task per (half, layer, block of [`WBLOCK`] rows of
    /// `W_l`), `W_l -= lr c_l (h_l^T D_l [+ u_l^T delta_l])` by one GEMM over all `n` samples, and one
    /// task per bias, `b_l -= lr beta_l sum_i D_l` (rows summed in order).  Runs in the pool.
    fn update_weights(
        &self,
        params: &[Ptr<T>],
        x: &[T],
        n: usize,
        lr: f64,
        penalty: bool,
        b: &Bufs<T>,
    ) {
        let (hidden, halves) = (self.hidden(), self.halves());
        let nl = hidden + 1;
        let mut tasks: Vec<(usize, usize, usize, usize)> = Vec::new();
        for hf in 0..halves {
            for l in 0..nl {
                let rows = self.dims[l];
                for r0 in (0..rows).step_by(WBLOCK) {
                    tasks.push((hf, l, r0, WBLOCK.min(rows - r0)));
                }
                if self.beta64[l] != 0.0 {
                    tasks.push((hf, l, usize::MAX, 0));
                }
            }
        }
        let xp = Ptr(x.as_ptr() as *mut T);
        tasks.par_iter().for_each(|&(hf, l, r0, nr)| {
            let (cin, cout) = (self.dims[l], self.dims[l + 1]);
            let dmat = b.d[hf * nl + l].get() as *const T;
            // SAFETY: each task writes its own rows of W_l (or b_l) of its half; the rest is read-only.
            unsafe {
                if r0 == usize::MAX {
                    let scale = T::of(lr * self.beta64[l]);
                    let bias = std::slice::from_raw_parts_mut(params[hf].at(self.b_off[l]), cout);
                    let mut sums = vec![T::ZERO; cout];
                    for row in std::slice::from_raw_parts(dmat, n * cout).chunks_exact(cout) {
                        for (acc, &v) in sums.iter_mut().zip(row) {
                            *acc += v;
                        }
                    }
                    for (bj, &sj) in bias.iter_mut().zip(&sums) {
                        *bj -= scale * sj;
                    }
                    return;
                }
                let alpha = T::of(-lr * self.c64[l]);
                let h: *const T = if l == 0 {
                    xp.get()
                } else {
                    b.h[hf * hidden + l - 1].get()
                };
                let w = params[hf].at(self.w_off[l] + r0 * cout);
                // W[r0.., :] += alpha h[:, r0..]^T D_l
                gemm(
                    nr,
                    n,
                    cout,
                    alpha,
                    tr(h.add(r0), cin),
                    rm(dmat, cout),
                    T::ONE,
                    w,
                    cout,
                );
                if penalty {
                    let u = b.u[hf * nl + l].get() as *const T;
                    let de = b.de[hf * nl + l].get() as *const T;
                    gemm(
                        nr,
                        n,
                        cout,
                        alpha,
                        tr(u.add(r0), cin),
                        rm(de, cout),
                        T::ONE,
                        w,
                        cout,
                    );
                }
                // the next step's backprop reads these rows transposed
                self.transpose(params[hf].get(), b.wt[hf].get(), Some((l, r0, nr)));
            }
        });
    }

    /// `f(x) = sum_h s_h f_h(x)` (n values), keeping every half's `z_l`, `h_{l+1}` in `ws` for
    /// [`Net::backward_update`].
    pub fn forward(
        &self,
        params: &[&[T]],
        x: &[T],
        n: usize,
        ws: &mut Workspace<T>,
    ) -> Result<Vec<T>, NtkError> {
        self.check(params, x, n)?;
        ws.n = 0;
        let b = self.buffers(ws, n, false, false);
        pool::install(|| {
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                // SAFETY: chunk k owns rows k * CHUNK.. of every buffer.
                unsafe { self.forward_chunk(params, x, n, k, &b) }
            });
        });
        ws.n = n;
        Ok(ws.bufs.f.as_slice().to_vec())
    }

    /// One gradient-descent step on the loss whose cotangent `dL/df(x_i)` is `ct` (n values), plus
    /// the penalty `lambda * mean_i |grad_x f(x_i)|^2` when `penalty = lambda > 0`, at the points of the
    /// last [`Net::forward`] (`x` must be the same array): `W_l -= lr c_l (h_l^T D_l [+ u_l^T delta_l])`,
    /// `b_l -= lr beta_l sum_i D_l`, in place.
    pub fn backward_update(
        &self,
        params: &mut [&mut [T]],
        x: &[T],
        ct: &[T],
        lr: f64,
        penalty: f64,
        ws: &mut Workspace<T>,
    ) -> Result<(), NtkError> {
        let n = ct.len();
        self.check_update(params, x, n, lr, penalty)?;
        ensure!(
            ws.n == n && n > 0,
            Value,
            "backward_update needs a forward pass on the same {n} points first"
        );
        let b = self.buffers(ws, n, true, penalty > 0.0);
        ws.bufs.ct.as_mut_slice().copy_from_slice(ct);
        let two_w = (penalty > 0.0).then(|| T::of(2.0 * (penalty / n as f64)));
        let pp: Vec<Ptr<T>> = params.iter_mut().map(|p| Ptr(p.as_mut_ptr())).collect();
        for (hf, p) in params.iter().enumerate() {
            // SAFETY: b.wt[hf] holds wt_len values.
            unsafe { self.transpose(p.as_ptr(), b.wt[hf].get(), None) };
        }
        // one entry into the pool for both phases: the workers are woken once per step
        pool::install(|| {
            let ro: Vec<&[T]> = params.iter().map(|p| &**p).collect();
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                // SAFETY: chunk k owns rows k * CHUNK.. of every buffer.
                unsafe { self.backward_chunk(&ro, n, k, two_w, &b) }
            });
            self.update_weights(&pp, x, n, lr, penalty > 0.0, &b);
        });
        ws.n = 0; // the kept activations belong to the old parameters
        Ok(())
    }

    /// `steps` gradient-descent steps on a built-in `loss` of the first `n_fake` points (fake) against the
    /// rest (real), plus the gradient penalty when `penalty > 0`: per step, each chunk of rows runs the
    /// forward pass, the cotangent `l'(f(z_i)) w_i` (`w_i = 1/N` fake, `1/M` real) and the backprop in one
    /// task, then the weights are updated; the whole loop in one entry into the pool.
    ///
    /// # Errors
    /// `NonFinite` when a cotangent is not finite (the weights then hold the previous step's values).
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        &self,
        params: &mut [&mut [T]],
        x: &[T],
        n_fake: usize,
        loss: Loss,
        steps: usize,
        lr: f64,
        penalty: f64,
        ws: &mut Workspace<T>,
    ) -> Result<(), NtkError> {
        let n = x.len() / self.d().max(1);
        self.check_update(params, x, n, lr, penalty)?;
        ensure!(
            n_fake >= 1 && n_fake < n,
            Value,
            "need at least one fake and one real point, got n_fake = {n_fake} of {n}"
        );
        ws.n = 0;
        let b = self.buffers(ws, n, true, penalty > 0.0);
        let two_w = (penalty > 0.0).then(|| T::of(2.0 * (penalty / n as f64)));
        let (w_fake, w_real) = (1.0 / n_fake as f64, 1.0 / (n - n_fake) as f64);
        for (hf, p) in params.iter().enumerate() {
            // SAFETY: b.wt[hf] holds wt_len values (later refreshed by update_weights).
            unsafe { self.transpose(p.as_ptr(), b.wt[hf].get(), None) };
        }
        let pp: Vec<Ptr<T>> = params.iter_mut().map(|p| Ptr(p.as_mut_ptr())).collect();
        let bad = std::sync::atomic::AtomicBool::new(false);
        pool::install(|| -> Result<(), NtkError> {
            for step in 0..steps {
                {
                    // SAFETY: the buffers hold n_params values each; nothing writes them during this phase
                    let ro: Vec<&[T]> = pp
                        .iter()
                        .map(|p| unsafe {
                            std::slice::from_raw_parts(p.get() as *const T, self.n_params)
                        })
                        .collect();
                    (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                        // SAFETY: chunk k owns rows k * CHUNK.. of every buffer; the weights are only read.
                        unsafe {
                            self.forward_chunk(&ro, x, n, k, &b);
                            let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
                            let mut ok = true;
                            for r in r0..r0 + rows {
                                let fake = r < n_fake;
                                let v = loss.deriv((*b.f.at(r)).to_f64(), fake)
                                    * if fake { w_fake } else { w_real };
                                ok &= v.is_finite();
                                *b.ct.at(r) = T::of(v);
                            }
                            if !ok {
                                bad.store(true, std::sync::atomic::Ordering::Relaxed);
                                return;
                            }
                            self.backward_chunk(&ro, n, k, two_w, &b);
                        }
                    });
                }
                if bad.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(NtkError::NonFinite(format!(
                        "loss {:?}: a derivative is not finite (step {step} of {steps}: the discriminator diverged)",
                        loss.name()
                    )));
                }
                self.update_weights(&pp, x, n, lr, penalty > 0.0, &b);
            }
            Ok(())
        })
    }

    fn check_update(
        &self,
        params: &[&mut [T]],
        x: &[T],
        n: usize,
        lr: f64,
        penalty: f64,
    ) -> Result<(), NtkError> {
        let ro: Vec<&[T]> = params.iter().map(|p| &**p).collect();
        self.check(&ro, x, n)?;
        ensure!(lr.is_finite(), Value, "lr must be finite, got {lr}");
        ensure!(
            penalty.is_finite() && penalty >= 0.0,
            Value,
            "penalty must be finite and >= 0, got {penalty}"
        );
        Ok(())
    }

    /// `f(x) = sum_h s_h f_h(x)` and, with `want_grad`, `grad_x f(x)` (n x d), without touching any
    /// workspace.
    pub fn value_and_grad(
        &self,
        params: &[&[T]],
        x: &[T],
        n: usize,
        want_grad: bool,
    ) -> Result<(Vec<T>, Vec<T>), NtkError> {
        self.check(params, x, n)?;
        let (hidden, halves, d) = (self.hidden(), self.halves(), self.d());
        let nl = hidden + 1;
        let mut f = vec![T::ZERO; n];
        let mut g = vec![T::ZERO; if want_grad { n * d } else { 0 }];
        let (fp, gp) = (Ptr(f.as_mut_ptr()), Ptr(g.as_mut_ptr()));
        let mut wts: Vec<Aligned<T>> = Vec::new();
        if want_grad {
            for p in params {
                let mut wt = Aligned::zeros(self.wt_len);
                // SAFETY: wt holds wt_len values.
                unsafe { self.transpose(p.as_ptr(), wt.as_mut_ptr(), None) };
                wts.push(wt);
            }
        }
        let wtp: Vec<Ptr<T>> = wts.iter_mut().map(|w| Ptr(w.as_mut_ptr())).collect();
        pool::install(|| {
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
                let mut zb: Vec<Vec<T>> = (0..hidden)
                    .map(|l| vec![T::ZERO; rows * self.dims[l + 1]])
                    .collect();
                let mut hb: Vec<Vec<T>> = (0..hidden)
                    .map(|l| vec![T::ZERO; rows * self.dims[l + 1]])
                    .collect();
                let mut db: Vec<Vec<T>> = (0..nl)
                    .map(|l| vec![T::ZERO; rows * self.dims[l + 1]])
                    .collect();
                let mut outs = vec![vec![T::ZERO; rows]; halves];
                let mut gh = vec![T::ZERO; rows * d];
                // SAFETY: chunk-local scratch; chunk k owns rows r0..r0+rows of f and g.
                unsafe {
                    for (hf, p) in params.iter().enumerate() {
                        let z: Vec<*mut T> = zb.iter_mut().map(|b| b.as_mut_ptr()).collect();
                        let h: Vec<*mut T> = hb.iter_mut().map(|b| b.as_mut_ptr()).collect();
                        self.forward_rows(
                            p,
                            x.as_ptr().add(r0 * d),
                            rows,
                            &z,
                            &h,
                            outs[hf].as_mut_ptr(),
                        );
                        if want_grad {
                            let s = self.signs[hf];
                            let zc: Vec<*const T> = z.iter().map(|&p| p as *const T).collect();
                            let dl: Vec<*mut T> = db.iter_mut().map(|b| b.as_mut_ptr()).collect();
                            self.backward_rows(
                                p,
                                wtp[hf].get(),
                                |_| s,
                                rows,
                                &zc,
                                &dl,
                                None,
                                None,
                                Some(gh.as_mut_ptr()),
                            );
                            let dst = std::slice::from_raw_parts_mut(gp.at(r0 * d), rows * d);
                            if hf == 0 {
                                dst.copy_from_slice(&gh);
                            } else {
                                for (a, &b) in dst.iter_mut().zip(&gh) {
                                    *a += b;
                                }
                            }
                        }
                    }
                    let dst = std::slice::from_raw_parts_mut(fp.at(r0), rows);
                    for r in 0..rows {
                        let mut acc = T::ZERO;
                        for hf in 0..halves {
                            acc += self.signs[hf] * outs[hf][r];
                        }
                        dst[r] = acc;
                    }
                }
            });
        });
        Ok((f, g))
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

#[cfg(test)]
mod tests {
    use super::*;

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
                let mut mr: Vec<&mut [f64]> =
                    updated.iter_mut().map(|v| v.as_mut_slice()).collect();
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
        assert!(
            Net::<f64>::new(Act::Gelu, vec![2, 3, 2], &[(1.0, 0.0), (1.0, 0.0)], &[1.0]).is_err()
        );
    }
}
