//! Training a small ConvRNN with the library, then using what the run left behind: the
//! checkpoint reloaded as a model, evaluated again, and the run resumed for one more epoch.
//!
//! The data is made here (no download): 28×28 gratings whose orientation is the class (ten
//! orientations, 18° apart) under pixel noise, written as Fashion-MNIST-format IDX files, so
//! `DataSpec::FashionMnist` reads them. The model is the zoo's `compact_timedecay` unrolled for
//! four steps; two epochs take a few seconds on one core.
//!
//! `cargo run --release -p trainer --example train_and_reload [RUN_FOLDER]` (default: a
//! temporary folder; name one to keep the run: its checkpoints, `metrics.jsonl` and plots).

use std::path::Path;

use tensor::{Device, Rng};
use trainer::{
    evaluate_checkpoint, fit, load_model, DataSpec, FitOptions, LrSchedule, Outcome, TrainConfig,
};

/// `n` gratings of the classes `i % 10`, each at a random phase and spatial frequency, with noise.
fn gratings(n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let (mut pixels, mut labels) = (Vec::with_capacity(n * 784), Vec::with_capacity(n));
    for i in 0..n {
        let class = i % 10;
        let angle = class as f64 * std::f64::consts::PI / 10.0;
        let (dx, dy) = (angle.cos(), angle.sin());
        let freq = 0.5 + 0.3 * rng.uniform();
        let phase = std::f64::consts::TAU * rng.uniform();
        for y in 0..28 {
            for x in 0..28 {
                let s = (freq * (x as f64 * dx + y as f64 * dy) + phase).sin();
                let v = 128.0 + 90.0 * s + 30.0 * rng.normal();
                pixels.push(v.clamp(0.0, 255.0) as u8);
            }
        }
        labels.push(class as u8);
    }
    (pixels, labels)
}

/// A two-epoch run of a four-step `compact_timedecay` on the data in `data`.
fn config(data: &Path) -> Result<TrainConfig, Box<dyn std::error::Error>> {
    let mut model = topology::zoo::get("compact_timedecay").ok_or("no compact_timedecay preset")?;
    model.default_steps = 4;
    model.image_off = 4;
    let mut c = TrainConfig::for_model(
        model,
        DataSpec::FashionMnist {
            dir: Some(data.to_path_buf()),
        },
    );
    c.epochs = 2;
    c.batch_size = 20;
    c.eval_batch_size = 50;
    c.lr = LrSchedule::cosine(3e-3, 4, 0);
    c.seed = 3;
    Ok(c)
}

fn print_epochs(metrics: &[trainer::EpochMetrics]) {
    for m in metrics {
        println!(
            "epoch {} (step {:>2}): train loss {:.3}, validation top-1 {:.1} % (per step {:.2?})",
            m.epoch,
            m.step,
            m.train_loss,
            100.0 * m.val_top1,
            m.val_top1_per_step
        );
    }
}

/// Trains, reloads, evaluates and resumes in `dir`; returns the validation top-1 after the first
/// two epochs and after the resumed third.
fn run(dir: &Path) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let data = dir.join("gratings");
    let mut rng = Rng::new(11);
    let train = gratings(300, &mut rng);
    let val = gratings(100, &mut rng);
    datasets::idx::write_fashion_mnist_like(&data, (&train.0, &train.1), (&val.0, &val.1))?;

    let out = dir.join("run");
    let report = fit(config(&data)?, FitOptions::new(&out))?;
    println!(
        "{}: {} parameters, {} steps, {:?}",
        report.model, report.params, report.steps, report.outcome
    );
    print_epochs(&report.metrics);
    let trained = report
        .last()
        .map(|m| m.val_top1)
        .ok_or("no epoch finished")?;

    // The run folder names the model for every tool: its best checkpoint, with trained weights.
    let loaded = load_model(&out.to_string_lossy(), Device::Cpu)?;
    println!(
        "reloaded `{}` from {:?} ({} parameters, trained: {})",
        loaded.name,
        loaded.source,
        loaded.model.num_params(),
        loaded.is_trained()
    );
    let eval = evaluate_checkpoint(&out, None, None, Device::Cpu)?;
    println!(
        "evaluated again: top-1 {:.1} % on {} images",
        100.0 * eval.top1,
        eval.images
    );
    // The folder's model is its best checkpoint: it scores what it scored when it was saved.
    if Some(eval.top1) != report.best_val_top1 {
        return Err(format!(
            "the reloaded model scores {} instead of {:?}",
            eval.top1, report.best_val_top1
        )
        .into());
    }

    // One more epoch: the budget may grow on resume, everything else is the stored run's.
    let mut more = config(&data)?;
    more.epochs = 3;
    let mut opts = FitOptions::new(&out);
    opts.resume = true;
    let resumed = fit(more, opts)?;
    if resumed.outcome != Outcome::Finished || resumed.metrics.len() != 3 {
        return Err(format!("the resumed run ended {:?}", resumed.outcome).into());
    }
    println!("resumed for a third epoch:");
    print_epochs(&resumed.metrics[2..]);
    let last = resumed
        .last()
        .map(|m| m.val_top1)
        .ok_or("no epoch finished")?;
    Ok((trained, last))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            run(Path::new(&dir))?;
        }
        None => {
            run(tempfile::tempdir()?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml): the model learns
    /// the orientations well above chance (10 %).
    #[test]
    fn runs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (two, three) = super::run(dir.path())?;
        assert!(two > 0.2 && three > 0.2, "top-1 {two} then {three}");
        Ok(())
    }
}
