#![allow(clippy::unwrap_used)]
//! End-to-end training runs on tiny data: learning, exact resume, checkpoints, faults.

mod common;

use common::{assert_metrics_equal, config, write_squares};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tensor::Device;
use trainer::checkpoint::{self, Checkpoint};
use trainer::{
    fit, Control, DataSpec, Error, FitOptions, FitReport, LrSchedule, OptimizerSpec, Outcome,
    TrainConfig,
};

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

fn diverging(data: &Path, checkpoint_every: u64) -> TrainConfig {
    let mut cfg = config(data);
    cfg.optimizer = OptimizerSpec::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    cfg.clip = trainer::GradClip::None;
    cfg.lr = LrSchedule::constant(1e12);
    cfg.checkpoint_every = checkpoint_every;
    cfg
}

/// The step of the checkpoint a diverged run says it kept, checking that the message is true.
fn kept_by(err: &Error, out: &Path) -> Option<u64> {
    let kept = match err {
        Error::NonFiniteLoss { kept, .. } | Error::NonFiniteWeights { kept, .. } => *kept,
        other => panic!("expected a divergence error, got {other}"),
    };
    let msg = err.to_string();
    let latest = out.join(checkpoint::LATEST);
    match kept {
        Some(step) => {
            assert!(
                msg.contains(&format!("last good checkpoint (step {step}) was kept")),
                "{msg}"
            );
            assert_eq!(
                Checkpoint::read(&latest).unwrap().progress.global_step,
                step
            );
        }
        None => {
            assert!(msg.contains("none was kept"), "{msg}");
            assert!(!latest.exists(), "{msg}");
        }
    }
    kept
}

#[test]
fn a_diverged_run_keeps_only_a_finite_checkpoint_and_says_so_truly() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 96, 20, 2);
    let out = tempfile::tempdir().unwrap();
    let err = fit(diverging(data.path(), 1), FitOptions::new(out.path())).unwrap_err();
    if kept_by(&err, out.path()).is_some() {
        let ck = Checkpoint::read(&out.path().join(checkpoint::LATEST)).unwrap();
        let model = ck.model(Device::Cpu).unwrap();
        for (name, p) in model.params.iter() {
            assert!(
                p.to_vec().unwrap().iter().all(|x| x.is_finite()),
                "{name} is not finite"
            );
        }
        let ev = trainer::evaluate_checkpoint(out.path(), None, None, Device::Cpu).unwrap();
        assert!(ev.top1 < 0.9, "a diverged model cannot score {}", ev.top1);
    }

    // Diverging before the first checkpoint: nothing was kept, and the message says so.
    let out = tempfile::tempdir().unwrap();
    let err = fit(diverging(data.path(), 1000), FitOptions::new(out.path())).unwrap_err();
    assert_eq!(kept_by(&err, out.path()), None);
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused_not_scored() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 32, 20, 2);
    let mut cfg = config(data.path());
    cfg.epochs = 1;
    let out = tempfile::tempdir().unwrap();
    fit(cfg.clone(), FitOptions::new(out.path())).unwrap();
    // What an older build could leave behind: weights that overflowed.
    let ck = Checkpoint::read(&out.path().join(checkpoint::LATEST)).unwrap();
    let model = ck.model(Device::Cpu).unwrap();
    for (_, p) in model.params.iter() {
        let nan = tensor::Tensor::from_vec(vec![f32::NAN; p.elem_count()], p.dims(), Device::Cpu)
            .unwrap();
        p.assign(&nan).unwrap();
    }
    let opt = trainer::Optimizer::new(cfg.optimizer.clone()).unwrap();
    let bad = out.path().join("diverged.safetensors");
    checkpoint::save(&bad, &ck.config, &ck.progress, &model, &opt).unwrap();
    // Scored, every image would be a miss (NaN logits rank nowhere): a 0 % that reads as a
    // result. The weights are refused instead, naming the first parameter.
    let err = trainer::evaluate_checkpoint(&bad, None, None, Device::Cpu)
        .unwrap_err()
        .to_string();
    let (first, _) = model.params.iter().next().unwrap();
    assert!(
        err.contains(&format!("parameter `{first}` holds NaN")) && err.contains("diverged"),
        "{err}"
    );
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

