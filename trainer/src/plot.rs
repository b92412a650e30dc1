//! The plots a training run writes (through the shared [`plots`] crate): training curves and
//! accuracy against time step. Files are written atomically.

use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::steps::StepRecord;
use plots::{Chart, Series};
use std::path::Path;

/// Renders `chart` and writes it to `path` atomically.
pub fn write_chart(path: &Path, chart: &Chart) -> Result<()> {
    let svg = chart.to_svg().map_err(|source| Error::Plot {
        path: path.to_path_buf(),
        source,
    })?;
    tensor::io::write_file_atomically(path, svg.as_bytes())?;
    Ok(())
}

/// `dir/training.svg` (against the optimiser step: the training loss and top-1 of every
/// `steps.jsonl` record, or of every epoch when there are none, and validation top-1 at each
/// epoch's end) and `dir/accuracy_per_step.svg` (validation top-1 at each time step, last epoch).
pub fn training_plots(
    dir: &Path,
    model: &str,
    metrics: &[EpochMetrics],
    steps: &[StepRecord],
) -> Result<()> {
    if metrics.is_empty() && steps.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let by_epoch = |name: &str, f: fn(&EpochMetrics) -> f64| {
        Series::line(name, metrics.iter().map(|m| (m.step as f64, f(m))))
    };
    let by_step = |name: &str, f: fn(&StepRecord) -> f64| {
        Series::line(name, steps.iter().map(|r| (r.step as f64, f(r))))
    };
    let chart = Chart::new(
        format!("{model}: training"),
        "optimiser step",
        "loss / accuracy",
    );
    let chart = if steps.is_empty() {
        chart
            .with(by_epoch("train loss", |m| m.train_loss))
            .with(by_epoch("train top-1", |m| m.train_top1))
    } else {
        chart
            .with(by_step("train loss", |r| r.loss))
            .with(by_step("train top-1", |r| r.top1))
    };
    let chart = if metrics.is_empty() {
        chart
    } else {
        chart.with(by_epoch("val top-1", |m| m.val_top1))
    };
    write_chart(&dir.join("training.svg"), &chart)?;
    let Some(last) = metrics.last() else {
        return Ok(());
    };
    accuracy_per_step(
        &dir.join("accuracy_per_step.svg"),
        &format!("{model}: validation top-1 by time step"),
        &[(model.to_string(), last.val_top1_per_step.clone())],
    )
}

/// Top-1 against time step (10 ms each), one line per model.
pub fn accuracy_per_step(path: &Path, title: &str, models: &[(String, Vec<f64>)]) -> Result<()> {
    let chart = models.iter().fold(
        Chart::new(title, "time step (10 ms)", "top-1").y_range(0.0, 1.0),
        |chart, (name, acc)| chart.with(Series::indexed(name.as_str(), acc)),
    );
    write_chart(path, &chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.svg");
        accuracy_per_step(
            &path,
            "test",
            &[
                ("alpha".into(), vec![0.1, 0.4, 0.8]),
                ("beta".into(), vec![0.1, 0.2, 0.3]),
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("alpha") && svg.contains("beta"));
        let e = accuracy_per_step(&path, "t", &[]).unwrap_err();
        assert!(matches!(e, Error::Plot { .. }), "{e}");
    }

    #[test]
    fn the_training_plot_follows_the_step_log_before_the_first_epoch_ends() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |step: u64, loss: f64| StepRecord {
            epoch: 0,
            step,
            loss,
            top1: 0.3,
            lr: 0.1,
            grad_norm: 1.0,
            img_per_s: 10.0,
            data_wait: 0.0,
            skipped_images: 0,
        };
        training_plots(dir.path(), "m", &[], &[rec(50, 2.3), rec(100, 1.9)]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("training.svg")).unwrap();
        assert!(svg.contains("optimiser step") && svg.contains("train loss"));
        assert!(!svg.contains("val top-1"), "no epoch has ended");
        assert!(!dir.path().join("accuracy_per_step.svg").exists());
    }
}
