//! Quick throughput numbers for the dense ops on the CPU backend.
//!
//! `cargo run -p tensor --release --example dense_bench [seconds-per-case]` (default 2 s/case).
//! Reports the median of timed repetitions after one warm-up run.

use std::time::{Duration, Instant};
use tensor::{testing::rand_tensor, Result, Rng, Tensor};

/// Median seconds per call of `f`, repeated for about `budget`.
fn time<F: FnMut() -> Result<()>>(budget: Duration, mut f: F) -> Result<f64> {
    f()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 3 || (start.elapsed() < budget && samples.len() < 200) {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn main() -> Result<()> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    println!("rayon threads: {}", rayon::current_num_threads());
    let mut rng = Rng::new(1);

    for (m, k, n) in [(256, 512, 1000), (64, 4096, 4096)] {
        let a = rand_tensor(&mut rng, [m, k]);
        let b = rand_tensor(&mut rng, [k, n]);
        let flop = 2.0 * (m * k * n) as f64;
        let t = time(budget, || a.matmul(&b).map(drop))?;
        println!(
            "matmul [{m}x{k}]·[{k}x{n}]: {:8.3} ms  {:7.1} GFLOP/s",
            t * 1e3,
            flop / t * 1e-9
        );
        // The same product as a linear layer (weight read transposed), forward + backward.
        let x = rand_tensor(&mut rng, [m, k]);
        let w = rand_tensor(&mut rng, [n, k]).into_variable();
        let bias = Tensor::zeros([n], tensor::Device::Cpu)?.into_variable();
        let g = rand_tensor(&mut rng, [m, n]);
        let t = time(budget, || x.linear(&w, None).map(drop))?;
        println!(
            "linear fwd [{m}x{k}]·[{n}x{k}]ᵀ: {:8.3} ms  {:7.1} GFLOP/s (weight read transposed)",
            t * 1e3,
            flop / t * 1e-9
        );
        let x = x.into_variable();
        let t = time(budget, || {
            let y = x.linear(&w, Some(&bias))?;
            y.backward_with_grad(&g).map(drop)
        })?;
        println!(
            "linear fwd+bwd [{m}x{k}]·[{n}x{k}]ᵀ: {:8.3} ms  {:7.1} GFLOP/s (3 products)",
            t * 1e3,
            3.0 * flop / t * 1e-9
        );
    }

    // Layer norm at a ConvRNN-like activation size: bytes moved per second.
    let shape = [32, 128, 28, 28];
    let x = rand_tensor(&mut rng, shape).into_variable();
    let gamma = Tensor::ones([128], tensor::Device::Cpu)?.into_variable();
    let beta = Tensor::zeros([128], tensor::Device::Cpu)?.into_variable();
    let bytes = x.elem_count() as f64 * 4.0;
    let t = time(budget, || {
        x.layer_norm(Some(&gamma), Some(&beta), 1e-5).map(drop)
    })?;
    println!(
        "layer_norm fwd {shape:?}: {:8.3} ms  {:6.2} GB/s (one read, one write)",
        t * 1e3,
        2.0 * bytes / t * 1e-9
    );
    let g = rand_tensor(&mut rng, shape);
    let t = time(budget, || {
        x.layer_norm(Some(&gamma), Some(&beta), 1e-5)?
            .backward_with_grad(&g)
            .map(drop)
    })?;
    println!("layer_norm fwd+bwd {shape:?}: {:8.3} ms", t * 1e3);
    let t = time(budget, || x.sum_all().map(drop))?;
    println!(
        "sum_all {shape:?}: {:8.3} ms  {:6.2} GB/s",
        t * 1e3,
        bytes / t * 1e-9
    );
    Ok(())
}
