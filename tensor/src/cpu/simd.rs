//! Runtime dispatch to code compiled for wider vector instructions. The workspace builds for
//! baseline x86-64 (SSE2) so that one binary runs everywhere; the loops that matter run through
//! [`dispatch`], which compiles them a second time for AVX2 + FMA and picks that copy when the CPU
//! has them. LLVM does not contract `a * b + c` into an FMA on its own, so both copies round the
//! same way and give identical results (the tests compare them bit for bit, each copy run
//! explicitly through [`run_as`], whatever the CPU running them would pick).
//!
//! An AVX-512F copy was tried (2026-12-06, Ice Lake Xeon, 2 cores shared with other work): the
//! training of `rgc_shallow` took no less CPU time with it (`xtask bench unroll --model
//! rgc_shallow --size 96 --steps 16 --iters 2`, five pairs back to back: 33.8 s user+sys mean
//! against 32.6 with the AVX2 copy, each ahead in some pairs), so it is not compiled: the
//! elementwise loops are a small share of the time and mostly bound by memory.

/// The instruction sets [`dispatch`] compiles for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Baseline x86-64 (or any other architecture).
    Baseline,
    /// AVX2 and FMA: 8 lanes of f32.
    Avx2Fma,
}

impl Isa {
    /// The widest instruction set this CPU has (the answer is cached by the standard library).
    #[inline]
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Baseline
    }

    /// Whether this CPU can run code compiled for `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Baseline => true,
            Isa::Avx2Fma => Self::detect() == Isa::Avx2Fma,
        }
    }
}

/// Whether this CPU has AVX2 and FMA.
#[inline]
pub fn has_avx2_fma() -> bool {
    Isa::detect() != Isa::Baseline
}

/// Runs `f`, compiled for the widest instruction set the CPU has. `f` must be a small closure
/// around a loop (it is inlined into each copy; what it calls should be `#[inline]` too).
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    run_as(Isa::detect(), f).unwrap_or_else(|f| f())
}

/// Runs `f` compiled for `isa`, or gives it back when this CPU lacks `isa` (for the tests that
/// compare the copies).
#[inline(always)]
pub fn run_as<R, F: FnOnce() -> R>(isa: Isa, f: F) -> Result<R, F> {
    if !isa.available() {
        return Err(f);
    }
    match isa {
        Isa::Baseline => Ok(f()),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` checked that the CPU supports every feature `avx2_fma` is
        // compiled with.
        Isa::Avx2Fma => Ok(unsafe { avx2_fma(f) }),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => Err(f),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::fastmath;
    use crate::ops::UnaryOp;

    const ALL: [Isa; 2] = [Isa::Baseline, Isa::Avx2Fma];

    /// Inputs across the ranges that matter: tails, around 0, odd length (a vector remainder).
    fn inputs() -> Vec<f32> {
        (0..1001).map(|i| i as f32 * 0.037 - 18.5).collect()
    }

    /// `f` over `x` in each ISA this CPU has, all equal bit for bit; how many ran.
    fn same_in_every_isa(x: &[f32], f: impl Fn(f32) -> f32 + Copy) -> usize {
        let loop_ = || x.iter().map(|&v| f(v)).collect::<Vec<f32>>();
        let want: Vec<u32> = loop_().iter().map(|v| v.to_bits()).collect();
        let mut ran = 0;
        for isa in ALL {
            if let Ok(got) = run_as(isa, loop_) {
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "{isa:?}");
                ran += 1;
            }
        }
        ran
    }

    #[test]
    fn every_copy_computes_the_same_bits() {
        let x = inputs();
        let ops = [
            UnaryOp::Exp,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Elu,
            UnaryOp::Sqrt,
            UnaryOp::Recip,
        ];
        for op in ops {
            same_in_every_isa(&x, move |v| op.apply(v));
        }
        same_in_every_isa(&x, fastmath::exp);
        same_in_every_isa(&x, fastmath::sigmoid);
        let ran = same_in_every_isa(&x, |v| v * 3.0 + 1.0);
        assert_eq!(ran, ALL.iter().filter(|i| i.available()).count());
    }

    #[test]
    fn the_widest_available_copy_is_dispatched() {
        let widest = Isa::detect();
        assert!(widest.available() && Isa::Baseline.available());
        assert_eq!(has_avx2_fma(), Isa::Avx2Fma.available());
        // A copy the CPU lacks hands the closure back.
        for isa in ALL.into_iter().filter(|i| !i.available()) {
            assert!(run_as(isa, || 1).is_err(), "{isa:?}");
        }
        let x = inputs();
        let plain: Vec<f32> = x.iter().map(|v| v * 3.0 + 1.0).collect();
        let fast = dispatch(|| x.iter().map(|v| v * 3.0 + 1.0).collect::<Vec<f32>>());
        assert_eq!(plain, fast);
    }
}
