//! `cargo xtask bench extract`: feature extraction as neural fitting uses it — a model unrolled on
//! the `neural` presentation (26 steps, image off at step 10) without gradients, every area's
//! output and the logits at every step copied to the host — in stimuli per second.
//! `benches/tf_reference_extract.py` times the reference TensorFlow code on the same work and the
//! same images (the parity fixtures' hashed pixels, `images`).

use crate::machine::{self, Machine};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::time::Instant;
use tensor::{no_grad, Device, Tensor};
use topology::{Frames, Needed, Presentation, UnrollOptions, DEFAULT_BLANK};

#[derive(Args, Debug, Clone)]
pub struct ExtractArgs {
    /// A preset (random weights: the speed does not depend on them), a spec file, or a run
    /// directory (e.g. an imported checkpoint: its weights).
    #[arg(long, default_value = "rgc_intermediate")]
    pub model: String,
    /// Stimuli per batch.
    #[arg(long, default_value_t = 16, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub batch: usize,
    /// Timed batches (after one warm-up batch).
    #[arg(long, default_value_t = 4, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub batches: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ExtractResult {
    model: String,
    size: usize,
    batch: usize,
    batches: usize,
    steps: usize,
    /// Activation and logit values copied to the host per stimulus (the work both sides do).
    values_per_stimulus: usize,
    stimuli_per_s: f64,
    /// Process CPU seconds (user + system) per stimulus: comparable on a shared machine.
    cpu_s_per_stimulus: f64,
    machine: Machine,
    date: String,
}

/// The images of the parity fixtures (`tf-import/tests/reference/make_reference.py`), which
/// `benches/tf_reference_extract.py` feeds the reference too: channel `c` of pixel `(h, w)` of
/// image `b` is `(hash >> 24) / 255` with `hash = (((b·H + h)·W + w)·C + c) · 2654435761 mod 2³²`,
/// then normalised by the ImageNet mean and standard deviation. `[N, C, H, W]`.
fn images(batch: usize, c: usize, h: usize, w: usize, device: Device) -> Result<Tensor> {
    let (mean, std) = (datasets::IMAGENET_MEAN, datasets::IMAGENET_STD);
    let mut v = vec![0f32; batch * c * h * w];
    for b in 0..batch {
        for ci in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let flat = (((b * h + y) * w + x) * c + ci) as u64;
                    let hash = (flat * 2_654_435_761) % (1 << 32);
                    let p = (hash >> 24) as f32 / 255.0;
                    v[((b * c + ci) * h + y) * w + x] =
                        (p - mean[ci % mean.len()]) / std[ci % std.len()];
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, [batch, c, h, w], device)?)
}

pub fn run(args: &ExtractArgs) -> Result<()> {
    let r = measure(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{}: {} px, 26 steps, every area at every step: {:.2} stimuli/s ({:.2} CPU s per stimulus; batch {}, {} batches)",
            r.model, r.size, r.stimuli_per_s, r.cpu_s_per_stimulus, r.batch, r.batches
        );
    }
    Ok(())
}

fn measure(args: &ExtractArgs) -> Result<ExtractResult> {
    let device: Device = args.device.parse().map_err(anyhow::Error::msg)?;
    let model = trainer::load_model(&args.model, device)
        .map(|loaded| loaded.model)
        .with_context(|| format!("loading {}", args.model))?;
    let inp = model.spec.input;
    let image = images(args.batch, inp.channels, inp.height, inp.width, device)?;
    let frames = Frames::Image {
        image,
        presentation: Presentation::Neural,
        blank: DEFAULT_BLANK,
    };
    let opts = UnrollOptions {
        needed: Needed::Everything,
        ..Default::default()
    };
    let _guard = no_grad();
    let extract = || -> Result<usize> {
        let out = model.unroll(&frames, &opts)?;
        let mut values = 0;
        for y in out.outputs.iter().flatten().chain(&out.logits).flatten() {
            values += y.to_vec()?.len();
        }
        Ok(values)
    };
    let values = extract()?; // warm-up: primitive caches, weight reorders
    let (t0, c0) = (Instant::now(), machine::process_cpu_seconds()?);
    for _ in 0..args.batches {
        extract()?;
    }
    let (secs, cpu) = (
        t0.elapsed().as_secs_f64(),
        machine::process_cpu_seconds()? - c0,
    );
    let stimuli = (args.batch * args.batches) as f64;
    let r = ExtractResult {
        model: model.spec.name.clone(),
        size: inp.height,
        batch: args.batch,
        batches: args.batches,
        steps: 26,
        values_per_stimulus: values / args.batch,
        stimuli_per_s: stimuli / secs,
        cpu_s_per_stimulus: cpu / stimuli,
        machine: Machine::detect(),
        date: machine::today_utc(),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference script computes the same pixel (numpy, NHWC): image 1, channel 2, row 5,
    /// column 7 hashes to 983281159, whose top byte 58 normalises to −0.79355115.
    #[test]
    fn images_are_the_parity_fixtures_pixels_in_nchw() {
        let t = images(2, 3, 224, 224, Device::Cpu).expect("images");
        assert_eq!(t.dims(), &[2, 3, 224, 224]);
        let v = t.to_vec().expect("values");
        let at = ((3 + 2) * 224 + 5) * 224 + 7;
        assert!((v[at] - -0.793_551_15).abs() < 1e-6, "{}", v[at]);
        // Pixel 0 hashes to 0: the channel's mean maps to −mean/std.
        assert!((v[0] - (-0.485 / 0.229)).abs() < 1e-6);
    }

    #[test]
    fn a_small_model_extracts_and_reports() {
        let args = ExtractArgs {
            model: "compact_timedecay".into(),
            batch: 2,
            batches: 1,
            device: "cpu".into(),
            json: true,
        };
        let r = measure(&args).expect("runs");
        // Every area's map and the logits, at each of the 26 steps.
        let spec = trainer::load_spec("compact_timedecay").expect("preset");
        let shapes = topology::infer(&spec).expect("shapes");
        let per_step: usize = shapes
            .areas
            .iter()
            .map(|a| a.output.iter().product::<usize>())
            .sum::<usize>()
            + spec.num_classes;
        assert_eq!(r.values_per_stimulus, 26 * per_step);
        assert!(r.stimuli_per_s > 0.0 && r.cpu_s_per_stimulus >= 0.0);
        let bad = ExtractArgs { batch: 0, ..args };
        assert!(measure(&bad).is_err());
    }
}
