//! The figures' charts: points with error bars (mean ± one standard deviation over seeds), joined
//! or not, each point optionally labelled, drawn as SVG with plotters (as trainer's plots, no font
//! files needed) and rasterised to PNG from that SVG with resvg and the system's fonts. Without a
//! system font the PNG would have no text, so it is not written and the caller is told why.

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A point with its spread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Half the error bar (0 draws none).
    pub err: f64,
}

/// A named set of points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
    /// Joined by a line (a curve) rather than a scatter.
    pub joined: bool,
    /// Written beside each point (e.g. the model's name), when set.
    pub point_labels: Vec<String>,
}

/// Titles and axes of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Axes {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// x values are log10 of the quantity; ticks show the quantity.
    pub log10_x: bool,
    pub y_range: Option<(f64, f64)>,
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub svg: PathBuf,
    /// `Err(reason)` when no PNG could be made.
    pub png: std::result::Result<PathBuf, String>,
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

/// Draws `series` and writes `stem.svg` and `stem.png`.
pub fn write(stem: &Path, axes: &Axes, series: &[Series]) -> Result<Written> {
    let svg = draw_svg(axes, series)?;
    let svg_path = stem.with_extension("svg");
    tensor::io::write_file_atomically(&svg_path, svg.as_bytes())
        .with_context(|| format!("writing {}", svg_path.display()))?;
    let png_path = stem.with_extension("png");
    let png = match rasterise(&svg) {
        Ok(bytes) => {
            tensor::io::write_file_atomically(&png_path, &bytes)
                .with_context(|| format!("writing {}", png_path.display()))?;
            Ok(png_path)
        }
        Err(reason) => Err(reason),
    };
    Ok(Written { svg: svg_path, png })
}

/// The chart as SVG text.
pub fn draw_svg(axes: &Axes, series: &[Series]) -> Result<String> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    if pts().next().is_none() {
        return Err(anyhow!("{}: nothing to plot", axes.title));
    }
    if let Some(p) = pts().find(|p| !(p.x.is_finite() && p.y.is_finite() && p.err.is_finite())) {
        return Err(anyhow!("{}: a point is not finite: {p:?}", axes.title));
    }
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
    let xpad = ((x1 - x0) * 0.06).max(0.05);
    let (x0, x1) = (x0 - xpad, x1 + xpad);
    let (y0, y1) = axes.y_range.unwrap_or_else(|| {
        let (a, b) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| {
            (a.min(p.y - p.err), b.max(p.y + p.err))
        });
        let pad = ((b - a) * 0.08).max(1e-3);
        (a - pad, b + pad)
    });
    let err = |e: String| anyhow!("drawing `{}`: {e}", axes.title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&axes.title, ("sans-serif", 19))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        let log = axes.log10_x;
        let x_fmt = move |v: &f64| {
            if log {
                human(10f64.powf(*v))
            } else if v.fract().abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(&axes.x_label)
            .y_desc(&axes.y_label)
            .x_label_formatter(&x_fmt)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let cap = (x1 - x0) * 0.006;
        for (i, s) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let bars = s.points.iter().filter(|p| p.err > 0.0).flat_map(|p| {
                let (lo, hi) = (p.y - p.err, p.y + p.err);
                [
                    PathElement::new(vec![(p.x, lo), (p.x, hi)], c.stroke_width(1)),
                    PathElement::new(vec![(p.x - cap, lo), (p.x + cap, lo)], c.stroke_width(1)),
                    PathElement::new(vec![(p.x - cap, hi), (p.x + cap, hi)], c.stroke_width(1)),
                ]
            });
            chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
            let markers = chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.x, p.y), 4, c.filled())),
                )
                .map_err(|e| err(e.to_string()))?;
            if s.joined {
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().map(|p| (p.x, p.y)),
                        c.stroke_width(2),
                    ))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
            } else {
                markers
                    .label(s.name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
            }
            let labels = s.points.iter().zip(&s.point_labels).map(|(p, l)| {
                Text::new(
                    l.clone(),
                    (p.x + cap * 1.5, p.y),
                    ("sans-serif", 11).into_font(),
                )
            });
            chart.draw_series(labels).map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// 12,345 → "12k", 1,234,567 → "1.2M".
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The SVG at twice its size as PNG bytes, or why not.
fn rasterise(svg: &str) -> std::result::Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    if db.is_empty() {
        return Err("no system font was found (install fonts-dejavu-core); SVG only".into());
    }
    // The generic family the charts ask for, mapped to a font that is there.
    let has = |name: &str| {
        db.faces()
            .any(|f| f.families.iter().any(|(n, _)| n.as_str() == name))
    };
    let family = ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"]
        .into_iter()
        .find(|n| has(n))
        .map(String::from)
        .or_else(|| {
            db.faces()
                .next()
                .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
        });
    if let Some(f) = family {
        db.set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| format!("reading the SVG: {e}"))?;
    let size = tree.size().to_int_size();
    let scale = 2u32;
    let mut pixmap = tiny_skia::Pixmap::new(size.width() * scale, size.height() * scale)
        .ok_or_else(|| format!("an empty image ({}×{})", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale as f32, scale as f32),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| format!("encoding the PNG: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, joined: bool) -> Series {
        Series {
            name: name.into(),
            points: vec![
                Point {
                    x: 4.5,
                    y: 0.4,
                    err: 0.02,
                },
                Point {
                    x: 5.2,
                    y: 0.5,
                    err: 0.0,
                },
            ],
            joined,
            point_labels: vec!["p1".into(), "p2".into()],
        }
    }

    fn axes() -> Axes {
        Axes {
            title: "t".into(),
            x_label: "parameters".into(),
            y_label: "top-1".into(),
            log10_x: true,
            y_range: None,
        }
    }

    #[test]
    fn writes_svg_with_every_series_and_a_png_when_fonts_exist() {
        let dir = tempfile::tempdir().unwrap();
        let w = write(
            &dir.path().join("fig"),
            &axes(),
            &[series("alpha", true), series("beta", false)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&w.svg).unwrap();
        for s in ["alpha", "beta", "p1", "parameters", "32k"] {
            assert!(svg.contains(s), "{s} missing");
        }
        match w.png {
            Ok(p) => {
                let bytes = std::fs::read(p).unwrap();
                assert_eq!(&bytes[1..4], b"PNG");
            }
            Err(reason) => assert!(reason.contains("font"), "{reason}"),
        }
    }

    #[test]
    fn refuses_empty_and_non_finite_input() {
        assert!(draw_svg(&axes(), &[]).is_err());
        let mut s = series("nan", true);
        s.points[0].y = f64::NAN;
        let e = draw_svg(&axes(), &[s]).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
    }
}
