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
use super::real::Real;
use crate::ensure;
use crate::error::NtkError;
use crate::pool;

/// Rows per forward/backward task.
pub const CHUNK: usize = 64;
/// Rows of a weight matrix per update task.
pub const WBLOCK: usize = 64;

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
}

/// The activations of the last [`Net::forward`] and the backprop factors of the last update, per half.
#[derive(Default)]
pub struct Workspace<T> {
    n: usize,
    /// `z_l`, l < L (n x dims[l+1]), index `half * L + l`.
    z: Vec<Vec<T>>,
    /// `h_{l+1}`, l < L (n x dims[l+1]), index `half * L + l`.
    h: Vec<Vec<T>>,
    /// `f_h` (n), index `half`.
    out: Vec<Vec<T>>,
    /// `D_l`, l = 0..=L (n x dims[l+1]), index `half * (L + 1) + l`.
    d: Vec<Vec<T>>,
    /// Penalty: input-backprop deltas `delta_l` (n x dims[l+1]), index `half * (L + 1) + l`.
    de: Vec<Vec<T>>,
    /// Penalty: adjoints `u_l` (n x dims[l]), index `half * (L + 1) + l`.
    u: Vec<Vec<T>>,
}

fn resize<T: Real>(bufs: &mut Vec<Vec<T>>, sizes: &[usize]) {
    bufs.resize_with(sizes.len(), Vec::new);
    for (b, &s) in bufs.iter_mut().zip(sizes) {
        if b.len() != s {
            b.clear();
            b.resize(s, T::ZERO);
        }
    }
}

