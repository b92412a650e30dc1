//! Writes a PNG grid of clutter images (one row per difficulty, targets' classes printed) so the
//! variant can be looked at: `cargo run -p datasets --example clutter_preview -- OUT.png [N]`.
//! `cargo test -p datasets` writes a three-column grid into a temporary folder (skipped where
//! Fashion-MNIST is not installed).

use datasets::{Clutter, ClutterConfig, Dataset, FashionMnist};
use image::{GrayImage, Luma};
use std::path::Path;

/// The difficulties shown, one row each.
const DIFFICULTIES: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// Draws `n` clutter images of each difficulty from `fm`'s training images into `out`; returns
/// the grid's size in pixels.
fn preview(
    fm: &FashionMnist,
    n: usize,
    out: &Path,
) -> Result<(u32, u32), Box<dyn std::error::Error>> {
    let (zoom, side) = (4u32, 28u32);
    let cell = side * zoom + 4;
    let mut grid = GrayImage::from_pixel(
        cell * n as u32,
        cell * DIFFICULTIES.len() as u32,
        Luma([64]),
    );
    for (row, &difficulty) in DIFFICULTIES.iter().enumerate() {
        let cfg = ClutterConfig {
            difficulty,
            ..ClutterConfig::new(n, 1)
        };
        let set = Clutter::generate(&fm.train, &cfg)?;
        let names = set.class_names();
        let labels: Vec<_> = set
            .images
            .labels()
            .iter()
            .map(|&l| names[l].as_str())
            .collect();
        println!("difficulty {difficulty}: {labels:?}");
        for i in 0..n {
            let img = set.images.image(i).ok_or("image out of range")?;
            for y in 0..side * zoom {
                for x in 0..side * zoom {
                    let v = img[((y / zoom) * side + x / zoom) as usize];
                    grid.put_pixel(i as u32 * cell + x, row as u32 * cell + y, Luma([v]));
                }
            }
        }
    }
    // Encoded in memory, then written atomically: a killed run leaves no half-written PNG.
    let mut png = Vec::new();
    grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    atomic_file::write(out, &png)?;
    println!("wrote {}", out.display());
    Ok(grid.dimensions())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "clutter_preview.png".into());
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    preview(&FashionMnist::locate_and_load(None)?, n, Path::new(&out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use datasets::{Error, FashionMnist};

    /// `cargo test` runs the example on three images per row (`test = true` in the crate's
    /// Cargo.toml); skipped, with a message, where Fashion-MNIST is not installed.
    #[test]
    fn writes_a_small_grid() -> Result<(), Box<dyn std::error::Error>> {
        let fm = match FashionMnist::locate_and_load(None) {
            Err(e @ Error::NotFound { .. }) => {
                eprintln!("skipped: {e}");
                return Ok(());
            }
            other => other?,
        };
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("preview.png");
        let (w, h) = super::preview(&fm, 3, &out)?;
        assert_eq!((w, h), (3 * 116, 5 * 116));
        assert_eq!(image::open(&out)?.into_luma8().dimensions(), (w, h));
        Ok(())
    }
}
