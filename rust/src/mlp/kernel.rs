//! A register-blocked GEMM for the finite networks: `C = alpha A B (+ C)` with `B` row-major, no packing.
//!
//! The networks' products are small (a chunk of 64 rows times a 128 x 128 weight matrix), where a
//! general GEMM spends a fifth of its time packing its operands.  Here a tile of `MR` rows of `C` and
//! two vector registers of columns is accumulated in registers over the whole inner dimension, reading
//! `A` by broadcasts (any strides, so a transposed `A` costs nothing) and `B` by contiguous row
//! segments; no operand is copied.  Each entry is the same fused multiply-add chain
//! `acc = fma(a_iq, b_qj, acc)` for `q = 0, 1, ..., k - 1` from zero, then `alpha acc` (or
//! `fma(alpha, acc, c)` to accumulate), on every code path: AVX-512 (tiles of 8 rows x 16 f64 / 32 f32
//! columns, the last columns by masks), AVX2 + FMA (6 rows x 8 f64 / 16 f32 columns), and a scalar
//! fallback (`mul_add`, correctly rounded in software where the CPU has no FMA).  So the numbers do not
//! depend on the instruction set.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::simd::{level, Level};

/// Whether the vector kernels may run: the CPU has FMA beside the level `simd::level` chose.
fn fma_level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            if is_x86_feature_detected!("fma") {
                level()
            } else {
                Level::Generic
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Level::Generic
    }
}

/// The operands of one product: `A` (m x k) by strides, `B` (k x n) row-major with `ldb`, `C` (m x n)
/// row-major with `ldc`.
#[derive(Clone, Copy)]
pub struct Operands<T> {
    pub a: *const T,
    pub rsa: usize,
    pub csa: usize,
    pub b: *const T,
    pub ldb: usize,
    pub c: *mut T,
    pub ldc: usize,
}

/// Rows of `B` per block of the inner dimension (a block of one tile's columns, `KC x 16` f64, stays in L1).
const KC: usize = 256;

/// Where a tile's partial sums wait between blocks of the inner dimension: resume from `s` (else from
/// zero), and keep the sums in `s` (else finish into `C`).
#[derive(Clone, Copy)]
struct Partial<T> {
    s: *mut T,
    lds: usize,
    resume: bool,
    keep: bool,
}

macro_rules! scalar_fallback {
    ($name:ident, $t:ty) => {
        /// The scalar path: the same FMA chain per entry.
        unsafe fn $name(m: usize, k: usize, n: usize, alpha: $t, acc_c: bool, o: Operands<$t>) {
            for i in 0..m {
                for j in 0..n {
                    let mut acc: $t = 0.0;
                    for q in 0..k {
                        acc =
                            (*o.a.add(i * o.rsa + q * o.csa)).mul_add(*o.b.add(q * o.ldb + j), acc);
                    }
                    let c = o.c.add(i * o.ldc + j);
                    *c = if acc_c {
                        alpha.mul_add(acc, *c)
                    } else {
                        alpha * acc
                    };
                }
            }
        }
    };
}
scalar_fallback!(scalar_f64, f64);
scalar_fallback!(scalar_f32, f32);

// -- vector kernels ------------------------------------------------------------------------------------

/// Lane masks of the AVX2 kernels: the first `w` of `LANES` lanes (all when `w >= LANES`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mask256<const LANES: usize>(w: usize) -> __m256i {
    let mut m = [0i32; 8];
    let per = 8 / LANES; // i32 words per lane
    for lane in 0..LANES.min(w) {
        for p in 0..per {
            m[lane * per + p] = -1;
        }
    }
    _mm256_loadu_si256(m.as_ptr() as *const __m256i)
}

