//! A study: a search configuration bound to a storage, and the worker loop that claims trials,
//! runs the objective on them and records the outcome.

use crate::params::Params;
use crate::pruner::Pruner;
use crate::space::Space;
use crate::store::{
    ClaimedTrial, Direction, StalePolicy, Storage, StudyInfo, TrialRecord, TrialState, WorkerInfo,
};
use crate::tpe::{Observation, TpeConfig, TpeSampler};
use crate::SearchError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Everything that defines a study; stored with it (as JSON), so that later workers and
/// `report`/`median` need only the study's name. The space's fields sit beside the others in the
/// JSON (`{"space": …, "base": …, "direction": …}` for a ConvRNN study).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig<S> {
    /// What a trial samples.
    #[serde(flatten)]
    pub space: S,
    /// Whether the objective is maximised (the default) or minimised.
    #[serde(default)]
    pub direction: Direction,
    /// Settings of the TPE sampler.
    #[serde(default)]
    pub sampler: TpeConfig,
    /// Which trials are stopped early (the median rule by default).
    #[serde(default)]
    pub pruner: Pruner,
    /// Makes the sampled parameters of trial `n` a function of the seed and of the trials before
    /// it, so a study run by one worker is reproducible.
    #[serde(default)]
    pub seed: u64,
}

impl<S> StudyConfig<S> {
    /// A study of `space` that maximises, with TPE, the median pruner and seed 0.
    pub fn new(space: S) -> StudyConfig<S> {
        StudyConfig {
            space,
            direction: Direction::Maximize,
            sampler: TpeConfig::default(),
            pruner: Pruner::default(),
            seed: 0,
        }
    }
}

/// Why a trial did not produce a value.
#[derive(Clone, Debug, PartialEq)]
pub enum TrialFailure {
    /// The pruner said stop (after a [`TrialHandle::report`] returned prune).
    Pruned,
    /// It could not run: non-finite loss, invalid architecture, out of memory, … The study goes on.
    Failed(String),
}

impl From<SearchError> for TrialFailure {
    fn from(e: SearchError) -> Self {
        // The whole chain: the study records the reason as text.
        TrialFailure::Failed(crate::store::error_chain(&e))
    }
}

/// The pruner's verdict after a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct ShouldPrune(pub bool);

/// What one call of [`Study::run_worker`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Trials that finished with a value.
    pub complete: usize,
    /// Trials the pruner stopped.
    pub pruned: usize,
    /// Trials that failed: the objective returned [`TrialFailure::Failed`] or a non-finite value,
    /// or panicked.
    pub failed: usize,
    /// Trials taken over by another worker while this one ran them (presumed dead); their results
    /// were discarded.
    pub lost: usize,
}

/// A study opened on a storage.
pub struct Study<S> {
    storage: Arc<dyn Storage>,
    info: StudyInfo,
    config: StudyConfig<S>,
    worker: WorkerInfo,
    policy: StalePolicy,
}

impl<S> std::fmt::Debug for Study<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Study({}, id {})", self.info.name, self.info.id)
    }
}

/// splitmix64 of the seed and the trial number, so neighbouring trials get unrelated streams.
fn trial_seed(seed: u64, number: u64) -> u64 {
    let mut z = seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<S> Study<S> {
    /// The study `info` on `storage`, as this process's worker with the default stale policy.
    fn bound(storage: Arc<dyn Storage>, info: StudyInfo, config: StudyConfig<S>) -> Study<S> {
        Study {
            storage,
            info,
            config,
            worker: WorkerInfo::current(),
            policy: StalePolicy::default(),
        }
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }
    /// The configuration the study was created with (as stored).
    pub fn config(&self) -> &StudyConfig<S> {
        &self.config
    }
    /// How this worker decides that other workers died, and how often it heartbeats.
    pub fn stale_policy(&self) -> StalePolicy {
        self.policy
    }
    /// How this worker decides that other workers died, and how often it heartbeats.
    pub fn set_stale_policy(&mut self, policy: StalePolicy) {
        self.policy = policy;
    }
    /// This process as a worker (the owner name written into the trials it claims).
    pub fn worker(&self) -> &WorkerInfo {
        &self.worker
    }

    /// Every trial of the study, by number.
    ///
    /// # Errors
    /// A failure of the database ([`SearchError::Sqlite`], [`SearchError::Postgres`]) or a row it
    /// cannot read.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, SearchError> {
        self.storage.trials(self.info.id)
    }
}

