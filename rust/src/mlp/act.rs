//! Activations of finite networks: `phi`, `phi'` and `phi''`, written as `ntkgan.arch` writes them in
//! numpy (same formulas, same order of operations), so that the Rust and numpy networks agree to
//! rounding.

use super::real::Real;
use crate::arch::check_params;
use crate::ensure;
use crate::error::NtkError;

/// A pointwise nonlinearity with its first two derivatives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// `a * min(x, 0) + b * max(x, 0)`; `phi'(0) = a`, `phi'' = 0`.
    AbRelu { a: f64, b: f64 },
    /// `a * erf(b x) + c`.
    Erf { a: f64, b: f64, c: f64 },
    /// `sqrt(2) sin(sqrt(2 gamma) x + pi/4)`.
    Rbf { gamma: f64 },
    /// `x Phi(x)`, `Phi` the standard normal distribution function.
    Gelu,
    /// `a sin(b x + c)`.
    Sin { a: f64, b: f64, c: f64 },
}

impl Act {
    /// Parse `(name, params)` as sent by `ntkgan.arch` (`Activation.finite_spec`).
    pub fn parse(name: &str, params: &[f64]) -> Result<Self, NtkError> {
        let want = |n: usize| check_params(name, params, n);
        Ok(match name {
            "abrelu" => {
                want(2)?;
                Act::AbRelu {
                    a: params[0],
                    b: params[1],
                }
            }
            "erf" => {
                want(3)?;
                Act::Erf {
                    a: params[0],
                    b: params[1],
                    c: params[2],
                }
            }
            "rbf" => {
                want(1)?;
                ensure!(
                    params[0] > 0.0,
                    Arch,
                    "rbf gamma must be > 0, got {}",
                    params[0]
                );
                Act::Rbf { gamma: params[0] }
            }
            "gelu" => {
                want(0)?;
                Act::Gelu
            }
            "sin" => {
                want(3)?;
                Act::Sin {
                    a: params[0],
                    b: params[1],
                    c: params[2],
                }
            }
            other => {
                return Err(NtkError::Arch(format!(
                    "activation {other:?} has no finite-network implementation in Rust \
                     (known: abrelu, erf, rbf, gelu, sin)"
                )))
            }
        })
    }

    /// The constants of `phi`, `phi'`, `phi''` in the type `T`.
    pub fn coeffs<T: Real>(&self) -> Phi<T> {
        let sqrt_pi = std::f64::consts::PI.sqrt();
        match *self {
            Act::AbRelu { a, b } => Phi::AbRelu {
                a: T::of(a),
                b: T::of(b),
            },
            Act::Erf { a, b, c } => {
                let k = a * b * 2.0 / sqrt_pi;
                Phi::Erf {
                    a: T::of(a),
                    b: T::of(b),
                    c: T::of(c),
                    k: T::of(k),
                    m: T::of(-2.0 * b * b * k),
                }
            }
            Act::Rbf { gamma } => {
                let s2 = 2f64.sqrt();
                let k = (2.0 * gamma).sqrt();
                Phi::Rbf {
                    s2: T::of(s2),
                    k: T::of(k),
                    s2k: T::of(s2 * k),
                    m: T::of(-s2 * k * k),
                    p4: T::of(std::f64::consts::PI / 4.0),
                }
            }
            Act::Gelu => Phi::Gelu {
                inv_sqrt2: T::of(std::f64::consts::FRAC_1_SQRT_2),
                sqrt_2pi: T::of((2.0 * std::f64::consts::PI).sqrt()),
            },
            Act::Sin { a, b, c } => Phi::Sin {
                a: T::of(a),
                b: T::of(b),
                c: T::of(c),
                ab: T::of(a * b),
                m: T::of(-a * b * b),
            },
        }
    }
}

/// An activation's constants in the working type.
#[derive(Clone, Copy, Debug)]
pub enum Phi<T> {
    AbRelu { a: T, b: T },
    Erf { a: T, b: T, c: T, k: T, m: T },
    Rbf { s2: T, k: T, s2k: T, m: T, p4: T },
    Gelu { inv_sqrt2: T, sqrt_2pi: T },
    Sin { a: T, b: T, c: T, ab: T, m: T },
}

impl<T: Real> Phi<T> {
    /// `phi(x)`.
    #[inline(always)]
    pub fn f(&self, x: T) -> T {
        match *self {
            Phi::AbRelu { a, b } => a * x.min(T::ZERO) + b * x.max(T::ZERO),
            Phi::Erf { a, b, c, .. } => a * (b * x).erf() + c,
            Phi::Rbf { s2, k, p4, .. } => s2 * (k * x + p4).sin(),
            Phi::Gelu { inv_sqrt2, .. } => x * ndtr(x, inv_sqrt2),
            Phi::Sin { a, b, c, .. } => a * (b * x + c).sin(),
        }
    }

    /// `phi'(x)` (`a` at the kink of the ReLU family, as numpy's `where(x > 0, b, a)`).
    #[inline(always)]
    pub fn df(&self, x: T) -> T {
        match *self {
            Phi::AbRelu { a, b } => {
                if x > T::ZERO {
                    b
                } else {
                    a
                }
            }
            Phi::Erf { b, k, .. } => {
                let bx = b * x;
                k * (-(bx * bx)).exp()
            }
            Phi::Rbf { k, s2k, p4, .. } => s2k * (k * x + p4).cos(),
            Phi::Gelu {
                inv_sqrt2,
                sqrt_2pi,
            } => ndtr(x, inv_sqrt2) + x * (T::of(-0.5) * x * x).exp() / sqrt_2pi,
            Phi::Sin { b, c, ab, .. } => ab * (b * x + c).cos(),
        }
    }

