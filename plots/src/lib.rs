//! Small SVG charts: a title, axis labels and named series, each drawn as a line with markers or
//! as a scatter, with a legend. Rendering uses plotters' SVG backend, which needs no font files,
//! so plots work on a bare machine. The crate only renders: writing the SVG (atomically) is the
//! caller's job, with its own I/O.
//!
//! Non-finite points are left out and a series with no point left gets no legend entry, so callers
//! can hand over raw curves (a diverged run, an unscored bin) without filtering them first.
//!
//! ```
//! use plots::{Chart, Series};
//! let svg = Chart::new("training", "epoch", "loss / accuracy")
//!     .with(Series::line("train loss", [(1.0, 0.9), (2.0, 0.5), (3.0, f64::NAN)]))
//!     .with(Series::points("trials", [(1.0, 0.2), (2.0, 0.4)]))
//!     .to_svg()?;
//! assert!(svg.starts_with("<svg") && svg.contains("train loss"));
//! # Ok::<(), plots::PlotError>(())
//! ```
#![warn(missing_docs)]

use plotters::prelude::*;

/// What went wrong drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No series had a finite point.
    #[error("nothing to plot: chart `{title}` has no finite point")]
    Empty {
        /// The chart's title.
        title: String,
    },
    /// plotters failed to lay out or draw the chart.
    #[error("drawing chart `{title}`")]
    Draw {
        /// The chart's title.
        title: String,
        /// plotters' error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Markers joined by a line (a curve).
    Line,
    /// Markers only (a scatter).
    Points,
}

/// A named set of points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend's label.
    pub name: String,
    /// `(x, y)` in drawing order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line or scatter.
    pub style: Style,
}

impl Series {
    /// Markers joined by a line.
    pub fn line(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points: points.into_iter().collect(),
            style: Style::Line,
        }
    }

    /// Markers only.
    pub fn points(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
        Series {
            style: Style::Points,
            ..Series::line(name, points)
        }
    }

    /// `values[i]` at `x = i` (a value per time step, say).
    pub fn indexed(name: impl Into<String>, values: &[f64]) -> Series {
        Series::line(name, values.iter().enumerate().map(|(i, &v)| (i as f64, v)))
    }

    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// A chart: title, axis labels, an optional fixed y range, and its series (colours in order).
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Drawn above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The y axis' range; `None` fits the data with a 5 % margin.
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order.
    pub series: Vec<Series>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl Chart {
    /// An empty chart with these labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            y_range: None,
            series: Vec::new(),
        }
    }

    /// Fixes the y axis to `[low, high]` (accuracies in [0, 1], say).
    pub fn y_range(mut self, low: f64, high: f64) -> Chart {
        self.y_range = Some((low, high));
        self
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Chart {
        self.series.push(series);
        self
    }

    /// Whether no series has a finite point (then [`Chart::to_svg`] fails with
    /// [`PlotError::Empty`]; callers that may have nothing to show check this first).
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.finite().next().is_none())
    }

    /// The chart as an SVG document, 720×440.
    pub fn to_svg(&self) -> Result<String, PlotError> {
        let drawn: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| s.finite().next().is_some())
            .collect();
        let pts = || drawn.iter().flat_map(|s| s.finite());
        if drawn.is_empty() {
            return Err(PlotError::Empty {
                title: self.title.clone(),
            });
        }
        let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
        let (y0, y1) = self.y_range.unwrap_or_else(|| {
            let (a, b) = pts().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
            let pad = ((b - a) * 0.05).max(1e-3);
            (a - pad, b + pad)
        });
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let err = |e: DrawingAreaErrorKind<std::io::Error>| PlotError::Draw {
            title: self.title.clone(),
            source: Box::new(e),
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .draw()
                .map_err(err)?;
            for (i, s) in drawn.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                let markers = chart
                    .draw_series(s.finite().map(|(x, y)| Circle::new((x, y), 3, c.filled())))
                    .map_err(err)?;
                match s.style {
                    Style::Line => {
                        chart
                            .draw_series(LineSeries::new(s.finite(), c.stroke_width(2)))
                            .map_err(err)?
                            .label(s.name.as_str())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
                    }
                    Style::Points => {
                        markers
                            .label(s.name.as_str())
                            .legend(move |(x, y)| Circle::new((x + 9, y), 3, c.filled()));
                    }
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_with_its_legend() {
        let svg = Chart::new("test", "time step", "top-1")
            .y_range(0.0, 1.0)
            .with(Series::indexed("alpha", &[0.1, 0.4, 0.8]))
            .with(Series::points("beta", [(0.0, 0.1), (2.0, 0.3)]))
            .to_svg()
            .unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg}");
        for label in ["alpha", "beta", "time step", "top-1", "test"] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn non_finite_points_and_empty_series_are_left_out() {
        let chart = Chart::new("t", "x", "y")
            .with(Series::line(
                "kept",
                [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0)],
            ))
            .with(Series::line("all nan", [(0.0, f64::NAN)]))
            .with(Series::points("no points", []));
        assert!(!chart.is_empty());
        let svg = chart.to_svg().unwrap_or_default();
        assert!(svg.contains("kept"));
        assert!(
            !svg.contains("all nan") && !svg.contains("no points"),
            "{svg}"
        );
        assert!(!svg.contains("NaN"), "a NaN coordinate reached the SVG");
    }

    #[test]
    fn a_chart_without_a_finite_point_is_an_error() {
        let chart = Chart::new("empty", "x", "y").with(Series::line("nan", [(f64::NAN, 1.0)]));
        assert!(chart.is_empty());
        let e = chart.to_svg().err();
        assert!(
            matches!(e, Some(PlotError::Empty { ref title }) if title == "empty"),
            "{e:?}"
        );
        assert!(Chart::new("none", "x", "y").to_svg().is_err());
    }
}
