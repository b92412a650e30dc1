//! The search stage of figure 3: a small architecture search over the general-RGC space of the
//! compact backbone (`search`'s default space for `compact_rgc`: every knob of the general RGC
//! in conv2 and conv3, the conv3 → conv2 feedback edge, learning rate and weight decay), sampled
//! by TPE into a SQLite study in the stage's work folder, each trial trained by
//! [`crate::search::train_trial`] (what `cargo xtask search` runs) on the clutter task with a
//! short budget and one seed. Its result is every trial's value and size, the Pareto front, the
//! top k and the median model of the top k (what `cargo xtask search median` writes).
//!
//! An interrupted search continues: the study in `work/` keeps its finished trials, and the
//! next run claims only the missing ones. The trial the killed run was in the middle of is
//! re-run at once with its number and parameters: the study records each running trial's owner
//! (host, pid and the process's start time), and a claim re-queues a trial whose owner on this
//! host is gone without waiting for its heartbeat to go stale (`search::store`).

use super::training::{self, ScaleConfig};
use super::Scale;
use anyhow::{Context, Result};
use search::convrnn::{ModelStudy, ModelStudyConfig};
use search::{Pruner, TrialState};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tensor::Device;
use topology::ModelSpec;
use trainer::{DataSpec, TrainConfig};

/// The hand-designed model whose space is searched.
pub const BASE: &str = "compact_rgc";
/// The figures' name of the median model.
pub const MEDIAN_ID: &str = "search_median";
/// The study's name inside its database.
const STUDY: &str = "figure3";

/// What a scale sets for the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchScale {
    /// Trials in the study.
    pub trials: usize,
    /// Trials drawn at random before TPE takes over.
    pub startup_trials: usize,
    /// Best trials the median model is taken over.
    pub top_k: usize,
    /// Clutter images each trial trains on (one epoch) and is validated on.
    pub train_images: usize,
    pub eval_images: usize,
    /// The seed of the study's sampler and of every trial's training.
    pub seed: u64,
}

impl SearchScale {
    /// Quick searches 6 architectures on 960 images each (60 optimiser steps at the quick batch,
    /// TPE after 3 random ones), so the search costs about two CPU minutes (docs/FIGURES.md);
    /// full searches 40 with a third of an epoch of the full training set each.
    pub fn of(scale: Scale) -> Self {
        match scale {
            Scale::Micro => SearchScale {
                trials: 3,
                startup_trials: 2,
                top_k: 2,
                train_images: 32,
                eval_images: 32,
                seed: 0,
            },
            Scale::Quick => SearchScale {
                trials: 6,
                startup_trials: 3,
                top_k: 3,
                train_images: 960,
                eval_images: 500,
                seed: 0,
            },
            Scale::Full => SearchScale {
                trials: 40,
                startup_trials: 10,
                top_k: 5,
                train_images: 20_000,
                eval_images: 5_000,
                seed: 0,
            },
        }
    }
}

/// The study's configuration: the default space of [`BASE`], TPE with the scale's random
/// start, no pruner (a trial trains one epoch, so there is no earlier report to prune on).
pub fn study_config(s: &SearchScale) -> Result<ModelStudyConfig> {
    let mut c = ModelStudyConfig::default_for(BASE, s.seed)?;
    c.sampler.n_startup = s.startup_trials;
    c.pruner = Pruner::None;
    Ok(c)
}

/// The training every trial gets (the trial sets the model, learning rate and weight decay):
/// the figures' recipe on the search's images, one epoch, one seed.
pub fn trial_template(
    s: &SearchScale,
    scale: &ScaleConfig,
    data_dir: Option<&Path>,
    device: Device,
) -> Result<TrainConfig> {
    let sc = ScaleConfig {
        seeds: vec![s.seed],
        train_images: s.train_images,
        eval_images: s.eval_images,
        epochs: 1,
        ..scale.clone()
    };
    let base = super::models::Candidate {
        id: BASE.into(),
        family: super::models::Family::Recurrent,
        spec: topology::zoo::get_or_err(BASE).map_err(anyhow::Error::msg)?,
    };
    let data: DataSpec = training::data_spec(&sc, data_dir);
    training::train_config(&base, s.seed, &sc, &data, device)
}

/// What makes the search stage: the study's configuration, the trials, k, and the trials'
/// training (as a training stage's key: without device and data folder, with the data's
/// fingerprint).
pub fn stage_config(
    s: &SearchScale,
    study: &ModelStudyConfig,
    template: &TrainConfig,
    data_fingerprint: &str,
) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "study": serde_json::to_value(study)?,
        "trials": s.trials,
        "top_k": s.top_k,
        "trial_training": training::stage_config(template, data_fingerprint),
    }))
}

/// One trial of the study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    pub number: u64,
    /// `complete`, `pruned`, `failed`, ...
    pub state: String,
    /// Validation top-1 (a complete trial's final value, a pruned one's last report).
    pub value: Option<f64>,
    pub params: Option<u64>,
}

/// The median model of the top k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Median {
    pub spec: ModelSpec,
    /// The median learning rate and weight decay of the top k (reported; the figure trains the
    /// median model with the figures' recipe, as `cargo xtask train --spec` would).
    pub lr: f64,
    pub weight_decay: f64,
    /// The trials it summarises, best first.
    pub trials: Vec<u64>,
}

/// The search stage's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Searched {
    pub base: String,
    pub trials: Vec<TrialRow>,
    /// Numbers of the trials on the accuracy-vs-parameters Pareto front, smallest first.
    pub pareto: Vec<u64>,
    /// Numbers of the top k complete trials, best first.
    pub top: Vec<u64>,
    /// `Err(why)` when no median model could be made (no complete trial).
    pub median: std::result::Result<Median, String>,
    pub wall_seconds: f64,
    pub cpu_seconds: Option<f64>,
}

