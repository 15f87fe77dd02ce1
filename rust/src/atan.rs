//! Branch-free arctangent, so that loops over blocks of pairs vectorise (no libm call, selects only).
//!
//! `atan(a)` on `[0, 1]` uses the Cephes `atan.c` rational approximation (Moshier): for `a > 0.66` the
//! argument is reduced with `atan(a) = pi/4 + atan((a - 1)/(a + 1))`, then
//! `atan(x) = x + x z P(z)/Q(z)`, `z = x^2`, P of degree 4 and Q monic of degree 5. Maximum error about
//! 1 ulp (tested against libm over a dense grid). `atan2_fast` builds the four quadrants with selects.

use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};

// Cephes' P with its sign flipped (all coefficients of P are negative): `atan t = t - t z NP(z)/Q(z)`.
const NP0: f64 = 8.750_608_600_031_904_122_785E-1;
const NP1: f64 = 1.615_753_718_733_365_076_637E1;
const NP2: f64 = 7.500_855_792_314_704_667_340E1;
const NP3: f64 = 1.228_866_684_490_136_173_410E2;
const NP4: f64 = 6.485_021_904_942_025_371_773E1;
const Q0: f64 = 2.485_846_490_142_306_297_962E1;
const Q1: f64 = 1.650_270_098_316_988_542_046E2;
const Q2: f64 = 4.328_810_604_912_902_668_951E2;
const Q3: f64 = 4.853_903_996_359_136_964_868E2;
const Q4: f64 = 1.945_506_571_482_613_964_425E2;
/// Low-order bits of pi/2 (Cephes `MOREBITS`).
const MOREBITS: f64 = 6.123_233_995_736_765_886_130E-17;

/// `atan(a)` for `a` in `[0, 1]`.
#[inline(always)]
pub fn atan_unit(a: f64) -> f64 {
    let big = a > 0.66;
    let x = if big { (a - 1.0) / (a + 1.0) } else { a };
    let z = x * x;
    let np = (((NP0 * z + NP1) * z + NP2) * z + NP3) * z + NP4;
    let q = ((((z + Q0) * z + Q1) * z + Q2) * z + Q3) * z + Q4;
    let r = x - x * (z * np / q);
    if big {
        FRAC_PI_4 + (r + 0.5 * MOREBITS)
    } else {
        r
    }
}

/// The first quadrant: `(phi, c, plain)` with `phi = atan2(ay, ax)` in `[0, pi/2]` for `ay, ax >= 0`
/// (0 at `(0, 0)`), `c = -z P(z)/Q(z) > 0` the rational approximation's correction (`atan t = t - t c`
/// for the reduced argument `t`), and `plain` true where no reduction was applied (`t = ay/ax <= 0.66`).
///
/// With `mn = min(ay, ax)`, `mx = max(ay, ax)`, the reduced argument is `mn / mx`, or
/// `(mn - mx) / (mn + mx)` (= `(a - 1)/(a + 1)`) when `mn > 0.66 mx`: one division, not two.
#[inline(always)]
fn first_quadrant(ay: f64, ax: f64) -> (f64, f64, bool) {
    let (phi, c, _, plain) = first_quadrant_t(ay, ax);
    (phi, c, plain)
}

/// [`first_quadrant`] with the reduced argument `t` too: `(phi, c, t, plain)`.
#[inline(always)]
fn first_quadrant_t(ay: f64, ax: f64) -> (f64, f64, f64, bool) {
    let swap = ay > ax;
    let mx = if swap { ay } else { ax };
    let mn = if swap { ax } else { ay };
    let big = mn > 0.66 * mx;
    let num = if big { mn - mx } else { mn };
    let den = if big { mn + mx } else { mx };
    let t = if den > 0.0 { num / den } else { 0.0 };
    let z = t * t;
    let np = (((NP0 * z + NP1) * z + NP2) * z + NP3) * z + NP4;
    let q = ((((z + Q0) * z + Q1) * z + Q2) * z + Q3) * z + Q4;
    let c = z * np / q;
    let r = t - t * c;
    let base = if big {
        FRAC_PI_4 + (r + 0.5 * MOREBITS)
    } else {
        r
    };
    let phi = if swap {
        (FRAC_PI_2 - base) + MOREBITS
    } else {
        base
    };
    (phi, c, t, !swap && !big)
}