impl<S: Space + Serialize + DeserializeOwned> Study<S> {
    /// Creates the study `name` with `config`, or joins it if it exists with the same config.
    pub fn open(
        storage: Arc<dyn Storage>,
        name: &str,
        config: StudyConfig<S>,
    ) -> Result<Study<S>, SearchError> {
        config.space.check()?;
        let json = serde_json::to_string(&config)
            .map_err(SearchError::json("serialising the study config"))?;
        let info = storage.open_study(name, config.direction, &json)?;
        Ok(Study::bound(storage, info, config))
    }

    /// Joins the existing study `name` with the config stored with it.
    pub fn load(storage: Arc<dyn Storage>, name: &str) -> Result<Study<S>, SearchError> {
        let info = storage
            .find_study(name)?
            .ok_or_else(|| SearchError::Storage(format!("no study called `{name}`")))?;
        let config: StudyConfig<S> = serde_json::from_str(&info.config).map_err(
            SearchError::json(format!("study `{name}` has an unreadable config")),
        )?;
        Ok(Study::bound(storage, info, config))
    }

    /// Parameters for trial `number` given the trials so far: TPE over complete and pruned trials.
    pub fn sample_params(&self, history: &[TrialRecord], number: u64) -> Params {
        let obs: Vec<Observation> = history
            .iter()
            .filter_map(|t| match t.state {
                TrialState::Complete => t.value.map(|v| Observation {
                    params: t.params.clone(),
                    score: Some(self.config.direction.score(v)),
                }),
                TrialState::Pruned => Some(Observation {
                    params: t.params.clone(),
                    score: None,
                }),
                _ => None,
            })
            .collect();
        let mut sampler = TpeSampler::new(
            self.config.sampler,
            trial_seed(self.config.seed, number),
            &obs,
        );
        self.config.space.sample(&mut sampler)
    }

