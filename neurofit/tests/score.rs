#![allow(clippy::unwrap_used)]
//! End-to-end protocol on planted data: features that linearly drive the responses score ≈ 1 after
//! noise correction; unrelated features score ≈ 0.

use ndarray::{Array3, Axis};
use neurofit::{
    score, AreaFeatures, Assembly, FitConfig, ModelFeatures, NeurofitError, Neuroids,
    Presentations, Regression, Report, StepToBin, TimeBin,
};
use seeded_rng::Rng;

const N_STIM: usize = 60;
const N_OBJ: usize = 6;
const FEAT: usize = 8;
const STEPS: usize = 3;
const REPS: usize = 4;
const NEUR: usize = 6;

/// Area `good` drives every neuroid (step k → bin k); area `noise` is unrelated.
fn planted() -> (ModelFeatures, Assembly) {
    let mut rng = Rng::new(123);
    let good = Array3::from_shape_simple_fn((N_STIM, FEAT, STEPS), || rng.normal() as f32);
    let noise = Array3::from_shape_simple_fn((N_STIM, FEAT, STEPS), || rng.normal() as f32);
    let w: Vec<f64> = (0..FEAT * NEUR).map(|_| rng.normal()).collect();
    let stimulus_id: Vec<String> = (0..N_STIM).map(|s| format!("im{s}")).collect();
    let mut data = Array3::<f32>::zeros((N_STIM * REPS, NEUR, STEPS));
    let mut pres = Presentations::default();
    for r in 0..REPS {
        for s in 0..N_STIM {
            let row = r * N_STIM + s;
            pres.stimulus_id.push(stimulus_id[s].clone());
            pres.object_name.push(format!("obj{}", s % N_OBJ));
            pres.repetition.push(r as u32);
            for j in 0..NEUR {
                for k in 0..STEPS {
                    let signal: f64 = (0..FEAT)
                        .map(|f| good[[s, f, k]] as f64 * w[f * NEUR + j])
                        .sum();
                    data[[row, j, k]] = (signal + 0.5 * rng.normal()) as f32;
                }
            }
        }
    }
    let features = ModelFeatures {
        model: "planted".into(),
        stimulus_id,
        areas: vec![
            AreaFeatures {
                area: "good".into(),
                data: good,
            },
            AreaFeatures {
                area: "noise".into(),
                data: noise,
            },
        ],
    };
    let asm = Assembly {
        data,
        presentations: pres,
        neuroids: Neuroids {
            neuroid_id: (0..NEUR).map(|j| format!("n{j}")).collect(),
            region: (0..NEUR)
                .map(|j| {
                    if j < NEUR / 2 {
                        "V4".into()
                    } else {
                        "IT".into()
                    }
                })
                .collect(),
        },
        bins: TimeBin::uniform(70.0, 70.0 + 10.0 * STEPS as f64, 10.0),
    };
    (features, asm)
}

fn cfg(regression: Regression) -> FitConfig {
    FitConfig {
        regression,
        splits: 4,
        ..FitConfig::default()
    }
}

