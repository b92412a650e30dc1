//! The search space: sampled configurations are legal, conditional knobs follow their parents,
//! TPE beats random search on a cheap synthetic objective, and the median model of hand-made
//! trials is the expected spec.
#![allow(clippy::unwrap_used)]

use cell_zoo::{CellSpec, FeedbackEntry, GateNonlinearity, GeneralRgcSpec};
use search::convrnn::{median_spec, RgcSpace};
use search::{
    Direction, Domain, Observation, ParamSampler, ParamValue, Params, RandomSampler, Space,
    TpeConfig, TpeSampler, TrialRecord, TrialState,
};
use tensor::Device;

fn cell_of(spec: &topology::ModelSpec, area: &str) -> GeneralRgcSpec {
    match &spec.areas.iter().find(|a| a.name == area).unwrap().cell {
        CellSpec::GeneralRgc(g) => (**g).clone(),
        other => panic!("{area} has {other:?}"),
    }
}

#[test]
fn compact_samples_validate_and_build() {
    let base = topology::zoo::get("compact_rgc").unwrap();
    let space = RgcSpace::default_for("compact_rgc").unwrap();
    let mut s = RandomSampler::new(11);
    for i in 0..40 {
        let p = space.sample(&mut s);
        space.check_params(&p).unwrap();
        let (spec, hp) = space.apply(&p, &base).unwrap();
        spec.validate().unwrap();
        assert!(hp.lr > 0.0 && hp.weight_decay > 0.0);
        // Building allocates every parameter; a handful is enough to cover the knobs' code paths.
        if i % 4 == 0 {
            topology::Model::new(&spec, Device::Cpu, i).unwrap_or_else(|e| panic!("{e}: {p:?}"));
        }
    }
}

#[test]
fn intermediate_samples_validate_and_one_builds() {
    let base = topology::zoo::get("rgc_intermediate").unwrap();
    let space = RgcSpace::default_for("rgc_intermediate").unwrap();
    assert_eq!(space.feedback_candidates.len(), 21);
    let mut s = RandomSampler::new(5);
    for i in 0..30 {
        let p = space.sample(&mut s);
        let (spec, _) = space.apply(&p, &base).unwrap();
        topology::infer(&spec).unwrap();
        if i == 0 {
            topology::Model::new(&spec, Device::Cpu, 0).unwrap();
        }
    }
}

#[test]
fn conditional_knobs_never_appear_without_their_parent() {
    let space = RgcSpace::default_for("compact_rgc").unwrap();
    let mut seen_off = false;
    let mut seen_on = false;
    let mut s = RandomSampler::new(3);
    for _ in 0..400 {
        let p = space.sample(&mut s);
        for area in ["conv2", "conv3"] {
            let gate = p[&format!("{area}.gate_size")].as_i64().unwrap();
            let has = |k: &str| p.contains_key(&format!("{area}.{k}"));
            if gate == 0 {
                seen_off = true;
                for k in [
                    "gate_offset",
                    "gate_nonlinearity",
                    "cell_depth",
                    "input_to_cell_size",
                    "cell_activation",
                    "residual_to_out_gate",
                ] {
                    assert!(!has(k), "{area}.{k} without a cell state: {p:?}");
                }
            } else {
                seen_on = true;
                assert!(has("gate_offset") && has("input_to_cell_size"));
                let itc = p[&format!("{area}.input_to_cell_size")].as_i64().unwrap();
                assert_eq!(has("cell_depth"), itc != 0, "{p:?}");
                assert_eq!(has("input_to_cell_separable"), itc != 0);
            }
            let ito = p[&format!("{area}.input_to_out_size")].as_i64().unwrap();
            assert_eq!(has("input_to_out_separable"), ito != 0);
        }
        // Only conv2 can receive feedback (from conv3), and only when the edge is on.
        let edge = p["edge:conv3->conv2"].as_bool().unwrap();
        assert_eq!(p.contains_key("conv2.feedback_entry"), edge);
        assert!(!p.contains_key("conv3.feedback_entry"));
    }
    assert!(seen_off && seen_on);
}

