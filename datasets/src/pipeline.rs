//! Loaders: what a training loop pulls batches from.
//!
//! [`Loader`] is the interface: a number of batches per epoch and an iterator over epoch `e` from
//! batch `b` on, the same batches whenever it is asked (so a resumed run sees what the
//! uninterrupted one would have). Two implement it: [`crate::Batcher`] over any random-access
//! [`crate::Dataset`] (Fashion-MNIST, clutter, ImageFolder), and [`ShardLoader`] over WebDataset
//! shards, which reads sequentially:
//!
//! - **Order.** Each epoch shuffles the shard order and passes the concatenated stream of samples
//!   through a shuffle buffer of `shuffle_buffer` samples (fill it, then emit a random slot and
//!   put the next sample there; drain it at the end), both drawn from `(seed, epoch)` alone. The
//!   buffer's choices depend only on how many samples have gone in, so the whole epoch's order
//!   is computed from the index before any byte is read.
//! - **Reading.** A reader thread walks the shards in that order, front to back, keeping the
//!   bytes of samples that are due soon (at most about `shuffle_buffer` of them) and passing over
//!   the others by seeking (those before a resume point).
//! - **Decoding.** A second thread decodes and transforms each batch's samples in parallel
//!   (rayon: its global pool, or a pool of `threads` of its own), each with a generator seeded by
//!   `(seed, epoch, sample)`, `sample` being the sample's place in the shard files' own order;
//!   so a batch's pixels never depend on thread timing.
//!
//! Images that cannot be read or decoded, and samples a truncated or unreadable shard lost, are
//! left out of their batch and counted ([`Skipped`], which prints the first ten and then every
//! power of ten); a batch may so end up empty (consumers skip it). But 16 empty batches in a
//! row, or an epoch without a single readable image, end the epoch with an error: that is a
//! vanished data directory, not a few bad files, and a run should stop rather than spin.

