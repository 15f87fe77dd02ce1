//! ntkgan core: closed-form NNGP/NTK recursions of fully-connected networks and their exact input
//! gradients, blocked and parallel (rayon).  Pure Rust except `bindings` (the PyO3 module
//! `ntkgan._core`, built only with the `python` feature by maturin).

#![allow(
    clippy::needless_range_loop,
    clippy::excessive_precision,
    clippy::neg_cmp_op_on_partial_ord
)]

#[macro_use]
pub mod simd;

pub mod arch;
pub mod atan;
pub mod error;
pub mod gram;
pub mod mlp;
pub mod num;
pub mod pool;
pub mod recursion;
pub mod softmin;

#[cfg(feature = "python")]
mod bindings;

pub use arch::{Activation, Arch, Kind};
pub use error::NtkError;
pub use gram::{gram, kernel_grad, kernel_matvec, Points};
