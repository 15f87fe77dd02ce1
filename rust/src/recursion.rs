//! The NNGP/NTK layer recursion for one pair `(x, y)`, generic over the scalar type (`f64` for values,
//! `Dual<N>` for exact input derivatives by forward mode).
//!
//! Notation (neural-tangents conventions): `Sxx, Syy, Sxy` are the pre-activation covariances, `Theta` the
//! NTK.  Inputs enter as `S0 = <x, y> / d`, `Theta0 = 0`.  A dense layer maps `S <- w^2 S + b^2` and
//! `Theta <- S_new + w^2 Theta` ("ntk") or `Theta <- n_in S_old + w^2 Theta + 1` ("standard").
//! Activation duals (`s = sqrt(Sxx Syy - Sxy^2)`, `theta = atan2(s, Sxy)`):
//! - ABReLU(a, b): `Sdot = (a^2+b^2)/2 - (a-b)^2/(2 pi) theta`, `S' = (a-b)^2/(2 pi) s + Sdot Sxy`,
//!   `S'xx = (a^2+b^2)/2 Sxx`, `Theta' = Sdot Theta`;
//! - Erf(a, b, c): with `S <- b^2 S`, `r = sqrt((1+2Sxx)(1+2Syy) - 4Sxy^2)`:
//!   `S' = a^2 (2/pi) atan2(2Sxy, r) + c^2`, `Theta' = a^2 b^2 (4/pi) Theta / r`;
//! - Rbf(gamma): `S' = exp(-gamma (Sxx + Syy - 2Sxy))`, `S'xx = 1`, `Theta' = 2 gamma S' Theta`.
//!
//! Two formulations of the pair map:
//! - [`act_pair`] (the fast path) computes `s^2 = Sxx Syy - Sxy^2` directly, exactly as neural-tangents
//!   does.  It loses digits when the two inputs of a layer are nearly parallel or nearly antiparallel
//!   (`sin^2 theta` small: the relative error of `s^2` is about `1e-16 / sin^2 theta`), and reports a
//!   margin that is negative for such pairs, so that the drivers recompute them by [`pair_stable`]; in
//!   depth-1 networks also for obtuse pairs whose kernel vanishes with `pi - theta` (see
//!   [`obtuse_margin`]).
//!   For erf, `s^2` only enters `r^2 = 1 + 2(Sxx + Syy) + 4 s^2`, where its rounding (`~4 eps Sxx Syy`)
//!   matters only for inputs of large norm at a small angle: the margin is negative where
//!   `Sxx Syy > ERF_KAPPA r^2` at the first erf layer (see [`erf_margin`]).
//! - [`pair_stable`] carries cancellation-free invariants through the layers: `s^2`, the feature-space
//!   distance `E- = Sxx + Syy - 2 Sxy = |phi(x) - phi(y)|^2` and the feature-space "antipodal distance"
//!   `E+ = Sxx + Syy + 2 Sxy = |phi(x) + phi(y)|^2`, starting from
//!   `s1^2 = w^4 |x^y|^2 / d^2 + w^2 b^2 |x - y|^2 / d`, `E-1 = w^2 |x - y|^2 / d` and
//!   `E+1 = w^2 |x + y|^2 / d + 4 b^2` (the drivers compute `|x ^ y|^2`, `|x - y|^2`, `|x + y|^2` without
//!   cancellation).
//!
//! The stable ABReLU layer.  With `X = Sxx`, `Y = Syy`, `S = Sxy`, `P = sqrt(XY)`, `theta = atan2(s, S)`
//! and `eps = pi - theta = atan2(s, -S)`, `cc = (a^2+b^2)/2`, `F = (a-b)^2/(2 pi)` (so `cc - F pi = ab`
//! and `2 cc - F pi = (a+b)^2/2`):
//! - `D- = P - S` is `s^2 / (P + S)` for `S > 0`, else `P - S`; `D+ = P + S` is `s^2 / (P - S)` for
//!   `S < 0`, else `P + S` (sums of positive numbers, or a quotient);
//! - `h0 = s - theta S = P (sin theta - theta cos theta) >= 0` and `h1 = s + eps S = P (sin eps - eps cos
//!   eps) >= 0`, each by its Taylor series below 0.5 ([`sin_minus_tcos_series`]);
//! - acute pairs (`S >= 0`, `theta <= pi/2`, the case of near-coincident points):
//!   `Sdot = cc - F theta`, `S' = F s + Sdot S = cc S + F h0`, `P' - S' = cc D- - F h0`,
//!   `E-' = cc E- - 2 F h0`;
//! - obtuse pairs (`S < 0`, the mirror case: nearly antipodal points, which ABReLU with `a != 0` maps to
//!   a nearly parallel pair (`abs`), or to a pair at a fixed angle): by `theta = pi - eps`,
//!   `Sdot = ab + F eps`, `S' = ab S + F h1`, `P' - S' = (a+b)^2/2 P - ab D+ - F h1`,
//!   `E-' = cc E+ + (a+b)^2 |S| - 2 F h1`;
//! - both: `P' + S' = cc D+ + F h0`, `E+' = cc E+ + 2 F h0`, `s'^2 = (P' - S')(P' + S')`,
//!   `S'xx = cc Sxx`, `Theta' = Sdot Theta`.
//!
//! `S'` is formed as `cc S + F h0` (resp. `ab S + F h1`), not as `F s + Sdot S`: the two terms of the
//! latter that depend on the angle cancel to first order (the NNGP is C^1 at the cusp), so for pairs
//! whose angle is small in feature space their tangents would cancel too (e.g. tiny inputs next to a
//! bias, where the kernel's x-dependent part is `~|x|` of its value), while `dh0 = G dP + P theta
//! sin(theta) dtheta` is small term by term.
//!
//! Every difference left has terms at a ratio of at least `pi/2` (the worst case is `theta = pi/2`,
//! where `G(pi/2) = 1` against `cc/F >= pi/2`), so it amplifies rounding by at most
//! `1/(1 - 2/pi) < 2.8`: each layer costs a few ulps, whatever the angle.  The dense layer maps
//! `s^2 <- w^4 s^2 + w^2 b^2 E-`, `E- <- w^2 E-`, `E+ <- w^2 E+ + 4 b^2` (sums of positive terms).
//!
//! Where `s^2` is exactly 0 (coincident inputs, parallel or antiparallel ones without bias, `d = 1`
//! without bias) the tangents of `s^2`, `D-` (or `D+`), `h0`, `h1` vanish too (the cusp convention of
//! [`crate::num`]: `ds = 0`), and they stay 0 through the layers: `s'^2 = 0` with zero tangent.
//!
//! Angle tangents without bias.  With `b = 0` every layer's angle is a function of the first layer's
//! only (`cos theta' = S' / (cc P)` does not depend on the norms), so its tangent is taken by the chain
//! rule, `dtheta' = Sdot (s / s') dtheta`, rather than from `(S ds - s dS) / (s^2 + S^2)`: along a radial
//! change of x the latter is a difference of terms of size `~1/|x|` that cancel only to rounding, and in
//! the standard parameterization, where the NTK carries constants (`+1` per layer) that do not scale
//! with x, that noise (`~eps Theta / |x|`) swamps a gradient of size `~|x|` for small inputs (seen:
//! 2.5 % at `|x| = 3e-7` for an exactly antiparallel pair mapped by a leaky ReLU to a fixed angle
//! strictly between 0 and pi, where those terms do not vanish).  Exactly parallel or antiparallel
//! inputs (`s = 0`, zero tangent by the cusp convention) then give zero angle tangents at every layer.
//!
//! The stable erf recursion takes the first layer's `s^2` from the invariants (where the large norms
//! enter); deeper layers see covariances bounded by `w^2 (a^2 + c^2) + b^2`, where the direct formula
//! loses at most `~4 eps Sxx Syy / r^2` relative.

