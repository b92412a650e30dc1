//! Turns a [`DataSpec`] into training and validation datasets, and checks they fit the model.

use crate::config::DataSpec;
use crate::error::{Error, Result};
use datasets::{
    Clutter, ClutterConfig, Dataset, EvalTransform, FashionMnist, ImageFolder, Normalize,
    TrainTransform, Transform,
};
use std::sync::Arc;
use topology::ModelSpec;

pub type DynDataset = Arc<dyn Dataset>;

/// The two splits of a run.
pub struct Splits {
    pub train: DynDataset,
    pub val: DynDataset,
}

impl std::fmt::Debug for Splits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Splits(train {} × {}, val {})",
            self.train.len(),
            self.train.dims(),
            self.val.len()
        )
    }
}

/// Loads (or generates, for clutter) the data. `image_side` is the model's input size, used by
/// the folder transforms.
pub fn load(spec: &DataSpec, image_side: usize) -> Result<Splits> {
    match spec {
        DataSpec::FashionMnist { dir } => {
            let fm = fashion_mnist(dir.as_deref())?.with_normalize(Normalize::fashion_mnist())?;
            Ok(Splits {
                train: Arc::new(fm.train),
                val: Arc::new(fm.test),
            })
        }
        DataSpec::Clutter {
            dir,
            train_count,
            test_count,
            difficulty,
            seed,
        } => {
            let fm = fashion_mnist(dir.as_deref())?;
            let config = ClutterConfig {
                difficulty: *difficulty,
                ..ClutterConfig::new(*train_count, *seed)
            };
            let cache = datasets::locate::clutter_cache_dir();
            let (train, val) =
                Clutter::fashion_mnist_pair(&fm, &config, *test_count, Some(&cache))?;
            Ok(Splits {
                train: Arc::new(train.with_normalize(Normalize::fashion_mnist())?),
                val: Arc::new(val.with_normalize(Normalize::fashion_mnist())?),
            })
        }
        DataSpec::Folder { root } => {
            let train = ImageFolder::open(
                &root.join("train"),
                Transform::Train(TrainTransform::imagenet(image_side)),
            )?;
            let val = ImageFolder::open(
                &root.join("val"),
                Transform::Eval(EvalTransform::imagenet(image_side)),
            )?;
            if train.classes() != val.classes() {
                return Err(Error::Config(format!(
                    "{}: train has classes {:?} but val has {:?}; both need the same class folders",
                    root.display(),
                    train.classes(),
                    val.classes()
                )));
            }
            Ok(Splits {
                train: Arc::new(train),
                val: Arc::new(val),
            })
        }
    }
}

/// Fashion-MNIST from the standard places (all 70,000 images checked), or from a directory the
/// user named, which may hold any number of images of the same format (a subset, a fixture).
fn fashion_mnist(dir: Option<&std::path::Path>) -> Result<FashionMnist> {
    Ok(match dir {
        Some(d) => FashionMnist::load_any_count(d)?,
        None => FashionMnist::locate_and_load(None)?,
    })
}

/// The first `len` images of a dataset (a training budget, an evaluation limit).
pub struct Prefix {
    pub inner: DynDataset,
    pub len: usize,
}

impl Prefix {
    /// `data` cut to at most `limit` images (unchanged when `limit` is `None`).
    pub fn of(data: DynDataset, limit: Option<usize>) -> DynDataset {
        match limit {
            Some(l) if l < data.len() => Arc::new(Prefix {
                inner: data,
                len: l,
            }),
            _ => data,
        }
    }
}

impl Dataset for Prefix {
    fn len(&self) -> usize {
        self.len
    }
    fn dims(&self) -> datasets::ImageDims {
        self.inner.dims()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names()
    }
    fn get_into(
        &self,
        index: usize,
        rng: &mut tensor::Rng,
        out: &mut [f32],
    ) -> datasets::Result<usize> {
        if index >= self.len {
            return Err(datasets::Error::InvalidArgument {
                what: "prefix",
                msg: format!("index {index} out of range for {} images", self.len),
            });
        }
        self.inner.get_into(index, rng, out)
    }
}

/// The image size and class count of `data` must be what `model` takes.
pub fn check_fits(model: &ModelSpec, data: &dyn Dataset) -> Result<()> {
    let d = data.dims();
    let i = &model.input;
    if (d.channels, d.height, d.width) != (i.channels, i.height, i.width) {
        return Err(Error::ImageSize {
            model: model.name.clone(),
            expected: format!("{}×{}×{}", i.channels, i.height, i.width),
            got: d.to_string(),
        });
    }
    if data.num_classes() != model.num_classes {
        return Err(Error::ClassCount {
            model: model.name.clone(),
            expected: model.num_classes,
            got: data.num_classes(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::U8Images;

    #[test]
    fn wrong_image_size_names_the_expected_size() {
        let model = topology::zoo::get("compact_rgc").unwrap();
        let classes = (0..10).map(|c| c.to_string()).collect();
        let images = U8Images::new(
            datasets::ImageDims::new(1, 32, 32),
            vec![0; 2 * 32 * 32],
            vec![0, 1],
            classes,
        )
        .unwrap();
        let err = check_fits(&model, &images).unwrap_err().to_string();
        assert!(err.contains("1×28×28") && err.contains("1×32×32"), "{err}");
    }
}
