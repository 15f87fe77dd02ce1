//! Scalar types the kernel recursion is written over: `f64` (values) and `Dual<N>` (values with `N`
//! forward-mode tangents), so one generic recursion gives both the kernel and its exact derivatives.
//!
//! The two non-smooth primitives follow neural-tangents' conventions exactly:
//! - `sqrt_safe(x) = sqrt(max(x, 0))` with derivative `dx / (2 sqrt(x))` where `x > 0` and `0`
//!   elsewhere (neural-tangents' `_sqrt` custom JVP, whose threshold is `1e-30`): at the ReLU cusp
//!   `s = 0`, `ds` is taken as 0;
//! - `atan2_fill(y, x, fill)` is `fill` at `(0, 0)`, with derivative `(x dy - y dx) / (x^2 + y^2)`
//!   (evaluated with both arguments scaled by `max(|x|, |y|)`, so it neither underflows nor overflows),
//!   and 0 at `(0, 0)` (neural-tangents' `_arctan2`, which floors the denominator at `1e-30`).
//!
//! neural-tangents' absolute `1e-30` makes its gradients wrong for inputs of norm below about `1e-7`
//! (every `s^2` is then under the threshold); here the cusp is exactly where the value is zero, which
//! agrees with neural-tangents wherever its threshold is not reached by accident.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::atan::{atan2_fast, atan2_half};

/// A real scalar with the operations the recursion needs.
pub trait Num:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    /// Whether the type carries tangents (`Dual`) or is a plain value (`f64`): work that only feeds
    /// tangents can be skipped for the latter.
    const TANGENTS: bool;
    /// A constant (zero tangents).
    fn cst(v: f64) -> Self;
    /// The value part.
    fn val(self) -> f64;
    /// `sqrt(max(x, 0))`, derivative 0 where `x <= 0`.
    fn sqrt_safe(self) -> Self;
    /// `atan2(y, x)`, equal to `fill` at `(0, 0)`.
    fn atan2_fill(y: Self, x: Self, fill: f64) -> Self;
    /// `atan2_fill(y, x, fill)` whose derivative uses the caller's `1/(x^2 + y^2) = ia * ib` (both factors
    /// finite, or 0 where the point is `(0, 0)`): the ReLU-family layers know it from per-point
    /// reciprocals (`x^2 + y^2 = Sxx Syy` there), which saves two divisions per pair and layer.
    fn atan2_known_r2(y: Self, x: Self, fill: f64, ia: f64, ib: f64) -> Self;
    /// `(atan2_known_r2(y, x, fill, ia, ib), h)` for `y, x >= 0`, with the defect `h = y - phi x` as a
    /// value computed without cancellation (see [`crate::atan::atan2_half`]; 0 at `(0, 0)`).
    fn atan2_half_known_r2(y: Self, x: Self, fill: f64, ia: f64, ib: f64) -> (Self, f64);
    /// The same tangents with the value replaced by `v`.
    fn with_val(self, v: f64) -> Self;
    /// `|x|` (`-x` where the value is negative).
    fn abs(self) -> Self;
    /// `exp(x)`.
    fn exp(self) -> Self;
    /// `if cond { a } else { b }` (written so that it compiles to a select).
    fn pick(cond: bool, a: Self, b: Self) -> Self;
}

