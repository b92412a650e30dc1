//! Live and peak bytes of tensor storage, per device kind.
//!
//! These counters are instrumentation (benchmarks report peak memory, tests check that graphs and
//! intermediates are freed); they never change what a computation does.

use std::sync::atomic::{AtomicUsize, Ordering};

static CPU_LIVE: AtomicUsize = AtomicUsize::new(0);
static CPU_PEAK: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn cpu_alloc(bytes: usize) {
    let live = CPU_LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    CPU_PEAK.fetch_max(live, Ordering::Relaxed);
}

pub(crate) fn cpu_free(bytes: usize) {
    CPU_LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

/// Bytes currently held by CPU tensor storage in this process.
pub fn cpu_live_bytes() -> usize {
    CPU_LIVE.load(Ordering::Relaxed)
}

/// Highest value of [`cpu_live_bytes`] since the last [`reset_cpu_peak`].
pub fn cpu_peak_bytes() -> usize {
    CPU_PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the current live size.
pub fn reset_cpu_peak() {
    CPU_PEAK.store(CPU_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}
