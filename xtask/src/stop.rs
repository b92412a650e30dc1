//! Stop requests by signal, for the commands that train (`train`, `demo`, `figures`) and for the
//! `--nproc` parent that starts local ranks.
//!
//! A training process finishes its batch, writes a checkpoint and exits 130 on the first SIGINT
//! (Ctrl-C), SIGTERM (a scheduler's preemption, `scancel`) or SIGHUP (a closed SSH session); a
//! second one of those exits at once, without a checkpoint, as PyTorch's and most tools' Ctrl-C
//! does. SIGUSR1 (SLURM's `--signal=USR1@SECONDS`, the convention PyTorch Lightning and
//! submitit use before a time limit) asks for the same graceful stop but never escalates: the
//! `--nproc` parent forwards its own stop signals as SIGUSR1, so that a rank reached both by a
//! terminal's Ctrl-C (the whole process group) and by the parent's forwarding still checkpoints.

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The exit status of a run stopped by a signal (128 + SIGINT, as a shell reports Ctrl-C).
pub const STOPPED: i32 = 130;

/// The signals that stop a run and escalate when repeated.
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The signal the `--nproc` parent forwards: a stop that never escalates.
pub const FORWARDED: i32 = SIGUSR1;

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// What a training process does with a signal, given whether an escalating stop signal came
/// before it.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Raise the stop flag: finish the batch, checkpoint, exit.
    Stop,
    /// Exit now, without a checkpoint.
    Exit,
}

fn action(signal: i32, escalating_seen_before: bool) -> Action {
    if signal != FORWARDED && escalating_seen_before {
        Action::Exit
    } else {
        Action::Stop
    }
}

/// A flag raised by SIGINT, SIGTERM, SIGHUP or SIGUSR1 (a second SIGINT, SIGTERM or SIGHUP exits
/// at once). Call once per process.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new(STOP_SIGNALS.iter().chain([&FORWARDED]))
        .context("installing the handler for Ctrl-C, SIGTERM, SIGHUP and SIGUSR1")?;
    let f = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut escalating_seen = false;
            for signal in signals.forever() {
                match action(signal, escalating_seen) {
                    Action::Exit => {
                        eprintln!("\nsecond stop signal: exiting without a checkpoint");
                        std::process::exit(STOPPED);
                    }
                    Action::Stop => {
                        escalating_seen |= signal != FORWARDED;
                        if !f.swap(true, Ordering::SeqCst) {
                            eprintln!(
                                "\nstop signal ({}): finishing the current batch, then writing \
                                 a checkpoint",
                                name(signal)
                            );
                        }
                    }
                }
            }
        })
        .context("starting the thread that handles stop signals")?;
    Ok(flag)
}

/// The stop signals the `--nproc` parent has received, which it passes on to its ranks instead
/// of stopping itself.
#[derive(Default)]
pub struct Received {
    /// SIGINT, SIGTERM, SIGHUP: the first is passed on as SIGUSR1, a second kills the ranks.
    pub escalating: AtomicUsize,
    /// SIGUSR1 (SLURM's `--signal` reaches every process of the step, this parent included,
    /// where its default action would end the parent before the ranks have checkpointed).
    pub forwarded: AtomicUsize,
}

/// Counts the stop signals this process receives, for the `--nproc` parent.
pub fn count_stop_signals() -> Result<Arc<Received>> {
    let received = Arc::new(Received::default());
    let mut signals = Signals::new(STOP_SIGNALS.iter().chain([&FORWARDED]))
        .context("installing the handler for Ctrl-C, SIGTERM, SIGHUP and SIGUSR1")?;
    let r = Arc::clone(&received);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let counter = if signal == FORWARDED {
                    &r.forwarded
                } else {
                    &r.escalating
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .context("starting the thread that handles stop signals")?;
    Ok(received)
}

/// Sends `signal` to the process `pid` (a rank this process started and has not yet reaped, so
/// the id cannot have been reused).
pub fn send(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory effects; a failure (the process just ended) is harmless.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_stop_signal_exits_but_a_forwarded_one_never_does() {
        for s in STOP_SIGNALS {
            assert_eq!(action(s, false), Action::Stop);
            assert_eq!(action(s, true), Action::Exit);
        }
        assert_eq!(action(FORWARDED, false), Action::Stop);
        assert_eq!(action(FORWARDED, true), Action::Stop);
    }
}