#[test]
fn apply_turns_knobs_into_the_cell() {
    let base = topology::zoo::get("compact_rgc").unwrap();
    let space = RgcSpace::default_for("compact_rgc").unwrap();
    let mut p = RandomSampler::new(1);
    let mut params = space.sample(&mut p);
    // Force a known configuration for conv2: cell off, feedback on entering the (absent) cell.
    params.retain(|k, _| !k.starts_with("conv2."));
    params.insert("edge:conv3->conv2".into(), ParamValue::Bool(true));
    let set = |params: &mut Params, k: &str, v: ParamValue| {
        params.insert(format!("conv2.{k}"), v);
    };
    set(&mut params, "gate_size", ParamValue::Int(0));
    set(&mut params, "input_to_out_size", ParamValue::Int(0));
    set(&mut params, "feedback_size", ParamValue::Int(3));
    set(&mut params, "tau_size", ParamValue::Int(5));
    set(&mut params, "tau_separable", ParamValue::Bool(true));
    set(
        &mut params,
        "tau_nonlinearity",
        ParamValue::Categorical("tanh".into()),
    );
    set(&mut params, "tau_offset", ParamValue::Float(0.5));
    set(&mut params, "tau_multiplier", ParamValue::Float(-0.5));
    set(&mut params, "tau_bias", ParamValue::Float(0.25));
    set(&mut params, "feedback_separable", ParamValue::Bool(false));
    set(
        &mut params,
        "feedback_entry",
        ParamValue::Categorical("cell".into()),
    );
    set(
        &mut params,
        "feedback_activation",
        ParamValue::Categorical("relu".into()),
    );
    set(
        &mut params,
        "input_activation",
        ParamValue::Categorical("elu".into()),
    );
    set(
        &mut params,
        "out_activation",
        ParamValue::Categorical("tanh".into()),
    );
    set(&mut params, "out_residual", ParamValue::Bool(false));
    set(&mut params, "residual_to_out_tau", ParamValue::Bool(true));
    set(&mut params, "layer_norm", ParamValue::Bool(true));
    set(&mut params, "init_scale", ParamValue::Float(0.7));
    params.insert("weight_decay".into(), ParamValue::Float(3e-4));
    let (spec, hp) = space.apply(&params, &base).unwrap();
    assert_eq!(hp.weight_decay, 3e-4);
    assert!(spec
        .edges
        .iter()
        .any(|e| e.from == "conv3" && e.to == "conv2"));
    let c = cell_of(&spec, "conv2");
    assert!(!c.uses_cell());
    assert_eq!(
        c.cell_depth, 32,
        "without input→cell the depth is the area's channels"
    );
    assert_eq!(
        c.feedback_entry,
        FeedbackEntry::Out,
        "no cell state: feedback enters h"
    );
    assert_eq!(c.tau.conv.size, 5);
    assert!(c.tau.conv.depth_separable);
    assert_eq!(c.tau.nonlinearity, GateNonlinearity::Tanh);
    assert_eq!(
        (c.tau.offset, c.tau.multiplier, c.tau.bias),
        (0.5, -0.5, 0.25)
    );
    assert_eq!(c.feedback.size, 3);
    assert!(c.layer_norm && c.residual_to_out_tau && !c.out_residual);
    assert_eq!(c.weight_decay, 3e-4);
    assert_eq!(
        spec.areas[1].conv.activation,
        cell_zoo::Activation::Identity,
        "the cell's input activation replaces the conv's"
    );
    topology::Model::new(&spec, Device::Cpu, 0).unwrap();

    // A parameter whose parent is off is rejected, as is one outside its domain.
    let mut bad = params.clone();
    bad.insert("conv2.gate_offset".into(), ParamValue::Float(0.5));
    assert!(space
        .apply(&bad, &base)
        .unwrap_err()
        .to_string()
        .contains("conv2.gate_offset"));
    let mut bad = params;
    bad.insert("conv2.tau_size".into(), ParamValue::Int(4));
    assert!(space
        .apply(&bad, &base)
        .unwrap_err()
        .to_string()
        .contains("outside its domain"));
}

#[test]
fn space_round_trips_and_rejects_bad_json() {
    let space = RgcSpace::default_for("rgc_intermediate").unwrap();
    let j = serde_json::to_string_pretty(&space).unwrap();
    assert_eq!(RgcSpace::from_json(&j).unwrap(), space);
    let typo = j.replacen("\"shared\"", "\"sharde\"", 1);
    // The cause is named once, without the "search space: search space JSON:" it used to repeat.
    let err = search::store::error_chain(&RgcSpace::from_json(&typo).unwrap_err());
    assert!(err.contains("sharde"), "{err}");
    assert_eq!(err.matches("search space").count(), 1, "{err}");
    let mut s = space.clone();
    s.knobs[0].domain = Domain::Bool;
    assert!(s.check().unwrap_err().to_string().contains("gate_size"));
    assert!(RgcSpace::default_for("gru_shallow").is_err());
    // Shared knobs: one set of names for all areas.
    let mut shared = RgcSpace::default_for("compact_rgc").unwrap();
    shared.shared = true;
    let names: Vec<String> = shared.param_defs().into_iter().map(|d| d.name).collect();
    assert!(names.contains(&"cell.tau_size".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("conv2.")));
    let base = topology::zoo::get("compact_rgc").unwrap();
    let p = shared.sample(&mut RandomSampler::new(2));
    let (spec, _) = shared.apply(&p, &base).unwrap();
    let (a, b) = (cell_of(&spec, "conv2"), cell_of(&spec, "conv3"));
    assert_eq!(a.tau, b.tau);
}

