//! ImageFolder on a tiny tree of generated PNG and JPEG files.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use datasets::{
    Batcher, BatcherConfig, Dataset, Error, EvalTransform, ImageFolder, Normalize, TrainTransform,
    Transform, IMAGENET_MEAN, IMAGENET_STD,
};
use image::{Rgb, RgbImage};
use std::path::Path;
use std::sync::Arc;
use tensor::Rng;

fn solid(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb(rgb)).save(path).unwrap();
}

/// cat: a red PNG and (one level deeper) a blue JPEG; dog: a grey PNG and a text file; a hidden
/// folder that must not become a class.
fn tree(root: &Path) {
    solid(&root.join("cat/a.png"), 12, 8, [255, 0, 0]);
    solid(&root.join("cat/deeper/b.JPG"), 20, 20, [0, 0, 255]);
    solid(&root.join("dog/c.png"), 9, 30, [128, 128, 128]);
    std::fs::write(root.join("dog/notes.txt"), "not an image").unwrap();
    solid(&root.join(".hidden/x.png"), 4, 4, [1, 2, 3]);
}

fn eval(crop: usize, resize: usize) -> Transform {
    Transform::Eval(EvalTransform {
        resize,
        crop,
        normalize: Normalize::imagenet(),
    })
}

#[test]
fn classes_samples_and_eval_values() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let f = ImageFolder::open(dir.path(), eval(6, 7)).unwrap();
    assert_eq!(f.classes(), ["cat", "dog"]);
    let names: Vec<_> = f
        .samples()
        .iter()
        .map(|(p, l)| (p.file_name().unwrap().to_string_lossy().into_owned(), *l))
        .collect();
    assert_eq!(
        names,
        [
            ("a.png".into(), 0),
            ("b.JPG".into(), 0),
            ("c.png".into(), 1)
        ]
    );
    assert_eq!(f.dims(), datasets::ImageDims::new(3, 6, 6));
    let norm = |c: usize, v: f32| (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    let mut rng = Rng::new(0);
    for (i, rgb, tol) in [
        (0, [255.0, 0.0, 0.0], 1e-4),
        (1, [0.0, 0.0, 255.0], 0.05),
        (2, [128.0; 3], 1e-4),
    ] {
        let (x, label) = f.get(i, &mut rng).unwrap();
        assert_eq!(label, f.samples()[i].1);
        for c in 0..3 {
            for v in &x[c * 36..(c + 1) * 36] {
                assert!(
                    (v - norm(c, rgb[c])).abs() < tol,
                    "image {i} channel {c}: {v}"
                );
            }
        }
    }
}

#[test]
fn eval_crop_is_centred_and_train_flip_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    // Left half white, right half black, 16×8: the centre crop of the 8-high resize keeps columns
    // 4..12, half white and half black.
    let mut img = RgbImage::new(16, 8);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = if x < 8 { Rgb([255; 3]) } else { Rgb([0; 3]) };
    }
    std::fs::create_dir_all(dir.path().join("only")).unwrap();
    img.save(dir.path().join("only/half.png")).unwrap();
    let unit_eval = Transform::Eval(EvalTransform {
        resize: 8,
        crop: 8,
        normalize: Normalize::Unit,
    });
    let f = ImageFolder::open(dir.path(), unit_eval).unwrap();
    let (x, _) = f.get(0, &mut Rng::new(0)).unwrap();
    assert_eq!(&x[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);

    // Crop = whole image (scale and ratio pinned), so only the flip varies.
    let train = Transform::Train(TrainTransform {
        size: 8,
        scale: (1.0, 1.0),
        ratio: (2.0, 2.0),
        hflip: true,
        normalize: Normalize::Unit,
    });
    let f = f.with_transform(train).unwrap();
    let mut flipped = 0;
    for seed in 0..40 {
        let (a, _) = f.get(0, &mut Rng::new(seed)).unwrap();
        let (b, _) = f.get(0, &mut Rng::new(seed)).unwrap();
        assert_eq!(a, b, "deterministic for a generator state");
        let row = &a[..8];
        if row[0] < 0.5 {
            flipped += 1;
            assert!(row[7] > 0.5, "{row:?}");
        } else {
            assert!(row[7] < 0.5, "{row:?}");
        }
    }
    assert!(
        (8..=32).contains(&flipped),
        "flip ~half the time: {flipped}/40"
    );
}

#[test]
fn train_transform_output_has_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let f = ImageFolder::open(dir.path(), Transform::Train(TrainTransform::imagenet(5))).unwrap();
    let b = Batcher::new(Arc::new(f), BatcherConfig::train(2, 1)).unwrap();
    let batches: Vec<_> = b.epoch(0).collect::<datasets::Result<_>>().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].shape(), [2, 3, 5, 5]);
    assert!(batches[0].images.iter().all(|v| v.is_finite()));
}

#[test]
fn unreadable_images_and_bad_trees_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let bad = dir.path().join("dog/zzz-broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n this is not really a png").unwrap();
    let f = ImageFolder::open(dir.path(), eval(4, 4)).unwrap();
    let i = f.samples().iter().position(|(p, _)| p == &bad).unwrap();
    let err = f.get(i, &mut Rng::new(0)).unwrap_err();
    assert!(matches!(err, Error::Image { .. }));
    assert!(err.to_string().contains("zzz-broken.png"), "{err}");
    // The batcher leaves it out, counts it and goes on.
    let b = Batcher::new(Arc::new(f), BatcherConfig::eval(8)).unwrap();
    let batches: Vec<_> = b.epoch(0).collect::<datasets::Result<_>>().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].len(), 3);
    assert!(!batches[0].indices.contains(&i));
    assert_eq!(b.skipped(), 1);

    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let msg = ImageFolder::open(dir.path(), eval(4, 4))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty") && msg.contains("no .jpg"), "{msg}");

    let msg = ImageFolder::open(&dir.path().join("nope"), eval(4, 4))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope"), "{msg}");

    let flat = tempfile::tempdir().unwrap();
    solid(&flat.path().join("a.png"), 4, 4, [0; 3]);
    let msg = ImageFolder::open(flat.path(), eval(4, 4))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no class subdirectories"), "{msg}");

    assert!(
        ImageFolder::open(dir.path(), eval(8, 4)).is_err(),
        "crop > resize"
    );
}
