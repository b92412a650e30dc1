//! Turns a [`DataSpec`] into training and validation sources, and checks they fit the model.
//!
//! A [`Source`] is either a random-access dataset (Fashion-MNIST, clutter, ImageFolder), read
//! through a [`Batcher`], or a directory of WebDataset shards, read sequentially through a
//! [`ShardLoader`]; either way the loop pulls batches from a [`Loader`].

use crate::config::DataSpec;
use crate::error::{Error, Result};
use datasets::{
    Batcher, BatcherConfig, Clutter, ClutterConfig, Dataset, EvalTransform, FashionMnist,
    ImageDims, ImageFolder, Loader, Normalize, Shard, ShardLoader, ShardLoaderConfig, ShardSet,
    TrainTransform, Transform,
};
use std::path::Path;
use std::sync::Arc;
use topology::ModelSpec;

/// A shared dataset of any kind.
pub type DynDataset = Arc<dyn Dataset>;

/// Where one split's images come from.
#[derive(Clone)]
pub enum Source {
    /// A random-access dataset, batched by `datasets::Batcher`.
    Images(DynDataset),
    /// WebDataset shards, read sequentially by `datasets::ShardLoader`.
    Shards {
        /// The shards.
        set: Arc<ShardSet>,
        /// What is done to each decoded image.
        transform: Transform,
        /// Used when the loader shuffles (training); evaluation reads in order.
        shuffle_buffer: usize,
    },
}

impl Source {
    /// Images in the split.
    pub fn len(&self) -> usize {
        match self {
            Source::Images(d) => d.len(),
            Source::Shards { set, .. } => set.len(),
        }
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of the images handed to the model.
    pub fn dims(&self) -> ImageDims {
        match self {
            Source::Images(d) => d.dims(),
            Source::Shards { transform, .. } => {
                let s = transform.output_side();
                ImageDims::new(3, s, s)
            }
        }
    }

    /// Number of classes; labels lie in `0..num_classes()`.
    pub fn num_classes(&self) -> usize {
        match self {
            Source::Images(d) => d.num_classes(),
            Source::Shards { set, .. } => set.classes().len(),
        }
    }

    /// Class names in label order.
    pub fn class_names(&self) -> Vec<String> {
        match self {
            Source::Images(d) => d.class_names(),
            Source::Shards { set, .. } => set.classes().to_vec(),
        }
    }

    /// The first `limit` images of a random-access source (shards are cut by their loader).
    pub fn limited(&self, limit: Option<usize>) -> Source {
        match self {
            Source::Images(d) => Source::Images(Slice::of(Arc::clone(d), limit)),
            shards => shards.clone(),
        }
    }

    /// Part `index` of `count` contiguous parts of the first `limit` images, for an evaluation
    /// split between ranks; `None` for shards, which are read as one stream.
    pub fn part(&self, limit: Option<usize>, index: usize, count: usize) -> Option<Source> {
        match self {
            Source::Images(d) => {
                let len = limit.map_or(d.len(), |l| l.min(d.len()));
                let (start, end) = (index * len / count, (index + 1) * len / count);
                Some(Source::Images(Slice::range(
                    Arc::clone(d),
                    start,
                    end - start,
                )))
            }
            Source::Shards { .. } => None,
        }
    }

    /// How many classes the images hold, where that is known without reading them (not for
    /// shards).
    pub fn classes_present(&self) -> Option<usize> {
        match self {
            Source::Images(d) => classes_present(d.as_ref()),
            Source::Shards { .. } => None,
        }
    }

    /// A loader over at most `limit` images (the first ones; for shards, the first of each
    /// epoch's stream).
    pub fn loader(&self, batch: BatcherConfig, limit: Option<usize>) -> Result<Box<dyn Loader>> {
        self.sharded_loader(batch, limit, Shard::whole())
    }

    /// [`Source::loader`] for one rank of a data-parallel job: its `shard` of every global batch
    /// (`batch.batch_size` is the rank's part of it).
    pub fn sharded_loader(
        &self,
        batch: BatcherConfig,
        limit: Option<usize>,
        shard: Shard,
    ) -> Result<Box<dyn Loader>> {
        Ok(match self {
            Source::Images(d) => Box::new(
                Batcher::new(Arc::new(Slice::of(Arc::clone(d), limit)), batch)?.sharded(shard)?,
            ),
            Source::Shards {
                set,
                transform,
                shuffle_buffer,
            } => {
                let shuffle_buffer = if batch.shuffle { *shuffle_buffer } else { 1 };
                let config = ShardLoaderConfig {
                    batch,
                    shuffle_buffer,
                    limit,
                    ..ShardLoaderConfig::eval(1)
                };
                Box::new(
                    ShardLoader::new(Arc::clone(set), transform.clone(), config)?.sharded(shard)?,
                )
            }
        })
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Images(d) => write!(f, "Images({} × {})", d.len(), d.dims()),
            Source::Shards { set, .. } => write!(f, "Shards({:?}, {})", set.dir(), set.len()),
        }
    }
}

