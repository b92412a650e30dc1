//! The shard pipeline end to end on tiny generated JPEG trees: ImageFolder → shards → batches,
//! order and determinism, resume, limits, corrupt images and a truncated shard.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use datasets::folder_to_shards::{write_shards, ShardOptions};
use datasets::shards::ImageExt;
use datasets::synthetic::{encode_jpeg, write_tree, SyntheticConfig};
use datasets::{
    Batch, Batcher, BatcherConfig, EvalTransform, ImageFolder, Loader, Normalize, ShardLoader,
    ShardLoaderConfig, ShardSet, ShardWriter, TrainTransform, Transform,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// 3 classes × 7 images of 24×18 or 18×24, in shards of 4 (six shards, the last of 1).
fn shards(dir: &Path) -> Arc<ShardSet> {
    let src = dir.join("folder");
    write_tree(
        &src,
        &SyntheticConfig {
            classes: 3,
            per_class: 7,
            sizes: vec![(24, 18), (18, 24)],
            quality: 85,
            seed: 5,
        },
    )
    .unwrap();
    let out = dir.join("shards");
    let opts = ShardOptions {
        short_side: None,
        samples_per_shard: 4,
        ..ShardOptions::default()
    };
    write_shards(&src, &out, &opts, &mut |_, _| {}).unwrap();
    Arc::new(ShardSet::open(&out).unwrap())
}

fn eval() -> Transform {
    Transform::Eval(EvalTransform {
        resize: 10,
        crop: 8,
        normalize: Normalize::imagenet(),
    })
}

fn train() -> Transform {
    Transform::Train(TrainTransform::imagenet(8))
}

fn all(loader: &dyn Loader, epoch: u64) -> Vec<Batch> {
    loader
        .epoch(epoch)
        .collect::<datasets::Result<_>>()
        .unwrap()
}

fn ids(batches: &[Batch]) -> Vec<usize> {
    batches.iter().flat_map(|b| b.indices.clone()).collect()
}

fn config(batch: usize, seed: u64, buffer: usize) -> ShardLoaderConfig {
    ShardLoaderConfig {
        batch: BatcherConfig {
            drop_last: false,
            ..BatcherConfig::train(batch, seed)
        },
        shuffle_buffer: buffer,
        ..ShardLoaderConfig::train(batch, seed)
    }
}

#[test]
fn every_sample_once_per_epoch_in_a_seeded_order_that_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    assert_eq!((set.len(), set.num_shards()), (21, 6));
    let loader = ShardLoader::new(Arc::clone(&set), train(), config(4, 7, 5)).unwrap();
    assert_eq!(loader.num_batches(), 6);
    let e0 = all(&loader, 0);
    let mut seen = ids(&e0);
    assert_eq!(
        e0.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [4, 4, 4, 4, 4, 1]
    );
    assert_ne!(seen, (0..21).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    assert_eq!(seen, (0..21).collect::<Vec<_>>(), "each sample once");
    assert!(e0.iter().all(|b| b.shape()[1..] == [3, 8, 8]));
    // The same seed gives the same batches, pixels included; another epoch another order.
    let again = ShardLoader::new(Arc::clone(&set), train(), config(4, 7, 5)).unwrap();
    assert_eq!(all(&again, 0), e0);
    assert_ne!(ids(&all(&loader, 1)), ids(&e0));
    let other_seed = ShardLoader::new(Arc::clone(&set), train(), config(4, 8, 5)).unwrap();
    assert_ne!(ids(&all(&other_seed, 0)), ids(&e0));
    // Resuming at batch 3 yields exactly the rest of the epoch.
    let resumed: Vec<Batch> = loader
        .epoch_from(0, 3)
        .collect::<datasets::Result<_>>()
        .unwrap();
    assert_eq!(resumed, e0[3..]);
    assert_eq!(loader.skipped(), 0);
}

#[test]
fn unshuffled_reading_matches_the_image_folder_image_for_image() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    let loader = ShardLoader::new(Arc::clone(&set), eval(), ShardLoaderConfig::eval(5)).unwrap();
    let batches = all(&loader, 0);
    assert_eq!(ids(&batches), (0..21).collect::<Vec<_>>(), "file order");
    // Shards hold the folder's JPEGs byte for byte, so the eval transform gives the same
    // pixels: compare the two as multisets of (label, image).
    let folder = ImageFolder::open(&dir.path().join("folder"), eval()).unwrap();
    let batcher = Batcher::new(Arc::new(folder), BatcherConfig::eval(5)).unwrap();
    let key = |b: &[Batch]| {
        let mut m = BTreeMap::new();
        for batch in b {
            let per = batch.images.len() / batch.len();
            for (img, label) in batch.images.chunks_exact(per).zip(&batch.labels) {
                let bits: Vec<u32> = img.iter().map(|v| v.to_bits()).collect();
                *m.entry((*label, bits)).or_insert(0) += 1;
            }
        }
        m
    };
    assert_eq!(key(&batches), key(&all(&batcher, 0)));
}

#[test]
fn a_limit_reads_only_the_start_of_each_epochs_stream() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    let cfg = ShardLoaderConfig {
        limit: Some(9),
        ..config(4, 1, 3)
    };
    let loader = ShardLoader::new(Arc::clone(&set), train(), cfg).unwrap();
    assert_eq!((loader.len(), loader.num_batches()), (9, 3));
    let mut got = ids(&all(&loader, 0));
    assert_eq!(got.len(), 9);
    got.dedup();
    assert_eq!(got.len(), 9);
}

