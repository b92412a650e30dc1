//! One training process per run folder. Two runs writing into the same folder (a job started
//! twice, a requeued batch job whose first copy still runs) interleaved their metrics and
//! checkpoints, and each one's clean-up of interrupted writes deleted the other's temporary files
//! mid-write. A run holds an exclusive `flock` on `RUN/.run.lock` while it trains; a second one
//! stops with [`Error::RunInUse`]. The kernel releases the lock when the process ends however it
//! ends (`kill -9` included), so a crash never leaves the folder locked; the file itself stays.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file in a run folder.
pub const LOCK_FILE: &str = ".run.lock";

/// Held for as long as the run trains; dropping it (or the process ending) releases the folder.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Locks the run folder `out` (which must exist) for this process. `Ok(None)` where the file
/// system cannot lock files (a warning on stderr: the run goes on unguarded, as before).
pub fn acquire(out: &Path) -> Result<Option<RunLock>> {
    let path = out.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: `file` is an open descriptor for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Err(Error::RunInUse {
                    out: out.to_path_buf(),
                    pid: text.trim().parse().ok(),
                })
            }
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS) => {
                eprintln!(
                    "warning: {} cannot be locked on this file system ({e}); nothing stops a \
                     second run from writing into {} at the same time",
                    path.display(),
                    out.display()
                );
                Ok(None)
            }
            _ => Err(Error::io(&path, e)),
        };
    }
    // Who holds it, for the other process's message; the lock is what matters, not this text.
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| write!(file, "{}", std::process::id()));
    Ok(Some(RunLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap().expect("tmp file systems lock");
        // A second open file description conflicts with the first, as another process would.
        let e = acquire(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::RunInUse { pid: Some(p), .. } if p == std::process::id()),
            "{msg}"
        );
        assert!(
            msg.contains("in use by another training run (process"),
            "{msg}"
        );
        drop(first);
        let again = acquire(dir.path()).unwrap();
        assert!(again.is_some());
    }
}
