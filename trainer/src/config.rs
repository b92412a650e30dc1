//! What a training run is: model, data, optimisation and evaluation settings, all serde so a run
//! directory's `config.json` (and every checkpoint) says exactly how it was made.

use crate::clip::GradClip;
use crate::error::{Error, Result};
use crate::lr::LrSchedule;
use crate::optim::OptimizerSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tensor::Device;
use topology::{Decoder, ModelSpec, Presentation};

/// Where the images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// Fashion-MNIST: the 60,000 training images; validation is the 10,000-image test split.
    /// `dir` overrides where the IDX files are looked for (see `datasets::locate`).
    FashionMnist {
        /// Where the IDX files are (default: the usual places, `datasets::locate`).
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// The generated clutter variant of Fashion-MNIST (`datasets::clutter`), cached.
    Clutter {
        /// Where the Fashion-MNIST source files are (default: the usual places).
        #[serde(default)]
        dir: Option<PathBuf>,
        /// Training images to generate.
        train_count: usize,
        /// Validation images to generate.
        test_count: usize,
        /// 0 (mild) to 1 (hard), as `datasets::ClutterConfig`.
        difficulty: f32,
        /// Seeds the generated sets (not the run's data order).
        seed: u64,
    },
    /// ImageNet-style class folders: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`.
    Folder {
        /// The folder holding `train/` and `val/`.
        root: PathBuf,
    },
    /// WebDataset shards: `root/train/*.tar` and `root/val/*.tar` (as `cargo xtask shards`
    /// writes them from a folder root), read sequentially with shard shuffling and a shuffle
    /// buffer of `shuffle_buffer` samples.
    Shards {
        /// The folder holding `train/` and `val/` shards.
        root: PathBuf,
        /// Samples held by the training shuffle buffer.
        #[serde(default = "default_shuffle_buffer")]
        shuffle_buffer: usize,
    },
}

fn default_shuffle_buffer() -> usize {
    datasets::ShardLoaderConfig::train(1, 0).shuffle_buffer
}

impl DataSpec {
    /// The kind of data, as logs and reports name it (`fashion-mnist`, `clutter`, …).
    pub fn name(&self) -> &'static str {
        match self {
            DataSpec::FashionMnist { .. } => "fashion-mnist",
            DataSpec::Clutter { .. } => "clutter",
            DataSpec::Folder { .. } => "folder",
            DataSpec::Shards { .. } => "shards",
        }
    }
}

/// Which steps' logits the loss sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSteps {
    /// Cross-entropy on the last step's logits (the reference).
    #[default]
    Last,
    /// Mean cross-entropy over steps `from..to` (`to` exclusive, at most the unroll's length).
    Window {
        /// The first step whose logits count.
        from: usize,
        /// One past the last step whose logits count.
        to: usize,
    },
}

/// Every setting of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model to train.
    pub model: ModelSpec,
    /// What it trains and is validated on.
    pub data: DataSpec,
    /// Passes over the training data.
    pub epochs: u64,
    /// Stop after this many optimiser steps in total (across epochs), if set.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Images per optimiser step, over all ranks of a data-parallel job.
    pub batch_size: usize,
    /// Images per validation batch.
    pub eval_batch_size: usize,
    /// The optimiser and its settings.
    pub optimizer: OptimizerSpec,
    /// The learning rate as a function of the optimiser step.
    pub lr: LrSchedule,
    /// Gradient clipping before each update.
    #[serde(default)]
    pub clip: GradClip,
    /// Label smoothing of the cross-entropy, in `[0, 1)` (0: none).
    #[serde(default)]
    pub label_smoothing: f32,
    /// Which steps' logits the loss sees.
    #[serde(default)]
    pub loss: LossSteps,
    /// Unroll length (default: the model's `default_steps`).
    #[serde(default)]
    pub steps: Option<usize>,
    /// When the image is shown during the unroll.
    #[serde(default = "default_presentation")]
    pub presentation: Presentation,
    /// Decoders reported at evaluation besides the per-step accuracies; the first is `top1`.
    pub decoders: Vec<Decoder>,
    /// Train on only the first this-many training images (all when unset).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Evaluate on at most this many validation images (all when unset).
    #[serde(default)]
    pub eval_limit: Option<usize>,
    /// Write the latest checkpoint every this many optimiser steps within an epoch (and always at
    /// the end of an epoch), bounding the work a killed process loses.
    pub checkpoint_every: u64,
    /// Seeds the initial weights, the data order and the augmentation.
    pub seed: u64,
    /// Where the model runs (the CPU or one CUDA device).
    #[serde(default)]
    pub device: Device,
}

