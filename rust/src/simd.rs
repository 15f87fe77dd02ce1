//! Run-time dispatch to AVX2 and AVX-512 clones of `#[inline(always)]` hot loops (same numbers on every
//! path: Rust never contracts `a * b + c` into an FMA and never reorders a sum, so a clone only gets
//! wider vectors and more registers).

use std::sync::OnceLock;

/// The instruction sets a clone may use, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Generic,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Generic => "generic",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512dq") && has!("avx512vl") && has!("avx2") {
            return Level::Avx512;
        }
        if has!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Generic
}

/// The path the tile loops take: the best the CPU has, capped by `$NTKGAN_SIMD` (`generic`, `avx2`,
/// `avx512`; read once) so that tests can compare the paths.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("NTKGAN_SIMD").as_deref() {
            Ok("generic") => Level::Generic,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

/// `$name(args)` runs `$imp(args)` compiled with AVX-512 or AVX2 when [`level`] allows, else the
/// baseline build of the same `#[inline(always)]` body.
#[macro_export]
macro_rules! simd_dispatch {
    ($name:ident, $imp:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
                unsafe fn avx512($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: level() reports only what the CPU supports.
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Generic => {}
                }
            }
            $imp($($arg),*)
        }
    };
}
