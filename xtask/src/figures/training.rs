//! The scales of a figures run and its training stages: one model trained with one seed on the
//! clutter variant of Fashion-MNIST, evaluated per time step and with the decoders last,
//! max_conf and thresh. Training checkpoints into the stage's work folder, so an interrupted
//! stage continues from its last checkpoint.

use super::models::{Candidate, Family};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tensor::Device;
use topology::Decoder;
use trainer::{DataSpec, FitOptions, LrSchedule, Outcome, TrainConfig};

/// How much a figures run computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// A smoke test (a few minutes): every stage and figure, numbers that mean nothing.
    Micro,
    /// The default: every figure with honest error bars in about half an hour on 2 CPU cores.
    Quick,
    /// The configuration to publish: more seeds, the whole training set, longer training.
    Full,
}

/// What a scale sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleConfig {
    pub seeds: Vec<u64>,
    /// Clutter images generated for training and for validation.
    pub train_images: usize,
    pub eval_images: usize,
    pub epochs: u64,
    pub batch_size: usize,
    /// Peak learning rate of the cosine schedule (AdamW).
    pub lr: f32,
    pub warmup_steps: u64,
    /// Clutter difficulty (0 mild to 1 hard).
    pub difficulty: f32,
}

impl Scale {
    pub fn config(self) -> ScaleConfig {
        match self {
            Scale::Micro => ScaleConfig {
                seeds: vec![0, 1, 2],
                train_images: 64,
                eval_images: 64,
                epochs: 1,
                batch_size: 16,
                lr: 3e-3,
                warmup_steps: 1,
                difficulty: 0.5,
            },
            // Batch 16 at 5e-3 for 300 steps: on the quick budget the models sit on a plateau
            // near chance for their first hundred or so steps, and twice the steps at half the
            // batch (the same CPU per image) with a higher rate get more of them off it
            // (docs/FIGURES.md, "Power of the quick scale").
            Scale::Quick => ScaleConfig {
                seeds: vec![0, 1, 2],
                train_images: 4_800,
                eval_images: 1_000,
                epochs: 1,
                batch_size: 16,
                lr: 5e-3,
                warmup_steps: 30,
                difficulty: 0.5,
            },
            Scale::Full => ScaleConfig {
                seeds: vec![0, 1, 2, 3, 4],
                train_images: 60_000,
                eval_images: 10_000,
                epochs: 5,
                batch_size: 64,
                lr: 2e-3,
                warmup_steps: 200,
                difficulty: 0.5,
            },
        }
    }
}

/// The training data of every model: the clutter variant, generated from Fashion-MNIST.
pub fn data_spec(scale: &ScaleConfig, fashion_mnist_dir: Option<&Path>) -> DataSpec {
    DataSpec::Clutter {
        dir: fashion_mnist_dir.map(Path::to_path_buf),
        train_count: scale.train_images,
        test_count: scale.eval_images,
        difficulty: scale.difficulty,
        seed: 1,
    }
}

/// The identity of the source images (Fashion-MNIST, both splits) and of the clutter generator,
/// part of every training stage's key.
pub fn data_fingerprint(fashion_mnist_dir: Option<&Path>) -> Result<String> {
    let fm = match fashion_mnist_dir {
        Some(d) => datasets::FashionMnist::load_any_count(d),
        None => datasets::FashionMnist::locate_and_load(None),
    }
    .context("loading Fashion-MNIST (`cargo xtask doctor` says how to install it)")?;
    Ok(format!(
        "fashion-mnist train {:016x} test {:016x}, clutter v{}",
        datasets::clutter::source_fingerprint(&fm.train),
        datasets::clutter::source_fingerprint(&fm.test),
        datasets::clutter::CLUTTER_FORMAT_VERSION
    ))
}

/// The run configuration of `model` with `seed`.
pub fn train_config(
    model: &Candidate,
    seed: u64,
    scale: &ScaleConfig,
    data: &DataSpec,
    device: Device,
) -> Result<TrainConfig> {
    let shapes =
        topology::infer(&model.spec).with_context(|| format!("the shapes of {}", model.id))?;
    // The confidence-based decoders read only the steps whose logits the image has reached (the
    // reference reads steps [number of layers, T)).
    let from = shapes.readout_first_step;
    let mut c = TrainConfig::for_model(model.spec.clone(), data.clone());
    c.epochs = scale.epochs;
    c.batch_size = scale.batch_size;
    c.lr = LrSchedule::cosine(scale.lr, scale.warmup_steps, 0);
    c.seed = seed;
    c.decoders = decoders(from);
    c.checkpoint_every = 100;
    c.device = device;
    c.validate()?;
    Ok(c)
}

