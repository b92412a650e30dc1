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
    /// Communication between the ranks of a data-parallel job failed.
    #[error(transparent)]
    Collective(#[from] collective::Error),
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
    /// A model named on a command line is neither a preset, a spec file, a run folder nor a
    /// checkpoint ([`crate::load_model`]).
    #[error(
        "model `{given}`: not a preset, a spec file, a run directory or a checkpoint ({presets})"
    )]
    UnknownModel {
        /// What was given.
        given: String,
        /// The zoo's answer for that name (the presets it knows).
        presets: String,
    },
    /// A file given as a model spec is not one.
    #[error("spec file {path}: {msg}")]
    SpecFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}; the run stopped and {} \
         (try a lower learning rate or gradient clipping)",
        kept_note(*.kept)
    )]
    NonFiniteLoss {
        epoch: u64,
        step: u64,
        loss: f32,
        /// The step of the checkpoint left in place, if any was written.
        kept: Option<u64>,
    },
    #[error(
        "parameter `{tensor}` became non-finite at epoch {epoch}, step {step}; the run stopped \
         and {} (try a lower learning rate or gradient clipping)",
        kept_note(*.kept)
    )]
    NonFiniteWeights {
        tensor: String,
        epoch: u64,
        step: u64,
        kept: Option<u64>,
    },
    #[error(
        "{} holds a run made with other settings: {}; resume with the run's own settings (leave \
         those flags out), pass --allow-changes to continue with the new ones, or train into \
         another --out",
        .out.display(),
        .changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    )]
    ResumeConflict {
        out: PathBuf,
        changes: Vec<crate::resume::ConfigChange>,
    },
    #[error(
        "--resume: {} holds no run to resume (no {}); start it without --resume",
        .out.display(),
        crate::checkpoint::LATEST
    )]
    NothingToResume { out: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {path}")]
    Plot {
        path: PathBuf,
        #[source]
        source: plots::PlotError,
    },
}

/// What a diverged run left behind, for its error message.
fn kept_note(kept: Option<u64>) -> String {
    match kept {
        Some(step) => format!("the last good checkpoint (step {step}) was kept"),
        None => "no checkpoint had been written yet, so none was kept".into(),
    }
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
