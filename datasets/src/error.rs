//! Typed errors: each says which file or setting was wrong, what was found and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file exists but its contents are not what its format promises (truncated, wrong magic,
    /// sizes that disagree).
    #[error("{path}: corrupt or truncated: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A data set's files are where we looked but hold the wrong number or size of images.
    #[error("{path}: unexpected contents: expected {expected}, found {found}")]
    Unexpected {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Nothing usable was found; the message lists every place tried and how to get the data.
    #[error("{what} not found. Tried:\n{tried}\n{hint}", tried = format_tried(.tried))]
    NotFound {
        what: String,
        tried: Vec<PathBuf>,
        hint: String,
    },
    #[error("cannot read image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{what}: {msg}")]
    InvalidArgument { what: &'static str, msg: String },
    #[error("the data-loading worker stopped unexpectedly: {0}")]
    Worker(String),
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn format_tried(tried: &[PathBuf]) -> String {
    tried
        .iter()
        .map(|p| format!("  - {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            msg: msg.into(),
        }
    }
}
