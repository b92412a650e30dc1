//! The `Dataset` trait and a prefetching batcher.
//!
//! A [`Batcher`] turns a dataset into `[N, C, H, W]` batches. Each epoch's order is a permutation
//! drawn from `(seed, epoch)` alone, and each sample's augmentation draws from a generator seeded by
//! `(seed, epoch, sample index)`, so a batch's contents never depend on thread timing and a resumed
//! run can ask for "epoch e from batch b" and get exactly what the uninterrupted run saw.
//!
//! [`Batcher::epoch`] starts a worker thread that assembles batches ahead of the consumer and hands
//! them over a bounded channel (`prefetch` batches deep); inside a batch, samples are decoded in
//! parallel with rayon. Dropping the iterator stops the worker. An image that cannot be read or
//! decoded ([`Error::Image`]) is left out of its batch, counted and reported
//! ([`crate::pipeline::Skipped`]); its place is not refilled, so every other sample stays in the
//! batch the uninterrupted run puts it in (a batch may end up empty; see [`crate::pipeline`] for
//! when that becomes an error).

use crate::pipeline::{keep_readable, EmptyWatch, Loader, Skipped};
use crate::{derive_seed, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tensor::{Device, Rng, Tensor};

/// Channels, height and width of every image a dataset yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageDims {
    /// Colour channels (1 for greyscale, 3 for RGB).
    pub channels: usize,
    /// Rows, in pixels.
    pub height: usize,
    /// Columns, in pixels.
    pub width: usize,
}

impl ImageDims {
    /// Dimensions of `channels` planes of `height × width` pixels.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageDims {
            channels,
            height,
            width,
        }
    }

    /// Number of f32 values in one CHW image.
    pub fn elem_count(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl std::fmt::Display for ImageDims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// A labelled image collection with a fixed image size.
pub trait Dataset: Send + Sync {
    /// Number of samples; valid indices of [`Dataset::get`] are `0..len()`.
    fn len(&self) -> usize;

    /// Whether the dataset holds no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of every image `get` returns.
    fn dims(&self) -> ImageDims;

    /// Number of classes; labels lie in `0..num_classes()`.
    fn num_classes(&self) -> usize;

    /// Human-readable class names, `num_classes()` of them when known.
    fn class_names(&self) -> Vec<String> {
        (0..self.num_classes()).map(|c| c.to_string()).collect()
    }

    /// Writes image `index` (CHW, `dims().elem_count()` values) into `out` and returns its label.
    /// `rng` drives random augmentation; datasets without augmentation ignore it.
    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize>;

    /// The label of image `index` without decoding it, when the dataset knows it up front (`None`
    /// otherwise, or out of range). Lets a trainer check the classes a split holds.
    fn label(&self, index: usize) -> Option<usize> {
        let _ = index;
        None
    }

    /// Image `index` as a fresh CHW vector and its label.
    fn get(&self, index: usize, rng: &mut Rng) -> Result<(Vec<f32>, usize)> {
        let mut out = vec![0.0; self.dims().elem_count()];
        let label = self.get_into(index, rng, &mut out)?;
        Ok((out, label))
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn dims(&self) -> ImageDims {
        (**self).dims()
    }
    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        (**self).class_names()
    }
    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        (**self).get_into(index, rng, out)
    }
    fn label(&self, index: usize) -> Option<usize> {
        (**self).label(index)
    }
}

pub(crate) fn check_index(what: &'static str, index: usize, len: usize) -> Result<()> {
    if index >= len {
        return Err(Error::invalid(
            what,
            format!("index {index} out of range for a dataset of {len} images"),
        ));
    }
    Ok(())
}

pub(crate) fn check_out_len(what: &'static str, out: &[f32], dims: ImageDims) -> Result<()> {
    if out.len() != dims.elem_count() {
        return Err(Error::invalid(
            what,
            format!(
                "output buffer holds {} values, an image of {dims} needs {}",
                out.len(),
                dims.elem_count()
            ),
        ));
    }
    Ok(())
}