/// `atan2(y, x)` in `(-pi, pi]`, branch-free; `atan2(0, 0) = 0` (callers choose their own fill).
#[inline(always)]
pub fn atan2_fast(y: f64, x: f64) -> f64 {
    let (phi, _, _) = first_quadrant(y.abs(), x.abs());
    let phi = if x < 0.0 {
        (PI - phi) + 2.0 * MOREBITS
    } else {
        phi
    };
    if y.is_sign_negative() {
        -phi
    } else {
        phi
    }
}

/// For `y, x >= 0`: `(phi, h)` with `phi = atan2(y, x)` in `[0, pi/2]` (0 at `(0, 0)`) and the defect
/// `h = y - phi x >= 0`, computed without cancellation.
///
/// The ReLU-family maps need `s - theta Sxy` (`theta` small) and `s + eps Sxy` (`eps = pi - theta`
/// small), i.e. `h` for `(y, x) = (s, |Sxy|)`, which is `x (t - atan t)` with `t = y/x`: `~y t^2 / 3`,
/// a difference of nearly equal numbers for small `t`.  Without reduction (`t <= 0.66`) `atan t - t` is
/// the approximation's own correction `-t c`, so `h = y c` (`y = t x`), accurate to a few ulps
/// whatever `t` (the minimax `P/Q` is `-1/3` to about 1e-15 at `z = 0`: <= 14 ulps measured); with it
/// (`phi > 0.58`), `y - phi x` keeps its terms apart by a factor of at least 8.  At `(0, 0)`, `h = 0`.
#[inline(always)]
pub fn atan2_half(y: f64, x: f64) -> (f64, f64) {
    let (phi, c, plain) = first_quadrant(y, x);
    let h = if plain { y * c } else { y - phi * x };
    (phi, h)
}