/// Synthetic objective on the compact space: best at lr = 0.01, weight decay = 1e-4, conv2 tau
/// offset 0.9 and a 3×3 conv3 tau.
fn synthetic(p: &Params) -> f64 {
    let lr = p["lr"].as_f64().unwrap().log10();
    let wd = p["weight_decay"].as_f64().unwrap().log10();
    let off = p["conv2.tau_offset"].as_f64().unwrap();
    let k = p["conv3.tau_size"].as_i64().unwrap();
    -(lr + 2.0).powi(2) - (wd + 4.0).powi(2) - 4.0 * (off - 0.9).powi(2)
        + if k == 3 { 0.5 } else { 0.0 }
}

#[test]
fn tpe_beats_random_search_over_many_seeds() {
    let space = RgcSpace::default_for("compact_rgc").unwrap();
    let cfg = TpeConfig {
        n_startup: 10,
        ..TpeConfig::default()
    };
    let n_trials = 50;
    let seeds = 12;
    let (mut tpe_sum, mut rnd_sum, mut tpe_wins) = (0.0, 0.0, 0);
    for seed in 0..seeds {
        let mut hist: Vec<Observation> = Vec::new();
        for i in 0..n_trials {
            let mut s = TpeSampler::new(cfg, seed * 1000 + i, &hist);
            let p = space.sample(&mut s as &mut dyn ParamSampler);
            let v = synthetic(&p);
            hist.push(Observation {
                params: p,
                score: Some(v),
            });
        }
        let tpe_best = hist.iter().filter_map(|o| o.score).fold(f64::MIN, f64::max);
        let mut r = RandomSampler::new(seed + 77);
        let rnd_best = (0..n_trials)
            .map(|_| synthetic(&space.sample(&mut r)))
            .fold(f64::MIN, f64::max);
        tpe_sum += tpe_best;
        rnd_sum += rnd_best;
        if tpe_best > rnd_best {
            tpe_wins += 1;
        }
    }
    let (tpe, rnd) = (tpe_sum / seeds as f64, rnd_sum / seeds as f64);
    eprintln!("mean best over {seeds} seeds: TPE {tpe:.4}, random {rnd:.4}; TPE won {tpe_wins}");
    assert!(tpe > rnd, "TPE {tpe} vs random {rnd}");
    assert!(
        tpe_wins * 3 >= seeds * 2,
        "TPE won only {tpe_wins} of {seeds}"
    );
}

fn trial(number: u64, value: f64, params: Params) -> TrialRecord {
    TrialRecord {
        id: number as i64,
        number,
        state: TrialState::Complete,
        params,
        value: Some(value),
        ..TrialRecord::default()
    }
}

