//! The in-memory neural assembly: responses over presentations × neuroids × time bins with the
//! Brain-Score coordinates (SPEC §7). File formats (netCDF-4 / plain HDF5) read and write this type;
//! the in-silico generator produces it; the fitting code consumes it.

use ndarray::{Array3, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Responses with their coordinates.
///
/// `data` has shape `[presentation, neuroid, time_bin]`; a recording without time bins is stored
/// with one bin. Presentations repeat a stimulus once per trial (`repetition` tells which trial).
#[derive(Debug, Clone, PartialEq)]
pub struct Assembly {
    /// `[presentation, neuroid, time_bin]`, firing rates (or any response unit).
    pub data: Array3<f32>,
    /// Coordinates of the presentations (rows of `data`).
    pub presentations: Presentations,
    /// Coordinates of the neuroids (columns of `data`).
    pub neuroids: Neuroids,
    /// The time bins (last axis of `data`).
    pub bins: Vec<TimeBin>,
}

/// Coordinates along the presentation axis (one entry per presentation).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Presentations {
    /// The stimulus shown in each presentation.
    pub stimulus_id: Vec<String>,
    /// The object each presentation's stimulus shows (the label splits are stratified by).
    pub object_name: Vec<String>,
    /// Which trial of its stimulus each presentation is (0-based).
    pub repetition: Vec<u32>,
}

/// Coordinates along the neuroid axis (one entry per recording site / model unit).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Neuroids {
    /// A unique id of each recording site or unit.
    pub neuroid_id: Vec<String>,
    /// Brain region, e.g. `V4`, `IT`.
    pub region: Vec<String>,
}

/// One time bin, in milliseconds after stimulus onset, half-open `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeBin {
    /// Start of the bin, ms after stimulus onset (inclusive).
    pub start_ms: f64,
    /// End of the bin, ms after stimulus onset (exclusive).
    pub end_ms: f64,
}

impl TimeBin {
    /// Bins of `width_ms` covering `[start_ms, end_ms)`; e.g. `uniform(70.0, 260.0, 10.0)` gives 19.
    pub fn uniform(start_ms: f64, end_ms: f64, width_ms: f64) -> Vec<TimeBin> {
        let n = ((end_ms - start_ms) / width_ms).round().max(0.0) as usize;
        (0..n)
            .map(|i| TimeBin {
                start_ms: start_ms + i as f64 * width_ms,
                end_ms: start_ms + (i + 1) as f64 * width_ms,
            })
            .collect()
    }
}

impl Assembly {
    /// Presentations (trials), the rows of `data`.
    pub fn num_presentations(&self) -> usize {
        self.data.len_of(Axis(0))
    }
    /// Neuroids, the columns of `data`.
    pub fn num_neuroids(&self) -> usize {
        self.data.len_of(Axis(1))
    }
    /// Time bins, the last axis of `data`.
    pub fn num_bins(&self) -> usize {
        self.data.len_of(Axis(2))
    }
    /// `[presentation, neuroid]` responses in one bin.
    pub fn bin(&self, b: usize) -> ArrayView2<'_, f32> {
        self.data.index_axis(Axis(2), b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_bins_cover_the_range() {
        let b = TimeBin::uniform(70.0, 260.0, 10.0);
        assert_eq!(b.len(), 19);
        assert_eq!(b[0].start_ms, 70.0);
        assert_eq!(b[18].end_ms, 260.0);
    }
}
