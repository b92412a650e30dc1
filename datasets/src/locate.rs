//! Where data lives and how to get it.
//!
//! Fashion-MNIST is looked for, in order, in:
//! 1. a directory the caller names (`--data-dir`); when given, it is the only place looked, so a
//!    typo is reported rather than silently replaced by another copy;
//! 2. `$CONVRNN_DATA_DIR` (the directory itself or its `fashion-mnist/` subdirectory);
//! 3. `/usr/share/datasets/fashion-mnist`, where Debian's `dataset-fashion-mnist` package installs it;
//! 4. the cache directory's `fashion-mnist/` ([`cache_dir`]).
//!
//! A directory qualifies when it holds all four IDX files, each gzipped or plain. When none does, the
//! error lists every path tried and the command that installs the data. This crate never
//! downloads anything.

use crate::idx::FASHION_MNIST_FILES;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable naming a directory that holds Fashion-MNIST's four IDX files.
pub const ENV_DATA_DIR: &str = "CONVRNN_DATA_DIR";
/// The environment variable overriding where generated data and caches go ([`cache_dir`]).
pub const ENV_CACHE_DIR: &str = "CONVRNN_CACHE_DIR";
/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The Debian package that ships Fashion-MNIST.
pub const FASHION_MNIST_PACKAGE: &str = "dataset-fashion-mnist";
/// The command that installs Fashion-MNIST on Debian (as root; prefix `sudo` otherwise).
pub const FASHION_MNIST_INSTALL: &str = "apt-get install dataset-fashion-mnist";

/// Where this project keeps generated data (the clutter variant) and user-provided copies:
/// `$CONVRNN_CACHE_DIR`, else `$XDG_CACHE_HOME/convrnn`, else `$HOME/.cache/convrnn`, else
/// `convrnn-cache` in the system temporary directory.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env(ENV_CACHE_DIR) {
        return d;
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("convrnn");
    }
    if let Some(d) = env("HOME") {
        return d.join(".cache").join("convrnn");
    }
    std::env::temp_dir().join("convrnn-cache")
}

/// Where generated clutter sets are cached: `cache_dir()/clutter`.
pub fn clutter_cache_dir() -> PathBuf {
    cache_dir().join("clutter")
}

/// The places to look, made explicit so tests (and tools that print them) need not touch the
/// process environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    /// A directory given on the command line or in a config, tried first.
    pub explicit: Option<PathBuf>,
    /// `$CONVRNN_DATA_DIR`, tried second.
    pub env_dir: Option<PathBuf>,
    /// System-wide install locations (the Debian path), tried next.
    pub system_dirs: Vec<PathBuf>,
    /// This project's cache directory, tried last.
    pub cache_dir: PathBuf,
}

impl Locator {
    /// The standard search: `explicit`, then `$CONVRNN_DATA_DIR`, the Debian path and the cache.
    pub fn from_env(explicit: Option<&Path>) -> Self {
        Locator {
            explicit: explicit.map(Path::to_path_buf),
            env_dir: std::env::var_os(ENV_DATA_DIR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            system_dirs: vec![PathBuf::from(DEBIAN_FASHION_MNIST_DIR)],
            cache_dir: cache_dir(),
        }
    }

    /// Every directory that would be tried for Fashion-MNIST, in order.
    pub fn fashion_mnist_candidates(&self) -> Vec<PathBuf> {
        let with_sub = |d: &Path| vec![d.to_path_buf(), d.join("fashion-mnist")];
        if let Some(d) = &self.explicit {
            return with_sub(d);
        }
        let mut out = Vec::new();
        if let Some(d) = &self.env_dir {
            out.extend(with_sub(d));
        }
        out.extend(self.system_dirs.iter().cloned());
        out.push(self.cache_dir.join("fashion-mnist"));
        out
    }

    /// The first candidate directory holding all four Fashion-MNIST files.
    pub fn fashion_mnist(&self) -> Result<PathBuf> {
        let candidates = self.fashion_mnist_candidates();
        if let Some(d) = candidates.iter().find(|d| has_fashion_mnist(d)) {
            return Ok(d.clone());
        }
        let mut hint = String::new();
        for d in &candidates {
            let missing: Vec<&str> = FASHION_MNIST_FILES
                .iter()
                .copied()
                .filter(|stem| find_idx_file(d, stem).is_none())
                .collect();
            if missing.len() < FASHION_MNIST_FILES.len() {
                hint.push_str(&format!(
                    "{} holds some of the files but lacks {}.\n",
                    d.display(),
                    missing.join(", ")
                ));
            }
        }
        hint.push_str(&fashion_mnist_hint());
        Err(Error::NotFound {
            what: "Fashion-MNIST".into(),
            tried: candidates,
            hint,
        })
    }
}

/// Whether `dir` holds all four Fashion-MNIST files (gzipped or plain).
pub fn has_fashion_mnist(dir: &Path) -> bool {
    FASHION_MNIST_FILES
        .iter()
        .all(|stem| find_idx_file(dir, stem).is_some())
}

/// `dir/stem.gz` or `dir/stem`, whichever is a file (gzipped preferred).
pub(crate) fn find_idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|p| p.is_file())
}

