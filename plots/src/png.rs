//! PNG output (feature `png`): the chart's SVG rasterised with resvg at twice its size, using the
//! system's fonts (plotters' SVG names the generic `sans-serif` family, mapped here to a font that
//! is installed). Without any system font the PNG would have no text, so none is made and the
//! caller is told why; the SVG is written either way.

use crate::{Chart, PlotError};
use std::path::{Path, PathBuf};

/// The files [`Chart::write`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// `STEM.svg`.
    pub svg: PathBuf,
    /// `STEM.png`, or why there is none (no system font, say).
    pub png: Result<PathBuf, String>,
}

impl Chart {
    /// Writes `STEM.svg` and, where the system has a font, `STEM.png`, each atomically.
    pub fn write(&self, stem: &Path) -> Result<Written, PlotError> {
        let svg = self.to_svg()?;
        let svg_path = stem.with_extension("svg");
        atomic_file::write(&svg_path, svg.as_bytes()).map_err(|source| PlotError::Write {
            path: svg_path.clone(),
            source,
        })?;
        let png = match svg_to_png(&svg) {
            Ok(bytes) => {
                let png_path = stem.with_extension("png");
                atomic_file::write(&png_path, &bytes).map_err(|source| PlotError::Write {
                    path: png_path.clone(),
                    source,
                })?;
                Ok(png_path)
            }
            Err(reason) => Err(reason),
        };
        Ok(Written { svg: svg_path, png })
    }
}

/// An SVG at twice its size as PNG bytes, or why not.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    if db.is_empty() {
        return Err("no system font was found (install fonts-dejavu-core); SVG only".into());
    }
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
    use crate::{Chart, Series};

    #[test]
    fn writes_svg_and_a_png_when_fonts_exist() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let w = Chart::new("t", "parameters", "top-1")
            .log_x()
            .with(Series::line("alpha", [(30_000.0, 0.4), (150_000.0, 0.5)]).with_errors([0.02]))
            .write(&dir.path().join("fig"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(w.svg.ends_with("fig.svg"));
        let svg = std::fs::read_to_string(&w.svg).unwrap_or_default();
        assert!(svg.contains("alpha"));
        match w.png {
            Ok(p) => {
                let bytes = std::fs::read(p).unwrap_or_default();
                assert_eq!(bytes.get(1..4), Some(&b"PNG"[..]));
            }
            Err(reason) => assert!(reason.contains("font"), "{reason}"),
        }
        // A folder that does not exist: an error naming the file.
        let e = Chart::new("t", "x", "y")
            .with(Series::line("a", [(1.0, 1.0)]))
            .write(&dir.path().join("missing").join("fig"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("fig.svg"), "{e}");
    }
}