/// How a [`Batcher`] walks its dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatcherConfig {
    /// Images per batch; when sharded, per rank (a global batch is `batch_size × count`).
    pub batch_size: usize,
    /// Draw a fresh permutation every epoch (training); `false` keeps index order (evaluation).
    pub shuffle: bool,
    /// Drop the last batch when it would be smaller than `batch_size`.
    pub drop_last: bool,
    /// Seeds both the per-epoch permutation and the per-sample augmentation.
    pub seed: u64,
    /// Batches assembled ahead of the consumer (at least 1).
    pub prefetch: usize,
}

impl BatcherConfig {
    /// Shuffled, last partial batch dropped: the usual training loader.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        BatcherConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed,
            prefetch: 2,
        }
    }

    /// Index order, every image seen once: the usual evaluation loader.
    pub fn eval(batch_size: usize) -> Self {
        BatcherConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }
}

/// One batch: images `[N, C, H, W]` in row-major order and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Pixel values, `len() × dims.elem_count()` of them, image after image (CHW each).
    pub images: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// The dataset indices the images came from, in batch order.
    pub indices: Vec<usize>,
    /// The size of every image in the batch.
    pub dims: ImageDims,
    /// The batch's position within its epoch.
    pub position: usize,
}

impl Batch {
    /// Number of images in the batch (unreadable ones are left out, so it may be below the batch
    /// size).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether every image of the batch was unreadable.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        [
            self.len(),
            self.dims.channels,
            self.dims.height,
            self.dims.width,
        ]
    }

    /// The images as an `[N, C, H, W]` tensor on `device`.
    pub fn images_tensor(&self, device: Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.images.clone(), self.shape(), device)?)
    }

    /// Consumes the batch: the `[N, C, H, W]` image tensor and the labels, without copying the
    /// host data first.
    pub fn into_tensor(self, device: Device) -> Result<(Tensor, Vec<usize>)> {
        let shape = self.shape();
        Ok((Tensor::from_vec(self.images, shape, device)?, self.labels))
    }
}

/// One rank's part of a data-parallel epoch: of every global batch of `batch_size × count`
/// consecutive images of the epoch's order, shard `index` takes the `index`-th `batch_size`.
/// The shards of an epoch are disjoint, and together their batch `g` holds exactly the images
/// (and augmentation draws) of batch `g` of one unsharded batcher with batch `batch_size ×
/// count`, so the global order of a seed does not depend on how many ranks share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This rank's shard, in `0..count`.
    pub index: usize,
    /// How many shards (ranks) share each epoch.
    pub count: usize,
}

impl Shard {
    /// The whole epoch (one process).
    pub fn whole() -> Shard {
        Shard { index: 0, count: 1 }
    }

    /// Whether a loader with this `drop_last` can take this shard: it must exist, and a split
    /// epoch drops its last partial global batch, so that every rank takes the same number of
    /// steps.
    pub(crate) fn check(&self, drop_last: bool) -> Result<()> {
        if self.count == 0 || self.index >= self.count {
            return Err(Error::invalid(
                "loader",
                format!("shard {} of {} does not exist", self.index, self.count),
            ));
        }
        if self.count > 1 && !drop_last {
            return Err(Error::invalid(
                "loader",
                "a sharded loader drops the last partial global batch (drop_last), so that \
                 every rank takes the same number of steps",
            ));
        }
        Ok(())
    }
}

/// Turns a dataset into batches; see the module documentation.
pub struct Batcher<D: Dataset + 'static> {
    dataset: Arc<D>,
    config: BatcherConfig,
    skipped: Arc<Skipped>,
    shard: Shard,
}

impl<D: Dataset + 'static> Clone for Batcher<D> {
    fn clone(&self) -> Self {
        Batcher {
            dataset: Arc::clone(&self.dataset),
            config: self.config.clone(),
            skipped: Arc::clone(&self.skipped),
            shard: self.shard,
        }
    }
}