pub(crate) fn fashion_mnist_hint() -> String {
    format!(
        "Install it with `{FASHION_MNIST_INSTALL}` (Debian/Ubuntu, as root; `sudo {FASHION_MNIST_INSTALL}` \
         otherwise), which puts the files in {DEBIAN_FASHION_MNIST_DIR}; or put the four files ({}, \
         each optionally .gz) in a directory and name it with --data-dir DIR or {ENV_DATA_DIR}=DIR.",
        FASHION_MNIST_FILES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locator(root: &Path, explicit: Option<PathBuf>, env: bool) -> Locator {
        Locator {
            explicit,
            env_dir: env.then(|| root.join("env")),
            system_dirs: vec![root.join("usr-share")],
            cache_dir: root.join("cache"),
        }
    }

    fn touch_all(dir: &Path, gz: bool) {
        std::fs::create_dir_all(dir).unwrap();
        for stem in FASHION_MNIST_FILES {
            let name = if gz {
                format!("{stem}.gz")
            } else {
                stem.to_string()
            };
            std::fs::write(dir.join(name), b"").unwrap();
        }
    }

    #[test]
    fn missing_data_error_lists_paths_and_install_command() {
        let root = tempfile::tempdir().unwrap();
        let loc = locator(root.path(), None, true);
        // A partial copy in the cache is named with what it lacks.
        std::fs::create_dir_all(root.path().join("cache/fashion-mnist")).unwrap();
        std::fs::write(
            root.path()
                .join("cache/fashion-mnist/train-images-idx3-ubyte.gz"),
            b"",
        )
        .unwrap();
        let msg = loc.fashion_mnist().unwrap_err().to_string();
        for p in [
            root.path().join("env"),
            root.path().join("env/fashion-mnist"),
            root.path().join("usr-share"),
            root.path().join("cache/fashion-mnist"),
        ] {
            assert!(msg.contains(&format!("  - {}\n", p.display())), "{msg}");
        }
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        assert!(msg.contains(ENV_DATA_DIR), "{msg}");
        assert!(
            msg.contains("lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte"),
            "{msg}"
        );
    }

    #[test]
    fn search_order_and_explicit_directory() {
        let root = tempfile::tempdir().unwrap();
        let loc = locator(root.path(), None, true);
        touch_all(&root.path().join("cache/fashion-mnist"), true);
        assert_eq!(
            loc.fashion_mnist().unwrap(),
            root.path().join("cache/fashion-mnist")
        );
        touch_all(&root.path().join("usr-share"), true);
        assert_eq!(loc.fashion_mnist().unwrap(), root.path().join("usr-share"));
        touch_all(&root.path().join("env/fashion-mnist"), false);
        assert_eq!(
            loc.fashion_mnist().unwrap(),
            root.path().join("env/fashion-mnist")
        );
        // A named directory is the only one looked at.
        let named = locator(root.path(), Some(root.path().join("mine")), true);
        let msg = named.fashion_mnist().unwrap_err().to_string();
        assert!(msg.contains(&root.path().join("mine").display().to_string()));
        assert!(!msg.contains("usr-share"), "{msg}");
        touch_all(&root.path().join("mine"), false);
        assert_eq!(named.fashion_mnist().unwrap(), root.path().join("mine"));
    }

    #[test]
    fn standard_locator_includes_debian_path() {
        let loc = Locator::from_env(None);
        assert!(loc
            .fashion_mnist_candidates()
            .contains(&PathBuf::from(DEBIAN_FASHION_MNIST_DIR)));
    }
}