/// The decoders the figures report: last, max_conf and thresh (0.9), the latter two reading the
/// steps from `from`, the first one the image reaches the readout (the reference reads steps
/// [number of layers, T)).
pub fn decoders(from: usize) -> Vec<Decoder> {
    vec![
        Decoder::Last,
        Decoder::MaxConf { from, beta: 1.0 },
        Decoder::Thresh {
            from,
            threshold: 0.9,
            beta: 1.0,
        },
    ]
}

/// What makes a training stage: the configuration without the settings that do not change its
/// result (the device, where the data files are), and the data's fingerprint.
pub fn stage_config(config: &TrainConfig, data_fingerprint: &str) -> serde_json::Value {
    let mut c = config.clone();
    c.device = Device::Cpu;
    if let DataSpec::Clutter { dir, .. } | DataSpec::FashionMnist { dir } = &mut c.data {
        *dir = None;
    }
    serde_json::json!({ "train": c, "data": data_fingerprint })
}

/// One decoder's validation top-1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderTop1 {
    pub name: String,
    pub top1: f64,
}

/// A training stage's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub id: String,
    pub family: Family,
    pub seed: u64,
    pub params: usize,
    /// The first step whose logits the image reaches.
    pub first_readout_step: usize,
    /// Validation top-1 of each step's logits alone.
    pub top1_per_step: Vec<f64>,
    pub decoders: Vec<DecoderTop1>,
    pub optimiser_steps: u64,
    /// Wall time the stage took, summed over every invocation that worked on it (a training
    /// stage stopped and continued).
    pub wall_seconds: f64,
    /// Process CPU time (user + system) the stage took, likewise summed, where the platform
    /// reports it.
    pub cpu_seconds: Option<f64>,
    pub device: String,
    /// The machine that computed the stage ([`crate::machine::Machine::label`]): a long run
    /// continued on another machine has stages of both. Absent in stages from before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The run folder (checkpoints, metrics, plots), relative to the output folder.
    pub run_dir: PathBuf,
}

impl Trained {
    /// The top-1 of decoder `name`.
    pub fn decoder(&self, name: &str) -> Option<f64> {
        self.decoders
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.top1)
    }
}

/// Trains and evaluates one model in `work` (continuing a run left there). With `verbose` the
/// run prints the trainer's own progress: where it starts or resumes, plain progress lines every
/// 30 s and a line per epoch (only for logs: on a terminal the stages' bar is shown instead).
pub fn train(
    model: &Candidate,
    config: TrainConfig,
    work: &Path,
    out: &Path,
    stop: Option<Arc<AtomicBool>>,
    verbose: bool,
) -> Result<Trained> {
    let first_readout_step = topology::infer(&model.spec)?.readout_first_step;
    let device = config.device.to_string();
    let seed = config.seed;
    let run = work.join("run");
    let mut opts = FitOptions::new(&run);
    opts.resume = run.join(trainer::checkpoint::LATEST).is_file();
    opts.stop = stop;
    opts.verbose = verbose;
    let spent_before = Spent::read(work);
    let (wall, cpu) = (std::time::Instant::now(), cpu_seconds());
    let fitted = trainer::fit(config, opts);
    // This invocation's time joins the earlier ones' whatever the outcome, so a stage stopped
    // and continued (a long run split over sittings) reports all of its time.
    let spent = spent_before.plus(
        wall.elapsed().as_secs_f64(),
        cpu.zip(cpu_seconds()).map(|(a, b)| b - a),
    );
    spent.write(work)?;
    let report = fitted?;
    match report.outcome {
        Outcome::Finished | Outcome::MaxSteps => {}
        Outcome::Interrupted => bail!("interrupted (the next run continues from the checkpoint)"),
        Outcome::Stopped => bail!("the run stopped before its budget"),
    }
    let m = report
        .last()
        .context("the run finished without evaluating an epoch")?;
    Ok(Trained {
        id: model.id.clone(),
        family: model.family,
        seed,
        params: report.params,
        first_readout_step,
        top1_per_step: m.val_top1_per_step.clone(),
        decoders: m
            .val_decoders
            .iter()
            .map(|d| DecoderTop1 {
                name: d.name.clone(),
                top1: d.top1,
            })
            .collect(),
        optimiser_steps: report.steps,
        wall_seconds: spent.wall_seconds,
        cpu_seconds: spent.cpu_seconds,
        device,
        machine: Some(crate::machine::Machine::detect().label()),
        run_dir: run.strip_prefix(out).unwrap_or(&run).to_path_buf(),
    })
}

/// The time a training stage has taken over every invocation that worked on it, kept in its
/// work folder (a process killed outright loses its own share: the file is written when
/// training returns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Spent {
    wall_seconds: f64,
    /// `None` once any invocation could not measure it.
    cpu_seconds: Option<f64>,
    invocations: u32,
}

impl Spent {
    const FILE: &'static str = "time.json";

