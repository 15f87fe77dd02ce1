//! The passes over one chunk of rows of one half (pointers already at the chunk's first row): forward,
//! `z_l = c_l h_l W_l + beta_l b_l` and `h_{l+1} = phi(z_l)`; backprop, `D_{l-1} = c_l (D_l W_l^T) *
//! phi'(z_{l-1})` down to the input gradient `c_0 D_0 W_0^T`; the penalty's adjoint of the input
//! backprop, `u_{l+1} = c_l u_l W_l * phi'(z_l)`; and the transposed weights `W_l^T` backprop reads.

use super::products::{gemm, rm, small_k_product, View, SMALL_K};
use super::Net;
use crate::mlp::real::Real;

impl<T: Real> Net<T> {
    /// `z_l`, `h_{l+1}` and the output of one half for `rows` rows of `x`.
    ///
    /// # Safety
    /// `x` holds `rows x d`, `z[l]`, `h[l]` hold `rows x dims[l+1]` (l < L), `out` holds `rows`.
    pub(super) unsafe fn forward_rows(
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
    pub(super) unsafe fn transpose(
        &self,
        p: *const T,
        wt: *mut T,
        layer: Option<(usize, usize, usize)>,
    ) {
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
    pub(super) unsafe fn backward_rows(
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
    pub(super) unsafe fn adjoint_rows(
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
}
