//! Typed training errors: each names what was wrong and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
    #[error(transparent)]
    Data(#[from] datasets::Error),
    #[error(transparent)]
    Build(#[from] topology::BuildError),
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error(
        "the data's images are {got}, but model `{model}` takes {expected} \
         (channels×height×width; pick a model for this input size or resize the data)"
    )]
    ImageSize {
        model: String,
        expected: String,
        got: String,
    },
    #[error(
        "the data has {got} classes, but model `{model}` has {expected} outputs \
         (set the spec's num_classes to {got})"
    )]
    ClassCount {
        model: String,
        expected: usize,
        got: usize,
    },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}; the run stopped and the \
         last good checkpoint was kept (try a lower learning rate or gradient clipping)"
    )]
    NonFiniteLoss { epoch: u64, step: u64, loss: f32 },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
