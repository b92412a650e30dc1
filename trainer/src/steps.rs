//! `steps.jsonl`: a line every `log_every` optimiser steps while a run trains (an ImageNet epoch
//! is hours; `metrics.jsonl` has a record per epoch): the window's mean loss and top-1, the
//! learning rate and the gradient norm (before clipping) at the record's step, images per second,
//! the fraction of the window's time spent waiting for data, and the images skipped so far as
//! unreadable. Records are appended and flushed one at a time, so a crash loses at most a line;
//! a resumed run first drops the records after its checkpoint's step, so none is duplicated.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name of the per-step log in a run folder.
pub const FILE: &str = "steps.jsonl";

/// One line of `steps.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// 0-based epoch of the record's step.
    pub epoch: u64,
    /// Optimiser steps taken in the whole run so far.
    pub step: u64,
    /// Mean training loss over the window's images.
    pub loss: f64,
    /// Training top-1 (last step's logits) over the window's images.
    pub top1: f64,
    /// The learning rate of the record's step.
    pub lr: f64,
    /// Global L2 norm of the gradients of the record's step, before clipping.
    pub grad_norm: f64,
    /// Training images per second over the window (wall clock, data waits included).
    pub img_per_s: f64,
    /// Fraction of the window's wall time spent waiting for the next batch.
    pub data_wait: f64,
    /// Images skipped as unreadable since the run (this invocation) started.
    pub skipped_images: u64,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Every record in `dir/steps.jsonl` (none when the file is missing).
pub fn read(dir: &Path) -> Result<Vec<StepRecord>> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&p, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            // A line cut short by a crash is the last one; drop it rather than refuse the run.
            Err(_) if i + 1 == text.lines().count() => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "{} line {}: {e}",
                    p.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// Keeps the records up to `step` (a resumed run continues after it); returns them.
pub fn truncate_after(dir: &Path, step: u64) -> Result<Vec<StepRecord>> {
    let mut records = read(dir)?;
    let before = records.len();
    records.retain(|r| r.step <= step);
    if records.len() != before || path(dir).is_file() {
        let mut text = String::new();
        for r in &records {
            text.push_str(&line(r)?);
        }
        tensor::io::write_file_atomically(path(dir), text.as_bytes())?;
    }
    Ok(records)
}

fn line(r: &StepRecord) -> Result<String> {
    let mut s = serde_json::to_string(r)
        .map_err(|e| Error::Config(format!("cannot serialise a step record: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// Appends a record and flushes it.
pub fn append(dir: &Path, r: &StepRecord) -> Result<()> {
    let p = path(dir);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    f.write_all(line(r)?.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| Error::io(&p, e))
}

/// What a window of steps adds up, between two records.
#[derive(Clone, Debug)]
pub struct Window {
    loss_sum: f64,
    correct: u64,
    seen: u64,
    wait: f64,
    started: std::time::Instant,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            wait: 0.0,
            started: std::time::Instant::now(),
        }
    }
}

impl Window {
    /// Seconds spent waiting for a batch.
    pub fn waited(&mut self, seconds: f64) {
        self.wait += seconds;
    }

    /// One trained step of `n` images whose losses add up to `loss_sum`.
    pub fn batch(&mut self, n: u64, loss_sum: f64, hits: u64) {
        self.loss_sum += loss_sum;
        self.correct += hits;
        self.seen += n;
    }

    /// The record closing this window; the window starts over.
    pub fn close(
        &mut self,
        epoch: u64,
        step: u64,
        lr: f32,
        grad_norm: f32,
        skipped_images: u64,
    ) -> StepRecord {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let seen = self.seen.max(1) as f64;
        let r = StepRecord {
            epoch,
            step,
            loss: self.loss_sum / seen,
            top1: self.correct as f64 / seen,
            lr: lr as f64,
            grad_norm: grad_norm as f64,
            img_per_s: self.seen as f64 / wall,
            data_wait: (self.wait / wall).min(1.0),
            skipped_images,
        };
        *self = Window::default();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64) -> StepRecord {
        StepRecord {
            epoch: 0,
            step,
            loss: 1.0 / step as f64,
            top1: 0.5,
            lr: 0.1,
            grad_norm: 2.0,
            img_per_s: 100.0,
            data_wait: 0.25,
            skipped_images: 0,
        }
    }

    #[test]
    fn appends_reads_and_truncates_for_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        for s in [10, 20, 30] {
            append(dir.path(), &rec(s)).unwrap();
        }
        assert_eq!(read(dir.path()).unwrap(), vec![rec(10), rec(20), rec(30)]);
        assert_eq!(
            truncate_after(dir.path(), 25).unwrap(),
            vec![rec(10), rec(20)]
        );
        assert_eq!(read(dir.path()).unwrap(), vec![rec(10), rec(20)]);
        // A half-written last line (a crash) is dropped, not an error.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"epoch\":0,\"st").unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn a_window_averages_over_its_images_and_measures_the_wait() {
        let mut w = Window::default();
        w.batch(10, 20.0, 5);
        w.batch(30, 30.0, 15);
        w.waited(0.0);
        let r = w.close(1, 8, 0.05, 3.0, 2);
        assert!((r.loss - 1.25).abs() < 1e-12);
        assert!((r.top1 - 0.5).abs() < 1e-12);
        assert!(r.data_wait >= 0.0 && r.data_wait <= 1.0);
        assert_eq!((r.epoch, r.step, r.skipped_images), (1, 8, 2));
        assert!(r.img_per_s > 0.0);
    }
}
