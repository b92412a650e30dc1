//! Every way neural fitting and recordings IO can fail, each saying what was wrong and what was expected.

use std::path::PathBuf;

/// Why scoring, a fit or reading recordings failed.
#[derive(Debug, thiserror::Error)]
pub enum NeurofitError {
    /// An array has the wrong shape.
    #[error("{what}: shape mismatch, got {got}, expected {expected}")]
    Shape {
        /// The array.
        what: String,
        /// Its shape.
        got: String,
        /// The shape it needs.
        expected: String,
    },
    /// A fit setting is out of range.
    #[error("invalid fit configuration: {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What was given and what is allowed.
        reason: String,
    },
    /// The features lack stimuli that the recordings present.
    #[error("model features lack {} stimulus id(s) present in the recordings, e.g. {}", .missing.len(), .missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "))]
    MissingFeatureStimuli {
        /// The recorded stimulus ids without features.
        missing: Vec<String>,
    },
    /// The stimulus set lacks images of stimuli that the recordings present.
    #[error("stimulus set lacks {} stimulus id(s) present in the recordings, e.g. {}", .missing.len(), .missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "))]
    MissingStimuli {
        /// The recorded stimulus ids without an image.
        missing: Vec<String>,
    },
    /// A stimulus has fewer than 2 presentations (the split-half ceiling needs 2).
    #[error("stimulus `{stimulus_id}` has {count} repetition(s); a split-half ceiling needs at least 2 per stimulus")]
    TooFewRepetitions {
        /// The stimulus.
        stimulus_id: String,
        /// Its number of presentations.
        count: usize,
    },
    /// A stimulus is labelled with more than one object.
    #[error("stimulus `{stimulus_id}` is labelled with more than one object_name (`{first}` and `{second}`); expected one object per stimulus")]
    InconsistentObject {
        /// The stimulus.
        stimulus_id: String,
        /// The first object name it is labelled with.
        first: String,
        /// Another object name it is labelled with.
        second: String,
    },
    /// Model features that cannot be matched to recordings unambiguously (a repeated stimulus id
    /// or area name, an area without features).
    #[error("model features are invalid: {0}")]
    Features(String),
    /// The stimuli cannot be split as asked (too few per object, or nothing left to train on).
    #[error("cannot make stratified splits: {0}")]
    Splits(String),
    /// A regression could not be fitted.
    #[error("regression failed: {0}")]
    Regression(String),
    /// The model steps cannot be matched to the recording bins as asked.
    #[error("time mapping: {0}")]
    TimeMap(String),
    /// An assembly breaks its invariants (coordinate lengths, bins, values).
    #[error("assembly is invalid: {0}")]
    Assembly(String),
    /// A recordings or stimulus file is malformed (its format's rules say how).
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error. Its text is part of this error's message, so it is not
        /// also this error's `source()`: printed with its causes, the reason appears once.
        error: std::io::Error,
    },
    /// A CSV file (a stimulus set) has a bad line.
    #[error("{path}: line {line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A LAPACK routine failed (a singular or non-finite matrix).
    #[error("linear algebra: {0}")]
    Linalg(String),
}

/// This crate's result type.
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