fn default_presentation() -> Presentation {
    Presentation::Default
}

impl TrainConfig {
    /// The defaults for a model: AdamW (lr 2e-3, weight decay 1e-4) with a cosine schedule and
    /// 200 warm-up steps, batch 64, 1 epoch (a compact model on Fashion-MNIST in well under half
    /// an hour on 2 cores), loss on the last step, decoders last and
    /// max-confidence. The total steps of the cosine are filled in by [`TrainConfig::finalise`].
    pub fn for_model(model: ModelSpec, data: DataSpec) -> Self {
        TrainConfig {
            model,
            data,
            epochs: 1,
            max_steps: None,
            batch_size: 64,
            eval_batch_size: 200,
            optimizer: OptimizerSpec::adamw(1e-4),
            lr: LrSchedule::cosine(2e-3, 200, 0),
            clip: GradClip::Norm { max: 5.0 },
            label_smoothing: 0.0,
            loss: LossSteps::Last,
            steps: None,
            presentation: Presentation::Default,
            decoders: vec![Decoder::Last, Decoder::MaxConf { from: 0, beta: 1.0 }],
            train_limit: None,
            eval_limit: None,
            checkpoint_every: 200,
            seed: 0,
            device: Device::Cpu,
        }
    }

    /// Resolves settings that depend on the data size: a cosine schedule with `total_steps` 0
    /// spans the whole run, and a warm-up longer than a tenth of the run is cut to a tenth (at
    /// least one step), so that short runs such as smoke tests and search trials are not spent
    /// almost entirely at a small learning rate. Returns what was cut, in words, if the warm-up
    /// was.
    pub fn finalise(&mut self, batches_per_epoch: u64) -> Option<String> {
        let run = self.run_length(batches_per_epoch);
        if let crate::lr::Decay::Cosine { total_steps, .. } = &mut self.lr.decay {
            if *total_steps == 0 {
                *total_steps = run;
            }
        }
        let asked = self.lr.warmup_steps;
        if asked > 0 {
            self.lr.warmup_steps = asked.min((run / 10).max(1));
        }
        (self.lr.warmup_steps < asked).then(|| {
            format!(
                "the warm-up of {asked} steps was cut to {}, a tenth of this run's {run} \
                 optimiser steps (a warm-up is never more than a tenth of the run)",
                self.lr.warmup_steps
            )
        })
    }

    /// What the schedule asks for that this run never reaches: step-decay milestones at or past
    /// its last optimiser step (torch's MultiStepLR ignores them silently; a user who shortened
    /// a run with `--max-steps` or `--epochs` should hear that the rate never decays).
    pub fn schedule_warnings(&self, batches_per_epoch: u64) -> Vec<String> {
        let run = self.run_length(batches_per_epoch);
        let crate::lr::Decay::Step { milestones, .. } = &self.lr.decay else {
            return Vec::new();
        };
        let late: Vec<u64> = milestones.iter().copied().filter(|&m| m >= run).collect();
        if late.is_empty() {
            return Vec::new();
        }
        let what = if late.len() == milestones.len() {
            "the learning rate never decays"
        } else {
            "they never take effect"
        };
        vec![format!(
            "step-schedule milestone(s) {late:?} lie at or past the run's end (it takes {run} \
             optimiser steps, 0..{run}): {what}"
        )]
    }

    /// Optimiser steps the whole run takes: every epoch, cut at `max_steps` (at least 1).
    pub fn run_length(&self, batches_per_epoch: u64) -> u64 {
        let run = batches_per_epoch.saturating_mul(self.epochs);
        self.max_steps.map_or(run, |m| m.min(run)).max(1)
    }

    /// The unroll length: `steps` if set, else the model's default.
    pub fn steps(&self) -> usize {
        self.steps.unwrap_or(self.model.default_steps)
    }