impl<D: Dataset + 'static> std::fmt::Debug for Batcher<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("len", &self.dataset.len())
            .field("dims", &self.dataset.dims())
            .field("config", &self.config)
            .field("shard", &self.shard)
            .finish()
    }
}

impl<D: Dataset + 'static> Batcher<D> {
    /// A batcher over the whole of `dataset`; errors if the batch size or prefetch depth is 0 or
    /// the images are empty.
    pub fn new(dataset: Arc<D>, config: BatcherConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::invalid("batcher", "batch_size must be at least 1"));
        }
        if config.prefetch == 0 {
            return Err(Error::invalid("batcher", "prefetch must be at least 1"));
        }
        if dataset.dims().elem_count() == 0 {
            return Err(Error::invalid(
                "batcher",
                format!("the dataset's images are empty ({})", dataset.dims()),
            ));
        }
        Ok(Batcher {
            dataset,
            config,
            skipped: Arc::default(),
            shard: Shard::whole(),
        })
    }

    /// This batcher restricted to `shard` (see [`Shard`]). Sharding needs `drop_last`: every
    /// rank must take the same number of steps.
    pub fn sharded(mut self, shard: Shard) -> Result<Self> {
        shard.check(self.config.drop_last)?;
        self.shard = shard;
        Ok(self)
    }

    /// The part of each epoch this batcher yields ([`Shard::whole`] unless [`Batcher::sharded`]).
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The dataset the batches are drawn from.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// How batches are drawn.
    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// Batches per epoch (the partial last batch counts unless `drop_last`); of a shard, the
    /// number of full global batches.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / (b * self.shard.count)
        } else {
            n.div_ceil(b)
        }
    }

    /// The order in which `epoch` visits the dataset: a permutation that depends only on
    /// `(seed, epoch)`, or `0..len` when not shuffling; of a shard, its part of that order.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = Rng::new(derive_seed(&[self.config.seed, epoch, 0x5348_5546]));
            rng.shuffle(&mut order);
        }
        if self.shard.count == 1 {
            return order;
        }
        let b = self.config.batch_size;
        let global = b * self.shard.count;
        (0..self.num_batches())
            .flat_map(|g| &order[g * global + self.shard.index * b..][..b])
            .copied()
            .collect()
    }

    /// Assembles batch `position` of `epoch` on the calling thread (samples in parallel).
    pub fn batch(&self, epoch: u64, position: usize) -> Result<Batch> {
        let order = self.order(epoch);
        self.assemble(&order, epoch, position)
    }

    fn assemble(&self, order: &[usize], epoch: u64, position: usize) -> Result<Batch> {
        if position >= self.num_batches() {
            return Err(Error::invalid(
                "batcher",
                format!(
                    "batch {position} out of range: an epoch has {} batches",
                    self.num_batches()
                ),
            ));
        }
        let b = self.config.batch_size;
        let start = position * b;
        let indices: Vec<usize> = order[start..(start + b).min(order.len())].to_vec();
        let dims = self.dataset.dims();
        let per = dims.elem_count();
        let mut images = vec![0.0f32; indices.len() * per];
        let seed = self.config.seed;
        let dataset = &*self.dataset;
        let results: Vec<Result<usize>> = images
            .par_chunks_mut(per)
            .zip(indices.par_iter())
            .map(|(out, &index)| {
                let mut rng = Rng::new(derive_seed(&[seed, epoch, index as u64]));
                dataset.get_into(index, &mut rng, out)
            })
            .collect();
        let (images, labels, indices) =
            keep_readable(images, per, results, indices, &self.skipped)?;
        Ok(Batch {
            images,
            labels,
            indices,
            dims,
            position,
        })
    }

    /// Every batch of `epoch`, assembled ahead on a worker thread.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// Batches `first..` of `epoch` (resuming mid-epoch yields exactly the batches the
    /// uninterrupted run would have seen next).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter {
        let total = self.num_batches();
        let this = self.clone();
        EpochIter::spawn(
            self.config.prefetch,
            total.saturating_sub(first),
            move |tx| {
                let order = this.order(epoch);
                let mut watch = EmptyWatch::default();
                for position in first..total {
                    let batch = this.assemble(&order, epoch, position);
                    let stop = watch.after(&batch, &this.skipped);
                    let failed = batch.is_err() || stop.is_some();
                    // A closed channel means the consumer dropped the iterator: stop quietly.
                    if tx.send(batch).is_err() {
                        return;
                    }
                    if let Some(e) = stop {
                        let _ = tx.send(Err(e));
                    }
                    if failed {
                        return;
                    }
                }
                if let Some(e) = watch.at_end(total.saturating_sub(first), &this.skipped) {
                    let _ = tx.send(Err(e));
                }
            },
        )
    }

    /// Images skipped so far because they could not be read or decoded.
    pub fn skipped(&self) -> u64 {
        self.skipped.count()
    }
}

