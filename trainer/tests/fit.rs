#![allow(clippy::unwrap_used)]
//! End-to-end training runs on tiny data: learning, exact resume, checkpoints, faults.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tensor::{Device, Rng};
use trainer::checkpoint::{self, Checkpoint};
use trainer::{
    fit, Control, DataSpec, Error, FitOptions, LrSchedule, OptimizerSpec, Outcome, TrainConfig,
};

/// A Fashion-MNIST-shaped set where class `c` is a bright 7×7 square at one of ten positions, on
/// noise: learnable in a few dozen steps.
fn write_squares(dir: &Path, train: usize, test: usize, seed: u64) {
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

fn config(data_dir: &Path) -> TrainConfig {
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

fn assert_metrics_equal(a: &[trainer::EpochMetrics], b: &[trainer::EpochMetrics]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.epoch, x.step), (y.epoch, y.step));
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-5,
            "{} vs {}",
            x.train_loss,
            y.train_loss
        );
        assert_eq!(x.train_top1, y.train_top1);
        assert!((x.val_loss - y.val_loss).abs() < 1e-5);
        assert_eq!(x.val_top1_per_step, y.val_top1_per_step);
    }
}

#[test]
fn learns_and_resumes_exactly_after_interruptions() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 160, 40, 1);
    let cfg = config(data.path());

    let full = tempfile::tempdir().unwrap();
    let uninterrupted = fit(cfg.clone(), FitOptions::new(full.path())).unwrap();
    assert_eq!(uninterrupted.outcome, Outcome::Finished);
    assert_eq!(uninterrupted.metrics.len(), 2);
    assert_eq!(uninterrupted.steps, 20);
    let last = uninterrupted.last().unwrap();
    assert!(
        last.val_top1 > 0.5,
        "a trivially separable task should be learned: {last:?}"
    );
    assert!(last.train_loss < uninterrupted.metrics[0].train_loss);
    assert_eq!(last.val_top1_per_step.len(), 4);
    for f in [
        "spec.json",
        "config.json",
        "metrics.jsonl",
        checkpoint::LATEST,
        checkpoint::BEST,
        "plots/training.svg",
        "plots/accuracy_per_step.svg",
    ] {
        assert!(full.path().join(f).is_file(), "{f} missing");
    }

    // The same run, stopped after its first batch, then after one more, then finished.
    let parts = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    let mut opts = FitOptions::new(parts.path());
    opts.stop = Some(Arc::clone(&stop));
    let first = fit(cfg.clone(), opts).unwrap();
    assert_eq!((first.outcome, first.steps), (Outcome::Interrupted, 1));
    let mut opts = FitOptions::new(parts.path());
    opts.stop = Some(Arc::clone(&stop));
    opts.resume = true;
    let second = fit(cfg.clone(), opts).unwrap();
    assert_eq!((second.outcome, second.steps), (Outcome::Interrupted, 2));
    let mut opts = FitOptions::new(parts.path());
    opts.resume = true;
    let resumed = fit(cfg.clone(), opts).unwrap();
    assert_eq!(resumed.outcome, Outcome::Finished);
    assert_metrics_equal(&resumed.metrics, &uninterrupted.metrics);
    assert_metrics_equal(
        &trainer::metrics::read(parts.path()).unwrap(),
        &uninterrupted.metrics,
    );

    // A finished run resumed again has nothing left to do.
    let mut opts = FitOptions::new(parts.path());
    opts.resume = true;
    assert_eq!(fit(cfg.clone(), opts).unwrap().steps, 20);

    // Without --resume an existing run is never overwritten.
    let err = fit(cfg, FitOptions::new(parts.path())).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");

    // Checkpoint → model → identical evaluation.
    let ev = trainer::evaluate_checkpoint(
        &full.path().join(checkpoint::LATEST),
        None,
        None,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(ev.top1_per_step, last.val_top1_per_step);
    assert!((ev.loss - last.val_loss).abs() < 1e-6);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 96, 20, 2);
    let mut cfg = config(data.path());
    cfg.optimizer = OptimizerSpec::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    cfg.clip = trainer::GradClip::None;
    cfg.lr = LrSchedule::constant(1e12);
    cfg.checkpoint_every = 1;
    let out = tempfile::tempdir().unwrap();
    let err = fit(cfg, FitOptions::new(out.path())).unwrap_err();
    let Error::NonFiniteLoss { step, .. } = err else {
        panic!("expected a non-finite loss, got {err}");
    };
    assert!(step >= 1, "the first step's loss is finite");
    let ck = Checkpoint::read(&out.path().join(checkpoint::LATEST)).unwrap();
    assert_eq!(ck.progress.global_step, step);
}

