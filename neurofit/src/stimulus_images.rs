//! Stimulus images at a model's input size, under one documented policy.
//!
//! Stimuli rarely come at the model's input size. Stretching them to it (what an unconditional
//! resize does) distorts every non-square image and changes the features, and so the neural
//! scores, without a word. Instead:
//! - an image of the model's size is used as it is;
//! - an image of the model's aspect ratio is resized to it (nothing is lost or distorted);
//! - any other image is handled by the [`StimulusFit`] policy: [`StimulusFit::Crop`] (default)
//!   resizes its short side to the model's and cuts the centre out, as torchvision's
//!   `Resize(short side)` + `CenterCrop` evaluation pipeline does; [`StimulusFit::Refuse`] stops
//!   with an error naming the sizes, for users who must not lose the borders.
//!
//! What was done is returned as a [`StimulusGeometry`] for the output.

use std::collections::BTreeMap;

use image::{imageops::FilterType, DynamicImage, GenericImageView};
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use crate::error::{NeurofitError, Result};
use crate::stimulus_set::StimulusSet;

/// What to do with a stimulus whose aspect ratio differs from the model's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StimulusFit {
    /// Resize the short side to the model's and centre-crop the long side.
    #[default]
    Crop,
    /// Stop with an error.
    Refuse,
}

/// How the stimuli were brought to the model's input size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StimulusGeometry {
    /// The policy applied to images of another aspect ratio.
    pub policy: StimulusFit,
    /// `[height, width]` the model takes.
    pub model_input: [usize; 2],
    /// `"<width>x<height>"` → how many stimuli had that size.
    pub sizes: BTreeMap<String, usize>,
    /// Stimuli resized without cropping (same aspect ratio, other size).
    pub resized: usize,
    /// Stimuli resized on their short side and centre-cropped.
    pub cropped: usize,
}

impl StimulusGeometry {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        let [h, w] = self.model_input;
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .map(|(s, n)| format!("{n} × {s}"))
            .collect();
        let as_is: usize = self.sizes.values().sum::<usize>() - self.resized - self.cropped;
        format!(
            "stimuli ({}) at the model's {w}x{h}: {as_is} as they are, {} resized, {} resized on \
             the short side and centre-cropped (policy: {})",
            sizes.join(", "),
            self.resized,
            self.cropped,
            match self.policy {
                StimulusFit::Crop => "crop",
                StimulusFit::Refuse => "refuse",
            }
        )
    }
}

/// What [`fit_image`] did to one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fitted {
    /// Already the model's size: used unchanged.
    AsIs,
    /// The model's aspect ratio: resized.
    Resized,
    /// Another aspect ratio: short side resized and the centre cut out.
    Cropped,
}

/// `img` at `width × height` under `policy` (see the module documentation).
pub fn fit_image(
    img: DynamicImage,
    width: u32,
    height: u32,
    policy: StimulusFit,
) -> std::result::Result<(DynamicImage, Fitted), String> {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return Ok((img, Fitted::AsIs));
    }
    if w == 0 || h == 0 {
        return Err(format!("the image is {w}x{h}"));
    }
    // Same aspect ratio, compared exactly: w / h == width / height.
    if u64::from(w) * u64::from(height) == u64::from(h) * u64::from(width) {
        return Ok((
            img.resize_exact(width, height, FilterType::Triangle),
            Fitted::Resized,
        ));
    }
    if policy == StimulusFit::Refuse {
        return Err(format!(
            "the image is {w}x{h}, whose aspect ratio differs from the model's {width}x{height} \
             (--stimulus-fit crop resizes the short side and centre-crops)"
        ));
    }
    // The smallest scale at which the image covers the target in both directions.
    let scale = f64::max(
        f64::from(width) / f64::from(w),
        f64::from(height) / f64::from(h),
    );
    let rw = ((f64::from(w) * scale).round() as u32).max(width);
    let rh = ((f64::from(h) * scale).round() as u32).max(height);
    let resized = img.resize_exact(rw, rh, FilterType::Triangle);
    let (x, y) = ((rw - width) / 2, (rh - height) / 2);
    Ok((resized.crop_imm(x, y, width, height), Fitted::Cropped))
}

/// `[n, c, h, w]` zeros, or an error naming the size when they cannot be allocated (a model
/// input of 10⁶ pixels a side aborted the process from inside the allocator).
fn zeroed_images(set: &StimulusSet, shape: [usize; 4]) -> Result<Array4<f32>> {
    let v = crate::alloc::zeros(&shape).map_err(|e| NeurofitError::File {
        path: set.zip.clone().unwrap_or_else(|| set.root.clone()),
        reason: format!(
            "its {} stimuli at the model's input of {}×{}×{} (channels×height×width) {e}",
            shape[0], shape[1], shape[2], shape[3]
        ),
    })?;
    Array4::from_shape_vec(shape, v).map_err(|e| NeurofitError::Assembly(e.to_string()))
}