use std::f64::consts::{FRAC_PI_2, PI};

use crate::arch::{Activation, Arch, Kind};
use crate::num::Num;

/// `(a^2 + b^2) / 2` and `(a - b)^2 / (2 pi)` of ABReLU(a, b).
#[inline(always)]
pub fn abrelu_consts(a: f64, b: f64) -> (f64, f64) {
    (0.5 * (a * a + b * b), (a - b) * (a - b) / (2.0 * PI))
}

/// Diagonal dual map `Sxx -> S'xx` of one activation.
#[inline(always)]
pub fn act_diag<T: Num>(act: &Activation, s: T) -> T {
    match *act {
        Activation::AbRelu { a, b } => s * abrelu_consts(a, b).0,
        Activation::Erf { a, b, c } => {
            let t = s * (b * b);
            T::atan2_fill(t, (t + 0.25).sqrt_safe(), 0.0) * (a * a * 2.0 / PI) + c * c
        }
        Activation::Rbf { .. } => T::cst(1.0),
    }
}

/// `Sxx` at the input of each activation (`out[l]`, `l = 0..depth`) for a point with `p = |x|^2 / d`.
#[inline(always)]
pub fn diag_chain<T: Num>(arch: &Arch, p: T, out: &mut [T]) {
    let w2 = arch.w_std * arch.w_std;
    let b2 = arch.b_std * arch.b_std;
    let mut s = p * w2 + b2;
    for (l, slot) in out.iter_mut().enumerate().take(arch.depth) {
        *slot = s;
        if l + 1 < arch.depth {
            s = act_diag(&arch.act, s) * w2 + b2;
        }
    }
}

/// First dense layer on `r = <x, y> / d`: returns `(Sxy, Theta)`.
#[inline(always)]
pub fn input_layer<T: Num>(arch: &Arch, r: T, d: f64) -> (T, T) {
    let sxy = r * (arch.w_std * arch.w_std) + arch.b_std * arch.b_std;
    let th = if arch.standard { r * d + 1.0 } else { sxy };
    (sxy, th)
}

/// Dense layer after activation `l`: `(S', Theta') -> (Sxy, Theta)`.
#[inline(always)]
pub fn dense_after<T: Num>(arch: &Arch, l: usize, s_act: T, th_act: T) -> (T, T) {
    let w2 = arch.w_std * arch.w_std;
    let sxy = s_act * w2 + arch.bias_var_after(l);
    let th = if arch.standard {
        s_act * arch.width + th_act * w2 + 1.0
    } else {
        sxy + th_act * w2
    };
    (sxy, th)
}

/// Threshold on `sin^2 theta` below which a ReLU-family pair is recomputed by [`pair_stable`] (the fast
/// recursion's relative error in `s` is about `1e-16 / sin^2 theta`).  Nearly parallel and nearly
/// antiparallel pairs alike (`sin^2 theta` is small at both ends).
pub const TAU: f64 = 1e-4;

/// Relative accuracy asked of the fast ABReLU map's `S'` and `Sdot` for obtuse pairs in depth-1
/// networks (see [`obtuse_margin`]).
pub const ETA_DEPTH1: f64 = 4e-14;