#[test]
fn data_the_model_cannot_take_is_refused_up_front() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 32, 10, 3);
    let mut cfg = config(data.path());
    cfg.model.input.height = 32;
    cfg.model.input.width = 32;
    let out = tempfile::tempdir().unwrap();
    let err = fit(cfg, FitOptions::new(out.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1×32×32") && err.contains("1×28×28"), "{err}");

    let missing = tempfile::tempdir().unwrap();
    let cfg = config(missing.path());
    let err = fit(cfg, FitOptions::new(out.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn the_epoch_callback_can_stop_a_run() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 64, 20, 4);
    let mut cfg = config(data.path());
    cfg.epochs = 5;
    let out = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let mut cb = |m: &trainer::EpochMetrics| {
        seen.push(m.epoch);
        if m.epoch == 1 {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let mut opts = FitOptions::new(out.path());
    opts.on_epoch = Some(&mut cb);
    let r = fit(cfg, opts).unwrap();
    assert_eq!(r.outcome, Outcome::Stopped);
    assert_eq!(seen, vec![0, 1]);
}

/// The child side of [`a_killed_process_loses_only_the_work_since_the_last_checkpoint`].
fn run_child_if_asked() -> bool {
    let (Ok(data), Ok(out)) = (
        std::env::var("CONVRNN_TEST_CHILD_DATA"),
        std::env::var("CONVRNN_TEST_CHILD_OUT"),
    ) else {
        return false;
    };
    let mut cfg = config(Path::new(&data));
    cfg.epochs = 4;
    cfg.checkpoint_every = 2;
    let _ = fit(cfg, FitOptions::new(out));
    true
}

#[test]
fn a_killed_process_loses_only_the_work_since_the_last_checkpoint() {
    if run_child_if_asked() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 160, 40, 5);
    let mut cfg = config(data.path());
    cfg.epochs = 4;
    cfg.checkpoint_every = 2;
    let reference = tempfile::tempdir().unwrap();
    let uninterrupted = fit(cfg.clone(), FitOptions::new(reference.path())).unwrap();

    let out = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_loses_only_the_work_since_the_last_checkpoint",
            "--nocapture",
        ])
        .env("CONVRNN_TEST_CHILD_DATA", data.path())
        .env("CONVRNN_TEST_CHILD_OUT", out.path())
        .spawn()
        .unwrap();
    let latest = out.path().join(checkpoint::LATEST);
    let t0 = std::time::Instant::now();
    while !latest.exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = Checkpoint::read(&latest).unwrap().progress.global_step;
    assert!(
        at_kill < uninterrupted.steps,
        "the child finished before the kill"
    );

    let mut opts = FitOptions::new(out.path());
    opts.resume = true;
    let resumed = fit(cfg, opts).unwrap();
    assert_eq!(resumed.outcome, Outcome::Finished);
    assert_metrics_equal(&resumed.metrics, &uninterrupted.metrics);
}

/// SPEC §9 data, when installed: a tiny model learns real Fashion-MNIST in a few dozen steps.
#[test]
fn learns_real_fashion_mnist_when_installed() {
    if datasets::Locator::from_env(None).fashion_mnist().is_err() {
        eprintln!("skipped: Fashion-MNIST is not installed (cargo xtask doctor --install)");
        return;
    }
    let mut cfg = config(Path::new("."));
    cfg.data = DataSpec::FashionMnist { dir: None };
    cfg.epochs = 1;
    cfg.batch_size = 32;
    cfg.train_limit = Some(1280);
    cfg.eval_limit = Some(500);
    let out = tempfile::tempdir().unwrap();
    let r = fit(cfg, FitOptions::new(out.path())).unwrap();
    let m = r.last().unwrap();
    assert_eq!(r.steps, 40);
    assert!(m.val_top1 > 0.45, "10 classes, chance 0.1: {m:?}");
}