/// Two runs writing into one folder interleaved their logs and checkpoints, and each deleted the
/// other's temporary files mid-write.
#[test]
fn a_folder_another_run_is_training_in_is_refused() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 32, 10, 3);
    let out = tempfile::tempdir().unwrap();
    // What the other run holds while it trains (a second open of the lock file conflicts with
    // it as another process's would).
    let other = trainer::run_lock::acquire(out.path()).unwrap().unwrap();
    let stale = out.path().join(".checkpoint-latest.safetensors.tmp-1-0");
    std::fs::write(&stale, "the other run's write in progress").unwrap();
    let err = fit(config(data.path()), FitOptions::new(out.path())).unwrap_err();
    assert!(matches!(err, Error::RunInUse { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another training run"),
        "{err}"
    );
    assert!(
        stale.is_file(),
        "the other run's temporary file was removed"
    );
    assert!(!out.path().join("config.json").exists());
    drop(other);
    std::fs::remove_file(&stale).unwrap();
    fit(config(data.path()), FitOptions::new(out.path())).unwrap();
    // Released when the run returned: it resumes.
    let mut opts = FitOptions::new(out.path());
    opts.resume = true;
    let mut cfg = config(data.path());
    cfg.epochs += 1;
    fit(cfg, opts).unwrap();
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

/// The parameters of a run's latest checkpoint, flattened.
fn latest_weights(out: &Path) -> Vec<f32> {
    let ck = Checkpoint::read(&out.join(checkpoint::LATEST)).unwrap();
    let model = ck.model(Device::Cpu).unwrap();
    model
        .params
        .iter()
        .flat_map(|(_, p)| p.to_vec().unwrap())
        .collect()
}

fn resume(cfg: &TrainConfig, out: &Path, allow_changes: bool) -> trainer::Result<FitReport> {
    let mut opts = FitOptions::new(out);
    opts.resume = true;
    opts.allow_changes = allow_changes;
    fit(cfg.clone(), opts)
}

#[test]
fn a_raised_budget_extends_a_run_and_contradicting_settings_are_refused() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 96, 20, 6);
    let mut cfg = config(data.path());
    cfg.epochs = 1;
    cfg.max_steps = Some(4); // 6 batches an epoch: stops inside epoch 0
    let out = tempfile::tempdir().unwrap();
    let first = fit(cfg.clone(), FitOptions::new(out.path())).unwrap();
    assert_eq!((first.outcome, first.steps), (Outcome::MaxSteps, 4));
    let at_4 = latest_weights(out.path());

    // The same request again: nothing left to do.
    let again = resume(&cfg, out.path(), false).unwrap();
    assert_eq!((again.outcome, again.steps), (Outcome::MaxSteps, 4));

    // Raising the budget trains more: the cut epoch is finished, then the next one.
    let mut more = cfg.clone();
    more.epochs = 2;
    more.max_steps = Some(9);
    let extended = resume(&more, out.path(), false).unwrap();
    assert_eq!((extended.outcome, extended.steps), (Outcome::MaxSteps, 9));
    assert_eq!(extended.metrics.len(), 2);
    assert!(extended.metrics[0].complete && extended.metrics[0].step == 6);
    assert_ne!(latest_weights(out.path()), at_4, "the extension trained");
    let stored: TrainConfig =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!((stored.epochs, stored.max_steps), (2, Some(9)));

    // Budget aside, the request must match the run; each contradiction is named.
    let mut other = more.clone();
    other.batch_size = 8;
    other.lr.base = 0.05;
    other.seed = 99;
    let err = resume(&other, out.path(), false).unwrap_err();
    let Error::ResumeConflict { changes, .. } = &err else {
        panic!("expected a conflict, got {err}");
    };
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["batch_size", "lr.base", "seed"], "{err}");
    assert!(err.to_string().contains("--allow-changes"), "{err}");
    assert_eq!(latest_weights(out.path()).len(), at_4.len());

    // Deliberately allowed, the new settings are taken.
    let mut changed = more.clone();
    changed.max_steps = Some(11);
    changed.lr.base = 1e-3;
    let r = resume(&changed, out.path(), true).unwrap();
    assert_eq!(r.steps, 11);
    let stored: TrainConfig =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(stored.lr.base, 1e-3);

    // --resume where there is no run is an error, and creates nothing.
    let empty = tempfile::tempdir().unwrap();
    let target = empty.path().join("never");
    let err = resume(&cfg, &target, false).unwrap_err();
    assert!(matches!(err, Error::NothingToResume { .. }), "{err}");
    assert!(err.to_string().contains("holds no run to resume"), "{err}");
    assert!(!target.exists());
}