use crate::batcher::{BatcherConfig, EpochIter, ImageDims, Shard};
use crate::decode::DecoderKind;
use crate::shards::{Record, ShardSet};
use crate::transforms::Transform;
use crate::{derive_seed, Batch, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use tensor::Rng;

/// A source of batches; see the module documentation.
pub trait Loader: Send + Sync {
    /// Images per epoch (before any are skipped as unreadable).
    fn len(&self) -> usize;

    /// Whether an epoch holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of every image in the batches.
    fn dims(&self) -> ImageDims;

    /// Number of classes; labels lie in `0..num_classes()`.
    fn num_classes(&self) -> usize;

    /// Class names, `num_classes()` of them, in label order.
    fn class_names(&self) -> Vec<String>;

    /// Images per batch this loader yields (the last batch of an epoch may be smaller, and
    /// unreadable images are left out).
    fn batch_size(&self) -> usize;

    /// Batches per epoch, the same for every epoch.
    fn num_batches(&self) -> usize;

    /// Batches `first..` of `epoch`, prepared ahead on worker threads.
    fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter;

    /// Every batch of `epoch`, prepared ahead on worker threads.
    fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// Images left out so far because they could not be read or decoded.
    fn skipped(&self) -> u64;
}

/// Counts the images a loader left out, and says so on stderr: the first ten with their reasons,
/// then at every power of ten.
#[derive(Debug, Default)]
pub struct Skipped {
    count: AtomicU64,
    last: Mutex<Option<String>>,
}

const REPORT_FIRST: u64 = 10;

impl Skipped {
    /// Counts one skipped image, warning on stderr for the first ten and then at every power of
    /// ten.
    pub fn record(&self, reason: &Error) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= REPORT_FIRST || is_power_of_ten(n) {
            eprintln!("warning: skipped an unreadable image ({n} so far): {reason}");
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(reason.to_string());
        }
    }

    /// Images skipped so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Why the latest image was skipped.
    pub fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// Empty batches in a row after which an epoch ends with an error.
const MAX_EMPTY_RUN: usize = 16;

/// Watches an epoch's batches for the signs of a vanished data source (see the module
/// documentation).
#[derive(Debug, Default)]
pub(crate) struct EmptyWatch {
    run: usize,
    images: usize,
}

impl EmptyWatch {
    /// The error that should follow `batch`, if any.
    pub(crate) fn after(&mut self, batch: &Result<Batch>, skipped: &Skipped) -> Option<Error> {
        let Ok(b) = batch else {
            return None;
        };
        self.images += b.len();
        self.run = if b.is_empty() { self.run + 1 } else { 0 };
        (self.run >= MAX_EMPTY_RUN).then(|| self.error(skipped))
    }

    /// The error to send once the epoch's batches are all sent, if none held an image.
    pub(crate) fn at_end(&self, sent: usize, skipped: &Skipped) -> Option<Error> {
        (sent > 0 && self.images == 0).then(|| self.error(skipped))
    }

    fn error(&self, skipped: &Skipped) -> Error {
        Error::Worker(format!(
            "{} batches in a row held no readable image; the last error: {}",
            self.run,
            skipped.last().unwrap_or_default()
        ))
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// Whether an error concerns one image (left out) rather than the loader (fatal).
fn is_sample_error(e: &Error) -> bool {
    matches!(e, Error::Image { .. })
}

/// Drops the samples whose results are sample errors (recording them), keeping the others'
/// images, labels and ids in order. Any other error is returned.
pub(crate) fn keep_readable(
    images: Vec<f32>,
    per: usize,
    results: Vec<Result<usize>>,
    ids: Vec<usize>,
    skipped: &Skipped,
) -> Result<(Vec<f32>, Vec<usize>, Vec<usize>)> {
    if results.iter().all(|r| r.is_ok()) {
        let labels = results.into_iter().collect::<Result<Vec<_>>>()?;
        return Ok((images, labels, ids));
    }
    let total = results.len();
    let mut kept_images = Vec::with_capacity(images.len());
    let mut labels = Vec::with_capacity(total);
    let mut kept_ids = Vec::with_capacity(total);
    for ((result, id), img) in results.into_iter().zip(ids).zip(images.chunks_exact(per)) {
        match result {
            Ok(label) => {
                kept_images.extend_from_slice(img);
                labels.push(label);
                kept_ids.push(id);
            }
            Err(e) if is_sample_error(&e) => skipped.record(&e),
            Err(e) => return Err(e),
        }
    }
    Ok((kept_images, labels, kept_ids))
}

/// How a [`ShardLoader`] reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLoaderConfig {
    /// Batch size, shuffling (shards and buffer) on or off, last partial batch, seed, prefetch.
    pub batch: BatcherConfig,
    /// Samples held by the shuffle buffer (1: shard-level shuffling only).
    pub shuffle_buffer: usize,
    /// Read only this many samples per epoch (the first of each epoch's stream).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Which JPEG decoder to use.
    #[serde(default)]
    pub decoder: DecoderKind,
    /// Decode on a pool of this many threads of the loader's own (default: rayon's global pool).
    #[serde(default)]
    pub threads: Option<usize>,
}

impl ShardLoaderConfig {
    /// Training: shards and samples shuffled through a buffer of 5,000 (about 100 ImageNet
    /// classes' worth at a time when shards are written shuffled), last partial batch dropped.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        ShardLoaderConfig {
            batch: BatcherConfig::train(batch_size, seed),
            shuffle_buffer: 5000,
            limit: None,
            decoder: DecoderKind::Auto,
            threads: None,
        }
    }

    /// Evaluation: shard files in order, every sample once.
    pub fn eval(batch_size: usize) -> Self {
        ShardLoaderConfig {
            batch: BatcherConfig::eval(batch_size),
            shuffle_buffer: 1,
            limit: None,
            decoder: DecoderKind::Auto,
            threads: None,
        }
    }
}

/// One epoch's order, computed from the index: which shard comes when, and for each sample of
/// the stream (the shards' samples concatenated in that order) the output slot it lands in.
#[derive(Debug)]
struct EpochPlan {
    /// Shards in reading order.
    shards: Vec<usize>,
    /// Stream position of each shard's first sample, in reading order.
    starts: Vec<usize>,
    /// `slot_of[stream position]`, or `NOT_USED` for samples past the epoch's end (a limit).
    slot_of: Vec<u32>,
}

const NOT_USED: u32 = u32::MAX;

/// Reads WebDataset shards sequentially; see the module documentation.
#[derive(Clone)]
pub struct ShardLoader {
    set: Arc<ShardSet>,
    transform: Transform,
    config: ShardLoaderConfig,
    /// `first_id[s]`: the id of shard `s`'s first sample (shards in file order).
    first_id: Arc<Vec<usize>>,
    pool: Option<Arc<rayon::ThreadPool>>,
    skipped: Arc<Skipped>,
    /// This rank's part of every global batch (data-parallel training).
    shard: Shard,
}

