//! Photo-like JPEG trees, generated and seeded, for tests and the loader benchmark (no photos
//! ship with the project, and a decoder's speed depends on what it decodes: flat colours
//! compress to almost nothing, white noise to far more than photos).
//!
//! Each image is fractal value noise (octaves of bilinearly interpolated random grids, from one
//! pixel up to the image size, of equal amplitude: equal energy per octave is the 1/f amplitude
//! spectrum of natural images) in a luminance and two weaker colour channels, with a few
//! soft-edged ellipses on top. At 500×375 and quality 90 the files come out at about 100 kB,
//! what ImageNet's photos weigh on average.

use crate::{derive_seed, Error, Result};
use image::codecs::jpeg::JpegEncoder;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tensor::Rng;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    /// Number of classes (one folder each).
    pub classes: usize,
    /// Images written per class.
    pub per_class: usize,
    /// Image sizes, used in turn (ImageNet mixes landscape and portrait shapes).
    pub sizes: Vec<(usize, usize)>,
    /// JPEG quality (1–100).
    pub quality: u8,
    /// Seeds every image's content, so a configuration always writes the same files.
    pub seed: u64,
}

impl SyntheticConfig {
    /// `count` images in 10 classes at ImageNet-like sizes (mostly 500×375 and 375×500).
    pub fn imagenet_like(count: usize, seed: u64) -> Self {
        SyntheticConfig {
            classes: 10,
            per_class: count.div_ceil(10),
            sizes: vec![(500, 375), (375, 500), (500, 333), (500, 375), (500, 400)],
            quality: 90,
            seed,
        }
    }

    /// `per_class` images in each of `classes` classes, 24×18 and 18×24 in turn: the smallest
    /// tree the ImageNet transforms (a 16-px crop of a resize) take, so that a test trains a
    /// tiny model on it in about a second.
    pub fn tiny(classes: usize, per_class: usize, seed: u64) -> Self {
        SyntheticConfig {
            classes,
            per_class,
            sizes: vec![(24, 18), (18, 24)],
            quality: 85,
            seed,
        }
    }
}

/// One image as RGB bytes.
pub fn image(w: usize, h: usize, rng: &mut Rng) -> Vec<u8> {
    let lum = fractal(w, h, rng, 1.0);
    let c1 = fractal(w, h, rng, 0.35);
    let c2 = fractal(w, h, rng, 0.35);
    let base = [
        60.0 + 120.0 * rng.uniform(),
        60.0 + 120.0 * rng.uniform(),
        60.0 + 120.0 * rng.uniform(),
    ];
    let mut rgb: Vec<f32> = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        let (l, a, b) = (lum[i], c1[i], c2[i]);
        rgb.extend([
            base[0] as f32 + l + a,
            base[1] as f32 + l - 0.5 * a + 0.5 * b,
            base[2] as f32 + l - b,
        ]);
    }
    for _ in 0..2 + rng.below(5) {
        let (cx, cy) = (rng.uniform() * w as f64, rng.uniform() * h as f64);
        let (rx, ry) = (
            (0.05 + 0.25 * rng.uniform()) * w as f64,
            (0.05 + 0.25 * rng.uniform()) * h as f64,
        );
        let colour = [
            255.0 * rng.uniform(),
            255.0 * rng.uniform(),
            255.0 * rng.uniform(),
        ];
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2);
                // A soft edge a few pixels wide, so the ellipse is an edge, not a step.
                let alpha = (((1.0 - d) * 8.0).clamp(0.0, 1.0) * 0.8) as f32;
                if alpha > 0.0 {
                    let p = &mut rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
                    for c in 0..3 {
                        p[c] += alpha * (colour[c] as f32 - p[c]);
                    }
                }
            }
        }
    }
    rgb.into_iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Octaves of value noise from cells of 1 pixel up to the image size, of equal amplitude.
