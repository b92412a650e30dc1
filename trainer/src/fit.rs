//! The training loop: `fit(config, options) -> FitReport`.
//!
//! A run directory holds `spec.json` and `config.json` (how the run was made), `classes.json`
//! (what its labels stand for, checked on resume and evaluation), `metrics.jsonl`
//! (one record per epoch), `steps.jsonl` (a record every `log_every` steps: [`crate::steps`]),
//! `checkpoint-latest.safetensors` (written every `checkpoint_every`
//! steps and at every epoch end), `checkpoint-best.safetensors` (best validation top-1) and
//! `plots/`. A non-finite loss stops the run before anything is written, so the last good
//! checkpoint stays; a stop request (Ctrl-C) writes a checkpoint and returns; `resume` continues
//! from the latest checkpoint exactly where it stopped.
//!
//! With a [`Collective`] of several ranks in [`FitOptions::collective`] the run is data-parallel
//! (see [`crate::parallel`]): the same loop on every rank, each on its shard of every global
//! batch, gradients averaged, rank 0 alone reading the run directory and writing files.

use crate::checkpoint::{self, Checkpoint, EpochAccum, Progress};
use crate::config::{LossSteps, TrainConfig};
use crate::data;
use crate::error::{Error, Result};
use crate::evaluate::{evaluate, evaluate_on, EvalOptions, EvalReport};
use crate::metrics::{self, EpochMetrics};
use crate::optim::Optimizer;
use crate::parallel::{self, StepStats};
use crate::plot;
use crate::progress::{Progress as ProgressBar, ProgressMode};
use crate::resume;
use crate::run_lock;
use crate::steps;
use collective::{Collective, Single};
use datasets::{BatcherConfig, Shard};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tensor::Tensor;
use topology::{Frames, Model, Needed, UnrollOptions, DEFAULT_BLANK};

/// What the per-epoch callback asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    Continue,
    /// End the run now (e.g. a search pruning a poor trial).
    Stop,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every epoch ran.
    Finished,
    /// `max_steps` was reached.
    MaxSteps,
    /// The stop flag was raised (Ctrl-C); a checkpoint was written.
    Interrupted,
    /// The per-epoch callback asked to stop.
    Stopped,
}

/// Settings of one invocation that are not part of the run's identity.
pub struct FitOptions<'a> {
    /// The run folder: checkpoints, `config.json`, metrics, logs and plots are written here.
    pub out: PathBuf,
    /// Continue the run in `out` from its latest checkpoint (an error when there is none); the
    /// configuration given must match the stored run except for its budget (see [`crate::resume`]).
    pub resume: bool,
    /// On resume, take the given configuration even where it differs from the stored run.
    pub allow_changes: bool,
    /// Show progress (a bar on a terminal, plain lines in a log) and print a line per epoch.
    pub verbose: bool,
    /// Append a record to `steps.jsonl` every this many optimiser steps (0: none).
    pub log_every: u64,
    /// Raised by a signal handler: checkpoint, then return [`Outcome::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
    /// Warn when a fresh run's warm-up is cut to a tenth of the run ([`TrainConfig::finalise`]):
    /// set where the user chose the warm-up, so a default cut on a short run stays quiet.
    pub warn_warmup_cut: bool,
    /// Called after every epoch's evaluation (search reporting and pruning).
    pub on_epoch: Option<&'a mut dyn FnMut(&EpochMetrics) -> Control>,
    /// The ranks of a data-parallel job (`None`: this process alone). Every rank calls `fit`
    /// with the same configuration and options.
    pub collective: Option<&'a dyn Collective>,
}

impl<'a> FitOptions<'a> {
    /// Options for a fresh run into `out` with every other setting at its default.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        FitOptions {
            out: out.into(),
            resume: false,
            allow_changes: false,
            verbose: false,
            log_every: 50,
            stop: None,
            warn_warmup_cut: false,
            on_epoch: None,
            collective: None,
        }
    }
}

impl std::fmt::Debug for FitOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitOptions")
            .field("out", &self.out)
            .field("resume", &self.resume)
            .field("ranks", &self.collective.map_or(1, |c| c.world_size()))
            .finish()
    }
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// The run folder.
    pub out: PathBuf,
    /// The model's name.
    pub model: String,
    /// Number of parameter scalars of the model.
    pub params: usize,
    /// Every epoch's record, including those of earlier invocations of a resumed run.
    pub metrics: Vec<EpochMetrics>,
    /// The best validation top-1 (0..=1) over the run, if it evaluated.
    pub best_val_top1: Option<f64>,
    /// Optimiser steps taken in the whole run.
    pub steps: u64,
    /// What the run found questionable but not wrong (also printed on stderr).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl FitReport {
    /// The last epoch's record, if an epoch finished.
    pub fn last(&self) -> Option<&EpochMetrics> {
        self.metrics.last()
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Config(format!("cannot serialise {}: {e}", path.display())))?;
    tensor::io::write_file_atomically(path, text.as_bytes())?;
    Ok(())
}

