//! Fault injection (docs/RELIABILITY.md): processes killed with SIGKILL at random points of
//! training and of a cache write, then resumed and compared with the uninterrupted result (a
//! search's workers: `search/tests/faults.rs`); truncated and bit-flipped checkpoints and caches;
//! a file-size limit (a full disk) during a checkpoint write. Several seeds each, tiny models and
//! data: about a minute on 2 cores.
//!
//! The processes killed are this test binary itself, re-run on `fault_child` with
//! `CONVRNN_FAULT_CHILD` naming what to do; without that variable `fault_child` does nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_metrics_equal, config, write_squares};
use std::path::{Path, PathBuf};
use tensor::Rng;
use trainer::checkpoint::{self, Checkpoint};
use trainer::{fit, FitOptions, Outcome, TrainConfig};

use fault_inject::{child, child_role, duration_of, kill_after, under_shell};

/// The run every training fault is injected into: a checkpoint after every step, so that kills
/// land inside checkpoint writes as well as between them.
fn run_config(data: &Path) -> TrainConfig {
    let mut c = config(data);
    c.checkpoint_every = 1;
    c
}

fn clutter_config() -> datasets::ClutterConfig {
    datasets::ClutterConfig::new(400, 5)
}

/// The child side: `train DATA OUT` or `cache DATA CACHE`.
#[test]
fn fault_child() {
    let Some(role) = child_role() else {
        return;
    };
    match role.name() {
        "train" => {
            let mut opts = FitOptions::new(role.path("FAULT_OUT"));
            opts.resume = role.flag("FAULT_RESUME");
            let r = fit(run_config(&role.path("FAULT_DATA")), opts);
            // The exit code tells the parent how the run ended (a full disk must be an error).
            std::process::exit(if r.is_ok() { 0 } else { 3 });
        }
        "cache" => {
            let fm = datasets::FashionMnist::load_any_count(&role.path("FAULT_DATA")).unwrap();
            datasets::Clutter::load_or_generate(
                &fm.train,
                &clutter_config(),
                Some(&role.path("FAULT_CACHE")),
            )
            .unwrap();
        }
        other => panic!("unknown fault child role {other}"),
    }
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn training_killed_at_random_points_resumes_to_the_uninterrupted_result() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 160, 40, 21);
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = fit(
        run_config(data.path()),
        FitOptions::new(reference_dir.path()),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let full = duration_of(child(
        "train",
        &[
            ("FAULT_DATA", data.path()),
            ("FAULT_OUT", &scratch.path().join("timing")),
        ],
    ));
    let mut killed_mid_run = 0;
    for seed in 0..5u64 {
        let out = scratch.path().join(format!("run-{seed}"));
        let mut rng = Rng::new(seed);
        // The full run was timed once; on a loaded machine later runs can be faster than that, so a
        // kill that came too late is tried again, sooner, on a fresh directory.
        let mut delay = full.mul_f64(0.1 + 0.85 * rng.uniform());
        let mut killed = false;
        for _ in 0..6 {
            if out.exists() {
                std::fs::remove_dir_all(&out).unwrap();
            }
            killed = kill_after(
                child("train", &[("FAULT_DATA", data.path()), ("FAULT_OUT", &out)]),
                delay,
            );
            if killed {
                break;
            }
            delay /= 2;
        }
        killed_mid_run += usize::from(killed);
        // Resume whatever the kill left: a checkpoint to continue from, or nothing at all.
        let mut opts = FitOptions::new(&out);
        opts.resume = out.join(checkpoint::LATEST).is_file();
        let resumed = fit(run_config(data.path()), opts).unwrap();
        assert_eq!(resumed.outcome, Outcome::Finished, "seed {seed}");
        assert_eq!(resumed.steps, reference.steps, "seed {seed}");
        assert_metrics_equal(&resumed.metrics, &reference.metrics);
        assert_metrics_equal(&trainer::metrics::read(&out).unwrap(), &reference.metrics);
        assert_eq!(temporaries(&out), Vec::<String>::new(), "seed {seed}");
    }
    assert!(
        killed_mid_run >= 3,
        "only {killed_mid_run} kills landed mid-run"
    );
}

#[test]
fn a_cache_write_killed_at_random_points_never_yields_a_bad_set() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 60, 10, 31);
    let fm = datasets::FashionMnist::load_any_count(data.path()).unwrap();
    let (good, _) =
        datasets::Clutter::load_or_generate(&fm.train, &clutter_config(), None).unwrap();
    let caches = tempfile::tempdir().unwrap();
    let full = duration_of(child(
        "cache",
        &[
            ("FAULT_DATA", data.path()),
            ("FAULT_CACHE", &caches.path().join("timing")),
        ],
    ));
    for seed in 0..4u64 {
        let cache = caches.path().join(format!("c{seed}"));
        let delay = full.mul_f64(0.2 + 0.8 * Rng::new(200 + seed).uniform());
        kill_after(
            child(
                "cache",
                &[("FAULT_DATA", data.path()), ("FAULT_CACHE", &cache)],
            ),
            delay,
        );
        let (set, _) =
            datasets::Clutter::load_or_generate(&fm.train, &clutter_config(), Some(&cache))
                .unwrap();
        assert_eq!(set.images, good.images, "seed {seed}");
        // Whatever the cache holds now is the good set.
        let (again, status) =
            datasets::Clutter::load_or_generate(&fm.train, &clutter_config(), Some(&cache))
                .unwrap();
        assert!(
            matches!(status, datasets::CacheStatus::Hit(_)),
            "{status:?}"
        );
        assert_eq!(again.images, good.images);
    }
}