    /// `phi''(x)`; identically 0 for the ReLU family (see [`Phi::curved`]).
    #[inline(always)]
    pub fn d2f(&self, x: T) -> T {
        match *self {
            Phi::AbRelu { .. } => T::ZERO,
            Phi::Erf { b, m, .. } => {
                let bx = b * x;
                m * x * (-(bx * bx)).exp()
            }
            Phi::Rbf { k, m, p4, .. } => m * (k * x + p4).sin(),
            Phi::Gelu { sqrt_2pi, .. } => {
                (T::of(2.0) - x * x) * (T::of(-0.5) * x * x).exp() / sqrt_2pi
            }
            Phi::Sin { b, c, m, .. } => m * (b * x + c).sin(),
        }
    }

    /// `out[i] = phi(z[i])` (one loop per activation, the variant resolved outside it).
    pub fn map_f(&self, z: &[T], out: &mut [T]) {
        let p = *self;
        if let Phi::AbRelu { a, b } = p {
            if a == T::ZERO && b == T::ONE {
                // ReLU: 0 * min(z, 0) + max(z, 0) is max(z, 0) (up to the sign of a zero)
                return zip_map(z, out, |x| x.max(T::ZERO));
            }
        }
        by_variant!(p, zip_map(z, out, |x| p.f(x)));
    }

    /// `z[i] += bias[i % cols]`, then `h[i] = phi(z[i])`: a dense layer's bias and activation in one pass
    /// over rows of `cols` values.
    pub fn bias_map_f(&self, bias: &[T], z: &mut [T], h: &mut [T]) {
        let cols = bias.len();
        let p = *self;
        let relu = matches!(p, Phi::AbRelu { a, b } if a == T::ZERO && b == T::ONE);
        for (zr, hr) in z.chunks_exact_mut(cols).zip(h.chunks_exact_mut(cols)) {
            for (zv, &bj) in zr.iter_mut().zip(bias) {
                *zv += bj;
            }
            if relu {
                zip_map(zr, hr, |x| x.max(T::ZERO));
            } else {
                by_variant!(p, zip_map(zr, hr, |x| p.f(x)));
            }
        }
    }

    /// `v[i] *= phi'(z[i])`.
    pub fn mul_df(&self, z: &[T], v: &mut [T]) {
        let p = *self;
        by_variant!(p, zip_update(z, v, |x, y| y * p.df(x)));
    }

    /// `z[i] = phi(z[i] + bias[i % cols])` in place (no bias when `bias` is empty).
    pub fn bias_map_f_inplace(&self, bias: &[T], z: &mut [T], cols: usize) {
        let p = *self;
        let relu = matches!(p, Phi::AbRelu { a, b } if a == T::ZERO && b == T::ONE);
        for zr in z.chunks_exact_mut(cols) {
            if !bias.is_empty() {
                for (zv, &bj) in zr.iter_mut().zip(bias) {
                    *zv += bj;
                }
            }
            if relu {
                for v in zr.iter_mut() {
                    *v = v.max(T::ZERO);
                }
            } else {
                by_variant!(p, map_in_place(zr, |y| p.f(y)));
            }
        }
    }

    /// Whether `phi''` is not identically zero (the gradient penalty then has source terms).
    pub fn curved(&self) -> bool {
        !matches!(self, Phi::AbRelu { .. })
    }
}

/// Run `$body` in an arm per variant of `$p`, so that the compiler specialises the loop in `$body`.
macro_rules! by_variant {
    ($p:ident, $body:expr) => {
        match $p {
            Phi::AbRelu { .. } => $body,
            Phi::Erf { .. } => $body,
            Phi::Rbf { .. } => $body,
            Phi::Gelu { .. } => $body,
            Phi::Sin { .. } => $body,
        }
    };
}
use by_variant;

#[inline(always)]
fn zip_map<T: Copy>(z: &[T], out: &mut [T], f: impl Fn(T) -> T) {
    for (o, &x) in out.iter_mut().zip(z) {
        *o = f(x);
    }
}

#[inline(always)]
fn map_in_place<T: Copy>(v: &mut [T], f: impl Fn(T) -> T) {
    for o in v.iter_mut() {
        *o = f(*o);
    }
}

#[inline(always)]
fn zip_update<T: Copy>(z: &[T], v: &mut [T], f: impl Fn(T, T) -> T) {
    for (o, &x) in v.iter_mut().zip(z) {
        *o = f(x, *o);
    }
}

/// The standard normal distribution function, as scipy's `ndtr` (cephes) computes it: `(1 + erf(x/sqrt 2))/2`
/// near 0, `erfc(|x|/sqrt 2)/2` (or one minus it) in the tails.
#[inline(always)]
fn ndtr<T: Real>(a: T, inv_sqrt2: T) -> T {
    let x = a * inv_sqrt2;
    let z = if x < T::ZERO { -x } else { x };
    if z < inv_sqrt2 {
        T::of(0.5) + T::of(0.5) * x.erf()
    } else {
        let y = T::of(0.5) * z.erfc();
        if x > T::ZERO {
            T::ONE - y
        } else {
            y
        }
    }
}
