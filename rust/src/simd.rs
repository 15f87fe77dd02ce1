//! Run-time dispatch to AVX2 clones of `#[inline(always)]` hot loops (same numbers either way: Rust never
//! contracts `a * b + c` into an FMA, so the clone only gets wider vectors).

/// Whether the AVX2 clones of the tile functions can run (same numbers either way: no FMA contraction).
#[inline(always)]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `$name(args)` runs `$imp(args)` compiled with AVX2 (the clone `$avx`) when the CPU has it, else the
/// baseline build of the same `#[inline(always)]` body.
#[macro_export]
macro_rules! avx2_dispatch {
    ($name:ident, $avx:ident, $imp:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx($($arg: $ty),*) {
            $imp($($arg),*)
        }

        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::has_avx2() {
                // SAFETY: the CPU supports AVX2.
                return unsafe { $avx($($arg),*) };
            }
            $imp($($arg),*)
        }
    };
}
