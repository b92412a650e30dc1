//! The neural-fit report: the JSON contract other tools read (`cargo xtask neurofit` writes it).
//!
//! Undefined values (a neuroid whose responses never vary in a split, a ceiling ≤ 0) are `null`.
//! Per-bin lists align with `bins`; a track that does not cover a bin (one-to-one maps of an area
//! with fewer steps) has `null` there.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{NeurofitError, Result};
use crate::fit::FitConfig;
use crate::validate::DroppedNeuroid;

/// Per-bin values, one list entry per entry of [`Report::bins`].
pub type PerBin = Vec<Option<f64>>;

/// Everything a scoring run found: per-bin medians for each track and region, the ceilings, the
/// per-neuroid values behind them and what was dropped; round-trips through JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The scored model's name.
    pub model: String,
    /// The settings it was scored with.
    pub config: FitConfig,
    /// Scored time bins, `[start_ms, end_ms]`.
    pub bins: Vec<[f64; 2]>,
    /// region → per bin: median over the region's neuroids of the Spearman–Brown split-half ceiling.
    pub ceiling: BTreeMap<String, PerBin>,
    /// track (model area, or `graded`) → region → per bin: median over neuroids of r² / ceiling.
    pub scores: BTreeMap<String, BTreeMap<String, PerBin>>,
    /// track → region → per bin: median over neuroids of the held-out Pearson r (mean over splits).
    pub raw_r: BTreeMap<String, BTreeMap<String, PerBin>>,
    /// track → per bin: which area and unroll step predicted that bin.
    pub maps: BTreeMap<String, Vec<Option<MapUsed>>>,
    /// Coordinates of the neuroids that were scored (after the NaN policy).
    pub neuroid_id: Vec<String>,
    /// The region of each scored neuroid, in the order of `neuroid_id`.
    pub region: Vec<String>,
    /// `[bin][neuroid]` ceilings.
    pub neuroid_ceiling: Vec<PerBin>,
    /// track → per-neuroid values.
    pub per_neuroid: BTreeMap<String, NeuroidScores>,
    /// Neuroids removed before fitting: each has a stimulus without any finite response in some
    /// bin ([`crate::validate`]).
    pub dropped: Vec<DroppedNeuroid>,
    /// What makes these numbers less than a clean application of the protocol (e.g. splits that
    /// cannot be exactly stratified); printed by the binary too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Which area and step predicted one bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapUsed {
    /// The model area.
    pub area: String,
    /// Index into the area's feature step axis.
    pub step: usize,
}

/// `[bin][neuroid]` values for one track.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuroidScores {
    /// Held-out Pearson r, mean over splits.
    pub r: Vec<PerBin>,
    /// `r / sqrt(ceiling)`.
    pub noise_corrected_r: Vec<PerBin>,
    /// `r² / ceiling`.
    pub score: Vec<PerBin>,
}

impl Report {
    /// The report as pretty-printed JSON (floats written so they read back exactly).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| NeurofitError::Assembly(format!("report does not serialise: {e}")))
    }

    /// A report read back from [`Report::to_json`]'s text; unknown fields are errors.
    pub fn from_json(text: &str) -> Result<Report> {
        serde_json::from_str(text)
            .map_err(|e| NeurofitError::Assembly(format!("not a neurofit report: {e}")))
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        atomic_file::write(path, text.as_bytes()).map_err(|e| NeurofitError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
