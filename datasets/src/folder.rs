//! ImageFolder: a directory with one subdirectory per class, each holding JPEG or PNG files (at any
//! depth), as torchvision's `ImageFolder` reads ImageNet-style trees. Classes are the subdirectory
//! names sorted by byte order, labelled 0.. in that order; files are sorted too, so the sample list
//! is the same on every machine. Files with other extensions, and hidden entries, are skipped.
//!
//! Images are decoded (format guessed from the content, not the extension) to RGB, then
//! transformed:
//! - [`TrainTransform`]: torchvision's `RandomResizedCrop` (area fraction and aspect ratio drawn
//!   from ranges, ten tries, then a centre crop), a horizontal flip with probability ½, and
//!   normalisation;
//! - [`EvalTransform`]: resize so the shorter side is `resize`, centre-crop `crop × crop`,
//!   normalise (ImageNet's standard is 256 → 224).
//!
//! Resizing is antialiased bilinear; the crop and the resize are done in one resampling pass, which
//! gives the same values as resizing the whole image and then cropping.

use crate::batcher::{check_index, check_out_len, Dataset, ImageDims};
use crate::images::Normalize;
use crate::resample::{resample_plane, Region};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tensor::Rng;

/// Random resized crop + horizontal flip + normalisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTransform {
    /// Output side in pixels.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
    pub hflip: bool,
    pub normalize: Normalize,
}

impl TrainTransform {
    /// torchvision's ImageNet training defaults at `size` (224 for the zoo).
    pub fn imagenet(size: usize) -> Self {
        TrainTransform {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: true,
            normalize: Normalize::imagenet(),
        }
    }
}

/// Resize the shorter side, centre crop, normalise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalTransform {
    /// Shorter side after resizing.
    pub resize: usize,
    /// Output side (at most `resize`).
    pub crop: usize,
    pub normalize: Normalize,
}

impl EvalTransform {
    /// ImageNet's evaluation standard scaled to `crop`: resize to `crop · 256/224`, centre crop.
    pub fn imagenet(crop: usize) -> Self {
        EvalTransform {
            resize: (crop as f64 * 256.0 / 224.0).round() as usize,
            crop,
            normalize: Normalize::imagenet(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Train(TrainTransform),
    Eval(EvalTransform),
}

impl Transform {
    /// Side of the square images the transform produces.
    pub fn output_side(&self) -> usize {
        match self {
            Transform::Train(t) => t.size,
            Transform::Eval(t) => t.crop,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("image transform", msg));
        match self {
            Transform::Train(t) => {
                if t.size == 0 {
                    return bad("size must be at least 1".into());
                }
                let (s0, s1) = t.scale;
                if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
                    return bad(format!(
                        "scale ({s0}, {s1}) must satisfy 0 < min <= max <= 1"
                    ));
                }
                let (r0, r1) = t.ratio;
                if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
                    return bad(format!(
                        "ratio ({r0}, {r1}) must satisfy 0 < min <= max < inf"
                    ));
                }
                t.normalize.validate(3)
            }
            Transform::Eval(t) => {
                if t.crop == 0 || t.crop > t.resize {
                    return bad(format!(
                        "crop {} must be between 1 and resize {}",
                        t.crop, t.resize
                    ));
                }
                t.normalize.validate(3)
            }
        }
    }
}

/// A class-per-folder image tree; see the module documentation.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    transform: Transform,
}

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if !is_hidden(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    // Deep trees are fine; a symlink loop is not.
    if depth > 32 {
        return Err(Error::invalid(
            "image folder",
            format!(
                "{} is nested more than 32 levels deep (a symlink loop?)",
                dir.display()
            ),
        ));
    }
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_images(&path, out, depth + 1)?;
        } else if path.is_file() && is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Lists `root`'s classes and images. Errors when `root` is missing, has no class folders, or a
    /// class folder holds no JPEG/PNG file.
    pub fn open(root: &Path, transform: Transform) -> Result<Self> {
        transform.validate()?;
        if !root.is_dir() {
            return Err(Error::NotFound {
                what: "image folder".into(),
                tried: vec![root.to_path_buf()],
                hint: "Expected a directory with one subdirectory of JPEG/PNG images per class \
                       (ImageNet's train/ or val/ layout)."
                    .into(),
            });
        }
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            collect_images(&dir, &mut files, 0)?;
            if files.is_empty() {
                return Err(Error::invalid(
                    "image folder",
                    format!(
                        "class folder {} holds no .jpg/.jpeg/.png file",
                        dir.display()
                    ),
                ));
            }
            let label = classes.len();
            samples.extend(files.into_iter().map(|f| (f, label)));
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(Error::invalid(
                "image folder",
                format!(
                    "{} has no class subdirectories; expected ROOT/CLASS/IMAGE.jpg",
                    root.display()
                ),
            ));
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            transform,
        })
    }

    /// The same images under another transform (a training tree evaluated without augmentation).
    pub fn with_transform(&self, transform: Transform) -> Result<Self> {
        transform.validate()?;
        Ok(ImageFolder {
            transform,
            ..self.clone()
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image's path and label, in dataset order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }
}

/// An RGB image as three planes of 0..=255 values.
struct Planes {
    w: usize,
    h: usize,
    data: [Vec<f32>; 3],
}

/// Decodes a JPEG or PNG file to RGB planes, naming the file in any error.
fn decode(path: &Path) -> Result<Planes> {
    let err = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let img = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .decode()
        .map_err(|e| err(e.to_string()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(err(format!("the image is empty ({w}×{h})")));
    }
    let mut data = [vec![0f32; w * h], vec![0f32; w * h], vec![0f32; w * h]];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c][i] = px.0[c] as f32;
        }
    }
    Ok(Planes { w, h, data })
}

