//! Trains the compact RGC written with compile-time shapes ([`topology::typed::CompactRgc`]) on
//! Fashion-MNIST with a plain Adam loop, then reports its test accuracy.
//!
//! Every connection of the model is checked by the compiler: `conv2`'s 32-channel 14×14 output is
//! what `cell2: Rgc<32, 32, 14, 14>` steps on, and wiring it into the 64-channel cell of `conv3`
//! does not build. The data comes from `datasets` (Debian's `dataset-fashion-mnist` package or
//! `$CONVRNN_DATA_DIR`; the error says where it looked).
//!
//! Run with `cargo run --release -p topology --example typed_compact_rgc -- [STEPS] [BATCH]`
//! (default 300 steps of 32 images, a few minutes on 2 cores). `cargo test -p topology` runs it
//! for four steps of eight images (skipped where Fashion-MNIST is not installed).

use datasets::{Batcher, BatcherConfig, FashionMnist};
use std::collections::HashMap;
use std::sync::Arc;
use tensor::{no_grad, Device, Tensor};
use topology::typed::{CompactRgc, Image};

/// Unroll length: the compact presets' default.
const STEPS: usize = 8;

/// Adam (β = 0.9, 0.999, ε = 1e-8) over named parameters.
#[derive(Default)]
struct Adam {
    moments: HashMap<String, (Tensor, Tensor)>,
    t: i32,
}

impl Adam {
    fn update(
        &mut self,
        model: &CompactRgc,
        grads: &tensor::Gradients,
        lr: f32,
    ) -> tensor::Result<()> {
        let _no_tape = no_grad();
        self.t += 1;
        let (b1, b2) = (0.9f32, 0.999f32);
        for (name, p, g) in model.params().grads_for(grads) {
            let Some(g) = g else { continue };
            let (m, v) = match self.moments.get(name) {
                Some((m, v)) => (
                    m.mul_scalar(b1)?.add(&g.mul_scalar(1.0 - b1)?)?,
                    v.mul_scalar(b2)?.add(&g.sqr()?.mul_scalar(1.0 - b2)?)?,
                ),
                None => (g.mul_scalar(1.0 - b1)?, g.sqr()?.mul_scalar(1.0 - b2)?),
            };
            let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
            let denom = v.sqrt()?.affine(1.0 / c2.sqrt(), 1e-8)?;
            p.assign(&p.sub(&m.div(&denom)?.mul_scalar(lr / c1)?)?)?;
            self.moments.insert(name.to_string(), (m, v));
        }
        Ok(())
    }
}

/// Top-1 hits of `logits` `[N, 10]` against `labels`.
fn hits(logits: &Tensor, labels: &[usize]) -> tensor::Result<usize> {
    let v = logits.to_vec()?;
    Ok(v.chunks(10)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i);
            best == Some(label)
        })
        .count())
}

/// Trains for `steps` steps of `batch` images, printing the training loss and accuracy every
/// `log_every` steps, then returns the test accuracy on `test_batches` batches of 200.
fn run(
    data: FashionMnist,
    steps: usize,
    batch: usize,
    log_every: usize,
    test_batches: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let train = Batcher::new(Arc::new(data.train), BatcherConfig::train(batch, 0))?;
    let test = Batcher::new(Arc::new(data.test), BatcherConfig::eval(200))?;
    let model = CompactRgc::new(Device::Cpu, 0)?;
    println!("{model:?}");

    let mut adam = Adam::default();
    let (mut seen, mut correct, mut loss_sum) = (0usize, 0usize, 0f64);
    for (step, b) in train.epoch(0).take(steps).enumerate() {
        let (images, labels) = b?.into_tensor(Device::Cpu)?;
        // The one run-time shape check: the batcher's tensor becomes a typed 1×28×28 image.
        let image = Image::new(images)?;
        let logits = model.unroll(&image, STEPS)?;
        let last = logits.last().ok_or("no steps")?.tensor();
        let loss = last.cross_entropy(&labels, 0.0)?;
        let value = loss.to_scalar()?;
        if !value.is_finite() {
            return Err(format!("the loss became {value} at step {step}").into());
        }
        loss_sum += value as f64;
        correct += hits(last, &labels)?;
        seen += labels.len();
        adam.update(&model, &loss.backward()?, 2e-3)?;
        if (step + 1) % log_every == 0 {
            println!(
                "step {:>4}: loss {:.3}, train accuracy {:.1} %",
                step + 1,
                loss_sum / log_every as f64,
                100.0 * correct as f64 / seen as f64
            );
            (seen, correct, loss_sum) = (0, 0, 0.0);
        }
    }

    let _inference = no_grad();
    let (mut n, mut correct) = (0usize, 0usize);
    for b in test.epoch(0).take(test_batches) {
        let (images, labels) = b?.into_tensor(Device::Cpu)?;
        let logits = model.unroll(&Image::new(images)?, STEPS)?;
        correct += hits(logits.last().ok_or("no steps")?.tensor(), &labels)?;
        n += labels.len();
    }
    let accuracy = correct as f64 / n.max(1) as f64;
    println!(
        "test accuracy on {n} images after {steps} steps: {:.1} %",
        100.0 * accuracy
    );
    Ok(accuracy)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map_or(Ok(300), |s| s.parse())?;
    let batch: usize = args.next().map_or(Ok(32), |s| s.parse())?;
    run(FashionMnist::locate_and_load(None)?, steps, batch, 25, 10)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use datasets::{Error, FashionMnist};

    /// `cargo test` runs the example for a few steps (`test = true` in topology's Cargo.toml);
    /// skipped, with a message, where Fashion-MNIST is not installed.
    #[test]
    fn runs_a_few_steps() -> Result<(), Box<dyn std::error::Error>> {
        let data = match FashionMnist::locate_and_load(None) {
            Err(e @ Error::NotFound { .. }) => {
                eprintln!("skipped: {e}");
                return Ok(());
            }
            other => other?,
        };
        let accuracy = super::run(data, 4, 8, 2, 1)?;
        assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
        Ok(())
    }
}