    /// The record in `work`, or nothing spent (none yet, or unreadable: it only adds to the
    /// reported time, never to the results).
    fn read(work: &Path) -> Spent {
        std::fs::read(work.join(Self::FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn plus(&self, wall: f64, cpu: Option<f64>) -> Spent {
        let first = self.invocations == 0;
        Spent {
            wall_seconds: self.wall_seconds + wall,
            cpu_seconds: match (self.cpu_seconds, cpu) {
                (Some(a), Some(b)) => Some(a + b),
                (None, Some(b)) if first => Some(b),
                _ => None,
            },
            invocations: self.invocations + 1,
        }
    }

    fn write(&self, work: &Path) -> Result<()> {
        let path = work.join(Self::FILE);
        tensor::io::write_file_atomically(&path, serde_json::to_string(self)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// User + system CPU time of this process so far (all threads).
pub fn cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        rusage_seconds(libc::RUSAGE_SELF)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// User + system CPU time of the child processes waited for so far (and theirs).
pub fn children_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        rusage_seconds(libc::RUSAGE_CHILDREN)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn rusage_seconds(who: libc::c_int) -> Option<f64> {
    {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a complete rusage into the pointer it is given.
        let rc = unsafe { libc::getrusage(who, u.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: initialised by the successful call above.
        let u = unsafe { u.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        Some(secs(u.ru_utime) + secs(u.ru_stime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_config_ignores_device_and_data_location_only() {
        let set = super::super::models::matched_size_set().unwrap();
        let scale = Scale::Micro.config();
        let data = data_spec(&scale, Some(Path::new("/somewhere")));
        let c = train_config(&set[0], 0, &scale, &data, Device::Cpu).unwrap();
        let mut moved = c.clone();
        moved.data = data_spec(&scale, None);
        moved.device = Device::Cuda(0);
        assert_eq!(stage_config(&c, "d"), stage_config(&moved, "d"));
        let mut reseeded = c.clone();
        reseeded.seed = 1;
        assert_ne!(stage_config(&c, "d"), stage_config(&reseeded, "d"));
        assert_ne!(stage_config(&c, "d"), stage_config(&c, "other data"));
        assert_eq!(c.decoders.len(), 3);
        assert!(matches!(c.decoders[1], Decoder::MaxConf { from: 3, .. }));
    }

    #[test]
    fn quick_trains_every_model_with_one_budget_past_the_plateau() {
        let scale = Scale::Quick.config();
        let data = data_spec(&scale, None);
        let mut models = super::super::models::matched_size_set().unwrap();
        models.extend(super::super::models::depth_series().unwrap());
        let batches = (scale.train_images / scale.batch_size) as u64;
        let budget = |m: &Candidate| {
            let mut c = train_config(m, 0, &scale, &data, Device::Cpu).unwrap();
            c.finalise(batches);
            (c.run_length(batches), c.lr, c.data)
        };
        let first = budget(&models[0]);
        for m in &models[1..] {
            assert_eq!(budget(m), first, "{} trains under another budget", m.id);
        }
        // The quick models spend their first 100-150 steps near chance (docs/FIGURES.md), so the
        // budget must reach well past that, with the whole configured warm-up inside the run.
        let (steps, lr, _) = first;
        assert!(steps >= 250, "{steps} optimiser steps");
        assert_eq!(lr.warmup_steps, scale.warmup_steps, "warm-up cut short");
    }

    #[test]
    fn a_stage_continued_over_several_invocations_reports_all_their_time() {
        let work = tempfile::tempdir().unwrap();
        assert_eq!(Spent::read(work.path()), Spent::default());
        Spent::read(work.path())
            .plus(10.0, Some(15.0))
            .write(work.path())
            .unwrap();
        let two = Spent::read(work.path()).plus(5.0, Some(8.0));
        assert_eq!(
            two,
            Spent {
                wall_seconds: 15.0,
                cpu_seconds: Some(23.0),
                invocations: 2
            }
        );
        // One invocation without a CPU time makes the total unknown, not too small.
        assert_eq!(two.plus(1.0, None).cpu_seconds, None);
        assert_eq!(two.plus(1.0, None).plus(1.0, Some(1.0)).cpu_seconds, None);
        // A damaged record counts as nothing spent before.
        std::fs::write(work.path().join(Spent::FILE), "{not json").unwrap();
        assert_eq!(Spent::read(work.path()), Spent::default());
    }

    #[test]
    fn scales_grow() {
        let (m, q, f) = (
            Scale::Micro.config(),
            Scale::Quick.config(),
            Scale::Full.config(),
        );
        assert!(q.seeds.len() >= 3, "figure 1 needs at least 3 seeds");
        assert!(m.train_images < q.train_images && q.train_images < f.train_images);
        assert!(f.seeds.len() >= q.seeds.len());
    }
}
