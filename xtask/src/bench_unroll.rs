//! `cargo xtask bench unroll`: forward and training images/s and peak memory of whole ConvRNNs
//! unrolled in time (loss on the last step), one model per process so that peak RSS is the model's.

use crate::benchmarks_md;
use crate::machine::{self, Machine};
use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::Instant;
use tensor::{no_grad, Device, Rng, Tensor};
use topology::{count, Frames, Model, Needed, TimingMode, UnrollOptions};
use trainer::load_spec;

#[derive(Args, Debug, Clone)]
pub struct UnrollArgs {
    /// One model (preset or spec file); without it, the standard set is run, each in its own process.
    #[arg(long)]
    pub model: Option<String>,
    /// Input size in pixels (square); default: the model's.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub size: Option<usize>,
    #[arg(long, default_value_t = 16, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub batch: usize,
    /// Unroll steps; default: the model's.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub steps: Option<usize>,
    /// Timed training iterations (after one warm-up); at least 1, which the medians rely on.
    #[arg(long, default_value_t = 3, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub iters: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Plain loop: compute every area at every step at full batch (no dead-work or batch-uniform
    /// skipping), for comparison.
    #[arg(long)]
    pub plain: bool,
    /// Print one JSON object (with --model) or an array.
    #[arg(long)]
    pub json: bool,
    /// Rewrite the bench-unroll section of BENCHMARKS.md.
    #[arg(long)]
    pub write_benchmarks: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct UnrollResult {
    pub model: String,
    pub size: usize,
    pub batch: usize,
    pub steps: usize,
    pub device: String,
    pub skip_dead_work: bool,
    pub params: usize,
    pub gflops_per_image_step: f64,
    pub forward_img_per_s: f64,
    pub train_img_per_s: f64,
    /// Training GFLOP/s counting 3× the forward FLOPs of every step the plain loop would run.
    pub train_gflops_equiv: f64,
    pub peak_rss_mb: f64,
}

/// The standard set: the compact presets at 28 px, rgc_shallow at 96 px (issue #3) and the
/// 11-area feedforward base of the intermediate zoo at 96 px and its 17 steps (issue #18; its
/// PyTorch peer is `benches/torch_unroll.py --model feedforward_intermediate`).
fn standard_set() -> Vec<(String, Option<usize>)> {
    let mut v: Vec<(String, Option<usize>)> = topology::zoo::names()
        .into_iter()
        .filter(|n| n.starts_with("compact_"))
        .map(|n| (n.to_string(), None))
        .collect();
    v.push(("rgc_shallow".into(), Some(96)));
    v.push(("feedforward_intermediate".into(), Some(96)));
    v
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(args: &UnrollArgs) -> Result<()> {
    match &args.model {
        Some(m) => {
            let r = run_one(m, args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_table(std::slice::from_ref(&r));
            }
            Ok(())
        }
        None => run_set(args),
    }
}

fn run_set(args: &UnrollArgs) -> Result<()> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut results = Vec::new();
    for (model, size) in standard_set() {
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "unroll", "--model", &model, "--json"])
            .args([
                "--batch",
                &args.batch.to_string(),
                "--iters",
                &args.iters.to_string(),
            ])
            .args(["--device", &args.device]);
        if let Some(s) = args.size.or(size) {
            cmd.args(["--size", &s.to_string()]);
        }
        if let Some(t) = args.steps {
            cmd.args(["--steps", &t.to_string()]);
        }
        if args.plain {
            cmd.arg("--plain");
        }
        eprintln!("bench unroll: {model} ...");
        let out = cmd
            .output()
            .with_context(|| format!("running the benchmark of {model}"))?;
        anyhow::ensure!(
            out.status.success(),
            "benchmark of {model} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        results.push(serde_json::from_slice::<UnrollResult>(&out.stdout)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_table(&results);
    }
    if args.write_benchmarks {
        let m = Machine::detect();
        let mut body = format!(
            "Command: `cargo xtask bench unroll{}` — {}, {} ({} threads), {}.\n\n",
            if args.plain { " --plain" } else { "" },
            m.cpu,
            m.isa,
            m.threads,
            machine::today_utc()
        );
        body.push_str(&table_md(&results));
        let path = crate::workspace_root().join("BENCHMARKS.md");
        benchmarks_md::write_section(&path, "bench-unroll", &body)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Images/s with three significant digits down to 1 img/s (a large model's 1.9 and 2.0 differ
/// by 5 %).
fn rate(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn table_md(rs: &[UnrollResult]) -> String {
    let mut s = String::from(
        "| model | px | batch | steps | params | GFLOPs/img/step | forward img/s | train img/s | train GFLOP/s (plain-loop equiv.) | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rs {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {:.1} | {:.0} |\n",
            r.model,
            r.size,
            r.batch,
            r.steps,
            r.params,
            r.gflops_per_image_step,
            rate(r.forward_img_per_s),
            rate(r.train_img_per_s),
            r.train_gflops_equiv,
            r.peak_rss_mb
        ));
    }
    s
}

fn print_table(rs: &[UnrollResult]) {
    print!("{}", table_md(rs));
}

fn run_one(model: &str, args: &UnrollArgs) -> Result<UnrollResult> {
    let device: Device = args.device.parse().map_err(anyhow::Error::msg)?;
    let mut spec = load_spec(model)?;
    if let Some(s) = args.size {
        spec.input.height = s;
        spec.input.width = s;
    }
    let steps = args.steps.unwrap_or(spec.default_steps);
    if device.is_cpu() {
        // Before anything is built (counting the FLOPs runs a step too): an absurd --size or
        // --steps is refused with the memory it needs instead of ending in the allocator.
        let shapes = topology::infer(&spec)?;
        let available = trainer::memory_budget::available_bytes();
        trainer::memory_budget::check(&shapes, args.batch, steps, 1, available)?;
    }
    let cost = count::cost(&spec)?;
    let net = Model::new(&spec, device, 1)?;
    let mut rng = Rng::new(2);
    let n = args.batch;
    let dims = [n, spec.input.channels, spec.input.height, spec.input.width];
    let data: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| rng.normal() as f32)
        .collect();
    let image = Tensor::from_vec(data, dims, device)?;
    let labels: Vec<usize> = (0..n).map(|_| rng.below(spec.num_classes)).collect();
    let opts = UnrollOptions {
        steps: Some(steps),
        mode: TimingMode::Biological,
        needed: if args.plain {
            Needed::Everything
        } else {
            Needed::LastLogits
        },
    };
    let frames = if args.plain {
        // The same schedule as explicit frames: the plain loop also does the batch-uniform work
        // (before the image reaches an area) at full batch, as the reference does.
        let sched = Frames::image(image.clone());
        let blank = Tensor::full(topology::DEFAULT_BLANK, dims, device)?;
        Frames::Sequence(
            (0..steps)
                .map(|t| {
                    if sched.is_blank(t, spec.image_off) {
                        blank.clone()
                    } else {
                        image.clone()
                    }
                })
                .collect(),
        )
    } else {
        Frames::image(image)
    };
    let forward = || -> Result<f64> {
        let _g = no_grad();
        let t = Instant::now();
        let u = net.unroll(&frames, &opts)?;
        u.last_logits()?.to_vec()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let lr = 1e-3f32;
    let train_step = || -> Result<f64> {
        let t = Instant::now();
        let u = net.unroll(&frames, &opts)?;
        let loss = u.last_logits()?.cross_entropy(&labels, 0.0)?;
        let grads = loss.backward()?;
        let _g = no_grad();
        for (_, p) in net.params.iter() {
            if let Some(g) = grads.get(p) {
                p.assign(&p.sub(&g.mul_scalar(lr)?)?)?;
            }
        }
        // The CUDA backend queues the updates; a one-element round trip waits for them.
        if !device.is_cpu() {
            Tensor::zeros([1], device)?.to_vec()?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    forward()?;
    let fwd = (0..args.iters)
        .map(|_| forward())
        .collect::<Result<Vec<_>>>()?;
    train_step()?;
    let train = (0..args.iters)
        .map(|_| train_step())
        .collect::<Result<Vec<_>>>()?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (tf, tt) = (median(fwd), median(train));
    let flops = cost.flops_per_step as f64;
    Ok(UnrollResult {
        model: spec.name.clone(),
        size: spec.input.height,
        batch: n,
        steps,
        device: device.to_string(),
        skip_dead_work: !args.plain,
        params: cost.params,
        gflops_per_image_step: flops / 1e9,
        forward_img_per_s: n as f64 / tf,
        train_img_per_s: n as f64 / tt,
        train_gflops_equiv: 3.0 * flops * steps as f64 * n as f64 / tt / 1e9,
        peak_rss_mb: peak_rss_mb(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Whether `model`'s shapes work out at `size` (no model is built: cheap).
    fn fits(model: &str, size: Option<usize>) -> bool {
        let mut spec = load_spec(model).unwrap();
        if let Some(s) = size {
            spec.input.height = s;
            spec.input.width = s;
        }
        topology::infer(&spec).is_ok()
    }

    #[test]
    fn the_standard_set_is_valid_at_its_sizes() {
        let set = standard_set();
        assert!(set.iter().any(|m| m.0 == "feedforward_intermediate"));
        for (model, size) in set {
            assert!(fits(&model, size), "{model} at {size:?} px");
        }
        // The check is real: the 11-area base pools its map away below 64 px.
        assert!(!fits("feedforward_intermediate", Some(32)));
    }

    #[test]
    fn a_size_that_cannot_fit_is_refused_before_anything_is_allocated() {
        let args = UnrollArgs {
            model: None,
            size: Some(1_000_000),
            batch: 16,
            steps: Some(8),
            iters: 1,
            device: "cpu".into(),
            plain: false,
            json: false,
            write_benchmarks: false,
        };
        let e = run_one("compact_rgc", &args).unwrap_err().to_string();
        assert!(
            e.contains("8 steps at a batch of 16") && e.contains("available"),
            "{e}"
        );
    }
}
