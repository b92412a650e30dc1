//! Batcher order, determinism, prefetching and error handling on tiny synthetic datasets.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use datasets::{Batcher, BatcherConfig, Dataset, Error, ImageDims, Result};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tensor::{Device, Rng};

/// Image `i` is filled with `i`, except its last value, which is an augmentation draw.
struct Counting {
    n: usize,
    calls: AtomicUsize,
    fail_at: Option<usize>,
    fatal_at: Option<usize>,
    panic_at: Option<usize>,
}

impl Counting {
    fn new(n: usize) -> Self {
        Counting {
            n,
            calls: AtomicUsize::new(0),
            fail_at: None,
            fatal_at: None,
            panic_at: None,
        }
    }
}

impl Dataset for Counting {
    fn len(&self) -> usize {
        self.n
    }
    fn dims(&self) -> ImageDims {
        ImageDims::new(2, 2, 3)
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(index) {
            return Err(Error::Image {
                path: format!("img{index}.png").into(),
                reason: "broken".into(),
            });
        }
        if self.fatal_at == Some(index) {
            return Err(Error::Worker(format!("storage gone at {index}")));
        }
        if self.panic_at == Some(index) {
            panic!("loader bug at {index}");
        }
        out.fill(index as f32);
        if let Some(last) = out.last_mut() {
            *last = rng.uniform() as f32;
        }
        Ok(index % 3)
    }
}

fn collect(b: &Batcher<Counting>, epoch: u64) -> Vec<datasets::Batch> {
    b.epoch(epoch).collect::<Result<Vec<_>>>().unwrap()
}

#[test]
fn batches_cover_the_epoch_with_the_right_shapes() {
    let ds = Arc::new(Counting::new(10));
    let cfg = BatcherConfig {
        drop_last: false,
        ..BatcherConfig::train(4, 3)
    };
    let b = Batcher::new(ds.clone(), cfg.clone()).unwrap();
    assert_eq!(b.num_batches(), 3);
    let batches = collect(&b, 0);
    assert_eq!(
        batches.iter().map(|x| x.len()).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    let seen: Vec<usize> = batches.iter().flat_map(|x| x.indices.clone()).collect();
    assert_eq!(seen, b.order(0));
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>().len(), 10);
    for batch in &batches {
        assert_eq!(batch.shape(), [batch.len(), 2, 2, 3]);
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.images[k * 12], i as f32);
            assert_eq!(batch.labels[k], i % 3);
        }
    }
    let (t, labels) = batches[2].clone().into_tensor(Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[2, 2, 2, 3]);
    assert_eq!(t.to_vec().unwrap(), batches[2].images);
    assert_eq!(labels, batches[2].labels);

    let dropping = Batcher::new(
        ds,
        BatcherConfig {
            drop_last: true,
            ..cfg
        },
    )
    .unwrap();
    assert_eq!(dropping.num_batches(), 2);
    assert!(collect(&dropping, 0).iter().all(|x| x.len() == 4));
}

#[test]
fn shards_split_every_global_batch_between_ranks() {
    let ds = Arc::new(Counting::new(50));
    // One process at batch 12 against three ranks at batch 4: 4 global batches, 2 images dropped.
    let whole = Batcher::new(ds.clone(), BatcherConfig::train(12, 9)).unwrap();
    let shards: Vec<Batcher<Counting>> = (0..3)
        .map(|index| {
            Batcher::new(ds.clone(), BatcherConfig::train(4, 9))
                .unwrap()
                .sharded(datasets::Shard { index, count: 3 })
                .unwrap()
        })
        .collect();
    assert_eq!(whole.num_batches(), 4);
    for epoch in [0, 7] {
        let global = collect(&whole, epoch);
        let parts: Vec<Vec<datasets::Batch>> = shards.iter().map(|s| collect(s, epoch)).collect();
        for (g, batch) in global.iter().enumerate() {
            let mut indices: Vec<usize> = Vec::new();
            let mut images: Vec<f32> = Vec::new();
            for part in &parts {
                assert_eq!(part.len(), 4, "every rank takes the same number of steps");
                indices.extend(&part[g].indices);
                images.extend(&part[g].images);
            }
            assert_eq!(indices, batch.indices, "epoch {epoch} batch {g}");
            // Same images with the same augmentation draws.
            assert_eq!(images, batch.images);
        }
        let mut all: Vec<usize> = parts
            .iter()
            .flatten()
            .flat_map(|b| b.indices.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 48, "the shards are disjoint");
    }
    let err = Batcher::new(ds.clone(), BatcherConfig::eval(4))
        .unwrap()
        .sharded(datasets::Shard { index: 0, count: 2 })
        .unwrap_err();
    assert!(err.to_string().contains("drop_last"), "{err}");
    assert!(Batcher::new(ds, BatcherConfig::train(4, 0))
        .unwrap()
        .sharded(datasets::Shard { index: 2, count: 2 })
        .is_err());
}

