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
//!
//! Here: the architecture ([`Net`], its constructor and the argument checks).  The passes live in
//! `rows` (one chunk of rows of one half), `passes` (whole passes and the public entry points),
//! `products` (the matrix products) and `buffers` (the [`Workspace`] and the shared pointers).

use super::act::{Act, Phi};
use super::real::Real;
use crate::ensure;
use crate::error::NtkError;

mod buffers;
mod passes;
mod products;
mod rows;

pub use buffers::Workspace;
pub use products::gemm_rate;

/// Rows per forward/backward task.
pub const CHUNK: usize = 64;
/// Rows of a weight matrix per update task.
pub const WBLOCK: usize = 64;

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
}

#[cfg(test)]
mod tests;
