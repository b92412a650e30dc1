//! Optimisers: SGD with (Nesterov) momentum and weight decay, Adam and AdamW.
//!
//! Updates follow PyTorch's `torch.optim` conventions exactly, so hyperparameters carry over:
//! SGD's momentum buffer starts as the first gradient (no dampening), Nesterov uses
//! `g + μ·buf`; Adam adds weight decay to the gradient (L2), AdamW decays the weights directly
//! (`w ← w − lr·λ·w`). The updates run as tensor ops, so the same code serves CPU and CUDA.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tensor::{Gradients, ParamStore, Tensor};

/// Which optimiser a run uses and its settings (PyTorch's update rules).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Stochastic gradient descent with (Nesterov) momentum, as `torch.optim.SGD`.
    Sgd {
        /// Momentum factor (0: plain SGD).
        momentum: f32,
        /// Nesterov's variant of momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient (coupled weight decay).
        weight_decay: f32,
    },
    /// Adam, as `torch.optim.Adam` (weight decay added to the gradient).
    Adam {
        /// Decay rate of the first-moment estimate.
        beta1: f32,
        /// Decay rate of the second-moment estimate.
        beta2: f32,
        /// Added to the denominator for numerical stability.
        eps: f32,
        /// L2 penalty added to the gradient (coupled weight decay).
        weight_decay: f32,
    },
    /// AdamW, as `torch.optim.AdamW` (weight decay applied to the weights directly).
    AdamW {
        /// Decay rate of the first-moment estimate.
        beta1: f32,
        /// Decay rate of the second-moment estimate.
        beta2: f32,
        /// Added to the denominator for numerical stability.
        eps: f32,
        /// Decoupled weight decay: weights shrink by `lr · weight_decay` per step.
        weight_decay: f32,
    },
}

impl OptimizerSpec {
    /// The reference recipe (SPEC §6): Nesterov momentum 0.9.
    pub fn sgd_nesterov(weight_decay: f32) -> Self {
        OptimizerSpec::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay,
        }
    }

    /// AdamW with PyTorch's default betas and epsilon.
    pub fn adamw(weight_decay: f32) -> Self {
        OptimizerSpec::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// The weight-decay factor, whichever optimiser.
    pub fn weight_decay(&self) -> f32 {
        match *self {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::AdamW { weight_decay, .. } => weight_decay,
        }
    }

    /// The same optimiser with weight decay `wd` (search trials and CLI flags override it).
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        match &mut self {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }

    /// Checks the settings: momentum in `[0, 1)` (above 0 for Nesterov), betas in `[0, 1)`, a
    /// positive epsilon, a non-negative weight decay.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("optimizer: {m}")));
        match *self {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return bad(format!("momentum must be in [0, 1), got {momentum}"));
                }
                if nesterov && momentum == 0.0 {
                    return bad("nesterov needs a momentum above 0".into());
                }
                if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
                    return bad(format!("weight_decay must be ≥ 0, got {weight_decay}"));
                }
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerSpec::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return bad(format!("{name} must be in [0, 1), got {b}"));
                    }
                }
                if eps.is_nan() || eps <= 0.0 {
                    return bad(format!("eps must be > 0, got {eps}"));
                }
                if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
                    return bad(format!("weight_decay must be ≥ 0, got {weight_decay}"));
                }
            }
        }
        Ok(())
    }

    /// State slots kept per parameter.
    fn slots(&self) -> &'static [&'static str] {
        match self {
            OptimizerSpec::Sgd { momentum, .. } if *momentum > 0.0 => &["momentum"],
            OptimizerSpec::Sgd { .. } => &[],
            OptimizerSpec::Adam { .. } | OptimizerSpec::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }
}

/// An optimiser with its per-parameter state.
#[derive(Debug)]
pub struct Optimizer {
    spec: OptimizerSpec,
    /// `state[param][slot]`, created lazily at a parameter's first update.
    state: BTreeMap<String, Vec<Tensor>>,
    /// Updates applied so far (Adam's bias correction).
    steps: u64,
}

