//! `search`: hyperparameter and architecture search. A search space ([`space`]: named parameters
//! with domains and conditions); TPE sampling ([`tpe`]); pruning of poor trials ([`pruner`]); a
//! study shared by many workers through SQLite or PostgreSQL ([`store`], [`study`]); and the
//! results — a report with the accuracy-vs-size Pareto front and plots ([`report`]), and the
//! "median of the top K" parameters ([`median`]).
//!
//! None of that knows about ConvRNNs: the objective is any function of a trial's parameters. The
//! ConvRNN architecture space (the general RGC's knobs and feedback edges over a base
//! `ModelSpec`) and the median model are in [`convrnn`] (feature `convrnn`, on by default).
//!
//! A worker: open the storage ([`store::storage_from_url`]), open the study
//! ([`study::Study::open`] with a [`study::StudyConfig`]), and call
//! [`study::Study::run_worker`] with an objective that reads the trial's parameters
//! ([`study::TrialHandle::params`]), trains, and calls [`study::TrialHandle::report`] after
//! each epoch, returning [`study::TrialFailure::Pruned`] when told to. `examples/own_space.rs`
//! tunes gradient descent that way (`cargo run -p search --example own_space`).
//!
//! A study of one parameter in a SQLite file, run by one worker:
//!
//! ```
//! use search::{Direction, Domain, ParamSpace, SqliteStorage, Study, StudyConfig, TrialFailure};
//! use std::sync::Arc;
//!
//! let space = ParamSpace::new().with("x", Domain::Float { low: -3.0, high: 3.0, log: false });
//! let mut config = StudyConfig::new(space);
//! config.direction = Direction::Minimize;
//! let dir = tempfile::tempdir().expect("a temporary folder");
//! let storage = Arc::new(SqliteStorage::open(dir.path().join("study.db"))?);
//! let study = Study::open(storage, "parabola", config)?;
//! let summary = study.run_worker(12, &mut |trial| {
//!     let x = trial.params()["x"].as_f64().ok_or(TrialFailure::Failed("no x".into()))?;
//!     Ok((x - 1.0) * (x - 1.0))
//! })?;
//! assert_eq!(summary.complete, 12);
//! let report = study.report(3)?;
//! let best = report.best.and_then(|t| t.value).expect("a complete trial");
//! assert!(report.trials.iter().filter_map(|t| t.value).all(|v| v >= best));
//! # Ok::<(), search::SearchError>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "convrnn")]
pub mod convrnn;
pub mod median;
pub mod params;
pub mod pruner;
pub mod report;
pub mod space;
pub mod store;
pub mod study;
pub mod tpe;

pub use median::{median_params, top_trials};
pub use params::{Condition, Domain, ParamDef, ParamValue, Params};
pub use pruner::Pruner;
pub use report::SearchReport;
pub use space::{ParamSampler, ParamSpace, Space};
pub use store::{
    redact_url, storage_from_url, Direction, PostgresStorage, SqliteStorage, StalePolicy, Storage,
    TrialRecord, TrialState,
};
pub use study::{ShouldPrune, Study, StudyConfig, TrialFailure, TrialHandle, WorkerSummary};
pub use tpe::{Observation, RandomSampler, TpeConfig, TpeSampler};

/// What went wrong in a search. Failures of the database, the file system, JSON or plotting keep
/// the underlying error as their [`source`](std::error::Error::source) (print the chain with
/// [`store::error_chain`] or anyhow's `{:#}`); the message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The search space is malformed (an empty space, a repeated name, a bad domain…).
    #[error("search space: {0}")]
    Space(String),
    /// Trial parameters do not fit the space, or a request about them cannot be met.
    #[error("trial parameters: {0}")]
    Params(String),
    /// The parameters select a model that cannot be built.
    #[error("invalid architecture: {0}")]
    Invalid(String),
    /// The study store holds or was asked for something inconsistent (no such study, another
    /// configuration under the same name, an unknown URL…).
    #[error("study storage: {0}")]
    Storage(String),
    /// The SQLite database failed.
    #[error("SQLite `{path}`")]
    Sqlite {
        /// The database file.
        path: String,
        /// rusqlite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL server or client failed.
    #[error("PostgreSQL: {what}")]
    Postgres {
        /// What was being done (the URL is given without its password).
        what: String,
        /// The client's error (its own source says why: "Connection refused", …).
        #[source]
        source: postgres::Error,
    },
    /// A trial was re-queued while this worker ran it.
    #[error("trial {number} was taken over by another worker (this one was presumed dead)")]
    Lost {
        /// The trial's number.
        number: u64,
    },
    /// The objective reported NaN or an infinity.
    #[error("non-finite value {value} reported at step {step}")]
    NonFinite {
        /// The step (epoch) reported.
        step: u64,
        /// The value reported.
        value: f64,
    },
    /// Reading or writing a file failed.
    #[error("{what} `{path}`")]
    Io {
        /// What was being done ("writing", "creating the folder of"…).
        what: &'static str,
        /// The file or folder.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A value could not be turned into JSON or read back from it.
    #[error("{what}")]
    Json {
        /// What was being (de)serialised.
        what: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A chart could not be drawn.
    #[error("drawing `{path}`")]
    Plot {
        /// The SVG file it was meant for.
        path: std::path::PathBuf,
        /// The plotting error.
        #[source]
        source: plots::PlotError,
    },
}

impl SearchError {
    /// An [`SearchError::Io`] error, as a `map_err` argument.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> SearchError {
        let path = path.to_path_buf();
        move |source| SearchError::Io { what, path, source }
    }

    /// A [`SearchError::Json`] error, as a `map_err` argument.
    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> SearchError {
        let what = what.into();
        move |source| SearchError::Json { what, source }
    }
}

/// Replaces `path` with `contents` atomically (a synced temporary file in the same folder,
/// renamed over it), so a reader never sees half a report.
pub(crate) fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    atomic_file::write(path, contents)
}