#[test]
fn failures_before_training_leave_no_run_behind() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 32, 10, 7);
    // A spec that validates but cannot be built (a pooling window larger than its map).
    let mut cfg = config(data.path());
    let pool = cfg
        .model
        .areas
        .iter_mut()
        .find_map(|a| a.pool.as_mut())
        .expect("the compact model pools");
    pool.kernel = 1000;
    cfg.validate().unwrap();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    let err = fit(cfg, FitOptions::new(&out)).unwrap_err().to_string();
    assert!(err.contains("pooling"), "{err}");
    assert!(
        !out.exists(),
        "no spec.json/config.json for a model that never built"
    );

    // --out naming a file.
    let file = root.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    let err = fit(config(data.path()), FitOptions::new(&file))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a file, not a directory"), "{err}");
}

#[test]
fn one_class_data_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let n = 32;
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let labels = vec![4u8; n];
    datasets::idx::write_fashion_mnist_like(data.path(), (&pixels, &labels), (&pixels, &labels))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = fit(config(data.path()), FitOptions::new(out.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only 1 class"), "{err}");
}

/// Trains on a tiny generated JPEG tree, once read as an ImageFolder and once as shards made from
/// it: both runs finish, and a shard run stopped after each of its first two batches and resumed
/// ends with the uninterrupted run's metrics (the shard loader replays its order exactly).
#[test]
fn trains_on_jpeg_folders_and_shards_and_resumes_a_shard_run_exactly() {
    let data = tempfile::tempdir().unwrap();
    datasets::synthetic::write_splits(
        &data.path().join("folder"),
        &datasets::synthetic::SyntheticConfig::tiny(3, 8, 4),
    )
    .unwrap();
    for split in ["train", "val"] {
        datasets::folder_to_shards::write_shards(
            &data.path().join("folder").join(split),
            &data.path().join("shards").join(split),
            &datasets::folder_to_shards::ShardOptions {
                samples_per_shard: 5,
                ..Default::default()
            },
            &mut |_, _| {},
        )
        .unwrap();
    }
    let mut cfg = TrainConfig::for_model(
        topology::zoo::tiny_colour(3, 3),
        DataSpec::Folder {
            root: data.path().join("folder"),
        },
    );
    cfg.epochs = 2;
    cfg.batch_size = 6;
    cfg.eval_batch_size = 8;
    cfg.seed = 3;
    let folder_run = tempfile::tempdir().unwrap();
    let r = fit(cfg.clone(), FitOptions::new(folder_run.path())).unwrap();
    assert_eq!((r.outcome, r.steps), (Outcome::Finished, 8));

    cfg.data = DataSpec::Shards {
        root: data.path().join("shards"),
        shuffle_buffer: 7,
    };
    let full = tempfile::tempdir().unwrap();
    let uninterrupted = fit(cfg.clone(), FitOptions::new(full.path())).unwrap();
    assert_eq!(
        (uninterrupted.outcome, uninterrupted.steps),
        (Outcome::Finished, 8)
    );
    assert!(uninterrupted
        .metrics
        .iter()
        .all(|m| m.train_loss.is_finite()));
    let parts = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    for expected in [1, 2] {
        let mut opts = FitOptions::new(parts.path());
        opts.stop = Some(Arc::clone(&stop));
        opts.resume = expected > 1;
        let r = fit(cfg.clone(), opts).unwrap();
        assert_eq!((r.outcome, r.steps), (Outcome::Interrupted, expected));
    }
    let mut opts = FitOptions::new(parts.path());
    opts.resume = true;
    let resumed = fit(cfg, opts).unwrap();
    assert_metrics_equal(&resumed.metrics, &uninterrupted.metrics);
}

/// `steps.jsonl` gets a record every `log_every` steps, with finite values; an interrupted and
/// resumed run ends with the same steps logged once each.
#[test]
fn step_records_are_written_every_n_steps_and_not_duplicated_by_a_resume() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 64, 16, 2);
    let mut cfg = config(data.path());
    cfg.epochs = 1;
    let out = tempfile::tempdir().unwrap();
    let mut opts = FitOptions::new(out.path());
    opts.log_every = 2;
    let r = fit(cfg.clone(), opts).unwrap();
    assert_eq!(r.steps, 4);
    let records = trainer::steps::read(out.path()).unwrap();
    assert_eq!(records.iter().map(|r| r.step).collect::<Vec<_>>(), [2, 4]);
    for rec in &records {
        assert!(rec.loss.is_finite() && rec.grad_norm > 0.0 && rec.img_per_s > 0.0);
        assert!((0.0..=1.0).contains(&rec.data_wait) && (0.0..=1.0).contains(&rec.top1));
        assert!(rec.lr > 0.0);
    }
    let svg = std::fs::read_to_string(out.path().join("plots/training.svg")).unwrap();
    assert!(svg.contains("optimiser step"));

    // Stopped after step 1 and again after step 3 (checkpoint_every 3 in `config`): the record
    // of step 2 written after the first resume's checkpoint is replayed, not duplicated.
    let parts = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    let mut opts = FitOptions::new(parts.path());
    opts.log_every = 2;
    opts.stop = Some(Arc::clone(&stop));
    fit(cfg.clone(), opts).unwrap();
    let mut opts = FitOptions::new(parts.path());
    opts.log_every = 2;
    opts.resume = true;
    fit(cfg, opts).unwrap();
    let steps: Vec<u64> = trainer::steps::read(parts.path())
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, [2, 4]);
}

