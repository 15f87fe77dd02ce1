//! The whole passes over the `n` points, in the pool.  A step's phases: the forward pass and backprop
//! of one chunk of [`CHUNK`] rows of every half (`f = sum_h s_h f_h`, `D_l`, the penalty's `delta_l`,
//! `u_l`), and the update `W_l -= lr c_l (h_l^T D_l [+ u_l^T delta_l])`, `b_l -= lr beta_l sum_i D_l`
//! by blocks of [`WBLOCK`] rows.  The entry points that run them: [`Net::forward`],
//! [`Net::backward_update`], the fused loop [`Net::train`], and [`Net::value_and_grad`] (`f` and
//! `grad_x f` without a workspace).

use rayon::prelude::*;

use super::buffers::{rows_of, Aligned, Bufs, Ptr, Workspace};
use super::products::{gemm, rm, tr};
use super::{Net, CHUNK, WBLOCK};
use crate::ensure;
use crate::error::NtkError;
use crate::mlp::loss::Loss;
use crate::mlp::real::Real;
use crate::pool;

impl<T: Real> Net<T> {
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