fn fractal(w: usize, h: usize, rng: &mut Rng, gain: f32) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    let mut cell = 1usize;
    let largest = w.max(h);
    while cell <= largest {
        let amp = gain * 14.0;
        let gw = w / cell + 2;
        let gh = h / cell + 2;
        let grid: Vec<f32> = (0..gw * gh).map(|_| rng.normal() as f32).collect();
        let inv = 1.0 / cell as f32;
        for y in 0..h {
            let fy = y as f32 * inv;
            let (y0, ty) = (fy as usize, fy.fract());
            for x in 0..w {
                let fx = x as f32 * inv;
                let (x0, tx) = (fx as usize, fx.fract());
                let g = |gx: usize, gy: usize| grid[gy * gw + gx];
                let top = g(x0, y0) + tx * (g(x0 + 1, y0) - g(x0, y0));
                let bot = g(x0, y0 + 1) + tx * (g(x0 + 1, y0 + 1) - g(x0, y0 + 1));
                out[y * w + x] += amp * (top + ty * (bot - top));
            }
        }
        cell *= 2;
    }
    out
}

/// JPEG bytes of `rgb` (`w × h`) at `quality`.
pub fn encode_jpeg(rgb: &[u8], w: usize, h: usize, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::invalid("JPEG encoder", e.to_string()))?;
    Ok(out)
}

/// Writes an ImageFolder tree `root/class_NNN/img_NNNNN.jpg` (in parallel) and returns the
/// files in class order.
pub fn write_tree(root: &Path, config: &SyntheticConfig) -> Result<Vec<PathBuf>> {
    if config.classes == 0 || config.per_class == 0 || config.sizes.is_empty() {
        return Err(Error::invalid(
            "synthetic images",
            "needs at least one class, one image per class and one size",
        ));
    }
    let jobs: Vec<(usize, usize)> = (0..config.classes)
        .flat_map(|c| (0..config.per_class).map(move |i| (c, i)))
        .collect();
    for c in 0..config.classes {
        let dir = root.join(format!("class_{c:03}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    jobs.par_iter()
        .map(|&(c, i)| {
            let n = c * config.per_class + i;
            let (w, h) = config.sizes[n % config.sizes.len()];
            let mut rng = Rng::new(derive_seed(&[config.seed, c as u64, i as u64]));
            let rgb = image(w, h, &mut rng);
            let bytes = encode_jpeg(&rgb, w, h, config.quality)?;
            let path = root.join(format!("class_{c:03}/img_{i:05}.jpg"));
            crate::cache::atomic_write(&path, &bytes)?;
            Ok(path)
        })
        .collect()
}

/// Writes `root/train` and `root/val`, the same tree in each: the layout `DataSpec::Folder`
/// and `cargo xtask train --dataset folder` read, for tests that train on JPEGs (the validation
/// images being the training images does not matter there; that the run finds both does).
pub fn write_splits(root: &Path, config: &SyntheticConfig) -> Result<()> {
    for split in ["train", "val"] {
        write_tree(&root.join(split), config)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_images_are_not_flat() {
        let a = image(24, 16, &mut Rng::new(3));
        let b = image(24, 16, &mut Rng::new(3));
        let c = image(24, 16, &mut Rng::new(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(var > 25.0, "variance {var}");
    }

    #[test]
    fn tree_has_the_requested_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SyntheticConfig {
            classes: 2,
            per_class: 3,
            sizes: vec![(20, 14), (14, 20)],
            quality: 80,
            seed: 1,
        };
        let files = write_tree(dir.path(), &cfg).unwrap();
        assert_eq!(files.len(), 6);
        assert!(
            files[4].ends_with("class_001/img_00001.jpg"),
            "{:?}",
            files[4]
        );
        let img = image::open(&files[1]).unwrap();
        assert_eq!((img.width(), img.height()), (14, 20));
    }

    #[test]
    fn splits_hold_the_same_tree() {
        let dir = tempfile::tempdir().unwrap();
        write_splits(dir.path(), &SyntheticConfig::tiny(2, 1, 5)).unwrap();
        for name in ["class_000/img_00000.jpg", "class_001/img_00000.jpg"] {
            let train = std::fs::read(dir.path().join("train").join(name)).unwrap();
            let val = std::fs::read(dir.path().join("val").join(name)).unwrap();
            assert_eq!(train, val, "{name}");
        }
        let img = image::open(dir.path().join("val/class_001/img_00000.jpg")).unwrap();
        assert_eq!((img.width(), img.height()), (18, 24));
    }
}