/// The two splits of a run.
#[derive(Debug)]
pub struct Splits {
    /// The training split.
    pub train: Source,
    /// The validation split.
    pub val: Source,
}

/// Loads (or generates, for clutter) the data. `image_side` is the model's input size, used by
/// the folder transforms.
pub fn load(spec: &DataSpec, image_side: usize) -> Result<Splits> {
    match spec {
        DataSpec::FashionMnist { dir } => {
            let fm = fashion_mnist(dir.as_deref())?.with_normalize(Normalize::fashion_mnist())?;
            Ok(Splits {
                train: Source::Images(Arc::new(fm.train)),
                val: Source::Images(Arc::new(fm.test)),
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
                train: Source::Images(Arc::new(train.with_normalize(Normalize::fashion_mnist())?)),
                val: Source::Images(Arc::new(val.with_normalize(Normalize::fashion_mnist())?)),
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
            same_classes(root, train.classes(), val.classes())?;
            Ok(Splits {
                train: Source::Images(Arc::new(train)),
                val: Source::Images(Arc::new(val)),
            })
        }
        DataSpec::Shards {
            root,
            shuffle_buffer,
        } => {
            let train = Arc::new(ShardSet::open(&root.join("train"))?);
            let val = Arc::new(ShardSet::open(&root.join("val"))?);
            same_classes(root, train.classes(), val.classes())?;
            Ok(Splits {
                train: Source::Shards {
                    set: train,
                    transform: Transform::Train(TrainTransform::imagenet(image_side)),
                    shuffle_buffer: *shuffle_buffer,
                },
                val: Source::Shards {
                    set: val,
                    transform: Transform::Eval(EvalTransform::imagenet(image_side)),
                    shuffle_buffer: 1,
                },
            })
        }
    }
}

fn same_classes(root: &Path, train: &[String], val: &[String]) -> Result<()> {
    if train != val {
        return Err(Error::Config(format!(
            "{}: train has classes {train:?} but val has {val:?}; both need the same classes",
            root.display(),
        )));
    }
    Ok(())
}

/// Fashion-MNIST from the standard places (all 70,000 images checked), or from a directory the
/// user named, which may hold any number of images of the same format (a subset, a fixture).
fn fashion_mnist(dir: Option<&std::path::Path>) -> Result<FashionMnist> {
    Ok(match dir {
        Some(d) => FashionMnist::load_any_count(d)?,
        None => FashionMnist::locate_and_load(None)?,
    })
}

/// A contiguous part of a dataset: a training budget, an evaluation limit, one rank's share of
/// an evaluation.
pub struct Slice {
    /// The whole dataset.
    pub inner: DynDataset,
    /// Index of the slice's first image in `inner`.
    pub start: usize,
    /// Images in the slice.
    pub len: usize,
}

impl Slice {
    /// The first `limit` images of `data` (all of them when `limit` is `None`).
    pub fn of(data: DynDataset, limit: Option<usize>) -> DynDataset {
        match limit {
            Some(l) if l < data.len() => Self::range(data, 0, l),
            _ => data,
        }
    }

    /// Images `start..start + len` of `data` (clamped to its end).
    pub fn range(data: DynDataset, start: usize, len: usize) -> DynDataset {
        let start = start.min(data.len());
        let len = len.min(data.len() - start);
        if start == 0 && len == data.len() {
            return data;
        }
        Arc::new(Slice {
            inner: data,
            start,
            len,
        })
    }
}

impl Dataset for Slice {
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
    fn label(&self, index: usize) -> Option<usize> {
        (index < self.len)
            .then(|| self.inner.label(index))
            .flatten()
    }
    fn get_into(
        &self,
        index: usize,
        rng: &mut tensor::Rng,
        out: &mut [f32],
    ) -> datasets::Result<usize> {
        if index >= self.len {
            return Err(datasets::Error::InvalidArgument {
                what: "slice",
                msg: format!("index {index} out of range for {} images", self.len),
            });
        }
        self.inner.get_into(self.start + index, rng, out)
    }
}

/// The image size and class count of `data` must be what `model` takes.
pub fn check_fits(model: &ModelSpec, data: &Source) -> Result<()> {
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

/// The classes `data` holds, counted from its labels (`None` when the dataset cannot tell without
/// decoding every image).
pub fn classes_present(data: &dyn Dataset) -> Option<usize> {
    let mut seen = vec![false; data.num_classes()];
    for i in 0..data.len() {
        let l = data.label(i)?;
        if let Some(s) = seen.get_mut(l) {
            *s = true;
        }
    }
    Some(seen.iter().filter(|&&s| s).count())
}

/// The file of a run directory that names the classes its labels stand for, in label order.
pub const CLASSES_FILE: &str = "classes.json";

/// Labels are positions in the data's sorted class list, so a class folder renamed, added or
/// removed since the run in `dir` began would pair images with another class's output, and a
/// resume would train on it or an evaluation score it without a word. An error where `dir`
/// records other classes than `now`; runs from before the record are not checked.
pub fn check_stored_classes(dir: &Path, now: &[String]) -> Result<()> {
    let path = dir.join(CLASSES_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let stored: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{}: not a list of class names: {e}",
            path.display()
        ))
    })?;
    let Some(label) = (0..stored.len().max(now.len())).find(|&i| stored.get(i) != now.get(i))
    else {
        return Ok(());
    };
    let name = |c: Option<&String>| c.map_or("no class".to_string(), |c| format!("`{c}`"));
    Err(Error::Config(format!(
        "the data's classes are not those the run in {} was trained on ({} classes then, {} now): \
         label {label} stood for {} and now stands for {}; use the data the run was made with",
        dir.display(),
        stored.len(),
        now.len(),
        name(stored.get(label)),
        name(now.get(label)),
    )))
}