/// `2 eps / ETA_DEPTH1`: the fast map's rounding of `S'` is about `2 eps F s`, that of `Sdot` about
/// `2 eps F P / s` (measured: at most `1.6 eps F s` and `1.0 eps F P / s` on depth-1 ReLU kernels).
const K_DEPTH1: f64 = 2.0 * f64::EPSILON / ETA_DEPTH1;

/// Margin of an obtuse pair (`Sxy < 0`) at the activation of a depth-1 network, negative where the fast
/// map's `S'` or `Sdot` is off by more than [`ETA_DEPTH1`] relative; 1 for acute pairs.
///
/// The margin on `sin^2 theta` ([`TAU`]) bounds the absolute error of the map, about `eps P / sin theta`
/// in the angle.  That suffices wherever the kernel is dominated by terms that do not vanish, which is
/// every case but one: a nearly antipodal pair (in feature space) at the only activation, of a map whose
/// `S' = ab Sxy + F h` and `Sdot = ab + F eps` vanish at `theta = pi` (`ab = 0`: ReLU-like; or nearly so,
/// e.g. leaky_relu(0.01)).  There the kernel itself goes like `eps^3` (NNGP) or `eps` (NTK), and the fast
/// map's relative error like `eps_mach / eps^2` (seen: 4e-12 on a depth-1 ReLU NNGP at `eps = 0.011`, an
/// input pair that is exactly antiparallel next to a bias, or nearly antiparallel without one).  Deeper
/// networks do not need it: only the first activation can see such a pair (the ReLU family maps every
/// pair to one with `cos theta' >= -2ab / (a^2 + b^2)`, and `S'` and `Sdot` near `theta = pi` are not
/// small unless `ab` is), and its `S'` and `Sdot` reach the kernel only through sums with the later
/// layers' terms, which do not vanish.  For ReLU (`ab = 0`) this flags `eps < 0.18`, where the stable
/// recursion takes over.  The blocked drivers need it at `d > 3` only: at `d <= 3` they form `s^2`
/// without cancellation from the coordinates ([`S2::Given`]), and the fast map is then accurate
/// relative to the vanishing kernel.
#[inline(always)]
pub fn obtuse_margin(f: f64, s: f64, s2: f64, prod: f64, sxy: f64, out: f64, sdot: f64) -> f64 {
    let kf = K_DEPTH1 * f;
    let m1 = out.abs() - kf * s;
    let m2 = sdot * sdot * s2 - kf * kf * prod;
    let m = if m1 < m2 { m1 } else { m2 };
    if sxy < 0.0 {
        m
    } else {
        1.0
    }
}

/// Erf pairs with `Sxx Syy > ERF_KAPPA r^2` (inputs scaled by `b^2`, `r^2 = 1 + 2(Sxx + Syy) + 4 s^2`)
/// at the first erf layer are recomputed by [`pair_stable`]: the direct `s^2` carries an error of about
/// `4 eps Sxx Syy`, i.e. `4 eps ERF_KAPPA = 1.4e-14` of `r^2` at most on the pairs kept (the NTK goes
/// like `1/r`).  Flagged pairs have large norms (`P >~ 2 ERF_KAPPA`) and a small angle
/// (`sin^2 theta < 1/(4 ERF_KAPPA)`), to either side.
pub const ERF_KAPPA: f64 = 32.0;

/// Where [`abrelu_pair`] takes `s^2 = Sxx Syy - Sxy^2` from, and so which margin the pair gets.
#[derive(Clone, Copy)]
pub enum S2 {
    /// The difference `Sxx Syy - Sxy^2`; in a depth-1 network (`depth1`) the margin includes
    /// [`obtuse_margin`].
    Difference { depth1: bool },
    /// At the first activation of a depth-1 network, the value given, computed without cancellation from
    /// the inputs (`gram::blocks` forms it from their coordinates: `w^4 |x ^ y|^2 / d^2 + w^2 b^2
    /// |x - y|^2 / d`; the tangents, if any, are those of the difference).  Then `s`, the small angle and
    /// its defect `h` are relatively accurate ([`crate::atan::atan2_half`]), and so are `S'` and `Sdot`
    /// wherever they vanish (ReLU-like maps near `theta = pi`): the margin is `s^2 - TAU Sxx Syy` only,
    /// without [`obtuse_margin`].
    Given(f64),
}

