//! Charts of a small experiment, written as SVG files: noisy gradient descent on an
//! ill-conditioned quadratic, swept over the learning rate with five seeds each.
//!
//! - `curves.svg`: the loss against the step for three learning rates (lines with markers);
//! - `sweep.svg`: the final loss against the learning rate on a log axis, each point the mean
//!   over seeds with an error bar of ± one standard deviation and a text label; a diverged rate
//!   (an infinite loss) is left out of the chart by `plots` itself.
//!
//! `cargo run -p plots --example learning_rate_sweep [FOLDER]` (default: a temporary folder,
//! removed at the end; name one to look at the charts).

use plots::{Chart, PlotError, Series};
use seeded_rng::Rng;
use std::path::{Path, PathBuf};

/// Losses of `steps` steps of gradient descent on `x² + 20 y²` from (1, 1), each gradient with
/// Gaussian noise of standard deviation 0.5 drawn from `seed`'s stream. A run whose loss passes
/// 1e6 has diverged: its loss is infinite from then on.
fn descend(lr: f64, steps: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let (mut x, mut y) = (1.0f64, 1.0f64);
    let mut diverged = false;
    (0..steps)
        .map(|_| {
            x -= lr * (2.0 * x + 0.5 * rng.normal());
            y -= lr * (40.0 * y + 0.5 * rng.normal());
            let loss = x * x + 20.0 * y * y;
            diverged |= loss.is_nan() || loss >= 1e6;
            if diverged {
                f64::INFINITY
            } else {
                loss
            }
        })
        .collect()
}

/// Mean and standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Draws both charts and writes them into `dir`; returns the files written.
fn run(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let steps = 40;
    let mut curves = Chart::new("noisy gradient descent", "step", "loss").counts_x();
    for lr in [0.002, 0.01, 0.04] {
        let losses = descend(lr, steps, 0);
        curves = curves.with(Series::indexed(format!("lr {lr}"), &losses));
    }

    // 0.06 diverges (the y direction's curvature, 40, allows rates below 0.05 only).
    let rates = [1e-3, 3e-3, 1e-2, 2e-2, 4e-2, 6e-2];
    let (mut points, mut errors, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for lr in rates {
        let finals: Vec<f64> = (0..5)
            .map(|seed| descend(lr, steps, seed).last().copied().unwrap_or(f64::NAN))
            .collect();
        let (mean, sd) = mean_sd(&finals);
        if mean.is_finite() {
            println!("lr {lr:<6}: final loss {mean:.3e} ± {sd:.1e}");
        } else {
            println!("lr {lr:<6}: diverged");
        }
        points.push((lr, mean));
        errors.push(sd);
        labels.push(format!("{mean:.2}"));
    }
    let sweep = Chart::new(
        "final loss over 5 seeds",
        "learning rate",
        "loss after 40 steps",
    )
    .log_x()
    .with(
        Series::points("mean ± sd", points)
            .with_errors(errors)
            .with_labels(labels),
    );

    let mut written = Vec::new();
    for (name, chart) in [("curves.svg", &curves), ("sweep.svg", &sweep)] {
        let svg = chart.to_svg()?;
        let path = dir.join(name);
        atomic_file::write(&path, svg.as_bytes())?;
        println!("wrote {} ({} bytes)", path.display(), svg.len());
        written.push(path);
    }

    // A chart whose every point is non-finite has nothing to draw: a typed error, not a blank file.
    let diverged = Chart::new("diverged", "step", "loss")
        .with(Series::indexed("lr 0.2", &[f64::INFINITY, f64::NAN]));
    match diverged.to_svg() {
        Err(e @ PlotError::Empty { .. }) => println!("as expected: {e}"),
        other => return Err(format!("an empty chart drew: {other:?}").into()),
    }
    Ok(written)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            run(Path::new(&dir))?;
        }
        None => {
            run(tempfile::tempdir()?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml).
    #[test]
    fn runs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let files = super::run(dir.path())?;
        assert_eq!(files.len(), 2);
        let sweep = std::fs::read_to_string(dir.path().join("sweep.svg"))?;
        assert!(sweep.starts_with("<svg") && sweep.contains("mean ± sd"));
        Ok(())
    }
}