/// A classifier needs at least two classes to learn from: with one, every prediction is right
/// and accuracy reads 100 % whatever the model does. An error for the training split; a warning
/// (returned) for a validation split that holds one class only.
pub fn check_classes(train: &Source, val: &Source) -> Result<Vec<String>> {
    let what = |n: usize| {
        if n == 1 {
            "1 class".to_string()
        } else {
            format!("{n} classes")
        }
    };
    let declared = train.num_classes();
    if declared < 2 {
        return Err(Error::Config(format!(
            "the data has {} ({:?}); classification needs at least 2, and on one class every \
             prediction is right (accuracy 100 % whatever the model does)",
            what(declared),
            train.class_names()
        )));
    }
    if let Some(n) = train.classes_present() {
        if n < 2 {
            return Err(Error::Config(format!(
                "the training images hold only {} of the {declared} declared; classification \
                 needs at least 2 (on one class accuracy is 100 % whatever the model does)",
                what(n)
            )));
        }
    }
    let mut warnings = Vec::new();
    if let Some(n) = val.classes_present() {
        if n < 2 && !val.is_empty() {
            warnings.push(format!(
                "the validation images hold only {}; validation accuracy measures nothing useful \
                 (predicting that class always scores 100 %)",
                what(n)
            ));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::U8Images;

    #[test]
    fn slices_read_the_right_images() {
        let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
        let images = U8Images::new(
            datasets::ImageDims::new(1, 1, 1),
            (0..6).collect(),
            vec![0, 1, 2, 3, 4, 5],
            classes,
        )
        .unwrap();
        let all: DynDataset = Arc::new(images);
        let mut rng = tensor::Rng::new(0);
        let part = Slice::range(Arc::clone(&all), 2, 3);
        assert_eq!(part.len(), 3);
        assert_eq!(part.get(0, &mut rng).unwrap().1, 2);
        assert_eq!(part.get(2, &mut rng).unwrap().1, 4);
        assert!(part.get(3, &mut rng).is_err());
        assert_eq!(
            Slice::range(Arc::clone(&all), 5, 9).len(),
            1,
            "clamped to the end"
        );
        assert_eq!(Slice::range(Arc::clone(&all), 9, 9).len(), 0);
        assert_eq!(Slice::of(Arc::clone(&all), Some(4)).len(), 4);
        assert_eq!(Slice::of(all, None).len(), 6);
    }

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
        let err = check_fits(&model, &Source::Images(Arc::new(images)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1×28×28") && err.contains("1×32×32"), "{err}");
    }

    fn images(labels: Vec<usize>, classes: usize) -> U8Images {
        let n = labels.len();
        U8Images::new(
            datasets::ImageDims::new(1, 2, 2),
            vec![0; n * 4],
            labels,
            (0..classes).map(|c| c.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn one_class_data_is_refused_and_a_one_class_validation_split_warned_about() {
        let source = |labels, classes| Source::Images(Arc::new(images(labels, classes)));
        let two = source(vec![0, 1, 0], 2);
        assert_eq!(check_classes(&two, &two).unwrap(), Vec::<String>::new());
        let one_declared = source(vec![0, 0], 1);
        let err = check_classes(&one_declared, &two).unwrap_err().to_string();
        assert!(
            err.contains("1 class") && err.contains("at least 2"),
            "{err}"
        );
        let one_present = source(vec![3, 3, 3], 10);
        let err = check_classes(&one_present, &two).unwrap_err().to_string();
        assert!(err.contains("only 1 class of the 10"), "{err}");
        let warnings = check_classes(&two, &source(vec![1, 1], 2)).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        // A prefix sees only its own images.
        let prefix = Slice::of(Arc::new(images(vec![2, 2, 5], 10)), Some(2));
        assert_eq!(classes_present(prefix.as_ref()), Some(1));
    }
}
