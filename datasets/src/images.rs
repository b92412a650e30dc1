//! In-memory 8-bit image sets (Fashion-MNIST, the clutter variant) and the pixel normalisation
//! they apply on the way out.

use crate::batcher::{check_index, check_out_len, Dataset, ImageDims};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tensor::Rng;

/// How 8-bit pixels become f32 inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalize {
    /// `p / 255`, in [0, 1].
    Unit,
    /// `(p / 255 - mean[c]) / std[c]` per channel (one value applies to every channel).
    MeanStd {
        /// Per-channel mean of the pixels scaled to [0, 1].
        mean: Vec<f32>,
        /// Per-channel standard deviation of the pixels scaled to [0, 1].
        std: Vec<f32>,
    },
}

impl Normalize {
    /// ImageNet's per-channel RGB statistics, as torchvision's references use.
    pub fn imagenet() -> Self {
        Normalize::MeanStd {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// Fashion-MNIST's training-set statistics ([`crate::idx::FASHION_MNIST_MEAN`]/`STD`).
    pub fn fashion_mnist() -> Self {
        Normalize::MeanStd {
            mean: vec![crate::idx::FASHION_MNIST_MEAN],
            std: vec![crate::idx::FASHION_MNIST_STD],
        }
    }

    /// `(scale, shift)` so that the f32 value is `p * scale + shift` for an 8-bit `p` in channel
    /// `c` (`p` in 0..=255) or `v * 255 * scale + shift` for `v` in [0, 1].
    pub(crate) fn affine(&self, channel: usize) -> (f32, f32) {
        match self {
            Normalize::Unit => (1.0 / 255.0, 0.0),
            Normalize::MeanStd { mean, std } => {
                let m = pick(mean, channel);
                let s = pick(std, channel);
                (1.0 / (255.0 * s), -m / s)
            }
        }
    }

    /// Checks the statistics fit `channels` channels and no std is zero or non-finite.
    pub fn validate(&self, channels: usize) -> Result<()> {
        let Normalize::MeanStd { mean, std } = self else {
            return Ok(());
        };
        for (name, v) in [("mean", mean), ("std", std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(Error::invalid(
                    "normalize",
                    format!(
                        "{name} has {} values; expected 1 or {channels} (one per channel)",
                        v.len()
                    ),
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(
                    "normalize",
                    format!("{name} must be finite, got {v:?}"),
                ));
            }
        }
        if std.iter().any(|&s| s <= 0.0) {
            return Err(Error::invalid(
                "normalize",
                format!("std must be positive, got {std:?}"),
            ));
        }
        Ok(())
    }
}

fn pick(v: &[f32], channel: usize) -> f32 {
    if v.len() == 1 {
        v[0]
    } else {
        v[channel]
    }
}

/// ImageNet RGB mean (of pixel values in [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet RGB standard deviation (of pixel values in [0, 1]).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Labelled 8-bit images held in memory, CHW per image, converted to f32 on access.
#[derive(Clone, Debug, PartialEq)]
pub struct U8Images {
    dims: ImageDims,
    pixels: Vec<u8>,
    labels: Vec<usize>,
    class_names: Vec<String>,
    normalize: Normalize,
}

impl U8Images {
    /// Checks that `pixels` holds `labels.len()` images of `dims` and every label is below
    /// `class_names.len()`.
    pub fn new(
        dims: ImageDims,
        pixels: Vec<u8>,
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        if dims.elem_count() == 0 {
            return Err(Error::invalid(
                "images",
                format!("image size {dims} has no pixels"),
            ));
        }
        let expected = labels.len().checked_mul(dims.elem_count());
        if expected != Some(pixels.len()) {
            return Err(Error::invalid(
                "images",
                format!(
                    "{} pixel values do not make {} images of {dims}",
                    pixels.len(),
                    labels.len()
                ),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= class_names.len())
        {
            return Err(Error::invalid(
                "images",
                format!(
                    "label {l} of image {i} is not below the {} classes",
                    class_names.len()
                ),
            ));
        }
        Ok(U8Images {
            dims,
            pixels,
            labels,
            class_names,
            normalize: Normalize::Unit,
        })
    }

    /// The same images, normalised differently.
    pub fn with_normalize(mut self, normalize: Normalize) -> Result<Self> {
        normalize.validate(self.dims.channels)?;
        self.normalize = normalize;
        Ok(self)
    }

    /// How pixels are scaled when handed out.
    pub fn normalize(&self) -> &Normalize {
        &self.normalize
    }

    /// Each image's class index, in image order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// All pixels, image after image, CHW.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The raw pixels of image `index` (CHW); `None` when out of range.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let per = self.dims.elem_count();
        self.pixels.get(index * per..(index + 1) * per)
    }

    /// The first `n` images (all of them when fewer), for quick runs.
    pub fn truncated(&self, n: usize) -> U8Images {
        let n = n.min(self.labels.len());
        U8Images {
            dims: self.dims,
            pixels: self.pixels[..n * self.dims.elem_count()].to_vec(),
            labels: self.labels[..n].to_vec(),
            class_names: self.class_names.clone(),
            normalize: self.normalize.clone(),
        }
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.dims.channels;
        let plane = self.dims.height * self.dims.width;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for image in self.pixels.chunks_exact(self.dims.elem_count().max(1)) {
            for (ch, p) in image.chunks_exact(plane.max(1)).enumerate() {
                for &v in p {
                    let v = v as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
        }
        let n = (self.labels.len() * plane).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| ((q / n - (s / n).powi(2)).max(0.0)).sqrt() as f32)
            .collect();
        (mean, std)
    }
}

impl Dataset for U8Images {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn dims(&self) -> ImageDims {
        self.dims
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.labels.get(index).copied()
    }

    fn get_into(&self, index: usize, _rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        check_index("images", index, self.len())?;
        check_out_len("images", out, self.dims)?;
        let plane = self.dims.height * self.dims.width;
        let per = self.dims.elem_count();
        let src = &self.pixels[index * per..(index + 1) * per];
        for (ch, (o, s)) in out
            .chunks_exact_mut(plane)
            .zip(src.chunks_exact(plane))
            .enumerate()
        {
            let (scale, shift) = self.normalize.affine(ch);
            for (o, &s) in o.iter_mut().zip(s) {
                *o = s as f32 * scale + shift;
            }
        }
        Ok(self.labels[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> U8Images {
        let names = vec!["a".to_string(), "b".to_string()];
        U8Images::new(
            ImageDims::new(2, 1, 2),
            vec![0, 51, 102, 255, 1, 2, 3, 4],
            vec![1, 0],
            names,
        )
        .unwrap()
    }

    #[test]
    fn construction_is_checked() {
        let names = || vec!["a".to_string()];
        let d = ImageDims::new(1, 2, 2);
        assert!(U8Images::new(d, vec![0; 7], vec![0, 0], names()).is_err());
        assert!(U8Images::new(d, vec![0; 4], vec![1], names()).is_err());
        assert!(U8Images::new(ImageDims::new(1, 0, 2), vec![], vec![], names()).is_err());
        assert!(U8Images::new(d, vec![0; 4], vec![0], names()).is_ok());
    }

    #[test]
    fn per_channel_normalisation_and_bounds() {
        let set = two()
            .with_normalize(Normalize::MeanStd {
                mean: vec![0.2, 0.5],
                std: vec![0.5, 0.25],
            })
            .unwrap();
        let (x, y) = set.get(0, &mut Rng::new(0)).unwrap();
        assert_eq!(y, 1);
        let want = [
            (0.0 - 0.2) / 0.5,
            (0.2 - 0.2) / 0.5,
            (0.4 - 0.5) / 0.25,
            (1.0 - 0.5) / 0.25,
        ];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{x:?}");
        }
        assert!(set.get(2, &mut Rng::new(0)).is_err());
        let mut short = [0.0; 3];
        assert!(set.get_into(0, &mut Rng::new(0), &mut short).is_err());
        for bad in [
            Normalize::MeanStd {
                mean: vec![0.0; 3],
                std: vec![1.0],
            },
            Normalize::MeanStd {
                mean: vec![0.0],
                std: vec![0.0],
            },
            Normalize::MeanStd {
                mean: vec![f32::NAN],
                std: vec![1.0],
            },
        ] {
            assert!(two().with_normalize(bad).is_err());
        }
    }

    #[test]
    fn stats_and_truncation() {
        let set = two();
        let (mean, std) = set.channel_stats();
        assert!((mean[0] - (0.0 + 0.2 + 1.0 / 255.0 + 2.0 / 255.0) / 4.0).abs() < 1e-6);
        assert!(std[1] > 0.0);
        assert_eq!(set.truncated(1).len(), 1);
        assert_eq!(set.truncated(9).len(), 2);
        assert_eq!(set.image(1), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(set.image(2), None);
    }
}
