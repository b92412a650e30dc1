//! Small SVG charts: a title, axis labels and named series, each drawn as a line with markers or
//! as a scatter, with a legend; points may carry error bars (mean ± a half-width) and a text label,
//! and the x axis may be logarithmic. Rendering uses plotters' SVG backend, which needs no font
//! files, so plots work on a bare machine.
//!
//! With the `png` feature the SVG is also rasterised to PNG (resvg, with the system's fonts: a
//! machine without a font gets no PNG and is told why) and [`Chart::write`] writes both files
//! atomically. Without it the crate only renders: writing the SVG is the caller's job.
//!
//! Non-finite points are left out (on a log axis, non-positive x as well) and a series with no
//! point left gets no legend entry, so callers can hand over raw curves (a diverged run, an
//! unscored bin) without filtering them first. A non-finite or zero error draws no bar.
//!
//! ```
//! use plots::{Chart, Series};
//! let svg = Chart::new("training", "epoch", "loss / accuracy")
//!     .with(Series::line("train loss", [(1.0, 0.9), (2.0, 0.5), (3.0, f64::NAN)]))
//!     .with(Series::points("trials", [(1.0, 0.2), (2.0, 0.4)]).with_errors([0.05, 0.1]))
//!     .to_svg()?;
//! assert!(svg.starts_with("<svg") && svg.contains("train loss"));
//! # Ok::<(), plots::PlotError>(())
//! ```
#![warn(missing_docs)]

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
    /// A chart's file could not be written.
    #[cfg(feature = "png")]
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
    /// Half the error bar of each point (the bar spans y ± this), in the order of `points`;
    /// empty, or a zero or non-finite entry, draws no bar.
    pub errors: Vec<f64>,
    /// Text written beside each point, in the order of `points`; empty writes none.
    pub labels: Vec<String>,
    /// Line or scatter.
    pub style: Style,
}

/// One drawable point of a series.
struct Drawn<'a> {
    x: f64,
    y: f64,
    err: f64,
    label: Option<&'a str>,
}

impl Series {
    /// Markers joined by a line.
    pub fn line(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points: points.into_iter().collect(),
            errors: Vec::new(),
            labels: Vec::new(),
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

    /// Error bars: point i spans `y ± errors[i]` (a standard deviation over seeds, say).
    pub fn with_errors(mut self, errors: impl IntoIterator<Item = f64>) -> Series {
        self.errors = errors.into_iter().collect();
        self
    }

    /// A text beside each point (a model's name, say).
    pub fn with_labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Series {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// The points that can be drawn, with x mapped to the axis (log10 on a log axis).
    fn drawn(&self, log_x: bool) -> impl Iterator<Item = Drawn<'_>> + '_ {
        self.points
            .iter()
            .enumerate()
            .filter_map(move |(i, &(x, y))| {
                let x = if log_x {
                    if x > 0.0 {
                        x.log10()
                    } else {
                        f64::NAN
                    }
                } else {
                    x
                };
                (x.is_finite() && y.is_finite()).then(|| Drawn {
                    x,
                    y,
                    err: self
                        .errors
                        .get(i)
                        .copied()
                        .filter(|e| e.is_finite() && *e > 0.0)
                        .unwrap_or(0.0),
                    label: self.labels.get(i).map(String::as_str),
                })
            })
    }
}

/// How the x axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Evenly.
    Linear,
    /// By log10 (parameters, say); ticks show the values (`32k`, `1.2M`).
    Log10,
    /// Evenly, for counts (trial numbers, epochs): only whole-number ticks are labelled.
    Counts,
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
    /// The y axis' range; `None` fits the data (error bars included) with a margin.
    pub y_range: Option<(f64, f64)>,
    /// How the x axis maps values.
    pub x_scale: Scale,
    /// Width and height in pixels of the SVG (the PNG is twice that).
    pub size: (u32, u32),
    /// The series, drawn in order.
    pub series: Vec<Series>,
}

// Matplotlib's tab10 and two more, so a dozen series stay distinguishable.
const COLORS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(0, 0, 128),
];

