//! Typed errors: each says which file or setting was wrong, what was found and what was expected.

use std::path::PathBuf;

/// Everything that can go wrong reading, decoding, caching or batching a data set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {error}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error. Its text is part of this error's message, so it is not
        /// also this error's `source()`: printed with its causes, the reason appears once.
        error: std::io::Error,
    },
    /// A data file exists but its contents are not what its format promises (truncated, wrong magic,
    /// sizes that disagree).
    #[error("{path}: corrupt or truncated: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: String,
    },
    /// A data set's files are where we looked but hold the wrong number or size of images.
    #[error("{path}: unexpected contents: expected {expected}, found {found}")]
    Unexpected {
        /// The file or folder.
        path: PathBuf,
        /// What the data set should hold there (counts, sizes).
        expected: String,
        /// What it holds.
        found: String,
    },
    /// Nothing usable was found; the message lists every place tried and how to get the data.
    #[error("{what} not found. Tried:\n{tried}\n{hint}", tried = format_tried(.tried))]
    NotFound {
        /// The data set or file looked for.
        what: String,
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
        /// How to obtain the data (a download command, an environment variable).
        hint: String,
    },
    /// An image file could not be decoded (unsupported, truncated or not an image).
    #[error("cannot read image {path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// A setting or argument is out of its allowed range.
    #[error("{what}: {msg}")]
    InvalidArgument {
        /// The setting or argument.
        what: &'static str,
        /// What was given and what is allowed.
        msg: String,
    },
    /// A background loading or decoding thread panicked or hung up.
    #[error("the data-loading worker stopped unexpectedly: {0}")]
    Worker(String),
    /// A tensor could not be built from the decoded data.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

/// This crate's result type.
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
            error: source,
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
