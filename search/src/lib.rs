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
//! each epoch, returning [`study::TrialFailure::Pruned`] when told to.

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

/// What went wrong in a search.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("search space: {0}")]
    Space(String),
    #[error("trial parameters: {0}")]
    Params(String),
    #[error("invalid architecture: {0}")]
    Invalid(String),
    #[error("study storage: {0}")]
    Storage(String),
    #[error("trial {number} was taken over by another worker (this one was presumed dead)")]
    Lost { number: u64 },
    #[error("non-finite value {value} reported at step {step}")]
    NonFinite { step: u64, value: f64 },
    #[error("{0}")]
    Io(String),
    #[error("plotting: {0}")]
    Plot(String),
}

/// Replaces `path` with `contents` atomically (a synced temporary file in the same folder,
/// renamed over it), so a reader never sees half a report.
pub(crate) fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Makes the rename durable; a filesystem that cannot sync a folder loses nothing written.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
