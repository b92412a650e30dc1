#![allow(clippy::unwrap_used)]
//! Regressions against planted answers and against scikit-learn (fixtures/make_fixtures.py).

use ndarray::{Array2, Axis};
use neurofit::regression::{pls, ridge, Regression};
use neurofit::stats::pearson_columns;
use seeded_rng::Rng;
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/regression.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (n, p) = (rows.len(), rows[0].len());
    Array2::from_shape_vec((n, p), rows.into_iter().flatten().collect()).unwrap()
}

fn assert_close_rel(got: &Array2<f64>, want: &Array2<f64>, rel: f64, what: &str) {
    assert_eq!(got.dim(), want.dim(), "{what}");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{what}: max abs diff {worst:e} (scale {scale})");
    assert!(
        worst <= rel * scale,
        "{what}: max |diff| {worst:e} > {rel:e} × {scale}"
    );
}

#[test]
fn pls_predictions_match_scikit_learn() {
    let f = fixture();
    let (xtr, ytr, xte) = (
        matrix(&f["x_train"]),
        matrix(&f["y_train"]),
        matrix(&f["x_test"]),
    );
    for (k, key) in [(25, "pls25_pred"), (5, "pls5_pred")] {
        let model = pls::fit(xtr.view(), ytr.view(), k).unwrap();
        assert_eq!(model.components, k);
        let pred = model.predict(xte.view()).unwrap();
        assert_close_rel(&pred, &matrix(&f[key]), 1e-4, key);
    }
}

#[test]
fn ridge_matches_scikit_learn_at_a_fixed_alpha() {
    let f = fixture();
    let (xtr, ytr, xte) = (
        matrix(&f["x_train"]),
        matrix(&f["y_train"]),
        matrix(&f["x_test"]),
    );
    let alpha = f["ridge_alpha"].as_f64().unwrap();
    let pred = Regression::Ridge {
        alphas: vec![alpha],
    }
    .fit_predict(xtr.view(), ytr.view(), xte.view())
    .unwrap();
    assert_close_rel(&pred, &matrix(&f["ridge_pred"]), 1e-8, "ridge");
}

#[test]
fn ridge_gcv_picks_the_same_alpha_as_the_explicit_hat_matrix() {
    let f = fixture();
    let (xtr, ytr) = (matrix(&f["x_train"]), matrix(&f["y_train"]));
    let alphas: Vec<f64> = serde_json::from_value(f["gcv_alphas"].clone()).unwrap();
    let want: Vec<f64> = serde_json::from_value(f["gcv_best_alpha"].clone()).unwrap();
    let model = ridge::fit(xtr.view(), ytr.view(), &alphas).unwrap();
    assert_eq!(model.alpha, want);
}

/// `Y = X W + tiny noise`: both regressions must recover the map on held-out rows.
fn planted(n: usize, p: usize, t: usize, noise: f64, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_simple_fn((n, p), || rng.normal());
    let w = Array2::from_shape_simple_fn((p, t), || rng.normal());
    let y = x.dot(&w) + Array2::from_shape_simple_fn((n, t), || noise * rng.normal()) + 5.0;
    (x, y)
}

#[test]
fn planted_linear_maps_are_recovered_by_both_regressions() {
    let (x, y) = planted(200, 20, 6, 1e-3, 42);
    let train: Vec<usize> = (0..180).collect();
    let test: Vec<usize> = (180..200).collect();
    let (xtr, ytr) = (x.select(Axis(0), &train), y.select(Axis(0), &train));
    let (xte, yte) = (x.select(Axis(0), &test), y.select(Axis(0), &test));
    for reg in [
        Regression::Pls { components: 25 },
        Regression::Ridge {
            alphas: vec![1e-6, 1e-3, 1.0, 100.0],
        },
    ] {
        let pred = reg.fit_predict(xtr.view(), ytr.view(), xte.view()).unwrap();
        for r in pearson_columns(pred.view(), yte.view()) {
            assert!(r > 0.9999, "{reg:?}: r = {r}");
        }
    }
}

#[test]
fn gcv_prefers_heavy_penalties_for_pure_noise_and_light_ones_for_clean_maps() {
    let (x, y_clean) = planted(120, 10, 3, 1e-3, 9);
    let mut rng = Rng::new(10);
    let y_noise = Array2::from_shape_simple_fn((120, 3), || rng.normal());
    let alphas = [1e-4, 1e4];
    assert!(ridge::fit(x.view(), y_clean.view(), &alphas)
        .unwrap()
        .alpha
        .iter()
        .all(|&a| a == 1e-4));
    assert!(ridge::fit(x.view(), y_noise.view(), &alphas)
        .unwrap()
        .alpha
        .iter()
        .all(|&a| a == 1e4));
}

#[test]
fn bad_regression_inputs_are_errors() {
    let (x, y) = planted(10, 3, 2, 0.1, 1);
    let short = y.select(Axis(0), &[0, 1, 2]);
    assert!(pls::fit(x.view(), short.view(), 2).is_err());
    assert!(ridge::fit(x.view(), short.view(), &[1.0]).is_err());
    assert!(ridge::fit(x.view(), y.view(), &[]).is_err());
    assert!(ridge::fit(x.view(), y.view(), &[f64::NAN]).is_err());
    let m = pls::fit(x.view(), y.view(), 2).unwrap();
    let wrong = Array2::<f64>::zeros((2, 4));
    assert!(m.predict(wrong.view()).is_err());
}

#[test]
fn pls_caps_components_at_the_rank_it_can_use() {
    let (x, y) = planted(30, 4, 2, 0.1, 3);
    let m = pls::fit(x.view(), y.view(), 25).unwrap();
    assert_eq!(m.components, 4);
}