/// ABReLU pair map (fast form).  Returns `(S'xy, Theta', margin)` with `margin = s^2 - TAU Sxx Syy`,
/// negative when `sin^2 theta < TAU` (the pair needs the stable recursion), and in a depth-1 network
/// (`S2::Difference { depth1: true }`) also negative where [`obtuse_margin`] is; `margin = 1` when the
/// map has no cusp (`a == b`).  A zero variance gives `s^2 = 0 = TAU Sxx Syy`, not flagged: the fast
/// form is exact there.  `isy = 1/Syy` (0 if `Syy = 0`); the derivative of `theta` uses
/// `s^2 + Sxy^2 = Sxx Syy`.  `ab = a b`; `s2` says where `s^2` comes from (see [`S2`]).
///
/// The map is formed from the small one of `theta` and `eps = pi - theta` (the arctangent of
/// `(s, |Sxy|)`) and the defect `h = s - angle |Sxy|` of [`crate::atan::atan2_half`]: acute pairs
/// (`Sxy >= 0`) `Sdot = cc - F theta`, `S' = cc Sxy + F h`; obtuse ones `Sdot = ab + F eps`,
/// `S' = ab Sxy + F h` (the same values as `F s + Sdot Sxy`).  So `Sdot` and `S'` keep their relative
/// accuracy where they are small: ReLU-like maps (`ab = 0`) near `theta = pi`, where `Sdot ~ eps` and
/// `S' ~ eps^3` (computed as `F s + Sdot Sxy` they lost `~eps/eps^3` relative: 3e-10 on a depth-1 NNGP
/// at `eps = 0.015`, a pair the margin does not flag).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn abrelu_pair<T: Num>(
    cc: f64,
    f: f64,
    ab: f64,
    sx: T,
    sy: f64,
    isy: f64,
    sxy: T,
    th: T,
    s2: S2,
) -> (T, T, f64) {
    let prod = sx * sy;
    let diff = prod - sxy * sxy;
    let (s2, depth1) = match s2 {
        S2::Difference { depth1 } => (diff, depth1),
        S2::Given(v) => (diff.with_val(v), false),
    };
    let pv = prod.val();
    let s = s2.sqrt_safe();
    let sxv = sx.val();
    let isx = if sxv > 0.0 { 1.0 / sxv } else { 0.0 };
    let obtuse = sxy.val() < 0.0;
    let ax = sxy.abs();
    let (small, h) = T::atan2_half_known_r2(s, ax, FRAC_PI_2, isx, isy);
    let (base, slope) = if obtuse { (ab, f) } else { (cc, -f) };
    let sdot = small * slope + base;
    let hd = (s - small * ax).with_val(h);
    let out = sxy * base + hd * f;
    let s2v = s2.val();
    let mut margin = if f != 0.0 { s2v - TAU * pv } else { 1.0 };
    if depth1 && f != 0.0 {
        let m = obtuse_margin(f, s.val(), s2v, pv, sxy.val(), out.val(), sdot.val());
        margin = if m < margin { m } else { margin };
    }
    (out, th * sdot, margin)
}

/// Erf pair map on inputs already scaled by `b^2` (`sx, sy, sxy`) with their `s^2 = sx sy - sxy^2`
/// (its value clamped at 0 here, its tangents kept: `q` below is a polynomial in the covariances, with
/// no cusp): `(S', Theta', margin)`, the margin of [`erf_margin`] on the same numbers (used by the
/// scalar drivers; the blocked ones compute it in a loop of its own, which vectorises better).
///
/// `(1 + 2Sxx)(1 + 2Syy) - 4Sxy^2 = 1 + 2(Sxx + Syy) + 4 s^2`: no cancellation of the large terms, and
/// never below 1 (neural-tangents' form loses digits, even its sign, for large inputs).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn erf_core<T: Num>(a: f64, b2: f64, c: f64, sx: T, sy: f64, sxy: T, s2: T, th: T) -> (T, T, f64) {
    // the value clamped at 0 (rounding noise can make it negative), its tangents kept: q is smooth
    let v = s2.val();
    let s2 = s2.with_val(if v > 0.0 { v } else { 0.0 });
    let q = (sx + sy) * 2.0 + 1.0 + s2 * 4.0;
    let r = q.sqrt_safe();
    let out = T::atan2_fill(sxy * 2.0, r, 0.0) * (a * a * 2.0 / PI) + c * c;
    let th = th * (b2 * a * a * 4.0 / PI) / r;
    (out, th, ERF_KAPPA * q.val() - sx.val() * sy)
}

/// Erf pair map (fast form: `s^2` as the difference `Sxx Syy - Sxy^2`): `(S', Theta', margin)`, the
/// margin as [`erf_margin`] (meaningful at the first erf layer only).
#[inline(always)]
pub fn erf_pair<T: Num>(a: f64, b: f64, c: f64, sx: T, sy: f64, sxy: T, th: T) -> (T, T, f64) {
    let b2 = b * b;
    let (sx, sy, sxy) = (sx * b2, sy * b2, sxy * b2);
    let s2 = sx * sy - sxy * sxy;
    erf_core(a, b2, c, sx, sy, sxy, s2, th)
}

/// Margin of an erf pair at its first layer (inputs unscaled): `ERF_KAPPA r^2 - Sxx Syy` in the
/// variables scaled by `b^2`, negative where the rounding of the direct `s^2` is not negligible in
/// `r^2` (see [`ERF_KAPPA`]).  `r^2` is formed from the direct `s^2` (clamped at 0), as the fast map
/// forms it.
#[inline(always)]
pub fn erf_margin(b: f64, sx: f64, sy: f64, sxy: f64) -> f64 {
    let b2 = b * b;
    let (x, y, s) = (sx * b2, sy * b2, sxy * b2);
    let prod = x * y;
    let s2 = prod - s * s;
    let q = (x + y) * 2.0 + 1.0 + (if s2 > 0.0 { s2 } else { 0.0 }) * 4.0;
    ERF_KAPPA * q - prod
}

/// Rbf pair map.
#[inline(always)]
pub fn rbf_pair<T: Num>(gamma: f64, sx: T, sy: f64, sxy: T, th: T) -> (T, T) {
    rbf_pair_dist(gamma, sx + sy - sxy * 2.0, th)
}

/// Rbf pair map from the feature-space distance `D = Sxx + Syy - 2 Sxy`: `exp(-gamma D)`.  At the first
/// layer the drivers pass `D` with its value replaced by `w^2 |x - y|^2 / d` computed directly (the
/// difference of covariances loses `eps (Sxx + Syy) / D` relative, amplified by later layers).
#[inline(always)]
pub fn rbf_pair_dist<T: Num>(gamma: f64, dist: T, th: T) -> (T, T) {
    let out = (dist * (-gamma)).exp();
    (out, th * out * (2.0 * gamma))
}