impl<D: Dataset + 'static> Loader for Batcher<D> {
    fn len(&self) -> usize {
        self.dataset.len()
    }
    fn dims(&self) -> ImageDims {
        self.dataset.dims()
    }
    fn num_classes(&self) -> usize {
        self.dataset.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.dataset.class_names()
    }
    fn batch_size(&self) -> usize {
        self.config.batch_size
    }
    fn num_batches(&self) -> usize {
        Batcher::num_batches(self)
    }
    fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter {
        Batcher::epoch_from(self, epoch, first)
    }
    fn skipped(&self) -> u64 {
        self.skipped.count()
    }
}

/// Iterator over one epoch's batches, fed by a prefetching worker. Yields `Err` once if a sample
/// fails to load (naming the file where there is one) and then ends.
pub struct EpochIter {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
    spawn_error: Option<Error>,
}

impl EpochIter {
    /// Runs `work` on a new thread; it sends the batches (at most `prefetch - 1` wait in the
    /// channel while one is being made) and must stop when a send fails. `remaining` is how many
    /// batches it will send when nothing goes wrong.
    pub(crate) fn spawn(
        prefetch: usize,
        remaining: usize,
        work: impl FnOnce(SyncSender<Result<Batch>>) + Send + 'static,
    ) -> EpochIter {
        let (tx, rx) = sync_channel::<Result<Batch>>(prefetch.saturating_sub(1));
        let spawned = std::thread::Builder::new()
            .name("datasets-prefetch".into())
            .spawn(move || work(tx));
        match spawned {
            Ok(handle) => EpochIter {
                rx: Some(rx),
                handle: Some(handle),
                remaining,
                spawn_error: None,
            },
            Err(e) => EpochIter {
                rx: None,
                handle: None,
                remaining: 0,
                spawn_error: Some(Error::Worker(format!("cannot start a thread: {e}"))),
            },
        }
    }
}

impl std::fmt::Debug for EpochIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochIter")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.spawn_error.take() {
            return Some(Err(e));
        }
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(item) => {
                self.remaining = self.remaining.saturating_sub(1);
                if item.is_err() {
                    self.remaining = 0;
                }
                Some(item)
            }
            Err(_) => {
                self.rx = None;
                let handle = self.handle.take()?;
                match handle.join() {
                    Ok(()) if self.remaining == 0 => None,
                    Ok(()) => Some(Err(Error::Worker(format!(
                        "the worker ended with {} batches still due",
                        std::mem::take(&mut self.remaining)
                    )))),
                    Err(panic) => {
                        self.remaining = 0;
                        Some(Err(Error::Worker(panic_message(&panic))))
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("a sample loader panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("a sample loader panicked: {s}")
    } else {
        "a sample loader panicked".to_string()
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the receiver first makes a worker blocked in `send` return at once.
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
