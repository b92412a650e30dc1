//! Studies outlive versions of this code: a stored study's configuration must serialise to the
//! same bytes (or workers could no longer join it) and a seed must sample the same trials. The
//! fixtures were written by the search code before it became a crate (`fixtures/README.md`).
#![allow(clippy::unwrap_used)]

use search::convrnn::{ModelStudy, ModelStudyConfig};
use search::{Params, SqliteStorage};

const CONFIG: &str = include_str!("fixtures/compact_rgc_study_config.json");
const TRIALS: &str = include_str!("fixtures/compact_rgc_first_trials.json");

#[test]
fn the_stored_configuration_of_a_default_study_is_unchanged() {
    let cfg = ModelStudyConfig::default_for("compact_rgc", 0).unwrap();
    assert_eq!(serde_json::to_string(&cfg).unwrap(), CONFIG.trim_end());
    let back: ModelStudyConfig = serde_json::from_str(CONFIG).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn a_seed_samples_the_same_trials_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let storage = std::sync::Arc::new(SqliteStorage::open(dir.path().join("s.db")).unwrap());
    let mut cfg = ModelStudyConfig::default_for("compact_rgc", 0).unwrap();
    cfg.sampler.n_startup = 3;
    let study = ModelStudy::open(storage, "g", cfg).unwrap();
    study
        .run_worker(6, &mut |t| Ok(t.model()?.1.lr.ln()))
        .unwrap();
    let got: Vec<Params> = study
        .trials()
        .unwrap()
        .into_iter()
        .map(|t| t.params)
        .collect();
    let want: Vec<Params> = serde_json::from_str(TRIALS).unwrap();
    assert_eq!(got, want);
}