impl std::fmt::Debug for ShardLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLoader")
            .field("dir", &self.set.dir())
            .field("samples", &self.set.len())
            .field("config", &self.config)
            .field("shard", &self.shard)
            .finish()
    }
}

impl ShardLoader {
    /// A loader over the shards of `set`, each sample passed through `transform`; errors on an
    /// invalid transform or configuration (batch size or prefetch 0, an empty buffer) or a thread
    /// pool that cannot start.
    pub fn new(
        set: Arc<ShardSet>,
        transform: Transform,
        config: ShardLoaderConfig,
    ) -> Result<Self> {
        transform.validate()?;
        let b = &config.batch;
        if b.batch_size == 0 || b.prefetch == 0 || config.shuffle_buffer == 0 {
            return Err(Error::invalid(
                "shard loader",
                "batch_size, prefetch and shuffle_buffer must be at least 1",
            ));
        }
        if set.len() >= NOT_USED as usize {
            return Err(Error::invalid(
                "shard loader",
                format!("{} samples is more than one loader reads", set.len()),
            ));
        }
        let pool = match config.threads {
            Some(0) => {
                return Err(Error::invalid("shard loader", "threads must be at least 1"));
            }
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("datasets-decode-{i}"))
                    .build()
                    .map_err(|e| Error::Worker(format!("cannot start decode threads: {e}")))?,
            )),
            None => None,
        };
        let mut first_id = Vec::with_capacity(set.num_shards());
        let mut total = 0;
        for s in &set.index().shards {
            first_id.push(total);
            total += s.samples;
        }
        Ok(ShardLoader {
            set,
            transform,
            config,
            first_id: Arc::new(first_id),
            pool,
            skipped: Arc::default(),
            shard: Shard::whole(),
        })
    }

    /// This loader restricted to `shard` (see [`Shard`]): of the epoch's stream, every global
    /// batch of `batch_size × count` samples gives shard `index` its `index`-th slice. Each rank
    /// still reads the shards in the same order, passing over the other ranks' samples by
    /// seeking; it decodes only its own. Needs `drop_last`.
    pub fn sharded(mut self, shard: Shard) -> Result<Self> {
        shard.check(self.config.batch.drop_last)?;
        self.shard = shard;
        Ok(self)
    }

    /// The shards read.
    pub fn shard_set(&self) -> &Arc<ShardSet> {
        &self.set
    }

    /// How the shards are read and batched.
    pub fn config(&self) -> &ShardLoaderConfig {
        &self.config
    }

    /// Samples per epoch: the set's, or the limit.
    fn samples(&self) -> usize {
        self.config
            .limit
            .map_or(self.set.len(), |l| l.min(self.set.len()))
    }

    fn plan(&self, epoch: u64) -> EpochPlan {
        let counts: Vec<usize> = self.set.index().shards.iter().map(|s| s.samples).collect();
        let n: usize = counts.iter().sum();
        let mut shards: Vec<usize> = (0..counts.len()).collect();
        let shuffle = self.config.batch.shuffle;
        let mut rng = Rng::new(derive_seed(&[self.config.batch.seed, epoch, 0x5348_4152]));
        if shuffle {
            rng.shuffle(&mut shards);
        }
        let mut starts = Vec::with_capacity(shards.len());
        let mut at = 0;
        for &s in &shards {
            starts.push(at);
            at += counts[s];
        }
        let slots = self.samples();
        let mut slot_of = vec![NOT_USED; n];
        let mut next_slot = 0u32;
        let mut emit = |pos: usize, slot_of: &mut Vec<u32>| {
            if (next_slot as usize) < slots {
                slot_of[pos] = next_slot;
            }
            next_slot += 1;
        };
        let size = if shuffle {
            self.config.shuffle_buffer
        } else {
            1
        };
        let mut buffer: Vec<usize> = Vec::with_capacity(size.min(n));
        for pos in 0..n {
            if buffer.len() < size {
                buffer.push(pos);
            } else {
                let j = rng.below(size);
                emit(buffer[j], &mut slot_of);
                buffer[j] = pos;
            }
        }
        // Drain: at random when shuffling, in order (a buffer of one) otherwise.
        while !buffer.is_empty() {
            let pos = if shuffle {
                buffer.swap_remove(rng.below(buffer.len()))
            } else {
                buffer.remove(0)
            };
            emit(pos, &mut slot_of);
        }
        if self.shard.count > 1 {
            // Global slots → this rank's slots: slot j of global batch g goes to rank
            // (j / b) as its slot g·b + j mod b; samples past the last full global batch, and
            // the other ranks' samples, are not read here.
            let b = self.config.batch.batch_size;
            let global = b * self.shard.count;
            let full = self.num_batches();
            for s in slot_of.iter_mut().filter(|s| **s != NOT_USED) {
                let (g, j) = (*s as usize / global, *s as usize % global);
                *s = if g < full && j / b == self.shard.index {
                    (g * b + j % b) as u32
                } else {
                    NOT_USED
                };
            }
        }
        EpochPlan {
            shards,
            starts,
            slot_of,
        }
    }

    /// The reader thread: walks the shards in the plan's order and sends the records of slots
    /// `first * batch .. end_slot` in slot order, a batch at a time, numbering batches from
    /// `first`.
    fn read(&self, plan: &EpochPlan, first: usize, end_slot: usize, tx: &SyncSender<RawBatch>) {
        let b = self.config.batch.batch_size;
        let first_slot = first * b;
        let mut flow = Flow {
            next: first_slot,
            end: end_slot,
            position: first,
            batch: b,
            current: Vec::with_capacity(b),
            pending: HashMap::new(),
            tx,
        };
        let wanted = |pos: usize| {
            let slot = plan.slot_of[pos];
            slot != NOT_USED && (slot as usize) >= first_slot && (slot as usize) < end_slot
        };
        let mut done = first_slot >= end_slot;
        for (k, &shard) in plan.shards.iter().enumerate() {
            if done {
                break;
            }
            let start = plan.starts[k];
            let expected = self.set.index().shards[shard].samples;
            let first_id = self.first_id[shard];
            if !(0..expected).any(|o| wanted(start + o)) {
                continue;
            }
            let read = self.set.read_shard(
                shard,
                &mut |o| o < expected && wanted(start + o),
                &mut |o, record| {
                    let slot = plan.slot_of[start + o] as usize;
                    let id = first_id + o;
                    done = !flow.put(slot, Item { id, record });
                    !done
                },
            );
            if done {
                break;
            }
            // Samples the shard should have had but did not deliver: left out, with the reason.
            let reason = match &read {
                Ok(n) if *n >= expected => continue,
                Ok(n) => format!("the shard holds {n} samples, its index says {expected}"),
                Err(e) => e.to_string(),
            };
            let path = self.set.shard_path(shard);
            for o in 0..expected {
                let slot = plan.slot_of[start + o] as usize;
                if wanted(start + o) && slot >= flow.next && !flow.pending.contains_key(&slot) {
                    let record = Err(Error::Image {
                        path: PathBuf::from(format!("{}:#{o}", path.display())),
                        reason: reason.clone(),
                    });
                    done = !flow.put(
                        slot,
                        Item {
                            id: first_id + o,
                            record,
                        },
                    );
                    if done {
                        break;
                    }
                }
            }
        }
    }

    /// `SHARD_FILE:KEY` for sample `id` (its place in the shard files' own order).
    fn sample_name(&self, id: usize, key: &str) -> PathBuf {
        let shard = self.first_id.partition_point(|&first| first <= id).max(1) - 1;
        PathBuf::from(format!("{}:{key}", self.set.shard_path(shard).display()))
    }

    /// Decodes and transforms one batch's records in parallel.
    fn decode(&self, raw: RawBatch, epoch: u64) -> Result<Batch> {
        let dims = Loader::dims(self);
        let per = dims.elem_count();
        let seed = self.config.batch.seed;
        let decoder = self.config.decoder;
        let transform = &self.transform;
        let ids: Vec<usize> = raw.items.iter().map(|i| i.id).collect();
        let mut images = vec![0f32; raw.items.len() * per];
        let work = |images: &mut Vec<f32>| -> Vec<Result<usize>> {
            images
                .par_chunks_mut(per)
                .zip(raw.items.into_par_iter())
                .map(|(out, item)| {
                    let record: Record = item.record?;
                    let mut rng = Rng::new(derive_seed(&[seed, epoch, item.id as u64]));
                    // Named as the reader names a bad sample (`SHARD:KEY`), so a decode error
                    // says which file to look in.
                    let name = self.sample_name(item.id, &record.key);
                    transform.apply_bytes(&record.image, &name, decoder, &mut rng, out)?;
                    Ok(record.label)
                })
                .collect()
        };
        let results = match &self.pool {
            Some(pool) => pool.install(|| work(&mut images)),
            None => work(&mut images),
        };
        let (images, labels, indices) = keep_readable(images, per, results, ids, &self.skipped)?;
        Ok(Batch {
            images,
            labels,
            indices,
            dims,
            position: raw.position,
        })
    }
}

