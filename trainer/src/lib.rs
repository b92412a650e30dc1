//! `trainer`: train and evaluate ConvRNNs (SPEC §6).
//!
//! - [`config`]: a run's settings ([`TrainConfig`], [`DataSpec`]), serde;
//! - [`optim`], [`lr`], [`clip`]: optimisers, learning-rate schedules, gradient clipping;
//! - [`fit`](mod@fit): the training loop with checkpoints, resume and the metrics log;
//! - [`evaluate`](mod@evaluate): top-1/top-5 per time step and per decoder;
//! - [`parallel`]: data-parallel training over the ranks of a [`collective::Collective`];
//! - [`checkpoint`], [`metrics`], [`steps`], [`plot`]: what a run writes; [`progress`]: a bar or
//!   plain lines;
//! - [`resume`]: what a resumed run may change (the budget) and what it refuses; [`run_lock`]:
//!   one training process per run folder;
//! - [`recipe`]: named recipes (the paper's ImageNet training);
//! - [`load`]: a preset, spec file, run folder or checkpoint named on a command line → a built
//!   model ([`load_model`]) or its spec ([`load_spec`]), shared by `cargo xtask` and the
//!   `neurofit` binary; [`count_arg`]: their parser for counts that must be at least 1.
//!
//! Architecture search is the `search` crate; `cargo xtask search` hands it [`fit()`] as the
//! objective.
//!
//! A run's settings are plain data that round-trip through JSON; a learning-rate schedule, for
//! example, warms up linearly and then decays:
//!
//! ```
//! use trainer::LrSchedule;
//! let lr = LrSchedule::cosine(0.1, 100, 1000);
//! lr.validate()?;
//! assert!(lr.at(49) < lr.at(99)); // warming up
//! assert!(lr.at(1000) < 1e-6); // decayed to its floor, 0
//! let json = serde_json::to_string(&lr).expect("a schedule serialises");
//! assert_eq!(serde_json::from_str::<LrSchedule>(&json).expect("and reads back"), lr);
//! # Ok::<(), trainer::Error>(())
//! ```
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod count_arg;
pub mod data;
mod error;
pub mod evaluate;
pub mod fit;
pub mod load;
pub mod lr;
pub mod memory_budget;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod progress;
pub mod recipe;
pub mod resume;
pub mod run_lock;
pub mod steps;

pub use clip::GradClip;
pub use config::{DataSpec, LossSteps, TrainConfig};
pub use error::{Error, Result};
pub use evaluate::{evaluate, evaluate_on, EvalCounts, EvalOptions, EvalReport};
pub use fit::{evaluate_checkpoint, fit, Control, FitOptions, FitReport, Outcome};
pub use load::{
    load_model, load_spec, locate_model, locate_path, read_spec_file, LoadedModel, ModelRef,
    ModelSource,
};
pub use lr::{Decay, LrSchedule};
pub use metrics::EpochMetrics;
pub use optim::{Optimizer, OptimizerSpec};
pub use progress::{Progress, ProgressMode};
pub use recipe::Recipe;
