//! Helpers shared by the end-to-end training tests: tiny learnable data and a tiny run.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use tensor::Rng;
use trainer::{DataSpec, LrSchedule, TrainConfig};

/// A Fashion-MNIST-shaped set where class `c` is a bright 7×7 square at one of ten positions, on
/// noise: learnable in a few dozen steps.
pub fn write_squares(dir: &Path, train: usize, test: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut make = |n: usize| {
        let mut pixels = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 10;
            let (r0, c0) = ((c / 5) * 12 + 3, (c % 5) * 5 + 1);
            for y in 0..28 {
                for x in 0..28 {
                    let inside = (r0..r0 + 7).contains(&y) && (c0..c0 + 7).contains(&x);
                    let base = if inside { 200.0 } else { 30.0 };
                    let v = base + 25.0 * rng.normal();
                    pixels.push(v.clamp(0.0, 255.0) as u8);
                }
            }
            labels.push(c as u8);
        }
        (pixels, labels)
    };
    let (tr, trl) = make(train);
    let (te, tel) = make(test);
    datasets::idx::write_fashion_mnist_like(dir, (&tr, &trl), (&te, &tel)).unwrap();
}

pub fn config(data_dir: &Path) -> TrainConfig {
    let mut model = topology::zoo::get("compact_timedecay").unwrap();
    model.default_steps = 4;
    model.image_off = 4;
    let mut c = TrainConfig::for_model(
        model,
        DataSpec::FashionMnist {
            dir: Some(data_dir.to_path_buf()),
        },
    );
    c.epochs = 2;
    c.batch_size = 16;
    c.eval_batch_size = 32;
    c.lr = LrSchedule::cosine(3e-3, 4, 0);
    c.checkpoint_every = 3;
    c.seed = 7;
    c
}

/// The same epochs and steps, training top-1, and losses within `tolerance`.
pub fn assert_metrics_close(
    a: &[trainer::EpochMetrics],
    b: &[trainer::EpochMetrics],
    tolerance: f64,
) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.epoch, x.step), (y.epoch, y.step));
        assert!(
            (x.train_loss - y.train_loss).abs() < tolerance,
            "{} vs {}",
            x.train_loss,
            y.train_loss
        );
        assert_eq!(x.train_top1, y.train_top1);
        assert!(
            (x.val_loss - y.val_loss).abs() < tolerance,
            "{} vs {}",
            x.val_loss,
            y.val_loss
        );
    }
}

/// What a resumed run must reproduce of an uninterrupted one in the same process: the metrics
/// of [`assert_metrics_close`] to 1e-5 and every step's validation top-1.
pub fn assert_metrics_equal(a: &[trainer::EpochMetrics], b: &[trainer::EpochMetrics]) {
    assert_metrics_close(a, b, 1e-5);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.val_top1_per_step, y.val_top1_per_step);
    }
}
