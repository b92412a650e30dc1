//! `trainer`: train and evaluate ConvRNNs (SPEC §6).
//!
//! - [`config`]: a run's settings ([`TrainConfig`], [`DataSpec`]), serde;
//! - [`optim`], [`lr`], [`clip`]: optimisers, learning-rate schedules, gradient clipping;
//! - [`fit`]: the training loop with checkpoints, resume and the metrics log;
//! - [`evaluate`]: top-1/top-5 per time step and per decoder;
//! - [`parallel`]: data-parallel training over the ranks of a [`collective::Collective`];
//! - [`checkpoint`], [`metrics`], [`plot`]: what a run writes; [`progress`]: a bar or plain lines;
//! - [`resume`]: what a resumed run may change (the budget) and what it refuses;
//! - [`search`]: architecture search (TPE, pruning, SQLite/PostgreSQL study store, median model).

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod data;
mod error;
pub mod evaluate;
pub mod fit;
pub mod lr;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod progress;
pub mod resume;
pub mod search;

pub use clip::GradClip;
pub use config::{DataSpec, LossSteps, TrainConfig};
pub use error::{Error, Result};
pub use evaluate::{evaluate, evaluate_on, EvalCounts, EvalOptions, EvalReport};
pub use fit::{evaluate_checkpoint, fit, Control, FitOptions, FitReport, Outcome};
pub use lr::{Decay, LrSchedule};
pub use metrics::EpochMetrics;
pub use optim::{Optimizer, OptimizerSpec};
pub use progress::{Progress, ProgressMode};