#[test]
fn corrupt_images_and_a_truncated_shard_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad");
    let mut w = ShardWriter::create(&out, "s", vec!["a".into(), "b".into()], 4, 1 << 30).unwrap();
    let mut rng = tensor::Rng::new(0);
    for i in 0..12 {
        let good = encode_jpeg(&datasets::synthetic::image(16, 12, &mut rng), 16, 12, 80).unwrap();
        let bytes = match i {
            2 => b"\xFF\xD8\xFFgarbage".to_vec(),
            5 => good[..good.len() / 2].to_vec(),
            _ => good,
        };
        w.add(&format!("{i:03}"), ImageExt::Jpeg, &bytes, i % 2)
            .unwrap();
    }
    w.finish().unwrap();
    let set = Arc::new(ShardSet::open(&out).unwrap());
    let loader = ShardLoader::new(Arc::clone(&set), eval(), ShardLoaderConfig::eval(4)).unwrap();
    let batches = all(&loader, 0);
    assert_eq!(ids(&batches), [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]);
    assert_eq!(loader.skipped(), 2);
    // Cut the last shard mid-way: its lost samples are skipped too, the rest still arrive.
    let last = set.shard_path(2);
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..1024 + 700]).unwrap();
    let loader = ShardLoader::new(Arc::clone(&set), eval(), ShardLoaderConfig::eval(4)).unwrap();
    let batches = all(&loader, 0);
    assert_eq!(ids(&batches), [0, 1, 3, 4, 6, 7]);
    assert_eq!(batches.len(), 3);
    assert!(
        batches[2].is_empty(),
        "a batch with nothing readable comes empty"
    );
    assert_eq!(loader.skipped(), 2 + 4);
}

#[test]
fn an_undecodable_image_is_named_by_its_shard_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("garbage");
    let mut w = ShardWriter::create(&out, "g", vec!["a".into()], 2, 1 << 30).unwrap();
    for i in 0..4 {
        w.add(
            &format!("img{i}"),
            ImageExt::Jpeg,
            b"\xFF\xD8\xFFgarbage",
            0,
        )
        .unwrap();
    }
    w.finish().unwrap();
    let set = Arc::new(ShardSet::open(&out).unwrap());
    let loader = ShardLoader::new(Arc::clone(&set), eval(), ShardLoaderConfig::eval(4)).unwrap();
    let last = loader.epoch(0).last().unwrap().unwrap_err().to_string();
    // The key alone (`img3`) said which sample but not which of the files holds it.
    let where_ = format!("{}:img3", set.shard_path(1).display());
    assert!(last.contains(&where_), "{last}\nshould name {where_}");
}

#[test]
fn a_vanished_directory_is_an_error_not_an_endless_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    let loader = ShardLoader::new(Arc::clone(&set), eval(), ShardLoaderConfig::eval(8)).unwrap();
    std::fs::remove_dir_all(dir.path().join("shards")).unwrap();
    let items: Vec<_> = loader.epoch(0).collect();
    assert_eq!(items.len(), 4, "three empty batches, then the error");
    assert!(items[..3].iter().all(|b| b.as_ref().unwrap().is_empty()));
    let msg = items[3].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("no readable image") && msg.contains("shard-0000"),
        "{msg}"
    );
}

#[test]
fn bad_configurations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    for cfg in [
        config(0, 0, 4),
        config(4, 0, 0),
        ShardLoaderConfig {
            threads: Some(0),
            ..config(4, 0, 4)
        },
    ] {
        assert!(ShardLoader::new(Arc::clone(&set), eval(), cfg).is_err());
    }
    let err = ShardSet::open(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn sharded_loaders_split_every_global_batch_between_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let set = shards(dir.path());
    let cfg = |batch| ShardLoaderConfig {
        batch: BatcherConfig::train(batch, 3),
        shuffle_buffer: 5,
        ..ShardLoaderConfig::train(batch, 3)
    };
    // One process at batch 6 against two ranks at batch 3: 3 global batches of the 21 samples.
    let whole = ShardLoader::new(Arc::clone(&set), train(), cfg(6)).unwrap();
    let ranks: Vec<ShardLoader> = (0..2)
        .map(|index| {
            ShardLoader::new(Arc::clone(&set), train(), cfg(3))
                .unwrap()
                .sharded(datasets::Shard { index, count: 2 })
                .unwrap()
        })
        .collect();
    assert_eq!(whole.num_batches(), 3);
    for epoch in [0, 4] {
        let global = all(&whole, epoch);
        let parts: Vec<Vec<Batch>> = ranks.iter().map(|r| all(r, epoch)).collect();
        for (g, batch) in global.iter().enumerate() {
            let mut indices: Vec<usize> = Vec::new();
            let mut images: Vec<f32> = Vec::new();
            for part in &parts {
                assert_eq!(part.len(), 3, "every rank takes the same number of steps");
                indices.extend(&part[g].indices);
                images.extend(&part[g].images);
            }
            assert_eq!(indices, batch.indices, "epoch {epoch} batch {g}");
            assert_eq!(images, batch.images, "same pixels, same augmentation");
        }
        // Resuming a rank mid-epoch gives its remaining batches.
        let rest: Vec<Batch> = ranks[1]
            .epoch_from(epoch, 1)
            .collect::<datasets::Result<_>>()
            .unwrap();
        assert_eq!(ids(&rest), ids(&parts[1][1..]));
    }
    let mut eval_cfg = cfg(3);
    eval_cfg.batch.drop_last = false;
    let err = ShardLoader::new(set, train(), eval_cfg)
        .unwrap()
        .sharded(datasets::Shard { index: 0, count: 2 })
        .unwrap_err();
    assert!(err.to_string().contains("drop_last"), "{err}");
}