impl Chart {
    /// An empty 720×440 chart with these labels and a linear x axis.
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
            x_scale: Scale::Linear,
            size: (720, 440),
            series: Vec::new(),
        }
    }

    /// Fixes the y axis to `[low, high]` (accuracies in [0, 1], say).
    pub fn y_range(mut self, low: f64, high: f64) -> Chart {
        self.y_range = Some((low, high));
        self
    }

    /// An x axis of counts (trial numbers, say): no tick labelled 0.2 or 1.2.
    pub fn counts_x(mut self) -> Chart {
        self.x_scale = Scale::Counts;
        self
    }

    /// A logarithmic x axis: points are given as values, drawn at their log10.
    pub fn log_x(mut self) -> Chart {
        self.x_scale = Scale::Log10;
        self
    }

    /// The SVG's size in pixels.
    pub fn size(mut self, width: u32, height: u32) -> Chart {
        self.size = (width, height);
        self
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Chart {
        self.series.push(series);
        self
    }

    fn log(&self) -> bool {
        self.x_scale == Scale::Log10
    }

    /// Whether no series has a drawable point (then [`Chart::to_svg`] fails with
    /// [`PlotError::Empty`]; callers that may have nothing to show check this first).
    pub fn is_empty(&self) -> bool {
        self.series
            .iter()
            .all(|s| s.drawn(self.log()).next().is_none())
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, PlotError> {
        let log = self.log();
        let drawn: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| s.drawn(log).next().is_some())
            .collect();
        let pts = || drawn.iter().flat_map(|s| s.drawn(log));
        if drawn.is_empty() {
            return Err(PlotError::Empty {
                title: self.title.clone(),
            });
        }
        let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
        let (x0, x1) = if x1 > x0 {
            (x0, x1)
        } else {
            (x0 - 0.5, x0 + 0.5)
        };
        // Points at the very edge would be cut in half (and their bars' caps lost): pad. A text
        // label is drawn to the right of its point, so the right edge also makes room for the
        // labels of the points nearest it (at ~6.5 px a character of the 11 px label font).
        let xpad = (x1 - x0) * 0.03;
        // A label needing the share f of the plot's width at distance d from the right end fits
        // when (d + r) / (w + r) >= f, w being the span with the left pad: r >= (f w - d) / (1 - f).
        let plot_px = f64::from(self.size.0.saturating_sub(100).max(100));
        let w = x1 - x0 + xpad;
        let right = pts()
            .filter_map(|p| p.label.map(|l| (x1 - p.x, l.chars().count())))
            .map(|(d, chars)| {
                let f = ((chars as f64 * 6.5 + 8.0) / plot_px).min(0.5);
                (f * w - d) / (1.0 - f)
            })
            .fold(xpad, f64::max);
        let (x0, x1) = (x0 - xpad, x1 + right);
        let (y0, y1) = self.y_range.unwrap_or_else(|| {
            let (a, b) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| {
                (a.min(p.y - p.err), b.max(p.y + p.err))
            });
            let pad = ((b - a) * 0.05).max(1e-3);
            (a - pad, b + pad)
        });
        let err = |e: DrawingAreaErrorKind<std::io::Error>| PlotError::Draw {
            title: self.title.clone(),
            source: Box::new(e),
        };
        let counts = self.x_scale == Scale::Counts;
        let x_fmt = move |v: &f64| {
            if log {
                human(10f64.powf(*v))
            } else if counts && (v - v.round()).abs() > 1e-9 {
                String::new()
            } else if v.fract().abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                // 0.30000000000000004 → "0.3".
                let t = format!("{v:.3}");
                t.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            // plotters' caption is one line, centred, and cut off at both edges when the title is
            // wider than the chart (the figures' titles name their data): wrap it ourselves.
            let lines = title_lines(&self.title, self.size.0);
            let line_h = TITLE_PX + 4;
            let (top, body) = root.split_vertically(8 + line_h * lines.len() as u32);
            let style = TextStyle::from(("sans-serif", TITLE_PX).into_font())
                .pos(Pos::new(HPos::Center, VPos::Top));
            for (i, line) in lines.iter().enumerate() {
                let y = 6 + (line_h as usize * i) as i32;
                top.draw(&Text::new(
                    line.as_str(),
                    (self.size.0 as i32 / 2, y),
                    &style,
                ))
                .map_err(err)?;
            }
            let mut chart = ChartBuilder::on(&body)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_label_formatter(&x_fmt)
                .draw()
                .map_err(err)?;
            let cap = (x1 - x0) * 0.006;
            for (i, s) in drawn.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                let bars = s.drawn(log).filter(|p| p.err > 0.0).flat_map(|p| {
                    let (lo, hi) = (p.y - p.err, p.y + p.err);
                    [
                        PathElement::new(vec![(p.x, lo), (p.x, hi)], c.stroke_width(1)),
                        PathElement::new(vec![(p.x - cap, lo), (p.x + cap, lo)], c.stroke_width(1)),
                        PathElement::new(vec![(p.x - cap, hi), (p.x + cap, hi)], c.stroke_width(1)),
                    ]
                });
                chart.draw_series(bars).map_err(err)?;
                let markers = chart
                    .draw_series(s.drawn(log).map(|p| Circle::new((p.x, p.y), 3, c.filled())))
                    .map_err(err)?;
                match s.style {
                    Style::Line => {
                        chart
                            .draw_series(LineSeries::new(
                                s.drawn(log).map(|p| (p.x, p.y)),
                                c.stroke_width(2),
                            ))
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
                let labels = s.drawn(log).filter_map(|p| {
                    p.label.map(|l| {
                        Text::new(
                            l.to_string(),
                            (p.x + cap * 1.5, p.y),
                            ("sans-serif", 11).into_font(),
                        )
                    })
                });
                chart.draw_series(labels).map_err(err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(legend_corner(
                    pts().map(|p| (p.x, p.y)),
                    (x0, x1),
                    (y0, y1),
                    drawn.len(),
                ))
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

/// The title's font size in pixels.
const TITLE_PX: u32 = 18;

/// The title broken at spaces into lines that fit `width` pixels at [`TITLE_PX`]. Glyph widths
/// are estimated (0.48 of [`TITLE_PX`]: plotters writes the font at about 0.8 of the size asked,
/// and sans-serif glyphs average about half an em, so the estimate errs towards wrapping); a
/// word longer than a line gets a line of its own.
fn title_lines(title: &str, width: u32) -> Vec<String> {
    let max_chars =
        ((width.saturating_sub(24)) as f64 / (0.48 * TITLE_PX as f64)).max(8.0) as usize;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in title.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > max_chars {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The corner where the legend hides the fewest points: each corner's box is about as large as
/// a legend of `entries` lines (a third of the width, a line's share of the height per entry),
/// and ties go to the lower right, then lower left, upper right, upper left.
fn legend_corner(
    points: impl Iterator<Item = (f64, f64)>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    entries: usize,
) -> SeriesLabelPosition {
    let w = (x1 - x0) * 0.35;
    let h = (y1 - y0) * (0.06 * entries as f64 + 0.04).min(0.9);
    let corners = [
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
    ];
    let mut hidden = [0usize; 4];
    for (x, y) in points {
        for (i, &(_, right, upper)) in corners.iter().enumerate() {
            let in_x = if right { x >= x1 - w } else { x <= x0 + w };
            let in_y = if upper { y >= y1 - h } else { y <= y0 + h };
            hidden[i] += usize::from(in_x && in_y);
        }
    }
    let best = (0..4).min_by_key(|&i| hidden[i]).unwrap_or(0);
    corners[best].0.clone()
}

/// 12,345 → "12k", 1,234,567 → "1.2M".
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(feature = "png")]
mod png;
#[cfg(feature = "png")]
pub use png::{svg_to_png, Written};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counts_axis_labels_whole_numbers_only() {
        let points: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 50.0)).collect();
        // y ticks on whole numbers too, so any fractional label is an x tick.
        let chart = |c: Chart| {
            c.y_range(0.0, 100.0)
                .with(Series::line("acc", points.clone()))
                .to_svg()
                .unwrap()
        };
        let fractional = |svg: &str| {
            svg.split('>')
                .filter_map(|piece| piece.strip_suffix("</text"))
                .any(|t| t.trim().parse::<f64>().is_ok_and(|v| v.fract() != 0.0))
        };
        // The padded range makes plotters pick ticks between the trials...
        assert!(fractional(&chart(Chart::new("t", "trial", "y"))));
        // ... which a counts axis leaves unlabelled.
        let counts = chart(Chart::new("t", "trial", "y").counts_x());
        assert!(!fractional(&counts), "{counts}");
    }

    #[test]
    fn a_long_title_is_wrapped_not_cut_off() {
        // Figure 1's title: it ran off both edges of the 720 px chart as one caption line.
        let title = "Cells at matched size: clutter variant of Fashion-MNIST (difficulty 0.5), \
                     4000 training and 1000 validation images, mean ± 1 sd over 3 seeds";
        let lines = title_lines(title, 720);
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines.join(" "), title);
        let fits = (720 - 24) as f64 / (0.48 * TITLE_PX as f64);
        assert!(
            lines.iter().all(|l| (l.chars().count() as f64) <= fits),
            "{lines:?}"
        );
        // Every line is in the SVG, each its own text element (plotters puts the text on a line
        // of its own).
        let svg = Chart::new(title, "x", "y")
            .with(Series::line("s", vec![(0.0, 1.0), (1.0, 2.0)]))
            .to_svg()
            .unwrap();
        for l in &lines {
            assert!(svg.lines().any(|x| x.trim() == l), "{l}\n{svg}");
        }
        // A short title stays one line; an empty one is one empty line.
        assert_eq!(title_lines("t", 720), ["t"]);
        assert_eq!(title_lines("", 720), [""]);
    }

    #[test]
    fn a_label_on_the_rightmost_point_stays_inside_the_chart() {
        // Figure 1's `ff_wide5`, the largest net, had its label cut at the right edge.
        let label = "ff_deep_wide2_label";
        let svg = Chart::new("t", "x", "y")
            .log_x()
            .with(Series::points("s", [(3e4, 0.1), (5e5, 0.2)]).with_labels(["ff_base", label]))
            .to_svg()
            .unwrap();
        let lines: Vec<&str> = svg.lines().collect();
        let at = lines.iter().position(|l| l.trim() == label).unwrap();
        let x: f64 = lines[at - 1]
            .split("x=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        // Generous glyph width: 11 px labels are written at ~9 px, about 5 px a character.
        assert!(x + label.len() as f64 * 5.5 <= 720.0, "label starts at {x}");
    }

    fn corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
        legend_corner(points.iter().copied(), (0.0, 10.0), (0.0, 1.0), 3)
    }

    #[test]
    fn the_legend_goes_where_it_hides_the_fewest_points() {
        let rising: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, i as f64 / 10.0)).collect();
        assert_eq!(corner(&rising), SeriesLabelPosition::LowerRight);
        // A falling curve ends in the lower right (the old fixed place) and leaves the lower
        // left empty.
        let falling: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64, 1.0 - i as f64 / 10.0))
            .collect();
        assert_eq!(corner(&falling), SeriesLabelPosition::LowerLeft);
        // Points along the whole bottom and the left: the upper right.
        let mut floor: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 0.05)).collect();
        floor.extend((0..=10).map(|i| (0.5, i as f64 / 10.0)));
        assert_eq!(corner(&floor), SeriesLabelPosition::UpperRight);
        // Nothing to hide: the lower right, by convention.
        assert_eq!(corner(&[]), SeriesLabelPosition::LowerRight);
    }

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

    fn figure_series(name: &str, style: Style) -> Series {
        Series {
            style,
            ..Series::line(name, [(30_000.0, 0.4), (150_000.0, 0.5)])
                .with_errors([0.02, 0.0])
                .with_labels(["p1", "p2"])
        }
    }

    #[test]
    fn log_axis_labels_and_every_series() {
        let svg = Chart::new("t", "parameters", "top-1")
            .log_x()
            .size(860, 520)
            .with(figure_series("alpha", Style::Line))
            .with(figure_series("beta", Style::Points))
            .to_svg()
            .unwrap_or_default();
        for s in ["alpha", "beta", "p1", "p2", "parameters", "100k", "860"] {
            assert!(svg.contains(s), "{s} missing");
        }
        // Log ticks show values, not their logarithms.
        assert!(!svg.contains(">4.5<") && !svg.contains(">5<"), "{svg}");
    }

    #[test]
    fn an_error_bar_is_a_vertical_line_and_two_caps() {
        let lines = |errors: &[f64]| {
            Chart::new("t", "x", "y")
                .with(Series::points("a", [(1.0, 0.5), (2.0, 0.6)]).with_errors(errors.to_vec()))
                .to_svg()
                .unwrap_or_default()
                // The first series' colour, 1 px wide: bars and caps (its line is 2 px).
                .matches(r##"stroke="#1F77B4" stroke-width="1""##)
                .count()
        };
        assert_eq!(lines(&[]), 0);
        assert_eq!(lines(&[0.1]), 3);
        assert_eq!(lines(&[0.1, 0.2]), 6);
        // Zero and non-finite errors draw nothing.
        assert_eq!(lines(&[0.0, f64::NAN]), 0);
    }

    #[test]
    fn error_bars_widen_the_fitted_y_range() {
        let top = |err: f64| {
            let svg = Chart::new("t", "x", "y")
                .with(Series::points("a", [(0.1, 50.0), (0.2, 60.0)]).with_errors([err, err]))
                .to_svg()
                .unwrap_or_default();
            // The highest y tick label drawn.
            svg.split('>')
                .filter_map(|t| t.split('<').next())
                .filter_map(|t| t.trim().parse::<f64>().ok())
                .fold(f64::MIN, f64::max)
        };
        // x ticks stay below 1, so the largest number is a y tick.
        assert!(
            top(0.0) < 65.0 && top(40.0) > 90.0,
            "{} vs {}",
            top(40.0),
            top(0.0)
        );
    }

    #[test]
    fn a_log_axis_leaves_out_non_positive_x() {
        let chart = Chart::new("t", "x", "y")
            .log_x()
            .with(Series::line("zero", [(0.0, 1.0), (-1.0, 2.0)]));
        assert!(chart.is_empty());
        assert!(!Chart::new("t", "x", "y")
            .with(Series::line("zero", [(0.0, 1.0)]))
            .is_empty());
        assert_eq!(human(12_345.0), "12k");
        assert_eq!(human(1_234_567.0), "1.2M");
    }
}
