//! SVG plots (plotters): training curves and accuracy against time step. SVG needs no font files,
//! so plots work on a bare machine; files are written atomically.

use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A named line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` as lines with markers on one chart and writes the SVG to `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: Option<(f64, f64)>,
    series: &[Series],
) -> Result<()> {
    let lines: Vec<(&Series, bool)> = series.iter().map(|s| (s, true)).collect();
    chart(path, title, x_label, y_label, y_range, &lines)
}

/// Draws each series with markers, joined by a line where its flag is set (a scatter where
/// not), with axes, labels and a legend, and writes the SVG to `path`.
pub fn chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: Option<(f64, f64)>,
    series: &[(&Series, bool)],
) -> Result<()> {
    let err = |e: String| Error::Plot {
        path: path.to_path_buf(),
        msg: e,
    };
    let pts = || series.iter().flat_map(|(s, _)| s.points.iter().copied());
    if pts().next().is_none() {
        return Err(err("nothing to plot".into()));
    }
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (y0, y1) = y_range.unwrap_or_else(|| {
        let (a, b) = pts().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
        let pad = ((b - a) * 0.05).max(1e-3);
        (a - pad, b + pad)
    });
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, &(s, joined)) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let markers = chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, c.filled())),
                )
                .map_err(|e| err(e.to_string()))?;
            if joined {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
            } else {
                markers
                    .label(s.name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 9, y), 3, c.filled()));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
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
    let by_epoch = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .map(|m| ((m.epoch + 1) as f64, f(m)))
            .collect()
    };
    line_chart(
        &dir.join("training.svg"),
        &format!("{model}: training"),
        "epoch",
        "loss / accuracy",
        None,
        &[
            Series {
                name: "train loss".into(),
                points: by_epoch(|m| m.train_loss),
            },
            Series {
                name: "train top-1".into(),
                points: by_epoch(|m| m.train_top1),
            },
            Series {
                name: "val top-1".into(),
                points: by_epoch(|m| m.val_top1),
            },
        ],
    )?;
    accuracy_per_step(
        &dir.join("accuracy_per_step.svg"),
        &format!("{model}: validation top-1 by time step"),
        &[(model.to_string(), last.val_top1_per_step.clone())],
    )
}

/// Top-1 against time step (10 ms each), one line per model.
pub fn accuracy_per_step(path: &Path, title: &str, models: &[(String, Vec<f64>)]) -> Result<()> {
    let series: Vec<Series> = models
        .iter()
        .map(|(name, acc)| Series {
            name: name.clone(),
            points: acc
                .iter()
                .enumerate()
                .map(|(t, &a)| (t as f64, a))
                .collect(),
        })
        .collect();
    line_chart(
        path,
        title,
        "time step (10 ms)",
        "top-1",
        Some((0.0, 1.0)),
        &series,
    )
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
        assert!(line_chart(&path, "t", "x", "y", None, &[]).is_err());
    }
}