/// Recurrent cells drive states and gradients into denormal floats; without flush-to-zero a
/// quick-scale LSTM run slowed 3–5× late in training. Training must set it on the thread that
/// calls it (and so on every thread that thread starts) whatever that thread had.
#[test]
fn training_flushes_denormals_on_the_calling_thread_and_rayon_s_pool() {
    use tensor::cpu::denormals::{self, Denormals};
    if std::env::var_os(denormals::DENORMALS_ENV).is_some() {
        return; // The caller chose a mode; the default is what is tested here.
    }
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 32, 16, 3);
    let mut cfg = config(data.path());
    cfg.max_steps = Some(1);
    let out = tempfile::tempdir().unwrap();
    let out_path = out.path().to_path_buf();
    let (caller, pool) = std::thread::spawn(move || {
        denormals::set_this_thread(Denormals::Keep);
        fit(cfg, FitOptions::new(&out_path)).unwrap();
        let pool = rayon::broadcast(|_| denormals::this_thread_flushes());
        (denormals::this_thread_flushes(), pool)
    })
    .join()
    .unwrap();
    assert!(caller, "fit left the calling thread with gradual underflow");
    assert!(
        pool.iter().all(|&f| f),
        "rayon threads not flushing: {pool:?}"
    );
}

/// A class folder renamed after training permutes what the labels mean (classes are the sorted
/// folder names); resuming or evaluating the run used to go on with the permuted labels.
#[test]
fn a_run_refuses_data_whose_classes_changed_since_it_began() {
    let data = tempfile::tempdir().unwrap();
    datasets::synthetic::write_splits(
        data.path(),
        &datasets::synthetic::SyntheticConfig::tiny(3, 4, 1),
    )
    .unwrap();
    let mut cfg = TrainConfig::for_model(
        topology::zoo::tiny_colour(3, 3),
        DataSpec::Folder {
            root: data.path().to_path_buf(),
        },
    );
    cfg.batch_size = 6;
    cfg.eval_batch_size = 6;
    let out = tempfile::tempdir().unwrap();
    fit(cfg.clone(), FitOptions::new(out.path())).unwrap();
    trainer::evaluate_checkpoint(out.path(), None, None, Device::Cpu).unwrap();
    for split in ["train", "val"] {
        let dir = data.path().join(split);
        std::fs::rename(dir.join("class_000"), dir.join("class_999")).unwrap();
    }
    let err = trainer::evaluate_checkpoint(out.path(), None, None, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("label 0 stood for `class_000` and now stands for `class_001`"),
        "{err}"
    );
    cfg.epochs = 2;
    let err = resume(&cfg, out.path(), false).unwrap_err().to_string();
    assert!(err.contains("not those the run"), "{err}");
}