/// The state a run carries between batches.
struct Run<'m> {
    config: TrainConfig,
    model: &'m Model,
    optimizer: Optimizer,
    progress: Progress,
    out: PathBuf,
    /// The step of the latest checkpoint on disk (`None` until one is written).
    kept: Option<u64>,
    warnings: Vec<String>,
    /// Writes files (rank 0 of a data-parallel job, or the only process).
    root: bool,
}

impl Run<'_> {
    /// Every parameter must be finite: a diverged update must not reach a checkpoint or an
    /// evaluation (whose NaN logits would otherwise look like a result).
    fn check_weights(&self) -> Result<()> {
        for (name, p) in self.model.params.iter() {
            if p.to_vec()?.iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFiniteWeights {
                    tensor: name.to_string(),
                    epoch: self.progress.epoch,
                    step: self.progress.global_step,
                    kept: self.kept,
                });
            }
        }
        Ok(())
    }

    /// Whether nothing is left to train under the current budget.
    fn reached_budget(&self) -> bool {
        self.progress.epoch >= self.config.epochs
            || self
                .config
                .max_steps
                .is_some_and(|m| self.progress.global_step >= m)
    }

    /// Writes the latest checkpoint (on rank 0; the other ranks only check their weights).
    fn save_latest(&mut self) -> Result<()> {
        self.check_weights()?;
        if !self.root {
            return Ok(());
        }
        checkpoint::save(
            &self.out.join(checkpoint::LATEST),
            &self.config,
            &self.progress,
            self.model,
            &self.optimizer,
        )?;
        self.kept = Some(self.progress.global_step);
        Ok(())
    }

    /// One optimiser step on one batch; returns the step's statistics, summed over the ranks of
    /// `comm` (whose gradients are averaged before the update), and the norm of the (averaged)
    /// gradients before clipping (0 when no rank had an image). `stop` says whether this rank
    /// was asked to stop.
    fn train_step(
        &mut self,
        images: Tensor,
        labels: &[usize],
        stop: impl Fn() -> bool,
        comm: &dyn Collective,
    ) -> Result<(StepStats, f32)> {
        let n = labels.len() as u64;
        // An empty batch (every image unreadable) reaches here only in a data-parallel job,
        // whose step this rank still joins with nothing to add.
        let (local, grads) = if n == 0 {
            (StepStats::default(), None)
        } else {
            let (value, hits, loss) = self.forward(images, labels)?;
            let local = StepStats {
                loss_sum: value as f64 * n as f64,
                hits,
                seen: n,
                non_finite: !value.is_finite(),
                stop: false,
            };
            // A non-finite loss skips the backward pass; the ranks learn of it together below.
            let grads = if local.non_finite {
                None
            } else {
                Some(loss.backward()?)
            };
            (local, grads)
        };
        let local = StepStats {
            stop: stop(),
            ..local
        };
        let params = &self.model.params;
        let (step, mut grads) = if comm.world_size() == 1 {
            (local, grads.unwrap_or_default())
        } else {
            let mut present: Vec<f64> = params
                .iter()
                .map(|(_, p)| {
                    f64::from(u8::from(grads.as_ref().is_some_and(|g| g.get(p).is_some())))
                })
                .collect();
            let step = parallel::reduce_step(comm, &local, &mut present)?;
            let mut grads = grads.unwrap_or_default();
            if !step.non_finite && step.seen > 0 {
                // Each rank's mean gradient counts by its share of the step's images (shares
                // differ only when some images could not be read).
                let weight = (local.seen * comm.world_size() as u64) as f64 / step.seen as f64;
                parallel::average_gradients(comm, params, &mut grads, &present, weight)?;
            }
            (step, grads)
        };
        if step.non_finite {
            return Err(Error::NonFiniteLoss {
                epoch: self.progress.epoch,
                step: self.progress.global_step,
                loss: (step.loss_sum / step.seen.max(1) as f64) as f32,
                kept: self.kept,
            });
        }
        if step.seen == 0 {
            return Ok((step, 0.0));
        }
        let cfg = &self.config;
        let grad_norm = cfg.clip.apply(params, &mut grads)?;
        let lr = cfg.lr.at(self.progress.global_step);
        self.optimizer.step(params, &grads, lr)?;
        Ok((step, grad_norm))
    }

    /// The unroll and the loss of one batch: (loss value, top-1 hits of the last step, loss).
    fn forward(&self, images: Tensor, labels: &[usize]) -> Result<(f32, u64, Tensor)> {
        let cfg = &self.config;
        let steps = cfg.steps();
        let frames = Frames::Image {
            image: images,
            presentation: cfg.presentation,
            blank: DEFAULT_BLANK,
        };
        let needed = match cfg.loss {
            LossSteps::Last => Needed::LastLogits,
            LossSteps::Window { .. } => Needed::AllLogits,
        };
        let unrolled = self.model.unroll(
            &frames,
            &UnrollOptions {
                steps: Some(steps),
                needed,
                ..Default::default()
            },
        )?;
        let last = unrolled.last_logits()?.clone();
        let loss = match cfg.loss {
            LossSteps::Last => last.cross_entropy(labels, cfg.label_smoothing)?,
            LossSteps::Window { from, to } => {
                let logits = unrolled.all_logits()?;
                // Validation keeps the window inside the unroll; this only guards the slice.
                let to = to.min(logits.len());
                let mut acc = logits[from].cross_entropy(labels, cfg.label_smoothing)?;
                for l in &logits[from + 1..to] {
                    acc = acc.add(&l.cross_entropy(labels, cfg.label_smoothing)?)?;
                }
                acc.mul_scalar(1.0 / (to - from) as f32)?
            }
        };
        let value = loss.to_scalar()?;
        let hits = crate::evaluate::topk_hits(&last, labels)?.0 as u64;
        Ok((value, hits, loss))
    }
}

