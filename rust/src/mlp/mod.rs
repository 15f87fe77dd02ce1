//! Finite-width networks (the discriminators of `ntkgan.discriminator`): the forward pass, backprop and
//! the in-place full-batch gradient-descent update (with the gradient penalty's double backprop), and
//! input gradients, in `f32` or `f64`, rayon-parallel over fixed chunks of rows (the same numbers for
//! any thread count).  The Python side (`ntkgan/discriminator/_finite_engine.py`) owns the loss, the
//! validation and the parameters; this module owns the loops.

pub mod act;
pub mod kernel;
pub mod loss;
mod net;
pub mod real;

pub use act::Act;
pub use loss::Loss;
pub use net::{gemm_rate, Net, Workspace, CHUNK, WBLOCK};
pub use real::Real;
