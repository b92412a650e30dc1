//! Studies outlive versions of this code: a stored study's configuration must serialise to the
//! same bytes (or workers could no longer join it) and a seed must sample the same trials. The
//! fixtures were written by the search code before it became a crate (`fixtures/README.md`).
#![allow(clippy::unwrap_used)]

use search::convrnn::{ModelStudy, ModelStudyConfig};
use search::{ParamValue, Params, SqliteStorage};

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
    assert_same_trials(&got, &want);
}

/// The same names, categories and integers; floats within a few ulps (the stored study keeps the
/// values it sampled, so the last bit of a Parzen draw is not part of what a study must reproduce).
fn assert_same_trials(got: &[Params], want: &[Params]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "trial {i}"
        );
        for (name, gv) in g {
            match (gv, &w[name]) {
                (ParamValue::Float(a), ParamValue::Float(b)) => assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "trial {i} {name}: {a} vs {b}"
                ),
                (a, b) => assert_eq!(a, b, "trial {i} {name}"),
            }
        }
    }
}