#[test]
fn median_of_hand_made_trials() {
    let base = topology::zoo::get("compact_rgc").unwrap();
    let space = RgcSpace::default_for("compact_rgc").unwrap();
    // Start from one full sample and vary a few knobs across trials.
    let template = space.sample(&mut RandomSampler::new(9));
    let mk = |tau_off: f64, tau_size: i64, gate: i64, nl: &str, lr: f64, edge: bool| {
        let mut p = template.clone();
        // Rebuild conv2 from scratch so that its conditional knobs match `gate` and `edge`.
        p.retain(|k, _| !k.starts_with("conv2."));
        let mut set = |k: &str, v: ParamValue| {
            p.insert(format!("conv2.{k}"), v);
        };
        set("tau_offset", ParamValue::Float(tau_off));
        set("tau_size", ParamValue::Int(tau_size));
        set("gate_size", ParamValue::Int(gate));
        set("input_to_out_size", ParamValue::Int(3));
        set("input_to_out_separable", ParamValue::Bool(false));
        set("tau_separable", ParamValue::Bool(true));
        set("tau_nonlinearity", ParamValue::Categorical(nl.into()));
        set("tau_multiplier", ParamValue::Float(-0.9));
        set("tau_bias", ParamValue::Float(0.0));
        for k in ["input_activation", "out_activation"] {
            set(k, ParamValue::Categorical("elu".into()));
        }
        for k in ["out_residual", "residual_to_out_tau", "layer_norm"] {
            set(k, ParamValue::Bool(false));
        }
        set("init_scale", ParamValue::Float(0.6));
        if gate != 0 {
            set("gate_separable", ParamValue::Bool(true));
            set("gate_nonlinearity", ParamValue::Categorical("tanh".into()));
            set("gate_offset", ParamValue::Float(0.7));
            set("gate_multiplier", ParamValue::Float(-0.7));
            set("gate_bias", ParamValue::Float(0.0));
            set("input_to_cell_size", ParamValue::Int(2));
            set("input_to_cell_separable", ParamValue::Bool(false));
            set("cell_depth", ParamValue::Int(16));
            set("cell_activation", ParamValue::Categorical("elu".into()));
            for k in [
                "cell_to_out",
                "cell_residual",
                "residual_to_cell_tau",
                "residual_to_cell_gate",
                "residual_to_out_gate",
            ] {
                set(k, ParamValue::Bool(false));
            }
        }
        p.insert("edge:conv3->conv2".into(), ParamValue::Bool(edge));
        if edge {
            p.insert("conv2.feedback_size".into(), ParamValue::Int(1));
            p.insert("conv2.feedback_separable".into(), ParamValue::Bool(false));
            p.insert(
                "conv2.feedback_entry".into(),
                ParamValue::Categorical("out".into()),
            );
            p.insert(
                "conv2.feedback_activation".into(),
                ParamValue::Categorical("identity".into()),
            );
        }
        p.insert("lr".into(), ParamValue::Float(lr));
        space.check_params(&p).unwrap();
        p
    };
    let trials = vec![
        trial(0, 0.80, mk(0.9, 7, 5, "sigmoid", 1e-2, true)),
        trial(1, 0.10, mk(0.1, 1, 0, "tanh", 1e-3, false)), // worst: outside the top 3
        trial(2, 0.85, mk(0.5, 7, 0, "tanh", 1e-3, true)),
        trial(3, 0.90, mk(0.7, 5, 5, "sigmoid", 5e-3, false)),
        TrialRecord {
            state: TrialState::Failed,
            value: None,
            ..trial(4, 0.99, mk(0.0, 1, 0, "tanh", 1e-3, false))
        },
    ];
    let m = median_spec(&trials, 3, &space, &base, Direction::Maximize).unwrap();
    assert_eq!(m.trials, vec![3, 2, 0]);
    let c = cell_of(&m.spec, "conv2");
    // Median of 0.7, 0.5, 0.9; tau size 7 in 2 of (5, 7, 7); gate size 5 in 2 of (5, 0, 5), so
    // the cell state is on and its knobs come from trials 3 and 0; sigmoid in 2 of 3; the edge
    // is on in 2 of 3.
    assert!((c.tau.offset - 0.7).abs() < 1e-6);
    assert_eq!(c.tau.conv.size, 7);
    assert_eq!(c.gate.conv.size, 5);
    assert!(c.uses_cell());
    assert_eq!(c.cell_depth, 16);
    assert!((c.gate.offset - 0.7).abs() < 1e-6);
    assert_eq!(c.tau.nonlinearity, GateNonlinearity::Sigmoid);
    assert!(m
        .spec
        .edges
        .iter()
        .any(|e| e.from == "conv3" && e.to == "conv2"));
    assert_eq!(c.feedback.size, 1);
    // Learning rate: log-median of 5e-3, 1e-3, 1e-2.
    assert!((m.hparams.lr - 5e-3).abs() < 1e-9);
    assert_eq!(m.params["conv2.gate_size"], ParamValue::Int(5));
    // Over the top 2 the edge is off in trial 3 and on in trial 2: a tie, which the better trial
    // decides.
    let m2 = median_spec(&trials, 2, &space, &base, Direction::Maximize).unwrap();
    assert!(!m2
        .spec
        .edges
        .iter()
        .any(|e| e.from == "conv3" && e.to == "conv2"));
    assert!(m.spec.name.contains("median"));
    topology::Model::new(&m.spec, Device::Cpu, 0).unwrap();
    assert!(median_spec(&trials[4..], 3, &space, &base, Direction::Maximize).is_err());
}