/// torchvision's `RandomResizedCrop.get_params`: the crop `(x, y, w, h)` in source pixels.
fn random_resized_crop(
    w: usize,
    h: usize,
    t: &TrainTransform,
    rng: &mut Rng,
) -> (usize, usize, usize, usize) {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((t.ratio.0 as f64).ln(), (t.ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * (t.scale.0 as f64 + (t.scale.1 - t.scale.0) as f64 * rng.uniform());
        let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let y = rng.below(h - ch + 1);
            let x = rng.below(w - cw + 1);
            return (x, y, cw, ch);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < t.ratio.0 as f64 {
        (
            w,
            ((w as f64 / t.ratio.0 as f64).round() as usize).clamp(1, h),
        )
    } else if in_ratio > t.ratio.1 as f64 {
        (
            ((h as f64 * t.ratio.1 as f64).round() as usize).clamp(1, w),
            h,
        )
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// The source region that resizing the shorter side to `resize` and centre-cropping `crop` keeps.
fn eval_region(w: usize, h: usize, t: &EvalTransform) -> Region {
    // torchvision truncates the longer side.
    let (ow, oh) = if w <= h {
        (t.resize, (t.resize as f64 * h as f64 / w as f64) as usize)
    } else {
        ((t.resize as f64 * w as f64 / h as f64) as usize, t.resize)
    };
    let left = ((ow - t.crop) as f64 / 2.0).round();
    let top = ((oh - t.crop) as f64 / 2.0).round();
    let (sx, sy) = (w as f64 / ow as f64, h as f64 / oh as f64);
    Region {
        x: left * sx,
        y: top * sy,
        w: t.crop as f64 * sx,
        h: t.crop as f64 * sy,
    }
}

/// Applies `transform` to `img`, writing CHW normalised values into `out`.
fn apply(img: &Planes, transform: &Transform, rng: &mut Rng, out: &mut [f32]) {
    let side = transform.output_side();
    let (region, flip, normalize) = match transform {
        Transform::Train(t) => {
            let (x, y, cw, ch) = random_resized_crop(img.w, img.h, t, rng);
            let region = Region {
                x: x as f64,
                y: y as f64,
                w: cw as f64,
                h: ch as f64,
            };
            let flip = t.hflip && rng.uniform() < 0.5;
            (region, flip, &t.normalize)
        }
        Transform::Eval(t) => (eval_region(img.w, img.h, t), false, &t.normalize),
    };
    for (c, plane) in out.chunks_exact_mut(side * side).enumerate() {
        resample_plane(&img.data[c], img.w, img.h, region, plane, side, side);
        if flip {
            plane.chunks_exact_mut(side).for_each(|row| row.reverse());
        }
        let (scale, shift) = normalize.affine(c);
        plane.iter_mut().for_each(|v| *v = *v * scale + shift);
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn dims(&self) -> ImageDims {
        let s = self.transform.output_side();
        ImageDims::new(3, s, s)
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.samples.get(index).map(|(_, l)| *l)
    }

    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        check_index("image folder", index, self.len())?;
        check_out_len("image folder", out, self.dims())?;
        let (path, label) = &self.samples[index];
        let img = decode(path)?;
        apply(&img, &self.transform, rng, out);
        Ok(*label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_resized_crop_stays_inside_and_respects_ranges() {
        let t = TrainTransform::imagenet(8);
        let mut rng = Rng::new(1);
        for (w, h) in [(100, 60), (7, 300), (1, 1), (640, 480)] {
            for _ in 0..200 {
                let (x, y, cw, ch) = random_resized_crop(w, h, &t, &mut rng);
                assert!(
                    cw >= 1 && ch >= 1 && x + cw <= w && y + ch <= h,
                    "{w}x{h}: {x},{y},{cw},{ch}"
                );
            }
        }
        // On a large image the ten tries nearly always succeed, so ratios stay in range.
        for _ in 0..200 {
            let (_, _, cw, ch) = random_resized_crop(1000, 1000, &t, &mut rng);
            let r = cw as f32 / ch as f32;
            assert!(r > 0.7 && r < 1.4, "{r}");
        }
    }

    #[test]
    fn eval_region_matches_resize_then_centre_crop() {
        let t = EvalTransform {
            resize: 256,
            crop: 224,
            normalize: Normalize::Unit,
        };
        // 500×375 → 341×256 (truncated), crop left = round(117/2) = 58 (ties away from zero),
        // top = 16, scale 375/256.
        let r = eval_region(500, 375, &t);
        let s = 375.0 / 256.0;
        assert!((r.y - 16.0 * (375.0 / 256.0)).abs() < 1e-9);
        assert!(
            (r.x - 59.0 * (500.0 / 341.0)).abs() < 1e-9
                || (r.x - 58.0 * (500.0 / 341.0)).abs() < 1e-9
        );
        assert!((r.h - 224.0 * s).abs() < 1e-9);
    }
}
