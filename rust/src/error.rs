//! Errors of the pure-Rust core (no PyO3 here); `bindings.rs` maps `NonFinite` to `FloatingPointError` and the
//! other variants to `ValueError`.

use std::fmt;

/// What can go wrong in the core: a bad architecture description, inconsistent array shapes or
/// an out-of-domain scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum NtkError {
    /// The architecture description is invalid (unknown activation, bad parameter, ...).
    Arch(String),
    /// Array shapes do not fit together.
    Shape(String),
    /// A scalar argument is out of its domain.
    Value(String),
    /// A computation produced a non-finite number (a diverging discriminator).
    NonFinite(String),
}

impl fmt::Display for NtkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtkError::Arch(msg) => write!(f, "invalid architecture: {msg}"),
            NtkError::Shape(msg) => write!(f, "shape mismatch: {msg}"),
            NtkError::Value(msg) => write!(f, "invalid value: {msg}"),
            NtkError::NonFinite(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for NtkError {}

/// Return early with `NtkError::$kind(format!(...))` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $kind:ident, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::error::NtkError::$kind(format!($($arg)*)));
        }
    };
}
