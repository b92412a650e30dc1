//! `cargo xtask train` (the main job), `cargo xtask eval` and `cargo xtask demo`.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tensor::Device;
use topology::Decoder;
use trainer::{
    DataSpec, Decay, FitOptions, FitReport, GradClip, LossSteps, LrSchedule, OptimizerSpec,
    Outcome, TrainConfig,
};

/// Creates one value on `device`, so that a command which would first open a study or start a
/// long pipeline stops at once on a device this build or machine lacks (no `cuda` feature, no
/// driver, no such ordinal) with the engine's own message.
pub fn check_device(device: Device) -> Result<()> {
    if !device.is_cpu() {
        tensor::Tensor::zeros([1], device).with_context(|| format!("--device {device}"))?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    /// Fashion-MNIST (Debian's dataset-fashion-mnist, or --data-dir).
    FashionMnist,
    /// The generated clutter/occlusion variant of Fashion-MNIST (cached).
    Clutter,
    /// ImageNet-style folders: `--data-dir/train/<class>/*.jpg` and `--data-dir/val/<class>/*.jpg`.
    Folder,
    /// WebDataset shards: --data-dir/train/*.tar and --data-dir/val/*.tar (`cargo xtask shards`
    /// writes them from a folder root).
    Shards,
}

impl DatasetArg {
    /// The kind of `d`.
    fn of(d: &DataSpec) -> Self {
        match d {
            DataSpec::FashionMnist { .. } => DatasetArg::FashionMnist,
            DataSpec::Clutter { .. } => DatasetArg::Clutter,
            DataSpec::Folder { .. } => DatasetArg::Folder,
            DataSpec::Shards { .. } => DatasetArg::Shards,
        }
    }

    /// The name `--dataset` takes.
    fn name(self) -> String {
        value_name(self)
    }
}

/// The name a flag takes for `v` (`fashion-mnist`, `adamw`, …).
fn value_name<T: ValueEnum + std::fmt::Debug>(v: T) -> String {
    v.to_possible_value()
        .map_or_else(|| format!("{v:?}"), |p| p.get_name().to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecipeArg {
    /// SGD Nesterov 0.9, weight decay 1e-4, value clipping 0.32, lr 0.01 × batch/256 decayed
    /// ×0.1 after epochs 30, 60, 80 of 90, batch 256, loss on the last step.
    Imagenet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimArg {
    Sgd,
    Adam,
    Adamw,
}

impl OptimArg {
    /// The kind of `o`.
    fn of(o: &OptimizerSpec) -> Self {
        match o {
            OptimizerSpec::Sgd { .. } => OptimArg::Sgd,
            OptimizerSpec::Adam { .. } => OptimArg::Adam,
            OptimizerSpec::AdamW { .. } => OptimArg::Adamw,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    Cosine,
    Step,
    Constant,
}

/// Settings shared by `train`, `demo` and `search` (model and data come separately).
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// A zoo preset (see `cargo xtask models`) [default: compact_rgc].
    #[arg(long, conflicts_with = "spec")]
    pub model: Option<String>,
    /// A model spec JSON file instead of a preset.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// A named recipe (imagenet: the paper's ImageNet training, docs/IMAGENET.md); flags given
    /// explicitly override its settings.
    #[arg(long, value_enum)]
    pub recipe: Option<RecipeArg>,
    /// A complete run configuration (TrainConfig JSON, as written to OUT/config.json); other
    /// flags given explicitly override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// [default: fashion-mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetArg>,
    /// Where the data is (Fashion-MNIST IDX files, or the folder or shard root).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Shards: samples held by the shuffle buffer (default 5000).
    #[arg(long)]
    pub shuffle_buffer: Option<usize>,
    /// Clutter difficulty, 0 (mild) to 1 (hard) [default: 0.5].
    #[arg(long)]
    pub difficulty: Option<f32>,
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Stop after this many optimiser steps in total.
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimArg>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// SGD momentum (Nesterov unless --no-nesterov).
    #[arg(long)]
    pub momentum: Option<f32>,
    #[arg(long)]
    pub no_nesterov: bool,
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Linear warm-up steps (default 200; never more than a tenth of the run: a value given here
    /// that is cut says so).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Step schedule: steps at which the rate is multiplied by --gamma (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<u64>,
    /// Step schedule: the factor at each milestone [default: 0.1].
    #[arg(long)]
    pub gamma: Option<f32>,
    /// Clip the global gradient norm to this value.
    #[arg(long, conflicts_with = "clip_value")]
    pub clip_norm: Option<f32>,
    /// Clip every gradient component to [-v, v].
    #[arg(long)]
    pub clip_value: Option<f32>,
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Average the loss over steps FROM:TO (TO exclusive) instead of the last step.
    #[arg(long)]
    pub loss_window: Option<String>,
    /// Unroll length (default: the model's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Train on only the first N training images.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N validation images.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub eval_limit: Option<usize>,
    /// Write the latest checkpoint every N steps (and at every epoch end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
}

/// The preset `--model` names when it is not given.
pub const DEFAULT_MODEL: &str = "compact_rgc";

impl TrainArgs {
    /// The preset named by `--model`, or the default.
    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    /// The data these flags describe on top of `base` (the configuration's, or none for a new
    /// run): `--dataset` picks the kind (the base's when not given, else Fashion-MNIST); the
    /// other data flags change only what they name, and one the kind does not take is an error
    /// (it used to be ignored, and `--difficulty` alone switched a clutter run to Fashion-MNIST).
    fn data_spec(&self, base: Option<&DataSpec>) -> Result<DataSpec> {
        let kind = self
            .dataset
            .or(base.map(DatasetArg::of))
            .unwrap_or(DatasetArg::FashionMnist);
        let only = |flag: &str, takes: DatasetArg| {
            anyhow::anyhow!(
                "{flag} applies to --dataset {}, and this run's data is {}",
                takes.name(),
                kind.name()
            )
        };
        if self.difficulty.is_some() && kind != DatasetArg::Clutter {
            return Err(only("--difficulty", DatasetArg::Clutter));
        }
        if self.shuffle_buffer.is_some() && kind != DatasetArg::Shards {
            return Err(only("--shuffle-buffer", DatasetArg::Shards));
        }
        // The base's settings where it is data of the same kind.
        let same = base.filter(|b| DatasetArg::of(b) == kind);
        let root = |what: &str| {
            let kept = match same {
                Some(DataSpec::Folder { root } | DataSpec::Shards { root, .. }) => Some(root),
                _ => None,
            };
            self.data_dir.clone().or(kept.cloned()).with_context(|| {
                format!("--dataset {what} needs --data-dir ROOT (with train/ and val/)")
            })
        };
        Ok(match kind {
            DatasetArg::FashionMnist => DataSpec::FashionMnist {
                dir: match same {
                    Some(DataSpec::FashionMnist { dir }) => self.data_dir.clone().or(dir.clone()),
                    _ => self.data_dir.clone(),
                },
            },
            DatasetArg::Clutter => match same {
                Some(DataSpec::Clutter {
                    dir,
                    train_count,
                    test_count,
                    difficulty,
                    seed,
                }) => DataSpec::Clutter {
                    dir: self.data_dir.clone().or(dir.clone()),
                    train_count: *train_count,
                    test_count: *test_count,
                    difficulty: self.difficulty.unwrap_or(*difficulty),
                    seed: *seed,
                },
                _ => DataSpec::Clutter {
                    dir: self.data_dir.clone(),
                    train_count: 60_000,
                    test_count: 10_000,
                    difficulty: self.difficulty.unwrap_or(0.5),
                    seed: 1,
                },
            },
            DatasetArg::Folder => DataSpec::Folder {
                root: root("folder")?,
            },
            DatasetArg::Shards => DataSpec::Shards {
                root: root("shards")?,
                shuffle_buffer: self.shuffle_buffer.unwrap_or(match same {
                    Some(DataSpec::Shards { shuffle_buffer, .. }) => *shuffle_buffer,
                    _ => datasets::ShardLoaderConfig::train(1, 0).shuffle_buffer,
                }),
            },
        })
    }

    /// The run configuration these flags describe (for one process).
    pub fn to_config(&self) -> Result<TrainConfig> {
        self.to_config_for(1)
    }

    /// The run configuration these flags describe for a job of `world` ranks: a recipe's
    /// schedule follows the global batch (`--batch-size` × `world`, or the recipe's own).
    pub fn to_config_for(&self, world: usize) -> Result<TrainConfig> {
        let base = match self.config_file()? {
            Some(c) => c,
            None => {
                let model = match &self.spec {
                    Some(p) => trainer::read_spec_file(p)?,
                    None => trainer::load_spec(self.model_name())?,
                };
                TrainConfig::for_model(model, self.data_spec(None)?)
            }
        };
        let base = match self.recipe {
            Some(r) => self.with_recipe(base, r, world)?,
            None => base,
        };
        self.apply(base)
    }

    /// `base` with a recipe's settings, at the global batch of `world` ranks of --batch-size or
    /// at the recipe's (global) batch; the training set is opened to count its batches (the
    /// schedule's epochs become steps).
    fn with_recipe(
        &self,
        mut base: TrainConfig,
        recipe: RecipeArg,
        world: usize,
    ) -> Result<TrainConfig> {
        let recipe = match recipe {
            RecipeArg::Imagenet => trainer::Recipe::Imagenet,
        };
        base.batch_size = self
            .batch_size
            .map_or(recipe.batch_size(), |b| b * world.max(1));
        let splits = trainer::data::load(&base.data, base.model.input.height)
            .context("opening the training data to size the recipe's schedule")?;
        let images = splits.train.len();
        let images = self.train_limit.map_or(images, |l| l.min(images));
        let batches = (images / base.batch_size.max(1)) as u64;
        recipe.apply(&mut base, batches);
        Ok(base)
    }

    /// The configuration a resume asks for: the stored run's (or `--config`'s), with only the
    /// flags given on this command line applied, so that whatever is not said stays as it was.
    pub fn to_resume_config(&self, stored: TrainConfig) -> Result<TrainConfig> {
        let base = self.config_file()?.unwrap_or(stored);
        self.apply(base)
    }

    fn config_file(&self) -> Result<Option<TrainConfig>> {
        let Some(p) = &self.config else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let c = serde_json::from_str::<TrainConfig>(&text)
            .with_context(|| format!("parsing {} as a training config", p.display()))?;
        Ok(Some(c))
    }

    /// `c` with every flag given explicitly applied.
    fn apply(&self, mut c: TrainConfig) -> Result<TrainConfig> {
        if let Some(spec) = &self.spec {
            c.model = trainer::read_spec_file(spec)?;
        } else if let Some(m) = &self.model {
            c.model = trainer::load_spec(m)?;
        }
        if self.dataset.is_some()
            || self.data_dir.is_some()
            || self.difficulty.is_some()
            || self.shuffle_buffer.is_some()
        {
            c.data = self.data_spec(Some(&c.data))?;
        }
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        if self.max_steps.is_some() {
            c.max_steps = self.max_steps;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        let wd = self
            .weight_decay
            .unwrap_or_else(|| c.optimizer.weight_decay());
        // --momentum and --no-nesterov change an SGD optimiser, the configuration's or the one
        // --optimizer makes; any other would ignore them.
        let optimizer = self.optimizer.unwrap_or_else(|| OptimArg::of(&c.optimizer));
        if (self.momentum.is_some() || self.no_nesterov) && optimizer != OptimArg::Sgd {
            bail!(
                "--momentum and --no-nesterov apply to --optimizer sgd, and this run's optimizer \
                 is {}",
                value_name(optimizer)
            );
        }
        if let Some(o) = self.optimizer {
            c.optimizer = match o {
                OptimArg::Sgd => OptimizerSpec::Sgd {
                    momentum: self.momentum.unwrap_or(0.9),
                    nesterov: !self.no_nesterov,
                    weight_decay: wd,
                },
                OptimArg::Adam => OptimizerSpec::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: wd,
                },
                OptimArg::Adamw => OptimizerSpec::adamw(wd),
            };
        } else {
            c.optimizer = c.optimizer.clone().with_weight_decay(wd);
            if let OptimizerSpec::Sgd {
                momentum, nesterov, ..
            } = &mut c.optimizer
            {
                if let Some(m) = self.momentum {
                    *momentum = m;
                }
                if self.no_nesterov {
                    *nesterov = false;
                }
            }
        }
        if let Some(lr) = self.lr {
            c.lr.base = lr;
        }
        if let Some(w) = self.warmup_steps {
            c.lr.warmup_steps = w;
        }
        // --milestones and --gamma change a step schedule, the configuration's or the one
        // --schedule step makes; any other would ignore them.
        let step_flags = !self.milestones.is_empty() || self.gamma.is_some();
        match self.schedule {
            Some(ScheduleArg::Step) => {
                if self.milestones.is_empty() {
                    bail!("--schedule step needs --milestones STEP,STEP,...");
                }
                c.lr.decay = Decay::Step {
                    milestones: self.milestones.clone(),
                    gamma: self.gamma.unwrap_or(0.1),
                };
            }
            Some(_) if step_flags => bail!("--milestones and --gamma apply to --schedule step"),
            Some(ScheduleArg::Cosine) => {
                c.lr.decay = Decay::Cosine {
                    total_steps: 0,
                    min_lr: 0.0,
                }
            }
            Some(ScheduleArg::Constant) => c.lr.decay = Decay::Constant,
            None if step_flags => {
                let Decay::Step { milestones, gamma } = &mut c.lr.decay else {
                    bail!(
                        "--milestones and --gamma apply to the step schedule: add --schedule step"
                    );
                };
                if !self.milestones.is_empty() {
                    *milestones = self.milestones.clone();
                }
                if let Some(g) = self.gamma {
                    *gamma = g;
                }
            }
            None => {}
        }
        if let Some(v) = self.clip_norm {
            c.clip = GradClip::Norm { max: v };
        }
        if let Some(v) = self.clip_value {
            c.clip = GradClip::Value { max: v };
        }
        if let Some(v) = self.label_smoothing {
            c.label_smoothing = v;
        }
        if let Some(w) = &self.loss_window {
            let (a, b) = w
                .split_once(':')
                .context("--loss-window takes FROM:TO, e.g. 4:8")?;
            c.loss = LossSteps::Window {
                from: a.trim().parse().context("--loss-window FROM")?,
                to: b.trim().parse().context("--loss-window TO")?,
            };
        }
        if self.steps.is_some() {
            c.steps = self.steps;
        }
        if self.train_limit.is_some() {
            c.train_limit = self.train_limit;
        }
        if self.eval_limit.is_some() {
            c.eval_limit = self.eval_limit;
        }
        if let Some(v) = self.checkpoint_every {
            c.checkpoint_every = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(d) = &self.device {
            c.device = d.parse::<Device>().map_err(anyhow::Error::msg)?;
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct TrainCmd {
    #[command(flatten)]
    pub args: TrainArgs,
    /// Output directory (default: runs/MODEL-DATASET).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint. Flags that contradict the stored run
    /// are an error (each named); --epochs and --max-steps may be raised to extend it.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: continue with the flags given even where they differ from the stored run
    /// (learning rate, batch size, …); the model must still fit the checkpoint's weights.
    #[arg(long, requires = "resume")]
    pub allow_changes: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Append a record (loss, lr, gradient norm, img/s, data-wait fraction) to OUT/steps.jsonl
    /// every N optimiser steps; 0 turns it off.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dist: crate::dist::DistArgs,
}

fn default_out(config: &TrainConfig) -> PathBuf {
    crate::workspace_root().join("runs").join(format!(
        "{}-{}",
        config.model.name,
        config.data.name()
    ))
}

pub fn train(cmd: &TrainCmd) -> Result<()> {
    let launch = cmd.dist.launch()?;
    if launch.world_size == 1 {
        // The ranks of a job install nothing: they would race for apt's lock.
        crate::doctor::install_missing_if_root();
    }
    if let Some(n) = cmd.dist.ranks_to_start(&launch) {
        return crate::dist::start_local_ranks(n);
    }
    let host = cmd.dist.connect_host(&launch)?;
    let (rank, world) = (host.rank(), host.world_size());
    // Rank 0 works out the run (it alone reads --out to resume); the other ranks receive it.
    let planned = if rank == 0 {
        plan(cmd, world)
    } else {
        Err(anyhow::anyhow!("planned on rank 0"))
    };
    let (out, config) = crate::dist::share(host.as_ref(), planned)?;
    let comm = cmd.dist.for_device(host, config.device)?;
    if rank == 0 && world > 1 {
        eprintln!(
            "{world} ranks ({} backend): global batch {} = {} per rank × {world}",
            comm.backend(),
            config.batch_size,
            config.batch_size / world
        );
    }
    let mut opts = FitOptions::new(&out);
    opts.resume = cmd.resume;
    opts.allow_changes = cmd.allow_changes;
    opts.verbose = !cmd.quiet;
    opts.log_every = cmd.log_every;
    opts.stop = Some(crate::stop::stop_flag()?);
    // A warm-up the user chose (the flag, or a configuration file) is worth a word when cut.
    opts.warn_warmup_cut = cmd.args.warmup_steps.is_some() || cmd.args.config.is_some();
    opts.collective = Some(comm.as_ref());
    let report = match trainer::fit(config, opts) {
        Ok(r) => r,
        Err(e) if world > 1 => {
            // The other ranks would wait for this one until their timeout: end the job now.
            eprintln!("error on rank {rank}: {:#}", explain(e));
            comm.abort(1);
        }
        Err(e) => return Err(explain(e)),
    };
    if rank != 0 {
        if report.outcome == Outcome::Interrupted {
            std::process::exit(130);
        }
        return Ok(());
    }
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    if report.outcome == Outcome::Interrupted {
        std::process::exit(130);
    }
    Ok(())
}

/// The run directory and configuration this command asks for, for a job of `world` ranks
/// (`--batch-size` is per rank; the configuration holds the global batch).
fn plan(cmd: &TrainCmd, world: usize) -> Result<(PathBuf, TrainConfig)> {
    let fresh = cmd.args.to_config_for(world);
    let out = match (&cmd.out, &fresh) {
        (Some(o), _) => o.clone(),
        (None, Ok(c)) => default_out(c),
        (None, Err(_)) if cmd.resume => bail!("--resume needs --out DIR, the run to continue"),
        (None, Err(e)) => bail!("{e:#}"),
    };
    let config = if cmd.resume {
        let latest = out.join(trainer::checkpoint::LATEST);
        if !latest.is_file() {
            return Err(explain(trainer::Error::NothingToResume { out }));
        }
        let stored = trainer::checkpoint::Checkpoint::read_config(&latest)?;
        cmd.args.to_resume_config(stored)?
    } else {
        fresh?
    };
    let mut config = config;
    config.batch_size = crate::dist::global_batch(
        cmd.args.batch_size,
        config.batch_size,
        // A recipe's batch is already global.
        cmd.args.config.is_none() && cmd.args.recipe.is_none() && !cmd.resume,
        world,
    );
    Ok((out, config))
}

/// Library errors carry their own explanation; this only adds the next step to take.
fn explain(e: trainer::Error) -> anyhow::Error {
    match e {
        trainer::Error::Data(datasets::Error::NotFound { .. }) => {
            anyhow::Error::new(e).context("the training data is missing (`cargo xtask doctor`)")
        }
        other => anyhow::Error::new(other),
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

fn print_summary(r: &FitReport) {
    let Some(m) = r.last() else {
        println!("{}: no epoch finished yet", r.out.display());
        return;
    };
    println!(
        "\n{} ({} parameters), {} steps, outcome: {:?}",
        r.model, r.params, r.steps, r.outcome
    );
    println!(
        "validation top-1 {}% (top-5 {}%), best {}%",
        pct(m.val_top1),
        pct(m.val_top5),
        r.best_val_top1.map_or("-".into(), pct)
    );
    println!("top-1 per time step (%):");
    let steps: Vec<String> = (0..m.val_top1_per_step.len())
        .map(|t| format!("{t:>5}"))
        .collect();
    println!("  step {}", steps.join(""));
    let accs: Vec<String> = m
        .val_top1_per_step
        .iter()
        .map(|a| format!("{:>5}", pct(*a)))
        .collect();
    println!("  top1 {}", accs.join(""));
    for d in &m.val_decoders {
        println!("decoder {:<9} top-1 {}%", d.name, pct(d.top1));
    }
    println!("run directory: {}", r.out.display());
}

#[derive(Args, Debug)]
pub struct EvalCmd {
    /// A checkpoint file, or a run directory (its best checkpoint).
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Evaluate on only the first N validation images.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub limit: Option<usize>,
    /// Also report the decoders avg (second half of the steps) and thresh (0.9).
    #[arg(long)]
    pub all_decoders: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Serialize)]
struct EvalJson<'a> {
    checkpoint: String,
    #[serde(flatten)]
    report: &'a trainer::EvalReport,
}

pub fn eval(cmd: &EvalCmd) -> Result<()> {
    let device: Device = cmd.device.parse().map_err(anyhow::Error::msg)?;
    let file = trainer::checkpoint::resolve(&cmd.checkpoint)?;
    let decoders = if cmd.all_decoders {
        let ck = trainer::checkpoint::Checkpoint::read(&file)?;
        let steps = ck.config.steps();
        let mut d = ck.config.decoders.clone();
        for extra in [
            Decoder::Avg {
                from: steps / 2,
                to: steps,
            },
            Decoder::MaxConf { from: 0, beta: 1.0 },
            Decoder::Thresh {
                from: 0,
                threshold: 0.9,
                beta: 1.0,
            },
        ] {
            if !d.iter().any(|x| x.name() == extra.name()) {
                d.push(extra);
            }
        }
        Some(d)
    } else {
        None
    };
    let report = trainer::evaluate_checkpoint(&file, decoders, cmd.limit, device)?;
    if cmd.json {
        let j = EvalJson {
            checkpoint: file.display().to_string(),
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!("{} on {} images", file.display(), report.images);
    println!("{:>6} {:>8} {:>8}", "step", "top-1 %", "top-5 %");
    for (t, (a, b)) in report
        .top1_per_step
        .iter()
        .zip(&report.top5_per_step)
        .enumerate()
    {
        println!("{t:>6} {:>8} {:>8}", pct(*a), pct(*b));
    }
    for d in &report.decoders {
        println!(
            "decoder {:<9} top-1 {}%  top-5 {}%",
            d.name,
            pct(d.top1),
            pct(d.top5)
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DemoCmd {
    /// Output directory (default: runs/demo).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Training images drawn from the clutter set per model.
    #[arg(long, default_value_t = 12_000, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub train_images: usize,
    /// Validation images.
    #[arg(long, default_value_t = 2_000, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub eval_images: usize,
    #[arg(long, default_value_t = 0.5)]
    pub difficulty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where Fashion-MNIST is.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Continue an interrupted demo.
    #[arg(long)]
    pub resume: bool,
}

pub const DEMO_MODELS: [&str; 2] = ["compact_feedforward", "compact_rgc"];

pub fn demo(cmd: &DemoCmd) -> Result<()> {
    let out = cmd
        .out
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("runs").join("demo"));
    // Said of --out itself, before the data are generated (it failed on `OUT/compact_…`).
    anyhow::ensure!(
        !out.exists() || out.is_dir(),
        "--out {}: is a file (expected a folder for the demo's two runs, created if missing)",
        out.display()
    );
    let data = DataSpec::Clutter {
        dir: cmd.data_dir.clone(),
        train_count: cmd.train_images,
        test_count: cmd.eval_images,
        difficulty: cmd.difficulty,
        seed: 1,
    };
    // Each model resumes only where it has a checkpoint (the second has none while the first is
    // interrupted); with none at all, --resume (a mistyped --out) would silently start afresh.
    if cmd.resume
        && DEMO_MODELS
            .iter()
            .all(|m| !out.join(m).join(trainer::checkpoint::LATEST).is_file())
    {
        return Err(trainer::Error::NothingToResume { out }.into());
    }
    crate::doctor::install_missing_if_root();
    let stop = crate::stop::stop_flag()?;
    let mut reports = Vec::new();
    for name in DEMO_MODELS {
        let model = trainer::load_spec(name)?;
        let mut c = TrainConfig::for_model(model, data.clone());
        c.epochs = 1;
        c.seed = cmd.seed;
        c.lr = LrSchedule::cosine(3e-3, 100, 0);
        let dir = out.join(name);
        let mut opts = FitOptions::new(&dir);
        opts.verbose = true;
        // A demo interrupted during its first model has not started the second.
        opts.resume = cmd.resume && dir.join(trainer::checkpoint::LATEST).is_file();
        opts.stop = Some(Arc::clone(&stop));
        let r = trainer::fit(c, opts).map_err(explain)?;
        if r.outcome == Outcome::Interrupted {
            eprintln!("demo interrupted; continue with `cargo xtask demo --resume`");
            std::process::exit(130);
        }
        reports.push(r);
    }
    demo_table(&out, &reports)
}

fn demo_table(out: &Path, reports: &[FitReport]) -> Result<()> {
    println!("\nclutter variant of Fashion-MNIST, same data, budget and recipe for both:");
    println!(
        "{:<22} {:>10} {:>12} {:>10}   top-1 per step (%)",
        "model", "params", "last step %", "img/s"
    );
    let mut curves = Vec::new();
    for r in reports {
        let m = r.last().context("a demo run finished without an epoch")?;
        println!(
            "{:<22} {:>10} {:>12} {:>10.1}   {}",
            r.model,
            r.params,
            pct(m.val_top1_per_step.last().copied().unwrap_or(0.0)),
            m.train_img_per_s,
            m.val_top1_per_step
                .iter()
                .map(|a| pct(*a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        curves.push((r.model.clone(), m.val_top1_per_step.clone()));
    }
    let plot = out.join("accuracy_per_step.svg");
    trainer::plot::accuracy_per_step(&plot, "clutter: validation top-1 by time step", &curves)?;
    println!("plots: {} and each model's plots/", plot.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        args: TrainArgs,
    }

    /// The configuration `cargo xtask train` would run with these flags (after the model and
    /// data options every case shares).
    fn resolve(data: &Path, flags: &[&str]) -> TrainConfig {
        let data = data.to_string_lossy();
        let mut argv = vec!["train", "--model", "rgc_shallow", "--dataset", "folder"];
        argv.extend(["--data-dir", &data]);
        argv.extend(flags);
        Flags::try_parse_from(&argv)
            .unwrap()
            .args
            .to_config()
            .unwrap()
    }

    /// train/ and val/ of 2 classes × 6 small JPEGs.
    fn two_class_folder() -> tempfile::TempDir {
        let data = tempfile::tempdir().unwrap();
        datasets::synthetic::write_splits(
            data.path(),
            &datasets::synthetic::SyntheticConfig::tiny(2, 6, 1),
        )
        .unwrap();
        data
    }

    #[derive(Parser)]
    struct Job {
        #[command(flatten)]
        cmd: TrainCmd,
    }

    /// On two ranks `--batch-size` is per rank and the recipe's batch is global: the learning
    /// rate and the step milestones follow the global batch, and the plan does not multiply a
    /// recipe's batch again.
    #[test]
    fn a_data_parallel_recipe_scales_with_the_global_batch() {
        let data = two_class_folder();
        let out = data.path().join("run");
        let (d, o) = (data.path().to_string_lossy(), out.to_string_lossy());
        let plan_for = |extra: &[&str]| {
            let mut argv = vec!["train", "--model", "rgc_shallow", "--dataset", "folder"];
            argv.extend(["--data-dir", &d, "--out", &o, "--recipe", "imagenet"]);
            argv.extend(extra);
            plan(&Job::try_parse_from(&argv).unwrap().cmd, 2).unwrap().1
        };
        // 2 per rank × 2 ranks = 4: 3 batches of the 12 images per epoch.
        let c = plan_for(&["--batch-size", "2"]);
        assert_eq!(c.batch_size, 4);
        assert_eq!(c.lr.base, 0.01 * 4.0 / 256.0);
        assert_eq!(
            c.lr.decay,
            Decay::Step {
                milestones: vec![90, 180, 240],
                gamma: 0.1
            }
        );
        assert_eq!(plan_for(&[]).batch_size, 256);
    }

    /// `--recipe imagenet` gives the values docs/IMAGENET.md lists, its step decay counted in the
    /// batches of the data at hand; flags given with it override it.
    #[test]
    fn the_imagenet_recipe_resolves_to_its_documented_values_and_flags_override_it() {
        let data = two_class_folder();

        let c = resolve(data.path(), &["--recipe", "imagenet"]);
        assert_eq!((c.batch_size, c.epochs), (256, 90));
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4
            }
        );
        assert_eq!(c.clip, GradClip::Value { max: 0.32 });
        assert_eq!(c.loss, LossSteps::Last);
        assert_eq!((c.steps(), c.label_smoothing), (16, 0.0));
        assert_eq!(c.lr.base, 0.01);
        assert_eq!(c.lr.warmup_steps, 0);
        // 12 images are less than one batch of 256: the milestones still count one per epoch.
        assert_eq!(
            c.lr.decay,
            Decay::Step {
                milestones: vec![30, 60, 80],
                gamma: 0.1
            }
        );

        // Batch 4: 3 batches per epoch, the rate scaled linearly with the batch.
        let c = resolve(data.path(), &["--recipe", "imagenet", "--batch-size", "4"]);
        assert_eq!(c.batch_size, 4);
        assert_eq!(c.lr.base, 0.01 * 4.0 / 256.0);
        assert_eq!(
            c.lr.decay,
            Decay::Step {
                milestones: vec![90, 180, 240],
                gamma: 0.1
            }
        );

        let c = resolve(
            data.path(),
            &[
                "--recipe",
                "imagenet",
                "--batch-size",
                "4",
                "--lr",
                "0.2",
                "--epochs",
                "3",
                "--weight-decay",
                "5e-5",
                "--no-nesterov",
                "--clip-norm",
                "1.5",
                "--loss-window",
                "8:16",
                "--steps",
                "16",
                "--schedule",
                "constant",
            ],
        );
        assert_eq!((c.batch_size, c.epochs, c.lr.base), (4, 3, 0.2));
        assert_eq!(c.lr.decay, Decay::Constant);
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: false,
                weight_decay: 5e-5
            }
        );
        assert_eq!(c.clip, GradClip::Norm { max: 1.5 });
        assert_eq!(c.loss, LossSteps::Window { from: 8, to: 16 });

        // Without the recipe the same model keeps the project's default recipe.
        let plain = resolve(data.path(), &[]);
        assert_eq!(
            (plain.optimizer, plain.batch_size, plain.clip),
            (OptimizerSpec::adamw(1e-4), 64, GradClip::Norm { max: 5.0 })
        );
    }

    /// Flags parsed as `cargo xtask train` would, resolved to a configuration or its error.
    fn try_resolve(argv: &[&str]) -> Result<TrainConfig> {
        let mut all = vec!["train"];
        all.extend(argv);
        Flags::try_parse_from(&all).unwrap().args.to_config()
    }

    /// A data flag changes only what it names, on the configuration's own data: `--difficulty`
    /// on a clutter configuration used to replace its data with Fashion-MNIST, and on data
    /// that has no difficulty (or `--shuffle-buffer` on data without a buffer) it was ignored.
    #[test]
    fn data_flags_apply_to_the_configured_data_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let clutter = DataSpec::Clutter {
            dir: None,
            train_count: 300,
            test_count: 100,
            difficulty: 0.2,
            seed: 7,
        };
        let base = TrainConfig::for_model(trainer::load_spec("compact_rgc").unwrap(), clutter);
        let file = dir.path().join("config.json");
        std::fs::write(&file, serde_json::to_string(&base).unwrap()).unwrap();
        let file = file.to_string_lossy();

        let c = try_resolve(&["--config", &file, "--difficulty", "0.8"]).unwrap();
        assert_eq!(
            c.data,
            DataSpec::Clutter {
                dir: None,
                train_count: 300,
                test_count: 100,
                difficulty: 0.8,
                seed: 7,
            }
        );
        let c = try_resolve(&["--config", &file, "--data-dir", "/data/fm"]).unwrap();
        assert!(
            matches!(&c.data, DataSpec::Clutter { dir: Some(d), train_count: 300, difficulty, .. }
                if d == Path::new("/data/fm") && *difficulty == 0.2),
            "{:?}",
            c.data
        );
        let err = try_resolve(&["--config", &file, "--shuffle-buffer", "10"]).unwrap_err();
        assert!(err.to_string().contains("--dataset shards"), "{err}");
        let err = try_resolve(&["--difficulty", "0.7"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--difficulty applies to --dataset clutter")
                && err.to_string().contains("fashion-mnist"),
            "{err}"
        );
        // A folder configuration keeps its root when --dataset is not repeated.
        let data = two_class_folder();
        let d = data.path().to_string_lossy();
        let folder = try_resolve(&["--model", "rgc_shallow", "--dataset", "folder"]);
        assert!(folder.unwrap_err().to_string().contains("--data-dir"));
        let c = try_resolve(&["--dataset", "folder", "--data-dir", &d]).unwrap();
        assert_eq!(
            c.data,
            DataSpec::Folder {
                root: data.path().to_path_buf()
            }
        );
    }

    /// `--momentum` and `--no-nesterov` change an SGD optimiser and are refused with any other
    /// (they used to be ignored); `--milestones` and `--gamma` change a step schedule and are
    /// refused with any other.
    #[test]
    fn optimiser_and_schedule_flags_that_would_be_ignored_are_refused() {
        let err = try_resolve(&["--momentum", "0.5"]).unwrap_err();
        assert!(err.to_string().ends_with("optimizer is adamw"), "{err}");
        let err = try_resolve(&["--optimizer", "adam", "--no-nesterov"]).unwrap_err();
        assert!(err.to_string().ends_with("optimizer is adam"), "{err}");
        let c = try_resolve(&["--optimizer", "sgd", "--momentum", "0.5", "--no-nesterov"]).unwrap();
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd {
                momentum: 0.5,
                nesterov: false,
                weight_decay: 1e-4
            }
        );
        for flags in [
            &["--milestones", "5"][..],
            &["--gamma", "0.5"],
            &["--schedule", "cosine", "--gamma", "0.5"],
        ] {
            let err = try_resolve(flags).unwrap_err();
            assert!(err.to_string().contains("step"), "{flags:?}: {err}");
        }
        let c = try_resolve(&["--schedule", "step", "--milestones", "3,6"]).unwrap();
        assert_eq!(
            c.lr.decay,
            Decay::Step {
                milestones: vec![3, 6],
                gamma: 0.1
            }
        );
        // The imagenet recipe's step schedule takes a new factor and keeps its milestones.
        let data = two_class_folder();
        let c = resolve(data.path(), &["--recipe", "imagenet", "--gamma", "0.5"]);
        assert_eq!(
            c.lr.decay,
            Decay::Step {
                milestones: vec![30, 60, 80],
                gamma: 0.5
            }
        );
    }

    /// `demo --resume` on a folder with no demo in it used to train both models from scratch.
    #[test]
    fn demo_resume_without_a_demo_to_continue_is_an_error() {
        let out = tempfile::tempdir().unwrap();
        let cmd = DemoCmd {
            out: Some(out.path().to_path_buf()),
            train_images: 64,
            eval_images: 64,
            difficulty: 0.5,
            seed: 0,
            data_dir: None,
            resume: true,
        };
        let err = demo(&cmd).unwrap_err().to_string();
        assert!(err.contains("holds no run to resume"), "{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

        let file = out.path().join("notes.txt");
        std::fs::write(&file, "").unwrap();
        let cmd = DemoCmd {
            out: Some(file),
            resume: false,
            ..cmd
        };
        let err = demo(&cmd).unwrap_err().to_string();
        assert!(err.contains("notes.txt: is a file"), "{err}");
    }
}
