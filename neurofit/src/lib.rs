//! `neurofit`: compare model activity over time with neural recordings and behaviour (SPEC §7, §8).
//!
//! - [`insilico`]: synthetic V4/IT recordings with a known ceiling over the HvM-like stimuli;
//! - [`extract`]: model features per area per step, optionally PCA-compressed;
//! - [`ost`]: object solution times (Kar et al. 2019).

pub mod assembly;
pub mod extract;
pub mod features;
pub mod insilico;
pub mod ost;

pub use assembly::{Assembly, Neuroids, Presentations, TimeBin};
pub use extract::{extract_features, ExtractError, ExtractOptions, Reduction};
pub use features::{AreaFeatures, ModelFeatures};
pub use insilico::{InsilicoConfig, InsilicoError, InsilicoRecording, Region};
pub use ost::{object_solution_times, OstError, OstOptions, OstReport};
