//! Crash-safe file replacement: the new contents go to a temporary file in the target's folder,
//! which is synced and then renamed over the target (atomic on POSIX file systems), so a reader
//! sees the old file or the whole new one — never a mixture — whatever kills the writer.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("atomic-file-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("report.json");
//! atomic_file::write(&path, b"{\"v\": 1}")?;
//! atomic_file::write(&path, b"{\"v\": 2}")?;
//! assert_eq!(std::fs::read(&path)?, b"{\"v\": 2}");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Temporary files are named `.NAME.tmp-PID-N` (the workspace's fault-injection tests look for
//! leftovers by the `.tmp-` part). The folder is not created: a missing folder is an error, as
//! for [`std::fs::write`].
#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `contents` atomically.
///
/// # Errors
/// Any I/O error of the write, sync or rename (the old file is then untouched and no temporary
/// file is left), or `InvalidInput` when `path` names no file.
pub fn write(path: impl AsRef<Path>, contents: &[u8]) -> io::Result<()> {
    write_with(path.as_ref(), |f| f.write_all(contents))
}

/// Replaces `path` with what `fill` writes into the temporary file, atomically: for contents
/// streamed in pieces rather than held in one buffer.
///
/// # Errors
/// As [`write()`], and any error `fill` returns (the old file is then untouched).
pub fn write_with(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let path = path.as_ref();
    let tmp = temporary_path(path)?;
    let dir = folder_of(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // The temporary file may not exist (the open failed); either way nothing else is left.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename itself durable. Some file systems refuse to sync a folder; the contents are
    // already synced, so that is not worth failing a finished write over.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh temporary name beside `path`, unique within this process (counter) and across
/// processes (pid), so concurrent writers of one file never share a temporary file.
fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a path to a file", path.display()),
        )
    })?;
    Ok(folder_of(path).join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_whole_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a.json");
        write(&p, b"first, longer contents")?;
        write(&p, b"second")?;
        assert_eq!(fs::read(&p)?, b"second");
        assert_eq!(entries(dir.path()), ["a.json"]);
        Ok(())
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("ck.bin");
        write(&p, b"old")?;
        let err = write_with(&p, |f| {
            f.write_all(&[0xAB; 64])?;
            Err(io::Error::other("disk full"))
        })
        .err()
        .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("disk full"));
        assert_eq!(fs::read(&p)?, b"old");
        assert_eq!(entries(dir.path()), ["ck.bin"]);
        Ok(())
    }

    #[test]
    fn a_missing_folder_or_a_path_without_a_name_is_an_error() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let e = write(dir.path().join("no/such/dir/x"), b"x").err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        let e = write(Path::new("/"), b"x").err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
        Ok(())
    }

    #[test]
    fn temporaries_are_unique_and_beside_the_target() -> io::Result<()> {
        let a = temporary_path(Path::new("runs/x/m.safetensors"))?;
        let b = temporary_path(Path::new("runs/x/m.safetensors"))?;
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("runs/x")));
        let name = a.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(name.is_some_and(|n| n.starts_with(".m.safetensors.tmp-")));
        assert_eq!(
            temporary_path(Path::new("bare"))?.parent(),
            Some(Path::new("."))
        );
        Ok(())
    }
}
