//! Denormal floats on the CPU: flushed to zero by default, as TensorFlow does on its CPU threads.
//!
//! A float under 2⁻¹²⁶ (about 1.2e-38) is *denormal*; x86 cores compute with one through a
//! microcode assist that costs on the order of a hundred cycles per operation instead of one.
//! Recurrent cells make them: gates saturate, states decay by a factor under one each step, and
//! the gradients through time shrink towards zero, so a training run can slow down several-fold
//! late in its course for no visible reason. Setting the SSE control register's FTZ (results that
//! would be denormal become zero) and DAZ (denormal inputs read as zero) bits removes the assists;
//! the numbers change only where a value was already below 1.2e-38.
//!
//! The bits live in each thread's MXCSR register and a new thread starts with its creator's:
//! programs call [`configure_main_thread`] first thing, and library entry points (training,
//! evaluation) call [`configure_process`], which also reaches rayon's global pool if it already
//! runs; the OpenMP threads oneDNN starts later inherit the bits from the thread that starts them.
//! `CONVRNN_DENORMALS=keep` leaves the hardware's default (IEEE gradual underflow) everywhere.

/// The environment variable that chooses [`Denormals`] (`flush`, the default, or `keep`).
pub const DENORMALS_ENV: &str = "CONVRNN_DENORMALS";

/// What the CPU does with floats too small to be normal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denormals {
    /// Flush denormal results and inputs to zero (FTZ + DAZ): full speed.
    Flush,
    /// IEEE gradual underflow, the hardware's default: exact, and slow on denormal operands.
    Keep,
}

impl Denormals {
    /// The mode `CONVRNN_DENORMALS` asks for (flush when unset).
    pub fn from_env() -> Result<Denormals, String> {
        match std::env::var(DENORMALS_ENV) {
            Err(_) => Ok(Denormals::Flush),
            Ok(v) => v.parse(),
        }
    }

    /// The name `CONVRNN_DENORMALS` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Denormals::Flush => "flush",
            Denormals::Keep => "keep",
        }
    }
}

impl std::str::FromStr for Denormals {
    type Err = String;
    fn from_str(s: &str) -> Result<Denormals, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flush" => Ok(Denormals::Flush),
            "keep" => Ok(Denormals::Keep),
            other => Err(format!(
                "{DENORMALS_ENV}={other:?} is not a denormal mode; expected `flush` (the default: \
                 flush denormal floats to zero, full speed) or `keep` (IEEE gradual underflow)"
            )),
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod mxcsr {
    /// Flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

    fn read() -> u32 {
        let mut v: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit control register to the given address; SSE is part
        // of every x86-64 CPU.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags));
        }
        v
    }

    fn write(v: u32) {
        // SAFETY: `ldmxcsr` loads the control register; only the FTZ/DAZ bits are changed from
        // the value just read, so rounding mode and exception masks stay as they were.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags));
        }
    }

    pub fn set(flush: bool) {
        let v = read();
        write(if flush { v | FTZ_DAZ } else { v & !FTZ_DAZ });
    }

    pub fn flushing() -> bool {
        read() & FTZ_DAZ == FTZ_DAZ
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
mod mxcsr {
    // Other architectures keep their default; AArch64's FPCR.FZ could be set the same way.
    pub fn set(_flush: bool) {}
    pub fn flushing() -> bool {
        false
    }
}

/// Sets `mode` on the calling thread only (threads it starts later inherit it).
pub fn set_this_thread(mode: Denormals) {
    mxcsr::set(mode == Denormals::Flush);
}

/// Whether the calling thread flushes denormals to zero.
pub fn this_thread_flushes() -> bool {
    mxcsr::flushing()
}

/// Sets the mode `CONVRNN_DENORMALS` asks for on the calling thread only: at the top of a
/// program's `main`, before any thread starts, every thread of the process inherits it (rayon's
/// pools, oneDNN's OpenMP threads, loader threads) without starting any thread itself.
pub fn configure_main_thread() -> Result<Denormals, String> {
    let mode = Denormals::from_env()?;
    set_this_thread(mode);
    Ok(mode)
}

/// Sets the mode `CONVRNN_DENORMALS` asks for on the calling thread and on every thread of
/// rayon's global pool. Call it before the first tensor operation, from a thread outside rayon's
/// pool (a program's main thread); inside the pool it sets only the calling thread, since waiting
/// for the pool from within it could deadlock. Cheap (one task per pool thread), so entry points
/// may call it every time. An invalid `CONVRNN_DENORMALS` is an error naming the values it takes.
pub fn configure_process() -> Result<Denormals, String> {
    let mode = Denormals::from_env()?;
    set_this_thread(mode);
    if rayon::current_thread_index().is_none() {
        rayon::broadcast(|_| set_this_thread(mode));
    }
    Ok(mode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The smallest normal f32 halved is denormal; black_box keeps the product at run time.
    fn half_of_smallest_normal() -> f32 {
        std::hint::black_box(f32::MIN_POSITIVE) * std::hint::black_box(0.5f32)
    }

    #[test]
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn flush_makes_denormal_results_zero_and_keep_restores_gradual_underflow() {
        // Run on a thread of its own so the test harness's thread keeps its state.
        std::thread::spawn(|| {
            set_this_thread(Denormals::Keep);
            assert!(!this_thread_flushes());
            let kept = half_of_smallest_normal();
            assert!(kept > 0.0 && !kept.is_normal(), "{kept:e}");
            set_this_thread(Denormals::Flush);
            assert!(this_thread_flushes());
            assert_eq!(half_of_smallest_normal(), 0.0);
            // DAZ: a denormal operand reads as zero.
            assert_eq!(std::hint::black_box(kept) * 4.0, 0.0);
            set_this_thread(Denormals::Keep);
            assert_eq!(half_of_smallest_normal(), kept);
        })
        .join()
        .unwrap();
    }

    #[test]
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn threads_started_later_inherit_the_mode() {
        std::thread::spawn(|| {
            set_this_thread(Denormals::Flush);
            let child = std::thread::spawn(this_thread_flushes).join().unwrap();
            set_this_thread(Denormals::Keep);
            let child_kept = std::thread::spawn(this_thread_flushes).join().unwrap();
            assert!(child && !child_kept);
        })
        .join()
        .unwrap();
    }

    #[test]
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn configure_process_reaches_every_thread_of_rayon_s_pool() {
        // The test binary's environment leaves CONVRNN_DENORMALS unset: flush.
        if std::env::var_os(DENORMALS_ENV).is_some() {
            return;
        }
        std::thread::spawn(|| {
            assert_eq!(configure_process().unwrap(), Denormals::Flush);
            let all = rayon::broadcast(|_| this_thread_flushes());
            assert!(all.iter().all(|&f| f), "{all:?}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn modes_parse_and_a_wrong_one_names_the_choices() {
        assert_eq!("flush".parse::<Denormals>().unwrap(), Denormals::Flush);
        assert_eq!(" Keep ".parse::<Denormals>().unwrap(), Denormals::Keep);
        let e = "ftz".parse::<Denormals>().unwrap_err();
        assert!(
            e.contains("\"ftz\"") && e.contains("`flush`") && e.contains("`keep`"),
            "{e}"
        );
        for m in [Denormals::Flush, Denormals::Keep] {
            assert_eq!(m.as_str().parse::<Denormals>().unwrap(), m);
        }
    }
}