    /// Claims and runs trials until the study holds `n_trials_total` trials and none is waiting.
    /// Failed trials are recorded with their reason and do not stop the loop; only storage errors
    /// do. A panic inside the objective fails that trial.
    pub fn run_worker(
        &self,
        n_trials_total: usize,
        objective: &mut dyn FnMut(&mut TrialHandle<'_, S>) -> Result<f64, TrialFailure>,
    ) -> Result<WorkerSummary, SearchError> {
        let mut summary = WorkerSummary::default();
        loop {
            let claimed = self.storage.claim(
                self.info.id,
                n_trials_total,
                &self.worker,
                &self.policy,
                &mut |history, number| Ok(self.sample_params(history, number)),
            )?;
            let Some(trial) = claimed else {
                return Ok(summary);
            };
            let (state, value, reason) = self.run_one(&trial, objective);
            let owned =
                self.storage
                    .finish(trial.id, &self.worker.id, state, value, reason.as_deref())?;
            match (owned, state) {
                (false, _) => summary.lost += 1,
                (true, TrialState::Complete) => summary.complete += 1,
                (true, TrialState::Pruned) => summary.pruned += 1,
                (true, _) => summary.failed += 1,
            }
        }
    }

    fn run_one(
        &self,
        trial: &ClaimedTrial,
        objective: &mut dyn FnMut(&mut TrialHandle<'_, S>) -> Result<f64, TrialFailure>,
    ) -> (TrialState, Option<f64>, Option<String>) {
        let mut handle = TrialHandle {
            study: self,
            trial: trial.clone(),
            intermediate: Default::default(),
        };
        let interval = Duration::from_secs_f64(self.policy.heartbeat_interval_s.max(0.05));
        let (stop, stopped) = mpsc::channel::<()>();
        let storage = &*self.storage;
        let worker = self.worker.id.as_str();
        let outcome = std::thread::scope(|s| {
            s.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    // A missed heartbeat only risks a needless re-queue, which the ownership
                    // checks make harmless; the next one retries.
                    let _ = storage.heartbeat(trial.id, worker);
                }
            });
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| objective(&mut handle)));
            drop(stop);
            r
        });
        let last = handle.intermediate.values().next_back().copied();
        match outcome {
            Ok(Ok(v)) if v.is_finite() => (TrialState::Complete, Some(v), None),
            Ok(Ok(v)) => (
                TrialState::Failed,
                None,
                Some(format!("the objective returned the non-finite value {v}")),
            ),
            Ok(Err(TrialFailure::Pruned)) => (TrialState::Pruned, last, None),
            Ok(Err(TrialFailure::Failed(why))) => (TrialState::Failed, None, Some(why)),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown payload".into());
                (
                    TrialState::Failed,
                    None,
                    Some(format!("the objective panicked: {msg}")),
                )
            }
        }
    }

    /// Summary of the study: see [`crate::report::SearchReport`]. Running trials whose worker
    /// is presumed dead (by this worker's [`StalePolicy`]) are reported as orphaned.
    pub fn report(&self, top_k: usize) -> Result<crate::report::SearchReport, SearchError> {
        let trials = self.trials()?;
        let now = crate::store::now_s();
        let dead: std::collections::BTreeMap<u64, String> = trials
            .iter()
            .filter(|t| t.state == TrialState::Running)
            .filter_map(|t| {
                let lease = t.lease.as_ref()?;
                match crate::store::stale_verdict(lease, &self.worker, now, &self.policy) {
                    crate::store::StaleVerdict::Alive => None,
                    crate::store::StaleVerdict::Requeue(why)
                    | crate::store::StaleVerdict::Fail(why) => Some((t.number, why)),
                }
            })
            .collect();
        let mut r =
            crate::report::SearchReport::build(&self.info.name, &self.config, &trials, top_k);
        r.mark_dead_workers(&dead);
        Ok(r)
    }
}

/// The objective's view of the trial it runs.
pub struct TrialHandle<'s, S> {
    study: &'s Study<S>,
    trial: ClaimedTrial,
    intermediate: std::collections::BTreeMap<u64, f64>,
}

impl<S> std::fmt::Debug for TrialHandle<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrialHandle(#{})", self.trial.number)
    }
}