impl Num for f64 {
    const TANGENTS: bool = false;
    #[inline(always)]
    fn cst(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn val(self) -> f64 {
        self
    }
    #[inline(always)]
    fn sqrt_safe(self) -> Self {
        (if self > 0.0 { self } else { 0.0 }).sqrt()
    }
    #[inline(always)]
    fn atan2_fill(y: Self, x: Self, fill: f64) -> Self {
        let both_zero = (y == 0.0) & (x == 0.0);
        let a = atan2_fast(y, x);
        if both_zero {
            fill
        } else {
            a
        }
    }
    #[inline(always)]
    fn atan2_known_r2(y: Self, x: Self, fill: f64, _ia: f64, _ib: f64) -> Self {
        f64::atan2_fill(y, x, fill)
    }
    #[inline(always)]
    fn atan2_half_known_r2(y: Self, x: Self, fill: f64, _ia: f64, _ib: f64) -> (Self, f64) {
        let both_zero = (y == 0.0) & (x == 0.0);
        // h is 0 at (0, 0) already
        let (phi, h) = atan2_half(y, x);
        (if both_zero { fill } else { phi }, h)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn with_val(self, v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn pick(cond: bool, a: Self, b: Self) -> Self {
        if cond {
            a
        } else {
            b
        }
    }
}

/// A value with `N` forward-mode tangents: `v + sum_k d[k] eps_k`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dual<const N: usize> {
    pub v: f64,
    pub d: [f64; N],
}

impl<const N: usize> Dual<N> {
    /// A value with the given tangents.
    #[inline(always)]
    pub fn new(v: f64, d: [f64; N]) -> Self {
        Dual { v, d }
    }
    /// The independent variable number `k` with value `v`.
    #[inline(always)]
    pub fn var(v: f64, k: usize) -> Self {
        let mut d = [0.0; N];
        d[k] = 1.0;
        Dual { v, d }
    }
    #[inline(always)]
    fn map_d(self, f: impl Fn(f64) -> f64) -> [f64; N] {
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = f(self.d[k]);
        }
        d
    }
}

/// `Dual + Dual` and `Dual - Dual`: the operation on the values and on each tangent.
macro_rules! dual_linear_op {
    ($trait:ident, $method:ident, $op:tt) => {
        impl<const N: usize> $trait for Dual<N> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, o: Self) -> Self {
                let mut d = [0.0; N];
                for k in 0..N {
                    d[k] = self.d[k] $op o.d[k];
                }
                Dual {
                    v: self.v $op o.v,
                    d,
                }
            }
        }
    };
}
dual_linear_op!(Add, add, +);
dual_linear_op!(Sub, sub, -);

impl<const N: usize> Mul for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = self.d[k] * o.v + o.d[k] * self.v;
        }
        Dual { v: self.v * o.v, d }
    }
}

impl<const N: usize> Div for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        let q = self.v / o.v;
        let inv = 1.0 / o.v;
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = (self.d[k] - q * o.d[k]) * inv;
        }
        Dual { v: q, d }
    }
}

impl<const N: usize> Neg for Dual<N> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Dual {
            v: -self.v,
            d: self.map_d(|t| -t),
        }
    }
}

/// `Dual <op> f64` (a constant): the value by `op`, the tangents by `tangent: |t, o| ..`.
macro_rules! dual_scalar_op {
    ($trait:ident, $method:ident, $op:tt, tangent: |$t:ident, $o:ident| $dt:expr) => {
        impl<const N: usize> $trait<f64> for Dual<N> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, $o: f64) -> Self {
                Dual {
                    v: self.v $op $o,
                    d: self.map_d(|$t| $dt),
                }
            }
        }
    };
}
dual_scalar_op!(Add, add, +, tangent: |t, o| t);
dual_scalar_op!(Sub, sub, -, tangent: |t, o| t);
dual_scalar_op!(Mul, mul, *, tangent: |t, o| t * o);
dual_scalar_op!(Div, div, /, tangent: |t, o| t / o);

