//! Learning-rate schedules as pure functions of the optimiser step, so a resumed run gets exactly
//! the rate the uninterrupted one would have had.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the rate falls after the warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` at every step in `milestones` (torch's MultiStepLR).
    Step {
        /// Optimiser steps at which the rate is multiplied by `gamma`, increasing.
        milestones: Vec<u64>,
        /// The factor applied at each milestone (e.g. 0.1).
        gamma: f32,
    },
    /// Half-cosine from the base rate down to `min_lr` at `total_steps` (held there after).
    Cosine {
        /// The step at which the rate reaches `min_lr`.
        total_steps: u64,
        /// The floor the rate decays to, in `[0, base]`.
        min_lr: f32,
    },
}

/// Base rate, decay, and an optional linear warm-up over the first `warmup_steps` steps (from
/// `base / warmup_steps` up to the decayed rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    /// The peak learning rate, reached at the end of the warm-up.
    pub base: f32,
    /// Optimiser steps of linear warm-up (0: none).
    #[serde(default)]
    pub warmup_steps: u64,
    /// How the rate decays after the warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// `base` throughout, no warm-up.
    pub fn constant(base: f32) -> Self {
        LrSchedule {
            base,
            warmup_steps: 0,
            decay: Decay::Constant,
        }
    }

    /// Linear warm-up over `warmup_steps`, then a half-cosine from `base` to 0 at `total_steps`.
    pub fn cosine(base: f32, warmup_steps: u64, total_steps: u64) -> Self {
        LrSchedule {
            base,
            warmup_steps,
            decay: Decay::Cosine {
                total_steps,
                min_lr: 0.0,
            },
        }
    }

    /// Checks a positive finite base rate, a positive `gamma` and increasing milestones, or at
    /// least one cosine step and `min_lr` in `[0, base]`.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("learning-rate schedule: {m}")));
        if !(self.base > 0.0 && self.base.is_finite()) {
            return bad(format!("base rate must be > 0, got {}", self.base));
        }
        match &self.decay {
            Decay::Constant => {}
            Decay::Step { milestones, gamma } => {
                if !(*gamma > 0.0 && gamma.is_finite()) {
                    return bad(format!("gamma must be > 0, got {gamma}"));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return bad(format!("milestones must increase, got {milestones:?}"));
                }
            }
            Decay::Cosine {
                total_steps,
                min_lr,
            } => {
                if *total_steps == 0 {
                    return bad("cosine total_steps must be at least 1".into());
                }
                if !(*min_lr >= 0.0 && *min_lr <= self.base) {
                    return bad(format!("min_lr must be in [0, base], got {min_lr}"));
                }
            }
        }
        Ok(())
    }

    /// The rate for optimiser step `step` (0-based).
    pub fn at(&self, step: u64) -> f32 {
        let decayed = match &self.decay {
            Decay::Constant => self.base,
            Decay::Step { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| step >= m).count();
                self.base * gamma.powi(passed as i32)
            }
            Decay::Cosine {
                total_steps,
                min_lr,
            } => {
                let progress = (step.min(*total_steps) as f64) / (*total_steps as f64);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (*min_lr as f64 + (self.base - min_lr) as f64 * cos) as f32
            }
        };
        if step < self.warmup_steps {
            decayed * (step + 1) as f32 / self.warmup_steps as f32
        } else {
            decayed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) {
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
    }

    #[test]
    fn step_decay_at_milestones() {
        let s = LrSchedule {
            base: 0.1,
            warmup_steps: 0,
            decay: Decay::Step {
                milestones: vec![10, 20],
                gamma: 0.1,
            },
        };
        close(s.at(0), 0.1);
        close(s.at(9), 0.1);
        close(s.at(10), 0.01);
        close(s.at(19), 0.01);
        close(s.at(20), 0.001);
        close(s.at(1000), 0.001);
    }

    #[test]
    fn cosine_with_warmup() {
        let s = LrSchedule::cosine(1.0, 4, 100);
        close(
            s.at(0),
            0.25 * (0.5 * (1.0 + (std::f32::consts::PI * 0.0).cos())),
        );
        close(
            s.at(3),
            (0.5 * (1.0 + (std::f64::consts::PI * 0.03).cos())) as f32,
        );
        close(s.at(50), 0.5);
        close(s.at(100), 0.0);
        close(s.at(500), 0.0);
        let with_floor = LrSchedule {
            base: 1.0,
            warmup_steps: 0,
            decay: Decay::Cosine {
                total_steps: 10,
                min_lr: 0.1,
            },
        };
        close(with_floor.at(5), 0.55);
        close(with_floor.at(10), 0.1);
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        assert!(LrSchedule::constant(0.0).validate().is_err());
        assert!(LrSchedule::cosine(0.1, 0, 0).validate().is_err());
        let s = LrSchedule {
            base: 0.1,
            warmup_steps: 0,
            decay: Decay::Step {
                milestones: vec![5, 5],
                gamma: 0.1,
            },
        };
        assert!(s.validate().unwrap_err().to_string().contains("increase"));
    }

    #[test]
    fn json_round_trip() {
        let s = LrSchedule::cosine(0.05, 100, 1000);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<LrSchedule>(&j).unwrap(), s);
    }
}
