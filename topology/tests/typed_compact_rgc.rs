//! The compact RGC written with compile-time shapes (`topology::typed::CompactRgc`) is the
//! spec-built `compact_rgc`: the same parameters from the same seed, and the same logits and
//! gradients from the same weights.
#![allow(clippy::unwrap_used)]

use tensor::testing::rand_tensor;
use tensor::{Device, Rng, Tensor};
use topology::typed::{CompactRgc, Image};
use topology::{zoo, Frames, Model, Needed, TimingMode, UnrollOptions};

fn spec_built(seed: u64) -> Model {
    Model::new(&zoo::get("compact_rgc").unwrap(), Device::Cpu, seed).unwrap()
}

/// `|a − b| ≤ tol·(1 + max|b|)` elementwise.
fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = 1.0 + b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst <= tol * scale,
        "{what}: differs by {worst} (scale {scale})"
    );
}

#[test]
fn the_same_seed_gives_the_same_parameters_in_the_same_order() {
    let model = spec_built(3);
    let typed = CompactRgc::new(Device::Cpu, 3).unwrap();
    let names: Vec<&str> = model.params.names().collect();
    let typed_names: Vec<&str> = typed.params().names().collect();
    assert_eq!(names, typed_names);
    for (name, p) in model.params.iter() {
        let q = typed.params().get(name).unwrap();
        assert_eq!(p.to_vec().unwrap(), q.to_vec().unwrap(), "{name}");
    }
}

#[test]
fn the_same_weights_give_the_same_logits_and_gradients() {
    // Weights no initialisation gives (non-zero biases, a large readout), so that every path of
    // the cells and the readout matters; the typed model starts from another seed and loads them.
    let model = spec_built(0);
    let mut rng = Rng::new(9);
    for (_, p) in model.params.iter() {
        let w = rand_tensor(&mut rng, p.dims()).mul_scalar(0.2).unwrap();
        p.assign(&w).unwrap();
    }
    let typed = CompactRgc::new(Device::Cpu, 1).unwrap();
    typed.load(&model.params).unwrap();

    let steps = 5;
    let images = rand_tensor(&mut rng, [3, 1, 28, 28]);
    let spec_logits = model
        .unroll(
            &Frames::image(images.clone()),
            &UnrollOptions {
                steps: Some(steps),
                mode: TimingMode::Biological,
                needed: Needed::AllLogits,
            },
        )
        .unwrap()
        .all_logits()
        .unwrap();
    let typed_logits = typed.unroll(&Image::new(images).unwrap(), steps).unwrap();
    assert_eq!(typed_logits.len(), steps);
    for (t, (a, b)) in typed_logits.iter().zip(&spec_logits).enumerate() {
        assert_eq!(a.tensor().dims(), b.dims());
        assert_close(a.tensor(), b, 1e-5, &format!("logits of step {t}"));
    }
    // The image reaches the readout at step 3: earlier logits differ from later ones.
    assert!(spec_logits[2].to_vec().unwrap() != spec_logits[4].to_vec().unwrap());

    let loss = |l: &Tensor| l.sqr().unwrap().sum_all().unwrap();
    let spec_grads = loss(&spec_logits[steps - 1]).backward().unwrap();
    let typed_grads = loss(typed_logits[steps - 1].tensor()).backward().unwrap();
    for ((name, _, g), (_, _, h)) in model
        .params
        .grads_for(&spec_grads)
        .zip(typed.params().grads_for(&typed_grads))
    {
        assert_close(h.unwrap(), g.unwrap(), 1e-4, name);
    }
}
