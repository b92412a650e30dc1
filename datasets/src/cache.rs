//! Crash-safe file writes and the checksum that lets a reader reject a half-written file.

use crate::{Error, Result};
use std::path::Path;

/// Writes `bytes` to `path` so that a reader sees either the old file, no file, or the whole new
/// one: the data goes to a temporary file in the same directory, is flushed to disk, and is then
/// renamed over `path` (atomic on POSIX file systems).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if path.file_name().is_none() {
        return Err(Error::invalid(
            "atomic write",
            format!("{} has no file name", path.display()),
        ));
    }
    atomic_file::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// 64-bit FNV-1a: not cryptographic, but any truncation or bit flip in a cache payload changes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(0xcbf2_9ce4_8422_2325, bytes)
}

pub(crate) fn fnv1a64_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("sub").join("f.bin");
        atomic_write(&path, b"one")?;
        atomic_write(&path, b"two!")?;
        assert_eq!(
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
            b"two!"
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap_or(dir.path()))
            .map_err(|e| Error::io(dir.path(), e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        Ok(())
    }
}
