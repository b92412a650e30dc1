//! Named training recipes: the settings a published training used, applied over a model and its
//! data. `imagenet` is the reference's ImageNet training as far as SPEC §5–§6 and the reference
//! notes state it (docs/IMAGENET.md says which values are stated and which are our choice).

use crate::clip::GradClip;
use crate::config::{LossSteps, TrainConfig};
use crate::lr::{Decay, LrSchedule};
use crate::optim::OptimizerSpec;
use serde::{Deserialize, Serialize};
use topology::{Decoder, Presentation};

/// A named set of training settings from a paper, applied over a run's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// SGD with Nesterov momentum 0.9, weight decay 1e-4, gradient clipping, learning rate
    /// 0.01 × batch/256 with step decay (×0.1 after epochs 30, 60 and 80 of 90), batch 256,
    /// cross-entropy on the last step's logits, the model's own unroll length and presentation.
    Imagenet,
}

/// Epochs after which the imagenet recipe multiplies the learning rate by 0.1.
pub const IMAGENET_DECAY_EPOCHS: [u64; 3] = [30, 60, 80];

impl Recipe {
    /// Sets `config`'s optimisation to the recipe's, keeping its batch size (set it to
    /// [`Recipe::batch_size`] for the recipe's own; the learning rate scales with it).
    /// `batches_per_epoch` turns the recipe's epochs into the optimiser steps the schedule counts.
    pub fn apply(self, config: &mut TrainConfig, batches_per_epoch: u64) {
        match self {
            Recipe::Imagenet => {
                config.epochs = 90;
                config.eval_batch_size = 250;
                config.optimizer = OptimizerSpec::Sgd {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 1e-4,
                };
                config.lr = LrSchedule {
                    decay: Decay::Step {
                        milestones: IMAGENET_DECAY_EPOCHS
                            .iter()
                            .map(|e| e * batches_per_epoch.max(1))
                            .collect(),
                        gamma: 0.1,
                    },
                    warmup_steps: 0,
                    ..LrSchedule::constant(0.01 * config.batch_size as f32 / 256.0)
                };
                config.clip = GradClip::Value { max: 0.32 };
                config.label_smoothing = 0.0;
                config.loss = LossSteps::Last;
                config.steps = None;
                config.presentation = Presentation::Default;
                config.decoders = vec![Decoder::Last, Decoder::MaxConf { from: 0, beta: 1.0 }];
                config.checkpoint_every = 1000;
            }
        }
    }

    /// The batch size the recipe trains with (needed to count batches before applying it).
    pub fn batch_size(self) -> usize {
        match self {
            Recipe::Imagenet => 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataSpec;

    #[test]
    fn the_imagenet_recipe_decays_at_epochs_30_60_80_and_validates() {
        let model = topology::zoo::get("rgc_shallow").unwrap();
        let mut c = TrainConfig::for_model(
            model,
            DataSpec::Folder {
                root: "/imagenet".into(),
            },
        );
        c.batch_size = Recipe::Imagenet.batch_size();
        Recipe::Imagenet.apply(&mut c, 5004);
        c.validate().unwrap();
        assert_eq!(
            (c.epochs, c.batch_size),
            (90, Recipe::Imagenet.batch_size())
        );
        assert_eq!(c.lr.at(0), 0.01);
        assert_eq!(c.lr.at(30 * 5004 - 1), 0.01);
        assert!((c.lr.at(30 * 5004) - 0.001).abs() < 1e-9);
        assert!((c.lr.at(85 * 5004) - 1e-5).abs() < 1e-10);
        let mut half = c.clone();
        half.batch_size = 128;
        Recipe::Imagenet.apply(&mut half, 10008);
        assert_eq!(half.lr.at(0), 0.005, "linear scaling with the batch");
        assert_eq!(
            c.optimizer,
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4
            }
        );
        assert_eq!(c.loss, LossSteps::Last);
        assert_eq!(c.steps(), 16, "rgc_shallow unrolls 16 steps");
        let json = serde_json::to_string(&Recipe::Imagenet).unwrap();
        assert_eq!(json, "\"imagenet\"");
    }
}
