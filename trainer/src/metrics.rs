//! The machine-readable log: `metrics.jsonl`, one JSON object per epoch.

use crate::error::{Error, Result};
use crate::evaluate::DecoderScore;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file name of the per-epoch log in a run folder (JSON lines).
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One epoch's record. Accuracies are fractions in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The epoch (0-based).
    pub epoch: u64,
    /// Optimiser steps taken in the whole run at the end of this epoch.
    pub step: u64,
    /// False when the run stopped inside this epoch (`max_steps`).
    pub complete: bool,
    /// The learning rate of the epoch's last optimiser step.
    pub lr: f32,
    /// Mean training cross-entropy over the epoch's images.
    pub train_loss: f64,
    /// Fraction of the epoch's training images classified correctly (top-1).
    pub train_top1: f64,
    /// Training images per second of training time (evaluation excluded).
    pub train_img_per_s: f64,
    /// Validation cross-entropy of the last step's logits.
    pub val_loss: f64,
    /// Validation top-1 of the first decoder.
    pub val_top1: f64,
    /// Validation top-5 of the first decoder.
    pub val_top5: f64,
    /// Validation top-1 of each unroll step's logits alone.
    pub val_top1_per_step: Vec<f64>,
    /// Validation top-5 of each unroll step's logits alone.
    pub val_top5_per_step: Vec<f64>,
    /// Validation accuracy of every decoder.
    pub val_decoders: Vec<DecoderScore>,
    /// Wall-clock seconds of the epoch, training and evaluation.
    pub epoch_seconds: f64,
}

/// Reads `dir/metrics.jsonl` (missing file = no epochs yet).
pub fn read(dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = dir.join(METRICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::Config(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Records `m`, replacing any record of the same or a later epoch (left by a run that was
/// interrupted after logging and is now being resumed), and rewrites the file atomically.
pub fn record(dir: &Path, m: &EpochMetrics) -> Result<Vec<EpochMetrics>> {
    let mut all: Vec<EpochMetrics> = read(dir)?
        .into_iter()
        .filter(|e| e.epoch < m.epoch)
        .collect();
    all.push(m.clone());
    let mut text = String::new();
    for e in &all {
        let line = serde_json::to_string(e)
            .map_err(|err| Error::Config(format!("cannot serialise metrics: {err}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    tensor::io::write_file_atomically(dir.join(METRICS_FILE), text.as_bytes())?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(epoch: u64, loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            step: epoch * 10,
            complete: true,
            lr: 0.1,
            train_loss: loss,
            train_top1: 0.5,
            train_img_per_s: 10.0,
            val_loss: loss,
            val_top1: 0.5,
            val_top5: 0.9,
            val_top1_per_step: vec![0.1, 0.5],
            val_top5_per_step: vec![0.5, 0.9],
            val_decoders: vec![],
            epoch_seconds: 1.0,
        }
    }

    #[test]
    fn records_replace_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), &m(0, 1.0)).unwrap();
        record(dir.path(), &m(1, 2.0)).unwrap();
        // A resumed run re-records epoch 1.
        let all = record(dir.path(), &m(1, 3.0)).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(read(dir.path()).unwrap(), all);
        assert_eq!(all[1].train_loss, 3.0);
        std::fs::write(dir.path().join(METRICS_FILE), "{oops\n").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("line 1"));
    }
}
