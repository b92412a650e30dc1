//! The plots a training run writes (through the shared [`plots`] crate): training curves and
//! accuracy against time step. Files are written atomically.

use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
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

/// `dir/training.svg` (train loss and validation top-1 per epoch) and
/// `dir/accuracy_per_step.svg` (validation top-1 at each step, last epoch).
pub fn training_plots(dir: &Path, model: &str, metrics: &[EpochMetrics]) -> Result<()> {
    let Some(last) = metrics.last() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let by_epoch = |name: &str, f: fn(&EpochMetrics) -> f64| {
        Series::line(name, metrics.iter().map(|m| ((m.epoch + 1) as f64, f(m))))
    };
    write_chart(
        &dir.join("training.svg"),
        &Chart::new(format!("{model}: training"), "epoch", "loss / accuracy")
            .with(by_epoch("train loss", |m| m.train_loss))
            .with(by_epoch("train top-1", |m| m.train_top1))
            .with(by_epoch("val top-1", |m| m.val_top1)),
    )?;
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
}
