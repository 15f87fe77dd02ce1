//! The architecture description, parsed once from Python: `Dense -> [act -> Dense] x depth`, the last
//! Dense mapping to one output without bias, in the "ntk" or "standard" parameterization.

use crate::ensure;
use crate::error::NtkError;

/// Pointwise nonlinearities with closed-form dual kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `a * min(x, 0) + b * max(x, 0)` (ReLU = (0, 1), leaky ReLU, |x| = (-1, 1), identity = (1, 1)).
    AbRelu { a: f64, b: f64 },
    /// `a * erf(b * x) + c`.
    Erf { a: f64, b: f64, c: f64 },
    /// `sqrt(2) sin(sqrt(2 gamma) x + pi/4)`, whose dual is `exp(-gamma (Sxx + Syy - 2 Sxy))`.
    Rbf { gamma: f64 },
}

/// `Ok` when an activation named `name` got exactly `n` finite parameters.
pub fn check_params(name: &str, params: &[f64], n: usize) -> Result<(), NtkError> {
    ensure!(
        params.len() == n,
        Arch,
        "activation {name:?} takes {n} parameters, got {}",
        params.len()
    );
    ensure!(
        params.iter().all(|p| p.is_finite()),
        Arch,
        "activation {name:?} has a non-finite parameter"
    );
    Ok(())
}

impl Activation {
    /// Parse `(name, params)` as sent by `ntkgan.arch` (`Activation.rust_spec`).
    pub fn parse(name: &str, params: &[f64]) -> Result<Self, NtkError> {
        let want = |n: usize| check_params(name, params, n);
        match name {
            "abrelu" => {
                want(2)?;
                Ok(Activation::AbRelu { a: params[0], b: params[1] })
            }
            "erf" => {
                want(3)?;
                Ok(Activation::Erf { a: params[0], b: params[1], c: params[2] })
            }
            "rbf" => {
                want(1)?;
                ensure!(params[0] > 0.0, Arch, "rbf gamma must be > 0, got {}", params[0]);
                Ok(Activation::Rbf { gamma: params[0] })
            }
            other => Err(NtkError::Arch(format!(
                "activation {other:?} is not implemented in the rust backend (known: abrelu, erf, rbf); \
                 use backend='jax'"
            ))),
        }
    }

    /// True for the ReLU family, whose kernel has a cusp where `s = 0`.
    pub fn has_cusp(&self) -> bool {
        matches!(self, Activation::AbRelu { .. })
    }
}

/// A fully-connected network description.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arch {
    /// Number of activations (hidden layers); `depth + 1` dense layers.
    pub depth: usize,
    pub act: Activation,
    pub w_std: f64,
    pub b_std: f64,
    /// "standard" parameterization (else "ntk").
    pub standard: bool,
    /// Hidden width (only used by the standard parameterization's NTK).
    pub width: f64,
}

impl Arch {
    /// Validate and build.
    pub fn new(
        depth: usize,
        act: Activation,
        w_std: f64,
        b_std: f64,
        standard: bool,
        width: f64,
    ) -> Result<Self, NtkError> {
        ensure!(depth >= 1, Arch, "depth must be >= 1, got {depth}");
        ensure!(
            w_std.is_finite() && w_std > 0.0,
            Arch,
            "w_std must be finite and > 0, got {w_std}"
        );
        ensure!(
            b_std.is_finite() && b_std >= 0.0,
            Arch,
            "b_std must be finite and >= 0, got {b_std}"
        );
        ensure!(
            width.is_finite() && width >= 1.0,
            Arch,
            "width must be >= 1, got {width}"
        );
        Ok(Arch {
            depth,
            act,
            w_std,
            b_std,
            standard,
            width,
        })
    }

    /// A ReLU network in the ntk parameterization (tests and examples).
    pub fn relu(depth: usize, w_std: f64, b_std: f64) -> Self {
        Arch {
            depth,
            act: Activation::AbRelu { a: 0.0, b: 1.0 },
            w_std,
            b_std,
            standard: false,
            width: 128.0,
        }
    }

    /// Bias variance of the dense layer that follows activation number `l` (0-based): `b_std^2`, or 0 for
    /// the readout.
    #[inline(always)]
    pub fn bias_var_after(&self, l: usize) -> f64 {
        if l + 1 == self.depth {
            0.0
        } else {
            self.b_std * self.b_std
        }
    }
}

/// Which kernel: the NTK (Theta) or the NNGP (Sigma) of the scalar output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ntk,
    Nngp,
}