/// A sample on its way from the reader to the decoder.
struct Item {
    /// The sample's place in the shard files' own order.
    id: usize,
    record: Result<Record>,
}

struct RawBatch {
    position: usize,
    items: Vec<Item>,
}

/// The reader's state: records wait in `pending` until every earlier slot has arrived, then go
/// into batches in slot order.
struct Flow<'a> {
    next: usize,
    end: usize,
    position: usize,
    batch: usize,
    current: Vec<Item>,
    pending: HashMap<usize, Item>,
    tx: &'a SyncSender<RawBatch>,
}

impl Flow<'_> {
    /// Adds the record of `slot` and sends every batch that is now complete; false once the
    /// epoch's last slot is sent or the consumer has gone.
    fn put(&mut self, slot: usize, item: Item) -> bool {
        self.pending.insert(slot, item);
        while let Some(item) = self.pending.remove(&self.next) {
            self.current.push(item);
            self.next += 1;
            if self.current.len() == self.batch || self.next == self.end {
                let items = std::mem::replace(&mut self.current, Vec::with_capacity(self.batch));
                let raw = RawBatch {
                    position: self.position,
                    items,
                };
                if self.tx.send(raw).is_err() {
                    return false;
                }
                self.position += 1;
            }
            if self.next == self.end {
                return false;
            }
        }
        true
    }
}