/// Runs (or continues) the study in `work` and summarises it.
pub fn run(
    s: &SearchScale,
    config: ModelStudyConfig,
    template: &TrainConfig,
    work: &Path,
) -> Result<Searched> {
    let (wall, cpu) = (std::time::Instant::now(), training::cpu_seconds());
    let db = work.join("study.db");
    let storage = search::storage_from_url(&format!("sqlite://{}", db.display()))?;
    let study = ModelStudy::open(storage, STUDY, config)
        .with_context(|| format!("opening the study in {}", db.display()))?;
    let trials_dir = work.join("trials");
    study.run_worker(s.trials, &mut |t| {
        crate::search::train_trial(t, template, &trials_dir)
    })?;
    let report = study.report(s.top_k)?;
    let median = study
        .median(s.top_k)
        .map(|m| Median {
            spec: m.spec,
            lr: m.hparams.lr,
            weight_decay: m.hparams.weight_decay,
            trials: m.trials,
        })
        .map_err(|e| e.to_string());
    Ok(Searched {
        base: report.base,
        trials: report
            .trials
            .iter()
            .map(|t| TrialRow {
                number: t.number,
                state: t.state.as_str().to_string(),
                value: t.value,
                params: t.params_count,
            })
            .collect(),
        pareto: report.pareto_front.iter().map(|p| p.number).collect(),
        top: report.top,
        median,
        wall_seconds: wall.elapsed().as_secs_f64(),
        cpu_seconds: cpu.zip(training::cpu_seconds()).map(|(a, b)| b - a),
    })
}

/// Whether a trial row is a complete one.
pub fn complete(t: &TrialRow) -> bool {
    complete_state(&t.state)
}

/// Whether a trial's state (as [`TrialRow::state`] spells it) is complete.
pub fn complete_state(state: &str) -> bool {
    state == TrialState::Complete.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_key_follows_the_search_configuration_only() {
        let scale = Scale::Micro.config();
        let s = SearchScale::of(Scale::Micro);
        let t = trial_template(&s, &scale, Some(Path::new("/data")), Device::Cpu).unwrap();
        assert_eq!(t.epochs, 1);
        assert_eq!(t.seed, s.seed);
        let c = study_config(&s).unwrap();
        assert_eq!(c.pruner, Pruner::None);
        assert_eq!(c.sampler.n_startup, s.startup_trials);
        let key = |s: &SearchScale, t: &TrainConfig| {
            super::super::cache::StageKey::new(
                "search",
                &stage_config(s, &study_config(s).unwrap(), t, "fp").unwrap(),
                &[],
            )
            .unwrap()
            .id()
        };
        // Where the data is read from and the device do not change the search.
        let moved = trial_template(&s, &scale, None, Device::Cuda(0)).unwrap();
        assert_eq!(key(&s, &t), key(&s, &moved));
        let more = SearchScale {
            trials: s.trials + 1,
            ..s.clone()
        };
        assert_ne!(key(&s, &t), key(&more, &t));
        let other_k = SearchScale {
            top_k: 1,
            ..s.clone()
        };
        assert_ne!(key(&s, &t), key(&other_k, &t));
        // The scales grow.
        let (m, q, f) = (
            SearchScale::of(Scale::Micro),
            SearchScale::of(Scale::Quick),
            SearchScale::of(Scale::Full),
        );
        assert!(m.trials < q.trials && q.trials < f.trials);
        assert!(q.top_k <= q.trials && f.top_k <= f.trials && m.top_k <= m.trials);
    }

    #[test]
    fn a_search_killed_mid_trial_reruns_that_trial_at_once() {
        let d = tempfile::tempdir().unwrap();
        let fm = d.path().join("fm");
        super::super::given::tests::tiny_fashion(&fm);
        let s = SearchScale::of(Scale::Micro);
        let config = study_config(&s).unwrap();
        let mut template = trial_template(&s, &Scale::Micro.config(), None, Device::Cpu).unwrap();
        template.data = DataSpec::FashionMnist { dir: Some(fm) };
        template.batch_size = 2;
        let work = d.path().join("work");
        // The killed run: a process of this host that claimed trial 0 and is gone. Its
        // heartbeat is fresh, so only its owner's death can free the trial before the default
        // timeout (ten minutes).
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let me = search::store::WorkerInfo::current();
        let killed = search::store::WorkerInfo {
            id: "killed".into(),
            host: me.host.clone(),
            pid: gone.id(),
            start_ticks: 1,
        };
        let db = work.join("study.db");
        let storage = search::storage_from_url(&format!("sqlite://{}", db.display())).unwrap();
        let study = ModelStudy::open(storage.clone(), STUDY, config.clone()).unwrap();
        let info = storage.find_study(STUDY).unwrap().unwrap();
        let claimed = storage
            .claim(
                info.id,
                s.trials,
                &killed,
                &search::StalePolicy::default(),
                &mut |h, n| Ok(study.sample_params(h, n)),
            )
            .unwrap()
            .unwrap();
        assert_eq!(claimed.number, 0);
        let searched = run(&s, config, &template, &work).unwrap();
        let states: Vec<&str> = searched.trials.iter().map(|t| t.state.as_str()).collect();
        assert_eq!(states, vec!["complete"; s.trials], "{searched:?}");
        let t0 = &study.trials().unwrap()[0];
        assert_eq!(t0.attempts, 2, "{t0:?}");
        assert_eq!(t0.params, claimed.params, "re-run with its parameters");
        assert!(work.join("trials").join("trial-0000-attempt-2").is_dir());
    }
}