impl<const N: usize> Num for Dual<N> {
    const TANGENTS: bool = true;
    #[inline(always)]
    fn cst(v: f64) -> Self {
        Dual { v, d: [0.0; N] }
    }
    #[inline(always)]
    fn val(self) -> f64 {
        self.v
    }
    #[inline(always)]
    fn sqrt_safe(self) -> Self {
        let s = self.v.sqrt_safe();
        let live = self.v > 0.0;
        let half_inv = if live { 0.5 / s } else { 0.0 };
        Dual {
            v: s,
            d: self.map_d(|t| t * half_inv),
        }
    }
    #[inline(always)]
    fn atan2_fill(y: Self, x: Self, fill: f64) -> Self {
        let v = f64::atan2_fill(y.v, x.v, fill);
        // d atan2 = (x dy - y dx) / (x^2 + y^2), scaled by m = max(|x|, |y|) so that tiny or huge
        // arguments neither underflow nor overflow the squares.
        let (ax, ay) = (x.v.abs(), y.v.abs());
        let m = if ax > ay { ax } else { ay };
        let live = m > 0.0;
        let im = if live { 1.0 / m } else { 0.0 };
        let (xs, ys) = (x.v * im, y.v * im);
        let r2 = xs * xs + ys * ys;
        let id = if live { im / r2 } else { 0.0 };
        let (cy, cx) = (xs * id, ys * id);
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = y.d[k] * cy - x.d[k] * cx;
        }
        Dual { v, d }
    }
    #[inline(always)]
    fn atan2_known_r2(y: Self, x: Self, fill: f64, ia: f64, ib: f64) -> Self {
        let v = f64::atan2_fill(y.v, x.v, fill);
        let (cy, cx) = ((x.v * ia) * ib, (y.v * ia) * ib);
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = y.d[k] * cy - x.d[k] * cx;
        }
        Dual { v, d }
    }
    #[inline(always)]
    fn atan2_half_known_r2(y: Self, x: Self, fill: f64, ia: f64, ib: f64) -> (Self, f64) {
        let (v, h) = f64::atan2_half_known_r2(y.v, x.v, fill, ia, ib);
        let (cy, cx) = ((x.v * ia) * ib, (y.v * ia) * ib);
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = y.d[k] * cy - x.d[k] * cx;
        }
        (Dual { v, d }, h)
    }
    #[inline(always)]
    fn with_val(self, v: f64) -> Self {
        Dual { v, d: self.d }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self::pick(self.v < 0.0, -self, self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        let e = self.v.exp();
        Dual {
            v: e,
            d: self.map_d(|t| t * e),
        }
    }
    #[inline(always)]
    fn pick(cond: bool, a: Self, b: Self) -> Self {
        let mut d = [0.0; N];
        for k in 0..N {
            d[k] = if cond { a.d[k] } else { b.d[k] };
        }
        Dual {
            v: if cond { a.v } else { b.v },
            d,
        }
    }
}

/// Test helper: asserts that `grad[c]` is the derivative in `delta` at 0 of `f(c, delta)` (the function
/// with coordinate `c` moved by `delta`), against central differences with step `1e-6`: within `tol`
/// relative (absolute below 1); `what` names the case in the message.
#[cfg(test)]
pub(crate) fn assert_central_differences(
    grad: &[f64],
    tol: f64,
    what: &str,
    f: impl Fn(usize, f64) -> f64,
) {
    let h = 1e-6;
    for (c, &g) in grad.iter().enumerate() {
        let fd = (f(c, h) - f(c, -h)) / (2.0 * h);
        assert!(
            (g - fd).abs() <= tol * fd.abs().max(1.0),
            "{what} c={c}: {g} vs {fd}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_chain_rule() {
        // f(x, y) = exp(x*y) / (1 + x) + atan2(y, x), at (0.7, -1.3)
        let f = |x: Dual<2>, y: Dual<2>| (x * y).exp() / (x + 1.0) + Dual::atan2_fill(y, x, 0.0);
        let (x0, y0) = (0.7, -1.3);
        let r = f(Dual::var(x0, 0), Dual::var(y0, 1));
        let g = |x: f64, y: f64| (x * y).exp() / (1.0 + x) + y.atan2(x);
        let h = 1e-6;
        let dx = (g(x0 + h, y0) - g(x0 - h, y0)) / (2.0 * h);
        let dy = (g(x0, y0 + h) - g(x0, y0 - h)) / (2.0 * h);
        assert!((r.v - g(x0, y0)).abs() < 1e-15);
        assert!((r.d[0] - dx).abs() < 1e-8, "{} vs {}", r.d[0], dx);
        assert!((r.d[1] - dy).abs() < 1e-8, "{} vs {}", r.d[1], dy);
    }

    #[test]
    fn safe_primitives_follow_neural_tangents() {
        let z = Dual::<1>::var(0.0, 0).sqrt_safe();
        assert_eq!((z.v, z.d[0]), (0.0, 0.0));
        let a = Dual::<1>::atan2_fill(
            Dual::var(0.0, 0),
            Dual::cst(0.0),
            std::f64::consts::FRAC_PI_2,
        );
        assert_eq!(a.v, std::f64::consts::FRAC_PI_2);
        assert_eq!(a.d[0], 0.0);
    }
}