    /// Checks every setting (model, counts, optimiser, schedule, clipping, label smoothing, loss
    /// window, decoders) before a run starts.
    pub fn validate(&self) -> Result<()> {
        self.model
            .validate()
            .map_err(|e| Error::Config(format!("model: {e}")))?;
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if self.max_steps == Some(0) {
            return bad("max_steps must be at least 1".into());
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        let steps = self.steps();
        if steps == 0 {
            return bad("the unroll needs at least 1 step".into());
        }
        if let LossSteps::Window { from, to } = self.loss {
            if to > steps {
                return bad(format!(
                    "loss window {from}..{to} reaches past the unroll: there are {steps} steps \
                     (0..{steps}); use a window within them, e.g. {}..{steps}",
                    from.min(steps.saturating_sub(1))
                ));
            }
            if from >= to {
                return bad(format!(
                    "loss window {from}..{to} is empty over {steps} steps"
                ));
            }
        }
        if self.decoders.is_empty() {
            return bad("at least one decoder is needed (e.g. last)".into());
        }
        self.optimizer.validate()?;
        self.lr.validate_shape()?;
        self.clip.validate()
    }
}

impl LrSchedule {
    /// [`LrSchedule::validate`], but a cosine `total_steps` of 0 (filled in later) is accepted.
    fn validate_shape(&self) -> Result<()> {
        let mut s = self.clone();
        if let crate::lr::Decay::Cosine { total_steps, .. } = &mut s.decay {
            if *total_steps == 0 {
                *total_steps = 1;
            }
        }
        s.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_past_the_end_of_the_run_are_reported() {
        let model = topology::zoo::get("compact_rgc").unwrap();
        let mut c = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
        c.epochs = 2;
        c.lr.decay = crate::lr::Decay::Step {
            milestones: vec![50, 200, 300],
            gamma: 0.1,
        };
        // 2 epochs of 100 batches: 200 steps, so 200 and 300 are never reached.
        let w = c.schedule_warnings(100);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("[200, 300]") && w[0].contains("200 optimiser steps"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("never take effect"), "{}", w[0]);
        c.max_steps = Some(40);
        let w = c.schedule_warnings(100);
        assert!(
            w[0].contains("[50, 200, 300]") && w[0].contains("never decays"),
            "{}",
            w[0]
        );
        c.max_steps = None;
        assert!(c.schedule_warnings(1000).is_empty());
        c.lr.decay = crate::lr::Decay::Constant;
        assert!(c.schedule_warnings(1).is_empty());
    }

    #[test]
    fn default_config_validates_and_round_trips() {
        let model = topology::zoo::get("compact_rgc").unwrap();
        let c = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
        c.validate().unwrap();
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&j).unwrap(), c);
    }

    #[test]
    fn finalise_fills_the_cosine_length() {
        let model = topology::zoo::get("compact_feedforward").unwrap();
        let mut c = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
        c.finalise(100);
        assert_eq!(
            c.lr.decay,
            crate::lr::Decay::Cosine {
                total_steps: 100,
                min_lr: 0.0
            }
        );
    }

    #[test]
    fn finalise_caps_the_warmup_at_a_tenth_of_the_run() {
        let model = topology::zoo::get("compact_feedforward").unwrap();
        let mut c = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
        assert_eq!(c.lr.warmup_steps, 200);
        let mut long = c.clone();
        long.finalise(5000);
        assert_eq!(long.lr.warmup_steps, 200, "a long run keeps its warm-up");
        c.max_steps = Some(120);
        let said = c.finalise(5000).unwrap();
        assert_eq!(c.lr.warmup_steps, 12);
        assert!(
            said.contains("warm-up of 200 steps was cut to 12")
                && said.contains("this run's 120 optimiser steps"),
            "{said}"
        );
        assert_eq!(
            long.clone().finalise(5000),
            None,
            "nothing cut, nothing said"
        );
        let mut tiny = TrainConfig::for_model(
            topology::zoo::get("compact_feedforward").unwrap(),
            DataSpec::FashionMnist { dir: None },
        );
        tiny.max_steps = Some(3);
        tiny.finalise(5000);
        assert_eq!(tiny.lr.warmup_steps, 1);
        let mut none = tiny.clone();
        none.lr.warmup_steps = 0;
        none.finalise(5000);
        assert_eq!(none.lr.warmup_steps, 0, "no warm-up stays none");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let model = topology::zoo::get("compact_feedforward").unwrap();
        let base = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
        let mut c = base.clone();
        c.loss = LossSteps::Window { from: 9, to: 12 };
        assert!(c.validate().unwrap_err().to_string().contains("window"));
        // A window reaching past the unroll used to be cut silently.
        let steps = base.steps();
        c.loss = LossSteps::Window {
            from: 1,
            to: steps + 5,
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("reaches past the unroll"), "{err}");
        c.loss = LossSteps::Window { from: 3, to: 3 };
        assert!(c.validate().unwrap_err().to_string().contains("empty"));
        c.loss = LossSteps::Window { from: 1, to: steps };
        c.validate().unwrap();
        let mut c = base.clone();
        c.label_smoothing = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("label_smoothing"));
        let mut c = base;
        c.epochs = 0;
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
    }
}
