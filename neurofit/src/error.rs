//! Every way neural fitting and recordings IO can fail, each saying what was wrong and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NeurofitError {
    #[error("{what}: shape mismatch, got {got}, expected {expected}")]
    Shape {
        what: String,
        got: String,
        expected: String,
    },
    #[error("invalid fit configuration: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("model features lack {} stimulus id(s) present in the recordings, e.g. {}", .missing.len(), .missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "))]
    MissingFeatureStimuli { missing: Vec<String> },
    #[error("stimulus set lacks {} stimulus id(s) present in the recordings, e.g. {}", .missing.len(), .missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "))]
    MissingStimuli { missing: Vec<String> },
    #[error("stimulus `{stimulus_id}` has {count} repetition(s); a split-half ceiling needs at least 2 per stimulus")]
    TooFewRepetitions { stimulus_id: String, count: usize },
    #[error("stimulus `{stimulus_id}` is labelled with more than one object_name (`{first}` and `{second}`); expected one object per stimulus")]
    InconsistentObject {
        stimulus_id: String,
        first: String,
        second: String,
    },
    #[error("cannot make stratified splits: {0}")]
    Splits(String),
    #[error("regression failed: {0}")]
    Regression(String),
    #[error("time mapping: {0}")]
    TimeMap(String),
    #[error("assembly is invalid: {0}")]
    Assembly(String),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Csv {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("linear algebra: {0}")]
    Linalg(String),
}

pub type Result<T, E = NeurofitError> = std::result::Result<T, E>;

impl NeurofitError {
    pub(crate) fn shape(
        what: impl Into<String>,
        got: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        NeurofitError::Shape {
            what: what.into(),
            got: got.into(),
            expected: expected.into(),
        }
    }
}
