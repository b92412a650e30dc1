//! layer_norm and cross_entropy against PyTorch (fixtures made by
//! `tests/fixtures/make_dense_fixtures.py`: exact f32 inputs, float64 references).
//!
//! Every array is compared to 1e-5 relative to its largest reference magnitude, so entries that
//! happen to be near zero are not held to a tolerance below what f32 can represent for the array.

use serde_json::Value;
use tensor::{Device, Tensor};

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v["cases"].as_array().cloned().unwrap_or_default()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap_or(u64::MAX) as usize)
        .collect()
}

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    Tensor::from_vec(floats(v), shape, Device::Cpu).expect("fixture data matches its shape")
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let tol = 1e-5 * scale + 1e-12;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - *w as f64).abs();
        assert!(
            err <= tol,
            "{what}[{i}]: ours {g} vs torch {w} (|diff| {err:.3e} > {tol:.3e})"
        );
    }
}

#[test]
fn layer_norm_matches_pytorch() {
    let cases = load("layer_norm.json");
    assert!(cases.len() >= 5);
    for c in &cases {
        let name = c["name"].as_str().unwrap_or("?");
        let shape = usizes(&c["shape"]);
        let ch = shape[1];
        let eps = c["eps"].as_f64().unwrap() as f32;
        let x = tensor(&c["input"], &shape).into_variable();
        let gamma = (!c["gamma"].is_null()).then(|| tensor(&c["gamma"], &[ch]).into_variable());
        let beta = (!c["beta"].is_null()).then(|| tensor(&c["beta"], &[ch]).into_variable());
        let y = x.layer_norm(gamma.as_ref(), beta.as_ref(), eps).unwrap();
        assert_close(
            &format!("{name} output"),
            &y.to_vec().unwrap(),
            &floats(&c["output"]),
        );
        let grads = y
            .backward_with_grad(&tensor(&c["upstream"], &shape))
            .unwrap();
        assert_close(
            &format!("{name} grad_input"),
            &grads.get(&x).unwrap().to_vec().unwrap(),
            &floats(&c["grad_input"]),
        );
        if let Some(g) = &gamma {
            assert_close(
                &format!("{name} grad_gamma"),
                &grads.get(g).unwrap().to_vec().unwrap(),
                &floats(&c["grad_gamma"]),
            );
        }
        if let Some(b) = &beta {
            assert_close(
                &format!("{name} grad_beta"),
                &grads.get(b).unwrap().to_vec().unwrap(),
                &floats(&c["grad_beta"]),
            );
        }
    }
}

#[test]
fn cross_entropy_matches_pytorch() {
    let cases = load("cross_entropy.json");
    assert!(cases.len() >= 3);
    let mut smoothings = Vec::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap_or("?");
        let shape = usizes(&c["shape"]);
        let ls = c["label_smoothing"].as_f64().unwrap() as f32;
        smoothings.push(ls);
        let targets = usizes(&c["targets"]);
        let x = tensor(&c["logits"], &shape).into_variable();
        let loss = x.cross_entropy(&targets, ls).unwrap();
        assert_close(
            &format!("{name} loss"),
            &loss.to_vec().unwrap(),
            &[c["loss"].as_f64().unwrap() as f32],
        );
        let grads = loss.backward().unwrap();
        assert_close(
            &format!("{name} grad_logits"),
            &grads.get(&x).unwrap().to_vec().unwrap(),
            &floats(&c["grad_logits"]),
        );
    }
    assert!(smoothings.contains(&0.0) && smoothings.contains(&0.1));
}