impl Optimizer {
    /// An optimiser with no state yet; errors if the spec's settings are out of range.
    pub fn new(spec: OptimizerSpec) -> Result<Self> {
        spec.validate()?;
        Ok(Optimizer {
            spec,
            state: BTreeMap::new(),
            steps: 0,
        })
    }

    /// The optimiser's settings.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`. Parameters
    /// without a gradient (unused this step) are left alone, as PyTorch does.
    pub fn step(&mut self, params: &ParamStore, grads: &Gradients, lr: f32) -> Result<()> {
        let _guard = tensor::no_grad();
        self.steps += 1;
        let t = self.steps as i32;
        for (name, p, g) in params.grads_for(grads) {
            let Some(g) = g else { continue };
            let g = g.plain()?;
            let new_p = match self.spec {
                OptimizerSpec::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let g = if weight_decay > 0.0 {
                        g.add(&p.mul_scalar(weight_decay)?)?
                    } else {
                        g
                    };
                    let d = if momentum > 0.0 {
                        let buf = match self.state.get(name) {
                            Some(s) => s[0].mul_scalar(momentum)?.add(&g)?,
                            None => g.clone(),
                        };
                        self.state.insert(name.to_string(), vec![buf.clone()]);
                        if nesterov {
                            g.add(&buf.mul_scalar(momentum)?)?
                        } else {
                            buf
                        }
                    } else {
                        g
                    };
                    p.sub(&d.mul_scalar(lr)?)?
                }
                OptimizerSpec::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
                | OptimizerSpec::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let decoupled = matches!(self.spec, OptimizerSpec::AdamW { .. });
                    let (g, p0) = if weight_decay > 0.0 && !decoupled {
                        (g.add(&p.mul_scalar(weight_decay)?)?, p.clone())
                    } else if weight_decay > 0.0 {
                        (g, p.mul_scalar(1.0 - lr * weight_decay)?)
                    } else {
                        (g, p.clone())
                    };
                    let (m, v) = match self.state.get(name) {
                        Some(s) => (
                            s[0].mul_scalar(beta1)?.add(&g.mul_scalar(1.0 - beta1)?)?,
                            s[1].mul_scalar(beta2)?
                                .add(&g.sqr()?.mul_scalar(1.0 - beta2)?)?,
                        ),
                        None => (
                            g.mul_scalar(1.0 - beta1)?,
                            g.sqr()?.mul_scalar(1.0 - beta2)?,
                        ),
                    };
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    // p − lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), as torch.optim.Adam.
                    let denom = v.sqrt()?.affine(1.0 / bc2.sqrt(), eps)?;
                    let upd = m.div(&denom)?.mul_scalar(lr / bc1)?;
                    self.state.insert(name.to_string(), vec![m, v]);
                    p0.sub(&upd)?
                }
            };
            p.assign(&new_p)?;
        }
        Ok(())
    }

    /// The state as named tensors (`{param}/{slot}`) plus the step count, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let slots = self.spec.slots();
        self.state
            .iter()
            .flat_map(|(name, s)| {
                s.iter()
                    .zip(slots)
                    .map(move |(t, slot)| (format!("{name}/{slot}"), t.clone()))
            })
            .collect()
    }

    /// Restores state written by [`Optimizer::state_tensors`]; every tensor must belong to a
    /// parameter of `params` with its shape, and every parameter's slots must be complete.
    pub fn load_state(
        &mut self,
        params: &ParamStore,
        tensors: Vec<(String, Tensor)>,
        steps: u64,
    ) -> Result<()> {
        let slots = self.spec.slots();
        let mut partial: BTreeMap<String, Vec<Option<Tensor>>> = BTreeMap::new();
        for (key, t) in tensors {
            let (name, slot) = key.rsplit_once('/').ok_or_else(|| {
                Error::Config(format!("optimizer state `{key}` is not named param/slot"))
            })?;
            let slot_index = slots.iter().position(|s| *s == slot).ok_or_else(|| {
                Error::Config(format!(
                    "optimizer state `{key}`: slot `{slot}` does not belong to {:?} (slots {slots:?})",
                    self.spec
                ))
            })?;
            let p = params.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "optimizer state `{key}` names a parameter the model does not have"
                ))
            })?;
            if p.dims() != t.dims() {
                return Err(Error::Config(format!(
                    "optimizer state `{key}` has shape {}, its parameter {}",
                    t.shape(),
                    p.shape()
                )));
            }
            let t = t.to_device(p.device())?;
            partial
                .entry(name.to_string())
                .or_insert_with(|| vec![None; slots.len()])[slot_index] = Some(t);
        }
        let mut state = BTreeMap::new();
        for (name, s) in partial {
            let full: Option<Vec<Tensor>> = s.into_iter().collect();
            let full = full.ok_or_else(|| {
                Error::Config(format!("optimizer state for `{name}` is missing a slot"))
            })?;
            state.insert(name, full);
        }
        self.state = state;
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_weight_decay_changes_only_the_decay() {
        let sgd = OptimizerSpec::sgd_nesterov(0.0).with_weight_decay(5e-4);
        assert_eq!(sgd, OptimizerSpec::sgd_nesterov(5e-4));
        let adamw = OptimizerSpec::adamw(0.01).with_weight_decay(0.0);
        assert_eq!(adamw, OptimizerSpec::adamw(0.0));
        assert_eq!(adamw.weight_decay(), 0.0);
    }
    use tensor::Device;

    fn one_param(values: &[f32]) -> (ParamStore, Tensor) {
        let mut ps = ParamStore::new();
        let p = ps
            .insert(
                "w",
                Tensor::from_vec(values.to_vec(), [values.len()], Device::Cpu).unwrap(),
            )
            .unwrap();
        (ps, p)
    }

    /// Gradients of `sum(c ⊙ w)` are `c`.
    fn grads(p: &Tensor, c: &[f32]) -> Gradients {
        let c = Tensor::from_vec(c.to_vec(), [c.len()], Device::Cpu).unwrap();
        p.mul(&c).unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_nesterov_with_weight_decay_matches_hand_computation() {
        let (ps, p) = one_param(&[1.0, -2.0]);
        let mut opt = Optimizer::new(OptimizerSpec::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
        })
        .unwrap();
        // Step 1: g = c + 0.1 w = [0.6, -0.2]; buf = g; d = g + 0.9 buf = 1.9 g; w -= 0.5 d.
        opt.step(&ps, &grads(&p, &[0.5, 0.0]), 0.5).unwrap();
        let w1 = [1.0 - 0.5 * 1.9 * 0.6, -2.0 - 0.5 * 1.9 * -0.2];
        close(&p.to_vec().unwrap(), &w1);
        // Step 2: g = c + 0.1 w1; buf = 0.9 buf + g; d = g + 0.9 buf.
        opt.step(&ps, &grads(&p, &[0.5, 0.0]), 0.5).unwrap();
        let g2 = [0.5 + 0.1 * w1[0], 0.1 * w1[1]];
        let buf2 = [0.9 * 0.6 + g2[0], 0.9 * -0.2 + g2[1]];
        let w2 = [
            w1[0] - 0.5 * (g2[0] + 0.9 * buf2[0]),
            w1[1] - 0.5 * (g2[1] + 0.9 * buf2[1]),
        ];
        close(&p.to_vec().unwrap(), &w2);
    }

    #[test]
    fn plain_sgd_is_w_minus_lr_g() {
        let (ps, p) = one_param(&[1.0, 2.0]);
        let mut opt = Optimizer::new(OptimizerSpec::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        })
        .unwrap();
        opt.step(&ps, &grads(&p, &[1.0, -3.0]), 0.1).unwrap();
        close(&p.to_vec().unwrap(), &[0.9, 2.3]);
        assert!(opt.state_tensors().is_empty());
    }

    #[test]
    fn adam_first_steps_match_hand_computation() {
        // Bias-corrected first Adam step moves every weight by lr·sign(g) (up to eps).
        let (ps, p) = one_param(&[1.0, -1.0]);
        let mut opt = Optimizer::new(OptimizerSpec::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
        .unwrap();
        opt.step(&ps, &grads(&p, &[2.0, -0.5]), 0.01).unwrap();
        close(&p.to_vec().unwrap(), &[0.99, -0.99]);
        // Second step with g' = [1, 1]: m = 0.9 m + 0.1 g', v = 0.999 v + 0.001 g'^2.
        opt.step(&ps, &grads(&p, &[1.0, 1.0]), 0.01).unwrap();
        let upd = |g1: f32, g2: f32| {
            let m = 0.9 * 0.1 * g1 + 0.1 * g2;
            let v = 0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2;
            let (bc1, bc2) = (1.0 - 0.9f32.powi(2), 1.0 - 0.999f32.powi(2));
            0.01 * (m / bc1) / ((v / bc2).sqrt() + 1e-8)
        };
        close(
            &p.to_vec().unwrap(),
            &[0.99 - upd(2.0, 1.0), -0.99 - upd(-0.5, 1.0)],
        );
    }

    #[test]
    fn adamw_decays_weights_directly_adam_through_the_gradient() {
        let spec = |decoupled: bool| {
            let (beta1, beta2, eps, weight_decay) = (0.9, 0.999, 1e-8, 0.5);
            if decoupled {
                OptimizerSpec::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            } else {
                OptimizerSpec::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            }
        };
        // Zero loss gradient: AdamW shrinks w by lr·λ·w; Adam sees g = λw and moves by lr·sign.
        let (ps, p) = one_param(&[2.0]);
        Optimizer::new(spec(true))
            .unwrap()
            .step(&ps, &grads(&p, &[0.0]), 0.1)
            .unwrap();
        close(&p.to_vec().unwrap(), &[2.0 - 0.1 * 0.5 * 2.0]);
        let (ps, p) = one_param(&[2.0]);
        Optimizer::new(spec(false))
            .unwrap()
            .step(&ps, &grads(&p, &[0.0]), 0.1)
            .unwrap();
        close(&p.to_vec().unwrap(), &[1.9]);
    }

    #[test]
    fn state_round_trips_and_rejects_mismatches() {
        let (ps, p) = one_param(&[1.0, 2.0]);
        let mut opt = Optimizer::new(OptimizerSpec::adamw(0.01)).unwrap();
        opt.step(&ps, &grads(&p, &[1.0, 1.0]), 0.1).unwrap();
        let saved = opt.state_tensors();
        assert_eq!(saved.len(), 2);
        let mut fresh = Optimizer::new(OptimizerSpec::adamw(0.01)).unwrap();
        fresh.load_state(&ps, saved.clone(), opt.steps()).unwrap();
        assert_eq!(fresh.state_tensors().len(), 2);
        let mut sgd = Optimizer::new(OptimizerSpec::sgd_nesterov(0.0)).unwrap();
        let err = sgd
            .load_state(&ps, saved.clone(), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("slot"), "{err}");
        let (other, _) = one_param(&[1.0, 2.0, 3.0]);
        let err = fresh.load_state(&other, saved, 1).unwrap_err().to_string();
        assert!(err.contains("shape"), "{err}");
    }

    #[test]
    fn invalid_hyperparameters_are_rejected() {
        assert!(Optimizer::new(OptimizerSpec::Sgd {
            momentum: 1.5,
            nesterov: false,
            weight_decay: 0.0
        })
        .is_err());
        assert!(Optimizer::new(OptimizerSpec::Sgd {
            momentum: 0.0,
            nesterov: true,
            weight_decay: 0.0
        })
        .is_err());
    }
}