#[test]
fn truncated_and_bit_flipped_caches_are_regenerated_never_used() {
    let data = tempfile::tempdir().unwrap();
    write_squares(data.path(), 30, 10, 41);
    let fm = datasets::FashionMnist::load_any_count(data.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cfg = datasets::ClutterConfig::new(40, 9);
    let (good, _) =
        datasets::Clutter::load_or_generate(&fm.train, &cfg, Some(cache.path())).unwrap();
    let path = datasets::clutter::cache_path(cache.path(), &cfg, &fm.train);
    let clean = std::fs::read(&path).unwrap();
    let mut rng = Rng::new(5);
    for i in 0..40 {
        let mut bytes = clean.clone();
        if i % 4 == 0 {
            bytes.truncate(rng.below(clean.len()));
        } else {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (set, status) =
            datasets::Clutter::load_or_generate(&fm.train, &cfg, Some(cache.path())).unwrap();
        assert!(
            matches!(status, datasets::CacheStatus::Regenerated { .. }),
            "damage {i} was not noticed: {status:?}"
        );
        assert_eq!(set.images, good.images);
    }
}

/// A checkpoint of the test run, its bytes, and what it holds.
fn a_checkpoint(dir: &Path) -> (PathBuf, Vec<u8>, Checkpoint) {
    let data = dir.join("data");
    write_squares(&data, 48, 10, 51);
    let mut cfg = run_config(&data);
    cfg.epochs = 1;
    let out = dir.join("run");
    fit(cfg, FitOptions::new(&out)).unwrap();
    let path = out.join(checkpoint::LATEST);
    let bytes = std::fs::read(&path).unwrap();
    let ck = Checkpoint::read(&path).unwrap();
    (path, bytes, ck)
}

fn same_checkpoint(a: &Checkpoint, b: &Checkpoint) -> bool {
    let weights = |c: &Checkpoint| {
        let m = c.model(tensor::Device::Cpu).unwrap();
        m.params
            .iter()
            .flat_map(|(_, p)| p.to_vec().unwrap())
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    a.config == b.config && a.progress == b.progress && weights(a) == weights(b)
}

#[test]
fn truncated_and_bit_flipped_checkpoints_are_errors_never_other_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (path, clean, good) = a_checkpoint(dir.path());
    let mut rng = Rng::new(61);
    let mut harmless = 0;
    for i in 0..300 {
        let mut bytes = clean.clone();
        if i % 5 == 0 {
            bytes.truncate(rng.below(clean.len()));
        } else {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(&path, &bytes).unwrap();
        match Checkpoint::read(&path) {
            Err(e) => assert!(e.to_string().contains(checkpoint::LATEST), "{e}"),
            // A flip that changes nothing read (the spec's duplicate for other tools, JSON
            // padding) may load, but only as the very same checkpoint.
            Ok(ck) => {
                assert!(
                    same_checkpoint(&ck, &good),
                    "damage {i} loaded as other weights"
                );
                harmless += 1;
            }
        }
    }
    assert!(harmless < 60, "{harmless} of 300 damages went unnoticed");
}

#[test]
fn a_full_disk_during_a_checkpoint_write_leaves_the_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_squares(&data, 160, 40, 71);
    let out = dir.path().join("run");
    // A first run that stops after one step, leaving a checkpoint.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut opts = FitOptions::new(&out);
    opts.stop = Some(stop);
    fit(run_config(&data), opts).unwrap();
    let latest = out.join(checkpoint::LATEST);
    let before = std::fs::read(&latest).unwrap();
    // Resumed under a file-size limit below the checkpoint's size: the next write cannot finish.
    // With SIGXFSZ ignored the write fails with EFBIG and fit reports it; with the default
    // action the process dies inside the write, as on a disk that fills up and a kill.
    let limit_kib = (before.len() / 1024 / 2).max(1);
    for ignore in [true, false] {
        let setup = format!(
            "{}ulimit -f {limit_kib}",
            if ignore { "trap '' XFSZ; " } else { "" }
        );
        let resumed = child(
            "train",
            &[
                ("FAULT_DATA", &data),
                ("FAULT_OUT", &out),
                ("FAULT_RESUME", Path::new("1")),
            ],
        );
        let status = under_shell(&resumed, &setup).status().unwrap();
        assert!(
            !status.success(),
            "the write under the limit cannot succeed"
        );
        if ignore {
            assert_eq!(status.code(), Some(3), "fit returns the error");
        }
        assert_eq!(
            std::fs::read(&latest).unwrap(),
            before,
            "ignore SIGXFSZ: {ignore}"
        );
    }
    // The run goes on from there once there is room, and leaves no temporary files.
    let mut opts = FitOptions::new(&out);
    opts.resume = true;
    let r = fit(run_config(&data), opts).unwrap();
    assert_eq!(r.outcome, Outcome::Finished);
    assert_eq!(temporaries(&out), Vec::<String>::new());
}