impl<S> TrialHandle<'_, S> {
    /// The trial's parameters (only those whose condition held).
    pub fn params(&self) -> &Params {
        &self.trial.params
    }
    /// The trial's number in the study (from 0).
    pub fn number(&self) -> u64 {
        self.trial.number
    }
    /// 1 on the first run; more when an earlier worker died while running it.
    pub fn attempt(&self) -> u32 {
        self.trial.attempt
    }
    /// The study's configuration (its space, direction, sampler, pruner and seed).
    pub fn config(&self) -> &StudyConfig<S> {
        &self.study.config
    }

    /// Records the validation value after `step` (an epoch, from 1) and asks the pruner. A
    /// non-finite value is an error (the trial should fail), as is losing the trial to another
    /// worker.
    pub fn report(&mut self, step: u64, value: f64) -> Result<ShouldPrune, SearchError> {
        if !value.is_finite() {
            return Err(SearchError::NonFinite { step, value });
        }
        let s = self.study;
        if !s.storage.report(self.trial.id, &s.worker.id, step, value)? {
            return Err(SearchError::Lost {
                number: self.trial.number,
            });
        }
        self.intermediate.insert(step, value);
        if matches!(s.config.pruner, Pruner::None) {
            return Ok(ShouldPrune(false));
        }
        let all = s.trials()?;
        let me = TrialRecord {
            id: self.trial.id,
            number: self.trial.number,
            intermediate: self.intermediate.clone(),
            ..TrialRecord::default()
        };
        Ok(ShouldPrune(s.config.pruner.should_prune(
            s.config.direction,
            &me,
            step,
            &all,
        )))
    }

    /// Attaches a JSON value to the trial (`params_count` feeds the Pareto front).
    pub fn set_user_attr(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), SearchError> {
        self.study.storage.set_user_attr(self.trial.id, key, &value)
    }

    /// Records the model's parameter count (the `params_count` attribute), which places the trial
    /// on the report's accuracy-vs-size Pareto front.
    pub fn set_params_count(&mut self, n: usize) -> Result<(), SearchError> {
        self.set_user_attr("params_count", serde_json::Value::from(n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Domain;
    use crate::space::ParamSpace;
    use crate::store::SqliteStorage;

    fn space() -> ParamSpace {
        ParamSpace::new()
            .with(
                "lr",
                Domain::Float {
                    low: 1e-4,
                    high: 1e-1,
                    log: true,
                },
            )
            .with(
                "depth",
                Domain::IntChoice {
                    choices: vec![8, 16, 32],
                },
            )
    }

    fn study(dir: &std::path::Path, name: &str, seed: u64) -> Study<ParamSpace> {
        let storage = Arc::new(SqliteStorage::open(dir.join("s.db")).unwrap());
        let mut cfg = StudyConfig {
            seed,
            ..StudyConfig::new(space())
        };
        cfg.sampler.n_startup = 2;
        cfg.pruner = Pruner::Median {
            n_startup_trials: 2,
            n_warmup_steps: 2,
        };
        Study::open(storage, name, cfg).unwrap()
    }

    #[test]
    fn failures_are_recorded_and_the_study_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path(), "f", 1);
        let summary = s
            .run_worker(8, &mut |t| {
                let n = t.number();
                match n {
                    2 => Err(TrialFailure::Failed("out of memory".into())),
                    3 => panic!("boom"),
                    4 => Ok(f64::NAN),
                    5 => {
                        let _ = t.report(1, f64::INFINITY)?;
                        Ok(1.0)
                    }
                    _ => {
                        // Trials 6 and 7 are worse than the median at step 2 and get pruned.
                        let v = if n >= 6 { 0.1 } else { 0.5 + n as f64 / 10.0 };
                        for step in 1..=3 {
                            if t.report(step, v)?.0 {
                                return Err(TrialFailure::Pruned);
                            }
                        }
                        t.set_params_count(1000 + n as usize)?;
                        Ok(v)
                    }
                }
            })
            .unwrap();
        assert_eq!(summary.complete, 2);
        assert_eq!(summary.failed, 4);
        assert_eq!(summary.pruned, 2);
        let trials = s.trials().unwrap();
        let reason = |i: usize| trials[i].reason.clone().unwrap_or_default();
        assert_eq!(reason(2), "out of memory");
        assert!(reason(3).contains("panicked: boom"), "{}", reason(3));
        assert!(reason(4).contains("non-finite"), "{}", reason(4));
        assert!(reason(5).contains("non-finite value inf"), "{}", reason(5));
        assert_eq!(trials[6].state, TrialState::Pruned);
        assert_eq!(
            trials[6].value,
            Some(0.1),
            "a pruned trial keeps its last value"
        );
        assert_eq!(
            trials[6].intermediate.len(),
            2,
            "pruned at step 2 (step 1 is warm-up)"
        );
        assert_eq!(
            trials[1].user_attrs["params_count"],
            serde_json::json!(1001)
        );
        // Asking for more trials continues the same study.
        let more = s.run_worker(9, &mut |_| Ok(0.0)).unwrap();
        assert_eq!(more.complete, 1);
        assert_eq!(s.trials().unwrap().len(), 9);
    }

    #[test]
    fn a_seed_makes_a_study_reproducible() {
        let run = |seed| {
            let dir = tempfile::tempdir().unwrap();
            let s = study(dir.path(), "r", seed);
            s.run_worker(6, &mut |t| {
                Ok(t.params()["lr"].as_f64().unwrap_or(1.0).ln())
            })
            .unwrap();
            s.trials()
                .unwrap()
                .into_iter()
                .map(|t| t.params)
                .collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
    }

    #[test]
    fn a_silent_remote_worker_loses_its_trial() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = study(dir.path(), "h", 1);
        // A worker on another host claims trial 0 and then goes silent.
        let ghost = WorkerInfo {
            id: "ghost".into(),
            host: "elsewhere".into(),
            pid: 1,
            start_ticks: 1,
        };
        let claimed = s
            .storage
            .claim(s.info.id, 2, &ghost, &s.policy, &mut |h, n| {
                Ok(s.sample_params(h, n))
            })
            .unwrap()
            .unwrap();
        assert_eq!(claimed.number, 0);
        assert!(s.storage.report(claimed.id, "ghost", 1, 0.3).unwrap());
        // With the default timeout the trial is left alone: only trial 1 runs here.
        assert_eq!(s.report(1).unwrap().states["running"], 1);
        let done = s.run_worker(2, &mut |_| Ok(1.0)).unwrap();
        assert_eq!(done.complete, 1);
        assert_eq!(s.trials().unwrap()[0].state, TrialState::Running);
        s.set_stale_policy(StalePolicy {
            heartbeat_timeout_s: 0.2,
            heartbeat_interval_s: 0.05,
            max_attempts: 3,
        });
        std::thread::sleep(Duration::from_millis(400));
        let done = s
            .run_worker(2, &mut |t| {
                assert_eq!((t.number(), t.attempt()), (0, 2));
                Ok(2.0)
            })
            .unwrap();
        assert_eq!(done.complete, 1);
        let t0 = &s.trials().unwrap()[0];
        assert_eq!((t0.state, t0.value), (TrialState::Complete, Some(2.0)));
        assert!(
            t0.intermediate.is_empty(),
            "the ghost's values were dropped"
        );
        // The ghost coming back cannot overwrite the result.
        assert!(!s.storage.report(claimed.id, "ghost", 2, 0.9).unwrap());
        assert!(!s
            .storage
            .finish(claimed.id, "ghost", TrialState::Complete, Some(0.9), None)
            .unwrap());
        let best = crate::median::top_trials(&s.trials().unwrap(), 1, Direction::Maximize)
            .iter()
            .map(|t| t.number)
            .collect::<Vec<_>>();
        assert_eq!(best, vec![0]);
    }

    #[test]
    fn a_dead_local_workers_trial_is_reported_orphaned_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path(), "o", 1);
        let me = WorkerInfo::current();
        // A worker on this host whose process is gone (a pid that cannot exist).
        let dead = WorkerInfo {
            id: "dead".into(),
            host: me.host.clone(),
            pid: u32::MAX - 7,
            start_ticks: 1,
        };
        // This worker first: a claim re-queues dead workers' trials before it samples.
        for w in [&me, &dead] {
            s.storage
                .claim(s.info.id, 2, w, &s.policy, &mut |h, n| {
                    Ok(s.sample_params(h, n))
                })
                .unwrap()
                .unwrap();
        }
        let r = s.report(1).unwrap();
        assert_eq!(r.states.get("running"), Some(&1), "{:?}", r.states);
        assert_eq!(r.states.get("orphaned"), Some(&1), "{:?}", r.states);
        let t1 = &r.trials[1];
        assert!(
            t1.worker_dead.as_deref().unwrap_or("").contains("died"),
            "{t1:?}"
        );
        assert_eq!(r.trials[0].worker_dead, None, "this live worker's trial");
        // Nothing was written: the trial stays as stored until a worker claims.
        assert_eq!(s.trials().unwrap()[1].state, TrialState::Running);
    }

    #[test]
    fn a_study_keeps_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = study(dir.path(), "c", 1);
        let storage: Arc<dyn Storage> =
            Arc::new(SqliteStorage::open(dir.path().join("s.db")).unwrap());
        let loaded = Study::<ParamSpace>::load(storage.clone(), "c").unwrap();
        assert_eq!(loaded.config(), s.config());
        let mut other = s.config().clone();
        other.seed = 99;
        let e = Study::open(storage.clone(), "c", other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another search configuration"), "{e}");
        assert!(Study::<ParamSpace>::load(storage, "nope")
            .unwrap_err()
            .to_string()
            .contains("no study"));
    }
}