/// One activation's pair map, dispatched on the activation (fast form).  `first`: the first activation
/// (where erf pairs may be flagged, see [`erf_margin`]); `depth1`: the network has this activation only
/// (where obtuse ABReLU pairs may be flagged, see [`obtuse_margin`]).
#[inline(always)]
pub fn act_pair<T: Num>(
    act: &Activation,
    sx: T,
    sy: f64,
    sxy: T,
    th: T,
    first: bool,
    depth1: bool,
) -> (T, T, f64) {
    match *act {
        Activation::AbRelu { a, b } => {
            let (cc, f) = abrelu_consts(a, b);
            abrelu_pair(
                cc,
                f,
                a * b,
                sx,
                sy,
                if sy > 0.0 { 1.0 / sy } else { 0.0 },
                sxy,
                th,
                S2::Difference { depth1 },
            )
        }
        Activation::Erf { a, b, c } => {
            let (o, t, margin) = erf_pair(a, b, c, sx, sy, sxy, th);
            (o, t, if first { margin } else { 1.0 })
        }
        Activation::Rbf { gamma } => {
            let (o, t) = rbf_pair(gamma, sx, sy, sxy, th);
            (o, t, 1.0)
        }
    }
}

/// Kernel of one pair by the fast recursion, from `r = <x, y>/d` and the per-point diagonal chains.
/// Returns `(k, needs_stable)`: whether some layer's margin was negative (ReLU family: `sin^2 theta <
/// TAU`, or [`obtuse_margin`] at depth 1; erf: see [`erf_margin`]).
pub fn pair_fast<T: Num>(arch: &Arch, kind: Kind, r: T, sx: &[T], sy: &[f64], d: f64) -> (T, bool) {
    let (mut sxy, mut th) = input_layer(arch, r, d);
    let mut flagged = false;
    for l in 0..arch.depth {
        let (o, t, margin) = act_pair(&arch.act, sx[l], sy[l], sxy, th, l == 0, arch.depth == 1);
        flagged |= margin < 0.0;
        let (a, b) = dense_after(arch, l, o, t);
        sxy = a;
        th = b;
    }
    (if kind == Kind::Ntk { th } else { sxy }, flagged)
}

/// Scalar invariants of a pair, with `q` (a function of `y` only) kept as a constant.
#[derive(Clone, Copy, Debug)]
pub struct Invariants<T> {
    /// `|x|^2 / d`
    pub p: T,
    /// `|y|^2 / d`
    pub q: f64,
    /// `<x, y> / d`
    pub r: T,
    /// `|x - y|^2 / d`
    pub e: T,
    /// `|x + y|^2 / d`
    pub ep: T,
    /// `|x ^ y|^2 / d^2 = (|x|^2 |y|^2 - <x, y>^2) / d^2`, computed without cancellation
    pub g: T,
}

/// `sin(t) - t cos(t)` by its Taylor series `sum_k (-1)^(k+1) 2k t^(2k+1) / (2k+1)!`, accurate to 1 ulp
/// for `|t| < 0.5`.
#[inline(always)]
fn sin_minus_tcos_series<T: Num>(t: T) -> T {
    const C: [f64; 8] = [
        1.0 / 3.0,
        -1.0 / 30.0,
        1.0 / 840.0,
        -1.0 / 45_360.0,
        1.0 / 3_991_680.0,
        -1.0 / 518_918_400.0,
        1.0 / 93_405_312_000.0,
        -1.0 / 22_230_464_256_000.0,
    ];
    let z = t * t;
    let mut acc = T::cst(C[7]);
    for &c in C[..7].iter().rev() {
        acc = acc * z + c;
    }
    acc * z * t
}

/// One stable ABReLU layer (see the module docs): from `(P, s^2, S, E-, E+)` at the activation's input
/// to `(S', Sdot, s'^2, E-', E+', dtheta')` at its output.
///
/// `dtheta`: where given (no bias, see [`pair_stable`]), the tangent of this layer's angle `theta`
/// (carried with value 0), used instead of the tangent of `atan2(s, S)`; with `dtheta_wanted`,
/// `dtheta'` is the tangent of the next layer's angle by the chain rule `dtheta' = Sdot (s / s')
/// dtheta` (from `cos theta' = S' / (cc P)`, `d(S'/P)/dtheta = -Sdot sin theta`; 0 where `s' = 0`).
#[allow(clippy::too_many_arguments)]
fn abrelu_stable<T: Num>(
    a: f64,
    b: f64,
    pp: T,
    s2: T,
    sxy: T,
    em: T,
    ep: T,
    dtheta: Option<T>,
    dtheta_wanted: bool,
) -> (T, T, T, T, T, T) {
    let (cc, f) = abrelu_consts(a, b);
    let (ab, half_sum2) = (a * b, 0.5 * (a + b) * (a + b));
    let s = s2.sqrt_safe();
    let obtuse = sxy.val() < 0.0;
    // one arctangent: the small one of theta and eps = pi - theta (the other, from it, is accurate
    // to an ulp of pi, which is all it needs)
    let small = T::atan2_fill(s, T::pick(obtuse, -sxy, sxy), FRAC_PI_2);
    let theta = match dtheta {
        Some(dt) => T::cst(T::pick(obtuse, -small + PI, small).val()) + dt,
        None => T::pick(obtuse, -small + PI, small),
    };
    let small = match dtheta {
        Some(dt) => T::pick(obtuse, T::cst(small.val()) - dt, theta),
        None => small,
    };
    let eps = T::pick(obtuse, small, -theta + PI);
    // D- = P - S, D+ = P + S, each a sum of positive numbers or a quotient
    let dm = T::pick(sxy.val() > 0.0, s2 / (pp + sxy), pp - sxy);
    let dp = T::pick(obtuse, s2 / (pp - sxy), pp + sxy);
    // h0 = s - theta S = P (sin theta - theta cos theta), h1 = s + eps S = P (sin eps - eps cos eps)
    let h0 = T::pick(
        theta.val() < 0.5,
        pp * sin_minus_tcos_series(theta),
        s - theta * sxy,
    );
    let (sdot, out, p_minus, em_act) = if obtuse {
        let h1 = T::pick(
            eps.val() < 0.5,
            pp * sin_minus_tcos_series(eps),
            s + eps * sxy,
        );
        (
            eps * f + ab,
            sxy * ab + h1 * f,
            pp * half_sum2 - dp * ab - h1 * f,
            ep * cc - sxy * (2.0 * half_sum2) - h1 * (2.0 * f),
        )
    } else {
        (
            theta * (-f) + cc,
            sxy * cc + h0 * f,
            dm * cc - h0 * f,
            em * cc - h0 * (2.0 * f),
        )
    };
    let p_plus = dp * cc + h0 * f;
    let ep_act = ep * cc + h0 * (2.0 * f);
    let s2_act = p_minus * p_plus;
    // the next angle's tangent (value 0), by the chain rule
    let dtheta_next = if T::TANGENTS && dtheta_wanted {
        let s_act = s2_act.val().max(0.0).sqrt();
        let gain = if s_act > 0.0 {
            sdot.val() * s.val() / s_act
        } else {
            0.0
        };
        (theta - T::cst(theta.val())) * gain
    } else {
        T::cst(0.0)
    };
    (out, sdot, s2_act, em_act, ep_act, dtheta_next)
}