/// [`atan2_half`] with the defect's derivative along `x` at fixed `y`, `h_x = x y / (x^2 + y^2) - phi`:
/// `(phi, h, h_x)`, given `ip = 1 / sqrt(x^2 + y^2)` (no division here).  Without reduction
/// (`t = y/x <= 0.66`) it is formed as `h/x - t y^2 / (x^2 + y^2)` with `h/x = t c` (`t - atan t`,
/// relatively accurate like `h`): two terms apart by a factor of about 3 (`t^3/3` against `t^3`), so
/// `h_x ~ -2 t^3 / 3` keeps its relative accuracy where it vanishes; with it, `x y / (x^2 + y^2) - phi`
/// (`phi > 0.58`, terms apart by a factor of at least 1.2).
#[inline(always)]
pub fn atan2_half_dx(y: f64, x: f64, ip: f64) -> (f64, f64, f64) {
    let (phi, c, t, plain) = first_quadrant_t(y, x);
    let h = if plain { y * c } else { y - phi * x };
    let (yp, xp) = (y * ip, x * ip);
    let h_x = if plain {
        t * c - t * (yp * yp)
    } else {
        yp * xp - phi
    };
    (phi, h, h_x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_err(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let scale = b.abs().max(f64::MIN_POSITIVE);
        ((a - b) / scale).abs() / f64::EPSILON
    }

    #[test]
    fn atan_unit_matches_libm() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let a = i as f64 / 200_000.0;
            worst = worst.max(ulp_err(atan_unit(a), a.atan()));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn atan2_matches_libm_all_quadrants() {
        let mut worst: f64 = 0.0;
        let vals = [
            -1e300, -3.7, -1.0, -0.5, -1e-3, -1e-300, 0.0, 1e-300, 1e-3, 0.5, 1.0, 3.7, 1e300,
        ];
        for &y in &vals {
            for &x in &vals {
                if x == 0.0 && y == 0.0 {
                    continue;
                }
                worst = worst.max(ulp_err(atan2_fast(y, x), y.atan2(x)));
            }
        }
        for i in 0..20_000 {
            let t = i as f64 * 0.000_314_159;
            let (y, x) = (t.sin() * 2.3, t.cos() * 2.3);
            worst = worst.max(ulp_err(atan2_fast(y, x), y.atan2(x)));
        }
        assert!(worst <= 3.0, "worst error {worst} ulp");
        assert_eq!(atan2_fast(0.0, 0.0), 0.0);
        assert_eq!(atan2_fast(0.0, -1.0), PI);
        assert_eq!(atan2_fast(1.0, 0.0), FRAC_PI_2);
    }

    #[test]
    fn atan2_half_defect_is_accurate() {
        // h = y - atan2(y, x) x against the series x t^3 (1/3 - t^2/5 + t^4/7 - ...) for small t, and
        // against libm where the terms are well apart
        for i in 1..200 {
            let t = 0.66 * (i as f64 / 200.0).powi(3);
            let (x, y) = (1.7, 1.7 * t);
            let (phi, h) = atan2_half(y, x);
            assert!(ulp_err(phi, y.atan2(x)) <= 2.0);
            let tt = y / x;
            let z = tt * tt;
            let mut series = 0.0;
            for k in (1..90).rev() {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                series = series * z + sign / (2 * k + 1) as f64;
            }
            let want = y * z * series;
            // the minimax P/Q of Cephes is -1/3 to ~1e-15 at z = 0 (its target is atan, not the
            // correction term): measured <= 14 ulps
            assert!(ulp_err(h, want) <= 24.0, "t={t}: {h} vs {want}");
        }
        for &(y, x) in &[(0.9, 1.0), (1.0, 1.0), (3.0, 1.0), (1.0, 0.0)] {
            let (phi, h) = atan2_half(y, x);
            let want = y - y.atan2(x) * x;
            assert!(
                (h - want).abs() <= 8.0 * f64::EPSILON * y,
                "{y} {x}: {h} vs {want}"
            );
            assert!(ulp_err(phi, y.atan2(x)) <= 3.0);
        }
        assert_eq!(atan2_half(0.0, 0.0).0, 0.0);
    }

    #[test]
    fn atan2_half_dx_is_relatively_accurate() {
        // h_x = x y / (x^2 + y^2) - atan2(y, x) = sum_{k>=1} (-1)^k (2k / (2k + 1)) t^(2k+1) for small
        // t = y/x (times nothing: it is dimensionless), against libm where the terms are well apart
        for i in 1..200 {
            let t = 0.66 * (i as f64 / 200.0).powi(3);
            let (x, y) = (1.7, 1.7 * t);
            let ip = 1.0 / (x * x + y * y).sqrt();
            let (phi, h, h_x) = atan2_half_dx(y, x, ip);
            assert_eq!((phi, h), atan2_half(y, x));
            let tt = y / x;
            let z = tt * tt;
            let mut series = 0.0;
            for k in (1..90).rev() {
                let sign = if k % 2 == 1 { -1.0 } else { 1.0 };
                series = series * z + sign * (2 * k) as f64 / (2 * k + 1) as f64;
            }
            let want = tt * z * series;
            assert!(ulp_err(h_x, want) <= 40.0, "t={t}: {h_x} vs {want}");
        }
        for &(y, x) in &[(0.9, 1.0), (1.0, 1.0), (3.0, 1.0), (1.0, 0.0)] {
            let ip = 1.0 / f64::hypot(x, y);
            let (_, _, h_x) = atan2_half_dx(y, x, ip);
            let want = x * y / (x * x + y * y) - y.atan2(x);
            assert!(
                (h_x - want).abs() <= 8.0 * f64::EPSILON,
                "{y} {x}: {h_x} vs {want}"
            );
        }
    }
}
