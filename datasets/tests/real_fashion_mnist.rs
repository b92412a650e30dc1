//! Checks against the real Fashion-MNIST files when Debian's `dataset-fashion-mnist` is installed;
//! skipped (with a message) otherwise.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use datasets::idx::{FASHION_MNIST_MEAN, FASHION_MNIST_STD};
use datasets::locate::{has_fashion_mnist, DEBIAN_FASHION_MNIST_DIR};
use datasets::{Clutter, ClutterConfig, Dataset, FashionMnist, ImageDims};
use std::path::Path;

fn real() -> Option<FashionMnist> {
    let dir = Path::new(DEBIAN_FASHION_MNIST_DIR);
    if !has_fashion_mnist(dir) {
        eprintln!(
            "skipped: Fashion-MNIST is not installed at {DEBIAN_FASHION_MNIST_DIR} \
             (apt-get install dataset-fashion-mnist)"
        );
        return None;
    }
    Some(FashionMnist::load(dir).unwrap())
}

#[test]
fn real_files_have_the_documented_counts_and_statistics() {
    let Some(fm) = real() else { return };
    assert_eq!(fm.train.len(), 60_000);
    assert_eq!(fm.test.len(), 10_000);
    assert_eq!(fm.train.dims(), ImageDims::new(1, 28, 28));
    assert_eq!(fm.train.num_classes(), 10);
    for (set, per_class) in [(&fm.train, 6000), (&fm.test, 1000)] {
        let mut counts = [0usize; 10];
        set.labels().iter().for_each(|&l| counts[l] += 1);
        assert_eq!(counts, [per_class; 10]);
    }
    let (mean, std) = fm.train.channel_stats();
    assert!((mean[0] - FASHION_MNIST_MEAN).abs() < 5e-4, "{mean:?}");
    assert!((std[0] - FASHION_MNIST_STD).abs() < 5e-4, "{std:?}");
}

#[test]
fn clutter_from_real_images() {
    let Some(fm) = real() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = ClutterConfig::new(64, 9);
    let (a, b) = Clutter::fashion_mnist_pair(&fm, &cfg, 32, Some(dir.path())).unwrap();
    assert_eq!((a.len(), b.len()), (64, 32));
    assert_eq!(a.dims(), ImageDims::new(1, 28, 28));
    assert_eq!(a.class_names()[0], "T-shirt/top");
    assert!(a.info.iter().all(|i| (i.source_index as usize) < 60_000));
    assert!(b.info.iter().all(|i| (i.source_index as usize) < 10_000));
}