/// The run folder's lock ([`run_lock`]), taken as soon as the folder exists and held until
/// [`fit()`] returns (`Some(None)`: taken where the file system cannot lock).
#[derive(Default)]
struct FolderLock(Option<Option<run_lock::RunLock>>);

impl FolderLock {
    fn is_taken(&self) -> bool {
        self.0.is_some()
    }

    fn take(&mut self, out: &Path) -> Result<()> {
        self.0 = Some(run_lock::acquire(out)?);
        Ok(())
    }
}

/// What the run directory `out` holds for this invocation: its latest checkpoint when resuming
/// (an error when there is none, or when there is one and `resume` is not set). Clears the
/// temporaries of interrupted writes.
fn open_run_dir(out: &Path, resume: bool) -> Result<Option<Checkpoint>> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Config(format!(
            "the output {} is a file, not a directory; choose a directory for the run (--out)",
            out.display()
        )));
    }
    let latest = out.join(checkpoint::LATEST);
    let resumed = match (latest.is_file(), resume) {
        (true, true) => Some(Checkpoint::read(&latest)?),
        (true, false) => {
            return Err(Error::Config(format!(
                "{} already holds a training run ({}); pass --resume to continue it, or choose \
                 another output directory",
                out.display(),
                checkpoint::LATEST
            )))
        }
        (false, true) => {
            return Err(Error::NothingToResume {
                out: out.to_path_buf(),
            })
        }
        (false, false) => None,
    };
    remove_stale_temporaries(out);
    Ok(resumed)
}