fn check_planted(report: &Report) {
    assert_eq!(report.bins, vec![[70.0, 80.0], [80.0, 90.0], [90.0, 100.0]]);
    for region in ["V4", "IT"] {
        for c in &report.ceiling[region] {
            assert!(c.unwrap() > 0.9, "ceiling {c:?}");
        }
        for s in &report.scores["good"][region] {
            let s = s.unwrap();
            assert!(s > 0.85 && s < 1.15, "good area score {s}");
        }
        for s in &report.scores["noise"][region] {
            assert!(s.unwrap() < 0.2, "noise area score {s:?}");
        }
    }
    let maps = &report.maps["good"];
    assert_eq!(
        maps.iter()
            .map(|m| m.as_ref().unwrap().step)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(report.per_neuroid["good"].r.len(), 3);
    assert_eq!(report.per_neuroid["good"].r[0].len(), NEUR);
}

#[test]
fn planted_features_score_near_one_with_pls_and_ridge() {
    let (f, a) = planted();
    check_planted(&score(&f, &a, &cfg(Regression::Pls { components: 8 })).unwrap());
    check_planted(
        &score(
            &f,
            &a,
            &cfg(Regression::Ridge {
                alphas: vec![0.01, 1.0, 100.0],
            }),
        )
        .unwrap(),
    );
}

#[test]
fn feature_order_does_not_matter_and_extra_stimuli_are_ignored() {
    let (f, a) = planted();
    let c = cfg(Regression::Pls { components: 4 });
    let base = score(&f, &a, &c).unwrap();
    let mut order: Vec<usize> = (0..N_STIM).rev().collect();
    order.push(0);
    let mut shuffled = f.clone();
    shuffled.stimulus_id = order.iter().map(|&i| f.stimulus_id[i].clone()).collect();
    shuffled.stimulus_id[N_STIM] = "not-recorded".into();
    for area in &mut shuffled.areas {
        area.data = area.data.select(Axis(0), &order);
    }
    let other = score(&shuffled, &a, &c).unwrap();
    assert_eq!(base.scores, other.scores);
}

#[test]
fn missing_feature_stimuli_are_named() {
    let (mut f, a) = planted();
    f.stimulus_id[7] = "renamed".into();
    match score(&f, &a, &FitConfig::default()) {
        Err(NeurofitError::MissingFeatureStimuli { missing }) => assert_eq!(missing, vec!["im7"]),
        other => panic!("expected missing stimuli, got {other:?}"),
    }
}

#[test]
fn single_repetition_recordings_are_refused_for_the_ceiling() {
    let (f, mut a) = planted();
    let keep: Vec<usize> = (0..N_STIM).collect();
    a.data = a.data.select(Axis(0), &keep);
    a.presentations.stimulus_id.truncate(N_STIM);
    a.presentations.object_name.truncate(N_STIM);
    a.presentations.repetition.truncate(N_STIM);
    assert!(matches!(
        score(&f, &a, &FitConfig::default()),
        Err(NeurofitError::TooFewRepetitions { count: 1, .. })
    ));
}

#[test]
fn missing_trials_are_skipped_and_sites_without_a_stimulus_dropped() {
    let (f, mut a) = planted();
    // One missing trial of n2: kept, averaged over the other repetitions (Brain-Score's
    // mean(skipna=True)), and the report says so.
    a.data[[5, 2, 1]] = f32::NAN;
    let r = score(&f, &a, &cfg(Regression::Pls { components: 4 })).unwrap();
    assert!(r.dropped.is_empty());
    assert_eq!(r.neuroid_id.len(), NEUR);
    assert!(
        r.warnings.iter().any(|w| w.contains("1 non-finite")),
        "{:?}",
        r.warnings
    );
    assert!(r.per_neuroid["good"].r.iter().all(|bin| bin[2].is_some()));
    // Every repetition of stimulus 7 missing for n4 in bin 0: n4 cannot be averaged there and is
    // dropped and reported.
    for rep in 0..REPS {
        a.data[[rep * N_STIM + 7, 4, 0]] = f32::NAN;
    }
    let r = score(&f, &a, &cfg(Regression::Pls { components: 4 })).unwrap();
    assert_eq!(r.dropped.len(), 1);
    assert_eq!(r.dropped[0].neuroid_id, "n4");
    assert_eq!(r.dropped[0].non_finite, REPS);
    assert!(
        r.warnings.iter().any(|w| w.contains("n4 (")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.neuroid_id.len(), NEUR - 1);
}

#[test]
fn report_json_round_trips_and_has_the_contract_keys() {
    let (f, a) = planted();
    let r = score(
        &f,
        &a,
        &FitConfig {
            time_map: StepToBin::Graded,
            ..cfg(Regression::Pls { components: 4 })
        },
    )
    .unwrap();
    assert_eq!(r.scores.keys().collect::<Vec<_>>(), vec!["graded"]);
    let text = r.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["bins", "ceiling", "scores", "per_neuroid", "neuroid_id"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(Report::from_json(&text).unwrap(), r);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    r.write(&path).unwrap();
    assert_eq!(
        Report::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap(),
        r
    );
}

#[test]
fn fit_config_default_is_the_spec_protocol_and_rejects_unknown_fields() {
    let c = FitConfig::default();
    assert_eq!(c.regression, Regression::Pls { components: 25 });
    assert_eq!((c.splits, c.test_fraction), (10, 0.1));
    assert_eq!(c.time_map, StepToBin::OneToOne { first_bin_ms: 70.0 });
    let back: FitConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<FitConfig>(r#"{"splitz": 3}"#).is_err());
    assert!(FitConfig {
        test_fraction: 1.5,
        ..c.clone()
    }
    .validate()
    .is_err());
    assert!(FitConfig { splits: 0, ..c }.validate().is_err());
}

/// Timing at a moderate size (640 stimuli × 2000 features × 2 steps, 40 neuroids, PLS 25, 10 splits).
/// Slow in debug-free CI terms, so ignored; run with
/// `cargo test -p neurofit --test score -- --ignored --nocapture moderate_size_timing`.
#[test]
#[ignore]
fn moderate_size_timing() {
    let (n_stim, feat, steps, neur, reps) = (640, 2000, 2, 40, 2);
    let mut rng = Rng::new(5);
    let x = Array3::from_shape_simple_fn((n_stim, feat, steps), || rng.normal() as f32);
    let mut data = Array3::<f32>::zeros((n_stim * reps, neur, steps));
    let mut pres = Presentations::default();
    for r in 0..reps {
        for s in 0..n_stim {
            pres.stimulus_id.push(format!("im{s}"));
            pres.object_name.push(format!("obj{}", s % 64));
            pres.repetition.push(r as u32);
            for j in 0..neur {
                for k in 0..steps {
                    data[[r * n_stim + s, j, k]] = x[[s, j, k]] + rng.normal() as f32;
                }
            }
        }
    }
    let f = ModelFeatures {
        model: "timing".into(),
        stimulus_id: (0..n_stim).map(|s| format!("im{s}")).collect(),
        areas: vec![AreaFeatures {
            area: "IT".into(),
            data: x,
        }],
    };
    let a = Assembly {
        data,
        presentations: pres,
        neuroids: Neuroids {
            neuroid_id: (0..neur).map(|j| format!("n{j}")).collect(),
            region: vec!["IT".into(); neur],
        },
        bins: TimeBin::uniform(70.0, 90.0, 10.0),
    };
    for reg in [
        Regression::Pls { components: 25 },
        Regression::Ridge {
            alphas: vec![0.1, 1.0, 10.0, 100.0, 1000.0],
        },
    ] {
        let t = std::time::Instant::now();
        let r = score(
            &f,
            &a,
            &FitConfig {
                regression: reg.clone(),
                ..FitConfig::default()
            },
        )
        .unwrap();
        eprintln!(
            "{reg:?}: {:.2} s, IT scores {:?}",
            t.elapsed().as_secs_f64(),
            r.scores["IT"]["IT"]
        );
    }
}

/// A bin in which no site responds (all responses equal, as before the response latency) has no
/// score; the other bins are scored as usual.
#[test]
fn a_bin_without_responses_has_no_score_and_is_no_error() {
    let (f, mut a) = planted();
    a.data.index_axis_mut(Axis(2), 0).fill(0.0);
    for regression in [
        Regression::Pls { components: 8 },
        Regression::Ridge {
            alphas: vec![1.0, 100.0],
        },
    ] {
        let report = score(&f, &a, &cfg(regression)).unwrap();
        for region in ["V4", "IT"] {
            let s = &report.scores["good"][region];
            assert!(s[0].is_none(), "{region}: {s:?}");
            assert!(
                s[1].unwrap() > 0.85 && s[2].unwrap() > 0.85,
                "{region}: {s:?}"
            );
        }
    }
}

/// Features that do not vary over the stimuli at some step leave that bin unscored.
#[test]
fn constant_features_leave_their_bin_unscored() {
    let (mut f, a) = planted();
    f.areas[0].data.index_axis_mut(Axis(2), 1).fill(0.25);
    let report = score(&f, &a, &cfg(Regression::Pls { components: 8 })).unwrap();
    for region in ["V4", "IT"] {
        let s = &report.scores["good"][region];
        assert!(s[1].is_none(), "{region}: {s:?}");
        assert!(
            s[0].unwrap() > 0.85 && s[2].unwrap() > 0.85,
            "{region}: {s:?}"
        );
    }
}

/// PLS asked for more components than an area has features is fitted with as many as it has,
/// and the report says so, naming the area's feature count (FEAT = 8, not its STEPS = 3).
#[test]
fn more_components_than_features_is_a_warning() {
    let (f, a) = planted();
    let r = score(&f, &a, &cfg(Regression::Pls { components: 4 })).unwrap();
    assert!(
        !r.warnings.iter().any(|w| w.contains("components")),
        "{:?}",
        r.warnings
    );
    let r = score(&f, &a, &cfg(Regression::Pls { components: 20 })).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("20 components") && w.contains("good 8, noise 8")),
        "{:?}",
        r.warnings
    );
}

/// A stimulus id given twice in the features (one of its rows would be scored as that stimulus)
/// and an area name given twice (its second track would replace the first in the report) are
/// errors naming the repeat.
#[test]
fn repeated_feature_stimuli_and_areas_are_errors() {
    let (mut f, a) = planted();
    f.stimulus_id.push("im0".into());
    for area in &mut f.areas {
        let other = area.data.select(Axis(0), &[5]);
        area.data.append(Axis(0), other.view()).unwrap();
    }
    let e = score(&f, &a, &cfg(Regression::Pls { components: 4 })).unwrap_err();
    assert!(
        matches!(e, NeurofitError::Features(_)) && e.to_string().contains("`im0`"),
        "{e}"
    );
    let (mut f, a) = planted();
    f.areas[1].area = "good".into();
    let e = score(&f, &a, &cfg(Regression::Pls { components: 4 })).unwrap_err();
    assert!(
        matches!(e, NeurofitError::Features(_)) && e.to_string().contains("`good`"),
        "{e}"
    );
}

/// An area with no feature columns is a mistake upstream, not a bin without a score.
#[test]
fn an_area_without_features_is_an_error() {
    let (mut f, a) = planted();
    f.areas[0].data = Array3::zeros((N_STIM, 0, STEPS));
    for regression in [
        Regression::Pls { components: 4 },
        Regression::Ridge { alphas: vec![1.0] },
    ] {
        let e = score(&f, &a, &cfg(regression)).unwrap_err();
        assert!(
            matches!(e, NeurofitError::Shape { .. }) && e.to_string().contains("0 features"),
            "{e}"
        );
    }
}

/// With 12 stimuli a 10 % test set holds 2, over which every r is ±1: refused, not scored.
#[test]
fn a_test_set_of_two_stimuli_is_an_error() {
    let (f, a) = planted();
    let keep: Vec<usize> = (0..N_STIM * REPS).filter(|r| r % N_STIM < 12).collect();
    let mut few = a.clone();
    few.data = a.data.select(Axis(0), &keep);
    let pick = |v: &[String]| keep.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
    few.presentations.stimulus_id = pick(&a.presentations.stimulus_id);
    few.presentations.object_name = pick(&a.presentations.object_name);
    few.presentations.repetition = keep
        .iter()
        .map(|&r| a.presentations.repetition[r])
        .collect();
    let e = score(&f, &few, &cfg(Regression::Pls { components: 4 })).unwrap_err();
    assert!(
        matches!(e, NeurofitError::Splits(ref m)
            if m.contains("tests 2 of the 12") && m.contains("needs at least 3 (")),
        "{e}"
    );
    let three = FitConfig {
        test_fraction: 0.25,
        ..cfg(Regression::Pls { components: 4 })
    };
    assert!(score(&f, &few, &three).is_ok());
}
