//! Runtime dispatch to code compiled for AVX2 and FMA. The workspace builds for baseline x86-64
//! (SSE2) so that one binary runs everywhere; the loops that matter run through [`dispatch`], which
//! compiles them a second time with the wider instructions and picks that copy when the CPU has
//! them. LLVM does not contract `a * b + c` into an FMA on its own, so both copies round the same
//! way and give identical results.

/// Whether this CPU has AVX2 and FMA (the answer is cached by the standard library).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f`, compiled for AVX2 and FMA when the CPU has them. `f` must be a small closure around
/// a loop (it is inlined into the AVX2 copy; what it calls should be `#[inline]` too).
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports every feature `avx2_fma` is compiled with.
        return unsafe { avx2_fma(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_returns_what_the_closure_computes() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32 * 0.01 - 5.0).collect();
        let plain: Vec<f32> = x.iter().map(|v| v * 3.0 + 1.0).collect();
        let fast = dispatch(|| x.iter().map(|v| v * 3.0 + 1.0).collect::<Vec<f32>>());
        assert_eq!(plain, fast);
    }
}