#[test]
fn order_is_a_function_of_seed_and_epoch() {
    let ds = Arc::new(Counting::new(50));
    let b = Batcher::new(ds.clone(), BatcherConfig::train(8, 42)).unwrap();
    let again = Batcher::new(ds.clone(), BatcherConfig::train(8, 42)).unwrap();
    let other_seed = Batcher::new(ds.clone(), BatcherConfig::train(8, 43)).unwrap();
    assert_eq!(b.order(3), again.order(3));
    assert_ne!(b.order(3), b.order(4));
    assert_ne!(b.order(3), other_seed.order(3));
    let mut sorted = b.order(3);
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    // Contents, augmentation draws included, repeat exactly, whatever the thread count.
    let first = collect(&b, 5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let second = pool.install(|| collect(&again, 5));
    assert_eq!(first, second);
    // Augmentation differs between epochs for the same image.
    let draw = |batches: &[datasets::Batch], i: usize| {
        batches
            .iter()
            .find_map(|x| {
                let k = x.indices.iter().position(|&j| j == i)?;
                Some(x.images[k * 12 + 11])
            })
            .unwrap()
    };
    let sixth = collect(&b, 6);
    assert_ne!(draw(&first, 7), draw(&sixth, 7));
    // Evaluation order is the identity.
    let eval = Batcher::new(ds, BatcherConfig::eval(8)).unwrap();
    assert_eq!(eval.order(9), (0..50).collect::<Vec<_>>());
}

#[test]
fn resuming_mid_epoch_yields_the_remaining_batches() {
    let b = Batcher::new(Arc::new(Counting::new(30)), BatcherConfig::train(4, 1)).unwrap();
    let full = collect(&b, 2);
    let tail: Vec<_> = b.epoch_from(2, 3).collect::<Result<_>>().unwrap();
    assert_eq!(tail, full[3..]);
    assert_eq!(b.batch(2, 4).unwrap(), full[4]);
    assert!(b.batch(2, full.len()).is_err());
    assert_eq!(b.epoch_from(2, 100).count(), 0);
}

#[test]
fn prefetches_ahead_but_stays_bounded() {
    let ds = Arc::new(Counting::new(200));
    let cfg = BatcherConfig {
        prefetch: 2,
        ..BatcherConfig::train(4, 0)
    };
    let b = Batcher::new(ds.clone(), cfg).unwrap();
    let mut it = b.epoch(0);
    it.next().unwrap().unwrap();
    // With one batch consumed, the worker fills the channel (prefetch = 2 batches) and stops.
    let want = 4 * 3;
    let start = Instant::now();
    while ds.calls.load(Ordering::SeqCst) < want && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ds.calls.load(Ordering::SeqCst), want);
    // Dropping the iterator mid-epoch stops the worker without hanging.
    drop(it);
    let after = ds.calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ds.calls.load(Ordering::SeqCst), after);
}

#[test]
fn an_unreadable_image_is_left_out_and_counted() {
    let mut ds = Counting::new(20);
    ds.fail_at = Some(13);
    let b = Batcher::new(Arc::new(ds), BatcherConfig::eval(4)).unwrap();
    let batches: Vec<_> = b.epoch(0).collect::<Result<_>>().unwrap();
    assert_eq!(batches.len(), 5, "the epoch goes on");
    assert_eq!(batches[3].indices, [12, 14, 15]);
    assert_eq!(batches[3].shape(), [3, 2, 2, 3]);
    assert_eq!(
        batches[3].images[2 * 12],
        15.0,
        "the images stay with their ids"
    );
    assert_eq!(b.skipped(), 1);
}

#[test]
fn other_failures_end_the_epoch_with_their_error() {
    let mut ds = Counting::new(20);
    ds.fatal_at = Some(13);
    let b = Batcher::new(Arc::new(ds), BatcherConfig::eval(4)).unwrap();
    let items: Vec<_> = b.epoch(0).collect();
    assert_eq!(items.len(), 4, "three good batches, then the error");
    assert!(items[..3].iter().all(|r| r.is_ok()));
    let msg = items[3].as_ref().unwrap_err().to_string();
    assert!(msg.contains("storage gone at 13"), "{msg}");
}

#[test]
fn a_panicking_loader_is_reported_not_hung() {
    let mut ds = Counting::new(8);
    ds.panic_at = Some(2);
    let b = Batcher::new(Arc::new(ds), BatcherConfig::eval(4)).unwrap();
    let items: Vec<_> = b.epoch(0).collect();
    let msg = items.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(msg.contains("loader bug at 2"), "{msg}");
}

#[test]
fn bad_configurations_are_rejected() {
    let ds = Arc::new(Counting::new(4));
    for cfg in [
        BatcherConfig::train(0, 0),
        BatcherConfig {
            prefetch: 0,
            ..BatcherConfig::eval(2)
        },
    ] {
        assert!(Batcher::new(ds.clone(), cfg).is_err());
    }
}
