//! The built-in GAN losses' pointwise derivatives `l'_fake`, `l'_real`, as `ntkgan.discriminator._losses`
//! writes them (float64), for [`super::Net::train`], which forms the cotangent inside its row tasks.
//! Any other loss goes through `Net::forward` / `Net::backward_update` with the cotangent from Python.

use crate::error::NtkError;

/// A discriminator loss known by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `l_fake = f`, `l_real = -f`.
    Ipm,
    /// `l_fake = (f + 1)^2`, `l_real = (f - 1)^2`.
    Lsgan,
    /// `l_fake = -log sigma(-f)`, `l_real = -log sigma(f)`.
    Vanilla,
    /// `l_fake = relu(1 + f)`, `l_real = relu(1 - f)` (`relu'(0) = 0`).
    Hinge,
}

impl Loss {
    /// The loss named `name` (`"ipm"`, `"lsgan"`, `"vanilla"`, `"hinge"`).
    pub fn parse(name: &str) -> Result<Self, NtkError> {
        Ok(match name {
            "ipm" => Loss::Ipm,
            "lsgan" => Loss::Lsgan,
            "vanilla" => Loss::Vanilla,
            "hinge" => Loss::Hinge,
            other => {
                return Err(NtkError::Value(format!(
                    "loss {other:?} has no Rust derivative (known: ipm, lsgan, vanilla, hinge); \
                     form its cotangent in Python"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Loss::Ipm => "ipm",
            Loss::Lsgan => "lsgan",
            Loss::Vanilla => "vanilla",
            Loss::Hinge => "hinge",
        }
    }

    /// `l'_fake(f)` or `l'_real(f)`.
    #[inline(always)]
    pub fn deriv(self, f: f64, fake: bool) -> f64 {
        match (self, fake) {
            (Loss::Ipm, true) => 1.0,
            (Loss::Ipm, false) => -1.0,
            (Loss::Lsgan, true) => 2.0 * (f + 1.0),
            (Loss::Lsgan, false) => 2.0 * (f - 1.0),
            (Loss::Vanilla, true) => expit(f),
            (Loss::Vanilla, false) => -expit(-f),
            (Loss::Hinge, true) => ((1.0 + f > 0.0) as u8) as f64,
            (Loss::Hinge, false) => -(((1.0 - f > 0.0) as u8) as f64),
        }
    }
}

/// The logistic function `1 / (1 + exp(-x))`, as scipy's `expit`.
#[inline(always)]
fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
