//! `neurofit`: compare model activity over time with neural recordings and behaviour (SPEC §7, §8).

pub mod assembly;
pub mod features;

pub use assembly::{Assembly, Neuroids, Presentations, TimeBin};
pub use features::{AreaFeatures, ModelFeatures};
