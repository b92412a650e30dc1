//! Architecture search (SPEC §1.6): a search space over the general RGC's knobs, feedback edges
//! and training hyperparameters ([`space`]); TPE sampling ([`tpe`]); pruning of poor trials
//! ([`pruner`]); a study shared by many workers through SQLite or PostgreSQL ([`store`],
//! [`study`]); and the results — report with Pareto front and plots ([`report`]), and the
//! "median of the top K" model ([`median`]).
//!
//! A worker: open the storage ([`store::storage_from_url`]), open the study
//! ([`study::Study::open`] with a [`study::StudyConfig`]), and call
//! [`study::Study::run_worker`] with an objective that builds the trial's model
//! ([`study::TrialHandle::model`]), trains it, and calls [`study::TrialHandle::report`] after
//! each epoch, returning [`study::TrialFailure::Pruned`] when told to.

pub mod median;
pub mod params;
pub mod pruner;
pub mod report;
pub mod space;
pub mod store;
pub mod study;
pub mod tpe;

pub use median::{median_params, median_spec, MedianModel};
pub use params::{Condition, Domain, ParamDef, ParamValue, Params};
pub use pruner::Pruner;
pub use report::SearchReport;
pub use space::{CellKnob, KnobDomain, ParamSampler, SearchSpace, TrainHparams};
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