impl Loader for ShardLoader {
    fn len(&self) -> usize {
        self.samples()
    }

    fn dims(&self) -> ImageDims {
        let s = self.transform.output_side();
        ImageDims::new(3, s, s)
    }

    fn num_classes(&self) -> usize {
        self.set.classes().len()
    }

    fn class_names(&self) -> Vec<String> {
        self.set.classes().to_vec()
    }

    fn batch_size(&self) -> usize {
        self.config.batch.batch_size
    }

    fn num_batches(&self) -> usize {
        let (n, b) = (self.samples(), self.config.batch.batch_size);
        if self.config.batch.drop_last {
            n / (b * self.shard.count)
        } else {
            n.div_ceil(b)
        }
    }

    fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter {
        let total = self.num_batches();
        let end_slot = if self.config.batch.drop_last {
            total * self.config.batch.batch_size
        } else {
            self.samples()
        };
        let this = self.clone();
        EpochIter::spawn(
            self.config.batch.prefetch,
            total.saturating_sub(first),
            move |tx| {
                if first >= total {
                    return;
                }
                let plan = this.plan(epoch);
                let (raw_tx, raw_rx) = sync_channel::<RawBatch>(this.config.batch.prefetch);
                let reader = this.clone();
                let spawned = std::thread::Builder::new()
                    .name("datasets-shard-reader".into())
                    .spawn(move || reader.read(&plan, first, end_slot, &raw_tx));
                let handle = match spawned {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = tx.send(Err(Error::Worker(format!(
                            "cannot start the shard reader: {e}"
                        ))));
                        return;
                    }
                };
                let mut watch = EmptyWatch::default();
                let mut sent = 0;
                let mut failed = false;
                for raw in raw_rx.iter() {
                    let batch = this.decode(raw, epoch);
                    let stop = watch.after(&batch, &this.skipped);
                    failed = batch.is_err() || stop.is_some();
                    if tx.send(batch).is_err() {
                        break;
                    }
                    sent += 1;
                    if let Some(e) = stop {
                        let _ = tx.send(Err(e));
                    }
                    if failed {
                        break;
                    }
                }
                if !failed {
                    if let Some(e) = watch.at_end(sent, &this.skipped) {
                        let _ = tx.send(Err(e));
                    }
                }
                // Closing the channel makes a reader blocked in `send` return.
                drop(raw_rx);
                if handle.join().is_err() {
                    let _ = tx.send(Err(Error::Worker("the shard reader panicked".into())));
                }
            },
        )
    }

    fn skipped(&self) -> u64 {
        self.skipped.count()
    }
}
