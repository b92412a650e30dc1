//! End-to-end CPU-vs-CUDA check: a zoo model built from the same seed on both devices unrolls to
//! the same logits and backpropagates to the same parameter gradients. Skipped with a message
//! where no GPU is usable; built only with `--features cuda`.
#![cfg(feature = "cuda")]

use tensor::{Device, Rng, Tensor};
use topology::{zoo, Frames, Model, UnrollOptions};

const SEED: u64 = 11;

/// `max |a − b| / max |b|` (b is the CPU reference; 0 when both are all zeros).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// The last logits and every parameter gradient (by name) of a cross-entropy loss on `device`.
fn run(device: Device, image: &Tensor, targets: &[usize]) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let spec = zoo::get("compact_rgc_median").expect("compact_rgc_median is in the zoo");
    let model = Model::new(&spec, device, SEED).expect("build");
    let frames = Frames::image(image.to_device(device).expect("image to device"));
    let out = model
        .unroll(&frames, &UnrollOptions::default())
        .expect("unroll");
    let logits = out.last_logits().expect("last logits");
    assert_eq!(logits.device(), device);
    let loss = logits.cross_entropy(targets, 0.0).expect("loss");
    let grads = loss.backward().expect("backward");
    let missing = model.params.missing_grads(&grads);
    assert!(missing.is_empty(), "{device}: no gradient for {missing:?}");
    let per_param = model
        .params
        .grads_for(&grads)
        .map(|(name, _, g)| {
            let g = g.expect("checked above");
            assert_eq!(g.device(), device, "{name}: gradient device");
            (name.to_string(), g.to_vec().expect("gradient values"))
        })
        .collect();
    (logits.to_vec().expect("logit values"), per_param)
}

#[test]
fn compact_rgc_median_unrolls_and_backpropagates_the_same_on_cpu_and_cuda() {
    if let Err(e) = tensor::cuda::probe(0) {
        println!("skipped: no CUDA device ({e})");
        return;
    }
    let mut rng = Rng::new(5);
    let image = Tensor::from_vec(
        (0..2 * 28 * 28).map(|_| rng.uniform() as f32).collect(),
        [2, 1, 28, 28],
        Device::Cpu,
    )
    .expect("image");
    let targets = [3, 7];
    let (lc, gc) = run(Device::Cpu, &image, &targets);
    let (lg, gg) = run(Device::Cuda(0), &image, &targets);
    let e = rel_err(&lg, &lc);
    assert!(
        e < 1e-4,
        "last logits differ: relative error {e:.2e}\ncpu {lc:?}\ngpu {lg:?}"
    );
    assert_eq!(gc.len(), gg.len());
    let mut worst = (String::new(), 0.0f64);
    for ((nc, vc), (ng, vg)) in gc.iter().zip(&gg) {
        assert_eq!(nc, ng, "parameter order");
        let e = rel_err(vg, vc);
        if e > worst.1 {
            worst = (nc.clone(), e);
        }
    }
    println!(
        "compact_rgc_median: {} parameter gradients, worst relative error {:.2e} ({})",
        gc.len(),
        worst.1,
        worst.0
    );
    assert!(
        worst.1 < 1e-3,
        "gradient of `{}` differs: relative error {:.2e}",
        worst.0,
        worst.1
    );
}
