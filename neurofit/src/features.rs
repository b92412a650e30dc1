//! Model activity over time, per area, as the fitting code consumes it.

use ndarray::Array3;

/// One area's features: `data` is `[stimulus, feature, step]` (one row per stimulus, in the order of
/// [`ModelFeatures::stimulus_id`]; `step` is the unroll step, 10 ms each).
#[derive(Debug, Clone, PartialEq)]
pub struct AreaFeatures {
    /// The model area's name.
    pub area: String,
    /// Activity `[stimulus, feature, step]`.
    pub data: Array3<f32>,
}

/// Every recorded area of one model over the same stimuli.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFeatures {
    /// The model's name (reports carry it).
    pub model: String,
    /// The stimuli, in the order of the rows of every area's `data`.
    pub stimulus_id: Vec<String>,
    /// Every recorded area's features.
    pub areas: Vec<AreaFeatures>,
}
