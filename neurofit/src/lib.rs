//! `neurofit`: compare model activity over time with neural recordings and behaviour (SPEC §7, §8).

pub mod assembly;
pub mod extract;
pub mod features;
pub mod insilico;
pub mod ost;

pub use assembly::{Assembly, Neuroids, Presentations, TimeBin};
pub use features::{AreaFeatures, ModelFeatures};
