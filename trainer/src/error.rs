//! Typed training errors: each names what was wrong and what was expected.

use std::path::PathBuf;

/// Everything that can stop a training run, an evaluation or a checkpoint read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, devices, a file of tensors).
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
    /// The data could not be found, read or batched.
    #[error(transparent)]
    Data(#[from] datasets::Error),
    /// The model spec does not build (invalid spec, shapes that do not fit).
    #[error(transparent)]
    Build(#[from] topology::BuildError),
    /// Communication between the ranks of a data-parallel job failed.
    #[error(transparent)]
    Collective(#[from] collective::Error),
    /// A setting of the run is out of range or inconsistent (the message says which).
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The data's images are not the size the model takes.
    #[error(
        "the data's images are {got}, but model `{model}` takes {expected} \
         (channels×height×width; pick a model for this input size or resize the data)"
    )]
    ImageSize {
        /// The model's name.
        model: String,
        /// The input the model takes, `C×H×W`.
        expected: String,
        /// The data's image size, `C×H×W`.
        got: String,
    },
    /// The data has another number of classes than the model has outputs.
    #[error(
        "the data has {got} classes, but model `{model}` has {expected} outputs \
         (set the spec's num_classes to {got})"
    )]
    ClassCount {
        /// The model's name.
        model: String,
        /// The model's number of outputs.
        expected: usize,
        /// The data's number of classes.
        got: usize,
    },
    /// A checkpoint file is missing, corrupt, foreign or does not fit the model.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint file (or the run folder that lacks one).
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A model named on a command line is neither a preset, a spec file, a run folder nor a
    /// checkpoint ([`crate::load_model`]). The message names it once and lists what is accepted.
    #[error(
        "unknown model `{given}`: expected a preset ({}), or the path of a model spec JSON file, \
         a training run's folder or a .safetensors checkpoint (no file or folder has that name)",
        .presets.join(", ")
    )]
    UnknownModel {
        /// What was given.
        given: String,
        /// The zoo's preset names.
        presets: Vec<String>,
    },
    /// A file given as a model spec is not one.
    #[error("spec file {path}: {msg}")]
    SpecFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The loss became NaN or infinite; nothing was written for that step.
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}; the run stopped and {} \
         (try a lower learning rate or gradient clipping)",
        kept_note(*.kept)
    )]
    NonFiniteLoss {
        /// The epoch it happened in.
        epoch: u64,
        /// The optimiser step it happened at.
        step: u64,
        /// The loss value (NaN or infinite).
        loss: f32,
        /// The step of the checkpoint left in place, if any was written.
        kept: Option<u64>,
    },
    /// A parameter became NaN or infinite before a checkpoint or evaluation.
    #[error(
        "parameter `{tensor}` became non-finite at epoch {epoch}, step {step}; the run stopped \
         and {} (try a lower learning rate or gradient clipping)",
        kept_note(*.kept)
    )]
    NonFiniteWeights {
        /// The first parameter found non-finite.
        tensor: String,
        /// The epoch it happened in.
        epoch: u64,
        /// The optimiser step it happened at.
        step: u64,
        /// The step of the checkpoint left in place, if any was written.
        kept: Option<u64>,
    },
    /// A resumed run's settings differ from the stored run's (see [`crate::resume`]).
    #[error(
        "{} holds a run made with other settings: {}; resume with the run's own settings (leave \
         those flags out), pass --allow-changes to continue with the new ones, or train into \
         another --out",
        .out.display(),
        .changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    )]
    ResumeConflict {
        /// The run folder.
        out: PathBuf,
        /// Every setting that differs from the stored run's.
        changes: Vec<crate::resume::ConfigChange>,
    },
    /// `--resume` was given for a folder that holds no checkpoint.
    #[error(
        "--resume: {} holds no run to resume (no {}); start it without --resume",
        .out.display(),
        crate::checkpoint::LATEST
    )]
    NothingToResume {
        /// The run folder given.
        out: PathBuf,
    },
    /// Another process is training into the same run folder ([`crate::run_lock`]).
    #[error(
        "{} is in use by another training run{}; wait for it to finish (then --resume), or \
         choose another output directory",
        out.display(),
        .pid.map_or(String::new(), |p| format!(" (process {p})"))
    )]
    RunInUse {
        /// The run folder.
        out: PathBuf,
        /// The process holding it, as it recorded itself (when readable).
        pid: Option<u32>,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error. Its text is part of this error's message, so it is not
        /// also this error's `source()`: printed with its causes, the reason appears once.
        error: std::io::Error,
    },
    /// A plot could not be drawn or written.
    #[error("cannot draw {path}")]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// The plotting library's error.
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
            error: source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The message with every cause under it, as `anyhow` prints an error (`{:#}`).
    fn with_causes(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    /// `xtask train --out /proc/nope` printed "I/O error on /proc/nope: No such file or directory
    /// (os error 2)" and then "Caused by: No such file or directory (os error 2)" again.
    #[test]
    fn an_io_error_names_the_path_and_the_reason_once() {
        let reason = std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing");
        let e = Error::io("/proc/nope", reason);
        assert_eq!(with_causes(&e), "I/O error on /proc/nope: no such thing");
        let data = Error::Data(datasets::Error::Io {
            path: "/data/x".into(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing"),
        });
        assert_eq!(with_causes(&data), "I/O error on /data/x: no such thing");
        let tensor = Error::Tensor(
            tensor::load_tensors(std::path::Path::new("/nonexistent/x.safetensors")).unwrap_err(),
        );
        let text = with_causes(&tensor);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
    }
}