fn ptrs<T>(bufs: &mut [Vec<T>]) -> Vec<Ptr<T>> {
    bufs.iter_mut().map(|b| Ptr(b.as_mut_ptr())).collect()
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
        Ok(Net {
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
            T::gemm(
                rows,
                cin,
                cout,
                self.c[l],
                inp,
                cin as isize,
                1,
                w,
                cout as isize,
                1,
                T::ZERO,
                dst,
                cout as isize,
                1,
            );
            let beta = self.beta[l];
            let dst = std::slice::from_raw_parts_mut(dst, rows * cout);
            let b = &p[self.b_off[l]..self.b_off[l] + cout];
            if l < hidden {
                let hs = std::slice::from_raw_parts_mut(h[l], rows * cout);
                if beta != T::ZERO {
                    bb.clear();
                    bb.extend(b.iter().map(|&bj| beta * bj));
                    self.phi.bias_map_f(bb, dst, hs);
                } else {
                    self.phi.map_f(dst, hs);
                }
                inp = h[l];
            } else if beta != T::ZERO {
                for row in dst.chunks_exact_mut(cout) {
                    for (v, &bj) in row.iter_mut().zip(b) {
                        *v += beta * bj;
                    }
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
            let w = p.as_ptr().add(self.w_off[l]);
            let below = dl[l - 1];
            // c_l D_l W_l^T, then (optionally kept as dh_l) times phi'(z_{l-1})
            match dh {
                Some(dh) => {
                    T::gemm(
                        rows,
                        cout,
                        cin,
                        self.c[l],
                        dl[l],
                        cout as isize,
                        1,
                        w,
                        1,
                        cout as isize,
                        T::ZERO,
                        dh[l],
                        cin as isize,
                        1,
                    );
                    let dhs = std::slice::from_raw_parts(dh[l], rows * cin);
                    let out = std::slice::from_raw_parts_mut(below, rows * cin);
                    out.copy_from_slice(dhs);
                }
                None => {
                    T::gemm(
                        rows,
                        cout,
                        cin,
                        self.c[l],
                        dl[l],
                        cout as isize,
                        1,
                        w,
                        1,
                        cout as isize,
                        T::ZERO,
                        below,
                        cin as isize,
                        1,
                    );
                }
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
            let w = p.as_ptr().add(self.w_off[0]);
            T::gemm(
                rows,
                c1,
                d,
                self.c[0],
                dl[0],
                c1 as isize,
                1,
                w,
                1,
                c1 as isize,
                T::ZERO,
                g,
                d as isize,
                1,
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
            T::gemm(
                rows,
                cin,
                cout,
                self.c[l],
                u[l],
                cin as isize,
                1,
                w,
                cout as isize,
                1,
                T::ZERO,
                dbar,
                cout as isize,
                1,
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
        let (hidden, halves) = (self.hidden(), self.halves());
        let sizes: Vec<usize> = (0..halves * hidden)
            .map(|i| n * self.dims[i % hidden + 1])
            .collect();
        resize(&mut ws.z, &sizes);
        resize(&mut ws.h, &sizes);
        resize(&mut ws.out, &vec![n; halves]);
        ws.n = 0;
        let (zp, hp, op) = (ptrs(&mut ws.z), ptrs(&mut ws.h), ptrs(&mut ws.out));
        let mut f = vec![T::ZERO; n];
        let fp = Ptr(f.as_mut_ptr());
        let cols = |i: usize| self.dims[i % hidden + 1];
        pool::install(|| {
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
                let (z, h) = (rows_of(&zp, cols, r0), rows_of(&hp, cols, r0));
                // SAFETY: chunk k owns rows r0..r0+rows of every buffer.
                unsafe {
                    for (hf, p) in params.iter().enumerate() {
                        let s = hf * hidden..(hf + 1) * hidden;
                        self.forward_rows(
                            p,
                            x.as_ptr().add(r0 * self.d()),
                            rows,
                            &z[s.clone()],
                            &h[s],
                            op[hf].at(r0),
                        );
                    }
                    for r in 0..rows {
                        let mut acc = T::ZERO;
                        for hf in 0..halves {
                            acc += self.signs[hf] * *op[hf].at(r0 + r);
                        }
                        *fp.at(r0 + r) = acc;
                    }
                }
            });
        });
        ws.n = n;
        Ok(f)
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
        {
            let ro: Vec<&[T]> = params.iter().map(|p| &**p).collect();
            self.check(&ro, x, n)?;
        }
        ensure!(
            ws.n == n && n > 0,
            Value,
            "backward_update needs a forward pass on the same {n} points first"
        );
        ensure!(lr.is_finite(), Value, "lr must be finite, got {lr}");
        ensure!(
            penalty.is_finite() && penalty >= 0.0,
            Value,
            "penalty must be finite and >= 0, got {penalty}"
        );
        {
            let ro: Vec<&[T]> = params.iter().map(|p| &**p).collect();
            self.backward(&ro, ct, penalty, ws);
        }
        self.update(params, x, n, lr, penalty, ws);
        ws.n = 0; // the kept activations belong to the old parameters
        Ok(())
    }

    /// The row-parallel half of [`Net::backward_update`]: every half's `D_l` (and with the penalty its
    /// `delta_l`, `u_l`) into `ws`.  Inputs already checked.
    #[doc(hidden)]
    pub fn backward(&self, params: &[&[T]], ct: &[T], penalty: f64, ws: &mut Workspace<T>) {
        let n = ct.len();
        let (hidden, halves, d) = (self.hidden(), self.halves(), self.d());
        let nl = hidden + 1;
        let pen = penalty > 0.0;
        let dsizes: Vec<usize> = (0..halves * nl)
            .map(|i| n * self.dims[i % nl + 1])
            .collect();
        resize(&mut ws.d, &dsizes);
        if pen {
            resize(&mut ws.de, &dsizes);
            let usizes: Vec<usize> = (0..halves * nl).map(|i| n * self.dims[i % nl]).collect();
            resize(&mut ws.u, &usizes);
        }
        let (zp, dp) = (ptrs(&mut ws.z), ptrs(&mut ws.d));
        let (dep, up) = (ptrs(&mut ws.de), ptrs(&mut ws.u));
        let pr = params;
        let maxw = *self.dims.iter().max().unwrap();
        // gbar = (2 w) g with w_i = lambda / n, as numpy forms it
        let two_w = T::of(2.0 * (penalty / n as f64));
        let zcols = |i: usize| self.dims[i % hidden + 1];
        let dcols = |i: usize| self.dims[i % nl + 1];
        let ucols = |i: usize| self.dims[i % nl];
        pool::install(|| {
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|k| {
                let (r0, rows) = (k * CHUNK, CHUNK.min(n - k * CHUNK));
                let z: Vec<*const T> = rows_of(&zp, zcols, r0)
                    .into_iter()
                    .map(|p| p as *const T)
                    .collect();
                let dl = rows_of(&dp, dcols, r0);
                // SAFETY: chunk k owns rows r0..r0+rows of every buffer; scratch is chunk-local.
                unsafe {
                    if !pen {
                        for (hf, p) in pr.iter().enumerate() {
                            let s = self.signs[hf];
                            self.backward_rows(
                                p,
                                |r| s * ct[r0 + r],
                                rows,
                                &z[hf * hidden..(hf + 1) * hidden],
                                &dl[hf * nl..(hf + 1) * nl],
                                None,
                                None,
                                None,
                            );
                        }
                        return;
                    }
                    let de = rows_of(&dep, dcols, r0);
                    let u = rows_of(&up, ucols, r0);
                    // input backprop of every half, keeping delta_l and dh_l; g = sum_h g_h
                    let mut dh_buf: Vec<Vec<T>> = (0..halves * nl)
                        .map(|i| vec![T::ZERO; rows * ucols(i)])
                        .collect();
                    let mut g = vec![T::ZERO; rows * d];
                    let mut gh = vec![T::ZERO; rows * d];
                    for (hf, p) in pr.iter().enumerate() {
                        let s = self.signs[hf];
                        let dh: Vec<*mut T> = dh_buf[hf * nl..(hf + 1) * nl]
                            .iter_mut()
                            .map(|b| b.as_mut_ptr())
                            .collect();
                        self.backward_rows(
                            p,
                            |_| s,
                            rows,
                            &z[hf * hidden..(hf + 1) * hidden],
                            &de[hf * nl..(hf + 1) * nl],
                            Some(&dh),
                            None,
                            Some(gh.as_mut_ptr()),
                        );
                        if hf == 0 {
                            g.copy_from_slice(&gh);
                        } else {
                            for (a, &b) in g.iter_mut().zip(&gh) {
                                *a += b;
                            }
                        }
                    }
                    let gbar: Vec<T> = g.iter().map(|&v| two_w * v).collect();
                    let mut dbar = vec![T::ZERO; rows * maxw];
                    let mut src_buf: Vec<Vec<T>> = if self.phi.curved() {
                        (0..hidden)
                            .map(|l| vec![T::ZERO; rows * self.dims[l + 1]])
                            .collect()
                    } else {
                        Vec::new()
                    };
                    for (hf, p) in pr.iter().enumerate() {
                        let s = self.signs[hf];
                        let uh = &u[hf * nl..(hf + 1) * nl];
                        std::slice::from_raw_parts_mut(uh[0], rows * d).copy_from_slice(&gbar);
                        let dh: Vec<*mut T> = dh_buf[hf * nl..(hf + 1) * nl]
                            .iter_mut()
                            .map(|b| b.as_mut_ptr())
                            .collect();
                        let src: Vec<*mut T> = src_buf.iter_mut().map(|b| b.as_mut_ptr()).collect();
                        let zh = &z[hf * hidden..(hf + 1) * hidden];
                        self.adjoint_rows(p, rows, zh, &dh, uh, &src, dbar.as_mut_ptr());
                        let src_c: Vec<*const T> = if self.phi.curved() {
                            src.iter().map(|&p| p as *const T).collect()
                        } else {
                            vec![std::ptr::null(); hidden]
                        };
                        self.backward_rows(
                            p,
                            |r| s * ct[r0 + r],
                            rows,
                            zh,
                            &dl[hf * nl..(hf + 1) * nl],
                            None,
                            Some(&src_c),
                            None,
                        );
                    }
                }
            });
        });
    }

    /// The weight half of [`Net::backward_update`]: `W_l -= lr c_l (h_l^T D_l [+ u_l^T delta_l])` over
    /// blocks of [`WBLOCK`] rows, `b_l -= lr beta_l sum_i D_l`.  Inputs already checked.
    #[doc(hidden)]
    pub fn update(
        &self,
        params: &mut [&mut [T]],
        x: &[T],
        n: usize,
        lr: f64,
        penalty: f64,
        ws: &mut Workspace<T>,
    ) {
        let (hidden, halves) = (self.hidden(), self.halves());
        let nl = hidden + 1;
        let pen = penalty > 0.0;
        let (hp, dp) = (ptrs(&mut ws.h), ptrs(&mut ws.d));
        let (dep, up) = (ptrs(&mut ws.de), ptrs(&mut ws.u));
        // the updates: one task per (half, layer, block of WBLOCK rows of W_l), and one per bias
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
        let pp: Vec<Ptr<T>> = params.iter_mut().map(|p| Ptr(p.as_mut_ptr())).collect();
        let xp = Ptr(x.as_ptr() as *mut T);
        pool::install(|| {
            tasks.par_iter().for_each(|&(hf, l, r0, nr)| {
                let (cin, cout) = (self.dims[l], self.dims[l + 1]);
                let dmat = dp[hf * nl + l].get() as *const T;
                // SAFETY: each task writes its own rows of W_l (or b_l) of its half; the rest is read-only.
                unsafe {
                    if r0 == usize::MAX {
                        let scale = T::of(lr * self.beta64[l]);
                        let b = std::slice::from_raw_parts_mut(pp[hf].at(self.b_off[l]), cout);
                        let mut sums = vec![T::ZERO; cout];
                        let dm = std::slice::from_raw_parts(dmat, n * cout);
                        for row in dm.chunks_exact(cout) {
                            for (acc, &v) in sums.iter_mut().zip(row) {
                                *acc += v;
                            }
                        }
                        for (bj, &sj) in b.iter_mut().zip(&sums) {
                            *bj -= scale * sj;
                        }
                        return;
                    }
                    let alpha = T::of(-lr * self.c64[l]);
                    let h: *const T = if l == 0 {
                        xp.get()
                    } else {
                        hp[hf * hidden + l - 1].get()
                    };
                    let w = pp[hf].at(self.w_off[l] + r0 * cout);
                    // W[r0.., :] += alpha h[:, r0..]^T D_l
                    T::gemm(
                        nr,
                        n,
                        cout,
                        alpha,
                        h.add(r0),
                        1,
                        cin as isize,
                        dmat,
                        cout as isize,
                        1,
                        T::ONE,
                        w,
                        cout as isize,
                        1,
                    );
                    if pen {
                        let u = up[hf * nl + l].get() as *const T;
                        let de = dep[hf * nl + l].get() as *const T;
                        T::gemm(
                            nr,
                            n,
                            cout,
                            alpha,
                            u.add(r0),
                            1,
                            cin as isize,
                            de,
                            cout as isize,
                            1,
                            T::ONE,
                            w,
                            cout as isize,
                            1,
                        );
                    }
                }
            });
        });
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
                    T::gemm(
                        rows,
                        k,
                        n,
                        T::ONE,
                        a.as_ptr().add(r0 * k),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        T::ZERO,
                        cp.at(r0 * n),
                        n as isize,
                        1,
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