/// Trains `config.model` on `config.data`; see the module documentation. With `opts.resume`
/// the run in `opts.out` continues under the policy of [`crate::resume`].
pub fn fit(requested: TrainConfig, mut opts: FitOptions<'_>) -> Result<FitReport> {
    // Recurrent cells drive states and gradients into denormal floats, which the CPU computes
    // with at a fraction of its speed (see tensor::cpu::denormals).
    tensor::cpu::denormals::configure_process().map_err(Error::Config)?;
    let single = Single;
    let comm: &dyn Collective = opts.collective.unwrap_or(&single);
    let root = comm.rank() == 0;
    let verbose = opts.verbose && root;
    let out = opts.out.clone();
    // Rank 0 locks and reads the run directory; the other ranks receive what it found. A folder
    // that does not exist yet is locked once it is created, below.
    let mut lock = FolderLock::default();
    let found = if root {
        let opened = if out.is_dir() {
            lock.take(&out)
        } else {
            Ok(())
        };
        opened
            .and_then(|()| open_run_dir(&out, opts.resume))
            .and_then(|r| requested.validate().map(|()| r))
    } else {
        Ok(None)
    };
    let resumed = parallel::share_checkpoint(comm, found)?;
    requested.validate()?;
    // The settings that decide the data: the stored run's unless changes are allowed (when they
    // differ and are not allowed, the check below stops before any data is loaded).
    let basis = match &resumed {
        Some(ck) if !opts.allow_changes => {
            resume::precheck(&out, &ck.config, &requested)?;
            ck.config.clone()
        }
        _ => requested.clone(),
    };
    let side = basis.model.input.height;
    let splits = data::load(&basis.data, side)?;
    let train_loader = splits.train.sharded_loader(
        BatcherConfig::train(
            parallel::per_rank_batch(basis.batch_size, comm)?,
            basis.seed,
        ),
        basis.train_limit,
        Shard {
            index: comm.rank(),
            count: comm.world_size(),
        },
    )?;
    let batches_per_epoch = train_loader.num_batches();
    if batches_per_epoch == 0 {
        return Err(Error::Config(format!(
            "the training set has {} images, fewer than one batch of {}",
            train_loader.len(),
            basis.batch_size
        )));
    }
    let mut warmup_cut = None;
    let config = match &resumed {
        Some(ck) => resume::reconcile(
            &out,
            &ck.config,
            &requested,
            batches_per_epoch as u64,
            opts.allow_changes,
        )?,
        None => {
            let mut c = requested;
            warmup_cut = c.finalise(batches_per_epoch as u64);
            c
        }
    };
    data::check_fits(&config.model, &splits.train)?;
    data::check_fits(&config.model, &splits.val)?;
    let mut warnings = data::check_classes(&splits.train.limited(config.train_limit), &splits.val)?;
    warnings.extend(config.schedule_warnings(batches_per_epoch as u64));
    warnings.extend(warmup_cut.filter(|_| opts.warn_warmup_cut));
    if resumed.is_some() {
        data::check_stored_classes(&out, &splits.train.class_names())?;
    }
    if root {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }

    // The model is built before anything is written, so a spec that cannot be built leaves no
    // run directory behind.
    let device = collective::rank_device(config.device, comm)?;
    let model = Model::new(&config.model, device, config.seed)?;
    // Every rank takes part in the count, whatever its device, so none waits on the others.
    let ranks = parallel::ranks_per_node(comm)?;
    if device.is_cpu() {
        let batch = parallel::per_rank_batch(config.batch_size, comm)?;
        let available = crate::memory_budget::available_bytes();
        crate::memory_budget::check(&model.shapes, batch, config.steps(), ranks, available)?;
    }
    let mut optimizer = Optimizer::new(config.optimizer.clone())?;
    let progress = match &resumed {
        Some(ck) => {
            ck.load_params_into(&model.params)?;
            ck.load_optimizer_into(&model.params, &mut optimizer)?;
            ck.progress.clone()
        }
        None => Progress::default(),
    };
    if comm.world_size() > 1 {
        let params: Vec<Tensor> = model.params.iter().map(|(_, p)| p.clone()).collect();
        parallel::broadcast_tensors(comm, &params)?;
    }
    let mut history = if root {
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        if !lock.is_taken() {
            lock.take(&out)?;
            // Another run may have created the folder and finished in between.
            if resumed.is_none() {
                open_run_dir(&out, false)?;
            }
        }
        write_json(&out.join("spec.json"), &config.model)?;
        write_json(&out.join("config.json"), &config)?;
        write_json(&out.join(data::CLASSES_FILE), &splits.train.class_names())?;
        metrics::read(&out)?
    } else {
        Vec::new()
    };
    history.retain(|m| m.epoch < progress.epoch);
    // Records written after the checkpoint the run resumes from are replayed, so they go.
    let mut step_log = if root {
        steps::truncate_after(&out, progress.global_step)?
    } else {
        Vec::new()
    };
    let mut run = Run {
        config,
        model: &model,
        optimizer,
        kept: resumed.as_ref().map(|ck| ck.progress.global_step),
        progress,
        out: out.clone(),
        warnings,
        root,
    };
    if verbose {
        match &resumed {
            Some(_) if run.reached_budget() => eprintln!(
                "{} already reached its budget ({} epochs{}, at step {}); nothing to train \
                 (raise --epochs or --max-steps to extend it)",
                out.display(),
                run.config.epochs,
                run.config
                    .max_steps
                    .map_or(String::new(), |m| format!(", {m} steps")),
                run.progress.global_step
            ),
            Some(_) => eprintln!(
                "resuming {} at epoch {}, batch {} (step {})",
                out.display(),
                run.progress.epoch + 1,
                run.progress.position,
                run.progress.global_step
            ),
            None => eprintln!(
                "training {} ({} parameters) on {} ({} images, {} batches of {} per epoch) → {}",
                run.config.model.name,
                model.num_params(),
                run.config.data.name(),
                train_loader.len(),
                batches_per_epoch,
                run.config.batch_size,
                out.display()
            ),
        }
    }

    let eval_opts = EvalOptions {
        batch_size: run.config.eval_batch_size,
        steps: run.config.steps(),
        presentation: run.config.presentation,
        decoders: run.config.decoders.clone(),
        limit: run.config.eval_limit,
    };
    let max_steps = run.config.max_steps.unwrap_or(u64::MAX);
    let mut outcome = Outcome::Finished;
    while run.progress.epoch < run.config.epochs {
        if run.progress.global_step >= max_steps {
            outcome = Outcome::MaxSteps;
            break;
        }
        let epoch = run.progress.epoch;
        let mode = if verbose {
            ProgressMode::Auto
        } else {
            ProgressMode::Hidden
        };
        let mut bar = ProgressBar::new(
            format!("epoch {}/{}", epoch + 1, run.config.epochs),
            batches_per_epoch as u64,
            mode,
        )
        .starting_at(run.progress.position as u64);
        let mut window = steps::Window::default();
        let mut stopped_inside = false;
        let mut t0 = Instant::now();
        let mut batches = train_loader.epoch_from(epoch, run.progress.position);
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.next() else {
                break;
            };
            window.waited(waiting.elapsed().as_secs_f64());
            let batch = batch?;
            // Nothing in it could be read (the loader counted and reported why). The ranks of a
            // job still meet for the step: the others' images count.
            if batch.is_empty() && comm.world_size() == 1 {
                run.progress.position += 1;
                continue;
            }
            let (images, labels) = batch.into_tensor(device)?;
            let stop = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            let lr = run.config.lr.at(run.progress.global_step);
            let (step, grad_norm) = run.train_step(images, &labels, stop, comm)?;
            if step.seen == 0 {
                // Empty on every rank: no step, as on one process.
                run.progress.position += 1;
                continue;
            }
            window.batch(step.seen, step.loss_sum, step.hits);
            let acc = &mut run.progress.accum;
            acc.loss_sum += step.loss_sum;
            acc.correct += step.hits;
            acc.seen += step.seen;
            acc.seconds += t0.elapsed().as_secs_f64();
            t0 = Instant::now();
            run.progress.position += 1;
            run.progress.global_step += 1;
            bar.set(
                run.progress.position as u64,
                format!(
                    "loss {:.4} acc {:.1}% {:.0} img/s",
                    acc.loss_sum / acc.seen as f64,
                    100.0 * acc.correct as f64 / acc.seen as f64,
                    acc.seen as f64 / acc.seconds.max(1e-9)
                ),
            );
            if opts.log_every > 0 && run.progress.global_step.is_multiple_of(opts.log_every) {
                // Every rank reaches this step together; the count covers all their shards.
                let skipped = parallel::sum(comm, train_loader.skipped())?;
                let record = window.close(epoch, run.progress.global_step, lr, grad_norm, skipped);
                if root {
                    steps::append(&out, &record)?;
                    step_log.push(record);
                    plot::training_plots(
                        &out.join("plots"),
                        &run.config.model.name,
                        &history,
                        &step_log,
                    )?;
                }
            }
            if step.stop {
                run.save_latest()?;
                bar.abandon();
                if verbose {
                    eprintln!(
                        "interrupted: checkpoint written at epoch {}, batch {}; continue with --resume",
                        epoch + 1,
                        run.progress.position
                    );
                }
                return Ok(report(Outcome::Interrupted, &run, &model, history));
            }
            if run.progress.global_step >= max_steps {
                stopped_inside = run.progress.position < batches_per_epoch;
                outcome = Outcome::MaxSteps;
                break;
            }
            if run
                .progress
                .global_step
                .is_multiple_of(run.config.checkpoint_every)
            {
                run.save_latest()?;
            }
        }
        drop(batches);
        bar.finish();
        run.check_weights()?;
        let eval_t0 = Instant::now();
        let val: EvalReport = evaluate_on(&model, &splits.val, &eval_opts, comm)?;
        let acc = run.progress.accum.clone();
        let m = EpochMetrics {
            epoch,
            step: run.progress.global_step,
            complete: !stopped_inside,
            lr: run.config.lr.at(run.progress.global_step.saturating_sub(1)),
            train_loss: acc.loss_sum / acc.seen.max(1) as f64,
            train_top1: acc.correct as f64 / acc.seen.max(1) as f64,
            train_img_per_s: acc.seen as f64 / acc.seconds.max(1e-9),
            val_loss: val.loss,
            val_top1: val.top1,
            val_top5: val.top5,
            val_top1_per_step: val.top1_per_step.clone(),
            val_top5_per_step: val.top5_per_step.clone(),
            val_decoders: val.decoders.clone(),
            epoch_seconds: acc.seconds + eval_t0.elapsed().as_secs_f64(),
        };
        if root {
            history = metrics::record(&out, &m)?;
        } else {
            history.push(m.clone());
        }
        let improved = run.progress.best_val_top1.is_none_or(|b| m.val_top1 > b);
        if !stopped_inside {
            run.progress.epoch += 1;
            run.progress.position = 0;
            run.progress.accum = EpochAccum::default();
        }
        // A run cut inside an epoch by max_steps keeps its place, so that raising the budget
        // continues that epoch where it stopped.
        if improved {
            run.progress.best_val_top1 = Some(m.val_top1);
        }
        run.save_latest()?;
        if improved && root {
            checkpoint::save(
                &out.join(checkpoint::BEST),
                &run.config,
                &run.progress,
                &model,
                &run.optimizer,
            )?;
        }
        if root {
            plot::training_plots(
                &out.join("plots"),
                &run.config.model.name,
                &history,
                &step_log,
            )?;
        }
        if verbose {
            eprintln!(
                "epoch {}: train loss {:.4}, top-1 {:.2}% ({:.1} img/s) | val top-1 {:.2}%, \
                 per step [{}]",
                epoch + 1,
                m.train_loss,
                100.0 * m.train_top1,
                m.train_img_per_s,
                100.0 * m.val_top1,
                m.val_top1_per_step
                    .iter()
                    .map(|a| format!("{:.1}", 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if let Some(cb) = opts.on_epoch.as_mut() {
            if parallel::any(comm, cb(&m) == Control::Stop)? {
                outcome = Outcome::Stopped;
                break;
            }
        }
        if outcome == Outcome::MaxSteps {
            break;
        }
    }
    Ok(report(outcome, &run, &model, history))
}

/// The files of a run directory that are written atomically (temporary file + rename).
const RUN_FILES: [&str; 6] = [
    checkpoint::LATEST,
    checkpoint::BEST,
    metrics::METRICS_FILE,
    "spec.json",
    "config.json",
    data::CLASSES_FILE,
];

/// Removes what a process killed in the middle of an atomic write left behind: its temporary
/// file (`.<name>.tmp-<pid>-<n>`), never read, but piling up with every crash.
fn remove_stale_temporaries(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if RUN_FILES
            .iter()
            .any(|f| name.starts_with(&format!(".{f}.tmp-")))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn report(outcome: Outcome, run: &Run<'_>, model: &Model, metrics: Vec<EpochMetrics>) -> FitReport {
    FitReport {
        outcome,
        out: run.out.clone(),
        model: run.config.model.name.clone(),
        params: model.num_params(),
        metrics,
        best_val_top1: run.progress.best_val_top1,
        steps: run.progress.global_step,
        warnings: run.warnings.clone(),
    }
}

/// Evaluates a checkpoint (a file, or a run directory: its best checkpoint) with its run's
/// settings, optionally overriding the decoders and the image limit.
pub fn evaluate_checkpoint(
    path: &Path,
    decoders: Option<Vec<topology::Decoder>>,
    limit: Option<usize>,
    device: tensor::Device,
) -> Result<EvalReport> {
    let file = checkpoint::resolve(path)?;
    let ck = Checkpoint::read(&file)?;
    let model = ck.model(device)?;
    let cfg = &ck.config;
    let splits = data::load(&cfg.data, cfg.model.input.height)?;
    data::check_fits(&cfg.model, &splits.val)?;
    if let Some(run) = file.parent() {
        data::check_stored_classes(run, &splits.val.class_names())?;
    }
    evaluate(
        &model,
        &splits.val,
        &EvalOptions {
            batch_size: cfg.eval_batch_size,
            steps: cfg.steps(),
            presentation: cfg.presentation,
            decoders: decoders.unwrap_or_else(|| cfg.decoders.clone()),
            limit: limit.or(cfg.eval_limit),
        },
    )
}