/// A vector kernel: `$tile::<R>` accumulates `R` rows by two vectors of `$lanes` columns (see
/// [`Partial`]), and `$gemm`, compiled with `$features`, sweeps one panel of columns `j0..j0 + w` at a
/// time: the inner dimension in blocks of `KC` (each block's rows of `B` stay in L1 across the row tiles;
/// the partial sums wait in `scratch`, exact: the same FMA chain resumes from them), and in each block
/// the row tiles of at most `$mr` rows, `$tile::<R>` for the `R` rows left (`$rows` lists `R > 1`).
/// The instruction sets differ in their masked loads and stores (`load: |p, m| ..`,
/// `store: |p, m, v| ..`) and in the mask of the first `w` lanes of a vector (`lane_mask: |w| ..`).
macro_rules! vector_kernel {
    ($tile:ident, $gemm:ident, $features:literal, $mr:literal, [$($rows:literal),*], $t:ty, $lanes:literal,
     $vec:ty, $mask:ty, $set1:ident, $zero:ident, $fmadd:ident, $mul:ident,
     load: |$lp:ident, $lm:ident| $load:expr,
     store: |$sp:ident, $sm:ident, $sv:ident| $store:expr,
     lane_mask: |$w:ident| $lane_mask:expr $(,)?) => {
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn $tile<const R: usize>(
            k: usize,
            alpha: $t,
            acc_c: bool,
            o: Operands<$t>,
            m0: $mask,
            m1: $mask,
            part: Partial<$t>,
        ) {
            /// The lanes of `p` where `m` is set, zero elsewhere.
            #[inline(always)]
            unsafe fn load($lp: *const $t, $lm: $mask) -> $vec {
                $load
            }
            /// `v` into the lanes of `p` where `m` is set.
            #[inline(always)]
            unsafe fn store($sp: *mut $t, $sm: $mask, $sv: $vec) {
                $store
            }
            let mut lo: [$vec; R] = [$zero(); R];
            let mut hi: [$vec; R] = [$zero(); R];
            if part.resume {
                for i in 0..R {
                    lo[i] = load(part.s.add(i * part.lds), m0);
                    hi[i] = load(part.s.add(i * part.lds + $lanes), m1);
                }
            }
            for q in 0..k {
                let brow = o.b.add(q * o.ldb);
                let b0 = load(brow, m0);
                let b1 = load(brow.add($lanes), m1);
                let arow = o.a.add(q * o.csa);
                for i in 0..R {
                    let ai = $set1(*arow.add(i * o.rsa));
                    lo[i] = $fmadd(ai, b0, lo[i]);
                    hi[i] = $fmadd(ai, b1, hi[i]);
                }
            }
            if part.keep {
                for i in 0..R {
                    store(part.s.add(i * part.lds), m0, lo[i]);
                    store(part.s.add(i * part.lds + $lanes), m1, hi[i]);
                }
                return;
            }
            let al = $set1(alpha);
            for i in 0..R {
                let crow = o.c.add(i * o.ldc);
                if acc_c {
                    let c0 = load(crow, m0);
                    let c1 = load(crow.add($lanes), m1);
                    store(crow, m0, $fmadd(al, lo[i], c0));
                    store(crow.add($lanes), m1, $fmadd(al, hi[i], c1));
                } else {
                    store(crow, m0, $mul(al, lo[i]));
                    store(crow.add($lanes), m1, $mul(al, hi[i]));
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $gemm(m: usize, k: usize, n: usize, alpha: $t, acc_c: bool, o: Operands<$t>) {
            /// The mask of the first `w` lanes of a vector (all when `w >= $lanes`).
            #[inline(always)]
            unsafe fn lane_mask($w: usize) -> $mask {
                $lane_mask
            }
            let nr = 2 * $lanes;
            let mut scratch: Vec<$t> = if k > KC {
                vec![0.0; m * nr]
            } else {
                Vec::new()
            };
            let mut j0 = 0;
            while j0 < n {
                let w = (n - j0).min(nr);
                let m0 = lane_mask(w);
                let m1 = lane_mask(w.saturating_sub($lanes));
                let mut q0 = 0;
                while q0 < k {
                    let kb = (k - q0).min(KC);
                    let mut i0 = 0;
                    while i0 < m {
                        let rows = (m - i0).min($mr);
                        let t = Operands {
                            a: o.a.add(i0 * o.rsa + q0 * o.csa),
                            b: o.b.add(q0 * o.ldb + j0),
                            c: o.c.add(i0 * o.ldc + j0),
                            ..o
                        };
                        let part = Partial {
                            s: scratch.as_mut_ptr().add(i0 * nr),
                            lds: nr,
                            resume: q0 > 0,
                            keep: q0 + kb < k,
                        };
                        match rows {
                            $($rows => $tile::<$rows>(kb, alpha, acc_c, t, m0, m1, part),)*
                            _ => $tile::<1>(kb, alpha, acc_c, t, m0, m1, part),
                        }
                        i0 += rows;
                    }
                    q0 += kb;
                }
                j0 += w;
            }
        }
    };
}

// AVX-512: tiles of 8 rows, the lanes by bit masks.
vector_kernel!(
    tile512_f64,
    gemm512_f64,
    "avx512f,avx512dq,avx512vl,avx2,fma",
    8,
    [8, 7, 6, 5, 4, 3, 2],
    f64,
    8,
    __m512d,
    u8,
    _mm512_set1_pd,
    _mm512_setzero_pd,
    _mm512_fmadd_pd,
    _mm512_mul_pd,
    load: |p, m| _mm512_maskz_loadu_pd(m, p),
    store: |p, m, v| _mm512_mask_storeu_pd(p, m, v),
    lane_mask: |w| ((1u32 << w.min(8)) - 1) as u8,
);
vector_kernel!(
    tile512_f32,
    gemm512_f32,
    "avx512f,avx512dq,avx512vl,avx2,fma",
    8,
    [8, 7, 6, 5, 4, 3, 2],
    f32,
    16,
    __m512,
    u16,
    _mm512_set1_ps,
    _mm512_setzero_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    load: |p, m| _mm512_maskz_loadu_ps(m, p),
    store: |p, m, v| _mm512_mask_storeu_ps(p, m, v),
    lane_mask: |w| ((1u32 << w.min(16)) - 1) as u16,
);

// AVX2 + FMA: tiles of 6 rows, the lanes by vector masks.
vector_kernel!(
    tile256_f64,
    gemm256_f64,
    "avx2,fma",
    6,
    [6, 5, 4, 3, 2],
    f64,
    4,
    __m256d,
    __m256i,
    _mm256_set1_pd,
    _mm256_setzero_pd,
    _mm256_fmadd_pd,
    _mm256_mul_pd,
    load: |p, m| _mm256_maskload_pd(p, m),
    store: |p, m, v| _mm256_maskstore_pd(p, m, v),
    lane_mask: |w| mask256::<4>(w),
);
vector_kernel!(
    tile256_f32,
    gemm256_f32,
    "avx2,fma",
    6,
    [6, 5, 4, 3, 2],
    f32,
    8,
    __m256,
    __m256i,
    _mm256_set1_ps,
    _mm256_setzero_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    load: |p, m| _mm256_maskload_ps(p, m),
    store: |p, m, v| _mm256_maskstore_ps(p, m, v),
    lane_mask: |w| mask256::<8>(w),
);

// -- dispatch ------------------------------------------------------------------------------------------

macro_rules! dispatch {
    ($name:ident, $t:ty, $k512:ident, $k256:ident, $scalar:ident) => {
        /// `C = alpha A B` (or `C += alpha A B` with `acc_c`): see the module notes.
        ///
        /// # Safety
        /// The operands address matrices of the shapes given; `C` does not alias `A` or `B`.
        pub unsafe fn $name(m: usize, k: usize, n: usize, alpha: $t, acc_c: bool, o: Operands<$t>) {
            if m == 0 || n == 0 {
                return;
            }
            #[cfg(target_arch = "x86_64")]
            match fma_level() {
                Level::Avx512 => return $k512(m, k, n, alpha, acc_c, o),
                Level::Avx2 => return $k256(m, k, n, alpha, acc_c, o),
                Level::Generic => {}
            }
            $scalar(m, k, n, alpha, acc_c, o)
        }
    };
}

dispatch!(gemm_f64, f64, gemm512_f64, gemm256_f64, scalar_f64);
dispatch!(gemm_f32, f32, gemm512_f32, gemm256_f32, scalar_f32);

#[cfg(test)]
mod tests {
    use super::*;

    type Path64 = unsafe fn(usize, usize, usize, f64, bool, Operands<f64>);
    type Path32 = unsafe fn(usize, usize, usize, f32, bool, Operands<f32>);

    /// The vector paths this CPU can run, each by name (AVX-512 and AVX2 tested in one run).
    fn paths() -> Vec<(&'static str, Path64, Path32)> {
        let mut out: Vec<(&'static str, Path64, Path32)> = vec![("dispatch", gemm_f64, gemm_f32)];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                out.push(("avx2", gemm256_f64, gemm256_f32));
            }
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
            {
                out.push(("avx512", gemm512_f64, gemm512_f32));
            }
        }
        out
    }

    /// Every path equals the scalar FMA chain bit for bit, over shapes with partial tiles and inner
    /// dimensions longer than one block.
    #[test]
    fn vector_paths_equal_the_scalar_chain() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 5),
            (13, 129, 17),
            (64, 128, 128),
            (9, 40, 33),
            (6, 2, 40),
            (13, 600, 17),
            (8, 257, 16),
            (64, 1000, 128),
        ] {
            let a: Vec<f64> = (0..m * k)
                .map(|i| ((i * 7919) % 97) as f64 / 37.0 - 1.3)
                .collect();
            let b: Vec<f64> = (0..k * n)
                .map(|i| ((i * 104729) % 89) as f64 / 29.0 - 1.1)
                .collect();
            let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            for acc_c in [false, true] {
                let o = |c: *mut f64| Operands {
                    a: a.as_ptr(),
                    rsa: k,
                    csa: 1,
                    b: b.as_ptr(),
                    ldb: n,
                    c,
                    ldc: n,
                };
                let o32 = |c: *mut f32| Operands {
                    a: a32.as_ptr(),
                    rsa: k,
                    csa: 1,
                    b: b32.as_ptr(),
                    ldb: n,
                    c,
                    ldc: n,
                };
                let mut want = vec![0.25f64; m * n];
                let mut w32 = vec![0.25f32; m * n];
                unsafe {
                    scalar_f64(m, k, n, 0.7, acc_c, o(want.as_mut_ptr()));
                    scalar_f32(m, k, n, 0.7, acc_c, o32(w32.as_mut_ptr()));
                }
                for (name, p64, p32) in paths() {
                    let mut got = vec![0.25f64; m * n];
                    let mut g32 = vec![0.25f32; m * n];
                    unsafe {
                        p64(m, k, n, 0.7, acc_c, o(got.as_mut_ptr()));
                        p32(m, k, n, 0.7, acc_c, o32(g32.as_mut_ptr()));
                    }
                    assert_eq!(want, got, "{name} {m}x{k}x{n} acc {acc_c}");
                    assert_eq!(w32, g32, "{name} f32 {m}x{k}x{n} acc {acc_c}");
                }
            }
        }
    }

    /// A transposed A (strides (1, m)) gives the product of the transpose.
    #[test]
    fn transposed_a_by_strides() {
        let (m, k, n) = (10, 7, 19);
        let at: Vec<f64> = (0..k * m).map(|i| (i as f64 * 0.37).sin()).collect(); // A^T stored (k x m)
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let mut c = vec![0.0; m * n];
        unsafe {
            gemm_f64(
                m,
                k,
                n,
                1.0,
                false,
                Operands {
                    a: at.as_ptr(),
                    rsa: 1,
                    csa: m,
                    b: b.as_ptr(),
                    ldb: n,
                    c: c.as_mut_ptr(),
                    ldc: n,
                },
            );
        }
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|q| at[q * m + i] * b[q * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-13);
            }
        }
    }
}
