//! Fault injection for a search (docs/RELIABILITY.md): a worker killed with SIGKILL at random
//! points of a study leaves a study that a new worker finishes exactly as the uninterrupted one
//! ended. Several seeds, a synthetic objective: seconds on 2 cores.
//!
//! The processes killed are this test binary itself, re-run on `fault_child` with
//! `CONVRNN_FAULT_CHILD` naming what to do; without that variable `fault_child` does nothing.
#![allow(clippy::unwrap_used)]

use search::convrnn::{ModelStudy, ModelStudyConfig, ModelTrial};
use search::{Pruner, SqliteStorage, Storage, TrialFailure, TrialRecord};
use seeded_rng::Rng;
use std::time::Duration;

use fault_inject::{child, child_role, duration_of, kill_after};

fn search_config() -> ModelStudyConfig {
    let mut c = ModelStudyConfig::default_for("compact_rgc", 11).unwrap();
    c.sampler.n_startup = 2;
    c.pruner = Pruner::None;
    c
}

/// A deterministic stand-in for training: three "epochs" whose value depends on the sampled
/// learning rate, slow enough for kills to land inside trials.
fn objective(t: &mut ModelTrial<'_>, pause: Duration) -> Result<f64, TrialFailure> {
    let (_, hp) = t.model()?;
    let mut v = 0.0;
    for epoch in 1..=3u64 {
        std::thread::sleep(pause);
        v = epoch as f64 / (3.0 * (1.0 + (hp.lr.ln() - 0.003f64.ln()).powi(2)));
        let _ = t.report(epoch, v)?;
    }
    Ok(v)
}

const SEARCH_TRIALS: usize = 5;

/// The child side: `search DB`.
#[test]
fn fault_child() {
    let Some(role) = child_role() else {
        return;
    };
    match role.name() {
        "search" => {
            let storage = std::sync::Arc::new(SqliteStorage::open(role.path("FAULT_DB")).unwrap());
            let study = ModelStudy::open(storage, "faults", search_config()).unwrap();
            study
                .run_worker(SEARCH_TRIALS, &mut |t| {
                    objective(t, Duration::from_millis(15))
                })
                .unwrap();
        }
        other => panic!("unknown fault child role {other}"),
    }
}

/// The trials as a study would report them, without the bookkeeping a kill changes (attempts,
/// owners, times).
fn outcome_of(trials: &[TrialRecord]) -> Vec<(u64, String, String, Option<f64>)> {
    trials
        .iter()
        .map(|t| {
            (
                t.number,
                t.state.as_str().to_string(),
                serde_json::to_string(&t.params).unwrap(),
                t.value,
            )
        })
        .collect()
}

#[test]
fn a_search_worker_killed_at_random_points_leaves_a_study_that_ends_as_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let reference = {
        let storage = std::sync::Arc::new(SqliteStorage::open(dir.path().join("ref.db")).unwrap());
        let study = ModelStudy::open(storage, "faults", search_config()).unwrap();
        study
            .run_worker(SEARCH_TRIALS, &mut |t| objective(t, Duration::ZERO))
            .unwrap();
        outcome_of(&study.trials().unwrap())
    };
    assert_eq!(reference.len(), SEARCH_TRIALS);
    let full = duration_of(child(
        "search",
        &[("FAULT_DB", &dir.path().join("timing.db"))],
    ));
    for seed in 0..3u64 {
        let db = dir.path().join(format!("s{seed}.db"));
        let delay = full.mul_f64(0.1 + 0.8 * Rng::new(100 + seed).uniform());
        kill_after(child("search", &[("FAULT_DB", &db)]), delay);
        // A new worker on the same host sees the dead one's trial, re-queues and re-runs it.
        let storage: std::sync::Arc<dyn Storage> =
            std::sync::Arc::new(SqliteStorage::open(&db).unwrap());
        let study = ModelStudy::open(storage, "faults", search_config()).unwrap();
        study
            .run_worker(SEARCH_TRIALS, &mut |t| objective(t, Duration::ZERO))
            .unwrap();
        assert_eq!(
            outcome_of(&study.trials().unwrap()),
            reference,
            "seed {seed}"
        );
    }
}