/// Every stimulus of `set` at the model's `[channels, height, width]`, `[N, C, H, W]` in [0, 1],
/// and what was done to fit them.
pub fn load_images(
    set: &StimulusSet,
    channels: usize,
    height: usize,
    width: usize,
    policy: StimulusFit,
) -> Result<(Array4<f32>, StimulusGeometry)> {
    let mut out = zeroed_images(set, [set.len(), channels, height, width])?;
    let mut geometry = StimulusGeometry {
        policy,
        model_input: [height, width],
        ..StimulusGeometry::default()
    };
    let bad = |i: usize, reason: String| NeurofitError::File {
        path: set.zip.clone().unwrap_or_else(|| set.root.clone()),
        reason: format!(
            "stimulus `{}` ({}): {reason}",
            set.stimulus_id[i], set.filename[i]
        ),
    };
    set.for_each_image(|i, bytes| {
        let img = image::load_from_memory(bytes).map_err(|e| bad(i, e.to_string()))?;
        let (w, h) = img.dimensions();
        *geometry.sizes.entry(format!("{w}x{h}")).or_insert(0) += 1;
        let (img, how) =
            fit_image(img, width as u32, height as u32, policy).map_err(|e| bad(i, e))?;
        match how {
            Fitted::AsIs => {}
            Fitted::Resized => geometry.resized += 1,
            Fitted::Cropped => geometry.cropped += 1,
        }
        if channels == 1 {
            for (x, y, p) in img.to_luma8().enumerate_pixels() {
                out[[i, 0, y as usize, x as usize]] = f32::from(p[0]) / 255.0;
            }
        } else {
            for (x, y, p) in img.to_rgb8().enumerate_pixels() {
                for ch in 0..channels.min(3) {
                    out[[i, ch, y as usize, x as usize]] = f32::from(p[ch]) / 255.0;
                }
            }
        }
        Ok(())
    })?;
    Ok((out, geometry))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use image::{GrayImage, Luma};

    /// A `w × h` image, black with a white vertical band in the middle third of its width.
    fn banded(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, _| {
            Luma([if 3 * x >= w && 3 * x < 2 * w { 255 } else { 0 }])
        }))
    }

    /// Stimuli at an input too large to hold are a clear error, not an abort in the allocator.
    #[test]
    fn an_input_too_large_to_hold_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"").unwrap();
        std::fs::write(
            dir.path().join("stimulus_set.csv"),
            "stimulus_id,filename\ns0,a.png\n",
        )
        .unwrap();
        let set = StimulusSet::open(dir.path()).unwrap();
        for (side, want) in [
            (1usize << 40, "more floats"),
            (1 << 22, "cannot be allocated"),
        ] {
            let e = load_images(&set, 3, side, side, StimulusFit::Crop).unwrap_err();
            assert!(e.to_string().contains(want), "{side}: {e}");
        }
        assert_eq!(
            zeroed_images(&set, [1, 3, 4, 5]).unwrap().dim(),
            (1, 3, 4, 5)
        );
    }

    #[test]
    fn same_size_is_untouched_same_aspect_is_resized() {
        let (img, how) = fit_image(banded(28, 28), 28, 28, StimulusFit::Refuse).unwrap();
        assert_eq!((how, img.dimensions()), (Fitted::AsIs, (28, 28)));
        let (img, how) = fit_image(banded(56, 56), 28, 28, StimulusFit::Refuse).unwrap();
        assert_eq!((how, img.dimensions()), (Fitted::Resized, (28, 28)));
    }

    #[test]
    fn another_aspect_ratio_is_centre_cropped_not_stretched_or_refused() {
        // 90×30: the short side (30) goes to 30, then the centre 30×30 is kept, which is all
        // band; a stretch would keep the black thirds on both sides.
        let (img, how) = fit_image(banded(90, 30), 30, 30, StimulusFit::Crop).unwrap();
        assert_eq!((how, img.dimensions()), (Fitted::Cropped, (30, 30)));
        let g = img.to_luma8();
        assert!(g.pixels().all(|p| p[0] > 200), "the centre is the band");
        // A tall image into a wide input: the short side is the width.
        let (img, _) = fit_image(banded(20, 50), 40, 20, StimulusFit::Crop).unwrap();
        assert_eq!(img.dimensions(), (40, 20));
        let e = fit_image(banded(90, 30), 30, 30, StimulusFit::Refuse).unwrap_err();
        assert!(e.contains("90x30") && e.contains("aspect ratio"), "{e}");
    }

    #[test]
    fn load_images_reports_what_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("stimulus_id,filename\n");
        for (id, (w, h)) in [("a", (28, 28)), ("b", (56, 56)), ("c", (84, 28))] {
            banded(w, h)
                .save(dir.path().join(format!("{id}.png")))
                .unwrap();
            csv.push_str(&format!("{id},{id}.png\n"));
        }
        std::fs::write(dir.path().join("set.csv"), csv).unwrap();
        let set = StimulusSet::open(dir.path()).unwrap();
        let (x, g) = load_images(&set, 1, 28, 28, StimulusFit::Crop).unwrap();
        assert_eq!(x.dim(), (3, 1, 28, 28));
        assert_eq!((g.resized, g.cropped), (1, 1));
        assert_eq!(g.sizes["84x28"], 1);
        assert!(g
            .summary()
            .contains("1 resized, 1 resized on the short side"));
        let e = load_images(&set, 1, 28, 28, StimulusFit::Refuse)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stimulus `c`") && e.contains("84x28"), "{e}");
    }
}