/// Kernel of one pair by the cancellation-free recursion (ReLU family and erf); see the module docs.
/// For rbf it falls back to the fast recursion (its drivers take the first layer's distance from
/// `|x - y|^2` already).
pub fn pair_stable<T: Num>(arch: &Arch, kind: Kind, inv: Invariants<T>, d: f64) -> T {
    let w2 = arch.w_std * arch.w_std;
    let b2 = arch.b_std * arch.b_std;
    let mut sxx = inv.p * w2 + b2;
    let mut syy = inv.q * w2 + b2;
    let (mut sxy, mut th) = input_layer(arch, inv.r, d);
    let mut s2 = inv.g * (w2 * w2) + inv.e * (w2 * b2);
    match arch.act {
        Activation::AbRelu { a, b } => {
            let cc = abrelu_consts(a, b).0;
            let mut em = inv.e * w2;
            let mut ep = inv.ep * w2 + 4.0 * b2;
            // without bias the angles of the layers after the first are functions of the first one's
            // only: their tangents by the chain rule (see the module docs)
            let mut dtheta: Option<T> = None;
            for l in 0..arch.depth {
                let pp = (sxx * syy).sqrt_safe();
                let (out, sdot, s2_act, em_act, ep_act, dtheta_next) =
                    abrelu_stable(a, b, pp, s2, sxy, em, ep, dtheta, b2 == 0.0);
                if T::TANGENTS && b2 == 0.0 {
                    dtheta = Some(dtheta_next);
                }
                let b2l = arch.bias_var_after(l);
                let (u, v) = dense_after(arch, l, out, th * sdot);
                sxy = u;
                th = v;
                sxx = sxx * (cc * w2) + b2l;
                syy = syy * (cc * w2) + b2l;
                s2 = s2_act * (w2 * w2) + em_act * (w2 * b2l);
                em = em_act * w2;
                ep = ep_act * w2 + 4.0 * b2l;
            }
        }
        Activation::Erf { a, b, c } => {
            let bb = b * b;
            for l in 0..arch.depth {
                // the first layer's s^2 from the invariants, the others' directly
                let s2l = if l == 0 { s2 } else { sxx * syy - sxy * sxy };
                let (o, t, _) =
                    erf_core(a, bb, c, sxx * bb, syy * bb, sxy * bb, s2l * (bb * bb), th);
                let (u, v) = dense_after(arch, l, o, t);
                sxy = u;
                th = v;
                let b2l = arch.bias_var_after(l);
                sxx = act_diag(&arch.act, sxx) * w2 + b2l;
                syy = act_diag(&arch.act, syy) * w2 + b2l;
            }
        }
        Activation::Rbf { .. } => {
            let mut sx = vec![T::cst(0.0); arch.depth];
            let mut sy = vec![0.0; arch.depth];
            diag_chain(arch, inv.p, &mut sx);
            diag_chain(arch, inv.q, &mut sy);
            return pair_fast(arch, kind, inv.r, &sx, &sy, d).0;
        }
    }
    if kind == Kind::Ntk {
        th
    } else {
        sxy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::num::{assert_central_differences, Dual};

    fn relu_nngp_closed_form(x: &[f64], y: &[f64]) -> f64 {
        // depth 1, w = 1, b = 0, NNGP: w^2 * (|x||y|/d)(sin t + (pi - t) cos t)/(2 pi)
        let d = x.len() as f64;
        let nx = x.iter().map(|v| v * v).sum::<f64>() / d;
        let ny = y.iter().map(|v| v * v).sum::<f64>() / d;
        let r = x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / d;
        let p = (nx * ny).sqrt();
        let t = (r / p).clamp(-1.0, 1.0).acos();
        p * (t.sin() + (PI - t) * t.cos()) / (2.0 * PI)
    }

    /// `x0 y1 - x1 y0` to about 1 ulp (Kahan's algorithm with an FMA).
    fn det2(x0: f64, y1: f64, x1: f64, y0: f64) -> f64 {
        let w = x1 * y0;
        let e = (-x1).mul_add(y0, w);
        x0.mul_add(y1, -w) + e
    }

    fn invariants(x: &[f64], y: &[f64]) -> Invariants<f64> {
        let d = x.len() as f64;
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        let u: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
        let v: Vec<f64> = x.iter().zip(y).map(|(a, b)| a + b).collect();
        let (xx, yy, xy, uu, vv) = (dot(x, x), dot(y, y), dot(x, y), dot(&u, &u), dot(&v, &v));
        // cancellation-free |x ^ y|^2 = sum_{i<j} (x_i y_j - x_j y_i)^2
        let mut g = 0.0;
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                g += det2(x[i], y[j], x[j], y[i]).powi(2);
            }
        }
        let _ = (xx * yy, xy);
        Invariants {
            p: xx / d,
            q: yy / d,
            r: xy / d,
            e: uu / d,
            ep: vv / d,
            g: g / (d * d),
        }
    }

    fn fast(arch: &Arch, kind: Kind, x: &[f64], y: &[f64]) -> f64 {
        let inv = invariants(x, y);
        let mut sx = vec![0.0; arch.depth];
        let mut sy = vec![0.0; arch.depth];
        diag_chain(arch, inv.p, &mut sx);
        diag_chain(arch, inv.q, &mut sy);
        pair_fast(arch, kind, inv.r, &sx, &sy, x.len() as f64).0
    }

    /// `(k, d/dx k)` by the stable recursion with dual numbers in the invariants (the 2-D case: the
    /// x-derivative of `g = (x0 y1 - x1 y0)^2 / 4` is `(x0 y1 - x1 y0) (y1, -y0) / 2`).
    fn stable_grad_2d(arch: &Arch, kind: Kind, x: [f64; 2], y: [f64; 2]) -> (f64, [f64; 2]) {
        let inv = invariants(&x, &y);
        let dual = Invariants {
            p: Dual::<5>::var(inv.p, 0),
            q: inv.q,
            r: Dual::var(inv.r, 1),
            e: Dual::var(inv.e, 2),
            ep: Dual::var(inv.ep, 3),
            g: Dual::var(inv.g, 4),
        };
        let k = pair_stable(arch, kind, dual, 2.0);
        let det = det2(x[0], y[1], x[1], y[0]);
        let dg = [det * y[1] / 2.0, -det * y[0] / 2.0];
        let mut grad = [0.0; 2];
        for c in 0..2 {
            grad[c] = k.d[0] * x[c]
                + k.d[1] * y[c] / 2.0
                + k.d[2] * (x[c] - y[c])
                + k.d[3] * (x[c] + y[c])
                + k.d[4] * dg[c];
        }
        (k.v, grad)
    }

    fn abrelu(depth: usize, a: f64, b: f64, w: f64, bias: f64) -> Arch {
        Arch::new(depth, Activation::AbRelu { a, b }, w, bias, false, 64.0).unwrap()
    }

    #[test]
    fn relu_depth1_nngp_is_arccos_kernel() {
        let arch = Arch::relu(1, 1.0, 0.0);
        let (x, y) = ([0.3, -1.2, 0.7], [1.1, 0.4, -0.2]);
        let k = fast(&arch, Kind::Nngp, &x, &y);
        assert!((k - relu_nngp_closed_form(&x, &y)).abs() < 1e-15, "{k}");
    }

    #[test]
    fn stable_equals_fast_away_from_coincidence() {
        let mut archs = vec![];
        for &(depth, w, b) in &[(1, 1.0, 0.0), (3, 1.0, 1.0), (6, 1.7, 3.0), (2, 0.5, 0.0)] {
            archs.push(Arch::relu(depth, w, b));
            archs.push(abrelu(depth, -1.0, 1.0, w, b));
            archs.push(abrelu(depth, 0.2, 1.0, w, b));
            archs.push(abrelu(depth, -0.3, 2.0, w, b));
        }
        let erf = Activation::Erf {
            a: 0.8,
            b: 0.6,
            c: 0.3,
        };
        archs.push(Arch::new(3, erf, 1.2, 0.4, false, 64.0).unwrap());
        // an acute and an obtuse pair
        let pairs = [
            ([0.3, -1.2, 0.7, 2.0], [1.1, 0.4, -0.2, -0.5]),
            ([0.3, -1.2, 0.7, 2.0], [-1.1, 0.4, -0.2, -1.5]),
        ];
        for arch in &archs {
            for (x, y) in &pairs {
                for kind in [Kind::Ntk, Kind::Nngp] {
                    let a = fast(arch, kind, x, y);
                    let s = pair_stable(arch, kind, invariants(x, y), 4.0);
                    assert!((a - s).abs() <= 1e-13 * a.abs(), "{arch:?}: {a} vs {s}");
                }
            }
        }
    }

    #[test]
    fn stable_gradient_matches_finite_differences() {
        for arch in [Arch::relu(3, 1.2, 0.8), abrelu(3, -1.0, 1.0, 0.9, 0.5)] {
            for (x, y) in [([0.3, -1.2], [1.1, 0.4]), ([0.3, -1.2], [-0.8, 1.5])] {
                let (_, grad) = stable_grad_2d(&arch, Kind::Ntk, x, y);
                assert_central_differences(&grad, 1e-7, &format!("{arch:?}"), |c, delta| {
                    let mut xc = x;
                    xc[c] += delta;
                    fast(&arch, Kind::Ntk, &xc, &y)
                });
            }
        }
    }

    /// Without bias, `|x|` makes the network even in its input: `k(x, y) = k(x, -y)` for the abs family
    /// (`a = -b`), so a nearly antipodal pair must give what the mirrored, nearly coincident pair gives
    /// (the latter by the acute branch, whose accuracy the Python tests measure against mpmath).
    #[test]
    fn abs_nearly_antipodal_equals_mirrored_near_coincident() {
        for arch in [
            abrelu(5, -1.0, 1.0, 0.926, 0.0),
            abrelu(3, -2.0, 2.0, 1.3, 0.0),
        ] {
            for &delta in &[1e-4, 1e-8, 1e-12, 0.0] {
                for kind in [Kind::Ntk, Kind::Nngp] {
                    let x = [0.7, -1.9];
                    let y_near = [1.3 * x[0] + delta * 0.6, 1.3 * x[1] - delta * 0.8];
                    let y_anti = [-y_near[0], -y_near[1]];
                    let (k0, g0) = stable_grad_2d(&arch, kind, x, y_near);
                    let (k1, g1) = stable_grad_2d(&arch, kind, x, y_anti);
                    assert!(
                        (k0 - k1).abs() <= 4e-16 * k0.abs() * 8.0,
                        "{delta}: {k0} vs {k1}"
                    );
                    let gn = g0[0].hypot(g0[1]);
                    let ge = (g0[0] - g1[0]).hypot(g0[1] - g1[1]);
                    assert!(ge <= 1e-14 * gn, "{delta} {kind:?}: {g0:?} vs {g1:?}");
                }
            }
        }
    }

    /// `d = 1` without bias: every pair of opposite signs is exactly antiparallel (`s = 0` at every
    /// layer); for abs `k(x, y) = k(x, -y) = k(|x|, |y|)`, and its gradient is `k / x` (homogeneity).
    #[test]
    fn abs_d1_antiparallel_is_exact() {
        let arch = abrelu(5, -1.0, 1.0, 0.926, 0.0);
        let x = 3.219_468_5;
        for &y in &[-1.278_918, -3.219_468_5, -0.1] {
            let inv = |x: f64, y: f64| Invariants {
                p: Dual::<4>::var(x * x, 0),
                q: y * y,
                r: Dual::var(x * y, 1),
                e: Dual::var((x - y) * (x - y), 2),
                ep: Dual::var((x + y) * (x + y), 3),
                g: Dual::cst(0.0),
            };
            for kind in [Kind::Ntk, Kind::Nngp] {
                let ka = pair_stable(&arch, kind, inv(x, y), 1.0);
                let kp = pair_stable(&arch, kind, inv(x, -y), 1.0);
                assert!(
                    (ka.v - kp.v).abs() <= 1e-15 * kp.v,
                    "{y}: {} vs {}",
                    ka.v,
                    kp.v
                );
                let grad = |k: Dual<4>, y: f64| {
                    k.d[0] * 2.0 * x + k.d[1] * y + k.d[2] * 2.0 * (x - y) + k.d[3] * 2.0 * (x + y)
                };
                let (ga, gp) = (grad(ka, y), grad(kp, -y));
                assert!((ga - gp).abs() <= 1e-14 * gp.abs(), "{y}: {ga} vs {gp}");
                assert!(
                    (ga - ka.v / x).abs() <= 1e-14 * gp.abs(),
                    "{y}: {ga} vs {}",
                    ka.v / x
                );
            }
        }
    }

    /// The depth-1 margin flags obtuse pairs whose fast `S'` or `Sdot` would lose relative accuracy
    /// (ReLU near `theta = pi`), and nothing else.
    #[test]
    fn obtuse_margin_flags_vanishing_relu_outputs_only() {
        let margin = |a: f64, b: f64, theta: f64| {
            let (cc, f) = abrelu_consts(a, b);
            let (x, y) = (1.3_f64, 0.7_f64);
            let sxy = (x * y).sqrt() * theta.cos();
            let [m, m_inner] = [true, false].map(|depth1| {
                abrelu_pair(
                    cc,
                    f,
                    a * b,
                    x,
                    y,
                    1.0 / y,
                    sxy,
                    1.0,
                    S2::Difference { depth1 },
                )
                .2
            });
            (m, m_inner)
        };
        // ReLU: flagged up to eps ~ 0.18 at depth 1, only by TAU (eps < 0.01) in deeper networks
        assert!(margin(0.0, 1.0, PI - 0.15).0 < 0.0);
        assert!(margin(0.0, 1.0, PI - 0.15).1 > 0.0);
        assert!(margin(0.0, 1.0, PI - 0.25).0 > 0.0);
        // abs and leaky_relu(0.2): S' and Sdot do not vanish at theta = pi
        assert!(margin(-1.0, 1.0, PI - 0.05).0 > 0.0);
        assert!(margin(0.2, 1.0, PI - 0.05).0 > 0.0);
        // acute pairs: TAU only
        assert!(margin(0.0, 1.0, 0.05).0 > 0.0);
        assert!(margin(0.0, 1.0, 0.005).0 < 0.0);
    }

    #[test]
    fn erf_margin_flags_large_norms_at_small_angles_only() {
        // unit norms: never; norm 1e3: near-parallel and near-antiparallel, not orthogonal
        assert!(erf_margin(1.0, 1.0, 1.0, 1.0 - 1e-12) > 0.0);
        assert!(erf_margin(1.0, 1e6, 1e6, 1e6 * (1.0 - 1e-9)) < 0.0);
        assert!(erf_margin(1.0, 1e6, 1e6, -1e6 * (1.0 - 1e-9)) < 0.0);
        assert!(erf_margin(1.0, 1e6, 1e6, 0.3e6) > 0.0);
        // b scales the inputs: tiny b, no flag
        assert!(erf_margin(1e-4, 1e6, 1e6, 1e6) > 0.0);
    }
}
