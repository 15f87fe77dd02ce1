//! The floating-point types finite networks run in (`f32`, `f64`): the arithmetic, the special
//! functions of the activations and the GEMM of `matrixmultiply`, behind one trait.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

use super::kernel::{self, Operands};

/// The signature of `matrixmultiply`'s GEMM (see [`Real::gemm`]).
type MmGemm<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// `f32` or `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::fmt::Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// The name numpy gives the type.
    const NAME: &'static str;
    /// Round an `f64` to this type.
    fn of(x: f64) -> Self;
    /// Widen to `f64`.
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn erf(self) -> Self;
    fn erfc(self) -> Self;
    /// `numpy.maximum(self, other)` for non-NaN inputs.
    fn max(self, other: Self) -> Self;
    /// `numpy.minimum(self, other)` for non-NaN inputs.
    fn min(self, other: Self) -> Self;
    fn is_finite(self) -> bool;

    /// `matrixmultiply`'s GEMM in this type (`dgemm`, `sgemm`), called by [`Real::gemm`].
    const MM_GEMM: MmGemm<Self>;

    /// `C <- alpha * A B + beta * C` with `A` (m x k), `B` (k x n), `C` (m x n) given by pointers and
    /// (row, column) strides in elements; `beta = 0` ignores the old `C` (may be uninitialised).
    ///
    /// # Safety
    /// The pointers must address matrices of the given shapes and strides, `C` not aliasing `A`, `B`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        (Self::MM_GEMM)(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    }

    /// `C = alpha A B` (or `C += alpha A B` with `acc_c`) by the register-blocked kernel of
    /// [`super::kernel`] (`B` and `C` row-major, `A` by strides).
    ///
    /// # Safety
    /// As [`kernel::gemm_f64`].
    unsafe fn gemm_nn(m: usize, k: usize, n: usize, alpha: Self, acc_c: bool, o: Operands<Self>);
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $gemm:path, $kern:path, $erf:path, $erfc:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            const MM_GEMM: MmGemm<Self> = $gemm;
            #[inline(always)]
            fn of(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn erfc(self) -> Self {
                $erfc(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                if self >= other {
                    self
                } else {
                    other
                }
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                if self <= other {
                    self
                } else {
                    other
                }
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            unsafe fn gemm_nn(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                acc_c: bool,
                o: Operands<Self>,
            ) {
                $kern(m, k, n, alpha, acc_c, o)
            }
        }
    };
}

impl_real!(
    f64,
    "float64",
    matrixmultiply::dgemm,
    kernel::gemm_f64,
    libm::erf,
    libm::erfc
);
impl_real!(
    f32,
    "float32",
    matrixmultiply::sgemm,
    kernel::gemm_f32,
    libm::erff,
    libm::erfcf
);
