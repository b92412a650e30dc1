//! A damaged recording must be an error, never a crash. libhdf5 (1.10 as Debian and Ubuntu ship it)
//! trusts some metadata it reads: a flipped bit in a global-heap collection (where variable-length
//! strings live) makes `H5HG_read` read out of bounds and the process dies with SIGSEGV, which no
//! Rust code can catch. So each read is first tried in a forked child process: if the child dies by
//! a signal, the caller gets an error naming the file and the signal; otherwise the file is read
//! again in this process (from the page cache), with the same result and the same errors it would
//! have had. The price is one `fork` and a second read of the file per recording.
//!
//! The fork happens while holding the hdf5 crate's (reentrant) library lock, so no other thread of
//! this process is inside libhdf5 at that moment; the child (which has only the forking thread)
//! runs the read without ever releasing that lock, so its hdf5 calls re-enter a lock it owns. The child ends with `_exit`, running no destructors, atexit handlers or
//! buffered-output flushes of the parent's state, and writes no core file.

use std::path::Path;

use crate::error::{NeurofitError, Result};

/// How the trial read in the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildOutcome {
    /// It returned (with a value or an error: the read in this process says which).
    Returned,
    /// It panicked (so will the read in this process, where the caller can catch it).
    Panicked,
    /// It was killed by this signal.
    Signal(i32),
}

/// Runs `read` in a forked child first; a child killed by a signal becomes an error naming `path`,
/// anything else runs `read` in this process and returns its result. Where no child can be
/// started (no `fork`, out of memory or processes), `read` runs in this process only.
pub(crate) fn read_guarded<T>(path: &Path, read: impl Fn() -> Result<T>) -> Result<T> {
    match outcome_in_child(|| read().is_ok()) {
        Some(ChildOutcome::Signal(sig)) => Err(NeurofitError::File {
            path: path.to_path_buf(),
            reason: format!(
                "reading it crashed the HDF5 library ({}) in a child process that tried the file \
                 first: the file is damaged (docs/RELIABILITY.md)",
                signal_name(sig)
            ),
        }),
        _ => read(),
    }
}

/// Runs `f` in a forked child and says how it ended; `None` when no child could be started.
#[cfg(unix)]
pub(crate) fn outcome_in_child(f: impl FnOnce() -> bool) -> Option<ChildOutcome> {
    // The child runs `f` inside the library lock's closure and `_exit`s there: it must never
    // release that lock, since other threads of the parent may have been waiting on it at the fork,
    // and releasing it would hand it to a thread that does not exist in the child. Inside, the
    // reentrant lock sees its owner (this thread) and lets `f`'s hdf5 calls through.
    //
    // The child first closes every descriptor it inherited and says so through a pipe; the parent
    // keeps the library lock until then. HDF5 locks its files with `flock`, which a forked copy
    // of a descriptor shares: a child still holding another thread's file would make that thread's
    // next open of it fail ("unable to lock file"). No file can be opened or closed through hdf5
    // while the parent holds the lock.
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let [ready_r, ready_w] = pipe;
    let pid = hdf5::sync::sync(|| {
        // SAFETY: the child runs only what follows and then `_exit`s (see above).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            close_inherited(ready_w);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain system calls on values that live across them.
            unsafe {
                libc::write(ready_w, [1u8].as_ptr().cast(), 1);
                libc::close(ready_w);
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            }
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(_) => 2,
            };
            // SAFETY: ends the child without returning into the parent's state.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: our own pipe's descriptors; the read ends at the child's byte or at its death.
        unsafe {
            libc::close(ready_w);
            if pid > 0 {
                let mut byte = 0u8;
                while libc::read(ready_r, (&mut byte as *mut u8).cast(), 1) < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                }
            }
            libc::close(ready_r);
        }
        pid
    });
    if pid < 0 {
        return None;
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing its status into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // Reaped elsewhere (a SIGCHLD handler of the application): nothing known.
            return None;
        }
    }
    Some(if libc::WIFSIGNALED(status) {
        ChildOutcome::Signal(libc::WTERMSIG(status))
    } else if libc::WEXITSTATUS(status) == 2 {
        ChildOutcome::Panicked
    } else {
        ChildOutcome::Returned
    })
}

/// Closes every descriptor above stderr except `keep` (in the child, before it reads).
#[cfg(unix)]
fn close_inherited(keep: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors; the ranges leave 0..=2 and `keep` open.
        let ok = unsafe {
            (keep <= 3 || libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32) == 0)
                && libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) == 0
        };
        if ok {
            return;
        }
    }
    // SAFETY: as above (kernels before close_range); closing an unused number is harmless.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 65_536) as i32;
    for fd in (3..max).filter(|&fd| fd != keep) {
        // SAFETY: see above.
        unsafe { libc::close(fd) };
    }
}

/// Without `fork`, reads run in this process only.
#[cfg(not(unix))]
pub(crate) fn outcome_in_child(_f: impl FnOnce() -> bool) -> Option<ChildOutcome> {
    None
}

fn signal_name(sig: i32) -> String {
    #[cfg(unix)]
    {
        let name = match sig {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGABRT => "SIGABRT",
            libc::SIGFPE => "SIGFPE",
            libc::SIGILL => "SIGILL",
            libc::SIGKILL => "SIGKILL",
            _ => "",
        };
        if !name.is_empty() {
            return format!("signal {sig}, {name}");
        }
    }
    format!("signal {sig}")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Ends this process the way a segmentation fault does (Rust's own SIGSEGV handler, there to
    /// report stack overflows, would return from a raised signal, so the default comes back first).
    fn segfault() {
        // SAFETY: plain signal calls.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        }
    }

    #[test]
    fn a_child_killed_by_a_signal_is_reported_and_this_process_lives() {
        let got = outcome_in_child(|| {
            segfault();
            true
        });
        assert_eq!(got, Some(ChildOutcome::Signal(libc::SIGSEGV)));
        assert_eq!(outcome_in_child(|| true), Some(ChildOutcome::Returned));
        assert_eq!(outcome_in_child(|| false), Some(ChildOutcome::Returned));
        assert_eq!(
            outcome_in_child(|| panic!("in the child")),
            Some(ChildOutcome::Panicked)
        );
    }

    #[test]
    fn a_crashing_read_is_an_error_naming_the_file_and_others_run_here() {
        let path = Path::new("/data/rec.nc");
        let here = std::process::id();
        let e = read_guarded(path, || -> Result<u32> {
            if std::process::id() != here {
                segfault();
            }
            Ok(1)
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/data/rec.nc") && e.contains("SIGSEGV") && e.contains("damaged"),
            "{e}"
        );
        // The returned value comes from this process, not the child.
        assert_eq!(read_guarded(path, || Ok(std::process::id())).unwrap(), here);
        let e = read_guarded(path, || -> Result<()> {
            Err(NeurofitError::Assembly("bad".into()))
        });
        assert!(matches!(e, Err(NeurofitError::Assembly(m)) if m == "bad"));
    }
}
